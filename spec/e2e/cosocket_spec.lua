-- owin.tcp, owin.udp and owin.resolve (non-blocking sockets for app code),
-- end to end: the real owinlua runs spec/fixtures/outside/cosocket.lua and
-- talks to a private redis-server and a scripted peer process
-- (spec/helpers/peer_main.lua), all on loopback.
local outside = require("helpers.outside")
local server = require("helpers.server")
local http = require("helpers.http")
local peer = require("helpers.peer")
local ports = require("helpers.ports")

local APP = "spec/fixtures/outside/cosocket.lua"
local call, expect, like, has = outside.call, outside.expect, outside.like, outside.has
local eventually = outside.eventually

local function cannot_wait(v) return v:find("^false|") ~= nil and v:find("cannot wait here", 1, true) ~= nil end

describe("#e2e cosockets", function()
  local w, srv

  setup(function()
    w = outside.world(APP)
    srv = w.srv
  end)
  teardown(function()
    if w then
      local ok, how, code = w:stop()
      assert.same({ true, "exit", 0 }, { ok, how, code }, "owinlua did not exit cleanly:\n"
        .. (srv and outside.tail(srv) or ""))
    end
  end)

  -- A fresh peer for a test that counts its connections.
  local function fresh_peer()
    local p = peer.start()
    finally(function() p:stop() end)
    return p
  end

  describe("connect, send and receive", function()
    it("read lines, byte counts, the rest, with a prefix; close", function()
      expect(call(srv, "/receive"), {
        connect = "1", nodelay = "1", keepalive = "1",
        peername = "127.0.0.1|true", sockname = "127.0.0.1|number",
        send = "6",
        l1 = "line1",                       -- CR LF ends a line
        l2 = "line2",                       -- every CR in a line is dropped
        n4 = "abcd", prefix = "pre-ef", all = "ghijtail",
        after_all = like("^nil|closed"),
        close = "1",
        send_closed = like("^nil|closed"), recv_closed = like("^nil|closed"),
        a = "line1\\r\\nli\\rne2\\nabcdefghijtail",   -- "a" keeps the bytes as they are
        default = "line1",
      })
    end)

    it("send strings, numbers, nested arrays and a range", function()
      expect(call(srv, "/send"), {
        array = "6", array_echo = "abc12",
        number = "2", range = "8", number_echo = "42hello",
        empty = "0",
      })
    end)

    it("return what came so far on a read timeout, and the socket stays usable", function()
      expect(call(srv, "/partial"), {
        t1 = "nil|timeout|abc",
        t2 = "nil|timeout|p:def",           -- the partial includes the prefix
        line = "ghi", echo = "again",
        t3 = like("^nil|timeout"), t0 = like("^nil|timeout"),
        after = "still",
      })
    end)

    it("return the partial answer when the peer closes in the middle", function()
      expect(call(srv, "/closemid"), {
        n = "nil|closed|partial data",
        line = "nil|closed|partial data",
        all = "partial data",               -- "a" reads until the close: no error
        ["until"] = "nil|closed|partial data",
      })
    end)

    it("report a refused connection", function()
      expect(call(srv, "/refused"), {
        connect = "nil|connection refused",
        send_after = like("^nil|closed"),
      })
    end)

    it("resolve names off the loop: failures, /etc/hosts, IP literals", function()
      expect(call(srv, "/dns"), {
        connect = "nil|host not found: nosuch-owinlua.invalid",
        resolve_bad = "nil|string",
        resolve_localhost = "table|true",
        resolve_ip = "{127.0.0.1}",
        resolve_ip6 = "{::1}",
        resolve_same = "true",
        localhost = "1",                    -- connect("localhost", ...) resolves via /etc/hosts
        ping = "PONG",
      })
    end)

    it("connect to a unix socket (redis's)", function()
      expect(call(srv, "/unix"), {
        connect = "1", ping = "PONG", peername = w.redis.unix, close = "1",
        missing = "nil|no such file or directory",
      })
    end)
  end)

  describe("receiveuntil and receiveany", function()
    it("find a pattern split across packets, after near-misses of it", function()
      local r = call(srv, "/until")
      expect(r, {
        u1 = "alpha", u2 = "beta--X", u3 = "gamma-", rest = "tail",
        i1 = "alpha--XYZ--", i2 = "beta--X--XYZ--", i3 = "gamma---XYZ--", irest = "tail",
        sized1 = "alpha", sized2 = "beta--X", sized3 = "gamma-",
        end1 = "nil", end2 = "nil", end3 = "nil",   -- nil, no error, at the pattern
        longest = function(v) local n = tonumber(v); return n and n >= 1 and n <= 3 end,
        srest = "tail",
        timeout = "nil|timeout|abc",
      })
    end)

    it("receiveany returns what is there, at most max bytes", function()
      expect(call(srv, "/any"), {
        all = "helloworld",
        longest = function(v) local n = tonumber(v); return n and n >= 1 and n <= 3 end,
        none = like("^nil|timeout"),
        after = "after\\n",
      })
    end)
  end)

  describe("timeouts", function()
    it("connect (a listener that never accepts), read and send (a peer that never reads)", function()
      expect(call(srv, "/timeouts", 30), {
        connect = "nil|timeout",
        after_connect = like("^nil|closed"),    -- a connect timeout closes the socket
        read = like("^nil|timeout"),
        read_usable = "6",                      -- a read timeout does not
        send = "nil|timeout|number",
        after_send = like("^nil|closed"),       -- a send timeout does
        zero = like("^nil|timeout"),
        zero_after = like("^nil|timeout"),
      })
    end)
  end)

  describe("the connection pool", function()
    it("setkeepalive puts a connection back; the next connect reuses it", function()
      local p = fresh_peer()
      expect(call(srv, "/keepalive?port=" .. p.port), {
        reused0 = "0", a = "a", setkeepalive = "1",
        after_keepalive = like("^nil|closed"),  -- closed for the caller
        again = "nil|closed",
        connect2 = "1", reused1 = "1", b = "b", setkeepalive2 = "1",
        reused2 = "2",
      })
      assert.equal(1, p:stats().accepted)
    end)

    it("keeps connections across requests", function()
      local p = fresh_peer()
      for i = 0, 2 do
        expect(call(srv, "/reuse?port=" .. p.port), { reused = tostring(i), echo = "r", setkeepalive = "1" })
      end
      assert.equal(1, p:stats().accepted)
      assert.equal(1, p:stats().open)
    end)

    it("closes an idle connection after its idle time", function()
      local p = fresh_peer()
      expect(call(srv, "/reuse?port=" .. p.port .. "&idle=0.2"), { reused = "0", setkeepalive = "1" })
      assert.truthy(eventually(function() return p:stats().open == 0 end, 5),
        "the pooled connection was not closed after its idle timeout")
      expect(call(srv, "/reuse?port=" .. p.port), { reused = "0" })
    end)

    it("refuses a connection with unread data: connection in dubious state", function()
      local p = fresh_peer()
      expect(call(srv, "/dubious?port=" .. p.port), {
        x = "x",
        keepalive = "nil|connection in dubious state",
        after = like("^nil|closed"),
        closed_keepalive = "nil|closed",
      })
      assert.truthy(eventually(function() return p:stats().open == 0 end, 5),
        "the refused connection was left open")
    end)

    it("drops an idle connection that the peer closes or writes to", function()
      local p = fresh_peer()
      local ok = {}
      for _, cmd in ipairs({ "CLOSEIN", "PUSHIN" }) do
        ok[cmd .. "_ok"] = "ok"
        ok[cmd .. "_keepalive"] = "1"
        ok[cmd .. "_connect"] = "1"
        ok[cmd .. "_reused"] = "0"
        ok[cmd .. "_echo"] = "fresh"
      end
      expect(call(srv, "/stale?port=" .. p.port), ok)
    end)

    it("keeps at most pool_size idle connections and closes the others", function()
      local p = fresh_peer()
      call(srv, "/pool?port=" .. p.port .. "&n=5&size=2&idle=30")
      assert.truthy(eventually(function() return p:stats().open == 2 end, 5),
        "open connections: " .. p:stats().open .. " (want the 2 the pool keeps)")
      expect(call(srv, "/take?port=" .. p.port .. "&n=3"), { reused = "2" })
      assert.equal(6, p:stats().accepted)
      assert.truthy(eventually(function() return p:stats().open == 0 end, 5))
    end)

    it("connect's pool_size and backlog queue or refuse extra connects", function()
      local p = fresh_peer()
      expect(call(srv, "/backlog?port=" .. p.port, 30), {
        third = "nil|too many waiting connect operations",
        a_keepalive = "1",
        queued = "true|1|1",                -- the queued connect got the pooled one
        waited = "nil|timeout",
      })
      assert.equal(1, p:stats().accepted)
    end)

    it("closes the sockets a request leaves open", function()
      local p = fresh_peer()
      expect(call(srv, "/leave-open?port=" .. p.port), { echo = "left" })
      assert.truthy(eventually(function() return p:stats().open == 0 end, 5),
        "a socket the request left open is still open")
    end)
  end)

  describe("ownership and concurrency", function()
    it("allow one reader and one writer at a time", function()
      local p = fresh_peer()
      expect(call(srv, "/busy?port=" .. p.port, 30), {
        second_reader = like("^nil|socket busy reading"),
        first_reader = like("^true|nil|timeout"),
        second_writer = like("^nil|socket busy writing"),
        kill_writer = "true",
      })
    end)

    it("a socket belongs to its request unless shared", function()
      local p = fresh_peer()
      local c = outside.send(srv, "/own?hold=1.5&port=" .. p.port)
      local r = eventually(function()
        local res = call(srv, "/own-use")
        if res.stash ~= "empty" then return res end
      end, 5)
      assert.truthy(r, "the first request never stored its sockets")
      expect(r, { owned = "false", shared_send = "6", shared_receive = "hello" })
      outside.answer(srv, c, "/own")
    end)

    it("bad arguments raise errors naming the argument", function()
      expect(call(srv, "/badargs"), {
        send = has("bad argument #1 to 'send'"),
        receive = has("bad argument #1 to 'receive'"),
        receiveuntil = has("bad argument #1 to 'receiveuntil'"),
        settimeout = has("bad argument #1 to 'settimeout'"),
        connect = has("bad argument #1 to 'connect'"),
        usable = "3", echo = "ok",
      })
    end)
  end)

  describe("cancellation", function()
    it("a read returns cancelled when the client goes away; the socket is not pooled", function()
      local p = fresh_peer()
      local out = w:path("cancel")
      local c = outside.send(srv, "/cancel?port=" .. p.port .. "&out=" .. out)
      assert.truthy(eventually(function() return p:stats().sink == 1 end, 5),
        "the request never connected to the peer:\n" .. outside.tail(srv))
      outside.sleep(0.1)
      c:close()
      assert.truthy(eventually(function() return #outside.lines(out) >= 3 end, 5),
        "the wait did not end when the client left:\n" .. outside.tail(srv))
      local got = {}
      for _, line in ipairs(outside.lines(out)) do
        local k, v = line:match("^([^=]+)=(.*)$")
        got[k] = v
      end
      expect(got, {
        receive = like("^nil|cancelled"),
        -- luasocket's send returns nil, err, index of the last byte sent
        send_after = function(v) return v:match("^nil|closed") ~= nil or v:match("^nil|cancelled") ~= nil end,
        keepalive_after = function(v) return v == "nil|closed" or v == "nil|cancelled" end,
      })
      assert.truthy(eventually(function() return outside.read_file(out .. "-thread") ~= "" end, 5),
        "the request's thread was not cancelled")
      assert.equal("sleep=nil|cancelled\n", outside.read_file(out .. "-thread"))
      assert.truthy(eventually(function() return p:stats().open == 0 end, 5),
        "the cancelled request's socket is still open (pooled?)")
      assert.equal(200, http.get(srv.port, "/ping?key=cancel:after").status)
    end)
  end)

  describe("nothing blocks", function()
    it("answers 100 other requests while one waits on redis BLPOP", function()
      local key = "blpop:" .. os.time() .. ":" .. math.random(1, 1e6)
      local c = outside.send(srv, "/blpop?timeout=10&key=" .. key, 20)
      assert.truthy(eventually(function() return outside.redis_waiting(w.redis, "blpop") end, 5),
        "BLPOP never reached redis:\n" .. outside.tail(srv))
      local last
      for i = 1, 100 do
        last = call(srv, "/ping?key=" .. key .. ":pings", 5)
        assert.equal(tostring(i), last.incr)
      end
      -- only now does the waiting request get its answer
      assert.equal(1, w.redis:call("LPUSH", key, "done"))
      expect(outside.answer(srv, c, "/blpop"), { got = "done" })
    end)
  end)

  describe("nested coroutines", function()
    it("a wait inside the user's coroutines suspends the chain; yields keep their meaning", function()
      expect(call(srv, "/nested"), {
        wrap = "a|b|c|end",
        create1 = "true|pd", status1 = "suspended",
        create2 = "true|e!", status2 = "dead",
        deep = "outer:g",
        sleep = "slept true",
        io_status = "normal",
        io_resume = like("^false|cannot resume"),
        io_thread = "true|true|f",
        io_done = "dead",
      })
    end)

    it("a wait where no coroutine can wait raises cannot wait here", function()
      expect(call(srv, "/cannot-wait"), {
        sort = cannot_wait,                 -- a table.sort comparator
        require = cannot_wait,              -- a module being required
        gsub = cannot_wait,                 -- a string.gsub callback
        still = "true",
      })
    end)
  end)

  describe("udp", function()
    it("sends a datagram to a peer and receives its reply", function()
      expect(call(srv, "/udp"), {
        bind = "ok", sockname = "127.0.0.1|number",
        peer = "ok", send = "ok",
        reply = "pong:ping",
        thread = "true|ping|127.0.0.1",
        timeout = like("^nil|timeout"),
      })
    end)
  end)
end)

describe("#e2e cosockets at start-up", function()
  it("the script's top level can connect, wait and resolve before serving", function()
    local w = outside.world("spec/fixtures/outside/startup.lua", { peer = false })
    finally(function() w:stop() end)
    expect(call(w.srv, "/"), {
      set = "OK", slept = "true", resolved = "table",
      ping = "PONG",                       -- the start-up socket, used by a request
      get = "set at start-up",
    })
    expect(call(w.srv, "/"), { ping = "PONG" })
    assert.same({ true, "exit", 0 }, { w:stop() })
  end)

  it("a connect error at the top level stops owinlua with the reason", function()
    local closed = ports.free()
    local out, err, code = server.run({ "--listen", "127.0.0.1:0", "spec/fixtures/outside/startup_refused.lua" },
      { env = { CLOSED_PORT = tostring(closed) }, timeout = 20 })
    assert.are_not.equal(0, code)
    assert.is_nil(out:find("listening on", 1, true), "it served anyway:\n" .. out)
    assert.truthy(err:find("connection refused", 1, true), "the reason is missing:\n" .. err)
  end)
end)

describe("#e2e #slow cosocket churn", function()
  local function rss(pid)
    local f = assert(io.open("/proc/" .. pid .. "/status"))
    local s = f:read("a")
    f:close()
    return tonumber(s:match("VmRSS:%s+(%d+) kB")) * 1024
  end

  it("opening and closing 100,000 cosockets keeps the RSS flat", function()
    local acceptor = peer.start("acceptor")
    local w
    finally(function()
      outside.all(function() if w then w:stop() end end, function() acceptor:stop() end)
    end)
    w = outside.world(APP, { redis = false, peer = false })
    local srv = w.srv
    local path = "/churn?port=" .. acceptor.port .. "&n="
    for _ = 1, 2 do                          -- warm-up: pools, caches, the Lua heap
      expect(call(srv, path .. 5000, 120), { ok = "5000" })
    end
    local before = rss(srv.pid)
    local conns = {}
    for i = 1, 4 do conns[i] = outside.send(srv, path .. 25000, 300) end
    local total = 0
    for i = 1, 4 do
      local r = outside.answer(srv, conns[i], "/churn")
      total = total + tonumber(r.ok)
      assert.equal("0", r.failed, "failed connects: " .. tostring(r.errors))
    end
    assert.equal(100000, total)
    local grown = rss(srv.pid) - before
    assert.is_true(grown < 20 * 1024 * 1024,
      string.format("RSS grew by %.1f MiB over 100,000 cosockets", grown / 2 ^ 20))
    assert.same({ true, "exit", 0 }, { w:stop() })
  end)
end)
