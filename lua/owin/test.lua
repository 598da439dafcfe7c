-- owin.test: an in-process host for testing OWIN apps with busted (or any
-- Lua test runner).  No sockets and no C server: the app runs in
-- coroutines exactly as the server runs it, with the same env keys,
-- headers tables, streams and WebSockets, and virtual time, so
-- owin.sleep(30) returns at once.
--
--   local test = require("owin.test")
--   local client = test.client("app.lua")        -- a script, a builder or an AppFunc
--   local res = client:get("/hello?x=1", { headers = { Accept = "text/plain" } })
--   assert.equal(200, res.status)
--   assert.equal("text/plain", res.headers["content-type"])
--   res = client:post("/upload", { body = "data" })     -- or a function yielding chunks
--   local ws = assert(client:websocket("/echo"))
--   ws:send("hi")
--   assert.equal("hi", ws:receive())
--   ws:close(1000)
--
-- A response is { status, reason, headers, list, body, error, traceback,
-- aborted, cancelled, timed_out, continued, flushes, id, socket }:
-- headers maps lowercase names to the values joined with ", "; list holds
-- every { name, value } as sent (the spelling the app gave, repeated
-- headers apart).  See docs/testing.md.
--
-- Waiting: requiring this module wraps owin.sleep, owin.now,
-- owin.request_id and owin.dev in the `owin` module table, and puts its own
-- owin.spawn, owin.wait, owin.timer, owin.tcp, owin.udp and owin.resolve
-- there.
-- Inside a task of the test host (a request, a thread, a timer's run, a
-- fake peer, an app script loading) they use its virtual loop and clock;
-- anywhere else they call what was there before (the server's C functions
-- inside the owinlua binary).  Code that saved `local sleep = owin.sleep`
-- before owin.test was required keeps the old function: require owin.test
-- first, or call owin.sleep.  It also replaces coroutine.resume, wrap,
-- status and close, as the server does, so that a wait inside the app's own
-- coroutines suspends the whole chain (owin.test.loop).
--
-- Apps that talk to the outside: owin.tcp() sockets connect to peers the
-- test registers (client:peer), names resolve from client:hosts, and
-- client.errors collects the errors of threads, timer runs and peers.

local owin = require("owin")
local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local status = require("owin.host.status")
local token = require("owin.host.token")
local loop_m = require("owin.test.loop")
local request = require("owin.test.request")
local ws = require("owin.test.websocket")
local runtime = require("owin.test.runtime")
local cosocket = require("owin.test.cosocket")

local type, pairs, next, tonumber, tostring, setmetatable, error =
  type, pairs, next, tonumber, tostring, setmetatable, error
local current = loop_m.current

local M = {}

loop_m.install_coroutines()

-- {====== the runtime functions in the test host

local real = { sleep = owin.sleep, now = owin.now, request_id = owin.request_id,
               spawn = owin.spawn, wait = owin.wait, timer = owin.timer, tcp = owin.tcp,
               udp = owin.udp, resolve = owin.resolve, dev = owin.dev,
               semaphore = owin.semaphore }

-- The loop of the test host the running code belongs to: its task's, or
-- the one running now (a token callback, a body function), or nil.
local function test_loop()
  local task = current()
  if task then return task.loop, task end
  return loop_m.active, nil
end

-- Passes results on; `return give(f(...))` keeps the caller's frame (a
-- tail call would lose the name that argument errors give).
local function give(...) return ... end

-- What was there before, or the error of a plain Lua without owinlua.
local function fallback(name, f)
  if f then return f end
  check.raise(name .. " needs the owinlua server, or an owin.test client running the app")
end

