-- owin.semaphore in the server (src/runtime/sem.c): units taken in order,
-- timeouts, and a wait cancelled when its client leaves.
--
--   busted --lua=lua5.4 --run=e2e spec/e2e/semaphore_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

describe("owin.semaphore #e2e", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/semaphore.lua") end)
  teardown(function() if srv then assert.is_true(srv:stop()) end end)

  it("gives units first come, first served, and times waits out", function()
    local res = http.get(srv.port, "/order")
    assert.equal(200, res.status)
    assert.equal("a got 0.0\nc timeout 0.1\nb got 0.2\nd got 0.4\ncount 1", res.body)
  end)

  it("forgets a waiting thread that is killed", function()
    assert.equal("-1 0 1 true", http.get(srv.port, "/kill").body)
  end)

  it("ends a wait with cancelled when its client leaves, and counts no waiter after", function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.sleep(0.3)
    local mid = http.get(srv.port, "/after")
    assert.equal(" count -1", mid.body)             -- one task waits
    c:close()
    assert.truthy(server.eventually(function()
      return http.get(srv.port, "/after").body == "nil cancelled count 0"
    end, 5))
  end)
end)
