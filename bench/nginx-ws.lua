-- The WebSocket echo for nginx in bench/run, on lua-resty-websocket (Debian's
-- lua-nginx-websocket, module nginx.websocket.server): every data frame
-- comes back with its type, a ping gets a pong, a close is answered.  Plain
-- HTTP gets "Hello World".
local server = require("nginx.websocket.server")

if not ngx.var.http_upgrade then
  ngx.say("Hello World")
  return
end
local ws, err = server:new({ max_payload_len = 16 * 1024 * 1024, timeout = 600000 })
if not ws then
  ngx.log(ngx.ERR, "websocket: ", err)
  return ngx.exit(400)
end
while true do
  local data, kind, e = ws:recv_frame()
  if not data then
    if not (e and e:find("timeout", 1, true)) then break end
  elseif kind == "binary" then
    ws:send_binary(data)
  elseif kind == "text" then
    ws:send_text(data)
  elseif kind == "ping" then
    ws:send_pong(data)
  elseif kind == "close" then
    ws:send_close()
    break
  end
end
return ngx.exit(ngx.OK)
