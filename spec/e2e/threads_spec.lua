-- owin.spawn / owin.wait / thread:kill, detached threads, owin.timer and
-- owin.sleep, end to end with spec/fixtures/outside/threads.lua (and a
-- private redis-server, for sockets used from threads and timer runs).
local outside = require("helpers.outside")

local APP = "spec/fixtures/outside/threads.lua"
local call, expect, like = outside.call, outside.expect, outside.like
local eventually = outside.eventually

local function clean_exit(w)
  assert.same({ true, "exit", 0 }, { w:stop() }, "owinlua did not exit cleanly:\n" .. outside.tail(w.srv))
end

describe("#e2e threads", function()
  local w, srv
  setup(function()
    w = outside.world(APP, { peer = false })
    srv = w.srv
  end)
  teardown(function() if w then clean_exit(w) end end)

  it("owin.sleep waits and returns true", function()
    expect(call(srv, "/sleep"), { sleep = "true", zero = "true" })
  end)

  it("owin.spawn runs the function now, up to its first wait; wait returns its results", function()
    expect(call(srv, "/spawn"), {
      status_waiting = "waiting",
      wait = "true|3|x",
      status_dead = "dead",
      order = "thread 12,after spawn,thread after sleep",
      quick_status = "dead", quick = "true|no wait",
      socket_in_thread = "true|PONG",
    })
  end)

  it("a thread's error comes back from wait and is logged with a traceback", function()
    expect(call(srv, "/errors"), {
      wait = like("^false|.*thread boom"),
      early = like("^false|.*early boom"),
      early_status = "dead",
    })
    assert.truthy(eventually(function()
      local log = srv:stderr()
      local i = log:find("thread boom", 1, true)
      return i and log:find("stack traceback", i, true)
    end, 3), "no traceback logged for the thread's error:\n" .. outside.tail(srv))
  end)

  it("owin.wait returns the first thread to end; kill ends a waiting one", function()
    expect(call(srv, "/wait-first"), {
      first_is_fast = "true",
      results = "true|fast|2",
      kill_slow = "true",
      slow = "false|killed",
      failed_first = "true",
      failed = like("^false|.*first to fail"),
    })
  end)

  it("kill: status, the killed thread's wait, killing a dead thread", function()
    expect(call(srv, "/kill"), {
      status = "waiting", kill = "true", status_after = "dead",
      wait = "false|killed",
      kill_dead = like("^nil|"),
    })
  end)

  it("a detached thread outlives its request; its error is logged", function()
    local out = w:path("detached")
    expect(call(srv, "/detached?out=" .. out), { spawned = "true" })
    assert.truthy(eventually(function() return outside.read_file(out) ~= "" end, 5),
      "the detached thread did not finish:\n" .. outside.tail(srv))
    assert.equal("detached ran true\n", outside.read_file(out))
    assert.truthy(eventually(function()
      local log = srv:stderr()
      local i = log:find("detached boom", 1, true)
      return i and log:find("stack traceback", i, true)
    end, 3), "no traceback logged for the detached thread's error:\n" .. outside.tail(srv))
  end)

  it("a request's thread is cancelled when the request ends", function()
    local out = w:path("attached")
    expect(call(srv, "/attached?out=" .. out), { spawned = "true" })
    -- it sleeps 5 s unless cancelled
    assert.truthy(eventually(function() return outside.read_file(out) ~= "" end, 3),
      "the request's thread was not cancelled when the request ended")
    assert.equal("attached nil|cancelled\n", outside.read_file(out))
  end)
end)

describe("#e2e timers", function()
  local w, srv
  setup(function()
    w = outside.world(APP, { peer = false })
    srv = w.srv
  end)
  teardown(function() if w then clean_exit(w) end end)

  it("timer.at runs fn(false, ...) after the delay, and may use sockets", function()
    local out = w:path("at")
    expect(call(srv, "/timer-at?out=" .. out), { handle = "true" })
    assert.truthy(eventually(function() return outside.read_file(out) ~= "" end, 5),
      "the timer did not run:\n" .. outside.tail(srv))
    assert.equal("at false|A|B|OK\n", outside.read_file(out))
    assert.equal("from a timer", w.redis:call("GET", "timer:key"))
  end)

  it("cancel is true only while the timer is pending", function()
    local out = w:path("cancel")
    expect(call(srv, "/timer-cancel?out=" .. out),
      { cancel = "true", cancel_again = "false", cancel_ran = "false" })
    assert.equal("", outside.read_file(out))
  end)

  it("timer.every keeps running after a run raises, until cancelled", function()
    local out = w:path("every")
    expect(call(srv, "/timer-every?out=" .. out), { handle = "true" })
    assert.truthy(eventually(function() return #outside.lines(out) >= 4 end, 5),
      "the every timer stopped:\n" .. outside.read_file(out) .. "\n" .. outside.tail(srv))
    local lines = outside.lines(out)
    assert.same({ "run 1 false T", "run 2 false T", "run 3 false T", "run 4 false T" },
      { lines[1], lines[2], lines[3], lines[4] })
    assert.truthy(srv:stderr():find("every boom", 1, true), "the run's error was not logged")
    expect(call(srv, "/timer-every-cancel"), { cancel = "true" })
    local n = #outside.lines(out)
    outside.sleep(0.4)
    assert.is_true(#outside.lines(out) <= n + 1, "the every timer still runs after cancel")
  end)
end)

describe("#e2e timers at shutdown", function()
  it("pending timers run once with premature = true, and the server waits for them", function()
    local w = outside.world(APP, { peer = false, redis = false })
    finally(function() w:stop() end)
    local out = w:path("premature")
    expect(call(w.srv, "/timer-premature?out=" .. out), { at = "true", every = "true", slow = "true" })
    assert.equal("", outside.read_file(out))
    local srv = w.srv
    assert.same({ true, "exit", 0 }, { srv:stop() }, outside.tail(srv))
    local lines = outside.lines(out)
    table.sort(lines)
    assert.same({ "at true", "every true", "slow true true" }, lines)
    w:stop()
  end)

  it("refuses timers past --max-pending-timers", function()
    local w = outside.world(APP, { peer = false, redis = false, args = { "--max-pending-timers", "5" } })
    finally(function() w:stop() end)
    expect(call(w.srv, "/timer-many?n=8"), {
      created = "5",
      refused = "nil|too many pending timers",
      after_cancel = "true",
    })
    clean_exit(w)
  end)
end)
