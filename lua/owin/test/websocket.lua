-- owin.test.websocket: WebSockets and opaque upgrades in the test host.
--
-- A socket (what the app holds) and a conversation (what the test holds)
-- are two ends of one in-process connection; whole messages pass between
-- them, no frames.  The server side follows src/http/websocket.c: the close
-- handshake and its codes (the peer's code echoed, 1000 for none, 1006 for
-- a dropped connection, 1011 after an app error), a close answered only
-- once the app has taken the messages before it, a close timeout,
-- CallCancelled fired when the connection closes, UTF-8 checks of text
-- (1007), the message size limit (1009), EPIPE once closed, and several
-- coroutines waiting on one socket.  The test side answers a server's close
-- at once, as browsers do.

local hcheck = require("owin.host.check")
hcheck.own(debug.getinfo(1, "S").source)
local util = require("owin.test.util")
local token = require("owin.host.token")
local loop_m = require("owin.test.loop")

local type, setmetatable, getmetatable, tostring, select, math_type =
  type, setmetatable, getmetatable, tostring, select, math.type
local string_pack, string_unpack, string_rep, table_concat =
  string.pack, string.unpack, string.rep, table.concat
local utf8_len = utf8.len
local raise, tostr, typeerror, argerror = hcheck.raise, hcheck.tostr, hcheck.typeerror,
  hcheck.argerror
local failure, fire = util.failure, token.fire

local M = {}

local TEXT, BINARY, CONT, CLOSE = 1, 2, 0, 8
local NO_STATUS, ABNORMAL = 1005, 1006

