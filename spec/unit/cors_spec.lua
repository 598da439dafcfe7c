-- owin.cors (lua/owin/cors.lua, docs/middleware.md) through the owin.test
-- host: preflights, actual requests, origins as "*", a list or a function,
-- credentials, the null origin, case, Vary, and the option errors.  The
-- expectations follow the CORS protocol of the Fetch standard.
--
--   busted --lua=lua5.4 spec/unit/cors_spec.lua

local test = require("owin.test")
local owin = require("owin")
local cors = require("owin.cors")

local SITE = "https://app.example"

-- A client for cors(opts) in front of an app that counts its calls and
-- answers 200 "app" (with a header of its own, for expose).
local function client(opts)
  local calls = { n = 0 }
  local app = owin.new()
  app.use(cors(opts))
  app.run(function(env)
    calls.n = calls.n + 1
    calls.env = env
    env["owin.ResponseHeaders"]["X-Total"] = "7"
    env["owin.ResponseBody"]:write("app")
  end)
  return test.client(app), calls
end

local function preflight(c, origin, method, headers)
  local h = { Origin = origin, ["Access-Control-Request-Method"] = method or "PUT" }
  if headers then h["Access-Control-Request-Headers"] = headers end
  return c:options("/things/1", { headers = h })
end

-- The Access-Control-* headers of a response, by lowercase name.
local function acl(res)
  local t = {}
  for name, v in pairs(res.headers) do
    if name:find("^access%-control%-") then t[name] = v end
  end
  return t
end

