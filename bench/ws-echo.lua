-- The WebSocket echo AppFunc for bench/run (as apps/echo.lua, bare: no
-- middleware, no logging): every message comes back as it was sent; plain
-- HTTP gets "Hello World".  Run with --no-ws-compression.
local websocket = require("owin.websocket")

return function(env)
  if websocket.is_request(env) then
    local ws = websocket.accept(env)
    for msg, kind in ws:messages() do
      ws:send(msg, kind)
    end
    return                          -- the server completes the close handshake
  end
  env["owin.ResponseHeaders"]["Content-Type"] = { "text/plain" }
  env["owin.ResponseBody"]:write("Hello World")
end
