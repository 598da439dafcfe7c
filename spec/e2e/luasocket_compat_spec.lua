-- require("owin.socket").install() makes luasocket-based libraries
-- non-blocking unchanged: Debian's lua-redis 2.0.5 against a private
-- redis-server, from requests (spec/fixtures/outside/luaredis.lua).
local outside = require("helpers.outside")
local redis = require("helpers.redis")

local APP = "spec/fixtures/outside/luaredis.lua"
local call, expect, like, has = outside.call, outside.expect, outside.like, outside.has
local eventually = outside.eventually

describe("#e2e owin.socket with lua-redis", function()
  local w, srv
  setup(function()
    assert(redis.lua_redis_path(), "Debian's lua-redis is not installed (tools/install-deps)")
    w = outside.world(APP, { peer = false })
    srv = w.srv
  end)
  teardown(function()
    if w then
      assert.same({ true, "exit", 0 }, { w:stop() }, "owinlua did not exit cleanly:\n"
        .. (srv and outside.tail(srv) or ""))
    end
  end)

  it("stands in for luasocket: install, gettime, sleep, dns, connect, tcp, udp", function()
    expect(call(srv, "/api"), {
      installed = "true|true", unix_installed = "true",
      version = "string", gettime = "float", slept = "true",
      toip = "true", toip_ip = "127.0.0.1", hostname = "string",
      connect = "+PONG", tcp = "true", tcp_ping = "+PONG", udp = "true",
    })
  end)

  it("runs SET, GET, INCR, lists and errors, over TCP and the unix socket", function()
    expect(call(srv, "/basic"), {
      ping = "true", set = "true", get = "a value", missing = "nil",
      incr = "1|2|12", list = "2|x,y",
      error = like("^false|.*WRONGTYPE"),
      after_error = "a value",               -- the connection is still in step
      quit = "true",
      unix_ping = "true", unix_get = "a value",
    })
    assert.equal("12", w.redis:call("GET", "lr:n"))
  end)

  it("runs a pipeline", function()
    expect(call(srv, "/pipeline"), { count = "4", replies = "true|2.5|true|true", after = "2.5" })
  end)

  it("subscribes and receives a message published on another connection", function()
    expect(call(srv, "/pubsub?channel=lr:c1"), {
      published = "1", kinds = "subscribe,message", message = "lr:c1:hello lr:c1",
    })
  end)

  it("a subscriber request gets what another request publishes", function()
    local c = outside.send(srv, "/subscribe?channel=lr:c2")
    assert.truthy(eventually(function()
      local r = w.redis:call("PUBSUB", "NUMSUB", "lr:c2")
      return r and r[2] == 1
    end, 5), "the subscriber never subscribed:\n" .. outside.tail(srv))
    expect(call(srv, "/publish?channel=lr:c2&payload=across"), { receivers = "1" })
    expect(outside.answer(srv, c, "/subscribe"), { message = "across" })
  end)

  it("a BLPOP through lua-redis does not stop other requests", function()
    local key = "lr:blpop:" .. os.time() .. ":" .. math.random(1, 1e6)
    local c = outside.send(srv, "/blpop?timeout=10&key=" .. key, 20)
    assert.truthy(eventually(function() return outside.redis_waiting(w.redis, "blpop") end, 5),
      "BLPOP never reached redis:\n" .. outside.tail(srv))
    for i = 1, 100 do
      expect(call(srv, "/ping?key=" .. key .. ":pings", 5), { incr = tostring(i) })
    end
    assert.equal(1, w.redis:call("LPUSH", key, "done"))
    expect(outside.answer(srv, c, "/blpop"), { got = "done" })
  end)
end)
