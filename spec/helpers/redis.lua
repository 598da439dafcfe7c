-- A real redis-server (Debian's /usr/bin/redis-server) for a spec, on a free
-- loopback port and a unix socket in a fresh temp dir, nothing saved to disk.
--
--   local redis = require("helpers.redis")
--   local r = redis.start()          -- waits until it answers PING
--   r.host, r.port, r.unix, r.pid, r.dir
--   r:call("SET", "k", "v")          -> "OK"   (a tiny RESP client, luasocket)
--   r:call("GET", "nope")            -> nil    (errors: nil, "ERR ...")
--   r:clients()                      -> the other clients connected now
--   r:stop()                         -- TERM, KILL after 2 s, dir removed
--   redis.lua_redis_path()           -> directory holding Debian's redis.lua
--
-- Never port 6379: the port is chosen by binding port 0 first.
local socket = require("socket")
local ports = require("helpers.ports")

local M = {}

M.BIN = os.getenv("OWINLUA_REDIS_SERVER") or "/usr/bin/redis-server"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The directory with Debian's lua-redis (packaged for Lua 5.1 to 5.3 only;
-- the file itself is plain Lua that 5.4 loads), for package.path.
function M.lua_redis_path()
  for _, v in ipairs({ "5.3", "5.2", "5.1" }) do
    local dir = "/usr/share/lua/" .. v
    local f = io.open(dir .. "/redis.lua")
    if f then
      f:close()
      return dir
    end
  end
  return nil
end

-- RESP over a blocking luasocket connection.
local function encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(out)
end
M.encode = encode

local function read_reply(c)
  local line, err = c:receive("*l")
  if not line then error("redis reply: " .. tostring(err), 0) end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return nil, rest end
  if kind == ":" then return tonumber(rest) end
  if kind == "$" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local data = assert(c:receive(n + 2))
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local arr = { n = n }
    for i = 1, n do arr[i] = read_reply(c) end
    return arr
  end
  error("bad redis reply line: " .. line, 0)
end

local Redis = {}
Redis.__index = Redis

-- One command on a new connection (so it never lingers): reply, or nil, err.
function Redis:call(...)
  local c = assert(socket.tcp())
  c:settimeout(self.timeout or 5)
  local ok, err = c:connect(self.host, self.port)
  if not ok then
    c:close()
    error("redis connect: " .. tostring(err), 2)
  end
  assert(c:send(encode({ ... })))
  local res = table.pack(pcall(read_reply, c))
  c:close()
  if not res[1] then error(res[2], 2) end
  return table.unpack(res, 2, res.n)
end

-- The clients connected now other than the one asking: a list of
-- { addr=, fd=, cmd=, name=, ... } (CLIENT LIST fields).
function Redis:clients()
  local text = assert(self:call("CLIENT", "LIST"))
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local f = {}
    for k, v in line:gmatch("(%S+)=(%S*)") do f[k] = v end
    if f.cmd ~= "client|list" and f.cmd ~= "client" then out[#out + 1] = f end
  end
  return out
end

function Redis:log()
  local f = io.open(self.dir .. "/redis.log", "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function Redis:stop()
  if self.stopped then return end
  self.stopped = true
  ports.kill(self.pid, self.proc, 2)
  ports.rmdir(self.dir)
end

local function pong(host, port)
  local c = socket.tcp()
  c:settimeout(0.5)
  local ok = c:connect(host, port)
  if not ok then
    c:close()
    return false
  end
  c:send("PING\r\n")
  local line = c:receive("*l")
  c:close()
  return line == "+PONG"
end

-- start() -> a running redis (see above); raises when it does not come up
-- within 10 s (with redis's log in the message).
function M.start()
  local dir = ports.tmpdir()
  local port = ports.free()
  local unix = dir .. "/redis.sock"
  local cmd = table.concat({
    "echo $$; exec", q(M.BIN),
    "--port", port,
    "--bind", "127.0.0.1", q("-::1"),   -- "-": ::1 only where the machine has it
    "--unixsocket", q(unix), "--unixsocketperm", "700",
    "--save", "''", "--appendonly", "no", "--daemonize", "no",
    "--dir", q(dir), "--logfile", "''",
    ">" .. q(dir .. "/redis.log"), "2>&1", "</dev/null",
  }, " ")
  local proc = assert(io.popen(cmd, "r"))
  local pid = tonumber(proc:read("l"))
  local self = setmetatable({ host = "127.0.0.1", port = port, unix = unix, pid = pid,
                              dir = dir, proc = proc }, Redis)
  local deadline = socket.gettime() + 10
  local up
  repeat
    up = pong(self.host, port)
    if not up then socket.sleep(0.05) end
  until up or socket.gettime() > deadline or not require("helpers.server").alive(pid)
  if not up then
    local log = self:log()
    self:stop()
    error("redis-server did not come up on port " .. port .. ":\n" .. log, 2)
  end
  return self
end

return M
