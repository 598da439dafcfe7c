-- Starts the real owinlua binary on port 0 and stops it with a signal.
--
--   local server = require("helpers.server")
--   local srv = server.start("spec/fixtures/echo.lua", { "--max-body", "1k" })
--   ... srv.port, srv.host, srv.pid ...
--   local ok, how, code = srv:stop()       -- SIGTERM, waits, returns the exit status
--   srv:stderr()                           -- what the server logged
--
-- The binary is $OWINLUA_BIN, else ./owinlua in the checkout. OWINLUA_WRAP (for
-- example "env ASAN_OPTIONS=...") is put in front of it when set.

local M = {}

local BIN = os.getenv("OWINLUA_BIN") or "./owinlua"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

local function tmpname()
  local name = os.tmpname()
  return name
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

-- A process that exited but was not reaped yet (a zombie) counts as gone.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

M.alive = alive

local function sleep(s)
  os.execute("sleep " .. s)
end
M.sleep = sleep

-- Polls until f() is true or `timeout` seconds (default 5) pass; returns
-- f()'s last value.
function M.eventually(f, timeout)
  local socket = require("socket")
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local v = f()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return f()
end

local Server = {}
Server.__index = Server

function Server:stderr()
  return read_file(self.errfile)
end

-- The first AddressSanitizer/LeakSanitizer/UBSan report in the server's
-- stderr, or nil.
function Server:sanitizer_report()
  local err = read_file(self.errfile)
  local i = err:find("ERROR: AddressSanitizer", 1, true) or err:find("ERROR: LeakSanitizer", 1, true)
    or err:find("runtime error:", 1, true)
  if i then return err:sub(math.max(1, i - 200), i + 3000) end
  return nil
end

function Server:signal(sig)
  os.execute("kill -" .. sig .. " " .. self.pid .. " 2>/dev/null")
end

-- Sends SIGTERM (or `sig`) and waits up to `timeout` seconds for the process to
-- exit, then SIGKILL. Returns what io.popen's close returns: ok, "exit"|"signal", code.
function Server:stop(sig, timeout)
  if self.stopped then return table.unpack(self.status) end
  self:signal(sig or "TERM")
  local deadline = os.time() + (timeout or 10)
  while alive(self.pid) and os.time() <= deadline do sleep(0.05) end
  if alive(self.pid) then self:signal("KILL") end
  self.status = { self.proc:close() }
  self.stopped = true
  local report = self:sanitizer_report()
  if report then error("sanitizer report from owinlua:\n" .. report, 2) end
  return table.unpack(self.status)
end

function Server:alive()
  return alive(self.pid)
end

function Server:wait_exit(timeout)
  local deadline = os.time() + (timeout or 10)
  while alive(self.pid) and os.time() <= deadline do sleep(0.05) end
  return not alive(self.pid)
end

-- The binary's path for a shell that may cd elsewhere (opts.cwd).
local function bin_for(opts)
  if opts.cwd and BIN:sub(1, 1) ~= "/" then return (os.getenv("PWD") or ".") .. "/" .. BIN end
  return BIN
end

-- "cd DIR || exit 1; " for opts.cwd, else "".
local function cd_for(opts)
  return opts.cwd and ("cd " .. shell_quote(opts.cwd) .. " || exit 1; ") or ""
end

