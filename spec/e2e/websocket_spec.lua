-- WebSockets through the real server (RFC 6455, RFC 7692, docs/websockets.md).
local server = require("helpers.server")
local http = require("helpers.http")
local ws = require("helpers.ws")
local socket = require("socket")

local u16 = ws.u16

local function wait_for(f, timeout) return server.eventually(f, timeout) and true or false end

-- Sends bad bytes after the handshake; returns the close code the server
-- sent and whether it then closed the TCP connection.
local function refused(port, bytes)
  local c = assert(ws.connect(port, "/echo"))
  c:send_raw(bytes)
  local f
  repeat f = c:read_frame() until not f or f.opcode == 8
  assert(f, "the server sent no close frame")
  local closed = c:is_closed(3)
  c:disconnect()
  return ws.close_code(f.payload), closed
end

describe("#e2e WebSocket handshake (RFC 6455 4.2)", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/ws.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("answers 101 with the accept key of the client's key", function()
    local c, res = ws.connect(srv.port, "/echo")
    assert.is_table(c)
    assert.equal(101, res.status)
    assert.equal(ws.ACCEPT, res.headers["sec-websocket-accept"])
    assert.equal("websocket", res.headers["upgrade"]:lower())
    assert.equal("upgrade", res.headers["connection"]:lower())
    assert.is_nil(res.headers["content-length"])
    assert.equal("close", select(1, c:close(1000)) == 1000 and "close")
  end)

  it("answers 426 with Sec-WebSocket-Version to another version", function()
    local _, res = ws.connect(srv.port, "/echo", { version = "8" })
    assert.equal(426, res.status)
    assert.equal("13", res.headers["sec-websocket-version"])
  end)

  local ordinary = {
    { "a missing key", { key = "" } },
    { "a key that is not 16 bytes", { key = "dGhlIHNhbXBsZQ==" } },
    { "no Connection: upgrade", { connection = "keep-alive" } },
    { "another Upgrade protocol", { upgrade = "h2c" } },
  }
  for _, case in ipairs(ordinary) do
    it("serves a request with " .. case[1] .. " as plain HTTP", function()
      local _, res = ws.connect(srv.port, "/echo", case[2])
      assert.equal(200, res.status)
    end)
  end

  it("gives websocket.Accept only to valid upgrade requests", function()
    assert.equal("plain false", http.get(srv.port, "/echo").body)
    local _, res, conn = ws.connect(srv.port, "/nothing")
    assert.equal(200, res.status)
    conn:close()
  end)

  it("lets the adapter pick the first of its protocols the client offered", function()
    local c, res = ws.connect(srv.port, "/proto", { protocols = "a, b" })
    assert.equal("b", res.headers["sec-websocket-protocol"])
    assert.equal("b", c:read_message().payload)
    c:disconnect()
    c, res = ws.connect(srv.port, "/proto", { protocols = "a" })
    assert.equal("a", res.headers["sec-websocket-protocol"])
    c:disconnect()
    c, res = ws.connect(srv.port, "/proto")
    assert.is_nil(res.headers["sec-websocket-protocol"])
    c:disconnect()
  end)

  it("shows the 101's headers in owin.ResponseHeaders after accept, frozen", function()
    local c, res = ws.connect(srv.port, "/sentheaders", { protocols = "a" })
    assert.equal("a", res.headers["sec-websocket-protocol"])
    local accept = res.headers["sec-websocket-accept"]
    assert.equal("Sec-WebSocket-Accept=" .. accept .. " Sec-WebSocket-Protocol=a" ..
                 " Upgrade=websocket | " .. accept .. " | false headers already sent | 101",
                 c:read_message().payload)
    c:disconnect()
  end)

  it("refuses a protocol the client did not offer (500, no 101)", function()
    local _, res = ws.connect(srv.port, "/badproto", { protocols = "a" })
    assert.equal(500, res.status)
    assert.matches("subprotocol 'zzz' was not offered", srv:stderr())
  end)

  it("takes frames that came in the same packet as the handshake", function()
    local conn = assert(http.connect(srv.port))
    conn:send(ws.request("/echo") .. ws.frame(1, "early"))
    assert.equal(101, assert(conn:read_response({ method = "HEAD" })).status)
    local c = setmetatable({ conn = conn }, getmetatable(assert(ws.connect(srv.port, "/echo"))))
    assert.equal("early", c:read_message().payload)
    c:disconnect()
  end)
end)

