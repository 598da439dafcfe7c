-- owin.errors: the error middleware (docs/errors.md).  What the rest of the
-- pipeline raises becomes an error page, HTML or JSON as the request's
-- Accept prefers:
--
--   local errors = require("owin.errors")
--   app.use(errors())                            -- or errors{ prefer = "html", ... }
--   app.run(function(env)
--     owin.error(404, "no todo 7")               -- 404, {"status":404,"title":"Not Found","detail":"no todo 7"}
--     error("boom")                              -- 500, generic; the traceback only under --dev
--   end)
--
-- A Lua error is a 500 whose page says no more than "Internal Server
-- Error" (and the request id), unless the server runs with --dev
-- (owin.dev()): then the message and the traceback are in it.  An
-- owin.error gives its status, its message, and its details in the JSON
-- answer (RFC 9457 problem details).  Each 5xx is logged with the request
-- id (owin.log), the traceback with it.
--
-- Once the response has started (its headers are committed: the first
-- write or flush), a second page would be appended to the first: the error
-- is raised again instead, and the server does what it does with any app
-- error then: it logs it and cuts the connection (or, when the bytes were
-- only held back, answers its plain 500).

local owin = require("owin")
local json = require("owin.json")
local status_m = require("owin.host.status")

local type, pairs, ipairs, next, tostring, tonumber, error, pcall, xpcall =
  type, pairs, ipairs, next, tostring, tonumber, error, pcall, xpcall
local getmetatable, setmetatable = getmetatable, setmetatable
local string_format, string_gsub, string_lower, string_match, string_gmatch =
  string.format, string.gsub, string.lower, string.match, string.gmatch
local table_concat, debug_traceback = table.concat, debug.traceback

local STATUS, REASON = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase"
local REQ_HEADERS, RES_HEADERS, RES_BODY = "owin.RequestHeaders", "owin.ResponseHeaders",
  "owin.ResponseBody"

------------------------------------------------------------------------------
-- Content negotiation (RFC 9110 section 12.5.1)