-- {====== the handshake: Sec-WebSocket-Accept = base64(SHA-1(key .. GUID))

local function sha1(msg)
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local ml = #msg * 8
  msg = msg .. "\128" .. string_rep("\0", (55 - #msg) % 64) .. string_pack(">I8", ml)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do w[i] = string_unpack(">I4", msg, chunk + i * 4) end
    for i = 16, 79 do
      local x = w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16]
      w[i] = ((x << 1) | (x >> 31)) & 0xffffffff
    end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then
        f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then
        f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else
        f, k = b ~ c ~ d, 0xCA62C1D6
      end
      local temp = ((((a << 5) | (a >> 27)) & 0xffffffff) + (f & 0xffffffff) + e + k + w[i])
                   & 0xffffffff
      e, d, c, b, a = d, c, ((b << 30) | (b >> 2)) & 0xffffffff, a, temp
    end
    h0, h1 = (h0 + a) & 0xffffffff, (h1 + b) & 0xffffffff
    h2, h3, h4 = (h2 + c) & 0xffffffff, (h3 + d) & 0xffffffff, (h4 + e) & 0xffffffff
  end
  return string_pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end
M.sha1 = sha1

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local q = {}
    for j = 1, 4 do
      local v = (n >> (6 * (4 - j))) & 63
      q[j] = B64:sub(v + 1, v + 1)
    end
    if c == nil then q[4] = "=" end
    if b == nil then q[3] = "=" end
    out[#out + 1] = table_concat(q)
  end
  return table_concat(out)
end
M.base64 = base64

function M.accept_key(key)
  key = key:match("^[ \t]*(.-)[ \t]*$")
  return base64(sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
end

-- A Sec-WebSocket-Key of 16 bytes in base64.
function M.key_valid(key)
  key = key:match("^[ \t]*(.-)[ \t]*$")
  return #key == 24 and key:sub(23) == "==" and not key:sub(1, 22):find("[^%w+/]")
end

-- RFC 6455 7.4 codes a peer may send and an app may use.
local function close_valid(code)
  return math_type(code) == "integer" and ((code >= 1000 and code <= 1003) or
    (code >= 1007 and code <= 1014) or (code >= 3000 and code <= 4999))
end
-- }======

-- {====== the server side

local Sock = { __name = "owinlua.WebSocket" }
local sock_methods = {}
Sock.__index = sock_methods

local Raw = { __name = "owinlua.OpaqueStream" }
local raw_methods = {}
Raw.__index = raw_methods

-- Wakes every task waiting on s; each looks again at its state.
local function wake(s)
  local waiters = s.waiters
  s.waiters = {}
  for i = 1, #waiters do
    local t = waiters[i]
    if t.wait == "ws" then s.loop:wake(t) end
  end
end

-- Yields the running task until s changes (any task may wait on a socket).
local function wait(s)
  local t = loop_m.current()
  if t == nil then raise("a WebSocket can only wait inside a request's coroutine") end
  t = loop_m.waiter("websocket")
  s.waiters[#s.waiters + 1] = t
  return s.loop:wait(t, "ws")
end

-- The connection closed: CallCancelled fires, waiting tasks wake.
local function detach(s)
  if not s.open then return end
  s.open = false
  if s.timer then s.timer.fn = nil end
  if not s.close_rcvd then s.client_code = ABNORMAL end
  s.close_rcvd = true
  s.conv:_closed()
  fire(s.token)
  wake(s)
end

local function send_close(s, code, reason)
  if s.close_sent or s.raw then return end
  s.close_sent = true
  s.conv:_frame(CLOSE, true, nil, code, reason or "")
end

-- Answers the peer's close (its code echoed) and closes after it.
local function reply_close(s)
  local code = s.client_code
  send_close(s, (code == NO_STATUS or code == ABNORMAL) and 1000 or code)
  s.close_after = true
end

local function on_close_timer(s)
  s.timer = nil
  if not s.open then return end
  if s.close_rcvd and not s.close_sent then reply_close(s) end
  detach(s)                          -- no close came back in time
end

-- After any change: close once both closes went, or start the close timer.
local function settle(s)
  if not s.open then return end
  if s.close_after and (s.close_rcvd or s.raw) then
    detach(s)
    return
  end
  if (s.close_sent or s.close_rcvd) and s.timer == nil then
    s.timer = s.loop:after(s.opts.ws_close_timeout, function() on_close_timer(s) end)
  end
end

-- Fails the connection (RFC 6455 7.1.7) with code.
local function fail(s, code)
  send_close(s, code)
  s.close_rcvd = true
  s.client_code = ABNORMAL
  s.close_after = true
  wake(s)
  settle(s)
end

-- Makes the socket of an upgraded request; raw: an opaque stream.
-- conv: the test side, made here too.
function M.new(loop, opts, raw)
  local s = setmetatable({ loop = loop, opts = opts, raw = raw, open = true, inq = {}, ih = 1, it = 0,
                           rawin = "", waiters = {}, token = token.new(), out_op = 0,
                           client_code = NO_STATUS, reason = "" }, raw and Raw or Sock)
  if raw then
    s.env = { ["opaque.Stream"] = s, ["opaque.Version"] = "1.0",
              ["opaque.CallCancelled"] = s.token }
  else
    s.env = M.raw_env(s)
  end
  s.conv = M.conversation(s, raw)
  return s
end

-- The app is done with the socket: close it with code if still open.
function M.finish(s, code)
  if not s.open then return end
  if s.raw then
    s.close_after = true
  elseif s.close_rcvd then
    reply_close(s)
  else
    send_close(s, code)
  end
  settle(s)
end

-- Graceful shutdown: close 1001 to the peer, CallCancelled to the app.
function M.shutdown(s)
  if not s.open or s.shutting then return end
  s.shutting = true
  if s.raw then return detach(s) end
  send_close(s, 1001, "server shutting down")
  fire(s.token)
  wake(s)
  settle(s)
end

local function receive(s, raw_shape)
  while true do
    local m = s.inq[s.ih]
    if m then
      s.inq[s.ih] = nil
      s.ih = s.ih + 1
      settle(s)
      if raw_shape then return m[2], m[1], true end
      return m[2], m[1]
    end
    if s.close_rcvd or not s.open then break end
    wait(s)
  end
  if s.open and not s.close_sent then
    reply_close(s)                   -- the app has seen everything
    settle(s)
  end
  if raw_shape then
    s.env["websocket.ClientCloseStatus"] = s.client_code
    s.env["websocket.ClientCloseDescription"] = s.reason
    return "", CLOSE, true
  end
  return nil, CLOSE, s.client_code, s.reason
end

local function check(s, mt)
  if getmetatable(s) ~= mt then typeerror(1, mt.__name, s) end
  return s
end

-- ws:receive() -> data, opcode; once closed nil, 8, code, reason
function sock_methods.receive(s)
  check(s, Sock)
  return receive(s, false)
end

-- ws:send(data [, opcode [, fin]]) -> ws, or nil, err, code
function sock_methods.send(s, data, opcode, fin)
  check(s, Sock)
  data = tostr(data) or typeerror(2, "string", data)
  if opcode == nil then opcode = TEXT end
  if math_type(opcode) ~= "integer" or (opcode ~= TEXT and opcode ~= BINARY and opcode ~= CONT) then
    argerror(3, "1 (text), 2 (binary) or 0 (continuation)")
  end
  fin = fin == nil or fin and true or false
  if not s.open or s.close_sent then return failure("EPIPE", "the WebSocket is closed") end
  if s.out_op ~= 0 and opcode ~= CONT then opcode = CONT end
  if opcode == CONT and s.out_op == 0 then
    raise("cannot send this frame now (a fragmented message is open?)")
  end
  if fin then s.out_op = 0 elseif opcode ~= CONT then s.out_op = opcode end
  s.conv:_frame(opcode, fin, data)
  return s
end

function sock_methods.ping(s, data)
  check(s, Sock)
  data = data == nil and "" or tostr(data) or typeerror(2, "string", data)
  if #data > 125 then argerror(2, "a ping carries at most 125 bytes") end
  if not s.open or s.close_sent then return failure("EPIPE", "the WebSocket is closed") end
  s.conv.pings = (s.conv.pings or 0) + 1   -- the test side answers pongs itself
  return s
end

-- ws:close([code [, reason]]) -> true, after the peer's close (or the
-- close timeout).
local function close(s, code, reason)
  if code == nil then code = 1000 end
  if not close_valid(code) then
    argerror(2, "a close code RFC 6455 allows (1000-1003, 1007-1014, 3000-4999)")
  end
  reason = reason == nil and "" or tostr(reason) or typeerror(3, "string", reason)
  if #reason > 123 then argerror(3, "a close reason has at most 123 bytes") end
  if not s.open then return true end
  if s.raw then
    s.close_after = true
    settle(s)
    return true
  end
  send_close(s, code, reason)
  settle(s)
  if loop_m.can_wait() == nil then return true end
  while s.open and not s.close_rcvd do wait(s) end
  detach(s)
  return true
end

function sock_methods.close(s, code, reason)
  check(s, Sock)
  return close(s, code, reason)
end

local function state(s)
  if not s.open then return "closed" end
  if s.close_sent or s.close_rcvd then return "closing" end
  return "open"
end

function sock_methods.state(s) return state(check(s, Sock)) end
function sock_methods.cancelled(s) return check(s, Sock).token end
function sock_methods.env(s) return check(s, Sock).env end

-- The raw OWIN websocket env (OWIN WebSocket extension 0.3).
function M.raw_env(s)
  return {
    ["websocket.SendAsync"] = function(data, kind, fin)
      if kind == nil then kind = TEXT end
      if kind == CLOSE then return close(s, 1000, "") end
      return sock_methods.send(s, data, kind, fin)
    end,
    ["websocket.ReceiveAsync"] = function() return receive(s, true) end,
    ["websocket.CloseAsync"] = function(status, description)
      return close(s, status == nil and 1000 or status, description)
    end,
    ["websocket.Version"] = "1.0",
    ["websocket.CallCancelled"] = s.token,
    ["owinlua.WebSocket"] = s,
  }
end

-- opaque.Stream: read([n]) -> bytes, or nil once closed
function raw_methods.read(s, n)
  check(s, Raw)
  if n == nil then n = 65536 end
  if math_type(n) ~= "integer" then typeerror(2, "number", n) end
  if n <= 0 then argerror(2, "byte count must be positive") end
  while true do
    if #s.rawin > 0 then
      local out = s.rawin:sub(1, n)
      s.rawin = s.rawin:sub(n + 1)
      return out
    end
    if not s.open then return nil end
    wait(s)
  end
end

function raw_methods.write(s, ...)
  check(s, Raw)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local str = tostr(v) or typeerror(i + 1, "string", v)
    if not s.open then return failure("EPIPE", "the connection is closed") end
    s.conv:_bytes(str)
  end
  if not s.open then return failure("EPIPE", "the connection is closed") end
  return s
end

function raw_methods.close(s, code, reason)
  check(s, Raw)
  return close(s, code, reason)
end

function raw_methods.state(s) return state(check(s, Raw)) end
function raw_methods.cancelled(s) return check(s, Raw).token end
-- }======

-- {====== the test side

local Conv = {}
Conv.__index = Conv

local OpaqueConv = {}
OpaqueConv.__index = OpaqueConv

function M.conversation(s, raw)
  return setmetatable({ sock = s, loop = s.loop, opts = s.opts, inbox = {}, ih = 1,
                        closed = false }, raw and OpaqueConv or Conv)
end

-- From the server: a frame (data, or a close with code and reason).
function Conv:_frame(op, fin, data, code, reason)
  if op == CLOSE then
    self.got_close = true
    self.inbox[#self.inbox + 1] = { CLOSE, code = code, reason = reason }
    if not self.close_sent then    -- answer at once, echoing the code
      self.loop:defer(function() self:_send_close(code, "") end)
    end
    return
  end
  if op ~= CONT then self.partial = { op } end
  local p = self.partial
  p[#p + 1] = data
  if fin then
    self.partial = nil
    self.inbox[#self.inbox + 1] = { p[1], table_concat(p, "", 2) }
  end
end

function Conv:_closed()
  self.closed = true
end

function Conv:_send_close(code, reason)
  if self.close_sent or self.closed then return end
  self.close_sent = true
  local s = self.sock
  if not s.open or s.close_rcvd then return end
  if code ~= nil and not close_valid(code) then return fail(s, 1002) end
  if reason and reason ~= "" and not utf8_len(reason) then return fail(s, 1007) end
  s.close_rcvd = true
  s.client_code = code or NO_STATUS
  s.reason = reason or ""
  if s.inq[s.ih] == nil then reply_close(s) end
  wake(s)
  settle(s)
end

local function settle_loop(self)
  self.loop:run(nil, self.loop.now)
end

local KINDS = { text = TEXT, binary = BINARY, [TEXT] = TEXT, [BINARY] = BINARY }

-- conv:send(data [, "text"|"binary"]) -> conv, or nil, "closed"
function Conv:send(data, kind)
  local op = KINDS[kind or "text"]
  if op == nil then
    error("bad argument #2 to 'send' (\"text\" or \"binary\" expected, got " .. tostring(kind) .. ")", 2)
  end
  if type(data) ~= "string" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  if self.close_sent or self.closed then return nil, "closed" end
  local s = self.sock
  if s.open and not s.close_rcvd then
    if op == TEXT and not utf8_len(data) then
      fail(s, 1007)
    elseif #data > self.opts.ws_max_message then
      fail(s, 1009)
    else
      s.it = s.it + 1
      s.inq[s.it] = { op, data }
      wake(s)
    end
  end
  settle_loop(self)
  return self
end

-- conv:receive([timeout]) -> data, "text"|"binary"; nil, "closed", code,
-- reason once the server closed; nil, "timeout" when nothing came within
-- timeout virtual seconds (default: the client's timeout).
function Conv:receive(timeout)
  local inbox = self.inbox
  local function ready() return inbox[self.ih] ~= nil or self.closed end
  if not ready() then
    self.loop:run(ready, self.loop.now + (timeout or self.opts.timeout))
  end
  local item = inbox[self.ih]
  if item == nil then
    if self.closed then return nil, "closed", ABNORMAL, "" end
    return nil, "timeout"
  end
  if item[1] == CLOSE then return nil, "closed", item.code or NO_STATUS, item.reason end
  self.ih = self.ih + 1
  return item[2], item[1] == TEXT and "text" or "binary"
end

-- for msg, kind in conv:messages() do ... end   (until closed or timeout)
function Conv:messages(timeout)
  return function()
    local data, kind = self:receive(timeout)
    if data == nil then return nil end
    return data, kind
  end
end

-- conv:close([code [, reason]]) -> the server's close code and reason
-- (nil when none came), after the connection closed.
function Conv:close(code, reason)
  if code == nil then code = 1000 end
  self:_send_close(code, reason or "")
  self.loop:run(function() return self.closed end,
    self.loop.now + self.opts.ws_close_timeout + 1)
  for i = self.ih, #self.inbox do
    local item = self.inbox[i]
    if item[1] == CLOSE then return item.code or NO_STATUS, item.reason end
  end
  return nil
end

-- conv:disconnect(): the connection drops without a close frame (1006).
function Conv:disconnect()
  detach(self.sock)
  settle_loop(self)
end

-- conv:ping([data]) -> data (the server's automatic pong), or nil, "closed"
function Conv:ping(data)
  if self.closed then return nil, "closed" end
  return data or ""
end

function Conv:state()
  if self.closed then return "closed" end
  if self.close_sent or self.got_close then return "closing" end
  return "open"
end

-- The opaque stream's test side: bytes both ways.
function OpaqueConv:_bytes(str)
  self.inbox[#self.inbox + 1] = str
end

function OpaqueConv:_closed()
  self.closed = true
end

-- oconv:send(bytes) -> oconv, or nil, "closed"
function OpaqueConv:send(bytes)
  if type(bytes) ~= "string" then
    error("bad argument #1 to 'send' (string expected, got " .. type(bytes) .. ")", 2)
  end
  if self.closed then return nil, "closed" end
  local s = self.sock
  s.rawin = s.rawin .. bytes
  wake(s)
  settle_loop(self)
  return self
end

-- oconv:receive([timeout]) -> the bytes the app wrote since the last call;
-- nil, "closed" once closed and read; nil, "timeout"
function OpaqueConv:receive(timeout)
  local function ready() return self.inbox[self.ih] ~= nil or self.closed end
  if not ready() then
    self.loop:run(ready, self.loop.now + (timeout or self.opts.timeout))
  end
  if self.inbox[self.ih] == nil then
    if self.closed then return nil, "closed" end
    return nil, "timeout"
  end
  local out = table_concat(self.inbox, "", self.ih)
  self.inbox, self.ih = {}, 1
  return out
end

-- oconv:close(): the client closes the connection.
function OpaqueConv:close()
  detach(self.sock)
  settle_loop(self)
  return true
end

function OpaqueConv:state()
  return self.closed and "closed" or "open"
end
-- }======

return M
