-- Test PKI and TLS clients for spec/e2e/tls_spec.lua.
--
--   local tls = require("helpers.tls")
--   local pki = tls.pki()          -- made once per busted run, in a temp dir
--   pki.ca, pki.server_crt, pki.server_key, ...
--   tls.cleanup()                  -- removes the temp dir
--
-- Everything is made at run time with the `openssl` command line:
--
--   ca                 the test CA (ECDSA P-256), its key ca_key
--   server_crt/_key    signed by the CA: DNS localhost, IP 127.0.0.1,
--                      DNS a.example.test (CN localhost)
--   second_crt/_key    signed by the CA: DNS b.example.test, DNS *.wild.test
--                      (CN b.example.test)
--   rsa_crt/_key       RSA 2048, signed by the CA: DNS localhost, IP 127.0.0.1
--                      (CN rsa.localhost)
--   chain_crt/_key     a leaf for localhost/127.0.0.1 (CN chained.localhost)
--                      signed by an intermediate CA that the CA signed; the
--                      file holds the leaf then the intermediate
--   expired_crt/_key   signed by the CA, valid in January 2020 only
--                      (CN expired.localhost, DNS localhost, IP 127.0.0.1)
--   enc_key            server_key encrypted (AES-256) with the passphrase in
--                      password_file (its first line); wrong_password_file
--                      holds another one
--   client_crt/_key    client certificate signed by the CA (CN owinlua test client)
--   rogue_crt/_key     self-signed client certificate (CN rogue client)
--   foreign_crt/_key   client certificate signed by another CA, not trusted
--                      (CN foreign client)
--   expired_client_crt/_key  client certificate signed by the CA, expired
--   dir                the temp dir
--
-- Clients:
--   tls.s_client(args, opts) -> a running `openssl s_client` whose standard
--     input is a FIFO the spec writes to (:send), whose output goes to a file
--     (:output, :wait_for); stopped by its PID (:stop).
--   tls.run(cmd, timeout) -> combined output, exit code (a shell command,
--     bounded by `timeout`).

local socket = require("socket")

local M = {}

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = q

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end
M.write_file = write_file

