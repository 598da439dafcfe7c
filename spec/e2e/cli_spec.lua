-- The owinlua command: options, app loading, start-up errors.
local server = require("helpers.server")
local http = require("helpers.http")

describe("#e2e owinlua command", function()
  it("--help lists every option with its environment variable", function()
    local out, _, code = server.run({ "--help" })
    assert.equal(0, code)
    for _, o in ipairs(require("owin.cli").OPTIONS) do
      assert.truthy(out:find("--" .. o[1], 1, true), o[1])
      if o[1] ~= "help" and o[1] ~= "version" then
        assert.truthy(out:find("OWINLUA_" .. o[1]:upper():gsub("-", "_"), 1, true), o[1])
      end
    end
  end)

  it("--version prints the version", function()
    local out, _, code = server.run({ "--version" })
    assert.equal(0, code)
    assert.matches("^owinlua %d+%.%d+%.%d+", out)
  end)

  it("--check loads the app and exits", function()
    local out, _, code = server.run({ "--check", "apps/hello.lua" })
    assert.equal(0, code)
    assert.matches("ok", out)
  end)

  local bad = {
    { "a missing file", { "spec/fixtures/nope.lua" },
      "^owinlua: cannot load spec/fixtures/nope%.lua: no such file\n$" },
    { "a directory", { "spec/fixtures" },
      "^owinlua: cannot load spec/fixtures: it is a directory, not a Lua script\n$" },
    { "a syntax error", { "spec/fixtures/syntax_error.lua" },
      "^owinlua: cannot load spec/fixtures/syntax_error%.lua: syntax error on line 3: " ..
      "'%)' expected %(to close '%(' at line 2%) near 'end'\n$" },
    { "a directory with --workers", { "--workers", "2", "spec/fixtures" },
      "^owinlua: cannot load spec/fixtures: it is a directory, not a Lua script\n$" },
    { "a missing file with --check", { "--check", "spec/fixtures/nope.lua" },
      "^owinlua: cannot load spec/fixtures/nope%.lua: no such file\n$" },
    { "an error while loading", { "spec/fixtures/load_error.lua" }, "missing configuration" },
    { "an app that defines nothing", { "spec/fixtures/empty.lua" }, "defines no app" },
    { "no app at all", {}, "no app script given" },
    { "an unknown option", { "--frobnicate", "apps/hello.lua" }, "unknown option %-%-frobnicate" },
    { "a bad size", { "--max-body", "lots", "apps/hello.lua" }, "%-%-max%-body expects a size" },
    { "a bad listen address", { "--listen", "nowhere", "apps/hello.lua" }, "invalid listen address" },
    { "a bad listen address with --check", { "--check", "--listen", "nowhere", "apps/hello.lua" },
      "^owinlua: invalid listen address 'nowhere' %(expected" },
    { "a host name with --check", { "--check", "--listen", "example.com:80", "apps/hello.lua" },
      "invalid listen address 'example%.com:80'" },
    { "a port out of range with --check", { "--check", "--listen", ":65536", "apps/hello.lua" },
      "invalid listen address ':65536'" },
    { "a bad address among good ones with --check",
      { "--check", "--listen", "localhost:8080", "--listen", "127.0.0.1:x", "apps/hello.lua" },
      "invalid listen address '127%.0%.0%.1:x'" },
    { "a bad listen address with --workers", { "--workers", "2", "--listen", "1.2.3:80", "apps/hello.lua" },
      "invalid listen address '1%.2%.3:80'" },
  }
  for _, case in ipairs(bad) do
    it("fails with one clear line on " .. case[1], function()
      local out, err, code = server.run(case[2])
      assert.not_equal(0, code)
      assert.equal("", out)
      assert.matches("^owinlua: ", err)
      assert.matches(case[3], err)
    end)
  end

  it("says what an error while loading is, with the script's traceback only", function()
    local out, err, code = server.run({ "spec/fixtures/load_error.lua" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^owinlua: error while loading spec/fixtures/load_error%.lua: " ..
      "spec/fixtures/load_error%.lua:1: cannot start: missing configuration\nstack traceback:\n", err)
    assert.matches("in main chunk\n$", err)
    assert.is_nil(err:find("xpcall", 1, true))
    assert.is_nil(err:find("cli.lua", 1, true))
  end)

  it("says permission denied for a script it may not read", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("app.run(function() end)\n")
    f:close()
    os.execute("chmod 000 " .. path)
    local run = server.shell_quote
    -- root reads any file: run as nobody then (setpriv is util-linux's)
    local p = io.popen("id -u")
    local root = p:read("l") == "0"
    p:close()
    local prefix = root and "setpriv --reuid=65534 --regid=65534 --clear-groups " or ""
    local bin = os.getenv("OWINLUA_BIN") or "./owinlua"
    local errfile = os.tmpname()
    finally(function() os.remove(path); os.remove(errfile) end)
    local proc = io.popen(prefix .. run(bin) .. " " .. run(path) .. " 2>" .. errfile)
    proc:read("a")
    local _, _, code = proc:close()
    local err = server.read_file(errfile)
    assert.equal(1, code, err)
    assert.equal("owinlua: cannot load " .. path .. ": permission denied (the file cannot be read)\n", err)
  end)

  it("--check accepts localhost:PORT, :PORT, [v6]:PORT and unix:/path, binding nothing", function()
    local holder = server.start("apps/hello.lua")
    finally(function() holder:stop() end)
    local out, err, code = server.run({ "--check", "--listen", "localhost:8080", "--listen", ":0",
      "--listen", "[::1]:0", "--listen", "unix:/tmp/x.sock",
      "--listen", "127.0.0.1:" .. holder.port, "apps/hello.lua" })
    assert.equal(0, code, err)
    assert.equal("apps/hello.lua: ok\n", out)
    assert.equal("", err)
  end)

  it("--help says what localhost:PORT and :PORT stand for", function()
    local out = server.run({ "--help" })
    assert.matches("localhost:PORT%s+the loopback addresses: 127%.0%.0%.1 and %[::1%]", out)
    assert.matches(":PORT%s+every interface: 0%.0%.0%.0 and %[::%]", out)
  end)

  it("listens on 127.0.0.1 and ::1 for localhost:PORT, one port for both", function()
    local srv = server.start("apps/hello.lua", nil, { listen = "localhost:0" })
    finally(function() srv:stop() end)
    assert.equal("127.0.0.1", srv.host)
    assert.equal("listening on http://[::1]:" .. srv.port, srv.proc:read("l"))
    assert.same({ "127.0.0.1:" .. srv.port, "[::1]:" .. srv.port }, server.listening({ srv.pid }))
    assert.equal("Hello World", http.get(srv.port, "/").body)
    local c = assert(http.connect(srv.port, "::1"))
    c:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.equal("Hello World", assert(c:read_response()).body)
    c:close()
  end)

  it("listens on 0.0.0.0 and :: for :PORT", function()
    local srv = server.start("apps/hello.lua", nil, { listen = ":0" })
    finally(function() srv:stop() end)
    assert.equal("0.0.0.0", srv.host)
    assert.equal("listening on http://[::]:" .. srv.port, srv.proc:read("l"))
    assert.same({ "0.0.0.0:" .. srv.port, "[::]:" .. srv.port }, server.listening({ srv.pid }))
    assert.equal("Hello World", http.get(srv.port, "/").body)
  end)

  it("never listens wider than asked: 127.0.0.1 and [::1] stay loopback", function()
    local srv = server.start("apps/hello.lua", { "--listen", "[::1]:0" })
    finally(function() srv:stop() end)
    local port6 = tonumber(srv.proc:read("l"):match(":(%d+)$"))
    assert.same({ "127.0.0.1:" .. srv.port, "[::1]:" .. port6 }, server.listening({ srv.pid }))
  end)

  it("refuses a unix socket another server answers on, and takes over a stale one", function()
    local sock = os.tmpname()
    os.remove(sock)
    local srv = server.start("apps/hello.lua", nil, { listen = "unix:" .. sock })
    finally(function() srv:stop(); os.remove(sock) end)
    local out, err, code = server.run({ "--listen", "unix:" .. sock, "apps/hello.lua" }, { timeout = 10 })
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("owinlua: cannot listen on unix:" .. sock .. ": address already in use\n", err)
    srv:stop("KILL")                          -- leaves the socket file behind
    local again = server.start("apps/hello.lua", nil, { listen = "unix:" .. sock })
    assert.equal("listening on unix:" .. sock, again.first_line)
    assert.is_true(again:stop())
  end)

  it("fails clearly when the port is in use", function()
    local srv = server.start("apps/hello.lua")
    finally(function() srv:stop() end)
    local out, err, code = server.run({ "--listen", "127.0.0.1:" .. srv.port, "apps/hello.lua" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^owinlua: cannot listen on 127%.0%.0%.1:%d+: address already in use\n$", err)
  end)

  it("serves an app script that returns an AppFunc", function()
    local srv = server.start("spec/fixtures/returns_appfunc.lua")
    finally(function() srv:stop() end)
    assert.equal("appfunc", http.get(srv.port, "/").body)
  end)

  it("serves a returned builder from require('owin').new()", function()
    local srv = server.start("spec/fixtures/returns_builder.lua")
    finally(function() srv:stop() end)
    local res = http.get(srv.port, "/")
    assert.equal("builder", res.body)
    assert.equal("yes", res.headers["x-module"])
  end)

  it("listens on several addresses, IPv6 and unix sockets, one stdout line each", function()
    local sock = os.tmpname()
    os.remove(sock)
    local srv = server.start("apps/hello.lua", { "--listen", "[::1]:0", "--listen", "unix:" .. sock })
    finally(function() srv:stop() end)
    local second = srv.proc:read("l")
    local third = srv.proc:read("l")
    assert.matches("^listening on http://%[::1%]:%d+$", second)
    assert.equal("listening on unix:" .. sock, third)
    local port6 = tonumber(second:match(":(%d+)$"))
    local c = assert(http.connect(port6, "::1"))
    c:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.equal("Hello World", assert(c:read_response()).body)
    c:close()
    local unix = require("socket.unix")
    local u = assert(unix())
    assert(u:connect(sock))
    u:settimeout(5)
    u:send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    local all = u:receive("*a")
    assert.matches("Hello World$", all)
    u:close()
  end)

  it("takes the listen addresses from OWINLUA_LISTEN", function()
    local srv = server.start("apps/hello.lua", nil,
      { listen = false, env = { OWINLUA_LISTEN = "127.0.0.1:0, [::1]:0" } })
    finally(function() srv:stop() end)
    assert.matches("^listening on http://%[::1%]:%d+$", srv.proc:read("l"))
    assert.equal("Hello World", http.get(srv.port, "/").body)
  end)
end)

describe("#e2e pipelines", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/pipeline.lua") end)
  teardown(function() assert.is_true(srv:stop()) end)

  it("runs use, the colon form and use_owin in order, and after-code", function()
    local res = http.get(srv.port, "/x")
    assert.equal("terminal |/x", res.body)
    assert.equal("outer-before, colon, owin", res.headers["x-trace"])
    assert.matches("after: status 200", srv:stderr())
  end)

  it("map moves the prefix to owin.RequestPathBase, nested maps too", function()
    local res = http.get(srv.port, "/API/v1/items")
    assert.equal("/API/v1|/items", res.body)
    assert.equal("outer-before, colon, owin, api:/API|/v1/items", res.headers["x-trace"])
  end)

  it("map matches whole segments only", function()
    assert.equal("terminal |/apix", http.get(srv.port, "/apix").body)
  end)

  it("a map without a matching inner route falls off the end: 404", function()
    assert.equal(404, http.get(srv.port, "/api/other").status)
  end)

  it("map_when branches on a predicate", function()
    assert.equal("when branch", http.get(srv.port, "/?when").body)
  end)

  it("middleware may answer without calling next", function()
    assert.equal("short-circuit", http.get(srv.port, "/before").body)
  end)

  it("an app that writes nothing gives 200 with an empty body", function()
    local res = http.get(srv.port, "/fall")
    assert.equal(200, res.status)
    assert.equal("0", res.headers["content-length"])
  end)
end)
