-- Response timing: a middleware times the rest of the pipeline and reports it
-- to the client in a Server-Timing header (browsers show it in their
-- developer tools) and to the log.  Run with: owinlua apps/timing.lua
--
--   curl -i 'http://127.0.0.1:8080/?work=0.2'
--   Server-Timing: app;dur=200.4

-- The middleware.  Headers can change only until the first byte of the body
-- goes out, so the header is set from server.OnSendingHeaders, which the
-- server calls just before it sends them: after the app has returned, or at
-- its first flush if it streams (the duration is then the time to first byte).
app.use(function(env, next)
  local t0 = owin.now()
  env["server.OnSendingHeaders"](function()
    local ms = (owin.now() - t0) * 1000
    env["owin.ResponseHeaders"]["Server-Timing"] = string.format("app;dur=%.1f", ms)
  end)
  next()
  owin.log.info("%s %s -> %d in %.1fms", env["owin.RequestMethod"], env["owin.RequestPath"],
                env["owin.ResponseStatusCode"], (owin.now() - t0) * 1000)
end)

-- The terminal app: pretends to work for ?work=SECONDS (at most 5), then
-- says how long.  owin.sleep yields, so other requests run meanwhile.
app.run(function(env)
  local work = tonumber(env["owin.RequestQueryString"]:match("work=([%d.]+)")) or 0
  owin.sleep(math.min(work, 5))
  env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
  env["owin.ResponseBody"]:write(string.format("worked for %.3f s\n", work))
end)