-- Runs a shell command with stdout and stderr together; returns the output
-- and the exit code.  `timeout` (seconds, default 20) bounds it.
function M.run(cmd, timeout)
  local p = assert(io.popen("timeout -k 2 " .. (timeout or 20) .. " sh -c " .. q(cmd) .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function sh(cmd)
  local out, code = M.run(cmd, 60)
  if code ~= 0 then error("failed (" .. tostring(code) .. "): " .. cmd .. "\n" .. out, 2) end
  return out
end

local cache

local EC = "-newkey ec -pkeyopt ec_paramgen_curve:P-256"

-- Builds the PKI (see the top of this file).  Cached for the busted run.
function M.pki()
  if cache then return cache end
  local p = io.popen("mktemp -d /tmp/owl-tls-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  local function path(name) return dir .. "/" .. name end
  local t = { dir = dir }

  -- extension sections, one file for all the certificates
  write_file(path("ext.cnf"), table.concat({
    "[ca]",
    "basicConstraints = critical, CA:TRUE",
    "keyUsage = critical, keyCertSign, cRLSign",
    "subjectKeyIdentifier = hash",
    "",
    "[server]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:a.example.test",
    "",
    "[second]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = DNS:b.example.test, DNS:*.wild.test",
    "",
    "[local]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = DNS:localhost, IP:127.0.0.1",
    "",
    "[client]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = clientAuth",
    "",
  }, "\n"))

  -- a CA: self-signed, P-256
  local function make_ca(name, cn)
    sh(string.format("openssl req -x509 %s -nodes -keyout %s -out %s -days 30 -subj %s " ..
      "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'",
      EC, q(path(name .. ".key")), q(path(name .. ".crt")), q("/CN=" .. cn)))
  end
  -- a certificate signed by CA `ca` with extension section `ext`
  local function make_signed(name, cn, ext, ca, keyopt)
    sh(string.format("openssl req -new %s -nodes -keyout %s -out %s -subj %s",
      keyopt or EC, q(path(name .. ".key")), q(path(name .. ".csr")), q("/CN=" .. cn)))
    sh(string.format("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -days 30 " ..
      "-out %s -extfile %s -extensions %s",
      q(path(name .. ".csr")), q(path(ca .. ".crt")), q(path(ca .. ".key")),
      q(path(name .. ".crt")), q(path("ext.cnf")), ext))
  end

  make_ca("ca", "owinlua test CA")
  make_ca("other-ca", "owinlua other CA")
  make_signed("server", "localhost", "server", "ca")
  make_signed("second", "b.example.test", "second", "ca")
  make_signed("rsa", "rsa.localhost", "local", "ca", "-newkey rsa:2048")
  make_signed("client", "owinlua test client", "client", "ca")
  make_signed("foreign", "foreign client", "client", "other-ca")
  sh(string.format("openssl req -x509 %s -nodes -keyout %s -out %s -days 30 -subj '/CN=rogue client'",
    EC, q(path("rogue.key")), q(path("rogue.crt"))))

  -- an intermediate CA and a leaf under it; the cert file holds the chain
  make_signed("inter", "owinlua intermediate CA", "ca", "ca")
  make_signed("chained", "chained.localhost", "local", "inter")
  sh(string.format("cat %s %s > %s", q(path("chained.crt")), q(path("inter.crt")),
    q(path("chain.pem"))))

  -- expired certificates: `openssl ca` with explicit start and end dates
  -- (openssl x509 in 3.0 has no option for a start date in the past)
  sh("mkdir -p " .. q(path("ca-db")) .. " && : > " .. q(path("ca-db/index.txt")) ..
     " && echo 1000 > " .. q(path("ca-db/serial")))
  write_file(path("ca.cnf"), table.concat({
    "[ca]",
    "default_ca = testca",
    "[testca]",
    "dir = " .. dir,
    "database = $dir/ca-db/index.txt",
    "serial = $dir/ca-db/serial",
    "new_certs_dir = $dir/ca-db",
    "certificate = $dir/ca.crt",
    "private_key = $dir/ca.key",
    "default_md = sha256",
    "policy = anything",
    "unique_subject = no",
    "copy_extensions = none",
    "[anything]",
    "commonName = supplied",
    "[expired_server]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = DNS:localhost, IP:127.0.0.1",
    "[expired_client]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = clientAuth",
    "",
  }, "\n"))
  local function make_expired(name, cn, ext)
    sh(string.format("openssl req -new %s -nodes -keyout %s -out %s -subj %s",
      EC, q(path(name .. ".key")), q(path(name .. ".csr")), q("/CN=" .. cn)))
    sh(string.format("openssl ca -batch -notext -config %s -extensions %s " ..
      "-startdate 20200101000000Z -enddate 20200131000000Z -in %s -out %s",
      q(path("ca.cnf")), ext, q(path(name .. ".csr")), q(path(name .. ".crt"))))
  end
  make_expired("expired", "expired.localhost", "expired_server")
  make_expired("expired-client", "expired client", "expired_client")

  -- the server key, encrypted
  write_file(path("password.txt"), "correct horse battery staple\nsecond line is not read\n")
  write_file(path("wrong-password.txt"), "not the passphrase\n")
  sh(string.format("openssl pkey -in %s -aes-256-cbc -passout pass:%s -out %s",
    q(path("server.key")), q("correct horse battery staple"), q(path("server-enc.key"))))

  t.ca, t.ca_key = path("ca.crt"), path("ca.key")
  t.other_ca = path("other-ca.crt")
  t.inter = path("inter.crt")
  t.server_crt, t.server_key = path("server.crt"), path("server.key")
  t.second_crt, t.second_key = path("second.crt"), path("second.key")
  t.rsa_crt, t.rsa_key = path("rsa.crt"), path("rsa.key")
  t.chain_crt, t.chain_key = path("chain.pem"), path("chained.key")
  t.expired_crt, t.expired_key = path("expired.crt"), path("expired.key")
  t.enc_key = path("server-enc.key")
  t.password_file, t.wrong_password_file = path("password.txt"), path("wrong-password.txt")
  t.client_crt, t.client_key = path("client.crt"), path("client.key")
  t.rogue_crt, t.rogue_key = path("rogue.crt"), path("rogue.key")
  t.foreign_crt, t.foreign_key = path("foreign.crt"), path("foreign.key")
  t.expired_client_crt, t.expired_client_key = path("expired-client.crt"), path("expired-client.key")
  cache = t
  return t
end

-- Removes the temp dir of pki() (the next pki() makes a new one).
function M.cleanup()
  if cache then
    os.execute("rm -rf " .. q(cache.dir))
    cache = nil
  end
end

-- A new empty temp dir (the caller removes it).
function M.tempdir()
  local p = io.popen("mktemp -d /tmp/owl-tls-spec-x.XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

-- One field of a certificate file as `openssl x509` prints it:
-- "subject", "enddate", "fingerprint" (sha256) ...
function M.cert_field(file, field)
  local flag = field == "fingerprint" and "-fingerprint -sha256" or ("-" .. field)
  return (sh("openssl x509 -noout " .. flag .. " -in " .. q(file)):gsub("%s+$", ""))
end

------------------------------------------------------------------------------
-- openssl s_client with a FIFO for its standard input.

local Client = {}
Client.__index = Client

-- args: the s_client arguments after -connect HOST:PORT (a list).
-- opts.host (default 127.0.0.1), opts.port, opts.timeout (seconds the whole
-- client may live, default 30).
function M.s_client(port, args, opts)
  opts = opts or {}
  local dir = M.tempdir()
  local fifo, out, err, pidfile = dir .. "/in", dir .. "/out", dir .. "/err", dir .. "/pid"
  assert(os.execute("mkfifo " .. q(fifo)))
  local parts = {}
  for _, a in ipairs(args or {}) do parts[#parts + 1] = q(a) end
  -- the shell opens the FIFO for reading only once we open it for writing
  local cmd = string.format("timeout -k 2 %d openssl s_client -connect %s %s <%s >%s 2>%s & echo $! >%s",
    opts.timeout or 30, q((opts.host or "127.0.0.1") .. ":" .. port), table.concat(parts, " "),
    q(fifo), q(out), q(err), q(pidfile))
  assert(os.execute("(" .. cmd .. ") &"))
  local w = assert(io.open(fifo, "wb"))
  w:setvbuf("no")
  local pid
  for _ = 1, 100 do
    pid = tonumber(read_file(pidfile) or "")
    if pid then break end
    socket.sleep(0.02)
  end
  assert(pid, "s_client did not start")
  return setmetatable({ dir = dir, fifo = fifo, out = out, err = err, w = w, pid = pid }, Client)
end

function Client:send(data)
  assert(self.w, "stdin already closed")
  return self.w:write(data)
end

-- Closes the client's standard input (EOF).
function Client:close_input()
  if self.w then self.w:close() self.w = nil end
end

-- What s_client wrote on stdout (the peer's bytes; with -quiet only them).
function Client:output()
  return read_file(self.out) or ""
end

-- What s_client wrote on stderr (verification, errors).
function Client:stderr()
  return read_file(self.err) or ""
end

-- Waits until the output matches `pattern` (a Lua pattern, or plain text when
-- `plain`) or `timeout` seconds (default 10) pass; returns the output and
-- whether it matched.
function Client:wait_for(pattern, timeout, plain, init)
  local deadline = socket.gettime() + (timeout or 10)
  repeat
    local s = self:output()
    if s:find(pattern, init or 1, plain) then return s, true end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return self:output(), false
end

function Client:alive()
  local f = io.open("/proc/" .. self.pid .. "/stat")
  if not f then return false end
  local s = f:read("a")
  f:close()
  return s:match("^%d+ %b() (%a)") ~= "Z"
end

-- Waits up to `timeout` seconds for the client to exit on its own.
function Client:wait_exit(timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while self:alive() and socket.gettime() < deadline do socket.sleep(0.05) end
  return not self:alive()
end

-- Stops the client (SIGTERM to the timeout wrapper by its PID, which passes
-- it on) and removes its files.  Returns the output and stderr.
function Client:stop()
  local out, err = self:output(), self:stderr()
  self:close_input()
  if self:alive() then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self:wait_exit(5)
  end
  os.execute("rm -rf " .. q(self.dir))
  return out, err
end

------------------------------------------------------------------------------
-- Raw bytes.

-- A real ClientHello record as `openssl s_client args` sends it: listens on a
-- free port, lets s_client connect and keeps the first TLS record.
function M.capture_client_hello(args)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  srv:settimeout(10)
  local parts = {}
  for _, a in ipairs(args or {}) do parts[#parts + 1] = q(a) end
  os.execute(string.format("timeout 5 openssl s_client -connect 127.0.0.1:%d %s </dev/null >/dev/null 2>&1 &",
    port, table.concat(parts, " ")))
  local c = assert(srv:accept())
  srv:close()
  c:settimeout(5)
  local head = assert(c:receive(5))
  local len = head:byte(4) * 256 + head:byte(5)
  local body = assert(c:receive(len))
  c:close()           -- s_client sees the close and exits
  return head .. body
end

-- A TCP relay on a free port to `port`: what the client sends first (its
-- first `slow_bytes` bytes) goes on one byte at a time, `pause` seconds
-- apart; the rest both ways as it comes.  Serves one connection; runs in the
-- calling process, so call relay:serve(deadline) after starting the client in
-- the background.
local Relay = {}
Relay.__index = Relay

function M.relay(port, slow_bytes, pause)
  local l = assert(socket.bind("127.0.0.1", 0))
  local _, lport = l:getsockname()
  return setmetatable({ listener = l, port = lport, target = port, slow_bytes = slow_bytes,
                        pause = pause, forwarded_slowly = 0 }, Relay)
end

-- Accepts the one client and pumps until either side closes or `timeout`
-- seconds pass.  Returns the time the slow part took.
function Relay:serve(timeout)
  local deadline = socket.gettime() + (timeout or 20)
  self.listener:settimeout(timeout or 20)
  local c = assert(self.listener:accept())
  self.listener:close()
  local s = assert(socket.tcp())
  s:settimeout(5)
  assert(s:connect("127.0.0.1", self.target))
  s:setoption("tcp-nodelay", true)
  c:settimeout(0)
  s:settimeout(0)
  local pending = ""               -- from the client, still to go slowly
  local started
  local function recv(sock)
    local data, err, partial = sock:receive(65536)
    data = data or partial
    if err == "closed" then return data, true end
    return data, false
  end
  while socket.gettime() < deadline do
    local readable = socket.select({ c, s }, nil, #pending > 0 and 0 or 0.01)
    local closed = false
    for _, sock in ipairs(readable) do
      local data, eof = recv(sock)
      if sock == c then
        if data and #data > 0 then pending = pending .. data end
      elseif data and #data > 0 then
        c:settimeout(5)
        c:send(data)
        c:settimeout(0)
      end
      if eof then closed = true end
    end
    -- the client's bytes: one at a time while in the slow part
    while #pending > 0 do
      if self.forwarded_slowly < self.slow_bytes then
        started = started or socket.gettime()
        s:settimeout(5)
        s:send(pending:sub(1, 1))
        s:settimeout(0)
        pending = pending:sub(2)
        self.forwarded_slowly = self.forwarded_slowly + 1
        if self.forwarded_slowly == self.slow_bytes then self.slow_time = socket.gettime() - started end
        socket.sleep(self.pause)
        break                       -- look at the server's side between bytes
      else
        s:settimeout(5)
        s:send(pending)
        s:settimeout(0)
        pending = ""
      end
    end
    if closed and #pending == 0 then break end
  end
  c:close()
  s:close()
  return self.slow_time
end

return M
