-- owin.context: request and response objects over an OWIN env (docs/context.md),
-- what ASP.NET Core's HttpContext is over OWIN.
--
--   local context = require("owin.context")       -- also owin.context once loaded
--   app.use(function(env, next)                     -- raw env middleware ...
--     local ctx = context(env)                      -- ... may use the context too
--     if ctx.request.query.debug then ctx.response:header("X-Debug", "1") end
--     next()
--   end)
--   app.run(context.app(function(ctx)               -- a handler that takes ctx
--     ctx.response:text("Hello " .. (ctx.request.query.name or "world"))
--   end))
--
-- The objects hold nothing but the env: every property reads or writes the
-- env key behind it at the moment it is used (ctx.response.status is
-- env["owin.ResponseStatusCode"]), so middleware written against the context
-- and middleware written against the raw env mix in one pipeline and see each
-- other's changes.  What is parsed (query, cookies, the body, the form) is
-- kept in the env, together with the input it came from (the query string,
-- the Cookie header, the body stream), and parsed again when that input
-- changed.  Being views, the objects may be made again at any time: see
-- context() for when two calls return the same one.
--
-- Per request on the hot path: three small tables (ctx, request, response)
-- with shared metatables, no closures, nothing parsed until asked for.
--
-- Misuse raises (a bad argument, an unknown property assigned, a header or
-- status changed after the headers went out); runtime failures return nil,
-- "ENAME: message", "ENAME" (the client went away, sent JSON that does not
-- parse, a malformed form: form() adds the HTTP status to answer with).

local type, tostring, tonumber, error, pcall, pairs, rawget, rawset, setmetatable, require =
  type, tostring, tonumber, error, pcall, pairs, rawget, rawset, setmetatable, require
local string_byte, string_char, string_find, string_format, string_gsub, string_lower,
      string_match, string_sub =
  string.byte, string.char, string.find, string.format, string.gsub, string.lower,
  string.match, string.sub
local table_concat, math_tointeger, math_type, os_date, os_remove =
  table.concat, math.tointeger, math.type, os.date, os.remove

local METHOD, PATH, PATH_BASE, QUERY = "owin.RequestMethod", "owin.RequestPath",
  "owin.RequestPathBase", "owin.RequestQueryString"
local REQ_HEADERS, REQ_BODY = "owin.RequestHeaders", "owin.RequestBody"
local STATUS, REASON = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase"
local RES_HEADERS, RES_BODY = "owin.ResponseHeaders", "owin.ResponseBody"

-- The env key under which what was parsed is kept (a table nobody else
-- holds, so no other key can collide with it; pairs(env) lists it once
-- something was parsed).
local KEY = setmetatable({}, { __tostring = function() return "owin.context" end })

local CHUNK = 65536

------------------------------------------------------------------------------
-- Percent-encoding

local function hexbyte(h) return string_char(tonumber(h, 16)) end
local function pctbyte(c) return string_format("%%%02X", string_byte(c)) end

-- Decodes %XX escapes and, with `plus`, "+" as a space.  Invalid escapes
-- ("%zz", a lone "%") are kept as sent.
local function unescape(s, plus)
  if plus and string_find(s, "+", 1, true) then s = string_gsub(s, "+", " ") end
  if string_find(s, "%", 1, true) then s = string_gsub(s, "%%(%x%x)", hexbyte) end
  return s
end

-- Encodes every byte but RFC 3986's unreserved ones (A-Z a-z 0-9 - . _ ~).
local function escape(s)
  return (string_gsub(s, "[^A-Za-z0-9%-%._~]", pctbyte))
end

------------------------------------------------------------------------------
-- Parsers (pure: strings in, tables out)

