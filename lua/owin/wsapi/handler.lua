-- owin.wsapi.handler: an owinlua app under a WSAPI host (wsapi.cgi,
-- FastCGI, Xavante): the handler side of owin.wsapi, which re-exports it
-- (require owin.wsapi, not this module).
--
--   return wsapi.handler(owin_app)    -- the WSAPI application
--
-- Each WSAPI request becomes an OWIN env built from the CGI variables; the
-- app runs in a coroutine of its own, and its output goes back to the host
-- as the WSAPI status, headers and body iterator.  The response rules
-- (OnSendingHeaders, headers frozen once sent, Content-Length) are
-- owin.host.response's, shared with owin.test.

local owin = require("owin")
local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local headers_lib = require("owin.headers")
local hresponse = require("owin.host.response")
local status = require("owin.host.status")
local token = require("owin.host.token")

local type, error, pcall, select, tostring, tonumber, pairs, next, setmetatable, rawset =
  type, error, pcall, select, tostring, tonumber, pairs, next, setmetatable, rawset
local string_format, string_upper, string_lower, string_gsub, string_find, string_sub =
  string.format, string.upper, string.lower, string.gsub, string.find, string.sub
local table_concat, table_pack, table_unpack = table.concat, table.pack, table.unpack
local coroutine_running, coroutine_yield, coroutine_resume, coroutine_create,
  coroutine_status, coroutine_isyieldable =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.create,
  coroutine.status, coroutine.isyieldable
local math_min, math_random = math.min, math.random
local io_stderr = io.stderr
local debug_traceback = debug.traceback
local RESPONSE_KEYS, get, set, env_pairs = hresponse.KEYS, hresponse.get, hresponse.set,
  hresponse.pairs
local commit, wrote, shortfall, bodiless = hresponse.commit, hresponse.wrote,
  hresponse.shortfall, hresponse.bodiless
local status_reason = status.reason

local M = {}

local CHUNK = 65536            -- bytes asked of the WSAPI input per read
local BUFFER = hresponse.BUFFER   -- output handed to the host once this much is pending

------------------------------------------------------------------------------
-- WSAPI -> OWIN: the OWIN env

-- Class names for codes without a phrase of their own (a WSAPI status
-- string needs one).
local CLASS = { "Informational", "Success", "Redirection", "Client Error", "Server Error" }

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
    wrote(st, #s)
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
    ["owin.CallCancelled"] = token.new(),   -- never fired: WSAPI never says the client left
    ["owin.Version"] = "1.0",
    ["server.RemoteIpAddress"] = remote,
    ["server.RemotePort"] = rport,
    ["server.LocalIpAddress"] = laddr,
    ["server.LocalPort"] = lport,
    ["server.IsLocal"] = is_local,
    ["server.OnSendingHeaders"] = hresponse.on_sending_headers(st),
    ["server.OnRequestEnd"] = hresponse.on_request_end(st),
    ["host.OnAppDisposing"] = token.new(),
    ["wsapi.env"] = w,
  }
  return setmetatable(env, {
    __index = function(_, k)
      if RESPONSE_KEYS[k] then return get(st, k) end
      return nil
    end,
    __newindex = function(t, k, v)
      if RESPONSE_KEYS[k] then
        set(st, k, v)
      else
        rawset(t, k, v)
      end
    end,
    __pairs = env_pairs,      -- the stored keys, then the response keys
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
      return false, debug_traceback(st.co, check.STRAY_YIELD)
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
    reason = status_reason(st.status)
    if reason == "" then reason = CLASS[st.status // 100] or "Unknown" end
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
  if length and not st.headers["content-length"] and not bodiless(st.status) then
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
                 written = 0, content_length = -1 }
    local env = new_env(st, w)
    st.co = coroutine_create(function()
      appfunc(env)
      commit(st)
      local short = shortfall(st)
      if short then error(short, 0) end
    end)
    owin.set_env(st.co, env)
    local function ended()        -- the app's coroutine is over
      st.finished = true
      hresponse.run_request_end(st, function(e, tb) log_error(w, tb or tostring(e)) end)
    end
    local ok, err = step(st)
    if not ok then
      log_error(w, err)
      ended()
      local body = opts.dev and err .. "\n" or "500 Internal Server Error\n"
      return "500 Internal Server Error", { ["Content-Type"] = "text/plain; charset=utf-8",
        ["Content-Length"] = tostring(#body) }, once(body)
    end
    if st.done then
      ended()
      local body = drain(st)
      return status_line(st), wsapi_headers(st, st.written), once(body)
    end
    -- streaming: the rest comes as the host pulls the iterator
    return status_line(st), wsapi_headers(st, nil), function()
      while true do
        local s = drain(st)
        if s then return s end
        if st.done or st.finished then
          if not st.ended then ended() end
          return nil
        end
        local sok, serr = step(st)
        if not sok then
          log_error(w, serr)    -- too late for a 500: the body ends here
          ended()
          return nil
        end
      end
    end
  end
end

return M
