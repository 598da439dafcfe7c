-- owin.test.request: one request in the test host: the env the app gets
-- (src/request/env.c: the response keys live outside the env table, answered by
-- owin.host.response, so setting them after the headers went out raises
-- "headers already sent"), the upgrades (websocket.Accept, opaque.Upgrade,
-- owinlua.AcceptNow), and the request's coroutine: an app error is a 500
-- before the headers went out and an aborted response after.  The response
-- side is in owin.test.response, the body streams in owin.test.stream.

local owin = require("owin")
local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local util = require("owin.test.util")
local headers = require("owin.headers")     -- the pure-Lua headers tables
local hresponse = require("owin.host.response")
local token = require("owin.host.token")
local loop_m = require("owin.test.loop")
local response = require("owin.test.response")
local stream = require("owin.test.stream")
local ws = require("owin.test.websocket")
local runtime = require("owin.test.runtime")

local type, setmetatable, tostring, tonumber, rawset, ipairs, pairs =
  type, setmetatable, tostring, tonumber, rawset, ipairs, pairs
local string_format, table_concat = string.format, table.concat
local raise, tostr, typeerror, argerror = check.raise, check.tostr, check.typeerror, check.argerror
local RESPONSE_KEYS, get, set = hresponse.KEYS, hresponse.get, hresponse.set
local commit, serialize, finish, canned = response.commit, response.serialize, response.finish,
  response.canned

local M = {}

local RESPH = hresponse.RESPH

local REQS = setmetatable({}, { __mode = "k" })     -- env -> request
M.REQS = REQS

