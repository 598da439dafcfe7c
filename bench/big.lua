-- The 1 MiB response AppFunc for bench/run: one body of 1 MiB ('x'), a
-- string made once when the app loads, written with its length set.
local body = string.rep("x", 1024 * 1024)
local length = { tostring(#body) }

return function(env)
  local headers = env["owin.ResponseHeaders"]
  headers["Content-Type"] = { "text/plain" }
  headers["Content-Length"] = length
  env["owin.ResponseBody"]:write(body)
end
