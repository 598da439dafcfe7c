-- The same app gives the same answers under owin.test (in process) and under
-- the real server: status, reason, body and the headers that do not depend
-- on the wall clock.  Fixture apps from spec/fixtures/ (core.lua,
-- pipeline.lua, ws.lua) run under both.
local server = require("helpers.server")
local http = require("helpers.http")
local wsc = require("helpers.ws")
local test = require("owin.test")

-- Header names compared between the hosts (Date differs by the clock).
local COMPARED = { "content-type", "content-length", "transfer-encoding", "connection", "server",
                   "x-order", "x-trace", "x-plain", "x-case", "x-count", "set-cookie",
                   "sec-websocket-version" }

-- The raw request the real server gets, and the request the test host gets:
-- the same method, target, headers and body.
local function raw_request(method, target, headers, body)
  local lines = { method .. " " .. target .. " HTTP/1.1", "Host: 127.0.0.1" }
  for _, pair in ipairs(headers or {}) do lines[#lines + 1] = pair[1] .. ": " .. pair[2] end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  lines[#lines + 1] = "Connection: close"
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

local function both(srv, client, method, target, headers, body)
  local real, err = http.request(srv.port, raw_request(method, target, headers, body), { method = method })
  local hs = { { "Host", "127.0.0.1" }, { "Connection", "close" } }
  for _, pair in ipairs(headers or {}) do hs[#hs + 1] = pair end
  local fake = client:request({ method = method, path = target, headers = hs, body = body })
  return real, fake, err
end

-- Asserts that both hosts answered alike.
local function alike(real, fake, what)
  assert.is_table(real, what)
  assert.equal(real.status, fake.status, what)
  assert.equal(real.reason, fake.reason, what)
  assert.equal(real.body, fake.body, what)
  for _, name in ipairs(COMPARED) do
    assert.equal(real.headers[name], fake.headers[name], what .. ": header " .. name)
  end
end

-- The header lines other than Date, sorted, as "Name: value".
local function lines_of(list)
  local out = {}
  for _, pair in ipairs(list) do
    if pair[1]:lower() ~= "date" then out[#out + 1] = pair[1] .. ": " .. pair[2] end
  end
  table.sort(out)
  return out
end

describe("#e2e owin.test answers as the server does: core.lua", function()
  local srv, client
  setup(function()
    srv = server.start("spec/fixtures/core.lua")
    client = test.client("spec/fixtures/core.lua")
  end)
  teardown(function() assert.is_true(srv:stop()) end)

  local gets = {
    "/status?code=418&reason=Teapot&body=x", "/status?code=201", "/sent", "/onsending",
    "/crlf?how=string", "/crlf?how=table", "/crlf?how=name", "/badstatus", "/error", "/yield",
    "/big?size=1000", "/big?size=16384", "/big?size=16385", "/big?size=200000",
    "/stream?n=100&size=1000", "/cl?declared=5&actual=5", "/cl?declared=5&actual=6",
    "/cl?declared=5&actual=4", "/flush-empty", "/nope", "/p/a%20b%2Fc%2fd%zz%41?q=%2F&r",
    "/sleep?s=0.2", "/sse", "/stale",
  }
  for _, target in ipairs(gets) do
    it("GET " .. target, function()
      local real, fake = both(srv, client, "GET", target)
      alike(real, fake, target)
    end)
  end

  it("sends the same header lines for /headers (arrays repeated, spelling kept)", function()
    local real, fake = both(srv, client, "GET", "/headers")
    alike(real, fake, "/headers")
    assert.same(lines_of(real.list), lines_of(fake.list))
  end)

  it("sends no body for HEAD, 204 and 304", function()
    for _, case in ipairs({ { "HEAD", "/big?size=10" }, { "GET", "/status?code=204&body=x" },
                            { "GET", "/status?code=304&body=x" } }) do
      local real, fake = both(srv, client, case[1], case[2])
      alike(real, fake, case[1] .. " " .. case[2])
    end
  end)

  it("reads request bodies alike", function()
    for _, case in ipairs({ { "/read?n=3", "abcdefg" }, { "/read?n=3", "" }, { "/readall", "hello" },
                            { "/echo?keep=1", string.rep("0123456789", 10000) } }) do
      local real, fake = both(srv, client, "POST", case[1], nil, case[2])
      alike(real, fake, "POST " .. case[1])
    end
  end)

  it("reads a chunked request body as the test host reads a body function", function()
    local real = assert(http.request(srv.port,
      "POST /readall HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" ..
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"))
    local fake = client:post("/readall", { body = { "abc", "de" },
                                           headers = { Connection = "close" } })
    alike(real, fake, "chunked /readall")
  end)

  it("sees the same env, apart from ports and ids", function()
    local hs = { { "X-Multi", "one" }, { "x-multi", "two" } }
    local real, fake = both(srv, client, "POST", "/env?a=1&b=%20", hs, "hello")
    local function parse(body)
      local t = {}
      for k, v in body:gmatch("([^\n=]+)=([^\n]*)") do t[k] = v end
      t["server.RemotePort"], t["server.LocalPort"], t["owin.RequestId"] = nil, nil, nil
      t["type.RequestBody"], t["type.ResponseBody"] = nil, nil   -- userdata vs table
      return t
    end
    assert.same(parse(real.body), parse(fake.body))
  end)

  it("cuts the response alike when the app fails after the headers went out", function()
    for _, target in ipairs({ "/error-after", "/cl?declared=100&flush=10&actual=5" }) do
      local real, fake, err = both(srv, client, "GET", target)
      assert.is_nil(real, target)
      assert.is_string(err, target)
      assert.is_true(fake.aborted, target)
    end
  end)

  it("sends files alike", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local f = assert(io.open(path, "wb"))
    f:write("0123456789abcdef")
    f:close()
    for _, q in ipairs({ "", "&off=3&len=4", "&prefix=HEAD:", "&off=10&len=10" }) do
      local real, fake = both(srv, client, "GET", "/sendfile?path=" .. path .. q)
      alike(real, fake, "/sendfile" .. q)
    end
  end)
end)

describe("#e2e owin.test answers as the server does: pipeline.lua", function()
  local srv, client
  setup(function()
    srv = server.start("spec/fixtures/pipeline.lua")
    client = test.client("spec/fixtures/pipeline.lua")
  end)
  teardown(function() assert.is_true(srv:stop()) end)

  for _, target in ipairs({ "/", "/x/y", "/api", "/api/v1", "/api/v1/x", "/API/V1/Y", "/apix",
                            "/api/v2", "/?when", "/before", "/fall" }) do
    it("GET " .. target, function()
      local real, fake = both(srv, client, "GET", target)
      alike(real, fake, target)
    end)
  end
end)

describe("#e2e owin.test answers as the server does: ws.lua", function()
  local srv, client
  setup(function()
    srv = server.start("spec/fixtures/ws.lua")
    client = test.client("spec/fixtures/ws.lua")
  end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("answers the handshake with the same headers", function()
    for _, case in ipairs({ { "/echo" }, { "/proto", "a, b" }, { "/raw?proto=chat", "chat, other" } }) do
      local real_c, real = wsc.connect(srv.port, case[1], { protocols = case[2] })
      local fake_c, fake = client:websocket(case[1], { protocols = case[2] })
      assert.equal(101, real.status)
      assert.equal(101, fake.status)
      for _, name in ipairs({ "upgrade", "sec-websocket-accept", "sec-websocket-protocol",
                              "content-length", "server" }) do
        assert.equal(real.headers[name], fake.headers[name], case[1] .. ": " .. name)
      end
      assert.equal(real.headers.connection:lower(), fake.headers.connection:lower())
      real_c:close(1000)
      fake_c:close(1000)
    end
  end)

  it("echoes messages alike, and the close code", function()
    for _, path in ipairs({ "/echo", "/raw" }) do
      local real = assert(wsc.connect(srv.port, path))
      local fake = assert(client:websocket(path))
      for _, case in ipairs({ { 1, "text", "héllo" }, { 2, "binary", "\0\1\2\255" },
                              { 1, "text", string.rep("y", 70000) } }) do
        real:send_frame(case[1], case[3])
        fake:send(case[3], case[2])
        local m = real:read_message()
        local data, kind = fake:receive()
        assert.equal(m.payload, data)
        assert.equal(m.opcode == 1 and "text" or "binary", kind)
      end
      assert.equal(real:close(4001, "bye"), fake:close(4001, "bye"))
    end
  end)

  it("sends the same first message for /proto and the same close", function()
    for _, protocols in ipairs({ "a, b", "a" }) do
      local real = assert(wsc.connect(srv.port, "/proto", { protocols = protocols }))
      local fake = assert(client:websocket("/proto", { protocols = protocols }))
      assert.equal(real:read_message().payload, fake:receive())
      local f = real:read_frame()
      assert.equal(8, f.opcode)
      assert.equal(wsc.close_code(f.payload), select(3, fake:receive()))
    end
  end)

  it("closes with the same code when the app fails after accepting", function()
    local real = assert(wsc.connect(srv.port, "/write-after"))
    local fake = assert(client:websocket("/write-after"))
    local f = real:read_frame()
    assert.equal(8, f.opcode)
    assert.equal(wsc.close_code(f.payload), select(3, fake:receive()))
  end)

  it("refuses a protocol the client did not offer, and another version, alike", function()
    for _, case in ipairs({ { "/badproto", { protocols = "a" } }, { "/echo", { version = "8" } } }) do
      local _, real = wsc.connect(srv.port, case[1], case[2])
      local _, fake = client:websocket(case[1], case[2])
      fake.body = ""                    -- helpers.ws reads the head only
      alike(real, fake, case[1])
    end
  end)

  it("serves non-upgrade requests alike", function()
    local real, fake = both(srv, client, "GET", "/echo")
    alike(real, fake, "GET /echo")
  end)

  it("lets a plain request send to waiting sockets alike", function()
    local ra, rb = assert(wsc.connect(srv.port, "/room")), assert(wsc.connect(srv.port, "/room"))
    local fa, fb = assert(client:websocket("/room")), assert(client:websocket("/room"))
    assert.equal(ra:read_message().payload, fa:receive())
    assert.equal(rb:read_message().payload, fb:receive())
    local real, fake = both(srv, client, "POST", "/say", nil, "hi all")
    alike(real, fake, "/say")
    assert.equal(ra:read_message().payload, fa:receive())
    assert.equal(rb:read_message().payload, fb:receive())
    for _, c in ipairs({ ra, rb, fa, fb }) do c:close(1000) end
  end)
end)

describe("#e2e owin.test inside the owinlua binary", function()
  it("runs an app in virtual time from a request of the real server", function()
    local path = os.tmpname() .. ".lua"
    finally(function() os.remove(path) end)
    local f = assert(io.open(path, "w"))
    f:write([[
      local test = require("owin.test")
      local inner = owin.new()
      inner.run(function(env)
        local t0 = owin.now()
        owin.sleep(30)
        env["owin.ResponseBody"]:write(string.format("inner %.1f %s", owin.now() - t0,
          tostring(owin.request_id())))
      end)
      app.run(function(env)
        owin.sleep(0.01)                        -- the server's own sleep still works
        local res = test.client(inner):get("/")
        env["owin.ResponseBody"]:write(res.status, " ", res.body)
      end)
    ]])
    f:close()
    local srv = server.start(path)
    finally(function() srv:stop() end)
    local res = http.get(srv.port, "/")
    assert.equal(200, res.status)
    assert.equal("200 inner 30.0 test-1", res.body)
  end)
end)
