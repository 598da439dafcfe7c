-- owin: pipelines of OWIN middleware, and the runtime helpers apps use.
--
--   local owin = require("owin")
--   local app = owin.new()
--   app.use(function(env, next) ... next() ... end)
--   app.run(function(env) ... end)
--   local appfunc = app.build()
--
-- Inside the owinlua server the C core (owin.core) provides owin.now,
-- owin.sleep and the request ids; loaded by plain Lua (unit tests, other
-- hosts) the module still builds pipelines.

local ok_core, core = pcall(require, "owin.core")
if not ok_core then core = nil end

local type, select, error, pcall, setmetatable, getmetatable =
  type, select, error, pcall, setmetatable, getmetatable
local tostring, string_format, io_stderr, os_date = tostring, string.format, io.stderr, os.date
local coroutine_running = coroutine.running

local M = {}

local PATH, PATH_BASE, STATUS = "owin.RequestPath", "owin.RequestPathBase", "owin.ResponseStatusCode"

------------------------------------------------------------------------------
-- The env of the request running in the current coroutine, so that `next()`
-- needs no closure per request.  A host registers envs here (the server does
-- it in C; owin.test and other hosts call owin.set_env).

local envs = setmetatable({}, { __mode = "k" })

local function set_env(co, env)
  envs[co] = env
end

local function current_env()
  local co = coroutine_running()
  local env = envs[co]
  if env == nil and core then env = core.env() end
  return env
end

------------------------------------------------------------------------------
-- Pipeline builder

local function not_found(env)
  -- falling off the end: 404, unless the response already started
  pcall(function() env[STATUS] = 404 end)
end

local Builder = {}
Builder.__index = Builder

-- A function, or a table whose metatable has __call (an owin.router).
local function check_fn(f, what, n)
  if type(f) ~= "function" then
    local mt = getmetatable(f)
    if type(mt) == "table" and type(mt.__call) == "function" then return end
    error(string_format("bad argument #%d to '%s' (function expected, got %s)", n, what, type(f)), 3)
  end
end

local function normalize_prefix(prefix)
  if type(prefix) ~= "string" or prefix:sub(1, 1) ~= "/" then
    error("bad argument #1 to 'map' (a path prefix starting with \"/\" expected, got " ..
      tostring(prefix) .. ")", 3)
  end
  if prefix:sub(-1) == "/" then
    error("bad argument #1 to 'map' (the prefix must not end with \"/\": " .. prefix .. ")", 3)
  end
  return prefix
end

-- Wraps a middleware function(env, next) around the app `nxt`.
local function compose_use(fn, nxt)
  local function next_(env)
    if env == nil then
      env = current_env()
      if env == nil then
        error("next() was called outside the request's coroutine: call next(env)", 2)
      end
    end
    return nxt(env)
  end
  return function(env) return fn(env, next_) end
end

-- Puts RequestPathBase and RequestPath back when a map branch is left, by
-- return or by error (a to-be-closed value: the error keeps its traceback).
local restore_mt = {
  __close = function(r)
    local env = r[1]
    env[PATH_BASE], env[PATH] = r[2], r[3]
  end,
}

