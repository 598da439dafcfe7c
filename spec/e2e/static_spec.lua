-- owin.static (lua/owin/static.lua) through the real server: files and their
-- types, validators and conditional requests, byte ranges, HEAD, directory
-- indexes and redirects, and every way out of the root we could think of.
--
-- The fixture app (spec/fixtures/static.lua) serves spec/fixtures/static_root.
-- setup() adds static_root/gen/ (large files, a dated file, one file per
-- type, symlinks in and out of the root, a fifo) and a secret directory
-- outside the root; teardown removes both.
--
--   busted --lua=lua5.4 spec/e2e/static_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

local ROOT = "spec/fixtures/static_root"
local GEN = ROOT .. "/gen"
local q = server.shell_quote

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local function sh(cmd)
  assert(os.execute(cmd), "failed: " .. cmd)
end

-- n bytes that cover every byte value, CR, LF and NUL included, in no
-- repeating pattern shorter than the file (a linear congruential sequence).
local function binary(n)
  local parts, x = {}, 12345
  local buf = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    buf[#buf + 1] = (x >> 16) & 255
    if #buf == 4096 or i == n then
      parts[#parts + 1] = string.char(table.unpack(buf))
      buf = {}
    end
  end
  return table.concat(parts)
end

local HELLO = "Hello, static world!\n"
local BIG = binary(200 * 1024)
local HUGE_SIZE = 8 * 1024 * 1024
local HUGE = (BIG:rep(HUGE_SIZE // #BIG + 1)):sub(1, HUGE_SIZE)
local DATED_MTIME = 1700000000                        -- 2023-11-14T22:13:20Z, a Tuesday
local DATED_LM = "Tue, 14 Nov 2023 22:13:20 GMT"
local DATED_ETAG = '"6-6553f100"'                     -- 6 bytes, mtime in hex

-- Content types the middleware must give by default, by extension.
local TYPES = {
  html = "text/html; charset=utf-8", css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  json = "application/json", txt = "text/plain; charset=utf-8", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", ico = "image/x-icon", wasm = "application/wasm",
  woff = "font/woff", woff2 = "font/woff2", pdf = "application/pdf",
  xml = "application/xml", map = "application/json", mp4 = "video/mp4",
  webm = "video/webm", mp3 = "audio/mpeg",
}

local secret_dir, SECRET

-- Builds static_root/gen and the secret directory outside the root.
local function make_files()
  secret_dir = assert(io.popen("mktemp -d /tmp/owl-static-secret.XXXXXX")):read("l")
  SECRET = "OWL-SECRET-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
  write_file(secret_dir .. "/secret.txt", SECRET .. "\n")
  sh("rm -rf " .. q(GEN) .. " && mkdir -p " .. q(GEN .. "/types"))
  write_file(GEN .. "/big.bin", BIG)
  write_file(GEN .. "/huge.bin", HUGE)
  write_file(GEN .. "/dated.txt", "dated\n")
  sh("touch -m -d @" .. DATED_MTIME .. " " .. q(GEN .. "/dated.txt"))
  write_file(GEN .. "/empty.txt", "")
  for ext in pairs(TYPES) do write_file(GEN .. "/types/t." .. ext, ext) end
  write_file(GEN .. "/types/UPPER.PNG", "png")
  write_file(GEN .. "/types/noext", "none")
  write_file(GEN .. "/types/x.bin", "bin")
  write_file(GEN .. "/types/a.tar.gz", "gz")
  sh("ln -s ../hello.txt " .. q(GEN .. "/alias.txt"))            -- inside the root
  sh("ln -s ../sub " .. q(GEN .. "/linkdir"))                     -- a directory inside
  sh("ln -s " .. q(secret_dir .. "/secret.txt") .. " " .. q(GEN .. "/leak.txt"))
  sh("ln -s " .. q(secret_dir) .. " " .. q(GEN .. "/outdir"))
  sh("ln -s ../.. " .. q(GEN .. "/uplink"))                       -- spec/fixtures
  sh("mkfifo " .. q(GEN .. "/pipe"))
end

local function remove_files()
  if secret_dir then os.execute("rm -rf " .. q(secret_dir)) end
  os.execute("rm -rf " .. q(GEN))
end

describe("#e2e owin.static", function()
  local srv

  setup(function()
    make_files()
    srv = server.start("spec/fixtures/static.lua")
  end)

  teardown(function()
    remove_files()
    local ok, how, code = srv:stop()
    assert.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  end)

  local function get(path, headers, method)
    return assert(http.get(srv.port, path, headers, method))
  end

  -- One raw request on its own connection.
  local function raw(bytes, opts)
    return assert(http.request(srv.port, bytes, opts))
  end

  describe("files", function()
    it("serves a file with its length, type and Accept-Ranges", function()
      local res = get("/hello.txt")
      assert.equal(200, res.status)
      assert.equal(HELLO, res.body)
      assert.equal(tostring(#HELLO), res.headers["content-length"])
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.equal("bytes", res.headers["accept-ranges"])
      assert.is_nil(res.headers["cache-control"])
      assert.is_nil(res.chunked)
    end)

    it("serves the index of the root for /", function()
      local res = get("/")
      assert.equal(200, res.status)
      assert.matches("root index", res.body)
      assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    end)

    it("serves an empty file", function()
      local res = get("/gen/empty.txt")
      assert.equal(200, res.status)
      assert.equal("0", res.headers["content-length"])
      assert.equal("", res.body)
    end)

    it("follows a symlink that stays inside the root", function()
      assert.equal(HELLO, get("/gen/alias.txt").body)
      assert.matches("sub index", get("/gen/linkdir/").body)
    end)

    it("passes missing files, fifos and file paths with a final slash on", function()
      for _, p in ipairs({ "/nope.txt", "/sub/nope.html", "/gen/pipe", "/hello.txt/",
                           "/gen/empty.txt/x" }) do
        local res = get(p)
        assert.equal(404, res.status, p)
        assert.equal("fallback GET " .. p, res.body, p)
      end
    end)

    it("passes methods other than GET and HEAD on", function()
      for _, m in ipairs({ "POST", "PUT", "DELETE", "OPTIONS", "PATCH" }) do
        local res = raw(m .. " /hello.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n" ..
                        "Connection: close\r\n\r\n")
        assert.equal(404, res.status, m)
        assert.equal("fallback " .. m .. " /hello.txt", res.body)
      end
    end)

    it("does not serve dotfiles unless allowed", function()
      assert.equal("fallback GET /.hidden", get("/.hidden").body)
      assert.equal("fallback GET /sub/.hidden", get("/sub/.hidden").body)
      local allowed = get("/opts/.hidden")
      assert.equal(200, allowed.status)
      assert.equal("dotfile content\n", allowed.body)
      local denied = get("/deny/.hidden")
      assert.equal(403, denied.status)
      assert.equal("", denied.body)
    end)
  end)

  describe("content types", function()
    it("comes from the extension, for every common web type", function()
      for ext, ct in pairs(TYPES) do
        local res = get("/gen/types/t." .. ext)
        assert.equal(200, res.status, ext)
        assert.equal(ct, res.headers["content-type"], ext)
        assert.equal(ext, res.body)
      end
    end)

    it("ignores the case of the extension", function()
      assert.equal("image/png", get("/gen/types/UPPER.PNG").headers["content-type"])
    end)

    it("is application/octet-stream without a known extension", function()
      for _, p in ipairs({ "/gen/types/noext", "/gen/types/x.bin", "/gen/types/a.tar.gz" }) do
        assert.equal("application/octet-stream", get(p).headers["content-type"], p)
      end
    end)

    it("takes additions and overrides from opts.types", function()
      assert.equal("text/x-custom", get("/opts/hello.txt").headers["content-type"])
      assert.equal("application/x-test", get("/opts/gen/types/x.bin").headers["content-type"])
      assert.equal("text/css; charset=utf-8", get("/opts/style.css").headers["content-type"])
    end)
  end)

  describe("validators and conditional requests", function()
    it("sends ETag and Last-Modified from size and mtime", function()
      local res = get("/gen/dated.txt")
      assert.equal(DATED_ETAG, res.headers["etag"])
      assert.equal(DATED_LM, res.headers["last-modified"])
    end)

    it("changes the ETag when the file changes", function()
      local path = GEN .. "/changing.txt"
      write_file(path, "one")
      sh("touch -m -d @1600000000 " .. q(path))
      local first = get("/gen/changing.txt")
      assert.equal('"3-5f5e1000"', first.headers["etag"])
      write_file(path, "three")
      sh("touch -m -d @1600000001 " .. q(path))
      local second = get("/gen/changing.txt")
      assert.equal('"5-5f5e1001"', second.headers["etag"])
      local res = get("/gen/changing.txt", { ["If-None-Match"] = first.headers["etag"] })
      assert.equal(200, res.status)
      assert.equal("three", res.body)
    end)

    it("answers 304 when If-None-Match matches (weak comparison, lists, *)", function()
      for _, inm in ipairs({ DATED_ETAG, "W/" .. DATED_ETAG, '"x", ' .. DATED_ETAG,
                             '"a,b",W/' .. DATED_ETAG .. ' , "c"', "*" }) do
        local res = get("/gen/dated.txt", { ["If-None-Match"] = inm })
        assert.equal(304, res.status, inm)
        assert.equal(DATED_ETAG, res.headers["etag"], inm)
        assert.equal(DATED_LM, res.headers["last-modified"], inm)
        assert.is_nil(res.headers["content-type"])
      end
    end)

    it("answers 200 when If-None-Match does not match or is malformed", function()
      for _, inm in ipairs({ '"nope"', '"6-6553f101"', "6-6553f100", '"unterminated' }) do
        local res = get("/gen/dated.txt", { ["If-None-Match"] = inm })
        assert.equal(200, res.status, inm)
        assert.equal("dated\n", res.body)
      end
    end)

    it("answers 304 when If-Modified-Since is at or after the mtime, in all three date forms", function()
      for _, d in ipairs({ DATED_LM, "Wed, 15 Nov 2023 00:00:00 GMT",
                           "Tuesday, 14-Nov-23 22:13:20 GMT", "Tue Nov 14 22:13:20 2023" }) do
        local res = get("/gen/dated.txt", { ["If-Modified-Since"] = d })
        assert.equal(304, res.status, d)
        assert.equal("", res.body)
      end
    end)

    it("answers 200 when If-Modified-Since is earlier, invalid or in the future", function()
      for _, d in ipairs({ "Tue, 14 Nov 2023 22:13:19 GMT", "yesterday",
                           "Tue, 14 Nov 2023 22:13:20 UTC", "Thu, 01 Jan 2099 00:00:00 GMT" }) do
        local res = get("/gen/dated.txt", { ["If-Modified-Since"] = d })
        assert.equal(200, res.status, d)
        assert.equal("dated\n", res.body)
      end
    end)

    it("ignores If-Modified-Since when If-None-Match is present", function()
      local res = get("/gen/dated.txt", { ["If-None-Match"] = '"other"',
                                          ["If-Modified-Since"] = DATED_LM })
      assert.equal(200, res.status)
      res = get("/gen/dated.txt", { ["If-None-Match"] = DATED_ETAG,
                                    ["If-Modified-Since"] = "Tue, 14 Nov 2023 22:13:19 GMT" })
      assert.equal(304, res.status)
    end)

    it("answers 412 when If-Match or If-Unmodified-Since fails", function()
      assert.equal(200, get("/gen/dated.txt", { ["If-Match"] = DATED_ETAG }).status)
      assert.equal(200, get("/gen/dated.txt", { ["If-Match"] = "*" }).status)
      assert.equal(412, get("/gen/dated.txt", { ["If-Match"] = '"nope"' }).status)
      assert.equal(412, get("/gen/dated.txt", { ["If-Match"] = "W/" .. DATED_ETAG }).status)
      assert.equal(200, get("/gen/dated.txt", { ["If-Unmodified-Since"] = DATED_LM }).status)
      local res = get("/gen/dated.txt", { ["If-Unmodified-Since"] = "Tue, 14 Nov 2023 22:13:19 GMT" })
      assert.equal(412, res.status)
      assert.equal("", res.body)
    end)

    it("keeps the connection usable after a 304", function()
      local c = assert(http.connect(srv.port))
      c:send("GET /gen/dated.txt HTTP/1.1\r\nHost: h\r\nIf-None-Match: " .. DATED_ETAG .. "\r\n\r\n" ..
             "GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n")
      assert.equal(304, assert(c:read_response()).status)
      assert.equal(HELLO, assert(c:read_response()).body)
      c:close()
    end)

    it("sends Cache-Control from opts.cache_control, on 200 and 304", function()
      local res = get("/opts/gen/dated.txt")
      assert.equal("public, max-age=60", res.headers["cache-control"])
      res = get("/opts/gen/dated.txt", { ["If-None-Match"] = DATED_ETAG })
      assert.equal(304, res.status)
      assert.equal("public, max-age=60", res.headers["cache-control"])
    end)
  end)

  describe("ranges", function()
    local size = #HELLO

    local function range(spec, path, extra)
      local h = { Range = spec }
      for k, v in pairs(extra or {}) do h[k] = v end
      return get(path or "/hello.txt", h)
    end

    local function partial(res, first, last, total, whole)
      assert.equal(206, res.status)
      assert.equal(string.format("bytes %d-%d/%d", first, last, total), res.headers["content-range"])
      assert.equal(tostring(last - first + 1), res.headers["content-length"])
      assert.equal(whole:sub(first + 1, last + 1), res.body)
    end

    local function full(res)
      assert.equal(200, res.status)
      assert.is_nil(res.headers["content-range"])
      assert.equal(HELLO, res.body)
    end

    it("sends a closed range with 206 and Content-Range", function()
      local res = range("bytes=0-4")
      partial(res, 0, 4, size, HELLO)
      assert.equal("Hello", res.body)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.equal('"15-', res.headers["etag"]:sub(1, 4))
      partial(range("bytes=7-7"), 7, 7, size, HELLO)
      partial(range("BYTES=0-0"), 0, 0, size, HELLO)
      partial(range("bytes= 2-3 "), 2, 3, size, HELLO)
    end)

    it("sends a suffix range", function()
      partial(range("bytes=-6"), size - 6, size - 1, size, HELLO)
      partial(range("bytes=-1000"), 0, size - 1, size, HELLO)
    end)

    it("sends an open-ended range and clamps a last position past the end", function()
      partial(range("bytes=7-"), 7, size - 1, size, HELLO)
      partial(range("bytes=7-1000"), 7, size - 1, size, HELLO)
      partial(range("bytes=0-99999999999999999999999"), 0, size - 1, size, HELLO)
    end)

    it("answers 416 with bytes */size when nothing is satisfiable", function()
      for _, spec in ipairs({ "bytes=" .. size .. "-", "bytes=1000-2000", "bytes=-0",
                              "bytes=99999999999999999999999-" }) do
        local res = range(spec)
        assert.equal(416, res.status, spec)
        assert.equal("bytes */" .. size, res.headers["content-range"], spec)
        assert.equal("", res.body)
      end
      local empty = range("bytes=0-", "/gen/empty.txt")
      assert.equal(416, empty.status)
      assert.equal("bytes */0", empty.headers["content-range"])
    end)

    it("ignores several ranges and malformed ones, sending the whole file", function()
      for _, spec in ipairs({ "bytes=0-1,3-4", "bytes=0-1, -2", "bytes=5-2", "bytes=abc",
                              "items=0-1", "bytes=", "bytes=-", "bytes 0-1", "bytes=1-2-3",
                              "bytes=+1-2" }) do
        full(range(spec))
      end
      -- two Range fields are a list of two ranges
      local res = raw("GET /hello.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n" ..
                      "Range: bytes=3-4\r\nConnection: close\r\n\r\n")
      full(res)
    end)

    it("honours If-Range with the current ETag or Last-Modified only", function()
      local cur = get("/hello.txt")
      partial(range("bytes=0-4", nil, { ["If-Range"] = cur.headers["etag"] }), 0, 4, size, HELLO)
      partial(range("bytes=0-4", nil, { ["If-Range"] = cur.headers["last-modified"] }), 0, 4, size, HELLO)
      full(range("bytes=0-4", nil, { ["If-Range"] = '"stale"' }))
      full(range("bytes=0-4", nil, { ["If-Range"] = "W/" .. cur.headers["etag"] }))
      full(range("bytes=0-4", nil, { ["If-Range"] = "Tue, 14 Nov 2023 22:13:20 GMT" }))
      full(range("bytes=0-4", nil, { ["If-Range"] = "garbage" }))
    end)

    it("checks If-None-Match before Range", function()
      local res = range("bytes=0-1", "/gen/dated.txt", { ["If-None-Match"] = DATED_ETAG })
      assert.equal(304, res.status)
      assert.is_nil(res.headers["content-range"])
    end)

    it("cuts exact slices out of a binary file", function()
      partial(range("bytes=65530-131080", "/gen/big.bin"), 65530, 131080, #BIG, BIG)
      partial(range("bytes=-70000", "/gen/big.bin"), #BIG - 70000, #BIG - 1, #BIG, BIG)
      partial(range("bytes=200000-", "/gen/big.bin"), 200000, #BIG - 1, #BIG, BIG)
      partial(range("bytes=1-1", "/gen/big.bin"), 1, 1, #BIG, BIG)
    end)

    it("sends a range of a file in the middle of a keep-alive connection", function()
      local c = assert(http.connect(srv.port))
      c:send("GET /hello.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-4\r\n\r\n" ..
             "GET /gen/big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=100-199\r\n\r\n" ..
             "GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n")
      assert.equal("Hello", assert(c:read_response()).body)
      assert.equal(BIG:sub(101, 200), assert(c:read_response()).body)
      assert.equal(HELLO, assert(c:read_response()).body)
      c:close()
    end)
  end)

  describe("HEAD", function()
    it("sends the headers GET would and no body", function()
      local g = get("/gen/big.bin")
      local c = assert(http.connect(srv.port))
      c:send("HEAD /gen/big.bin HTTP/1.1\r\nHost: h\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n")
      local h = assert(c:read_response({ method = "HEAD" }))
      assert.equal(200, h.status)
      for _, name in ipairs({ "content-length", "content-type", "etag", "last-modified",
                              "accept-ranges" }) do
        assert.equal(g.headers[name], h.headers[name], name)
      end
      assert.equal(tostring(#BIG), h.headers["content-length"])
      assert.equal(HELLO, assert(c:read_response()).body)   -- nothing stray came before it
      c:close()
    end)

    it("ignores Range (RFC 9110 defines ranges for GET only)", function()
      local c = assert(http.connect(srv.port))
      c:send("HEAD /hello.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-4\r\n\r\n" ..
             "GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n")
      local h = assert(c:read_response({ method = "HEAD" }))
      assert.equal(200, h.status)
      assert.equal(tostring(#HELLO), h.headers["content-length"])
      assert.equal(HELLO, assert(c:read_response()).body)
      c:close()
    end)

    it("answers conditional HEAD requests with 304", function()
      local res = get("/gen/dated.txt", { ["If-None-Match"] = DATED_ETAG }, "HEAD")
      assert.equal(304, res.status)
    end)
  end)

  describe("directories", function()
    it("serves the index file of a directory path with a final slash", function()
      local res = get("/sub/")
      assert.equal(200, res.status)
      assert.matches("sub index", res.body)
      assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    end)

    it("redirects a directory path without the slash, keeping the query", function()
      local res = get("/sub")
      assert.equal(301, res.status)
      assert.equal("/sub/", res.headers["location"])
      res = get("/sub?x=1&y=%20")
      assert.equal(301, res.status)
      assert.equal("/sub/?x=1&y=%20", res.headers["location"])
      res = get("/sub", nil, "HEAD")
      assert.equal(301, res.status)
      assert.equal("/sub/", res.headers["location"])
    end)

    it("percent-encodes the redirect and never points it at another host", function()
      local res = get("/dir%20with%20space")
      assert.equal("/dir%20with%20space/", res.headers["location"])
      assert.matches("spaced index", get("/dir%20with%20space/").body)
      res = get("//sub")
      assert.equal(301, res.status)
      assert.equal("/sub/", res.headers["location"])
    end)

    it("redirects and serves under a map prefix", function()
      local res = get("/opts/sub")
      assert.equal("/opts/sub/", res.headers["location"])
      assert.matches("sub default%.htm", get("/opts/sub/").body)      -- opts.index order
      assert.matches("sub index", get("/opts/sub/index.html").body)
    end)

    it("lists nothing: a directory without an index goes on down the pipeline", function()
      local res = get("/noindex/")
      assert.equal(404, res.status)
      assert.equal("fallback GET /noindex/", res.body)
      assert.equal(301, get("/noindex").status)
    end)
  end)

  describe("the root cannot be left", function()
    local forbidden

    setup(function()
      forbidden = { SECRET, "FIXTURE-SOURCE-MARKER", "root:x:0:0", "owin.static" }
    end)

    local function no_leak(res, what)
      for _, s in ipairs(forbidden) do
        assert.is_nil(res.body:find(s, 1, true), what .. " leaked " .. s)
      end
    end

    local function refused(status, paths)
      for _, p in ipairs(paths) do
        local res = get(p)
        assert.equal(status, res.status, p)
        assert.equal("", res.body, p)
        no_leak(res, p)
      end
    end

    it("refuses .. segments, plain and percent-encoded (404)", function()
      refused(404, { "/../static.lua", "/%2e%2e/static.lua", "/%2E%2E/static.lua",
                     "/.%2e/static.lua", "/a/../../etc/passwd", "/sub/../../static.lua",
                     "/..", "/sub/..", "/sub/../hello.txt", "/../../../../../../etc/passwd",
                     "/opts/../static.lua", "/follow/../static.lua", "/gen/uplink/../../static.lua" })
    end)

    it("refuses an encoded slash (404)", function()
      refused(404, { "/..%2fstatic.lua", "/..%2Fstatic.lua", "/sub%2F..%2F..%2Fstatic.lua",
                     "/sub%2findex.html", "/%2e%2e%2fstatic.lua" })
    end)

    it("refuses NUL, backslashes and . segments (400)", function()
      refused(400, { "/hello.txt%00", "/hello.txt%00.png", "/%00", "/..\\static.lua",
                     "/%5c..%5cstatic.lua", "/sub\\index.html", "/sub%5Cindex.html",
                     "/./hello.txt", "/sub/./index.html", "/%2e/hello.txt", "/." })
    end)

    it("refuses symlinks whose target is outside the root (404)", function()
      refused(404, { "/gen/leak.txt", "/gen/outdir/secret.txt", "/gen/outdir/", "/gen/outdir",
                     "/gen/uplink/static.lua", "/gen/uplink/", "/gen/uplink" })
    end)

    it("passes on names that only look like a way out", function()
      for _, p in ipairs({ "//etc/passwd", "/%252e%252e/static.lua", "/%c0%ae%c0%ae/static.lua",
                           "/...", "/..foo", "/%2e%2e%2e/static.lua" }) do
        local res = get(p)
        assert.equal(404, res.status, p)
        assert.matches("^fallback GET ", res.body, p)
        no_leak(res, p)
      end
    end)

    it("refuses traversal in an absolute-form request-target too", function()
      local res = raw("GET http://h/../static.lua HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.equal(404, res.status)
      no_leak(res, "absolute-form")
    end)

    it("refuses traversal for HEAD and with a Range", function()
      local res = get("/../static.lua", nil, "HEAD")
      assert.equal(404, res.status)
      res = get("/gen/leak.txt", { Range = "bytes=0-3" })
      assert.equal(404, res.status)
      no_leak(res, "range")
    end)

    it("serves an outside symlink only with follow_symlinks_outside", function()
      local res = get("/follow/gen/leak.txt")
      assert.equal(200, res.status)
      assert.equal(SECRET .. "\n", res.body)
      -- .. is refused there all the same
      res = get("/follow/../static.lua")
      assert.equal(404, res.status)
      no_leak(res, "/follow/..")
    end)
  end)

  describe("large files", function()
    it("arrive intact, with a Content-Length", function()
      local res = get("/gen/big.bin")
      assert.equal(200, res.status)
      assert.equal(tostring(#BIG), res.headers["content-length"])
      assert.is_nil(res.chunked)
      assert.equal(#BIG, #res.body)
      assert.is_true(res.body == BIG, "the body differs from the file")
    end)

    it("arrive intact to an HTTP/1.0 client", function()
      local res = raw("GET /gen/big.bin HTTP/1.0\r\n\r\n")
      assert.equal(200, res.status)
      assert.is_true(res.body == BIG, "the body differs from the file")
    end)

    it("arrive intact back to back on one connection", function()
      local c = assert(http.connect(srv.port, nil, 20))
      local req = "GET /gen/huge.bin HTTP/1.1\r\nHost: h\r\n\r\n"
      c:send(req .. req .. "GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n")
      for _ = 1, 2 do
        local res = assert(c:read_response())
        assert.equal(tostring(HUGE_SIZE), res.headers["content-length"])
        assert.equal(HUGE_SIZE, #res.body)
        assert.is_true(res.body == HUGE, "the body differs from the file")
      end
      assert.equal(HELLO, assert(c:read_response()).body)
      c:close()
    end)

    it("do not hold up other requests while a client reads slowly", function()
      local slow = assert(http.connect(srv.port))
      slow:send("GET /gen/huge.bin HTTP/1.1\r\nHost: h\r\n\r\n")
      socket.sleep(0.2)
      local t0 = socket.gettime()
      assert.equal(HELLO, get("/hello.txt").body)
      assert.is_true(socket.gettime() - t0 < 0.5, "a small file waited for the large one")
      slow:close()
    end)

    it("survive a client that goes away mid-file", function()
      for _ = 1, 3 do
        local c = assert(http.connect(srv.port))
        c:send("GET /gen/huge.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        assert.equal("HTTP/1.1 200 OK", c:read_line())
        c:close()
      end
      assert.equal(HELLO, get("/hello.txt").body)
      assert.is_true(srv:alive())
    end)
  end)
end)

describe("#e2e owin.static configuration", function()
  local dir

  before_each(function()
    dir = assert(io.popen("mktemp -d /tmp/owl-static-app.XXXXXX")):read("l")
  end)

  after_each(function()
    os.execute("rm -rf " .. q(dir))
  end)

  local function check(source)
    local path = dir .. "/app.lua"
    write_file(path, source)
    return server.run({ "--check", path })
  end

  it("accepts a good app", function()
    local out, err, code = check('app.use(require("owin.static")(' ..
      string.format("%q", os.getenv("PWD") .. "/" .. ROOT) .. "))")
    assert.equal(0, code, err)
    assert.matches("ok", out)
  end)

  it("fails at start-up on a missing root", function()
    local _, err, code = check('app.use(require("owin.static")("/nonexistent/owl-static"))')
    assert.equal(1, code)
    assert.matches("owin.static: bad root /nonexistent/owl%-static: ENOENT", err)
  end)

  it("fails at start-up when the root is a file", function()
    local _, err, code = check('app.use(require("owin.static")(' ..
      string.format("%q", os.getenv("PWD") .. "/" .. ROOT .. "/hello.txt") .. "))")
    assert.equal(1, code)
    assert.matches("owin.static: bad root .*/hello%.txt: not a directory", err)
  end)

  it("names a bad option", function()
    local _, err, code = check('app.use(require("owin.static")("/tmp", { index = "index.html" }))')
    assert.equal(1, code)
    assert.matches("bad option 'index' to 'static' %(table expected, got string%)", err)
    _, err, code = check('app.use(require("owin.static")("/tmp", { dotfiles = "show" }))')
    assert.equal(1, code)
    assert.matches("bad option 'dotfiles'", err)
    _, err, code = check('app.use(require("owin.static")(nil))')
    assert.equal(1, code)
    assert.matches("bad argument #1 to 'static'", err)
  end)
end)

describe("#e2e apps/static.lua", function()
  local srv
  setup(function() srv = server.start("apps/static.lua") end)
  teardown(function()
    local ok, how, code = srv:stop()
    assert.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  end)

  local function get(path, headers)
    return assert(http.get(srv.port, path, headers))
  end

  it("serves the page, its style sheet and hello.txt from apps/public", function()
    local page = get("/")
    assert.equal(200, page.status)
    assert.equal("text/html; charset=utf-8", page.headers["content-type"])
    assert.equal("public, max-age=60", page.headers["cache-control"])
    assert.matches('href="style.css"', page.body)
    assert.equal("text/css; charset=utf-8", get("/style.css").headers["content-type"])
    local hello = get("/hello.txt")
    assert.equal(server.read_file("apps/public/hello.txt"), hello.body)
    assert.equal(304, get("/hello.txt", { ["If-None-Match"] = hello.headers["etag"] }).status)
  end)

  it("hands other paths to the app behind it", function()
    local t = get("/api/time")
    assert.equal("application/json", t.headers["content-type"])
    assert.matches('^{"time":%d+}$', t.body)
    local missing = get("/nothing-here")
    assert.equal(404, missing.status)
    assert.equal("not found: /nothing-here\n", missing.body)
    assert.equal(404, get("/../static.lua").status)
  end)
end)
