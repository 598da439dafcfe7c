-- Writes the seed corpora of the harnesses (fuzz/corpus/<harness>/) from the
-- requests, responses, bodies and frames of the specs
-- (spec/e2e/rfc9112_spec.lua, spec/unit/chunked_spec.lua,
-- spec/unit/http_resp_spec.lua, spec/unit/ws_spec.lua, spec/helpers/ws.lua)
-- and the examples of RFC 6455 section 5.7 and RFC 7692 section 7.2.3.
-- The corpora are committed; run this again only to change them:
--
--   make build/owl_codec.so && lua5.4 fuzz/seeds.lua
--
-- Each file is named after what it holds.  The formats of the inputs are
-- described at the top of each harness (fuzz/*.c).

package.cpath = "build/?.so;" .. package.cpath
local codec = require("owl_codec")

local TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
local KEY = "\x37\xfa\x21\x3d"          -- RFC 6455 5.7's masking key

local function bytes(hex)
  return (hex:gsub("%s*(%x%x)%s*", function(h) return string.char(tonumber(h, 16)) end))
end

-- A client's (masked) frame and a server's (unmasked) one
local function cframe(opcode, payload, opts)
  opts = opts or {}
  return codec.ws_frame(opcode, payload, { fin = opts.fin ~= false, rsv1 = opts.rsv1, mask = KEY })
end

local function sframe(opcode, payload, opts)
  opts = opts or {}
  return codec.ws_frame(opcode, payload, { fin = opts.fin ~= false, rsv1 = opts.rsv1 })
end

local written = {}

local function seed(harness, name, data)
  local dir = "fuzz/corpus/" .. harness
  os.execute("mkdir -p " .. dir)
  name = name:gsub("[^%w%-]+", "-"):gsub("^%-+", ""):gsub("%-+$", ""):lower()
  local path = dir .. "/" .. name
  assert(not written[path], "two seeds named " .. path)
  written[path] = true
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- {====== http_head: raw requests, as rfc9112_spec.lua builds them

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

local function wsreq(path, opts)
  opts = opts or {}
  local lines = {
    "GET " .. (path or "/") .. " HTTP/1.1",
    "Host: 127.0.0.1",
    "Upgrade: " .. (opts.upgrade or "websocket"),
    "Connection: " .. (opts.connection or "Upgrade"),
    "Sec-WebSocket-Key: " .. (opts.key or "dGhlIHNhbXBsZSBub25jZQ=="),
    "Sec-WebSocket-Version: " .. (opts.version or "13"),
  }
  if opts.extensions then lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. opts.extensions end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local SMUGGLED = GET("/smuggled")

local http = {
  ["get"] = GET("/hello?x=1"),
  ["methods"] = request("PUT", "/m", { "Host: example.test", "Content-Length: 0" })
    .. request("DELETE", "/m", { "Host: example.test", "Content-Length: 0" })
    .. request("OPTIONS", "/m", { "Host: example.test", "Content-Length: 0" }),
  ["extension method"] = request("FROB", "/m", { "Host: example.test" }),
  ["lower-case version"] = "GET / http/1.1\r\nHost: example.test\r\n\r\n",
  ["http09"] = "GET /\r\nHost: example.test\r\n\r\n",
  ["version 1.1x"] = "GET / HTTP/1.1x\r\nHost: example.test\r\n\r\n",
  ["version 3.0"] = "GET / HTTP/3.0\r\nHost: example.test\r\n\r\n",
  ["method not a token"] = "GE(T / HTTP/1.1\r\nHost: example.test\r\n\r\n",
  ["no method"] = " / HTTP/1.1\r\nHost: example.test\r\n\r\n",
  ["space in target"] = "GET /a b HTTP/1.1\r\nHost: example.test\r\n\r\n",
  ["nul in target"] = "GET /a\0b HTTP/1.1\r\nHost: example.test\r\n\r\n",
  ["bare cr request line"] = "GET / HTTP/1.1\rHost: example.test\r\n\r\n",
  ["bare lf request line"] = "GET / HTTP/1.1\nHost: example.test\r\n\r\n",
  ["empty line first"] = "\r\n" .. GET("/after-empty-line"),
  ["absolute form"] = request("GET", "http://example.test/abs/path?q=1", { "Host: example.test" }),
  ["asterisk form"] = request("OPTIONS", "*", { "Host: example.test" }),
  ["percent path"] = GET("/a%20b/c%2Fd?x=%20&y"),
  ["space before colon"] = GET("/", { "X-Test : value" }),
  ["no colon"] = GET("/", { "X-Test value" }),
  ["empty name"] = GET("/", { ": value" }),
  ["obs-fold"] = GET("/", { "X-Test: first", " folded" }),
  ["space before first field"] = "GET / HTTP/1.1\r\n X-Test: v\r\nHost: example.test\r\n\r\n",
  ["bare lf field"] = "GET / HTTP/1.1\r\nX-Test: v\nHost: example.test\r\n\r\n",
  ["bare lf throughout"] = "GET / HTTP/1.1\nHost: example.test\n\n",
  ["bare cr field"] = "GET / HTTP/1.1\r\nHost: example.test\rX-Test: v\r\n\r\n",
  ["cr in value"] = GET("/", { "X-Test: a\rb" }),
  ["nul in value"] = GET("/", { "X-Test: a\0b" }),
  ["padded value"] = GET("/", { "X-Test: \t padded  value \t " }),
  ["empty value"] = GET("/", { "X-Test:" }),
  ["obs-text value"] = GET("/", { "X-Test: caf\195\169" }),
  ["repeated field"] = GET("/", { "X-Test: one", "X-Other: between", "x-test: two" }),
  ["no host"] = "GET / HTTP/1.1\r\nX-Test: v\r\n\r\n",
  ["two hosts"] = "GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n",
  ["host with path"] = "GET / HTTP/1.1\r\nHost: example.test/path\r\n\r\n",
  ["empty host"] = "GET / HTTP/1.1\r\nHost:\r\n\r\n",
  ["host ipv6"] = "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
  ["http10 no host"] = "GET /no-host HTTP/1.0\r\n\r\n",
  ["content-length"] = POST("/cl", "hello"),
  ["get with body pipelined"] = request("GET", "/get-body",
    { "Host: example.test", "Content-Length: 3" }, "abc") .. GET("/next"),
  ["cl and te"] = request("POST", "/", { "Host: example.test", "Content-Length: 5",
    "Transfer-Encoding: chunked" }, "0\r\n\r\n") .. SMUGGLED,
  ["two content-lengths"] = request("POST", "/", { "Host: example.test", "Content-Length: 5",
    "Content-Length: 6" }, "hello!") .. SMUGGLED,
  ["content-length list"] = request("POST", "/dup", { "Host: example.test", "Content-Length: 5, 5" },
    "hello") .. GET("/next"),
  ["content-length huge"] = request("POST", "/", { "Host: example.test",
    "Content-Length: 99999999999999999999999999999" }, "hello"),
  ["content-length leading zeros"] = request("POST", "/", { "Host: example.test",
    "Content-Length: 005" }, "hello"),
  ["te gzip"] = request("POST", "/", { "Host: example.test", "Transfer-Encoding: gzip, chunked" },
    "0\r\n\r\n"),
  ["te chunked twice"] = request("POST", "/", { "Host: example.test",
    "Transfer-Encoding: chunked, chunked" }, "0\r\n\r\n") .. SMUGGLED,
  ["te upper"] = request("POST", "/", { "Host: example.test", "Transfer-Encoding: CHUNKED" },
    "5\r\nhello\r\n0\r\n\r\n"),
  ["te http10"] = "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n" .. "GET /smuggled HTTP/1.0\r\n\r\n",
  ["chunked"] = chunked("/", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
  ["chunked hex sizes"] = chunked("/", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0005\r\nvwxyz\r\n000\r\n\r\n"),
  ["chunked extensions"] = chunked("/", "5;name=value\r\nhello\r\n"
    .. "1;flag\r\n \r\n" .. "5;q=\"quoted; \\\"value\\\"\";a=1;b\r\nworld\r\n"
    .. "0;last=yes\r\n\r\n"),
  ["chunked trailers"] = chunked("/", "5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n")
    .. GET("/next"),
  ["chunked empty"] = chunked("/", "0\r\n\r\n"),
  ["chunked size overflow"] = chunked("/", "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n") .. SMUGGLED,
  ["chunked data no crlf"] = chunked("/", "5\r\nhelloX0\r\n\r\n") .. SMUGGLED,
  ["chunked bare lf"] = chunked("/", "5\nhello\r\n0\r\n\r\n") .. SMUGGLED,
  ["chunked bad ext"] = chunked("/", "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n") .. SMUGGLED,
  ["chunked folded trailer"] = chunked("/", "5\r\nhello\r\n0\r\nX-Trailer: a\r\n folded\r\n\r\n"),
  ["pipeline"] = GET("/p1") .. POST("/p2", "body-2")
    .. chunked("/p3", "4\r\ndata\r\n0\r\n\r\n")
    .. request("GET", "/p4", { "Host: example.test", "Connection: keep-alive" }),
  ["good then bad"] = GET("/good") .. "GET /bad HTTP/1.1\r\nHost : example.test\r\n\r\n" .. GET("/never"),
  ["connection close"] = GET("/one") .. GET("/two", { "Connection: close" }) .. GET("/three"),
  ["http10 keep-alive"] = "GET /ka1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    .. "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  ["http10 post"] = "POST /old HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
  ["h2c upgrade"] = POST("/h2c", "hello", { "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA" }),
  ["h2 preface"] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  ["expect continue"] = request("POST", "/read", { "Host: example.test", "Expect: 100-continue",
    "Content-Length: 5" }) .. "hello",
  ["expect continue chunked"] = request("POST", "/read", { "Host: example.test",
    "Expect: 100-continue", "Transfer-Encoding: chunked" }) .. "5\r\nhello\r\n0\r\n\r\n",
  ["body too large"] = request("POST", "/", { "Host: example.test", "Content-Length: 3000" }),
  ["target too long"] = GET("/" .. string.rep("t", 1100)),
  ["too many headers"] = GET("/", (function()
    local t = {}
    for i = 1, 25 do t[i] = "X-H" .. i .. ": v" end
    return t
  end)()),
  ["head"] = request("HEAD", "/?body=hello", { "Host: example.test" }) .. GET("/?body=after"),
  ["websocket"] = wsreq("/echo") .. cframe(TEXT, "Hello") .. cframe(PING, "p")
    .. cframe(CLOSE, "\3\232bye"),
  ["websocket fragments"] = wsreq("/echo") .. cframe(TEXT, "Hel", { fin = false })
    .. cframe(PING, "") .. cframe(CONT, "lo") .. cframe(BINARY, string.rep("\0\1", 70)),
  ["websocket deflate"] = wsreq("/echo", { extensions = "permessage-deflate; client_max_window_bits" })
    .. cframe(TEXT, bytes("f2 48 cd c9 c9 07 00"), { rsv1 = true })
    .. cframe(TEXT, bytes("f2 00 11 00 00"), { rsv1 = true }),
  ["websocket bad utf8"] = wsreq("/echo") .. cframe(TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
  ["websocket version 8"] = wsreq("/echo", { version = "8" }),
  ["websocket bad key"] = wsreq("/echo", { key = "dGhlIHNhbXBsZQ==" }),
  ["websocket no connection upgrade"] = wsreq("/echo", { connection = "keep-alive" }),
  ["opaque upgrade"] = wsreq("/opaque", { upgrade = "h2c" }) .. "raw bytes after the head",
}
for name, raw in pairs(http) do seed("http_head", name, raw) end
-- }======


-- {====== chunked: bodies from chunked_spec.lua and rfc9112_spec.lua

local bodies = {
  ["two chunks"] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
  ["next message"] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
  ["hex sizes"] = "1A\r\n" .. string.rep("x", 26) .. "\r\n0000\r\n\r\n",
  ["extensions"] = "4;a=1;b=\"x y\"\r\nwiki\r\n5 ; c\r\npedia\r\n0\r\nX-T: v\r\n\r\n",
  ["unfinished"] = "5\r\nhel",
  ["quoted pair"] = "3;a=\"quoted \\\" pair\"\r\nabc\r\n0\r\n\r\n",
  ["ext whitespace"] = "3\t;a=b\t\r\nabc\r\n0\r\n\r\n",
  ["ext forms"] = "5;name=value\r\nhello\r\n1;flag\r\n \r\n5;q=\"quoted; \\\"value\\\"\";a=1;b\r\nworld\r\n0;last=yes\r\n\r\n",
  ["trailers"] = "5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
  ["empty"] = "0\r\n\r\n",
  ["size overflow"] = "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
  ["bad size"] = "0x5\r\nhello\r\n0\r\n\r\n",
  ["data no crlf"] = "5\r\nhelloX0\r\n\r\n",
  ["bare lf"] = "5\nhello\r\n0\r\n\r\n",
  ["bare lf last"] = "5\r\nhello\r\n0\n\n",
  ["bad ext"] = "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n",
  ["trailer no colon"] = "5\r\nhello\r\n0\r\nBad trailer\r\n\r\n",
  ["folded trailer"] = "5\r\nhello\r\n0\r\nX-Trailer: a\r\n folded\r\n\r\n",
  ["large chunk"] = "200\r\n" .. string.rep("0123456789", 52):sub(1, 512) .. "\r\n0\r\n\r\n",
}
for name, body in pairs(bodies) do seed("chunked", name, body) end
-- }======


-- {====== ws_frame: a configuration byte, then frames (see fuzz/ws_frame.c)

local SERVER, CLIENT, NOLIMIT, LIM64, LIM1000, PAUSE, DEFLATE = 0, 1, 2, 4, 6, 8, 16
local frames = {
  -- RFC 6455 5.7
  ["rfc6455 unmasked text"] = { CLIENT, bytes("81 05 48 65 6c 6c 6f") },
  ["rfc6455 masked text"] = { SERVER, bytes("81 85 37 fa 21 3d 7f 9f 4d 51 58") },
  ["rfc6455 fragmented text"] = { CLIENT, bytes("01 03 48 65 6c 80 02 6c 6f") },
  ["rfc6455 ping pong"] = { CLIENT, bytes("89 05 48 65 6c 6c 6f") .. bytes("8a 05 48 65 6c 6c 6f") },
  ["rfc6455 masked pong"] = { SERVER, bytes("8a 85 37 fa 21 3d 7f 9f 4d 51 58") },
  ["rfc6455 256 binary"] = { CLIENT, bytes("82 7e 01 00") .. (function()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    return table.concat(t)
  end)() },
  -- ws_spec.lua
  ["masked fragments with ping"] = { SERVER, cframe(TEXT, "Hel", { fin = false }) .. cframe(PING, "x")
    .. cframe(CONT, "l", { fin = false }) .. cframe(CONT, "o") },
  ["utf8 split across fragments"] = { SERVER, cframe(TEXT, "\xce", { fin = false })
    .. cframe(CONT, "\xba\xe1\xbd", { fin = false }) .. cframe(CONT, "\xb9") },
  ["bad utf8 surrogate"] = { SERVER, cframe(TEXT, "a\xed\xa0\x80b") },
  ["bad utf8 overlong"] = { SERVER, cframe(TEXT, "\xc0\xaf") },
  ["utf8 four bytes"] = { SERVER, cframe(TEXT, "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf") },
  ["utf8 cut at end"] = { SERVER, cframe(TEXT, "ab\xe2\x82") },
  ["close with reason"] = { SERVER, cframe(CLOSE, "\3\232normal") .. cframe(TEXT, "after") },
  ["close empty"] = { SERVER, cframe(CLOSE, "") },
  ["close one byte"] = { SERVER, cframe(CLOSE, "\3") },
  ["close bad code"] = { SERVER, cframe(CLOSE, "\3\236") },
  ["close bad reason"] = { SERVER, cframe(CLOSE, "\3\232\xff") },
  ["control too long"] = { SERVER, bytes("89 fe 00 7e") .. KEY .. string.rep("x", 126) },
  ["length 16 not minimal"] = { SERVER, bytes("82 fe 00 05") .. KEY .. "hello" },
  ["length 64"] = { CLIENT, bytes("82 7f 00 00 00 00 00 01 00 00") .. "abc" },
  ["length 64 high bit"] = { CLIENT, bytes("82 7f 80 00 00 00 00 00 00 00") },
  ["reserved opcode"] = { SERVER, cframe(3, "x") },
  ["rsv2"] = { SERVER, string.char(0xa1) .. cframe(TEXT, "x"):sub(2) },
  ["continuation first"] = { SERVER, cframe(CONT, "x") },
  ["text inside fragments"] = { SERVER, cframe(TEXT, "a", { fin = false }) .. cframe(TEXT, "b") },
  ["fragmented ping"] = { SERVER, cframe(PING, "a", { fin = false }) },
  ["unmasked to server"] = { SERVER, sframe(TEXT, "Hello") },
  ["masked to client"] = { CLIENT, cframe(TEXT, "Hello") },
  ["frame over limit"] = { SERVER | LIM64, cframe(BINARY, string.rep("b", 100)) },
  ["message over limit"] = { SERVER | LIM64, cframe(BINARY, string.rep("b", 40), { fin = false })
    .. cframe(CONT, string.rep("c", 40)) },
  ["no limit"] = { SERVER | NOLIMIT, cframe(BINARY, string.rep("b", 300)) },
  ["limit 1000"] = { SERVER | LIM1000, cframe(TEXT, string.rep("t", 900), { fin = false })
    .. cframe(CONT, string.rep("u", 200)) },
  ["pause"] = { SERVER | PAUSE, cframe(TEXT, "one") .. cframe(PING, "") .. cframe(TEXT, "two") },
  ["pause pieces"] = { SERVER | PAUSE | (5 << 5), cframe(TEXT, "one", { fin = false })
    .. cframe(PONG, "p") .. cframe(CONT, "two") },
  -- RFC 7692 7.2.3
  ["rfc7692 hello"] = { SERVER | DEFLATE, cframe(TEXT, bytes("f2 48 cd c9 c9 07 00"), { rsv1 = true }) },
  ["rfc7692 fragments"] = { SERVER | DEFLATE, cframe(TEXT, bytes("f2 48 cd"), { rsv1 = true, fin = false })
    .. cframe(CONT, bytes("c9 c9 07 00")) },
  ["rfc7692 window"] = { SERVER | DEFLATE, cframe(TEXT, bytes("f2 48 cd c9 c9 07 00"), { rsv1 = true })
    .. cframe(TEXT, bytes("f2 00 11 00 00"), { rsv1 = true }) },
  ["rfc7692 stored"] = { SERVER | DEFLATE, cframe(TEXT, bytes("00 05 00 fa ff 48 65 6c 6c 6f 00"),
    { rsv1 = true }) },
  ["rfc7692 bfinal"] = { SERVER | DEFLATE, cframe(TEXT, bytes("f3 48 cd c9 c9 07 00 00"), { rsv1 = true })
    .. cframe(TEXT, bytes("f2 00 11 00 00"), { rsv1 = true }) },
  ["rfc7692 two blocks"] = { SERVER | DEFLATE, cframe(TEXT,
    bytes("f2 48 05 00 00 00 ff ff ca c9 c9 07 00"), { rsv1 = true }) },
  ["rsv1 without deflate"] = { SERVER, cframe(TEXT, bytes("f2 48 cd c9 c9 07 00"), { rsv1 = true }) },
  ["rsv1 on continuation"] = { SERVER | DEFLATE, cframe(TEXT, bytes("f2 48"), { rsv1 = true, fin = false })
    .. cframe(CONT, bytes("cd c9 c9 07 00"), { rsv1 = true }) },
}
for name, f in pairs(frames) do seed("ws_frame", name, string.char(f[1]) .. f[2]) end
-- }======


-- {====== ws_inflate: a parameter byte, then records (see fuzz/ws_inflate.c)

local function record(kind, data)
  return string.char(kind, #data >> 8, #data & 0xff) .. data
end
local RAW, ROUND, PINGREC, TEXTREC, PLAIN, PINGS = 0, 2, 3, 4, 8, 16
local function frags(n) return (n - 1) << 5 end
local inflate = {
  ["rfc7692 hello"] = { 7, record(RAW | TEXTREC, bytes("f2 48 cd c9 c9 07 00")) },
  ["rfc7692 window"] = { 7, record(RAW | TEXTREC, bytes("f2 48 cd c9 c9 07 00"))
    .. record(RAW | TEXTREC, bytes("f2 00 11 00 00")) },
  ["rfc7692 fragments"] = { 7, record(RAW | TEXTREC | frags(2), bytes("f2 48 cd c9 c9 07 00")) },
  ["rfc7692 stored"] = { 7, record(RAW | TEXTREC, bytes("00 05 00 fa ff 48 65 6c 6c 6f 00")) },
  ["rfc7692 bfinal"] = { 7, record(RAW | TEXTREC, bytes("f3 48 cd c9 c9 07 00 00"))
    .. record(RAW | TEXTREC, bytes("f2 00 11 00 00")) },
  ["rfc7692 two blocks"] = { 7, record(RAW, bytes("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")) },
  ["roundtrip"] = { 7, record(ROUND | TEXTREC, "Hello") .. record(ROUND | TEXTREC, "Hello")
    .. record(ROUND, string.rep("\0\1\2", 300)) },
  ["roundtrip fragments pings"] = { 1, record(ROUND | TEXTREC | PINGS | frags(4),
    string.rep("abcdefgh", 64)) .. record(PINGREC, "ping") },
  ["roundtrip no context takeover"] = { 8 | 2, record(ROUND | TEXTREC, string.rep("x", 200))
    .. record(RAW, bytes("f2 48 cd c9 c9 07 00")) .. record(ROUND | TEXTREC, string.rep("x", 200)) },
  ["mixed plain"] = { 7, record(ROUND | PLAIN | TEXTREC, "plain") .. record(ROUND, "compressed")
    .. record(RAW | PLAIN, "raw plain") },
  ["bomb over limit"] = { 7 | (2 << 4), record(RAW, codec.ws_deflate(string.rep("\0", 1 << 20), {})) },
  ["limit 4096"] = { 7 | (1 << 4), record(ROUND | TEXTREC, string.rep("caf\xc3\xa9 ", 800)) },
  ["bad utf8 compressed"] = { 7, record(ROUND | TEXTREC, "ok \xed\xa0\x80 no") },
  ["utf8 split compressed"] = { 7 | (1 << 7), record(ROUND | TEXTREC | frags(3),
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80") },
  ["corrupt"] = { 7, record(RAW, bytes("ff ff ff ff 00 00")) },
  ["pause"] = { 7 | (1 << 6), record(ROUND | TEXTREC, "one") .. record(PINGREC, "")
    .. record(ROUND, "two") },
}
do                                    -- the codec's own deflater, window 9
  local params = { client_max_window_bits = 9, server_max_window_bits = 9 }
  local z = codec.ws_deflate(string.rep("The quick brown fox. ", 40), params)
  inflate["codec deflate window 9"] = { 1, record(RAW | TEXTREC, z) }
end
for name, r in pairs(inflate) do seed("ws_inflate", name, string.char(r[1]) .. r[2]) end
-- }======


-- {====== ws_handshake: two policy bytes, then a header value

local NOPOLICY = 1
local function policy(snct, cnct, sbits, cbits)
  return string.char((snct and 2 or 0) | (cnct and 4 or 0) | ((sbits or 0) << 3), cbits or 0)
end
local hs = {
  ["offer bare"] = { string.char(NOPOLICY, 0), "permessage-deflate" },
  ["offer client bits"] = { string.char(NOPOLICY, 0), "permessage-deflate; client_max_window_bits" },
  ["offer full"] = { string.char(NOPOLICY, 0), "permessage-deflate; server_no_context_takeover; "
    .. "client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12" },
  ["offer quoted"] = { string.char(NOPOLICY, 0), 'permessage-deflate ; server_max_window_bits = "9"' },
  ["policy"] = { policy(true, false, 10, 11),
    "permessage-deflate; client_max_window_bits; server_max_window_bits=12" },
  ["policy bare"] = { policy(true, true, 8, 8), "permessage-deflate" },
  ["other extensions"] = { policy(false, false, 15, 15),
    " , x-webkit-deflate-frame; no_context_takeover, ,permessage-deflate" },
  ["repeated parameter"] = { string.char(NOPOLICY, 0), "permessage-deflate; server_max_window_bits=10; "
    .. "server_max_window_bits=10, permessage-deflate; client_no_context_takeover" },
  ["bad bits"] = { string.char(NOPOLICY, 0),
    "permessage-deflate; server_max_window_bits=08, permessage-deflate; client_max_window_bits=100" },
  ["unterminated"] = { string.char(NOPOLICY, 0), 'permessage-deflate; a="unterminated' },
  ["escapes"] = { string.char(NOPOLICY, 0), 'permessage-deflate; server_max_window_bits="1\\0"' },
  ["key"] = { string.char(NOPOLICY, 0), "dGhlIHNhbXBsZSBub25jZQ==" },
  ["key padded"] = { string.char(NOPOLICY, 0), "  dGhlIHNhbXBsZSBub25jZQ== \t" },
  ["key symbols"] = { string.char(NOPOLICY, 0), "+/+/+/+/+/+/+/+/+/+/+w==" },
  ["key short"] = { string.char(NOPOLICY, 0), "dGhlIHNhbXBsZQ==" },
  ["key nul"] = { string.char(NOPOLICY, 0), "dGhlIHNhbXBsZSBub25\0ZQ==" },
  ["key long"] = { string.char(NOPOLICY, 0), string.rep("a", 100) },
}
for name, h in pairs(hs) do seed("ws_handshake", name, h[1] .. h[2]) end
-- }======


-- {====== http_resp: a mode byte, then a response (see fuzz/http_resp.c)

local GET_, HEAD_, SMALL, EOF = 0, 1, 2, 4
local OK = "HTTP/1.1 200 OK\r\n"
local responses = {
  ["content-length"] = { GET_, OK .. "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world" },
  ["content-length small"] = { SMALL, OK .. "Content-Length: 40\r\n\r\n" .. string.rep("x", 40) },
  ["chunked"] = { GET_, OK .. "Transfer-Encoding: chunked\r\n\r\n" ..
    "4;a=1;b=\"x y\"\r\nwiki\r\n5 ; c\r\npedia\r\n0\r\nX-Trailer: v\r\n\r\n" },
  ["until close"] = { EOF, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil the end" },
  ["head"] = { HEAD_, OK .. "Content-Length: 5\r\n\r\n" },
  ["no content"] = { GET_, "HTTP/1.1 204 No Content\r\n\r\n" },
  ["not modified"] = { GET_, "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n" },
  ["interim"] = { GET_, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n" ..
    "Link: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew" },
  ["switching"] = { GET_, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
    "Connection: Upgrade\r\n\r\n\129\5hello" },
  ["keep-alive 1.0"] = { GET_, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n" },
  ["close"] = { EOF, OK .. "Connection: close\r\nContent-Length: 2\r\n\r\nhi" },
  ["fields"] = { GET_, OK .. "Set-Cookie: a=1\r\nX-Empty:\r\nX-Ws: \t padded \t \r\n" ..
    "SET-COOKIE: b=2; Path=/\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n" },
  ["no reason"] = { GET_, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" },
  ["obs-fold"] = { GET_, OK .. "X: a\r\n b\r\n\r\n" },
  ["bare lf"] = { GET_, "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n" },
  ["bare cr"] = { GET_, OK .. "X: a\rb\r\n\r\n" },
  ["content-length twice"] = { GET_, OK .. "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi" },
  ["content-length and chunked"] = { GET_, OK .. "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n" },
  ["gzip chunked"] = { GET_, OK .. "Transfer-Encoding: gzip, chunked\r\n\r\n" },
  ["bad chunk"] = { GET_, OK .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n" },
  ["many headers"] = { SMALL, OK .. string.rep("X: y\r\n", 6) .. "\r\n" },
  ["cut body"] = { EOF, OK .. "Content-Length: 5\r\n\r\nabc" },
  ["pipelined"] = { GET_, OK .. "Content-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n" },
}
for name, r in pairs(responses) do seed("http_resp", name, string.char(r[1]) .. r[2]) end
-- }======
