-- WSAPI interop over real processes (docs/wsapi.md), with Debian's
-- lua-wsapi: WSAPI applications (apps/wsapi.lua, the sample of Debian's
-- wsapi.cgi(1) man page, probes) served by the owinlua binary on port 0 and
-- spoken to over sockets; and owinlua apps run by Debian's WSAPI CGI
-- launcher, invoked as a CGI server would (meta-variables in the
-- environment, the body on stdin) with lua5.4.  /usr/bin/wsapi.cgi starts
-- with "#!/usr/bin/env lua5.1", so it is run as `lua5.4 -l owin.wsapi
-- /usr/bin/wsapi.cgi`: the same file, under Lua 5.4.
--
--   busted --lua=lua5.4 spec/e2e/wsapi_spec.lua

local server = require("helpers.server")
local cleanup = require("helpers.cleanup")
local defer, run_cleanups, start = cleanup.defer, cleanup.run, cleanup.server
local http = require("helpers.http")

local q = server.shell_quote

local ROOT = assert(io.popen("pwd")):read("l")
local LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"
local LAUNCHER = "/usr/bin/wsapi.cgi"



-- A file with `text`, removed when the test ends; `suffix` ends its name.
local function temp_file(text, suffix)
  local name = os.tmpname()
  os.remove(name)
  name = name .. (suffix or "")
  local f = assert(io.open(name, "wb"))
  f:write(text)
  f:close()
  defer(function() os.remove(name) end)
  return name
end

local function bytesum(s)
  local sum = 0
  for i = 1, #s do sum = (sum + s:byte(i)) % 65521 end
  return sum
end

-- The sample WSAPI application of Debian's wsapi.cgi(1) man page (the
-- WSAPI manual's hello.lua), taken from the installed page; the copy below
-- is used only if the page is missing (man pages excluded from the image).
local HELLO_COPY = [[
#!/usr/bin/env wsapi.cgi

module(..., package.seeall)

function run(wsapi_env)
  local headers = { ["Content-type"] = "text/html" }

  local function hello_text()
    coroutine.yield("<html><body>")
    coroutine.yield("<p>Hello Wsapi!</p>")
    coroutine.yield("<p>PATH_INFO: " .. wsapi_env.PATH_INFO .. "</p>")
    coroutine.yield("<p>SCRIPT_NAME: " .. wsapi_env.SCRIPT_NAME .. "</p>")
    coroutine.yield("</body></html>")
  end

  return 200, headers, coroutine.wrap(hello_text)
end
]]

local function man_page_sample()
  local p = io.popen("zcat /usr/share/man/man1/wsapi.cgi.1.gz 2>/dev/null")
  local man = p and p:read("a") or ""
  if p then p:close() end
  local sample = man:match("A sample dynamic page follows:.-%.fam C\n(.-)\n%.fam T")
  if not sample then return HELLO_COPY, "copy" end
  sample = sample:gsub("\\%.", "."):gsub("\\\\", "\\")
  sample = ("\n" .. sample):gsub("\n    ", "\n"):sub(2)      -- the page indents it
  return sample .. "\n", "man page"
end

------------------------------------------------------------------------------
-- WSAPI apps served by owinlua

-- Routes of WSAPI apps that probe the adapter.
local PROBE = [[
local wsapi = require("owin.wsapi")

local function text(s)
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function() coroutine.yield(s) end)
end

-- every variable that is a string, sorted: name=value lines
app.map("/vars", function(b)
  b.run(wsapi.app(function(w)
    local lines = {}
    for k, v in pairs(w) do
      if type(v) == "string" then lines[#lines + 1] = k .. "=" .. v end
    end
    table.sort(lines)
    return text(table.concat(lines, "\n") .. "\n")
  end))
end)

app.map("/error", function(b)
  b.run(wsapi.app(function() error("wsapi boom") end))
end)

app.map("/late", function(b)
  b.run(wsapi.app(function()
    return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function()
      coroutine.yield(string.rep("x", 100))
      error("late boom")
    end)
  end, { flush = true }))
end)

-- reads the body inside a coroutine iterator, piece by piece
app.map("/echo", function(b)
  b.run(wsapi.app(function(w)
    return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function()
      local n, sum = 0, 0
      while true do
        local s = w.input:read(8192)
        if not s then break end
        n = n + #s
        for i = 1, #s do sum = (sum + s:byte(i)) % 65521 end
      end
      coroutine.yield(n .. " " .. sum)
    end)
  end))
end)

app.map("/status", function(b)
  b.run(wsapi.app(function() return "429 Slow Down", { ["Retry-After"] = 5 }, nil end))
end)
]]

