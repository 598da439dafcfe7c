-- owin.wsapi.app: WSAPI applications inside owinlua (the app side of
-- owin.wsapi, which re-exports it; require owin.wsapi, not this module).
--
--   wsapi.app(wsapi_app [, opts])          -- an OWIN AppFunc running it
--   wsapi.middleware(wsapi_app [, opts])   -- the same for app.use
--   wsapi.load(path [, modname])           -- an app script's run function
--   wsapi.wsapi_env(env [, opts])          -- the WSAPI env of an OWIN request
--
-- The app runs under any OWIN host (the server, owin.test, the handler side
-- of owin.wsapi): it only uses the env's keys and streams.

local owin = require("owin")

local type, error, xpcall, select, tostring, tonumber, pairs, setmetatable, rawget, rawset =
  type, error, xpcall, select, tostring, tonumber, pairs, setmetatable, rawget, rawset
local string_format, string_upper, string_lower, string_gsub, string_find, string_match,
  string_sub = string.format, string.upper, string.lower, string.gsub, string.find,
  string.match, string.sub
local table_concat, table_pack, table_unpack = table.concat, table.pack, table.unpack
local coroutine_running, coroutine_yield, coroutine_isyieldable =
  coroutine.running, coroutine.yield, coroutine.isyieldable
local math_min = math.min
local io_stderr = io.stderr
local debug_traceback = debug.traceback

local M = {}

local CHUNK = 65536          -- bytes asked of a stream per read

------------------------------------------------------------------------------
-- Loading WSAPI application scripts written for Lua 5.1: module()

