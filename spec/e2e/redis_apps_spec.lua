-- The example apps that talk to the outside, served by the real owinlua
-- binary against a real redis-server (helpers.redis) and real upstreams:
-- apps/chat.lua shared by two instances through Redis pub/sub,
-- apps/counter.lua, apps/fanin.lua.
--
--   busted --lua=lua5.4 spec/e2e/redis_apps_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local ws = require("helpers.ws")
local redis_helper = require("helpers.redis")

local TEXT = 1
local eventually = server.eventually

-- Connections of Redis subscribed to a pattern (PUBSUB NUMPAT counts
-- distinct patterns, not subscribers).
local function psubscribers(redis)
  local list = redis:call("CLIENT", "LIST") or ""
  return select(2, list:gsub("psub=1", ""))
end

local function stop_clean(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code },
    "owinlua did not exit cleanly:\n" .. srv:stderr())
end

describe("apps that talk to Redis #e2e", function()
  local redis

  setup(function()
    redis = redis_helper.start()
  end)

  teardown(function()
    if redis then redis:stop() end
  end)

  describe("apps/chat.lua on two instances", function()
    local a, b, clients

    before_each(function()
      local env = { CHAT_REDIS = "127.0.0.1:" .. redis.port }
      a = server.start("apps/chat.lua", nil, { env = env })
      b = server.start("apps/chat.lua", nil, { env = env })
      clients = {}
      -- each instance's subscriber is in place once Redis counts two of them
      assert.is_truthy(eventually(function()
        return psubscribers(redis) == 2
      end, 5), "the subscribers did not subscribe:\n" .. a:stderr() .. b:stderr())
    end)

    after_each(function()
      for _, c in ipairs(clients) do pcall(c.disconnect, c) end
      stop_clean(a)
      stop_clean(b)
    end)

    local function join(srv, room)
      local c, res = ws.connect(srv.port, "/room/" .. room)
      assert.is_truthy(c, "no 101: " .. tostring(res and res.status or res))
      clients[#clients + 1] = c
      return c
    end

    local function member_count(srv, room)
      local res = assert(http.get(srv.port, "/rooms"))
      return tonumber(res.body:match("%f[^\n%z]" .. room .. " (%d+)\n"))
    end

    it("delivers a line to the members on the other instance, once, and the sender's own once", function()
      local x, y = join(a, "lobby"), join(b, "lobby")
      assert(eventually(function()
        return member_count(a, "lobby") == 1 and member_count(b, "lobby") == 1
      end))
      x:send_frame(TEXT, "hello from a")
      local on_x, on_y = assert(x:read_message()), assert(y:read_message())
      assert.are.equal(on_x.payload, on_y.payload)
      assert.is_truthy(on_x.payload:match("^%x%x%x%x%-m%d+: hello from a$"), on_x.payload)
      y:send_frame(TEXT, "and back")
      local back_y, back_x = assert(y:read_message()), assert(x:read_message())
      assert.are.equal(back_y.payload, back_x.payload)
      assert.is_truthy(back_x.payload:match(": and back$"))
      -- no echo of an instance's own envelope: the next message each sees is
      -- the next line, not a duplicate
      x:send_frame(TEXT, "third")
      assert.is_truthy(assert(x:read_message()).payload:match(": third$"))
      assert.is_truthy(assert(y:read_message()).payload:match(": third$"))
    end)

    it("keeps rooms apart across instances", function()
      local x, y = join(a, "red"), join(b, "blue")
      local z = join(b, "red")
      assert(eventually(function() return member_count(b, "red") == 1 end))
      x:send_frame(TEXT, "only red")
      assert.is_truthy(assert(z:read_message()).payload:match(": only red$"))
      assert.is_truthy(assert(x:read_message()).payload:match(": only red$"))
      y.conn:settimeout(0.3)
      assert.is_nil(y:read_message())
    end)

    it("resubscribes after the subscriber's connection is killed", function()
      local x, y = join(a, "lobby"), join(b, "lobby")
      assert(eventually(function() return member_count(b, "lobby") == 1 end))
      redis:call("CLIENT", "KILL", "TYPE", "pubsub")
      assert.is_truthy(eventually(function()
        return psubscribers(redis) == 2
      end, 5), "no resubscription:\n" .. a:stderr() .. b:stderr())
      x:send_frame(TEXT, "after the reconnect")
      assert.is_truthy(assert(y:read_message()).payload:match(": after the reconnect$"))
      assert.is_truthy(a:stderr():match("Redis subscriber"), "the reconnect is logged")
    end)
  end)

  describe("apps/counter.lua", function()
    it("counts visits in Redis, and refuses to start without Redis", function()
      redis:call("DEL", "owinlua:visits")
      local srv = server.start("apps/counter.lua", nil,
        { env = { REDIS = "127.0.0.1:" .. redis.port } })
      local one = assert(http.get(srv.port, "/"))
      local two = assert(http.get(srv.port, "/"))
      assert.are.equal("visit 1\n", one.body)
      assert.are.equal("visit 2\n", two.body)
      assert.are.equal("2", redis:call("GET", "owinlua:visits"))
      stop_clean(srv)
      local f = io.popen("REDIS=127.0.0.1:1 ./owinlua --check apps/counter.lua 2>&1; echo \"rc=$?\"")
      local out = f:read("a")
      f:close()
      assert.is_truthy(out:match("cannot reach Redis at 127.0.0.1:1: connection refused"), out)
      assert.is_truthy(out:match("rc=1"), out)
    end)
  end)
end)

describe("apps/fanin.lua #e2e", function()
  local socket = require("socket")
  local ups, silent, srv

  setup(function()
    ups = { server.start("apps/hello.lua"), server.start("apps/hello.lua") }
    -- an upstream that accepts (the kernel does, from its backlog) and never answers
    silent = assert(socket.bind("127.0.0.1", 0))
    local _, silent_port = silent:getsockname()
    srv = server.start("apps/fanin.lua", nil, { env = { UPSTREAMS = table.concat({
      "http://127.0.0.1:" .. ups[1].port .. "/",
      "http://127.0.0.1:" .. ups[2].port .. "/",
      "http://127.0.0.1:" .. silent_port .. "/",
      "http://127.0.0.1:1/",
    }, ",") } })
  end)

  teardown(function()
    if srv then stop_clean(srv) end
    for _, u in ipairs(ups or {}) do stop_clean(u) end
    if silent then silent:close() end
  end)

  it("calls the upstreams at once and answers at the deadline with what it has", function()
    local t0 = socket.gettime()
    local res = assert(http.get(srv.port, "/?deadline=1"))
    local took = socket.gettime() - t0
    assert.are.equal(200, res.status)
    assert.are.equal(2, select(2, res.body:gsub(" %-> 200 ", "")), res.body)
    assert.is_truthy(res.body:match("/ %-> no answer before the deadline"), res.body)
    assert.is_truthy(res.body:match(":1/ %-> error: connection refused"), res.body)
    assert.is_truthy(res.body:match("3 of 4 answered"), res.body)
    assert.is_true(took >= 0.9 and took < 3, "took " .. took .. " s")
  end)
end)
