-- owin.host.*, the pieces the pure-Lua hosts share (owin.test and the
-- handler side of owin.wsapi): errors raised at the app's line, cancellation
-- tokens, reason phrases, and the response rules (response keys,
-- OnSendingHeaders, the commit, Content-Length).  The last part runs the
-- same apps under both hosts.
--
--   busted --lua=lua5.4 spec/unit/host_spec.lua

local check = require("owin.host.check")
local token = require("owin.host.token")
local status = require("owin.host.status")
local response = require("owin.host.response")
local headers = require("owin.headers")
local test = require("owin.test")
local wsapi = require("owin.wsapi")

local HERE = debug.getinfo(1, "S").short_src

local STATUS, REASON, RESPH = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase",
  "owin.ResponseHeaders"

local function read(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

-- The error a call raises, with its position.
local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  return err
end

-- Functions of a chunk registered as a host's: through(fn) calls fn(...)
-- from there; plain, method and selfish check their arguments there (not
-- in tail calls, which would leave no frame to name).
local host = assert(load([[
  local check = ...
  local M = {}
  function M.through(fn) return function(...) return fn(...) end end
  function M.plain(x) check.typeerror(1, "string", x) end
  function M:method(x) check.typeerror(2, "string", x) end
  function M:selfish() check.argerror(1, "not this") end
  return M
]], "=spec host chunk"))(check)
check.own("=spec host chunk")
local through_host = host.through

-- A fresh response state as a host makes it.
local function state(fields)
  local st = { status = 200, written = 0, content_length = -1 }
  for k, v in pairs(fields or {}) do st[k] = v end
  return st
end

describe("owin.host #unit", function()
  describe("check", function()
    it("raises at the first line outside the hosts' files", function()
      local host_raise = through_host(check.raise)
      local line = debug.getinfo(1, "l").currentline + 1
      local err = error_of(function() host_raise("boom") end)
      assert.are.equal(HERE .. ":" .. line .. ": boom", err)
    end)

    it("names no position when a C function called the host", function()
      local host_raise = through_host(check.raise)
      local ok, err = pcall(host_raise, "boom")
      assert.is_false(ok)
      assert.are.equal("boom", err)
    end)

    it("words argument errors as luaL_argerror does, self not counted in a method", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local err = error_of(function() host.plain({}) end)
      assert.are.equal(HERE .. ":" .. line .. ": bad argument #1 to 'plain' " ..
        "(string expected, got table)", err)
      assert.matches("bad argument #1 to 'method' %(string expected, got nil%)$",
        error_of(function() host:method(nil) end))
      assert.matches("calling 'selfish' on bad self %(not this%)$",
        error_of(function() host:selfish() end))
    end)

    it("names a value by its metatable's __name", function()
      assert.are.equal("owinlua.Thing", check.typename(setmetatable({}, { __name = "owinlua.Thing" })))
      assert.are.equal("table", check.typename({}))
      assert.are.equal("number", check.typename(1))
    end)

    it("takes strings and numbers as strings, as lua_tolstring", function()
      assert.are.equal("abc", check.tostr("abc"))
      assert.are.equal("12", check.tostr(12))
      assert.is_nil(check.tostr(true))
      assert.is_nil(check.tostr({}))
    end)

    it("refuses a source that is not a string", function()
      assert.has_error(function() check.own(42) end,
        "bad argument #1 to 'own' (a chunk source string expected, got number)")
    end)
  end)

  describe("token", function()
    it("starts not cancelled and is an owin.CancellationToken", function()
      local tok = token.new()
      assert.is_false(tok.cancelled)
      assert.are.equal("owin.CancellationToken", getmetatable(tok).__name)
    end)

    it("fires once: cancelled, then the callbacks in the order registered", function()
      local tok, trace = token.new(), {}
      tok:register(function() trace[#trace + 1] = "a" end)
      tok:register(function() trace[#trace + 1] = "b" end)
      assert.are.same({}, trace)
      token.fire(tok)
      assert.is_true(tok.cancelled)
      assert.are.same({ "a", "b" }, trace)
      token.fire(tok)
      assert.are.same({ "a", "b" }, trace)
    end)

    it("runs a callback registered after it fired at once", function()
      local tok, ran = token.new(), false
      token.fire(tok)
      tok:register(function() ran = true end)
      assert.is_true(ran)
    end)

    it("logs a failing callback and still runs the others", function()
      local tok, ran, logged = token.new(), false, {}
      local real = io.stderr
      io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do logged[#logged + 1] = s end end }
      tok:register(function() error("bad callback") end)
      tok:register(function() ran = true end)
      local ok, err = pcall(token.fire, tok)
      io.stderr = real
      assert.is_true(ok, err)
      assert.is_true(ran)
      assert.matches("error in a cancellation callback: .*bad callback", table.concat(logged))
    end)

    it("may be fired by the app with token:cancel()", function()
      local tok, ran = token.new(), false
      tok:register(function() ran = true end)
      tok:cancel()
      assert.is_true(tok.cancelled)
      assert.is_true(ran)
    end)

    it("refuses a callback that is not a function", function()
      local tok = token.new()
      assert.has_error(function() tok:register("nope") end,
        "bad argument #1 to 'register' (function expected, got string)")
    end)
  end)

  describe("status", function()
    -- RFC 9110 section 15: every status code it defines, with its phrase.
    local RFC9110 = {
      [100] = "Continue", [101] = "Switching Protocols",
      [200] = "OK", [201] = "Created", [202] = "Accepted",
      [203] = "Non-Authoritative Information", [204] = "No Content", [205] = "Reset Content",
      [206] = "Partial Content",
      [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
      [303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
      [307] = "Temporary Redirect", [308] = "Permanent Redirect",
      [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
      [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
      [406] = "Not Acceptable", [407] = "Proxy Authentication Required",
      [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
      [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
      [414] = "URI Too Long", [415] = "Unsupported Media Type",
      [416] = "Range Not Satisfiable", [417] = "Expectation Failed",
      [421] = "Misdirected Request", [422] = "Unprocessable Content",
      [426] = "Upgrade Required",
      [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
      [503] = "Service Unavailable", [504] = "Gateway Timeout",
      [505] = "HTTP Version Not Supported",
    }

    it("has the phrase of every status code RFC 9110 section 15 defines", function()
      for code, phrase in pairs(RFC9110) do
        assert.are.equal(phrase, status.REASONS[code], "status " .. code)
        assert.are.equal(phrase, status.reason(code), "status " .. code)
      end
    end)

    it("has no phrase for the codes RFC 9110 marks unused (306, 418)", function()
      assert.are.equal("", status.reason(306))
      assert.are.equal("", status.reason(418))
    end)

    it("has the registered codes apps commonly send besides", function()
      assert.are.equal("Early Hints", status.reason(103))
      assert.are.equal("Too Early", status.reason(425))
      assert.are.equal("Precondition Required", status.reason(428))
      assert.are.equal("Too Many Requests", status.reason(429))
      assert.are.equal("Request Header Fields Too Large", status.reason(431))
      assert.are.equal("Unavailable For Legal Reasons", status.reason(451))
    end)

    it("gives \"\" for a code without a phrase, as the server sends none", function()
      assert.are.equal("", status.reason(299))
      assert.are.equal("", status.reason(999))
      assert.are.equal("Not Found", status.reason(404.0))
    end)

    it("refuses what is not an integer", function()
      assert.has_error(function() status.reason("404") end,
        "bad argument #1 to 'reason' (an integer status code expected, got string)")
      assert.has_error(function() status.reason(404.5) end,
        "bad argument #1 to 'reason' (an integer status code expected, got 404.5)")
    end)

    it("is the table the server's owl_reason is made from", function()
      -- src/codec/status.c includes the cases tools/gen-reasons.lua writes from
      -- this module: run it and read them back
      local p = assert(io.popen("lua5.4 tools/gen-reasons.lua lua/owin/host/status.lua"))
      local out = p:read("a")
      assert.is_true(p:close())
      local c = {}
      for code, phrase in out:gmatch('case (%d+): return "([^"]*)";') do
        c[tonumber(code)] = phrase
      end
      assert.are.same(status.REASONS, c)
      assert.matches('#include "reasons.h"', read("src/codec/status.c"), 1, true)
    end)

    it("is the table owin.test and owin.wsapi expose", function()
      assert.are.equal(status.REASONS, test.REASONS)
      assert.are.equal(status.REASONS, wsapi.REASONS)
    end)
  end)

  describe("response", function()
    describe("keys", function()
      it("reads status, reason and headers from the state, headers made when asked", function()
        local st = state({ reason = "Fine" })
        assert.are.equal(200, response.get(st, STATUS))
        assert.are.equal("Fine", response.get(st, REASON))
        assert.is_nil(st.headers)
        local h = response.get(st, RESPH)
        assert.is_true(headers.is(h))
        assert.are.equal(h, st.headers)
        assert.is_nil(response.get(st, "owin.RequestPath"))
      end)

      it("sets them as the server's env does", function()
        local st = state()
        response.set(st, STATUS, "404")
        assert.are.equal(404, st.status)
        response.set(st, STATUS, 201.0)
        assert.are.equal(201, st.status)
        response.set(st, REASON, 42)
        assert.are.equal("42", st.reason)
        response.set(st, REASON, nil)
        assert.is_nil(st.reason)
        response.set(st, RESPH, { ["X-One"] = "1" })
        assert.is_true(headers.is(st.headers))
        assert.are.same({ "1" }, st.headers["x-one"])
        local h = headers.new()
        response.set(st, RESPH, h)
        assert.are.equal(h, st.headers)
      end)

      it("refuses a bad status, reason or headers table", function()
        local st = state()
        for _, bad in ipairs({ 99, 1000, 200.5, "abc", true }) do
          assert.has_error(function() response.set(st, STATUS, bad) end,
            "owin.ResponseStatusCode must be an integer from 100 to 999, got " .. tostring(bad))
        end
        assert.has_error(function() response.set(st, REASON, "a\nb") end,
          "owin.ResponseReasonPhrase: CR, LF and NUL are not allowed")
        assert.has_error(function() response.set(st, RESPH, "x") end,
          "bad argument #3 to 'set' (table expected, got string)")
        assert.has_error(function() response.set(st, "owin.RequestPath", "/") end,
          "bad argument #2 to 'set' (a response key expected, got owin.RequestPath)")
        assert.are.equal(200, st.status)
      end)

      it("refuses every change once the headers went out", function()
        local st = state()
        response.commit(st)
        for _, k in ipairs({ STATUS, REASON, RESPH }) do
          assert.has_error(function() response.set(st, k, k == RESPH and {} or 201) end,
            "headers already sent: cannot change " .. k)
        end
      end)

      it("lists the stored keys, then the response keys that are set", function()
        local st = state()
        local env = setmetatable({ ["owin.RequestPath"] = "/" }, {
          __index = function(_, k) return response.get(st, k) end,
          __pairs = response.pairs,
        })
        local keys = {}
        for k, v in pairs(env) do keys[#keys + 1] = k; assert.is_not_nil(v) end
        assert.are.same({ "owin.RequestPath", STATUS, RESPH }, keys)
      end)
    end)

    describe("OnSendingHeaders and the commit", function()
      it("runs the callbacks once, last registered first, with their state", function()
        local st, trace = state(), {}
        local on = response.on_sending_headers(st)
        on(function(s) trace[#trace + 1] = s end, "first")
        on(function(s) trace[#trace + 1] = s end, "second")
        response.commit(st)
        response.commit(st)
        assert.are.same({ "second", "first" }, trace)
        assert.is_true(st.committed)
      end)

      it("lets callbacks change the response, then freezes it", function()
        local st = state()
        response.on_sending_headers(st)(function()
          response.set(st, STATUS, 202)
          response.headers(st)["X-Late"] = "yes"
        end)
        response.commit(st)
        assert.are.equal(202, st.status)
        assert.is_true(headers.frozen(st.headers))
        assert.has_error(function() st.headers["X-More"] = "no" end)
      end)

      it("freezes a headers table first asked for after the commit", function()
        local st = state()
        response.commit(st)
        assert.is_true(headers.frozen(response.headers(st)))
      end)

      it("refuses a callback after the commit, and one that is not a function", function()
        local st = state()
        local on = response.on_sending_headers(st)
        assert.has_error(function() on("nope") end,
          "bad argument #1 to 'on' (function expected, got string)")
        response.commit(st)
        assert.has_error(function() on(function() end) end,
          "server.OnSendingHeaders: headers already sent")
      end)

      it("knows which responses carry no body: HEAD, 1xx, 204, 304", function()
        for code, bodiless in pairs({ [100] = true, [101] = true, [199] = true, [200] = false,
                                      [204] = true, [205] = false, [304] = true, [404] = false }) do
          assert.are.equal(bodiless, response.bodiless(code), "status " .. code)
          local st = state({ status = code })
          response.commit(st)
          assert.are.equal(bodiless, st.no_body, "status " .. code)
        end
        local head = state({ is_head = true })
        response.commit(head)
        assert.is_true(head.no_body)
      end)
    end)

    describe("Content-Length", function()
      it("reads the app's as the server does", function()
        assert.are.equal(-1, response.content_length(nil))
        assert.are.equal(5, response.content_length({ "5" }))
        assert.are.equal(5, response.content_length({ 5 }))
        assert.are.equal(0, response.content_length({ "0" }))
        assert.are.equal(7, response.content_length({ "7", "7" }))
      end)

      it("refuses an invalid or conflicting one", function()
        assert.has_error(function() response.content_length({ "" }) end,
          "invalid Content-Length response header")
        assert.has_error(function() response.content_length({ string.rep("9", 19) }) end,
          "invalid Content-Length response header")
        assert.has_error(function() response.content_length({ "-1" }) end,
          "invalid Content-Length response header '-1'")
        assert.has_error(function() response.content_length({ "1.5" }) end,
          "invalid Content-Length response header '1.5'")
        assert.has_error(function() response.content_length({ "5", "6" }) end,
          "conflicting Content-Length response headers")
      end)

      it("is known at the commit and held to by every write and at the end", function()
        local st = state()
        response.headers(st)["Content-Length"] = "5"
        response.commit(st)
        assert.are.equal(5, st.content_length)
        response.wrote(st, 3)
        assert.are.equal(
          "response body is shorter than its Content-Length (3 of 5 bytes)", response.shortfall(st))
        assert.are.equal("response body exceeds its Content-Length (5 bytes)", response.overflow(st, 3))
        assert.has_error(function() response.wrote(st, 3) end,
          "response body exceeds its Content-Length (5 bytes)")
        assert.are.equal(3, st.written)
        response.wrote(st, 2)
        assert.is_nil(response.shortfall(st))
        assert.is_nil(response.overflow(st, 0))
      end)

      it("binds no body that carries none, nor one without a Content-Length", function()
        local head = state({ is_head = true })
        response.headers(head)["Content-Length"] = "5"
        response.commit(head)
        response.wrote(head, 10)
        assert.is_nil(response.shortfall(head))
        local plain = state()
        response.commit(plain)
        response.wrote(plain, 100)
        assert.is_nil(response.shortfall(plain))
      end)

      it("leaves bodies up to BUFFER bytes to get one from the host", function()
        assert.are.equal(16384, response.BUFFER)
      end)
    end)
  end)

  describe("both hosts", function()
    -- A minimal WSAPI env as a connector makes it.
    local function wsapi_env(vars)
      local errors = {}
      local w = { REQUEST_METHOD = "GET", PATH_INFO = "/", SCRIPT_NAME = "", QUERY_STRING = "",
                  SERVER_PROTOCOL = "HTTP/1.1", SERVER_NAME = "host.example", SERVER_PORT = "80",
                  REMOTE_ADDR = "192.0.2.7", REMOTE_PORT = "5555",
                  error = { write = function(_, s) errors[#errors + 1] = s end } }
      for k, v in pairs(vars or {}) do w[k] = v end
      return setmetatable(w, { __index = function() return "" end }), errors
    end

    -- The app under the WSAPI handler: status line, headers, body, error log.
    local function under_wsapi(appfunc, vars)
      local w, errors = wsapi_env(vars)
      local st, h, iter = wsapi.handler(appfunc)(w)
      local parts = {}
      for s in iter do parts[#parts + 1] = s end
      return st, h, table.concat(parts), table.concat(errors)
    end

    local function under_test(appfunc, method)
      return test.client(appfunc):request({ method = method or "GET", path = "/" })
    end

    it("run OnSendingHeaders last registered first and freeze the response after", function()
      local function app_with(trace)
        return function(env)
          local on = env["server.OnSendingHeaders"]
          on(function(s) trace[#trace + 1] = s end, "first")
          on(function(s)
            trace[#trace + 1] = s
            env[STATUS] = 201
          end, "second")
          env["owin.ResponseBody"]:write("x")
          trace[#trace + 1] = select(2, pcall(function() env[STATUS] = 500 end))
        end
      end
      local t1, t2 = {}, {}
      local res = under_test(app_with(t1))
      local st = under_wsapi(app_with(t2))
      assert.are.equal(201, res.status)
      assert.are.equal("201 Created", st)
      assert.are.same(t1, t2)
      assert.are.same({ "second", "first" }, { t1[1], t1[2] })
      assert.matches("headers already sent: cannot change owin.ResponseStatusCode$", t1[3])
    end)

    it("raise misuse at the app's line", function()
      local function app_with(errs)
        return function(env)
          errs[1] = select(2, pcall(function() env[STATUS] = 42 end))
          errs[2] = select(2, pcall(function() env["owin.ResponseBody"]:write(5, {}) end))
        end
      end
      local e1, e2 = {}, {}
      under_test(app_with(e1))
      under_wsapi(app_with(e2))
      assert.matches("^" .. HERE:gsub("%p", "%%%0") .. ":%d+: owin.ResponseStatusCode must be", e1[1])
      assert.are.equal(e1[1], e2[1])
      assert.matches("bad argument #2 to 'write' %(string expected, got table%)$", e1[2])
      assert.matches("bad argument #2 to 'write' %(string expected, got table%)$", e2[2])
    end)

    it("hold the body to the app's Content-Length", function()
      local function app_with(errs, declared, actual)
        return function(env)
          env[RESPH]["Content-Length"] = declared
          errs[1] = select(2, pcall(env["owin.ResponseBody"].write, env["owin.ResponseBody"],
            string.rep("x", actual)))
        end
      end
      local e1, e2 = {}, {}
      under_test(app_with(e1, "5", 6))
      under_wsapi(app_with(e2, "5", 6))
      assert.are.equal("response body exceeds its Content-Length (5 bytes)", e1[1])
      assert.are.equal(e1[1], e2[1])

      local res = under_test(app_with({}, "5", 4))
      local st, _, _, log = under_wsapi(app_with({}, "5", 4))
      assert.are.equal(500, res.status)
      assert.matches("response body is shorter than its Content%-Length %(4 of 5 bytes%)", res.error)
      assert.are.equal("500 Internal Server Error", st)
      assert.matches("response body is shorter than its Content%-Length %(4 of 5 bytes%)", log)
    end)

    it("refuse an invalid Content-Length at the first write", function()
      local function app(env)
        env[RESPH]["Content-Length"] = "five"
        env["owin.ResponseBody"]:write("hello")
      end
      local res = under_test(app)
      local st, _, _, log = under_wsapi(app)
      assert.are.equal(500, res.status)
      assert.matches("invalid Content%-Length response header 'five'", res.error)
      assert.are.equal("500 Internal Server Error", st)
      assert.matches("invalid Content%-Length response header 'five'", log)
    end)

    it("send no body for HEAD, and the standard reason phrase", function()
      local function app(env)
        env[STATUS] = 203
        env["owin.ResponseBody"]:write("hidden")
      end
      local res = under_test(app, "HEAD")
      local st, _, body = under_wsapi(app, { REQUEST_METHOD = "HEAD" })
      assert.are.equal("", res.body)
      assert.are.equal("Non-Authoritative Information", res.reason)
      assert.are.equal("", body)
      assert.are.equal("203 Non-Authoritative Information", st)
    end)

    it("are separate: the WSAPI handler loads nothing of owin.test", function()
      local cmd = "lua5.4 -e " .. string.format("%q", [[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        require("owin.wsapi")
        for name in pairs(package.loaded) do
          if name:find("^owin%.test") then print(name) end
        end
        print("done")]])
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      assert.are.equal("done\n", out)
      for _, f in ipairs({ "lua/owin/wsapi.lua", "lua/owin/wsapi/app.lua",
                           "lua/owin/wsapi/handler.lua", "lua/owin/host/check.lua",
                           "lua/owin/host/token.lua", "lua/owin/host/status.lua",
                           "lua/owin/host/response.lua" }) do
        assert.is_nil(read(f):find('require("owin.test', 1, true), f .. " requires owin.test")
      end
    end)
  end)
end)
