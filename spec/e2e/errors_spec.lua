-- The error middleware (lua/owin/errors.lua) and owin.json through the real
-- owinlua binary: error pages by Accept, tracebacks only under --dev, 5xx
-- logged with the request id, an error after the headers went out cuts the
-- response, and JSON bodies in and out over real sockets.
--
--   busted --lua=lua5.4 spec/e2e/errors_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local cjson = require("cjson")

local function stop(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code },
    "owinlua did not exit cleanly:\n" .. srv:stderr())
end

local function post(port, path, body, ctype)
  return http.request(port, table.concat({
    "POST " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
    "Content-Type: " .. (ctype or "application/json"), "Content-Length: " .. #body, "", body }, "\r\n"))
end

describe("owin.errors through the server #e2e", function()
  describe("without --dev", function()
    local srv
    setup(function() srv = server.start("spec/fixtures/errors.lua") end)
    teardown(function() stop(srv) end)

    it("tells the app it is not in dev mode", function()
      assert.are.equal("false", assert(http.get(srv.port, "/dev")).body)
    end)

    it("answers owin.error with its status, as JSON or HTML by Accept", function()
      local res = assert(http.get(srv.port, "/missing", { Accept = "application/json" }))
      assert.are.equal(404, res.status)
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.same({ status = 404, title = "Not Found", detail = "no todo 7" },
        cjson.decode(res.body))
      assert.are.equal("Accept", res.headers["vary"])

      res = assert(http.get(srv.port, "/missing",
        { Accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" }))
      assert.are.equal(404, res.status)
      assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.matches("<h1>404 Not Found</h1>", res.body, 1, true)
      assert.matches("<p>no todo 7</p>", res.body, 1, true)
      assert.are.equal("default-src 'none'", res.headers["content-security-policy"])
    end)

    it("puts an owin.error's details in the JSON problem", function()
      local res = assert(http.get(srv.port, "/invalid"))
      assert.are.equal(422, res.status)
      assert.are.same({ status = 422, title = "Unprocessable Content", detail = "invalid todo",
                        errors = { title = "required" } }, cjson.decode(res.body))
    end)

    it("answers a Lua error with a generic 500, logs it with the request id", function()
      local res = assert(http.get(srv.port, "/boom", { Accept = "application/json" }))
      assert.are.equal(500, res.status)
      local body = cjson.decode(res.body)
      assert.are.equal("Internal Server Error", body.title)
      assert.is_nil(body.detail)
      assert.is_nil(body.traceback)
      assert.is_nil(res.body:find("secret", 1, true))
      local id = body.request_id
      assert.is_string(id)
      assert.truthy(server.eventually(function()
        return srv:stderr():find("[error] [" .. id .. "] app error: spec/fixtures/errors.lua:18: " ..
          "the secret is 42\nstack traceback:", 1, true)
      end), srv:stderr())
      res = assert(http.get(srv.port, "/boom", { Accept = "text/html" }))
      assert.are.equal(500, res.status)
      assert.matches("<h1>500 Internal Server Error</h1>", res.body, 1, true)
      assert.is_nil(res.body:find("secret", 1, true))
    end)

    it("leaves owin.error without the middleware to the server: a 500, logged by what it says", function()
      local res = assert(http.get(srv.port, "/bare"))
      assert.are.equal(500, res.status)
      assert.are.equal("500 Internal Server Error\n", res.body)
      assert.truthy(server.eventually(function()
        return srv:stderr():find("app error: owin.error 404 nobody answers this " ..
          "(at spec/fixtures/errors.lua:8)\nstack traceback:", 1, true)
      end), srv:stderr())
    end)

    it("logs no 4xx", function()
      assert(http.get(srv.port, "/missing"))
      assert(http.get(srv.port, "/ok"))
      assert.is_nil(srv:stderr():find("no todo 7", 1, true))
    end)

    it("cuts a response that failed after its headers went out, with no second page", function()
      local c = assert(http.connect(srv.port))
      assert(c:send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n"))
      local res, err = c:read_response()
      c:close()
      assert.is_nil(res)
      assert.matches("chunk", err)
      assert.truthy(server.eventually(function()
        return srv:stderr():find("failed after the headers went out", 1, true)
      end), srv:stderr())
      local log = srv:stderr()
      local _, n = log:gsub("failed after the headers went out", "")
      assert.are.equal(1, n, "logged once: " .. log)
    end)

    it("decodes and encodes JSON bodies, and answers 400 and 413 for bad ones", function()
      local res = assert(post(srv.port, "/echo", '{"a":[],"b":{},"c":null,"d":12345678901234567}'))
      assert.are.equal(200, res.status)
      local back = cjson.decode(res.body)
      assert.are.same({}, back.a)
      assert.are.equal(cjson.null, back.c)
      assert.matches('"a":%[%]', res.body)
      assert.matches('"b":{}', res.body)
      assert.matches('"d":12345678901234567', res.body)

      res = assert(post(srv.port, "/echo", '{"a":'))
      assert.are.equal(400, res.status)
      assert.are.same({ status = 400, title = "Bad Request",
        detail = "invalid JSON: expected value but found the end of the text at byte 6" },
        cjson.decode(res.body))

      res = assert(post(srv.port, "/echo", '["' .. string.rep("x", 100) .. '"]'))
      assert.are.equal(413, res.status)
      assert.are.equal("the JSON body is over the limit of 64 bytes", cjson.decode(res.body).detail)

      res = assert(post(srv.port, "/echo", string.rep("[", 30) .. string.rep("]", 30)))
      assert.are.equal(200, res.status)
    end)

    it("writes [] and null from json.array() and json.null, and exact numbers", function()
      local res = assert(http.get(srv.port, "/shapes"))
      assert.are.equal("application/json", res.headers["content-type"])
      assert.matches('"list":%[%]', res.body)
      assert.matches('"none":null', res.body)
      assert.matches('"big":9007199254740993', res.body)
      assert.matches('"third":0.3333333333333333[,}]', res.body)
    end)
  end)

  describe("with --dev", function()
    local srv
    setup(function() srv = server.start("spec/fixtures/errors.lua", { "--dev" }) end)
    teardown(function() stop(srv) end)

    it("tells the app, through owin.dev()", function()
      assert.are.equal("true", assert(http.get(srv.port, "/dev")).body)
    end)

    it("shows the message and the traceback of a Lua error", function()
      local res = assert(http.get(srv.port, "/boom", { Accept = "application/json" }))
      assert.are.equal(500, res.status)
      local body = cjson.decode(res.body)
      assert.are.equal("spec/fixtures/errors.lua:18: the secret is 42", body.detail)
      assert.matches("^spec/fixtures/errors.lua:18: the secret is 42\nstack traceback:\n",
        body.traceback)
      res = assert(http.get(srv.port, "/boom", { Accept = "text/html" }))
      assert.matches("<pre>spec/fixtures/errors.lua:18: the secret is 42\nstack traceback:", res.body,
        1, true)
    end)
  end)
end)
