-- owin.context through the real owinlua binary: apps/context.lua answers as
-- apps/hello.lua does, and spec/fixtures/context.lua exercises the request
-- and response objects over real sockets, mixed with raw env middleware.
--
--   busted --lua=lua5.4 spec/e2e/context_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local HAS_CJSON = pcall(require, "cjson")

-- "k=v" lines -> table
local function parse(body)
  local t = {}
  for k, v in body:gmatch("([^\n=]+)=([^\n]*)") do t[k] = v end
  return t
end

local function stop(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code }, "owinlua did not exit cleanly:\n" .. srv:stderr())
end

-- The response's header lines without Date, in order.
local function header_lines(res)
  local out = {}
  for _, h in ipairs(res.list) do
    if h[1]:lower() ~= "date" then out[#out + 1] = h[1] .. ": " .. h[2] end
  end
  return out
end

describe("owin.context through the server #e2e", function()
  describe("apps/context.lua", function()
    local hello, ctxapp
    setup(function()
      hello = server.start("apps/hello.lua")
      ctxapp = server.start("apps/context.lua")
    end)
    teardown(function()
      stop(hello)
      stop(ctxapp)
    end)

    it("answers exactly as apps/hello.lua does, but for the Date", function()
      for _, method in ipairs({ "GET", "HEAD" }) do
        local want = assert(http.get(hello.port, "/x?y=1", nil, method))
        local got = assert(http.get(ctxapp.port, "/x?y=1", nil, method))
        assert.are.equal(want.status, got.status)
        assert.are.equal(want.reason, got.reason)
        assert.are.equal(want.body, got.body)
        assert.are.same(header_lines(want), header_lines(got))
      end
      local res = assert(http.get(ctxapp.port, "/"))
      assert.are.equal("Hello World", res.body)
      assert.are.equal("text/plain", res.headers["content-type"])
      assert.are.equal("11", res.headers["content-length"])
    end)

    it("logs each request through its context middleware", function()
      assert(http.get(ctxapp.port, "/some/where"))
      assert.truthy(server.eventually(function()
        return ctxapp:stderr():find("GET /some/where 200", 1, true)
      end), "no log line in:\n" .. ctxapp:stderr())
    end)

    it("answers pipelined keep-alive requests in order", function()
      local c = assert(http.connect(ctxapp.port))
      local req = "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n"
      assert(c:send(req:format(1) .. req:format(2) .. req:format(3)))
      for _ = 1, 3 do
        local res = assert(c:read_response())
        assert.are.equal(200, res.status)
        assert.are.equal("Hello World", res.body)
      end
      c:close()
      assert.truthy(server.eventually(function()
        local log = ctxapp:stderr()
        return log:find("GET /1 200", 1, true) and log:find("GET /3 200", 1, true)
      end))
    end)
  end)

  describe("spec/fixtures/context.lua", function()
    local srv
    setup(function() srv = server.start("spec/fixtures/context.lua") end)
    teardown(function() stop(srv) end)

    local function get(path, headers, method)
      return assert(http.get(srv.port, path, headers, method))
    end

    local function post(path, ctype, body)
      return assert(http.request(srv.port, "POST " .. path .. " HTTP/1.1\r\nHost: h\r\n" ..
        "Content-Type: " .. ctype .. "\r\nContent-Length: " .. #body ..
        "\r\nConnection: close\r\n\r\n" .. body))
    end

    it("reads the request's properties and headers", function()
      local res = assert(http.request(srv.port, "GET /request?a=1&b HTTP/1.1\r\nHost: example.test\r\n" ..
        "X-Multi: one\r\nx-multi: two\r\nConnection: close\r\n\r\n"))
      assert.are.equal(200, res.status)
      assert.are.equal("text/plain; charset=utf-8", res.headers["content-type"])
      local t = parse(res.body)
      assert.are.equal("GET", t.method)
      assert.are.equal("/request", t.path)
      assert.are.equal("", t.path_base)
      assert.are.equal("a=1&b", t.query_string)
      assert.are.equal("http", t.scheme)
      assert.are.equal("HTTP/1.1", t.protocol)
      assert.are.equal("127.0.0.1", t.remote_addr)
      assert.matches("^[0-9a-z]+%-%d+$", t.id)       -- owin.RequestId: <boot tag>-<n>
      assert.are.equal("one, two", t.multi)
      assert.are.equal("example.test", t.host)
      assert.are.equal("nil", t.missing)
    end)

    it("lets context middleware rewrite the path for what follows", function()
      local t = parse(get("/old").body)
      assert.are.equal("/request", t.path)
    end)

    it("follows map(): path_base and path inside the branch", function()
      assert.are.equal("/base|/x/y", get("/base/x/y").body)
      assert.are.equal("/BASE|/", get("/BASE").body)          -- the prefix as sent
    end)

    it("parses the query: first values, every value, percent-decoding, + as space", function()
      local t = parse(get("/query?a=1&b=x+y&a=2&c=%41%2B&d=&e&=f&g=%zz").body)
      assert.are.equal("1", t["q.a"])
      assert.are.equal("1|2", t["all.a"])
      assert.are.equal("x y", t["q.b"])
      assert.are.equal("A+", t["q.c"])
      assert.are.equal("", t["q.d"])
      assert.are.equal("", t["q.e"])
      assert.are.equal("%zz", t["q.g"])
    end)

    it("parses cookies, skipping malformed pairs", function()
      local t = parse(get("/cookies", { Cookie = 'sid=abc; theme="dark";; bad; =x; sid=second' }).body)
      assert.are.same({ sid = "abc", theme = "dark" }, t)
      assert.are.same({}, parse(get("/cookies").body))
    end)

    it("decodes a urlencoded form, repeated names as lists", function()
      local res = post("/form", "application/x-www-form-urlencoded; charset=utf-8",
        "name=J%C3%BCrgen+X&tag=a&tag=b&empty=")
      assert.are.equal(200, res.status)
      local t = parse(res.body)
      assert.are.equal("J\xc3\xbcrgen X", t.name)
      assert.are.equal("a,b", t.tag)
      assert.are.equal("", t.empty)
    end)

    it("decodes a multipart form, and answers a malformed one with its status", function()
      local res = post("/form", "multipart/form-data; boundary=x",
        "--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x\r\n" ..
        "Content-Disposition: form-data; name=a\r\n\r\n2\r\n--x--\r\n")
      assert.are.equal(200, res.status)
      assert.are.equal("1,2", parse(res.body).a)
      res = post("/form", "multipart/form-data", "--x--\r\n")
      assert.are.equal(400, res.status)
      assert.are.equal("EINVAL: multipart/form-data without a boundary parameter", res.body)
    end)

    it("streams a large body with chunks()", function()
      local body = string.rep("0123456789", 30000)
      local res = post("/body", "application/octet-stream", body)
      assert.are.equal("bytes=300000\n", res.body)
    end)

    it("redirects with 302 by default, Location and a short body", function()
      local res = get("/redirect")
      assert.are.equal(302, res.status)
      assert.are.equal("/target?x=1", res.headers.location)
      assert.are.equal("Redirecting to /target?x=1\n", res.body)
      res = get("/moved")
      assert.are.equal(301, res.status)
      assert.are.equal("https://example.com/new", res.headers.location)
      res = get("/redirect", nil, "HEAD")
      assert.are.equal(302, res.status)
      assert.are.equal("", res.body)
    end)

    it("sets cookies, one Set-Cookie line each", function()
      local res = get("/cookie")
      local lines = {}
      for _, h in ipairs(res.list) do
        if h[1]:lower() == "set-cookie" then lines[#lines + 1] = h[2] end
      end
      assert.are.same({
        "sid=abc123; Path=/; Max-Age=60; HttpOnly; SameSite=Lax",
        "theme=dark",
        "old=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
      }, lines)
    end)

    it("reads and writes JSON with lua-cjson", function()
      if not HAS_CJSON then
        pending("lua-cjson is not installed (Debian: apt install lua-cjson): JSON through the server not checked")
        return
      end
      local cjson = require("cjson")
      local res = post("/json", "application/json", '{"k":[1,2],"s":"x"}')
      assert.are.equal(201, res.status)
      assert.are.equal("application/json", res.headers["content-type"])
      local v = cjson.decode(res.body)
      assert.are.same({ k = { 1, 2 }, s = "x" }, v.got)
      assert.are.equal("cjson", v.lib)
      res = post("/json", "application/json", "{nope")
      assert.are.equal(400, res.status)
      assert.matches("^EINVAL: invalid JSON: ", res.body)
    end)

    it("tells whether the headers went out, and the server refuses later changes", function()
      assert.are.equal("x before=false after=true late_status=false:headers already sent",
        get("/sent").body)
    end)

    it("sets status and reason phrase", function()
      local res = get("/status")
      assert.are.equal(418, res.status)
      assert.are.equal("I'm a teapot", res.reason)
      assert.are.equal("short and stout", res.body)
    end)

    it("mixes with raw env middleware: each sees the other's changes", function()
      local res = get("/mix")
      assert.are.equal(202, res.status)
      assert.are.equal("raw", res.headers["x-raw"])
      assert.are.equal("saw raw for alice", res.headers["x-ctx"])
      assert.are.equal("status 202", res.body)
      assert.truthy(server.eventually(function()
        return srv:stderr():find("raw after: status 202, X-Ctx saw raw for alice", 1, true)
      end), "no log line in:\n" .. srv:stderr())
    end)

    it("writes HTML with its content type", function()
      local res = get("/html")
      assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.are.equal("<p>hi</p>", res.body)
    end)
  end)
end)
