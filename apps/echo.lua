-- The WebSocket echo from the OWIN docs: every message comes back as it
-- was sent (text as text, binary as binary); plain HTTP gets "Hello World".
-- Run with: owinlua apps/echo.lua, then open http://127.0.0.1:8080/echo.html
-- (apps/echo.html, served below) or point any WebSocket client at ws://.../
local websocket = require("owin.websocket")

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

app.run(function(env)
  if websocket.is_request(env) then
    local ws = websocket.accept(env)
    for msg, kind in ws:messages() do
      ws:send(msg, kind)
    end
    return                          -- the server completes the close handshake
  end
  local headers = env["owin.ResponseHeaders"]
  if env["owin.RequestPath"] == "/echo.html" then
    local f = assert(io.open(here .. "echo.html", "rb"))
    headers["Content-Type"] = "text/html; charset=utf-8"
    env["owin.ResponseBody"]:write(f:read("a"))
    f:close()
    return
  end
  headers["Content-Type"] = "text/plain"
  env["owin.ResponseBody"]:write("Hello World")
end)
