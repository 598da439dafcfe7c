-- Cancellation reaches every wait of a request: a WebSocket handler waiting
-- on a cosocket or a sleep gets nil, "cancelled" at once when its client
-- goes away, and its socket is closed.
--
--   busted --lua=lua5.4 spec/e2e/cancel_spec.lua

local server = require("helpers.server")
local ws = require("helpers.ws")
local redis_helper = require("helpers.redis")
local socket = require("socket")

local eventually = server.eventually

describe("cancellation of a WebSocket handler's waits #e2e", function()
  local redis, srv, out

  setup(function()
    redis = redis_helper.start()
    out = os.tmpname()
    srv = server.start("spec/fixtures/outside/ws_cancel.lua", nil,
      { env = { REDIS_PORT = tostring(redis.port), OUT = out } })
  end)

  teardown(function()
    if srv then
      local ok, how, code = srv:stop()
      assert.are.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
    end
    if redis then redis:stop() end
    os.remove(out)
  end)

  local function lines()
    local f = io.open(out)
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end

  local function blocked()
    local list = redis:call("CLIENT", "LIST") or ""
    return list:match("cmd=blpop") ~= nil
  end

  it("a cosocket read returns cancelled when the client disconnects, and the socket is closed", function()
    local c = assert(ws.connect(srv.port, "/redis"))
    assert.are.equal("waiting", assert(c:read_message()).payload)
    assert.is_truthy(eventually(blocked, 5), "the handler never reached BLPOP")
    local t0 = socket.gettime()
    c:disconnect()
    assert.is_truthy(eventually(function() return lines():match("after=") end, 5),
      "the wait did not end:\n" .. srv:stderr())
    assert.is_true(socket.gettime() - t0 < 2, "the wait ended only at its timeout")
    assert.is_truthy(lines():match("receive=nil|cancelled"), lines())
    assert.is_truthy(lines():match("after=nil|cancelled"), lines())
    assert.is_truthy(eventually(function() return not blocked() end, 5),
      "the Redis connection was not closed")
  end)

  it("a sleep returns cancelled when the client disconnects", function()
    local c = assert(ws.connect(srv.port, "/sleep"))
    socket.sleep(0.2)
    c:disconnect()
    assert.is_truthy(eventually(function() return lines():match("sleep=") end, 5),
      "the sleep did not end:\n" .. srv:stderr())
    assert.is_truthy(lines():match("sleep=nil|cancelled"), lines())
  end)
end)
