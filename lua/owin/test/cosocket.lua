-- owin.test.cosocket: owin.tcp() and owin.resolve(name) in the test host.
-- A socket has the server's cosocket API (src/client/cosock.c, and the
-- connect of lua/owin/init.lua) but its other end is a peer the test
-- registered (client:peer): a function run as a task per accepted
-- connection, with a socket of the same API.  Bytes go through in-memory
-- queues; timeouts run on the virtual clock.  Names resolve from the
-- client's table of hosts (client:hosts).
--
-- What differs from the server: sends never wait (the queues have no
-- limit, so "socket busy writing" and send timeouts do not happen), a
-- connect takes no time unless the peer says so (its `delay`), and
-- sending to a peer that closed fails at once with "closed".

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local loop_m = require("owin.test.loop")
local runtime = require("owin.test.runtime")

local type, tostring, tonumber, setmetatable, getmetatable, rawget, rawlen, ipairs, pairs =
  type, tostring, tonumber, setmetatable, getmetatable, rawget, rawlen, ipairs, pairs
local math_tointeger, math_min, string_format, table_concat, table_remove =
  math.tointeger, math.min, string.format, table.concat, table.remove
local raise, typeerror, argerror = check.raise, check.typeerror, check.argerror
local remove = runtime.remove

local M = {}

local DEFAULT_TIMEOUT = 60        -- seconds, per operation
local POOL_SIZE = 30

