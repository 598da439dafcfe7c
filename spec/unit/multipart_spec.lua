-- owin.multipart (lua/owin/multipart.lua, docs/forms.md) in plain Lua: the
-- streaming parser fed every way a body can be split, its errors, file
-- names, and form() with its limits, spooled files and on_file; then
-- request:form() under owin.test, where spooled files must be gone once the
-- request ended.
--
--   busted --lua=lua5.4 spec/unit/multipart_spec.lua

local test = require("owin.test")
local multipart = require("owin.multipart")
local context = require("owin.context")
local lfs = require("lfs")

local CT = "multipart/form-data; boundary=XyZ"

-- A part: its header lines and its content.
local function part(headers, content)
  return table.concat(headers, "\r\n") .. "\r\n\r\n" .. content
end

-- A body from parts, with boundary b (XyZ), and a preamble and epilogue.
local function body_of(parts, b, preamble, epilogue)
  b = b or "XyZ"
  local out = { preamble and (preamble .. "\r\n") or "" }
  for _, p in ipairs(parts) do out[#out + 1] = "--" .. b .. "\r\n" .. p .. "\r\n" end
  out[#out + 1] = "--" .. b .. "--" .. (epilogue or "\r\n")
  return table.concat(out)
end

local function field(name, value)
  return part({ 'Content-Disposition: form-data; name="' .. name .. '"' }, value)
end

local function file(name, filename, content, ctype)
  return part({ 'Content-Disposition: form-data; name="' .. name .. '"; filename="' .. filename .. '"',
                "Content-Type: " .. (ctype or "application/octet-stream") }, content)
end

-- Content that looks like boundaries but is not one: a boundary prefix, the
-- boundary followed by a letter or a single "-", a lone CR, LF, "--".
local TRICKY = "\r\n--XyZW\r\n--Xy\r\r\n-\r\n--XyZ-x\n--XyZ\r\n-" .. "\0\255\r"

-- The reference body: a preamble, a field, a file with tricky binary
-- content, an empty field, a second value of a name, an epilogue.
local REFERENCE = body_of({
  field("title", "Hello, world"),
  file("doc", "../../etc/passwd", TRICKY),
  field("empty", ""),
  part({ "content-disposition: form-data; name=title", "X-Other: 1" }, "second"),
}, nil, "This is the preamble. --XyZ is not at the start of a line here", "\r\nepilogue --XyZ--")

-- Events of a parse, consecutive "data" joined, as { "part name filename
-- content_type", "data ...", "end", "done" } or the error.
local function events(p, chunks)
  local out, i = {}, 1
  while true do
    local ev, x, code = p:next()
    if ev == false then
      local c = chunks[i]
      i = i + 1
      p:feed(c)
    elseif ev == nil then
      out[#out + 1] = "error " .. x .. " " .. code
      return out
    elseif ev == "part" then
      out[#out + 1] = "part " .. x.name .. " " .. tostring(x.filename) .. " " .. x.content_type
    elseif ev == "data" then
      assert.is_true(#x > 0, "a data event with no bytes")
      if out[#out]:sub(1, 5) == "data " then
        out[#out] = out[#out] .. x
      else
        out[#out + 1] = "data " .. x
      end
    else
      out[#out + 1] = ev
      if ev == "done" then return out end
    end
  end
end

local function parse(chunks, boundary, opts)
  return events(multipart.parser(boundary or "XyZ", opts), chunks)
end

local REFERENCE_EVENTS = {
  "part title nil text/plain", "data Hello, world", "end",
  "part doc ../../etc/passwd application/octet-stream", "data " .. TRICKY, "end",
  "part empty nil text/plain", "end",
  "part title nil text/plain", "data second", "end",
  "done",
}

-- A fresh empty directory, removed with its files after the test.
local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(lfs.mkdir(d))
  finally(function()
    for f in lfs.dir(d) do
      if f ~= "." and f ~= ".." then os.remove(d .. "/" .. f) end
    end
    lfs.rmdir(d)
  end)
  return d
end

local function files_in(d)
  local t = {}
  for f in lfs.dir(d) do
    if f ~= "." and f ~= ".." then t[#t + 1] = f end
  end
  table.sort(t)
  return t
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- An input stream giving chunks in turn, then nil; or failing with fail
-- after them.
local function stream(chunks, fail)
  local i = 0
  return {
    read = function(_, n)
      assert.is_true(math.type(n) == "integer" and n > 0, "form() reads with read(n)")
      i = i + 1
      local c = chunks[i]
      if c == nil and fail then return nil, fail .. ": the body failed", fail end
      return c
    end,
  }
end

describe("owin.multipart #unit", function()
  describe("boundary()", function()
    it("takes the boundary parameter, as a token or quoted, any case", function()
      assert.equal("XyZ", multipart.boundary("multipart/form-data; boundary=XyZ"))
      assert.equal("gc0p4Jq0M2Yt08jU534c0p", multipart.boundary(
        'Multipart/Form-Data; charset=utf-8; BOUNDARY="gc0p4Jq0M2Yt08jU534c0p"'))
      assert.equal("a b:c?'()+_,-./=", multipart.boundary('multipart/mixed;boundary="a b:c?\'()+_,-./="'))
      assert.equal(string.rep("x", 70), multipart.boundary("multipart/form-data; boundary=" ..
        string.rep("x", 70)))
    end)

    it("answers nil, EINVAL for a missing or invalid boundary", function()
      assert.same({ nil, "EINVAL: multipart/form-data without a boundary parameter", "EINVAL" },
        { multipart.boundary("multipart/form-data") })
      assert.same({ nil, "EINVAL: multipart/form-data without a boundary parameter", "EINVAL" },
        { multipart.boundary("multipart/form-data; charset=utf-8;") })
      for _, b in ipairs({ '""', string.rep("x", 71), '"ends in a space "', "a{b}", '"a\\"b"' }) do
        local ok, err, code = multipart.boundary("multipart/form-data; boundary=" .. b)
        assert.is_nil(ok, b)
        assert.matches("^EINVAL: invalid multipart boundary ", err)
        assert.equal("EINVAL", code)
      end
      assert.same({ nil, 'EINVAL: "text/plain" is not a multipart media type', "EINVAL" },
        { multipart.boundary("text/plain; boundary=x") })
      assert.same({ nil, "EINVAL: a multipart body needs a Content-Type header", "EINVAL" },
        { multipart.boundary(nil) })
      local ok, err = multipart.boundary("multipart/form-data; boundary=a; boundary=b")
      assert.is_nil(ok)
      assert.equal('EINVAL: invalid Content-Type parameters: parameter "boundary" is given twice', err)
    end)
  end)

  describe("the parser", function()
    it("gives parts, their content and the end, skipping preamble and epilogue", function()
      assert.same(REFERENCE_EVENTS, parse({ REFERENCE }))
    end)

    it("gives the same events however the body is split: one byte at a time", function()
      local chunks = {}
      for i = 1, #REFERENCE do chunks[i] = REFERENCE:sub(i, i) end
      assert.same(REFERENCE_EVENTS, parse(chunks))
    end)

    it("gives the same events for every split of the body in two", function()
      for i = 0, #REFERENCE do
        assert.same(REFERENCE_EVENTS, parse({ REFERENCE:sub(1, i), REFERENCE:sub(i + 1) }),
          "split at " .. i)
      end
    end)

    it("gives the same events for every split in three around each boundary", function()
      local starts = {}
      local i = 0
      while true do
        i = REFERENCE:find("--XyZ", i + 1, true)
        if not i then break end
        starts[#starts + 1] = i
      end
      assert.is_true(#starts >= 6)
      for _, s in ipairs(starts) do
        for a = math.max(0, s - 4), s + 9 do
          for b = a, s + 10 do
            local chunks = { REFERENCE:sub(1, a), REFERENCE:sub(a + 1, b), REFERENCE:sub(b + 1) }
            assert.same(REFERENCE_EVENTS, parse(chunks), "split at " .. a .. " and " .. b)
          end
        end
      end
    end)

    it("never raises on mangled bodies, and gives the same answer however they are split", function()
      local rng = 20240601
      local function rand(n)                  -- a fixed LCG: the same cases on every run
        rng = (rng * 1103515245 + 12345) % 2147483648
        return rng % n + 1
      end
      local pieces = { "\r\n--XyZ", "--", "\r\n", "\r", "\n", "--XyZ--", " ", ":", ";", '"',
                       "Content-Disposition: form-data; name=x\r\n\r\n", "\0", "\255" }
      for case = 1, 400 do
        local body = REFERENCE
        for _ = 1, rand(4) do
          local at, how = rand(#body), rand(3)
          if how == 1 then                    -- insert something boundary-like
            body = body:sub(1, at - 1) .. pieces[rand(#pieces)] .. body:sub(at)
          elseif how == 2 then                -- drop a few bytes
            body = body:sub(1, at - 1) .. body:sub(at + rand(8))
          else                                -- cut the body short
            body = body:sub(1, at)
          end
        end
        local whole = parse({ body })
        local chunks, i = {}, 1
        while i <= #body do
          local n = rand(9)
          chunks[#chunks + 1] = body:sub(i, i + n - 1)
          i = i + n
        end
        assert.same(whole, parse(chunks), "case " .. case .. ": " .. string.format("%q", body))
      end
    end)

    it("passes content on as it arrives, holding back only what may start a boundary", function()
      local p = multipart.parser("XyZ")
      p:feed("--XyZ\r\n" .. field("a", "0123456789"))
      assert.equal("part", (p:next()))
      assert.same({ "data", "0123456789" }, { p:next() })
      assert.is_false(p:next())
      p:feed("\r\n--Xy")                  -- could be the boundary: held
      assert.is_false(p:next())
      p:feed("Q")                         -- it is not
      assert.same({ "data", "\r\n--XyQ" }, { p:next() })
      p:feed(string.rep("z", 100) .. "\r\n-")
      assert.same({ "data", string.rep("z", 100) }, { p:next() })   -- all but what may start one
      assert.is_false(p:next())
      p:feed("-XyZ--")
      assert.same({ "end" }, { p:next() })
      assert.same({ "done" }, { p:next() })
    end)

    it("reads a body without preamble, transport padding after boundaries and a part without headers", function()
      local body = "--XyZ \t\r\n" .. field("a", "1") .. "\r\n--XyZ\t\r\n" ..
        field("b", "2") .. "\r\n--XyZ--  \r\n"
      assert.same({ "part a nil text/plain", "data 1", "end", "part b nil text/plain", "data 2",
                    "end", "done" }, parse({ body }))
      assert.same({ "done" }, parse({ "--XyZ--" }))           -- a form without fields
      assert.same({ "part a nil text/plain", "end", "done" },
        parse({ "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--XyZ--" }))
    end)

    it("unfolds folded header lines and takes header names in any case", function()
      local body = "--XyZ\r\nCONTENT-DISPOSITION: form-data;\r\n name=\"a\";\r\n\tfilename=\"x.txt\"\r\n" ..
        "content-type: text/csv\r\n\r\nq\r\n--XyZ--"
      assert.same({ "part a x.txt text/csv", "data q", "end", "done" }, parse({ body }))
    end)

    it("reads Content-Disposition parameters: quoted, escaped, unquoted, filename*", function()
      local function first_part(cd)
        local p = multipart.parser("b")
        p:feed("--b\r\nContent-Disposition: " .. cd .. "\r\n\r\n\r\n--b--"):feed(nil)
        local ev, x, code = p:next()
        if ev ~= "part" then return ev, x, code end
        return x
      end
      local x = first_part('form-data; name="a \\"q\\" \\\\ ;="; filename="C:\\Users\\me\\a.txt"')
      assert.equal('a "q" \\ ;=', x.name)
      assert.equal("C:\\Users\\me\\a.txt", x.filename)      -- backslashes kept (browsers)
      x = first_part("form-data; name=plain ; filename = x y.txt")
      assert.equal("plain", x.name)
      assert.equal("x y.txt", x.filename)
      x = first_part("form-data; name=f; filename=\"fallback.txt\"; filename*=UTF-8''na%C3%AFve%20%E2%82%AC.txt")
      assert.equal("na\xc3\xafve \xe2\x82\xac.txt", x.filename)
      x = first_part("form-data; name=f; filename*=iso-8859-1'en'caf%E9.txt")
      assert.equal("caf\xc3\xa9.txt", x.filename)
      x = first_part("form-data; name=f; filename=\"fallback.txt\"; filename*=koi8-r''%C1.txt")
      assert.equal("fallback.txt", x.filename)
      x = first_part("form-data; name=f; filename=\"fallback.txt\"; filename*=UTF-8''%FF.txt")
      assert.equal("fallback.txt", x.filename)
      x = first_part('Form-Data; NAME="n"; FileName=""')
      assert.equal("n", x.name)
      assert.equal("", x.filename)                         -- a file input left empty
    end)

    describe("malformed bodies", function()
      local function err_of(chunks, boundary, opts)
        local ev = parse(chunks, boundary, opts)
        return ev[#ev]
      end
      local function e(msg) return "error EINVAL: malformed multipart body: " .. msg .. " EINVAL" end

      it("a body without the boundary, or with another one", function()
        assert.equal(e("no boundary line (--XyZ) in the body"), err_of({ "" }))
        assert.equal(e("no boundary line (--XyZ) in the body"), err_of({ "hello" }))
        assert.equal(e("no boundary line (--XyZ) in the body"),
          err_of({ body_of({ field("a", "1") }, "Other") }))
        assert.equal(e("no boundary line (--XyZ) in the body"), err_of({ "x--XyZ\r\n" }))
      end)

      it("a body that ends before the closing boundary, wherever it is cut", function()
        local body = body_of({ field("a", "1"), file("f", "x", "data") })
        local close = #body - #"--XyZ--\r\n" + 1
        for i = 5, close + #"--XyZ-" - 1 do
          local ev = parse({ body:sub(1, i) })
          assert.equal(e("the body ends before the closing boundary (--XyZ--)"), ev[#ev],
            "cut after " .. i .. " bytes")
        end
      end)

      it("text after the boundary on a boundary line", function()
        assert.equal(e("text after the boundary on a boundary line"),
          err_of({ "--XyZ  x\r\n" .. field("a", "1") .. "\r\n--XyZ--" }))
        assert.equal(e("text after the boundary on a boundary line"),
          err_of({ "--XyZ\r\n" .. field("a", "1") .. "\r\n--XyZ\rx\r\n--XyZ--" }))
        assert.equal(e("a boundary line ends in LF without CR"),
          err_of({ "--XyZ\n" .. field("a", "1") .. "\n--XyZ--" }))
        assert.equal(e("a boundary line ends in LF without CR"),
          err_of({ "--XyZ \n" .. field("a", "1") .. "\n--XyZ--" }))
      end)

      it("headers larger than max_header_size", function()
        local long = "X-Long: " .. string.rep("x", 200)
        local body = body_of({ part({ 'Content-Disposition: form-data; name="a"', long }, "1") })
        assert.equal(e("a part's headers are larger than 100 bytes"),
          err_of({ body }, nil, { max_header_size = 100 }))
        local chunks = {}
        for i = 1, #body do chunks[i] = body:sub(i, i) end    -- also when it comes slowly
        assert.equal(e("a part's headers are larger than 100 bytes"),
          err_of(chunks, nil, { max_header_size = 100 }))
        assert.equal("done", err_of({ body }, nil, { max_header_size = 300 }))
        -- a header block that never ends is refused once it is too large
        assert.equal(e("a part's headers are larger than 16384 bytes"),
          err_of({ "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX: " .. string.rep("y", 20000) }))
      end)

      it("parts without a proper Content-Disposition", function()
        assert.equal(e("a part has no Content-Disposition header"),
          err_of({ body_of({ part({ "Content-Type: text/plain" }, "1") }) }))
        assert.equal(e("a part has no Content-Disposition header"),
          err_of({ "--XyZ\r\n\r\nno headers\r\n--XyZ--" }))
        assert.equal(e('a part\'s Content-Disposition is "attachment", not form-data'),
          err_of({ body_of({ part({ 'Content-Disposition: attachment; name="a"' }, "1") }) }))
        assert.equal(e("a part's Content-Disposition has no name parameter"),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; filename="a"' }, "1") }) }))
        assert.equal(e("a part has two Content-Disposition headers"),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; name="a"',
                                    'Content-Disposition: form-data; name="b"' }, "1") }) }))
        assert.equal(e('a part\'s Content-Disposition: parameter "name" is given twice'),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; name="a"; name="b"' }, "1") }) }))
        assert.equal(e("a part's Content-Disposition: a quoted parameter value has no closing quote"),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; name="a' }, "1") }) }))
        assert.equal(e('a part header is not \'Name: value\': "no colon here"'),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; name="a"', "no colon here" }, "1") }) }))
        assert.equal(e("a part header holds a bare CR or LF"),
          err_of({ body_of({ part({ 'Content-Disposition: form-data; name="a"\nX-Evil: 1' }, "1") }) }))
      end)

      it("keeps answering the error, and ignores later input", function()
        local p = multipart.parser("XyZ")
        p:feed("--XyZ\r\nX: 1\r\n\r\n")
        local r1 = { p:next() }
        assert.is_nil(r1[1])
        p:feed("more")
        assert.same(r1, { p:next() })
      end)
    end)

    it("raises on misuse", function()
      assert.has_error(function() multipart.parser("") end,
        "bad argument #1 to 'parser' (a boundary of 1 to 70 RFC 2046 characters expected, got \"\")")
      assert.has_error(function() multipart.parser(nil) end,
        "bad argument #1 to 'parser' (a boundary of 1 to 70 RFC 2046 characters expected, got nil)")
      assert.has_error(function() multipart.parser("b", { max_headers = 1 }) end,
        "bad argument #2 to 'parser' (unknown option max_headers)")
      local p = multipart.parser("b")
      assert.has_error(function() p:feed(42) end,
        "bad argument #1 to 'feed' (string or nil expected, got number)")
      p:feed(nil)
      assert.has_error(function() p:feed("x") end,
        "parser:feed() after the end of the body (feed(nil))")
    end)
  end)

  describe("display_name()", function()
    it("never leaves a directory, a control character or a dot name", function()
      local cases = {
        ["../../etc/passwd"] = "passwd",
        ["..\\..\\x"] = "x",
        ["..\\x"] = "x",
        ["/etc/passwd"] = "passwd",
        ["C:\\Users\\me\\report.pdf"] = "report.pdf",
        ["//server/share/a.txt"] = "a.txt",
        ["a/b/"] = "",
        [".."] = "",
        ["."] = "",
        ["x/.."] = "",
        ["..."] = "...",
        [".bashrc"] = ".bashrc",
        ["evil.php\0.jpg"] = "evil.php.jpg",
        ["a\r\nb\tc\27[31m"] = "abc[31m",
        ["  spaced name.txt  "] = "spaced name.txt",
        ["gnp.\u{202E}txt.exe"] = "gnp.txt.exe",
        ["c1\u{85}x"] = "c1x",
        ["na\xc3\xafve.txt"] = "na\xc3\xafve.txt",
        ["bad\xff\xfe.txt"] = "bad\u{FFFD}\u{FFFD}.txt",
        ["../\0/.."] = "",
      }
      for input, want in pairs(cases) do
        assert.equal(want, multipart.display_name(input), string.format("%q", input))
      end
    end)

    it("keeps at most 255 bytes, whole characters", function()
      local s = multipart.display_name(string.rep("\xe2\x82\xac", 100))   -- 300 bytes
      assert.equal(255, #s)
      assert.equal(85, utf8.len(s))
      s = multipart.display_name("a" .. string.rep("\xe2\x82\xac", 100))
      assert.equal(253, #s)
      assert.truthy(utf8.len(s))
    end)
  end)

  describe("form()", function()
    it("returns fields and files in one table, repeated names as arrays", function()
      local dir = tmpdir()
      local form = assert(multipart.form(REFERENCE, CT, { tmpdir = dir }))
      assert.same({ "Hello, world", "second" }, form.title)
      assert.equal("", form.empty)
      local doc = form.doc
      assert.equal("passwd", doc.filename)                -- for display only
      assert.equal("doc", doc.name)
      assert.equal("application/octet-stream", doc.content_type)
      assert.equal(#TRICKY, doc.size)
      assert.equal(dir, doc.path:match("^(.*)/[^/]+$"))  -- in tmpdir, under a name of its own
      assert.is_nil(doc.path:find("passwd", 1, true))
      assert.equal(TRICKY, read_file(doc.path))
      assert.equal("form-data; name=\"doc\"; filename=\"../../etc/passwd\"",
        doc.headers["content-disposition"])
      assert.same({ doc.path:match("[^/]+$") }, files_in(dir))
    end)

    it("mixes fields and files of one name in order, as the urlencoded form does", function()
      local dir = tmpdir()
      local form = assert(multipart.form(body_of({
        file("f", "a.txt", "A"), field("f", "text"), file("f", "b.txt", "BB", "text/plain"),
      }), CT, { tmpdir = dir }))
      assert.equal(3, #form.f)
      assert.equal("a.txt", form.f[1].filename)
      assert.equal("text", form.f[2])
      assert.equal("b.txt", form.f[3].filename)
      assert.equal("BB", read_file(form.f[3].path))
      assert.equal(2, #files_in(dir))
    end)

    it("gives the same form for every split of the body, read from a stream", function()
      local dir = tmpdir()
      local function shape(form)
        local doc = form.doc
        local t = { title = form.title, empty = form.empty, doc = { doc.filename, doc.size,
          read_file(doc.path) } }
        os.remove(doc.path)
        return t
      end
      local want = shape(assert(multipart.form(REFERENCE, CT, { tmpdir = dir })))
      for i = 0, #REFERENCE do
        local form = assert(multipart.form(stream({ REFERENCE:sub(1, i), REFERENCE:sub(i + 1) }),
          CT, { tmpdir = dir }))
        assert.same(want, shape(form), "split at " .. i)
      end
      assert.same({}, files_in(dir))
    end)

    it("reads the stream to its end, epilogue included, so that the connection may be kept", function()
      local left = { REFERENCE:sub(1, -10), REFERENCE:sub(-9, -5), REFERENCE:sub(-4) }
      local reads = 0
      local src = { read = function()
        reads = reads + 1
        return table.remove(left, 1)
      end }
      local form = assert(multipart.form(src, CT, { on_file = function() end }))
      assert.same({ "Hello, world", "second" }, form.title)
      assert.equal(4, reads)                        -- three chunks, then the end
      assert.same({ nil, "ECONNRESET: the body failed", "ECONNRESET", 400 },
        { multipart.form(stream({ REFERENCE }, "ECONNRESET"), CT, { on_file = function() end }) })
    end)

    it("writes a large file through in pieces, never holding it in memory", function()
      local dir = tmpdir()
      local piece = string.rep("0123456789abcdef", 4096)            -- 64 KiB
      local n = 256                                                   -- 16 MiB
      local chunks = { "--XyZ\r\n" .. 'Content-Disposition: form-data; name="big"; filename="b"\r\n\r\n' }
      local i = 0
      local src = { read = function()
        i = i + 1
        if i == 1 then return chunks[1] end
        if i <= n + 1 then return piece end
        if i == n + 2 then return "\r\n--XyZ--\r\n" end
        return nil
      end }
      collectgarbage("collect")
      local base, peak = collectgarbage("count"), 0
      local form = assert(multipart.form(src, CT, { max_file_size = 2^30, max_size = 2^30,
        on_file = function(f, chunk)
          if chunk and f.size % (1024 * 1024) == 0 then
            collectgarbage("collect")
            peak = math.max(peak, collectgarbage("count") - base)
          end
        end }))
      assert.equal(n * #piece, form.big.size)
      assert.is_true(peak < 1024, "live memory grew by " .. peak .. " KiB")
      -- and spooled: the file on disk has it all
      i = 0
      form = assert(multipart.form(src, CT, { tmpdir = dir, max_file_size = 2^30, max_size = 2^30 }))
      assert.equal(n * #piece, lfs.attributes(form.big.path, "size"))
    end)

    it("hands files to on_file chunk by chunk instead, and spools nothing", function()
      local dir = tmpdir()
      local got = {}
      local form = assert(multipart.form(stream({ REFERENCE:sub(1, 150), REFERENCE:sub(151) }), CT, {
        tmpdir = dir,
        on_file = function(f, chunk)
          if chunk then
            got[#got + 1] = chunk
            assert.equal(#table.concat(got), f.size)
          else
            f.sha = "computed"                     -- kept in the form
            f.done = #table.concat(got)
          end
        end,
      }))
      assert.equal(TRICKY, table.concat(got))
      assert.equal("passwd", form.doc.filename)
      assert.is_nil(form.doc.path)
      assert.equal("computed", form.doc.sha)
      assert.equal(#TRICKY, form.doc.done)
      assert.same({ "Hello, world", "second" }, form.title)
      assert.same({}, files_in(dir))
    end)

    describe("limits", function()
      local function limited(body, opts, dir)
        opts.tmpdir = dir
        return { multipart.form(body, CT, opts) }
      end

      it("max_parts: 413 beyond it", function()
        local dir = tmpdir()
        local body = body_of({ field("a", "1"), file("f", "x", "data"), field("c", "3") })
        assert.is_table(limited(body, { max_parts = 3 }, dir)[1])
        assert.same({ nil, "E2BIG: the form has more than 2 parts (max_parts)", "E2BIG", 413 },
          limited(body, { max_parts = 2 }, dir))
        for _, f in ipairs(files_in(dir)) do os.remove(dir .. "/" .. f) end
        assert.same({ nil, "E2BIG: the form has more than 1 parts (max_parts)", "E2BIG", 413 },
          limited(body, { max_parts = 1 }, dir))
        assert.same({}, files_in(dir))
      end)

      it("max_field_size: a field's value", function()
        local dir = tmpdir()
        local body = body_of({ field("name", string.rep("x", 100)) })
        assert.equal(100, #limited(body, { max_field_size = 100 }, dir)[1].name)
        assert.same({ nil, 'E2BIG: field "name" is larger than 99 bytes (max_field_size)', "E2BIG", 413 },
          limited(body, { max_field_size = 99 }, dir))
      end)

      it("max_file_size: one file, removed when it goes over", function()
        local dir = tmpdir()
        local body = body_of({ file("a", "ok.bin", string.rep("a", 50)),
                               file("b", "../big.bin", string.rep("b", 101)) })
        assert.same({ nil, 'E2BIG: file "big.bin" of field "b" is larger than 100 bytes (max_file_size)',
          "E2BIG", 413 }, limited(body, { max_file_size = 100 }, dir))
        assert.same({}, files_in(dir))                     -- the first file too
        local form = limited(body, { max_file_size = 101 }, dir)[1]
        assert.equal(101, form.b.size)
      end)

      it("max_size: all parts' content together", function()
        local dir = tmpdir()
        local body = body_of({ field("a", string.rep("a", 60)), file("b", "b", string.rep("b", 60)) })
        assert.is_table(limited(body, { max_size = 120 }, dir)[1])
        for _, f in ipairs(files_in(dir)) do os.remove(dir .. "/" .. f) end
        assert.same({ nil, "E2BIG: the form is larger than 119 bytes (max_size)", "E2BIG", 413 },
          limited(body, { max_size = 119 }, dir))
        assert.same({}, files_in(dir))
      end)

      it("applies to on_file too", function()
        local body = body_of({ file("b", "b", string.rep("b", 60)) })
        local seen = 0
        assert.same({ nil, 'E2BIG: file "b" of field "b" is larger than 10 bytes (max_file_size)', "E2BIG", 413 },
          { multipart.form(body, CT, { max_file_size = 10,
            on_file = function(_, c) seen = seen + (c and #c or 0) end }) })
        assert.is_true(seen <= 10)
      end)

      it("has defaults, and multipart.defaults changes them", function()
        assert.same({ max_parts = 1000, max_field_size = 1048576, max_file_size = 33554432,
                      max_size = 33554432, max_header_size = 16384 }, multipart.defaults)
        local old = multipart.defaults.max_parts
        multipart.defaults.max_parts = 1
        finally(function() multipart.defaults.max_parts = old end)
        assert.same({ nil, "E2BIG: the form has more than 1 parts (max_parts)", "E2BIG", 413 },
          { multipart.form(body_of({ field("a", "1"), field("b", "2") }), CT) })
      end)
    end)

    describe("failures", function()
      it("400 for a malformed body or Content-Type, removing what was spooled", function()
        local dir = tmpdir()
        local body = body_of({ file("f", "x", "data") }):sub(1, -12)       -- no closing boundary
        assert.same({ nil, "EINVAL: malformed multipart body: the body ends before the closing " ..
          "boundary (--XyZ--)", "EINVAL", 400 }, { multipart.form(body, CT, { tmpdir = dir }) })
        assert.same({}, files_in(dir))
        assert.same({ nil, "EINVAL: multipart/form-data without a boundary parameter", "EINVAL", 400 },
          { multipart.form(body, "multipart/form-data", { tmpdir = dir }) })
      end)

      it("the read's own error when the body fails, with its status", function()
        local dir = tmpdir()
        local body = body_of({ file("f", "x", "data"), field("a", "1") })
        for code, status in pairs({ ECONNRESET = 400, E2BIG = 413, ETIMEDOUT = 408 }) do
          assert.same({ nil, code .. ": the body failed", code, status },
            { multipart.form(stream({ body:sub(1, 120) }, code), CT, { tmpdir = dir }) })
          assert.same({}, files_in(dir))
        end
      end)

      it("500 when a file cannot be made", function()
        local form, err, code, status = multipart.form(body_of({ file("f", "x", "data") }), CT,
          { tmpdir = "/nonexistent/dir" })
        assert.is_nil(form)
        assert.matches("%(spooling an uploaded file to /nonexistent/dir%)$", err)
        assert.is_string(code)
        assert.equal(500, status)
      end)

      it("lets an error of on_file through", function()
        local body = body_of({ file("a", "a", "content") })
        assert.has_error(function()
          multipart.form(body, CT, { on_file = function() error("stop", 0) end })
        end, "stop")
      end)

      it("removes spooled files when its coroutine is closed while it waits for the body", function()
        local dir = tmpdir()
        local body = body_of({ file("a", "a", "first"), file("b", "b", "second") })
        local reads = 0
        local co = coroutine.create(function()
          return multipart.form({ read = function()
            reads = reads + 1
            if reads == 1 then return body:sub(1, #body - 14) end   -- in "second"
            coroutine.yield()                       -- the rest never comes
          end }, CT, { tmpdir = dir })
        end)
        assert.is_true(coroutine.resume(co))
        assert.equal("suspended", coroutine.status(co))
        assert.equal(2, #files_in(dir))             -- the second one half written
        assert.is_true(coroutine.close(co))
        assert.same({}, files_in(dir))
      end)

      it("raises on a wrong option or argument", function()
        assert.has_error(function() multipart.form("", CT, { max_filesize = 1 }) end,
          "bad option to 'form' (unknown option max_filesize)")
        assert.has_error(function() multipart.form("", CT, { max_size = 1.5 }) end,
          "bad option max_size to 'form' (a number of bytes expected, got 1.5)")
        assert.has_error(function() multipart.form("", CT, { max_size = "5" }) end,
          "bad option max_size to 'form' (a number of bytes expected, got string)")
        assert.has_error(function() multipart.form("", CT, { on_file = true }) end,
          "bad option on_file to 'form' (function expected, got boolean)")
        assert.has_error(function() multipart.form(42, CT) end,
          "bad argument #1 to 'form' (an input stream or a string expected, got number)")
      end)
    end)
  end)

  describe("request:form() under owin.test", function()
    local function upload_app(seen)
      return context.app(function(ctx)
        local form, err, code, status = ctx.request:form({ tmpdir = seen.dir })
        if not form then
          seen.err, seen.code = err, code
          return ctx.response:text(err, status)
        end
        seen.form = form
        seen.exists_during = form.doc and io.open(form.doc.path) ~= nil
        seen.again = ctx.request:form() == form
        if ctx.request.path == "/keep" then
          assert(os.rename(form.doc.path, seen.dir .. "/kept"))
        elseif ctx.request.path == "/fail" then
          error("the app fails after reading the form")
        end
        ctx.response:text("ok")
      end)
    end

    it("reads the form as the body arrives and removes spooled files when the request ends", function()
      local seen = { dir = tmpdir() }
      local client = test.client(upload_app(seen))
      local chunks = {}
      for i = 1, #REFERENCE, 7 do chunks[#chunks + 1] = REFERENCE:sub(i, i + 6) end
      local res = client:post("/", { headers = { ["Content-Type"] = CT }, body = chunks })
      assert.equal(200, res.status)
      assert.is_true(seen.exists_during)
      assert.is_true(seen.again)
      assert.same({ "Hello, world", "second" }, seen.form.title)
      assert.equal("passwd", seen.form.doc.filename)
      assert.is_nil(io.open(seen.form.doc.path))
      assert.same({}, files_in(seen.dir))
    end)

    it("removes them after an app error too, and leaves a file the app moved", function()
      local seen = { dir = tmpdir() }
      local client = test.client(upload_app(seen))
      local res = client:post("/fail", { headers = { ["Content-Type"] = CT }, body = REFERENCE })
      assert.equal(500, res.status)
      assert.same({}, files_in(seen.dir))
      res = client:post("/keep", { headers = { ["Content-Type"] = CT }, body = REFERENCE })
      assert.equal(200, res.status)
      assert.same({ "kept" }, files_in(seen.dir))
      assert.equal(TRICKY, read_file(seen.dir .. "/kept"))
    end)

    it("answers 400 or 413 with the message form() gives", function()
      local seen = { dir = tmpdir() }
      local client = test.client(upload_app(seen))
      local res = client:post("/", { headers = { ["Content-Type"] = "multipart/form-data" },
        body = REFERENCE })
      assert.equal(400, res.status)
      assert.equal("EINVAL: multipart/form-data without a boundary parameter", res.body)
      res = client:post("/", { headers = { ["Content-Type"] = { CT, "multipart/form-data; boundary=b" } },
        body = REFERENCE })
      assert.equal(400, res.status)
      assert.equal("EINVAL: more than one Content-Type header", res.body)
      res = client:post("/", { headers = { ["Content-Type"] = CT }, body = REFERENCE:sub(1, 200) })
      assert.equal(400, res.status)
      assert.matches("^EINVAL: malformed multipart body: the body ends before", res.body)
      client = test.client(context.app(function(ctx)
        local form, err, _, status = ctx.request:form({ max_file_size = 10, tmpdir = seen.dir })
        if not form then return ctx.response:text(err, status) end
      end))
      res = client:post("/", { headers = { ["Content-Type"] = CT }, body = REFERENCE })
      assert.equal(413, res.status)
      assert.equal('E2BIG: file "passwd" of field "doc" is larger than 10 bytes (max_file_size)',
        res.body)
      assert.same({}, files_in(seen.dir))
    end)

    it("removes what it spooled when the client leaves in the middle of the upload", function()
      local seen = { dir = tmpdir() }
      local client = test.client(upload_app(seen))
      local pending = client:start({ method = "POST", path = "/", cancel_after = 5,
        headers = { ["Content-Type"] = CT },
        body = function()
          local cut = REFERENCE:find(TRICKY, 1, true) + 5
          coroutine.yield(REFERENCE:sub(1, cut))      -- into the file
          coroutine.yield(10)                         -- then nothing for 10 s
          coroutine.yield(REFERENCE:sub(cut + 1))
        end })
      client:advance(1)
      assert.equal(1, #files_in(seen.dir))            -- being written
      pending:wait()
      assert.equal("ECONNRESET", seen.code)
      assert.is_nil(seen.form)
      assert.same({}, files_in(seen.dir))
    end)

    it("reads the form from the body when body() read it first", function()
      local dir = tmpdir()
      local out
      local client = test.client(context.app(function(ctx)
        assert.equal(REFERENCE, ctx.request:body())
        out = assert(ctx.request:form({ tmpdir = dir }))
      end))
      client:post("/", { headers = { ["Content-Type"] = CT }, body = REFERENCE })
      assert.same({ "Hello, world", "second" }, out.title)
      assert.same({}, files_in(dir))
    end)

    it("removes the files when the form is collected, on a host without server.OnRequestEnd", function()
      local dir = tmpdir()
      local env = {
        ["owin.RequestHeaders"] = { ["content-type"] = { CT } },
        ["owin.RequestBody"] = stream({ REFERENCE }),
      }
      local form = assert(context(env).request:form({ tmpdir = dir }))
      assert.equal(1, #files_in(dir))
      form, env = nil, nil                     -- luacheck: ignore
      context({})                              -- the context keeps the last env
      collectgarbage("collect")
      collectgarbage("collect")
      assert.same({}, files_in(dir))
    end)
  end)
end)
