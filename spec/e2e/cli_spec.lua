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
    { "a missing file", { "spec/fixtures/nope.lua" }, "cannot open app script" },
    { "a syntax error", { "spec/fixtures/syntax_error.lua" }, "syntax_error.lua:3" },
    { "an error while loading", { "spec/fixtures/load_error.lua" }, "missing configuration" },
    { "an app that defines nothing", { "spec/fixtures/empty.lua" }, "defines no app" },
    { "no app at all", {}, "no app script given" },
    { "an unknown option", { "--frobnicate", "apps/hello.lua" }, "unknown option %-%-frobnicate" },
    { "a bad size", { "--max-body", "lots", "apps/hello.lua" }, "%-%-max%-body expects a size" },
    { "a bad listen address", { "--listen", "nowhere", "apps/hello.lua" }, "invalid listen address" },
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
