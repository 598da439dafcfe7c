-- What the specs of owinlua's outbound I/O (cosockets, threads, timers, the
-- luasocket stand-in) share: a "world" of a private redis, a scripted peer
-- and the server under test, and calls to fixture routes that answer
-- "key=value" lines (spec/fixtures/outside/outside_util.lua).
--
--   local outside = require("helpers.outside")
--   local w = outside.world("spec/fixtures/outside/cosocket.lua", { args = {...} })
--   local r = outside.call(w.srv, "/receive")      -- { key = "value", ... }
--   outside.expect(r, { l1 = "line1", after = outside.like("^nil|closed") })
--   w:stop()                                       -- -> ok, how, code of owinlua
local server = require("helpers.server")
local http = require("helpers.http")
local redis = require("helpers.redis")
local peer = require("helpers.peer")
local ports = require("helpers.ports")
local socket = require("socket")

local M = {}

M.eventually = server.eventually

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function M.lines(path)
  local out = {}
  for line in M.read_file(path):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- Runs every function, even when one raises; raises the first error after.
function M.all(...)
  local first
  for _, f in ipairs({ ... }) do
    local ok, err = pcall(f)
    if not ok and first == nil then first = err end
  end
  if first ~= nil then error(first, 0) end
end

-- The end of the server's log, for failure messages.
function M.tail(srv, n)
  local log = srv:stderr()
  n = n or 6000
  if #log <= n then return log end
  return "...\n" .. log:sub(-n)
end

local World = {}
World.__index = World

-- world(app, opts): starts redis (unless opts.redis == false), a peer
-- (unless opts.peer == false), then owinlua with the fixture app and the
-- environment the fixtures read. opts.args: extra owinlua arguments;
-- opts.env: more variables. Everything started is stopped if a later step
-- fails.
function M.world(app, opts)
  opts = opts or {}
  local w = setmetatable({ dir = ports.tmpdir() }, World)
  local ok, err = pcall(function()
    w.closed = ports.free()
    w.env = { CLOSED_PORT = tostring(w.closed), LUA_REDIS_DIR = redis.lua_redis_path() or "" }
    if opts.redis ~= false then
      w.redis = redis.start()
      w.env.REDIS_PORT = tostring(w.redis.port)
      w.env.REDIS_UNIX = w.redis.unix
    end
    if opts.peer ~= false then
      w.peer = peer.start()
      w.env.PEER_PORT = tostring(w.peer.port)
      w.env.HOLE_PORT = tostring(w.peer.hole)
    end
    for k, v in pairs(opts.env or {}) do w.env[k] = v end
    if app then w.srv = server.start(app, opts.args, { env = w.env }) end
  end)
  if not ok then
    pcall(w.stop, w)
    error(err, 2)
  end
  return w
end

-- A file name in the world's temp dir (for results a fixture writes).
function World:path(name)
  return self.dir .. "/" .. name
end

-- Stops the server (SIGTERM), the peer and redis, removes the temp dir.
-- Returns owinlua's exit: ok, how, code. Raises (after stopping everything)
-- if the server's stop raised, e.g. with a sanitizer report.
function World:stop()
  if self.stopped then return table.unpack(self.status or {}) end
  self.stopped = true
  local status
  M.all(function()
    if self.srv then status = { self.srv:stop() } end
  end, function()
    if self.peer then self.peer:stop() end
  end, function()
    if self.redis then self.redis:stop() end
  end, function()
    ports.rmdir(self.dir)
  end)
  self.status = status
  return table.unpack(status or {})
end

-- Sends a GET without waiting for the answer: the open connection.
function M.send(srv, path, timeout)
  local c = assert(http.connect(srv.port, nil, timeout or 15))
  assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
  return c
end

local function parse(body)
  local t = {}
  for line in body:gmatch("[^\n]+") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

-- Reads the answer of a connection from send(): the parsed lines; asserts a
-- 200 (with the body and the server's log in the message otherwise).
function M.answer(srv, c, path)
  local res, err = c:read_response()
  c:close()
  assert(res, "no answer to " .. (path or "?") .. ": " .. tostring(err) .. "\n--- server log:\n"
    .. M.tail(srv))
  assert(res.status == 200, (path or "?") .. " answered " .. res.status .. ":\n" .. res.body
    .. "\n--- server log:\n" .. M.tail(srv))
  local t = parse(res.body)
  t._body = res.body
  return t
end

-- GET path -> the parsed lines of a 200 answer.
function M.call(srv, path, timeout)
  return M.answer(srv, M.send(srv, path, timeout), path)
end

-- Matchers for expect(): a Lua pattern, or a plain substring.
function M.like(pattern) return { like = pattern } end
function M.has(text) return { has = text } end

-- Checks each key of `want` against the result table `got`; reports every
-- mismatch at once, with the whole answer.
function M.expect(got, want, context)
  local bad = {}
  local keys = {}
  for k in pairs(want) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local w, v = want[k], got[k]
    local ok
    if type(w) == "table" and w.like then
      ok = v ~= nil and v:find(w.like) ~= nil
      w = "like " .. w.like
    elseif type(w) == "table" and w.has then
      ok = v ~= nil and v:find(w.has, 1, true) ~= nil
      w = "containing " .. w.has
    elseif type(w) == "function" then
      ok = v ~= nil and w(v)
      w = "(predicate)"
    else
      ok = v == w
    end
    if not ok then bad[#bad + 1] = string.format("  %s: want %s, got %s", k, tostring(w), tostring(v)) end
  end
  if #bad > 0 then
    error("unexpected results" .. (context and (" (" .. context .. ")") or "") .. ":\n"
      .. table.concat(bad, "\n") .. "\n--- answer:\n" .. tostring(got._body), 2)
  end
end

-- The redis clients blocked in a command (CLIENT LIST cmd=...).
function M.redis_waiting(r, cmd)
  for _, c in ipairs(r:clients()) do
    if c.cmd == cmd then return true end
  end
  return false
end

M.sleep = socket.sleep
M.gettime = socket.gettime

return M
