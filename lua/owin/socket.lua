-- owin.socket: a stand-in for luasocket's `socket` module whose sockets are
-- owinlua's cosockets, so that code and libraries written for luasocket
-- wait without blocking the worker.
--
--   local socket = require("owin.socket")
--   local sock = socket.tcp()                  -- an owin.tcp() socket
--   require("owin.socket").install()           -- require("socket") gets this
--
-- What it has: tcp, tcp4, tcp6, udp, udp4, udp6, connect, bind (refused:
-- servers are owinlua's job), gettime, sleep, dns (toip, getaddrinfo,
-- gethostname), unix (socket.unix), select (refused), and the helpers
-- luasocket's own Lua modules (socket.http, socket.smtp, ...) use: try,
-- newtry, protect, skip, source, sink, sourcet, sinkt, BLOCKSIZE.

local owin = require("owin")
local ok_core, core = pcall(require, "owin.core")
if not ok_core then core = nil end

local type, select, error, pcall, setmetatable, tostring, math_min =
  type, select, error, pcall, setmetatable, tostring, math.min
local table_pack, table_unpack = table.pack, table.unpack

local M = { _VERSION = "LuaSocket 3.1 (owinlua cosockets)", BLOCKSIZE = 2048 }

-- The sockets are the `owin` module's: the server's, or owin.test's fakes
-- (which it puts there when required; so they are looked up at each call).
if not core and owin.tcp == nil then
  error("owin.socket needs the owinlua server (cosockets run on its event loop), " ..
    "or owin.test required first", 2)
end

local function tcp() return owin.tcp() end
local function udp() return owin.udp() end
M.tcp, M.tcp4, M.tcp6 = tcp, tcp, tcp
M.udp, M.udp4, M.udp6 = udp, udp, udp

