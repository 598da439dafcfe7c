-- A real PostgreSQL for a spec: a fresh cluster (Debian's postgresql package,
-- binaries in /usr/lib/postgresql/<version>/bin) in a temp dir, on a free
-- loopback port and a unix socket in that dir, fsync off, trust auth.
--
--   local pgh = require("helpers.pg")
--   if not pgh.available() then pending("no PostgreSQL") end
--   local db = pgh.start({ max_connections = 100 })   -- waits until it accepts
--   db.conninfo       -- "host=<socket dir> port=<port> dbname=postgres user=<user>"
--   db.tcp_conninfo   -- "host=127.0.0.1 port=<port> dbname=postgres user=<user>"
--   db.port, db.dir, db.socket_dir, db.user, db.pid, db.bin
--   local out, code, err = db:psql("select 1")   -- psql -X -A -t -c, stdout/exit code/stderr
--   db:log()          -- the server's log
--   db:stop()         -- pg_ctl stop -m fast (bounded), KILL if still there, dir removed
--
-- PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
-- `postgres` system user (runuser -u postgres --), which the package
-- creates; as anyone else they run as that user.  The superuser of the
-- cluster is `postgres`.
--
-- Authentication is trust everywhere except one role over TCP:
-- `owinlua_pw` (M.PASSWORD_USER) from 127.0.0.1 must give a password
-- (scram-sha-256), so that a spec can create that role with a password and
-- check what a wrong one does.
local socket = require("socket")
local ports = require("helpers.ports")

local M = {}

M.PASSWORD_USER = "owinlua_pw"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Runs a shell line; returns its stdout and exit code.
local function sh(line)
  local p = assert(io.popen(line, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

-- The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, or nil.
local function bindir()
  local env = os.getenv("OWINLUA_PG_BIN")
  if env then return env end
  local best, bestv
  local p = io.popen("ls -1 /usr/lib/postgresql 2>/dev/null")
  if not p then return nil end
  for v in p:lines() do
    local n = tonumber(v:match("^(%d+)"))
    local dir = "/usr/lib/postgresql/" .. v .. "/bin"
    if n and read_file(dir .. "/initdb") and read_file(dir .. "/pg_ctl") and (not bestv or n > bestv) then
      best, bestv = dir, n
    end
  end
  p:close()
  return best
end

function M.available()
  return bindir() ~= nil
end

local function is_root()
  local out = sh("id -u")
  return out:match("^0%s*$") ~= nil
end

-- "runuser -u postgres -- " as root, else "".
local function as_pg()
  if not is_root() then return "" end
  local _, code = sh("id -u postgres >/dev/null 2>&1")
  if code ~= 0 then
    error("helpers.pg: PostgreSQL does not run as root and there is no `postgres` user to run it as " ..
      "(install Debian's postgresql package: tools/install-deps)", 3)
  end
  return "runuser -u postgres -- "
end

local Db = {}
Db.__index = Db

function Db:log()
  return read_file(self.dir .. "/log") or ""
end

-- psql -X -A -t -c sql, as the cluster's superuser over the unix socket.
-- Returns stdout (as psql prints it: unaligned, tuples only, "|" between
-- columns, a row a line), the exit code, and stderr.  Bounded (30 s).
function Db:psql(sql)
  local errfile = os.tmpname()
  local line = string.format(
    "timeout -k 5 30 %s/psql -X -A -t -q -v ON_ERROR_STOP=1 -h %s -p %d -U %s -d postgres -c %s 2>%s",
    self.bin, q(self.socket_dir), self.port, q(self.user), q(sql), q(errfile))
  local out, code = sh(line)
  local err = read_file(errfile) or ""
  os.remove(errfile)
  return out, code, err
end

function Db:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid and alive(self.pid) then
    sh(string.format("timeout -k 5 20 %s%s/pg_ctl -D %s -m fast -t 15 -w stop >/dev/null 2>&1",
      self.as_pg, self.bin, q(self.dir .. "/data")))
    local deadline = socket.gettime() + 5
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.05) end
    if alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  end
  ports.rmdir(self.dir)
end

local function try_start(self, port, max_connections)
  local opts = string.format(
    "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off " ..
    "-c full_page_writes=off -c max_connections=%d",
    port, self.socket_dir, max_connections)
  local _, code = sh(string.format("timeout -k 5 60 %s%s/pg_ctl -D %s -l %s -o %s -w -t 30 start >/dev/null 2>&1",
    self.as_pg, self.bin, q(self.dir .. "/data"), q(self.dir .. "/log"), q(opts)))
  return code == 0
end

-- start([opts]) -> db.  opts.max_connections (100).
function M.start(opts)
  opts = opts or {}
  local bin = bindir()
  if not bin then
    error("helpers.pg: no PostgreSQL server binaries under /usr/lib/postgresql " ..
      "(install Debian's postgresql package: tools/install-deps)", 2)
  end
  local self = setmetatable({ bin = bin, user = "postgres", as_pg = as_pg() }, Db)
  self.dir = ports.tmpdir()
  self.socket_dir = self.dir
  if self.as_pg ~= "" then
    assert(os.execute("chown postgres: " .. q(self.dir)), "chown postgres " .. self.dir)
  end
  assert(os.execute("chmod 0700 " .. q(self.dir)))
  local ok, err = pcall(function()
    local out, code = sh(string.format("timeout -k 5 120 %s%s/initdb -D %s -A trust -U postgres --no-sync -E UTF8 --locale=C 2>&1",
      self.as_pg, bin, q(self.dir .. "/data")))
    if code ~= 0 then error("helpers.pg: initdb failed:\n" .. out, 0) end
    write_file(self.dir .. "/data/pg_hba.conf", table.concat({
      "local all all trust",
      "host all " .. M.PASSWORD_USER .. " 127.0.0.1/32 scram-sha-256",
      "host all all 127.0.0.1/32 trust",
      "host all all ::1/128 trust",
      "",
    }, "\n"))
    local started
    for _ = 1, 3 do   -- a free port may be taken between the probe and the start
      self.port = ports.free()
      if try_start(self, self.port, opts.max_connections or 100) then
        started = true
        break
      end
    end
    if not started then error("helpers.pg: pg_ctl start failed:\n" .. self:log(), 0) end
    local pidfile = read_file(self.dir .. "/data/postmaster.pid") or ""
    self.pid = tonumber(pidfile:match("^(%d+)"))
    if not self.pid then error("helpers.pg: no postmaster.pid", 0) end
  end)
  if not ok then
    self:stop()
    error(err, 2)
  end
  self.conninfo = string.format("host=%s port=%d dbname=postgres user=%s", self.socket_dir, self.port, self.user)
  self.tcp_conninfo = string.format("host=127.0.0.1 port=%d dbname=postgres user=%s", self.port, self.user)
  return self
end

return M