-- module(name, ...) as Lua 5.1 had it (removed in 5.2): makes (or reuses)
-- package.loaded[name] and the global of that name, then makes it the
-- environment of the calling chunk by setting the chunk's _ENV upvalue,
-- which every function of the chunk shares.
local function compat_module(name, ...)
  if type(name) ~= "string" then
    error("bad argument #1 to 'module' (string expected, got " .. type(name) .. ")", 2)
  end
  local m = package.loaded[name]
  if type(m) ~= "table" then
    m = {}
    package.loaded[name] = m
  end
  if m._NAME == nil then
    m._M, m._NAME, m._PACKAGE = m, name, string_match(name, "^(.*%.)[^.]*$") or ""
  end
  local g, parts = _G, {}
  for part in string.gmatch(name, "[^.]+") do parts[#parts + 1] = part end
  for i = 1, #parts - 1 do
    if type(g[parts[i]]) ~= "table" then g[parts[i]] = {} end
    g = g[parts[i]]
  end
  if g[parts[#parts]] == nil then g[parts[#parts]] = m end
  local f = debug.getinfo(2, "f").func
  local i = 1
  while true do
    local upname = debug.getupvalue(f, i)
    if upname == nil then error("module: the calling chunk has no _ENV", 2) end
    if upname == "_ENV" then
      debug.setupvalue(f, i, m)
      break
    end
    i = i + 1
  end
  for j = 1, select("#", ...) do select(j, ...)(m) end
end

local function seeall(m)
  setmetatable(m, { __index = _G })
end

local function normalize_app(x, what)
  if type(x) == "function" then return x end
  if type(x) == "table" and type(x.run) == "function" then return x.run end
  error(string_format("%s is not a WSAPI application (a function, or a table with a " ..
    "run function expected, got %s)", what, type(x)), 3)
end

-- wsapi.load(path [, modname]) -> the WSAPI run function of an app script:
-- one that returns a function or a table with `run`, or one written for
-- Lua 5.1 with module(..., package.seeall) and a global `run`.  The script
-- gets `...` = modname (default: the file name without .lua), as WSAPI's
-- launchers give it, and its globals go to a table of its own.
function M.load(path, modname)
  if type(path) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(path) .. ")", 2)
  end
  modname = modname or string_match(path, "([^/\\]+)%.lua$") or path
  local pkg = setmetatable({ seeall = package.seeall or seeall },
    { __index = package, __newindex = package })
  local genv = setmetatable({ module = compat_module, package = pkg }, { __index = _G })
  local chunk, err = loadfile(path, "bt", genv)
  if not chunk then error("owin.wsapi: cannot load " .. err, 2) end
  local result = chunk(modname, path)
  if result == nil then
    local loaded = package.loaded[modname]
    if type(loaded) == "table" and loaded._NAME == modname then
      result = loaded
    elseif type(rawget(genv, "run")) == "function" then
      result = genv
    end
  end
  return normalize_app(result, path)
end

-- A module name goes through M.load when it is a Lua file on
-- package.path (so module() works), else through require.
local function resolve_wsapi(x)
  if type(x) == "string" then
    local file = package.searchpath(x, package.path)
    if file then return M.load(file, x) end
    return normalize_app(require(x), x)
  end
  return normalize_app(x, "the argument")
end

------------------------------------------------------------------------------
-- OWIN -> WSAPI: the WSAPI env

-- The WSAPI input stream over owin.RequestBody: read(n) returns n bytes
-- (fewer only at the end) or nil at the end; read() or read("a") the rest
-- (read() gives nil at the end, read("a") ""); read("l")/("L") a line.
local Input = {}
Input.__index = Input

local READ, READ_DONE = {}, {}   -- trampoline tags (see the body loop in M.app)

local function body_read(self, n)
  local data, err = self.body:read(n)
  if data == nil and err then error("owin.wsapi: request body: " .. tostring(err), 0) end
  if data == "" and n ~= "a" then data = nil end
  return data
end

local function take(self, n)
  local buf = self.buf
  if #buf <= n then
    self.buf = ""
    return buf
  end
  self.buf = string_sub(buf, n + 1)
  return string_sub(buf, 1, n)
end

local function read_count(self, n)
  if n <= 0 then return "" end
  local parts, got = {}, 0
  if #self.buf > 0 then
    parts[1] = take(self, n)
    got = #parts[1]
  end
  while got < n and not self.eof do
    local data = body_read(self, math_min(n - got, CHUNK))
    if data == nil then
      self.eof = true
    else
      parts[#parts + 1] = data
      got = got + #data
    end
  end
  if got == 0 then return nil end
  return table_concat(parts)
end

local function read_rest(self)
  local rest = ""
  if not self.eof then
    rest = body_read(self, "a") or ""
    self.eof = true
  end
  local s = self.buf .. rest
  self.buf = ""
  return s
end

local function read_line(self, keep)
  while not string_find(self.buf, "\n", 1, true) and not self.eof do
    local data = body_read(self, CHUNK)
    if data == nil then self.eof = true else self.buf = self.buf .. data end
  end
  local buf = self.buf
  if buf == "" then return nil end
  local i = string_find(buf, "\n", 1, true)
  if not i then
    self.buf = ""
    return buf
  end
  self.buf = string_sub(buf, i + 1)
  return string_sub(buf, 1, keep and i or i - 1)
end

local function direct_read(self, fmt)
  if fmt == nil then
    local s = read_rest(self)
    if s == "" then return nil end
    return s
  end
  if type(fmt) == "number" then return read_count(self, fmt) end
  if type(fmt) == "string" then
    local f = string_gsub(fmt, "^%*", "")
    local c = string_sub(f, 1, 1)
    if c == "a" then return read_rest(self) end
    if c == "l" then return read_line(self, false) end
    if c == "L" then return read_line(self, true) end
  end
  error("bad argument #1 to 'read' (a byte count, \"a\", \"l\" or \"L\" expected, got " ..
    tostring(fmt) .. ")", 3)
end

local NESTED = "owin.wsapi: the request body was read in a coroutine nested inside the " ..
  "body iterator's; read it in the iterator's own coroutine, or before returning"

local function read_result(ask, tag, ...)
  if tag ~= READ_DONE then error(NESTED, 3) end
  ask.delivered = true
  return ...
end

-- Inside a coroutine-based body iterator (coroutine.wrap), a read that may
-- have to wait cannot yield to the server from there: it yields to the body
-- loop below, which reads in the request's coroutine and passes the result
-- back in.
function Input:read(fmt)
  if self.iterating and coroutine_running() ~= self.co and coroutine_isyieldable() then
    local ask = {}
    return read_result(ask, coroutine_yield(READ, self, fmt, ask))
  end
  return direct_read(self, fmt)
end

-- for line in input:lines() do ... end
function Input:lines()
  return function() return self:read("l") end
end

local function first(values, sep)
  if type(values) ~= "table" then return values end
  if #values == 1 then return tostring(values[1]) end
  local t = {}
  for i = 1, #values do t[i] = tostring(values[i]) end
  return table_concat(t, sep or ", ")
end

-- "[::1]:8080" -> "::1", "8080"; "example.com:80" -> "example.com", "80"
local function split_host(host)
  if not host or host == "" then return nil end
  local name, port = string_match(host, "^%[([^%]]*)%]:?(%d*)$")
  if not name then
    name, port = string_match(host, "^([^:]*):?(%d*)$")
  end
  if not name then return host end   -- a bare IPv6 address or something odd
  return name, port ~= "" and port or nil
end

-- Headers a WSAPI env leaves out of HTTP_*: the two RFC 3875 gives their own
-- variables, and Proxy (httpoxy, CVE-2016-5385: CGI code reads HTTP_PROXY as
-- proxy configuration).
local SKIP = { ["content-type"] = true, ["content-length"] = true, proxy = true }

-- wsapi.wsapi_env(env [, opts]) -> the WSAPI env of an OWIN request.
-- HTTP_* variables come from every request header whose name has only
-- letters, digits and "-": "-" becomes "_", so a header spelled with "_"
-- (X_Forwarded_For) would collide with the one spelled with "-"
-- (X-Forwarded-For), and is left out, as nginx does by default
-- (underscores_in_headers off) and Puma does since CVE-2024-45614.  The
-- OWIN env keeps them all (wsapi_env.owin_env).  Repeated headers are
-- joined with ", " (Cookie with "; ").  opts.vars adds or replaces
-- variables (DOCUMENT_ROOT, ...).
function M.wsapi_env(env, opts)
  opts = opts or {}
  local h = env["owin.RequestHeaders"]
  local scheme = env["owin.RequestScheme"] or "http"
  local path = env["owin.RequestPath"] or "/"
  local w = {
    REQUEST_METHOD = env["owin.RequestMethod"],
    SCRIPT_NAME = env["owin.RequestPathBase"] or "",
    PATH_INFO = path ~= "" and path or "/",
    QUERY_STRING = env["owin.RequestQueryString"] or "",
    SERVER_PROTOCOL = env["owin.RequestProtocol"] or "HTTP/1.1",
    GATEWAY_INTERFACE = "CGI/1.1",
    SERVER_SOFTWARE = "owinlua/" .. tostring(owin.version),
    REQUEST_SCHEME = scheme,
    HTTPS = scheme == "https" and "on" or nil,
  }
  local remote = env["server.RemoteIpAddress"]
  if remote and remote ~= "" then w.REMOTE_ADDR = remote end
  local rport = env["server.RemotePort"]
  if rport and rport ~= "" then w.REMOTE_PORT = tostring(rport) end
  local laddr = env["server.LocalIpAddress"]
  if laddr and laddr ~= "" then w.SERVER_ADDR = laddr end
  local hname, hport = split_host(h and first(h["host"]))
  w.SERVER_NAME = hname or w.SERVER_ADDR or "localhost"
  local lport = env["server.LocalPort"]
  if lport and lport ~= "" then
    w.SERVER_PORT = tostring(lport)
  else
    w.SERVER_PORT = hport or (scheme == "https" and "443" or "80")
  end
  if h then
    local ctype = h["content-type"]
    if ctype then w.CONTENT_TYPE = first(ctype) end
    local clen = h["content-length"]
    if clen then w.CONTENT_LENGTH = first(clen) end
    for name, values in pairs(h) do
      local lname = string_lower(name)
      if not SKIP[lname] and not string_find(lname, "[^%w%-]") then
        local var = "HTTP_" .. string_gsub(string_upper(lname), "%-", "_")
        w[var] = first(values, lname == "cookie" and "; " or ", ")
      end
    end
  end
  for k, v in pairs(opts.vars or {}) do w[k] = v end
  w.input = setmetatable({ body = env["owin.RequestBody"], buf = "", eof = false,
                           co = coroutine_running() }, Input)
  w.error = opts.error or io_stderr
  w.owin_env = env
  -- a chunked request has no Content-Length: read it all, as nginx does for
  -- FastCGI, so that apps reading CONTENT_LENGTH bytes get the body
  if w.CONTENT_LENGTH == nil and h and h["transfer-encoding"] then
    local body = read_rest(w.input)
    w.input.buf, w.input.eof = body, true
    w.CONTENT_LENGTH = tostring(#body)
  end
  -- WSAPI: undefined meta-variables read as "", not nil.  HTTP_* variables
  -- not made above (a header table that looks names up lazily, as under a
  -- WSAPI host) are looked up by name, "_" back to "-".
  return setmetatable(w, { __index = function(t, k)
    if h and type(k) == "string" and string_find(k, "^HTTP_[%u%d_]+$") then
      local lname = string_gsub(string_lower(string_sub(k, 6)), "_", "-")
      local values = not SKIP[lname] and h[lname]
      if values then
        local v = first(values, lname == "cookie" and "; " or ", ")
        rawset(t, k, v)
        return v
      end
    end
    return ""
  end })
end

------------------------------------------------------------------------------
-- OWIN -> WSAPI: running the app

local function set_status(env, status)
  local code, reason
  if type(status) == "number" then
    code = status
  elseif type(status) == "string" then
    local c, rest = string_match(status, "^%s*(%d%d%d)$")
    if not c then c, rest = string_match(status, "^%s*(%d%d%d)%s+(.-)%s*$") end
    code = tonumber(c)
    if rest and rest ~= "" then reason = rest end
  end
  if not code or code % 1 ~= 0 or code < 100 or code > 999 then
    error("owin.wsapi: the WSAPI application returned an invalid status: " .. tostring(status), 0)
  end
  env["owin.ResponseStatusCode"] = code
  if reason then env["owin.ResponseReasonPhrase"] = reason end
end

-- Copies the WSAPI headers table into owin.ResponseHeaders: a name replaces
-- what the pipeline set before, and names that differ only in case add up.
local function set_headers(env, wheaders)
  if wheaders == nil then return end
  if type(wheaders) ~= "table" then
    error("owin.wsapi: the WSAPI application returned headers of type " .. type(wheaders), 0)
  end
  local rh = env["owin.ResponseHeaders"]
  local seen = {}
  for name, v in pairs(wheaders) do
    local values = {}
    if type(v) == "table" then
      for i = 1, #v do values[i] = tostring(v[i]) end
    else
      values[1] = tostring(v)
    end
    local lname = string_lower(tostring(name))
    if seen[lname] then
      local cur = rh[name]
      for i = 1, #values do cur[#cur + 1] = values[i] end
      values = cur
    end
    seen[lname] = true
    rh[name] = values
  end
end

-- Errors WSAPI apps raise on purpose: error({ 404, "message" }).
local function status_error(e)
  return type(e) == "table" and math.type(e[1]) == "integer" and e[1] >= 100 and e[1] <= 999
end

local function on_error(e)
  if status_error(e) then return e end
  if type(e) ~= "string" then e = "(error object is a " .. type(e) .. " value)" end
  return debug_traceback(e, 2)
end

local function write_body(out, iter, input, flush)
  if iter == nil then return end
  if type(iter) == "string" then
    out:write(iter)
    return
  end
  if type(iter) ~= "function" then
    error("owin.wsapi: the WSAPI application returned a body of type " .. type(iter) ..
      " (an iterator function expected)", 0)
  end
  input.iterating = true
  local args, ask = table_pack(), nil
  while true do
    local r = table_pack(iter(table_unpack(args, 1, args.n)))
    -- a read answered through the trampoline must have reached its reader
    if ask and not ask.delivered then error(NESTED, 0) end
    ask = nil
    local chunk = r[1]
    if chunk == nil then break end
    if chunk == READ then
      ask = r[4]
      args = table_pack(READ_DONE, direct_read(r[2], r[3]))
    else
      args = table_pack()
      local t = type(chunk)
      if t ~= "string" and t ~= "number" then
        error("owin.wsapi: the body iterator returned a " .. t .. " (a string expected)", 0)
      end
      if not out:write(chunk) then return end   -- the client is gone
      if flush and not out:flush() then return end
    end
  end
end

-- wsapi.app(wsapi_app [, opts]) -> an OWIN AppFunc that runs the WSAPI
-- application.  wsapi_app: a function, a table with `run`, or a module name.
-- opts.vars: extra CGI variables; opts.flush: flush after every body piece
-- (for streaming apps; by default the server buffers, so small answers get
-- a Content-Length); opts.error: the error stream (default io.stderr).
-- Errors propagate to the host, which answers 500 (or cuts the connection
-- once the body started); error({ code, message }) answers that status.
function M.app(wsapi_app, opts)
  local run = resolve_wsapi(wsapi_app)
  opts = opts or {}
  local flush = opts.flush
  return function(env)
    local wenv = M.wsapi_env(env, opts)
    local r = table_pack(xpcall(run, on_error, wenv))
    if not r[1] then
      local e = r[2]
      if status_error(e) then
        env["owin.ResponseStatusCode"] = e[1]
        local msg = e[2] ~= nil and tostring(e[2]) or ""
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain; charset=utf-8"
        env["owin.ResponseBody"]:write(msg)
        return
      end
      error(e, 0)
    end
    set_status(env, r[2])
    set_headers(env, r[3])
    write_body(env["owin.ResponseBody"], r[4], wenv.input, flush)
  end
end

-- wsapi.middleware(wsapi_app [, opts]) -> function(env, next) for app.use.
-- The WSAPI application answers every request that reaches it, so next is
-- never called: put it last, or under app.map("/prefix", ...) (the prefix
-- becomes SCRIPT_NAME).
function M.middleware(wsapi_app, opts)
  local appfunc = M.app(wsapi_app, opts)
  return function(env, _next)
    return appfunc(env)
  end
end

return M
