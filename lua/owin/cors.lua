-- owin.cors: Cross-Origin Resource Sharing, the CORS protocol of the Fetch
-- standard, as middleware.
--
--   local cors = require("owin.cors")
--   app.use(cors{ origins = { "https://app.example" }, credentials = true,
--                 expose = { "ETag" }, max_age = 600 })
--
-- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
-- answered here with 204 and never reaches the app: with the
-- Access-Control-Allow-* headers when the origin is allowed, without them
-- when it is not (the browser then refuses the real request).  Any other
-- request goes on to the app; an allowed origin gets
-- Access-Control-Allow-Origin (and -Credentials, -Expose-Headers) on the
-- response, a refused one gets no CORS header at all.  The browser enforces
-- the answer; the server only states it.
--
-- Options:
--   origins      "*" (the default), an array of origins ("https://a.example",
--                "http://localhost:3000", "null"), or function(origin, env)
--                returning true for an allowed origin
--   methods      array of methods for preflights, or "*" (the method asked
--                for); default GET, HEAD, PUT, PATCH, POST, DELETE
--   headers      array of request headers for preflights, or "*" (the
--                default: the headers asked for)
--   expose       array of response headers scripts may read, or "*"
--   credentials  true: cookies and HTTP authentication may go along
--                (Access-Control-Allow-Credentials: true)
--   max_age      seconds a browser may cache a preflight's answer
--
-- With credentials the Fetch standard takes "*" in any of these headers
-- literally, so the middleware never sends it then: the origin, the method
-- and the headers asked for are echoed instead.

local type, error, tostring, ipairs, pairs, pcall = type, error, tostring, ipairs, pairs, pcall
local math_type, string_format = math.type, string.format
local table_concat = table.concat

local METHOD, STATUS = "owin.RequestMethod", "owin.ResponseStatusCode"
local REQH, RESH = "owin.RequestHeaders", "owin.ResponseHeaders"

local DEFAULT_METHODS = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE" }

------------------------------------------------------------------------------
-- Options

-- Option errors are raised without a position here, and again by cors()
-- at its caller's line.
local function bad(key, fmt, ...)
  error(string_format("bad option '%s' to 'cors' (" .. fmt .. ")", key, ...), 0)
end

-- RFC 9110 token characters (method and header names).
local function is_token(s)
  return type(s) == "string" and s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

-- A configured origin in the form browsers send: lowercase scheme and host,
-- no default port, no path.  nil when it is not an origin.
local DEFAULT_PORT = { http = "80", https = "443", ws = "80", wss = "443" }

local function normalize_origin(s)
  if s == "null" then return s end
  local scheme, host = s:match("^(%a[%w+.%-]*)://([^/?#@%s]+)$")
  if not scheme then return nil end
  scheme, host = scheme:lower(), host:lower()
  local name, port = host:match("^(.+):(%d+)$")
  if name and (name:sub(-1) == "]" or not name:find(":", 1, true))
      and DEFAULT_PORT[scheme] == port then
    host = name                             -- browsers leave the default port out
  end
  return scheme .. "://" .. host
end

-- origins: "*" -> "*"; an array -> set of normalized origins; a function.
local function check_origins(v)
  if v == nil or v == "*" then return "*" end
  if type(v) == "function" then return v end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then bad("origins", "\"*\", an array of origins or a function expected, got %s", type(v)) end
  local set = {}
  for i, o in ipairs(v) do
    if o == "*" then bad("origins", "\"*\" must be the whole option, not an item of the list") end
    local n = type(o) == "string" and normalize_origin(o)
    if not n then
      bad("origins", "item #%d, %s, is not an origin: scheme://host[:port] with no path, " ..
        "not even a final \"/\"", i, type(o) == "string" and string_format("%q", o) or type(o))
    end
    set[n] = true
  end
  if #v == 0 then bad("origins", "the list is empty: no origin could ever be allowed") end
  return set
end

