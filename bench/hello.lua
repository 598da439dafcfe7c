-- The bare hello AppFunc for bench/run: no middleware, no logging.
return function(env)
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write("Hello World")
end
