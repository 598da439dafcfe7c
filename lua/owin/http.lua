-- owin.http: an HTTP/1.1 client over the server's cosockets (owin.tcp).
--
--   local http = require("owin.http")
--   local res, err = http.request("http://127.0.0.1:8081/status")
--   local res, err = http.request{
--     method = "POST", url = "http://api.internal:8080/items?x=1",
--     headers = { ["Content-Type"] = "application/json" },
--     body = '{"name":"a"}', timeout = 5,
--   }
--   if not res then owin.log.warn("upstream: %s", err) return end
--   -- res.status, res.reason, res.headers["content-type"], res.body
--
-- Every wait (connect, send, receive) yields the calling coroutine: a
-- request, a thread, a timer run or the app script's top level.  The
-- response parser is the C core's (owin.core.http_response_parser,
-- src/codec/http_resp.c); this module frames the request, reads through
-- the parser, follows redirects and gives connections back to the pool.
--
-- Errors: misuse (a bad option, a URL that is not one) raises, naming the
-- argument; everything that can happen on the network returns nil and a
-- message: the socket's own ("timeout", "closed", "connection refused",
-- "host not found: NAME", "cancelled"), the parser's ("invalid response:
-- ...", "response head too large", "too many response header lines",
-- "response body too large", "closed before the response head", "closed
-- before the end of the body"), TLS's ("certificate verify failed:
-- REASON", ...), and this module's ("too many redirects", ...).  See
-- docs/http-client.md.

local owin = require("owin")
local ok_core, core = pcall(require, "owin.core")
if not ok_core then core = nil end

local type, error, tostring, tonumber, pairs, ipairs, pcall =
  type, error, tostring, tonumber, pairs, ipairs, pcall
local setmetatable, rawequal = setmetatable, rawequal
local math_type, math_huge = math.type, math.huge
local string_format, string_lower, string_sub, string_find, string_match, string_gsub =
  string.format, string.lower, string.sub, string.find, string.match, string.gsub
local table_concat, table_sort, table_insert, table_remove =
  table.concat, table.sort, table.insert, table.remove

local M = {}

local DEFAULT_TIMEOUT = 60              -- seconds, each of connect, send, read
local DEFAULT_MAX_BODY = 64 * 1024 * 1024   -- a body read into res.body
local KEEPALIVE_TIMEOUT, KEEPALIVE_POOL = 60, 30
local RECV = 65536                      -- the most one receive asks for
local DRAIN = 65536                     -- a redirect's body read to keep its connection
local ATTEMPTS = 3                      -- tries when pooled connections turn out closed

-- RFC 9110 9.2.2: a request that may be sent again after a failure
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true, PUT = true,
                     DELETE = true }
-- methods that give content a meaning: Content-Length: 0 when there is
-- none (RFC 9110 8.6)
local WITH_CONTENT = { POST = true, PUT = true, PATCH = true }
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
-- header fields the caller may not set: this module frames the message
local FRAMING = { ["transfer-encoding"] = true }
-- header fields that do not follow a redirect to another origin
local CREDENTIALS = { authorization = true, ["proxy-authorization"] = true, cookie = true }

------------------------------------------------------------------------------
-- Arguments

local function argerror(msg, level)
  error("bad argument #1 to 'request' (" .. msg .. ")", level + 1)
end

-- tchar (RFC 9110 5.6.2): a token is one or more of these
local function is_token(s)
  return type(s) == "string" and string_find(s, "^[%w!#$%%&'*+%-.^_`|~]+$") ~= nil
end

-- RFC 9110 5.5: a field value has no CR, LF, NUL or other control byte but
-- HTAB
local function bad_value(s)
  return string_find(s, "[%z\1-\8\10-\31\127]") ~= nil
end

local function check_seconds(v, what)
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math_huge then   -- v ~= v: NaN
    return nil, what .. " must be a number of seconds > 0, got " .. tostring(v)
  end
  return v
end

local function check_count(v, what, min)
  min = min or 0
  if math_type(v) ~= "integer" or v < min then
    return nil, what .. " must be an integer >= " .. min .. ", got " .. tostring(v)
  end
  return v
end

