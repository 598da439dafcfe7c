-- owin.cors through the real server (spec/fixtures/cors.lua): a preflight
-- answered 204 with no body on a kept-alive connection, the request after
-- it, and a refused origin.
--
--   busted --lua=lua5.4 spec/e2e/cors_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")

local SITE = "https://app.example"

describe("#e2e owin.cors", function()
  local srv

  setup(function() srv = server.start("spec/fixtures/cors.lua") end)
  teardown(function()
    local ok, how, code = srv:stop()
    assert.same({ true, "exit", 0 }, { ok, how, code }, srv:stderr())
  end)

  it("answers a preflight with 204 and no body, then serves the request on the same connection", function()
    local c = assert(http.connect(srv.port))
    finally(function() c:close() end)
    assert(c:send("OPTIONS /things/1 HTTP/1.1\r\nHost: api.example\r\nOrigin: " .. SITE .. "\r\n" ..
      "Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"))
    local pre = assert(c:read_response())
    assert.equal(204, pre.status)
    assert.equal("", pre.body)
    assert.is_nil(pre.headers["content-length"])
    assert.equal(SITE, pre.headers["access-control-allow-origin"])
    assert.equal("true", pre.headers["access-control-allow-credentials"])
    assert.equal("GET, HEAD, PUT, PATCH, POST, DELETE", pre.headers["access-control-allow-methods"])
    assert.equal("content-type", pre.headers["access-control-allow-headers"])
    assert.equal("600", pre.headers["access-control-max-age"])
    assert(c:send("PUT /things/1 HTTP/1.1\r\nHost: api.example\r\nOrigin: " .. SITE .. "\r\n" ..
      "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
    local res = assert(c:read_response())
    assert.equal(200, res.status)
    assert.equal("app saw PUT", res.body)
    assert.equal(SITE, res.headers["access-control-allow-origin"])
    assert.equal("X-Request-Id", res.headers["access-control-expose-headers"])
    assert.equal("Origin", res.headers["vary"])
    assert.is_not_nil(res.headers["x-request-id"])
  end)

  it("gives a refused origin no CORS header, and still runs the app for it", function()
    local res = assert(http.get(srv.port, "/things", { Origin = "https://evil.example" }))
    assert.equal("app saw GET", res.body)
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.is_nil(res.headers["access-control-allow-credentials"])
    local pre = assert(http.get(srv.port, "/things", { Origin = "https://evil.example",
      ["Access-Control-Request-Method"] = "DELETE" }, "OPTIONS"))
    assert.equal(204, pre.status)
    assert.is_nil(pre.headers["access-control-allow-origin"])
    assert.is_nil(pre.headers["access-control-allow-methods"])
  end)
end)
