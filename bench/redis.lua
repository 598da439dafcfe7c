-- The Redis AppFunc for bench/run: one GET through a pooled cosocket per
-- request, written with owin.tcp as an app would (no client library).
-- REDIS_PORT is the port of the redis-server bench/run started on
-- 127.0.0.1; REDIS_KEY (default "bench") the key it set.
--
--   GET /          the key's value as the body (502 if Redis fails)
--   GET /hold?n=N  opens N connections at once (owin.spawn), does one GET on
--                  each and puts each back in the pool "hold" with
--                  setkeepalive(600, N); answers how many were pooled. For
--                  the memory per pooled connection.
local port = assert(tonumber(os.getenv("REDIS_PORT")), "REDIS_PORT is not set")
local key = os.getenv("REDIS_KEY") or "bench"
local GET = "*2\r\n$3\r\nGET\r\n$" .. #key .. "\r\n" .. key .. "\r\n"

local tcp, spawn, tonumber = owin.tcp, owin.spawn, tonumber
local sub = string.sub

-- get(sock) -> the value (nil if the key is missing), or nil, err
local function get(sock)
  local ok, err = sock:send(GET)
  if not ok then return nil, err end
  local line
  line, err = sock:receive("*l")                -- "$<n>", or "-ERR ..."
  if not line then return nil, err end
  local n = sub(line, 1, 1) == "$" and tonumber(sub(line, 2))
  if not n then return nil, "redis: " .. line end
  if n < 0 then return nil end
  local data
  data, err = sock:receive(n + 2)               -- the value and its CRLF
  if not data then return nil, err end
  return sub(data, 1, n)
end

local function fail(env, err)
  env["owin.ResponseStatusCode"] = 502
  env["owin.ResponseBody"]:write("redis: ", tostring(err), "\n")
end

local function hold_one(n)
  local sock = tcp()
  local ok, err = sock:connect("127.0.0.1", port, { pool = "hold" })
  if not ok then return nil, err end
  local v
  v, err = get(sock)
  if v == nil then return nil, err or "no value" end
  return sock:setkeepalive(600, n)
end

local function hold(env)
  local n = tonumber(env["owin.RequestQueryString"]:match("n=(%d+)")) or 1000
  local threads = {}
  for i = 1, n do threads[i] = spawn(hold_one, n) end
  local held, err = 0, nil
  for i = 1, n do
    local ok, r, e = threads[i]:wait()
    if ok and r then held = held + 1 else err = err or (ok and e or r) end
  end
  threads = nil                 -- unreachable now, for the collection below
  collectgarbage()              -- the threads and socket objects are garbage
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write(held, err and " " .. tostring(err) or "", "\n")
end

return function(env)
  if env["owin.RequestPath"] == "/hold" then return hold(env) end
  local sock = tcp()
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then return fail(env, err) end
  local v
  v, err = get(sock)
  if v == nil then
    sock:close()
    return fail(env, err or "no value")
  end
  sock:setkeepalive(60, 100)
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write(v)
end