-- owin.sleep(seconds) -> true, or nil, "cancelled": inside a task of the
-- test host, a virtual wait.
function owin.sleep(s)
  local task = current()
  if task == nil then return real.sleep(s) end
  local n = (type(s) == "number" or type(s) == "string") and tonumber(s)
  if not n then check.typeerror(1, "number", s) end
  if not (n >= 0 and n < 1e9) then check.argerror(1, "must be a number of seconds from 0") end
  task = loop_m.waiter("owin.sleep")
  if runtime.refused(task) then return nil, "cancelled" end
  task.loop:sleep(task, n)
  if runtime.cancelled(task) then return nil, "cancelled" end
  return true
end

-- owin.now(): the virtual clock inside a task of the test host (or while a
-- client runs), seconds as a float.
function owin.now()
  local loop = test_loop()
  if loop then return loop.now end
  return real.now()
end

-- owin.request_id(): the id of the request a task serves (its threads
-- too); nothing in detached threads, timer runs and peers, as in the server.
function owin.request_id()
  local task = current()
  if task == nil then return real.request_id() end
  if task.owner then return "test-" .. task.owner.id end
end

-- owin.dev(): the client's dev option inside a task of the test host (or
-- while a client runs), as --dev in the server.
function owin.dev()
  local loop = test_loop()
  if loop and loop.client then return loop.client.opts.dev == true end
  return real.dev()
end

-- owin.spawn([{ detached = true },] fn, ...) -> thread
function owin.spawn(...)
  local loop, task = test_loop()
  if loop == nil then return fallback("owin.spawn", real.spawn)(...) end
  return give(runtime.spawn(loop, task, ...))
end

-- owin.semaphore(n): one that waits on the virtual loop when a test host
-- runs (made at start-up by an app, or in a test), the server's otherwise
function owin.semaphore(n)
  if test_loop() == nil and real.semaphore then
    return real.semaphore(n)
  end
  return runtime.semaphore(n)
end

-- owin.wait(t1, ...) -> thread, true, results... | thread, false, err
function owin.wait(...)
  if test_loop() == nil then return fallback("owin.wait", real.wait)(...) end
  return give(runtime.wait_any(...))
end

-- owin.timer.at(delay, fn, ...) and owin.timer.every(interval, fn, ...)
owin.timer = {
  at = function(...)
    local loop = test_loop()
    if loop == nil then return fallback("owin.timer.at", real.timer and real.timer.at)(...) end
    return give(runtime.timer(loop.client, false, ...))
  end,
  every = function(...)
    local loop = test_loop()
    if loop == nil then
      return fallback("owin.timer.every", real.timer and real.timer.every)(...)
    end
    return give(runtime.timer(loop.client, true, ...))
  end,
}

-- owin.tcp() -> a socket whose connects reach the client's peers
function owin.tcp()
  local loop = test_loop()
  if loop == nil then return fallback("owin.tcp", real.tcp)() end
  return give(cosocket.tcp(loop.client))
end

-- owin.udp(): no fake in the test host
function owin.udp()
  if test_loop() == nil then return fallback("owin.udp", real.udp)() end
  check.raise("owin.udp: owin.test has no fake UDP peers (test UDP code against the " ..
    "owinlua binary: see docs/testing.md)")
end

-- owin.resolve(name) -> { "ip", ... }, or nil, err: from the client's hosts
function owin.resolve(name)
  local loop = test_loop()
  if loop == nil then return fallback("owin.resolve", real.resolve)(name) end
  return give(cosocket.resolve(loop.client, name))
end
-- }======