describe("owin.cors", function()
  describe("a preflight", function()
    it("from an allowed origin gets 204 with the allowed methods and headers, and never reaches the app", function()
      local c, calls = client{ origins = { SITE }, max_age = 600 }
      local res = preflight(c, SITE, "PUT", "content-type, x-token")
      assert.equal(204, res.status)
      assert.equal("", res.body)
      assert.equal(0, calls.n)
      assert.same({
        ["access-control-allow-origin"] = SITE,
        ["access-control-allow-methods"] = "GET, HEAD, PUT, PATCH, POST, DELETE",
        ["access-control-allow-headers"] = "content-type, x-token",
        ["access-control-max-age"] = "600",
      }, acl(res))
      assert.equal("Origin, Access-Control-Request-Headers", res.headers["vary"])
    end)

    it("from a refused origin gets 204 without any CORS header, and never reaches the app", function()
      local c, calls = client{ origins = { SITE } }
      local res = preflight(c, "https://evil.example", "PUT", "x-token")
      assert.equal(204, res.status)
      assert.equal(0, calls.n)
      assert.same({}, acl(res))
      assert.equal("Origin", res.headers["vary"])
    end)

    it("sends the configured methods and headers, not what was asked", function()
      local c = client{ origins = { SITE }, methods = { "GET", "POST" }, headers = { "Content-Type" } }
      local res = preflight(c, SITE, "DELETE", "x-other")
      assert.equal("GET, POST", res.headers["access-control-allow-methods"])
      assert.equal("Content-Type", res.headers["access-control-allow-headers"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("echoes the method asked for with methods = \"*\"", function()
      local c = client{ origins = { SITE }, methods = "*", credentials = true }
      local res = preflight(c, SITE, "PURGE")
      assert.equal("PURGE", res.headers["access-control-allow-methods"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.is_nil(res.headers["access-control-allow-headers"])   -- none asked for
      assert.matches("Access%-Control%-Request%-Method", res.headers["vary"])
    end)

    it("keeps the method's case: the Fetch standard compares methods byte for byte", function()
      local c = client{ origins = { SITE }, methods = { "PATCH" } }
      local res = preflight(c, SITE, "patch")
      assert.equal("PATCH", res.headers["access-control-allow-methods"])
    end)

    it("has no Max-Age unless one is set", function()
      local c = client{ origins = { SITE } }
      assert.is_nil(preflight(c, SITE).headers["access-control-max-age"])
    end)

    it("is only an OPTIONS with Access-Control-Request-Method: a plain OPTIONS reaches the app", function()
      local c, calls = client{ origins = { SITE } }
      local res = c:options("/things", { headers = { Origin = SITE } })
      assert.equal(200, res.status)
      assert.equal(1, calls.n)
      assert.equal(SITE, res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-allow-methods"])
      -- and a GET that carries Access-Control-Request-Method is an actual request
      res = c:get("/things", { headers = { Origin = SITE, ["Access-Control-Request-Method"] = "GET" } })
      assert.equal("app", res.body)
      assert.equal(2, calls.n)
    end)

    it("without an Origin is not a preflight", function()
      local c, calls = client{ origins = { SITE } }
      local res = c:options("/things", { headers = { ["Access-Control-Request-Method"] = "PUT" } })
      assert.equal(1, calls.n)
      assert.equal("app", res.body)
    end)
  end)

  describe("an actual request", function()
    it("from an allowed origin gets the origin echoed, Vary: Origin and the exposed headers", function()
      local c, calls = client{ origins = { SITE, "http://localhost:3000" }, expose = { "X-Total", "ETag" } }
      local res = c:get("/things", { headers = { Origin = "http://localhost:3000" } })
      assert.equal(200, res.status)
      assert.equal("app", res.body)
      assert.equal(1, calls.n)
      assert.same({
        ["access-control-allow-origin"] = "http://localhost:3000",
        ["access-control-expose-headers"] = "X-Total, ETag",
      }, acl(res))
      assert.equal("Origin", res.headers["vary"])
    end)

    it("from a refused origin still reaches the app, without any CORS header", function()
      local c, calls = client{ origins = { SITE }, credentials = true, expose = { "X-Total" } }
      local res = c:post("/things", { headers = { Origin = "https://evil.example" }, body = "x" })
      assert.equal(1, calls.n)
      assert.equal("app", res.body)
      assert.same({}, acl(res))
      assert.equal("Origin", res.headers["vary"])
    end)

    it("without an Origin gets no CORS header but Vary: Origin, for caches", function()
      local c, calls = client{ origins = { SITE } }
      local res = c:get("/things")
      assert.equal(1, calls.n)
      assert.same({}, acl(res))
      assert.equal("Origin", res.headers["vary"])
    end)

    it("adds Origin to a Vary that is already there", function()
      local app = owin.new()
      app.use(function(env, next)
        env["owin.ResponseHeaders"]["Vary"] = "Accept-Encoding"
        next()
      end)
      app.use(cors{ origins = { SITE } })
      app.run(function(env) env["owin.ResponseBody"]:write("x") end)
      local res = test.client(app):get("/", { headers = { Origin = SITE } })
      assert.equal("Accept-Encoding, Origin", res.headers["vary"])
    end)

    it("with several Origin headers is refused", function()
      local c = client{ origins = { SITE } }
      local res = c:get("/", { headers = { Origin = { SITE, SITE } } })
      assert.same({}, acl(res))
      res = c:get("/", { headers = { Origin = SITE .. " " .. SITE } })
      assert.same({}, acl(res))
    end)
  end)

  describe("origins = \"*\"", function()
    it("is the default, and answers * to everyone without Vary", function()
      local c = client()
      local res = c:get("/", { headers = { Origin = "https://anyone.example" } })
      assert.equal("*", res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["vary"])
      res = c:get("/")                               -- the same answer without an Origin
      assert.equal("*", res.headers["access-control-allow-origin"])
      res = preflight(c, "https://anyone.example", "PUT")
      assert.equal(204, res.status)
      assert.equal("*", res.headers["access-control-allow-origin"])
    end)

    it("lets the null origin in without credentials (as *)", function()
      local res = client{ origins = "*" }:get("/", { headers = { Origin = "null" } })
      assert.equal("*", res.headers["access-control-allow-origin"])
    end)

    it("with credentials echoes the origin, never *", function()
      local c = client{ origins = "*", credentials = true }
      local res = c:get("/", { headers = { Origin = SITE } })
      assert.equal(SITE, res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
      assert.equal("Origin", res.headers["vary"])
      res = preflight(c, SITE, "PUT", "authorization")
      assert.equal(SITE, res.headers["access-control-allow-origin"])
      assert.equal("authorization", res.headers["access-control-allow-headers"])
    end)

    it("with credentials refuses the null origin, which any sandboxed page can send", function()
      local c = client{ origins = "*", credentials = true }
      assert.same({}, acl(c:get("/", { headers = { Origin = "null" } })))
      assert.same({}, acl(preflight(c, "null", "PUT")))
    end)
  end)

  describe("the null origin", function()
    it("is allowed when listed, and echoed as null", function()
      local c = client{ origins = { "null" }, credentials = true }
      local res = c:get("/", { headers = { Origin = "null" } })
      assert.equal("null", res.headers["access-control-allow-origin"])
      assert.equal("true", res.headers["access-control-allow-credentials"])
    end)

    it("is refused when not listed", function()
      assert.same({}, acl(client{ origins = { SITE } }:get("/", { headers = { Origin = "null" } })))
    end)
  end)

  describe("origin matching", function()
    it("ignores the case of scheme and host, and echoes the origin as sent", function()
      local c = client{ origins = { "https://App.Example" } }
      local res = c:get("/", { headers = { Origin = "HTTPS://APP.EXAMPLE" } })
      assert.equal("HTTPS://APP.EXAMPLE", res.headers["access-control-allow-origin"])
    end)

    it("treats a configured default port as the origin browsers send without it", function()
      local c = client{ origins = { "https://app.example:443", "http://[::1]:80" } }
      assert.equal(SITE, c:get("/", { headers = { Origin = SITE } }).headers["access-control-allow-origin"])
      assert.equal("http://[::1]",
        c:get("/", { headers = { Origin = "http://[::1]" } }).headers["access-control-allow-origin"])
    end)

    it("tells ports and schemes apart", function()
      local c = client{ origins = { SITE } }
      assert.same({}, acl(c:get("/", { headers = { Origin = "http://app.example" } })))
      assert.same({}, acl(c:get("/", { headers = { Origin = "https://app.example:8443" } })))
      assert.same({}, acl(c:get("/", { headers = { Origin = "https://app.example.evil" } })))
      assert.same({}, acl(c:get("/", { headers = { Origin = "https://sub.app.example" } })))
    end)

    it("asks a function with the origin and the env", function()
      local seen
      local c = client{ origins = function(origin, env)
        seen = { origin, env["owin.RequestPath"] }
        return origin:match("^https://[%w-]+%.app%.example$") ~= nil
      end, credentials = true }
      local res = c:get("/p", { headers = { Origin = "https://beta.app.example" } })
      assert.same({ "https://beta.app.example", "/p" }, seen)
      assert.equal("https://beta.app.example", res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
      assert.same({}, acl(c:get("/", { headers = { Origin = "https://evil.example" } })))
    end)
  end)

  describe("credentials", function()
    it("are not announced unless asked for", function()
      local res = client{ origins = { SITE } }:get("/", { headers = { Origin = SITE } })
      assert.is_nil(res.headers["access-control-allow-credentials"])
    end)
  end)

  describe("options", function()
    local function fails(opts, pattern)
      local ok, err = pcall(function() local mw = cors(opts); return mw end)
      assert.is_false(ok)
      assert.matches(pattern, err)
      assert.matches("cors_spec%.lua:%d+:", err)          -- at the caller's line
    end

    it("name a mistyped option", function()
      fails({ origin = SITE }, "bad option 'origin' to 'cors' %(unknown option %(did you mean 'origins'%?%)%)")
      fails({ maxAge = 5 }, "did you mean 'max_age'")
      fails("*", "bad argument #1 to 'cors' %(table of options expected, got string%)")
    end)

    it("refuse what is not an origin, a final slash included", function()
      fails({ origins = { "https://app.example/" } }, "bad option 'origins' to 'cors' %(item #1, " ..
        "\"https://app.example/\", is not an origin")
      fails({ origins = { SITE, "app.example" } }, "item #2")
      fails({ origins = { SITE, "*" } }, "\"%*\" must be the whole option")
      fails({ origins = {} }, "the list is empty")
      fails({ origins = 5 }, "bad option 'origins'")
    end)

    it("refuse expose = \"*\" with credentials, which the Fetch standard takes literally", function()
      fails({ expose = "*", credentials = true }, "bad option 'expose' to 'cors' %(\"%*\" does not work with credentials")
      assert.is_function(cors{ expose = "*" })
    end)

    it("check methods, headers, credentials and max_age", function()
      fails({ methods = { "GET", "BAD METHOD" } }, "bad option 'methods' to 'cors' %(item #2 is not a name")
      fails({ headers = 5 }, "bad option 'headers'")
      fails({ credentials = "yes" }, "bad option 'credentials' to 'cors' %(boolean expected, got string%)")
      fails({ max_age = -1 }, "bad option 'max_age'")
      fails({ max_age = 1.5 }, "bad option 'max_age'")
    end)

    it("take a comma-separated string for a list", function()
      local c = client{ origins = SITE, methods = "GET, POST", expose = "X-Total" }
      local res = preflight(c, SITE, "POST")
      assert.equal("GET, POST", res.headers["access-control-allow-methods"])
      assert.equal("X-Total", c:get("/", { headers = { Origin = SITE } }).headers["access-control-expose-headers"])
    end)
  end)
end)
