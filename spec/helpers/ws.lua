-- A raw WebSocket client for end-to-end specs (RFC 6455, client side):
-- it sends exactly the frames it is told to (masked, any opcode, any RSV,
-- any fragmentation) and reads the server's frames one by one.
--
--   local ws = require("helpers.ws")
--   local c, res = ws.connect(port, "/", { protocols = "chat", extensions = "permessage-deflate" })
--   c:send_frame(1, "hello")                 -- opcode, payload [, fin, rsv, mask]
--   local f = c:read_frame()                 -- { fin, rsv, opcode, payload }
--   c:close(1000)

local http = require("helpers.http")

local M = {}

local Client = {}
Client.__index = Client

M.KEY = "dGhlIHNhbXBsZSBub25jZQ=="
M.ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

-- The handshake request (for specs that want to change it).
function M.request(path, opts)
  opts = opts or {}
  local lines = {
    "GET " .. (path or "/") .. " HTTP/1.1",
    "Host: 127.0.0.1",
    "Upgrade: " .. (opts.upgrade or "websocket"),
    "Connection: " .. (opts.connection or "Upgrade"),
    "Sec-WebSocket-Key: " .. (opts.key or M.KEY),
    "Sec-WebSocket-Version: " .. (opts.version or "13"),
  }
  if opts.protocols then lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. opts.protocols end
  if opts.extensions then lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. opts.extensions end
  for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Connects and upgrades; returns the client and the 101 response, or nil,
-- the response (another status), or nil, err.
function M.connect(port, path, opts)
  local conn = assert(http.connect(port))
  conn:send(M.request(path, opts))
  local res, err = conn:read_response({ method = "HEAD" })   -- no body either way
  if not res then return nil, err end
  if res.status ~= 101 then
    return nil, res, conn
  end
  return setmetatable({ conn = conn }, Client), res
end

local function u16(n) return string.char(n >> 8 & 255, n & 255) end
local function u64(n)
  local t = {}
  for i = 7, 0, -1 do t[#t + 1] = string.char(n >> (8 * i) & 255) end
  return table.concat(t)
end

local function xor(payload, mask)
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(payload:byte(i) ~ mask:byte((i - 1) % 4 + 1))
  end
  return table.concat(out)
end
M.xor = xor

-- The bytes of a client frame.  opts: fin (default true), rsv (bits 1..7,
-- as the 0x70 nibble >> 4), mask (4 bytes; default fixed), nomask.
function M.frame(opcode, payload, opts)
  opts = opts or {}
  local fin = opts.fin == nil or opts.fin
  local b1 = (fin and 0x80 or 0) | ((opts.rsv or 0) << 4) | opcode
  local n = #payload
  local head
  local maskbit = opts.nomask and 0 or 0x80
  if n < 126 then
    head = string.char(b1, maskbit | n)
  elseif n < 65536 then
    head = string.char(b1, maskbit | 126) .. u16(n)
  else
    head = string.char(b1, maskbit | 127) .. u64(n)
  end
  if opts.nomask then return head .. payload end
  local mask = opts.mask or "\1\2\3\4"
  return head .. mask .. xor(payload, mask)
end

function Client:send_raw(bytes)
  return self.conn:send(bytes)
end

function Client:send_frame(opcode, payload, opts)
  return self.conn:send(M.frame(opcode, payload or "", opts))
end

-- Reads one server frame: { fin, rsv, opcode, payload, masked }, or nil, err.
function Client:read_frame()
  local h, err = self.conn:read_exact(2)
  if not h then return nil, err end
  local b1, b2 = h:byte(1, 2)
  local f = { fin = b1 & 0x80 ~= 0, rsv = (b1 >> 4) & 7, opcode = b1 & 15,
              masked = b2 & 0x80 ~= 0 }
  local n = b2 & 127
  if n == 126 then
    local e = assert(self.conn:read_exact(2))
    n = e:byte(1) << 8 | e:byte(2)
  elseif n == 127 then
    local e = assert(self.conn:read_exact(8))
    n = 0
    for i = 1, 8 do n = n << 8 | e:byte(i) end
  end
  local mask = f.masked and assert(self.conn:read_exact(4)) or nil
  local payload, perr = self.conn:read_exact(n)
  if not payload then return nil, perr end
  f.payload = mask and xor(payload, mask) or payload
  return f
end

-- Reads a whole message (fragments joined; pongs skipped unless asked).
function Client:read_message()
  local parts, op
  while true do
    local f, err = self:read_frame()
    if not f then return nil, err end
    if f.opcode >= 8 then
      if f.opcode ~= 0xA then return f end     -- close or ping: give it back
    else
      op = op or f.opcode
      parts = parts or {}
      parts[#parts + 1] = f.payload
      if f.fin then return { opcode = op, payload = table.concat(parts), rsv = f.rsv } end
    end
  end
end

-- The close code of a close frame's payload (nil when empty).
function M.close_code(payload)
  if #payload < 2 then return nil end
  return payload:byte(1) << 8 | payload:byte(2)
end

-- Sends a close frame and reads until the server's close; returns its code.
function Client:close(code, reason)
  local payload = code and (u16(code) .. (reason or "")) or ""
  self:send_frame(8, payload)
  while true do
    local f = self:read_frame()
    if not f then return nil end
    if f.opcode == 8 then return M.close_code(f.payload) or 1005, f.payload:sub(3) end
  end
end

function Client:is_closed(timeout)
  return self.conn:is_closed(timeout)
end

function Client:disconnect()
  self.conn:close()
end

M.u16 = u16
return M
