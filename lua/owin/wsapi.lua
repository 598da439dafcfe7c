-- owin.wsapi: WSAPI (Lua's Rack/WSGI) and OWIN, both ways.
--
--   local wsapi = require("owin.wsapi")
--   app.run(wsapi.app(wsapi_app))        -- a WSAPI application served by owinlua
--   app.use(wsapi.middleware(wsapi_app)) -- the same as a middleware (never calls next)
--   return wsapi.handler(owin_app)       -- an owinlua app as a WSAPI application,
--                                        -- for wsapi.cgi, FastCGI or Xavante
--
-- A WSAPI application is function(wsapi_env) -> status, headers, iterator
-- (keplerproject/wsapi doc/us/manual.md): wsapi_env holds the CGI
-- meta-variables (RFC 3875) and the streams `input` and `error`; status is a
-- number or a "200 OK" string; header values are strings or arrays of
-- strings; the iterator returns the body piece by piece, then nil.
--
-- Debian's lua-wsapi installs its modules for Lua 5.1 and 5.2 only
-- (/usr/share/lua/5.1, with links in 5.2), and its dependency lua-coxpcall
-- for 5.1 to 5.3.  They are plain Lua that also runs under 5.4, so loading
-- this module adds a searcher that finds `wsapi`, `wsapi.*` and `coxpcall`
-- (and nothing else) there when Lua 5.4's own path has no WSAPI (one
-- installed with luarocks for 5.4 wins).  OWINLUA_WSAPI_PATH overrides the
-- path template.  Require owin.wsapi before any wsapi.* module.

local owin = require("owin")
local headers_lib = require("owin.headers")

local type, error, pcall, xpcall, select, tostring, tonumber, pairs, next, setmetatable,
  rawget, rawset = type, error, pcall, xpcall, select, tostring, tonumber, pairs, next,
  setmetatable, rawget, rawset
local string_format, string_upper, string_lower, string_gsub, string_find, string_match,
  string_sub = string.format, string.upper, string.lower, string.gsub, string.find,
  string.match, string.sub
local table_concat, table_pack, table_unpack = table.concat, table.pack, table.unpack
local coroutine_running, coroutine_yield, coroutine_resume, coroutine_create,
  coroutine_status, coroutine_isyieldable =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.create,
  coroutine.status, coroutine.isyieldable
local math_min, math_random = math.min, math.random
local io_stderr = io.stderr
local debug_traceback = debug.traceback

local M = {}

local CHUNK = 65536          -- bytes asked of a stream per read
local BUFFER = 16384         -- as the server: a response ending within it gets a Content-Length

------------------------------------------------------------------------------
-- Finding Debian's WSAPI modules under Lua 5.4

M.wsapi_path = os.getenv("OWINLUA_WSAPI_PATH") or
  "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.3/?.lua;/usr/share/lua/5.2/?.lua;" ..
  "/usr/share/lua/5.1/?.lua"

local function search_wsapi(name)
  if name ~= "wsapi" and name ~= "coxpcall" and string_sub(name, 1, 6) ~= "wsapi." then
    return nil
  end
  local file, err = package.searchpath(name, M.wsapi_path)
  if not file then return err end
  local chunk, lerr = loadfile(file)
  if not chunk then
    error(string_format("error loading module '%s' from file '%s':\n\t%s", name, file, lerr), 2)
  end
  return chunk, file
end

