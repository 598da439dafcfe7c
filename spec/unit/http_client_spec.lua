-- owin.http (lua/owin/http.lua) without the server: the cosockets are the
-- scripted ones of spec/helpers/cosocket.lua, the response parser is the
-- C one (src/codec/http_resp.c) through the owl_codec test module.  What
-- goes on the wire, what comes back, and what happens to the connection.
-- spec/e2e/http_client_spec.lua does the same against real servers.
--
--   make build/owl_codec.so && busted --lua=lua5.4 spec/unit/http_client_spec.lua
local codec = require("owl_codec")
local cosocket = require("helpers.cosocket")

-- A request as a server reads it: { method, target, version, headers (a
-- list of { name, value }), fields (lowercase name -> value, the last
-- one), body }.  Content-Length and chunked bodies; rest is what follows.
local function parse_request(s)
  local head, rest = s:match("^(.-\r\n)\r\n(.*)$")
  assert(head, "no complete head in " .. string.format("%q", s))
  local method, target, version = head:match("^(%S+) (%S+) HTTP/(%d%.%d)\r\n")
  assert(method, "bad request line in " .. string.format("%q", head))
  local r = { method = method, target = target, version = version, headers = {}, fields = {} }
  for name, value in head:gmatch("\r\n([^:\r\n]+): ?([^\r\n]*)") do
    r.headers[#r.headers + 1] = { name, value }
    r.fields[name:lower()] = value
  end
  if r.fields["transfer-encoding"] == "chunked" then
    local body, pos = {}, 1
    while true do
      local size, after = rest:match("^(%x+)\r\n()", pos)
      assert(size, "bad chunk at " .. pos .. " of " .. string.format("%q", rest))
      size = tonumber(size, 16)
      if size == 0 then
        assert(rest:sub(after, after + 1) == "\r\n", "no end of the chunked body")
        r.rest = rest:sub(after + 2)
        break
      end
      body[#body + 1] = rest:sub(after, after + size - 1)
      assert(rest:sub(after + size, after + size + 1) == "\r\n", "no CRLF after chunk data")
      pos = after + size + 2
      r.chunks = (r.chunks or 0) + 1
    end
    r.body = table.concat(body)
  else
    local n = tonumber(r.fields["content-length"] or "0")
    r.body, r.rest = rest:sub(1, n), rest:sub(n + 1)
  end
  return r
end

-- A response: status line, the header lines given ({ "Name: value", ... })
-- and the body, with a Content-Length unless framing is given or the
-- status has no body.
local function response(status, lines, body)
  body = body or ""
  local bodiless = status:match("^1") or status:match("^204") or status:match("^304")
  local out = { "HTTP/1.1 " .. status .. "\r\n" }
  local has_length = false
  for _, l in ipairs(lines or {}) do
    out[#out + 1] = l .. "\r\n"
    if l:lower():match("^content%-length:") or l:lower():match("^transfer%-encoding:") then
      has_length = true
    end
  end
  if not bodiless and not has_length then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
  out[#out + 1] = "\r\n"
  out[#out + 1] = body
  return table.concat(out)
end

describe("#unit owin.http", function()
  local owin, http, net, saved_core
  local requests                                -- what the servers were sent, parsed

  setup(function()
    owin = require("owin")
    saved_core = package.loaded["owin.core"]
    package.loaded["owin.core"] = { http_response_parser = codec.http_response_parser }
    package.loaded["owin.http"] = nil
    http = require("owin.http")
  end)

  teardown(function()
    package.loaded["owin.core"] = saved_core
    package.loaded["owin.http"] = nil
    owin.tcp = nil
  end)

  before_each(function()
    net = cosocket.new()
    owin.tcp = net.tcp
    requests = {}
  end)

  -- Serves host:port with replies(req, conn) -> list, recording each
  -- request parsed.
  local function serve(host, port, replies)
    net:listen(host, port, function(raw, conn)
      local req = parse_request(raw)
      req.conn = conn
      requests[#requests + 1] = req
      return replies(req, conn)
    end)
  end

  local function serve_ok(body, lines)
    serve("127.0.0.1", 8080, function() return { response("200 OK", lines, body) } end)
  end

  describe("sends", function()
    it("a GET with Host and User-Agent, for a URL string", function()
      serve_ok("hi")
      local res = assert(http.request("http://127.0.0.1:8080/a/b?x=1&y=%20#frag"))
      assert.equal(200, res.status)
      local r = requests[1]
      assert.equal("GET", r.method)
      assert.equal("/a/b?x=1&y=%20", r.target)
      assert.equal("1.1", r.version)
      assert.same({ { "Host", "127.0.0.1:8080" }, { "User-Agent", "owinlua/" .. owin.version } },
        r.headers)
      assert.equal("", r.rest)
    end)

    it("the path / when the URL has none, and leaves the default port out of Host", function()
      serve("example.test", 80, function() return { response("204 No Content") } end)
      assert(http.request("http://Example.TEST"))
      assert(http.request("http://example.test:80?q"))
      assert.equal("/", requests[1].target)
      assert.equal("example.test", requests[1].fields.host)
      assert.equal("/?q", requests[2].target)
      assert.equal("connect example.test:80", net.log[1])
    end)

    it("to an IPv6 literal, bracketed in Host only", function()
      serve("::1", 8081, function() return { response("200 OK", nil, "six") } end)
      local res = assert(http.request("http://[::1]:8081/v6"))
      assert.equal("six", res.body)
      assert.equal("[::1]:8081", requests[1].fields.host)
      assert.equal("connect ::1:8081", net.log[1])
    end)

    it("the caller's header fields, Host first, arrays as repeated lines", function()
      serve_ok("")
      assert(http.request{ url = "http://127.0.0.1:8080/", headers = {
        ["X-B"] = "b", ["X-A"] = { "a1", "a2" }, ["Host"] = "virtual.test", ["X-N"] = 42,
        ["User-Agent"] = false } })
      assert.same({ { "Host", "virtual.test" }, { "X-A", "a1" }, { "X-A", "a2" }, { "X-B", "b" },
                    { "X-N", "42" } }, requests[1].headers)
    end)

    it("a string body with its Content-Length; POST without a body says 0", function()
      serve_ok("")
      assert(http.request{ method = "PUT", url = "http://127.0.0.1:8080/x", body = "payload" })
      assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/x" })
      assert(http.request{ method = "DELETE", url = "http://127.0.0.1:8080/x" })
      assert.equal("PUT", requests[1].method)
      assert.equal("7", requests[1].fields["content-length"])
      assert.equal("payload", requests[1].body)
      assert.equal("0", requests[2].fields["content-length"])
      assert.is_nil(requests[3].fields["content-length"])
    end)

    it("a function body chunked, skipping empty pieces", function()
      serve_ok("")
      local pieces = { "one", "", "two", "three" }
      local i = 0
      assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/up", body = function()
        i = i + 1
        return pieces[i]
      end })
      assert.equal("chunked", requests[1].fields["transfer-encoding"])
      assert.is_nil(requests[1].fields["content-length"])
      assert.equal("onetwothree", requests[1].body)
      assert.equal(3, requests[1].chunks)
      assert.equal("", requests[1].rest)
    end)

    it("a function body as it is when the caller gives Content-Length", function()
      serve_ok("")
      local pieces = { "ab", "cd" }
      local i = 0
      assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/up",
        headers = { ["Content-Length"] = "4" }, body = function() i = i + 1 return pieces[i] end })
      assert.is_nil(requests[1].fields["transfer-encoding"])
      assert.equal("abcd", requests[1].body)
      -- and fails when the function disagrees: the connection is closed
      i = 0
      local res, err = http.request{ method = "POST", url = "http://127.0.0.1:8080/up",
        headers = { ["Content-Length"] = 3 }, body = function() i = i + 1 return pieces[i] end }
      assert.is_nil(res)
      assert.equal("body function gave more than Content-Length (3) bytes", err)
      assert.equal("closed", net.conns[#net.conns].state)
    end)

    it("nothing more, and closes, when a body function returns nil, err", function()
      serve_ok("")
      local n = 0
      local res, err = http.request{ method = "POST", url = "http://127.0.0.1:8080/up", body = function()
        n = n + 1
        if n == 1 then return "part" end
        return nil, "ECONNRESET: client closed the connection", "ECONNRESET"
      end }
      assert.is_nil(res)
      assert.equal("body: ECONNRESET: client closed the connection", err)
      assert.equal("closed", net.conns[1].state)
      assert.equal("4\r\npart\r\n", net.conns[1].sent:match("\r\n\r\n(.*)$"))   -- no last chunk
    end)

    it("Connection: close when keepalive is false", function()
      serve_ok("")
      assert(http.request{ url = "http://127.0.0.1:8080/", keepalive = false })
      assert.equal("close", requests[1].fields.connection)
      assert.equal("closed", net.conns[1].state)
    end)

    it("the timeouts to the socket", function()
      serve_ok("")
      assert(http.request{ url = "http://127.0.0.1:8080/", timeout = 2.5 })
      assert.same({ 2.5, 2.5, 2.5 }, net.conns[1].timeouts)
      assert(http.request{ url = "http://127.0.0.1:8080/", timeout = { read = 9 } })
      assert.equal(1, #net.conns)                 -- the pooled connection again
      assert.same({ 60, 60, 9 }, net.conns[1].timeouts)
    end)
  end)

  describe("returns", function()
    it("status, reason, headers (joined; set-cookie a list) and the body", function()
      serve_ok("body!", { "Content-Type: text/plain", "Set-Cookie: a=1", "Vary: A",
                          "Set-Cookie: b=2", "vary: B" })
      local res = assert(http.request("http://127.0.0.1:8080/"))
      assert.equal(200, res.status)
      assert.equal("OK", res.reason)
      assert.equal("body!", res.body)
      assert.equal("text/plain", res.headers["content-type"])
      assert.equal("A, B", res.headers.vary)
      assert.same({ "a=1", "b=2" }, res.headers["set-cookie"])
      assert.same({ "content-type", "text/plain", "set-cookie", "a=1", "vary", "A",
                    "set-cookie", "b=2", "vary", "B", "content-length", "5" }, res.header_list)
      assert.equal("http://127.0.0.1:8080/", res.url)
      assert.is_true(res:close())
    end)

    it("a chunked body de-chunked, a body split over many receives", function()
      serve("127.0.0.1", 8080, function()
        local r = response("200 OK", { "Transfer-Encoding: chunked" }) ..
          "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nT: x\r\n\r\n"
        local bytes = {}
        for i = 1, #r do bytes[i] = r:sub(i, i) end
        return bytes
      end)
      local res = assert(http.request("http://127.0.0.1:8080/"))
      assert.equal("hello world", res.body)
      assert.equal(1, #net:idle("owin.http:127.0.0.1:8080"))
    end)

    it("no body for HEAD, whatever Content-Length says", function()
      serve("127.0.0.1", 8080, function() return { response("200 OK", { "Content-Length: 100" }) } end)
      local res = assert(http.request{ method = "HEAD", url = "http://127.0.0.1:8080/" })
      assert.equal("", res.body)
      assert.equal("100", res.headers["content-length"])
      assert.equal(1, #net:idle("owin.http:127.0.0.1:8080"))
    end)

    it("the final response after 100 Continue", function()
      serve("127.0.0.1", 8080, function()
        return { "HTTP/1.1 100 Continue\r\n\r\n", response("201 Created", nil, "made") }
      end)
      local res = assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/", body = "x",
        headers = { Expect = "100-continue" } })
      assert.equal(201, res.status)
      assert.equal("made", res.body)
    end)
  end)

  describe("pools the connection", function()
    local pool = "owin.http:127.0.0.1:8080"

    it("once the response ended and allowed it, and takes it again", function()
      serve_ok("one")
      assert(http.request("http://127.0.0.1:8080/"))
      assert.equal("idle", net.conns[1].state)
      assert.same({ 60, 30 }, net.conns[1].keepalive)
      assert(http.request{ url = "http://127.0.0.1:8080/", keepalive_timeout = 5, keepalive_pool = 7 })
      assert.equal(1, net.connects)
      assert.equal(1, net.conns[1].reused)
      assert.same({ 5, 7 }, net.conns[1].keepalive)
    end)

    it("never when the response says Connection: close, or HTTP/1.0", function()
      serve("127.0.0.1", 8080, function(req)
        if req.target == "/close" then return { response("200 OK", { "Connection: close" }, "x") } end
        return { "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx" }
      end)
      assert(http.request("http://127.0.0.1:8080/close"))
      assert(http.request("http://127.0.0.1:8080/old"))
      assert.equal("closed", net.conns[1].state)
      assert.equal("closed", net.conns[2].state)
      assert.equal(0, #net:idle(pool))
    end)

    it("never after a body that ended with the connection", function()
      serve("127.0.0.1", 8080, function() return { "HTTP/1.1 200 OK\r\n\r\nuntil", " close", cosocket.CLOSE } end)
      local res = assert(http.request("http://127.0.0.1:8080/"))
      assert.equal("until close", res.body)
      assert.equal("closed", net.conns[1].state)
    end)

    it("never when the server sent more than the response", function()
      serve("127.0.0.1", 8080, function() return { response("200 OK", nil, "x") .. "HTTP/1.1 200 OK\r\n" } end)
      local res = assert(http.request("http://127.0.0.1:8080/"))
      assert.equal("x", res.body)
      assert.equal("closed", net.conns[1].state)
    end)

    it("never after an error", function()
      serve("127.0.0.1", 8080, function()
        return { response("200 OK", { "Content-Length: 10" }), "abc", { err = "timeout" } }
      end)
      local res, err = http.request("http://127.0.0.1:8080/")
      assert.is_nil(res)
      assert.equal("timeout", err)
      assert.equal("closed", net.conns[1].state)
    end)

    it("and sends the request again when a pooled connection turns out closed", function()
      serve_ok("fresh")
      assert(http.request("http://127.0.0.1:8080/"))
      net:drop_idle()
      local res = assert(http.request("http://127.0.0.1:8080/again"))
      assert.equal("fresh", res.body)
      assert.equal(2, net.connects)
      assert.equal("closed", net.conns[1].state)
      -- in send as well
      net:drop_idle("send")
      assert.equal("fresh", assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/p" }).body)
      assert.equal(3, net.connects)
    end)

    it("but not a POST whose request may have reached the server", function()
      serve_ok("fresh")
      assert(http.request("http://127.0.0.1:8080/"))
      net:drop_idle()
      local res, err = http.request{ method = "POST", url = "http://127.0.0.1:8080/", body = "once" }
      assert.is_nil(res)
      assert.equal("closed before the response head", err)
      assert.equal(1, net.connects)
    end)
  end)

  describe("streams the body", function()
    local pool = "owin.http:127.0.0.1:8080"
    local function serve_stream()
      serve("127.0.0.1", 8080, function()
        return { response("200 OK", { "Transfer-Encoding: chunked" }), "6\r\nabcdef\r\n", "3\r\nghi\r\n",
                 "0\r\n\r\n" }
      end)
    end

    it("with read(n), up to n bytes at a time, nil at the end; then the connection is pooled", function()
      serve_stream()
      local res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      assert.equal(200, res.status)
      assert.is_nil(res.body)
      local r = res.body_reader
      assert.equal("abcd", r.read(4))
      assert.equal("ef", r:read(4))
      assert.equal(0, #net:idle(pool))              -- not before the end
      assert.equal("ghi", r.read(100))
      assert.is_nil(r.read(100))
      assert.equal(1, #net:idle(pool))
      assert.is_nil(r:read())
    end)

    it("with chunks()", function()
      serve_stream()
      local res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      local got = {}
      for piece in res.body_reader:chunks() do got[#got + 1] = piece end
      assert.same({ "abcdef", "ghi" }, got)
      got = {}
      serve_stream()
      res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      for piece in res.body_reader.chunks(2) do got[#got + 1] = piece end
      assert.same({ "ab", "cd", "ef", "gh", "i" }, got)
    end)

    it("and close() before the end closes the connection", function()
      serve_stream()
      local res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      assert.equal("a", res.body_reader.read(1))
      assert.is_true(res:close())
      assert.equal("closed", net.conns[1].state)
      assert.same({ nil, "closed" }, { res.body_reader.read(1) })
      assert.is_true(res.close())
    end)

    it("closed at the end of a <close> scope", function()
      serve_stream()
      do
        local res <close> = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
        assert.equal("abc", res.body_reader.read(3))
      end
      assert.equal("closed", net.conns[1].state)
    end)

    it("and reports a broken body from read, raises it from chunks", function()
      serve("127.0.0.1", 8080, function()
        return { response("200 OK", { "Content-Length: 10" }), "abc", cosocket.CLOSE }
      end)
      local res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      assert.equal("abc", res.body_reader.read(10))
      assert.same({ nil, "closed before the end of the body" }, { res.body_reader.read(10) })
      res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      assert.has_error(function()
        for _ in res.body_reader:chunks() do end
      end, "closed before the end of the body")
    end)

    it("refuses a bad byte count", function()
      serve_stream()
      local res = assert(http.request{ url = "http://127.0.0.1:8080/", stream = true })
      assert.has_error(function() res.body_reader.read(0) end,
        "bad argument #1 to 'read' (a byte count >= 1 expected, got 0)")
      assert.has_error(function() res.body_reader:chunks("x") end,
        "bad argument #1 to 'chunks' (a byte count >= 1 expected, got x)")
    end)
  end)

  describe("follows redirects when asked", function()
    local function redirect(status, location)
      return function() return { response(status, { "Location: " .. location }, "moved") } end
    end

    it("not by default", function()
      serve("127.0.0.1", 8080, redirect("302 Found", "/there"))
      local res = assert(http.request("http://127.0.0.1:8080/here"))
      assert.equal(302, res.status)
      assert.equal("/there", res.headers.location)
      assert.equal(1, #requests)
    end)

    it("relative and absolute, keeping the connection of the same origin", function()
      serve("127.0.0.1", 8080, function(req)
        if req.target == "/a/b" then return { response("301 Moved Permanently", { "Location: c/../d?q=1" }, "m") } end
        if req.target == "/a/d?q=1" then return { response("302 Found", { "Location: http://127.0.0.1:8081/e" }) } end
      end)
      serve("127.0.0.1", 8081, function() return { response("200 OK", nil, "end") } end)
      local res = assert(http.request{ url = "http://127.0.0.1:8080/a/b", redirects = 5 })
      assert.equal("end", res.body)
      assert.equal("http://127.0.0.1:8081/e", res.url)
      assert.same({ "/a/b", "/a/d?q=1", "/e" },
        { requests[1].target, requests[2].target, requests[3].target })
      assert.equal(2, net.connects)
      assert.equal("127.0.0.1:8081", requests[3].fields.host)
    end)

    it("303, and 301 and 302 after POST, as GET without the body", function()
      for _, status in ipairs({ "303 See Other", "301 Moved Permanently", "302 Found" }) do
        requests = {}
        serve("127.0.0.1", 8080, function(req)
          if req.target == "/form" then return { response(status, { "Location: /done" }) } end
          return { response("200 OK", nil, req.method) }
        end)
        local res = assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/form", body = "a=1",
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["X-Keep"] = "k" },
          redirects = 1 })
        assert.equal("GET", res.body, status)
        assert.is_nil(requests[2].fields["content-type"])
        assert.is_nil(requests[2].fields["content-length"])
        assert.equal("", requests[2].body)
        assert.equal("k", requests[2].fields["x-keep"])
      end
    end)

    it("307 and 308 with the same method and body", function()
      for _, status in ipairs({ "307 Temporary Redirect", "308 Permanent Redirect" }) do
        requests = {}
        serve("127.0.0.1", 8080, function(req)
          if req.target == "/old" then return { response(status, { "Location: /new" }) } end
          return { response("200 OK", nil, req.method .. " " .. req.body) }
        end)
        local res = assert(http.request{ method = "PUT", url = "http://127.0.0.1:8080/old", body = "data",
          redirects = 1 })
        assert.equal("PUT data", res.body)
      end
    end)

    it("but returns the 307 when the body was a function (it cannot be sent twice)", function()
      serve("127.0.0.1", 8080, redirect("307 Temporary Redirect", "/new"))
      local done = false
      local res = assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/old", redirects = 3,
        body = function() if done then return nil end done = true return "x" end })
      assert.equal(307, res.status)
      assert.equal(1, #requests)
    end)

    it("dropping credentials and a given Host for another origin", function()
      serve("127.0.0.1", 8080, redirect("302 Found", "http://localhost:8080/x"))
      serve("localhost", 8080, function() return { response("200 OK", nil, "") } end)
      assert(http.request{ url = "http://127.0.0.1:8080/", redirects = 1, headers = {
        Authorization = "Bearer t", Cookie = "s=1", Host = "v.test", ["X-Other"] = "o" } })
      assert.equal("Bearer t", requests[1].fields.authorization)
      assert.equal("v.test", requests[1].fields.host)
      assert.is_nil(requests[2].fields.authorization)
      assert.is_nil(requests[2].fields.cookie)
      assert.equal("localhost:8080", requests[2].fields.host)
      assert.equal("o", requests[2].fields["x-other"])
    end)

    it("up to the number asked for", function()
      serve("127.0.0.1", 8080, function(req)
        local n = tonumber(req.target:match("%d+"))
        return { response("302 Found", { "Location: /" .. (n + 1) }, "") }
      end)
      local res, err = http.request{ url = "http://127.0.0.1:8080/0", redirects = 3 }
      assert.is_nil(res)
      assert.equal("too many redirects (more than 3)", err)
      assert.equal(4, #requests)
      assert.equal(1, net.connects)                 -- drained and pooled every time
    end)

    it("to https, on a new connection with a TLS handshake", function()
      serve("127.0.0.1", 8080, redirect("301 Moved Permanently", "https://127.0.0.1/"))
      local res, err = http.request{ url = "http://127.0.0.1:8080/", redirects = 2 }
      assert.is_nil(res)
      assert.equal("connection refused", err)       -- nothing on 443 here
    end)

    it("in stream mode too, draining the bodies it does not return", function()
      serve("127.0.0.1", 8080, function(req)
        if req.target == "/a" then return { response("302 Found", { "Location: /b" }, "skipped body") } end
        return { response("200 OK", nil, "streamed") }
      end)
      local res = assert(http.request{ url = "http://127.0.0.1:8080/a", redirects = 1, stream = true })
      assert.equal("streamed", res.body_reader.read(100))
      assert.equal(1, net.connects)
    end)
  end)

  describe("over TLS", function()
    it("handshakes with verification, SNI and ALPN, pools by TLS settings and resumes", function()
      local function serve_tls(port)
        local function replies() return { response("200 OK", nil, "secret") } end
        net:listen("127.0.0.1", port, function(raw, conn)
          requests[#requests + 1] = parse_request(raw)
          return replies(raw, conn)
        end, true)
      end
      serve_tls(443)
      local res = assert(http.request("https://127.0.0.1/x"))
      assert.equal("secret", res.body)
      assert.equal("127.0.0.1", requests[1].fields.host)   -- 443 is the default port
      local hs = net.handshakes[1]
      assert.same({ server_name = "127.0.0.1", verify = true, alpn = { "http/1.1" } },
        { server_name = hs.server_name, verify = hs.verify, alpn = hs.alpn })
      assert.is_nil(hs.reused_session)
      -- the pooled connection is taken again: no second handshake
      assert(http.request("https://127.0.0.1/y"))
      assert.equal(1, #net.handshakes)
      assert.equal(1, net.connects)
      -- other TLS settings: another pool, a new connection that resumes
      assert(http.request{ url = "https://127.0.0.1/z", verify = false })
      assert.equal(2, #net.handshakes)
      assert.is_false(net.handshakes[2].verify)
      assert.equal(2, net.connects)
      net:drop_idle()
      assert(http.request{ url = "https://127.0.0.1/w", cafile = "/etc/ca.pem" })
      assert.equal("/etc/ca.pem", net.handshakes[3].cafile)
      serve_tls(8443)
      assert(http.request("https://127.0.0.1:8443/"))
      assert.equal("127.0.0.1:8443", requests[#requests].fields.host)
    end)

    it("raises on bad TLS options", function()
      assert.has_error(function() http.request{ url = "https://127.0.0.1/", verify = "no" } end,
        "bad argument #1 to 'request' (verify must be a boolean, got string)")
      assert.has_error(function() http.request{ url = "https://127.0.0.1/", key = "k.pem" } end,
        "bad argument #1 to 'request' (key without cert)")
    end)
  end)

  describe("fails with nil, err", function()
    it("for https to a server that does not speak TLS", function()
      assert.same({ nil, "connection refused" }, { http.request("https://127.0.0.1/") })
      serve("127.0.0.1", 443, function() return { response("200 OK", nil, "plain") } end)
      local res, err = http.request("https://127.0.0.1/")
      assert.is_nil(res)
      assert.matches("^wrong version number", err)
    end)

    it("with the socket's errors", function()
      assert.same({ nil, "connection refused" }, { http.request("http://127.0.0.1:9/") })
      serve("127.0.0.1", 8080, function() return { { err = "timeout" } } end)
      assert.same({ nil, "timeout" }, { http.request("http://127.0.0.1:8080/") })
      assert.equal("closed", net.conns[1].state)
    end)

    it("with the parser's errors", function()
      serve("127.0.0.1", 8080, function(req)
        if req.target == "/bad" then return { "HTTP/1.1 200 OK\nX: y\r\n\r\n" } end
        if req.target == "/big" then return { response("200 OK", nil, string.rep("x", 100)) } end
        if req.target == "/head" then return { response("200 OK", { "X-Pad: " .. string.rep("p", 200) }, "") } end
        return { cosocket.CLOSE }
      end)
      assert.same({ nil, "invalid response: bare LF in the head" }, { http.request("http://127.0.0.1:8080/bad") })
      assert.same({ nil, "response body too large" },
        { http.request{ url = "http://127.0.0.1:8080/big", max_body = 99 } })
      assert.equal(100, #assert(http.request{ url = "http://127.0.0.1:8080/big", max_body = 100 }).body)
      assert.same({ nil, "response head too large" },
        { http.request{ url = "http://127.0.0.1:8080/head", max_header_bytes = 200 } })
      assert.same({ nil, "closed before the response head" }, { http.request("http://127.0.0.1:8080/gone") })
    end)

    it("for a 101 it did not ask for", function()
      serve("127.0.0.1", 8080, function()
        return { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" }
      end)
      assert.same({ nil, "the server switched protocols (101): owin.http does not upgrade connections" },
        { http.request("http://127.0.0.1:8080/") })
      assert.equal("closed", net.conns[1].state)
    end)

    it("but returns an answer the server gave before it stopped reading the body", function()
      -- the server answers whatever it got of the request
      net:listen("127.0.0.1", 8080, function() return { response("413 Content Too Large", nil, "too big") } end)
      local sent = 0
      local res = assert(http.request{ method = "POST", url = "http://127.0.0.1:8080/", body = function()
        sent = sent + 1
        if sent == 2 then net.conns[1].send_error = "closed" end
        if sent > 3 then return nil end
        return "chunk"
      end })
      assert.equal(413, res.status)
      assert.equal("too big", res.body)
      assert.equal("closed", net.conns[1].state)
    end)
  end)

  describe("raises on misuse, naming the argument", function()
    local bad = {
      { nil, "table or URL string expected, got nil" },
      { { url = 1 }, "url must be a string, got number" },
      { "127.0.0.1/x", "url must be absolute: http://host[:port]/path, got \"127.0.0.1/x\"" },
      { "ftp://h/", "unsupported URL scheme \"ftp\"" },
      { "http:///x", "url: bad or missing host in \"http:///x\"" },
      { "http://h:0/", "url: bad port in \"http://h:0/\"" },
      { "http://h:65536/", "url: bad port in \"http://h:65536/\"" },
      { "http://h:x/", "url: bad port in \"http://h:x/\"" },
      { "http://[::1/", "url: bad IPv6 literal in \"[::1\"" },
      { "http://[127.0.0.1]/", "url: bad IPv6 literal in \"[127.0.0.1]\"" },
      { "http://u:p@h/", "url: user:password@ is not supported (send an Authorization header)" },
      { "http://h/a b",
        "url: the path or query has a space, a control or a non-ASCII byte (percent-encode it): \"http://h/a b\"" },
      { { url = "http://h/", method = "G T" }, "method must be a token such as \"GET\", got \"G T\"" },
      { { url = "http://h/", method = "CONNECT" }, "CONNECT is not supported" },
      { { url = "http://h/", body = 5 }, "body must be a string or a function, got number" },
      { { url = "http://h/", headers = "x" }, "headers must be a table, got string" },
      { { url = "http://h/", headers = { ["X Y"] = "1" } }, "header name \"X Y\" is not a token" },
      { { url = "http://h/", headers = { X = "a\r\nInjected: 1" } },
        "header X has a CR, LF or control byte in its value" },
      { { url = "http://h/", headers = { X = { "a", {} } } }, "header X: element 2 is a table, not a string" },
      { { url = "http://h/", headers = { X = true } },
        "header X must be a string, a number, an array of them or false, got boolean" },
      { { url = "http://h/", headers = { ["Transfer-Encoding"] = "chunked" } },
        "Transfer-Encoding is set by owin.http, from body" },
      { { url = "http://h/", headers = { Host = false } }, "Host must be a string" },
      { { url = "http://h/", headers = { ["Content-Length"] = "5" }, body = "abc" },
        "Content-Length is 5 but body has 3 bytes" },
      { { url = "http://h/", headers = { ["Content-Length"] = "x" }, body = "abc" },
        "Content-Length must be digits, got x" },
      { { url = "http://h/", headers = { ["Content-Length"] = 2 } }, "Content-Length is 2 but there is no body" },
      { { url = "http://h/", timeout = 0 }, "timeout must be a number of seconds > 0, got 0" },
      { { url = "http://h/", timeout = { read = -1 } }, "timeout.read must be a number of seconds > 0, got -1" },
      { { url = "http://h/", redirects = 1.5 }, "redirects must be an integer >= 0, got 1.5" },
      { { url = "http://h/", max_body = -1 }, "max_body must be an integer >= 0, got -1" },
      { { url = "http://h/", keepalive_pool = 0 }, "keepalive_pool must be an integer >= 1, got 0" },
      { { url = "http://h/", keepalive = "yes" }, "keepalive must be a boolean, got string" },
      { { url = "http://h/", stream = 1 }, "stream must be a boolean, got number" },
    }
    for _, c in ipairs(bad) do
      it(c[2], function()
        local ok, err = pcall(http.request, c[1])
        assert.is_false(ok)
        assert.equal("bad argument #1 to 'request' (" .. c[2] .. ")", err)
      end)
    end

    it("at the caller's line", function()
      local ok, err = pcall(function() http.request("nope") end)   -- this line
      assert.is_false(ok)
      assert.matches("http_client_spec%.lua:%d+: bad argument #1 to 'request'", err)
    end)

    it("from a body function, after closing the connection", function()
      serve_ok("")
      assert.has_error(function()
        http.request{ method = "POST", url = "http://127.0.0.1:8080/", body = function() error("boom", 0) end }
      end, "boom")
      assert.equal("closed", net.conns[1].state)
      assert.has_error(function()
        http.request{ method = "POST", url = "http://127.0.0.1:8080/", body = function() return 7 end }
      end, "bad argument #1 to 'request' (body function returned a number, string or nil expected)")
    end)

    it("outside the server (no owin.tcp)", function()
      owin.tcp = nil
      assert.has_error(function() http.request("http://127.0.0.1/") end,
        "owin.http needs the owinlua server (owin.tcp and owin.core)")
    end)
  end)
end)
