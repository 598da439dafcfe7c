-- The example apps in apps/, served by the real owinlua binary on port 0 and
-- checked over real sockets: hello, timing (Server-Timing header), upload
-- (streamed body or multipart form, byte count and Adler-32), sse (events
-- one second apart).
--
--   busted --lua=lua5.4 spec/e2e/apps_spec.lua

local server = require("helpers.server")
local cleanup = require("helpers.cleanup")
local defer, run_cleanups, start = cleanup.defer, cleanup.run, cleanup.server
local http = require("helpers.http")
local socket = require("socket")

-- Cleanup for the running test, last registered first (busted keeps only
-- one finally handler per test, so handlers queue here for after_each).




local eventually = server.eventually

-- Adler-32 by its definition (RFC 1950 section 8.2), one byte at a time.
local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return string.format("%08x", b * 65536 + a)
end

-- n pseudo-random bytes (a fixed LCG, so every run sends the same body).
local function random_bytes(n, seed)
  local x, t = seed or 12345, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char((x >> 16) & 255)
  end
  return table.concat(t)
end

describe("example apps #e2e", function()
  after_each(run_cleanups)

  it("adler32 in this spec agrees with the published value for \"Wikipedia\"", function()
    assert.are.equal("11e60398", adler32("Wikipedia"))
    assert.are.equal("00000001", adler32(""))
  end)

  describe("apps/hello.lua", function()
    it("says Hello World", function()
      local srv = start("apps/hello.lua")
      local res = assert(http.get(srv.port, "/"))
      assert.are.equal(200, res.status)
      assert.are.equal("Hello World", res.body)
      assert.are.equal("text/plain", res.headers["content-type"])
      assert.are.equal("11", res.headers["content-length"])
    end)

    it("logs each request through its middleware", function()
      local srv = start("apps/hello.lua")
      assert(http.get(srv.port, "/some/where"))
      assert.truthy(eventually(function() return srv:stderr():find("GET /some/where 200", 1, true) end),
        "no log line in:\n" .. srv:stderr())
    end)
  end)

  describe("apps/timing.lua", function()
    it("adds a Server-Timing header with the app's duration", function()
      local srv = start("apps/timing.lua")
      local res = assert(http.get(srv.port, "/?work=0.2"))
      assert.are.equal(200, res.status)
      local dur = tonumber((res.headers["server-timing"] or ""):match("^app;dur=(%d+%.%d)$"))
      assert.is_number(dur, "Server-Timing: " .. tostring(res.headers["server-timing"]))
      assert.is_true(dur >= 150 and dur < 2000, "dur=" .. dur .. " for 0.2 s of work")
      assert.are.equal("worked for 0.200 s\n", res.body)
    end)

    it("times quick requests too, and logs them", function()
      local srv = start("apps/timing.lua")
      local res = assert(http.get(srv.port, "/quick"))
      local dur = tonumber((res.headers["server-timing"] or ""):match("^app;dur=(%d+%.%d)$"))
      assert.is_number(dur)
      assert.is_true(dur < 150, "dur=" .. dur .. " with no work")
      assert.truthy(eventually(function() return srv:stderr():find("GET /quick -> 200 in", 1, true) end),
        "no log line in:\n" .. srv:stderr())
    end)
  end)

  describe("apps/upload.lua", function()
    -- POSTs `body` with Transfer-Encoding: chunked, one socket write per
    -- chunk, chunk sizes cycling through `sizes`; returns the response.
    local function upload_chunked(port, body, sizes)
      local c = assert(http.connect(port, nil, 30))
      assert(c:send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" ..
                    "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"))
      local i, k = 1, 1
      while i <= #body do
        local piece = body:sub(i, i + sizes[k] - 1)
        assert(c:send(string.format("%x\r\n", #piece) .. piece .. "\r\n"))
        i = i + #piece
        k = k % #sizes + 1
      end
      assert(c:send("0\r\n\r\n"))
      local res = assert(c:read_response())
      c:close()
      return res
    end

    local function answer(n, sum) return string.format("%d bytes, adler32 %s\n", n, sum) end

    it("counts and checksums a few MB sent chunked in pieces", function()
      local srv = start("apps/upload.lua", { "--max-body", "64m" })
      -- 3 MiB: rotations of a 256 KiB random block, so no two pieces repeat
      local block = random_bytes(256 * 1024)
      local parts = {}
      for r = 0, 11 do
        local cut = r * 7919 + 1
        parts[#parts + 1] = block:sub(cut) .. block:sub(1, cut - 1)
      end
      local body = table.concat(parts)
      assert.are.equal(3 * 1024 * 1024, #body)
      local res = upload_chunked(srv.port, body, { 1, 1000, 65536, 7, 200000, 4096, 333333 })
      assert.are.equal(200, res.status)
      assert.are.equal(answer(#body, adler32(body)), res.body)
    end)

    it("gives the published Adler-32 of \"Wikipedia\"", function()
      local srv = start("apps/upload.lua")
      local res = assert(http.request(srv.port,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nConnection: close\r\n\r\nWikipedia"))
      assert.are.equal(answer(9, "11e60398"), res.body)
    end)

    it("handles an empty body", function()
      local srv = start("apps/upload.lua")
      local res = upload_chunked(srv.port, "", { 1 })
      assert.are.equal(answer(0, "00000001"), res.body)
    end)

    it("serves its upload page at GET, and answers DELETE with 405 and Allow", function()
      local srv = start("apps/upload.lua")
      local res = assert(http.get(srv.port, "/"))
      assert.are.equal(200, res.status)
      assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.matches('<form method="post" enctype="multipart/form%-data">', res.body)
      assert.matches('<input type="file" name="file" multiple>', res.body)
      res = assert(http.get(srv.port, "/", nil, "DELETE"))
      assert.are.equal(405, res.status)
      assert.are.equal("GET, HEAD, POST, PUT", res.headers["allow"])
    end)

    it("checksums the files of a multipart form (curl -F) as they arrive", function()
      local srv = start("apps/upload.lua", { "--max-body", "64m" })
      local big = random_bytes(2 * 1024 * 1024 + 17, 7)
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      defer(function() os.execute("rm -rf " .. dir) end)
      local function put(name, data)
        local f = assert(io.open(dir .. "/" .. name, "wb"))
        f:write(data)
        f:close()
      end
      put("big.bin", big)
      put("w.txt", "Wikipedia")
      local cmd = string.format("curl -s -F note=hello -F 'file=@%s/big.bin' " ..
        "-F 'file=@%s/w.txt;filename=../../etc/w.txt;type=text/plain' http://127.0.0.1:%d/",
        dir, dir, srv.port)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      assert.are.equal(
        string.format("file file: big.bin (application/octet-stream), %d bytes, adler32 %s\n",
          #big, adler32(big)) ..
        "file file: w.txt (text/plain), 9 bytes, adler32 11e60398\n" ..
        "field note: hello\n", out)
    end)
  end)

  describe("apps/sse.lua", function()
    -- Reads one chunk of a chunked body: its data, or "" for the last chunk.
    local function read_chunk(c)
      local line = assert(c:read_line())
      local size = assert(tonumber(line:match("^(%x+)"), 16), "bad chunk size line: " .. line)
      if size == 0 then
        assert.are.equal("", c:read_line())          -- no trailers
        return ""
      end
      local data = assert(c:read_exact(size))
      assert.are.equal("\r\n", c:read_exact(2))
      return data
    end

    -- Reads chunks until one whole event (ending in a blank line) is in;
    -- returns the event text and when it was complete, or nil at the end.
    local function read_event(c, pending)
      local text = pending or ""
      while not text:find("\n\n", 1, true) do
        local data = read_chunk(c)
        if data == "" then return nil end
        text = text .. data
      end
      local stop = text:find("\n\n", 1, true)
      return text:sub(1, stop + 1), socket.gettime(), text:sub(stop + 2)
    end

    local function open_stream(port, target)
      local c = assert(http.connect(port, nil, 10))
      assert(c:send("GET " .. target .. " HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"))
      local head = assert(c:read_line())
      assert.are.equal("HTTP/1.1 200 OK", head)
      local headers = {}
      while true do
        local h = assert(c:read_line())
        if h == "" then break end
        local name, value = h:match("^([^:]+):%s*(.*)$")
        headers[name:lower()] = value
      end
      return c, headers
    end

    local EVENT = "^id: (%d+)\nevent: tick\ndata: %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ\n\n$"

    it("with ?n=2 streams two events a second apart, chunked, then ends", function()
      local srv = start("apps/sse.lua")
      local t0 = socket.gettime()
      local c, headers = open_stream(srv.port, "/?n=2")
      defer(function() c:close() end)
      assert.are.equal("text/event-stream", headers["content-type"])
      assert.are.equal("chunked", headers["transfer-encoding"])
      assert.are.equal("no-cache", headers["cache-control"])
      local e1, t1, rest = read_event(c)
      local e2, t2, rest2 = read_event(c, rest)
      assert.are.equal("1", e1:match(EVENT))
      assert.are.equal("2", e2:match(EVENT))
      assert.are.equal("", rest2)
      -- the first event arrived at once, not held back until the second
      assert.is_true(t1 - t0 < 0.6, string.format("first event after %.2f s", t1 - t0))
      assert.is_true(t2 - t1 > 0.7 and t2 - t1 < 1.8, string.format("events %.2f s apart", t2 - t1))
      assert.are.equal("", read_chunk(c))              -- the end of the body
    end)

    it("keeps going without ?n and stops when the client goes away", function()
      local srv = start("apps/sse.lua", { "--graceful-timeout", "10" })
      local c = open_stream(srv.port, "/")
      local e1, _, rest = read_event(c)
      local e2 = read_event(c, rest)
      assert.are.equal("1", e1:match(EVENT))
      assert.are.equal("2", e2:match(EVENT))
      c:close()
      socket.sleep(1.5)   -- the app sees the client gone at its next write
      -- nothing left in flight: a graceful stop does not wait for the stream
      local t = socket.gettime()
      local ok, how, code = srv:stop()
      assert.are.same({ true, "exit", 0 }, { ok, how, code })
      assert.is_true(socket.gettime() - t < 3, "the stream was still running at shutdown")
    end)

    it("ends the stream when the server stops (owin.CallCancelled)", function()
      local srv = start("apps/sse.lua", { "--graceful-timeout", "0.5" })
      local c = open_stream(srv.port, "/")
      defer(function() c:close() end)
      assert.is_string((read_event(c)))
      srv:signal("TERM")
      -- the body ends (or the connection closes) well before a minute of events
      local deadline = socket.gettime() + 5
      local ended = false
      local pending
      while socket.gettime() < deadline do
        local ok, ev, _, rest = pcall(read_event, c, pending)
        if not ok or ev == nil then ended = true break end
        pending = rest
      end
      assert.is_true(ended, "the stream outlived the server's stop")
      assert.is_true(srv:wait_exit(5))
    end)
  end)
end)

-- apps/timing.lua registers a closure with no state; OWIN's shape is
-- OnSendingHeaders(callback, state) and the callback gets the state back.
describe("server.OnSendingHeaders as the example apps use it #e2e", function()
  after_each(run_cleanups)

  local function script(source)
    local path = os.tmpname() .. ".lua"
    local fh = assert(io.open(path, "w"))
    fh:write(source)
    fh:close()
    defer(function() os.remove(path) end)
    return path
  end

  local APP = [[
    app.run(function(env)
      local h, on = env["owin.ResponseHeaders"], env["server.OnSendingHeaders"]
      local q = env["owin.RequestQueryString"]
      if q == "state" then
        on(function(s) h["X-State"] = tostring(s == env) end, env)
      elseif q == "none" then
        on(function(s) h["X-State"] = type(s) end)
      elseif q == "nil" then
        on(function(s) h["X-State"] = type(s) end, nil)
      elseif q == "mixed" then
        on(function(s) h["X-First"] = type(s) end, env)
        on(function(s) h["X-Second"] = type(s) end, nil)
      end
      env["owin.ResponseBody"]:write("ok")
    end)
  ]]

  it("hands the state back to the callback", function()
    local srv = start(script(APP))
    assert.are.equal("true", assert(http.get(srv.port, "/?state")).headers["x-state"])
  end)

  it("calls a callback registered without a state, with nil", function()
    local srv = start(script(APP))
    assert.are.equal("nil", assert(http.get(srv.port, "/?none")).headers["x-state"])
  end)

  it("calls a callback registered with a nil state", function()
    local srv = start(script(APP))
    assert.are.equal("nil", assert(http.get(srv.port, "/?nil")).headers["x-state"])
  end)

  it("calls every callback when a nil state follows another registration", function()
    local srv = start(script(APP))
    local res = assert(http.get(srv.port, "/?mixed"))
    assert.are.equal(200, res.status)
    assert.are.equal("table", res.headers["x-first"])
    assert.are.equal("nil", res.headers["x-second"])
  end)
end)