------------------------------------------------------------------------------
-- URLs (RFC 3986, the http scheme of RFC 9110 4.2.1)

-- A host: a reg-name or IPv4 address (unreserved, pct-encoded, sub-delims).
local function valid_host(h)
  return string_find(h, "^[%w%-._~%%!$&'()*+,;=]+$") ~= nil
end

-- Splits an absolute URL.  Returns { host, port, authority, target, url }
-- (host as connect takes it: an IPv6 literal without its brackets;
-- authority as the Host header carries it; tls for https), or nil, why,
-- runtime: runtime is true when the URL is well-formed but asks for what
-- is not supported (nothing now).
local function parse_url(url)
  local scheme, rest = string_match(url, "^(%a[%w+.%-]*)://(.*)$")
  if not scheme then
    return nil, "url must be absolute: http://host[:port]/path, got " .. string_format("%q", url)
  end
  scheme = string_lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported URL scheme " .. string_format("%q", scheme)
  end
  local tls = scheme == "https"
  local default_port = tls and 443 or 80
  local authority, target = string_match(rest, "^([^/?#]*)(.*)$")
  target = string_gsub(target, "#.*$", "")      -- the fragment stays with the client
  if target == "" or string_sub(target, 1, 1) == "?" then target = "/" .. target end
  if string_find(target, "[%z\1-\32\127-\255]") then
    return nil, "url: the path or query has a space, a control or a non-ASCII byte " ..
      "(percent-encode it): " .. string_format("%q", url)
  end
  if string_find(authority, "@", 1, true) then
    return nil, "url: user:password@ is not supported (send an Authorization header)"
  end
  local host, port, hosthdr
  if string_sub(authority, 1, 1) == "[" then
    host, port = string_match(authority, "^%[([%x:.]+)%](.*)$")
    if not host or not string_find(host, ":", 1, true) then
      return nil, "url: bad IPv6 literal in " .. string_format("%q", authority)
    end
    host = string_lower(host)
    hosthdr = "[" .. host .. "]"
  else
    host, port = string_match(authority, "^([^:]*)(.*)$")
    if host == "" or not valid_host(host) then
      return nil, "url: bad or missing host in " .. string_format("%q", url)
    end
    host = string_lower(host)
    hosthdr = host
  end
  if port == "" or port == ":" then
    port = default_port
  else
    local digits = string_match(port, "^:(%d+)$")
    port = digits and tonumber(digits)
    if not port or port < 1 or port > 65535 then
      return nil, "url: bad port in " .. string_format("%q", url)
    end
  end
  if port ~= default_port then hosthdr = hosthdr .. ":" .. port end
  return { host = host, port = port, authority = hosthdr, target = target, tls = tls,
           url = scheme .. "://" .. hosthdr .. target }
end

-- RFC 3986 5.2.4, for a path that starts with "/": "." and ".."
-- segments go.
local function remove_dots(path)
  local segs, n, i = {}, 0, 2
  local last
  while true do
    local j = string_find(path, "/", i, true)
    local seg = string_sub(path, i, (j or 0) - 1)
    if seg == ".." then
      if n > 0 then segs[n], n = nil, n - 1 end
    elseif seg ~= "." then
      n = n + 1
      segs[n] = seg
    end
    if not j then last = seg break end
    i = j + 1
  end
  local out = "/" .. table_concat(segs, "/", 1, n)
  if (last == "." or last == "..") and n > 0 then out = out .. "/" end
  return out
end

-- The absolute URL a Location value names, resolved against the URL base
-- (RFC 3986 5.2).
local function resolve(base, loc)
  if string_find(loc, "^%a[%w+.%-]*:") then return loc end   -- absolute
  if string_sub(loc, 1, 2) == "//" then return "http:" .. loc end
  local origin = "http://" .. base.authority
  local path, query = string_match(base.target, "^([^?]*)(.*)$")
  if loc == "" then return origin .. path .. query end
  if string_sub(loc, 1, 1) == "?" then return origin .. path .. loc end
  local lpath, rest = string_match(loc, "^([^?#]*)(.*)$")
  if string_sub(lpath, 1, 1) ~= "/" then          -- relative to the base's directory
    lpath = string_match(path, "^(.*/)") .. lpath
  end
  return origin .. remove_dots(lpath) .. rest
