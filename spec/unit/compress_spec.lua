-- owin.compress (lua/owin/compress.lua, docs/middleware.md) through the
-- owin.test host, with the C core's gzip binding from the owl_codec test
-- module (src/runtime/gzip_lua.c over src/codec/gzip.c): negotiation with
-- q-values, what is skipped, the headers of a compressed response,
-- streaming with sync flushes only on flush(), sendfile.SendAsync, errors.
-- The gzip codec itself is checked at the end.
--
--   busted --lua=lua5.4 spec/unit/compress_spec.lua

local test = require("owin.test")
local owin = require("owin")
local compress = require("owin.compress")
local codec = require("owl_codec")

local GZIP = { ["Accept-Encoding"] = "gzip, deflate, br" }

-- n bytes of text that compresses well.
local function text(n)
  local line = "the quick brown fox jumps over the lazy dog\n"
  return string.rep(line, n // #line + 1):sub(1, n)
end

local function gunzip(s)
  local out, consumed = assert(codec.gunzip(s))
  assert.equal(#s, consumed)
  return out
end

-- A client for compress(opts) in front of handler(env).
local function client(handler, opts)
  opts = opts or {}
  if opts.gzip == nil then opts.gzip = codec.gzip end
  if opts.gzip == false then opts.gzip = nil end
  local app = owin.new()
  app.use(compress(opts))
  app.run(handler)
  return test.client(app)
end

-- handler that answers `body` as `ctype`, with extra headers.
local function answer(body, ctype, headers, status)
  return function(env)
    local h = env["owin.ResponseHeaders"]
    h["Content-Type"] = ctype or "text/plain; charset=utf-8"
    for k, v in pairs(headers or {}) do h[k] = v end
    if status then env["owin.ResponseStatusCode"] = status end
    env["owin.ResponseBody"]:write(body)
  end
end

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

describe("owin.compress", function()
  describe("a compressed response", function()
    it("has Content-Encoding: gzip, Vary: Accept-Encoding, and decodes to what the app wrote", function()
      local body = text(50000)
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/html"
        for i = 1, #body, 1000 do env["owin.ResponseBody"]:write(body:sub(i, i + 999)) end
      end)
      local res = c:get("/", { headers = GZIP })
      assert.equal(200, res.status)
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("Accept-Encoding", res.headers["vary"])
      assert.is_true(#res.body < #body / 10)
      assert.equal(body, gunzip(res.body))
    end)

    it("loses the app's Content-Length and Accept-Ranges, and its strong ETag becomes weak", function()
      local body = text(5000)
      local res = client(answer(body, "application/json", {
        ["Content-Length"] = #body, ["Accept-Ranges"] = "bytes", ETag = '"abc"',
      }))
        :get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.not_equal(tostring(#body), res.headers["content-length"])
      assert.is_nil(res.headers["accept-ranges"])
      assert.equal('W/"abc"', res.headers["etag"])
      assert.equal(body, gunzip(res.body))
    end)

    it("keeps a weak ETag as it is", function()
      local res = client(answer(text(5000), nil, { ETag = 'W/"v1"' })):get("/", { headers = GZIP })
      assert.equal('W/"v1"', res.headers["etag"])
    end)

    it("adds Accept-Encoding to a Vary already there, once", function()
      local res = client(answer(text(5000), nil, { Vary = "Origin" })):get("/", { headers = GZIP })
      assert.equal("Origin, Accept-Encoding", res.headers["vary"])
      res = client(answer(text(5000), nil, { Vary = "accept-encoding" })):get("/", { headers = GZIP })
      assert.equal("accept-encoding", res.headers["vary"])
    end)

    it("works for any status with a body, an error page too", function()
      local res = client(answer(text(5000), "text/html", nil, 500)):get("/", { headers = GZIP })
      assert.equal(500, res.status)
      assert.equal("gzip", res.headers["content-encoding"])
    end)

    it("takes numbers and several arguments in write, and returns the stream", function()
      local got
      local c = client(function(env)
        local body = env["owin.ResponseBody"]
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        got = body:write(text(2000), 42, "-", 7)
        got = rawequal(got, body)
      end)
      local res = c:get("/", { headers = GZIP })
      assert.is_true(got)
      assert.equal(text(2000) .. "42-7", gunzip(res.body))
    end)
  end)

  describe("Accept-Encoding", function()
    local body = text(4000)
    local c = client(answer(body))

    local function coding(value)
      local res = c:get("/", { headers = value and { ["Accept-Encoding"] = value } or nil })
      if res.headers["content-encoding"] == "gzip" then
        assert.equal(body, gunzip(res.body))
        return "gzip"
      end
      assert.equal(body, res.body)
      return "identity"
    end

    it("picks gzip when offered, whatever the case, and x-gzip too", function()
      assert.equal("gzip", coding("gzip"))
      assert.equal("gzip", coding("GZip"))
      assert.equal("gzip", coding("deflate, x-gzip"))
      assert.equal("gzip", coding("br;q=1.0, gzip;q=0.8, *;q=0.1"))
    end)

    it("sends identity without the header, or with an empty one", function()
      assert.equal("identity", coding(nil))
      assert.equal("identity", coding(""))
      assert.equal("identity", coding("br, deflate"))
    end)

    it("honours q=0 and a preference for identity", function()
      assert.equal("identity", coding("gzip;q=0"))
      assert.equal("identity", coding("gzip; q=0.000"))
      assert.equal("identity", coding("gzip;q=0.5, identity;q=1"))
      assert.equal("gzip", coding("gzip;q=0.8, identity;q=0.5"))
      assert.equal("gzip", coding("gzip;q=0.5"))         -- identity unlisted: the lowest
    end)

    it("lets * stand for gzip, unless gzip is listed", function()
      assert.equal("gzip", coding("*"))
      assert.equal("identity", coding("gzip;q=0, *"))
      assert.equal("identity", coding("*;q=0, identity"))
    end)

    it("ignores an item whose qvalue is not one", function()
      assert.equal("identity", coding("gzip;q=2"))
      assert.equal("identity", coding("gzip;q=high"))
      assert.equal("identity", coding("gzip;q=0.1234"))
      assert.equal("gzip", coding("gzip;q=bad, gzip;q=0.3"))
    end)

    it("is answered by compress.negotiate with whether identity may be sent", function()
      assert.same({ "gzip", true }, { compress.negotiate("gzip") })
      assert.same({ "gzip", false }, { compress.negotiate("gzip, identity;q=0") })
      assert.same({ "gzip", false }, { compress.negotiate("gzip, *;q=0") })
      assert.same({ "gzip", true }, { compress.negotiate("gzip, *;q=0, identity") })
      assert.same({ "identity", false }, { compress.negotiate("br, identity;q=0") })
      assert.same({ "identity", true }, { compress.negotiate(nil) })
    end)
  end)

  describe("the threshold", function()
    it("leaves a short body alone, Content-Length and all, with Vary still", function()
      local res = client(answer("short")):get("/", { headers = GZIP })
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("5", res.headers["content-length"])
      assert.equal("short", res.body)
      assert.equal("Accept-Encoding", res.headers["vary"])
    end)

    it("is measured on the app's Content-Length when it set one", function()
      local body = text(3000)
      local c = client(function(env)
        local h = env["owin.ResponseHeaders"]
        h["Content-Type"] = "text/plain"
        h["Content-Length"] = #body
        for i = 1, #body, 100 do env["owin.ResponseBody"]:write(body:sub(i, i + 99)) end
      end, { threshold = 2000 })
      local res = c:get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal(body, gunzip(res.body))
    end)

    it("can be set, and 0 compresses everything but empty bodies", function()
      local res = client(answer(text(600)), { threshold = 500 }):get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      res = client(answer("x"), { threshold = 0 }):get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("x", gunzip(res.body))
      res = client(answer(""), { threshold = 0 }):get("/", { headers = GZIP })
      assert.is_nil(res.headers["content-encoding"])
    end)

    it("does not hold when the client refused identity", function()
      local res = client(answer("short")):get("/", { headers = { ["Accept-Encoding"] = "gzip, identity;q=0" } })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("short", gunzip(res.body))
    end)
  end)

  describe("skips", function()
    local big = text(5000)

    local function skipped(res, vary)
      assert.is_nil(res.headers["content-encoding"])
      assert.equal(vary, res.headers["vary"])
    end

    it("types that are compressed already, without Vary", function()
      skipped(client(answer(big, "image/png")):get("/", { headers = GZIP }), nil)
      skipped(client(answer(big, "application/zip")):get("/", { headers = GZIP }), nil)
      skipped(client(answer(big, "font/woff2")):get("/", { headers = GZIP }), nil)
      skipped(client(function(env) env["owin.ResponseBody"]:write(big) end):get("/", { headers = GZIP }), nil)
    end)

    it("a body with a Content-Encoding of its own", function()
      local res = client(answer("precompressed", "text/css", { ["Content-Encoding"] = "br" }))
        :get("/", { headers = GZIP })
      assert.equal("br", res.headers["content-encoding"])
      assert.equal("precompressed", res.body)
    end)

    it("Cache-Control: no-transform", function()
      skipped(client(answer(big, "text/plain", { ["Cache-Control"] = "public, No-Transform" }))
        :get("/", { headers = GZIP }), nil)
    end)

    it("Range requests and 206 answers", function()
      skipped(client(answer(big)):get("/", { headers = { ["Accept-Encoding"] = "gzip", Range = "bytes=0-9" } }),
        "Accept-Encoding")
      skipped(client(answer(big:sub(1, 10), nil, { ["Content-Range"] = "bytes 0-9/5000" }, 206))
        :get("/", { headers = GZIP }), "Accept-Encoding")
    end)

    it("HEAD, keeping the headers GET would have but the coding", function()
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseHeaders"]["Content-Length"] = "5000"
      end)
      local res = c:head("/", { headers = GZIP })
      skipped(res, "Accept-Encoding")
      assert.equal("5000", res.headers["content-length"])
    end)

    it("204 and 304", function()
      skipped(client(function(env) env["owin.ResponseStatusCode"] = 204 end):get("/", { headers = GZIP }), nil)
      skipped(client(function(env)
        env["owin.ResponseStatusCode"] = 304
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
      end):get("/", { headers = GZIP }), nil)
    end)

    it("responses the filter refuses, and lets it pick others", function()
      local seen
      local filter = function(env, ctype)
        seen = { env["owin.RequestPath"], ctype }
        return ctype == "application/x-custom"
      end
      local res = client(answer(big, "Application/X-Custom; v=1"), { filter = filter })
        :get("/p", { headers = GZIP })
      assert.same({ "/p", "application/x-custom" }, seen)
      assert.equal("gzip", res.headers["content-encoding"])
      skipped(client(answer(big, "text/html"), { filter = filter }):get("/", { headers = GZIP }), nil)
    end)

    it("everything in a host without a gzip binding", function()
      local res = client(answer(big), { gzip = false }):get("/", { headers = GZIP })
      skipped(res, nil)
      assert.equal(big, res.body)
    end)

    it("the second layer when used twice", function()
      local app = owin.new()
      app.use(compress{ gzip = codec.gzip })
      app.use(compress{ gzip = codec.gzip })
      app.run(answer(big))
      local res = test.client(app):get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal(big, gunzip(res.body))
    end)
  end)

  describe("compress.compressible", function()
    it("knows text, JSON, XML, JavaScript, SVG and WebAssembly from media that is compressed already", function()
      for _, t in ipairs({ "text/html", "text/css; charset=utf-8", "application/json",
                           "application/problem+json", "application/atom+xml", "TEXT/PLAIN",
                           "application/javascript", "image/svg+xml", "application/wasm",
                           "text/event-stream" }) do
        assert.is_true(compress.compressible(t), t)
      end
      for _, t in ipairs({ "image/png", "image/jpeg", "video/mp4", "audio/mpeg", "font/woff2",
                           "application/zip", "application/gzip", "application/octet-stream",
                           "application/pdf", "" }) do
        assert.is_false(compress.compressible(t), t)
      end
      assert.is_false(compress.compressible(nil))
    end)
  end)

  describe("streaming", function()
    -- A deflater that records what the middleware asks of it and passes
    -- everything to the real one.
    local function recording(log)
      return function(level)
        local d = codec.gzip(level)
        log[#log + 1] = "new " .. level
        return {
          write = function(_, s) log[#log + 1] = "write " .. #s return d:write(s) end,
          flush = function() log[#log + 1] = "flush" return d:flush() end,
          finish = function() log[#log + 1] = "finish" return d:finish() end,
          close = function() log[#log + 1] = "close" return d:close() end,
        }
      end
    end

    it("deflates each write as it comes and sync-flushes only on the app's flush()", function()
      local log = {}
      local c = client(function(env)
        local body = env["owin.ResponseBody"]
        env["owin.ResponseHeaders"]["Content-Type"] = "text/event-stream"
        body:write("data: 1\n\n")
        body:flush()
        body:write("data: 2\n\n")
        body:write("data: 3\n\n")
        body:flush()
        body:write("data: 4\n\n")
      end, { gzip = recording(log), level = 3 })
      local res = c:get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n", gunzip(res.body))
      assert.same({ "new 3", "write 9", "flush", "write 9", "write 9", "flush", "write 9",
                    "finish", "close" }, log)
    end)

    it("holds writes below the threshold, then deflates them in one piece", function()
      local log = {}
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        for _ = 1, 30 do env["owin.ResponseBody"]:write(text(100)) end
      end, { gzip = recording(log), threshold = 1000 })
      local res = c:get("/", { headers = GZIP })
      assert.equal(string.rep(text(100), 30), gunzip(res.body))
      -- ten writes held (1,000 bytes), then one deflate of them, then one per write
      assert.equal("write 1000", log[2])
      assert.equal("write 100", log[3])
      assert.equal(2 + 20 + 2, #log)
    end)

    it("decides at the first flush for a stream of unknown length, small or not", function()
      local res = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/event-stream"
        env["owin.ResponseBody"]:write("data: hi\n\n")
        env["owin.ResponseBody"]:flush()
      end):get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("data: hi\n\n", gunzip(res.body))
    end)

    it("frees the deflater and puts the server's stream back when the app fails", function()
      local log, outer_before, outer_after = {}, nil, nil
      local app = owin.new()
      app.use(function(env, next)
        outer_before = env["owin.ResponseBody"]
        pcall(next)
        outer_after = env["owin.ResponseBody"]
      end)
      app.use(compress{ gzip = recording(log) })
      app.run(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseBody"]:write(text(4000))
        error("boom")
      end)
      test.client(app):get("/", { headers = GZIP })
      assert.equal("close", log[#log])
      assert.is_true(rawequal(outer_before, outer_after))
    end)

    it("refuses a stream kept past the end of the app", function()
      local kept
      local app = owin.new()
      app.use(function(env, next)
        next()
        local ok, err = pcall(kept.write, kept, "late")
        assert.is_false(ok)
        assert.matches("used after its response finished", err)
        env["owin.ResponseBody"]:write("|outer")
      end)
      app.use(compress{ gzip = codec.gzip })
      app.run(function(env)
        kept = env["owin.ResponseBody"]
        kept:write("inner")
      end)
      local res = test.client(app):get("/", { headers = GZIP })
      assert.equal("inner|outer", res.body)
    end)

    it("raises on a write of something that is not a string", function()
      local res = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseBody"]:write("a", {})
      end):get("/", { headers = GZIP })
      assert.equal(500, res.status)
      assert.matches("bad argument #2 to 'write' %(string expected, got table%)", res.error)
    end)
  end)

  describe("sendfile.SendAsync", function()
    it("reads and deflates a file when the response is compressed", function()
      local content = text(200000)
      local path = tmpfile(content)
      finally(function() os.remove(path) end)
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseHeaders"]["Content-Length"] = #content - 1000
        assert(env["sendfile.SendAsync"](path, 1000, nil, env["owin.CallCancelled"]))
      end)
      local res = c:get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal(content:sub(1001), gunzip(res.body))
    end)

    it("leaves the host's SendAsync to a response that is not compressed", function()
      local content = text(5000)
      local path = tmpfile(content)
      finally(function() os.remove(path) end)
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "image/png"
        assert(env["sendfile.SendAsync"](path, 0, 100))
      end)
      local res = c:get("/", { headers = GZIP })
      assert.is_nil(res.headers["content-encoding"])
      assert.equal("100", res.headers["content-length"])
      assert.equal(content:sub(1, 100), res.body)
    end)

    it("counts the range against the threshold", function()
      local path = tmpfile(text(5000))
      finally(function() os.remove(path) end)
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        assert(env["sendfile.SendAsync"](path, 0, 10))
      end)
      local res = c:get("/", { headers = GZIP })
      assert.is_nil(res.headers["content-encoding"])
      assert.equal(text(10), res.body)
    end)

    it("mixes writes and files in one compressed body", function()
      local path = tmpfile(text(3000))
      finally(function() os.remove(path) end)
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseBody"]:write("<head>")
        assert(env["sendfile.SendAsync"](path))
        env["owin.ResponseBody"]:write("<tail>")
      end)
      local res = c:get("/", { headers = GZIP })
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal("<head>" .. text(3000) .. "<tail>", gunzip(res.body))
    end)

    it("fails as SendAsync does, with nil, err, code", function()
      local results
      local c = client(function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
        env["owin.ResponseBody"]:write(text(2000))          -- decided: gzip
        results = {
          { env["sendfile.SendAsync"]("/nonexistent/owl-file") },
          { env["sendfile.SendAsync"]("/") },
        }
        local path = tmpfile("abc")
        results[3] = { env["sendfile.SendAsync"](path, 2, 5) }
        os.remove(path)
      end)
      c:get("/", { headers = GZIP })
      assert.same({ nil, "ENOENT: no such file or directory (/nonexistent/owl-file)", "ENOENT" }, results[1])
      assert.same({ nil, "EISDIR: illegal operation on a directory (/)", "EISDIR" }, results[2])
      assert.same({ nil, "EINVAL: invalid argument (range past the end of the file)", "EINVAL" }, results[3])
    end)
  end)

  describe("options", function()
    local function fails(opts, pattern)
      local ok, err = pcall(function() local mw = compress(opts); return mw end)
      assert.is_false(ok)
      assert.matches(pattern, err)
      assert.matches("compress_spec%.lua:%d+:", err)
    end

    it("are checked, at the caller's line", function()
      fails({ level = 0 }, "bad option 'level' to 'compress' %(a whole number from 1 to 9 expected, got 0%)")
      fails({ level = 10 }, "bad option 'level'")
      fails({ threshold = -1 }, "bad option 'threshold'")
      fails({ filter = "text/*" }, "bad option 'filter' to 'compress' %(function expected, got string%)")
      fails({ min_size = 10 }, "bad option 'min_size' to 'compress' %(unknown option%)")
      fails("fast", "bad argument #1 to 'compress' %(table of options expected, got string%)")
    end)
  end)
end)

describe("the gzip codec (owl_codec.gzip, gunzip)", function()
  it("round-trips through one stream with flushes and a finish", function()
    local d = codec.gzip(9)
    local parts = {}
    for i = 1, 2000 do parts[#parts + 1] = d:write(("line %d\n"):format(i)) end
    parts[#parts + 1] = d:flush()
    local so_far = table.concat(parts)
    assert.equal(string.char(0, 0, 255, 255), so_far:sub(-4))      -- a sync flush point
    parts[#parts + 1] = d:finish("end\n")
    local all = table.concat(parts)
    assert.equal(string.char(0x1f, 0x8b, 8), all:sub(1, 3))         -- gzip, deflate
    local expect = {}
    for i = 1, 2000 do expect[i] = ("line %d\n"):format(i) end
    assert.equal(table.concat(expect) .. "end\n", gunzip(all))
  end)

  it("refuses a stream used after finish or close", function()
    local d = codec.gzip()
    d:finish()
    assert.error_matches(function() d:write("x") end, "gzip stream used after finish")
    local e = codec.gzip()
    e:close()
    e:close()                                                        -- again: nothing
    assert.error_matches(function() e:flush() end, "gzip stream used after close")
  end)

  it("checks the level", function()
    assert.error_matches(function() codec.gzip(0) end, "level from 1 to 9 expected")
  end)

  it("gunzip reports bad input, truncation and a size limit", function()
    local d = codec.gzip()
    local z = d:write(string.rep("a", 100000)) .. d:finish()
    assert.same({ nil, "EINVAL: not a valid gzip stream", "EINVAL" }, { codec.gunzip("not gzip") })
    assert.same({ nil, "EINVAL: not a valid gzip stream", "EINVAL" }, { codec.gunzip(z:sub(1, -5)) })
    assert.same({ nil, "E2BIG: more than 1000 bytes when decompressed", "E2BIG" }, { codec.gunzip(z, 1000) })
    assert.same({ string.rep("a", 100000), #z }, { codec.gunzip(z .. "trailing") })
  end)
end)