-- The media ranges of an Accept value: { type, subtype, q }, lowercase.
-- Parameters other than q are ignored; an unreadable q counts as 0.
local function parse_accept(accept)
  local ranges = {}
  for item in string_gmatch(accept, "[^,]+") do
    local typ, sub, params = string_match(item, "^%s*([^/%s;]+)/([^/%s;]+)%s*(.*)$")
    if typ then
      local q = 1
      local qs = string_match(params, ";%s*[qQ]%s*=%s*([^;%s]*)")
      if qs then
        q = tonumber(qs) or 0
        if q < 0 or q > 1 then q = 0 end
      end
      ranges[#ranges + 1] = { string_lower(typ), string_lower(sub), q }
    end
  end
  return ranges
end

-- The q the most specific range matching `offer` gives it (0 when none).
local function quality(ranges, offer)
  local typ, sub = string_match(offer, "^([^/]+)/(.+)$")
  local q, specific = 0, -1
  for i = 1, #ranges do
    local r = ranges[i]
    local s
    if r[1] == typ and r[2] == sub then
      s = 2
    elseif r[1] == typ and r[2] == "*" then
      s = 1
    elseif r[1] == "*" and r[2] == "*" then
      s = 0
    end
    if s and s > specific then q, specific = r[3], s end
  end
  return q
end

-- negotiate(accept, offers) -> the offer (a media type) the Accept value
-- prefers: the highest q, the first of offers among equals; offers[1] when
-- accept is nil or empty; nil when it accepts none of them.
local function negotiate(accept, offers)
  if type(offers) ~= "table" or offers[1] == nil then
    error("bad argument #2 to 'negotiate' (an array of media types expected)", 2)
  end
  if accept == nil or string_match(accept, "^%s*$") then return offers[1] end
  local ranges = parse_accept(accept)
  local best, best_q = nil, 0
  for _, offer in ipairs(offers) do
    local q = quality(ranges, string_lower(offer))
    if q > best_q then best, best_q = offer, q end
  end
  return best
end

------------------------------------------------------------------------------
-- Pages

local function reason(status)
  local phrase = status_m.reason(status)
  return phrase ~= "" and phrase or "Error"
end

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

local function escape_html(s)
  return (string_gsub(s, "[&<>\"']", ESCAPES))
end

-- The default HTML page for a problem (see answer()).
local function html_page(p)
  local title = escape_html(p.status .. " " .. p.title)
  local out = { "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>",
    title, "</title>\n</head>\n<body>\n<h1>", title, "</h1>\n" }
  if p.detail then out[#out + 1] = "<p>" .. escape_html(p.detail) .. "</p>\n" end
  if p.details ~= nil then
    local ok, text = pcall(json.encode, p.details)
    if ok then out[#out + 1] = "<pre>" .. escape_html(text) .. "</pre>\n" end
  end
  if p.request_id then
    out[#out + 1] = "<p>Request id: <code>" .. escape_html(p.request_id) .. "</code></p>\n"
  end
  if p.traceback then out[#out + 1] = "<pre>" .. escape_html(p.traceback) .. "</pre>\n" end
  out[#out + 1] = "</body>\n</html>\n"
  return table_concat(out)
end

local STANDARD = { type = true, title = true, status = true, detail = true, instance = true }

-- The default JSON answer: an RFC 9457 problem object.  details that are
-- an object add their members (the standard ones win); other details are
-- its "details" member.
local function problem_object(p)
  local o = { status = p.status, title = p.title, detail = p.detail,
              request_id = p.request_id, traceback = p.traceback }
  local d = p.details
  if type(d) == "table" and d[1] == nil and next(d) ~= nil and not json.is_array(d) then
    for k, v in pairs(d) do
      if type(k) == "string" and not STANDARD[k] and o[k] == nil then o[k] = v end
    end
  elseif d ~= nil then
    o.details = d
  end
  return o
end

------------------------------------------------------------------------------
-- The middleware

-- A Lua error value as text (what lua.c prints for one).
local function message_of(e)
  if type(e) == "string" or type(e) == "number" then return tostring(e) end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then return s end
  end
  return string_format("(error object is a %s value)", type(e))
end

-- xpcall's message handler: an owin.error as it is (with a traceback when
-- it is a 5xx), any other error as { error = value, traceback = text }.
local function handler(e)
  if owin.is_error(e) then
    if e.status >= 500 then e.traceback = debug_traceback(tostring(e), 2) end
    return e
  end
  return { error = e, traceback = debug_traceback(message_of(e), 2) }
end

-- Raises a no-op change of the status once the headers are committed.
local function touch_status(env)
  env[STATUS] = env[STATUS]
end

-- Headers of the failed response that would describe the wrong body.
local DROP = { "Content-Length", "Content-Encoding", "Content-Language", "Content-Range",
               "Content-Disposition", "Content-Location", "ETag", "Last-Modified" }

local OFFERS = {
  json = { "application/json", "application/problem+json", "text/html" },
  html = { "text/html", "application/json", "application/problem+json" },
}

-- Answers the error e (handler's value) on env, or raises it again when the
-- response has started.
local function answer(env, e, o)
  local http = owin.is_error(e)
  if not http and (type(e) ~= "table" or e.traceback == nil) then
    e = { error = e, traceback = message_of(e) }    -- handler did not run (out of memory)
  end
  if not pcall(touch_status, env) then
    -- Too late for a page: the server logs it and cuts the response.
    error(http and (e.traceback or tostring(e)) or e.traceback, 0)
  end
  local status = http and e.status or 500
  local dev = o.dev
  if dev == nil then dev = owin.dev() end
  local p = { status = status, title = reason(status) }
  if http then
    p.detail, p.details = e.message, e.details
    if dev then p.traceback = e.traceback end
  else
    p.error = e.error
    if dev then p.detail, p.traceback = message_of(e.error), e.traceback end
  end
  if status >= 500 then
    p.request_id = env["owin.RequestId"] or owin.request_id()
    if o.log then
      if http then
        owin.log.error("%s", e.traceback or tostring(e))
      else
        owin.log.error("app error: %s", e.traceback)
      end
    end
  end

  local reqh = env[REQ_HEADERS]
  local accept = reqh and reqh.accept
  if type(accept) == "table" then accept = table_concat(accept, ", ") end
  local offers = OFFERS[o.prefer]
  local ctype = negotiate(accept, offers) or offers[1]
  local html = ctype == "text/html"
  local ok, body
  if html then
    ok, body = pcall(o.html or html_page, p, env)
    if ok and type(body) ~= "string" then
      ok, body = false, "the html option returned a " .. type(body) .. ", not a string"
    end
  else
    ok, body = pcall(function() return json.encode((o.json or problem_object)(p, env)) end)
  end
  if not ok then
    owin.log.error("errors: cannot make the %s page for a %d: %s", html and "HTML" or "JSON",
      status, tostring(body))
    local plain = { status = status, title = p.title, request_id = p.request_id }
    body = html and html_page(plain) or json.encode(problem_object(plain))
  end

  local h = env[RES_HEADERS]
  for i = 1, #DROP do h[DROP[i]] = nil end
  env[STATUS] = status
  env[REASON] = nil
  h["Content-Type"] = html and "text/html; charset=utf-8" or ctype
  h["X-Content-Type-Options"] = "nosniff"
  if html then h["Content-Security-Policy"] = "default-src 'none'" end
  local vary = h["Vary"]
  if vary == nil then
    h["Vary"] = "Accept"
  elseif not string_match(string_lower(table_concat(vary, ",")), "accept") then
    local list = { table_concat(vary, ", "), "Accept" }
    h["Vary"] = table_concat(list, ", ")
  end
  env[RES_BODY]:write(body)
end

local OPTIONS = { dev = "boolean", prefer = "string", log = "boolean", html = "function",
                  json = "function" }

-- errors([opts]) -> a middleware function(env, next).  opts: prefer
-- ("json", the default, or "html": the answer when Accept takes both
-- alike, or neither), dev (tracebacks in pages; default owin.dev()), log
-- (false: 5xx are not logged), html(problem, env) -> string and
-- json(problem, env) -> value (pages of your own).
local function new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'errors' (table of options expected, got " .. type(opts) .. ")", 2)
  end
  local o = { prefer = "json", log = true }
  for k, v in pairs(opts or {}) do
    local want = OPTIONS[k]
    if not want then
      error("bad argument #1 to 'errors' (unknown option '" .. tostring(k) .. "')", 2)
    end
    if type(v) ~= want then
      error(string_format("bad argument #1 to 'errors' (option %s: %s expected, got %s)", k,
        want, type(v)), 2)
    end
    o[k] = v
  end
  if not OFFERS[o.prefer] then
    error("bad argument #1 to 'errors' (option prefer: \"json\" or \"html\" expected, got \"" ..
      o.prefer .. "\")", 2)
  end
  return function(env, nxt)
    local ok, e = xpcall(nxt, handler, env)
    if ok then return end
    return answer(env, e, o)
  end
end

return setmetatable({
  new = new,
  negotiate = negotiate,
  html_page = html_page,
  problem = problem_object,
}, { __call = function(_, opts) return new(opts) end })
