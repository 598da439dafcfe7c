-- Fan-in: one request asks three upstream services at once and answers when
-- all three are back, or after a deadline with what it has.
-- Run with:
--   owinlua --listen 127.0.0.1:9001 apps/hello.lua &     (three upstreams,
--   owinlua --listen 127.0.0.1:9002 apps/hello.lua &      any HTTP servers)
--   owinlua --listen 127.0.0.1:9003 apps/hello.lua &
--   UPSTREAMS=http://127.0.0.1:9001/,http://127.0.0.1:9002/,http://127.0.0.1:9003/ \
--     owinlua apps/fanin.lua
--   curl http://127.0.0.1:8080/            -> one line per upstream
--   curl 'http://127.0.0.1:8080/?deadline=0.05'
--
-- Each call runs in its own thread (owin.spawn), so the three waits overlap
-- and the request takes as long as the slowest, not the sum.  owin.wait
-- returns whichever thread ends first; a timer thread ends at the deadline.
-- Threads still running when the request returns are cancelled with it.
local http = require("owin.http")

local UPSTREAMS = {}
for url in (os.getenv("UPSTREAMS") or
            "http://127.0.0.1:9001/,http://127.0.0.1:9002/,http://127.0.0.1:9003/"):gmatch("[^,]+") do
  UPSTREAMS[#UPSTREAMS + 1] = url
end

local function fetch(url)
  local res, err = http.request({ url = url, timeout = 5 })
  if not res then return "error: " .. err end
  return res.status .. " " .. (#res.body) .. " bytes"
end

app.run(function(env)
  local deadline = tonumber((env["owin.RequestQueryString"] or ""):match("deadline=([%d.]+)")) or 1
  local pending, answers = {}, {}
  for i, url in ipairs(UPSTREAMS) do
    local t = owin.spawn(fetch, url)
    pending[#pending + 1] = t
    answers[t] = { i = i, url = url }
  end
  local timer = owin.spawn(owin.sleep, deadline)
  local got = 0
  while got < #UPSTREAMS do
    local t, ok, text = owin.wait(timer, table.unpack(pending))
    if t == timer then break end
    answers[t].text = ok and text or ("error: " .. tostring(text))
    got = got + 1
    for k = 1, #pending do                   -- wait for the others only
      if pending[k] == t then table.remove(pending, k) break end
    end
  end
  local lines = {}
  for _, a in pairs(answers) do
    lines[a.i] = a.url .. " -> " .. (a.text or "no answer before the deadline")
  end
  env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
  env["owin.ResponseBody"]:write(table.concat(lines, "\n"), "\n",
    got, " of ", #UPSTREAMS, " answered\n")
end)
