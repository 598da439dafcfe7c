-- owin.compress through the real server (spec/fixtures/compress.lua):
-- chunked and Content-Length framing of gzip bodies, decoded by gzip -d and
-- by curl --compressed; a stream whose flushed part arrives, decodable,
-- before the app goes on; files through owin.static, compressed by reading
-- or sent with sendfile as they are; HEAD, Range and HTTP/1.0.
--
--   busted --lua=lua5.4 spec/e2e/compress_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local function line(i)
  return string.format("line %05d %08x of the quick brown fox\n", i, i * 2654435761 % 4294967296)
end

local TEXT do
  local t = {}
  for i = 1, 6000 do t[i] = line(i) end
  TEXT = table.concat(t)
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- What `gzip -dc` makes of data (a partial stream gives what it can
-- decode), and whether it called the stream complete.
local function gzip_d(data)
  local path = os.tmpname()
  write_file(path, data)
  local proc = assert(io.popen("gzip -dc < " .. path .. " 2>/dev/null"))
  local out = proc:read("a")
  local ok = proc:close()
  os.remove(path)
  return out, ok == true
end

local GZIP = { ["Accept-Encoding"] = "gzip" }

describe("#e2e owin.compress", function()
  local srv, root, big, pic

  setup(function()
    root = assert(io.popen("mktemp -d /tmp/owl-compress.XXXXXX")):read("l")
    local t = {}
    for i = 1, 20000 do t[i] = string.format("<p>paragraph %d of a page</p>\n", i) end
    big = table.concat(t)                    -- about 600 KiB of HTML
    write_file(root .. "/big.html", big)
    local b = {}
    local x = 12345
    for i = 1, 50000 do                      -- bytes that do not compress
      x = (x * 1103515245 + 12345) % 2147483648
      b[i] = string.char(x >> 16 & 255)
    end
    pic = table.concat(b)
    write_file(root .. "/pic.png", pic)
    srv = server.start("spec/fixtures/compress.lua", nil, { env = { OWL_COMPRESS_ROOT = root } })
  end)

  teardown(function()
    local ok, how, code = srv:stop()
    os.execute("rm -rf '" .. root .. "'")
    assert.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  end)

  local function get(path, headers, method)
    return assert(http.get(srv.port, path, headers, method))
  end

  describe("a body the app writes", function()
    it("goes out gzip-encoded and chunked, and gzip -d gives it back whole", function()
      local res = get("/text", GZIP)
      assert.equal(200, res.status)
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("Accept-Encoding", res.headers["vary"])
      assert.is_true(res.chunked)
      assert.is_nil(res.headers["content-length"])
      assert.is_true(#res.body < #TEXT / 5)
      local out, complete = gzip_d(res.body)
      assert.is_true(complete)
      assert.equal(TEXT, out)
    end)

    it("decodes with curl --compressed", function()
      local proc = assert(io.popen(string.format("curl -s --compressed -D /dev/stderr " ..
        "http://127.0.0.1:%d/text 2>/tmp/owl-compress-curl-headers", srv.port)))
      local body = proc:read("a")
      proc:close()
      local headers = server.read_file("/tmp/owl-compress-curl-headers")
      os.remove("/tmp/owl-compress-curl-headers")
      assert.matches("\n[Cc]ontent%-[Ee]ncoding: gzip\r\n", headers)
      assert.equal(TEXT, body)
    end)

    it("gets a Content-Length when the compressed body is short", function()
      local res = get("/json", GZIP)
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal(tostring(#res.body), res.headers["content-length"])
      assert.equal(string.rep('{"id":1,"name":"thing"},', 100), (gzip_d(res.body)))
    end)

    it("is sent as it is to a client that does not ask for gzip", function()
      local res = get("/text")
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("Accept-Encoding", res.headers["vary"])
      assert.equal(TEXT, res.body)
      res = get("/text", { ["Accept-Encoding"] = "gzip;q=0, identity" })
      assert.is_nil(res.headers["content-encoding"])
    end)

    it("is sent as it is when short", function()
      local res = get("/small", GZIP)
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("5", res.headers["content-length"])
      assert.equal("small", res.body)
    end)

    it("has no body for HEAD, and no Content-Encoding", function()
      local res = get("/text", GZIP, "HEAD")
      assert.equal(200, res.status)
      assert.equal("", res.body)
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("Accept-Encoding", res.headers["vary"])
    end)

    it("is close-delimited gzip to an HTTP/1.0 client", function()
      local res = assert(http.request(srv.port,
        "GET /text HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"))
      assert.equal("gzip", res.headers["content-encoding"])
      assert.is_true(res.until_close)
      assert.equal(TEXT, (gzip_d(res.body)))
    end)
  end)

  describe("a stream", function()
    it("delivers what was flushed, decodable, while the app is still running", function()
      local c = assert(http.connect(srv.port))
      finally(function() c:close() end)
      assert(c:send("GET /stream HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"))
      local status = assert(c:read_line())
      assert.matches("^HTTP/1.1 200", status)
      local headers = {}
      while true do
        local l = assert(c:read_line())
        if l == "" then break end
        local k, v = l:match("^([^:]+):%s*(.*)$")
        headers[k:lower()] = v
      end
      assert.equal("gzip", headers["content-encoding"])
      assert.equal("chunked", headers["transfer-encoding"])
      -- chunks until what arrived decodes to the first event; the app is
      -- waiting for /release meanwhile, so the last chunk cannot come yet
      local data, decoded = {}, ""
      while decoded == "" do
        local size = tonumber(assert(c:read_line()), 16)
        assert.is_true(size > 0, "the response ended before its flushed part could be decoded")
        data[#data + 1] = assert(c:read_exact(size))
        assert.equal("\r\n", c:read_exact(2))
        decoded = gzip_d(table.concat(data))
      end
      assert.equal("data: first\n\n", decoded)
      assert.equal("released", get("/release").body)
      while true do
        local size = tonumber(assert(c:read_line()), 16)
        if size == 0 then
          assert.equal("", c:read_line())
          break
        end
        data[#data + 1] = assert(c:read_exact(size))
        assert.equal("\r\n", c:read_exact(2))
      end
      local out, complete = gzip_d(table.concat(data))
      assert.is_true(complete)
      assert.equal("data: first\n\ndata: second\n\n", out)
    end)
  end)

  describe("files through owin.static", function()
    it("are compressed by reading them when the type is compressible", function()
      local res = get("/files/big.html", GZIP)
      assert.equal(200, res.status)
      assert.equal("gzip", res.headers["content-encoding"])
      assert.is_nil(res.headers["accept-ranges"])
      assert.matches('^W/"', res.headers["etag"])
      assert.equal(big, (gzip_d(res.body)))
    end)

    it("revalidate with the weak ETag of the compressed response", function()
      local etag = get("/files/big.html", GZIP).headers["etag"]
      local res = get("/files/big.html", { ["Accept-Encoding"] = "gzip", ["If-None-Match"] = etag })
      assert.equal(304, res.status)
    end)

    it("keep sendfile, Content-Length and ranges when not compressed", function()
      local res = get("/files/pic.png", GZIP)
      assert.is_nil(res.headers["content-encoding"])
      assert.is_nil(res.headers["vary"])
      assert.equal(tostring(#pic), res.headers["content-length"])
      assert.equal(pic, res.body)
      res = get("/files/big.html")
      assert.is_nil(res.headers["content-encoding"])
      assert.equal(tostring(#big), res.headers["content-length"])
      assert.equal(big, res.body)
    end)

    it("answer a Range with 206 as they are", function()
      local res = get("/files/big.html", { ["Accept-Encoding"] = "gzip", Range = "bytes=10-19" })
      assert.equal(206, res.status)
      assert.is_nil(res.headers["content-encoding"])
      assert.equal(big:sub(11, 20), res.body)
    end)

    it("answer HEAD with the file's length and no coding", function()
      local res = get("/files/big.html", GZIP, "HEAD")
      assert.equal(tostring(#big), res.headers["content-length"])
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("Accept-Encoding", res.headers["vary"])
    end)
  end)
end)
