-- The Redis AppFunc for bench/run's server "luaredis" (owinlua+lua-redis):
-- the GET of bench/redis.lua written with Debian's lua-redis 2.0.5
-- (require("redis")), made non-blocking by owin.socket.install().  Its
-- connect goes through owin.tcp()'s connect, so it takes a pooled
-- connection when there is one; the socket goes back with setkeepalive.
-- REDIS_PORT is the port of the redis-server bench/run started on
-- 127.0.0.1; REDIS_KEY (default "bench") the key it set.
--
-- It sits in a directory of its own because owinlua puts the app's
-- directory first on package.path: from bench/, require("redis") would load
-- bench/redis.lua (the raw cosocket app) instead of lua-redis.
require("owin.socket").install()
local redis = require("redis")

local params = {
  host = "127.0.0.1",
  port = assert(tonumber(os.getenv("REDIS_PORT")), "REDIS_PORT is not set"),
}
local key = os.getenv("REDIS_KEY") or "bench"

-- lua-redis raises on errors (the request then fails with a 500, and the
-- server closes the request's sockets).
return function(env)
  local client = redis.connect(params)
  local v = client:get(key)
  client.network.socket:setkeepalive(60, 100)
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write(v)
end