-- Appends value to header lname (lowercase) of h, as request headers arrive.
local function headers_add(h, lname, value)
  local t = h[lname]
  if t then t[#t + 1] = value else h[lname] = { value } end
end

-- {====== the request target: path (percent-decoded except %2F) and query

local function decode_path(p)
  if p == "" then return "/" end
  return (p:gsub("%%(%x)(%x)", function(h, l)
    if h == "2" and (l == "F" or l == "f") then return nil end
    return string.char(tonumber(h .. l, 16))
  end))
end

function M.split_target(t)
  t = t:match("^[^#]*")
  if t ~= "" and not t:find("^[/*]") then
    local rest = t:match("^[^/?]*://[^/?]*(.*)$")      -- absolute-form
    if rest then t = rest end
  end
  local path, query = t:match("^([^?]*)%?(.*)$")
  if not path then path, query = t, "" end
  return decode_path(path), query
end
-- }======

-- {====== upgrades: websocket.Accept, opaque.Upgrade, owinlua.AcceptNow

-- The subprotocol: a string the client must have offered, or the first of
-- an array (the server's preference) that it offered.
local function pick_protocol(proto, offered)
  if proto == nil then return nil end
  if type(proto) == "string" then
    if not util.list_has(offered, proto) then
      raise(string_format("WebSocket subprotocol '%s' was not offered by the client", proto))
    end
    return proto
  end
  if type(proto) ~= "table" then typeerror(2, "table", proto) end
  for i = 1, #proto do
    local p = tostr(proto[i])
    if p and util.list_has(offered, p) then return p end
  end
  return nil
end

local function raw_joined(R, lname)
  local t = R.rawh[lname]
  return t and table_concat(t, ", ") or nil
end

-- Answers 101 and returns the socket (kind "ws" or "raw").
local function upgrade(R, kind, proto)
  if R.gone then raise("cannot upgrade: the client is gone") end
  if R.committed then raise("cannot upgrade: the response has already started") end
  local h = R.env[RESPH]
  if kind == "ws" then
    h["Upgrade"] = "websocket"
    h["Sec-WebSocket-Accept"] = ws.accept_key(raw_joined(R, "sec-websocket-key") or "")
    local p = pick_protocol(proto, raw_joined(R, "sec-websocket-protocol") or "")
    if p then h["Sec-WebSocket-Protocol"] = p end
  elseif h["Upgrade"] == nil then
    h["Upgrade"] = raw_joined(R, "upgrade")
  end
  R.status = 101
  commit(R)
  R.held, R.held_len = {}, 0         -- a 101 has no body
  serialize(R, true)
  R.upgraded, R.finished = true, true
  local s = ws.new(R.loop, R.opts, kind == "raw")
  R.socket = s
  s.conv.response = response.response(R)
  R.client.sockets[s] = true
  return s
end

-- core.ws_accept's counterpart: answers 101 now, in the request's coroutine.
local function accept_now(env, proto)
  if type(env) ~= "table" then typeerror(1, "table", env) end
  local R = REQS[env]
  if R == nil then argerror(1, "OWIN env expected, got table") end
  if R.gone or R.upgrade ~= 2 then
    raise("not a WebSocket request (check websocket.is_request(env))")
  end
  if R.upgrade_kind or R.upgraded then raise("the request was already upgraded") end
  R.upgrade_kind = "ws"
  return upgrade(R, "ws", proto)
end

-- websocket.Accept / opaque.Upgrade(params, callback): recorded; the 101
-- goes out when the pipeline returns.
local function accept_later(R, kind, name)
  return function(params, callback)
    if type(callback) ~= "function" then typeerror(2, "function", callback) end
    if params ~= nil and type(params) ~= "table" then typeerror(1, "table", params) end
    if R.committed or R.upgrade_kind then
      raise(name .. ": the response has already started or was upgraded")
    end
    R.upgrade_kind = kind
    R.upgrade_rec = { params, callback }
  end
end
-- }======

-- {====== the env

local ENV_MT = { __name = "owin.env" }

ENV_MT.__index = function(env, k)
  if RESPONSE_KEYS[k] then return get(REQS[env], k) end
  if k == "owinlua.AcceptNow" then return accept_now end
  return nil
end

ENV_MT.__newindex = function(env, k, v)
  if RESPONSE_KEYS[k] then
    set(REQS[env], k, v)
  else
    rawset(env, k, v)
  end
end

-- pairs(env): the stored keys, then the response keys.
ENV_MT.__pairs = hresponse.pairs

local function build_env(R, path, query)
  local env = setmetatable({}, ENV_MT)
  REQS[env] = R
  local o = R.opts
  env["owin.RequestScheme"] = R.tls and "https" or "http"
  if R.tls then                             -- what a TLS listener's env has
    local cert = R.tls.client_cert
    env["ssl.ClientCertificate"] = cert
    if cert then env["ssl.ClientCertificateErrors"] = R.tls.client_cert_errors end
    env["ssl.LoadClientCertAsync"] = function() return cert end
  end
  env["owin.RequestMethod"] = R.method
  env["owin.RequestPathBase"] = ""
  env["owin.RequestPath"] = path
  env["owin.RequestQueryString"] = query
  env["owin.RequestProtocol"] = R.minor == 0 and "HTTP/1.0" or "HTTP/1.1"
  env["owin.RequestHeaders"] = R.reqh
  env["owin.RequestBody"] = stream.input(R)
  env["owin.RequestId"] = "test-" .. R.id   -- a string, as the server's "<boot>-<n>"
  env["owin.ResponseBody"] = stream.output(R)
  env["owin.CallCancelled"] = R.token
  env["owin.Version"] = "1.0"
  env["server.RemoteIpAddress"] = o.remote_ip
  env["server.RemotePort"] = tostring(49152 + (R.id - 1) % 16384)
  env["server.LocalIpAddress"] = o.local_ip
  env["server.LocalPort"] = tostring(o.port)
  env["server.IsLocal"] = o.remote_ip == o.local_ip
  env["server.OnSendingHeaders"] = hresponse.on_sending_headers(R)
  env["server.OnRequestEnd"] = hresponse.on_request_end(R)
  env["host.OnAppDisposing"] = R.client.disposing
  env["sendfile.SendAsync"] = function(p, off, len, cancel) return stream.sendfile(R, p, off, len, cancel) end
  if R.upgrade == 2 then
    env["websocket.Accept"] = accept_later(R, "ws", "websocket.Accept")
  end
  if R.upgrade >= 1 then
    env["opaque.Upgrade"] = accept_later(R, "raw", "opaque.Upgrade")
    env["opaque.Version"] = "1.0"
  end
  return env
end
-- }======

-- {====== building a request from the test's description

-- A request body given as a function or an array: source() -> "chunk", s |
-- "delay", seconds | "end".  A function may yield chunks (a generator) or
-- return one per call (an iterator, nil at the end); a number means the
-- next chunk comes that many virtual seconds later.
local function make_source(body)
  local i, co, iterator = 0, nil, false
  local function classify(v)
    if v == nil then return nil end
    if type(v) == "number" then return "delay", v end
    if type(v) ~= "string" then
      error("owin.test: a request body function gave a " .. type(v) .. ", not a string", 0)
    end
    return "chunk", v
  end
  if type(body) == "table" then
    return function()
      while true do
        i = i + 1
        local v = body[i]
        if v == nil then return "end" end
        local kind, x = classify(v)
        if kind then return kind, x end
      end
    end
  end
  co = coroutine.create(body)
  return function()
    while true do
      local v
      if iterator then
        v = body()
        if v == nil then return "end" end
      else
        if coroutine.status(co) == "dead" then return "end" end
        local ok, x = coroutine.resume(co)
        if not ok then error(x, 0) end
        if coroutine.status(co) == "dead" then
          if x == nil then return "end" end
          iterator = i == 0          -- returned at once: an iterator
        end
        v = x
      end
      i = i + 1
      local kind, x = classify(v)
      if kind then return kind, x end
    end
  end
end

-- Checks the upgrade headers as src/http/http1.c does: 0 none, 1 any Upgrade,
-- 2 a valid WebSocket handshake, 426 a WebSocket handshake of another
-- version.
local function check_upgrade(R)
  local function joined(n) local t = R.rawh[n] return t and table_concat(t, ",") end
  if not util.list_has(joined("connection"), "upgrade") then return 0 end
  local up = joined("upgrade")
  if up == nil then return 0 end
  if not util.list_has(up, "websocket") or R.method ~= "GET" or R.minor ~= 1 then return 1 end
  local version = joined("sec-websocket-version")
  if version == nil then return 1 end
  if version ~= "13" then return 426 end
  local key = joined("sec-websocket-key")
  if key and ws.key_valid(key) then return 2 end
  return 1
end

local function bad(fmt, ...)
  raise("owin.test: " .. string_format(fmt, ...))      -- at the test's line
end

-- The TLS of a request: spec.tls, else the client's tls option (true, or
-- { client_cert = PEM, client_cert_errors = text }); nil for plain HTTP.
local function tls_of(spec, o)
  local t = spec.tls
  if t == nil then t = o.tls end
  if t == nil or t == false then return nil end
  if t == true then return {} end
  if type(t) ~= "table" then bad("tls must be true or a table, got %s", type(t)) end
  for k, v in pairs(t) do
    if (k ~= "client_cert" and k ~= "client_cert_errors") or type(v) ~= "string" then
      bad("tls: client_cert and client_cert_errors are strings, got %s = %s", tostring(k), type(v))
    end
  end
  return t
end

-- M.new(client, spec) -> request.  spec: method, path, headers, body,
-- protocol, tls.  Mistakes in spec raise (the server would answer 400).
function M.new(client, spec)
  local o = client.opts
  local method = spec.method or "GET"
  if not util.is_token(method) then bad("invalid method %s", tostring(method)) end
  local target = spec.path or "/"
  if type(target) ~= "string" or target == "" or target:find("[%s%z]") then
    bad("invalid path %s", tostring(target))
  end
  local protocol = spec.protocol or "HTTP/1.1"
  if protocol ~= "HTTP/1.1" and protocol ~= "HTTP/1.0" then
    bad("protocol must be \"HTTP/1.1\" or \"HTTP/1.0\", got %s", tostring(protocol))
  end
  client.next_id = client.next_id + 1
  local R = { client = client, loop = client.loop, opts = o, id = client.next_id,
              method = method, minor = protocol == "HTTP/1.0" and 0 or 1, is_head = method == "HEAD",
              status = 200, content_length = -1, written = 0, held = {}, held_len = 0,
              body = {}, flushes = 0, inbuf = stream.buf_new(), body_in = 0, rawh = {},
              reqh = headers.new(), token = token.new(), tls = tls_of(spec, o) }
  local function add(name, value)
    if not util.is_token(name) then bad("invalid request header name %s", tostring(name)) end
    local v = tostr(value)
    if v == nil then bad("request header %s: %s is not a string", name, type(value)) end
    if v:find("[\r\n%z]") then bad("request header %s: CR, LF and NUL are not allowed", name) end
    v = v:match("^[ \t]*(.-)[ \t]*$")
    local lname = name:lower()
    headers_add(R.reqh, lname, v)
    local t = R.rawh[lname]
    if t then t[#t + 1] = v else R.rawh[lname] = { v } end
  end
  local hs = spec.headers or {}
  for _, pair in ipairs(hs) do add(pair[1], pair[2]) end
  for name, v in pairs(hs) do
    if math.type(name) ~= "integer" then
      if type(v) == "table" then
        for _, x in ipairs(v) do add(name, x) end
      else
        add(name, v)
      end
    end
  end
  if R.minor == 1 and not R.rawh["host"] then add("Host", o.host) end
  local body = spec.body
  if type(body) == "string" then
    local cl = R.rawh["content-length"]
    if cl and tonumber(cl[1]) ~= #body then
      bad("Content-Length %s does not match the body's %d bytes", cl[1], #body)
    end
    if not cl and not R.rawh["transfer-encoding"] then add("Content-Length", #body) end
    stream.buf_push(R.inbuf, body)
    R.body_in = #body
    R.body_done = true
  elseif type(body) == "function" or type(body) == "table" then
    if not R.rawh["content-length"] and R.minor == 1 then add("Transfer-Encoding", "chunked") end
    R.source = make_source(body)
  elseif body == nil then
    R.body_done = true
  else
    bad("body must be a string, a function or an array of strings, got %s", type(body))
  end
  local conn = R.rawh["connection"] and table_concat(R.rawh["connection"], ",")
  if R.minor == 1 then
    R.keepalive = not util.list_has(conn, "close") and not client.stopping
  else
    R.keepalive = util.list_has(conn, "keep-alive") and not client.stopping
  end
  local expect = R.rawh["expect"]
  R.expect_continue = R.minor == 1 and expect ~= nil and expect[1]:lower() == "100-continue"
  if R.expect_continue and R.body_in > 0 then
    R.body_done = false              -- the client sends its body after the 100
  end
  local up = check_upgrade(R)
  local declared = R.rawh["content-length"] and tonumber(R.rawh["content-length"][1])
  if up == 426 then
    R.canned = canned(R, 426, { "Sec-WebSocket-Version", "13" }, "426 Upgrade Required\n", true)
  elseif o.max_body > 0 and ((declared and declared > o.max_body) or R.body_in > o.max_body) then
    R.canned = canned(R, 413, nil, "413 Content Too Large\n", true)
  end
  if R.canned then
    R.done, R.finished = true, true
    return R
  end
  R.upgrade = up
  R.env = build_env(R, M.split_target(target))
  return R
end
-- }======

-- {====== running it

local function main(R)
  R.app(R.env)
  if R.upgrade_rec and not R.upgraded then     -- raw Accept/Upgrade: 101 now
    local rec = R.upgrade_rec
    local params = rec[1]
    local proto = type(params) == "table" and params["websocket.SubProtocol"] or nil
    local s = upgrade(R, R.upgrade_kind, proto)
    rec[2](s.env)
    ws.finish(s, 1000)
  elseif R.upgraded then                       -- the adapter's accept
    ws.finish(R.socket, 1000)
  else
    finish(R)
  end
end

-- server.OnRequestEnd callbacks; their errors are logged as the server's.
local function request_end(R)
  hresponse.run_request_end(R, function(err, traceback)
    runtime.report(R.client, "server.OnRequestEnd callback", R.task, err, traceback)
  end)
end

local function on_end(task, ok, err, traceback)
  local R = task.owner
  if not ok then
    R.error, R.traceback = err, traceback
    if R.socket then ws.finish(R.socket, 1011) end    -- a socket's coroutine failed
    if not R.gone and not R.wire then
      R.held, R.held_len = {}, 0
      if not R.body_done then R.keepalive = false end
      local body = R.opts.dev and traceback or "500 Internal Server Error\n"
      R.canned = canned(R, 500, nil, body, not R.keepalive)
    else
      R.abort = true
    end
    if R.opts.log_errors then
      io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), " [error] [", R.id, "] app error: ",
        traceback, "\n")
    end
  elseif R.abort then
    R.error = "response body is shorter than its Content-Length"
  end
  R.finished, R.done = true, true
  R.client.inflight[R] = nil
  if R.socket and R.socket.conv then R.socket.conv.error = R.error end
  runtime.scope_end(R.scope)                  -- its threads and sockets
  request_end(R)
end

-- The client went away (response.cancel): every wait of the request and
-- of its threads returns "cancelled", its sockets close.
local function on_cancel(R)
  runtime.scope_cancel(R.scope)
  if R.task then R.loop:interrupt(R.task) end
end

-- Starts the app on the request, in its own task.
function M.start(R, app)
  R.app = app
  R.client.inflight[R] = true
  R.scope, R.on_cancel = runtime.scope(), on_cancel
  R.task = R.loop:spawn(main, R, on_end, R)
  R.task.scope = R.scope
  owin.set_env(R.task.co, R.env)      -- next() finds the env of this coroutine
end

-- Gives up on a request that never ends: its coroutine is closed.
function M.abandon(R)
  local t = R.task
  if t and not t.dead then
    t.dead = true
    loop_m.TASKS[t.co] = nil
    coroutine.close(t.co)
  end
  R.finished, R.done = true, true
  R.client.inflight[R] = nil
  if R.scope then runtime.scope_end(R.scope) end
  if R.env then request_end(R) end
end
-- }======

M.response, M.cancel = response.response, response.cancel
return M
