-- The Redis GET for nginx in bench/run, on lua-resty-redis 0.27 (Debian's
-- lua-nginx-redis, module nginx.redis): one GET through the connection pool
-- per request, set_keepalive(60000, 100).  REDIS_PORT (passed by the env
-- directive of bench/nginx.conf) is the port of the redis-server bench/run
-- started on 127.0.0.1; REDIS_KEY (default "bench") the key it set.
--
--   get()   location /: the key's value as the body (502 if Redis fails)
--   hold()  location = /hold?n=N: opens N connections at once
--           (ngx.thread.spawn), does one GET on each and puts each back in
--           the pool "hold" with setkeepalive(600000, N); answers how many
--           were pooled.  Raw cosockets, as bench/redis.lua's /hold.
local redis = require("nginx.redis")

local port = assert(tonumber(os.getenv("REDIS_PORT")), "REDIS_PORT is not set")
local key = os.getenv("REDIS_KEY") or "bench"
local GET = "*2\r\n$3\r\nGET\r\n$" .. #key .. "\r\n" .. key .. "\r\n"

local ngx, tonumber, sub = ngx, tonumber, string.sub

local M = {}

function M.get()
  local red = redis:new()
  local ok, err = red:connect("127.0.0.1", port)
  if not ok then
    ngx.status = 502
    ngx.say("redis: ", err)
    return
  end
  local v
  v, err = red:get(key)
  if not v or v == ngx.null then
    red:close()
    ngx.status = 502
    ngx.say("redis: ", err or "no value")
    return
  end
  red:set_keepalive(60000, 100)
  ngx.print(v)
end

local function hold_one(n)
  local sock = ngx.socket.tcp()
  local ok, err = sock:connect("127.0.0.1", port, { pool = "hold" })
  if not ok then return nil, err end
  local line, data
  ok, err = sock:send(GET)
  if ok then line, err = sock:receive("*l") end
  local len = line and sub(line, 1, 1) == "$" and tonumber(sub(line, 2))
  if not len or len < 0 then return nil, err or "redis: " .. tostring(line) end
  data, err = sock:receive(len + 2)
  if not data then return nil, err end
  return sock:setkeepalive(600000, n)
end

function M.hold()
  local n = tonumber(ngx.var.arg_n) or 1000
  local threads = {}
  for i = 1, n do threads[i] = ngx.thread.spawn(hold_one, n) end
  local held, err = 0, nil
  for i = 1, n do
    local ok, r, e = ngx.thread.wait(threads[i])
    if ok and r then held = held + 1 else err = err or (ok and e or r) end
  end
  threads = nil                 -- unreachable now, for the collection below
  collectgarbage()              -- the threads and socket objects are garbage
  ngx.say(held, err and " " .. tostring(err) or "")
end

return M