describe("#e2e WebSocket messages", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/ws.lua", { "--ws-max-message", "100k" }) end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("echoes text and binary, small and large (16- and 64-bit lengths)", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    for _, case in ipairs({ { 1, "" }, { 1, "héllo" }, { 2, "\0\1\2\255" },
                            { 2, string.rep("x", 126) }, { 1, string.rep("y", 65536) } }) do
      c:send_frame(case[1], case[2])
      local m = c:read_message()
      assert.equal(case[1], m.opcode)
      assert.equal(case[2], m.payload)
    end
    assert.equal(1000, c:close(1000))
  end)

  it("reassembles fragments with a ping in between, and answers the ping", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    c:send_frame(1, "Hel", { fin = false })
    c:send_frame(9, "are you there")
    c:send_frame(0, "lo, ", { fin = false })
    c:send_frame(0, "world")
    local pong = c:read_frame()
    assert.equal(10, pong.opcode)
    assert.equal("are you there", pong.payload)
    assert.equal("Hello, world", c:read_message().payload)
    c:close(1000)
  end)

  it("accepts a message split at every byte", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    local bytes = ws.frame(1, "split me")
    for i = 1, #bytes do c:send_raw(bytes:sub(i, i)) socket.sleep(0.002) end
    assert.equal("split me", c:read_message().payload)
    c:close(1000)
  end)

  it("completes the close handshake and closes TCP; the raw app sees the status", function()
    local c = assert(ws.connect(srv.port, "/raw"))
    c:send_frame(1, "raw echo")
    assert.equal("raw echo", c:read_message().payload)
    local code, reason = c:close(4001, "bye now")
    assert.equal(4001, code)
    assert.is_true(c:is_closed(3))
    assert.is_true(wait_for(function()
      return srv:stderr():find("raw closed: 4001 [bye now] version 1.0", 1, true) ~= nil
    end), srv:stderr())
  end)

  it("echoes no code for a close without payload (1005 inside)", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    c:send_frame(8, "")
    local f = c:read_frame()
    assert.equal(8, f.opcode)
    assert.is_true(f.payload == "" or ws.close_code(f.payload) == 1000)
    assert.is_true(c:is_closed(3))
  end)

  it("uses the raw websocket.SubProtocol from the Accept params", function()
    local c, res = ws.connect(srv.port, "/raw?proto=chat", { protocols = "chat, other" })
    assert.equal("chat", res.headers["sec-websocket-protocol"])
    c:close(1000)
  end)
end)

