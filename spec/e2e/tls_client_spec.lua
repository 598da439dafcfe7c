-- Outbound TLS, end to end: an owinlua running spec/fixtures/tls_client.lua
-- makes TLS connections (sock:sslhandshake, sslsession, sslinfo; https:// in
-- owin.http) to other owinlua processes serving HTTPS with
-- spec/fixtures/tls_env.lua, and to scripted peers that do not speak TLS.
-- Written from the contract in docs/tls.md ("Outbound TLS") and
-- docs/outside.md (cosockets, the pool).
--
-- The certificates are made at run time by spec/helpers/tls.lua.
--
--   busted --lua=lua5.4 --run=e2e spec/e2e/tls_client_spec.lua
local server = require("helpers.server")
local http = require("helpers.http")
local peer = require("helpers.peer")
local tls = require("helpers.tls")
local cleanup = require("helpers.cleanup")
local ports = require("helpers.ports")
local socket = require("socket")

local UPSTREAM_APP = "spec/fixtures/tls_env.lua"
local CLIENT_APP = "spec/fixtures/tls_client.lua"

-- "key=value" lines -> table; values keep the fixture's \n escapes.
local function parse(body)
  local t = {}
  for line in body:gmatch("[^\n]+") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

local function unescape(v)
  return (v:gsub("\\n", "\n"):gsub("\\r", "\r"))
end

-- A field of tls_env.lua's /env dump, from an escaped body value.
local function env_field(body, key)
  return ("\n" .. unescape(body or "")):match("\n" .. key .. "=([^\n]*)")
end

local function stop(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code },
    "owinlua did not exit cleanly:\n" .. srv:stderr())
end

