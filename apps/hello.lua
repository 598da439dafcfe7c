-- Hello World via OWIN: a middleware that logs each request around the
-- terminal app.  Run with: owinlua apps/hello.lua
app.use(function(env, next)
  local t0 = owin.now()
  next()
  owin.log.info("%s %s %d %.1fms", env["owin.RequestMethod"], env["owin.RequestPath"],
                env["owin.ResponseStatusCode"], (owin.now() - t0) * 1000)
end)

app.run(function(env)
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write("Hello World")
end)
