-- apps/chat.lua, served by the real owinlua binary on port 0 and driven by
-- raw WebSocket clients (helpers.ws): fan-out within a room, isolation
-- between rooms, the /rooms listing, members leaving.
--
--   busted --lua=lua5.4 spec/e2e/chat_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local ws = require("helpers.ws")
local socket = require("socket")

local TEXT, CLOSE = 1, 8

local eventually = server.eventually

local function rooms(srv)
  local res = assert(http.get(srv.port, "/rooms"))
  assert.are.equal(200, res.status)
  return res.body
end

describe("apps/chat.lua #e2e", function()
  local srv, clients

  before_each(function()
    srv = server.start("apps/chat.lua")
    clients = {}
  end)

  after_each(function()
    for _, c in ipairs(clients) do pcall(c.disconnect, c) end
    local ok, how, code = srv:stop()
    assert.are.same({ true, "exit", 0 }, { ok, how, code },
      "owinlua did not exit cleanly:\n" .. srv:stderr())
  end)

  -- A member of `room`, closed at the end of the test.
  local function join(room)
    local c, res = ws.connect(srv.port, "/room/" .. room)
    assert.is_truthy(c, "no 101 for /room/" .. room .. ": " .. tostring(res and res.status or res))
    clients[#clients + 1] = c
    return c
  end

  local function member_count(room)
    return tonumber(rooms(srv):match("%f[^\n%z]" .. room .. " (%d+)\n"))
  end

  it("sends a member's message to every member of the room, the sender included", function()
    local a, b = join("lobby"), join("lobby")
    assert(eventually(function() return member_count("lobby") == 2 end))
    a:send_frame(TEXT, "hello")
    local from_a, from_b = assert(a:read_message()), assert(b:read_message())
    assert.are.equal(TEXT, from_a.opcode)
    assert.are.equal(TEXT, from_b.opcode)
    local id = from_a.payload:match("^(m%d+): hello$")
    assert.is_truthy(id, "unexpected line: " .. from_a.payload)
    assert.are.equal(from_a.payload, from_b.payload)

    b:send_frame(TEXT, "hi")                 -- and back: another id
    local back = assert(a:read_message()).payload
    assert.are.equal(back, assert(b:read_message()).payload)
    local id_b = back:match("^(m%d+): hi$")
    assert.is_truthy(id_b)
    assert.are_not.equal(id, id_b)
  end)

  it("keeps rooms apart", function()
    local a, b = join("lobby"), join("lobby")
    local other = join("kitchen")
    assert(eventually(function() return member_count("kitchen") == 1 and member_count("lobby") == 2 end))
    a:send_frame(TEXT, "lobby only")
    assert.are.equal("lobby only", assert(b:read_message()).payload:match(": (.*)$"))
    other:send_frame(TEXT, "kitchen only")
    assert.are.equal("kitchen only", assert(other:read_message()).payload:match(": (.*)$"))
    -- The kitchen saw only its own line; the lobby never saw the kitchen's.
    other.conn:settimeout(0.3)
    b.conn:settimeout(0.3)
    assert.are.same({ nil, "timeout" }, { other:read_message() })
    assert.are.same({ nil, "timeout" }, { b:read_message() })
  end)

  it("lists rooms and member counts at GET /rooms", function()
    assert.are.equal("", rooms(srv))
    join("lobby"); join("lobby"); join("lobby"); join("attic")
    eventually(function() return rooms(srv) == "attic 1\nlobby 3\n" end)
    assert.are.equal("attic 1\nlobby 3\n", rooms(srv))
    local res = assert(http.get(srv.port, "/rooms"))
    assert.are.equal("text/plain", res.headers["content-type"])
  end)

  it("removes a member that closes, and one whose connection drops", function()
    local a, b, c = join("lobby"), join("lobby"), join("lobby")
    assert(eventually(function() return member_count("lobby") == 3 end))
    assert.are.equal(1000, a:close(1000))    -- close handshake: receive returns nil
    assert.is_true(eventually(function() return member_count("lobby") == 2 end))
    b:disconnect()                           -- no close frame: CallCancelled fires
    assert.is_true(eventually(function() return member_count("lobby") == 1 end))
    -- The one left still chats, and gets only its own line.
    c:send_frame(TEXT, "alone")
    assert.is_truthy(assert(c:read_message()).payload:match("^m%d+: alone$"))
    c:close(1000)
    assert.is_true(eventually(function() return rooms(srv) == "" end))
  end)

  it("answers plain HTTP on a room with 426 and unknown paths with 404", function()
    local res = assert(http.get(srv.port, "/room/lobby"))
    assert.are.equal(426, res.status)
    assert.are.equal("websocket", res.headers["upgrade"])
    assert.are.equal(404, assert(http.get(srv.port, "/elsewhere")).status)
  end)

  -- A member whose socket buffers are full holds the one sender that waits
  -- on it (ws:send yields that sender), and no one else.
  it("keeps a room moving while one member does not read", function()
    -- The slow member: a small receive window, and it never reads.
    local tcp = assert(socket.tcp())
    tcp:setoption("recv-buffer-size", 4096)
    tcp:settimeout(5)
    assert(tcp:connect("127.0.0.1", srv.port))
    assert(tcp:send(ws.request("/room/lobby")))
    assert.is_truthy(assert(tcp:receive("*l")):match("^HTTP/1.1 101"))
    clients[#clients + 1] = { disconnect = function() tcp:close() end }
    local a, b, c = join("lobby"), join("lobby"), join("lobby")
    assert(eventually(function() return member_count("lobby") == 4 end))

    -- a sends 64 KiB lines (masked with a zero key: the bytes go as they
    -- are) and a, b and c read each one, until a's loop stops delivering:
    -- it waits on the slow member.
    local line = string.rep("x", 65536)
    local frame = "\x81\xff" .. string.pack(">I8", #line) .. "\0\0\0\0" .. line
    local readers = { a, b, c }
    local held
    for _ = 1, 400 do                         -- 25 MiB at most
      assert(a:send_raw(frame))
      for _, m in ipairs(readers) do
        -- After one reader waited in vain, the line is not coming: whoever
        -- was served before the slow member has had it for a second.
        m.conn:settimeout(held and 0.2 or 1)
        if not m:read_message() then held = true end
      end
      if held then break end
    end
    assert.is_true(held, "the slow member never filled up")
    for _, m in ipairs(readers) do
      assert.are.equal("", m.conn.buf, "a line arrived in part")
    end

    -- c's lines still reach everyone else, at once and in order.
    for _, m in ipairs(readers) do m.conn:settimeout(2) end
    for i = 1, 3 do
      c:send_frame(TEXT, "still moving " .. i)
      for _, m in ipairs(readers) do
        local msg = m:read_message()
        assert.is_truthy(msg, "a line from c did not arrive")
        assert.is_truthy(msg.payload:match("^m%d+: still moving " .. i .. "$"), msg.payload:sub(1, 40))
      end
    end
  end)

  it("closes members with 1001 when the server shuts down", function()
    local a = join("lobby")
    assert(eventually(function() return member_count("lobby") == 1 end))
    srv:signal("TERM")
    local f = assert(a:read_message())
    assert.are.equal(CLOSE, f.opcode)
    assert.are.equal(1001, ws.close_code(f.payload))
    a:send_frame(CLOSE, ws.u16(1001))
    assert.is_true(a:is_closed(5))
    -- It exits by itself once the last member is gone (after_each's
    -- SIGTERM would otherwise be a second signal, during the exit).
    assert.is_true(srv:wait_exit(10))
  end)
end)
