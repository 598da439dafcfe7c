-- Multipart forms through the real owinlua binary (spec/fixtures/forms.lua):
-- uploads from curl -F and raw bodies split across TCP writes, the files
-- spooled with mode 0600 under names of the server's own, their contents,
-- and their removal when the request ends (also after an app error and when
-- the client leaves in the middle); 400 and 413 answers.
--
--   busted --lua=lua5.4 spec/e2e/multipart_spec.lua

local server = require("helpers.server")
local cleanup = require("helpers.cleanup")
local http = require("helpers.http")
local lfs = require("lfs")

local CT = "multipart/form-data; boundary=XyZ"

-- Adler-32 by its definition (RFC 1950 section 8.2).
local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return string.format("%08x", b * 65536 + a)
end

-- n pseudo-random bytes (a fixed LCG: the same body on every run).
local function random_bytes(n, seed)
  local x, t = seed or 12345, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char((x >> 16) & 255)
  end
  return table.concat(t)
end

local function files_in(d)
  local t = {}
  for f in lfs.dir(d) do
    if f ~= "." and f ~= ".." then t[#t + 1] = f end
  end
  table.sort(t)
  return t
end

-- A fresh directory, removed with what is left in it when the test ends.
local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(lfs.mkdir(d))
  cleanup.defer(function()
    for _, f in ipairs(files_in(d)) do os.remove(d .. "/" .. f) end
    lfs.rmdir(d)
  end)
  return d
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- "file <name>: a|b|c..." lines -> name -> { filename, type, size, adler32, mode, path }
local function files_of(body)
  local t = {}
  for name, rest in body:gmatch("file ([^:\n]+): ([^\n]*)") do
    local f = {}
    for v in (rest .. "|"):gmatch("([^|]*)|") do f[#f + 1] = v end
    t[name] = t[name] or {}
    table.insert(t[name], { filename = f[1], type = f[2], size = tonumber(f[3]), adler32 = f[4],
                            mode = f[5], path = f[6] })
  end
  return t
end

local function post(port, target, ctype, body)
  return assert(http.request(port, "POST " .. target .. " HTTP/1.1\r\nHost: t\r\n" ..
    "Content-Type: " .. ctype .. "\r\nContent-Length: " .. #body ..
    "\r\nConnection: close\r\n\r\n" .. body))
end

-- Asks the server, on a new connection, whether path exists.
local function exists(port, path)
  return assert(http.get(port, "/exists?path=" .. path)).body
end

local function part(disposition, content, ctype)
  return "Content-Disposition: form-data; " .. disposition ..
    (ctype and ("\r\nContent-Type: " .. ctype) or "") .. "\r\n\r\n" .. content
end

local function body_of(parts)
  return "--XyZ\r\n" .. table.concat(parts, "\r\n--XyZ\r\n") .. "\r\n--XyZ--\r\n"
end

describe("multipart forms through the server #e2e", function()
  after_each(cleanup.run)

  local function start(dir, args)
    return cleanup.server("spec/fixtures/forms.lua", args, { env = { UPLOAD_DIR = dir } })
  end

  it("spools curl -F files to 0600 files of its own naming, and removes them after the request", function()
    local dir, src = tmpdir(), tmpdir()
    local srv = start(dir)
    local big = random_bytes(1024 * 1024 + 3)
    write_file(src .. "/big.bin", big)
    write_file(src .. "/small.txt", "Wikipedia")
    local cmd = table.concat({
      "curl -sS",
      "-F title=Holidays",
      "-F 'photo=@" .. src .. "/big.bin;type=image/jpeg'",
      "-F 'photo=@" .. src .. "/small.txt;filename=../../etc/passwd'",
      "-F 'other=@" .. src .. "/small.txt;filename=/etc/shadow'",
      "-F 'other=@" .. src .. "/small.txt;filename=..\\\\x'",
      "http://127.0.0.1:" .. srv.port .. "/form",
    }, " ")
    local p = assert(io.popen(cmd))
    local body = p:read("a")
    p:close()
    assert.matches("field title=Holidays\n", body, 1, true)
    local files = files_of(body)
    local photo = files.photo
    table.sort(photo, function(x, y) return x.size > y.size end)
    assert.same({ filename = "big.bin", type = "image/jpeg", size = #big, adler32 = adler32(big),
                  mode = "600", path = photo[1].path }, photo[1])
    assert.same({ filename = "passwd", type = "text/plain", size = 9, adler32 = "11e60398",
                  mode = "600", path = photo[2].path }, photo[2])
    local names = {}
    for _, f in ipairs(files.other) do names[#names + 1] = f.filename end
    table.sort(names)
    assert.same({ "shadow", "x" }, names)
    for _, f in ipairs({ photo[1], photo[2], files.other[1], files.other[2] }) do
      assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/owinlua%-upload%-[%w]+$", f.path)
      assert.equal("no", exists(srv.port, f.path))         -- removed when the request ended
    end
    assert.same({}, files_in(dir))
  end)

  it("reads a raw body sent one byte per TCP write, with a NUL and a path in a filename", function()
    local dir = tmpdir()
    local srv = start(dir)
    local content = "line one\r\n--XyZW\r\n--Xy\r\nlast"
    local body = "preamble\r\n" .. body_of({
      part('name="a"', "1"),
      part('name="f"; filename="..\\\\..\\\\evil.php\0.jpg"', content, "text/plain"),
      part('name="a"', "2"),
    }) .. "epilogue"
    local c = assert(http.connect(srv.port, nil, 30))
    assert(c:send("POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: " .. CT ..
      "\r\nContent-Length: " .. #body .. "\r\n\r\n"))
    assert(c:send_slowly(body, 0.001))
    local res = assert(c:read_response())
    assert.equal(200, res.status)
    assert.matches("field a=1\nfield a=2\n", res.body, 1, true)
    local f = files_of(res.body).f[1]
    assert.equal("evil.php.jpg", f.filename)
    assert.equal(#content, f.size)
    assert.equal(adler32(content), f.adler32)
    -- the next request on this connection starts once the first one ended
    assert(c:send("GET /exists?path=" .. f.path .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert.equal("no", assert(c:read_response()).body)
    c:close()
  end)

  it("reads a chunked body whose chunks cut the boundaries everywhere", function()
    local dir = tmpdir()
    local srv = start(dir)
    local content = random_bytes(70000, 99)
    local body = body_of({ part('name="f"; filename="r.bin"', content), part('name="t"', "x") })
    for _, size in ipairs({ 1, 2, 3, 5, 7, 11, 4096, 65537 }) do
      local c = assert(http.connect(srv.port, nil, 30))
      local out = { "POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: " .. CT ..
        "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" }
      for i = 1, #body, size do
        local piece = body:sub(i, i + size - 1)
        out[#out + 1] = string.format("%x\r\n", #piece) .. piece .. "\r\n"
      end
      out[#out + 1] = "0\r\n\r\n"
      assert(c:send(table.concat(out)))
      local res = assert(c:read_response())
      c:close()
      assert.equal(200, res.status, res.body)
      local f = files_of(res.body).f[1]
      assert.equal(adler32(content), f.adler32, "chunks of " .. size)
      assert.matches("field t=x", res.body)
    end
    assert.same({}, files_in(dir))
  end)

  it("hands files to on_file and spools nothing", function()
    local dir = tmpdir()
    local srv = start(dir)
    local content = random_bytes(200000, 5)
    local res = post(srv.port, "/form?on_file=1", CT,
      body_of({ part('name="f"; filename="a.bin"', content, "application/x-thing") }))
    assert.equal(200, res.status)
    assert.equal(string.format("file f: a.bin|application/x-thing|%d|%s\n", #content,
      adler32(content)), res.body)
    assert.same({}, files_in(dir))
  end)

  it("removes the files after an app error, and keeps a file the app moved", function()
    local dir = tmpdir()
    local srv = start(dir)
    local body = body_of({ part('name="f"; filename="a.txt"', "content") })
    local res = post(srv.port, "/form?then=fail", CT, body)
    assert.equal(500, res.status)
    assert.equal("no", exists(srv.port, dir .. "/x"))     -- a request after it
    assert.same({}, files_in(dir))
    res = post(srv.port, "/form?then=keep", CT, body)
    assert.equal(200, res.status)
    assert.equal("yes", exists(srv.port, dir .. "/kept-f"))
    assert.same({ "kept-f" }, files_in(dir))
  end)

  it("removes a half-spooled file when the client leaves in the middle", function()
    local dir = tmpdir()
    local srv = start(dir)
    local body = body_of({ part('name="f"; filename="a.bin"', random_bytes(100000, 3)) })
    local c = assert(http.connect(srv.port))
    assert(c:send("POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: " .. CT ..
      "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body:sub(1, 50000)))
    assert.is_truthy(server.eventually(function() return #files_in(dir) == 1 end))
    c:close()
    assert.is_truthy(server.eventually(function() return #files_in(dir) == 0 end))
  end)

  it("answers 400 for a malformed body and 413 over a limit, with form()'s message", function()
    local dir = tmpdir()
    local srv = start(dir, { "--max-body", "64k" })
    local res = post(srv.port, "/form", "multipart/form-data", "--x--\r\n")
    assert.equal(400, res.status)
    assert.equal("EINVAL: multipart/form-data without a boundary parameter", res.body)
    res = post(srv.port, "/form", "multipart/form-data; boundary=\"a b \"", "--x--\r\n")
    assert.equal(400, res.status)
    assert.matches("^EINVAL: invalid multipart boundary \"a b \"", res.body)
    res = post(srv.port, "/form", CT, "--XyZ\r\n" .. part('name="a"', "cut short"))
    assert.equal(400, res.status)
    assert.equal("EINVAL: malformed multipart body: the body ends before the closing " ..
      "boundary (--XyZ--)", res.body)
    res = post(srv.port, "/form", CT, body_of({ "Content-Type: text/plain\r\n\r\nx" }))
    assert.equal(400, res.status)
    assert.equal("EINVAL: malformed multipart body: a part has no Content-Disposition header",
      res.body)
    res = post(srv.port, "/form?max_file_size=1000", CT,
      body_of({ part('name="f"; filename="../big"', string.rep("x", 1001)) }))
    assert.equal(413, res.status)
    assert.equal('E2BIG: file "big" of field "f" is larger than 1000 bytes (max_file_size)',
      res.body)
    res = post(srv.port, "/form", CT,                          -- over --max-body
      body_of({ part('name="f"; filename="big"', string.rep("x", 70000)) }))
    assert.equal(413, res.status)
    assert.is_truthy(server.eventually(function() return #files_in(dir) == 0 end))
  end)
end)
