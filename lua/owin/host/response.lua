-- owin.host.response: the response as the app sees it, for the pure-Lua
-- hosts (owin.test, the handler side of owin.wsapi), after src/request/env.c and
-- src/request/request.c:
--
-- - owin.ResponseStatusCode, owin.ResponseReasonPhrase and
--   owin.ResponseHeaders live outside the env table (get, set, pairs), so
--   that changing them once the headers went out raises "headers already
--   sent";
-- - server.OnSendingHeaders callbacks run once, last registered first, when
--   the headers go out (commit); then status and headers freeze;
-- - HEAD, 1xx, 204 and 304 carry no body; an app's Content-Length is
--   checked at the commit and held to by every write and at the end;
-- - a body that ends within the first BUFFER bytes gets a Content-Length.
--
-- A host keeps each response in a table of its own (st) with these fields,
-- besides its own: status (200 to start with), reason, headers (made when
-- first asked for), is_head, written (0), content_length (-1: none),
-- committed, no_body and onsend (the callbacks), which this module sets;
-- and onend and ended for server.OnRequestEnd.

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local headers = require("owin.headers")

local type, tostring, tonumber, next, xpcall = type, tostring, tonumber, next, xpcall
local traceback = debug.traceback
local error, math_tointeger, string_format, string_find =
  error, math.tointeger, string.format, string.find
local raise, typeerror, tostr = check.raise, check.typeerror, check.tostr

local STATUS, REASON, RESPH = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase",
  "owin.ResponseHeaders"

-- The env keys this module answers for, in the order pairs(env) lists them.
local ORDER = { STATUS, REASON, RESPH }
local KEYS = { [STATUS] = true, [REASON] = true, [RESPH] = true }

-- As the server: a response ending within this many bytes gets a
-- Content-Length; a longer one goes out as it comes.
local BUFFER = 16 * 1024

-- {====== the response keys

-- The response headers table, made when first asked for (frozen if the
-- headers already went out).
local function response_headers(st)
  local h = st.headers
  if h == nil then
    h = headers.new()
    if st.committed then headers.freeze(h) end
    st.headers = h
  end
  return h
end

-- The value of response key k (one of KEYS).
local function get(st, k)
  if k == STATUS then return st.status end
  if k == REASON then return st.reason end
  if k == RESPH then return response_headers(st) end
  return nil
end

-- Sets response key k (one of KEYS) as the server's env does: refused once
-- the headers went out, the status an integer from 100 to 999, the reason
-- without CR, LF or NUL, the headers a table (copied into a headers table
-- unless it is one).
local function set(st, k, v)
  if not KEYS[k] then
    error("bad argument #2 to 'set' (a response key expected, got " .. tostring(k) .. ")", 2)
  end
  if st.committed then raise("headers already sent: cannot change " .. k) end
  if k == STATUS then
    local n = (type(v) == "number" or type(v) == "string") and math_tointeger(tonumber(v))
    if not n or n < 100 or n > 999 then
      raise("owin.ResponseStatusCode must be an integer from 100 to 999, got " .. tostring(v))
    end
    st.status = n
  elseif k == REASON then
    if v ~= nil then
      v = tostring(v)
      if string_find(v, "[\r\n%z]") then
        raise("owin.ResponseReasonPhrase: CR, LF and NUL are not allowed")
      end
    end
    st.reason = v
  else
    if type(v) ~= "table" then typeerror(3, "table", v) end
    if not headers.is(v) then v = headers.new(v) end
    st.headers = v
  end
end

-- The __pairs of an env whose response keys are answered by __index: the
-- stored keys, then the response keys that are set.
local function env_pairs(env)
  local phase = 0
  return function(_, k)
    if phase == 0 then
      local nk, nv = next(env, k)
      if nk ~= nil then return nk, nv end
      phase = 1
    end
    while phase <= #ORDER do
      local key = ORDER[phase]
      phase = phase + 1
      local v = env[key]
      if v ~= nil then return key, v end
    end
    return nil
  end, env, nil
end
-- }======