if not package.searchpath("wsapi.common", package.path) then
  package.searchers[#package.searchers + 1] = search_wsapi
end

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

------------------------------------------------------------------------------
-- WSAPI -> OWIN: the OWIN env

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [103] = "Early Hints",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized",
  [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [407] = "Proxy Authentication Required", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable", [417] = "Expectation Failed", [421] = "Misdirected Request",
  [422] = "Unprocessable Content", [425] = "Too Early", [426] = "Upgrade Required",
  [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}
local CLASS = { "Informational", "Success", "Redirection", "Client Error", "Server Error" }
M.REASONS = REASONS

-- Request headers a WSAPI env is asked for up front, so that pairs() over
-- owin.RequestHeaders lists them: WSAPI connectors look variables up one by
-- one (CGI through os.getenv) and cannot list them.  Any other header is
-- looked up when the app asks for it by name.
local COMMON = {
  "host", "user-agent", "accept", "accept-charset", "accept-encoding", "accept-language",
  "authorization", "cache-control", "connection", "cookie", "dnt", "expect", "forwarded",
  "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
  "origin", "pragma", "range", "referer", "te", "upgrade", "upgrade-insecure-requests",
  "via", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
  "x-requested-with", "sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "transfer-encoding",
}

-- A meta-variable, nil when undefined (WSAPI envs give "" for those).
local function var(w, name)
  local v = w[name]
  if v == nil or v == "" then return nil end
  return tostring(v)
end

local function header_var(lname)
  return "HTTP_" .. string_gsub(string_upper(lname), "%-", "_")
end

local function request_headers(w)
  local function miss(lname)
    if string_find(lname, "[^%w%-]") then return nil end   -- "_" could only collide
    local v = var(w, header_var(lname))
    return v and { v } or nil
  end
  local h = headers_lib.new(nil, miss)
  for k, v in next, w do       -- the variables the connector stored
    if type(k) == "string" and string_sub(k, 1, 5) == "HTTP_" and type(v) == "string" and
        v ~= "" and string_find(k, "^HTTP_[%w_]+$") then
      h[string_gsub(string_lower(string_sub(k, 6)), "_", "-")] = v
    end
  end
  for i = 1, #COMMON do local _ = h[COMMON[i]] end
  local ctype, clen = var(w, "CONTENT_TYPE"), var(w, "CONTENT_LENGTH")
  if ctype then h["content-type"] = ctype end
  if clen then h["content-length"] = clen end
  return h
end

-- owin.RequestBody over wsapi_env.input, which only reads byte counts and
-- must not be read past CONTENT_LENGTH (a CGI server's pipe or Xavante's
-- socket would block): no CONTENT_LENGTH means no body.
local WInput = {}
WInput.__index = WInput
WInput.__name = "owinlua.InputStream"

local function wcheck(self, what)
  if self.st.finished then error(what .. " used after its response finished", 3) end
end

local function wread(self, n)
  if self.left <= 0 then return nil end
  local data = self.input:read(math_min(n, self.left))
  if data == nil or data == "" then
    self.left = 0
    return nil, "ECONNRESET: request body ended before its Content-Length", "ECONNRESET"
  end
  self.left = self.left - #data
  return data
end

function WInput:read(n)
  wcheck(self, "InputStream")
  if n == nil or n == "a" or n == "*a" then
    local parts = {}
    while self.left > 0 do
      local data, err, code = wread(self, CHUNK)
      if not data then return nil, err, code end
      parts[#parts + 1] = data
    end
    return table_concat(parts)
  end
  local count = math.tointeger(n)
  if not count or count <= 0 then
    error("bad argument #1 to 'read' (a positive byte count or \"a\" expected, got " ..
      tostring(n) .. ")", 2)
  end
  return wread(self, count)
end

function WInput:chunks()
  wcheck(self, "InputStream")
  return function()
    local data, err = wread(self, CHUNK)
    if err then error(err, 2) end
    return data
  end
end

WInput.__tostring = function() return "owinlua.InputStream (wsapi)" end

local FLUSH = {}    -- what the app's coroutine yields when output is ready

-- owin.ResponseBody: collects output; handed to the WSAPI host at the first
-- flush, once 16 KiB are pending, or when the app returns.
local WOutput = {}
WOutput.__index = WOutput
WOutput.__name = "owinlua.OutputStream"
WOutput.__tostring = function() return "owinlua.OutputStream (wsapi)" end

local commit

local function hand_over(st)
  if coroutine_running() == st.co then coroutine_yield(FLUSH) end
end

function WOutput:write(...)
  local st = self.st
  wcheck(self, "OutputStream")
  commit(st)
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    local t = type(s)
    if t ~= "string" and t ~= "number" then
      error(string_format("bad argument #%d to 'write' (string expected, got %s)", i, t), 2)
    end
    s = tostring(s)
    if st.content_length and not st.no_body and st.written + #s > st.content_length then
      error(string_format("response body exceeds its Content-Length (%d bytes)",
        st.content_length), 2)
    end
    st.written = st.written + #s
    if not st.no_body and #s > 0 then
      st.parts[#st.parts + 1] = s
      st.pending = st.pending + #s
    end
  end
  if st.pending >= BUFFER then hand_over(st) end
  return self
end

function WOutput:flush()
  local st = self.st
  wcheck(self, "OutputStream")
  commit(st)
  st.flushed = true
  hand_over(st)
  return self
end

-- Cancellation tokens in pure Lua (the test host's; a WSAPI host never says
-- when its client goes away, so CallCancelled never fires here).
local token = require("owin.test.loop").token
local util = require("owin.test.util")

local STATUS, REASON, RESPH = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase",
  "owin.ResponseHeaders"

-- Headers are sent now as far as the app is concerned: OnSendingHeaders
-- callbacks run (last registered first), then status and headers freeze.
commit = function(st)
  if st.committed then return end
  util.run_sending_headers(st)
  st.committed = true
  headers_lib.freeze(st.headers)
  local status = st.status
  st.no_body = st.is_head or status < 200 or status == 204 or status == 304
  local cl = st.headers["content-length"]
  if cl and not st.no_body then
    local n = tonumber(cl[#cl])
    if n and n >= 0 and n % 1 == 0 then st.content_length = n end
  end
end

local request_count = 0
local id_prefix = string_format("%06x", math_random(0, 0xffffff))

local function new_env(st, w)
  local scheme = "http"
  local https = var(w, "HTTPS")
  if (https and (string_lower(https) == "on" or https == "1")) or
      var(w, "REQUEST_SCHEME") == "https" then
    scheme = "https"
  end
  local base = var(w, "SCRIPT_NAME") or ""
  if string_sub(base, -1) == "/" then base = string_sub(base, 1, -2) end
  local path = var(w, "PATH_INFO") or "/"
  if string_sub(path, 1, 1) ~= "/" then path = "/" .. path end
  local method = var(w, "REQUEST_METHOD") or "GET"
  st.is_head = method == "HEAD"
  local remote, rport = var(w, "REMOTE_ADDR") or "", var(w, "REMOTE_PORT") or ""
  local laddr, lport = var(w, "SERVER_ADDR") or "", var(w, "SERVER_PORT") or ""
  local is_local
  if laddr ~= "" then
    is_local = remote == laddr
  else
    is_local = string_find(remote, "^127%.") ~= nil or remote == "::1"
  end
  request_count = request_count + 1
  local left = tonumber(var(w, "CONTENT_LENGTH")) or 0
  local input = w.input
  if input == nil then left = 0 end
  local env = {
    ["owin.RequestScheme"] = scheme,
    ["owin.RequestMethod"] = method,
    ["owin.RequestPathBase"] = base,
    ["owin.RequestPath"] = path,
    ["owin.RequestQueryString"] = var(w, "QUERY_STRING") or "",
    ["owin.RequestProtocol"] = var(w, "SERVER_PROTOCOL") or "HTTP/1.1",
    ["owin.RequestHeaders"] = request_headers(w),
    ["owin.RequestBody"] = setmetatable({ st = st, input = input, left = left }, WInput),
    ["owin.RequestId"] = id_prefix .. "-" .. request_count,
    ["owin.ResponseBody"] = setmetatable({ st = st }, WOutput),
    ["owin.CallCancelled"] = token(),
    ["owin.Version"] = "1.0",
    ["server.RemoteIpAddress"] = remote,
    ["server.RemotePort"] = rport,
    ["server.LocalIpAddress"] = laddr,
    ["server.LocalPort"] = lport,
    ["server.IsLocal"] = is_local,
    ["server.OnSendingHeaders"] = util.on_sending_headers(st),
    ["host.OnAppDisposing"] = token(),
    ["wsapi.env"] = w,
  }
  local virtual = { STATUS, REASON, RESPH }
  return setmetatable(env, {
    __index = function(_, k)
      if k == STATUS then return st.status end
      if k == REASON then return st.reason end
      if k == RESPH then return st.headers end
      return nil
    end,
    __newindex = function(t, k, v)
      if k ~= STATUS and k ~= REASON and k ~= RESPH then
        rawset(t, k, v)
        return
      end
      if st.committed then error("headers already sent: cannot change " .. k, 2) end
      if k == STATUS then
        local code = math.tointeger(v)
        if not code or code < 100 or code > 999 then
          error("owin.ResponseStatusCode must be an integer from 100 to 999, got " ..
            tostring(v), 2)
        end
        st.status = code
      elseif k == REASON then
        if v ~= nil then
          v = tostring(v)
          if string_find(v, "[\r\n%z]") then
            error("owin.ResponseReasonPhrase: CR, LF and NUL are not allowed", 2)
          end
        end
        st.reason = v
      else
        if type(v) ~= "table" then
          error("bad argument #3 to '__newindex' (table expected, got " .. type(v) .. ")", 2)
        end
        if not headers_lib.is(v) then v = headers_lib.new(v) end
        st.headers = v
      end
    end,
    -- the stored keys, then the response keys
    __pairs = function(t)
      local i = 0
      local raw = true
      return function(_, k)
        if raw then
          local nk, nv = next(t, k)
          if nk ~= nil then return nk, nv end
          raw = false
        end
        while i < #virtual do
          i = i + 1
          local v = t[virtual[i]]
          if v ~= nil then return virtual[i], v end
        end
        return nil
      end, t, nil
    end,
  })
end

------------------------------------------------------------------------------
-- WSAPI -> OWIN: running the app

-- Resumes the app's coroutine until it hands output over (FLUSH) or ends.
-- Yields that are not ours (Copas under Xavante) go on to whoever resumed
-- us, and their answers come back.  Returns true or false, error.
local function step(st)
  local r = table_pack(coroutine_resume(st.co))
  while true do
    if not r[1] then return false, debug_traceback(st.co, tostring(r[2])) end
    if coroutine_status(st.co) == "dead" then
      st.done = true
      return true
    end
    if r[2] == FLUSH then return true end
    if not coroutine_isyieldable() then
      return false, debug_traceback(st.co, "the request's coroutine yielded outside " ..
        "owinlua's API (coroutine.yield in app code?)")
    end
    r = table_pack(coroutine_resume(st.co, coroutine_yield(table_unpack(r, 2, r.n))))
  end
end

local function drain(st)
  if st.pending == 0 then return nil end
  local s = table_concat(st.parts)
  st.parts, st.pending = {}, 0
  return s
end

local function once(s)
  local sent = false
  return function()
    if sent then return nil end
    sent = true
    return s
  end
end

local function log_error(w, msg)
  local err = w.error
  if err == nil or err == "" then err = io_stderr end
  pcall(err.write, err, "owinlua app error: " .. msg .. "\n")
end

-- The status string WSAPI connectors pass on as it is: wsapi.common's
-- send_output looks bare numbers up in its own table of reason phrases and
-- fails on codes missing there (429, 308, 422, ...).
local function status_line(st)
  local reason = st.reason
  if not reason or reason == "" then
    reason = REASONS[st.status] or CLASS[st.status // 100] or "Unknown"
  end
  return string_format("%d %s", st.status, reason)
end

local function wsapi_headers(st, length)
  local out = {}
  for name, values in pairs(st.headers) do
    if #values == 1 then
      out[name] = tostring(values[1])
    elseif #values > 1 then
      local copy = {}
      for i = 1, #values do copy[i] = tostring(values[i]) end
      out[name] = copy
    end
  end
  if length and not st.headers["content-length"] and not (st.status < 200 or
      st.status == 204 or st.status == 304) then
    out["Content-Length"] = tostring(length)
  end
  return out
end

local function resolve_owin(x)
  if type(x) == "function" then return x end
  if owin.is_builder(x) then return x.build() end
  if type(x) == "string" then
    local appfunc, err = require("owin.cli").load_app(x)
    if not appfunc then error("owin.wsapi: " .. err, 3) end
    return appfunc
  end
  error("bad argument #1 to 'handler' (an AppFunc, a builder or the path of an app " ..
    "script expected, got " .. type(x) .. ")", 3)
end

-- wsapi.handler(owin_app [, opts]) -> a WSAPI application running an
-- owinlua app: an AppFunc, a builder (built once), or the path of an app
-- script (loaded as `owinlua app.lua` would).  opts.dev puts tracebacks in
-- 500 pages.  The app runs in a coroutine of its own; owin.sleep and
-- WebSockets need the owinlua server and are not available.
function M.handler(owin_app, opts)
  local appfunc = resolve_owin(owin_app)
  opts = opts or {}
  return function(w)
    local st = { status = 200, headers = headers_lib.new(), parts = {}, pending = 0,
                 written = 0 }
    local env = new_env(st, w)
    st.co = coroutine_create(function()
      appfunc(env)
      commit(st)
      if st.content_length and not st.no_body and st.written ~= st.content_length then
        error(string_format("response body is shorter than its Content-Length (%d of %d bytes)",
          st.written, st.content_length), 0)
      end
    end)
    owin.set_env(st.co, env)
    local ok, err = step(st)
    if not ok then
      st.finished = true
      log_error(w, err)
      local body = opts.dev and err .. "\n" or "500 Internal Server Error\n"
      return "500 Internal Server Error", { ["Content-Type"] = "text/plain; charset=utf-8",
        ["Content-Length"] = tostring(#body) }, once(body)
    end
    if st.done then
      st.finished = true
      local body = drain(st)
      return status_line(st), wsapi_headers(st, st.written), once(body)
    end
    -- streaming: the rest comes as the host pulls the iterator
    return status_line(st), wsapi_headers(st, nil), function()
      while true do
        local s = drain(st)
        if s then return s end
        if st.done or st.finished then
          st.finished = true
          return nil
        end
        local sok, serr = step(st)
        if not sok then
          st.finished = true
          log_error(w, serr)    -- too late for a 500: the body ends here
          return nil
        end
      end
    end
  end
end

return M