-- {====== apps

-- Loads an app script as `owinlua app.lua` does (owin.cli.load_app): the
-- script sees the globals `app` (a builder) and `owin`, and may return an
-- AppFunc or a builder.  Its directory goes first on package.path.  `app`
-- is the script's own (each client loads the script afresh); other
-- globals are the real ones.  As in the server, the script runs as a task
-- on the client's loop, so it may wait (connect, sleep) and start timers
-- and threads; what it opens is shared.
local function load_script(path, loop)
  local f = io.open(path, "r")
  if not f then error(string.format("owin.test: cannot open app script '%s'", path), 0) end
  f:close()
  local dir = path:match("^(.*)/[^/]*$") or "."
  local entry = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if package.path:sub(1, #entry) ~= entry then package.path = entry .. package.path end
  local builder = owin.new()
  local genv = setmetatable({ app = builder, owin = owin }, { __index = _G, __newindex = _G })
  local chunk, err = loadfile(path, "bt", genv)
  if not chunk then error("owin.test: cannot load " .. err, 0) end
  owin.set_app_dir(dir == "" and "/" or dir)  -- relative paths in the app start here
  if rawget(_G, "owin") == nil then _G.owin = owin end
  local done, ok, result
  loop:spawn(chunk, nil, function(_, fine, lerr, traceback, results)
    done, ok = true, fine
    if fine then result = results[1] else result = traceback or lerr end
  end)
  loop:run(function() return done end)
  if not done then
    error("owin.test: " .. path .. " waits for something that cannot happen while it loads", 0)
  end
  if not ok then error("owin.test: error while loading " .. path .. ": " .. tostring(result), 0) end
  if type(result) == "function" then return result end
  if owin.is_builder(result) then return result.build() end
  local mt = getmetatable(result)
  if type(mt) == "table" and type(mt.__call) == "function" then   -- an owin.router
    return function(env) return result(env) end
  end
  if result ~= nil then
    error(string.format("owin.test: %s returned a %s: expected nothing, an AppFunc or a builder",
      path, type(result)), 0)
  end
  if builder.empty() then
    error("owin.test: " .. path .. " defines no app: call app.use/app.run, or return an AppFunc", 0)
  end
  return builder.build()
end

local function resolve(app, loop)
  if type(app) == "string" then return load_script(app, loop) end
  if owin.is_builder(app) then return app.build() end
  if type(app) == "function" then return app end
  local mt = getmetatable(app)
  if type(mt) == "table" and mt.__call then return function(env) return app(env) end end
  error("bad argument #1 to 'client' (a builder, an AppFunc or the path of an app script " ..
        "expected, got " .. type(app) .. ")", 3)
end
-- }======

-- {====== requests in flight

local Pending = {}
Pending.__index = Pending

-- pending:wait([timeout]) -> response: runs the app until it answers (or
-- upgrades).  After `timeout` virtual seconds without an answer the client
-- gives up: CallCancelled fires and the app gets as long again to end;
-- then its coroutine is closed.  res.timed_out is true then.
function Pending:wait(timeout)
  local R, client = self.R, self.client
  local loop = client.loop
  timeout = timeout or self.timeout
  if not R.done and not R.upgraded then
    local ok, why = loop:run(function() return R.done or R.upgraded end, loop.now + timeout)
    if not ok then
      self.timed_out = why
      request.cancel(R)
      if not loop:run(function() return R.done end, loop.now + timeout) then
        request.abandon(R)
      end
    end
  end
  local res = request.response(R)
  if self.timed_out then
    res.timed_out = true
    if self.timed_out == "idle" then
      res.error = res.error or "owin.test: the app waits for something that never comes"
    else
      res.error = res.error or string.format("owin.test: no response within %g virtual seconds",
        timeout)
    end
  end
  if R.socket then res.socket = R.socket.conv end
  return res
end

-- pending:cancel(): the client goes away (CallCancelled fires).
function Pending:cancel()
  self.client.loop:call(request.cancel, self.R)
  self.client:settle()
end

function Pending:done()
  return self.R.done == true
end
-- }======

-- {====== the client

local Client = {}
Client.__index = Client

local DEFAULTS = {
  timeout = 60,                   -- virtual seconds a request may take
  max_body = 32 * 1024 * 1024,    -- --max-body (0: no limit)
  dev = false,                    -- --dev: tracebacks in 500 bodies
  host = "localhost",             -- the Host header when a request has none
  port = 8080,                    -- server.LocalPort
  local_ip = "127.0.0.1",
  remote_ip = "127.0.0.1",
  server_header = "owinlua",      -- --server-header ("" leaves it out)
  ws_max_message = 16 * 1024 * 1024,
  ws_close_timeout = 5,
  graceful_timeout = 30,
  log_errors = false,             -- app errors to stderr, as the server logs them
  max_pending_timers = 1024,      -- --max-pending-timers
  hosts = false,                  -- names to resolve: { name = "ip" | { "ip", ... } }
  peers = false,                  -- { ["ip:port"] = handler | { handler, delay = s } }
  tls = false,                    -- an https:// listener: true, or { client_cert =,
                                  -- client_cert_errors = } (a request's spec.tls wins)
}

-- client(app [, opts]) -> client.  app: a builder, an AppFunc or the path
-- of an app script.  opts.hosts and opts.peers are in place before an app
-- script loads (it may connect at start-up).
function M.client(app, opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if DEFAULTS[k] == nil then error("owin.test: unknown client option '" .. tostring(k) .. "'", 2) end
    o[k] = v
  end
  local loop = loop_m.new()
  local client = setmetatable({ opts = o, loop = loop, next_id = 0,
                                inflight = {}, sockets = setmetatable({}, { __mode = "k" }),
                                disposing = token.new(),
                                threads = {}, timers = {}, errors = {},
                                peers = {}, pools = {}, names = { localhost = { "127.0.0.1" } },
                                next_port = 0 }, Client)
  loop.client = client
  if o.hosts then client:hosts(o.hosts) end
  for address, h in pairs(o.peers or {}) do
    if type(h) == "table" then
      client:peer(address, h[1], { delay = h.delay })
    else
      client:peer(address, h)
    end
  end
  client.app = resolve(app, loop)
  return client
end

-- client:peer(address, handler [, opts]) -> peer: a connect of the app to
-- address ("IP:port", "[IPv6]:port" or "unix:/path") runs handler(sock)
-- as a task, with the other end of the connection: a socket with the API
-- of owin.tcp() (no timeouts unless it sets them); the connection closes
-- when handler returns.  opts.delay: virtual seconds a connect takes
-- (math.huge: it never completes).  The peer has `accepted` (connections
-- so far), open() (how many are open now) and close() (refuse further
-- connects, close the open ones).
function Client:peer(address, handler, opts)
  return cosocket.peer(self, address, handler, opts)
end

-- client:hosts{ name = "ip" | { "ip", ... } | false }: what owin.resolve
-- (and connect) answer for names; "localhost" is 127.0.0.1 unless changed.
-- Other names get the server's "host not found: NAME (...)".
function Client:hosts(map)
  cosocket.set_hosts(self, map)
  return self
end

-- Runs what is ready now, without moving the clock.
function Client:settle()
  self.loop:run(nil, self.loop.now)
end

-- client:start(spec) -> pending request: the app runs until it first waits;
-- pending:wait() finishes it.  spec: method, path (with the query), headers
-- (name -> string | array, or an array of { name, value }), body (a string,
-- an array of strings, or a function yielding or returning chunks; a number
-- in their place waits that many virtual seconds), protocol ("HTTP/1.1" or
-- "HTTP/1.0"), timeout, cancel_after (seconds after which the client goes
-- away).
function Client:start(spec)
  if type(spec) ~= "table" then
    error("bad argument #1 to 'start' (table expected, got " .. type(spec) .. ")", 2)
  end
  local R = request.new(self, spec)
  local p = setmetatable({ R = R, client = self, timeout = spec.timeout or self.opts.timeout },
    Pending)
  if not R.done then
    request.start(R, self.app)
    if spec.cancel_after then
      self.loop:after(spec.cancel_after, function() request.cancel(R) end)
    end
    self:settle()
  end
  return p
end

-- client:request(spec) -> response (see client:start for spec)
function Client:request(spec)
  if type(spec) ~= "table" then
    error("bad argument #1 to 'request' (table expected, got " .. type(spec) .. ")", 2)
  end
  return self:start(spec):wait()
end

local function with(method, path, opts)
  local spec = {}
  for k, v in pairs(opts or {}) do spec[k] = v end
  spec.method, spec.path = method, path
  return spec
end

for _, m in ipairs({ "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS" }) do
  -- client:get(path [, opts]) -> response; opts as for client:start
  Client[m:lower()] = function(self, path, opts)
    return self:request(with(m, path, opts))
  end
end

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

local function add_headers(list, extra)
  for k, v in pairs(extra or {}) do
    if type(k) == "string" then
      list[#list + 1] = { k, type(v) == "table" and table.concat(v, ", ") or v }
    end
  end
  for _, pair in ipairs(extra or {}) do list[#list + 1] = pair end
  return list
end

-- client:websocket(path [, opts]) -> conversation, response (101), or
-- nil, response when the app did not accept.  opts: protocols (a string or
-- an array), headers, key, version, timeout.
function Client:websocket(path, opts)
  opts = opts or {}
  local hs = { { "Upgrade", "websocket" }, { "Connection", "Upgrade" },
               { "Sec-WebSocket-Key", opts.key or KEY },
               { "Sec-WebSocket-Version", opts.version or "13" } }
  local protocols = opts.protocols
  if type(protocols) == "table" then protocols = table.concat(protocols, ", ") end
  if protocols then hs[#hs + 1] = { "Sec-WebSocket-Protocol", protocols } end
  add_headers(hs, opts.headers)
  local res = self:request({ method = "GET", path = path, headers = hs, timeout = opts.timeout })
  if res.status ~= 101 or not res.socket then return nil, res end
  local conv = res.socket
  conv.response, conv.status, conv.headers = res, res.status, res.headers
  conv.protocol = res.headers["sec-websocket-protocol"]
  return conv, res
end

-- client:upgrade(path, protocol [, opts]) -> stream, response: an
-- opaque.Upgrade; the stream has send(bytes), receive() and close().
function Client:upgrade(path, protocol, opts)
  opts = opts or {}
  local hs = add_headers({ { "Upgrade", protocol }, { "Connection", "Upgrade" } }, opts.headers)
  local res = self:request({ method = opts.method or "GET", path = path, headers = hs,
                             timeout = opts.timeout })
  if res.status ~= 101 or not res.socket then return nil, res end
  res.socket.response = res
  return res.socket, res
end

-- client:cancel(): every request in flight loses its client (CallCancelled
-- fires; writes return EPIPE, reads ECONNRESET; the waits of its threads
-- return "cancelled").
function Client:cancel()
  self.loop:call(function()
    for R in pairs(self.inflight) do request.cancel(R) end
  end)
  self:settle()
end

-- client:advance(seconds): lets the virtual clock run that long (timers,
-- sleeping requests and sockets go on).
function Client:advance(seconds)
  local target = self.loop.now + seconds
  self.loop:run(nil, target)
  if self.loop.now < target then self.loop.now = target end
end

-- client:now() -> the virtual clock
function Client:now()
  return self.loop.now
end

-- client:shutdown([timeout]): what SIGTERM does to the server:
-- host.OnAppDisposing fires, pending timers run once with premature =
-- true (every timers too), WebSockets get close 1001, requests in flight
-- and threads get `timeout` (default graceful_timeout) virtual seconds,
-- then threads are cancelled and requests get CallCancelled.  New timers
-- are refused from the start ("the server is stopping").
function Client:shutdown(timeout)
  local loop = self.loop
  loop:call(function()
    self.stopping = true
    token.fire(self.disposing)
    runtime.stopping(self)
    for s in pairs(self.sockets) do ws.shutdown(s) end
  end)
  local function quiet()
    for R in pairs(self.inflight) do
      if not R.upgraded then return false end
    end
    return #self.threads == 0
  end
  loop:run(quiet, loop.now + (timeout or self.opts.graceful_timeout))
  loop:call(function()
    runtime.cut(self)
    for R in pairs(self.inflight) do request.cancel(R) end
  end)
  self:settle()
end
-- }======

M.REASONS = status.REASONS
return M
