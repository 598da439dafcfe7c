-- Requests the http_head fuzz harness found answered differently in one
-- read and in two (fuzz/regressions/http_head/): the answer may not depend
-- on where the bytes were split.  Each input goes once in one write and
-- then split at every position (two writes with a pause between).
local http = require("helpers.http")
local server = require("helpers.server")

local function read_file(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

-- The status of the first response to raw sent in two parts at cut (0: one write).
local function status_of(port, raw, cut)
  local c = assert(http.connect(port))
  if cut == 0 then
    c:send(raw)
  else
    c:send(raw:sub(1, cut))
    server.sleep(0.02)
    c:send(raw:sub(cut + 1))
  end
  local res = c:read_response()
  c:close()
  return res and res.status
end

describe("#e2e answers do not depend on how a request is split", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/conformance_echo.lua") end)
  teardown(function() if srv then assert.is_true(srv:stop()) end end)

  it("an unknown method with a lowercase letter: 501 however it arrives", function()
    local raw = read_file("fuzz/regressions/http_head/unknown-method-split")
    assert.are.equal(501, status_of(srv.port, raw, 0))
    for cut = 1, 12 do
      assert.are.equal(501, status_of(srv.port, raw, cut), "split after byte " .. cut)
    end
  end)

  it("a well-formed unknown method: 501 however it arrives", function()
    local raw = "FROB / HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut = 0, 8 do
      assert.are.equal(501, status_of(srv.port, raw, cut), "split after byte " .. cut)
    end
  end)

  it("a method with a control byte: 400 however it arrives", function()
    local raw = "GE\1T / HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut = 0, 6 do
      assert.are.equal(400, status_of(srv.port, raw, cut), "split after byte " .. cut)
    end
  end)

  describe("an upgrade request with a body", function()
    local ws_srv
    setup(function() ws_srv = server.start("spec/fixtures/ws.lua") end)
    teardown(function() if ws_srv then assert.is_true(ws_srv:stop()) end end)

    -- RFC 9110 7.8 lets a server ignore Upgrade: the body would otherwise be
    -- read as WebSocket frames when the app answers 101 before it arrives
    for _, framing in ipairs({ "Content-Length: 5\r\n\r\nhello",
                               "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" }) do
      it("is not upgraded, however it arrives (" .. framing:match("^[^:]+") .. ")", function()
        local raw = "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" .. framing
        local head = #raw - #framing + framing:find("\r\n\r\n") + 3
        for _, cut in ipairs({ 0, head }) do
          local st = status_of(ws_srv.port, raw, cut)
          assert.is_not_nil(st)
          assert.are_not.equal(101, st, "split after byte " .. cut)
        end
      end)
    end
  end)
end)

