-- require("owin.socket").install() makes luasocket-based libraries
-- non-blocking unchanged: Debian's lua-redis 2.0.5 against a private
-- redis-server, from requests (spec/fixtures/outside/luaredis.lua). The
-- answers expected are those the same fixture gives over the real luasocket
-- (spec/helpers/luasocket_host.lua), which the last describe checks.
local outside = require("helpers.outside")
local redis = require("helpers.redis")
local shell = require("helpers.shell")

local APP = "spec/fixtures/outside/luaredis.lua"
local call, expect, like = outside.call, outside.expect, outside.like
local eventually = outside.eventually

-- Route -> the answer expected, under owinlua and under luasocket alike.
local WANT = {
  ["/api"] = {
    installed = "true|true", unix_installed = "true",
    version = "string", gettime = "float", slept = "true",
    toip = "true", toip_ip = "127.0.0.1", hostname = "string",
    connect = "+PONG", tcp = "true", tcp_ping = "+PONG", udp = "true",
  },
  ["/basic"] = {
    ping = "true", set = "true", get = "a value", missing = "nil",
    incr = "1|2|12", list = "2|x,y",
    error = like("^false|.*WRONGTYPE"),
    after_error = "a value",               -- the connection is still in step
    quit = "true",
  },
  ["/unix"] = { unix_ping = "true", unix_set = "true", unix_get = "over unix" },
  ["/pipeline"] = { count = "4", replies = "true|2.5|true|true", after = "2.5" },
  ["/pubsub?channel=lr:c1"] = {
    published = "1", kinds = "subscribe,message", message = "lr:c1:hello lr:c1",
  },
}

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
    expect(call(srv, "/api"), WANT["/api"])
  end)

  it("runs SET, GET, INCR, lists and errors", function()
    expect(call(srv, "/basic"), WANT["/basic"])
    assert.equal("12", w.redis:call("GET", "lr:n"))
  end)

  it("connects over a unix socket (socket.unix)", function()
    expect(call(srv, "/unix"), WANT["/unix"])
    assert.equal("over unix", w.redis:call("GET", "lr:u"))
  end)

  it("runs a pipeline", function()
    expect(call(srv, "/pipeline"), WANT["/pipeline"])
  end)

  it("subscribes and receives a message published on another connection", function()
    expect(call(srv, "/pubsub?channel=lr:c1"), WANT["/pubsub?channel=lr:c1"])
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

describe("#e2e the lua-redis fixture over the real luasocket", function()
  it("gives the answers the owinlua specs expect (they are luasocket's)", function()
    local r = redis.start()
    finally(function() r:stop() end)
    local paths = {}
    for path in pairs(WANT) do paths[#paths + 1] = path end
    table.sort(paths)
    local q = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
    local cmd = { "env", "REDIS_PORT=" .. r.port, "REDIS_UNIX=" .. q(r.unix),
      "LUA_REDIS_DIR=" .. q(redis.lua_redis_path()), "timeout 60",
      os.getenv("LUA") or "lua5.4", "spec/helpers/luasocket_host.lua", APP }
    for _, path in ipairs(paths) do cmd[#cmd + 1] = q(path) end
    local output, ok = shell.sh(table.concat(cmd, " "))
    assert.is_true(ok, output)
    local answers, current = {}, nil
    for line in output:gmatch("[^\n]+") do
      local path = line:match("^== (.*)$")
      if path then
        current = {}
        answers[path] = current
      elseif line:match("^!! ") then
        error("the fixture failed over luasocket: " .. line)
      elseif current then
        local k, v = line:match("^([^=]+)=(.*)$")
        if k then current[k] = v end
      end
    end
    for _, path in ipairs(paths) do
      assert.truthy(answers[path], "no answer for " .. path .. ":\n" .. output)
      answers[path]._body = output
      expect(answers[path], WANT[path], path)
    end
  end)
end)

describe("luasocket's socket.http on owin.socket #e2e", function()
  local server = require("helpers.server")
  local http = require("helpers.http")
  it("fetches through the create factory without blocking the server it calls", function()
    local srv = server.start("spec/fixtures/outside/sockethttp.lua")
    local res = assert(http.get(srv.port, "/"))
    local ok, how, code = srv:stop()
    assert.are.equal("1 200 inner body\n", res.body)
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  end)
end)