-- methods/headers/expose: "*" or an array (or one string) of tokens; the
-- value to send, joined with ", " (nil for an empty list).
local function check_list(key, v, default)
  if v == nil then return default end
  if v == "*" then return "*" end
  if type(v) == "string" then
    local t = {}
    for item in v:gmatch("[^,%s]+") do t[#t + 1] = item end
    v = t
  end
  if type(v) ~= "table" then bad(key, "\"*\" or an array of names expected, got %s", type(v)) end
  local out = {}
  for i, name in ipairs(v) do
    if not is_token(name) then
      bad(key, "item #%d is not a name: %s", i, type(name) == "string" and string_format("%q", name) or type(name))
    end
    if name == "*" then bad(key, "\"*\" must be the whole option, not an item of the list") end
    out[#out + 1] = name
  end
  if #out == 0 then return nil end
  return table_concat(out, ", ")
end

local KNOWN = { origins = true, methods = true, headers = true, expose = true,
                credentials = true, max_age = true }

local SUGGEST = { origin = "origins", allowed_origins = "origins", allow_origins = "origins",
                  allowed_methods = "methods", allow_methods = "methods",
                  allowed_headers = "headers", allow_headers = "headers",
                  exposed_headers = "expose", expose_headers = "expose",
                  allow_credentials = "credentials", maxAge = "max_age", max_age_seconds = "max_age" }

local function check_options(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'cors' (table of options expected, got " .. type(opts) .. ")", 0)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then
      local hint = SUGGEST[k] and string_format(" (did you mean '%s'?)", SUGGEST[k]) or ""
      error(string_format("bad option '%s' to 'cors' (unknown option%s)", tostring(k), hint), 0)
    end
  end
  local credentials = opts.credentials
  if credentials ~= nil and type(credentials) ~= "boolean" then
    bad("credentials", "boolean expected, got %s", type(credentials))
  end
  local max_age = opts.max_age
  if max_age ~= nil and (math_type(max_age) ~= "integer" or max_age < 0) then
    bad("max_age", "a whole number of seconds, 0 or more, expected, got %s", tostring(max_age))
  end
  local expose = check_list("expose", opts.expose, nil)
  if expose == "*" and credentials then
    bad("expose", "\"*\" does not work with credentials: the Fetch standard reads it as a " ..
      "header named \"*\"; list the headers")
  end
  return {
    origins = check_origins(opts.origins),
    methods = check_list("methods", opts.methods, table_concat(DEFAULT_METHODS, ", ")),
    headers = check_list("headers", opts.headers, "*"),
    expose = expose,
    credentials = credentials == true,
    max_age = max_age and tostring(max_age),
  }
end

------------------------------------------------------------------------------
-- Requests

-- Adds token to the response's Vary unless it is there (or Vary is "*").
local function vary(h, token)
  local cur = h["Vary"]
  if cur == nil then
    h["Vary"] = token
    return
  end
  local ltoken = token:lower()
  for _, v in ipairs(cur) do
    for item in v:gmatch("[^,%s]+") do
      item = item:lower()
      if item == ltoken or item == "*" then return end
    end
  end
  local t = {}
  for i, v in ipairs(cur) do t[i] = v end
  t[#t + 1] = token
  h["Vary"] = t
end

-- The request's one Origin value, or nil (none, or several: not a browser's).
local function request_origin(reqh)
  local v = reqh["origin"]
  if v == nil or #v ~= 1 then return nil end
  v = v[1]
  if v == "" or v:find("[%s,]") then return nil end
  return v
end

-- The value of Access-Control-Allow-Origin for origin, or nil when it is
-- not allowed.
local function allow_origin(self, origin, env)
  local origins = self.origins
  if origins == "*" then
    if not self.credentials then return "*" end
    if origin == "null" then return nil end          -- list "null" to allow it
    return origin
  end
  if type(origins) == "function" then
    if origins(origin, env) then return origin end
    return nil
  end
  if origins[normalize_origin(origin) or ""] then return origin end
  return nil
end

-- A request header's values joined with ", ", or nil.
local function joined(reqh, name)
  local v = reqh[name]
  if v == nil then return nil end
  return table_concat(v, ", ")
end

local function preflight(self, env, reqh, origin, method)
  local h = env[RESH]
  env[STATUS] = 204
  if self.varies then vary(h, "Origin") end
  local allowed = origin and allow_origin(self, origin, env)
  if not allowed then return end
  h["Access-Control-Allow-Origin"] = allowed
  if self.credentials then h["Access-Control-Allow-Credentials"] = "true" end
  if self.methods == "*" then
    vary(h, "Access-Control-Request-Method")
    h["Access-Control-Allow-Methods"] = method
  else
    h["Access-Control-Allow-Methods"] = self.methods
  end
  if self.headers == "*" then
    vary(h, "Access-Control-Request-Headers")
    local asked = joined(reqh, "access-control-request-headers")
    if asked and asked:find("%S") then h["Access-Control-Allow-Headers"] = asked end
  elseif self.headers then
    h["Access-Control-Allow-Headers"] = self.headers
  end
  if self.max_age then h["Access-Control-Max-Age"] = self.max_age end
end

local function actual(self, env, origin)
  local h = env[RESH]
  if self.varies then vary(h, "Origin") end
  local allowed
  if self.origins == "*" and not self.credentials then
    allowed = "*"                       -- the same for everyone: no Vary needed
  elseif origin then
    allowed = allow_origin(self, origin, env)
  end
  if not allowed then return end
  h["Access-Control-Allow-Origin"] = allowed
  if self.credentials then h["Access-Control-Allow-Credentials"] = "true" end
  if self.expose then h["Access-Control-Expose-Headers"] = self.expose end
end

------------------------------------------------------------------------------
-- The module: cors(opts) -> function(env, next)

local function cors(opts)
  local ok, self = pcall(check_options, opts)
  if not ok then error(self, 2) end
  -- The answer depends on the Origin unless it is "*" for everyone; caches
  -- must then know it, even for requests without an Origin.
  self.varies = not (self.origins == "*" and not self.credentials)
  return function(env, next)
    local reqh = env[REQH]
    local origin = request_origin(reqh)
    if env[METHOD] == "OPTIONS" and reqh["origin"] ~= nil then
      local asked = reqh["access-control-request-method"]
      if asked ~= nil then
        return preflight(self, env, reqh, origin, table_concat(asked, ", "))
      end
    end
    actual(self, env, origin)
    return next(env)
  end
end

return cors
