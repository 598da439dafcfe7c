-- owin.test, the in-process test host (docs/testing.md), in plain
-- Lua: no sockets, no C server, virtual time.  What it must mirror of the
-- server is in spec/e2e/env_spec.lua, streaming_spec.lua and
-- websocket_spec.lua; spec/e2e/test_host_parity_spec.lua runs the same apps
-- under both hosts.
--
--   busted --lua=lua5.4 spec/unit/test_host_spec.lua

local test = require("owin.test")
local owin = require("owin")
local websocket = require("owin.websocket")

local HERE = debug.getinfo(1, "S").short_src

-- A client for an app given as a function(env).
local function client_of(appfunc, opts)
  return test.client(appfunc, opts)
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("owin.test #unit", function()
  describe("apps", function()
    it("takes an AppFunc, a builder or the path of an app script", function()
      local c = client_of(function(env) env["owin.ResponseBody"]:write("fn") end)
      assert.equal("fn", c:get("/").body)
      local b = owin.new()
      b.run(function(env) env["owin.ResponseBody"]:write("builder") end)
      assert.equal("builder", test.client(b):get("/").body)
      assert.equal(200, test.client("spec/fixtures/returns_appfunc.lua"):get("/").status)
      assert.equal(200, test.client("spec/fixtures/returns_builder.lua"):get("/").status)
      assert.equal("terminal |/x", test.client("spec/fixtures/pipeline.lua"):get("/x").body)
    end)

    it("loads each script afresh, with its own `app`", function()
      local one = test.client("spec/fixtures/pipeline.lua")
      local two = test.client("spec/fixtures/core.lua")
      assert.equal("terminal |/x", one:get("/x").body)
      assert.equal(404, two:get("/x").status)
    end)

    it("raises a clear error for scripts that cannot be used", function()
      assert.has_error(function() test.client("spec/fixtures/no-such-app.lua") end,
        "owin.test: cannot open app script 'spec/fixtures/no-such-app.lua'")
      local ok, err = pcall(test.client, "spec/fixtures/empty.lua")
      assert.is_false(ok)
      assert.matches("defines no app", err)
      ok, err = pcall(test.client, "spec/fixtures/syntax_error.lua")
      assert.is_false(ok)
      assert.matches("cannot load", err)
      ok, err = pcall(test.client, 42)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'client'", err)
      ok, err = pcall(test.client, function() end, { nonsense = 1 })
      assert.matches("unknown client option 'nonsense'", err)
    end)

    it("answers 404 with an empty body when the request falls off the pipeline", function()
      local res = test.client(owin.new().use(function(_, next) next() end)):get("/")
      assert.equal(404, res.status)
      assert.equal("Not Found", res.reason)
      assert.equal("", res.body)
      assert.equal("0", res.headers["content-length"])
    end)

    it("lets next() find the env without an argument (owin.set_env)", function()
      local b = owin.new()
      b.use(function(env, next)
        next()
        env["owin.ResponseBody"]:write(" after")
      end)
      b.map("/api", function(api)
        api.run(function(env)
          env["owin.ResponseBody"]:write(env["owin.RequestPathBase"], "|", env["owin.RequestPath"])
        end)
      end)
      assert.equal("/api|/v1 after", test.client(b):get("/api/v1").body)
    end)
  end)

  describe("responses", function()
    local c
    before_each(function()
      c = client_of(function(env)
        local q = env["owin.RequestQueryString"]
        local body = env["owin.ResponseBody"]
        local h = env["owin.ResponseHeaders"]
        if q == "big" then
          body:write(string.rep("b", 20000))
        elseif q == "flush" then
          body:write("x"):flush()
          body:write("y")
        elseif q:match("^status=") then
          env["owin.ResponseStatusCode"] = tonumber(q:match("%d+"))
          body:write("never seen")
        elseif q == "reason" then
          env["owin.ResponseStatusCode"] = "418"       -- a numeric string works, as in C
          env["owin.ResponseReasonPhrase"] = "Teapot"
        elseif q == "repeat" then
          h["Set-Cookie"] = { "a=1", "b=2" }
          h["x-case"] = "lower"
          h["X-Case"] = "Upper"
          body:write("ok")
        elseif q == "cl" then
          h["Content-Length"] = "3"
          body:write("abc")
        else
          h["Content-Type"] = "text/plain"
          body:write("small ", 1, " ", 2.5)
        end
      end)
    end)

    it("gives a small body a Content-Length and Date and Server headers", function()
      local res = c:get("/")
      assert.equal(200, res.status)
      assert.equal("OK", res.reason)
      assert.equal("small 1 2.5", res.body)
      assert.equal("11", res.headers["content-length"])
      assert.equal("text/plain", res.headers["content-type"])
      assert.equal("owinlua", res.headers["server"])
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", res.headers["date"])
      assert.is_nil(res.headers["transfer-encoding"])
    end)

    it("streams a body past the first 16 KiB, or a flushed one, chunked", function()
      local big = c:get("/?big")
      assert.equal(20000, #big.body)
      assert.equal("chunked", big.headers["transfer-encoding"])
      assert.is_nil(big.headers["content-length"])
      local flushed = c:get("/?flush")
      assert.equal("xy", flushed.body)
      assert.equal("chunked", flushed.headers["transfer-encoding"])
      assert.equal(1, flushed.flushes)
      local old = c:get("/?flush", { protocol = "HTTP/1.0" })
      assert.is_nil(old.headers["transfer-encoding"])
      assert.equal("close", old.headers["connection"])
    end)

    it("sends no body for HEAD, 204 and 304; HEAD keeps the GET's Content-Length", function()
      local head = c:head("/")
      assert.equal("", head.body)
      assert.equal("11", head.headers["content-length"])
      local no = c:get("/?status=204")
      assert.equal(204, no.status)
      assert.equal("", no.body)
      assert.is_nil(no.headers["content-length"])
      local nm = c:get("/?status=304")
      assert.equal("", nm.body)
      assert.is_nil(nm.headers["content-length"])
    end)

    it("sends the reason phrase and keeps repeated headers and the app's spelling", function()
      local res = c:get("/?reason")
      assert.equal(418, res.status)
      assert.equal("Teapot", res.reason)
      res = c:get("/?repeat")
      assert.equal("a=1, b=2", res.headers["set-cookie"])
      assert.equal("Upper", res.headers["x-case"])
      local cookies, spelled = {}, nil
      for _, pair in ipairs(res.list) do
        if pair[1] == "Set-Cookie" then cookies[#cookies + 1] = pair[2] end
        if pair[1]:lower() == "x-case" then spelled = pair[1] end
      end
      assert.same({ "a=1", "b=2" }, cookies)
      assert.equal("X-Case", spelled)
    end)

    it("keeps the app's own Content-Length and answers Connection as the server does", function()
      local res = c:get("/?cl")
      assert.equal("3", res.headers["content-length"])
      assert.is_nil(res.headers["connection"])
      assert.equal("close", c:get("/", { headers = { Connection = "close" } }).headers["connection"])
      local old = c:get("/", { protocol = "HTTP/1.0", headers = { Connection = "keep-alive" } })
      assert.equal("keep-alive", old.headers["connection"])
    end)
  end)

  describe("the app's Content-Length", function()
    local function run(declared, actual, flush)
      return client_of(function(env)
        env["owin.ResponseHeaders"]["Content-Length"] = declared
        local body = env["owin.ResponseBody"]
        if flush then body:write(string.rep("y", flush)):flush() end
        body:write(string.rep("y", actual))
      end):get("/")
    end

    it("is held to: longer or shorter is a 500 while nothing went out", function()
      assert.equal("yyyyy", run("5", 5).body)
      local long = run("5", 6)
      assert.equal(500, long.status)
      assert.matches("response body exceeds its Content%-Length %(5 bytes%)", long.error)
      local short = run("5", 4)
      assert.equal(500, short.status)
      assert.matches("response body is shorter than its Content%-Length %(4 of 5 bytes%)", short.error)
    end)

    it("cuts the response when it cannot be met after bytes went out", function()
      local res = run("100", 5, 10)
      assert.equal(200, res.status)
      assert.is_true(res.aborted)
      assert.equal("100", res.headers["content-length"])
      assert.equal(15, #res.body)
      assert.equal("response body is shorter than its Content-Length", res.error)
    end)

    it("must be a number", function()
      local res = run("abc", 1)
      assert.equal(500, res.status)
      assert.matches("invalid Content%-Length response header 'abc'", res.error)
    end)
  end)

  describe("app errors", function()
    it("answer 500 with a generic body and give the error to the test", function()
      local res = client_of(function() error("boom in the app") end):get("/")
      assert.equal(500, res.status)
      assert.equal("500 Internal Server Error\n", res.body)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.matches(HERE .. ":%d+: boom in the app$", res.error)
      assert.matches("stack traceback", res.traceback)
    end)

    it("put the traceback in the body in development mode", function()
      local res = client_of(function() error("dev boom") end, { dev = true }):get("/")
      assert.equal(500, res.status)
      assert.matches("dev boom\nstack traceback", res.body)
    end)

    it("keep the raw error object", function()
      local obj = { code = 7 }
      local res = client_of(function() error(obj) end):get("/")
      assert.equal(500, res.status)
      assert.equal(obj, res.error)
      assert.matches("error object is not a string", res.traceback)
    end)

    it("abort the response after the headers went out", function()
      local res = client_of(function(env)
        env["owin.ResponseBody"]:write("partial"):flush()
        error("boom after the headers")
      end):get("/")
      assert.equal(200, res.status)
      assert.is_true(res.aborted)
      assert.equal("partial", res.body)
      assert.matches("boom after the headers", res.error)
    end)

    it("treat coroutine.yield in app code as an error", function()
      local res = client_of(function() coroutine.yield() end):get("/")
      assert.equal(500, res.status)
      assert.matches("yielded outside owinlua's API", res.error)
    end)

    it("close the connection when the body was not read", function()
      local res = client_of(function() error("x") end):post("/", { body = function()
        coroutine.yield("never read")
      end })
      assert.equal(500, res.status)
      assert.equal("close", res.headers["connection"])
    end)
  end)

  describe("headers already sent", function()
    it("raises after the first write, naming the app's line", function()
      local lines = {}
      local res = client_of(function(env)
        env["owin.ResponseBody"]:write("first")
        for _, f in ipairs({
          function() env["owin.ResponseStatusCode"] = 500 end,
          function() env["owin.ResponseHeaders"]["X-Late"] = "1" end,
          function() env["owin.ResponseHeaders"] = {} end,
          function() env["owin.ResponseReasonPhrase"] = "late" end,
          function() env["server.OnSendingHeaders"](function() end) end,
        }) do
          local ok, err = pcall(f)
          lines[#lines + 1] = tostring(ok) .. " " .. tostring(err)
        end
      end):get("/")
      assert.equal(200, res.status)
      assert.is_nil(res.headers["x-late"])
      assert.matches("^false " .. HERE .. ":%d+: headers already sent: cannot change owin.ResponseStatusCode$", lines[1])
      assert.matches("^false " .. HERE .. ":%d+: headers already sent: cannot set 'X%-Late'$", lines[2])
      assert.matches("headers already sent: cannot change owin.ResponseHeaders$", lines[3])
      assert.matches("headers already sent: cannot change owin.ResponseReasonPhrase$", lines[4])
      assert.matches("server.OnSendingHeaders: headers already sent$", lines[5])
    end)

    it("also after a flush or an empty write", function()
      for _, how in ipairs({ "flush", "write" }) do
        local ok
        client_of(function(env)
          local body = env["owin.ResponseBody"]
          if how == "flush" then body:flush() else body:write() end
          ok = pcall(function() env["owin.ResponseStatusCode"] = 201 end)
        end):get("/")
        assert.is_false(ok, how)
      end
    end)

    it("runs OnSendingHeaders once, last registered first, before the headers go", function()
      local calls = 0
      local res = client_of(function(env)
        local reg = env["server.OnSendingHeaders"]
        local order = {}
        reg(function(state)
          calls = calls + 1
          order[#order + 1] = state
          env["owin.ResponseHeaders"]["X-Order"] = table.concat(order, ",")
        end, "first")
        reg(function(state)
          order[#order + 1] = state
          env["owin.ResponseStatusCode"] = 201
        end, "second")
        env["owin.ResponseBody"]:write("a")
        env["owin.ResponseBody"]:write("b")
      end):get("/")
      assert.equal(201, res.status)
      assert.equal("second,first", res.headers["x-order"])
      assert.equal(1, calls)
      assert.equal("ab", res.body)
    end)

    it("runs OnSendingHeaders for a response without writes too", function()
      local res = client_of(function(env)
        env["server.OnSendingHeaders"](function() env["owin.ResponseStatusCode"] = 202 end)
      end):get("/")
      assert.equal(202, res.status)
    end)

    it("runs OnRequestEnd once each, last registered first, when the request is over", function()
      local log, env_of = {}, nil
      local c = client_of(function(env)
        env_of = env
        local reg = env["server.OnRequestEnd"]
        reg(function(state) log[#log + 1] = state end, "first")
        reg(function(state)
          log[#log + 1] = state
          reg(function(s) log[#log + 1] = s end, "added by second")   -- runs too
          error("second fails")
        end, "second")
        reg(function(state) log[#log + 1] = state .. " sent=" .. tostring(env["owin.ResponseBody"] ~= nil) end,
          "third")
        env["owin.ResponseBody"]:write("body")
        log[#log + 1] = "app returns"
      end)
      local res = c:get("/")
      assert.equal("body", res.body)
      assert.same({ "app returns", "third sent=true", "second", "first", "added by second" }, log)
      assert.equal(1, #c.errors)
      assert.equal("server.OnRequestEnd callback", c.errors[1].kind)
      assert.matches("second fails", c.errors[1].error)
      assert.equal("test-1", c.errors[1].request_id)
      assert.has_error(function() env_of["server.OnRequestEnd"](function() end) end,
        "server.OnRequestEnd: the request has ended")
    end)

    it("runs OnRequestEnd after an app error and after the client left", function()
      local log = {}
      local c = client_of(function(env)
        env["server.OnRequestEnd"](function() log[#log + 1] = env["owin.RequestPath"] end)
        if env["owin.RequestPath"] == "/fail" then error("boom") end
        owin.sleep(10)
      end)
      assert.equal(500, c:get("/fail").status)
      c:get("/slow", { cancel_after = 1 })
      assert.same({ "/fail", "/slow" }, log)
    end)
  end)

  describe("headers tables", function()
    local function with_env(f)
      local out
      client_of(function(env) out = { f(env) } end):get("/", {
        headers = { ["X-Multi"] = { "one", "two" }, Accept = "*/*" } })
      return table.unpack(out)
    end

    it("ignore case, wrap strings and numbers, remove with nil, iterate once each", function()
      local h, names = with_env(function(env)
        local h = env["owin.ResponseHeaders"]
        h["Content-Type"] = "text/plain"
        h["X-Count"] = 3
        h["x-gone"] = "1"
        h["X-GONE"] = nil
        local names = {}
        for k, v in pairs(h) do names[#names + 1] = k .. "=" .. table.concat(v, "|") end
        table.sort(names)
        return h, names
      end)
      assert.same({ "text/plain" }, h["content-type"])
      assert.same({ "text/plain" }, h["CONTENT-TYPE"])
      assert.same({ "3" }, h["x-count"])
      assert.is_nil(h["x-gone"])
      assert.same({ "Content-Type=text/plain", "X-Count=3" }, names)
      assert.matches("^owinlua.Headers: 0x", tostring(h))
      assert.is_false(getmetatable(h))
    end)

    it("give request headers lowercase names, repeated values in order", function()
      local h, names = with_env(function(env)
        local h = env["owin.RequestHeaders"]
        local names = {}
        for k, v in pairs(h) do names[#names + 1] = k .. ":" .. #v end
        table.sort(names)
        return h, names
      end)
      assert.same({ "one", "two" }, h["X-MULTI"])
      assert.same({ "accept:1", "host:1", "x-multi:2" }, names)
      assert.same({ "localhost" }, h.host)
    end)

    it("take request headers as an array of pairs too", function()
      local got
      client_of(function(env) got = env["owin.RequestHeaders"]["x-a"] end):get("/", {
        headers = { { "X-A", "1" }, { "x-a", "2" } } })
      assert.same({ "1", "2" }, got)
    end)

    it("raise on names that are not tokens and on CR, LF or NUL in values", function()
      local errs = with_env(function(env)
        local h = env["owin.ResponseHeaders"]
        local errs = {}
        for _, f in ipairs({
          function() h["bad name"] = "x" end,
          function() h[""] = "x" end,
          function() h[1] = "x" end,
          function() h["X-Bad"] = "a\r\nX-Injected: 1" end,
          function() h["X-Bad"] = { "ok", "a\nb" } end,
          function() h["X-Bad"] = { {} } end,
          function() h["X-Bad"] = true end,
          function() env["owin.ResponseReasonPhrase"] = "a\r\nb" end,
          function() env["owin.ResponseHeaders"] = "x" end,
          function() env["owin.ResponseStatusCode"] = 1000 end,
        }) do
          local ok, err = pcall(f)
          errs[#errs + 1] = ok and "ok" or err
        end
        return errs
      end)
      assert.matches(HERE .. ":%d+: invalid header name 'bad name': byte 32 is not a token character", errs[1])
      assert.matches("invalid header name: empty", errs[2])
      assert.matches("header name must be a string, got number", errs[3])
      assert.matches("invalid value for header 'X%-Bad': CR, LF and NUL are not allowed", errs[4])
      assert.matches("invalid value for header 'X%-Bad'", errs[5])
      assert.matches("value 1 of header 'X%-Bad' must be a string, got table", errs[6])
      assert.matches("must be a string or an array of strings, got boolean", errs[7])
      assert.matches("owin.ResponseReasonPhrase: CR, LF and NUL are not allowed", errs[8])
      assert.matches("table expected, got string", errs[9])
      assert.matches("owin.ResponseStatusCode must be an integer from 100 to 999, got 1000", errs[10])
    end)

    it("catch a value changed inside its array when the headers are sent: 500", function()
      local res = client_of(function(env)
        local v = { "ok" }
        env["owin.ResponseHeaders"]["X-Bad"] = v
        v[1] = "a\r\nX-Injected: 1"
        env["owin.ResponseBody"]:write("should not be sent")
      end):get("/")
      assert.equal(500, res.status)
      assert.is_nil(res.headers["x-injected"])
      assert.matches("invalid value for response header 'X%-Bad'", res.error)
    end)

    it("copy a plain table assigned to owin.ResponseHeaders", function()
      local res = client_of(function(env)
        env["owin.ResponseHeaders"] = { ["X-A"] = "1", ["X-B"] = { "2", "3" } }
        env["owin.ResponseHeaders"]["x-c"] = "4"
      end):get("/")
      assert.equal("1", res.headers["x-a"])
      assert.equal("2, 3", res.headers["x-b"])
      assert.equal("4", res.headers["x-c"])
    end)
  end)

  describe("the env", function()
    local KEYS = { "owin.RequestScheme", "owin.RequestMethod", "owin.RequestPathBase",
                   "owin.RequestPath", "owin.RequestQueryString", "owin.RequestProtocol",
                   "owin.RequestHeaders", "owin.RequestBody", "owin.RequestId",
                   "owin.ResponseStatusCode", "owin.ResponseHeaders", "owin.ResponseBody",
                   "owin.CallCancelled", "owin.Version", "server.RemoteIpAddress",
                   "server.RemotePort", "server.LocalIpAddress", "server.LocalPort",
                   "server.IsLocal", "server.OnSendingHeaders", "host.OnAppDisposing",
                   "sendfile.SendAsync", "server.OnRequestEnd" }

    it("carries every key of the server's env, and pairs(env) lists them", function()
      local seen, env
      client_of(function(e)
        env = e
        seen = {}
        for k in pairs(e) do seen[#seen + 1] = k end
        table.sort(seen)
      end):post("/env?a=1&b=%20", { body = "hello" })
      local want = {}
      for _, k in ipairs(KEYS) do want[#want + 1] = k end
      table.sort(want)
      assert.same(want, seen)
      assert.equal("http", env["owin.RequestScheme"])
      assert.equal("POST", env["owin.RequestMethod"])
      assert.equal("", env["owin.RequestPathBase"])
      assert.equal("/env", env["owin.RequestPath"])
      assert.equal("a=1&b=%20", env["owin.RequestQueryString"])
      assert.equal("HTTP/1.1", env["owin.RequestProtocol"])
      assert.equal("1.0", env["owin.Version"])
      assert.equal("127.0.0.1", env["server.RemoteIpAddress"])
      assert.equal("127.0.0.1", env["server.LocalIpAddress"])
      assert.equal("8080", env["server.LocalPort"])
      assert.truthy(tonumber(env["server.RemotePort"]))
      assert.is_true(env["server.IsLocal"])
      assert.is_false(env["owin.CallCancelled"].cancelled)
      assert.is_false(env["host.OnAppDisposing"].cancelled)
      assert.is_nil(env["websocket.Accept"])
      assert.is_nil(env["opaque.Upgrade"])
    end)

    it("gives each request its own owin.RequestId, and owin.request_id() inside it", function()
      local ids, seen = {}, {}
      local c = client_of(function(env)
        ids[#ids + 1] = env["owin.RequestId"]
        seen[#seen + 1] = owin.request_id()
      end)
      for _ = 1, 3 do c:get("/") end
      -- strings, as the server's "<boot>-<n>" are
      assert.same({ "test-1", "test-2", "test-3" }, ids)
      assert.same(ids, seen)
    end)

    it("percent-decodes the path except %2F, keeps the raw query and takes absolute forms", function()
      local c = client_of(function(env)
        env["owin.ResponseBody"]:write(env["owin.RequestPath"], "|", env["owin.RequestQueryString"])
      end)
      assert.equal("/p/a b%2Fc%2fd%zzA|q=%2F&r", c:get("/p/a%20b%2Fc%2fd%zz%41?q=%2F&r").body)
      assert.equal("/p/abs|x=1", c:get("http://example.test/p/abs?x=1").body)
      assert.equal("/|", c:get("?").body)
      assert.equal("/f|", c:get("/f#frag").body)
    end)

    it("reports HTTP/1.0 and adds no Host to it", function()
      local env
      client_of(function(e) env = e end):get("/", { protocol = "HTTP/1.0" })
      assert.equal("HTTP/1.0", env["owin.RequestProtocol"])
      assert.is_nil(env["owin.RequestHeaders"].host)
    end)

    it("refuses requests the server would answer with 400", function()
      local c = client_of(function() end)
      assert.has_error(function() c:get("/", { headers = { ["bad name"] = "x" } }) end)
      assert.has_error(function() c:get("/", { headers = { X = "a\r\nb" } }) end)
      assert.has_error(function() c:request({ method = "G T", path = "/" }) end)
      assert.has_error(function() c:get("/", { protocol = "HTTP/2" }) end)
      assert.has_error(function() c:post("/", { body = "abc", headers = { ["Content-Length"] = "5" } }) end)
    end)
  end)

  describe("request bodies", function()
    local reader = function(env)
      local q = env["owin.RequestQueryString"]
      local body = env["owin.RequestBody"]
      local out = {}
      if q == "all" then
        local s = body:read("a")
        out[1] = #s .. ":" .. s .. ":" .. tostring(body:read(10))
      elseif q == "chunks" then
        for chunk in body:chunks() do out[#out + 1] = chunk end
      else
        while true do
          local s, err, code = body:read(3)
          if s == nil then
            out[#out + 1] = "END " .. tostring(err) .. " " .. tostring(code)
            break
          end
          out[#out + 1] = s
        end
      end
      env["owin.ResponseBody"]:write(table.concat(out, "|"))
    end

    it("reads in pieces, then nil; read('a') reads the rest", function()
      local c = client_of(reader)
      assert.equal("abc|def|g|END nil nil", c:post("/", { body = "abcdefg" }).body)
      assert.equal("END nil nil", c:post("/", { body = "" }).body)
      assert.equal("END nil nil", c:get("/").body)
      assert.equal("5:hello:nil", c:post("/?all", { body = "hello" }).body)
    end)

    it("feeds a body function chunk by chunk: generators, iterators, arrays", function()
      local c = client_of(reader)
      local gen = function() coroutine.yield("ab") coroutine.yield("cd") coroutine.yield("e") end
      assert.equal("ab|cd|e", c:post("/?chunks", { body = gen }).body)
      local parts = { "x", "yz" }
      local i = 0
      local iter = function() i = i + 1 return parts[i] end
      assert.equal("x|yz", c:post("/?chunks", { body = iter }).body)
      assert.equal("3:abc:nil", c:post("/?all", { body = { "a", "b", "c" } }).body)
      local env
      client_of(function(e) env = e end):post("/", { body = gen })
      assert.same({ "chunked" }, env["owin.RequestHeaders"]["transfer-encoding"])
    end)

    it("waits for slow chunks in virtual time without blocking other requests", function()
      local c = client_of(function(env)
        if env["owin.RequestPath"] == "/fast" then
          env["owin.ResponseBody"]:write("fast at ", owin.now())
          return
        end
        local s = env["owin.RequestBody"]:read("a")
        env["owin.ResponseBody"]:write(s, " at ", owin.now())
      end)
      local t0 = os.clock()
      local slow = c:start({ method = "POST", path = "/slow", body = { "abc", 10, "def" } })
      assert.equal("fast at 0.0", c:get("/fast").body)
      assert.is_false(slow:done())
      assert.equal("abcdef at 10.0", slow:wait().body)
      assert.is_true(os.clock() - t0 < 1)
    end)

    it("sends 100 Continue when the app first reads an expecting request", function()
      local c = client_of(reader)
      local res = c:post("/?all", { body = "hello", headers = { Expect = "100-continue" } })
      assert.is_true(res.continued)
      assert.equal("5:hello:nil", res.body)
      res = client_of(function() end):post("/", { body = function() coroutine.yield("x") end,
                                                   headers = { Expect = "100-continue" } })
      assert.is_nil(res.continued)
      assert.equal("close", res.headers["connection"])
    end)

    it("answers 413 for a body over the limit, declared or streamed", function()
      local ran = false
      local c = client_of(function() ran = true end, { max_body = 4 })
      local res = c:post("/", { body = "hello" })
      assert.equal(413, res.status)
      assert.equal("413 Content Too Large\n", res.body)
      assert.is_false(ran)
      local got
      c = client_of(function(env)
        got = { env["owin.RequestBody"]:read("a") }
        got.cancelled = env["owin.CallCancelled"].cancelled
      end, { max_body = 4 })
      res = c:post("/", { body = { "abc", "def" } })
      assert.equal(413, res.status)
      assert.same({ nil, "E2BIG: request body exceeds the server's limit", "E2BIG", cancelled = true }, got)
    end)

    it("raises on bad read arguments and on streams used after the response", function()
      local errs, kept = {}, nil
      local c = client_of(function(env)
        local body = env["owin.RequestBody"]
        for _, f in ipairs({ function() body:read(-1) end, function() body:read("x") end,
                             function() body:read({}) end, function() env["owin.ResponseBody"]:write({}) end }) do
          local _, err = pcall(f)
          errs[#errs + 1] = err
        end
        kept = env["owin.ResponseBody"]
      end)
      c:get("/")
      assert.matches(HERE .. ":%d+: bad argument #1 to 'read' %(byte count must be positive%)", errs[1])
      assert.matches("bad argument #1 to 'read' %(expected a byte count or \"a\"%)", errs[2])
      assert.matches("bad argument #1 to 'read' %(string expected, got table%)", errs[3])
      assert.matches("bad argument #1 to 'write' %(string expected, got table%)", errs[4])
      assert.has_error(function() kept:write("x") end, "OutputStream used after its response finished")
      assert.matches("^owinlua.OutputStream %(request 1%)$", tostring(kept))
    end)
  end)

  describe("waits", function()
    it("sleeps in virtual time: owin.sleep(30) takes no real time", function()
      local c = client_of(function(env)
        local t0 = owin.now()
        owin.sleep(30)
        env["owin.ResponseBody"]:write(string.format("slept %.1f", owin.now() - t0))
      end)
      local t0 = os.clock()
      assert.equal("slept 30.0", c:get("/").body)
      assert.is_true(os.clock() - t0 < 1)
      assert.equal(30, c:now())
    end)

    it("runs sleeping requests side by side", function()
      local c = client_of(function(env)
        owin.sleep(tonumber(env["owin.RequestQueryString"]))
        env["owin.ResponseBody"]:write(owin.now())
      end)
      local a = c:start({ path = "/?5" })
      local b = c:start({ path = "/?3" })
      assert.equal("5.0", a:wait().body)
      assert.equal("3.0", b:wait().body)
      assert.equal(5, c:now())
    end)

    it("checks owin.sleep's argument as the server does", function()
      local errs = {}
      client_of(function()
        errs[1] = select(2, pcall(owin.sleep, -1))
        errs[2] = select(2, pcall(owin.sleep, "x"))
      end):get("/")
      assert.matches("must be a number of seconds from 0", errs[1])
      assert.matches("number expected, got string", errs[2])
    end)

    it("keeps owin.sleep refusing outside a request's coroutine", function()
      assert.has_error(function() owin.sleep(1) end)
    end)

    it("advances the clock for timers with client:advance", function()
      local ticks = 0
      local c = client_of(function(env)
        for _ = 1, 100 do
          owin.sleep(1)
          ticks = ticks + 1
        end
      end)
      c:start({ path = "/" })
      c:advance(10.5)
      assert.equal(10, ticks)
      assert.equal(10.5, c:now())
    end)
  end)

  describe("cancellation", function()
    local function streamer(log)
      return function(env)
        local token = env["owin.CallCancelled"]
        token:register(function() log[#log + 1] = "cancelled at " .. owin.now() end)
        local body = env["owin.ResponseBody"]
        while not token.cancelled do
          body:write("tick\n"):flush()
          owin.sleep(1)
        end
        log[#log + 1] = tostring(select(3, body:write("after")))
      end
    end

    it("fires CallCancelled when the client goes away (cancel_after)", function()
      local log = {}
      local res = client_of(streamer(log)):get("/", { cancel_after = 2.5 })
      assert.equal(200, res.status)
      assert.is_true(res.cancelled)
      assert.equal("tick\ntick\ntick\n", res.body)
      assert.same({ "cancelled at 2.5", "EPIPE" }, log)
    end)

    it("gives up after the timeout, cancels, and closes an app that never ends", function()
      local log = {}
      local res = client_of(streamer(log), { timeout = 3 }):get("/")
      assert.is_true(res.timed_out)
      assert.is_true(res.cancelled)
      assert.matches("no response within 3 virtual seconds", res.error)
      local closed = false
      res = client_of(function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        while true do owin.sleep(1) end
      end, { timeout = 2 }):get("/")
      assert.is_true(res.timed_out)
      assert.is_nil(res.status)
      assert.is_true(closed)
    end)

    it("cancels with pending:cancel() and client:cancel()", function()
      local log = {}
      local c = client_of(streamer(log))
      local p = c:start({ path = "/" })
      c:advance(1)
      p:cancel()
      assert.is_true(p:wait().cancelled)
      local q = c:start({ path = "/" })
      c:cancel()
      assert.is_true(q:wait().cancelled)
    end)

    it("fires host.OnAppDisposing and then CallCancelled at shutdown", function()
      local log = {}
      local c = client_of(function(env)
        env["host.OnAppDisposing"]:register(function() log[#log + 1] = "disposing" end)
        env["owin.CallCancelled"]:register(function() log[#log + 1] = "cancelled" end)
        owin.sleep(100)
      end)
      local p = c:start({ path = "/" })
      c:shutdown(5)
      assert.same({ "disposing", "cancelled" }, log)
      assert.equal(5, c:now())
      p:wait()
    end)

    it("keeps tokens' semantics: register after firing runs at once, errors are isolated", function()
      local tok
      local c = client_of(function(env) tok = env["owin.CallCancelled"] end)
      c:get("/", { cancel_after = 0 })
      local ran = false
      tok:register(function() ran = true end)
      assert.is_false(ran)   -- the request had finished: the client leaving did not cancel it
      local calls = {}
      local res = client_of(function(env)
        local t = env["owin.CallCancelled"]
        t:register(function() error("bad callback") end)
        t:register(function() calls[#calls + 1] = "second" end)
        owin.sleep(5)
        t:register(function() calls[#calls + 1] = "late" end)
        calls[#calls + 1] = tostring(select(3, env["owin.ResponseBody"]:write("gone")))
      end):get("/", { cancel_after = 1 })
      assert.same({ "second", "late", "EPIPE" }, calls)
      assert.is_nil(res.status)                 -- nothing went out before the client left
      assert.is_true(res.cancelled)
    end)
  end)

  describe("sendfile.SendAsync", function()
    local dir, small
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      small = dir .. "/small.txt"
      write_file(small, "0123456789abcdef")
    end)
    teardown(function() os.execute("rm -rf " .. dir) end)

    local c = client_of(function(env)
      local q = {}
      for k, v in env["owin.RequestQueryString"]:gmatch("([^&=]+)=([^&]*)") do q[k] = v end
      if q.prefix then env["owin.ResponseBody"]:write(q.prefix) end
      local ok, err, code = env["sendfile.SendAsync"](q.path, tonumber(q.off), tonumber(q.len))
      if not ok then
        env["owin.ResponseStatusCode"] = 404
        env["owin.ResponseBody"]:write(err, " ", code)
      end
    end)

    it("sends a file or a range with a Content-Length", function()
      local res = c:get("/?path=" .. small)
      assert.equal("16", res.headers["content-length"])
      assert.equal("0123456789abcdef", res.body)
      res = c:get("/?path=" .. small .. "&off=3&len=4")
      assert.equal("4", res.headers["content-length"])
      assert.equal("3456", res.body)
      assert.equal("cdef", c:get("/?path=" .. small .. "&off=12").body)
      assert.equal("", c:head("/?path=" .. small).body)
    end)

    it("follows bytes already written (chunked)", function()
      local res = c:get("/?path=" .. small .. "&prefix=HEAD:")
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.equal("HEAD:0123456789abcdef", res.body)
    end)

    it("returns nil, err, code for a missing file, a directory or a range past the end", function()
      assert.matches("^ENOENT: .* ENOENT$", c:get("/?path=" .. dir .. "/nope").body)
      assert.equal("EINVAL: invalid argument (range past the end of the file) EINVAL",
        c:get("/?path=" .. small .. "&off=10&len=10").body)
      assert.matches("EISDIR", c:get("/?path=" .. dir).body)
    end)
  end)

  describe("WebSockets", function()
    local c
    before_each(function() c = test.client("spec/fixtures/ws.lua") end)

    it("answers 101 with the accept key, and echoes text and binary", function()
      local ws, res = c:websocket("/echo")
      assert.equal(101, res.status)
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", res.headers["sec-websocket-accept"])
      assert.equal("websocket", res.headers["upgrade"])
      assert.equal("Upgrade", res.headers["connection"])
      assert.is_nil(res.headers["content-length"])
      for _, case in ipairs({ { "text", "" }, { "text", "héllo" }, { "binary", "\0\1\2\255" },
                              { "text", string.rep("y", 65536) } }) do
        ws:send(case[2], case[1])
        local data, kind = ws:receive()
        assert.equal(case[2], data)
        assert.equal(case[1], kind)
      end
      assert.equal("open", ws:state())
      assert.equal(1000, ws:close(1000))
      assert.equal("closed", ws:state())
    end)

    it("gives the close code to the app, raw shape included, and echoes it", function()
      local ws = assert(c:websocket("/raw"))
      ws:send("raw echo")
      assert.equal("raw echo", ws:receive())
      local code, reason = ws:close(4001, "bye now")
      assert.equal(4001, code)
      assert.equal("", reason)
      assert.same({ nil, "closed", 4001, "" }, { ws:receive() })
    end)

    it("lets the app wait in receive while the test sends nothing", function()
      local ws = assert(c:websocket("/echo"))
      assert.same({ nil, "timeout" }, { ws:receive(1) })
      ws:send("later")
      assert.equal("later", ws:receive())
      ws:close()
    end)

    it("picks the subprotocol, and refuses one the client did not offer", function()
      local ws, res = c:websocket("/proto", { protocols = "a, b" })
      assert.equal("b", res.headers["sec-websocket-protocol"])
      assert.equal("b", ws.protocol)
      assert.equal("b", ws:receive())
      assert.same({ nil, "closed", 1000, "" }, { ws:receive() })
      ws = c:websocket("/proto", { protocols = { "a" } })
      assert.equal("a", ws:receive())
      ws = c:websocket("/proto")
      assert.equal("nil", ws:receive())
      local none, bad = c:websocket("/badproto", { protocols = "a" })
      assert.is_nil(none)
      assert.equal(500, bad.status)
      assert.matches("subprotocol 'zzz' was not offered", bad.error)
      ws, res = c:websocket("/raw?proto=chat", { protocols = "chat, other" })
      assert.equal("chat", res.headers["sec-websocket-protocol"])
    end)

    it("gives websocket.Accept only to valid upgrade requests; 426 for another version", function()
      assert.equal("plain false", c:get("/echo").body)
      local none, res = c:websocket("/echo", { version = "8" })
      assert.is_nil(none)
      assert.equal(426, res.status)
      assert.equal("13", res.headers["sec-websocket-version"])
      none, res = c:websocket("/echo", { key = "short" })
      assert.equal(200, res.status)
      none, res = c:websocket("/nothing")
      assert.equal(200, res.status)
    end)

    it("lets another request send to sockets waiting in receive", function()
      local a = assert(c:websocket("/room"))
      local b = assert(c:websocket("/room"))
      assert.equal("joined", a:receive())
      assert.equal("joined", b:receive())
      assert.equal("2", c:post("/say", { body = "hi all" }).body)
      assert.equal("hi all", a:receive())
      assert.equal("hi all", b:receive())
      a:close()
      assert.equal("1", c:post("/say", { body = "one left" }).body)
      b:close()
    end)

    it("closes with 1011 when the app fails after accepting", function()
      local ws = assert(c:websocket("/write-after"))
      assert.same({ nil, "closed", 1011, "" }, { ws:receive() })
      assert.matches("OutputStream used after its response finished", ws.error)
    end)

    it("reports a dropped connection as 1006 and fires the socket's token", function()
      local log = {}
      local app = function(env)
        local sock = websocket.accept(env)
        sock:cancelled():register(function() log[#log + 1] = "cancelled" end)
        local _, why, code = sock:receive()
        log[#log + 1] = why .. " " .. code
        log[#log + 1] = tostring(select(3, sock:send("x")))
        log[#log + 1] = sock:state()
      end
      local ws = assert(test.client(app):websocket("/"))
      ws:disconnect()
      assert.same({ "cancelled", "closed 1006", "EPIPE", "closed" }, log)
      assert.equal("closed", ws:state())
    end)

    it("fails the connection on invalid UTF-8 (1007) and on messages over the limit (1009)", function()
      local ws = assert(c:websocket("/echo"))
      ws:send("\xc3\x28")
      assert.same({ nil, "closed", 1007, "" }, { ws:receive() })
      local small = test.client("spec/fixtures/ws.lua", { ws_max_message = 10 })
      ws = assert(small:websocket("/echo"))
      ws:send(string.rep("m", 11), "binary")
      assert.same({ nil, "closed", 1009, "" }, { ws:receive() })
    end)

    it("closes a socket still open at the end of the app with 1000, and <close> works", function()
      local app = function(env)
        local sock <close> = websocket.accept(env)
        sock:send("bye")
      end
      local ws = assert(test.client(app):websocket("/"))
      assert.equal("bye", ws:receive())
      assert.same({ nil, "closed", 1000, "" }, { ws:receive() })
    end)

    it("answers a client's close only after the app took the messages before it", function()
      local seen = {}
      local app = function(env)
        local sock = websocket.accept(env)
        owin.sleep(1)
        for msg in sock:messages() do seen[#seen + 1] = msg end
        seen[#seen + 1] = sock:state()
      end
      local ws = assert(test.client(app):websocket("/"))
      ws:send("one")
      ws:send("two")
      assert.equal(4000, ws:close(4000))
      assert.same({ "one", "two", "closed" }, seen)
    end)

    it("sends fragments through the raw SendAsync and joins them", function()
      local app = function(env)
        env["websocket.Accept"](nil, function(raw)
          raw["websocket.SendAsync"]("Hel", 1, false)
          raw["websocket.SendAsync"]("lo", 2, true)     -- later fragments keep the type
          local data, kind, fin = raw["websocket.ReceiveAsync"]()
          raw["websocket.SendAsync"](data .. kind .. tostring(fin))
          assert(raw["websocket.ReceiveAsync"]() == "")
          raw["websocket.SendAsync"](tostring(raw["websocket.ClientCloseStatus"]))
        end)
      end
      local ws = assert(test.client(app):websocket("/"))
      assert.same({ "Hello", "text" }, { ws:receive() })
      ws:send("x", "binary")
      assert.equal("x2true", ws:receive())
      ws:close(3000)
    end)

    it("closes open sockets with 1001 at shutdown and fires their tokens", function()
      local fired = false
      local app = function(env)
        local sock = websocket.accept(env)
        sock:cancelled():register(function() fired = true end)
        sock:receive()
      end
      local client = test.client(app)
      local ws = assert(client:websocket("/"))
      client:shutdown()
      assert.same({ nil, "closed", 1001, "server shutting down" }, { ws:receive() })
      assert.is_true(fired)
    end)

    it("hands the raw connection to an opaque.Upgrade callback", function()
      local stream, res = c:upgrade("/opaque", "shout/1")
      assert.equal(101, res.status)
      assert.equal("shout/1", res.headers["upgrade"])
      stream:send("hello")
      assert.equal("HELLO", stream:receive())
      stream:send("quit")
      assert.equal("QUIT", stream:receive())
      assert.same({ nil, "closed" }, { stream:receive() })
    end)
  end)
end)
