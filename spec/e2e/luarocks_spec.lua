-- Installing with LuaRocks: `luarocks make` of owinlua-scm-1.rockspec into a
-- fresh tree, from a copy of the checkout without build products and with
-- llhttp's sources made by the install step during the build, then the
-- installed binary serving apps/hello.lua from another working directory,
-- with its modules found in <tree>/share/lua/5.4.
--
--   busted --lua=lua5.4 spec/e2e/luarocks_spec.lua

local http = require("helpers.http")
local server = require("helpers.server")

local q = server.shell_quote

local shell = require("helpers.shell")
local sh, exists = shell.sh, shell.exists

-- Whether process `pid` still runs (an exited, unreaped child does not).
local function running(pid)
  local fh = io.open("/proc/" .. pid .. "/stat", "r")
  if not fh then return false end
  local state = fh:read("a"):match("^%d+ %b() (%a)")
  fh:close()
  return state ~= nil and state ~= "Z"
end

-- Starts `bin` on port 0 from the directory `cwd`, as helpers.server does
-- from the checkout.  Returns { port, stderr(), stop() -> ok, how, code }.
local function start_in(cwd, bin, app)
  local errfile = os.tmpname()
  local proc = assert(io.popen(string.format("exec 2>%s; cd %s && echo $$ && exec %s --listen 127.0.0.1:0 %s",
    q(errfile), q(cwd), q(bin), q(app))))
  local pid = assert(tonumber(proc:read("l")), "no pid")
  local first = proc:read("l")
  local srv = { pid = pid }
  function srv.stderr() return server.read_file(errfile) end
  function srv.stop()
    if srv.status then return table.unpack(srv.status) end
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = os.time() + 10
    while running(pid) and os.time() <= deadline do os.execute("sleep 0.05") end
    if running(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    srv.status = { proc:close() }
    os.remove(errfile)
    return table.unpack(srv.status)
  end
  if not first then
    local err = srv.stderr()
    srv.stop()
    error("installed owinlua did not start: " .. err, 2)
  end
  srv.port = tonumber(first:match("^listening on http://127%.0%.0%.1:(%d+)$"))
  return srv
end

describe("luarocks make #e2e #slow", function()
  local root = assert(sh("pwd")):gsub("\n$", "")
  local work, src, tree, elsewhere
  local make_out, make_ok

  lazy_setup(function()
    work = assert(sh("mktemp -d")):gsub("\n$", "")
    src, tree, elsewhere = work .. "/src", work .. "/tree", work .. "/elsewhere"
    -- a clean copy: no build/, no binaries, no VCS data
    assert(select(2, sh(string.format(
      "mkdir -p %s %s && tar -C %s --exclude=./build --exclude=./owinlua --exclude=./owinlua-asan " ..
      "--exclude=./.git -cf - . | tar -C %s -xf -", q(src), q(elsewhere), q(root), q(src)))))
    -- as on a fresh machine, the llhttp sources appear only when the
    -- Makefile's install step runs (spec/e2e/build_spec.lua has the rest)
    local later = work .. "/later/llhttp"
    local deps = work .. "/deps.sh"
    local fh = assert(io.open(deps, "w"))
    fh:write(string.format("#!/bin/sh\nmkdir -p %s\ncp %s/*.c %s/\n",
      q(later), q(os.getenv("LLHTTP_SRCDIR") or "/usr/share/llhttp"), q(later)))
    fh:close()
    make_out, make_ok = sh(string.format("cd %s && DEPS=%s LLHTTP_SRCDIR=%s " ..
      "luarocks --lua-version 5.4 make --tree %s owinlua-scm-1.rockspec",
      q(src), q("sh " .. deps), q(later), q(tree)))
  end)

  lazy_teardown(function()
    if work and work:match("^/tmp/") then os.execute("rm -rf " .. q(work)) end
  end)

  it("builds and installs without errors", function()
    assert.is_true(make_ok, make_out)
    assert.matches("owinlua scm-1 is now installed", make_out, 1, true)
  end)

  it("installs bin/owinlua and the owin modules into the tree", function()
    assert.is_true(make_ok, make_out)
    assert.is_true(select(2, sh("test -x " .. q(tree .. "/bin/owinlua"))), "no executable bin/owinlua")
    for _, m in ipairs({ "init.lua", "cli.lua" }) do
      assert.is_true(exists(tree .. "/share/lua/5.4/owin/" .. m), "share/lua/5.4/owin/" .. m .. " missing")
    end
  end)

  it("checks an app from another working directory", function()
    assert.is_true(make_ok, make_out)
    local out, ok = sh(string.format("cd %s && %s --check %s", q(elsewhere), q(tree .. "/bin/owinlua"),
      q(root .. "/apps/hello.lua")))
    assert.is_true(ok, out)
    assert.are.equal(root .. "/apps/hello.lua: ok\n", out)
  end)

  it("serves apps/hello.lua from another working directory", function()
    assert.is_true(make_ok, make_out)
    local srv = start_in(elsewhere, tree .. "/bin/owinlua", root .. "/apps/hello.lua")
    finally(function()
      local ok, how, code = srv.stop()
      assert.are.same({ true, "exit", 0 }, { ok, how, code }, srv.stderr())
    end)
    assert.is_number(srv.port)
    local res = assert(http.get(srv.port, "/"))
    assert.are.equal(200, res.status)
    assert.are.equal("Hello World", res.body)
  end)

  it("loads its Lua modules from the tree it was installed into", function()
    assert.is_true(make_ok, make_out)
    local app = elsewhere .. "/where.lua"
    local fh = assert(io.open(app, "w"))
    fh:write([[
      return function(env)
        env["owin.ResponseBody"]:write(package.searchpath("owin.cli", package.path) or "?")
      end
    ]])
    fh:close()
    local srv = start_in(elsewhere, tree .. "/bin/owinlua", app)
    finally(function() srv.stop() end)
    local res = assert(http.get(srv.port, "/"))
    assert.are.equal(tree .. "/bin/../share/lua/5.4/owin/cli.lua", res.body)
  end)
end)