-- {====== server.OnSendingHeaders

-- The server.OnSendingHeaders function of the env of response st: keeps
-- (callback, state) pairs in st.onsend until the headers go out.
local function on_sending_headers(st)
  return function(callback, state)
    if type(callback) ~= "function" then typeerror(1, "function", callback) end
    if st.committed then raise("server.OnSendingHeaders: headers already sent") end
    local t = st.onsend or { n = 0 }
    st.onsend = t
    t[t.n + 1], t[t.n + 2] = callback, state
    t.n = t.n + 2
  end
end

-- Runs st's OnSendingHeaders callbacks once, last registered first.
local function run_sending_headers(st)
  local cbs = st.onsend
  st.onsend = nil
  if cbs then
    for i = cbs.n - 1, 1, -2 do cbs[i](cbs[i + 1]) end
  end
end
-- }======

-- {====== server.OnRequestEnd

-- The server.OnRequestEnd function of the env of request st: keeps
-- (callback, state) pairs in st.onend until the request ends.
local function on_request_end(st)
  return function(callback, state)
    if type(callback) ~= "function" then typeerror(1, "function", callback) end
    if st.ended then raise("server.OnRequestEnd: the request has ended") end
    local t = st.onend or { n = 0 }
    st.onend = t
    t[t.n + 1], t[t.n + 2] = callback, state
    t.n = t.n + 2
  end
end

local function with_traceback(e)
  return { e, traceback(tostring(e), 2) }
end

-- The request is over: runs st's OnRequestEnd callbacks once each, last
-- registered first (one registered meanwhile runs too).  A callback's error
-- goes to report(err, traceback) and the others still run.
local function run_request_end(st, report)
  while st.onend do
    local cbs = st.onend
    st.onend = nil
    for i = cbs.n - 1, 1, -2 do
      local ok, e = xpcall(cbs[i], with_traceback, cbs[i + 1])
      if not ok then report(e[1], e[2]) end
    end
  end
  st.ended = true
end
-- }======

-- {====== the commit and the body's length

-- Statuses that never carry a body (a HEAD response carries none either).
local function bodiless(status)
  return status < 200 or status == 204 or status == 304
end

-- The app's Content-Length (the values array of the header, or nil) as the
-- server reads it: -1 when absent; raises when a value is not a decimal
-- number or two values differ.
local function content_length(values)
  if type(values) ~= "table" then return -1 end
  local len = -1
  for i = 1, #values do
    local s = tostr(values[i])
    if s == nil or #s == 0 or #s > 18 then raise("invalid Content-Length response header") end
    if string_find(s, "%D") then
      raise(string_format("invalid Content-Length response header '%s'", s))
    end
    local n = math_tointeger(tonumber(s))
    if len >= 0 and n ~= len then raise("conflicting Content-Length response headers") end
    len = n
  end
  return len
end

-- The headers go out now as far as the app is concerned: OnSendingHeaders
-- callbacks (last registered first), then status and headers freeze and
-- st.no_body and st.content_length are known.  Once only.
local function commit(st)
  if st.committed then return end
  run_sending_headers(st)
  st.committed = true
  st.no_body = st.is_head or bodiless(st.status)
  local h = st.headers
  if h then
    headers.freeze(h)
    st.content_length = content_length(h["content-length"])
  end
end

-- The error writing n more body bytes would be, or nil: a body may not
-- exceed its Content-Length.
local function overflow(st, n)
  local cl = st.content_length
  if cl >= 0 and not st.no_body and st.written + n > cl then
    return string_format("response body exceeds its Content-Length (%d bytes)", cl)
  end
  return nil
end

-- n more body bytes were written (after the commit): raises when they do
-- not fit the Content-Length.
local function wrote(st, n)
  local err = overflow(st, n)
  if err then raise(err) end
  st.written = st.written + n
end

-- The error an ended body is, or nil: one shorter than its Content-Length.
local function shortfall(st)
  local cl = st.content_length
  if cl >= 0 and not st.no_body and st.written ~= cl then
    return string_format("response body is shorter than its Content-Length (%d of %d bytes)",
      st.written, cl)
  end
  return nil
end
-- }======

return {
  STATUS = STATUS,
  REASON = REASON,
  RESPH = RESPH,
  KEYS = KEYS,
  BUFFER = BUFFER,
  headers = response_headers,
  get = get,
  set = set,
  pairs = env_pairs,
  on_sending_headers = on_sending_headers,
  on_request_end = on_request_end,
  run_request_end = run_request_end,
  bodiless = bodiless,
  content_length = content_length,
  commit = commit,
  overflow = overflow,
  wrote = wrote,
  shortfall = shortfall,
}
