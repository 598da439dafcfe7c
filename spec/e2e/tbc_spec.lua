-- To-be-closed variables (Lua 5.4's <close>) on the server's streams and
-- sockets: the input stream drops the rest of the body and reads nil after
-- the scope, the output stream's scope end is harmless, and a WebSocket's
-- scope end starts the close handshake at once (no wait for the peer).
local http = require("helpers.http")
local server = require("helpers.server")
local ws = require("helpers.ws")

describe("#e2e <close> on streams and sockets", function()
  local srv

  setup(function() srv = server.start("spec/fixtures/tbc.lua") end)
  teardown(function() if srv then assert.is_true(srv:stop()) end end)

  it("an input stream closed after one byte reads nil; the connection serves the next request", function()
    local c = assert(http.connect(srv.port))
    finally(function() c:close() end)
    c:send("POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nbbbbb")
    local res = assert(c:read_response())
    assert.are.equal(200, res.status)
    assert.are.equal("first=b after=nil", res.body)
    c:send("POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzz")
    res = assert(c:read_response())
    assert.are.equal("first=z after=nil", res.body)
  end)

  it("an input stream closed early on a large body: the answer comes whole", function()
    local body = string.rep("b", 1000000)
    local res = assert(http.request(srv.port, "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: "
      .. #body .. "\r\n\r\n" .. body))
    assert.are.equal(200, res.status)
    assert.are.equal("first=b after=nil", res.body)
  end)

  it("an output stream's scope end leaves the response whole", function()
    local res = assert(http.get(srv.port, "/out"))
    assert.are.equal(200, res.status)
    assert.are.equal(string.rep("x", 20000) .. "end", res.body)
  end)

  it("a WebSocket's scope end sends the close frame at once", function()
    local client = assert(ws.connect(srv.port, "/ws"))
    finally(function() client:disconnect() end)
    local m = assert(client:read_message())
    assert.are.equal("bye", m.payload)
    local f = assert(client:read_frame())
    assert.are.equal(8, f.opcode)
    assert.are.equal(1000, ws.close_code(f.payload))
  end)
end)