describe("#e2e WebSocket protocol errors (RFC 6455 5, 7.4)", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/ws.lua", { "--ws-max-message", "100k" }) end)
  teardown(function() assert.is_true(srv:stop()) end)

  local cases = {
    { "an unmasked client frame", ws.frame(1, "x", { nomask = true }), 1002 },
    { "a reserved opcode (3)", ws.frame(3, "x"), 1002 },
    { "a reserved control opcode (11)", ws.frame(11, "x"), 1002 },
    { "RSV1 without an extension", ws.frame(1, "x", { rsv = 4 }), 1002 },
    { "RSV2", ws.frame(1, "x", { rsv = 2 }), 1002 },
    { "a control frame over 125 bytes", ws.frame(9, string.rep("p", 126)), 1002 },
    { "a fragmented control frame", ws.frame(9, "p", { fin = false }), 1002 },
    { "a continuation with no message", ws.frame(0, "x"), 1002 },
    { "a new message inside a fragmented one", ws.frame(1, "a", { fin = false }) .. ws.frame(1, "b"), 1002 },
    { "invalid UTF-8 in a text message", ws.frame(1, "\xc3\x28"), 1007 },
    { "an overlong encoding", ws.frame(1, "\xc0\xaf"), 1007 },
    { "a UTF-16 surrogate", ws.frame(1, "\xed\xa0\x80"), 1007 },
    { "a close frame with 1 byte", ws.frame(8, "\3"), 1002 },
    { "a close code 1005", ws.frame(8, u16(1005)), 1002 },
    { "a close code 999", ws.frame(8, u16(999)), 1002 },
    { "a close code 5000", ws.frame(8, u16(5000)), 1002 },
    { "a close reason that is not UTF-8", ws.frame(8, u16(1000) .. "\xff"), 1007 },
    { "a message over --ws-max-message", ws.frame(2, string.rep("m", 100 * 1024 + 1)), 1009 },
    { "fragments over --ws-max-message", ws.frame(2, string.rep("m", 60 * 1024), { fin = false }) ..
                                           ws.frame(0, string.rep("m", 60 * 1024)), 1009 },
  }
  for _, case in ipairs(cases) do
    it("fail the connection on " .. case[1] .. " (" .. case[3] .. ")", function()
      local code, closed = refused(srv.port, case[2])
      assert.equal(case[3], code)
      assert.is_true(closed)
    end)
  end

  it("fail fast: invalid UTF-8 in the first fragment closes before the message ends", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    c:send_frame(1, "ok so far \xff", { fin = false })
    local f = c:read_frame()
    assert.equal(8, f.opcode)
    assert.equal(1007, ws.close_code(f.payload))
    c:disconnect()
  end)

  it("accept UTF-8 split between fragments", function()
    local c = assert(ws.connect(srv.port, "/echo"))
    c:send_frame(1, "\xe2\x82", { fin = false })
    c:send_frame(0, "\xac")
    assert.equal("\xe2\x82\xac", c:read_message().payload)
    c:close(1000)
  end)
end)

describe("#e2e WebSocket permessage-deflate (RFC 7692)", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/ws.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  -- RFC 7692 7.2.3.1: "Hello" compressed in one frame
  local HELLO = "\xf2\x48\xcd\xc9\xc9\x07\x00"

  it("negotiates when offered and decompresses the RFC's example", function()
    local c, res = ws.connect(srv.port, "/echo", { extensions = "permessage-deflate; client_max_window_bits" })
    assert.matches("^permessage%-deflate", res.headers["sec-websocket-extensions"])
    c:send_frame(1, HELLO, { rsv = 4 })
    local m = c:read_message()
    assert.equal(1, m.opcode)
    assert.equal(4, m.rsv)                        -- the echo is compressed too
    c:send_frame(1, HELLO, { rsv = 4 })           -- context takeover: still fine
    assert.equal(4, c:read_message().rsv)
    c:send_frame(1, "plain")                      -- an uncompressed message is allowed
    assert.is_table(c:read_message())
    c:close(1000)
  end)

  it("takes a compressed message in two fragments (RFC 7692 7.2.3.2)", function()
    local c = assert(ws.connect(srv.port, "/echo", { extensions = "permessage-deflate" }))
    c:send_frame(1, "\xf2\x48\xcd", { rsv = 4, fin = false })
    c:send_frame(0, "\xc9\xc9\x07\x00")
    assert.equal(4, c:read_message().rsv)
    c:close(1000)
  end)

  it("is off with --no-ws-compression", function()
    local off = server.start("spec/fixtures/ws.lua", { "--no-ws-compression" })
    finally(function() off:stop() end)
    local c, res = ws.connect(off.port, "/echo", { extensions = "permessage-deflate" })
    assert.is_nil(res.headers["sec-websocket-extensions"])
    c:send_frame(1, HELLO, { rsv = 4 })
    local f = c:read_frame()
    assert.equal(8, f.opcode)
    assert.equal(1002, ws.close_code(f.payload))
  end)
end)

