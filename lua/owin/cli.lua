-- owinlua's command line: options (each also read from OWINLUA_<NAME>),
-- loading the app script, binding, serving.

local owin = require("owin")
local options = require("owin.options")

local OPTIONS, BY_NAME = options.OPTIONS, options.BY_NAME
local env_name, convert = options.env_name, options.convert

local M = {}


-- Parses argv (and the environment): options table and the app path,
-- or nil, err.
function M.parse(argv, getenv)
  getenv = getenv or os.getenv
  local opts, set = {}, {}
  for _, o in ipairs(OPTIONS) do
    local v = getenv(env_name(o[1]))
    if v ~= nil and o[1] ~= "help" and o[1] ~= "version" then
      if o[3] == "list" then
        local list = {}
        for item in v:gmatch("[^,%s]+") do list[#list + 1] = item end
        if #list > 0 then opts[o[1]] = list end   -- empty: the default applies
      else
        local val, err = convert(o, v)
        if val == nil then return nil, err .. " (from " .. env_name(o[1]) .. ")" end
        opts[o[1]] = val
      end
    end
  end
  local app
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a:sub(1, 2) == "--" and #a > 2 then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = BY_NAME[name]
      if not o and value == nil and name:sub(1, 3) == "no-" then
        o = BY_NAME[name:sub(4)]                 -- --no-FLAG
        if o and o[3] == "flag" then name, value = name:sub(4), "0" else o = nil end
      end
      if not o then
        return nil, string.format("unknown option --%s (see owinlua --help)", name)
      end
      if o[3] == "flag" then
        local val, err = convert(o, value == nil and true or value)
        if val == nil then return nil, err end
        opts[name] = val
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, string.format("--%s needs a value", name) end
        end
        if o[3] == "list" then
          if not set[name] then opts[name] = {} end
          table.insert(opts[name], value)
        else
          local val, err = convert(o, value)
          if val == nil then return nil, err end
          opts[name] = val
        end
      end
      set[name] = true
    elseif a == "-h" then
      opts.help = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, string.format("unknown option %s (see owinlua --help)", a)
    elseif app == nil then
      app = a
    else
      return nil, string.format("unexpected argument '%s': one app script only", a)
    end
    i = i + 1
  end
  for _, o in ipairs(OPTIONS) do
    if opts[o[1]] == nil then
      if o[3] == "list" then
        opts[o[1]] = { o[4] }                      -- {} when there is no default
      elseif o[4] == nil then                   -- no default: stays unset
      elseif o[3] == "flag" then
        opts[o[1]] = o[4]
      else
        opts[o[1]] = assert(convert(o, o[4]))
      end
    end
  end
  return opts, app
end

function M.usage()
  local lines = {
    "usage: owinlua [options] app.lua",
    "",
    "Serves the OWIN app defined by app.lua over HTTP/1.1.  The script runs with",
    "the globals `app` (a pipeline builder) and `owin`; it may instead return an",
    "AppFunc function(env) or a builder.  Every option can also be set with the",
    "environment variable shown beside it; options on the command line win.",
    "",
    "options:",
  }
  for _, o in ipairs(OPTIONS) do
    local head = "  --" .. o[1] .. (o[2] and (" " .. o[2]) or "")
    local default = ""
    if o[3] ~= "flag" and o[4] ~= nil then default = " (default: " .. tostring(o[4]) .. ")" end
    local var = (o[1] == "help" or o[1] == "version") and "" or env_name(o[1])
    lines[#lines + 1] = string.format("%-28s %s", head, var)
    for text in o[5]:gmatch("[^\n]+") do
      lines[#lines + 1] = "      " .. text
    end
    if default ~= "" then lines[#lines] = lines[#lines] .. default end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "SIZE takes a byte count or a k, m or g suffix (KiB, MiB, GiB)."
  lines[#lines + 1] = "SIGINT/SIGTERM stop gracefully; a second signal stops at once.  Without"
  lines[#lines + 1] = "--workers or --reload, SIGHUP reloads the TLS certificates and keys (new"
  lines[#lines + 1] = "connections get them; a file that does not load leaves the old ones)."
  lines[#lines + 1] = "A worker sees OWINLUA_WORKER_ID (1, 2, ...) in its environment."
  return table.concat(lines, "\n") .. "\n"
end

-- A worker's failures are log lines (its master's lines are around them);
-- elsewhere, one "owinlua: ..." line.
local log_failure

local function fail(code, fmt, ...)
  local msg = string.format(fmt, ...)
  if log_failure then
    log_failure(msg)
  else
    io.stderr:write("owinlua: ", msg, "\n")
  end
  return code
end

-- Why the file at path cannot be read as a script, as the end of the
-- sentence "cannot load PATH: ..."; nil when it can be read.
function M.unreadable(path)
  local f, err, code = io.open(path, "r")
  if not f then
    if code == 2 then return "no such file" end
    if code == 13 then return "permission denied (the file cannot be read)" end
    return (tostring(err):gsub("^.*: ", ""):lower())
  end
  local ok, rerr, rcode = f:read(1)
  f:close()
  if ok == nil and rerr ~= nil then
    if rcode == 21 then return "it is a directory, not a Lua script" end
    return tostring(rerr):lower()
  end
  return nil
end

-- loadfile's error for path as "cannot load PATH: ...".
local function load_error(path, err)
  local line, msg = tostring(err):match("^.-:(%d+): (.*)$")
  if line then
    return string.format("cannot load %s: syntax error on line %s: %s", path, line, msg)
  end
  return string.format("cannot load %s: %s", path, tostring(err):gsub("^cannot read [^:]*: ", ""))
end

-- Loads the app script; returns an AppFunc, or nil, err.
function M.load_app(path)
  local why = M.unreadable(path)
  if why then return nil, string.format("cannot load %s: %s", path, why) end
  local dir = path:match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  local chunk, err = loadfile(path)
  if not chunk then return nil, load_error(path, err) end
  owin.set_app_dir(dir == "" and "/" or dir)  -- relative paths in the app start here
  local builder = owin.new()
  _G.app = builder
  _G.owin = owin
  -- In the server the script runs as a coroutine on the loop, so it may
  -- wait (cosockets at start-up); plain Lua (unit specs) calls it.
  local has_core, core = pcall(require, "owin.core")
  local ok, result, traceback
  if has_core then
    ok, result, traceback = core.startup(chunk)
  else
    ok, result = xpcall(chunk, debug.traceback)
    traceback = not ok and tostring(result):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "") or nil
  end
  if not ok then
    return nil, "error while loading " .. path .. ": " .. tostring(traceback or result)
  end
  if type(result) == "function" then return result end
  if owin.is_builder(result) then return result.build() end
  local mt = getmetatable(result)
  if type(mt) == "table" and type(mt.__call) == "function" then   -- an owin.router
    return function(env) return result(env) end
  end
  if result ~= nil then
    return nil, string.format("%s returned a %s: expected nothing, an AppFunc or a builder",
      path, type(result))
  end
  if builder.empty() then
    return nil, path .. " defines no app: call app.use/app.run, or return an AppFunc"
  end
  local built_ok, app = pcall(builder.build)
  if not built_ok then return nil, "cannot build the pipeline: " .. tostring(app) end
  return app
end

-- Checks every listen address as a start would, binding nothing; returns
-- true, or nil, err.
function M.check_listen(list, core)
  for _, spec in ipairs(list) do
    local ok, err = core.check_listen(spec)
    if not ok then return nil, err end
  end
  return true
end

-- Loads the TLS context when a listener is https:// (in every process: the
-- master checks the files before it starts workers); true, or nil, err, code.
function M.tls_setup(opts, core)
  local https = false
  for _, spec in ipairs(opts.listen) do
    if spec:match("^https://") then https = true end
  end
  local certs, keys = opts["tls-cert"], opts["tls-key"]
  if not https then
    if #certs > 0 then
      return nil, "--tls-cert is given but no listener is https:// (--listen https://HOST:PORT)", 2
    end
    return true
  end
  if #certs == 0 or #keys == 0 then
    return nil, "an https:// listener needs --tls-cert FILE and --tls-key FILE", 2
  end
  if #certs ~= #keys then
    return nil, string.format("--tls-cert and --tls-key come in pairs: %d certificate%s, %d key%s",
      #certs, #certs == 1 and "" or "s", #keys, #keys == 1 and "" or "s"), 2
  end
  local names, err = core.tls_server({
    certs = certs, keys = keys,
    password_file = opts["tls-password-file"],
    ciphers = opts["tls-ciphers"],
    min_version = opts["tls-min-version"] == "1.3" and 13 or 12,
    client_ca = opts["tls-client-ca"],
    client_cert = opts["tls-client-cert"],
  })
  if not names then return nil, err, 1 end
  return true
end

function M.main(argv)
  local opts, app_path = M.parse(argv)
  if not opts then return fail(2, "%s", app_path) end
  if opts.help then
    io.stdout:write(M.usage())
    return 0
  end
  if opts.version then
    io.stdout:write("owinlua ", owin.version, " (", _VERSION, ")\n")
    return 0
  end
  if not app_path then return fail(2, "no app script given (usage: owinlua [options] app.lua)") end
  owin.log.set_level(opts["log-level"])
  local core = require("owin.core")
  core.configure(options.core_config(opts))
  local worker_id, worker_specs = core.worker()
  if worker_id then
    log_failure = function(msg) core.log_write("error", nil, msg) end
  end
  -- the same checks for --check and for every kind of start
  local ok, lerr = M.check_listen(opts.listen, core)
  if not ok then return fail(2, "%s", lerr) end
  local tls_ok, terr, tcode = M.tls_setup(opts, core)
  if not tls_ok then return fail(tcode, "%s", terr) end
  local workers = opts.workers == "auto" and core.cpus() or opts.workers
  if not worker_id and not opts.check and (workers > 1 or opts.reload) then
    return M.master(opts, app_path, workers, argv, core)
  end
  local app, err = M.load_app(app_path)
  if not app then return fail(1, "%s", err) end
  if opts.check then
    io.stdout:write(app_path, ": ok\n")
    return 0
  end
  for _, spec in ipairs(worker_specs or opts.listen) do
    local addrs, aerr = core.listen(spec, worker_id and "inherit" or nil)
    if not addrs then return fail(1, "%s", aerr) end
    if not worker_id then
      for _, addr in ipairs(addrs) do io.stdout:write("listening on ", addr, "\n") end
    end
  end
  io.stdout:flush()
  if worker_id then core.worker_ready() end
  core.run(app)
  return 0
end

-- The master of --workers/--reload: binds, prints the addresses, starts and
-- supervises the workers (src/server/master.c); returns the exit code.  It never
-- loads the app: the workers do.
function M.master(opts, app_path, workers, argv, core)
  local why = M.unreadable(app_path)
  if why then return fail(1, "cannot load %s: %s", app_path, why) end
  for _, spec in ipairs(opts.listen) do
    local addrs, lerr = core.listen(spec, "hold")
    if not addrs then return fail(1, "%s", lerr) end
    for _, addr in ipairs(addrs) do io.stdout:write("listening on ", addr, "\n") end
  end
  io.stdout:flush()
  return core.master({
    workers = workers,
    argv = argv,
    reload = opts.reload and (app_path:match("^(.*)/[^/]*$") or ".") or nil,
  })
end

M.OPTIONS = OPTIONS
return M