-- {====== addresses

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

-- Groups of 1 to 4 hex digits separated by ":" -> their count, or nil.
local function groups(s)
  if s == "" then return 0 end
  local n = 0
  for g in (s .. ":"):gmatch("([^:]*):") do
    if not g:find("^%x%x?%x?%x?$") then return nil end
    n = n + 1
  end
  return n
end

local function ipv6(s)
  if not s:find(":", 1, true) or s:find("[^%x:%.]") then return false end
  local tail = s:match(":([%d%.]+)$")
  if tail and tail:find(".", 1, true) then      -- an IPv4 tail counts as two groups
    if not ipv4(tail) then return false end
    s = s:sub(1, #s - #tail) .. "0:0"
  end
  local a, b = s:match("^(.-)::(.*)$")
  if a then
    if b:find("::", 1, true) then return false end
    local na, nb = groups(a), groups(b)
    return na ~= nil and nb ~= nil and na + nb <= 7
  end
  return groups(s) == 8
end

-- Is s an IPv4 or IPv6 address (not a name)?
function M.is_ip(s)
  return type(s) == "string" and (ipv4(s) or ipv6(s))
end

local function addr_key(ip, port)
  return ip:lower() .. "|" .. port
end
-- }======

-- {====== names

-- owin.resolve(name) -> { "ip", ... }, or nil, err: IP literals as they
-- are, other names from the client's hosts table.
function M.resolve(client, name)
  if type(name) ~= "string" and type(name) ~= "number" then typeerror(1, "string", name) end
  name = tostring(name)
  if #name == 0 or #name >= 254 or name:find("\0", 1, true) then argerror(1, "not a host name") end
  if M.is_ip(name) then return { name } end
  local task = loop_m.current()
  if task and runtime.refused(task) then return nil, "cancelled" end
  local addrs = client.names[name:lower()]
  if not addrs then return nil, "host not found: " .. name .. " (unknown node or service)" end
  return { table.unpack(addrs) }
end

-- client:hosts{ name = "ip" | { "ip", ... } | false }: names the client
-- resolves (false removes one).
function M.set_hosts(client, map)
  if type(map) ~= "table" then raise("owin.test: client:hosts takes a table of names") end
  for name, v in pairs(map) do
    if type(name) ~= "string" or name == "" then
      raise("owin.test: client:hosts: host names are non-empty strings")
    end
    if v == false then
      client.names[name:lower()] = nil
    else
      local list = type(v) == "table" and v or { v }
      local addrs = {}
      for i, ip in ipairs(list) do
        if not M.is_ip(ip) then
          raise(string_format("owin.test: client:hosts: %s: %s is not an IP address", name,
            tostring(ip)))
        end
        addrs[i] = ip
      end
      if #addrs == 0 then raise("owin.test: client:hosts: " .. name .. " has no address") end
      client.names[name:lower()] = addrs
    end
  end
end
-- }======

-- {====== connections: two ends over in-memory queues

local function wake_reader(e)
  local r = e.reader
  if r == nil then return end
  e.reader = nil
  if e.rtimer then
    e.rtimer.fn = nil
    e.rtimer = nil
  end
  r[1].loop:wake(r[1], r[2])
end

local function scope_unlink(e)
  if e.scope then
    remove(e.scope.socks, e)
    e.scope = nil
  end
end

local function scope_link(e, sc)
  e.scope = sc
  if sc then sc.socks[#sc.socks + 1] = e end
end

local close_end

-- A connection of pool p closed or came back: a connect waiting for a
-- slot goes on.
local function wake_slot(p)
  local w = table_remove(p.waiting, 1)
  if w then
    if w.timer then w.timer.fn = nil end
    w.task.loop:wake(w.task, w.ticket)
  end
end

local function pool_release(p)
  if p.nlive > 0 then p.nlive = p.nlive - 1 end
  wake_slot(p)
end

-- e will get no more bytes (the other end closed or shut down sending).
-- An idle pooled connection is dropped then, as in the server.
local function eof(e)
  if e.closed or e.eof then return end
  e.eof = true
  if e.pooled then return close_end(e) end
  wake_reader(e)
end

-- Closes e: its object forgets it, its reader wakes (and finds it
-- closed), the other end sees the end of its input, its pool slot frees.
function close_end(e)
  if e.closed then return end
  e.closed = true
  if e.pooled then
    e.pooled = false
    remove(e.pool.idle, e)
  end
  if e.idle_timer then
    e.idle_timer.fn = nil
    e.idle_timer = nil
  end
  scope_unlink(e)
  if e.obj then
    e.obj.s = nil
    e.obj = nil
  end
  wake_reader(e)
  if e.other then eof(e.other) end
  if e.peer then remove(e.peer.conns, e) end
  local p = e.pool
  e.pool = nil
  if p then pool_release(p) end
end

-- Bytes the other end sent arrive at e.
local function deliver(e, bytes)
  if e.closed or e.rshut then return end
  if e.pooled then return close_end(e) end       -- the peer spoke to an idle connection
  e.data = e.data .. bytes
  wake_reader(e)
end

runtime.close_socks = function(sc)
  for _, e in ipairs(runtime.copy(sc.socks)) do close_end(e) end
end

local function new_end(client)
  return { client = client, data = "", eof = false, closed = false, reused = 0, options = {} }
end
-- }======

-- {====== the socket object

local TCP = { __name = "owin.TCP" }
local methods = {}
TCP.__index = methods
TCP.__tostring = function(obj)
  return string_format("owin.TCP (%s): %p", obj.s and "connected" or "closed", obj)
end

local function checkobj(obj)
  if getmetatable(obj) ~= TCP then typeerror(1, "owin.TCP", obj) end
  return obj
end

local function new_obj(client, peer_side)
  local t = peer_side and -1 or DEFAULT_TIMEOUT
  return setmetatable({ client = client, ct = t, st = t, rt = t }, TCP)
end

-- owin.tcp() -> a socket, not connected
function M.tcp(client)
  return new_obj(client, false)
end

local function attach(obj, e, task)
  obj.s = e
  e.obj = obj
  scope_link(e, task and task.scope)
end

-- The connection of obj for an operation of the running task, or nil, err
-- (closed; cancelled: the connection closes).  A socket of another
-- request or thread raises.
local function usable(obj, task)
  local s = obj.s
  if task and runtime.refused(task) then
    if s then close_end(s) end
    return nil, "cancelled"
  end
  if s == nil then return nil, "closed" end
  if s.scope and (task == nil or task.scope ~= s.scope) then
    raise("the socket belongs to another request or thread (sock:share() hands it over)")
  end
  return s
end

local function opt_integer(n, v, default)
  if v == nil then return default end
  local i = math_tointeger((type(v) == "number" or type(v) == "string") and tonumber(v) or nil)
  if i == nil then
    if type(v) == "number" then argerror(n, "number has no integer representation") end
    typeerror(n, "number", v)
  end
  return i
end

-- seconds: nil keeps `keep`; negative: none (-1)
local function opt_seconds(n, v, keep)
  if v == nil then return keep end
  local sec = (type(v) == "number" or type(v) == "string") and tonumber(v)
  if not sec then typeerror(n, "number", v) end
  if sec < 0 then return -1 end
  if sec >= 1e9 then argerror(n, "too many seconds") end
  return sec
end

local function check_option(n, v, default, names)
  if v == nil and default then return default end
  if type(v) ~= "string" then typeerror(n, "string", v) end
  if not names[v] then argerror(n, "invalid option '" .. v .. "'") end
  return v
end

-- sock:settimeout(seconds [, mode]): every operation; nil or < 0: none
function methods.settimeout(obj, sec, mode)
  checkobj(obj)
  sec = sec == nil and -1 or opt_seconds(2, sec, -1)
  if mode ~= nil then
    if type(mode) ~= "string" and type(mode) ~= "number" then typeerror(3, "string", mode) end
    local c = tostring(mode):sub(1, 1)
    if c ~= "b" and c ~= "t" and c ~= "r" then argerror(3, "mode must be 'b' or 't'") end
  end
  obj.ct, obj.st, obj.rt = sec, sec, sec
  return 1
end

-- sock:settimeouts(connect, send, read) (seconds; nil keeps one)
function methods.settimeouts(obj, c, s, r)
  checkobj(obj)
  obj.ct = opt_seconds(2, c, obj.ct)
  obj.st = opt_seconds(3, s, obj.st)
  obj.rt = opt_seconds(4, r, obj.rt)
  return 1
end

local OPTIONS = { ["tcp-nodelay"] = true, keepalive = true, reuseaddr = true, linger = true }

-- sock:setoption("tcp-nodelay" | "keepalive" | "reuseaddr" | "linger", bool) -> 1
function methods.setoption(obj, name, value)
  checkobj(obj)
  name = check_option(2, name, nil, OPTIONS)
  local s = obj.s
  if s == nil then return nil, "closed" end
  s.options[name] = value and true or false
  return 1
end

-- sock:share(): usable from any request or thread, and not closed when the
-- one that opened it ends.
function methods.share(obj)
  checkobj(obj)
  if obj.s then scope_unlink(obj.s) end
  return 1
end

-- sock:close() -> 1
function methods.close(obj)
  checkobj(obj)
  if obj.s then close_end(obj.s) end
  return 1
end

local HOWS = { both = true, send = true, receive = true }

-- sock:shutdown(["both" | "send" | "receive"]) -> 1, or nil, err
function methods.shutdown(obj, how)
  checkobj(obj)
  how = check_option(2, how, "both", HOWS)
  local s = obj.s
  if s == nil then return nil, "closed" end
  if how ~= "send" then              -- no more reading
    s.rshut = true
    s.eof = true
    wake_reader(s)
  end
  if how ~= "receive" then
    s.wshut = true
    eof(s.other)
  end
  return 1
end

-- sock:sslhandshake(opts | reused_session, server_name, verify): the fakes
-- carry no TLS.  Against a peer made with { tls = true } the handshake
-- succeeds at once (no certificate is checked) and returns true; against
-- any other it fails as a real one would against a plain server.
function methods.sslhandshake(obj, opts)
  checkobj(obj)
  if opts ~= nil and type(opts) ~= "table" and type(opts) ~= "boolean" and
     type(opts) ~= "userdata" then
    argerror(2, "table of options expected, got " .. type(opts))
  end
  local s = obj.s
  if s == nil then return nil, "closed" end
  if not s.tls_peer then
    close_end(s)
    return nil, "wrong version number (owin.test: the peer was not made with tls = true)"
  end
  s.tls = true
  return true
end

-- sock:sslsession() -> nil: the fakes keep no sessions
function methods.sslsession(obj)
  checkobj(obj)
  return nil
end

-- sock:sslinfo() -> what a fake handshake agreed, or nil
function methods.sslinfo(obj)
  checkobj(obj)
  if obj.s == nil or not obj.s.tls then return nil end
  return { version = "owin.test", cipher = "none", reused = false }
end

-- sock:getreusedtimes() -> how often the connection came from the pool
function methods.getreusedtimes(obj)
  checkobj(obj)
  if obj.s == nil then return nil, "closed" end
  return obj.s.reused
end

local function family(ip)
  return ip:find(":", 1, true) and "inet6" or "inet"
end

-- sock:getpeername() -> ip, port, family (a unix socket: its path)
function methods.getpeername(obj)
  checkobj(obj)
  local s = obj.s
  if s == nil then return nil, "closed" end
  if s.path then return s.path end
  return s.peer_ip, s.peer_port, family(s.peer_ip)
end

-- sock:getsockname() -> ip, port, family (a unix client: "")
function methods.getsockname(obj)
  checkobj(obj)
  local s = obj.s
  if s == nil then return nil, "closed" end
  if s.path then return s.peer and s.path or "" end
  return s.ip, s.port, family(s.ip)
end
-- }======

-- {====== sending

local function flatten(v, out, depth)
  local t = type(v)
  if t == "string" or t == "number" then
    out[#out + 1] = tostring(v)
    return
  end
  if t ~= "table" or depth > 32 then
    argerror(2, "a string, a number or an array of them expected")
  end
  for k = 1, rawlen(v) do flatten(rawget(v, k), out, depth + 1) end
end

-- sock:send(data [, i [, j]]) -> j, or nil, err, last
function methods.send(obj, data, i, j)
  checkobj(obj)
  local str
  if type(data) == "table" then
    local out = {}
    flatten(data, out, 0)
    str = table_concat(out)
  elseif type(data) == "string" or type(data) == "number" then
    str = tostring(data)
  else
    argerror(2, "a string, a number or an array of them expected")
  end
  local len = #str
  i, j = opt_integer(3, i, 1), opt_integer(4, j, -1)
  if i < 0 then i = len + i + 1 end
  if i < 1 then i = 1 end
  if j < 0 then j = len + j + 1 end
  if j > len then j = len end
  local s, err = usable(obj, loop_m.current())
  if s == nil then return nil, err, i - 1 end
  if s.wshut or s.other.closed then   -- the peer is gone: EPIPE
    close_end(s)
    return nil, "closed", i - 1
  end
  if j < i then return i - 1 end
  deliver(s.other, str:sub(i, j))
  return j
end
-- }======

-- {====== receiving

local PAT_LINE, PAT_ALL, PAT_COUNT, PAT_ANY = 1, 2, 3, 4

local function take(s, n)
  local d = s.data
  s.data = d:sub(n + 1)
  return d:sub(1, n)
end

-- Everything buffered, consumed, after the prefix (a line: without CRs).
local function partial(s, prefix, line)
  local d = s.data
  s.data = ""
  if line then d = d:gsub("\r", "") end
  return (prefix or "") .. d
end

-- Waits as s's reader, with the read timeout rt (seconds; -1: none).
local function wait_read(s, task, rt)
  local loop = task.loop
  loop:wait(task, "sock", function(ticket)
    s.reader = { task, ticket }
    if rt > 0 then
      s.rtimer = loop:after(rt, function()
        s.rtimer = nil
        s.rtimedout = true
        wake_reader(s)
      end)
    end
  end, function()
    if s.reader and s.reader[1] == task then s.reader = nil end
    if s.rtimer then
      s.rtimer.fn = nil
      s.rtimer = nil
    end
  end)
end

-- The connection of obj if the running task may read it now, or nil, err.
local function reader_ok(obj)
  local s, err = usable(obj, loop_m.current())
  if s == nil then return nil, err end
  if s.reader then return nil, "socket busy reading" end
  return s
end

local function recv(obj, pat, count, prefix)
  while true do
    local task = loop_m.current()
    local s = obj.s
    if task and runtime.cancelled(task) then
      if s then close_end(s) end
      return nil, "cancelled", prefix or ""
    end
    if s == nil then return nil, "closed", prefix or "" end
    local d = s.data
    if pat == PAT_LINE then
      local nl = d:find("\n", 1, true)
      if nl then
        s.data = d:sub(nl + 1)
        return (prefix or "") .. d:sub(1, nl - 1):gsub("\r", "")
      end
    elseif pat == PAT_COUNT then
      if #d >= count then return (prefix or "") .. take(s, count) end
    elseif pat == PAT_ANY then
      if #d > 0 then return take(s, math_min(#d, count)) end
    elseif s.eof then
      return partial(s, prefix, false)
    end
    if s.eof then
      if pat == PAT_ANY then
        close_end(s)
        return nil, "closed"
      end
      local p = partial(s, prefix, pat == PAT_LINE)
      close_end(s)
      return nil, "closed", p
    end
    if s.rtimedout or obj.rt == 0 then           -- the socket stays usable
      s.rtimedout = false
      if pat == PAT_ANY then return nil, "timeout" end
      return nil, "timeout", partial(s, prefix, pat == PAT_LINE)
    end
    wait_read(s, loop_m.waiter("receive"), obj.rt)
  end
end

-- sock:receive([pattern [, prefix]]) -> data, or nil, err, partial
function methods.receive(obj, pattern, prefix)
  checkobj(obj)
  local pat, count
  if type(pattern) == "number" then
    count = opt_integer(2, pattern)
    if count < 0 or count >= 2 ^ 40 then argerror(2, "count out of range") end
    pat = PAT_COUNT
  else
    local p = pattern == nil and "*l" or pattern
    if type(p) ~= "string" then typeerror(2, "string", p) end
    if p:sub(1, 1) == "*" then p = p:sub(2) end
    if p == "l" then
      pat = PAT_LINE
    elseif p == "a" then
      pat = PAT_ALL
    else
      argerror(2, "invalid receive pattern ('*l', '*a' or a number)")
    end
  end
  if prefix ~= nil and type(prefix) ~= "string" then typeerror(3, "string", prefix) end
  local s, err = reader_ok(obj)
  if s == nil then return nil, err, "" end
  return recv(obj, pat, count, prefix)
end

-- sock:receiveany(max) -> 1..max bytes, or nil, err
function methods.receiveany(obj, max)
  checkobj(obj)
  local n = opt_integer(2, max)
  if n == nil then typeerror(2, "number", max) end
  if n <= 0 or n >= 2 ^ 40 then argerror(2, "must be a positive count") end
  local s, err = reader_ok(obj)
  if s == nil then return nil, err end
  return recv(obj, PAT_ANY, n, nil)
end

-- sock:receiveuntil(pattern [, { inclusive = true }]) -> reader([size]):
-- the data before the next occurrence of pattern (pattern consumed; with
-- inclusive it ends the data), or nil, err, partial.  With a size, at
-- most size bytes per call and, once the pattern is reached, nil; the
-- next call goes on to the next occurrence.
function methods.receiveuntil(obj, pattern, opts)
  checkobj(obj)
  if type(pattern) ~= "string" and type(pattern) ~= "number" then
    typeerror(2, "string", pattern)
  end
  pattern = tostring(pattern)
  local plen = #pattern
  if plen == 0 then argerror(2, "pattern must not be empty") end
  local inclusive = false
  if opts ~= nil then
    if type(opts) ~= "table" then typeerror(3, "table", opts) end
    inclusive = opts.inclusive and true or false
  end
  local reached = false
  return function(size)
    if size ~= nil then
      size = opt_integer(1, size)
      if size <= 0 then argerror(1, "size must be positive") end
    end
    local s0, err = reader_ok(obj)
    if s0 == nil then return nil, err end
    while true do
      local task = loop_m.current()
      local s = obj.s
      if task and runtime.cancelled(task) then
        if s then close_end(s) end
        return nil, "cancelled", ""
      end
      if s == nil then return nil, "closed", "" end
      if reached then
        reached = false
        return nil
      end
      local d = s.data
      local hit = d:find(pattern, 1, true)
      if hit then
        local before = hit - 1
        local upto = before + (inclusive and plen or 0)
        if size and upto > size then return take(s, size) end
        local out = d:sub(1, upto)
        s.data = d:sub(before + plen + 1)
        if size then reached = true end
        return out
      end
      if size and #d >= plen then        -- what cannot begin a match
        local safe = #d - (plen - 1)
        for k = 1, plen - 1 do           -- the longest tail that might
          if d:sub(-k) == pattern:sub(1, k) then safe = #d - k end
        end
        if safe > 0 then return take(s, math_min(safe, size)) end
      end
      if s.eof then
        local p = partial(s, nil, false)
        close_end(s)
        return nil, "closed", p
      end
      if s.rtimedout or obj.rt == 0 then
        s.rtimedout = false
        return nil, "timeout", partial(s, nil, false)
      end
      wait_read(s, loop_m.waiter("receiveuntil"), obj.rt)
    end
  end
end
-- }======

-- {====== the pool and connecting

local function pool_get(client, key)
  local p = client.pools[key]
  if p == nil then
    p = { key = key, idle = {}, size = POOL_SIZE, nlive = 0, backlog = 0, waiting = {} }
    client.pools[key] = p
  end
  return p
end

local function unslot(obj)
  local p = obj.slot
  if p then
    obj.slot = nil
    pool_release(p)
  end
end

-- An idle connection of the pool attached to obj (true), a slot reserved
-- for a new one (false), or nil, err.  With a pool_size and a full pool,
-- waits for a slot (with the connect timeout) when the backlog allows.
local function take_pooled(obj, key, size, backlog)
  if obj.s then close_end(obj.s) end          -- a connected socket reconnects
  unslot(obj)
  if size ~= nil then
    size = opt_integer(4, size)
    if size <= 0 or size >= 1000000 then argerror(4, "pool_size must be a positive integer") end
  end
  if backlog ~= nil then
    backlog = opt_integer(4, backlog)
    if backlog < 0 or backlog >= 1000000 then argerror(4, "backlog must be 0 or more") end
  end
  local task = loop_m.current()
  if task and runtime.refused(task) then return nil, "cancelled" end
  while true do
    local p = pool_get(obj.client, key)
    if size then p.limit, p.size = size, size end
    if backlog then p.backlog = backlog end
    while #p.idle > 0 do
      local e = table_remove(p.idle)         -- the most recently used
      e.pooled = false
      if e.idle_timer then
        e.idle_timer.fn = nil
        e.idle_timer = nil
      end
      if e.eof then
        close_end(e)
      else
        e.reused = e.reused + 1
        attach(obj, e, task)
        return true
      end
    end
    if not (p.limit and p.nlive >= p.limit) then
      p.nlive = p.nlive + 1
      obj.slot = p
      return false
    end
    if #p.waiting >= p.backlog then
      return nil, p.backlog > 0 and "too many waiting connect operations" or
        "too many connections in the pool"
    end
    task = loop_m.waiter("connect")
    local w = { task = task }
    local loop = task.loop
    loop:wait(task, "sock", function(ticket)
      w.ticket = ticket
      p.waiting[#p.waiting + 1] = w
      if obj.ct >= 0 then
        w.timer = loop:after(obj.ct, function()
          remove(p.waiting, w)
          w.timedout = true
          loop:wake(task, ticket)
        end)
      end
    end, function()
      remove(p.waiting, w)
      if w.timer then w.timer.fn = nil end
    end)
    if w.timer then w.timer.fn = nil end
    if w.timedout then return nil, "timeout" end
    if runtime.cancelled(task) then return nil, "cancelled" end
  end
end

local Peer = {}
Peer.__index = Peer

local function peer_body(arg)
  return arg[1](arg[2])
end

-- A connection to peer: the app's end goes to obj, the peer's function
-- runs with the other end in a task of its own.
local function accept(obj, peer, task)
  local client = obj.client
  local a, b = new_end(client), new_end(client)
  a.other, b.other = b, a
  if peer.path then
    a.path, b.path = peer.path, peer.path
  else
    local ip = peer.ip:find(":", 1, true) and "::1" or "127.0.0.1"
    client.next_port = client.next_port % 20000 + 1
    local port = 40000 + client.next_port
    a.ip, a.port, a.peer_ip, a.peer_port = ip, port, peer.ip, peer.port
    b.ip, b.port, b.peer_ip, b.peer_port = peer.ip, peer.port, ip, port
  end
  a.pool = obj.slot                         -- the slot is the connection's now
  obj.slot = nil
  a.tls_peer = peer.tls
  attach(obj, a, task)
  b.peer = peer
  peer.conns[#peer.conns + 1] = b
  peer.accepted = peer.accepted + 1
  local pobj = new_obj(client, true)
  attach(pobj, b, nil)
  local t = client.loop:spawn(peer_body, { peer.handler, pobj }, function(pt, ok, err, tb)
    if not ok then runtime.report(client, "peer", pt, err, tb) end
    if pobj.s then close_end(pobj.s) end  -- the connection closes when the function ends
  end)
  t.peer = true
end

-- A new connection to host (an IP address, or unix:/path) and port.
local function connect_addr(obj, host, port)
  local task = loop_m.waiter("connect")
  if runtime.refused(task) then return nil, "cancelled" end
  if obj.s then close_end(obj.s) end
  local client = obj.client
  local key = port and addr_key(host, port) or host
  local peer = client.peers[key]
  if peer == nil then
    return nil, port and "connection refused" or "no such file or directory"
  end
  local delay = peer.delay
  if delay > 0 then                         -- the peer takes its time to accept
    local ct = obj.ct
    local timeout = ct >= 0 and ct < delay
    local d = timeout and ct or delay
    if d < 1e9 then
      task.loop:sleep(task, d)
    else
      task.loop:wait(task, "sock", nil, true)
    end
    if runtime.cancelled(task) then return nil, "cancelled" end
    if timeout then return nil, "timeout" end
    if client.peers[key] ~= peer then return nil, "connection refused" end
  end
  accept(obj, peer, task)
  return 1
end

-- sock:connect(host, port [, opts]) or sock:connect("unix:/path" [, opts])
-- -> 1, or nil, err.  opts: pool (a name), pool_size, backlog.
function methods.connect(obj, host, port, opts)
  checkobj(obj)
  if type(host) ~= "string" or host == "" then
    argerror(2, string_format("host name or unix:/path expected, got %s",
      host == "" and "an empty string" or type(host)))
  end
  local unix = host:sub(1, 5) == "unix:"
  if unix then
    if type(port) == "table" and opts == nil then opts = port end
    port = nil
  else
    port = math_tointeger(tonumber(port))
    if not port or port < 1 or port > 65535 then argerror(3, "port from 1 to 65535 expected") end
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(4, "table of options expected, got " .. type(opts))
  end
  local key = opts and opts.pool
  if key ~= nil and type(key) ~= "string" then argerror(4, "opts.pool must be a string") end
  key = key or (unix and host or host .. ":" .. port)
  local reused, err = take_pooled(obj, key, opts and opts.pool_size, opts and opts.backlog)
  if reused then return 1 end
  if reused == nil then return nil, err end
  if unix then
    local ok, cerr = connect_addr(obj, host)
    if not ok then unslot(obj) end
    return ok, cerr
  end
  local addrs, rerr = M.resolve(obj.client, host)
  if not addrs then
    unslot(obj)
    return nil, rerr
  end
  local ok, cerr
  for i = 1, #addrs do
    ok, cerr = connect_addr(obj, addrs[i], port)
    if ok or cerr == "cancelled" or cerr == "timeout" then break end
  end
  if not ok then unslot(obj) end
  return ok, cerr
end

-- sock:setkeepalive([idle_seconds [, pool_size]]) -> 1, or nil, err: the
-- connection goes back to the client's pool for its address.
function methods.setkeepalive(obj, idle, size)
  checkobj(obj)
  idle = opt_seconds(2, idle, 60)
  if size ~= nil then
    size = opt_integer(3, size)
    if size <= 0 or size >= 1000000 then argerror(3, "pool_size must be a positive integer") end
  end
  local s = obj.s
  if s == nil then return nil, "closed" end
  local task = loop_m.current()
  if task and runtime.refused(task) then
    close_end(s)
    return nil, "cancelled"
  end
  if s.scope and (task == nil or task.scope ~= s.scope) then
    raise("the socket belongs to another request or thread (sock:share() hands it over)")
  end
  if #s.data > 0 or s.reader or s.eof then
    local dubious = not s.eof
    close_end(s)
    return nil, dubious and "connection in dubious state" or "closed"
  end
  local p = s.pool
  if p == nil then                          -- not connected through connect()
    close_end(s)
    return nil, "closed"
  end
  if size then p.size = size end
  scope_unlink(s)
  s.obj, obj.s = nil, nil
  s.pooled = true
  p.idle[#p.idle + 1] = s
  if idle > 0 then
    s.idle_timer = s.client.loop:after(idle, function()
      s.idle_timer = nil
      close_end(s)
    end)
  end
  while #p.idle > p.size do close_end(p.idle[1]) end   -- the least recently used
  wake_slot(p)
  return 1
end
-- }======

-- {====== peers

-- peer:close(): later connects are refused; the open connections close.
function Peer:close()
  local client = self.client
  if client.peers[self.key] == self then client.peers[self.key] = nil end
  for _, b in ipairs(runtime.copy(self.conns)) do close_end(b) end
end

-- How many of the peer's connections are open now.
function Peer:open()
  return #self.conns
end

-- client:peer(address, handler [, opts]) -> peer: connects to address
-- ("IP:port", "[IPv6]:port" or "unix:/path") run handler(sock) as a task
-- per connection.  opts.delay: virtual seconds a connect takes (math.huge:
-- it never completes, so connects time out); opts.tls: the peer accepts
-- sslhandshake (the fakes carry no TLS: see methods.sslhandshake).
function M.peer(client, address, handler, opts)
  if type(address) ~= "string" then
    raise("owin.test: client:peer: the address is \"IP:port\", \"[IPv6]:port\" or " ..
      "\"unix:/path\", got " .. type(address))
  end
  local key, ip, port, path
  if address:sub(1, 5) == "unix:" then
    path = address:sub(6)
    if path == "" then raise("owin.test: client:peer: unix: needs a path") end
    key = address
  else
    ip, port = address:match("^%[([^%]]+)%]:(%d+)$")
    if not ip then ip, port = address:match("^([^:]+):(%d+)$") end
    port = tonumber(port)
    if not ip or not M.is_ip(ip) or port < 1 or port > 65535 then
      raise("owin.test: client:peer: the address is \"IP:port\", \"[IPv6]:port\" or " ..
        "\"unix:/path\" (names go in client:hosts), got " .. address)
    end
    key = addr_key(ip, port)
  end
  if type(handler) ~= "function" then
    raise("owin.test: client:peer: the handler is a function(sock), got " .. type(handler))
  end
  local delay, tls = 0, false
  for k, v in pairs(opts or {}) do
    if k == "tls" then
      if type(v) ~= "boolean" then raise("owin.test: client:peer: tls is a boolean") end
      tls = v
    elseif k ~= "delay" then
      raise("owin.test: client:peer: unknown option '" .. tostring(k) .. "'")
    elseif type(v) ~= "number" or v < 0 then
      raise("owin.test: client:peer: delay is a number of seconds from 0")
    else
      delay = v
    end
  end
  if client.peers[key] then raise("owin.test: a peer already listens on " .. address) end
  local peer = setmetatable({ client = client, address = address, key = key, ip = ip, port = port,
                              path = path, handler = handler, delay = delay, tls = tls,
                              accepted = 0,
                              conns = {} }, Peer)
  client.peers[key] = peer
  return peer
end
-- }======

M.TCP = TCP
return M