describe("#e2e WebSocket sockets in the server", function()
  it("lets one coroutine wait in receive while another request sends", function()
    local srv = server.start("spec/fixtures/ws.lua")
    finally(function() srv:stop() end)
    local a = assert(ws.connect(srv.port, "/room"))
    local b = assert(ws.connect(srv.port, "/room"))
    assert.equal("joined", a:read_message().payload)
    assert.equal("joined", b:read_message().payload)
    local res = http.request(srv.port, "POST /say HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" ..
                                       "Connection: close\r\n\r\nhi all")
    assert.equal("2", res.body)
    assert.equal("hi al", a:read_message().payload)
    assert.equal("hi al", b:read_message().payload)
    a:close(1000)
    b:close(1000)
  end)

  it("makes a sender wait for a slow reader, then delivers everything", function()
    local srv = server.start("spec/fixtures/ws.lua")
    finally(function() srv:stop() end)
    local c = assert(ws.connect(srv.port, "/flood?n=200&size=65536"))
    socket.sleep(0.5)                             -- read nothing for a while
    local got = 0
    while true do
      local m = c:read_message()
      if m.opcode == 8 then break end
      got = got + #m.payload
    end
    assert.equal(200 * 65536, got)
    assert.matches("flood sent 200", srv:stderr())
  end)

  it("reports a dropped connection as close 1006 and fires CallCancelled", function()
    local srv = server.start("spec/fixtures/ws.lua")
    finally(function() srv:stop() end)
    local c = assert(ws.connect(srv.port, "/cancel"))
    c:disconnect()
    assert.is_true(wait_for(function()
      local log = srv:stderr()
      return log:find("ws cancelled", 1, true) and log:find("ws receive ended: closed 1006", 1, true)
    end), srv:stderr())
  end)

  it("pings an idle client and closes when no pong comes", function()
    local srv = server.start("spec/fixtures/ws.lua", { "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.2" })
    finally(function() srv:stop() end)
    local c = assert(ws.connect(srv.port, "/echo"))
    local f = c:read_frame()
    assert.equal(9, f.opcode)                     -- a ping
    assert.is_true(c:is_closed(3))                -- never answered: cut
  end)

  it("closes open sockets with 1001 at shutdown and exits 0", function()
    local srv = server.start("spec/fixtures/ws.lua")
    local c = assert(ws.connect(srv.port, "/echo"))
    srv:signal("TERM")
    local f = c:read_frame()
    assert.equal(8, f.opcode)
    assert.equal(1001, ws.close_code(f.payload))
    c:send_frame(8, u16(1001))                    -- finish the handshake
    assert.is_true(srv:wait_exit(5))
    assert.same({ true, "exit", 0 }, { srv:stop() })
  end)

  it("closes the socket with 1011 when the app fails after accepting", function()
    local srv = server.start("spec/fixtures/ws.lua")
    finally(function() srv:stop() end)
    local c = assert(ws.connect(srv.port, "/write-after"))
    local f = c:read_frame()
    assert.equal(8, f.opcode)
    assert.equal(1011, ws.close_code(f.payload))
  end)
end)

describe("#e2e opaque.Upgrade", function()
  it("answers 101 with the protocol and hands over the raw connection", function()
    local srv = server.start("spec/fixtures/ws.lua")
    finally(function() srv:stop() end)
    local conn = assert(http.connect(srv.port))
    conn:send("GET /opaque HTTP/1.1\r\nHost: h\r\nUpgrade: shout/1\r\nConnection: Upgrade\r\n\r\n")
    local res = assert(conn:read_response({ method = "HEAD" }))
    assert.equal(101, res.status)
    assert.equal("shout/1", res.headers["upgrade"])
    conn:send("hello")
    assert.equal("HELLO", conn:read_exact(5))
    conn:send("quit")
    assert.equal("QUIT", conn:read_exact(4))
    assert.is_true(conn:is_closed(3))
  end)
end)
