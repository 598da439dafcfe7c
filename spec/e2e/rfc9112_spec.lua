-- HTTP/1.1 conformance of the real owinlua binary, from RFC 9112 (message
-- syntax and framing) and RFC 9110 where it governs (methods, HEAD, 1xx, 204,
-- 304, Date, Host), plus the limits and faults docs/http.md names.
--
-- Written from the RFCs and the contract only. Every request is raw bytes on a
-- real socket; every answer is checked for its exact status, that the app was
-- (or was not) reached, and whether the connection stays open.
--
--   busted --lua=lua5.4 spec/e2e/rfc9112_spec.lua
--   busted --lua=lua5.4 -t conformance spec/e2e

local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

local ECHO = "spec/fixtures/conformance_echo.lua"
local NOREAD = "spec/fixtures/conformance_noread.lua"
local STATUS = "spec/fixtures/conformance_status.lua"
local STREAM = "spec/fixtures/conformance_stream.lua"
local FAULTS = "spec/fixtures/conformance_faults.lua"
local PASSTHROUGH = "spec/fixtures/conformance_passthrough.lua"

-- Request building ----------------------------------------------------------

-- request("POST", "/x", { "Host: h", "Content-Length: 5" }, "hello")
local function request(method, target, headers, body, version)
  local lines = { method .. " " .. target .. " " .. (version or "HTTP/1.1") }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

local function GET(target, extra)
  local headers = { "Host: example.test" }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return request("GET", target, headers)
end

