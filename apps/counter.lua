-- A visit counter on Redis: every request INCRs a key and says the count.
-- Run with:
--   redis-server --port 6379 &                     (any Redis)
--   REDIS=127.0.0.1:6379 owinlua apps/counter.lua
--   curl http://127.0.0.1:8080/                    -> "visit 1", "visit 2", ...
--
-- REDIS is host:port or unix:/path (default 127.0.0.1:6379).  Debian's
-- lua-redis runs on owinlua's cosockets through owin.socket, so waiting for
-- Redis never stops the worker.  Each request takes a connection from the
-- worker's pool and puts it back (setkeepalive); the script checks at
-- start-up that Redis answers, so a wrong address stops the server at once
-- with a clear error instead of failing every request.
require("owin.socket").install()
local redis = require("redis")

local addr = os.getenv("REDIS") or "127.0.0.1:6379"
local host, port = addr:match("^(.+):(%d+)$")
if addr:sub(1, 5) == "unix:" then host, port = addr, nil end
assert(host, "REDIS must be host:port or unix:/path, got " .. addr)

-- A client over a pooled cosocket.
local function client()
  local sock = owin.tcp()
  sock:settimeouts(1, 1, 1)
  local ok, err = sock:connect(host, port and tonumber(port))
  if not ok then return nil, sock, err end
  return redis.connect({ socket = sock }), sock
end

-- at start-up, before the first request: is Redis there?
do
  local r, sock, err = client()
  assert(r, "cannot reach Redis at " .. addr .. ": " .. tostring(err))
  assert(r:ping(), "Redis at " .. addr .. " does not answer PING")
  sock:setkeepalive(60, 32)
end

app.run(function(env)
  local r, sock, err = client()
  local out = env["owin.ResponseBody"]
  env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
  if not r then
    env["owin.ResponseStatusCode"] = 503
    return out:write("Redis is not reachable: ", err, "\n")
  end
  local ok, n = pcall(r.incr, r, "owinlua:visits")
  if not ok then
    sock:close()
    env["owin.ResponseStatusCode"] = 503
    return out:write("Redis failed: ", tostring(n), "\n")
  end
  sock:setkeepalive(60, 32)
  out:write("visit ", n, "\n")
end)
