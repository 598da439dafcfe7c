-- The error middleware (lua/owin/errors.lua, docs/errors.md), owin.error,
-- owin.assert and owin.dev, through owin.test.
--
--   busted --lua=lua5.4 spec/unit/errors_spec.lua

local test = require("owin.test")
local owin = require("owin")
local errors = require("owin.errors")
local json = require("owin.json")
local context = require("owin.context")

-- A client for an app behind errors(opts); routes: path -> function(env).
local function client(routes, opts, copts)
  local app = owin.new()
  app.use(errors(opts))
  app.run(function(env)
    local f = routes[env["owin.RequestPath"]]
    if f then return f(env) end
    env["owin.ResponseBody"]:write("ok")
  end)
  return test.client(app, copts)
end

local function get(c, path, accept)
  return c:get(path, { headers = { Accept = accept } })
end

-- Captures owin.log.error's lines (and the request id each was logged in)
-- while f runs.
local function logged(f)
  local lines, saved = {}, owin.log.error
  owin.log.error = function(fmt, ...)
    lines[#lines + 1] = { string.format(fmt, ...), owin.request_id() }
  end
  local ok, err = pcall(f)
  owin.log.error = saved
  assert(ok, err)
  return lines
end

describe("owin.errors #unit", function()
  describe("negotiate", function()
    local N = errors.negotiate
    local OFFERS = { "application/json", "application/problem+json", "text/html" }

    it("picks the offer with the highest q, the first offer among equals", function()
      assert.are.equal("application/json", N("*/*", OFFERS))
      assert.are.equal("application/json", N(nil, OFFERS))
      assert.are.equal("application/json", N("  ", OFFERS))
      assert.are.equal("text/html", N("text/html", OFFERS))
      assert.are.equal("text/html",
        N("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", OFFERS))
      assert.are.equal("application/json", N("application/json, text/plain, */*", OFFERS))
      assert.are.equal("application/problem+json", N("application/problem+json", OFFERS))
      assert.are.equal("application/json", N("application/*", OFFERS))
      assert.are.equal("text/html", N("text/*;q=0.9, application/json;q=0.5", OFFERS))
      assert.are.equal("text/html", N("TEXT/HTML", OFFERS))
    end)

    it("takes the most specific range's q, even when it is lower", function()
      assert.are.equal("text/html", N("application/json;q=0, application/problem+json;q=0, */*",
        OFFERS))
      assert.are.equal("application/problem+json", N("application/json;q=0, */*", OFFERS))
      assert.are.equal("text/html", N("text/html;q=0.2, */*;q=0.1", OFFERS))
    end)

    it("returns nil when nothing offered is acceptable, and ignores bad q", function()
      assert.is_nil(N("image/png", OFFERS))
      assert.is_nil(N("*/*;q=0", OFFERS))
      assert.is_nil(N("text/html;q=2", OFFERS))
      assert.is_nil(N("text/html;q=x", OFFERS))
      assert.are.equal("text/html", N("text/html;level=1;q=0.5", OFFERS))
      assert.has_error(function() N("*/*", {}) end,
        "bad argument #2 to 'negotiate' (an array of media types expected)")
    end)
  end)

  describe("owin.error", function()
    it("answers its status and message, as JSON by default", function()
      local c = client({ ["/x"] = function() owin.error(404, "no todo 7") end })
      local res = get(c, "/x")
      assert.are.equal(404, res.status)
      assert.are.equal("Not Found", res.reason)
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.same({ status = 404, title = "Not Found", detail = "no todo 7" },
        json.decode(res.body))
      assert.are.equal("nosniff", res.headers["x-content-type-options"])
      assert.are.equal("Accept", res.headers["vary"])
      assert.is_nil(res.error)
    end)

    it("answers HTML to a browser, escaping the message", function()
      local c = client({ ["/x"] = function() owin.error(400, "<script>alert('x')</script> & co") end })
      local res = get(c, "/x", "text/html,application/xhtml+xml,*/*;q=0.8")
      assert.are.equal(400, res.status)
      assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.are.equal("default-src 'none'", res.headers["content-security-policy"])
      assert.matches("<title>400 Bad Request</title>", res.body, 1, true)
      assert.matches("<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</p>", res.body, 1, true)
      assert.is_nil(res.body:find("<script>", 1, true))
    end)

    it("answers application/problem+json when that is what is asked for", function()
      local c = client({ ["/x"] = function() owin.error(409) end })
      local res = get(c, "/x", "application/problem+json")
      assert.are.equal(409, res.status)
      assert.are.equal("application/problem+json", res.headers["content-type"])
      assert.are.same({ status = 409, title = "Conflict" }, json.decode(res.body))
    end)

    it("uses the reason phrase without a message, and Error for a status without one", function()
      local c = client({ ["/x"] = function() owin.error(499) end })
      assert.are.same({ status = 499, title = "Error" }, json.decode(get(c, "/x").body))
    end)

    it("adds object details as members, others as details; the standard ones stay", function()
      local c = client({
        ["/obj"] = function()
          owin.error(422, "invalid todo", { errors = { title = "required" }, status = 200, title = "x" })
        end,
        ["/list"] = function() owin.error(422, "invalid", { "a", "b" }) end,
        ["/str"] = function() owin.error(400, "bad", "more") end,
        ["/bad"] = function() owin.error(400, "bad", { f = print }) end,
      })
      assert.are.same({ status = 422, title = "Unprocessable Content", detail = "invalid todo",
                        errors = { title = "required" } }, json.decode(get(c, "/obj").body))
      assert.are.same({ status = 422, title = "Unprocessable Content", detail = "invalid",
                        details = { "a", "b" } }, json.decode(get(c, "/list").body))
      assert.are.same({ status = 400, title = "Bad Request", detail = "bad", details = "more" },
        json.decode(get(c, "/str").body))
      local lines = logged(function()
        local res = get(c, "/bad")
        assert.are.equal(400, res.status)
        assert.are.same({ status = 400, title = "Bad Request" }, json.decode(res.body))
      end)
      assert.are.equal(1, #lines)
      assert.matches("^errors: cannot make the JSON page for a 400: json.encode: a function " ..
        "cannot be JSON", lines[1][1])
      local html = get(c, "/obj", "text/html").body
      assert.matches("&quot;errors&quot;:{&quot;title&quot;:&quot;required&quot;}", html, 1, true)
    end)

    it("replaces what the app had set for its own answer", function()
      local c = client({ ["/x"] = function(env)
        local h = env["owin.ResponseHeaders"]
        h["Content-Type"] = "image/png"
        h["Content-Length"] = "10"
        h["ETag"] = '"v1"'
        h["Vary"] = "Origin"
        h["X-Kept"] = "yes"
        env["owin.ResponseReasonPhrase"] = "Fine"
        owin.error(403)
      end })
      local res = get(c, "/x")
      assert.are.equal(403, res.status)
      assert.are.equal("Forbidden", res.reason)
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.equal(tostring(#res.body), res.headers["content-length"])
      assert.is_nil(res.headers["etag"])
      assert.are.equal("Origin, Accept", res.headers["vary"])
      assert.are.equal("yes", res.headers["x-kept"])
    end)

    it("sends no body to HEAD", function()
      local c = client({ ["/x"] = function() owin.error(404) end })
      local res = c:head("/x")
      assert.are.equal(404, res.status)
      assert.are.equal("", res.body)
    end)

    it("does not log 4xx, and logs 5xx with where it was raised", function()
      local c = client({
        ["/404"] = function() owin.error(404) end,
        ["/503"] = function() owin.error(503, "the database is down") end,
      })
      local lines = logged(function()
        assert.are.equal(404, get(c, "/404").status)
        local res = get(c, "/503")
        assert.are.equal(503, res.status)
        local body = json.decode(res.body)
        assert.are.equal("the database is down", body.detail)
        assert.are.equal("test-" .. res.id, body.request_id)
        assert.is_nil(body.traceback)
      end)
      assert.are.equal(1, #lines)
      assert.matches("^owin.error 503 the database is down %(at spec/unit/errors_spec.lua:%d+%)" ..
        "\nstack traceback:", lines[1][1])
      assert.matches("^test%-%d+$", lines[1][2])
    end)

    it("raises on a status that is not an HTTP error, or a message that is not a string", function()
      assert.has_error(function() owin.error(200) end,
        "bad argument #1 to 'error' (an HTTP error status from 400 to 599 expected, got 200)")
      assert.has_error(function() owin.error("404") end,
        "bad argument #1 to 'error' (an HTTP error status from 400 to 599 expected, got 404)")
      assert.has_error(function() owin.error(404, 5) end,
        "bad argument #2 to 'error' (string expected, got number)")
    end)

    it("is an error object that is_error knows and tostring describes", function()
      local ok, e = pcall(function() owin.error(404, "no todo 7", { id = 7 }) end)
      assert.is_false(ok)
      assert.is_true(owin.is_error(e))
      assert.are.same({ 404, "no todo 7", { id = 7 } }, { e.status, e.message, e.details })
      assert.matches("^owin.error 404 no todo 7 %(at ", tostring(e))
      assert.is_false(owin.is_error("x"))
      assert.is_false(owin.is_error({ status = 404 }))
    end)
  end)

  describe("Lua errors", function()
    local routes = {
      ["/boom"] = function() error("the secret is 42") end,
      ["/table"] = function() error({ code = 1 }) end,
      ["/slow"] = function() owin.sleep(1) error("after a wait") end,
    }

    it("answer a 500 that hides the message, and log it with its traceback and request id", function()
      local c = client(routes)
      local res
      local lines = logged(function() res = get(c, "/boom") end)
      assert.are.equal(500, res.status)
      local body = json.decode(res.body)
      assert.are.same({ "Internal Server Error", 500 }, { body.title, body.status })
      assert.is_nil(body.detail)
      assert.is_nil(body.traceback)
      assert.is_nil(res.body:find("secret", 1, true))
      assert.are.equal(1, #lines)
      assert.matches("^app error: spec/unit/errors_spec.lua:%d+: the secret is 42\nstack traceback:",
        lines[1][1])
      assert.are.equal(lines[1][2], body.request_id)
      local html
      logged(function() html = get(c, "/boom", "text/html").body end)
      assert.matches("<p>Request id: <code>test%-%d+</code></p>", html)
      assert.is_nil(html:find("secret", 1, true))
    end)

    it("show the message and the traceback under dev (the client's, or the option)", function()
      for _, c in ipairs({ client(routes, nil, { dev = true }), client(routes, { dev = true }) }) do
        local res
        logged(function() res = get(c, "/boom") end)
        local body = json.decode(res.body)
        assert.matches("^spec/unit/errors_spec.lua:%d+: the secret is 42$", body.detail)
        assert.matches("^spec/unit/errors_spec.lua:%d+: the secret is 42\nstack traceback:\n",
          body.traceback)
        logged(function() res = get(c, "/boom", "text/html") end)
        assert.matches("<pre>spec/unit/errors_spec.lua:%d+: the secret is 42\nstack traceback:",
          res.body)
      end
      local c = client(routes, { dev = false }, { dev = true })
      local res
      logged(function() res = get(c, "/boom") end)
      assert.is_nil(json.decode(res.body).traceback)
    end)

    it("describe error values that are not strings, and survive a yield before the error", function()
      local c = client(routes, { dev = true })
      local res
      logged(function() res = get(c, "/table") end)
      assert.are.equal("(error object is a table value)", json.decode(res.body).detail)
      logged(function() res = get(c, "/slow") end)
      assert.are.equal(500, res.status)
      assert.matches("after a wait", json.decode(res.body).detail)
    end)

    it("are not logged with log = false", function()
      local c = client(routes, { log = false })
      assert.are.same({}, logged(function() get(c, "/boom") end))
    end)
  end)

  describe("after the response started", function()
    it("raises again, and the host cuts the response: no second page", function()
      local c = client({ ["/late"] = function(env)
        env["owin.ResponseBody"]:write("partial")
        env["owin.ResponseBody"]:flush()
        error("late failure")
      end })
      local res
      local lines = logged(function() res = get(c, "/late") end)
      assert.are.same({}, lines)                       -- the host logs it, once
      assert.are.equal(200, res.status)
      assert.are.equal("partial", res.body)
      assert.is_true(res.aborted)
      assert.matches("^spec/unit/errors_spec.lua:%d+: late failure\nstack traceback:", res.error)
    end)

    it("leaves the host's plain 500 when the bytes were only held back", function()
      local c = client({ ["/held"] = function(env)
        env["owin.ResponseHeaders"]["Content-Type"] = "text/html"
        env["owin.ResponseBody"]:write("<p>partial")
        owin.error(404, "too late")
      end })
      local res = get(c, "/held")
      assert.are.equal(500, res.status)
      assert.are.equal("500 Internal Server Error\n", res.body)
      assert.matches("^owin.error 404 too late", res.error)
    end)
  end)

  describe("options", function()
    it("prefer = html answers HTML to */*", function()
      local c = client({ ["/x"] = function() owin.error(404) end }, { prefer = "html" })
      assert.are.equal("text/html; charset=utf-8", get(c, "/x", "*/*").headers["content-type"])
      assert.are.equal("text/html; charset=utf-8", get(c, "/x").headers["content-type"])
      assert.are.equal("text/html; charset=utf-8", get(c, "/x", "image/png").headers["content-type"])
      assert.are.equal("application/json", get(c, "/x", "application/json").headers["content-type"])
    end)

    it("html and json make the pages", function()
      local c = client({ ["/x"] = function() owin.error(404, "gone") end }, {
        html = function(p, env) return "<p>" .. p.status .. " " .. env["owin.RequestPath"] .. "</p>" end,
        json = function(p) return { error = p.detail } end,
      })
      assert.are.equal("<p>404 /x</p>", get(c, "/x", "text/html").body)
      assert.are.equal('{"error":"gone"}', get(c, "/x").body)
    end)

    it("a page function that fails gives the default page, logged", function()
      local c = client({ ["/x"] = function() owin.error(404) end },
        { html = function() return 5 end })
      local res
      local lines = logged(function() res = get(c, "/x", "text/html") end)
      assert.are.equal(404, res.status)
      assert.matches("<h1>404 Not Found</h1>", res.body, 1, true)
      assert.matches("the html option returned a number, not a string", lines[1][1], 1, true)
    end)

    it("are checked", function()
      assert.has_error(function() errors({ prefer = "xml" }) end,
        "bad argument #1 to 'errors' (option prefer: \"json\" or \"html\" expected, got \"xml\")")
      assert.has_error(function() errors({ debug = true }) end,
        "bad argument #1 to 'errors' (unknown option 'debug')")
      assert.has_error(function() errors({ dev = 1 }) end,
        "bad argument #1 to 'errors' (option dev: boolean expected, got number)")
      assert.has_error(function() errors("x") end,
        "bad argument #1 to 'errors' (table of options expected, got string)")
      assert.is_function(errors.new())
    end)
  end)

  describe("owin.assert", function()
    it("returns its arguments when the first is true", function()
      assert.are.same({ 1, "a", "b" }, { owin.assert(1, "a", "b") })
      assert.are.same({ 0, 404 }, { owin.assert(0, 404) })
    end)

    it("raises owin.error(status, message, details) with a status", function()
      local ok, e = pcall(owin.assert, nil, 401, "log in first", { login = "/login" })
      assert.is_false(ok)
      assert.are.same({ 401, "log in first", { login = "/login" } }, { e.status, e.message, e.details })
    end)

    it("makes request input failures 400, 413, 415 and 408, and others plain errors", function()
      local cases = { { "EINVAL: invalid JSON: x", "EINVAL", 400, "invalid JSON: x" },
                      { "E2BIG: too big", "E2BIG", 413, "too big" },
                      { "ENOTSUP: multipart", "ENOTSUP", 415, "multipart" },
                      { "ETIMEDOUT: slow", "ETIMEDOUT", 408, "slow" } }
      for _, case in ipairs(cases) do
        local ok, e = pcall(owin.assert, nil, case[1], case[2])
        assert.is_false(ok)
        assert.is_true(owin.is_error(e))
        assert.are.same({ case[3], case[4] }, { e.status, e.message })
      end
      local ok, e = pcall(owin.assert, nil, "connection refused")
      assert.are.same({ false, "connection refused" }, { ok, e })
      ok, e = pcall(owin.assert, false)
      assert.is_false(ok)
      assert.matches("assertion failed!$", e)
    end)

    it("turns an invalid JSON body into a 400 and a big one into a 413", function()
      local c = client({ ["/echo"] = context.app(function(ctx)
        ctx.response:json(owin.assert(ctx.request:json(32)))
      end) })
      local res = c:post("/echo", { body = '{"a":' })
      assert.are.equal(400, res.status)
      assert.are.equal("invalid JSON: expected value but found the end of the text at byte 6",
        json.decode(res.body).detail)
      res = c:post("/echo", { body = string.rep(" ", 40) .. "{}" })
      assert.are.equal(413, res.status)
      assert.are.equal("the JSON body is over the limit of 32 bytes", json.decode(res.body).detail)
      res = c:post("/echo", { body = '{"a":[],"b":null}' })
      assert.are.equal(200, res.status)
      local back = json.decode(res.body)
      assert.is_true(json.is_array(back.a))
      assert.are.equal(json.null, back.b)
    end)
  end)

  describe("owin.dev", function()
    it("is the client's dev option inside a request, false outside", function()
      local seen = {}
      local function app(env) seen[#seen + 1] = owin.dev() end
      test.client(app):get("/")
      test.client(app, { dev = true }):get("/")
      assert.are.same({ false, true }, seen)
      assert.is_false(owin.dev())
    end)
  end)
end)