end

------------------------------------------------------------------------------
-- The request

-- Appends the lines of header `name` (value v: a string, a number, an
-- array of them, or false for none) to out as { lname, line } pairs.
-- Returns nil, why for a value that may not be sent.
local function header_lines(out, name, lname, v)
  local t = type(v)
  if t == "string" or t == "number" then
    v = tostring(v)
    if bad_value(v) then return nil, "header " .. name .. " has a CR, LF or control byte in its value" end
    out[#out + 1] = { lname, name .. ": " .. v .. "\r\n" }
  elseif t == "table" then
    for i = 1, #v do
      local vt = type(v[i])
      if vt ~= "string" and vt ~= "number" then
        return nil, "header " .. name .. ": element " .. i .. " is a " .. vt .. ", not a string"
      end
      local ok, why = header_lines(out, name, lname, v[i])
      if not ok then return nil, why end
    end
  elseif v ~= false then
    return nil, "header " .. name .. " must be a string, a number, an array of them or false, got " .. t
  end
  return true
end


-- The request as this module sends it, from the caller's options; raises
-- on misuse.  level: the caller's level for the errors.
local function check(opts, level)
  level = level + 1
  if type(opts) == "string" then opts = { url = opts } end
  if type(opts) ~= "table" then
    argerror("table or URL string expected, got " .. type(opts), level)
  end
  local req = { url = opts.url, body = opts.body, stream = opts.stream == true }
  if type(req.url) ~= "string" then argerror("url must be a string, got " .. type(req.url), level) end
  local u, why, runtime = parse_url(req.url)
  if not u and not runtime then argerror(why, level) end
  req.u = u                                     -- nil with https: request says why

  local method = opts.method or "GET"
  if not is_token(method) then
    argerror("method must be a token such as \"GET\", got " .. string_format("%q", tostring(method)), level)
  end
  if method == "CONNECT" then argerror("CONNECT is not supported", level) end
  req.method = method

  local body = req.body
  local bt = type(body)
  if body ~= nil and bt ~= "string" and bt ~= "function" then
    argerror("body must be a string or a function, got " .. bt, level)
  end

  -- the caller's header fields, rendered now: names in sorted order, one
  -- line per value
  local given = {}                              -- lowercase name -> value
  local lines = {}                              -- { lowercase name, "Name: value\r\n" }
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then
      argerror("headers must be a table, got " .. type(opts.headers), level)
    end
    local names = {}
    for name in pairs(opts.headers) do
      if not is_token(name) then
        argerror("header name " .. string_format("%q", tostring(name)) .. " is not a token", level)
      end
      names[#names + 1] = name
    end
    table_sort(names)
    for _, name in ipairs(names) do
      local lname, v = string_lower(name), opts.headers[name]
      if FRAMING[lname] then argerror(name .. " is set by owin.http, from body", level) end
      if given[lname] ~= nil then argerror("header " .. name .. " is given twice", level) end
      if lname == "host" and type(v) ~= "string" then argerror("Host must be a string", level) end
      if lname == "content-length" and v == false then
        argerror("Content-Length cannot be left out", level)
      end
      given[lname] = v
      local ok, e = header_lines(lines, name, lname, v)
      if not ok then argerror(e, level) end
      if lname == "host" then                   -- RFC 9112 3.2: Host first
        table_insert(lines, 1, table_remove(lines))
      end
    end
  end
  req.given = given
  req.lines = lines

  -- Content-Length from the caller: a function body is then sent as it is
  local cl = given["content-length"]
  if cl ~= nil and cl ~= false then
    local n = math_type(cl) == "integer" and cl or (type(cl) == "string" and string_match(cl, "^%d+$")
      and tonumber(cl))
    if not n or n < 0 then argerror("Content-Length must be digits, got " .. tostring(cl), level) end
    if bt == "string" and n ~= #body then
      argerror("Content-Length is " .. n .. " but body has " .. #body .. " bytes", level)
    end
    if body == nil and n ~= 0 then argerror("Content-Length is " .. n .. " but there is no body", level) end
    req.length = n
  end

  local t = opts.timeout
  local ct, st, rt = DEFAULT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUT
  if type(t) == "table" then
    local function seconds(k, default)
      if t[k] == nil then return default end
      local v, e = check_seconds(t[k], "timeout." .. k)
      if not v then argerror(e, level + 1) end
      return v
    end
    ct, st, rt = seconds("connect", ct), seconds("send", st), seconds("read", rt)
  elseif t ~= nil then
    local v, e = check_seconds(t, "timeout")
    if not v then argerror(e, level) end
    ct, st, rt = v, v, v
  end
  req.timeouts = { ct, st, rt }

  local function count(k, default, min)
    local v = opts[k]
    if v == nil then return default end
    local n, e = check_count(v, k, min)
    if not n then argerror(e, level + 1) end
    return n
  end
  req.redirects = count("redirects", 0)
  req.max_body = count("max_body", req.stream and 0 or DEFAULT_MAX_BODY)
  req.max_header_bytes = count("max_header_bytes", 0)
  req.max_headers = count("max_headers", 0)
  req.keepalive_pool = count("keepalive_pool", KEEPALIVE_POOL, 1)
  req.keepalive_timeout = KEEPALIVE_TIMEOUT
  if opts.keepalive_timeout ~= nil then
    local v, e = check_seconds(opts.keepalive_timeout, "keepalive_timeout")
    if not v then argerror(e, level) end
    req.keepalive_timeout = v
  end
  if opts.keepalive ~= nil and type(opts.keepalive) ~= "boolean" then
    argerror("keepalive must be a boolean, got " .. type(opts.keepalive), level)
  end
  local conn = given["connection"]
  req.keepalive = opts.keepalive ~= false and
    not (type(conn) == "string" and string_find("," .. string_lower(conn) .. ",", "[,%s]close[,%s]"))
  if opts.stream ~= nil and type(opts.stream) ~= "boolean" then
    argerror("stream must be a boolean, got " .. type(opts.stream), level)
  end
  -- TLS: verification on unless verify = false; a CA file and a client
  -- certificate may be given
  if opts.verify ~= nil and type(opts.verify) ~= "boolean" then
    argerror("verify must be a boolean, got " .. type(opts.verify), level)
  end
  for _, k in ipairs({ "cafile", "cert", "key" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      argerror(k .. " must be a file name, got " .. type(opts[k]), level)
    end
  end
  if opts.key ~= nil and opts.cert == nil then argerror("key without cert", level) end
  req.tls = { verify = opts.verify ~= false, cafile = opts.cafile, cert = opts.cert, key = opts.key }
  return req, why
end

-- The request head, for the URL u.
local function build_head(req, u)
  local given = req.given
  local out = { req.method, " ", u.target, " HTTP/1.1\r\n" }
  if given.host == nil then out[#out + 1] = "Host: " .. u.authority .. "\r\n" end
  local lines = req.lines
  for i = 1, #lines do out[#out + 1] = lines[i][2] end
  if given["user-agent"] == nil then
    out[#out + 1] = "User-Agent: owinlua/" .. tostring(owin.version) .. "\r\n"
  end
  local body = req.body
  if req.length == nil then
    if type(body) == "string" then
      out[#out + 1] = "Content-Length: " .. #body .. "\r\n"
    elseif type(body) == "function" then
      out[#out + 1] = "Transfer-Encoding: chunked\r\n"
    elseif WITH_CONTENT[req.method] then
      out[#out + 1] = "Content-Length: 0\r\n"
    end
  end
  if not req.keepalive then out[#out + 1] = "Connection: close\r\n" end
  out[#out + 1] = "\r\n"
  return table_concat(out)
end


------------------------------------------------------------------------------
-- A connection carrying one exchange

-- c: { sock, parser, req, head (the head event), queue (body strings not
--      read yet: queue[qi..qn], the first from byte qoff + 1 on), done (the parser saw
--      the end), keepalive (the response allows another request), broken
--      (the request was not sent whole), got (response bytes came), eof,
--      err, called (the body function ran), released, closed (by the
--      caller) }

-- The newest TLS session of each pool (origin and TLS settings), to resume
-- the next new connection's session there: a bounded table.
local sessions, nsessions = {}, 0
local MAX_SESSIONS = 256

local function keep_session(key, sess)
  if sessions[key] == nil then
    if nsessions >= MAX_SESSIONS then sessions, nsessions = {}, 0 end
    nsessions = nsessions + 1
  end
  sessions[key] = sess
end

-- Gives the socket back: to the pool when the response ended and both
-- sides allow it, else closed.
local function release(c)
  if c.released then return end
  c.released = true
  local sock = c.sock
  if c.pool_key then
    local sess = sock:sslsession()       -- under TLS 1.3 it came after the handshake
    if sess then keep_session(c.pool_key, sess) end
  end
  if c.done and c.keepalive and c.req.keepalive and not c.broken then
    sock:setkeepalive(c.req.keepalive_timeout, c.req.keepalive_pool)   -- closes it on refusal
  else
    sock:close()
  end
end

-- Fails the exchange: the socket is closed (never pooled mid-response).
local function fail(c, err)
  c.err = err
  c.done = false
  release(c)
  return nil, err
end

-- One receive, through the parser.  Returns true, or nil, err (the
-- connection is released then).
local function pump(c)
  local data, err = c.sock:receiveany(RECV)
  local events, perr
  if data then
    c.got = true
    events, perr = c.parser:feed(data)
  elseif err == "closed" then
    c.eof = true
    events, perr = c.parser:eof()
  else
    return fail(c, err)
  end
  if not events then return fail(c, perr) end
  for i = 1, #events do
    local e = events[i]
    local t = e.type
    if t == "body" then
      local qn = c.qn + 1
      c.queue[qn], c.qn = e.data, qn
    elseif t == "head" then
      c.head = e
    else
      c.done = true
      c.keepalive = e.keepalive and not c.eof
      release(c)                -- the body is in memory: the socket can go
    end
  end
  return true
end

-- Up to n bytes of body: a string, or nil at the end, or nil, err.
local function read_body(c, n)
  while true do
    local q, qi = c.queue, c.qi
    local s = q[qi]
    if s then
      local off = c.qoff
      local len = #s - off
      if len <= n then
        q[qi] = nil
        c.qi, c.qoff = qi + 1, 0
        return off == 0 and s or string_sub(s, off + 1)
      end
      c.qoff = off + n
      return string_sub(s, off + 1, off + n)
    end
    if c.done then return nil end
    if c.err then return nil, c.err end
    local ok, err = pump(c)
    if not ok then return nil, err end
  end
end

-- Sends the request; returns true or nil, err.  A body function returns
-- the next piece, nil at the end, or nil, err to abandon the request; an
-- error it raises is raised again, after the connection is closed.
local function send_request(c, u)
  local req, sock = c.req, c.sock
  local head = build_head(req, u)
  local body = req.body
  if type(body) ~= "function" then
    local ok, err = sock:send(body and { head, body } or head)
    if not ok then return nil, err end
    return true
  end
  local ok, err = sock:send(head)
  if not ok then return nil, err end
  c.called = true                               -- the body cannot be replayed now
  local length, sent = req.length, 0
  while true do
    local okc, chunk, ferr = pcall(body)
    if not okc then
      fail(c, "the body function raised an error")
      error(chunk, 0)
    end
    if chunk == nil then
      -- nil, err: the body cannot be had (a client's upload broke off);
      -- the request must not look complete to the server
      if ferr ~= nil then return nil, "body: " .. tostring(ferr) end
      break
    end
    if type(chunk) ~= "string" then
      fail(c, "bad body chunk")
      error("bad argument #1 to 'request' (body function returned a " .. type(chunk) ..
        ", string or nil expected)", 0)
    end
    if #chunk > 0 then
      sent = sent + #chunk
      if length then
        if sent > length then
          return nil, "body function gave more than Content-Length (" .. length .. ") bytes"
        end
        ok, err = sock:send(chunk)
      else
        ok, err = sock:send({ string_format("%x\r\n", #chunk), chunk, "\r\n" })
      end
      if not ok then return nil, err end
    end
  end
  if length then
    if sent ~= length then
      return nil, "body function gave " .. sent .. " bytes, Content-Length is " .. length
    end
    return true
  end
  ok, err = sock:send("0\r\n\r\n")
  if not ok then return nil, err end
  return true
end

-- Reads until the final head is in.  Returns true or nil, err.
local function read_head(c)
  while not c.head do
    local ok, err = pump(c)
    if not ok then return nil, err end
  end
  if c.head.status == 101 then
    return fail(c, "the server switched protocols (101): owin.http does not upgrade connections")
  end
  return true
end

-- The headers table: lowercase names; repeated fields joined with ", ",
-- but set-cookie, which is always a list.
local function headers_table(flat)
  local h = {}
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    if name == "set-cookie" then
      local list = h[name]
      if not list then list = {}; h[name] = list end
      list[#list + 1] = value
    else
      local prev = h[name]
      h[name] = prev and (prev .. ", " .. value) or value
    end
  end
  return h
end

-- A response read whole has nothing to close: res:close() and <close>
-- are allowed all the same.
local function close_done() return true end
local DONE_MT = { __close = close_done }


-- A streamed body: read(n), chunks([n]), close().  Each may be called with
-- a dot or a colon.
local function body_reader(c)
  local reader = {}
  function reader.read(a, b)
    local n = b
    if not rawequal(a, reader) then n = a end
    if n == nil then n = RECV end
    if math_type(n) ~= "integer" or n < 1 then
      error("bad argument #1 to 'read' (a byte count >= 1 expected, got " .. tostring(n) .. ")", 2)
    end
    if c.closed then return nil, "closed" end
    return read_body(c, n)
  end
  function reader.chunks(a, b)
    local n = b
    if not rawequal(a, reader) then n = a end
    if n == nil then n = RECV end
    if math_type(n) ~= "integer" or n < 1 then
      error("bad argument #1 to 'chunks' (a byte count >= 1 expected, got " .. tostring(n) .. ")", 2)
    end
    return function()
      if c.closed then return nil end
      local s, err = read_body(c, n)
      if s == nil and err then error(err, 2) end
      return s
    end
  end
  function reader.close()
    if not c.closed then
      c.closed = true
      c.queue, c.qi, c.qn, c.qoff = {}, 1, 0, 0
      release(c)                -- pooled only if the body had already ended
    end
    return true
  end
  return setmetatable(reader, { __close = reader.close })
end

-- One exchange on one connection.  Returns the response, or nil, err,
-- retry: retry is true when a pooled connection turned out to be closed
-- before any of the response came, and the request may be sent again.
-- The pool of u's connections: origin, and for TLS the settings they were
-- verified with (a connection checked one way is not reused another way).
local function pool_of(req, u)
  local key = "owin.http:" .. u.host .. ":" .. u.port
  if not u.tls then return key end
  local t = req.tls
  return string_format("owin.https:%s:%d:%s:%s:%s:%s", u.host, u.port, t.verify and "v" or "-",
    t.cafile or "", t.cert or "", t.key or "")
end

local HTTP11 = { "http/1.1" }

local function exchange(req, u)
  local sock = owin.tcp()
  sock:settimeouts(req.timeouts[1], req.timeouts[2], req.timeouts[3])
  local pool = pool_of(req, u)
  local ok, err = sock:connect(u.host, u.port, { pool = pool })
  if ok and u.tls and (sock:getreusedtimes() or 0) == 0 then
    local t = req.tls
    ok, err = sock:sslhandshake({ server_name = u.host, verify = t.verify, cafile = t.cafile,
      cert = t.cert, key = t.key, alpn = HTTP11, reused_session = sessions[pool] })
  end
  if not ok then
    sock:close()
    return nil, err
  end
  local c = {
    sock = sock, req = req, queue = {}, qi = 1, qn = 0, qoff = 0,
    pool_key = u.tls and pool or nil,
    parser = core.http_response_parser({ method = req.method, max_body = req.max_body,
      max_header_bytes = req.max_header_bytes, max_headers = req.max_headers }),
  }
  local reused = (sock:getreusedtimes() or 0) > 0
  ok, err = send_request(c, u)
  if ok then
    ok, err = read_head(c)
    if not ok then
      return nil, err, reused and not c.got and not c.called and IDEMPOTENT[req.method] and
        err == "closed before the response head"
    end
  elseif err == "closed" and not c.released then
    -- the server may have answered early and closed (a 413 or a 401
    -- before the whole body): its answer says more than the send error
    c.broken = true
    if not read_head(c) then
      return nil, err, reused and not c.got and not c.called
    end
  else
    fail(c, err)
    return nil, err
  end
  local head = c.head
  local res = {
    status = head.status, reason = head.reason, headers = headers_table(head.headers),
    header_list = head.headers, url = u.url,
  }
  if req.stream then
    local reader = body_reader(c)
    res.body_reader, res.close = reader, reader.close
    return setmetatable(res, { __close = reader.close })
  end
  while not c.done do
    ok, err = pump(c)
    if not ok then return nil, err end
  end
  res.body = c.qn == 1 and c.queue[1] or table_concat(c.queue, "", 1, c.qn)
  res.close = close_done
  return setmetatable(res, DONE_MT)
end


-- Reads and drops a redirect's body, so that its connection can be kept;
-- more than DRAIN bytes: closed instead.
local function discard(res)
  local r = res.body_reader
  if not r then return end
  local left = DRAIN
  while left > 0 do
    local s = r.read(left)
    if not s then break end
    left = left - #s
  end
  r.close()
end

-- The request that follows a redirect (status, Location value) from the
-- request req to the URL u: RFC 9110 15.4.  303, and 301 and 302 after a
-- POST, become GET without the body and its Content-* fields; 307 and 308
-- send the same request again.  Credentials (Authorization, Cookie) and a
-- Host given by the caller do not go to another origin.  Returns the new
-- request and URL; nil, err for a Location that cannot be followed; false
-- when the body cannot be sent again (a function).
local function redirected(req, u, status, location)
  local url = resolve(u, location)
  local nu, why, runtime = parse_url(url)
  if not nu then
    if runtime then return nil, why .. " (a redirect to " .. url .. ")" end
    return nil, "bad redirect location " .. string_format("%q", location) .. ": " .. why
  end
  local nreq = {}
  for k, v in pairs(req) do nreq[k] = v end
  local to_get = status == 303 and req.method ~= "HEAD" or
    (status == 301 or status == 302) and req.method == "POST"
  if to_get then
    nreq.method, nreq.body, nreq.length = "GET", nil, nil
  elseif type(req.body) == "function" then
    return false
  end
  local same_origin = nu.host == u.host and nu.port == u.port and nu.tls == u.tls
  if to_get or not same_origin then
    local given, lines = {}, {}
    for lname, v in pairs(req.given) do
      if not ((to_get and string_sub(lname, 1, 8) == "content-") or
              (not same_origin and (CREDENTIALS[lname] or lname == "host"))) then
        given[lname] = v
      end
    end
    for _, l in ipairs(req.lines) do
      if given[l[1]] ~= nil then lines[#lines + 1] = l end
    end
    nreq.given, nreq.lines = given, lines
  end
  nreq.u = nu
  return nreq, nu
end

-- One request, with the retries of stale pooled connections.
local function perform(req, u)
  local res, err, retry
  for _ = 1, ATTEMPTS do
    res, err, retry = exchange(req, u)
    if res or not retry then break end
  end
  return res, err
end

-- http.request(opts | url) -> res | nil, err.  See the top of this file
-- and docs/http-client.md.
function M.request(opts)
  local req, why = check(opts, 2)
  if not owin.tcp or not (core and core.http_response_parser) then
    error("owin.http needs the owinlua server (owin.tcp and owin.core)", 2)
  end
  local u = req.u
  if not u then return nil, why end
  local max, left = req.redirects, req.redirects
  while true do
    local res, err = perform(req, u)
    if not res then return nil, err end
    local location = res.headers.location
    if max == 0 or not REDIRECT[res.status] or type(location) ~= "string" then
      return res
    end
    if left == 0 then
      discard(res)
      return nil, "too many redirects (more than " .. max .. ")"
    end
    local nreq, nu = redirected(req, u, res.status, location)
    if nreq == false then return res end        -- the 3xx is the answer
    discard(res)
    if not nreq then return nil, nu end
    req, u, left = nreq, nu, left - 1
  end
end

return M
