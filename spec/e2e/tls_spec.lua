-- TLS serving (--listen https://...), black-box: the real binary against
-- real clients (curl, openssl s_client, raw bytes over LuaSocket), written
-- from the contract in the option docs and RFC 8446 (TLS 1.3), RFC 5246
-- (TLS 1.2), RFC 6066 (SNI), RFC 7301 (ALPN) and RFC 5746 (renegotiation).
--
-- The certificates are made at run time by spec/helpers/tls.lua; the app is
-- spec/fixtures/tls_env.lua.
--
--   busted --lua=lua5.4 --run=e2e spec/e2e/tls_spec.lua
local server = require("helpers.server")
local cleanup = require("helpers.cleanup")
local http = require("helpers.http")
local ws = require("helpers.ws")
local tls = require("helpers.tls")
local socket = require("socket")

local APP = "spec/fixtures/tls_env.lua"
local q = tls.q

local pki

-- Sets srv.port/srv.host/srv.scheme from an https:// first line when the
-- server helper did not (it knew only http:// lines).
local function parse_listen(srv)
  if not srv.port and srv.first_line then
    local scheme, host, port = srv.first_line:match("^listening on (https?)://%[?([^%]]-)%]?:(%d+)$")
    if scheme then srv.scheme, srv.host, srv.port = scheme, host, tonumber(port) end
  end
  srv.scheme = srv.scheme or (srv.first_line or ""):match("^listening on (https?)://") or "http"
  return srv
end

-- The certificate arguments for the default (server) certificate.
local function cert_args(extra)
  local args = { "--tls-cert", pki.server_crt, "--tls-key", pki.server_key }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return args
end

-- Starts a TLS server (stopped and checked at the end of the test).
local function start_tls(args, opts)
  opts = opts or {}
  opts.listen = opts.listen or "https://127.0.0.1:0"
  local srv = cleanup.server(opts.app or APP, args or cert_args(), opts)
  parse_listen(srv)
  assert.is_not_nil(srv.port, "no port in " .. tostring(srv.first_line or srv.lines[1]))
  return srv
end

-- curl against https://NAME:PORT/PATH with NAME resolved to 127.0.0.1;
-- returns the output (-v on stderr included when asked), exit code.
local function curl(port, path, args, name)
  name = name or "localhost"
  local cmd = string.format("curl -sS --max-time 15 --resolve %s:%d:127.0.0.1 %s %s",
    name, port, args or "", q("https://" .. name .. ":" .. port .. (path or "/")))
  return tls.run(cmd, 20)
end

-- One openssl s_client run with `input` on its stdin; stdout and stderr
-- together; exit code.
local function s_client(port, args, input)
  local file = os.tmpname()
  tls.write_file(file, input or "")
  local out, code = tls.run(string.format("openssl s_client -connect 127.0.0.1:%d %s <%s",
    port, args or "", q(file)), 15)
  os.remove(file)
  return out, code
end

-- Did the s_client output show a completed handshake?  The protocol and the
-- cipher, or nil.
local function negotiated(out)
  local version, cipher = out:match("\n%a+, (TLSv[%d.]+), Cipher is (%S+)")
  if version and cipher ~= "(NONE)" then return version, cipher end
  return nil
end

-- The subject the server's leaf certificate has, as s_client prints it.
local function peer_subject(port, args)
  local out = s_client(port, "-verify_quiet " .. (args or ""))
  return out:match("\nsubject=([^\n]*)"), out
end

local function request(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: localhost\r\n" .. (extra or "") .. "\r\n"
end

-- The env dump of spec/fixtures/tls_env.lua /env as a table.
local function parse_env(body)
  local t = {}
  local head, pem = body:match("^(.-)\npem:\n(.*)$")
  assert.is_not_nil(head, "not an env dump: " .. body)
  for k, v in head:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
  t.pem = pem
  return t
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do if trim(l) ~= "" then t[#t + 1] = l end end
  return t
end

local function sha256(path)
  local out = tls.run("sha256sum " .. q(path))
  return out:match("^(%x+)")
end

describe("#e2e tls", function()
  setup(function() pki = tls.pki() end)
  teardown(function() tls.cleanup() end)
  after_each(cleanup.run)

  describe("a server with the default certificate", function()
    local srv, static_dir, big
    setup(function()
      pki = tls.pki()
      static_dir = tls.tempdir()
      big = static_dir .. "/big.bin"
      assert(os.execute("head -c " .. 5 * 1024 * 1024 .. " /dev/urandom > " .. q(big)))
      assert(os.execute("head -c " .. 3 * 1024 * 1024 .. " /dev/urandom > " .. q(static_dir .. "/mid.bin")))
      srv = parse_listen(server.start(APP, cert_args(), {
        listen = "https://127.0.0.1:0", env = { TLS_SPEC_STATIC = static_dir } }))
    end)
    teardown(function()
      if srv then
        local ok, how, code = srv:stop()
        assert.are.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
      end
      os.execute("rm -rf " .. q(static_dir))
    end)

    it("prints an https:// listening line", function()
      assert.matches("^listening on https://127%.0%.0%.1:%d+$", srv.first_line or srv.lines[1])
      assert.equal("https", srv.scheme)
    end)

    it("answers a GET that verifies against the CA (name and IP address)", function()
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      assert.equal("hello over https", out)
      out, code = tls.run(string.format("curl -sS --max-time 10 --cacert %s https://127.0.0.1:%d/",
        q(pki.ca), srv.port))
      assert.equal(0, code, out)
      assert.equal("hello over https", out)
    end)

    it("gives the app owin.RequestScheme https and ssl.LoadClientCertAsync, no client cert", function()
      local out, code = curl(srv.port, "/env", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      local env = parse_env(out)
      assert.equal("https", env.scheme)
      assert.equal("nil", env.cert)
      assert.equal("nil", env.errors)
      assert.equal("function", env.load)
      assert.equal("ok", env.load_call)
      assert.equal("nil", env.pem)
    end)

    it("keeps the connection alive for a second request", function()
      local out, code = tls.run(string.format(
        "curl -sS -v --http1.1 --max-time 10 --cacert %s --resolve localhost:%d:127.0.0.1 " ..
        "https://localhost:%d/ https://localhost:%d/pid", q(pki.ca), srv.port, srv.port, srv.port))
      assert.equal(0, code, out)
      assert.matches("Re%-using existing connection", out)
      assert.matches("hello over https", out, 1, true)
    end)

    it("answers pipelined requests in order", function()
      local c = tls.s_client(srv.port, { "-quiet", "-verify_quiet", "-CAfile", pki.ca })
      cleanup.defer(function() c:stop() end)
      c:send(request("/a") .. request("/pid") .. request("/c", "Connection: close\r\n"))
      assert.is_true(c:wait_exit(10), "the server did not close after Connection: close")
      local out = c:output()
      local statuses = {}
      for s in out:gmatch("HTTP/1%.1 (%d+)") do statuses[#statuses + 1] = s end
      assert.are.same({ "200", "200", "200" }, statuses, out)
      local a = out:find("hello over https", 1, true)
      local pid = out:find("\r\n\r\n%d+HTTP/1%.1")
      assert.truthy(a and pid and a < pid, out)
    end)

    it("takes a chunked request body and sends a chunked response", function()
      local file = os.tmpname()
      cleanup.defer(function() os.remove(file) os.remove(file .. ".out") end)
      assert(os.execute("head -c 300000 /dev/urandom > " .. q(file)))
      local out, code = curl(srv.port, "/echo", string.format(
        "--cacert %s -H 'Transfer-Encoding: chunked' --data-binary @%s -o %s",
        q(pki.ca), q(file), q(file .. ".out")))
      assert.equal(0, code, out)
      assert.equal(sha256(file), sha256(file .. ".out"))
      out, code = curl(srv.port, "/chunked?n=50", "--cacert " .. q(pki.ca) .. " -D -")
      assert.equal(0, code, out)
      assert.matches("[Tt]ransfer%-[Ee]ncoding: chunked", out)
      local body = out:match("\r\n\r\n(.*)$")
      assert.equal(50000, #body)
      assert.equal(string.rep("a", 1000), body:sub(1, 1000))
      assert.equal(string.rep("x", 1000), body:sub(23001, 24000))
    end)

    it("sends a 3 MiB static file intact (owin.static, sendfile)", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      for _ = 1, 3 do
        local out, code = curl(srv.port, "/files/mid.bin", "--cacert " .. q(pki.ca) .. " -o " .. q(dest))
        assert.equal(0, code, out)
        assert.equal(sha256(static_dir .. "/mid.bin"), sha256(dest))
      end
    end)

    it("sends a 5 MiB static file intact (owin.static, sendfile)", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      for _ = 1, 5 do
        local out, code = curl(srv.port, "/files/big.bin", "--cacert " .. q(pki.ca) .. " -o " .. q(dest))
        assert.equal(0, code, out)
        assert.equal(sha256(big), sha256(dest))
      end
    end)

    it("serves a byte range of the static file", function()
      local out, code = curl(srv.port, "/files/big.bin", "--cacert " .. q(pki.ca) ..
        " -r 1048576-1048585 -D -")
      assert.equal(0, code, out)
      assert.matches("^HTTP/1%.1 206", out)
      local f = assert(io.open(big, "rb"))
      f:seek("set", 1048576)
      local want = f:read(10)
      f:close()
      assert.equal(want, out:match("\r\n\r\n(.*)$"))
    end)

    it("accepts TLS 1.2 and TLS 1.3", function()
      local out = s_client(srv.port, "-tls1_2 -CAfile " .. q(pki.ca))
      assert.equal("TLSv1.2", (negotiated(out)), out)
      assert.matches("Verify return code: 0 %(ok%)", out)
      -- TLS 1.2 with an ECDSA certificate: ECDHE key exchange, an AEAD cipher
      local _, cipher = negotiated(out)
      assert.matches("^ECDHE%-ECDSA%-", cipher)
      assert.truthy(cipher:find("GCM", 1, true) or cipher:find("CHACHA20", 1, true), cipher)
      out = s_client(srv.port, "-tls1_3 -CAfile " .. q(pki.ca))
      assert.equal("TLSv1.3", (negotiated(out)), out)
      assert.matches("Verify return code: 0 %(ok%)", out)
    end)

    it("refuses TLS 1.0 and TLS 1.1", function()
      -- SECLEVEL=0 so that the client does offer the old versions
      for _, v in ipairs({ "-tls1", "-tls1_1" }) do
        local out = s_client(srv.port, v .. " -cipher DEFAULT@SECLEVEL=0")
        assert.is_nil(negotiated(out), v .. " was accepted:\n" .. out)
        -- the refusal came from the server (an alert or a closed connection),
        -- not from a client that could not even send a ClientHello
        assert.is_nil(out:find("no protocols available", 1, true), out)
        assert.is_nil(out:find("no ciphers available", 1, true), out)
        -- RFC 8446 4.2.1 / RFC 5246 E.1: a protocol_version alert
        assert.matches("alert protocol version", out)
      end
      assert.is_true(srv:alive())
    end)

    it("negotiates ALPN http/1.1", function()
      local out = s_client(srv.port, "-alpn http/1.1")
      assert.matches("ALPN protocol: http/1%.1", out)
      out = s_client(srv.port, "-alpn h2,http/1.1")
      assert.matches("ALPN protocol: http/1%.1", out)
      -- curl offers h2 and http/1.1 by default and must end up on HTTP/1.1
      local res, code = curl(srv.port, "/", "-v --cacert " .. q(pki.ca))
      assert.equal(0, code, res)
      assert.matches("< HTTP/1%.1 200", res)
      -- a client without ALPN is served too
      out = s_client(srv.port, "")
      assert.is_not_nil(negotiated(out), out)
      assert.matches("No ALPN negotiated", out)
    end)

    it("fails the handshake with no_application_protocol for an h2-only client", function()
      local out = s_client(srv.port, "-alpn h2")
      assert.is_nil(negotiated(out), out)
      assert.matches("no application protocol", out)
      out = s_client(srv.port, "-alpn spdy/3,h2 -tls1_2")
      assert.is_nil(negotiated(out), out)
      assert.matches("no application protocol", out)
      -- http/1.0 is not among the protocols the server advertises either
      out = s_client(srv.port, "-alpn http/1.0")
      assert.is_nil(negotiated(out), out)
      assert.matches("no application protocol", out)
    end)

    it("serves the default certificate to clients without SNI or with an unknown name", function()
      local subject, out = peer_subject(srv.port, "-noservername")
      assert.equal("CN = localhost", subject, out)
      subject, out = peer_subject(srv.port, "-servername unknown.example.test")
      assert.equal("CN = localhost", subject, out)
    end)

    it("resumes TLS 1.2 sessions with a ticket", function()
      local out = s_client(srv.port, "-tls1_2 -reconnect")
      local new, reused = 0, 0
      for kind in out:gmatch("\n(%a+), TLSv1%.2, Cipher is") do
        if kind == "New" then new = new + 1 elseif kind == "Reused" then reused = reused + 1 end
      end
      assert.equal(1, new, out)
      assert.equal(5, reused, out)
      assert.matches("TLS session ticket lifetime hint: %d+", out)
    end)

    it("resumes TLS 1.3 sessions (sess_out, then sess_in)", function()
      local sess = os.tmpname()
      cleanup.defer(function() os.remove(sess) end)
      local req = request("/pid", "Connection: close\r\n")
      local out = s_client(srv.port, "-tls1_3 -ign_eof -sess_out " .. q(sess), req)
      assert.matches("\nNew, TLSv1%.3", out)
      assert.matches("HTTP/1%.1 200", out)
      out = s_client(srv.port, "-tls1_3 -ign_eof -sess_in " .. q(sess), req)
      assert.matches("\nReused, TLSv1%.3", out)
      assert.is_nil(out:find("\nNew, TLSv1", 1, true), out)
      assert.matches("HTTP/1%.1 200", out)
    end)

    it("takes TLS 1.3 KeyUpdate messages both ways (RFC 8446 4.6.3)", function()
      -- "k": the client updates its keys; "K": it also asks the server to
      local file = os.tmpname()
      cleanup.defer(function() os.remove(file) end)
      tls.write_file(file, request("/pid", "Connection: close\r\n"))
      local out = tls.run(string.format(
        "(printf 'k\\n'; sleep 0.2; printf 'K\\n'; sleep 0.2; cat %s; sleep 1) | " ..
        "openssl s_client -connect 127.0.0.1:%d -tls1_3 -msg", q(file), srv.port), 15)
      local sent, got = 0, 0
      for _ in out:gmatch(">>> TLS 1%.3, Handshake %[length %x+%], KeyUpdate") do sent = sent + 1 end
      for _ in out:gmatch("<<< TLS 1%.3, Handshake %[length %x+%], KeyUpdate") do got = got + 1 end
      assert.equal(2, sent, out)
      assert.is_true(got >= 1, "the server did not answer the update_requested KeyUpdate:\n" .. out)
      assert.matches("HTTP/1%.1 200", out)
    end)

    it("refuses a client-initiated TLS 1.2 renegotiation", function()
      -- "R" at the start of a line makes s_client renegotiate; -msg shows
      -- every handshake message, so a second ServerHello means it happened.
      local input = "R\n" .. request("/pid", "Connection: close\r\n")
      local file = os.tmpname()
      cleanup.defer(function() os.remove(file) end)
      tls.write_file(file, input)
      local out = tls.run(string.format(
        "(cat %s; sleep 1) | openssl s_client -connect 127.0.0.1:%d -tls1_2 -msg",
        q(file), srv.port), 15)
      assert.matches("RENEGOTIATING", out)
      assert.matches("Secure Renegotiation IS supported", out)   -- RFC 5746
      local hellos = 0
      for _ in out:gmatch("<<< TLS 1%.2, Handshake %[length %x+%], ServerHello\n") do hellos = hellos + 1 end
      assert.equal(1, hellos, "the server renegotiated:\n" .. out)
      assert.is_true(srv:alive())
      local res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, res)
    end)

    it("answers a plain HTTP request on the TLS port with a 400 and closes", function()
      local c = assert(http.connect(srv.port))
      c:send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
      local all = c:read_all()
      c:close()
      assert.matches("^HTTP/1%.1 400", all)
    end)

    it("does a WebSocket upgrade and echoes a frame over TLS (wss)", function()
      local c = tls.s_client(srv.port, { "-quiet", "-verify_quiet", "-CAfile", pki.ca,
                                         "-servername", "localhost" })
      cleanup.defer(function() c:stop() end)
      c:send(ws.request("/ws"))
      local out, ok = c:wait_for("\r\n\r\n", 10, true)
      assert.is_true(ok, "no 101: " .. out .. c:stderr())
      assert.matches("^HTTP/1%.1 101", out)
      assert.matches("[Ss]ec%-[Ww]eb[Ss]ocket%-[Aa]ccept: " .. ws.ACCEPT:gsub("%p", "%%%0"), out)
      local head_len = out:find("\r\n\r\n", 1, true) + 3
      c:send(ws.frame(1, "hello over wss"))
      local want = "\129" .. string.char(#"hello over wss") .. "hello over wss"
      out, ok = c:wait_for(want, 10, true, head_len + 1)
      assert.is_true(ok, "no echo frame: " .. out)
      c:send(ws.frame(8, "\3\232", {}))             -- close 1000
      out, ok = c:wait_for("\136", 10, true, head_len + #want + 1)
      assert.is_true(ok, "no close frame back")
    end)

    it("takes a 5 MiB upload with Content-Length", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      local out, code = curl(srv.port, "/echo?to=" .. dest, "--cacert " .. q(pki.ca) ..
        " --data-binary @" .. q(big) .. " -H 'Content-Type: application/octet-stream'")
      assert.equal(0, code, out)
      assert.equal("len=" .. 5 * 1024 * 1024, out)
      assert.equal(sha256(big), sha256(dest))
    end)

    it("keeps a connection usable after a 3 MiB response written at once", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      local out, code = tls.run(string.format(
        "curl -sS -v --max-time 10 --cacert %s --resolve localhost:%d:127.0.0.1 " ..
        "'https://localhost:%d/big?size=3145728' -o %s https://localhost:%d/pid",
        q(pki.ca), srv.port, srv.port, q(dest), srv.port))
      assert.equal(0, code, out)
      assert.matches("Re%-using existing connection", out)
      assert.matches("\n%d+$", out)
      assert.equal(3145728, #tls.read_file(dest))
    end)

    it("keeps a connection usable after a 5 MiB response written at once", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      local out, code = tls.run(string.format(
        "curl -sS -v --max-time 10 --cacert %s --resolve localhost:%d:127.0.0.1 " ..
        "'https://localhost:%d/big?size=5242880' -o %s https://localhost:%d/pid",
        q(pki.ca), srv.port, srv.port, q(dest), srv.port))
      assert.equal(0, code, out)
      assert.matches("Re%-using existing connection", out)
      assert.equal(5242880, #tls.read_file(dest))
      -- and the client's close is seen: no connection left in CLOSE-WAIT
      socket.sleep(0.3)
      local ss = tls.run("ss -tn state close-wait")
      assert.is_nil(ss:find(":" .. srv.port .. " ", 1, true), ss)
    end)

    it("sends 2 MiB of the static file intact to a client that reads slowly", function()
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      local out, code = curl(srv.port, "/files/big.bin", "--cacert " .. q(pki.ca) ..
        " -r 0-2097151 --limit-rate 4M -o " .. q(dest))
      assert.equal(0, code, out)
      local whole = tls.read_file(big)
      assert.equal(whole:sub(1, 2097152) == tls.read_file(dest), true)
    end)

    it("sends the whole 5 MiB static file and a 5 MB chunked response to clients that read slowly", function()
      for _ = 1, 3 do
        local dest = os.tmpname()
        cleanup.defer(function() os.remove(dest) end)
        local out, code = curl(srv.port, "/files/big.bin", "--cacert " .. q(pki.ca) ..
          " --limit-rate 4M -o " .. q(dest))
        assert.equal(0, code, out)
        assert.equal(sha256(big), sha256(dest))
        out, code = curl(srv.port, "/chunked?n=5000", "--cacert " .. q(pki.ca) ..
          " --limit-rate 4M -o " .. q(dest))
        assert.equal(0, code, out)
      end
    end)

    it("keeps serving after a client leaves in the middle of a large response", function()
      for _ = 1, 3 do
        local out, code = curl(srv.port, "/files/big.bin", "--cacert " .. q(pki.ca) ..
          " --limit-rate 500k --max-time 0.5 -o /dev/null")
        assert.equal(28, code, out)                 -- curl's timeout: the client gave up
      end
      local dest = os.tmpname()
      cleanup.defer(function() os.remove(dest) end)
      local out, code = curl(srv.port, "/files/mid.bin", "--cacert " .. q(pki.ca) .. " -o " .. q(dest))
      assert.equal(0, code, out)
      assert.equal(sha256(static_dir .. "/mid.bin"), sha256(dest))
      assert.is_true(srv:alive())
    end)

    it("serves 40 clients at once, each with its own handshake", function()
      local dir = tls.tempdir()
      cleanup.defer(function() os.execute("rm -rf " .. q(dir)) end)
      local cmd = string.format("seq 1 40 | xargs -P 20 -I{} sh -c " ..
        "'curl -sS --max-time 15 --cacert %s --resolve localhost:%d:127.0.0.1 " ..
        "https://localhost:%d/chunked?n=20 -o %s/{}.out || echo FAIL {}'",
        pki.ca, srv.port, srv.port, dir)
      local out, code = tls.run(cmd, 60)
      assert.equal(0, code, out)
      assert.is_nil(out:find("FAIL", 1, true), out)
      for i = 1, 40 do
        local body = tls.read_file(dir .. "/" .. i .. ".out") or ""
        assert.equal(20000, #body, "client " .. i)
      end
    end)

    it("answers pipelined large responses in order", function()
      local c = tls.s_client(srv.port, { "-quiet", "-verify_quiet", "-CAfile", pki.ca })
      cleanup.defer(function() c:stop() end)
      c:send(request("/chunked?n=300") .. request("/files/big.bin", "Range: bytes=0-99999\r\n") ..
             request("/chunked?n=200", "Connection: close\r\n"))
      assert.is_true(c:wait_exit(15), "the server did not close after Connection: close")
      local out = c:output()
      local statuses = {}
      for st in out:gmatch("HTTP/1%.1 (%d+) ") do statuses[#statuses + 1] = st end
      assert.are.same({ "200", "206", "200" }, statuses)
      -- 300 KB + 100000 bytes + 200 KB of body, plus heads and chunk framing
      assert.is_true(#out > 600000, "only " .. #out .. " bytes")
      local f = assert(io.open(big, "rb"))
      local range = f:read(100000)
      f:close()
      assert.truthy(out:find(range, 1, true), "the ranged body did not arrive intact")
    end)

    it("echoes a 100 KB WebSocket message over TLS", function()
      local c = tls.s_client(srv.port, { "-quiet", "-verify_quiet", "-CAfile", pki.ca })
      cleanup.defer(function() c:stop() end)
      c:send(ws.request("/ws"))
      local out, ok = c:wait_for("\r\n\r\n", 10, true)
      assert.is_true(ok, out)
      local head_len = out:find("\r\n\r\n", 1, true) + 3
      local payload = string.rep("0123456789abcdef", 6400)      -- 102400 bytes
      c:send(ws.frame(2, payload))
      local want = "\130\127" .. string.pack(">I8", #payload) .. payload
      out, ok = c:wait_for(want, 15, true, head_len + 1)
      assert.is_true(ok, "no echo of " .. #payload .. " bytes; have " .. (#out - head_len))
    end)

    it("closes a client that sends garbage instead of a ClientHello and keeps serving", function()
      local before = #srv:stderr()
      for _, junk in ipairs({
        "\255\0\1\2\3\4\5\6\7\8" .. string.rep("\250garbage\0", 200),
        -- a handshake record whose ClientHello is nonsense
        "\22\3\1\0\60\1\0\0\56" .. string.rep("\3", 56),
      }) do
        local c = assert(http.connect(srv.port))
        c:send(junk)
        assert.is_true(c:is_closed(5), "the server kept a garbage connection open")
        c:close()
      end
      local res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, res)
      assert.equal("hello over https", res)
      assert.truthy(server.eventually(function() return #srv:stderr() > before end, 3),
        "nothing logged about the bad clients")
    end)

    it("survives clients that disconnect mid-handshake", function()
      local hello = tls.capture_client_hello({ "-tls1_3", "-servername", "localhost" })
      assert.equal(22, hello:byte(1))
      for _, cut in ipairs({ 5, 40, #hello }) do
        local c = assert(http.connect(srv.port))
        c:send(hello:sub(1, cut))
        if cut == #hello then
          -- the whole ClientHello: the server answers with a handshake
          -- record (its ServerHello), then the client goes away
          local first = c.sock:receive(5)
          assert.truthy(first and first:byte(1) == 22, "no ServerHello")
        end
        c:close()
      end
      local hello12 = tls.capture_client_hello({ "-tls1_2" })
      local c = assert(http.connect(srv.port))
      c:send(hello12)
      c.sock:receive(5)
      c:close()
      for _ = 1, 3 do
        local res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
        assert.equal(0, code, res)
      end
      assert.is_true(srv:alive())
    end)
  end)

  describe("plain and TLS listeners side by side", function()
    it("give the app http and no ssl.* keys on the plain one", function()
      local srv = start_tls(cert_args({ "--listen", "127.0.0.1:0" }))
      local second = srv.proc:read("l")
      local ports = {}
      for _, l in ipairs({ srv.lines[1], second }) do
        local scheme, port = tostring(l):match("^listening on (https?)://127%.0%.0%.1:(%d+)$")
        assert.is_not_nil(scheme, "unexpected line: " .. tostring(l))
        ports[scheme] = tonumber(port)
      end
      assert.is_not_nil(ports.https)
      assert.is_not_nil(ports.http)
      local res = http.get(ports.http, "/env")
      assert.equal(200, res.status)
      local env = parse_env(res.body)
      assert.equal("http", env.scheme)
      assert.equal("none", env.ssl_keys)
      local out, code = curl(ports.https, "/env", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      assert.equal("https", parse_env(out).scheme)
    end)
  end)

  describe("certificates", function()
    it("choose the certificate by SNI, with one-label wildcards", function()
      local srv = start_tls({ "--tls-cert", pki.server_crt, "--tls-key", pki.server_key,
                              "--tls-cert", pki.second_crt, "--tls-key", pki.second_key })
      local function subject(name)
        local s, out = peer_subject(srv.port, "-servername " .. name)
        assert.is_not_nil(s, out)
        return s
      end
      assert.equal("CN = localhost", subject("localhost"))
      assert.equal("CN = localhost", subject("a.example.test"))
      assert.equal("CN = b.example.test", subject("b.example.test"))
      assert.equal("CN = b.example.test", subject("x.wild.test"))
      -- *.wild.test covers one label only: the default certificate
      assert.equal("CN = localhost", subject("a.b.wild.test"))
      assert.equal("CN = localhost", subject("wild.test"))
      assert.equal("CN = localhost", (peer_subject(srv.port, "-noservername")))
      -- curl verifies each name against the CA
      for _, name in ipairs({ "localhost", "a.example.test", "b.example.test", "x.wild.test" }) do
        local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca), name)
        assert.equal(0, code, name .. ": " .. out)
        assert.equal("hello over https", out)
      end
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca), "a.b.wild.test")
      assert.are_not.equal(0, code, out)      -- the default certificate does not name it
    end)

    it("match SNI names without regard to case", function()
      local srv = start_tls({ "--tls-cert", pki.server_crt, "--tls-key", pki.server_key,
                              "--tls-cert", pki.second_crt, "--tls-key", pki.second_key })
      assert.equal("CN = b.example.test", (peer_subject(srv.port, "-servername B.Example.TEST")))
      assert.equal("CN = b.example.test", (peer_subject(srv.port, "-servername X.WILD.test")))
      assert.equal("CN = localhost", (peer_subject(srv.port, "-servername A.EXAMPLE.TEST")))
    end)

    it("do not resume a TLS 1.2 session under another SNI name (RFC 6066)", function()
      local srv = start_tls({ "--tls-cert", pki.server_crt, "--tls-key", pki.server_key,
                              "--tls-cert", pki.second_crt, "--tls-key", pki.second_key })
      local sess = os.tmpname()
      cleanup.defer(function() os.remove(sess) end)
      local req = request("/pid", "Connection: close\r\n")
      local out = s_client(srv.port, "-tls1_2 -ign_eof -servername b.example.test -sess_out " .. q(sess), req)
      assert.matches("\nNew, TLSv1%.2", out)
      -- the same name resumes ...
      out = s_client(srv.port, "-tls1_2 -ign_eof -servername b.example.test -sess_in " .. q(sess), req)
      assert.matches("\nReused, TLSv1%.2", out)
      -- ... another one gets a full handshake, with its own certificate
      out = s_client(srv.port, "-tls1_2 -ign_eof -servername localhost -sess_in " .. q(sess), req)
      assert.is_nil(out:find("\nReused, TLSv1", 1, true), "resumed under another name:\n" .. out)
      assert.matches("\nsubject=CN = localhost", out)
    end)

    it("send the chain from the certificate file", function()
      local srv = start_tls({ "--tls-cert", pki.chain_crt, "--tls-key", pki.chain_key })
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      assert.equal("hello over https", out)
      local sout = s_client(srv.port, "-showcerts -CAfile " .. q(pki.ca))
      assert.matches("1 s:CN = owinlua intermediate CA", sout)
    end)

    it("work with an RSA 2048 key", function()
      local srv = start_tls({ "--tls-cert", pki.rsa_crt, "--tls-key", pki.rsa_key })
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      local sout = s_client(srv.port, "-tls1_2 -CAfile " .. q(pki.ca))
      local _, cipher = negotiated(sout)
      assert.matches("^ECDHE%-RSA%-", cipher or "", sout)
    end)

    it("load an encrypted key with --tls-password-file", function()
      local srv = start_tls({ "--tls-cert", pki.server_crt, "--tls-key", pki.enc_key,
                              "--tls-password-file", pki.password_file })
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      assert.equal("hello over https", out)
    end)

    it("can be given as OWINLUA_* variables", function()
      local srv = start_tls({}, { listen = false, env = {
        OWINLUA_LISTEN = "https://127.0.0.1:0",
        OWINLUA_TLS_CERT = pki.server_crt, OWINLUA_TLS_KEY = pki.server_key,
        OWINLUA_TLS_MIN_VERSION = "1.3" } })
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, out)
      assert.is_nil(negotiated(s_client(srv.port, "-tls1_2")))
    end)

    it("that expired are served as they are (or refused at start-up with one line)", function()
      local args = { "--tls-cert", pki.expired_crt, "--tls-key", pki.expired_key }
      local ok, srv = pcall(server.start, APP, args, { listen = "https://127.0.0.1:0" })
      if not ok then
        local err = tostring(srv):match("owinlua did not start: (.*)$") or tostring(srv)
        assert.equal(1, #lines_of(err), err)
        return
      end
      cleanup.defer(function() srv:stop() end)
      parse_listen(srv)
      local res, rc = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.are_not.equal(0, rc)
      assert.matches("expired", res)
      res, rc = curl(srv.port, "/", "-k")
      assert.equal(0, rc, res)
    end)
  end)

  describe("protocol versions and ciphers", function()
    it("--tls-min-version 1.3 refuses TLS 1.2", function()
      local srv = start_tls(cert_args({ "--tls-min-version", "1.3" }))
      assert.is_nil(negotiated(s_client(srv.port, "-tls1_2")))
      assert.equal("TLSv1.3", (negotiated(s_client(srv.port, "-tls1_3"))))
      local out, code = curl(srv.port, "/", "--cacert " .. q(pki.ca) .. " --tlsv1.2 --tls-max 1.2")
      assert.are_not.equal(0, code, out)
    end)

    it("--tls-min-version 1.2 takes both", function()
      local srv = start_tls(cert_args({ "--tls-min-version", "1.2" }))
      assert.equal("TLSv1.2", (negotiated(s_client(srv.port, "-tls1_2"))))
      assert.equal("TLSv1.3", (negotiated(s_client(srv.port, "-tls1_3"))))
    end)

    it("offers only forward-secret AEAD-strength ciphers in TLS 1.2 (RSA certificate)", function()
      local srv = start_tls({ "--tls-cert", pki.rsa_crt, "--tls-key", pki.rsa_key })
      local weak = {
        "AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384",   -- RSA key exchange
        "DES-CBC3-SHA", "ECDHE-RSA-DES-CBC3-SHA", "RC4-SHA", "NULL", "EXPORT", "aNULL", "ADH",
      }
      local tried = 0
      for _, c in ipairs(weak) do
        local out = s_client(srv.port, "-tls1_2 -cipher " .. q(c .. ":@SECLEVEL=0"))
        if out:find("no cipher match", 1, true) or out:find("no ciphers available", 1, true) then
          -- this OpenSSL cannot even offer it: nothing to learn
        else
          tried = tried + 1
          assert.is_nil(negotiated(out), c .. " was accepted:\n" .. out)
        end
      end
      assert.is_true(tried >= 4, "too few weak ciphers could be offered")
      -- with the client preferring CBC-SHA1, the server's order picks an AEAD
      local out = s_client(srv.port, "-tls1_2 -cipher " ..
        q("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"))
      local _, cipher = negotiated(out)
      assert.is_not_nil(cipher, out)
      assert.truthy(cipher:find("GCM", 1, true) or cipher:find("CHACHA20", 1, true), cipher)
    end)

    it("--tls-ciphers limits the TLS 1.2 ciphers", function()
      local srv = start_tls(cert_args({ "--tls-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256" }))
      local out = s_client(srv.port, "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384")
      assert.is_nil(negotiated(out), out)
      out = s_client(srv.port, "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
      local _, cipher = negotiated(out)
      assert.equal("ECDHE-ECDSA-AES128-GCM-SHA256", cipher, out)
      -- TLS 1.3 is not governed by it
      assert.equal("TLSv1.3", (negotiated(s_client(srv.port, "-tls1_3"))))
    end)
  end)

  describe("client certificates", function()
    local function env_with(port, cert, key, extra)
      local args = "--cacert " .. q(pki.ca) .. " " .. (extra or "")
      if cert then args = args .. " --cert " .. q(cert) .. " --key " .. q(key) end
      local out, code = curl(port, "/env", args)
      if code ~= 0 then return nil, out, code end
      return parse_env(out), out, code
    end

    it("none: no certificate is asked for, the env has none", function()
      local srv = start_tls(cert_args({ "--tls-client-ca", pki.ca, "--tls-client-cert", "none" }))
      local env, out = env_with(srv.port, pki.client_crt, pki.client_key)
      assert.is_not_nil(env, out)
      assert.equal("nil", env.cert)
      assert.equal("nil", env.errors)
      local sout = s_client(srv.port, "-tls1_2")
      assert.is_nil(sout:find("Acceptable client certificate CA names", 1, true), sout)
    end)

    it("optional: with or without one, the request goes on; errors tell what did not verify", function()
      local srv = start_tls(cert_args({ "--tls-client-ca", pki.ca, "--tls-client-cert", "optional" }))
      for _, v in ipairs({ "--tlsv1.2 --tls-max 1.2", "--tlsv1.3" }) do
        local env, out = env_with(srv.port, nil, nil, v)
        assert.is_not_nil(env, out)
        assert.equal("nil", env.cert)
        assert.equal("nil", env.errors)

        env, out = env_with(srv.port, pki.client_crt, pki.client_key, v)
        assert.is_not_nil(env, out)
        assert.equal("yes", env.cert)
        assert.equal("nil", env.errors)
        assert.equal(trim(tls.read_file(pki.client_crt)), trim(env.pem))
        assert.equal("function", env.load)

        env, out = env_with(srv.port, pki.rogue_crt, pki.rogue_key, v)
        assert.is_not_nil(env, out)
        assert.equal("yes", env.cert)
        assert.matches("self.signed", env.errors)
        assert.equal(trim(tls.read_file(pki.rogue_crt)), trim(env.pem))

        env, out = env_with(srv.port, pki.foreign_crt, pki.foreign_key, v)
        assert.is_not_nil(env, out)
        assert.equal("yes", env.cert)
        -- OpenSSL says 20 (issuer not found) or, for a one-certificate chain, 21
        assert.truthy(env.errors:find("unable to get local issuer certificate", 1, true) or
          env.errors:find("unable to verify the first certificate", 1, true), env.errors)

        env, out = env_with(srv.port, pki.expired_client_crt, pki.expired_client_key, v)
        assert.is_not_nil(env, out)
        assert.equal("yes", env.cert)
        assert.matches("expired", env.errors)
      end
      local sout = s_client(srv.port, "-tls1_2")
      assert.matches("Acceptable client certificate CA names\n[^\n]*owinlua test CA", sout)
    end)

    it("require: only a certificate the CA signed gets through", function()
      local srv = start_tls(cert_args({ "--tls-client-ca", pki.ca, "--tls-client-cert", "require" }))
      for _, v in ipairs({ "--tlsv1.2 --tls-max 1.2", "--tlsv1.3" }) do
        local env, out = env_with(srv.port, pki.client_crt, pki.client_key, v)
        assert.is_not_nil(env, out)
        assert.equal("yes", env.cert)
        assert.equal("nil", env.errors)
        assert.equal(trim(tls.read_file(pki.client_crt)), trim(env.pem))
        for _, c in ipairs({ {}, { pki.rogue_crt, pki.rogue_key }, { pki.foreign_crt, pki.foreign_key },
                             { pki.expired_client_crt, pki.expired_client_key } }) do
          local e, o = env_with(srv.port, c[1], c[2], v)
          assert.is_nil(e, v .. " " .. tostring(c[1]) .. " got through: " .. o)
          assert.is_nil(o:find("scheme=", 1, true), o)
        end
      end
      assert.is_true(srv:alive())
    end)
  end)

  describe("client certificates and resumption", function()
    -- A resumed session must show the app the same certificate and the same
    -- verification result as the full handshake did.
    local function env_over(port, v, sess_flag, sess, cert, key)
      local out = s_client(port, string.format("%s -ign_eof -cert %s -key %s %s %s",
        v, q(cert), q(key), sess_flag, q(sess)), request("/env", "Connection: close\r\n"))
      local body = out:match("\r\n\r\n(scheme=.-pem:\n.-\n%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)")
        or out:match("\r\n\r\n(scheme=.-pem:\n[^\n]*)")
      return body and parse_env(body), out
    end

    for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
      it("keeps ssl.ClientCertificate and its errors on a resumed session (" .. v .. ")", function()
        local srv = start_tls(cert_args({ "--tls-client-ca", pki.ca, "--tls-client-cert", "optional" }))
        for _, c in ipairs({ { pki.client_crt, pki.client_key, "nil" },
                             { pki.rogue_crt, pki.rogue_key, "self.signed" } }) do
          local sess = os.tmpname()
          cleanup.defer(function() os.remove(sess) end)
          local env1, out1 = env_over(srv.port, v, "-sess_out", sess, c[1], c[2])
          assert.is_not_nil(env1, out1)
          assert.matches("\nNew, TLSv", out1)
          local env2, out2 = env_over(srv.port, v, "-sess_in", sess, c[1], c[2])
          assert.is_not_nil(env2, out2)
          assert.matches("\nReused, TLSv", out2)
          for _, env in ipairs({ env1, env2 }) do
            assert.equal("yes", env.cert)
            assert.equal(trim(tls.read_file(c[1])), trim(env.pem))
            if c[3] == "nil" then assert.equal("nil", env.errors) else assert.matches(c[3], env.errors) end
          end
        end
      end)
    end
  end)

  describe("an IPv6 TLS listener", function()
    it("serves https on [::1]", function()
      local srv = start_tls(cert_args(), { listen = "https://[::1]:0" })
      assert.equal("::1", srv.host)
      local out, code = tls.run(string.format("curl -sS --max-time 10 --cacert %s --connect-to localhost:%d:[::1]:%d " ..
        "https://localhost:%d/", q(pki.ca), srv.port, srv.port, srv.port))
      assert.equal(0, code, out)
      assert.equal("hello over https", out)
    end)
  end)

  describe("start-up errors: one line on stderr, non-zero exit", function()
    local function fails(args, pattern)
      local out, err, code = server.run(args, { timeout = 10 })
      assert.are_not.equal(0, code, "started: " .. out)
      assert.is_true(code ~= 124 and code ~= 143, "still running after 10 s: " .. out .. err)
      assert.is_nil(out:find("listening on", 1, true), out)
      local l = lines_of(err)
      assert.equal(1, #l, "not one line:\n" .. err)
      if pattern then assert.matches(pattern, l[1]:lower()) end
      return l[1]
    end
    local HTTPS = { "--listen", "https://127.0.0.1:0" }
    local function with(...)
      local t = { table.unpack(HTTPS) }
      for _, a in ipairs({ ... }) do t[#t + 1] = a end
      t[#t + 1] = APP
      return t
    end

    it("for a missing certificate file", function()
      local line = fails(with("--tls-cert", pki.dir .. "/no-such-cert.pem", "--tls-key", pki.server_key))
      assert.matches("no-such-cert.pem", line, 1, true)
    end)

    it("for a missing key file", function()
      local line = fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.dir .. "/no-such-key.pem"))
      assert.matches("no-such-key.pem", line, 1, true)
    end)

    it("for a key that does not match the certificate", function()
      fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.second_key), "key")
    end)

    it("for a wrong passphrase", function()
      fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.enc_key,
                 "--tls-password-file", pki.wrong_password_file))
    end)

    it("for --tls-min-version 1.1 and 1.0", function()
      fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.server_key, "--tls-min-version", "1.1"), "1%.1")
      fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.server_key, "--tls-min-version", "1.0"), "1%.0")
    end)

    it("for an https listener without --tls-cert", function()
      fails(with(), "cert")
    end)

    it("for a certificate file that is not PEM", function()
      fails(with("--tls-cert", pki.password_file, "--tls-key", pki.server_key))
    end)

    it("that say why: no such file, wrong passphrase", function()
      local line = fails(with("--tls-cert", pki.dir .. "/no-such-cert.pem", "--tls-key", pki.server_key))
      assert.matches("no such file", line:lower())
      line = fails(with("--tls-cert", pki.server_crt, "--tls-key", pki.enc_key,
                        "--tls-password-file", pki.wrong_password_file))
      assert.truthy(line:lower():find("pass", 1, true) or line:lower():find("decrypt", 1, true), line)
    end)
  end)

  describe("resumption across workers #slow", function()
    it("resumes on either worker with --workers 2 (TLS 1.2 and 1.3)", function()
      local srv = start_tls(cert_args({ "--workers", "2" }))
      local req = request("/pid", "Connection: close\r\n")
      local function pid_of(out) return tonumber(out:match("\r\n\r\n(%d+)")) end
      -- wait for both workers to answer
      local seen, n = {}, 0
      assert.truthy(server.eventually(function()
        local out = s_client(srv.port, "-ign_eof", req)
        local pid = pid_of(out)
        if pid and not seen[pid] then seen[pid] = true; n = n + 1 end
        return n == 2
      end, 20), "both workers should answer")
      for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
        local sess = os.tmpname()
        cleanup.defer(function() os.remove(sess) end)
        local out = s_client(srv.port, v .. " -ign_eof -sess_out " .. q(sess), req)
        local first = pid_of(out)
        assert.is_not_nil(first, out)
        local other, tries = false, 0
        while tries < 30 and not (other and tries >= 6) do
          tries = tries + 1
          out = s_client(srv.port, v .. " -ign_eof -sess_in " .. q(sess), req)
          assert.matches("\nReused, TLSv1%.", out)
          assert.is_nil(out:find("\nNew, TLSv1", 1, true), v .. " not resumed:\n" .. out)
          local pid = pid_of(out)
          assert.is_not_nil(pid, out)
          if pid ~= first then other = true end
        end
        assert.is_true(other, v .. ": no resumed connection landed on the other worker")
      end
    end)
  end)

  describe("SIGHUP", function()
    local function live_files(dir, crt, key)
      assert(os.execute(string.format("cp %s %s/live.key.new && cp %s %s/live.crt.new && " ..
        "mv %s/live.key.new %s/live.key && mv %s/live.crt.new %s/live.crt",
        q(key), q(dir), q(crt), q(dir), q(dir), q(dir), q(dir), q(dir))))
    end

    it("reloads the certificate for new connections, keeps open ones, keeps the old on a bad file", function()
      local dir = tls.tempdir()
      cleanup.defer(function() os.execute("rm -rf " .. q(dir)) end)
      live_files(dir, pki.server_crt, pki.server_key)
      local srv = start_tls({ "--tls-cert", dir .. "/live.crt", "--tls-key", dir .. "/live.key" })
      assert.equal("CN = localhost", (peer_subject(srv.port, "-servername localhost")))

      local old = tls.s_client(srv.port, { "-quiet", "-verify_quiet", "-CAfile", pki.ca })
      cleanup.defer(function() old:stop() end)
      old:send(request("/pid"))
      local out, ok = old:wait_for("HTTP/1.1 200", 10, true)
      assert.is_true(ok, out .. old:stderr())

      live_files(dir, pki.second_crt, pki.second_key)
      srv:signal("HUP")
      local subject
      assert.truthy(server.eventually(function()
        subject = peer_subject(srv.port, "-servername localhost")
        return subject == "CN = b.example.test"
      end, 5), "new connections still get " .. tostring(subject))
      -- the connection opened before the reload still works
      local before = #old:output()
      old:send(request("/pid"))
      out, ok = old:wait_for("HTTP/1.1 200", 10, true, before + 1)
      assert.is_true(ok, "the old connection stopped working: " .. out .. old:stderr())
      local res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca), "b.example.test")
      assert.equal(0, code, res)

      -- a broken certificate file: the old pair stays, stderr says why
      local logged = #srv:stderr()
      tls.write_file(dir .. "/live.crt", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
      srv:signal("HUP")
      assert.truthy(server.eventually(function() return #srv:stderr() > logged end, 5),
        "nothing logged about the bad file")
      socket.sleep(0.2)
      assert.is_true(srv:alive())
      assert.equal("CN = b.example.test", (peer_subject(srv.port, "-servername localhost")))
      res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca), "b.example.test")
      assert.equal(0, code, res)

      -- a key that does not match the certificate: the same
      logged = #srv:stderr()
      live_files(dir, pki.server_crt, pki.second_key)
      srv:signal("HUP")
      assert.truthy(server.eventually(function() return #srv:stderr() > logged end, 5),
        "nothing logged about the mismatched key")
      socket.sleep(0.2)
      assert.equal("CN = b.example.test", (peer_subject(srv.port, "-servername localhost")))
    end)

    it("with --workers 2 restarts the workers, which load the new files #slow", function()
      local dir = tls.tempdir()
      cleanup.defer(function() os.execute("rm -rf " .. q(dir)) end)
      live_files(dir, pki.server_crt, pki.server_key)
      local srv = start_tls({ "--tls-cert", dir .. "/live.crt", "--tls-key", dir .. "/live.key",
                              "--workers", "2" })
      assert.truthy(server.eventually(function()
        return peer_subject(srv.port, "-servername localhost") == "CN = localhost"
      end, 10))
      live_files(dir, pki.second_crt, pki.second_key)
      srv:signal("HUP")
      -- every new connection, whichever worker takes it, gets the new one
      assert.truthy(server.eventually(function()
        for _ = 1, 6 do
          if peer_subject(srv.port, "-servername localhost") ~= "CN = b.example.test" then return false end
        end
        return true
      end, 20), "new connections do not get the new certificate")
    end)

    it("with --workers 2 keeps the old workers when the new files do not load #slow", function()
      local dir = tls.tempdir()
      cleanup.defer(function() os.execute("rm -rf " .. q(dir)) end)
      live_files(dir, pki.server_crt, pki.server_key)
      local srv = start_tls({ "--tls-cert", dir .. "/live.crt", "--tls-key", dir .. "/live.key",
                              "--workers", "2" })
      assert.truthy(server.eventually(function()
        return peer_subject(srv.port, "-servername localhost") == "CN = localhost"
      end, 10))
      tls.write_file(dir .. "/live.crt", "not a certificate\n")
      srv:signal("HUP")
      assert.truthy(server.eventually(function()
        return srv:stderr():find("restart abandoned", 1, true)
      end, 20), srv:stderr())
      assert.matches("cannot load the TLS certificate [^\n]*live%.crt", srv:stderr())
      for _ = 1, 4 do          -- both old workers still serve, with the old certificate
        assert.equal("CN = localhost", (peer_subject(srv.port, "-servername localhost")))
      end
    end)
  end)

  describe("handshake timeout and slow clients", function()
    it("closes a silent connection and a partial ClientHello after --header-timeout", function()
      local srv = start_tls(cert_args({ "--header-timeout", "1" }))
      local hello = tls.capture_client_hello({ "-tls1_3" })
      local silent = assert(http.connect(srv.port))
      local partial = assert(http.connect(srv.port))
      local stalled = assert(http.connect(srv.port))   -- a whole ClientHello, then nothing
      local t0 = socket.gettime()
      partial:send(hello:sub(1, 50))
      stalled:send(hello)
      local first = stalled.sock:receive(5)
      assert.truthy(first and first:byte(1) == 22, "no ServerHello")
      assert.is_true(silent:is_closed(4), "the silent connection stayed open")
      assert.is_true(partial:is_closed(4), "the partial ClientHello stayed open")
      assert.is_true(stalled:is_closed(4), "the stalled handshake stayed open")
      local took = socket.gettime() - t0
      assert.is_true(took >= 0.7, "closed too early: " .. took)
      silent:close()
      partial:close()
      stalled:close()
      local res, code = curl(srv.port, "/", "--cacert " .. q(pki.ca))
      assert.equal(0, code, res)
    end)

    it("completes a handshake whose bytes come one at a time within the timeout", function()
      local srv = start_tls(cert_args({ "--header-timeout", "6" }))
      local r = tls.relay(srv.port, 1e9, 0.002)      -- everything the client sends, byte by byte
      local out = os.tmpname()
      cleanup.defer(function() os.remove(out) os.remove(out .. ".rc") end)
      os.execute(string.format("(curl -sS --max-time 15 --cacert %s --resolve localhost:%d:127.0.0.1 " ..
        "https://localhost:%d/ >%s 2>&1; echo $? >%s) &", q(pki.ca), r.port, r.port, q(out), q(out .. ".rc")))
      r:serve(15)
      assert.truthy(server.eventually(function() return tls.read_file(out .. ".rc") ~= "" end, 5))
      assert.equal("0", trim(tls.read_file(out .. ".rc")), tls.read_file(out))
      assert.equal("hello over https", tls.read_file(out))
      assert.is_true(r.forwarded_slowly > 200, "the client sent only " .. r.forwarded_slowly .. " bytes")
    end)
  end)
end)