-- start(app, args, opts) -> server
-- app: path of an app script; args: extra CLI arguments; opts.env: table of
-- environment variables; opts.listen: override the --listen value;
-- opts.cwd: the working directory to start the server in (app is then
-- relative to it);
-- opts.nofile: the shell sets RLIMIT_NOFILE to this many descriptors before
-- it starts the server (ulimit -n; a failure to raise it is left for the
-- caller to notice in /proc/PID/limits).
function M.start(app, args, opts)
  opts = opts or {}
  local errfile = tmpname()
  local parts = {}
  for k, v in pairs(opts.env or {}) do
    parts[#parts + 1] = k .. "=" .. shell_quote(v)
  end
  local cmd = {}
  cmd[#cmd + 1] = os.getenv("OWINLUA_WRAP") or ""
  cmd[#cmd + 1] = shell_quote(bin_for(opts))
  if opts.listen ~= false then   -- false: the caller sets OWINLUA_LISTEN instead
    cmd[#cmd + 1] = "--listen " .. shell_quote(opts.listen or "127.0.0.1:0")
  end
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = shell_quote(a) end
  if app then cmd[#cmd + 1] = shell_quote(app) end
  local line
  local limit = cd_for(opts) ..
    (opts.nofile and string.format("ulimit -n %d 2>/dev/null; ", opts.nofile) or "")
  if #parts > 0 then
    line = string.format("exec 2>%s; %secho $$; exec env %s %s", errfile, limit,
      table.concat(parts, " "), table.concat(cmd, " "))
  else
    line = string.format("exec 2>%s; %secho $$; exec %s", errfile, limit, table.concat(cmd, " "))
  end
  local proc = assert(io.popen(line, "r"))
  local pid = proc:read("l")
  local first = proc:read("l")
  local self = setmetatable({ proc = proc, pid = tonumber(pid), errfile = errfile,
                              lines = {} }, Server)
  if not first then
    local status = { proc:close() }
    self.stopped, self.status = true, status
    error("owinlua did not start: " .. read_file(errfile), 2)
  end
  self.lines[1] = first
  local scheme, host, port = first:match("^listening on (https?)://%[?([^%]]-)%]?:(%d+)$")
  self.scheme = scheme
  if not host then
    -- unix socket listener or something else: keep the line for the caller
    self.first_line = first
  else
    self.host, self.port = host, tonumber(port)
  end
  return self
end

-- Runs the binary to completion (for --help, --check, startup errors).
-- Returns stdout, stderr, exit code.  opts.timeout: seconds after which the
-- binary gets SIGTERM (then SIGKILL 5 s later), for a run that must end;
-- opts.cwd: the working directory to run it in.
function M.run(args, opts)
  opts = opts or {}
  local errfile = tmpname()
  local cmd = { shell_quote(bin_for(opts)) }
  if opts.timeout then table.insert(cmd, 1, "timeout -k 5 " .. opts.timeout) end
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = shell_quote(a) end
  local envs = {}
  for k, v in pairs(opts.env or {}) do envs[#envs + 1] = k .. "=" .. shell_quote(v) end
  local line = string.format("%s%s %s 2>%s", cd_for(opts),
    #envs > 0 and ("env " .. table.concat(envs, " ")) or "", table.concat(cmd, " "), errfile)
  local proc = assert(io.popen(line, "r"))
  local out = proc:read("a")
  local _, _, code = proc:close()
  local err = read_file(errfile)
  os.remove(errfile)
  return out, err, code
end

-- "127.0.0.1", "::1", ... from an address of /proc/net/tcp or tcp6 (hex,
-- each 32-bit word in host byte order, little-endian here).
local function proc_addr(hex)
  local bytes = {}
  for w = 1, #hex, 8 do
    local word = hex:sub(w, w + 7)
    for b = 7, 1, -2 do bytes[#bytes + 1] = tonumber(word:sub(b, b + 1), 16) end
  end
  if #bytes == 4 then return table.concat(bytes, ".") end
  local groups = {}
  for i = 1, 16, 2 do groups[#groups + 1] = string.format("%x", bytes[i] * 256 + bytes[i + 1]) end
  local best, len = nil, 1                   -- the longest run of zero groups becomes ::
  local i = 1
  while i <= 8 do
    local j = i
    while j <= 8 and groups[j] == "0" do j = j + 1 end
    if j - i > len then best, len = i, j - i end
    i = j + 1
  end
  if not best then return table.concat(groups, ":") end
  return table.concat(groups, ":", 1, best - 1) .. "::" .. table.concat(groups, ":", best + len, 8)
end

-- The TCP sockets in LISTEN state that the processes pids hold open, as a
-- sorted list of "127.0.0.1:8080" / "[::1]:8080", each socket once.
function M.listening(pids)
  local inodes = {}
  for _, pid in ipairs(pids) do
    local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
    for line in p:lines() do
      local ino = line:match("socket:%[(%d+)%]")
      if ino then inodes[ino] = true end
    end
    p:close()
  end
  local out = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local f = io.open(file)
    if f then
      for line in f:lines() do
        local fields = {}
        for w in line:gmatch("%S+") do fields[#fields + 1] = w end
        local addr, port = (fields[2] or ""):match("^(%x+):(%x+)$")
        if addr and fields[4] == "0A" and inodes[fields[10]] then
          local host = proc_addr(addr)
          if #addr > 8 then host = "[" .. host .. "]" end
          out[#out + 1] = host .. ":" .. tonumber(port, 16)
        end
      end
      f:close()
    end
  end
  table.sort(out)
  return out
end

return M
