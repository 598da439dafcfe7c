-- The HTTP client's response parser (src/codec/http_resp.c, through the
-- binding of src/client/httpc.c) against RFC 9112, through the owl_codec
-- test module.
--
--   make build/owl_codec.so && busted --lua=lua5.4 spec/unit/http_resp_spec.lua
local codec = require("owl_codec")

-- Feeds the strings of `pieces` to one parser (opts as for
-- http_response_parser), then reports the end of the connection when
-- `eof` is set.  Returns what came out, in one table:
--   { status, reason, version, headers (flat), body, done, keepalive, extra }
-- or { err = message } when a call failed.
local function parse(pieces, opts, eof)
  local p = codec.http_response_parser(opts)
  local r = { body = "", done = false, heads = 0 }
  local function take(events)
    for _, e in ipairs(events) do
      if e.type == "head" then
        r.heads = r.heads + 1
        r.status, r.reason, r.version, r.headers = e.status, e.reason, e.version, e.headers
      elseif e.type == "body" then
        assert.is_false(r.done, "body after done")
        assert.is_true(#e.data > 0, "an empty body event")
        r.body = r.body .. e.data
      elseif e.type == "done" then
        assert.is_false(r.done, "done twice")
        r.done, r.keepalive, r.extra = true, e.keepalive, e.extra
      else
        error("unknown event " .. tostring(e.type))
      end
    end
  end
  local after = 0                          -- bytes fed after the end
  for _, s in ipairs(pieces) do
    if r.done then
      assert.same({}, p:feed(s), "events after done")
      after = after + #s
    else
      local events, err = p:feed(s)
      if not events then return { err = err } end
      take(events)
    end
  end
  if eof then
    local events, err = p:eof()
    if not events then return { err = err } end
    take(events)
  end
  if r.done then
    r.extra = r.extra + after
    r.keepalive = r.keepalive and r.extra == 0
  end
  assert.is_true(r.heads <= 1, "more than one head")
  r.heads = nil
  return r
end

local function parse1(s, opts, eof)
  return parse({ s }, opts, eof)
end

-- Every way of cutting s into two reads, and one byte a read, give what
-- one read gives.  Returns that.
local function every_split(s, opts, eof)
  local whole = parse1(s, opts, eof)
  for i = 1, #s - 1 do
    assert.same(whole, parse({ s:sub(1, i), s:sub(i + 1) }, opts, eof), "split at " .. i)
  end
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  assert.same(whole, parse(bytes, opts, eof), "one byte a read")
  return whole
end

local OK = "HTTP/1.1 200 OK\r\n"

describe("#unit http response parser", function()
  describe("frames the body", function()
    it("by Content-Length, in any split", function()
      local r = every_split(OK .. "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world")
      assert.equal(200, r.status)
      assert.equal("OK", r.reason)
      assert.equal("1.1", r.version)
      assert.same({ "content-type", "text/plain", "content-length", "11" }, r.headers)
      assert.equal("hello world", r.body)
      assert.is_true(r.done)
      assert.is_true(r.keepalive)
      assert.equal(0, r.extra)
    end)

    it("stops at the end of the message and counts what follows", function()
      local r = parse1(OK .. "Content-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n")
      assert.equal("hi", r.body)
      assert.is_true(r.done)
      assert.equal(19, r.extra)
      assert.is_false(r.keepalive)          -- the server said more than it was asked
      r = parse({ OK .. "Content-Length: 2\r\n\r\nhi", "more" })
      assert.equal(4, r.extra)
    end)

    it("with Content-Length: 0 ends at the head", function()
      local r = every_split(OK .. "Content-Length: 0\r\n\r\n")
      assert.equal("", r.body)
      assert.is_true(r.done)
      assert.is_true(r.keepalive)
    end)

    it("de-chunks a chunked body, with extensions and trailers, in any split", function()
      local r = every_split(OK .. "Transfer-Encoding: chunked\r\n\r\n" ..
        "4;a=1;b=\"x y\"\r\nwiki\r\n5 ; c\r\npedia\r\nB\r\n in\r\nchunks\r\n0\r\nX-Trailer: v\r\n\r\n")
      assert.equal("wikipedia in\r\nchunks", r.body)
      assert.is_true(r.done)
      assert.is_true(r.keepalive)
      assert.same({ "transfer-encoding", "chunked" }, r.headers)   -- trailers are dropped
    end)

    it("reads until the close when nothing frames the body", function()
      local r = every_split(OK .. "Server: x\r\n\r\nuntil the end", nil, true)
      assert.equal("until the end", r.body)
      assert.is_true(r.done)
      assert.is_false(r.keepalive)
      -- the close is what ends it: no done before
      r = parse1(OK .. "\r\nsome")
      assert.equal("some", r.body)
      assert.is_false(r.done)
      -- an empty body that ends with the close
      r = parse1(OK .. "\r\n", nil, true)
      assert.equal("", r.body)
      assert.is_true(r.done)
    end)

    it("takes a huge Content-Length and counts it down", function()
      local r = parse1(OK .. "Content-Length: 18446744073709551615\r\n\r\nabc")
      assert.equal("abc", r.body)
      assert.is_false(r.done)
    end)
  end)

  describe("knows the responses that have no body", function()
    it("the answer to HEAD, whatever its header fields say", function()
      for _, fields in ipairs({ "Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n", "" }) do
        local s = OK .. fields .. "\r\n"
        local r = every_split(s, { method = "HEAD" })
        assert.equal("", r.body)
        assert.is_true(r.done, fields)
        assert.equal(0, r.extra)
        -- the same bytes as the answer to GET wait for a body
        assert.is_false(parse1(s).done)
      end
      -- what follows the head is not a body
      local r = parse1(OK .. "Content-Length: 5\r\n\r\nhello", { method = "HEAD" })
      assert.equal("", r.body)
      assert.equal(5, r.extra)
    end)

    it("204 and 304", function()
      local r = every_split("HTTP/1.1 204 No Content\r\n\r\n")
      assert.equal(204, r.status)
      assert.is_true(r.done)
      assert.is_true(r.keepalive)
      r = every_split("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n")
      assert.equal(304, r.status)
      assert.equal("", r.body)
      assert.is_true(r.done)
      assert.same({ "content-length", "100", "etag", "\"x\"" }, r.headers)
    end)

    it("skips 1xx interim responses and reports the final one", function()
      local s = "HTTP/1.1 100 Continue\r\n\r\n" ..
                "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" ..
                "HTTP/1.1 102 Processing\r\n\r\n" ..
                "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew"
      local r = every_split(s)
      assert.equal(201, r.status)
      assert.equal("Created", r.reason)
      assert.same({ "content-length", "3" }, r.headers)
      assert.equal("new", r.body)
      assert.is_true(r.done)
    end)

    it("takes 101 as final: no body, and the rest is not HTTP", function()
      local r = every_split("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
        "Connection: Upgrade\r\n\r\n\129\5hello")
      assert.equal(101, r.status)
      assert.is_true(r.done)
      assert.is_false(r.keepalive)
      assert.equal(7, r.extra)
    end)
  end)

  describe("decides keep-alive", function()
    local cases = {
      { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true },
      { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.1 200 OK\r\nConnection: x, close\t\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", true },
      { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true },
    }
    for _, c in ipairs(cases) do
      it(string.format("%q", c[1]:match("^[^\r]*\r\n(.-)\r\n\r\n")), function()
        local r = parse1(c[1])
        assert.is_true(r.done)
        assert.equal(c[2], r.keepalive)
      end)
    end
  end)

  describe("reports header fields", function()
    it("names lowercased, values trimmed, repeated lines kept in order", function()
      local r = every_split(OK .. "Set-Cookie: a=1\r\nX-Empty:\r\nX-Ws: \t padded \t \r\n" ..
        "SET-COOKIE: b=2; Path=/\r\nX-Inner:  a  b  \r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n")
      assert.same({ "set-cookie", "a=1", "x-empty", "", "x-ws", "padded", "set-cookie", "b=2; Path=/",
                    "x-inner", "a  b", "x-obs", "caf\xc3\xa9", "content-length", "0" }, r.headers)
    end)

    it("keeps the reason phrase as sent, and takes a status line without one", function()
      assert.equal("Not Found  here", parse1("HTTP/1.1 404 Not Found  here\r\n\r\n").reason)
      local r = every_split("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
      assert.equal(200, r.status)
      assert.equal("", r.reason)
      assert.equal("", parse1("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason)
    end)

    it("reads HTTP/1.0", function()
      local r = parse1("HTTP/1.0 200 OK\r\n\r\nold", nil, true)
      assert.equal("1.0", r.version)
      assert.equal("old", r.body)
    end)
  end)

  describe("holds its limits", function()
    local head = OK .. "Content-Length: 2\r\nX-Pad: " .. string.rep("p", 40) .. "\r\n\r\n"

    it("max_header_bytes counts the head's bytes, in any split", function()
      local r = every_split(head .. "hi", { max_header_bytes = #head })
      assert.equal("hi", r.body)
      assert.same({ err = "response head too large" },
        every_split(head .. "hi", { max_header_bytes = #head - 1 }))
    end)

    it("max_header_bytes counts the interim heads too", function()
      local interim = "HTTP/1.1 100 Continue\r\n\r\n"
      assert.is_true(parse1(interim .. head, { max_header_bytes = #interim + #head }).status == 200)
      assert.same({ err = "response head too large" },
        every_split(interim .. head, { max_header_bytes = #interim + #head - 1 }))
      -- a stream of interim heads ends at the limit
      assert.same({ err = "response head too large" },
        parse1(string.rep(interim, 1000), { max_header_bytes = 4096 }))
    end)

    it("refuses a head that never ends, at the limit", function()
      local p = codec.http_response_parser({ max_header_bytes = 100 })
      assert.is_table(p:feed(OK .. "X: "))
      local events, err = p:feed(string.rep("x", 200))
      assert.is_nil(events)
      assert.equal("response head too large", err)
      -- as soon as the limit is reached, not at the next read (which
      -- might never come)
      p = codec.http_response_parser({ max_header_bytes = 100 })
      events, err = p:feed((OK .. "X: " .. string.rep("x", 100)):sub(1, 100))
      assert.is_nil(events)
      assert.equal("response head too large", err)
    end)

    it("max_headers counts the header lines", function()
      local lines = {}
      for i = 1, 5 do lines[i] = "X-" .. i .. ": " .. i .. "\r\n" end
      local s = OK .. table.concat(lines) .. "\r\n"
      assert.equal(10, #parse1(s, { max_headers = 5 }).headers)
      assert.same({ err = "too many response header lines" }, every_split(s, { max_headers = 4 }))
    end)

    it("has defaults: 64 KiB of head, 200 lines", function()
      local lines = {}
      for i = 1, 200 do lines[i] = "X: y\r\n" end
      assert.equal(400, #parse1(OK .. table.concat(lines) .. "\r\n").headers)
      assert.same({ err = "too many response header lines" },
        parse1(OK .. table.concat(lines) .. "X: y\r\n\r\n"))
      local big = OK .. "X: " .. string.rep("a", 65536 - #OK - 7) .. "\r\n\r\n"
      assert.equal(65536, #big)
      assert.equal(200, parse1(big).status)
      assert.same({ err = "response head too large" }, parse1(OK .. "X: " .. string.rep("a", 65536) .. "\r\n\r\n"))
    end)

    it("max_body: a Content-Length over it fails at the head", function()
      local r = parse1(OK .. "Content-Length: 11\r\n\r\n", { max_body = 10 })
      assert.same({ err = "response body too large" }, r)
      assert.equal("0123456789", parse1(OK .. "Content-Length: 10\r\n\r\n0123456789", { max_body = 10 }).body)
    end)

    it("max_body: a chunked or until-close body fails once it passes it", function()
      local chunked = OK .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
      assert.equal("hello world", every_split(chunked, { max_body = 11 }).body)
      assert.same({ err = "response body too large" }, every_split(chunked, { max_body = 10 }))
      local close = OK .. "\r\nhello world"
      assert.equal("hello world", every_split(close, { max_body = 11 }, true).body)
      assert.same({ err = "response body too large" }, every_split(close, { max_body = 10 }, true))
    end)

    it("refuses bad options, naming them", function()
      assert.has_error(function() codec.http_response_parser({ max_body = -1 }) end,
        "bad argument #1 to 'http_response_parser' (max_body must be a non-negative integer)")
      assert.has_error(function() codec.http_response_parser({ max_headers = "x" }) end,
        "bad argument #1 to 'http_response_parser' (max_headers must be a non-negative integer)")
      assert.has_error(function() codec.http_response_parser({ method = 1 }) end,
        "bad argument #1 to 'http_response_parser' (method must be a string)")
      assert.has_error(function() codec.http_response_parser("GET") end)
    end)
  end)

  describe("the end of the connection", function()
    it("before anything came", function()
      local p = codec.http_response_parser()
      local events, err = p:eof()
      assert.is_nil(events)
      assert.equal("closed before the response head", err)
    end)

    it("inside the head", function()
      assert.same({ err = "closed before the response head" }, parse1(OK .. "Content-Le", nil, true))
      assert.same({ err = "closed before the response head" },
        parse1("HTTP/1.1 100 Continue\r\n\r\n", nil, true))
    end)

    it("inside a body of known length", function()
      assert.same({ err = "closed before the end of the body" },
        every_split(OK .. "Content-Length: 5\r\n\r\nabc", nil, true))
      assert.same({ err = "closed before the end of the body" },
        every_split(OK .. "Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", nil, true))
    end)

    it("after the end changes nothing", function()
      local r = parse1(OK .. "Content-Length: 1\r\n\r\nx", nil, true)
      assert.is_true(r.done)
      assert.is_true(r.keepalive)
    end)
  end)

  it("keeps failing with the same error once failed", function()
    local p = codec.http_response_parser()
    local events, err = p:feed("HTTP/1.1 200 OK\nX: y\r\n\r\n")
    assert.is_nil(events)
    assert.equal("invalid response: bare LF in the head", err)
    assert.same({ nil, err }, { p:feed(OK .. "\r\n") })
    assert.same({ nil, err }, { p:eof() })
    assert.is_false(p:done())
  end)

  it("says when it is done, and takes nothing after", function()
    local p = codec.http_response_parser()
    assert.is_false(p:done())
    local events = p:feed(OK .. "Content-Length: 1\r\n\r\nx")
    assert.equal("done", events[#events].type)
    assert.is_true(p:done())
    assert.same({}, p:feed("more"))
    assert.same({}, p:eof())
    assert.matches("^http response parser %(done%)", tostring(p))
  end)

  describe("refuses what RFC 9112 forbids", function()
    local bad = {
      -- the status line
      { "HTTP/1.1 20 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "HTTP/1.1 2000 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "HTTP/1.1 0200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "HTTP/1.1  200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "HTTP/1.1 200OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "http/1.1 200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "RTSP/1.0 200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "ICE/1.0 200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "\r\nHTTP/1.1 200 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
      { "HTTP/1.1 099 Low\r\n\r\n", "invalid response: status code not in 100..599" },
      { "HTTP/1.1 600 High\r\n\r\n", "invalid response: status code not in 100..599" },
      { "HTTP/2.0 200 OK\r\n\r\n", "invalid response: HTTP version is not 1.0 or 1.1" },
      { "HTTP/0.9 200 OK\r\n\r\n", "invalid response: HTTP version is not 1.0 or 1.1" },
      { "HTTP/1.2 200 OK\r\n\r\n", "invalid response: HTTP version is not 1.0 or 1.1" },
      { "HTTP/1.1 200 O\1K\r\n\r\n", "invalid response: control character in the reason phrase" },
      { "HTTP/1.1 200 O\127K\r\n\r\n", "invalid response: control character in the reason phrase" },
      -- line endings
      { "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "invalid response: bare LF in the head" },
      { OK .. "Content-Length: 0\n\r\n", "invalid response: bare LF in the head" },
      { OK .. "Content-Length: 0\r\n\n", "invalid response: bare LF in the head" },
      { "HTTP/1.1 200 O\rK\r\n\r\n", "invalid response: bare CR in the head" },
      { OK .. "X: a\rb\r\n\r\n", "invalid response: bare CR in the head" },
      { OK .. "X: a\r\r\n\r\n", "invalid response: bare CR in the head" },
      { OK .. "\r\r\n", "invalid response: bare CR in the head" },
      -- the first fault in the bytes is the one reported
      { "HTTP/1.1 200 OK\r\vX: a\r\n b\r\n\r\n", "invalid response: bare CR in the head" },
      { "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nY: a\rb\r\n\r\n",
        "invalid response: obs-fold (a header line starting with whitespace)" },
      -- header lines
      { OK .. "X: a\r\n b\r\n\r\n", "invalid response: obs-fold (a header line starting with whitespace)" },
      { OK .. "X: a\r\n\tb\r\n\r\n", "invalid response: obs-fold (a header line starting with whitespace)" },
      { OK .. " X: a\r\n\r\n", "invalid response: obs-fold (a header line starting with whitespace)" },
      { OK .. "X : a\r\n\r\n", "invalid response: invalid header name" },
      { OK .. "X\t: a\r\n\r\n", "invalid response: invalid header name" },
      { OK .. "X(y): a\r\n\r\n", "invalid response: invalid header name" },
      { OK .. "Caf\xc3\xa9: a\r\n\r\n", "invalid response: invalid header name" },
      { OK .. ": a\r\n\r\n", "invalid response: empty header name" },
      { OK .. "X\r\n\r\n", "invalid response: invalid header name" },
      { OK .. "X: a\0b\r\n\r\n", "invalid response: invalid character in a header value" },
      { OK .. "X: a\1b\r\n\r\n", "invalid response: invalid character in a header value" },
      { OK .. "X: a\127b\r\n\r\n", "invalid response: invalid character in a header value" },
      -- framing
      { OK .. "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", "invalid response: Content-Length given twice" },
      { OK .. "Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi", "invalid response: Content-Length given twice" },
      { OK .. "Content-Length: 2, 2\r\n\r\nhi", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: -1\r\n\r\n", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: +1\r\n\r\nx", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: 0x10\r\n\r\n", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: 1 2\r\n\r\n", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: 18446744073709551616\r\n\r\n", "invalid response: invalid Content-Length" },
      { OK .. "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        "invalid response: Content-Length together with Transfer-Encoding" },
      { OK .. "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        "invalid response: Content-Length together with Transfer-Encoding" },
      { OK .. "Transfer-Encoding: gzip\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding: gzip, chunked\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding: chunked, gzip\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding: chunked, chunked\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding: chunked;q=1\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { OK .. "Transfer-Encoding:\r\n\r\n", "invalid response: a transfer coding other than chunked" },
      { "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "invalid response: Transfer-Encoding in an HTTP/1.0 response" },
      -- chunked bodies (chunked.c)
      { OK .. "Transfer-Encoding: chunked\r\n\r\nz\r\n", "invalid response: malformed chunked body" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", "invalid response: malformed chunked body" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", "invalid response: malformed chunked body" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", "invalid response: malformed chunked body" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", "invalid response: malformed chunked body" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", "invalid response: malformed chunked body" },
      -- in an interim response too
      { "HTTP/1.1 100 Continue\r\nX: a\r\n b\r\n\r\n" .. OK .. "\r\n",
        "invalid response: obs-fold (a header line starting with whitespace)" },
      { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2 OK\r\n\r\n", "invalid response: not an HTTP/1.x status line" },
    }
    for _, c in ipairs(bad) do
      it(string.format("%q", c[1]), function()
        assert.same({ err = c[2] }, every_split(c[1]))
      end)
    end
  end)
end)