-- map: path prefix match on segment boundaries, ignoring case.
local function compose_map(prefix, branch, nxt)
  local lprefix, n = prefix:lower(), #prefix
  return function(env)
    local path = env[PATH]
    if path:sub(1, n):lower() == lprefix and (#path == n or path:byte(n + 1) == 47) then
      local base = env[PATH_BASE]
      local rest = path:sub(n + 1)
      local _ <close> = setmetatable({ env, base, path }, restore_mt)
      env[PATH_BASE] = base .. path:sub(1, n)
      env[PATH] = rest == "" and "/" or rest
      branch(env)
      return
    end
    return nxt(env)
  end
end

local function compose_when(pred, branch, nxt)
  return function(env)
    if pred(env) then return branch(env) end
    return nxt(env)
  end
end

local function compose(steps)
  local app = not_found
  for i = #steps, 1, -1 do
    local s = steps[i]
    local kind = s[1]
    if kind == "run" then
      app = s[2]
      if type(app) ~= "function" then            -- a callable table: an AppFunc is a function
        local t = app
        app = function(env) return t(env) end
      end
    elseif kind == "use" then
      app = compose_use(s[2], app)
    elseif kind == "owin" then
      local built = s[2](app)
      if type(built) ~= "function" then
        error("use_owin: the middleware factory must return an AppFunc, got " .. type(built), 0)
      end
      app = built
    elseif kind == "map" then
      app = compose_map(s[2], s[3].build(), app)
    elseif kind == "when" then
      app = compose_when(s[2], s[3].build(), app)
    end
  end
  return app
end

-- Makes a builder whose functions work with a dot (app.use(f)) and with a
-- colon (app:use(f)).
function M.new()
  local self = setmetatable({ steps = {} }, Builder)
  local steps = self.steps
  local function args(...)
    if select(1, ...) == self then return select(2, ...) end
    return ...
  end
  function self.use(...)
    local fn = args(...)
    check_fn(fn, "use", 1)
    steps[#steps + 1] = { "use", fn }
    return self
  end
  function self.run(...)
    local fn = args(...)
    check_fn(fn, "run", 1)
    steps[#steps + 1] = { "run", fn }
    return self
  end
  function self.use_owin(...)
    local midfunc = args(...)
    check_fn(midfunc, "use_owin", 1)
    steps[#steps + 1] = { "owin", midfunc }
    return self
  end
  function self.map(...)
    local prefix, configure = args(...)
    prefix = normalize_prefix(prefix)
    check_fn(configure, "map", 2)
    local branch = M.new()
    configure(branch)
    steps[#steps + 1] = { "map", prefix, branch }
    return self
  end
  function self.map_when(...)
    local pred, configure = args(...)
    check_fn(pred, "map_when", 1)
    check_fn(configure, "map_when", 2)
    local branch = M.new()
    configure(branch)
    steps[#steps + 1] = { "when", pred, branch }
    return self
  end
  function self.build()
    return compose(steps)
  end
  function self.empty()
    return #steps == 0
  end
  return self
end

function M.is_builder(x)
  return type(x) == "table" and getmetatable(x) == Builder
end

------------------------------------------------------------------------------
-- Runtime helpers

if core then
  M.now = core.now
  M.sleep = core.sleep
  M.semaphore = core.semaphore
  M.spawn = core.spawn
  M.wait = core.wait
  M.timer = core.timer
  M.tcp = core.tcp
  M.udp = core.udp
  M.resolve = core.resolve
  M.stopping = core.stopping
  M.headers = core.headers
  M.keys = core.keys
  M.token = core.token
  M.version = core.version
  M.request_id = core.request_id
  M.fs = core.fs
else
  M.now = function() return os.time() end
  M.sleep = function()
    error("owin.sleep needs a host that runs requests in coroutines (the owinlua server)", 2)
  end
  M.request_id = function() return nil end
  M.version = "0.1.0"
  M.headers = require("owin.headers").new         -- the same semantics, in Lua
end
M.set_env = set_env
M.current_env = current_env

------------------------------------------------------------------------------
-- The app script's directory, as an absolute path.  The hosts that load a
-- script (owin.cli, owin.test) set it before the script runs, so that a
-- relative path in the app (owin.static's root) means the same thing from
-- any working directory.  nil when no script was loaded (an app built in
-- Lua and handed to a host).

local app_dir

function M.app_dir()
  return app_dir
end

-- owin.set_app_dir(dir): dir is made absolute (canonical with owin.fs,
-- else joined to $PWD); nil forgets it.  Returns the absolute directory.
function M.set_app_dir(dir)
  if dir ~= nil and type(dir) ~= "string" then
    error("bad argument #1 to 'set_app_dir' (directory path expected, got " .. type(dir) .. ")", 2)
  end
  if dir == nil or dir == "" then
    app_dir = nil
    return nil
  end
  local real = M.fs and M.fs.realpath(dir)
  if real then
    dir = real
  elseif dir:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if pwd and pwd:sub(1, 1) == "/" then
      dir = (dir == "." and pwd) or pwd:gsub("/$", "") .. "/" .. dir:gsub("^%./", "")
    end
  end
  app_dir = dir
  return dir
end

------------------------------------------------------------------------------
-- Cosockets: what connect does around the C primitives (src/client/): take
-- an idle connection of the pool, or resolve the name and connect to its
-- addresses in turn.

if core then
  local TCP, UDP, resolve = core.tcp_methods, core.udp_methods, core.resolve
  local take, connect_addr, unslot = TCP._take, TCP._connect, TCP._unslot
  local tonumber, math_tointeger = tonumber, math.tointeger

  -- sock:connect(host, port [, opts]) or sock:connect("unix:/path" [, opts])
  -- -> 1, or nil, err.  opts: pool (a name), pool_size, backlog.
  function TCP:connect(host, port, opts)
    if type(host) ~= "string" or host == "" then
      error(string_format("bad argument #1 to 'connect' (host name or unix:/path expected, got %s)",
        host == "" and "an empty string" or type(host)), 2)
    end
    local unix = host:sub(1, 5) == "unix:"
    if unix then
      if type(port) == "table" and opts == nil then opts, port = port, nil end
    else
      port = math_tointeger(tonumber(port))
      if not port or port < 1 or port > 65535 then
        error("bad argument #2 to 'connect' (port from 1 to 65535 expected)", 2)
      end
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #3 to 'connect' (table of options expected, got " .. type(opts) .. ")", 2)
    end
    local key = opts and opts.pool
    if key ~= nil and type(key) ~= "string" then
      error("bad argument #3 to 'connect' (opts.pool must be a string)", 2)
    end
    key = key or (unix and host or host .. ":" .. port)
    local reused, err = take(self, key, opts and opts.pool_size, opts and opts.backlog)
    if reused then return 1 end
    if reused == nil then return nil, err end
    if unix then
      local ok, cerr = connect_addr(self, host)
      if not ok then unslot(self) end
      return ok, cerr
    end
    local addrs, rerr = resolve(host)
    if not addrs then
      unslot(self)
      return nil, rerr
    end
    local ok, cerr
    for i = 1, #addrs do
      ok, cerr = connect_addr(self, addrs[i], port)
      if ok or cerr == "cancelled" or cerr == "timeout" then break end
    end
    if not ok then unslot(self) end
    return ok, cerr
  end

  -- udp:setpeername(host, port): a name is resolved; "*" drops the peer.
  local setpeername = UDP._setpeername
  function UDP:setpeername(host, port)
    if type(host) ~= "string" then
      error("bad argument #1 to 'setpeername' (host expected, got " .. type(host) .. ")", 2)
    end
    local addrs, err = resolve(host)
    if not addrs then return nil, err end
    return setpeername(self, addrs[1], port)
  end
  UDP._setpeername = nil
end

------------------------------------------------------------------------------
-- Logging to stderr: "2026-01-02T03:04:05Z [info] [<request id>] message"; in
-- the server the C core writes the line, and a worker's lines say which
-- worker ("[info] worker 2: [...] message").

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
local log_write = core and core.log_write
local threshold = LEVELS.info

local log = {}
M.log = log

function log.set_level(name)
  local n = LEVELS[name]
  if not n then
    error("bad argument #1 to 'set_level' (debug, info, warn or error expected, got " ..
      tostring(name) .. ")", 2)
  end
  threshold = n
end

local function emit(level, name, fmt, ...)
  if level < threshold then return end
  local msg
  if select("#", ...) > 0 then
    msg = string_format(fmt, ...)
  else
    msg = tostring(fmt)
  end
  local id = M.request_id()
  if log_write then return log_write(name, id and tostring(id), msg) end
  local prefix = os_date("!%Y-%m-%dT%H:%M:%SZ") .. " [" .. name .. "] "
  if id then prefix = prefix .. "[" .. tostring(id) .. "] " end
  io_stderr:write(prefix, msg, "\n")
end

for name, level in pairs(LEVELS) do
  log[name] = function(fmt, ...) return emit(level, name, fmt, ...) end
end

------------------------------------------------------------------------------
-- HTTP errors: owin.error(status, message [, details]) raises one, and the
-- errors middleware (owin.errors, docs/errors.md) answers it with a page of
-- that status.

local math_tointeger, debug_getinfo = math.tointeger, debug.getinfo

local HttpError = { __name = "owin.error" }
HttpError.__index = HttpError

local function reason(status)
  local phrase = require("owin.host.status").reason(status)
  return phrase ~= "" and phrase or "Error"
end

function HttpError.__tostring(e)
  return string_format("owin.error %d %s", e.status, e.message or reason(e.status)) ..
    (e.where and " (at " .. e.where .. ")" or "")
end

-- An error object for status, message and details; `level` is where it
-- counts as raised, as error()'s (1: the function that calls make_error).
local function make_error(fname, status, message, details, level)
  local st = type(status) == "number" and math_tointeger(status)
  if not st or st < 400 or st > 599 then
    error(string_format("bad argument #1 to '%s' (an HTTP error status from 400 to 599 " ..
      "expected, got %s)", fname, tostring(status)), level + 1)
  end
  if message ~= nil and type(message) ~= "string" then
    error(string_format("bad argument #2 to '%s' (string expected, got %s)", fname,
      type(message)), level + 1)
  end
  local info = debug_getinfo(level + 1, "Sl")
  local where = info and info.currentline > 0 and info.short_src .. ":" .. info.currentline or nil
  return setmetatable({ status = st, message = message, details = details, where = where },
    HttpError)
end

-- owin.error(status, message [, details]): raises an HTTP error: status
-- from 400 to 599, message for the client (the reason phrase when nil),
-- details (any JSON value) for the JSON answer.
function M.error(status, message, details)
  error(make_error("error", status, message, details, 2))
end

-- owin.is_error(v) -> true when v was raised by owin.error (or owin.assert)
function M.is_error(v)
  return getmetatable(v) == HttpError
end

-- The failures of request input (request:body/json/form, body:read) that
-- owin.assert turns into HTTP errors.
local CODE_STATUS = { EINVAL = 400, E2BIG = 413, ENOTSUP = 415, ETIMEDOUT = 408, ECONNRESET = 400 }

-- owin.assert(v, status, message [, details]) -> v, or owin.error(status,
-- message, details) when v is false or nil (Koa's ctx.assert).
-- owin.assert(v, err, code) -> v, err, code: for request input's nil, err,
-- code: EINVAL -> 400, E2BIG -> 413, ENOTSUP -> 415, ETIMEDOUT -> 408 and
-- ECONNRESET -> 400, with err (its "ENAME: " cut) as the message; any other
-- failure raises err as assert() does (a 500).
function M.assert(v, ...)
  if v then return v, ... end
  local err, code = ...
  if type(err) == "number" then
    local _, message, details = ...
    error(make_error("assert", err, message, details, 2))
  end
  local status = CODE_STATUS[code]
  if status then
    local message = type(err) == "string" and err:gsub("^E[%u%d]+: ", "") or nil
    error(make_error("assert", status, message, nil, 2))
  end
  if err == nil then error("assertion failed!", 2) end
  error(err, 0)
end

-- owin.dev() -> true when the server runs with --dev (the test host: its
-- client's dev option).
M.dev = core and core.dev or function() return false end

-- owin.context(env) and owin.json without a require: loaded on first use.
local LAZY = { context = "owin.context", json = "owin.json" }
setmetatable(M, { __index = function(t, k)
  local name = LAZY[k]
  if name then
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end
end })

return M
