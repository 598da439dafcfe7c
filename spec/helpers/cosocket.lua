-- A scripted stand-in for the server's cosockets (owin.tcp), for unit specs
-- of Lua code that talks to the network: no server, no waits.  It keeps to
-- the contract of the real ones where a client could tell: every failure
-- is nil, err; a socket given to setkeepalive or closed answers "closed"
-- afterwards; setkeepalive refuses a connection with unread bytes
-- ("connection in dubious state", and closes it); connect takes an idle
-- pooled connection of the same pool first.
--
--   local cosocket = require("helpers.cosocket")
--   local net = cosocket.new()
--   net:listen("127.0.0.1", 8080, function(request, conn)
--     return { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" }
--   end)
--   owin.tcp = net.tcp
--   ... net.connects, net.conns[i].sent, net:idle(pool) ...
--
-- A handler runs when the client first receives after sending: it gets
-- the bytes sent since the last answer and the connection, and returns
-- what the client will receive, in order: strings (each one receive; one
-- longer than the client asks for is cut), cosocket.CLOSE (the peer closes:
-- every later receive is nil, "closed") or { err = "timeout" } (one
-- receive fails so).  conn.send_error, when set, fails the next send.

local M = {}

M.CLOSE = setmetatable({}, { __tostring = function() return "CLOSE" end })

local Net = {}
Net.__index = Net

local Sock = {}
Sock.__index = Sock

-- data as send takes it: a string, a number or a (nested) array of them
local function flatten(data, out)
  local t = type(data)
  if t == "string" or t == "number" then
    out[#out + 1] = tostring(data)
  elseif t == "table" then
    for i = 1, #data do flatten(data[i], out) end
  else
    error("bad argument #1 to 'send' (string, number or array expected, got " .. t .. ")", 3)
  end
  return out
end

function M.new()
  local net = setmetatable({ servers = {}, pools = {}, conns = {}, connects = 0, log = {} }, Net)
  net.tcp = function()
    return setmetatable({ net = net, timeouts = {} }, Sock)
  end
  return net
end

-- Serves host:port with handler(request, conn) -> list of replies; tls:
-- the server accepts sslhandshake (recorded in net.handshakes).
function Net:listen(host, port, handler, tls)
  self.servers[host .. ":" .. port] = handler
  self.tls = self.tls or {}
  self.tls[host .. ":" .. port] = tls or nil
end

-- The idle connections of a pool (a list).
function Net:idle(pool)
  return self.pools[pool] or {}
end

-- Every idle pooled connection is closed by its peer: the next client to
-- take one sees "closed" (in send when how is "send", else in receive).
function Net:drop_idle(how)
  for _, list in pairs(self.pools) do
    for _, conn in ipairs(list) do
      conn.peer_closed = true
      conn.queue = { M.CLOSE }
      if how == "send" then conn.send_error = "closed" end
    end
  end
end

function Sock:settimeouts(c, s, r)
  self.timeouts = { c, s, r }
  return 1
end

function Sock:connect(host, port, opts)
  local net = self.net
  local pool = opts and opts.pool or (host .. ":" .. port)
  net.log[#net.log + 1] = "connect " .. host .. ":" .. port
  local idle = net.pools[pool]
  if idle and #idle > 0 then
    self.conn = table.remove(idle, 1)
    self.conn.reused = self.conn.reused + 1
    self.conn.state = "open"
    self.conn.timeouts = self.timeouts
    return 1
  end
  local handler = net.servers[host .. ":" .. port]
  if not handler then return nil, "connection refused" end
  net.connects = net.connects + 1
  local conn = { id = net.connects, handler = handler, pool = pool, sent = "", unanswered = "",
                 addr = host .. ":" .. port,
                 queue = {}, reused = 0, state = "open", timeouts = self.timeouts }
  net.conns[#net.conns + 1] = conn
  self.conn = conn
  return 1
end

-- A handshake succeeds against a server listening with tls; the options
-- are recorded for the spec to look at.
function Sock:sslhandshake(opts)
  local net = self.net
  net.handshakes = net.handshakes or {}
  net.handshakes[#net.handshakes + 1] = opts
  if not (net.tls and net.tls[self.conn.addr]) then
    self.conn = nil
    return nil, "wrong version number"
  end
  self.conn.tls = true
  return true
end

function Sock:sslsession()
  return self.conn and self.conn.tls and "session" .. self.conn.id or nil
end

function Sock:getreusedtimes()
  if not self.conn then return nil, "closed" end
  return self.conn.reused
end

function Sock:send(data)
  local conn = self.conn
  if not conn then return nil, "closed" end
  local s = table.concat(flatten(data, {}))
  if conn.send_error then
    local err = conn.send_error
    conn.send_error = nil
    return nil, err, 0
  end
  conn.sent = conn.sent .. s
  conn.unanswered = conn.unanswered .. s
  return #s
end

function Sock:receiveany(max)
  local conn = self.conn
  if not conn then return nil, "closed" end
  assert(math.type(max) == "integer" and max > 0, "receiveany needs a size")
  if #conn.queue == 0 and conn.unanswered ~= "" and not conn.peer_closed then
    local request = conn.unanswered
    conn.unanswered = ""
    local replies = conn.handler(request, conn) or {}
    for _, r in ipairs(replies) do conn.queue[#conn.queue + 1] = r end
  end
  local r = conn.queue[1]
  if r == nil then
    if conn.peer_closed then return nil, "closed" end
    return nil, "timeout"                       -- the real one would wait
  end
  if r == M.CLOSE then
    conn.peer_closed = true
    return nil, "closed"
  end
  if type(r) == "table" then
    table.remove(conn.queue, 1)
    return nil, r.err
  end
  if #r > max then
    conn.queue[1] = r:sub(max + 1)
    return r:sub(1, max)
  end
  table.remove(conn.queue, 1)
  return r
end

function Sock:setkeepalive(idle, size)
  local conn = self.conn
  if not conn then return nil, "closed" end
  self.conn = nil
  local pending = conn.queue[1]
  if (pending ~= nil and pending ~= M.CLOSE) or conn.peer_closed then
    conn.state = "closed"
    return nil, "connection in dubious state"
  end
  if pending == M.CLOSE then conn.peer_closed = true end   -- its FIN is on the way
  conn.state = "idle"
  conn.keepalive = { idle, size }
  local list = self.net.pools[conn.pool] or {}
  self.net.pools[conn.pool] = list
  list[#list + 1] = conn
  return 1
end

function Sock:close()
  local conn = self.conn
  if not conn then return nil, "closed" end
  self.conn = nil
  conn.state = "closed"
  return 1
end

return M
