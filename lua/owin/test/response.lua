-- owin.test.response: the response side of a request in the test host,
-- after src/request/response.c: the first write, flush or sendfile commits the
-- headers (owin.host.response: OnSendingHeaders run once, last registered
-- first, then status and headers freeze); a body that ends within the first
-- 16 KiB gets a Content-Length, a longer one Transfer-Encoding: chunked
-- (HTTP/1.1) or close-delimited framing (HTTP/1.0); an app Content-Length
-- is held to; HEAD, 204 and 304 carry no body.  Also what becomes of the
-- client: gone (CallCancelled), or refused with a status the server makes
-- itself.

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local hresponse = require("owin.host.response")
local status = require("owin.host.status")
local token = require("owin.host.token")

local type, pairs, ipairs, tostring, rawlen = type, pairs, ipairs, tostring, rawlen
local string_format, table_concat = string.format, table.concat
local raise, tostr = check.raise, check.tostr
local reason, bodiless, wrote = status.reason, hresponse.bodiless, hresponse.wrote

local M = {}

local FIRST_BUF = hresponse.BUFFER   -- body held back to compute Content-Length

local function http_date()
  return os.date("!%a, %d %b %Y %H:%M:%S GMT")
end

-- {====== commit, serialize, finish

-- Headers are sent now as far as the app is concerned (owin.host.response's
-- commit); Connection: close from the app ends the connection after.
local function commit(R)
  if R.committed then return end
  hresponse.commit(R)
  local conn = R.headers and R.headers["connection"]
  if type(conn) == "table" then
    for i = 1, #conn do
      local s = tostr(conn[i])
      if s and s:lower() == "close" then R.keepalive = false end
    end
  end
end
M.commit = commit

local SKIP = { ["content-length"] = true, ["transfer-encoding"] = true, ["connection"] = true }

-- The status line and headers go out (final: the app has finished, the
-- body is what was held).
local function serialize(R, final)
  if R.gone then
    R.serialized = true
    return
  end
  local list, hasdate, hasserver = {}, false, false
  if R.headers then
    for name, values in pairs(R.headers) do
      local lname = name:lower()
      if not SKIP[lname] then
        if lname == "date" then hasdate = true elseif lname == "server" then hasserver = true end
        for i = 1, rawlen(values) do
          local v = tostr(values[i])
          if v == nil then raise(string_format("value of response header '%s' must be a string", name)) end
          if v:find("[\r\n%z]") then
            raise(string_format("invalid value for response header '%s': CR, LF and NUL are " ..
                                "not allowed", name))
          end
          list[#list + 1] = { name, v }
        end
      end
    end
  end
  local opts = R.opts
  if not hasdate then list[#list + 1] = { "Date", http_date() } end
  if not hasserver and opts.server_header ~= "" then
    list[#list + 1] = { "Server", opts.server_header }
  end
  local st = R.status
  if R.content_length >= 0 then
    if st ~= 204 and not (st >= 100 and st < 200) then   -- a 304 keeps GET's
      list[#list + 1] = { "Content-Length", tostring(R.content_length) }
    end
  elseif final then
    if not bodiless(st) then
      list[#list + 1] = { "Content-Length", tostring(R.written) }
    end
  elseif R.minor >= 1 then
    if not bodiless(st) then
      list[#list + 1] = { "Transfer-Encoding", "chunked" }
    end
    R.chunked = not R.no_body
  else
    R.until_close = true
    R.keepalive = false
  end
  if final and not R.body_done then R.keepalive = false end   -- the rest is not read
  if st == 101 then
    list[#list + 1] = { "Connection", "Upgrade" }
  elseif not R.keepalive or R.client.stopping then
    R.keepalive = false
    list[#list + 1] = { "Connection", "close" }
  elseif R.minor == 0 then
    list[#list + 1] = { "Connection", "keep-alive" }
  end
  R.head = { status = st, reason = R.reason or reason(st), list = list }
  R.serialized, R.wire = true, true
  for i = 1, #R.held do R.body[#R.body + 1] = R.held[i] end
  R.held, R.held_len = {}, 0
end

-- Appends response body bytes; returns "EPIPE" when the client is gone.
local function body_write(R, s)
  commit(R)
  local n = #s
  wrote(R, n)
  if R.gone then return "EPIPE" end
  if R.no_body or n == 0 then return nil end
  if not R.serialized then
    if R.held_len + n <= FIRST_BUF then
      R.held[#R.held + 1] = s
      R.held_len = R.held_len + n
      return nil
    end
    serialize(R, false)
  end
  R.body[#R.body + 1] = s
end

-- The app returned: headers out if they never were, the body checked.
local function finish(R)
  commit(R)
  local short = hresponse.shortfall(R)
  if short then
    if not R.wire then raise(short) end
    R.abort = true                   -- too late: the connection is cut
  end
  if not R.serialized then serialize(R, true) end
  R.finished = true
end

-- A response the server makes itself (500, 413, 426).
local function canned(R, code, extra, body, close)
  local list = { { "Date", http_date() } }
  if R.opts.server_header ~= "" then list[#list + 1] = { "Server", R.opts.server_header } end
  if extra then list[#list + 1] = extra end
  list[#list + 1] = { "Content-Type", "text/plain; charset=utf-8" }
  list[#list + 1] = { "Content-Length", tostring(#body) }
  if close then list[#list + 1] = { "Connection", "close" } end
  return { status = code, reason = reason(code), list = list, body = body }
end
-- }======

-- {====== the client's fate

-- The client went away (or the body broke a limit): CallCancelled fires,
-- reads fail with err, writes with EPIPE.
function M.cancel(R, err)
  if R.gone or R.done or R.upgraded then return end
  R.gone = true
  if not R.body_done and not R.read_err then R.read_err = err or "ECONNRESET" end
  token.fire(R.token)
  local t = R.task
  if t and t.wait == "read" then R.loop:wake(t) end
  if R.on_cancel then R.on_cancel(R) end     -- its threads and sockets
end

-- Bad input while the app runs (a body over the limit): the status goes
-- out unless the response already started, and the connection closes.
function M.fail(R, code)
  local wire = R.wire
  R.held, R.held_len = {}, 0
  M.cancel(R, code == 413 and "E2BIG" or "ECONNRESET")
  if wire then
    R.abort = true
  else
    R.canned = canned(R, code, nil, string_format("%d %s\n", code, reason(code)), true)
  end
end

-- The response as the client saw it: { status, reason, headers (lowercase
-- name -> values joined with ", "), list ({ name, value } in order), body,
-- ... }.  status is nil when nothing was sent.
function M.response(R)
  local res = { id = R.id, error = R.error, traceback = R.traceback, aborted = R.abort or nil,
                cancelled = R.gone or nil, continued = R.continue_sent or nil,
                flushes = R.flushes }
  local head = R.canned or R.head
  res.headers, res.list = {}, {}
  if head == nil then
    res.body = ""
    return res
  end
  res.status, res.reason = head.status, head.reason
  for i, pair in ipairs(head.list) do
    res.list[i] = { pair[1], pair[2] }
    local key = pair[1]:lower()
    local prev = res.headers[key]
    res.headers[key] = prev and (prev .. ", " .. pair[2]) or pair[2]
  end
  if R.canned then
    res.body = head.body
  else
    res.body = table_concat(R.body)
  end
  return res
end
-- }======

M.serialize, M.body_write, M.finish, M.canned = serialize, body_write, finish, canned
return M
