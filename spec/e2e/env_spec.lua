-- The OWIN environment as the app sees it, through the real server.
local server = require("helpers.server")
local http = require("helpers.http")

local function parse(body)
  local t = {}
  for k, v in body:gmatch("([^\n=]+)=([^\n]*)") do t[k] = v end
  return t
end

describe("#e2e the env table", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua") end)
  teardown(function()
    local ok, how, code = srv:stop()
    assert.same({ true, "exit", 0 }, { ok, how, code })
  end)

  local function env_of(raw)
    local res = assert(http.request(srv.port, raw))
    assert.equal(200, res.status)
    return parse(res.body), res
  end

  it("carries the request keys byte for byte", function()
    local e = env_of("POST /env?a=1&b=%20 HTTP/1.1\r\nHost: example.test\r\n" ..
                     "X-Multi: one\r\nx-multi: two\r\nContent-Length: 5\r\n" ..
                     "Connection: close\r\n\r\nhello")
    assert.equal("http", e["owin.RequestScheme"])
    assert.equal("POST", e["owin.RequestMethod"])
    assert.equal("", e["owin.RequestPathBase"])
    assert.equal("/env", e["owin.RequestPath"])
    assert.equal("a=1&b=%20", e["owin.RequestQueryString"])
    assert.equal("HTTP/1.1", e["owin.RequestProtocol"])
    assert.equal("200", e["owin.ResponseStatusCode"])
    assert.equal("nil", e["owin.ResponseReasonPhrase"])
    assert.equal("1.0", e["owin.Version"])
    assert.equal("example.test", e.Host)
    assert.equal("one|two", e["X-Multi"])         -- repeated headers keep every value, in order
    assert.equal("nil", e.missing)
    assert.equal("hello", e.body)
    assert.equal("userdata", e["type.RequestBody"])
    assert.equal("userdata", e["type.ResponseBody"])
    assert.equal("function", e["type.OnSendingHeaders"])
    assert.equal("false", e.cancelled)
    assert.equal("false", e.disposing)
  end)

  it("iterates each request header once, by lowercase name", function()
    local e = env_of("GET /env HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nX-MULTI: 2\r\n" ..
                     "Accept: */*\r\nConnection: close\r\n\r\n")
    assert.equal("accept:1,connection:1,host:1,x-multi:2", e.names)
  end)

  it("lists every key with pairs(env), the lazy ones included", function()
    local e = env_of("GET /env HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    local keys = {}
    for k in e.keys:gmatch("[^,]+") do keys[k] = true end
    for _, k in ipairs({ "owin.RequestScheme", "owin.RequestMethod", "owin.RequestPathBase",
                         "owin.RequestPath", "owin.RequestQueryString", "owin.RequestProtocol",
                         "owin.RequestHeaders", "owin.RequestBody", "owin.RequestId",
                         "owin.ResponseStatusCode", "owin.ResponseHeaders", "owin.ResponseBody",
                         "owin.CallCancelled", "owin.Version", "server.RemoteIpAddress",
                         "server.RemotePort", "server.LocalIpAddress", "server.LocalPort",
                         "server.IsLocal", "server.OnSendingHeaders", "host.OnAppDisposing",
                         "server.OnRequestEnd" }) do
      assert.is_true(keys[k] == true, "pairs(env) misses " .. k)
    end
  end)

  it("gives addresses, ports and IsLocal", function()
    local e = env_of("GET /env HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert.equal("127.0.0.1", e["server.RemoteIpAddress"])
    assert.equal("127.0.0.1", e["server.LocalIpAddress"])
    assert.equal(tostring(srv.port), e["server.LocalPort"])
    assert.truthy(tonumber(e["server.RemotePort"]))
    assert.equal("true", e["server.IsLocal"])
  end)

  it("gives each request its own owin.RequestId", function()
    local c = assert(http.connect(srv.port))
    local ids = {}
    for _ = 1, 3 do
      c:send("GET /env HTTP/1.1\r\nHost: h\r\n\r\n")
      local res = assert(c:read_response())
      local id = parse(res.body)["owin.RequestId"]
      assert.is_nil(ids[id])
      ids[id] = true
    end
    c:close()
  end)

  it("percent-decodes the path except %2F and keeps the raw query", function()
    local res = assert(http.request(srv.port,
      "GET /p/a%20b%2Fc%2fd%zz%41?q=%2F&r HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    assert.equal("/p/a b%2Fc%2fd%zzA|q=%2F&r", res.body)
  end)

  it("takes the path of an absolute-form target", function()
    local res = assert(http.request(srv.port,
      "GET http://example.test/p/abs?x=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"))
    assert.equal("/p/abs|x=1", res.body)
  end)

  it("reports HTTP/1.0 as the protocol", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /env HTTP/1.0\r\n\r\n")
    local res = assert(c:read_response())
    assert.equal("HTTP/1.0", parse(res.body)["owin.RequestProtocol"])
    assert.is_true(c:is_closed())
  end)
end)

describe("#e2e response keys", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("sends status and reason phrase", function()
    local res = http.get(srv.port, "/status?code=418&reason=Teapot&body=x")
    assert.equal(418, res.status)
    assert.equal("Teapot", res.reason)
    assert.equal("x", res.body)
  end)

  it("raises 'headers already sent' after the first write", function()
    local res = http.get(srv.port, "/sent")
    assert.equal(200, res.status)
    local lines = {}
    for l in res.body:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("first", lines[1])
    assert.matches("^false .*headers already sent", lines[2])
    assert.matches("^false .*headers already sent", lines[3])
    assert.matches("^false .*headers already sent", lines[4])
    assert.is_nil(res.headers["x-late"])
  end)

  it("runs OnSendingHeaders once, last registered first, before the status line", function()
    local res = http.get(srv.port, "/onsending")
    assert.equal(201, res.status)
    assert.equal("second,first", res.headers["x-order"])
    assert.equal("ab", res.body)
  end)

  it("runs server.OnRequestEnd callbacks last registered first when a request ends", function()
    local c = assert(http.connect(srv.port))
    local function get(path)
      assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: h\r\n\r\n"))
      return assert(c:read_response())
    end
    assert.equal("registered", get("/onend?id=a").body)
    -- the next request on the connection starts after the callbacks ran
    assert.equal("a:third,a:second,a:first", get("/onend-log").body)
    assert.equal(500, get("/onend?id=b&fail=1").status)        -- after an app error too
    assert.equal("a:third,a:second,a:first,b:third,b:second,b:first", get("/onend-log").body)
    c:close()
    assert.matches("%[error%] %[[%w%-]+%] server%.OnRequestEnd callback: [^\n]*second callback fails",
      srv:stderr())
  end)

  it("sends arrays as repeated headers, strings as one value, names case-insensitively", function()
    local res = http.get(srv.port, "/headers")
    local cookies = {}
    for _, h in ipairs(res.list) do
      if h[1]:lower() == "set-cookie" then cookies[#cookies + 1] = h[2] end
    end
    assert.same({ "a=1", "b=2" }, cookies)
    assert.equal("plain", res.headers["x-plain"])
    assert.equal("Upper", res.headers["x-case"])
    assert.is_nil(res.headers["x-removed"])
    assert.equal("5", res.headers["x-count"])
    local spelled = {}
    for _, h in ipairs(res.list) do spelled[h[1]:lower()] = h[1] end
    assert.equal("X-Case", spelled["x-case"])
    assert.equal("x-lower", spelled["x-lower"])        -- any spelling is kept
    assert.equal("X-API-Key", spelled["x-api-key"])
    assert.equal("Set-Cookie", spelled["set-cookie"])
    -- pairs() gives the same names the wire gets
    assert.equal("Set-Cookie,X-API-Key,X-Case,X-Plain,x-lower", res.headers["x-pairs"])
  end)

  it("refuses CR/LF in header values and names: 500, no injected header", function()
    for _, how in ipairs({ "string", "table", "name" }) do
      local res = http.get(srv.port, "/crlf?how=" .. how)
      assert.equal(500, res.status, how)
      assert.is_nil(res.headers["x-injected"], how)
      assert.is_nil(res.body:find("should not be sent", 1, true), how)
    end
    assert.matches("CR, LF", srv:stderr())
  end)

  it("raises errors that name the bad argument", function()
    local res = http.get(srv.port, "/badstatus")
    local lines = {}
    for l in res.body:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("false", lines[1])
    assert.matches("owin.ResponseStatusCode must be an integer", lines[2])
    assert.equal("false", lines[3])
    assert.matches("invalid header name 'bad name'", lines[4])
    assert.equal("false", lines[5])
    assert.matches("bad argument #1 to 'read'", lines[6])
  end)

  it("raises when a stream is used after its response finished", function()
    assert.equal("kept", http.get(srv.port, "/stale").body)
    local res = http.get(srv.port, "/use-stale")
    assert.matches("^false .*used after its response finished", res.body)
  end)

  it("answers 404 for an unknown route and keeps serving", function()
    assert.equal(404, http.get(srv.port, "/nope").status)
    assert.equal(200, http.get(srv.port, "/headers").status)
  end)
end)
