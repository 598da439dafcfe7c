-- The two commands on a machine that has none of the packages yet.  On a
-- fresh machine the llhttp sources appear only while `make` runs, when the
-- install step (tools/install-deps) has installed node-llhttp; a Makefile
-- that reads its build graph before that step ends cannot build them.
--
-- Each test takes a clean copy of the checkout, points LLHTTP_SRCDIR at a
-- directory that does not exist yet, and gives make an install step (DEPS)
-- that creates it, as apt-get would.  Every target the README names must
-- then plan (make -n) or do the whole build in one run.
--
--   busted --lua=lua5.4 spec/e2e/build_spec.lua

local server = require("helpers.server")

local q = server.shell_quote

local shell = require("helpers.shell")
local sh, exists = shell.sh, shell.exists

-- Where the system's llhttp sources are, as the Makefile would find them.
local function system_llhttp()
  local dir = os.getenv("LLHTTP_SRCDIR") or "/usr/share/llhttp"
  assert(exists(dir .. "/llhttp.c"), "no llhttp sources in " .. dir .. ": run `make deps` first")
  return dir
end

describe("make on a machine without the packages #e2e", function()
  local root = assert(sh("pwd")):gsub("\n$", "")
  local work, src, later, marker, deps

  -- A clean copy of the checkout (no build/, no binaries) in src, and an
  -- install step that logs its run to `marker` and only then makes `later`
  -- with the llhttp sources in it.
  before_each(function()
    work = assert(sh("mktemp -d")):gsub("\n$", "")
    src, later, marker = work .. "/src", work .. "/later/llhttp", work .. "/deps-ran"
    assert(select(2, sh(string.format(
      "mkdir -p %s && tar -C %s --exclude=./build --exclude=./owinlua --exclude=./owinlua-asan " ..
      "--exclude=./.git --exclude=./spec/browser/node_modules --exclude=./bench/node_modules -cf - . | tar -C %s -xf -",
      q(src), q(root), q(src)))))
    deps = work .. "/deps.sh"
    local fh = assert(io.open(deps, "w"))
    fh:write(string.format("#!/bin/sh\necho ran >>%s\nmkdir -p %s\ncp %s/*.c %s/\n",
      q(marker), q(later), q(system_llhttp()), q(later)))
    fh:close()
  end)

  after_each(function()
    if work and work:match("^/tmp/") then os.execute("rm -rf " .. q(work)) end
  end)

  -- make in the copy with the late llhttp and the fake install step.
  local function make(args)
    return sh(string.format("cd %s && make DEPS=%s LLHTTP_SRCDIR=%s %s",
      q(src), q("sh " .. deps), q(later), args))
  end

  local function deps_runs()
    if not exists(marker) then return 0 end
    return #server.read_file(marker):gsub("[^\n]", "")
  end

  it("has no llhttp sources before the install step", function()
    assert.is_false(exists(later .. "/llhttp.c"))
  end)

  for _, target in ipairs({ "", "all", "owinlua", "run", "install DESTDIR=" .. "/nonexistent", "bench", "test" }) do
    it("plans `make " .. target .. "` with the llhttp sources built, in one run", function()
      local out, ok = make("-n " .. target)
      assert.is_true(ok, out)
      assert.equal(1, deps_runs(), "the install step ran " .. deps_runs() .. " times\n" .. out)
      -- the compile of each llhttp source file, from the directory made late
      for _, f in ipairs({ "llhttp", "api", "http" }) do
        assert.matches("-c -o build/llhttp/" .. f .. ".o " .. later .. "/" .. f .. ".c", out, 1, true)
      end
      assert.not_matches("No rule to make target", out, 1, true)
      -- a dry run runs nothing: no recipe line may name $(MAKE)
      assert.not_matches("== unit specs", out, 1, true)
    end)
  end

  it("builds owinlua in one `make` run", function()
    local out, ok = make("CFLAGS=-O0 all")
    assert.is_true(ok, out)
    assert.equal(1, deps_runs())
    local ver, vok = sh(q(src .. "/owinlua") .. " --version")
    assert.is_true(vok, ver)
    assert.matches("^owinlua ", ver)
    -- a second run finds everything done and does not install again
    out, ok = make("all")
    assert.is_true(ok, out)
    assert.equal(1, deps_runs())
    assert.matches("Nothing to be done", out, 1, true)
  end)

  it("reruns the install step when its package list changes", function()
    assert.is_true(select(2, make("-n owinlua")))
    assert.is_true(select(2, sh("sleep 1 && touch " .. q(src .. "/tools/install-deps"))))
    local out, ok = make("-n owinlua")
    assert.is_true(ok, out)
    assert.equal(2, deps_runs())
  end)

  it("stops with the install step's error when it fails", function()
    local out, ok = sh(string.format("cd %s && make DEPS=%s LLHTTP_SRCDIR=%s owinlua",
      q(src), q("sh -c 'echo cannot install >&2; exit 1'"), q(later)))
    assert.is_false(ok)
    assert.matches("cannot install", out, 1, true)
    assert.not_matches("No rule to make target", out, 1, true)
  end)

  it("cleans without installing anything", function()
    local out, ok = make("clean")
    assert.is_true(ok, out)
    assert.equal(0, deps_runs())
  end)
end)
