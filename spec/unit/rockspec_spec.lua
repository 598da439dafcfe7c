-- The rockspec and the Makefile describe the same build (STYLE.md, Build):
-- the Lua modules the Makefile installs are exactly the files under lua/,
-- the C sources it compiles are exactly the files under src/, and the
-- rockspec drives Makefile targets and variables that exist.
--
--   busted --lua=lua5.4 spec/unit/rockspec_spec.lua

local ROCKSPEC = "owinlua-scm-1.rockspec"

local function read(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

-- The rockspec's globals, run as Lua in an empty sandbox.
local function load_rockspec()
  local sandbox = {}
  local chunk = assert(loadfile(ROCKSPEC, "t", sandbox))
  chunk()
  return sandbox
end

-- The Makefile with continuation lines joined.
local makefile = read("Makefile"):gsub("\\\n", " ")

-- The words of `NAME = ...` (a plain assignment, not ?=).
local function make_list(name)
  local value = makefile:match("\n" .. name .. "%s*=%s*([^\n]*)")
  assert(value, "no " .. name .. " = line in the Makefile")
  local words = {}
  for w in value:gmatch("%S+") do words[#words + 1] = w end
  table.sort(words)
  return words
end

-- Explicit targets ("name:" at the start of a line, not "VAR :=").
local function make_targets()
  local targets = {}
  for line in makefile:gmatch("[^\n]+") do
    local names = line:match("^([%w_%-%./ ]+):[^=]")  or line:match("^([%w_%-%./ ]+):$")
    if names then
      for t in names:gmatch("%S+") do targets[t] = true end
    end
  end
  return targets
end

-- Variables the Makefile lets the caller set (`NAME ?= ...`).
local function make_variables()
  local vars = {}
  for name in makefile:gmatch("\n([%w_]+)%s*%?=") do vars[name] = true end
  return vars
end

-- Sorted output lines of a shell command.
local function lines_of(cmd)
  local proc = assert(io.popen(cmd))
  local out = {}
  for line in proc:lines() do out[#out + 1] = line end
  proc:close()
  table.sort(out)
  return out
end

describe("rockspec and Makefile #unit", function()
  local spec = load_rockspec()

  it("loads as Lua and names this package and version", function()
    assert.are.equal("owinlua", spec.package)
    assert.are.equal("scm-1", spec.version)
    assert.are.equal(ROCKSPEC, spec.package .. "-" .. spec.version .. ".rockspec")
    assert.is_string(spec.source and spec.source.url)
    assert.are.equal("MIT", spec.description.license)
    assert.is_string(spec.description.summary)
  end)

  it("depends on Lua 5.4", function()
    assert.are.same({ "lua >= 5.4" }, spec.dependencies)
  end)

  it("installs exactly the Lua modules under lua/", function()
    assert.are.same(lines_of("find lua -type f -name '*.lua'"), make_list("LUA_MODULES"))
  end)

  it("installs modules that sit under lua/owin/ (install keeps the path below lua/)", function()
    for _, m in ipairs(make_list("LUA_MODULES")) do
      assert.matches("^lua/owin/[%w_/]+%.lua$", m)
    end
  end)

  it("compiles every C file under src/, into the server or the codec test module", function()
    local built = {}
    for _, f in ipairs(make_list("SRCS")) do built[f] = true end
    for _, f in ipairs(make_list("CODEC_SRCS")) do built[f] = true end
    for _, f in ipairs(lines_of("find src -type f -name '*.c'")) do
      assert.is_true(built[f] == true, f .. " is built by no Makefile list")
    end
    for _, f in ipairs(make_list("CODEC_SRCS")) do
      if f ~= "src/runtime/codec_lua.c" then
        assert.is_true(table.concat(make_list("SRCS"), " "):find(f, 1, true) ~= nil,
          f .. " is tested as a codec but not in the server")
      end
    end
  end)

  it("is a make build", function()
    assert.are.equal("make", spec.build.type)
  end)

  it("drives Makefile targets that exist", function()
    local targets = make_targets()
    local build_target = spec.build.build_target
    if build_target == nil or build_target == "" then build_target = "all" end
    local install_target = spec.build.install_target or "install"
    assert.is_true(targets[build_target], "no Makefile target " .. build_target)
    assert.is_true(targets[install_target], "no Makefile target " .. install_target)
  end)

  it("sets only variables the Makefile declares with ?=", function()
    local declared = make_variables()
    for _, group in ipairs({ "variables", "build_variables", "install_variables" }) do
      for name in pairs(spec.build[group] or {}) do
        assert.is_true(declared[name], group .. "." .. name .. " is not a ?= variable of the Makefile")
      end
    end
  end)

  it("passes LuaRocks' own directories and compiler settings", function()
    local vars = {}
    for _, group in ipairs({ "variables", "build_variables" }) do
      for k, v in pairs(spec.build[group] or {}) do vars[k] = v end
    end
    local install = {}
    for _, group in ipairs({ "variables", "install_variables" }) do
      for k, v in pairs(spec.build[group] or {}) do install[k] = v end
    end
    assert.matches("$(CFLAGS)", vars.CFLAGS, 1, true)
    assert.are.equal("$(LUA_INCDIR)", vars.LUA_INCDIR)
    assert.are.equal("$(BINDIR)", install.BINDIR)
    assert.are.equal("$(LUADIR)", install.LUADIR)
  end)

  it("installs into the directories the rockspec passes", function()
    local install = makefile:match("\ninstall:[^\n]*\n(.-)\n\n")
    assert.is_string(install, "no install recipe")
    assert.matches("$(BINDIR)", install, 1, true)
    assert.matches("$(LUADIR)", install, 1, true)
    assert.matches("$(LUA_MODULES)", install, 1, true)
  end)
end)
