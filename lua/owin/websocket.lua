-- owin.websocket: the adapter a user reaches for (what ASP.NET Core's
-- context.WebSockets gives .NET), over the server's WebSocket engine.
--
--   local websocket = require("owin.websocket")
--   if websocket.is_request(env) then
--     local ws = websocket.accept(env, { protocol = "chat" })  -- 101 now
--     for msg, kind in ws:messages() do ws:send(msg, kind) end
--     ws:close(1000)
--   end
--
-- Every call that waits (receive, send under back-pressure, close) yields
-- the calling coroutine.  One coroutine may wait in receive while others
-- send on the same socket.

-- The C core when running in the owinlua server; other hosts (owin.test)
-- put their own accept in the env under "owinlua.AcceptNow".
local ok_core, core = pcall(require, "owin.core")
if not ok_core then core = nil end

local setmetatable, getmetatable, type, error = setmetatable, getmetatable, type, error

local TEXT, BINARY, CLOSE = 1, 2, 8
local KINDS = { text = TEXT, binary = BINARY }
local NAMES = { [TEXT] = "text", [BINARY] = "binary" }

local M = {}

local WebSocket = {}
WebSocket.__index = WebSocket

-- True when env is a valid WebSocket upgrade request.
function M.is_request(env)
  return env["websocket.Accept"] ~= nil
end

-- Answers 101 now and returns the socket.  opts.protocol: the subprotocol
-- to use (it must be one the client offered); opts.protocols: the server's
-- list in order of preference (the first the client offered is used).
function M.accept(env, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'accept' (table expected, got " .. type(opts) .. ")", 2)
  end
  local accept_now = env["owinlua.AcceptNow"] or (core and core.ws_accept)
  if not accept_now then error("owin.websocket: this host has no WebSocket support", 2) end
  -- The server's accept returns the subprotocol it sent (false: none);
  -- another host's may not, and then its response headers tell.
  local sock, proto = accept_now(env, opts.protocol or opts.protocols)
  if proto == nil then
    local h = env["owin.ResponseHeaders"]["Sec-WebSocket-Protocol"]
    proto = h and h[1]
  end
  return setmetatable({ sock = sock, protocol = proto or nil }, WebSocket)
end

-- ws:receive() -> message, "text"|"binary"; once closed: nil, "closed",
-- close code (1006 when the connection dropped), reason.
function WebSocket:receive()
  local data, op, code, reason = self.sock:receive()
  if data == nil then return nil, "closed", code, reason end
  return data, NAMES[op]
end

-- for msg, kind in ws:messages() do ... end  (ends when the socket closes)
function WebSocket:messages()
  local sock = self.sock
  return function()
    local data, op = sock:receive()
    if data == nil then return nil end
    return data, NAMES[op]
  end
end

-- ws:send(data [, "text"|"binary"]) -> ws, or nil, err, code
function WebSocket:send(data, kind)
  local op = KINDS[kind or "text"]
  if not op then
    error("bad argument #2 to 'send' (\"text\" or \"binary\" expected, got " .. tostring(kind) .. ")", 2)
  end
  local ok, err, code = self.sock:send(data, op)
  if not ok then return nil, err, code end
  return self
end

function WebSocket:ping(data)
  local ok, err, code = self.sock:ping(data)
  if not ok then return nil, err, code end
  return self
end

-- ws:close([code [, reason]]): close handshake, then the connection closes.
function WebSocket:close(code, reason)
  return self.sock:close(code or 1000, reason or "")
end

-- "open", "closing" or "closed"
function WebSocket:state()
  return self.sock:state()
end

-- The socket's CallCancelled token (fires when the connection drops or
-- the server shuts down).
function WebSocket:cancelled()
  return self.sock:cancelled()
end

-- local ws <close> = websocket.accept(env): the close handshake starts at
-- the end of the scope (1000; 1011 when the scope ends with an error).
function WebSocket:__close(err)
  local mt = getmetatable(self.sock)
  local tbc = type(mt) == "table" and mt.__close
  if tbc then return tbc(self.sock, err) end      -- the server's: no wait
  if self.sock:state() == "open" then self.sock:close(err == nil and 1000 or 1011, "") end
end

M.TEXT, M.BINARY, M.CLOSE = TEXT, BINARY, CLOSE
return M
