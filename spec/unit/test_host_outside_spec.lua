-- owin.test with apps that talk to the outside (docs/testing.md, "Apps that
-- talk to the outside"): threads, timers and cancellation on the virtual
-- loop, and owin.tcp() sockets whose other end is a fake peer the test
-- registers, with the semantics of the server's cosockets.  A Redis-like
-- peer speaks RESP to an app using owin.tcp and to one using Debian's
-- lua-redis through owin.socket.install().
--
--   busted --lua=lua5.4 spec/unit/test_host_outside_spec.lua

local test = require("owin.test")
local owin = require("owin")

-- The response body of an app given as fn(env) -> string.
local function answer(fn)
  return function(env) env["owin.ResponseBody"]:write(fn(env)) end
end

local function pack(...) return table.pack(...) end

-- {====== a Redis-like peer: RESP requests, a few commands, BLPOP and pub/sub

local function redis_server()
  local store, lists, blocked, subscribers = {}, {}, {}, {}
  local srv = { store = store, commands = {} }

  local function bulk(v)
    if v == nil then return "$-1\r\n" end
    v = tostring(v)
    return { "$", #v, "\r\n", v, "\r\n" }
  end

  local function array(items)
    local out = { "*", #items, "\r\n" }
    for i = 1, #items do out[#out + 1] = bulk(items[i]) end
    return out
  end

  -- one request: "*N" then N "$len" + bytes
  local function read_command(sock)
    local line, err = sock:receive()
    if not line then return nil, err end
    local n = assert(tonumber(line:match("^%*(%d+)$")), "not a RESP array: " .. line)
    local args = {}
    for i = 1, n do
      local len = assert(tonumber(sock:receive():match("^%$(%d+)$")))
      args[i] = sock:receive(len + 2):sub(1, len)
    end
    return args
  end

  local function push(key, v)
    local q = blocked[key]
    local w = q and table.remove(q, 1)
    if w then                                 -- hand it to a blocked BLPOP
      w.value = v
      w.thread:kill()
    else
      lists[key] = lists[key] or {}
      table.insert(lists[key], v)
    end
  end

  local function blpop(key, timeout)
    local list = lists[key]
    if list and #list > 0 then return array({ key, table.remove(list, 1) }) end
    local w = {}
    w.thread = owin.spawn(function() owin.sleep(timeout > 0 and timeout or 1e8) end)
    blocked[key] = blocked[key] or {}
    table.insert(blocked[key], w)
    w.thread:wait()                           -- the timeout, or killed by a push
    if w.value then return array({ key, w.value }) end
    for i, x in ipairs(blocked[key]) do
      if x == w then table.remove(blocked[key], i) break end
    end
    return "*-1\r\n"
  end

  function srv.handler(sock)
    local mine = {}
    while true do
      local args = read_command(sock)
      if not args then break end
      local cmd = args[1]:upper()
      srv.commands[#srv.commands + 1] = cmd
      local reply
      if cmd == "PING" then
        reply = "+PONG\r\n"
      elseif cmd == "SET" then
        store[args[2]] = args[3]
        reply = "+OK\r\n"
      elseif cmd == "GET" then
        reply = bulk(store[args[2]])
      elseif cmd == "INCR" then
        store[args[2]] = tostring((tonumber(store[args[2]]) or 0) + 1)
        reply = { ":", store[args[2]], "\r\n" }
      elseif cmd == "RPUSH" then
        for i = 3, #args do push(args[2], args[i]) end
        reply = { ":", #args - 2, "\r\n" }
      elseif cmd == "BLPOP" then
        reply = blpop(args[2], tonumber(args[3]))
      elseif cmd == "SUBSCRIBE" then
        local out = {}
        for i = 2, #args do
          subscribers[args[i]] = subscribers[args[i]] or {}
          subscribers[args[i]][sock] = true
          mine[#mine + 1] = args[i]
          out[#out + 1] = { "*3\r\n", bulk("subscribe"), bulk(args[i]), ":", #mine, "\r\n" }
        end
        reply = out
      elseif cmd == "UNSUBSCRIBE" then
        local out = {}
        for i = #mine, 1, -1 do
          subscribers[mine[i]][sock] = nil
          out[#out + 1] = { "*3\r\n", bulk("unsubscribe"), bulk(mine[i]), ":", i - 1, "\r\n" }
          mine[i] = nil
        end
        reply = out
      elseif cmd == "PUBLISH" then
        local n = 0
        for s in pairs(subscribers[args[2]] or {}) do
          s:send(array({ "message", args[2], args[3] }))
          n = n + 1
        end
        reply = { ":", n, "\r\n" }
      else
        reply = "-ERR unknown command '" .. args[1] .. "'\r\n"
      end
      sock:send(reply)
    end
    for _, ch in ipairs(mine) do subscribers[ch][sock] = nil end
  end

  return srv
end
-- }======

describe("owin.test: apps that talk to the outside #unit", function()
  describe("threads", function()
    it("run now until their first wait; wait gives their results, status follows them", function()
      local seen = {}
      local c = test.client(answer(function()
        local t = owin.spawn(function(a, b)
          seen[#seen + 1] = "started"
          local slept = owin.sleep(2)
          seen[#seen + 1] = slept
          return a + b, "two"
        end, 40, 2)
        seen[#seen + 1] = "spawned"
        local before = t:status()
        local r = pack(t:wait())
        return string.format("%s %s %s %s %s at %g", before, tostring(r[1]), r[2], r[3],
          t:status(), owin.now())
      end))
      assert.equal("waiting true 42 two dead at 2", c:get("/").body)
      assert.same({ "started", "spawned", true }, seen)
    end)

    it("say running inside themselves and refuse to wait for or kill themselves", function()
      local c = test.client(answer(function()
        local self_status, self_wait, kill_answer
        local t
        t = owin.spawn(function()
          owin.sleep(0)
          self_status = t:status()
          self_wait = select(2, pcall(t.wait, t))
          local k = pack(t:kill())
          kill_answer = tostring(k[1]) .. " " .. k[2]
        end)
        t:wait()
        return table.concat({ self_status, self_wait, kill_answer }, "|")
      end))
      local body = c:get("/").body
      assert.matches("^running|", body)
      assert.matches("a thread cannot wait for itself", body, 1, true)
      assert.matches("|nil running$", body)
    end)

    it("owin.wait gives the first to end; an error is its message, and client.errors has it", function()
      local c = test.client(answer(function()
        local slow = owin.spawn(function() owin.sleep(5) return "slow" end)
        local bad = owin.spawn(function() owin.sleep(1) error("bad thread") end)
        local th, ok, err = owin.wait(slow, bad)
        local th2, ok2, v = owin.wait(slow)
        return string.format("%s %s %s | %s %s %s | %g", tostring(th == bad), tostring(ok),
          err, tostring(th2 == slow), tostring(ok2), v, owin.now())
      end))
      local body = c:get("/").body
      assert.matches("^true false .*: bad thread | true true slow | 5$", body)
      assert.equal(1, #c.errors)
      local e = c.errors[1]
      assert.equal("thread", e.kind)
      assert.equal("test-1", e.request_id)
      assert.matches("bad thread", e.error)
      assert.matches("stack traceback", e.traceback)
    end)

    it("kill ends a waiting thread now: its <close> runs, wait gives false, \"killed\"", function()
      local closed_at
      local c = test.client(answer(function()
        local t = owin.spawn(function()
          local guard <close> = setmetatable({}, { __close = function() closed_at = owin.now() end })
          owin.sleep(100)
          return "woke"
        end)
        owin.sleep(3)
        local killed = t:kill()
        local r = pack(t:wait())
        local again = pack(t:kill())
        return string.format("%s %s %s %s %s %s", tostring(killed), tostring(r[1]), r[2],
          t:status(), tostring(again[1]), again[2])
      end))
      assert.equal("true false killed dead nil dead", c:get("/").body)
      assert.equal(3, closed_at)
      assert.same({}, c.errors)                 -- a kill is not an error
    end)

    it("belong to their request: cancelled when it ends, unless detached", function()
      local log = {}
      local c = test.client(answer(function()
        owin.spawn(function()
          local ok, err = owin.sleep(10)
          log[#log + 1] = string.format("attached %s %s at %g id %s", tostring(ok), err,
            owin.now(), owin.request_id())
        end)
        owin.spawn({ detached = true }, function()
          local ok = owin.sleep(10)
          log[#log + 1] = string.format("detached %s at %g, %d ids", tostring(ok), owin.now(),
            select("#", owin.request_id()))
        end)
        owin.sleep(1)
        return "done"
      end))
      assert.equal("done", c:get("/").body)
      c:advance(20)
      assert.same({ "attached nil cancelled at 1 id test-1", "detached true at 10, 0 ids" }, log)
    end)

    it("own what they open when detached: it goes when they end", function()
      local log = {}
      local c = test.client(answer(function()
        owin.spawn({ detached = true }, function()
          local s = owin.tcp()
          assert(s:connect("127.0.0.1", 7))
          owin.spawn(function()
            local _, err = owin.sleep(50)
            log[#log + 1] = string.format("child %s at %g", err, owin.now())
          end)
          owin.sleep(5)
        end)
        return ""
      end))
      c:peer("127.0.0.1:7", function(sock)
        local r = pack(sock:receive())
        log[#log + 1] = string.format("peer %s at %g", r[2], owin.now())
      end)
      c:get("/")
      c:advance(100)
      table.sort(log)
      assert.same({ "child cancelled at 5", "peer closed at 5" }, log)
    end)

    it("see the client leave: every wait of the request returns nil, \"cancelled\" at once", function()
      local log = {}
      local c = test.client(function()
        local worker = owin.spawn(function()
          local first = pack(owin.sleep(60))
          local second = pack(owin.sleep(60))       -- cancelled already: at once
          log[#log + 1] = string.format("thread %s %s, then %s %s at %g", tostring(first[1]),
            first[2], tostring(second[1]), second[2], owin.now())
        end)
        local ok, err = owin.sleep(60)
        log[#log + 1] = string.format("request %s %s at %g", tostring(ok), err, owin.now())
        local r = pack(worker:wait())
        log[#log + 1] = string.format("wait %s %s", tostring(r[1]), tostring(r[2]))
        local late = pack(owin.spawn(function() end))
        log[#log + 1] = string.format("spawn %s %s", tostring(late[1]), late[2])
        local h = owin.timer.at(1, function() end)  -- timers are not the request's
        log[#log + 1] = "timer " .. tostring(h ~= nil)
      end)
      local res = c:get("/", { cancel_after = 2.5 })
      assert.is_true(res.cancelled)
      table.sort(log)
      assert.same({ "request nil cancelled at 2.5", "spawn nil cancelled",
                    "thread nil cancelled, then nil cancelled at 2.5", "timer true",
                    "wait true nil" }, log)
    end)

    it("interrupt thread:wait and owin.wait when the request is cancelled", function()
      local got
      local c = test.client(function()
        local other = owin.spawn({ detached = true }, function() owin.sleep(1000) end)
        local a = pack(other:wait())
        local b = pack(owin.wait(other))
        got = { a[1], a[2], b[1], b[2], b[3] }
      end)
      c:get("/", { cancel_after = 4 })
      assert.same({ false, "cancelled", nil, false, "cancelled" }, got)
      assert.equal(4, c:now())
    end)

    it("stop an app that goes on waiting after it was cancelled, instead of spinning", function()
      local c = test.client(function()
        while true do owin.sleep(1) end       -- ignores nil, "cancelled"
      end)
      local res = c:get("/", { cancel_after = 1 })
      assert.is_true(res.cancelled)
      assert.matches("went on waiting 10000 times", res.error)
    end)

    it("pass waits through the app's own coroutines, which look \"normal\" meanwhile", function()
      local c = test.client(answer(function()
        local inner
        local gen = coroutine.wrap(function()
          inner = coroutine.running()
          for i = 1, 3 do
            owin.sleep(1)                         -- a wait inside the generator
            coroutine.yield(i * 10)               -- the app's own yield keeps its meaning
          end
        end)
        local watcher = owin.spawn(function()
          owin.sleep(0.5)
          return coroutine.status(inner), select(2, coroutine.resume(inner))
        end)
        local got = { gen(), gen(), gen() }
        local _, st, resume_err = watcher:wait()
        return string.format("%s at %g; %s, %s", table.concat(got, ","), owin.now(), st,
          resume_err)
      end))
      assert.equal("10,20,30 at 3; normal, cannot resume non-suspended coroutine",
        c:get("/").body)
    end)

    it("raise \"cannot wait here\" where a C function is in the way, as the server does", function()
      local c = test.client(answer(function()
        local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
          owin.sleep(1)
          return a < b
        end)
        return tostring(ok) .. " " .. err
      end))
      assert.matches("^false .*owin.sleep: cannot wait here: a C function that cannot yield",
        c:get("/").body)
    end)

    it("check their arguments as the server does", function()
      local errs = {}
      local function err_of(f) return select(2, pcall(f)) end
      test.client(function()
        errs[1] = err_of(function() owin.spawn(nil) end)
        errs[2] = err_of(function() owin.spawn({ detached = true }, 42) end)
        errs[3] = err_of(function() owin.wait() end)
        errs[4] = err_of(function() owin.wait({}) end)
        local t = owin.spawn(function() end)
        errs[5] = err_of(function() t.wait(42) end)
      end):get("/")
      assert.matches("bad argument #1 to 'spawn' %(function expected, got nil%)", errs[1])
      assert.matches("bad argument #2 to 'spawn' %(function expected, got number%)", errs[2])
      assert.matches("bad argument #1 to 'wait' %(a thread expected%)", errs[3])
      assert.matches("bad argument #1 to 'wait' %(owin.Thread expected, got table%)", errs[4])
      assert.matches("owin.Thread expected, got number", errs[5])
    end)
  end)

  describe("timers", function()
    it("at runs once after its delay, in a thread of its own, with premature false", function()
      local runs = {}
      local c = test.client(answer(function()
        local h = owin.timer.at(5, function(premature, a, b)
          runs[#runs + 1] = { premature, a, b, owin.now(), select("#", owin.request_id()) }
        end, "x", 7)
        return tostring(h:pending())
      end))
      assert.equal("true", c:get("/").body)
      c:advance(4.9)
      assert.same({}, runs)
      c:advance(1)
      assert.same({ { false, "x", 7, 5, 0 } }, runs)
      c:advance(100)
      assert.equal(1, #runs)
    end)

    it("every runs each interval until cancelled; a run's error is logged and it goes on", function()
      local ticks, handle = {}, nil
      local c = test.client(answer(function()
        handle = owin.timer.every(2, function()
          ticks[#ticks + 1] = owin.now()
          if #ticks == 2 then error("tick failed") end
        end)
        return ""
      end))
      c:get("/")
      c:advance(7)
      assert.same({ 2, 4, 6 }, ticks)
      assert.equal(1, #c.errors)
      assert.matches("tick failed", c.errors[1].error)
      assert.is_nil(c.errors[1].request_id)
      assert.is_true(handle:cancel())
      assert.is_false(handle:cancel())
      assert.is_false(handle:pending())
      c:advance(10)
      assert.same({ 2, 4, 6 }, ticks)
    end)

    it("run once with premature = true at a graceful stop; new ones are refused", function()
      local log = {}
      local c = test.client(answer(function()
        owin.timer.at(100, function(premature) log[#log + 1] = "at " .. tostring(premature) end)
        owin.timer.every(50, function(premature)
          log[#log + 1] = string.format("every %s at %g", tostring(premature), owin.now())
          local h, err = owin.timer.at(1, function() end)
          log[#log + 1] = h and "new timer accepted" or "new timer refused: " .. err
        end)
        local cancelled = owin.timer.at(10, function() log[#log + 1] = "cancelled one ran" end)
        cancelled:cancel()
        return ""
      end))
      c:get("/")
      c:advance(60)
      c:shutdown()
      assert.same({ "every false at 50", "new timer accepted",
                    "every true at 60", "new timer refused: the server is stopping",
                    "at true" }, log)
    end)

    it("make a graceful stop wait for threads, then cancel them", function()
      local log = {}
      local c = test.client(answer(function()
        owin.timer.at(0, function()
          local ok = owin.sleep(10)
          log[#log + 1] = string.format("short %s at %g", tostring(ok), owin.now())
        end)
        owin.timer.at(0, function()
          local ok, err = owin.sleep(1000)
          log[#log + 1] = string.format("long %s %s at %g", tostring(ok), err, owin.now())
        end)
        return ""
      end))
      c:get("/")
      c:settle()
      c:shutdown(30)
      assert.same({ "short true at 10", "long nil cancelled at 30" }, log)
    end)

    it("are capped by max_pending_timers and check their arguments", function()
      local got = {}
      test.client(function()
        for i = 1, 3 do got[i] = pack(owin.timer.at(1, function() end)) end
        got.bad1 = select(2, pcall(function() owin.timer.every(0, function() end) end))
        got.bad2 = select(2, pcall(function() owin.timer.at(-1, function() end) end))
        got.bad3 = select(2, pcall(function() owin.timer.at(1, "f") end))
      end, { max_pending_timers = 2 }):get("/")
      assert.is_not_nil(got[2][1])
      assert.same({ n = 2, nil, "too many pending timers" }, got[3])
      assert.matches("bad argument #1 to 'every' %(must be a number of seconds above 0%)", got.bad1)
      assert.matches("bad argument #1 to 'at' %(must be a number of seconds from 0%)", got.bad2)
      assert.matches("bad argument #2 to 'at' %(function expected, got string%)", got.bad3)
    end)

    it("start from an app script's top level, which runs as a task that may connect", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write([[
        local sock = owin.tcp()
        assert(sock:connect("config.internal", 7000))
        local greeting = assert(sock:receive())
        sock:close()
        local ticks = 0
        owin.timer.every(1, function() ticks = ticks + 1 end)
        app.run(function(env)
          env["owin.ResponseBody"]:write(greeting, " ", ticks)
        end)
      ]])
      f:close()
      local c = test.client(path, {
        hosts = { ["config.internal"] = "10.1.2.3" },
        peers = { ["10.1.2.3:7000"] = function(sock) sock:send("hello\n") end },
      })
      os.remove(path)
      c:advance(3)
      assert.equal("hello 3", c:get("/").body)
    end)
  end)

  describe("fake peers", function()
    local function echo_lines(sock)
      while true do
        local line = sock:receive()
        if not line then return end
        sock:send(line .. "\n")
      end
    end

    it("refuse connects where no peer listens, and resolve names from client:hosts", function()
      local c = test.client(answer(function(env)
        if env["owin.RequestPath"] == "/resolve" then
          local addrs, err = owin.resolve("db")
          return addrs and table.concat(addrs, ",") or err
        end
        local out = {}
        local function try(host, port)
          local s = owin.tcp()
          local ok, err = s:connect(host, port)
          out[#out + 1] = ok and ("ok " .. s:getpeername()) or err
        end
        try("127.0.0.1", 1)
        try("no.such.host", 80)
        try("localhost", 9000)
        try("db", 9000)                         -- 10.0.0.9 refuses, 127.0.0.1 answers
        out[#out + 1] = table.concat(owin.resolve("::1"), ",")
        return table.concat(out, "|")
      end))
      c:peer("127.0.0.1:9000", echo_lines)
      c:hosts({ db = { "10.0.0.9", "127.0.0.1" } })
      assert.equal("connection refused|host not found: no.such.host (unknown node or service)|" ..
        "ok 127.0.0.1|ok 127.0.0.1|::1", c:get("/").body)
      assert.equal("10.0.0.9,127.0.0.1", c:get("/resolve").body)
      c:hosts({ db = false })
      assert.equal("host not found: db (unknown node or service)", c:get("/resolve").body)
      assert.has_error(function() c:hosts({ db = "not-an-ip" }) end,
        "owin.test: client:hosts: db: not-an-ip is not an IP address")
    end)

    it("carry what send gives (strings, numbers, nested arrays, i and j) to the peer", function()
      local got = {}
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local r = { s:send("hello", 2, 4), s:send(42), s:send({ "a", { "b", 1.5 }, { { "c" } } }),
                    s:send("xyz", -1) }
        s:close()
        return table.concat(r, ",")
      end))
      c:peer("127.0.0.1:7", function(sock) got[#got + 1] = sock:receive("*a") end)
      assert.equal("4,2,6,3", c:get("/").body)
      c:settle()
      assert.same({ "ell42ab1.5cz" }, got)
    end)

    it("receive lines without CRs, counts, everything, with a prefix", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local a = s:receive()
        local b = s:receive("*l")
        local n = s:receive(4, "pre:")
        local rest = s:receive("*a")
        local after = pack(s:receive())
        return table.concat({ a, b, n, rest, tostring(after[1]), after[2], after[3] }, "|")
      end))
      c:peer("127.0.0.1:7", function(sock)
        sock:send("one\r\nt\rwo\n1234tail")
        sock:close()
      end)
      assert.equal("one|two|pre:1234|tail|nil|closed|", c:get("/").body)
    end)

    it("time out reads in virtual time, giving the partial data, and stay usable", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        s:settimeout(2)
        local t0 = owin.now()
        local r1 = pack(s:receive())
        local t1 = owin.now()
        s:settimeout(10)
        local line = s:receive()                -- the rest comes at 5
        s:settimeouts(nil, nil, 0)
        local r3 = pack(s:receive(10))
        return string.format("%s %s %s after %g | %s at %g | %s %s '%s'", tostring(r1[1]), r1[2],
          r1[3], t1 - t0, line, owin.now(), tostring(r3[1]), r3[2], r3[3])
      end))
      c:peer("127.0.0.1:7", function(sock)
        sock:send("pa\rr")                     -- a partial line loses its CRs too
        owin.sleep(5)
        sock:send("tial\nabc")
        sock:receive()
      end)
      local t0 = os.clock()
      assert.equal("nil timeout par after 2 | tial at 5 | nil timeout 'abc'", c:get("/").body)
      assert.is_true(os.clock() - t0 < 1)
    end)

    it("receiveany gives what is there, up to max", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local a = s:receiveany(3)
        local b = s:receiveany(100)
        local c2 = pack(s:receiveany(10))
        return table.concat({ a, b, tostring(c2[1]), c2[2] }, "|")
      end))
      c:peer("127.0.0.1:7", function(sock)
        sock:send("abcdef")
        sock:close()
      end)
      assert.equal("abc|def|nil|closed", c:get("/").body)
    end)

    it("receiveuntil reads up to a pattern, inclusive or not, and in sized pieces", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local out = {}
        local r = s:receiveuntil("--b")
        out[#out + 1] = r()                                   -- "one"
        out[#out + 1] = s:receiveuntil("\r\n", { inclusive = true })()
        local sized = s:receiveuntil("--b")
        repeat
          local piece = sized(3)
          out[#out + 1] = tostring(piece)
        until piece == nil
        out[#out + 1] = sized()                               -- the next occurrence
        local last = pack(sized())
        out[#out + 1] = string.format("%s %s %s", tostring(last[1]), last[2], last[3])
        return table.concat(out, "|")
      end))
      c:peer("127.0.0.1:7", function(sock)
        sock:send("one--bline\r\nabcdefg-")
        owin.sleep(1)
        sock:send("-bxy--btrailing")
        sock:close()
      end)
      assert.equal("one|line\r\n|abc|def|g|nil|xy|nil closed trailing", c:get("/").body)
    end)

    it("keep connections in a pool by address: reused, counted, dropped when dubious", function()
      local c = test.client(answer(function(env)
        local s = owin.tcp()
        assert(s:connect("localhost", 7))
        local reused = s:getreusedtimes()
        assert(s:send("ping\n"))
        local line = s:receive()
        if env["owin.RequestQueryString"] == "dubious" then
          assert(s:send("a\nb\n"))
          s:receive()
          owin.sleep(0.1)                     -- "b" is there, unread
        end
        local ok, err = s:setkeepalive()
        local after = pack(s:send("x"))
        return string.format("%s %d %s %s %s", line, reused, tostring(ok), tostring(err),
          after[2])
      end))
      local peer = c:peer("127.0.0.1:7", echo_lines)
      assert.equal("ping 0 1 nil closed", c:get("/").body)
      assert.equal("ping 1 1 nil closed", c:get("/").body)
      assert.equal("ping 2 nil connection in dubious state closed", c:get("/?dubious").body)
      assert.equal("ping 0 1 nil closed", c:get("/").body)
      assert.equal(2, peer.accepted)
      assert.equal(1, peer:open())              -- the pooled one
      peer:close()                              -- the peer goes away: the idle one is dropped
      assert.equal(0, peer:open())
      local res = c:get("/")
      assert.matches("connect", res.error or "")
    end)

    it("drop an idle pooled connection that the peer writes to", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local n = s:getreusedtimes()
        s:setkeepalive()
        return tostring(n)
      end))
      local peer = c:peer("127.0.0.1:7", function(sock)
        owin.sleep(1)
        sock:send("unsolicited\n")
        sock:receive()
      end)
      assert.equal("0", c:get("/").body)
      c:advance(2)
      assert.equal(0, peer:open())
      assert.equal("0", c:get("/").body)
      assert.equal(2, peer.accepted)
    end)

    it("drop idle pooled connections after their idle timeout", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local n = s:getreusedtimes()
        s:setkeepalive(10)
        return tostring(n)
      end))
      local peer = c:peer("127.0.0.1:7", echo_lines)
      assert.equal("0", c:get("/").body)
      c:advance(5)
      assert.equal("1", c:get("/").body)
      c:advance(11)
      assert.equal(0, peer:open())
      assert.equal("0", c:get("/").body)
      assert.equal(2, peer.accepted)
    end)

    it("let a connect wait for a pool slot with pool_size and backlog", function()
      local c = test.client(function(env)
        local q = env["owin.RequestQueryString"]
        local s = owin.tcp()
        s:settimeouts(3)
        local ok, err = s:connect("127.0.0.1", 7, { pool_size = 1, backlog = 1 })
        local body = env["owin.ResponseBody"]
        body:write(string.format("%s at %g reused %s", tostring(ok or err), owin.now(),
          s:getreusedtimes() or "-"))
        if ok then
          owin.sleep(tonumber(q) or 0)
          s:setkeepalive()
        end
      end)
      c:peer("127.0.0.1:7", echo_lines)
      local first = c:start({ path = "/?2" })     -- holds the one slot for 2 s
      local second = c:start({ path = "/?0" })    -- waits for it
      local third = c:start({ path = "/?0" })     -- over the backlog
      assert.equal("too many waiting connect operations at 0 reused -", third:wait().body)
      assert.equal("1 at 0 reused 0", first:wait().body)
      assert.equal("1 at 2 reused 1", second:wait().body)
      local hold = c:start({ path = "/?10" })
      local late = c:start({ path = "/?0" })      -- the connect timeout (3 s) passes
      assert.equal("timeout at 5 reused -", late:wait().body)
      hold:wait()
    end)

    it("time out a connect the peer does not accept", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        s:settimeout(5)
        local ok, err = s:connect("127.0.0.1", 7)
        return string.format("%s %s at %g", tostring(ok), err, owin.now())
      end))
      c:peer("127.0.0.1:7", echo_lines, { delay = math.huge })
      assert.equal("nil timeout at 5", c:get("/").body)
    end)

    it("allow one reader at a time: a second gets \"socket busy reading\"", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        local reader = owin.spawn(function() return s:receive() end)
        local busy = pack(s:receive())
        local _, line = reader:wait()
        return table.concat({ tostring(busy[1]), busy[2], line }, "|")
      end))
      c:peer("127.0.0.1:7", function(sock)
        owin.sleep(1)
        sock:send("late\n")
        sock:receive()
      end)
      assert.equal("nil|socket busy reading|late", c:get("/").body)
    end)

    it("give addresses, options and shutdown as the server's sockets do", function()
      local peer_saw
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 6379))
        local pip, pport, fam = s:getpeername()
        local lip = s:getsockname()
        assert.equal(1, s:setoption("tcp-nodelay", true))
        s:send("bye")
        s:shutdown("send")
        local reply = s:receive("*a")
        return table.concat({ pip, pport, fam, lip, reply }, "|")
      end))
      c:peer("127.0.0.1:6379", function(sock)
        peer_saw = sock:receive("*a")           -- until the app's shutdown
        local ip, port = sock:getpeername()
        sock:send("got " .. peer_saw .. " from " .. ip .. " " .. math.type(port))
      end)
      assert.equal("127.0.0.1|6379|inet|127.0.0.1|got bye from 127.0.0.1 integer", c:get("/").body)
    end)

    it("close a request's sockets when it ends or the client leaves; waits see \"cancelled\"", function()
      local peer_log, app_log = {}, {}
      local c = test.client(function(env)
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        if env["owin.RequestQueryString"] == "wait" then
          local r = pack(s:receive())
          app_log[#app_log + 1] = string.format("%s %s at %g", tostring(r[1]), r[2], owin.now())
          app_log[#app_log + 1] = select(2, s:send("x"))
        end
      end)
      c:peer("127.0.0.1:7", function(sock)
        local r = pack(sock:receive())
        peer_log[#peer_log + 1] = string.format("%s %s at %g", tostring(r[1]), r[2], owin.now())
      end)
      c:get("/")
      c:get("/?wait", { cancel_after = 3 })
      c:settle()
      assert.same({ "nil closed at 0", "nil closed at 3" }, peer_log)
      assert.same({ "nil cancelled at 3", "cancelled" }, app_log)
    end)

    it("keep a socket to its request unless shared", function()
      local shared, private
      local c = test.client(answer(function(env)
        if env["owin.RequestQueryString"] == "open" then
          private = owin.tcp()
          assert(private:connect("127.0.0.1", 7))
          shared = owin.tcp()
          assert(shared:connect("127.0.0.1", 7))
          shared:share()
          owin.sleep(10)
          return ""
        end
        local ok, err = pcall(private.send, private, "x")
        return tostring(ok) .. " " .. err .. " | " .. shared:send("ping\n") .. " " .. shared:receive()
      end))
      c:peer("127.0.0.1:7", echo_lines)
      local holder = c:start({ path = "/?open" })
      c:advance(1)
      local body = c:get("/").body
      assert.matches("^false .*the socket belongs to another request or thread", body)
      assert.matches("| 5 ping$", body)
      holder:wait()
    end)

    it("raise on bad arguments, naming them", function()
      local errs = {}
      local function err_of(f) return select(2, pcall(f)) end
      test.client(function()
        local s = owin.tcp()
        errs[1] = err_of(function() s:connect("", 80) end)
        errs[2] = err_of(function() s:connect("127.0.0.1", 70000) end)
        errs[3] = err_of(function() s:send(true) end)
        errs[4] = err_of(function() s:receive("*x") end)
        errs[5] = err_of(function() s:receiveuntil("") end)
        errs[6] = err_of(function() s:setoption("nonsense", true) end)
        errs[7] = err_of(function() s:receive(1.5) end)
      end):get("/")
      assert.matches("bad argument #1 to 'connect' %(host name or unix:/path expected, got an " ..
        "empty string%)", errs[1])
      assert.matches("bad argument #2 to 'connect' %(port from 1 to 65535 expected%)", errs[2])
      assert.matches("bad argument #1 to 'send' %(a string, a number or an array of them", errs[3])
      assert.matches("bad argument #1 to 'receive' %(invalid receive pattern", errs[4])
      assert.matches("bad argument #1 to 'receiveuntil' %(pattern must not be empty%)", errs[5])
      assert.matches("bad argument #1 to 'setoption' %(invalid option 'nonsense'%)", errs[6])
      assert.matches("bad argument #1 to 'receive' %(number has no integer representation%)",
        errs[7])
    end)

    it("report a peer's errors in client.errors and close its connection", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("127.0.0.1", 7))
        s:send("hi\n")
        local r = pack(s:receive())
        return string.format("%s %s '%s'", tostring(r[1]), r[2], r[3])
      end))
      c:peer("127.0.0.1:7", function(sock)
        sock:receive()
        error("peer broke")
      end)
      assert.equal("nil closed ''", c:get("/").body)
      assert.equal("peer", c.errors[1].kind)
      assert.matches("peer broke", c.errors[1].error)
    end)

    it("connect to unix socket peers", function()
      local c = test.client(answer(function()
        local s = owin.tcp()
        assert(s:connect("unix:/run/app.sock"))
        s:send("hey\n")
        local missing = owin.tcp()
        return s:receive() .. " " .. s:getpeername() .. " " ..
          select(2, missing:connect("unix:/run/nothing.sock"))
      end))
      c:peer("unix:/run/app.sock", echo_lines)
      assert.equal("hey /run/app.sock no such file or directory", c:get("/").body)
    end)

    it("leave owin.udp out, saying so", function()
      local c = test.client(answer(function()
        return select(2, pcall(owin.udp))
      end))
      assert.matches("owin.udp: owin.test has no fake UDP peers", c:get("/").body)
    end)
  end)

  describe("a Redis-like peer", function()
    local srv, c

    -- An app speaking RESP itself over owin.tcp, with a pooled connection.
    local function resp_app(env)
      local function command(sock, ...)
        local args = { ... }
        local out = { "*", #args, "\r\n" }
        for _, a in ipairs(args) do out[#out + 1] = { "$", #a, "\r\n", a, "\r\n" } end
        assert(sock:send(out))
        local line = assert(sock:receive())
        local kind, rest = line:sub(1, 1), line:sub(2)
        if kind == "$" then
          if rest == "-1" then return nil end
          return sock:receive(tonumber(rest) + 2):sub(1, -3)
        elseif kind == "*" then
          if rest == "-1" then return nil end
          local items = {}
          for i = 1, tonumber(rest) do
            local len = tonumber(assert(sock:receive()):sub(2))
            items[i] = sock:receive(len + 2):sub(1, -3)
          end
          return items
        end
        return rest
      end
      local sock = owin.tcp()
      sock:settimeout(60)
      assert(sock:connect("redis", 6379))
      local op, key, value = env["owin.RequestPath"]:match("^/(%w+)/([^/]+)/?(.*)$")
      local body = env["owin.ResponseBody"]
      if op == "set" then
        body:write(command(sock, "SET", key, value))
      elseif op == "get" then
        body:write(tostring(command(sock, "GET", key)))
      elseif op == "push" then
        body:write(command(sock, "RPUSH", key, value))
      elseif op == "pop" then
        local item = command(sock, "BLPOP", key, value)
        body:write(string.format("%s at %g", item and item[2] or "(nothing)", owin.now()))
      end
      sock:setkeepalive()
    end

    before_each(function()
      srv = redis_server()
      c = test.client(resp_app, { hosts = { redis = "10.0.0.7" },
                                  peers = { ["10.0.0.7:6379"] = srv.handler } })
    end)

    it("answers an app speaking RESP over owin.tcp, on one pooled connection", function()
      assert.equal("OK", c:get("/set/greeting/hello").body)
      assert.equal("hello", c:get("/get/greeting").body)
      assert.equal("nil", c:get("/get/other").body)
      assert.same({ "SET", "GET", "GET" }, srv.commands)
    end)

    it("blocks a BLPOP for 30 virtual seconds in no real time", function()
      local t0 = os.clock()
      local res = c:get("/pop/jobs/30")
      assert.equal("(nothing) at 30", res.body)
      assert.is_true(os.clock() - t0 < 1)
    end)

    it("wakes a BLPOP when another request pushes", function()
      local waiting = c:start({ path = "/pop/jobs/30" })
      c:advance(5)
      assert.is_false(waiting:done())
      assert.equal("1", c:get("/push/jobs/job-1").body)
      assert.equal("job-1 at 5", waiting:wait().body)
    end)

    describe("with lua-redis through owin.socket", function()
      local redis

      setup(function()
        redis = require("owin.socket").install() and require("redis")
      end)

      local function redis_app(env)
        local r = redis.connect({ host = "redis", port = 6379 })
        local path = env["owin.RequestPath"]
        local body = env["owin.ResponseBody"]
        if path == "/counter" then
          r:set("n", "40")
          r:incr("n")
          body:write(tostring(r:incr("n")), " ", tostring(r:ping()))
        elseif path == "/pop" then
          local item = r:blpop("queue", 30)
          body:write(string.format("%s at %g", item and item[2] or "(nothing)", owin.now()))
        elseif path == "/push" then
          body:write(tostring(r:rpush("queue", "work")))
        elseif path == "/subscribe" then
          for msg, abort in r:pubsub({ subscribe = "news" }) do
            if msg.kind == "message" then
              body:write(string.format("%s: %s at %g", msg.channel, msg.payload, owin.now()))
              abort()
            end
          end
        elseif path == "/publish" then
          body:write(tostring(r:publish("news", "extra")))
        end
        r:quit()
      end

      before_each(function()
        c = test.client(redis_app, { hosts = { redis = "10.0.0.7" },
                                     peers = { ["10.0.0.7:6379"] = srv.handler } })
      end)

      it("runs commands", function()
        local res = c:get("/counter")
        assert.is_nil(res.error)
        assert.equal("42 true", res.body)
      end)

      it("waits in BLPOP on the virtual clock, woken by another request", function()
        local t0 = os.clock()
        assert.equal("(nothing) at 30", c:get("/pop").body)
        local waiting = c:start({ path = "/pop" })
        c:advance(12)
        assert.equal("1", c:get("/push").body)
        assert.equal("work at 42", waiting:wait().body)
        assert.is_true(os.clock() - t0 < 1)
      end)

      it("reads pub/sub messages through its coroutine iterator", function()
        local sub = c:start({ path = "/subscribe" })
        c:advance(3)
        assert.is_false(sub:done())
        assert.equal("1", c:get("/publish").body)
        local res = sub:wait()
        assert.is_nil(res.error)
        assert.equal("news: extra at 3", res.body)
      end)
    end)
  end)

  describe("owin.socket", function()
    it("is luasocket's module over the fakes", function()
      local socket = require("owin.socket")
      local c = test.client(answer(function()
        local s = assert(socket.connect("localhost", 7))
        s:send("over luasocket\n")
        local line = s:receive()
        local refused = select(2, socket.connect("localhost", 8))
        local ip = socket.dns.toip("localhost")
        local t0 = owin.now()
        socket.sleep(2)
        return table.concat({ line, refused, ip, owin.now() - t0,
          type(socket.gettime()), type(socket.dns.gethostname()) }, "|")
      end))
      c:peer("127.0.0.1:7", function(sock) sock:send(sock:receive() .. "\n") end)
      assert.equal("over luasocket|connection refused|127.0.0.1|2.0|number|string",
        c:get("/").body)
    end)
  end)
end)