local function enc(s)
  return (s:gsub("[^%w%-._~/]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("#e2e outbound tls", function()
  local pki, up, req_up, expired_up, plain_up, client

  -- An HTTPS upstream (tls_env.lua) with the given certificate arguments.
  local function start_upstream(args)
    local srv = server.start(UPSTREAM_APP, args, { listen = "https://127.0.0.1:0" })
    assert(srv.port, "no port in " .. tostring(srv.first_line or srv.lines[1]))
    return srv
  end

  setup(function()
    pki = tls.pki()
    up = start_upstream({ "--tls-cert", pki.server_crt, "--tls-key", pki.server_key })
    req_up = start_upstream({ "--tls-cert", pki.server_crt, "--tls-key", pki.server_key,
      "--tls-client-ca", pki.ca, "--tls-client-cert", "require" })
    expired_up = start_upstream({ "--tls-cert", pki.expired_crt, "--tls-key", pki.expired_key })
    plain_up = server.start(UPSTREAM_APP)
    client = server.start(CLIENT_APP, nil, { env = {
      TLS_UP = tostring(up.port), TLS_CA = pki.ca,
      TLS_CLIENT_CRT = pki.client_crt, TLS_CLIENT_KEY = pki.client_key,
      TLS_ROGUE_CRT = pki.rogue_crt, TLS_ROGUE_KEY = pki.rogue_key,
    } })
  end)

  teardown(function()
    local first
    for _, srv in ipairs({ client, up, req_up, expired_up, plain_up }) do
      if srv then
        local ok, err = pcall(stop, srv)
        if not ok and not first then first = err end
      end
    end
    tls.cleanup()
    if first then error(first, 0) end
  end)

  after_each(cleanup.run)

  -- GET path on the client app (bounded); its answer, parsed.
  local function call(path, timeout)
    local c = assert(http.connect(client.port, nil, timeout or 20))
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    local res, err = c:read_response()
    c:close()
    assert(res, "no answer from the client app to " .. path .. ": " .. tostring(err))
    assert.equal(200, res.status, res.body)
    local r = parse(res.body)
    assert.is_nil(r.raised, "the route raised: " .. tostring(r.raised))
    return r, res.body
  end

  -- A handshake that must have failed and left the socket closed.
  local function assert_failed(r, pattern)
    assert.equal("nil", r.hs_type, "the handshake succeeded: " .. tostring(r.hs))
    local err = r.hs:match("^nil|(.*)$")
    assert.is_not_nil(err, r.hs)
    if pattern then assert.matches(pattern, err) end
    assert.equal("nil", r.info_after)             -- no sslinfo after a failure
    assert.matches("^nil|closed", r.after)       -- a failed handshake closes the socket
    return err
  end

  describe("cosockets: sslhandshake", function()
    it("verifies against a CA file, returns a session or true, and carries a request", function()
      local r = call("/hs?name=localhost&ca=1")
      assert.equal("1", r.connect)
      assert.truthy(r.hs == "true" or r.hs == "session", r.hs)
      assert.equal("table", r.info)
      assert.truthy(r["info.version"] == "TLSv1.3" or r["info.version"] == "TLSv1.2", r["info.version"])
      assert.matches("^[%w_%-]+$", r["info.cipher"])
      assert.equal("nil", r["info.alpn"])          -- none offered, none chosen
      assert.equal("false", r["info.reused"])
      assert.equal("200", r.status)
      assert.equal("https", env_field(r.body, "scheme"))
      assert.equal("nil", env_field(r.body, "cert"))
    end)

    it("reports the ALPN protocol the server chose", function()
      local r = call("/hs?name=localhost&ca=1&alpn=http/1.1&path=/pid")
      assert.equal("http/1.1", r["info.alpn"])
      assert.equal("200", r.status)
      assert.matches("^%d+$", r.body)
      -- h2 alone: the server answers no_application_protocol (RFC 7301)
      r = call("/hs?name=localhost&ca=1&alpn=h2")
      assert_failed(r, "no application protocol")
    end)

    it("fails on a name the certificate does not hold, and closes the socket", function()
      local r = call("/hs?name=wrong.example&ca=1")
      local err = assert_failed(r, "^certificate verify failed")
      assert.matches("mismatch", err)
    end)

    it("fails against the system's store (the test CA is not in it); verify = false accepts", function()
      local r = call("/hs?name=localhost")
      assert_failed(r, "^certificate verify failed: unable to get local issuer certificate")
      r = call("/hs?name=localhost&verify=0&path=/pid")
      assert.truthy(r.hs == "true" or r.hs == "session", r.hs)
      assert.equal("200", r.status)
      assert.matches("^%d+$", r.body)
      -- verify = false needs no name
      r = call("/hs?verify=0&path=/pid")
      assert.equal("200", r.status)
    end)

    it("fails on an expired certificate", function()
      local r = call("/hs?name=localhost&ca=1&port=" .. expired_up.port)
      assert_failed(r, "^certificate verify failed: certificate has expired$")
    end)

    it("raises when verifying without server_name", function()
      local r = call("/noname")
      for _, k in ipairs({ "table", "empty", "positional" }) do
        assert.matches("^false|", r[k], 1)
        assert.matches("server_name", r[k], 1, true)
      end
      assert.equal("true|true", r.no_verify)
    end)

    it("checks an IP address as server_name against the IP SANs", function()
      local r = call("/hs?name=127.0.0.1&ca=1&path=/pid")
      assert.truthy(r.hs == "true" or r.hs == "session", r.hs)
      assert.equal("200", r.status)
      r = call("/hs?name=127.0.0.2&ca=1")
      assert_failed(r, "^certificate verify failed")
    end)

    it("takes OpenResty's positional form", function()
      local r = call("/positional")
      assert.equal("true", r.hs)                         -- (false, nil, false): true, no session
      assert.equal("hello over https", r.body)
      -- (nil, "localhost"): verification on, against the system's store
      assert.matches("^nil|certificate verify failed", r.verified)
    end)
  end)

  describe("cosockets: client certificates", function()
    it("presents cert/key to an upstream that requires one", function()
      local r = call("/hs?name=localhost&ca=1&cert=client&port=" .. req_up.port)
      assert.equal("200", r.status, r.read_err)
      assert.equal("yes", env_field(r.body, "cert"))
      assert.equal("nil", env_field(r.body, "errors"))
      local pem = unescape(r.body):match("\npem:\n(.*)$")
      assert.equal((tls.read_file(pki.client_crt):gsub("%s+$", "")), (pem:gsub("%s+$", "")))
    end)

    it("fails cleanly without a certificate, or with one the upstream does not trust", function()
      for _, cert in ipairs({ "", "rogue" }) do
        local r = call("/hs?name=localhost&ca=1&cert=" .. cert .. "&port=" .. req_up.port)
        -- under TLS 1.3 the client's handshake ends before the server checks
        -- its certificate: the failure shows at the handshake or the first read
        if r.hs_type == "nil" then
          assert_failed(r)
        else
          assert.is_nil(r.status, "a response without a certificate: " .. tostring(r.body))
          -- the read says why: the server's alert, as OpenSSL names it
          assert.matches("^status line: .*alert", r.read_err)
        end
      end
      -- and the upstream goes on serving
      local r = call("/hs?name=localhost&ca=1&cert=client&port=" .. req_up.port)
      assert.equal("200", r.status)
    end)
  end)

  describe("cosockets: sessions and the pool", function()
    it("resumes a session taken after the first response (the first connection still open)", function()
      local r = call("/resume?keep=1")
      assert.equal("false", r["a.info.reused"])
      assert.equal("session", r.session)
      assert.truthy(r.hs2 == "true" or r.hs2 == "session", r.hs2)
      assert.equal("true", r["b.info.reused"])
      assert.matches("^%d+$", r.pid2)
      -- a session made for localhost does not resume under another name (RFC 6066)
      assert.equal("false", r["c.info.reused"])
      assert.equal("true", r.hs4)                      -- reused_session = false: true
    end)

    it("resumes a session after the connection that made it closed", function()
      local r = call("/resume")
      assert.equal("session", r.session)
      assert.equal("true", r["b.info.reused"])
    end)

    it("pools a TLS connection: the next connect gets it already encrypted", function()
      local r = call("/pool")
      assert.equal("0", r.reused1)
      assert.equal("1", r.keepalive)
      assert.equal("1", r.connect2)
      assert.equal("1", r.reused2)                     -- getreusedtimes() > 0
      assert.equal("true", r.same_local_port)
      assert.truthy(r.hs2 == "true" or r.hs2 == "session", r.hs2)
      assert.is_true(tonumber(r.hs2_ms) < 100, "sslhandshake on a pooled connection took " .. r.hs2_ms .. " ms")
      assert.equal("table", r["b.info"])
      assert.matches("^%d+$", r.remote1)
      assert.equal(r.remote1, r.remote2)               -- the upstream saw one TCP connection
    end)
  end)

  describe("cosockets: peers that do not speak TLS", function()
    it("reports wrong version number against a plain HTTP server", function()
      local r = call("/hs?name=localhost&ca=1&port=" .. plain_up.port)
      assert_failed(r, "wrong version number")
    end)

    it("fail cleanly against a peer that closes at once, one that never answers, one that sends text", function()
      local acceptor = peer.start("acceptor")
      cleanup.defer(function() acceptor:stop() end)
      local r = call("/hs?name=localhost&ca=1&port=" .. acceptor.port)
      local err = assert_failed(r)
      -- EOF or RST, as the peer's close finds the ClientHello read or not
      assert.truthy(err:find("closed", 1, true) or err:find("reset", 1, true), err)

      local p = peer.start()
      cleanup.defer(function() p:stop() end)
      r = call("/hs?name=localhost&ca=1&pre=SINK&timeout=0.5&port=" .. p.port)
      assert_failed(r, "^timeout$")
      assert.is_true(tonumber(r.elapsed_ms) < 3000, r.elapsed_ms)

      -- text before or instead of the ServerHello
      r = call("/hs?name=localhost&ca=1&pre=HELLO&port=" .. p.port)
      err = assert_failed(r)
      assert.truthy(err:find("wrong version number", 1, true) or err:find("bytes arrived", 1, true)
        or err:find("closed", 1, true) or err:find("reset", 1, true), err)

      -- the client app still serves, and still talks TLS
      r = call("/hs?name=localhost&ca=1&path=/pid")
      assert.equal("200", r.status)
    end)
  end)

  describe("owin.http over https", function()
    it("returns the body, verified against cafile, by name and by IP address", function()
      local r = call("/http?ca=1&path=/env")
      assert.equal("200", r.status)
      assert.equal("https", env_field(r.body, "scheme"))
      r = call("/http?ca=1&host=127.0.0.1&path=/pid")
      assert.equal("200", r.status)
      assert.matches("^%d+$", r.body)
    end)

    it("reads a 5 MiB body intact", function()
      local n = 5 * 1024 * 1024
      local r = call("/http?ca=1&big=" .. n .. "&path=" .. enc("/big?size=" .. n), 30)
      assert.equal("200", r.status)
      assert.equal(tostring(n), r.length)
      assert.equal("true", r.intact)
    end)

    it("verifies against the system's store by default; verify = false turns it off", function()
      local r = call("/http?path=/pid")
      assert.matches("^certificate verify failed", r.err)
      r = call("/http?verify=0&path=/pid")
      assert.equal("200", r.status)
      assert.matches("^%d+$", r.body)
    end)

    it("reuses a pooled connection, never one checked another way", function()
      local r = call("/httpreuse")
      assert.matches("^%d+$", r.first)
      assert.equal(r.first, r.second)
      assert.matches("^%d+$", r.unverified)
      assert.are_not.equal(r.first, r.unverified)
      assert.equal(r.first, r.third)
    end)

    it("resumes the pool's session on the next new connection (keepalive = false)", function()
      -- openssl s_server -www says in its page whether the session was reused
      local port = ports.free()
      local proc = assert(io.popen(string.format("echo $$; exec timeout 30 openssl s_server " ..
        "-accept 127.0.0.1:%d -cert %s -key %s -www </dev/null >/dev/null 2>&1", port,
        tls.q(pki.server_crt), tls.q(pki.server_key)), "r"))
      local pid = tonumber(proc:read("l"))
      cleanup.defer(function() ports.kill(pid, proc, 2) end)
      assert(server.eventually(function()
        local c = socket.tcp()
        c:settimeout(1)
        local ok = c:connect("127.0.0.1", port)
        c:close()
        return ok
      end, 10), "openssl s_server did not listen")
      local pages = {}
      for i = 1, 3 do
        local r = call("/http?ca=1&keepalive=0&path=/&port=" .. port)
        assert.equal("200", r.status, r.err)
        pages[i] = unescape(r.body):match("\n(%a+), TLSv[%d.]+, Cipher is")
      end
      assert.are.same({ "New", "Reused", "Reused" }, pages)
    end)

    it("sends a client certificate with cert and key", function()
      local r = call("/http?ca=1&cert=client&path=/env&port=" .. req_up.port)
      assert.equal("200", r.status)
      assert.equal("yes", env_field(r.body, "cert"))
      r = call("/http?ca=1&path=/env&port=" .. req_up.port)
      assert.is_nil(r.status)
      assert.matches(".", r.err)
    end)

    it("reports wrong version number for an https URL to a plain HTTP server", function()
      local r = call("/http?ca=1&path=/pid&port=" .. plain_up.port)
      assert.matches("^wrong version number", r.err)
    end)
  end)
end)
