-- A static site: the files in apps/public/ through owin.static, and a small
-- app for every path that is not a file there.
--   owinlua apps/static.lua
--   curl -i http://127.0.0.1:8080/            (public/index.html)
--   curl -i http://127.0.0.1:8080/hello.txt -H 'Range: bytes=0-4'
--   curl -i http://127.0.0.1:8080/api/time    (the fallback app)
local static = require("owin.static")

-- one log line per request, static or not
app.use(function(env, next)
  next()
  owin.log.info("%s %s %d", env["owin.RequestMethod"], env["owin.RequestPath"],
                env["owin.ResponseStatusCode"])
end)

-- files: revalidated after a minute (ETag / Last-Modified make that a 304).
-- "public" is relative to this script, wherever the server is started from.
app.use(static("public", { cache_control = "public, max-age=60" }))

-- everything else
app.run(function(env)
  local h = env["owin.ResponseHeaders"]
  if env["owin.RequestPath"] == "/api/time" then
    h["Content-Type"] = "application/json"
    env["owin.ResponseBody"]:write(string.format('{"time":%d}', os.time()))
    return
  end
  env["owin.ResponseStatusCode"] = 404
  h["Content-Type"] = "text/plain; charset=utf-8"
  env["owin.ResponseBody"]:write("not found: ", env["owin.RequestPath"], "\n")
end)
