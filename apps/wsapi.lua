-- A WSAPI application, written the way WSAPI applications are (wsapi.request
-- parses the query, the form and the cookies; wsapi.response buffers the
-- answer and sets cookies), served by owinlua through owin.wsapi.
-- Needs Debian's lua-wsapi.  Run with: owinlua apps/wsapi.lua
--
--   curl -i http://127.0.0.1:8080/                       the form; counts visits in a cookie
--   curl -d name=Ada http://127.0.0.1:8080/greet          a form post
--   curl -N 'http://127.0.0.1:8080/count?to=5'            a body from a coroutine iterator
--   curl -i http://127.0.0.1:8080/legacy/env              mounted under a prefix: SCRIPT_NAME

local wsapi = require("owin.wsapi")    -- first: it lets Lua 5.4 find Debian's WSAPI modules
local request = require("wsapi.request")
local response = require("wsapi.response")

local function html(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- The WSAPI application: function(wsapi_env) -> status, headers, iterator.
local function run(wsapi_env)
  local req = request.new(wsapi_env)
  local path = req.path_info

  if path == "/" then
    local visits = (tonumber(req.cookies.visits) or 0) + 1
    local res = response.new()
    res:set_cookie("visits", { value = tostring(visits), path = "/" })
    res:write("<!doctype html><title>WSAPI on owinlua</title>",
      "<p>Visit number ", visits, " (a cookie counts them).</p>",
      "<form method=post action='", html(req.script_name), "/greet'>",
      "<input name=name placeholder='your name'> <button>Greet</button></form>")
    return res:finish()

  elseif path == "/greet" and req.method == "POST" then
    local res = response.new(200, { ["Content-Type"] = "text/plain; charset=utf-8" })
    res:write("Hello, ", req.POST.name or "stranger", "!\n")
    return res:finish()

  elseif path == "/count" then
    -- raw WSAPI: the body is an iterator, here a coroutine, one line at a time
    local to = math.min(tonumber(req.GET.to) or 3, 1000)
    return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function()
      for i = 1, to do coroutine.yield(i .. "\n") end
    end)

  elseif path == "/env" then
    local res = response.new(200, { ["Content-Type"] = "text/plain" })
    for _, k in ipairs({ "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                         "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
                         "HTTP_USER_AGENT" }) do
      res:write(k, "=", wsapi_env[k], "\n")
    end
    return res:finish()
  end

  local res = response.new(404, { ["Content-Type"] = "text/plain" })
  res:write("no page at ", path, "\n")
  return res:finish()
end

-- Served at the root, and once more under /legacy, where the prefix becomes
-- SCRIPT_NAME and the rest PATH_INFO.
app.map("/legacy", function(branch)
  branch.run(wsapi.app(run))
end)
app.run(wsapi.app(run))