-- application/x-www-form-urlencoded (query strings and form bodies):
-- "&"-separated pairs, "+" is a space, a pair without "=" has the value "",
-- empty pairs are skipped.  Returns first (name -> first value) and all
-- (name -> array of values, in order).
local function parse_urlencoded(s)
  local first, all = {}, {}
  local i, n = 1, #s
  while i <= n do
    local j = string_find(s, "&", i, true) or n + 1
    if j > i then
      local eq = string_find(s, "=", i, true)
      local k, v
      if eq and eq < j then
        k = unescape(string_sub(s, i, eq - 1), true)
        v = unescape(string_sub(s, eq + 1, j - 1), true)
      else
        k, v = unescape(string_sub(s, i, j - 1), true), ""
      end
      local list = all[k]
      if list then
        list[#list + 1] = v
      else
        all[k] = { v }
        first[k] = v
      end
    end
    i = j + 1
  end
  return first, all
end

-- A Cookie header: "a=1; b=2".  Whitespace around names and values is
-- dropped, one pair of double quotes around a value too.  A pair without "="
-- or with an empty name is skipped; the first of repeated names wins (RFC
-- 6265 section 5.4 sends the most specific path first).  Values are not
-- percent-decoded: they come back as set_cookie was given them.
local COOKIE_PAIR = "^[ \t]*([^=]-)[ \t]*=[ \t]*(.-)[ \t]*$"

local function parse_cookies(s)
  local t = {}
  local i, n = 1, #s
  while i <= n do
    local j = string_find(s, ";", i, true) or n + 1
    local name, value = string_match(string_sub(s, i, j - 1), COOKIE_PAIR)
    if name and name ~= "" and t[name] == nil then
      if #value >= 2 and string_byte(value, 1) == 34 and string_byte(value, -1) == 34 then
        value = string_sub(value, 2, -2)
      end
      t[name] = value
    end
    i = j + 1
  end
  return t
end

------------------------------------------------------------------------------
-- JSON: owin.json (docs/json.md), loaded the first time it is needed, or the
-- library given to set_json.

local JSON_MAX = 1024 * 1024    -- request:json()'s default limit on the body

local json_lib     -- { encode, decode(s) -> v | nil, err, code }, once looked up

-- The library, or a raise naming what to install (`level` as error()'s).
local function json(level)
  if json_lib then return json_lib end
  local ok, lib = pcall(require, "owin.json")
  if not ok then error(tostring(lib), level + 1) end
  json_lib = { encode = lib.encode, decode = lib.decode }
  return json_lib
end

-- set_json(lib): use lib.encode(value) -> string and lib.decode(string) ->
-- value (raising on bad input, as cjson does) instead of owin.json;
-- set_json(nil) goes back to owin.json.
local function set_json(lib)
  if lib == nil then
    json_lib = nil
    return
  end
  if type(lib) ~= "table" or type(lib.encode) ~= "function" or type(lib.decode) ~= "function" then
    error("bad argument #1 to 'set_json' (a table with encode and decode functions expected)", 2)
  end
  local decode = lib.decode
  json_lib = {
    encode = lib.encode,
    decode = function(s)
      local ok, v = pcall(decode, s)
      if ok then return v end
      return nil, "EINVAL: invalid JSON: " .. tostring(v), "EINVAL"
    end,
  }
end

------------------------------------------------------------------------------
-- Shared helpers

-- Values of a headers table entry joined with ", " (nil when absent).
-- Request headers arrive with lowercase names; a host whose headers table
-- is a plain table is looked up by the lowercase name too.
local function joined(h, name)
  if h == nil then return nil end
  local v = h[name]
  if v == nil then
    local lname = string_lower(name)
    if lname ~= name then v = h[lname] end
    if v == nil then return nil end
  end
  if type(v) ~= "table" then return tostring(v) end
  local n = #v
  if n == 1 then return v[1] end
  if n == 0 then return nil end
  return table_concat(v, ", ")
end

local function check_string(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(string_format("bad argument #%d to '%s' (string expected, got %s)", n, fname, t), 3)
end

local function check_status(v, lo, hi, what, level)
  local st = type(v) == "number" and math_tointeger(v)
  if not st or st < lo or st > hi then
    error(string_format("%s must be an integer from %d to %d, got %s", what, lo, hi, tostring(v)),
      level + 1)
  end
  return st
end

------------------------------------------------------------------------------
-- ctx.request

local Request = {}          -- methods
local REQUEST_KEYS = {      -- properties that are env keys, read and written through
  method = METHOD, path = PATH, path_base = PATH_BASE, query_string = QUERY,
  scheme = "owin.RequestScheme", protocol = "owin.RequestProtocol",
  headers = REQ_HEADERS, stream = REQ_BODY, id = "owin.RequestId",
  cancelled = "owin.CallCancelled",
  remote_addr = "server.RemoteIpAddress", remote_port = "server.RemotePort",
  local_addr = "server.LocalIpAddress", local_port = "server.LocalPort",
  is_local = "server.IsLocal",
}
local REQUEST_WRITABLE = {
  method = true, path = true, path_base = true, query_string = true, scheme = true,
  protocol = true, headers = true, stream = true,
}
local request_get = {}      -- computed properties

function request_get.env(self) return self[1] end

-- What was parsed from the request, kept in the env (under KEY), so that
-- every context made for the env shares it; each entry is kept with the
-- input it came from and parsed again when that input changed.
local function state(env)
  local st = rawget(env, KEY)
  if st == nil then
    st = {}
    rawset(env, KEY, st)
  end
  return st
end

local function query_of(self)
  local qs = self[1][QUERY] or ""
  local st = state(self[1])
  if st.qs ~= qs then
    st.query, st.query_all = parse_urlencoded(qs)
    st.qs = qs
  end
  return st.query, st.query_all
end

function request_get.query(self)
  return (query_of(self))
end

function request_get.cookies(self)
  local h = self[1][REQ_HEADERS]
  local v = h and (h.cookie or h.Cookie)
  local s
  if v == nil then
    s = ""
  elseif type(v) == "table" then
    s = #v == 1 and v[1] or table_concat(v, "; ")
  else
    s = tostring(v)
  end
  local st = state(self[1])
  if st.cookie ~= s then
    st.cookies = parse_cookies(s)
    st.cookie = s
  end
  return st.cookies
end

-- request:query_all(name) -> array of every value of name, in order ({} if none)
function Request.query_all(self, name)
  local _, all = query_of(self)
  local list, copy = all[name], {}
  if list then
    for i = 1, #list do copy[i] = list[i] end
  end
  return copy
end

-- request:header(name) -> the values joined with ", ", or nil
function Request.header(self, name)
  check_string(name, 1, "header")
  return joined(self[1][REQ_HEADERS], name)
end

-- request:body() -> the whole body as a string ("" when empty, or when
-- someone already read the stream), or nil, err, code (see body:read).  The
-- string is kept, so body(), form() and json() may all be called.
function Request.body(self)
  local stream = self[1][REQ_BODY]
  if stream == nil then return "" end
  local st = state(self[1])
  if st.body_of == stream then
    if st.body == nil then return nil, st.body_err, st.body_code end
    return st.body
  end
  local s, err, code = stream:read("a")
  if s == nil then return nil, err, code end
  st.body, st.body_of = s, stream
  return s
end

-- The body as body() gives it, but refused past `limit` bytes: a declared
-- Content-Length over it reads nothing, and reading stops at the first
-- chunk over it (the body is then gone: body() gives the same E2BIG).
local function body_upto(self, limit, what)
  local env = self[1]
  local stream = env[REQ_BODY]
  if stream == nil then return "" end
  local st = state(env)
  local too_big = string_format("E2BIG: the %s is over the limit of %d bytes", what, limit)
  if st.body_of == stream then
    if st.body == nil then return nil, st.body_err, st.body_code end
    if #st.body > limit then return nil, too_big, "E2BIG" end
    return st.body
  end
  local declared = tonumber(joined(env[REQ_HEADERS], "content-length"))
  if declared and declared > limit then return nil, too_big, "E2BIG" end
  local parts, n, size = {}, 0, 0
  while true do
    local s, err, code = stream:read(CHUNK)
    if s == nil then
      if err ~= nil then return nil, err, code end
      break
    end
    size = size + #s
    if size > limit then
      st.body, st.body_of, st.body_err, st.body_code = nil, stream, too_big, "E2BIG"
      return nil, too_big, "E2BIG"
    end
    n = n + 1
    parts[n] = s
  end
  local body = table_concat(parts, "", 1, n)
  st.body, st.body_of = body, stream
  return body
end

-- for chunk in request:chunks() do ... end  (raises if the client goes away)
function Request.chunks(self)
  local stream = self[1][REQ_BODY]
  if stream == nil then return function() return nil end end
  if stream.chunks then return stream:chunks() end
  return function()
    local s, err = stream:read(CHUNK)
    if s == nil and err ~= nil then error("request:chunks(): " .. tostring(err), 2) end
    return s
  end
end

-- The media type of the request's Content-Type, lowercase, without parameters.
local function media_type(self)
  local ct = joined(self[1][REQ_HEADERS], "content-type")
  return ct and string_lower(string_match(ct, "^[ \t]*([^;, \t]*)")) or ""
end

-- The status to answer a failed read of the body with.
local READ_STATUS = { E2BIG = 413, ETIMEDOUT = 408 }

local multipart         -- owin.multipart, loaded with the first multipart form

-- server.OnRequestEnd callback: removes the files a multipart form spooled
-- (those the app moved away are gone already).
local function remove_files(paths)
  for i = 1, #paths do os_remove(paths[i]) end
end

-- The paths of the spooled files in form, added to paths.
local function spooled_paths(form, paths)
  for _, v in pairs(form) do
    if type(v) == "table" then
      if v.filename ~= nil then
        if v.path then paths[#paths + 1] = v.path end
      else
        for i = 1, #v do
          local x = v[i]
          if type(x) == "table" and x.path then paths[#paths + 1] = x.path end
        end
      end
    end
  end
  return paths
end

-- request:form() for multipart/form-data: read from the stream (or from the
-- body, when body() read it first) once; the result, or the failure, is
-- kept for the next call.
local function multipart_form(self, opts)
  local env = self[1]
  local st = state(env)
  local stream = env[REQ_BODY]
  if st.mform ~= nil and st.mform_of == stream then
    local r = st.mform
    return r[1], r[2], r[3], r[4]
  end
  local source = stream
  if stream == nil then
    source = ""
  elseif st.body_of == stream then
    source = st.body
  end
  local ct = env[REQ_HEADERS]["content-type"]
  local form, err, code, status
  if type(ct) == "table" and #ct > 1 then
    form, err, code, status = nil, "EINVAL: more than one Content-Type header", "EINVAL", 400
  else
    form, err, code, status = multipart.form(source, type(ct) == "table" and ct[1] or ct, opts)
  end
  if form ~= nil then
    local paths = spooled_paths(form, {})
    if #paths > 0 then
      local on_end = env["server.OnRequestEnd"]
      if type(on_end) == "function" then
        on_end(remove_files, paths)
      else                        -- a host without it: when the form is collected
        setmetatable(form, { __gc = function() remove_files(paths) end })
      end
    end
  end
  st.mform, st.mform_of = { form, err, code, status }, stream
  return form, err, code, status
end

-- request:form([opts]) -> name -> value for an application/x-www-form-
-- urlencoded or multipart/form-data body (a name sent more than once ->
-- array of its values; a multipart file -> { name, filename, content_type,
-- headers, size, path }), {} for another content type, or nil, err, code,
-- status: the HTTP status to answer with (400 malformed, 413 over a limit,
-- 408 the body timed out, 500 a file could not be spooled).  opts: see
-- owin.multipart's form(); the first call's options are the ones used.
-- Spooled files are removed when the request ends (server.OnRequestEnd).
function Request.form(self, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'form' (options table expected, got " .. type(opts) .. ")", 2)
  end
  local mt = media_type(self)
  if mt == "multipart/form-data" or opts ~= nil then
    multipart = multipart or require("owin.multipart")
    multipart.options(opts, "form", 2)              -- raises on a wrong option
    if mt == "multipart/form-data" then return multipart_form(self, opts) end
  end
  if mt ~= "application/x-www-form-urlencoded" then return {} end
  local body, err, code = Request.body(self)
  if body == nil then return nil, err, code, READ_STATUS[code] or 400 end
  local st = state(self[1])
  if st.form_of == body then return st.form end
  local first, all = parse_urlencoded(body)
  for k, list in pairs(all) do
    if #list > 1 then first[k] = list end
  end
  st.form, st.form_of = first, body
  return first
end

-- request:json([max_bytes]) -> the decoded body (owin.json: arrays marked,
-- JSON null is json.null), or nil, "EINVAL: ...", "EINVAL" when it is empty
-- or not JSON, nil, "E2BIG: ...", "E2BIG" past max_bytes (default 1 MiB),
-- or nil, err, code when reading fails.  owin.assert(ctx.request:json())
-- makes the failures 400 and 413 answers (docs/errors.md).
function Request.json(self, max_bytes)
  local lib = json(2)
  if max_bytes == nil then
    max_bytes = JSON_MAX
  elseif math_type(max_bytes) ~= "integer" or max_bytes < 0 then
    error("bad argument #1 to 'json' (a size in bytes expected, got " .. tostring(max_bytes) .. ")", 2)
  end
  local body, err, code = body_upto(self, max_bytes, "JSON body")
  if body == nil then return nil, err, code end
  if string_find(body, "^%s*$") then return nil, "EINVAL: empty body, JSON expected", "EINVAL" end
  return lib.decode(body)
end

local function request_index(self, k)
  local key = REQUEST_KEYS[k]
  if key then return self[1][key] end
  local get = request_get[k]
  if get then return get(self) end
  return Request[k]
end

local function request_newindex(self, k, v)
  if REQUEST_WRITABLE[k] then
    if k ~= "headers" and k ~= "stream" and type(v) ~= "string" then
      error(string_format("ctx.request.%s must be a string, got %s", k, type(v)), 2)
    end
    self[1][REQUEST_KEYS[k]] = v
    return
  end
  error(string_format("ctx.request.%s cannot be assigned", tostring(k)), 2)
end

local request_mt = { __index = request_index, __newindex = request_newindex,
                     __name = "owin.context.Request" }

------------------------------------------------------------------------------
-- ctx.response

local Response = {}
local RESPONSE_KEYS = {
  status = STATUS, reason = REASON, headers = RES_HEADERS, stream = RES_BODY,
}
local response_get = {}

function response_get.env(self) return self[1] end

-- A no-op assignment that raises once the headers went out (the server's
-- env refuses any change then).  The server keeps that state in C and shows
-- it nowhere else, so this is the cheapest test there is.
local function touch_status(env)
  env[STATUS] = env[STATUS]
end

-- response.sent: true once the status line and headers went out.  Asked of
-- the env each time (see touch_status), never cached.  A host whose env never
-- refuses changes (a plain table) always gives false.
function response_get.sent(self)
  return not pcall(touch_status, self[1])
end

-- response:header(name, value): sets the header (a string, a number or an
-- array of strings; nil removes it).  Returns the response.
function Response.header(self, name, value)
  self[1][RES_HEADERS][name] = value
  return self
end

-- response:add_header(name, value): appends value (a string or an array)
-- after the header's values.  Returns the response.
function Response.add_header(self, name, value)
  check_string(name, 1, "add_header")
  local h = self[1][RES_HEADERS]
  local old = h[name]
  if old == nil then
    h[name] = value
    return self
  end
  local new
  if type(old) == "table" then
    new = {}
    for i = 1, #old do new[i] = old[i] end
  else
    new = { old }
  end
  if type(value) == "table" then
    for i = 1, #value do new[#new + 1] = value[i] end
  else
    new[#new + 1] = check_string(value, 2, "add_header")
  end
  h[name] = new
  return self
end

-- response:get_header(name) -> the values joined with ", ", or nil
-- (Set-Cookie values hold commas: read headers["Set-Cookie"], an array).
function Response.get_header(self, name)
  check_string(name, 1, "get_header")
  return joined(self[1][RES_HEADERS], name)
end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- An IMF-fixdate (RFC 9110 section 5.6.7) for epoch seconds, in any locale.
local function http_date(t)
  local d = os_date("!*t", t)
  return string_format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[d.wday], d.day,
    MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

local COOKIE_OPTS = {
  path = true, domain = true, max_age = true, expires = true, secure = true,
  http_only = true, same_site = true,
}
local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

-- A Set-Cookie attribute value: no controls, no ";".
local function attr(v, what)
  if type(v) ~= "string" or string_find(v, "[%z\1-\31\127;]") then
    error(string_format("bad cookie option %s (a string without ';' or control characters " ..
      "expected, got %s)", what, type(v) == "string" and string_format("%q", v) or type(v)), 4)
  end
  return v
end

-- The Set-Cookie line for name=value with opts (RFC 6265 section 4.1).
local function cookie_line(name, value, opts)
  if type(name) ~= "string" or not string_find(name, "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$") then
    error(string_format("bad argument #1 to 'set_cookie' (a cookie name must be a token, got %s)",
      type(name) == "string" and string_format("%q", name) or type(name)), 3)
  end
  if type(value) == "number" then value = tostring(value) end
  local inner = type(value) == "string" and (string_match(value, '^"(.*)"$') or value)
  if not inner or string_find(inner, "[%z\1-\32\34\44\59\92\127-\255]") then
    error(string_format("bad argument #2 to 'set_cookie' (a cookie value may not hold spaces, " ..
      "'\"', ',', ';', '\\', control or non-ASCII bytes; encode it first, for example " ..
      "with context.escape; got %s)",
      type(value) == "string" and string_format("%q", value) or type(value)), 3)
  end
  local parts = { name .. "=" .. value }
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #3 to 'set_cookie' (table expected, got " .. type(opts) .. ")", 3)
    end
    for k in pairs(opts) do
      if not COOKIE_OPTS[k] then
        error("bad argument #3 to 'set_cookie' (unknown option " .. tostring(k) .. ")", 3)
      end
    end
    if opts.path ~= nil then parts[#parts + 1] = "Path=" .. attr(opts.path, "path") end
    if opts.domain ~= nil then parts[#parts + 1] = "Domain=" .. attr(opts.domain, "domain") end
    if opts.max_age ~= nil then
      local n = type(opts.max_age) == "number" and math_tointeger(opts.max_age)
      if not n then
        error("bad cookie option max_age (an integer number of seconds expected, got " ..
          tostring(opts.max_age) .. ")", 3)
      end
      parts[#parts + 1] = "Max-Age=" .. n
    end
    local expires = opts.expires
    if expires ~= nil then
      if type(expires) == "number" then
        parts[#parts + 1] = "Expires=" .. http_date(expires)
      else
        parts[#parts + 1] = "Expires=" .. attr(expires, "expires")
      end
    end
    if opts.secure then parts[#parts + 1] = "Secure" end
    if opts.http_only then parts[#parts + 1] = "HttpOnly" end
    if opts.same_site ~= nil then
      local ss = type(opts.same_site) == "string" and SAME_SITE[string_lower(opts.same_site)]
      if not ss then
        error("bad cookie option same_site (\"Strict\", \"Lax\" or \"None\" expected, got " ..
          tostring(opts.same_site) .. ")", 3)
      end
      parts[#parts + 1] = "SameSite=" .. ss
    end
  end
  return table_concat(parts, "; ")
end

-- response:set_cookie(name, value, opts): appends a Set-Cookie header.
-- opts: path, domain (strings), max_age (integer seconds), expires (epoch
-- seconds, or a date string sent as is), secure, http_only (booleans),
-- same_site ("Strict", "Lax" or "None").  Raises on a name that is not a
-- token, a value with bytes cookies cannot carry, or an unknown option.
-- Returns the response.
function Response.set_cookie(self, name, value, opts)
  return Response.add_header(self, "Set-Cookie", cookie_line(name, value, opts))
end

-- response:delete_cookie(name, opts): a Set-Cookie that expires the cookie
-- now (give the same path and domain it was set with).
function Response.delete_cookie(self, name, opts)
  local o = { max_age = 0, expires = 0 }
  for k, v in pairs(opts or {}) do
    if k ~= "max_age" and k ~= "expires" then o[k] = v end
  end
  return Response.add_header(self, "Set-Cookie", cookie_line(name, "", o))
end

-- response:write(...) and response:flush() are the output stream's: they
-- return the stream (whose write and flush go on with a chain), or nil, err,
-- code when the client is gone.
function Response.write(self, ...)
  return self[1][RES_BODY]:write(...)
end

function Response.flush(self)
  return self[1][RES_BODY]:flush()
end

-- Sets the status (when given), the Content-Type, and writes s.
local function send(self, ctype, s, status, fname)
  local env = self[1]
  if status ~= nil then env[STATUS] = check_status(status, 100, 999, fname .. ": status", 3) end
  env[RES_HEADERS]["Content-Type"] = ctype
  local ok, err, code = env[RES_BODY]:write(s)
  if ok == nil then return nil, err, code end
  return self
end

-- response:text(s, status?): text/plain; charset=utf-8.  Returns the
-- response, or nil, err, code.
function Response.text(self, s, status)
  return send(self, "text/plain; charset=utf-8", check_string(s, 1, "text"), status, "text")
end

-- response:html(s, status?): text/html; charset=utf-8.
function Response.html(self, s, status)
  return send(self, "text/html; charset=utf-8", check_string(s, 1, "html"), status, "html")
end

-- response:render(name, locals, status?): text/html; charset=utf-8, the
-- template `name` rendered with `locals` (and the request's
-- template.locals(env)) by the engine that owin.template's
-- engine:middleware() left in the env.  Raises without one.
function Response.render(self, name, locals, status)
  local engine = self[1]["template.Engine"]
  if engine == nil then
    error("response:render: no template engine for this request: add " ..
      "app.use(views:middleware()), with views = require(\"owin.template\").new(...)", 2)
  end
  local html = engine:_render(name, locals, self[1], 2)
  return send(self, "text/html; charset=utf-8", html, status, "render")
end

-- response:json(value, status?): application/json, value encoded with
-- owin.json (json.array({}) is [], json.null is null).  Raises when value
-- cannot be JSON, or when lua-cjson is not installed.
function Response.json(self, value, status)
  local lib = json(2)
  return send(self, "application/json", lib.encode(value), status, "json")
end

-- response:redirect(url, status?): status 302 unless given (300 to 399),
-- Location: url, and a one-line text body for clients that show it.
function Response.redirect(self, url, status)
  check_string(url, 1, "redirect")
  local env = self[1]
  env[STATUS] = check_status(status or 302, 300, 399, "redirect: status", 2)
  env[RES_HEADERS]["Location"] = url
  env[RES_HEADERS]["Content-Type"] = "text/plain; charset=utf-8"
  local ok, err, code = env[RES_BODY]:write("Redirecting to ", url, "\n")
  if ok == nil then return nil, err, code end
  return self
end

-- Methods are looked up first: a response is mostly written to.
local function response_index(self, k)
  local m = Response[k]
  if m then return m end
  local key = RESPONSE_KEYS[k]
  if key then return self[1][key] end
  local get = response_get[k]
  if get then return get(self) end
  return nil
end

local function response_newindex(self, k, v)
  if k == "status" then
    self[1][STATUS] = check_status(v, 100, 999, "ctx.response.status", 2)
    return
  end
  local key = RESPONSE_KEYS[k]
  if key then
    self[1][key] = v
    return
  end
  error(string_format("ctx.response.%s cannot be assigned", tostring(k)), 2)
end

local response_mt = { __index = response_index, __newindex = response_newindex,
                      __name = "owin.context.Response" }

------------------------------------------------------------------------------
-- The context

-- ctx refuses new fields: it is a view, made again when needed, and a
-- value put in it would be lost; per-request values belong in the env.
local ctx_mt = {
  -- ctx.params: the route's parameters (owin.router), {} when none
  __index = function(ctx, k)
    if k == "params" then return ctx.env["owin.RouteParams"] or {} end
  end,
  __newindex = function(_, k)
    error(string_format("ctx.%s cannot be assigned (ctx holds no state: keep per-request " ..
      "values in the env, ctx.env[key] = value, where all middleware sees them)", tostring(k)), 2)
  end,
  __name = "owin.context",
}

-- The last env asked for and its context, so that the middleware and the
-- app of one request share one object for the price of a comparison.  (It
-- keeps the last request's env alive until the next request asks.)
local last_env, last_ctx

-- context(env) -> ctx { env, request, response }.  The objects hold only the
-- env, so making them again is always correct.  Nothing is stored in the env
-- to make them: with the context kept in the env (rawset), apps/context.lua
-- cost 11-13% more server CPU than apps/hello.lua in bench/context.sh, and
-- 4-6% without, although callgrind counts only 2% more instructions for it
-- (why the time differs more is not established).  Two calls for one env
-- therefore return the same object when no other request asked in between,
-- and otherwise equal views: what was parsed is shared through the env (see
-- state), and ctx refuses fields of its own (ctx_mt).
local function context(env)
  if env == last_env then return last_ctx end
  local ctx = setmetatable({
    env = env,
    request = setmetatable({ env }, request_mt),
    response = setmetatable({ env }, response_mt),
  }, ctx_mt)
  last_env, last_ctx = env, ctx
  return ctx
end

-- app(function(ctx)) -> an AppFunc (for app.run)
local function ctx_app(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'app' (function expected, got " .. type(fn) .. ")", 2)
  end
  return function(env)
    if env == last_env then return fn(last_ctx) end
    return fn(context(env))
  end
end

-- middleware(function(ctx, next)) -> a function(env, next) (for app.use)
local function ctx_middleware(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'middleware' (function expected, got " .. type(fn) .. ")", 2)
  end
  return function(env, next)
    if env == last_env then return fn(last_ctx, next) end
    return fn(context(env), next)
  end
end

local M = setmetatable({
  get = context,
  app = ctx_app,
  middleware = ctx_middleware,
  escape = escape,
  unescape = unescape,
  parse_query = parse_urlencoded,
  parse_cookies = parse_cookies,
  http_date = http_date,
  set_json = set_json,
  Request = Request,
  Response = Response,
}, { __call = function(_, env) return context(env) end })

-- owin.context is this module once it is loaded.
local ok_owin, owin = pcall(require, "owin")
if ok_owin and type(owin) == "table" and rawget(owin, "context") == nil then
  owin.context = M
end

return M
