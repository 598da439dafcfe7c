-- Hello World through a logging middleware, as apps/hello.lua, written
-- against the context adapter (owin.context) instead of the raw env.
-- Run with: owinlua apps/context.lua
local context = require("owin.context")

app.use(context.middleware(function(ctx, next)
  local t0 = owin.now()
  next()
  local req = ctx.request
  owin.log.info("%s %s %d %.1fms", req.method, req.path, ctx.response.status,
                (owin.now() - t0) * 1000)
end))

app.run(context.app(function(ctx)
  local res = ctx.response
  res:header("Content-Type", "text/plain")
  res:write("Hello World")
end))
