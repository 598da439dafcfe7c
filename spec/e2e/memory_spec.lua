-- Streaming both ways with back-pressure: a 1 GiB upload read in chunks and
-- a 1 GiB streamed response must not grow the server's memory by more than
-- a few MiB.  Slow (several seconds): left out of the sanitizer pass.
local server = require("helpers.server")
local http = require("helpers.http")
local socket = require("socket")

local GiB = 1024 * 1024 * 1024
local LIMIT = 8 * 1024 * 1024

local function rss(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+) kB")) * 1024
end

describe("#e2e #slow memory under streaming", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/core.lua", { "--max-body", "0" }) end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("stays flat during a 1 GiB upload read in chunks", function()
    local base = rss(srv.pid)
    local c = assert(http.connect(srv.port, nil, 30))
    local piece = string.rep("u", 256 * 1024)
    c:send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: " .. GiB .. "\r\n\r\n")
    local peak = base
    for i = 1, GiB // #piece do
      assert(c:send(piece))
      if i % 64 == 0 then peak = math.max(peak, rss(srv.pid)) end
    end
    local res = assert(c:read_response())
    c:close()
    assert.equal(tostring(GiB), res.body:match("^(%d+)"))
    assert.is_true(peak - base < LIMIT,
      string.format("RSS grew by %.1f MiB", (peak - base) / 2 ^ 20))
  end)

  it("stays flat while streaming a 1 GiB response to a reader", function()
    local base = rss(srv.pid)
    local sock = assert(socket.connect("127.0.0.1", srv.port))
    sock:settimeout(30)
    -- HTTP/1.0: the body ends when the connection does
    assert(sock:send("GET /stream?n=16384&size=65536 HTTP/1.0\r\n\r\n"))
    local total, peak, i = 0, base, 0
    while true do
      local data, err, partial = sock:receive(262144)
      data = data or partial
      if data then total = total + #data end
      i = i + 1
      if i % 64 == 0 then peak = math.max(peak, rss(srv.pid)) end
      if err == "closed" then break end
      assert(err == nil, err)
    end
    sock:close()
    assert.is_true(total > GiB, "got " .. total .. " bytes")
    assert.is_true(peak - base < LIMIT,
      string.format("RSS grew by %.1f MiB", (peak - base) / 2 ^ 20))
  end)
end)