-- socket.gettime() -> seconds since the epoch.  Without the server: whole
-- seconds, from os.time (the wall clock, not owin.test's virtual one).
M.gettime = core and core.gettime or function() return os.time() end

-- socket.sleep(seconds): yields (owin.sleep); luasocket's returns nothing
function M.sleep(s)
  owin.sleep(s)
end

-- socket.connect(host, port [, locaddr, locport]) -> a connected socket, or nil, err
function M.connect(host, port, locaddr, locport)
  if locaddr ~= nil or locport ~= nil then
    return nil, "binding a client socket to a local address is not supported"
  end
  local sock = tcp()
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end
M.connect4, M.connect6 = M.connect, M.connect

function M.bind()
  error("socket.bind: owinlua serves; apps do not listen (use owin.udp():setsockname for UDP)", 2)
end

function M.select()
  error("socket.select is not available with cosockets: every call waits on its own " ..
    "(use owin.spawn and owin.wait for concurrency)", 2)
end

M.dns = {}

-- dns.toip(name) -> first address, { name =, alias = {}, ip = { ... } }
function M.dns.toip(name)
  local addrs, err = owin.resolve(name)
  if not addrs then return nil, err end
  return addrs[1], { name = name, alias = {}, ip = addrs }
end

-- dns.getaddrinfo(name) -> { { family = "inet" | "inet6", addr = ip }, ... }
function M.dns.getaddrinfo(name)
  local addrs, err = owin.resolve(name)
  if not addrs then return nil, err end
  local out = {}
  for i, ip in ipairs(addrs) do
    out[i] = { family = ip:find(":", 1, true) and "inet6" or "inet", addr = ip }
  end
  return out
end

-- Without the server: the kernel's host name, or "localhost".
local function hostname()
  for _, path in ipairs({ "/proc/sys/kernel/hostname", "/etc/hostname" }) do
    local f = io.open(path, "r")
    if f then
      local name = f:read("l")
      f:close()
      if name and name ~= "" then return name end
    end
  end
  return "localhost"
end

function M.dns.gethostname()
  if core then return core.gethostname() end
  return hostname()
end

function M.dns.tohostname()
  return nil, "reverse lookups are not supported"
end

-- socket.unix: stream sockets to unix paths, luasocket's way (connect(path))
local Unix = {}
Unix.__index = function(self, k)
  local v = Unix[k]
  if v ~= nil then return v end
  local sock = rawget(self, "sock")
  local f = sock[k]
  if type(f) == "function" then
    return function(_, ...) return f(sock, ...) end
  end
  return nil
end
function Unix:connect(path)
  if type(path) ~= "string" then
    error("bad argument #1 to 'connect' (path expected, got " .. type(path) .. ")", 2)
  end
  return self.sock:connect("unix:" .. path)
end

local unix = setmetatable({
  stream = function() return setmetatable({ sock = tcp() }, Unix) end,
}, { __call = function(self) return self.stream() end })
M.unix = unix

-- {====== luasocket's helpers (socket.lua and the C try/protect)

function M.skip(d, ...)
  return select(d + 1, ...)
end

-- newtry(finalizer) -> try: try(ok, ...) returns its arguments when ok is
-- truthy; otherwise calls finalizer and raises { err }, which protect turns
-- back into nil, err.
function M.newtry(finalizer)
  return function(...)
    local ok = ...
    if ok then return ... end
    if finalizer then pcall(finalizer) end
    error({ (select(2, ...)) }, 0)
  end
end
M.try = M.newtry()

function M.protect(f)
  return function(...)
    local r = table_pack(pcall(f, ...))
    if r[1] then return table_unpack(r, 2, r.n) end
    local e = r[2]
    if type(e) == "table" then return nil, e[1] end
    error(e, 0)
  end
end

M.sourcet, M.sinkt = {}, {}

M.sinkt["close-when-done"] = function(sock)
  return setmetatable({}, { __call = function(_, chunk)
    if chunk then return sock:send(chunk) end
    sock:close()
    return 1
  end })
end

M.sinkt["keep-open"] = function(sock)
  return setmetatable({}, { __call = function(_, chunk)
    if chunk then return sock:send(chunk) end
    return 1
  end })
end
M.sinkt.default = M.sinkt["keep-open"]

function M.sink(mode, sock)
  return (M.sinkt[mode] or M.sinkt.default)(sock)
end

M.sourcet["by-length"] = function(sock, length)
  return setmetatable({}, { __call = function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(math_min(M.BLOCKSIZE, length))
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end })
end

M.sourcet["until-closed"] = function(sock)
  local done = false
  return setmetatable({}, { __call = function()
    if done then return nil end
    local chunk, err, partial = sock:receive(M.BLOCKSIZE)
    if not err then return chunk end
    if err == "closed" then
      sock:close()
      done = true
      return partial
    end
    return nil, err
  end })
end
M.sourcet.default = M.sourcet["until-closed"]

function M.source(mode, ...)
  return (M.sourcet[mode] or M.sourcet.default)(...)
end
-- }======

-- {====== finding luasocket-based libraries Debian installs for older Luas

-- Debian's lua-redis (redis-lua 2.0.5, plain Lua that runs under 5.4) is
-- installed on the Lua 5.1 to 5.3 paths only.  After install(), require of
-- one of these names that Lua 5.4's own path cannot satisfy looks there.
M.LEGACY = { redis = true }
M.legacy_path = os.getenv("OWINLUA_LEGACY_PATH") or
  "/usr/share/lua/5.3/?.lua;/usr/share/lua/5.2/?.lua;/usr/share/lua/5.1/?.lua"

-- Written for Lua 5.1, whose table.insert put a value at any position past
-- the end; 5.3 raises there.  lua-redis's pipelines insert each reply's
-- parser at the position of its request, nil for commands without one, and
-- the next insert lands past the end.  Its modules get a `table` whose
-- insert does what 5.1's did; the rest of their globals are the real ones.
local table_insert = table.insert
local legacy_table = setmetatable({
  insert = function(t, ...)
    if select("#", ...) == 2 then
      local pos, v = ...
      if math.type(pos) == "integer" and pos > #t + 1 then
        t[pos] = v
        return
      end
    end
    return table_insert(t, ...)
  end,
}, { __index = table })
local legacy_env = setmetatable({ table = legacy_table }, { __index = _G, __newindex = _G })

local function search_legacy(name)
  if not M.LEGACY[name] then return nil end
  local file, err = package.searchpath(name, M.legacy_path)
  if not file then return err end
  local chunk, lerr = loadfile(file, "bt", legacy_env)
  if not chunk then
    error(string.format("error loading module '%s' from file '%s':\n\t%s", name, file, lerr), 2)
  end
  return chunk, file
end
-- }======

-- Registers this module as luasocket (package.loaded.socket, socket.core
-- and socket.unix), so that libraries that require("socket") get
-- cosockets, and lets require find the libraries of M.LEGACY.  Returns the
-- module.
local installed = false
function M.install()
  package.loaded.socket = M
  package.loaded["socket.core"] = M
  package.loaded["socket.unix"] = unix
  if not installed then
    installed = true
    package.searchers[#package.searchers + 1] = search_legacy
  end
  return M
end

return M
