-- Server-sent events: a clock that sends the time every second.
-- Run with: owinlua apps/sse.lua
--   curl -N http://127.0.0.1:8080/          (until you stop it)
--   curl -N 'http://127.0.0.1:8080/?n=3'    (three events, then the end)
-- In a browser: new EventSource("/").addEventListener("tick", e => ...)

app.run(function(env)
  local limit = tonumber(env["owin.RequestQueryString"]:match("n=(%d+)"))  -- nil: no limit
  local headers = env["owin.ResponseHeaders"]
  headers["Content-Type"] = "text/event-stream"
  headers["Cache-Control"] = "no-cache"
  local out = env["owin.ResponseBody"]
  -- Fires when the client goes away or the server shuts down.
  local cancelled = env["owin.CallCancelled"]
  local sent = 0
  while not cancelled.cancelled do
    sent = sent + 1
    out:write(string.format("id: %d\nevent: tick\ndata: %s\n\n", sent, os.date("!%Y-%m-%dT%H:%M:%SZ")))
    -- flush sends the event now (the response goes out chunked); it
    -- returns nil, err once the client has gone.
    if not out:flush() then break end
    if limit and sent >= limit then break end
    owin.sleep(1)
  end
end)
