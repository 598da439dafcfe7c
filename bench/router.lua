-- An owin.router app with ROUTES routes (default 10), for bench/router.sh.
-- IDLE_ROUTES (default 0) adds a second router that is never used (below).
-- The routes come in groups of ten under /r<g>/, each group with the same
-- ten shapes (static, constrained and plain parameters, two parameters, a
-- wildcard, several methods); route k is shape (k - 1) % 10 + 1 of group
-- ceil(k / 10).  Every route answers "Hello World", as bench/hello.lua does.
-- bench/router_wrk.lua requests the last group, which a router that tried
-- the patterns one by one would reach last.
local router = require("owin.router")

local n = math.tointeger(tonumber(os.getenv("ROUTES") or "10"))
if not n or n < 1 then error("ROUTES must be a positive integer, got " .. tostring(os.getenv("ROUTES"))) end

local function hello(env)
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write("Hello World")
end

local SHAPES = {
  { "get", "/r%d" },
  { "get", "/r%d/items" },
  { "post", "/r%d/items" },
  { "get", "/r%d/items/:id{%%d+}" },
  { "put", "/r%d/items/:id{%%d+}" },
  { "delete", "/r%d/items/:id" },
  { "get", "/r%d/items/:id/notes" },
  { "get", "/r%d/users/:user/posts/:post" },
  { "get", "/r%d/files/*path" },
  { "get", "/r%d/about" },
}

local function build(count)
  local r = router.new()
  for k = 1, count do
    local shape = SHAPES[(k - 1) % 10 + 1]
    r[shape[1]](r, string.format(shape[2], (k - 1) // 10 + 1), hello)
  end
  return r
end

-- IDLE_ROUTES: that many more routes in a second router that no request
-- reaches, kept alive: the memory of a bigger router without its routes.
local idle = math.tointeger(tonumber(os.getenv("IDLE_ROUTES") or "0"))
if not idle or idle < 0 then
  error("IDLE_ROUTES must be a non-negative integer, got " .. tostring(os.getenv("IDLE_ROUTES")))
end
if idle > 0 then
  BENCH_IDLE_ROUTER = build(idle)   -- a global, so that it stays alive
end

return build(n)
