-- owin.router through the real owinlua binary (spec/fixtures/router.lua):
-- what crosses the C core: the path as the core decodes it, HEAD without a
-- body, 204 and 405 framing with Allow, PathBase under a mount, and a
-- script that returns a router.
--
--   busted --lua=lua5.4 spec/e2e/router_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local function stop(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code }, "owinlua did not exit cleanly:\n" .. srv:stderr())
end

describe("owin.router through the server #e2e", function()
  local srv
  setup(function() srv = server.start("spec/fixtures/router.lua") end)
  teardown(function() stop(srv) end)

  local function get(path, method)
    return assert(http.get(srv.port, path, nil, method))
  end

  it("routes by method and path, with captures and a constraint", function()
    assert.are.equal("list  /todos", get("/todos").body)
    assert.are.equal("create  /todos", get("/todos", "POST").body)
    assert.are.equal("show  /todos/42 id=42", get("/todos/42").body)
    assert.are.equal("update  /todos/42 id=42", get("/todos/42", "PUT").body)
    assert.are.equal("files  /files/a/b/c.css path=a/b/c.css", get("/files/a/b/c.css").body)
    assert.are.equal("fell through /nothing", get("/nothing").body)
    assert.are.equal("fell through /todos/", get("/todos/").body)
  end)

  it("captures what the core decoded, and never splits on %2F", function()
    assert.are.equal("show  /todos/a b id=a b", get("/todos/a%20b").body)
    assert.are.equal("show  /todos/a%2Fb id=a%2Fb", get("/todos/a%2Fb").body)
    assert.are.equal("show  /todos/a%2Fb id=a%2Fb", get("/todos/a%252Fb").body)
    assert.are.equal("files  /files/x%2Fy/z path=x%2Fy/z", get("/files/x%2Fy/z").body)
    assert.are.equal("hello é", get("/ctx/%C3%A9").body)
  end)

  it("answers 405 with Allow, OPTIONS with 204 and Allow", function()
    local res = get("/todos/x", "PUT")
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, OPTIONS", res.headers.allow)
    assert.are.equal("Method Not Allowed\n", res.body)
    assert.are.equal("19", res.headers["content-length"])
    res = get("/todos", "DELETE")
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, POST, OPTIONS", res.headers.allow)
    res = get("/todos/1", "OPTIONS")
    assert.are.equal(204, res.status)
    assert.are.equal("GET, HEAD, PUT, OPTIONS", res.headers.allow)
    assert.is_nil(res.headers["content-length"])
  end)

  it("answers HEAD with the GET route's headers and no body", function()
    local c = assert(http.connect(srv.port))
    finally(function() c:close() end)
    assert(c:send("HEAD /todos/7 HTTP/1.1\r\nHost: x\r\n\r\nGET /todos/8 HTTP/1.1\r\nHost: x\r\n\r\n"))
    local head = assert(c:read_response({ method = "HEAD" }))
    assert.are.equal(200, head.status)
    assert.are.equal("text/plain", head.headers["content-type"])
    assert.are.equal(tostring(#"show  /todos/7 id=7"), head.headers["content-length"])
    local res = assert(c:read_response())
    assert.are.equal("show  /todos/8 id=8", res.body)
  end)

  it("moves a mount's prefix to PathBase, with the prefix's parameters", function()
    assert.are.equal("item /shops/s1/items /9 item=9 shop=s1", get("/shops/s1/items/9").body)
    assert.are.equal("items /shops/s1/items / shop=s1", get("/shops/s1/items").body)
    assert.are.equal("/todos/5", get("/link/5").body)
  end)

  it("mounts owin.static, which serves the path below the prefix", function()
    local f = assert(io.open("spec/fixtures/static_root/hello.txt", "rb"))
    local want = f:read("a")
    f:close()
    local res = get("/static/hello.txt")
    assert.are.equal(200, res.status)
    assert.are.equal(want, res.body)
    assert.matches("^text/plain", res.headers["content-type"])
    -- what it does not serve goes on past the router
    assert.are.equal("fell through /static/missing.txt", get("/static/missing.txt").body)
  end)

  it("serves a router given to app.run, as the whole app", function()
    local tmp = os.tmpname()
    local script = tmp .. ".lua"
    finally(function() os.remove(script); os.remove(tmp) end)
    local f = assert(io.open(script, "w"))
    f:write('app.run(require("owin.router").new():get("/x/:y", function(env) ',
      'env["owin.ResponseBody"]:write(env["owin.RouteParams"].y) end))')
    f:close()
    local other = server.start(script)
    finally(function() stop(other) end)
    assert.are.equal("hey", assert(http.get(other.port, "/x/hey")).body)
    assert.are.equal(404, assert(http.get(other.port, "/nope")).status)
  end)

  it("serves a script that returns a router", function()
    local tmp = os.tmpname()
    local script = tmp .. ".lua"
    finally(function() os.remove(script); os.remove(tmp) end)
    local f = assert(io.open(script, "w"))
    f:write('return require("owin.router").new():get("/hi/:who", function(env) ',
      'env["owin.ResponseBody"]:write("hi ", env["owin.RouteParams"].who) end)')
    f:close()
    local other = server.start(script)
    finally(function() stop(other) end)
    assert.are.equal("hi you", assert(http.get(other.port, "/hi/you")).body)
    assert.are.equal(404, assert(http.get(other.port, "/nope")).status)
  end)
end)
