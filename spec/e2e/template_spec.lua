-- owin.template through the real owinlua binary: spec/fixtures/template.lua
-- and its template_views/, copied to a temporary directory and run from
-- there (the root is found beside the script, not in the server's current
-- directory), rendered with ctx.response:render; a template error's line
-- in the server's log; a template edited while the server runs, through
-- owin.fs.stat of the C core.
--
--   busted --lua=lua5.4 spec/e2e/template_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local q = server.shell_quote

local function sh(cmd)
  assert(os.execute(cmd), "failed: " .. cmd)
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local PAGE = table.concat({
  "<!doctype html>",
  "<title>Hello &lt;script&gt;</title>",
  '<main data-path="/">',
  "<h1>Hello &lt;script&gt;</h1>",
  "<ul>",
  "<li>tea</li>",
  "<li>&lt;b&gt;cake&lt;/b&gt;</li>",
  "</ul>",
  "</main>",
  "",
}, "\n")

describe("owin.template through the server #e2e", function()
  local dir, srv

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p " .. q(dir))
    sh("cp -R spec/fixtures/template.lua spec/fixtures/template_views " .. q(dir))
    srv = server.start(dir .. "/template.lua")
  end)

  teardown(function()
    local ok, how, code = srv:stop()
    sh("rm -rf " .. q(dir))
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, "owinlua did not exit cleanly:\n" ..
      srv:stderr())
  end)

  it("renders a page in its layout, with partials, escaping what the request sent", function()
    local res = assert(http.get(srv.port, "/?name=%3Cscript%3E"))
    assert.are.equal(200, res.status)
    assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
    assert.are.equal(tostring(#PAGE), res.headers["content-length"])
    assert.are.equal(PAGE, res.body)
  end)

  it("answers 500 and logs the template's file and line", function()
    local res = assert(http.get(srv.port, "/broken"))
    assert.are.equal(500, res.status)
    assert.is_nil(res.body:find("broken.html", 1, true), "the error stays out of the page")
    local want = dir .. "/template_views/broken.html:3: attempt to index a nil value (global 'user')"
    assert.truthy(server.eventually(function() return srv:stderr():find(want, 1, true) end),
      "not in the log:\n" .. srv:stderr())
    assert.are.equal(200, assert(http.get(srv.port, "/")).status)
  end)

  it("sees a template edited while it runs, even in the second it was read", function()
    local item = dir .. "/template_views/partials/item.html"
    assert.matches("<li>tea</li>", assert(http.get(srv.port, "/")).body)
    write_file(item, "<li><%= item %>!</li>\n")                  -- another size
    assert.matches("<li>tea!</li>", assert(http.get(srv.port, "/")).body)
    write_file(item, "<li><%= item %>?</li>\n")                  -- the same size, at once
    assert.matches("<li>tea%?</li>", assert(http.get(srv.port, "/")).body)
    write_file(item, "<li><%= item %></li>\n")
  end)
end)
