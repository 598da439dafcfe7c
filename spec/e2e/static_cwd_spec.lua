-- owin.static's relative root through the real server started from other
-- working directories: the root is found next to the app script wherever
-- the server runs, and a missing one is reported with the path it was
-- resolved to.
--
--   busted --lua=lua5.4 spec/e2e/static_cwd_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local PWD = os.getenv("PWD")
local HELLO = "Hello, static world!\n"

local function write_file(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- Starts `app` in `cwd`, GETs each path, stops; returns the responses.
local function serve(cwd, app, paths)
  local srv = server.start(app, nil, { cwd = cwd })
  local out = {}
  for i, p in ipairs(paths) do out[i] = assert(http.get(srv.port, p)) end
  local ok, how, code = srv:stop()
  assert.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  return out
end

describe("#e2e owin.static's root", function()
  it("is next to the script when the server starts in / with the script's absolute path", function()
    local res = serve("/", PWD .. "/spec/fixtures/static.lua", { "/hello.txt", "/sub/" })
    assert.equal(200, res[1].status)
    assert.equal(HELLO, res[1].body)
    assert.equal(200, res[2].status)
  end)

  it("is next to the script when the script's path is relative to another directory", function()
    local res = serve(PWD .. "/spec", "fixtures/static.lua", { "/hello.txt" })
    assert.equal(HELLO, res[1].body)
  end)

  it("serves apps/static.lua's public/ from a directory that has none", function()
    local res = serve("/tmp", PWD .. "/apps/static.lua", { "/", "/hello.txt" })
    assert.equal(200, res[1].status)
    assert.equal("text/html; charset=utf-8", res[1].headers["content-type"])
    assert.equal(server.read_file("apps/public/hello.txt"), res[2].body)
  end)

  describe("when missing", function()
    local dir
    setup(function()
      dir = assert(io.popen("mktemp -d /tmp/owl-static-cwd.XXXXXX")):read("l")
      write_file(dir .. "/app.lua", 'app.use(require("owin.static")("missing"))\n')
    end)
    teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

    it("stops the start with the resolved path, from any working directory", function()
      for _, run in ipairs({ { cwd = "/", app = dir .. "/app.lua" }, { cwd = dir, app = "app.lua" },
                             { cwd = "/tmp", app = dir:sub(6) .. "/app.lua" } }) do
        local out, err, code = server.run({ "--check", run.app }, { cwd = run.cwd })
        assert.equal(1, code, err)
        assert.equal("", out)
        assert.matches("owin%.static: bad root missing %(resolved to " .. dir:gsub("%p", "%%%0") ..
          "/missing%): ENOENT: no such file or directory", err)
      end
    end)
  end)
end)
