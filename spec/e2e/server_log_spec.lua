-- What the server itself writes to stderr: the errors it answers without the
-- app, its graceful stop, SIGHUP in a single process, and the request ids in
-- log lines.
local server = require("helpers.server")
local http = require("helpers.http")
local cleanup = require("helpers.cleanup")
local socket = require("socket")

local APP = "spec/fixtures/workers.lua"

-- Sends raw on a new connection; returns the status answered and the
-- client's "127.0.0.1:port".
local function send(port, raw, pause)
  local c = assert(http.connect(port))
  local _, cport = c.sock:getsockname()
  c:send(raw)
  if pause then socket.sleep(pause) end
  local res = c:read_response()
  c:close()
  return res and res.status, "127.0.0.1:" .. cport
end

local function count(text, plain)
  local n, i = 0, 1
  while true do
    local j = text:find(plain, i, true)
    if not j then return n end
    n, i = n + 1, j + 1
  end
end

describe("#e2e errors the server answers itself", function()
  after_each(cleanup.run)

  it("are logged once each, with the status, the reason and the client's address", function()
    local srv = cleanup.server(APP, { "--max-header-bytes", "1k", "--max-body", "1k",
                                      "--header-timeout", "0.4" })
    local cases = {
      { "FOO\1 / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid method encountered",
        '(request "FOO\\x01 / HTTP/1.1")' },
      { "GET / HTTP/1.1\r\n\r\n", 400, "a malformed request", '(request "GET / HTTP/1.1")' },
      { "BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501, ": an unknown method (request \"BREW / HTTP/1.1\")", "" },
      { "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: zip, chunked\r\n\r\n", 501,
        ": an unknown transfer coding", "" },
      { "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP version is not 1.0 or 1.1", "" },
      { "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n", 413,
        "the request body is larger than --max-body (1024 bytes)", "" },
      { "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " .. string.rep("a", 2000) .. "\r\n\r\n", 431,
        "the request head is over --max-header-bytes (1024)", "" },
      { "GET / HTTP/1.1\r\nHost: h\r\n", 408, "the request head took longer than --header-timeout", "" },
    }
    for _, case in ipairs(cases) do
      local status, client = send(srv.port, case[1])
      assert.equal(case[2], status)
      local log
      assert.truthy(server.eventually(function()
        log = srv:stderr()
        return log:find(" to " .. client .. ": ", 1, true)
      end, 3), "no log line for " .. case[2])
      local line = log:match("[^\n]*to " .. client:gsub("%.", "%%.") .. ": [^\n]*")
      assert.matches("^%d+%-%d+%-%d+T[%d:]+Z %[info%] answered " .. case[2] .. " ", line)
      assert.truthy(line:find(case[3], 1, true), line)
      assert.truthy(line:find(case[4], 1, true), line)
      assert.equal(1, count(log, " to " .. client .. ": "), "logged more than once")
    end
  end)

  it("are logged at most 10 a second, the rest counted in one line", function()
    local srv = cleanup.server(APP)
    for _ = 1, 30 do assert.equal(400, (send(srv.port, "FOO\1 / HTTP/1.1\r\n\r\n"))) end
    local log
    assert.truthy(server.eventually(function()
      log = srv:stderr()
      return log:find("suppressed", 1, true)
    end, 5))
    local logged = count(log, "answered 400")
    local suppressed = 0
    for k in log:gmatch("suppressed (%d+) more error answers in the last second %(at most 10 lines a second%)") do
      suppressed = suppressed + tonumber(k)
    end
    assert.equal(30, logged + suppressed)
    assert.truthy(logged >= 10 and logged < 30, log)
    socket.sleep(1.1)                         -- a new second: logged again
    send(srv.port, "FOO\1 / HTTP/1.1\r\n\r\n")
    assert.truthy(server.eventually(function()
      return count(srv:stderr(), "answered 400") == logged + 1
    end, 3))
  end)

  it("logs the 503 of --max-connections as a warning", function()
    local srv = cleanup.server(APP, { "--max-connections", "1" })
    local first = assert(http.connect(srv.port))
    first:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.equal(200, assert(first:read_response()).status)
    local status, client = send(srv.port, "")
    first:close()
    assert.equal(503, status)
    assert.truthy(server.eventually(function()
      return srv:stderr():find("[warn] answered 503 Service Unavailable to " .. client ..
        ": 1 connections open, --max-connections is 1", 1, true)
    end, 3), srv:stderr())
  end)

  it("are not logged below --log-level", function()
    local srv = cleanup.server(APP, { "--log-level", "warn" })
    assert.equal(400, (send(srv.port, "FOO\1 / HTTP/1.1\r\n\r\n")))
    socket.sleep(0.2)
    assert.is_nil(srv:stderr():find("answered", 1, true))
  end)
end)

describe("#e2e a graceful stop", function()
  after_each(cleanup.run)

  it("says how many connections are open, then that it stopped", function()
    local srv = server.start(APP)
    local c = assert(http.connect(srv.port))
    c:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.equal(200, assert(c:read_response()).status)
    assert.is_true(srv:stop())
    c:close()
    local log = srv:stderr()
    assert.matches("%[info%] stopping: 1 connection open, up to 30 s to finish\n", log)
    assert.matches("%[info%] stopped\n$", log)
  end)

  it("says how many connections the graceful timeout cut", function()
    local srv = server.start(APP, { "--graceful-timeout", "0.3" })
    local c = assert(http.connect(srv.port))
    c:send("GET /slow?s=5 HTTP/1.1\r\nHost: h\r\n\r\n")
    socket.sleep(0.2)
    assert.is_true(srv:stop())
    c:close()
    assert.matches("%[info%] stopped: 1 connection cut at the graceful timeout\n$", srv:stderr())
  end)
end)

describe("#e2e SIGHUP to a single process", function()
  after_each(cleanup.run)

  it("is logged and ignored: the server keeps serving", function()
    local srv = cleanup.server(APP)
    srv:signal("HUP")
    assert.truthy(server.eventually(function()
      return srv:stderr():find("[warn] SIGHUP ignored: nothing to reload without --workers " ..
        "or --reload (restart the process to load new code)", 1, true)
    end, 3))
    assert.truthy(srv:alive())
    assert.equal(200, http.get(srv.port, "/").status)
  end)
end)

describe("#e2e request ids of a single process", function()
  after_each(cleanup.run)

  it("are <boot tag>-<n>, in owin.RequestId and the log lines, new tags for a new boot", function()
    local tags = {}
    for round = 1, 2 do
      local srv = cleanup.server(APP)
      local ids = {}
      for _ = 1, 3 do
        local id = http.get(srv.port, "/id").body:match("^nil (%S+)$")
        local tag, n = id:match("^([0-9a-z]+)%-(%d+)$")
        assert.truthy(tag, id)
        assert.is_nil(ids[id])
        ids[id] = true
        tags[round] = tags[round] or tag
        assert.equal(tags[round], tag)
        assert.truthy(server.eventually(function()
          return srv:stderr():find("[info] [" .. id .. "] id " .. id, 1, true)
        end, 3))
        assert.truthy(tonumber(n))
      end
    end
    assert.not_equal(tags[1], tags[2])
  end)
end)
