-- Bodies both ways: framing, Content-Length, flush, back-pressure, waits
-- that yield instead of blocking other requests.
local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

describe("#e2e response framing", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("gives a small response a Content-Length", function()
    local res = http.get(srv.port, "/big?size=1000")
    assert.equal("1000", res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal(string.rep("b", 1000), res.body)
  end)

  it("streams a long response chunked (HTTP/1.1)", function()
    local res = http.get(srv.port, "/stream?n=100&size=1000")
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.is_nil(res.headers["content-length"])
    assert.equal(100000, #res.body)
    local one = http.get(srv.port, "/big?size=200000")
    assert.equal("chunked", one.headers["transfer-encoding"])
    assert.equal(200000, #one.body)
  end)

  it("ends a long response to HTTP/1.0 by closing the connection", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /stream?n=50&size=1000 HTTP/1.0\r\n\r\n")
    local res = assert(c:read_response())
    assert.is_nil(res.headers["transfer-encoding"])
    assert.is_true(res.until_close)
    assert.equal(50000, #res.body)
    c:close()
  end)

  it("keeps an HTTP/1.0 connection alive when asked and the length is known", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /big?size=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    local res = assert(c:read_response())
    assert.equal("keep-alive", res.headers["connection"]:lower())
    assert.equal("bbbbbbbbbb", res.body)
    c:send("GET /big?size=3 HTTP/1.0\r\n\r\n")
    res = assert(c:read_response())
    assert.equal("bbb", res.body)
    assert.is_true(c:is_closed())
  end)

  it("holds the app to its own Content-Length", function()
    local ok = http.get(srv.port, "/cl?declared=5&actual=5")
    assert.equal(200, ok.status)
    assert.equal("yyyyy", ok.body)
    local long = http.get(srv.port, "/cl?declared=5&actual=6")
    assert.equal(500, long.status)
    local short = http.get(srv.port, "/cl?declared=5&actual=4")
    assert.equal(500, short.status)
    assert.matches("exceeds its Content%-Length", srv:stderr())
    assert.matches("shorter than its Content%-Length", srv:stderr())
  end)

  it("cuts the connection when a declared length cannot be met after bytes went out", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /cl?declared=100&flush=10&actual=5 HTTP/1.1\r\nHost: h\r\n\r\n")
    local res, err = c:read_response()
    assert.is_nil(res)
    assert.matches("body", err)
    assert.is_true(c:is_closed())
  end)

  it("sends no body for HEAD, 204 and 304, with the GET headers for HEAD", function()
    local get = http.get(srv.port, "/big?size=10")
    local c = assert(http.connect(srv.port))
    c:send("HEAD /big?size=10 HTTP/1.1\r\nHost: h\r\n\r\nGET /status?code=204&body=x HTTP/1.1\r\nHost: h\r\n\r\n" ..
           "GET /status?code=304&body=x HTTP/1.1\r\nHost: h\r\n\r\nGET /big?size=2 HTTP/1.1\r\nHost: h\r\n\r\n")
    local head = assert(c:read_response({ method = "HEAD" }))
    assert.equal(get.headers["content-length"], head.headers["content-length"])
    local no = assert(c:read_response())
    assert.equal(204, no.status)
    assert.is_nil(no.headers["content-length"])
    local nm = assert(c:read_response())
    assert.equal(304, nm.status)
    local last = assert(c:read_response())
    assert.equal("bb", last.body)         -- nothing stray was sent before it
    c:close()
  end)

  it("sends headers on an empty flush", function()
    local res = http.get(srv.port, "/flush-empty")
    assert.equal("after flush", res.body)
    assert.equal("chunked", res.headers["transfer-encoding"])
  end)

  it("delivers each flushed event before the next one is written (SSE)", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /sse HTTP/1.1\r\nHost: h\r\n\r\n")
    local t0 = socket.gettime()
    local line = c:read_line()
    assert.equal("HTTP/1.1 200 OK", line)
    repeat line = c:read_line() until line == ""
    local size = c:read_line()
    local first = c:read_exact(tonumber(size, 16))
    assert.equal("data: 1\n\n", first)
    assert.is_true(socket.gettime() - t0 < 0.25, "first event came late")
    c:close()
  end)
end)

describe("#e2e request bodies", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua", { "--max-body", "64m" }) end)
  teardown(function() assert.is_true(srv:stop()) end)

  local function post(path, body, headers)
    local c = assert(http.connect(srv.port))
    c:send("POST " .. path .. " HTTP/1.1\r\nHost: h\r\nContent-Length: " .. #body ..
           "\r\n" .. (headers or "") .. "\r\n")
    c:send(body)
    local res = assert(c:read_response())
    c:close()
    return res
  end

  it("reads in pieces, then nil at the end", function()
    assert.equal("abc|def|g|END nil nil", post("/read?n=3", "abcdefg").body)
    assert.equal("END nil nil", post("/read?n=3", "").body)
  end)

  it("reads everything with read('a'), then nil", function()
    assert.equal("5:hello:nil", post("/readall", "hello").body)
  end)

  it("reads a chunked request body", function()
    local c = assert(http.connect(srv.port))
    c:send("POST /readall HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" ..
           "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert.equal("5:abcde:nil", assert(c:read_response()).body)
    c:close()
  end)

  it("streams a large upload through chunks() with a bounded buffer", function()
    local piece = string.rep("0123456789abcdef", 4096)  -- 64 KiB
    local c = assert(http.connect(srv.port))
    local total = 8 * 1024 * 1024
    c:send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: " .. total .. "\r\n\r\n")
    for _ = 1, total // #piece do assert(c:send(piece)) end
    local res = assert(c:read_response())
    assert.equal(tostring(total), res.body:match("^(%d+)"))
    c:close()
  end)

  it("sends 100 Continue when the app first reads an expecting request", function()
    local c = assert(http.connect(srv.port))
    c:send("POST /readall HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    local interim = assert(c:read_response())
    assert.equal(100, interim.status)
    c:send("hello")
    local final = assert(c:read_response())
    assert.equal("5:hello:nil", final.body)
    c:close()
  end)

  it("answers without 100 when the app does not read, and closes", function()
    local c = assert(http.connect(srv.port))
    c:send("POST /big?size=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    local res = assert(c:read_response())
    assert.equal(200, res.status)
    assert.equal("bb", res.body)
    assert.equal("close", res.headers["connection"])
    c:close()
  end)

  it("lets a slow upload wait without blocking other requests", function()
    local slow = assert(http.connect(srv.port))
    slow:send("POST /readall HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    local t0 = socket.gettime()
    local res = http.get(srv.port, "/big?size=1")
    assert.equal("b", res.body)
    assert.is_true(socket.gettime() - t0 < 0.5)
    slow:send("defghij")
    assert.equal("10:abcdefghij:nil", assert(slow:read_response()).body)
    slow:close()
  end)
end)

describe("#e2e waits yield the request's coroutine", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("serves sleeping requests concurrently", function()
    local conns = {}
    local t0 = socket.gettime()
    for i = 1, 5 do
      conns[i] = assert(http.connect(srv.port))
      conns[i]:send("GET /sleep?s=0.5 HTTP/1.1\r\nHost: h\r\n\r\n")
    end
    for i = 1, 5 do
      local res = assert(conns[i]:read_response())
      assert.matches("^slept 0%.5", res.body)
      conns[i]:close()
    end
    assert.is_true(socket.gettime() - t0 < 1.2, "sleeps ran one after another")
  end)
end)