local function POST(target, body, extra)
  local headers = { "Host: example.test", "Content-Length: " .. #body }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return request("POST", target, headers, body)
end

local function chunked(target, chunks_raw, extra)
  local headers = { "Host: example.test", "Transfer-Encoding: chunked" }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return request("POST", target, headers, chunks_raw)
end

-- "0123456789" repeated and cut to n bytes (what conformance_stream's /cl writes).
local function pattern(n)
  return string.rep("0123456789", n // 10 + 1):sub(1, n)
end

-- Reading answers -----------------------------------------------------------

-- Parses conformance_echo's body into { method=, path=, query=, protocol=,
-- body=, h = { name = { values } } }; fails the test when `res` is missing or
-- is not a 200 answer from the echo app.
local function echoed(res, err)
  assert(res, "no response: " .. tostring(err))
  local s = res.body or ""
  local i = s:find("\nbody=[", 1, true)
  assert(res.status == 200 and i and s:sub(-1) == "]",
    ("expected the echo app's 200, got %s %s, body %q"):format(tostring(res.status),
      tostring(res.reason), s:sub(1, 200)))
  local m = { body = s:sub(i + 7, -2), h = {} }
  for line in (s:sub(1, i - 1) .. "\n"):gmatch("([^\n]*)\n") do
    local k, v = line:match("^([^=]+)=%[(.*)%]$")
    if k then
      local name = k:match("^h:(.+)$")
      if name then
        m.h[name] = m.h[name] or {}
        table.insert(m.h[name], v)
      else
        m[k] = v
      end
    end
  end
  return m
end

-- Like conn:is_closed, but a reset counts as closed too, and it also returns
-- every byte the server sent after the last parsed response.
local function wait_closed(c, timeout)
  timeout = timeout or 3
  c.sock:settimeout(0.2)
  local deadline = socket.gettime() + timeout
  local extra = c.buf
  c.buf = ""
  while true do
    local data, err, partial = c.sock:receive(65536)
    local got = data or partial
    if got and #got > 0 then extra = extra .. got end
    if not data then
      if err == "closed" or (err and err:find("reset")) then return true, extra end
      if err ~= "timeout" then return true, extra end
      if socket.gettime() >= deadline then return false, extra end
    end
  end
end

-- Connections opened by the running test; after_each closes them all (busted
-- keeps only one finally() per test).
local live = {}

local function open(port)
  local c = assert(http.connect(port))
  live[#live + 1] = c
  return c
end

local function close_all()
  for i = #live, 1, -1 do
    live[i]:close()
    live[i] = nil
  end
end

local function one_of(status, expected)
  if type(expected) == "number" then return status == expected end
  for _, s in ipairs(expected) do
    if status == s then return true end
  end
  return false
end

local function show(expected)
  return type(expected) == "table" and table.concat(expected, " or ") or tostring(expected)
end

local function describe_res(res)
  if not res then return "no response" end
  return ("%s %s, body %q"):format(tostring(res.status), tostring(res.reason),
    (res.body or ""):sub(1, 200))
end

local function assert_status(expected, res, err)
  assert(res, "expected " .. show(expected) .. ", got no response: " .. tostring(err))
  assert(one_of(res.status, expected),
    "expected " .. show(expected) .. ", got " .. describe_res(res))
end

-- How many requests reached the echo app so far.
local function app_count(port)
  local res, err = http.get(port, "/__count")
  assert(res and res.status == 200, "GET /__count failed: " .. tostring(err))
  return assert(tonumber(res.body), "bad /__count body: " .. tostring(res.body))
end

-- Sends raw bytes on a fresh connection and checks the server refuses them:
-- the status is one of `expected`, the app is not reached (unless
-- opts.reached_ok: errors found in a body while the app may already run), the
-- connection closes and nothing follows the error response.
local function rejects(port, raw, expected, opts)
  opts = opts or {}
  local before = not opts.reached_ok and app_count(port)
  local c = open(port)
  c:send(raw) -- the server may close before taking everything; the answer counts
  local res, err = c:read_response()
  assert_status(expected, res, err)
  assert.is_nil(res.headers["x-reached-app"], "the app answered a refused request")
  local closed, extra = wait_closed(c)
  assert.is_true(closed, ("the connection must close after %d"):format(res.status))
  assert.are.equal("", extra, "bytes after the error response")
  if before then
    assert.are.equal(before, app_count(port), "the app was reached for refused input")
  end
  return res
end

-- Sends raw bytes on a fresh connection and returns the first response and
-- the still-open connection.
local function exchange(port, raw, opts)
  local c = open(port)
  assert(c:send(raw))
  local res, err = c:read_response(opts)
  assert(res, "no response: " .. tostring(err))
  return res, c
end

-- Sends raw bytes, expects a 200 from the echo app, returns the parsed echo.
local function echo_ok(port, raw)
  local res, c = exchange(port, raw)
  return echoed(res), res, c
end

-- RFC 9110 5.6.7 IMF-fixdate -> seconds since the epoch, or nil.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local WEEKDAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }

local function days_from_civil(y, m, d) -- proleptic Gregorian, 1970-01-01 = 0
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function parse_imf_fixdate(s)
  local wd, d, mon, y, H, M, S =
    s:match("^(%a%a%a), (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not wd or not MONTHS[mon] then return nil end
  d, y, H, M, S = tonumber(d), tonumber(y), tonumber(H), tonumber(M), tonumber(S)
  if d < 1 or d > 31 or H > 23 or M > 59 or S > 60 then return nil end
  local days = days_from_civil(y, MONTHS[mon], d)
  if WEEKDAYS[(days + 4) % 7 + 1] ~= wd then return nil end
  return days * 86400 + H * 3600 + M * 60 + S
end

local function start(app, args, opts)
  local srv = server.start(app, args, opts)
  srv.what = app .. " " .. table.concat(args or {}, " ")
  return srv
end

local function stop(srv)
  if not srv then return end
  local ok, how, code = srv:stop()
  assert(ok, ("owinlua (%s) did not exit cleanly on SIGTERM: %s %s\n%s"):format(
    srv.what, tostring(how), tostring(code), srv:stderr()))
end

-- ==========================================================================

describe("RFC 9112 conformance #e2e #conformance", function()
  local srv, port

  setup(function()
    srv = start(ECHO)
    port = srv.port
  end)

  teardown(function() stop(srv) end)
  after_each(close_all)

  describe("request line (RFC 9112 section 3) #e2e #conformance", function()
    it("answers a plain GET with HTTP/1.1 and reaches the app", function()
      local m, res = echo_ok(port, GET("/hello?x=1"))
      assert.are.equal("HTTP/1.1", res.version)
      assert.are.equal("yes", res.headers["x-reached-app"])
      assert.are.equal("GET", m.method)
      assert.are.equal("/hello", m.path)
      assert.are.equal("x=1", m.query)
      assert.are.equal("HTTP/1.1", m.protocol)
      assert.are.equal("", m.body)
    end)

    it("passes the registered methods through unchanged", function()
      for _, method in ipairs({ "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH" }) do
        local m = echo_ok(port, request(method, "/m", { "Host: example.test", "Content-Length: 0" }))
        assert.are.equal(method, m.method)
      end
    end)

    it("gives a well-formed extension method to the app or answers 501, never 400", function()
      local res = exchange(port, request("FROB", "/m", { "Host: example.test" }))
      assert_status({ 200, 501 }, res)
      if res.status == 200 then assert.are.equal("FROB", echoed(res).method) end
    end)

    it("refuses a lower-case HTTP-name with 400", function()
      rejects(port, "GET / http/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a request line without HTTP-version (HTTP/0.9) with 400 or 505", function()
      rejects(port, "GET /\r\nHost: example.test\r\n\r\n", { 400, 505 })
    end)

    for _, version in ipairs({ "HTTP/1.1x", "HTTP/11", "HTTP/1", "HTTP/1.", "HTTP/a.b", "HTTPS/1.1" }) do
      it("refuses the malformed version " .. version .. " with 400", function()
        rejects(port, "GET / " .. version .. "\r\nHost: example.test\r\n\r\n", 400)
      end)
    end

    it("refuses a major version it does not speak with 505 or 400", function()
      rejects(port, "GET / HTTP/3.0\r\nHost: example.test\r\n\r\n", { 505, 400 })
    end)

    it("refuses a method that is not a token with 400", function()
      rejects(port, "GE(T / HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a request line without a method with 400", function()
      rejects(port, " / HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a space inside the request-target with 400", function()
      rejects(port, "GET /a b HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses an empty request-target with 400", function()
      rejects(port, "GET  HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses an origin-form target that does not start with / with 400", function()
      rejects(port, "GET abc HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
    end)

    for name, byte in pairs({ NUL = "\0", SOH = "\1", DEL = "\127" }) do
      it("refuses a " .. name .. " byte in the request-target with 400", function()
        rejects(port, "GET /a" .. byte .. "b HTTP/1.1\r\nHost: example.test\r\n\r\n", 400)
      end)
    end

    it("refuses a request line ended by a bare CR with 400", function()
      rejects(port, "GET / HTTP/1.1\rHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a request line ended by a bare LF with 400", function()
      rejects(port, "GET / HTTP/1.1\nHost: example.test\r\n\r\n", 400)
    end)

    it("ignores an empty line before the request line (section 2.2 SHOULD)", function()
      local m = echo_ok(port, "\r\n" .. GET("/after-empty-line"))
      assert.are.equal("/after-empty-line", m.path)
    end)

    it("accepts the absolute-form and takes path and query from it (section 3.2.2)", function()
      local m = echo_ok(port, request("GET", "http://example.test/abs/path?q=1",
        { "Host: example.test" }))
      assert.are.equal("/abs/path", m.path)
      assert.are.equal("q=1", m.query)
    end)

    it("accepts the asterisk-form for OPTIONS (section 3.2.4)", function()
      local res = exchange(port, request("OPTIONS", "*", { "Host: example.test" }))
      assert(res.status >= 200 and res.status < 300, "expected 2xx, got " .. describe_res(res))
    end)

    it("percent-decodes the path except %2F and keeps the query raw", function()
      local m = echo_ok(port, GET("/a%20b/c%2Fd?x=%20&y"))
      assert.are.equal("/a b/c%2Fd", m.path)
      assert.are.equal("x=%20&y", m.query)
    end)
  end)

  describe("header fields (RFC 9112 section 5, RFC 9110 section 5) #e2e #conformance", function()
    it("refuses whitespace between field name and colon with 400 (5.1 MUST)", function()
      rejects(port, GET("/", { "X-Test : value" }), 400)
    end)

    it("refuses a tab between field name and colon with 400 (5.1 MUST)", function()
      rejects(port, GET("/", { "X-Test\t: value" }), 400)
    end)

    it("refuses a field line without a colon with 400", function()
      rejects(port, GET("/", { "X-Test value" }), 400)
    end)

    it("refuses an empty field name with 400", function()
      rejects(port, GET("/", { ": value" }), 400)
    end)

    for _, name in ipairs({ "X(Test", "X Test", "X\"Test", "X/Test" }) do
      it(("refuses the field name %q with 400"):format(name), function()
        rejects(port, GET("/", { name .. ": value" }), 400)
      end)
    end

    it("refuses obs-fold continued with SP with 400", function()
      rejects(port, GET("/", { "X-Test: first", " folded" }), 400)
    end)

    it("refuses obs-fold continued with HTAB with 400", function()
      rejects(port, GET("/", { "X-Test: first", "\tfolded" }), 400)
    end)

    it("refuses whitespace before the first field line with 400 (2.2)", function()
      rejects(port, "GET / HTTP/1.1\r\n X-Test: v\r\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a field line ended by a bare LF with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nX-Test: v\nHost: example.test\r\n\r\n", 400)
    end)

    it("refuses a header section ended by a bare LF with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nHost: example.test\r\n\n", 400)
    end)

    it("refuses a head that uses bare LF throughout with 400", function()
      rejects(port, "GET / HTTP/1.1\nHost: example.test\n\n", 400)
    end)

    it("refuses a field line ended by a bare CR with 400 (the Host it runs into is invalid)", function()
      rejects(port, "GET / HTTP/1.1\r\nHost: example.test\rX-Test: v\r\n\r\n", 400)
    end)

    it("refuses a bare CR inside a field value with 400, or turns it into SP (2.2)", function()
      local raw = GET("/", { "X-Test: a\rb" })
      local res = exchange(port, raw)
      assert_status({ 400, 200 }, res)
      if res.status == 200 then
        assert.are.same({ "a b" }, echoed(res).h["x-test"])
      else
        rejects(port, raw, 400)
      end
    end)

    it("refuses a NUL inside a field value with 400, or turns it into SP (RFC 9110 5.5)", function()
      local raw = GET("/", { "X-Test: a\0b" })
      local res = exchange(port, raw)
      assert_status({ 400, 200 }, res)
      if res.status == 200 then
        assert.are.same({ "a b" }, echoed(res).h["x-test"])
      else
        rejects(port, raw, 400)
      end
    end)

    it("strips optional whitespace around a field value (5.1)", function()
      local m = echo_ok(port, GET("/", { "X-Test: \t padded  value \t " }))
      assert.are.same({ "padded  value" }, m.h["x-test"])
    end)

    it("accepts an empty field value", function()
      local m = echo_ok(port, GET("/", { "X-Test:" }))
      assert.are.same({ "" }, m.h["x-test"])
    end)

    it("keeps obs-text bytes in a field value", function()
      local m = echo_ok(port, GET("/", { "X-Test: caf\195\169" }))
      assert.are.same({ "caf\195\169" }, m.h["x-test"])
    end)

    it("matches field names case-insensitively", function()
      local m = echo_ok(port, GET("/", { "x-TEST: v" }))
      assert.are.same({ "v" }, m.h["x-test"])
    end)

    it("keeps every value of a repeated field, in order", function()
      local m = echo_ok(port, GET("/", { "X-Test: one", "X-Other: between", "x-test: two" }))
      assert.are.same({ "one", "two" }, m.h["x-test"])
    end)
  end)

  describe("Host (RFC 9112 section 3.2, RFC 9110 section 7.2) #e2e #conformance", function()
    it("refuses an HTTP/1.1 request without Host with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nX-Test: v\r\n\r\n", 400)
    end)

    it("refuses two Host fields with the same value with 400", function()
      rejects(port, GET("/", { "Host: example.test" }), 400)
    end)

    it("refuses two Host fields with different values with 400", function()
      rejects(port, GET("/", { "Host: other.test" }), 400)
    end)

    it("refuses two Host fields spelled in different case with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n", 400)
    end)

    it("refuses a Host field with an invalid value with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nHost: exa mple.test\r\n\r\n", 400)
    end)

    it("refuses a Host field with a path in it with 400", function()
      rejects(port, "GET / HTTP/1.1\r\nHost: example.test/path\r\n\r\n", 400)
    end)

    it("accepts an empty Host on HTTP/1.1", function()
      local m = echo_ok(port, "GET / HTTP/1.1\r\nHost:\r\n\r\n")
      assert.are.same({ "" }, m.h.host)
    end)

    it("accepts a Host with a port and an IPv6 literal", function()
      local m = echo_ok(port, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
      assert.are.same({ "[::1]:8080" }, m.h.host)
    end)

    it("accepts an HTTP/1.0 request without Host", function()
      local m = echo_ok(port, "GET /no-host HTTP/1.0\r\n\r\n")
      assert.are.equal("/no-host", m.path)
      assert.are.equal("HTTP/1.0", m.protocol)
    end)
  end)

  describe("message body length (RFC 9112 section 6) #e2e #conformance", function()
    local SMUGGLED = GET("/smuggled")

    it("reads a Content-Length body exactly", function()
      local m = echo_ok(port, POST("/cl", "hello"))
      assert.are.equal("hello", m.body)
      assert.are.same({ "5" }, m.h["content-length"])
    end)

    it("reads no body from a POST with neither Content-Length nor Transfer-Encoding", function()
      local m, _, c = echo_ok(port, request("POST", "/none", { "Host: example.test" }))
      assert.are.equal("", m.body)
      assert(c:send(GET("/next")))
      local res = assert(c:read_response())
      assert.are.equal("/next", echoed(res).path)
    end)

    it("reads a Content-Length body sent with GET and then the next request", function()
      local m, _, c = echo_ok(port, request("GET", "/get-body",
        { "Host: example.test", "Content-Length: 3" }, "abc") .. GET("/next"))
      assert.are.equal("abc", m.body)
      local res = assert(c:read_response())
      assert.are.equal("/next", echoed(res).path)
    end)

    it("refuses Content-Length together with Transfer-Encoding with 400", function()
      rejects(port, request("POST", "/", { "Host: example.test", "Content-Length: 5",
        "Transfer-Encoding: chunked" }, "0\r\n\r\n") .. SMUGGLED, 400)
    end)

    it("refuses Transfer-Encoding together with Content-Length (other order) with 400", function()
      rejects(port, request("POST", "/", { "Host: example.test",
        "Transfer-Encoding: chunked", "Content-Length: 30" }, "0\r\n\r\n") .. SMUGGLED, 400)
    end)

    it("refuses two different Content-Length fields with 400", function()
      rejects(port, request("POST", "/", { "Host: example.test", "Content-Length: 5",
        "Content-Length: 6" }, "hello!") .. SMUGGLED, 400)
    end)

    it("refuses a Content-Length list with different values with 400", function()
      rejects(port, request("POST", "/", { "Host: example.test", "Content-Length: 5, 6" },
        "hello!") .. SMUGGLED, 400)
    end)

    for _, shape in ipairs({ { "Content-Length: 5", "Content-Length: 5" }, { "Content-Length: 5, 5" } }) do
      it("accepts identical Content-Length values (" .. table.concat(shape, " / ")
        .. ") or refuses them with 400", function()
        local headers = { "Host: example.test" }
        for _, h in ipairs(shape) do headers[#headers + 1] = h end
        local raw = request("POST", "/dup", headers, "hello") .. GET("/next")
        local res, c = exchange(port, raw)
        assert_status({ 200, 400 }, res)
        if res.status == 200 then
          assert.are.equal("hello", echoed(res).body)
          local nxt = assert(c:read_response())
          assert.are.equal("/next", echoed(nxt).path)
        else
          rejects(port, raw, 400)
        end
      end)
    end

    for _, value in ipairs({ "-1", "abc", "5a", "+5", "0x5", "1 0", "5.0", "" }) do
      it(("refuses the Content-Length %q with 400"):format(value), function()
        rejects(port, request("POST", "/", { "Host: example.test", "Content-Length: " .. value },
          "hello") .. SMUGGLED, 400)
      end)
    end

    it("refuses a Content-Length too large for any integer with 400 or 413", function()
      rejects(port, request("POST", "/", { "Host: example.test",
        "Content-Length: 99999999999999999999999999999" }, "hello"), { 400, 413 })
    end)

    it("accepts a Content-Length with leading zeros", function()
      local m = echo_ok(port, request("POST", "/", { "Host: example.test",
        "Content-Length: 005" }, "hello"))
      assert.are.equal("hello", m.body)
    end)

    for _, coding in ipairs({ "gzip", "deflate", "x-unknown", "gzip, chunked" }) do
      it(("answers Transfer-Encoding: %s with 501"):format(coding), function()
        rejects(port, request("POST", "/", { "Host: example.test",
          "Transfer-Encoding: " .. coding }, "0\r\n\r\n"), 501)
      end)
    end

    it("refuses Transfer-Encoding where chunked is not final with 400 or 501 (6.3)", function()
      rejects(port, request("POST", "/", { "Host: example.test",
        "Transfer-Encoding: chunked, gzip" }, "0\r\n\r\n") .. SMUGGLED, { 400, 501 })
    end)

    it("refuses chunked applied twice with 400 or 501", function()
      rejects(port, request("POST", "/", { "Host: example.test",
        "Transfer-Encoding: chunked, chunked" }, "0\r\n\r\n") .. SMUGGLED, { 400, 501 })
    end)

    it("refuses an empty Transfer-Encoding with 400 or 501", function()
      rejects(port, request("POST", "/", { "Host: example.test", "Transfer-Encoding:" },
        "0\r\n\r\n"), { 400, 501 })
    end)

    it("matches the chunked coding name case-insensitively", function()
      local m = echo_ok(port, request("POST", "/", { "Host: example.test",
        "Transfer-Encoding: CHUNKED" }, "5\r\nhello\r\n0\r\n\r\n"))
      assert.are.equal("hello", m.body)
    end)

    it("treats Transfer-Encoding in an HTTP/1.0 request as faulty framing (400, or close after)", function()
      local raw = "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "5\r\nhello\r\n0\r\n\r\n" .. "GET /smuggled HTTP/1.0\r\n\r\n"
      local res, c = exchange(port, raw)
      assert_status({ 400, 200 }, res)
      local closed, extra = wait_closed(c)
      assert.is_true(closed, "the connection must close")
      assert.is_nil(extra:find("smuggled", 1, true))
    end)
  end)

  describe("chunked request bodies (RFC 9112 section 7.1) #e2e #conformance", function()
    local function refuses_chunks(body, expected)
      rejects(port, chunked("/", body) .. GET("/smuggled"), expected or 400, { reached_ok = true })
    end

    it("decodes a chunked body", function()
      local m = echo_ok(port, chunked("/", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
      assert.are.equal("hello world", m.body)
    end)

    it("decodes upper-case, lower-case and zero-padded hex sizes", function()
      local m = echo_ok(port, chunked("/",
        "A\r\n0123456789\r\na\r\nabcdefghij\r\n0005\r\nvwxyz\r\n000\r\n\r\n"))
      assert.are.equal("0123456789abcdefghijvwxyz", m.body)
    end)

    it("accepts well-formed chunk extensions and ignores them", function()
      local m = echo_ok(port, chunked("/", "5;name=value\r\nhello\r\n"
        .. "1;flag\r\n \r\n" .. "5;q=\"quoted; \\\"value\\\"\";a=1;b\r\nworld\r\n"
        .. "0;last=yes\r\n\r\n"))
      assert.are.equal("hello world", m.body)
    end)

    it("accepts a trailer section and then serves the next request", function()
      local m, _, c = echo_ok(port, chunked("/", "5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n")
        .. GET("/next"))
      assert.are.equal("hello", m.body)
      local res = assert(c:read_response())
      assert.are.equal("/next", echoed(res).path)
    end)

    it("accepts an empty chunked body", function()
      local m = echo_ok(port, chunked("/", "0\r\n\r\n"))
      assert.are.equal("", m.body)
    end)

    for _, size in ipairs({ "g", "-5", "0x5", "+5", "5 5", "" }) do
      it(("refuses the chunk size %q with 400"):format(size), function()
        refuses_chunks(size .. "\r\nhello\r\n0\r\n\r\n")
      end)
    end

    it("refuses a chunk size too large for any integer with 400 or 413", function()
      refuses_chunks("fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", { 400, 413 })
    end)

    it("refuses chunk data not followed by CRLF with 400", function()
      refuses_chunks("5\r\nhelloX0\r\n\r\n")
    end)

    it("refuses chunk data longer than its size with 400", function()
      refuses_chunks("3\r\nhello\r\n0\r\n\r\n")
    end)

    it("refuses a chunk size line ended by a bare LF with 400", function()
      refuses_chunks("5\nhello\r\n0\r\n\r\n")
    end)

    it("refuses chunk data ended by a bare LF with 400", function()
      refuses_chunks("5\r\nhello\n0\r\n\r\n")
    end)

    it("refuses a last chunk ended by bare LFs with 400", function()
      refuses_chunks("5\r\nhello\r\n0\n\n")
    end)

    for _, ext in ipairs({ ";", ";=v", ";na me=v", ";a=\"unterminated", ";a=b c", ";a\1b", ";a=\"x\ry\"" }) do
      it(("refuses the chunk extension %q with 400"):format(ext), function()
        refuses_chunks("5" .. ext .. "\r\nhello\r\n0\r\n\r\n")
      end)
    end

    it("refuses a trailer line without a colon with 400", function()
      refuses_chunks("5\r\nhello\r\n0\r\nBad trailer\r\n\r\n")
    end)

    it("refuses an obs-folded trailer line with 400", function()
      refuses_chunks("5\r\nhello\r\n0\r\nX-Trailer: a\r\n folded\r\n\r\n")
    end)
  end)

  describe("connections: keep-alive, pipelining, close (RFC 9112 section 9) #e2e #conformance", function()
    it("serves several requests one after another on one connection", function()
      local c = open(port)
      for i = 1, 5 do
        assert(c:send(GET("/ka" .. i)))
        local res = assert(c:read_response())
        assert_status(200, res)
        assert.are.equal("HTTP/1.1", res.version)
        assert.are.equal("/ka" .. i, echoed(res).path)
        assert.is_nil((res.headers.connection or ""):lower():find("close"),
          "keep-alive response says Connection: close")
      end
      local closed = wait_closed(c, 0.5)
      assert.is_false(closed, "an idle keep-alive connection closed at once")
    end)

    it("answers a burst of pipelined requests in one write, in order", function()
      local raw, n = {}, 32
      for i = 1, n do
        local k = i % 4
        if k == 0 then
          raw[#raw + 1] = GET("/p" .. i)
        elseif k == 1 then
          raw[#raw + 1] = POST("/p" .. i, "body-" .. i)
        elseif k == 2 then
          local data = "chunk-" .. i
          raw[#raw + 1] = chunked("/p" .. i, ("%x\r\n%s\r\n0\r\n\r\n"):format(#data, data))
        else
          raw[#raw + 1] = request("GET", "/p" .. i, { "Host: example.test",
            "Content-Length: 4" }, "g" .. ("%03d"):format(i))
        end
      end
      local c = open(port)
      assert(c:send(table.concat(raw)))
      for i = 1, n do
        local res, err = c:read_response()
        assert(res, ("response %d: %s"):format(i, tostring(err)))
        assert_status(200, res)
        local m = echoed(res)
        assert.are.equal("/p" .. i, m.path)
        local k = i % 4
        local want = (k == 0 and "") or (k == 1 and "body-" .. i) or (k == 2 and "chunk-" .. i)
          or "g" .. ("%03d"):format(i)
        assert.are.equal(want, m.body)
      end
    end)

    it("keeps pipelined responses in request order when an earlier one is slow", function()
      local c = open(port)
      assert(c:send(GET("/slow?sleep=0.4") .. GET("/fast")))
      local first = assert(c:read_response())
      local second = assert(c:read_response())
      assert.are.equal("/slow", echoed(first).path)
      assert.are.equal("/fast", echoed(second).path)
    end)

    it("answers the good requests before a bad pipelined one, then 400 and close", function()
      local c = open(port)
      c:send(GET("/good") .. "GET /bad HTTP/1.1\r\nHost : example.test\r\n\r\n" .. GET("/never"))
      local first = assert(c:read_response())
      assert.are.equal("/good", echoed(first).path)
      local second, err = c:read_response()
      assert_status(400, second, err)
      local closed, extra = wait_closed(c)
      assert.is_true(closed)
      assert.is_nil(extra:find("HTTP/1.", 1, true), "a request after the bad one was answered")
    end)

    it("closes after the response to a request with Connection: close (9.6)", function()
      local res, c = exchange(port, GET("/bye", { "Connection: close" }))
      assert_status(200, res)
      assert.are.equal("/bye", echoed(res).path)
      assert.truthy((res.headers.connection or ""):lower():find("close"),
        "the response should carry Connection: close")
      local closed, extra = wait_closed(c)
      assert.is_true(closed)
      assert.are.equal("", extra)
    end)

    for _, value in ipairs({ "CLOSE", "keep-alive, close", "Upgrade, Close" }) do
      it(("treats Connection: %s as close"):format(value), function()
        local res, c = exchange(port, GET("/bye", { "Connection: " .. value }))
        assert_status(200, res)
        assert.is_true((wait_closed(c)))
      end)
    end

    it("does not answer pipelined requests after one with Connection: close", function()
      local c = open(port)
      c:send(GET("/one") .. GET("/two", { "Connection: close" }) .. GET("/three"))
      assert.are.equal("/one", echoed(c:read_response()).path)
      assert.are.equal("/two", echoed(c:read_response()).path)
      local closed, extra = wait_closed(c)
      assert.is_true(closed)
      assert.are.equal("", extra)
    end)
  end)

  describe("incremental delivery #e2e #conformance", function()
    -- its own server: a parser that loses state between reads may crash
    local inc, port

    setup(function()
      inc = start(ECHO)
      port = inc.port
    end)
    teardown(function() stop(inc) end)

    it("answers a request sent one byte at a time", function()
      local c = open(port)
      local raw = chunked("/slowly?x=1", "5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        { "X-Test: a" }) .. POST("/second", "abc")
      assert(c:send_slowly(raw, 0.001))
      local m = echoed(c:read_response())
      assert.are.equal("/slowly", m.path)
      assert.are.equal("x=1", m.query)
      assert.are.same({ "a" }, m.h["x-test"])
      assert.are.equal("hello world", m.body)
      local m2 = echoed(c:read_response())
      assert.are.equal("/second", m2.path)
      assert.are.equal("abc", m2.body)
    end)

    it("answers a request whose head arrives split at every CRLF", function()
      local c = open(port)
      local raw = POST("/split", "hello", { "X-Test: v" })
      local pos = 1
      for stop in raw:gmatch("()\r\n") do
        assert(c:send(raw:sub(pos, stop)))
        socket.sleep(0.02)
        assert(c:send(raw:sub(stop + 1, stop + 1)))
        socket.sleep(0.02)
        pos = stop + 2
      end
      assert(c:send(raw:sub(pos)))
      local m = echoed(c:read_response())
      assert.are.equal("/split", m.path)
      assert.are.equal("hello", m.body)
    end)
  end)

  describe("HTTP/1.0 clients (RFC 9112 sections 9.3 and C.2) #e2e #conformance", function()
    local stream

    setup(function() stream = start(STREAM) end)
    teardown(function() stop(stream) end)

    it("answers HTTP/1.0 with HTTP/1.x, never chunked, and closes", function()
      local res, c = exchange(port, "GET /old HTTP/1.0\r\nHost: example.test\r\n\r\n")
      assert_status(200, res)
      assert.truthy(res.version:match("^HTTP/1%.[01]$"))
      assert.is_nil(res.headers["transfer-encoding"])
      assert.are.equal("/old", echoed(res).path)
      assert.are.equal("HTTP/1.0", echoed(res).protocol)
      assert.is_true((wait_closed(c)), "an HTTP/1.0 connection without keep-alive must close")
    end)

    it("reads an HTTP/1.0 Content-Length body", function()
      local res = exchange(port, "POST /old HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
      assert_status(200, res)
      assert.are.equal("hello", echoed(res).body)
    end)

    it("keeps an HTTP/1.0 connection open when it asked for keep-alive", function()
      local c = open(port)
      for i = 1, 3 do
        assert(c:send("GET /ka" .. i .. " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        local res = assert(c:read_response())
        assert_status(200, res)
        assert.is_nil(res.until_close, "a persistent response needs a Content-Length")
        assert.is_nil(res.headers["transfer-encoding"])
        assert.truthy(res.headers["content-length"])
        assert.truthy((res.headers.connection or ""):lower():find("keep%-alive"),
          "an HTTP/1.0 keep-alive response must say Connection: keep-alive")
        assert.are.equal("/ka" .. i, echoed(res).path)
      end
    end)

    it("sends a streamed response to HTTP/1.0 close-delimited, not chunked", function()
      local res, c = exchange(stream.port, "GET /flush HTTP/1.0\r\n\r\n")
      assert_status(200, res)
      assert.is_nil(res.headers["transfer-encoding"])
      assert.are.equal("ab", res.body)
      assert.is_true((wait_closed(c)))
    end)

    it("closes after a streamed response of unknown length even when HTTP/1.0 asked for keep-alive", function()
      local res, c = exchange(stream.port, "GET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      assert_status(200, res)
      assert.is_nil(res.headers["transfer-encoding"])
      assert.are.equal("ab", res.body)
      if not res.headers["content-length"] then
        assert.is_true((wait_closed(c)), "a close-delimited body needs the connection closed")
      end
    end)

    it("sends a long streamed response to HTTP/1.0 without chunked coding", function()
      local res = exchange(stream.port, "GET /big?n=20&size=10000 HTTP/1.0\r\n\r\n")
      assert_status(200, res)
      assert.is_nil(res.headers["transfer-encoding"])
      assert.are.equal(200000, #res.body)
    end)
  end)

  describe("Upgrade: h2c (RFC 9110 section 7.8) #e2e #conformance", function()
    local H2C = { "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
      "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA" }

    it("serves an h2c upgrade request as plain HTTP/1.1 and keeps the connection", function()
      local res, c = exchange(port, GET("/h2c", H2C))
      assert_status(200, res)
      assert.are.equal("HTTP/1.1", res.version)
      local m = echoed(res)
      assert.are.equal("/h2c", m.path)
      assert.are.same({ "h2c" }, m.h.upgrade)
      assert(c:send(GET("/after")))
      local nxt = assert(c:read_response())
      assert.are.equal("/after", echoed(nxt).path)
    end)

    it("reads the body of an h2c upgrade request as HTTP/1.1", function()
      local m = echo_ok(port, POST("/h2c", "hello", H2C))
      assert.are.equal("hello", m.body)
    end)

    it("refuses the HTTP/2 connection preface without reaching the app", function()
      rejects(port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", { 400, 505 })
    end)
  end)

  describe("limits at their defaults #e2e #conformance", function()
    -- its own server, started without limit options
    local def, port

    setup(function()
      def = start(ECHO)
      port = def.port
    end)
    teardown(function() stop(def) end)

    it("answers a declared body over 32 MiB with 413 before it is sent", function()
      rejects(port, request("POST", "/", { "Host: example.test",
        "Content-Length: " .. (32 * 1024 * 1024 + 1) }), 413)
    end)

    it("accepts a 7000-byte request-target", function()
      local target = "/" .. string.rep("t", 6999)
      local m = echo_ok(port, GET(target))
      assert.are.equal(target, m.path)
    end)

    it("answers a 9000-byte request-target with 414", function()
      rejects(port, GET("/" .. string.rep("t", 8999)), 414)
    end)

    it("accepts 90 header fields", function()
      local extra = {}
      for i = 1, 89 do extra[#extra + 1] = "X-H" .. i .. ": v" end
      echo_ok(port, GET("/", extra))
    end)

    it("answers 150 header fields with 431", function()
      local extra = {}
      for i = 1, 149 do extra[#extra + 1] = "X-H" .. i .. ": v" end
      rejects(port, GET("/", extra), 431)
    end)

    it("accepts a 20000-byte header field", function()
      local m = echo_ok(port, GET("/", { "X-Test: " .. string.rep("v", 20000) }))
      assert.are.equal(20000, #m.h["x-test"][1])
    end)

    it("answers a 40000-byte header field with 431", function()
      rejects(port, GET("/", { "X-Test: " .. string.rep("v", 40000) }), 431)
    end)

  end)

  describe("Expect: 100-continue (RFC 9110 section 10.1.1) #e2e #conformance", function()
    local noread

    setup(function() noread = start(NOREAD) end)
    teardown(function() stop(noread) end)

    local function expect_head(path, extra)
      local headers = { "Host: example.test", "Expect: 100-continue" }
      for _, h in ipairs(extra) do headers[#headers + 1] = h end
      return request("POST", path, headers)
    end

    it("sends 100 Continue before the final response when the app reads the body", function()
      local c = open(noread.port)
      assert(c:send(expect_head("/read", { "Content-Length: 5" })))
      local interim, err = c:read_response()
      assert_status(100, interim, err)
      assert.are.equal("HTTP/1.1", interim.version)
      assert(c:send("hello"))
      local final = assert(c:read_response())
      assert_status(200, final)
      assert.are.equal("read /read [hello]", final.body)
    end)

    it("sends 100 Continue for a chunked body too", function()
      local c = open(noread.port)
      assert(c:send(expect_head("/read", { "Transfer-Encoding: chunked" })))
      local interim, err = c:read_response()
      assert_status(100, interim, err)
      assert(c:send("5\r\nhello\r\n0\r\n\r\n"))
      local final = assert(c:read_response())
      assert.are.equal("read /read [hello]", final.body)
    end)

    it("gives the final status without 100 when the app answers without reading", function()
      local c = open(noread.port)
      assert(c:send(expect_head("/reject", { "Content-Length: 5" })))
      local res, err = c:read_response()
      assert_status(403, res, err)
      assert.are.equal("rejected /reject", res.body)
    end)

    it("after answering without 100, either closes or skips the body the client still sends", function()
      local c = open(noread.port)
      assert(c:send(expect_head("/reject", { "Content-Length: 5" })))
      local res, err = c:read_response()
      assert_status(403, res, err)
      c:send("hello" .. GET("/read-next"))
      local nxt = c:read_response()
      if nxt then
        assert_status(200, nxt)
        assert.are.equal("read /read-next []", nxt.body)
      else
        assert.is_true((wait_closed(c)))
      end
    end)

    it("handles a client that sends the body without waiting for 100", function()
      local c = open(noread.port)
      assert(c:send(expect_head("/read", { "Content-Length: 5" }) .. "hello" .. GET("/read-2")))
      local res = assert(c:read_response())
      if res.status == 100 then res = assert(c:read_response()) end
      assert_status(200, res)
      assert.are.equal("read /read [hello]", res.body)
      local nxt = assert(c:read_response())
      assert_status(200, nxt)
      assert.are.equal("read /read-2 []", nxt.body)
    end)

    it("ignores Expect: 100-continue from an HTTP/1.0 client", function()
      local res = exchange(noread.port,
        "POST /read HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
      assert_status(200, res)
      assert.are.equal("read /read [hello]", res.body)
    end)

    it("never treats an unread Content-Length body as the next request", function()
      local c = open(noread.port)
      local inner = GET("/smuggled")
      c:send(request("POST", "/noread", { "Host: example.test", "Content-Length: " .. #inner }, inner)
        .. GET("/read-next"))
      local first = assert(c:read_response())
      assert.are.equal("no-read /noread", first.body)
      local nxt = c:read_response()
      local rest = select(2, wait_closed(c, 0.5))
      assert.is_nil(((nxt and nxt.body or "") .. rest):find("smuggled", 1, true))
      if nxt then assert.are.equal("read /read-next []", nxt.body) end
    end)

    it("never treats an unread chunked body as the next request", function()
      local c = open(noread.port)
      local inner = GET("/smuggled")
      c:send(chunked("/noread", ("%x\r\n%s\r\n0\r\n\r\n"):format(#inner, inner)) .. GET("/read-next"))
      local first = assert(c:read_response())
      assert.are.equal("no-read /noread", first.body)
      local nxt = c:read_response()
      local rest = select(2, wait_closed(c, 0.5))
      assert.is_nil(((nxt and nxt.body or "") .. rest):find("smuggled", 1, true))
      if nxt then assert.are.equal("read /read-next []", nxt.body) end
    end)
  end)

  describe("HEAD, 204 and 304 carry no body (RFC 9110 sections 9.3.2, 15.3.5, 15.4.5) #e2e #conformance", function()
    local status, stream

    setup(function()
      status = start(STATUS)
      stream = start(STREAM)
    end)
    teardown(function()
      stop(status)
      stop(stream)
    end)

    it("answers HEAD with the GET headers and no body", function()
      local c = open(status.port)
      assert(c:send(GET("/?body=hello") .. request("HEAD", "/?body=hello", { "Host: example.test" })
        .. GET("/?body=after")))
      local get = assert(c:read_response())
      local head = assert(c:read_response({ method = "HEAD" }))
      local after = assert(c:read_response())
      assert_status(200, get)
      assert_status(200, head)
      assert.are.equal("hello", get.body)
      assert.are.equal("5", get.headers["content-length"])
      assert.are.equal(get.headers["content-length"], head.headers["content-length"])
      assert.are.equal(get.headers["content-type"], head.headers["content-type"])
      assert.is_nil(head.headers["transfer-encoding"])
      assert.are.equal("after", after.body, "bytes after the HEAD response")
    end)

    it("answers HEAD of a long streamed response with its framing headers and no body", function()
      local c = open(stream.port)
      assert(c:send(request("HEAD", "/big?n=64&size=16384", { "Host: example.test" }) .. GET("/small")))
      local head = assert(c:read_response({ method = "HEAD" }))
      assert_status(200, head)
      local te, cl = head.headers["transfer-encoding"], head.headers["content-length"]
      assert(te and te:lower():find("chunked") or cl == tostring(64 * 16384),
        "HEAD should show chunked or the full Content-Length, got TE " .. tostring(te)
        .. " CL " .. tostring(cl))
      local after = assert(c:read_response())
      assert.are.equal("hello", after.body, "bytes after the HEAD response")
    end)

    it("answers HEAD with the Content-Length the app set", function()
      local c = open(stream.port)
      assert(c:send(request("HEAD", "/cl?n=10", { "Host: example.test" }) .. GET("/small")))
      local head = assert(c:read_response({ method = "HEAD" }))
      assert.are.equal("10", head.headers["content-length"])
      assert.are.equal("hello", assert(c:read_response()).body)
    end)

    for _, code in ipairs({ 204, 304 }) do
      it(("sends %d with no body and keeps the connection usable"):format(code), function()
        local c = open(status.port)
        assert(c:send(GET("/?status=" .. code) .. GET("/?body=after")))
        local res = assert(c:read_response())
        assert_status(code, res)
        assert.is_nil(res.headers["transfer-encoding"])
        if code == 204 then
          assert.is_nil(res.headers["content-length"], "204 must not carry Content-Length (RFC 9110 8.6)")
        end
        local after = assert(c:read_response())
        assert.are.equal("after", after.body, "bytes after the " .. code .. " response")
      end)

      it(("drops a body the app writes into a %d (or fails it with 500)"):format(code), function()
        local c = open(status.port)
        c:send(GET("/?status=" .. code .. "&body=leak") .. GET("/?body=after"))
        local res = assert(c:read_response())
        assert_status({ code, 500 }, res)
        local nxt = c:read_response()
        local rest = select(2, wait_closed(c, 0.5))
        assert.is_nil(((nxt and nxt.body or "") .. rest):find("leak", 1, true), "the body leaked")
        if nxt then assert.are.equal("after", nxt.body) end
      end)
    end
  end)

  describe("Date and Server (RFC 9110 sections 6.6.1 and 10.2.4) #e2e #conformance", function()
    local status

    setup(function() status = start(STATUS) end)
    teardown(function() stop(status) end)

    local function check_date(res)
      local date = res.headers.date
      assert(date, "no Date header on " .. res.status)
      local t = parse_imf_fixdate(date)
      assert(t, "Date is not an IMF-fixdate: " .. date)
      assert(math.abs(t - os.time()) <= 5, "Date is not now: " .. date)
    end

    it("sends a current IMF-fixdate Date on 200", function()
      local res = exchange(status.port, GET("/?body=x"))
      assert_status(200, res)
      check_date(res)
    end)

    it("sends Date on a 404 the app chose", function()
      local res = exchange(status.port, GET("/?status=404&body=x"))
      assert_status(404, res)
      check_date(res)
    end)

    it("sends Date on a 400 the server made", function()
      local res = exchange(status.port, "GET / HTTP/1.1\r\nX-Test : v\r\nHost: x\r\n\r\n")
      assert_status(400, res)
      check_date(res)
    end)

    it("sends one Date and one Server header", function()
      local res = exchange(status.port, GET("/?body=x"))
      local dates, servers = 0, 0
      for _, h in ipairs(res.list) do
        if h[1]:lower() == "date" then dates = dates + 1 end
        if h[1]:lower() == "server" then servers = servers + 1 end
      end
      assert.are.equal(1, dates)
      assert.are.equal(1, servers)
      assert.truthy(res.headers.server:match("%S"), "empty Server header")
    end)
  end)

  describe("response framing (RFC 9112 sections 6 and 7) #e2e #conformance", function()
    local stream

    setup(function() stream = start(STREAM) end)
    teardown(function() stop(stream) end)

    it("gives a small finished response a Content-Length", function()
      local res = exchange(stream.port, GET("/small"))
      assert_status(200, res)
      assert.are.equal("5", res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      assert.are.equal("hello", res.body)
    end)

    it("sends a flushed response of unknown length chunked, without Content-Length", function()
      local res, c = exchange(stream.port, GET("/flush") .. GET("/small"))
      assert_status(200, res)
      assert.is_true(res.chunked, "expected Transfer-Encoding: chunked")
      assert.are.equal("chunked", res.headers["transfer-encoding"]:lower())
      assert.is_nil(res.headers["content-length"], "Content-Length next to Transfer-Encoding")
      assert.are.equal("ab", res.body)
      assert.are.equal("hello", assert(c:read_response()).body)
    end)

    it("does not end a chunked response early on an empty write", function()
      local res, c = exchange(stream.port, GET("/empty-writes") .. GET("/small"))
      assert_status(200, res)
      assert.are.equal("abc", res.body)
      assert.are.equal("hello", assert(c:read_response()).body)
    end)

    it("streams a 1 MiB response as well-formed chunks and keeps the connection", function()
      local res, c = exchange(stream.port, GET("/big?n=64&size=16384") .. GET("/small"))
      assert_status(200, res)
      assert.is_true(res.chunked, "expected Transfer-Encoding: chunked")
      local want = {}
      for i = 1, 64 do want[i] = string.rep(string.char(97 + (i - 1) % 26), 16384) end
      assert.are.equal(#table.concat(want), #res.body)
      assert.is_true(table.concat(want) == res.body, "streamed body differs")
      assert.are.equal("hello", assert(c:read_response()).body)
    end)

    it("keeps the Content-Length the app set, without chunking, across flushes", function()
      local res, c = exchange(stream.port, GET("/cl?n=100000&pieces=10") .. GET("/small"))
      assert_status(200, res)
      assert.are.equal("100000", res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      assert.is_true(pattern(100000) == res.body, "body differs from the app's bytes")
      assert.are.equal("hello", assert(c:read_response()).body)
    end)

    it("never sends more bytes than the app's Content-Length (after flush)", function()
      local c = open(stream.port)
      c:send(GET("/cl-over") .. GET("/small"))
      local res = assert(c:read_response())
      assert_status(200, res)
      assert.are.equal("01234", res.body)
      local nxt = c:read_response()
      local rest = select(2, wait_closed(c, 1))
      assert.is_nil(((nxt and nxt.body or "") .. rest):find("EXTRA", 1, true), "bytes past Content-Length")
      if nxt then assert.are.equal("hello", nxt.body) end
      assert.are.equal("hello", assert(http.get(stream.port, "/small")).body, "server stopped serving")
    end)

    it("never sends more bytes than the app's Content-Length (one write)", function()
      local c = open(stream.port)
      c:send(GET("/cl-over-once") .. GET("/small"))
      local res = assert(c:read_response())
      assert_status({ 500, 200 }, res)
      if res.status == 200 then assert.are.equal("01234", res.body) end
      local nxt = c:read_response()
      local rest = select(2, wait_closed(c, 1))
      assert.is_nil(((nxt and nxt.body or "") .. rest):find("56789", 1, true), "bytes past Content-Length")
    end)

    it("closes the connection when the app writes less than its Content-Length", function()
      local c = open(stream.port)
      c:send(GET("/cl-under") .. GET("/small"))
      local res, err = c:read_response()
      if res then
        -- only a 500 made before anything went out can be a complete response
        assert_status(500, res)
      else
        assert.truthy(tostring(err):find("body", 1, true), "expected a cut body, got " .. tostring(err))
      end
      local closed, rest = wait_closed(c)
      assert.is_true(closed, "a short body must end with the connection closed")
      assert.is_nil(rest:find("HTTP/1.1", 1, true), "the next request was answered after a short body")
    end)
  end)

  describe("configured limits: 414, 431, 413 #e2e #conformance", function()
    local lim

    setup(function()
      lim = start(ECHO, { "--max-target", "1k", "--max-header-bytes", "4k",
        "--max-headers", "20", "--max-body", "1k" })
    end)
    teardown(function() stop(lim) end)

    it("accepts a 900-byte target under --max-target 1k", function()
      echo_ok(lim.port, GET("/" .. string.rep("t", 899)))
    end)

    it("answers an 1100-byte target with 414 under --max-target 1k", function()
      rejects(lim.port, GET("/" .. string.rep("t", 1099)), 414)
    end)

    it("accepts 15 header fields under --max-headers 20", function()
      local extra = {}
      for i = 1, 14 do extra[#extra + 1] = "X-H" .. i .. ": v" end
      echo_ok(lim.port, GET("/", extra))
    end)

    it("answers 25 header fields with 431 under --max-headers 20", function()
      local extra = {}
      for i = 1, 24 do extra[#extra + 1] = "X-H" .. i .. ": v" end
      rejects(lim.port, GET("/", extra), 431)
    end)

    it("accepts a 3000-byte header field under --max-header-bytes 4k", function()
      echo_ok(lim.port, GET("/", { "X-Test: " .. string.rep("v", 3000) }))
    end)

    it("answers a 5000-byte header field with 431 under --max-header-bytes 4k", function()
      rejects(lim.port, GET("/", { "X-Test: " .. string.rep("v", 5000) }), 431)
    end)

    it("answers ten 600-byte header fields (6000 bytes in all) with 431 under --max-header-bytes 4k", function()
      local extra = {}
      for i = 1, 10 do extra[#extra + 1] = "X-H" .. i .. ": " .. string.rep("v", 600) end
      rejects(lim.port, GET("/", extra), 431)
    end)

    it("accepts a body of exactly 1024 bytes under --max-body 1k", function()
      local m = echo_ok(lim.port, POST("/", pattern(1024)))
      assert.are.equal(pattern(1024), m.body)
    end)

    it("answers a declared 1025-byte body with 413 before it is sent", function()
      rejects(lim.port, request("POST", "/", { "Host: example.test", "Content-Length: 1025" }), 413)
    end)

    it("accepts a chunked body of exactly 1024 bytes", function()
      local m = echo_ok(lim.port, chunked("/", "200\r\n" .. pattern(512) .. "\r\n200\r\n"
        .. pattern(512) .. "\r\n0\r\n\r\n"))
      assert.are.equal(1024, #m.body)
    end)

    it("answers a chunked body going over 1k with 413 and closes", function()
      rejects(lim.port, chunked("/", "200\r\n" .. pattern(512) .. "\r\n200\r\n" .. pattern(512)
        .. "\r\n1\r\nx\r\n0\r\n\r\n"), 413, { reached_ok = true })
    end)

    it("answers a single chunk over 1k with 413 and closes", function()
      rejects(lim.port, chunked("/", "800\r\n" .. pattern(2048) .. "\r\n0\r\n\r\n"), 413,
        { reached_ok = true })
    end)
  end)

  describe("limits from OWINLUA_* environment variables #e2e #conformance", function()
    local envsrv

    setup(function()
      envsrv = start(ECHO, {}, { env = { OWINLUA_MAX_BODY = "1k", OWINLUA_MAX_TARGET = "1k" } })
    end)
    teardown(function() stop(envsrv) end)

    it("takes --max-body from OWINLUA_MAX_BODY", function()
      rejects(envsrv.port, request("POST", "/", { "Host: example.test", "Content-Length: 1025" }), 413)
    end)

    it("takes --max-target from OWINLUA_MAX_TARGET", function()
      rejects(envsrv.port, GET("/" .. string.rep("t", 1099)), 414)
    end)
  end)

  describe("header and body timeouts #e2e #conformance", function()
    local slow

    setup(function()
      slow = start(ECHO, { "--header-timeout", "1", "--body-timeout", "1" })
    end)
    teardown(function() stop(slow) end)

    it("answers an incomplete head with 408 after --header-timeout, then closes", function()
      local before = app_count(slow.port)
      local c = open(slow.port)
      local t0 = socket.gettime()
      assert(c:send("GET /late HTTP/1.1\r\nHost: example.test\r\n"))
      c:settimeout(5)
      local res, err = c:read_response()
      local elapsed = socket.gettime() - t0
      assert_status(408, res, err)
      assert(elapsed >= 0.8 and elapsed < 3.5, ("408 after %.2fs, want about 1s"):format(elapsed))
      assert.is_true((wait_closed(c)))
      assert.are.equal(before, app_count(slow.port))
    end)

    it("answers a head trickled in byte by byte with 408 once --header-timeout has passed", function()
      local c = open(slow.port)
      local raw = GET("/trickle", { "X-Test: " .. string.rep("s", 20) })
      local t0 = socket.gettime()
      for i = 1, #raw do
        if not c:send(raw:sub(i, i)) then break end
        socket.sleep(0.06) -- the whole head takes about 4s
      end
      c:settimeout(5)
      local res, err = c:read_response()
      assert_status(408, res, err)
      assert(socket.gettime() - t0 < 6)
      assert.is_true((wait_closed(c)))
    end)

    it("does not apply --header-timeout to an idle keep-alive connection between requests", function()
      local c = open(slow.port)
      assert(c:send(GET("/first")))
      assert.are.equal("/first", echoed(c:read_response()).path)
      socket.sleep(1.6)
      assert(c:send(GET("/second")))
      local res, err = c:read_response()
      assert_status(200, res, err)
      assert.are.equal("/second", echoed(res).path)
    end)

    it("does not apply --header-timeout while the app is working", function()
      local c = open(slow.port)
      c:settimeout(6)
      assert(c:send(GET("/work?sleep=1.6")))
      local res, err = c:read_response()
      assert_status(200, res, err)
      assert.are.equal("/work", echoed(res).path)
    end)

    it("ends a request whose body stalls past --body-timeout and closes", function()
      local c = open(slow.port)
      assert(c:send(request("POST", "/stall", { "Host: example.test", "Content-Length: 10" }, "abc")))
      c:settimeout(6)
      local res = c:read_response()
      if res then assert_status({ 408, 500 }, res) end
      assert.is_true((wait_closed(c, 4)), "the connection must close after a body timeout")
    end)
  end)

  describe("keep-alive timeout #e2e #conformance", function()
    local ka

    setup(function() ka = start(ECHO, { "--keepalive-timeout", "1" }) end)
    teardown(function() stop(ka) end)

    it("closes an idle keep-alive connection silently after --keepalive-timeout", function()
      local c = open(ka.port)
      assert(c:send(GET("/one")))
      assert_status(200, assert(c:read_response()))
      local t0 = socket.gettime()
      local closed, extra = wait_closed(c, 4)
      assert.is_true(closed, "idle connection still open after 4s")
      assert.are.equal("", extra, "the keep-alive close must be silent")
      assert(socket.gettime() - t0 >= 0.7, "closed before the keep-alive timeout")
    end)

    it("keeps a connection that is used within --keepalive-timeout", function()
      local c = open(ka.port)
      for i = 1, 4 do
        assert(c:send(GET("/busy" .. i)))
        assert.are.equal("/busy" .. i, echoed(c:read_response()).path)
        socket.sleep(0.4)
      end
    end)
  end)

  describe("--max-connections #e2e #conformance", function()
    local mc

    setup(function() mc = start(ECHO, { "--max-connections", "2" }) end)
    teardown(function() stop(mc) end)

    -- A connection that answers 200 on /held and stays open. Retries for a
    -- while: the server frees a slot only once it has seen the close of a
    -- connection from an earlier test, which races with this connect.
    local function hold()
      local deadline = socket.gettime() + 3
      while true do
        local c = open(mc.port)
        c:send(GET("/held"))
        local res, err = c:read_response()
        if res and res.status == 200 then return c end
        c:close()
        if socket.gettime() > deadline then
          assert_status(200, res, err)
        end
        socket.sleep(0.1)
      end
    end

    it("answers a connection beyond the limit with 503 and closes it", function()
      hold()
      hold()
      local c3 = open(mc.port)
      c3:send(GET("/third"))
      local res, err = c3:read_response()
      assert_status(503, res, err)
      assert.is_nil(res.headers["x-reached-app"])
      assert.is_true((wait_closed(c3)))
    end)

    it("takes a new connection again once one of the held ones closes", function()
      local c1 = hold()
      hold()
      c1:close()
      local deadline, res = socket.gettime() + 3, nil
      repeat
        socket.sleep(0.1)
        local c = assert(http.connect(mc.port))
        c:send(GET("/again"))
        res = c:read_response()
        c:close()
      until (res and res.status == 200) or socket.gettime() > deadline
      assert_status(200, res)
    end)
  end)

  describe("app faults: response splitting, 500, 404 #e2e #conformance", function()
    local faults, pass

    setup(function()
      faults = start(FAULTS)
      pass = start(PASSTHROUGH)
    end)
    teardown(function()
      stop(faults)
      stop(pass)
    end)

    local function raw_exchange(p, path)
      local c = open(p)
      assert(c:send(GET(path, { "Connection: close" })))
      c:settimeout(5)
      local raw = c:read_all()
      return raw
    end

    for _, path in ipairs({ "/crlf-value", "/lf-value", "/cr-value", "/crlf-name", "/crlf-array" }) do
      it("answers 500 and sends no injected header for " .. path, function()
        local raw = raw_exchange(faults.port, path)
        assert.truthy(raw:match("^HTTP/1%.1 500 "), "expected 500, got " .. raw:sub(1, 80))
        assert.is_nil(raw:find("[\r\n]X%-Injected"), "response splitting:\n" .. raw)
        assert.are.equal("ok", assert(http.get(faults.port, "/ok")).body, "server stopped serving")
      end)
    end

    it("never lets CR/LF in the reason phrase split the response", function()
      local raw = raw_exchange(faults.port, "/crlf-reason")
      assert.truthy(raw:match("^HTTP/1%.1 [25]00 "), "expected 500 or 200, got " .. raw:sub(1, 80))
      assert.is_nil(raw:find("[\r\n]X%-Injected"), "response splitting:\n" .. raw)
    end)

    it("answers an app error with a generic 500 and keeps serving", function()
      local res = assert(http.get(faults.port, "/error"))
      assert_status(500, res)
      assert.is_nil(res.body:find("conformance-secret-detail", 1, true), "error detail in the page")
      assert.is_nil(res.body:lower():find("traceback", 1, true), "traceback in the page")
      assert.are.equal("ok", assert(http.get(faults.port, "/ok")).body)
    end)

    it("answers 404 when a request falls off the end of the pipeline", function()
      local res = assert(http.get(pass.port, "/anything"))
      assert_status(404, res)
    end)
  end)
end)
