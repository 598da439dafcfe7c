-- sendfile.SendAsync and owin.fs through the real server.
local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

local dir, small, big
local BIG = 8 * 1024 * 1024

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("#e2e sendfile.SendAsync", function()
  local srv
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    small = dir .. "/small.txt"
    big = dir .. "/big.bin"
    write_file(small, "0123456789abcdef")
    local parts = {}
    for i = 0, 255 do parts[#parts + 1] = string.char(i) end
    write_file(big, string.rep(table.concat(parts), BIG // 256))
    srv = server.start("spec/fixtures/core.lua")
  end)
  teardown(function()
    assert.is_true(srv:stop())
    os.execute("rm -rf " .. dir)
  end)

  it("sends a whole file with a Content-Length", function()
    local res = http.get(srv.port, "/sendfile?path=" .. small)
    assert.equal(200, res.status)
    assert.equal("16", res.headers["content-length"])
    assert.equal("0123456789abcdef", res.body)
  end)

  it("sends a range", function()
    local res = http.get(srv.port, "/sendfile?path=" .. small .. "&off=3&len=4")
    assert.equal("4", res.headers["content-length"])
    assert.equal("3456", res.body)
    assert.equal("cdef", http.get(srv.port, "/sendfile?path=" .. small .. "&off=12").body)
  end)

  it("returns nil, err for a missing file or a range past the end", function()
    local res = http.get(srv.port, "/sendfile?path=" .. dir .. "/nope")
    assert.equal(404, res.status)
    assert.matches("^ENOENT: no such file or directory %(.*/nope%) ENOENT$", res.body)
    res = http.get(srv.port, "/sendfile?path=" .. small .. "&off=10&len=10")
    assert.matches("^EINVAL: .* %(range past the end of the file%) EINVAL$", res.body)
    res = http.get(srv.port, "/sendfile?path=" .. dir)
    assert.matches("EISDIR", res.body)
  end)

  it("sends a large file intact to a slow reader", function()
    local c = assert(http.connect(srv.port, nil, 30))
    c:send("GET /sendfile?path=" .. big .. " HTTP/1.1\r\nHost: h\r\n\r\n")
    socket.sleep(0.5)                     -- let the socket fill up
    local res = assert(c:read_response())
    c:close()
    assert.equal(tostring(BIG), res.headers["content-length"])
    assert.equal(BIG, #res.body)
    assert.equal("\0\1\2\3", res.body:sub(1, 4))
    assert.equal("\252\253\254\255", res.body:sub(-4))
    local f = assert(io.open(big, "rb"))
    assert.is_true(f:read("a") == res.body, "the body differs from the file")
    f:close()
  end)

  it("follows bytes already written (chunked framing)", function()
    local res = http.get(srv.port, "/sendfile?path=" .. small .. "&prefix=HEAD:")
    assert.is_true(res.chunked)
    assert.equal("HEAD:0123456789abcdef", res.body)
  end)

  it("keeps pipelined responses in order", function()
    local c = assert(http.connect(srv.port))
    c:send("GET /sendfile?path=" .. small .. "&len=3 HTTP/1.1\r\nHost: h\r\n\r\n" ..
           "GET /big?size=2 HTTP/1.1\r\nHost: h\r\n\r\n" ..
           "GET /sendfile?path=" .. small .. "&off=13 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.equal("012", c:read_response().body)
    assert.equal("bb", c:read_response().body)
    assert.equal("def", c:read_response().body)
    c:close()
  end)

  it("refuses a FIFO without blocking the server", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. fifo))
    local res = http.get(srv.port, "/sendfile?path=" .. fifo)
    assert.equal(404, res.status)
    assert.matches("EINVAL", res.body)
    assert.equal(200, http.get(srv.port, "/big?size=1").status)
  end)

  it("sends no body for HEAD", function()
    local c = assert(http.connect(srv.port))
    c:send("HEAD /sendfile?path=" .. small .. " HTTP/1.1\r\nHost: h\r\n\r\nGET /big?size=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    local res = c:read_response({ method = "HEAD" })
    assert.equal("16", res.headers["content-length"])
    assert.equal("b", c:read_response().body)
    c:close()
  end)
end)

describe("#e2e owin.fs", function()
  it("stats files and resolves real paths", function()
    local srv = server.start("spec/fixtures/core.lua")
    finally(function() srv:stop() end)
    local res = http.get(srv.port, "/stat?path=spec/fixtures/core.lua")
    assert.matches("^file %d+ /.*/spec/fixtures/core%.lua$", res.body)
    assert.matches("^ENOENT: .* ENOENT$", http.get(srv.port, "/stat?path=nope").body)
  end)
end)