describe("WSAPI apps served by owinlua #e2e", function()
  after_each(run_cleanups)

  it("Debian's lua-wsapi is installed", function()
    assert(io.open(LAUNCHER), "lua-wsapi is missing: apt-get install lua-wsapi (tools/install-deps)")
  end)

  describe("apps/wsapi.lua (wsapi.request and wsapi.response)", function()
    it("answers the form page with a cookie and a Content-Length", function()
      local srv = start("apps/wsapi.lua")
      local res = assert(http.get(srv.port, "/"))
      assert.are.equal(200, res.status)
      assert.are.equal("text/html", res.headers["content-type"])
      assert.are.equal("visits=1; path=/", res.headers["set-cookie"])
      assert.are.equal(tostring(#res.body), res.headers["content-length"])
      assert.truthy(res.body:find("Visit number 1", 1, true))
      res = assert(http.get(srv.port, "/", { Cookie = "visits=41" }))
      assert.truthy(res.body:find("Visit number 42", 1, true))
      assert.are.equal("visits=42; path=/", res.headers["set-cookie"])
    end)

    it("parses a posted form, with Content-Length or chunked", function()
      local srv = start("apps/wsapi.lua")
      local form = "name=Ada+Lovelace&x=1"
      local res = assert(http.request(srv.port, "POST /greet HTTP/1.1\r\nHost: t\r\n" ..
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " .. #form ..
        "\r\nConnection: close\r\n\r\n" .. form))
      assert.are.equal(200, res.status)
      assert.are.equal("Hello, Ada Lovelace!\n", res.body)
      res = assert(http.request(srv.port, "POST /greet HTTP/1.1\r\nHost: t\r\n" ..
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n" ..
        "Connection: close\r\n\r\n5\r\nname=\r\n4\r\nGrac\r\n1\r\ne\r\n0\r\n\r\n"))
      assert.are.equal("Hello, Grace!\n", res.body)
    end)

    it("streams a body from a coroutine iterator", function()
      local srv = start("apps/wsapi.lua")
      local res = assert(http.get(srv.port, "/count?to=5"))
      assert.are.equal(200, res.status)
      assert.are.equal("1\n2\n3\n4\n5\n", res.body)
    end)

    it("sees a map prefix as SCRIPT_NAME, and the CGI variables of the connection", function()
      local srv = start("apps/wsapi.lua")
      local res = assert(http.get(srv.port, "/legacy/env?a=b", { ["User-Agent"] = "e2e/1" }))
      assert.are.equal(200, res.status)
      local vars = {}
      for k, v in res.body:gmatch("([%u_]+)=([^\n]*)\n") do vars[k] = v end
      assert.are.same({
        REQUEST_METHOD = "GET", SCRIPT_NAME = "/legacy", PATH_INFO = "/env", QUERY_STRING = "a=b",
        SERVER_NAME = "127.0.0.1", SERVER_PORT = tostring(srv.port), SERVER_PROTOCOL = "HTTP/1.1",
        REMOTE_ADDR = "127.0.0.1", HTTP_USER_AGENT = "e2e/1",
      }, vars)
    end)

    it("answers 404 for other paths, and HEAD without a body", function()
      local srv = start("apps/wsapi.lua")
      local res = assert(http.get(srv.port, "/nope"))
      assert.are.equal(404, res.status)
      assert.are.equal("no page at /nope\n", res.body)
      local get = assert(http.get(srv.port, "/"))
      local head = assert(http.get(srv.port, "/", nil, "HEAD"))
      assert.are.equal(200, head.status)
      assert.are.equal("", head.body)
      assert.are.equal(get.headers["content-length"], head.headers["content-length"])
    end)
  end)

  it("serves the sample app of the wsapi.cgi(1) man page, written with module()", function()
    local sample = man_page_sample()
    assert.truthy(sample:find("module(..., package.seeall)", 1, true))
    local path = temp_file(sample, "_hello.lua")
    local app = temp_file(string.format([[
      local wsapi = require("owin.wsapi")
      app.map("/hello", function(b) b.run(wsapi.app(wsapi.load(%q))) end)
    ]], path), ".lua")
    local srv = start(app)
    local res = assert(http.get(srv.port, "/hello/there"))
    assert.are.equal(200, res.status)
    assert.are.equal("text/html", res.headers["content-type"])
    assert.are.equal("<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /there</p>" ..
      "<p>SCRIPT_NAME: /hello</p></body></html>", res.body)
  end)

  describe("probes", function()
    local function probe()
      return start(temp_file(PROBE, ".lua"))
    end

    local function vars_of(res)
      local vars = {}
      for k, v in res.body:gmatch("([^=\n]+)=([^\n]*)\n") do vars[k] = v end
      return vars
    end

    it("never lets a header spelled with \"_\" stand in for one with \"-\" (CVE-2024-45614)", function()
      local srv = probe()
      for _, order in ipairs({ { "X-Forwarded-For: 10.0.0.1", "X_Forwarded_For: 6.6.6.6" },
                               { "X_Forwarded_For: 6.6.6.6", "X-Forwarded-For: 10.0.0.1" } }) do
        local res = assert(http.request(srv.port, "GET /vars HTTP/1.1\r\nHost: t\r\n" ..
          order[1] .. "\r\n" .. order[2] .. "\r\nConnection: close\r\n\r\n"))
        assert.are.equal(200, res.status)
        assert.are.equal("10.0.0.1", vars_of(res).HTTP_X_FORWARDED_FOR)
        assert.is_nil(res.body:find("6.6.6.6", 1, true))
      end
      local res = assert(http.request(srv.port, "GET /vars HTTP/1.1\r\nHost: t\r\n" ..
        "X_Forwarded_For: 6.6.6.6\r\nContent_Length: 5\r\nConnection: close\r\n\r\n"))
      local vars = vars_of(res)
      assert.is_nil(vars.HTTP_X_FORWARDED_FOR)
      assert.is_nil(vars.CONTENT_LENGTH)
      assert.is_nil(vars.HTTP_CONTENT_LENGTH)
    end)

    it("joins repeated headers and keeps Content-Type and Content-Length out of HTTP_*", function()
      local srv = probe()
      local res = assert(http.request(srv.port, "POST /vars HTTP/1.1\r\nHost: t:1\r\n" ..
        "Accept: a/b\r\nAccept: c/d\r\nCookie: a=1\r\nCookie: b=2\r\n" ..
        "Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"))
      local vars = vars_of(res)
      assert.are.equal("a/b, c/d", vars.HTTP_ACCEPT)
      assert.are.equal("a=1; b=2", vars.HTTP_COOKIE)
      assert.are.equal("text/plain", vars.CONTENT_TYPE)
      assert.are.equal("2", vars.CONTENT_LENGTH)
      assert.is_nil(vars.HTTP_CONTENT_TYPE)
      assert.is_nil(vars.HTTP_CONTENT_LENGTH)
      assert.are.equal("t", vars.SERVER_NAME)
      assert.are.equal(tostring(srv.port), vars.SERVER_PORT)
    end)

    it("turns an app error into a 500 and keeps serving", function()
      local srv = probe()
      local res = assert(http.get(srv.port, "/error"))
      assert.are.equal(500, res.status)
      assert.are.equal("500 Internal Server Error\n", res.body)
      assert.truthy(server.eventually(function() return srv:stderr():find("wsapi boom", 1, true) end),
        srv:stderr())
      assert.are.equal(200, assert(http.get(srv.port, "/vars")).status)
    end)

    it("cuts the connection when the iterator fails after the body started", function()
      local srv = probe()
      local res, err = http.get(srv.port, "/late")
      assert.is_nil(res)
      assert.matches("closed", tostring(err))
      assert.truthy(server.eventually(function() return srv:stderr():find("late boom", 1, true) end),
        srv:stderr())
    end)

    it("lets a coroutine iterator read a large upload while the server waits for it", function()
      local srv = probe()
      local t = {}
      for i = 1, 1024 * 1024 do t[i] = string.char((i * 7 + i // 251) % 256) end
      local body = table.concat(t)
      local c = assert(http.connect(srv.port, nil, 30))
      assert(c:send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " .. #body ..
        "\r\nConnection: close\r\n\r\n"))
      for i = 1, #body, 65536 do
        assert(c:send(body:sub(i, i + 65535)))
      end
      local res = assert(c:read_response())
      c:close()
      assert.are.equal(200, res.status)
      assert.are.equal(#body .. " " .. bytesum(body), res.body)
    end)

    it("passes a status string's reason phrase on", function()
      local srv = probe()
      local res = assert(http.get(srv.port, "/status"))
      assert.are.equal(429, res.status)
      assert.are.equal("Slow Down", res.reason)
      assert.are.equal("5", res.headers["retry-after"])
    end)
  end)
end)

------------------------------------------------------------------------------
-- owinlua apps under Debian's WSAPI CGI launcher

-- Runs `argv` (a shell word list) as a CGI server runs a script: an empty
-- environment but for PATH, the Lua 5.4 path to the checkout and the
-- meta-variables `vars`; `stdin` as the body.  Returns the parsed CGI
-- response { status =, headers = { lowercase name = value or array }, body = },
-- the raw output, stderr and the exit code.
local function cgi(argv, vars, stdin)
  local infile = temp_file(stdin or "")
  local errfile = temp_file("")
  local words = { "env", "-i", "PATH=/usr/bin:/bin", "LUA_PATH_5_4=" .. q(LUA_PATH) }
  for k, v in pairs(vars or {}) do words[#words + 1] = k .. "=" .. q(v) end
  words[#words + 1] = argv
  local cmd = table.concat(words, " ") .. " <" .. q(infile) .. " 2>" .. q(errfile)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = server.read_file(errfile)
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  local res = { headers = {}, list = {}, body = body }
  for line in (head or ""):gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    res.list[#res.list + 1] = { name, value }
    local key = name:lower()
    local cur = res.headers[key]
    if cur == nil then
      res.headers[key] = value
    elseif type(cur) == "table" then
      cur[#cur + 1] = value
    else
      res.headers[key] = { cur, value }
    end
  end
  res.status = res.headers.status
  return res, out, err, code
end

local function launcher(script)
  return "lua5.4 -l owin.wsapi " .. q(LAUNCHER) .. (script and (" " .. q(script)) or "")
end

-- An owinlua app (middleware + terminal app) that reports what it saw.
local ECHO = [[
local owin = require("owin")
local app = owin.new()
app.use(function(env, next)
  env["server.OnSendingHeaders"](function()
    env["owin.ResponseHeaders"]["X-Middleware"] = "ran"
  end)
  next()
end)
app.run(function(env)
  local h = env["owin.RequestHeaders"]
  local qs = env["owin.RequestQueryString"]
  if qs == "fail" then error("cgi boom") end
  env["owin.ResponseStatusCode"] = tonumber(qs:match("status=(%d+)")) or 201
  env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
  env["owin.ResponseHeaders"]["Set-Cookie"] = { "a=1; Path=/", "b=2" }
  local out = env["owin.ResponseBody"]
  for _, k in ipairs({ "owin.RequestMethod", "owin.RequestPathBase", "owin.RequestPath",
                       "owin.RequestQueryString", "owin.RequestProtocol", "owin.RequestScheme",
                       "server.RemoteIpAddress" }) do
    out:write(k, "=", tostring(env[k]), "\n")
  end
  out:write("host=", tostring(h.Host and h.Host[1]), "\n")
  out:write("x-custom=", tostring(h["x-custom"] and h["x-custom"][1]), "\n")
  out:write("content-type=", tostring(h["Content-Type"] and h["Content-Type"][1]), "\n")
  if qs == "stream" then out:flush() end
  out:write("body=", env["owin.RequestBody"]:read("a"), "\n")
end)
return require("owin.wsapi").handler(app)
]]

local POST_VARS = {
  REQUEST_METHOD = "POST", SCRIPT_NAME = "/cgi-bin/echo.lua", PATH_INFO = "/items/7",
  QUERY_STRING = "", SERVER_PROTOCOL = "HTTP/1.1", SERVER_NAME = "cgi.example",
  SERVER_PORT = "80", REMOTE_ADDR = "192.0.2.9", GATEWAY_INTERFACE = "CGI/1.1",
  CONTENT_TYPE = "application/x-www-form-urlencoded", CONTENT_LENGTH = "9",
  HTTP_HOST = "cgi.example", HTTP_X_CUSTOM = "custom-value", HTTP_USER_AGENT = "e2e",
}

local function vars(extra)
  local t = {}
  for k, v in pairs(POST_VARS) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

describe("owinlua apps under Debian's WSAPI CGI launcher #e2e", function()
  after_each(run_cleanups)

  it("the launcher is Debian's, written for lua5.1", function()
    local f = assert(io.open(LAUNCHER), "lua-wsapi is missing: apt-get install lua-wsapi")
    local first = f:read("l")
    f:close()
    assert.matches("^#!.*lua", first)
  end)

  it("runs an app script given on the command line (#!/usr/bin/env wsapi.cgi style)", function()
    local app = temp_file(ECHO, "_echo.lua")
    local res, out, err, code = cgi(launcher(app), vars(), "name=Ada&")
    assert.are.equal(0, code, err)
    assert.are.equal("201 Created", res.status, out)
    assert.are.equal("Status: 201 Created", out:match("^[^\r\n]*"))   -- the first line
    assert.are.equal("text/plain", res.headers["content-type"])
    assert.are.equal("ran", res.headers["x-middleware"])
    assert.are.same({ "a=1; Path=/", "b=2" }, res.headers["set-cookie"])
    assert.are.equal(tostring(#res.body), res.headers["content-length"])
    assert.are.equal(table.concat({
      "owin.RequestMethod=POST", "owin.RequestPathBase=/cgi-bin/echo.lua",
      "owin.RequestPath=/items/7", "owin.RequestQueryString=", "owin.RequestProtocol=HTTP/1.1",
      "owin.RequestScheme=http", "server.RemoteIpAddress=192.0.2.9", "host=cgi.example",
      "x-custom=custom-value", "content-type=application/x-www-form-urlencoded",
      "body=name=Ada&", "" }, "\n"), res.body)
  end)

  it("finds the script from SCRIPT_FILENAME, as under a web server's CGI handler", function()
    local app = temp_file(ECHO, "_echo.lua")
    local dir, file = app:match("^(.*)(/[^/]+)$")
    local res, out, err, code = cgi(launcher(nil), vars({ SCRIPT_FILENAME = app,
      DOCUMENT_ROOT = dir, SCRIPT_NAME = file, QUERY_STRING = "status=200", HTTPS = "on" }),
      "name=Ada&")
    assert.are.equal(0, code, err)
    assert.are.equal("200 OK", res.status, out)
    assert.truthy(res.body:find("owin.RequestScheme=https\n", 1, true))
    assert.truthy(res.body:find("owin.RequestPath=/items/7\n", 1, true))
  end)

  it("passes statuses wsapi.common has no phrase for (it fails on a bare 429)", function()
    local app = temp_file(ECHO, "_echo.lua")
    local res, out = cgi(launcher(app), vars({ QUERY_STRING = "status=429" }), "name=Ada&")
    assert.are.equal("429 Too Many Requests", res.status, out)
  end)

  it("streams after a flush: no Content-Length, the whole body", function()
    local app = temp_file(ECHO, "_echo.lua")
    local res, out = cgi(launcher(app), vars({ QUERY_STRING = "stream" }), "name=Ada&")
    assert.are.equal("201 Created", res.status, out)
    assert.is_nil(res.headers["content-length"])
    assert.truthy(res.body:find("body=name=Ada&\n$"))
  end)

  it("answers an app error with a 500 and logs the traceback to stderr", function()
    local app = temp_file(ECHO, "_echo.lua")
    local res, out, err = cgi(launcher(app), vars({ QUERY_STRING = "fail" }), "name=Ada&")
    assert.are.equal("500 Internal Server Error", res.status, out)
    assert.are.equal("500 Internal Server Error\n", res.body)
    assert.truthy(err:find("cgi boom", 1, true), err)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)

  it("runs apps/hello.lua with wsapi.cgi.run under lua5.4 -e", function()
    local res, out, err, code = cgi("lua5.4 -e " ..
      q('local wsapi = require("owin.wsapi"); ' ..     -- first: it finds Debian's wsapi.*
        'require("wsapi.cgi").run(wsapi.handler("' .. ROOT .. '/apps/hello.lua"))'),
      { REQUEST_METHOD = "GET", PATH_INFO = "/", SCRIPT_NAME = "/hello", SERVER_NAME = "h",
        SERVER_PORT = "80", SERVER_PROTOCOL = "HTTP/1.1" })
    assert.are.equal(0, code, err)
    assert.are.equal("200 OK", res.status, out)
    assert.are.equal("text/plain", res.headers["content-type"])
    assert.are.equal("11", res.headers["content-length"])
    assert.are.equal("Hello World", res.body)
  end)

  it("round-trips apps/wsapi.lua's WSAPI app: WSAPI -> owinlua -> WSAPI", function()
    local app = temp_file([[
      local owin = require("owin")
      local wsapi = require("owin.wsapi")
      local builder = owin.new()
      _G.app = builder
      dofile(]] .. string.format("%q", ROOT .. "/apps/wsapi.lua") .. [[)
      return wsapi.handler(builder)
    ]], "_rt.lua")
    local res, out, err, code = cgi(launcher(app), {
      REQUEST_METHOD = "POST", SCRIPT_NAME = "", PATH_INFO = "/greet", QUERY_STRING = "",
      SERVER_NAME = "h", SERVER_PORT = "80", SERVER_PROTOCOL = "HTTP/1.1",
      CONTENT_TYPE = "application/x-www-form-urlencoded", CONTENT_LENGTH = "8" }, "name=Bob")
    assert.are.equal(0, code, err)
    assert.are.equal("200 OK", res.status, out)
    assert.are.equal("Hello, Bob!\n", res.body)
  end)
end)
