-- Where owin.static's root is: owin.app_dir (set by the loaders, owin.cli
-- and owin.test), and static(root) resolving a relative root against it and
-- naming the resolved path in its errors.  The file system is a fake
-- (static's `fs` option), so these run in plain Lua; spec/e2e/static_cwd_spec.lua
-- starts the real server from other working directories.
--
--   busted --lua=lua5.4 spec/unit/static_root_spec.lua

local owin = require("owin")
local static = require("owin.static")
local test = require("owin.test")
local cli = require("owin.cli")

local PWD = os.getenv("PWD")

-- A file system of directories only: realpath of a known one is itself
-- (with "/./" and a final "/" cleaned), others fail as the C core's do.
local function fake_fs(dirs)
  local asked = {}
  local fs = {}
  function fs.realpath(p)
    asked[#asked + 1] = p
    if p == "." then return dirs["."] end
    p = p:gsub("/%./", "/"):gsub("/$", "")
    if dirs[p] then return p end
    return nil, "ENOENT: no such file or directory (" .. p .. ")", "ENOENT"
  end
  function fs.stat(p)
    if dirs[p] then return { type = dirs[p], size = 0, mtime = 0, mode = 0 } end
    return nil, "ENOENT: no such file or directory (" .. p .. ")", "ENOENT"
  end
  return fs, asked
end

local function tmpdir()
  return assert(io.popen("mktemp -d /tmp/owl-static-root.XXXXXX")):read("l")
end

describe("owin.app_dir", function()
  after_each(function() owin.set_app_dir(nil) end)

  it("is nil until a script is loaded", function()
    owin.set_app_dir(nil)
    assert.is_nil(owin.app_dir())
  end)

  it("is made absolute by set_app_dir", function()
    assert.equal(PWD .. "/spec/fixtures", owin.set_app_dir("spec/fixtures"))
    assert.equal(PWD .. "/spec/fixtures", owin.app_dir())
    assert.equal(PWD .. "/spec", owin.set_app_dir("./spec"))
    assert.equal(PWD, owin.set_app_dir("."))
    assert.equal("/srv/app", owin.set_app_dir("/srv/app"))
    assert.error_matches(function() owin.set_app_dir(5) end,
      "bad argument #1 to 'set_app_dir' %(directory path expected, got number%)")
  end)

  it("is the directory of the script owin.cli loads", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local f = assert(io.open(dir .. "/app.lua", "w"))
    f:write("app.run(function() end)\n")
    f:close()
    assert(cli.load_app(dir .. "/app.lua"))
    assert.equal(dir, owin.app_dir())
  end)

  it("is the directory of the script owin.test loads, absolute", function()
    test.client("spec/fixtures/pipeline.lua")
    assert.equal(PWD .. "/spec/fixtures", owin.app_dir())
  end)
end)

describe("owin.static's root", function()
  after_each(function() owin.set_app_dir(nil) end)

  it("is resolved against the app script's directory when relative", function()
    local fs, asked = fake_fs({ ["/srv/app/public"] = "directory", ["."] = "/somewhere/else" })
    owin.set_app_dir("/srv/app")
    assert.is_function(static("public", { fs = fs }))
    assert.equal("/srv/app/public", asked[1])
    assert.is_function(static("./public", { fs = fs }))
    assert.equal("/srv/app/public", asked[#asked])
  end)

  it("is taken as it is when absolute", function()
    local fs, asked = fake_fs({ ["/var/www"] = "directory" })
    owin.set_app_dir("/srv/app")
    assert.is_function(static("/var/www", { fs = fs }))
    assert.same({ "/var/www" }, asked)
  end)

  it("is resolved against the working directory when no script was loaded", function()
    local fs, asked = fake_fs({ ["/work/public"] = "directory", ["."] = "/work" })
    assert.is_function(static("public", { fs = fs }))
    assert.equal("/work/public", asked[#asked])
  end)

  it("names the resolved path when it is missing", function()
    local fs = fake_fs({})
    owin.set_app_dir("/srv/app")
    local ok, err = pcall(function() local mw = static("public", { fs = fs }); return mw end)
    assert.is_false(ok)
    assert.matches("static_root_spec%.lua:%d+: owin%.static: bad root public %(resolved to " ..
      "/srv/app/public%): ENOENT: no such file or directory$", err)
  end)

  it("names the resolved path when it is not a directory", function()
    local fs = fake_fs({ ["/srv/app/index.html"] = "file" })
    owin.set_app_dir("/srv/app")
    assert.error_matches(function() static("index.html", { fs = fs }) end,
      "owin%.static: bad root index%.html %(resolved to /srv/app/index%.html%): not a directory$")
  end)

  it("names an absolute root as given", function()
    assert.error_matches(function() static("/nonexistent", { fs = fake_fs({}) }) end,
      "owin%.static: bad root /nonexistent: ENOENT: no such file or directory$")
  end)
end)
