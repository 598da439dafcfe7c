-- owin.http through the real binary: spec/fixtures/httpc/client.lua calls
-- two upstreams with it, an owinlua one (spec/fixtures/httpc/upstream.lua)
-- and a raw one that sends what owinlua never would
-- (spec/fixtures/httpc/raw_upstream.lua, plain Lua and LuaSocket), and
-- answers with what it got.  It needs the server's cosockets (owin.tcp).
--
--   busted --lua=lua5.4 spec/e2e/http_client_spec.lua
local server = require("helpers.server")
local http = require("helpers.http")

local LUA = os.getenv("LUA") or "lua5.4"

-- "name=value" lines -> table (a repeated name: the last); the lines
-- themselves, in order, under [1..n]
local function parse(body)
  local t = {}
  for line in body:gmatch("[^\n]+") do
    t[#t + 1] = line
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

-- percent-encodes a query value
local function enc(s)
  return (s:gsub("[^%w%-._~/]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function stop(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code }, "owinlua did not exit cleanly:\n" .. srv:stderr())
end

-- The raw upstream: a LuaSocket process of its own.
local function start_raw()
  local proc = assert(io.popen("echo $$; exec " .. LUA .. " spec/fixtures/httpc/raw_upstream.lua", "r"))
  local pid = tonumber(proc:read("l"))
  local port = tonumber((proc:read("l") or ""):match("^listening on (%d+)$"))
  assert(port, "the raw upstream did not start")
  return {
    port = port,
    stop = function()
      os.execute("kill " .. pid .. " 2>/dev/null")
      proc:close()
    end,
  }
end

describe("owin.http #e2e", function()
  local upstream, raw, client

  setup(function()
    upstream = server.start("spec/fixtures/httpc/upstream.lua")
    raw = start_raw()
    client = server.start("spec/fixtures/httpc/client.lua", nil, { env = {
      OWL_UPSTREAM = "127.0.0.1:" .. upstream.port, OWL_RAW = "127.0.0.1:" .. raw.port } })
  end)

  teardown(function()
    if client then stop(client) end
    if upstream then stop(upstream) end
    if raw then raw.stop() end
  end)

  -- GET path on the client app; its answer, parsed
  local function call(path)
    local res = assert(http.get(client.port, path))
    assert.equal(200, res.status, res.body)
    return parse(res.body)
  end

  local function get(path, extra)
    return call("/get?path=" .. enc(path) .. (extra or ""))
  end

  describe("against an owinlua upstream", function()
    it("GETs: status, reason, headers, body, and what the upstream saw", function()
      local r = get("/echo?x=1", "&header=hello")
      assert.equal("200", r.status)
      assert.equal("OK", r.reason)
      assert.equal("http://127.0.0.1:" .. upstream.port .. "/echo?x=1", r.url)
      assert.equal("text/plain", r["res.content-type"])
      assert.equal("method=GET", r.body)          -- the echo's first line, then its others:
      assert.equal("/echo?x=1", r.target)
      assert.equal("127.0.0.1:" .. upstream.port, r["h.host"])
      assert.equal("hello", r["h.x-test"])
      assert.matches("^owinlua/", r["h.user-agent"])
    end)

    it("POSTs a string body, a function body (chunked), and one with a given Content-Length", function()
      local s = call("/post?mode=string")
      assert.equal("200", s.status)
      local f = call("/post?mode=function")
      local l = call("/post?mode=length")
      for _, r in ipairs({ s, f, l }) do
        local found
        for _, line in ipairs(r) do if line == "request-body=posted body" then found = true end end
        assert.is_true(found, table.concat(r, "\n"))
      end
      assert.equal("11", s["h.content-length"])
      assert.equal("chunked", f["h.transfer-encoding"])
      assert.is_nil(f["h.content-length"])
      assert.equal("11", l["h.content-length"])
      assert.is_nil(l["h.transfer-encoding"])
    end)

    it("reads chunked and large bodies", function()
      local r = get("/chunked?n=4")
      assert.equal("chunked", r["res.transfer-encoding"])
      assert.equal("32", r.length)                 -- "piece 1\n" ... "piece 4\n"
      local big = get("/big?n=200000")
      assert.equal("200000", big.length)
      assert.equal(string.rep("0123456789", 20000), big.body)
    end)

    it("knows HEAD, 204 and 304 have no body", function()
      local h = get("/big?n=10", "&method=HEAD")
      assert.equal("200", h.status)
      assert.equal("10", h["res.content-length"])
      assert.equal("0", h.length)
      assert.equal("204", get("/status?code=204").status)
      local nm = get("/status?code=304")
      assert.equal("304", nm.status)
      assert.equal("0", nm.length)
      -- and the connection is still good for the next request
      assert.equal("200", get("/echo").status)
    end)

    it("joins repeated headers, keeps Set-Cookie a list", function()
      local r = get("/cookies")
      assert.equal("a=1; Path=/|b=2", r["res.set-cookie"])
      assert.equal("Accept, Origin", r["res.vary"])
    end)

    it("follows redirects when asked", function()
      local r = get("/redirect?code=302&to=" .. enc("/echo?via=302"))
      assert.equal("302", r.status)
      assert.equal("/echo?via=302", r["res.location"])
      r = get("/redirect?code=302&to=" .. enc("/echo?via=302"), "&redirects=1")
      assert.equal("200", r.status)
      assert.equal("http://127.0.0.1:" .. upstream.port .. "/echo?via=302", r.url)
      -- 307, then 308, then 301: one more than two
      local third = "/redirect?code=301&to=/echo"
      local second = "/redirect?code=308&to=" .. enc(third)
      r = get("/redirect?code=307&to=" .. enc(second), "&redirects=2")
      assert.equal("too many redirects (more than 2)", r.err)
      assert.equal("200", get("/redirect?code=307&to=" .. enc(second), "&redirects=3").status)
    end)

    it("times out", function()
      local t0 = os.time()
      local r = get("/slow?s=3", "&timeout=0.3")
      assert.equal("timeout", r.err)
      assert.is_true(os.time() - t0 <= 2)
    end)

    it("holds max_body", function()
      assert.equal("response body too large", get("/big?n=1000", "&max_body=999").err)
      assert.equal("1000", get("/big?n=1000", "&max_body=1000").length)
    end)

    it("streams with read(n) and chunks()", function()
      local r = call("/stream?path=" .. enc("/big?n=100000") .. "&n=30000")
      local total = 0
      for size in r.sizes:gmatch("%d+") do
        assert.is_true(tonumber(size) <= 30000)
        total = total + tonumber(size)
      end
      assert.equal(100000, total)
      assert.equal(string.rep("0123456789", 10000), r.body)
      local c = call("/chunks?path=" .. enc("/chunked?n=3"))
      assert.equal("piece 1|piece 2|piece 3|", c.body)
    end)

    it("keeps connections alive, and not with keepalive = false", function()
      local r = call("/reuse")
      assert.equal(r.a, r.b)
      assert.equal(r.b, r.c)                      -- the pooled one, asked to close
      assert.are_not.equal(r.c, r.d)
    end)

    it("runs in many threads at once", function()
      local r = call("/concurrent?n=20")
      for i = 1, 20 do assert.equal("/echo?i=" .. i, r[tostring(i)]) end
    end)

    it("works at start-up", function()
      local s = call("/startup")
      assert.equal("200", s.status)
      assert.equal("/echo?at=startup", s.target)
    end)

    it("works in a timer run", function()
      local t = call("/timer")
      assert.equal("200", t.status)
      assert.equal("/echo?from=timer", t.target)
    end)

    it("raises on misuse and returns the network's errors", function()
      local m = call("/misuse")
      assert.equal("false bad argument #1 to 'request' (url must be a string, got number)", m[1])
      assert.matches("^false .*bad argument #1 to 'request' %(url must be absolute", m[2])
      assert.matches("^false .*header X has a CR, LF or control byte in its value", m[3])
      local e = call("/errors")
      assert.equal("nil connection refused", e[1])
      assert.equal("nil wrong version number", e[2])       -- https to a plain server
      assert.equal("nil host not found: no-such-host.invalid", e[3])
    end)
  end)

  describe("against a raw upstream", function()
    local function rawget(path, extra)
      return get(path, "&raw=1" .. (extra or ""))
    end

    it("reuses a kept-alive connection", function()
      local a = rawget("/ok").body
      local b = rawget("/ok").body
      local conn = a:match("^conn (%d+) request %d+$")
      assert.is_not_nil(conn, a)
      assert.equal("conn " .. conn .. " request " .. (tonumber(a:match("request (%d+)")) + 1), b)
    end)

    it("refuses malformed answers", function()
      assert.equal("invalid response: bare LF in the head", rawget("/bare-lf").err)
      assert.equal("invalid response: Content-Length together with Transfer-Encoding", rawget("/te-cl").err)
    end)

    it("reads a body that ends with the connection, and fails on one cut short", function()
      assert.equal("all of it until the close", rawget("/until-close").body)
      assert.equal("closed before the end of the body", rawget("/cut").err)
      assert.equal("closed before the response head", rawget("/nothing").err)
    end)

    it("skips interim responses and takes a body a byte at a time", function()
      local r = rawget("/interim")
      assert.equal("200", r.status)
      assert.equal("final", r.body)
      assert.equal("slow bytes!", rawget("/dribble").body)
    end)

    it("does not reuse a connection after extra bytes or an early close", function()
      assert.equal("one", rawget("/extra").body)
      assert.matches("^conn %d+ request 1$", rawget("/ok").body)
      local r = call("/early-close?raw=1&path=" .. enc("/dribble"))
      assert.equal("s", r.first)                  -- "slow bytes!"
      assert.matches("^conn %d+ request 1$", r.again)
    end)
  end)
end)
