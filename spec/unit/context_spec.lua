-- owin.context (lua/owin/context.lua, docs/context.md) driven in plain
-- Lua: fake env tables shaped like the server's (case-insensitive headers
-- tables, response keys that refuse changes once the headers went out,
-- streams shaped like file handles), no server.
--
--   busted --lua=lua5.4 spec/unit/context_spec.lua

local owin = require("owin")
local context = require("owin.context")

local METHOD, PATH, BASE, QUERY = "owin.RequestMethod", "owin.RequestPath",
  "owin.RequestPathBase", "owin.RequestQueryString"
local REQH, REQB = "owin.RequestHeaders", "owin.RequestBody"
local STATUS, REASON, RESH, RESB = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase",
  "owin.ResponseHeaders", "owin.ResponseBody"

-- A headers table: names ignore case, a string is stored as { string },
-- nil removes, pairs() gives each name once; freeze() makes it refuse
-- changes, as the server's does once the headers went out.
local function headers(init)
  local store, names, frozen = {}, {}, false
  local h = setmetatable({}, {
    __index = function(_, k)
      if type(k) == "string" then return store[k:lower()] end
    end,
    __newindex = function(_, k, v)
      if frozen then error("headers already sent: cannot set '" .. k .. "'", 2) end
      if type(v) == "string" or type(v) == "number" then v = { tostring(v) } end
      store[k:lower()], names[k:lower()] = v, k
    end,
    __pairs = function()
      local function nxt(_, k)
        local lk, v = next(store, k and k:lower())
        if lk == nil then return nil end
        return names[lk], v
      end
      return nxt, nil, nil
    end,
  })
  for k, v in pairs(init or {}) do h[k] = v end
  return h, function() frozen = true end
end

-- An input stream over `body` (a string, or an array of chunks), or one
-- that fails with `fail` ("ECONNRESET", ...).
local function input(body, fail, no_chunks)
  local chunks = type(body) == "table" and body or { body or "" }
  local i = 1
  local s = {}
  function s:read(n)
    if fail then return nil, fail .. ": client closed the connection", fail end
    if n == "a" then
      local rest = table.concat(chunks, "", i)
      i = #chunks + 1
      return rest
    end
    while chunks[i] == "" do i = i + 1 end
    local c = chunks[i]
    if c == nil then return nil end
    if #c > n then
      chunks[i] = c:sub(n + 1)
      return c:sub(1, n)
    end
    i = i + 1
    return c
  end
  if not no_chunks then
    function s:chunks()
      return function()
        local c, err = self:read(65536)
        if c == nil and err then error("body:chunks(): " .. err) end
        return c
      end
    end
  end
  return s
end

-- A fake env.  opts: method, path, base, query, headers, body, fail.
-- Returns the env and a probe: probe.out() is what was written,
-- probe.sent is true after the first write or flush.
local function fake_env(opts)
  opts = opts or {}
  local resh, freeze = headers()
  local probe = { status = 200, parts = {}, sent = false }
  local out = {}
  local function commit()
    if not probe.sent then
      probe.sent = true
      freeze()
    end
  end
  function out:write(...)
    if probe.epipe then return nil, "EPIPE: client closed the connection", "EPIPE" end
    commit()
    for i = 1, select("#", ...) do probe.parts[#probe.parts + 1] = tostring((select(i, ...))) end
    return self
  end
  function out:flush()
    commit()
    probe.flushed = true
    return self
  end
  function probe.out() return table.concat(probe.parts) end
  local env = {
    ["owin.RequestScheme"] = "http",
    [METHOD] = opts.method or "GET",
    [BASE] = opts.base or "",
    [PATH] = opts.path or "/",
    [QUERY] = opts.query or "",
    ["owin.RequestProtocol"] = "HTTP/1.1",
    [REQH] = headers(opts.headers),
    [REQB] = input(opts.body, opts.fail, opts.no_chunks),
    [RESB] = out,
    ["owin.RequestId"] = "7",
    ["owin.Version"] = "1.0",
    ["server.RemoteIpAddress"] = "127.0.0.1",
    ["server.RemotePort"] = "40000",
    ["server.IsLocal"] = true,
  }
  local response = { [STATUS] = true, [REASON] = true, [RESH] = true }
  setmetatable(env, {
    __index = function(_, k)
      if k == STATUS then return probe.status end
      if k == REASON then return probe.reason end
      if k == RESH then return resh end
    end,
    __newindex = function(t, k, v)
      if not response[k] then return rawset(t, k, v) end
      if probe.sent then error("headers already sent: cannot change " .. k, 2) end
      if k == STATUS then
        if math.type(v) ~= "integer" or v < 100 or v > 999 then
          error("owin.ResponseStatusCode must be an integer from 100 to 999", 2)
        end
        probe.status = v
      elseif k == REASON then
        probe.reason = v
      else
        resh = headers(v)
      end
    end,
  })
  return env, probe
end

-- Runs appfunc(env) in a registered coroutine, as a host does.
local function serve(appfunc, env)
  local co = coroutine.create(appfunc)
  owin.set_env(co, env)
  local ok, err = coroutine.resume(co, env)
  if not ok then error(err, 0) end
  return env
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

describe("owin.context #unit", function()
  describe("the context", function()
    it("is owin.context once loaded, and callable as the module", function()
      assert.are.equal(context, owin.context)
      local env = fake_env()
      local ctx = owin.context(env)
      assert.are.equal(env, ctx.env)
      assert.is_table(ctx.request)
      assert.is_table(ctx.response)
      assert.are.equal(ctx, context.get(env))
    end)

    it("gives the same object to calls for one env that follow each other", function()
      local env = fake_env()
      assert.are.equal(context(env), context(env))
    end)

    it("gives another env its own objects, and equal views of an env asked for again", function()
      local env1, env2 = fake_env({ path = "/one" }), fake_env({ path = "/two" })
      local c1 = context(env1)
      local c2 = context(env2)
      assert.are_not.equal(c1, c2)
      assert.are.equal("/two", c2.request.path)
      local again = context(env1)
      assert.are.equal(env1, again.env)
      assert.are.equal("/one", again.request.path)
      assert.are.equal("/one", c1.request.path)
    end)

    it("gives an env copied with its keys a context of its own", function()
      local env = fake_env({ path = "/orig" })
      local ctx = context(env)
      local copy = setmetatable({}, getmetatable(env))
      for k, v in next, env do copy[k] = v end
      copy[PATH] = "/copy"
      local cc = context(copy)
      assert.are.equal(copy, cc.env)
      assert.are.equal("/copy", cc.request.path)
      assert.are.equal("/orig", ctx.request.path)
    end)

    it("refuses new fields on ctx, pointing at the env", function()
      local ctx = context(fake_env())
      local ok, err = pcall(function() ctx.user = "alice" end)
      assert.is_false(ok)
      assert.matches("ctx.user cannot be assigned", err, 1, true)
      assert.matches("ctx.env[key] = value", err, 1, true)
    end)

    it("shares what was parsed between the contexts of one env", function()
      local env = fake_env({ query = "a=1", body = "x=1", headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded" } })
      local q1 = context(env).request.query
      context(fake_env())                         -- another request asks in between
      local c2 = context(env)
      assert.are.equal(q1, c2.request.query)     -- not parsed again
      assert.are.same({ x = "1" }, c2.request:form())
      context(fake_env())
      assert.are.equal("x=1", context(env).request:body())  -- the body was read once, and kept
    end)
  end)

  describe("ctx.request", function()
    it("reads every property from the env", function()
      local env = fake_env({ method = "POST", path = "/p", base = "/b", query = "q=1",
                             headers = { Host = "h" } })
      local req = context(env).request
      assert.are.equal("POST", req.method)
      assert.are.equal("/p", req.path)
      assert.are.equal("/b", req.path_base)
      assert.are.equal("q=1", req.query_string)
      assert.are.equal("http", req.scheme)
      assert.are.equal("HTTP/1.1", req.protocol)
      assert.are.equal(env[REQH], req.headers)
      assert.are.equal(env[REQB], req.stream)
      assert.are.equal("7", req.id)
      assert.are.equal("127.0.0.1", req.remote_addr)
      assert.are.equal("40000", req.remote_port)
      assert.is_true(req.is_local)
      assert.are.equal(env, req.env)
      assert.is_nil(req.no_such_property)
    end)

    it("sees changes made to the env after it was made, and never copies", function()
      local env = fake_env({ path = "/a", query = "x=1" })
      local req = context(env).request
      assert.are.equal("1", req.query.x)
      env[PATH] = "/b"
      env[QUERY] = "x=2&y=3"
      env[METHOD] = "DELETE"
      assert.are.equal("/b", req.path)
      assert.are.equal("DELETE", req.method)
      assert.are.same({ x = "2", y = "3" }, req.query)
    end)

    it("writes method, path, path_base and query_string through to the env", function()
      local env = fake_env()
      local req = context(env).request
      req.path = "/rewritten"
      req.query_string = "a=b"
      req.method = "PUT"
      req.path_base = "/base"
      assert.are.equal("/rewritten", env[PATH])
      assert.are.equal("a=b", env[QUERY])
      assert.are.equal("PUT", env[METHOD])
      assert.are.equal("/base", env[BASE])
      assert.are.equal("b", req.query.a)
    end)

    it("raises on assigning a read-only or unknown property, or a non-string path", function()
      local req = context(fake_env()).request
      assert.has_error(function() req.id = "1" end, "ctx.request.id cannot be assigned")
      assert.has_error(function() req.pth = "/" end, "ctx.request.pth cannot be assigned")
      assert.has_error(function() req.path = 1 end, "ctx.request.path must be a string, got number")
    end)

    describe("query", function()
      local function q(s)
        local req = context(fake_env({ query = s })).request
        return req.query, req
      end

      it("maps each name to its first value; query_all keeps every value in order", function()
        local query, req = q("a=1&b=2&a=3&a=4")
        assert.are.same({ a = "1", b = "2" }, query)
        assert.are.same({ "1", "3", "4" }, req:query_all("a"))
        assert.are.same({ "2" }, req:query_all("b"))
        assert.are.same({}, req:query_all("missing"))
      end)

      it("gives query_all a copy: changing it changes nothing", function()
        local _, req = q("a=1&a=2")
        local all = req:query_all("a")
        all[1] = "x"
        assert.are.same({ "1", "2" }, req:query_all("a"))
      end)

      it("percent-decodes names and values, and reads + as a space", function()
        assert.are.same({ ["a b"] = "c d", e = "1+1", f = "/?&=" }, (q("a+b=c%20d&e=1%2B1&f=%2F%3F%26%3D")))
        assert.are.same({ name = "caf\xc3\xa9" }, (q("name=caf%C3%A9")))
        assert.are.same({ x = "\xff" }, (q("x=%ff")))
      end)

      it("keeps invalid escapes as sent", function()
        assert.are.same({ a = "%zz", b = "100%", c = "%4" }, (q("a=%zz&b=100%&c=%4")))
      end)

      it("gives a name without = the empty value, and skips empty pairs", function()
        assert.are.same({ flag = "", a = "", b = "1" }, (q("&&flag&a=&&b=1&")))
        assert.are.same({ [""] = "x" }, (q("=x")))
        assert.are.same({}, (q("")))
        assert.are.same({ a = "b=c" }, (q("a=b=c")))
      end)

      it("parses once per query string", function()
        local env = fake_env({ query = "a=1" })
        local req = context(env).request
        assert.are.equal(req.query, req.query)
        local before = req.query
        env[QUERY] = "a=2"
        assert.are_not.equal(before, req.query)
        assert.are.equal("2", req.query.a)
      end)

      it("is empty when the env has no query string at all", function()
        local env = fake_env()
        rawset(env, QUERY, nil)
        assert.are.same({}, context(env).request.query)
      end)
    end)

    describe("header", function()
      it("ignores case and joins repeated values with \", \"", function()
        local req = context(fake_env({ headers = { Accept = { "a/b", "c/d" }, ["X-One"] = "1" } })).request
        assert.are.equal("a/b, c/d", req:header("accept"))
        assert.are.equal("a/b, c/d", req:header("ACCEPT"))
        assert.are.equal("1", req:header("x-one"))
        assert.is_nil(req:header("missing"))
      end)

      it("finds lowercase names in a plain headers table too", function()
        local env = fake_env()
        rawset(env, REQH, { ["content-type"] = { "text/plain" } })
        assert.are.equal("text/plain", context(env).request:header("Content-Type"))
      end)

      it("raises when the name is not a string", function()
        local req = context(fake_env()).request
        assert.has_error(function() req:header(nil) end,
          "bad argument #1 to 'header' (string expected, got nil)")
      end)
    end)

    describe("cookies", function()
      local function cookies(v)
        return context(fake_env({ headers = { Cookie = v } })).request.cookies
      end

      it("parses name=value pairs separated by ;", function()
        assert.are.same({ a = "1", b = "2", session = "abc" }, cookies("a=1; b=2;session=abc"))
      end)

      it("drops whitespace and one pair of quotes around values", function()
        assert.are.same({ a = "x y", b = "quoted" }, cookies('  a = x y ;b="quoted" '))
      end)

      it("skips malformed pairs and keeps the first of repeated names", function()
        assert.are.same({ good = "1", dup = "first", e = "" },
          cookies("novalue; =noname; ;; good=1; dup=first; dup=second; e="))
        assert.are.same({ a = "b=c" }, cookies("a=b=c"))
      end)

      it("does not percent-decode values", function()
        assert.are.same({ a = "x%20y" }, cookies("a=x%20y"))
      end)

      it("joins several Cookie lines", function()
        assert.are.same({ a = "1", b = "2" }, cookies({ "a=1", "b=2" }))
      end)

      it("is empty without a Cookie header", function()
        assert.are.same({}, context(fake_env()).request.cookies)
      end)

      it("is parsed again when the Cookie header changed", function()
        local env = fake_env({ headers = { Cookie = "a=1" } })
        local req = context(env).request
        assert.are.equal("1", req.cookies.a)
        env[REQH].cookie = "a=2"
        assert.are.equal("2", req.cookies.a)
      end)
    end)

    describe("body", function()
      it("reads the whole body, once, and keeps it", function()
        local req = context(fake_env({ body = { "hel", "lo" } })).request
        assert.are.equal("hello", req:body())
        assert.are.equal("hello", req:body())
      end)

      it("gives \"\" for an empty body, or when the stream was read already", function()
        assert.are.equal("", context(fake_env()).request:body())
        local env = fake_env({ body = "data" })
        env[REQB]:read("a")                        -- raw middleware took it
        assert.are.equal("", context(env).request:body())
      end)

      it("reads the stream that is in the env now", function()
        local env = fake_env({ body = "old" })
        local req = context(env).request
        assert.are.equal("old", req:body())
        env[REQB] = input("new")                   -- a middleware replaced the stream
        assert.are.equal("new", req:body())
      end)

      it("returns nil, err, code when the read fails", function()
        local req = context(fake_env({ fail = "ECONNRESET" })).request
        assert.are.same({ nil, "ECONNRESET: client closed the connection", "ECONNRESET" },
          { req:body() })
      end)

      it("iterates chunks with the stream's chunks()", function()
        local req = context(fake_env({ body = { "a", "bc", "def" } })).request
        local got = {}
        for c in req:chunks() do got[#got + 1] = c end
        assert.are.same({ "a", "bc", "def" }, got)
      end)

      it("iterates chunks with read(n) when the stream has no chunks()", function()
        local req = context(fake_env({ body = { "a", "bc" }, no_chunks = true })).request
        local got = {}
        for c in req:chunks() do got[#got + 1] = c end
        assert.are.same({ "a", "bc" }, got)
        local failing = context(fake_env({ fail = "ETIMEDOUT", no_chunks = true })).request
        assert.has_error(function() for _ in failing:chunks() do end end,
          "request:chunks(): ETIMEDOUT: client closed the connection")
      end)
    end)

    describe("form", function()
      local function form_of(body, ctype)
        return context(fake_env({ method = "POST", body = body,
          headers = { ["Content-Type"] = ctype or "application/x-www-form-urlencoded" } })).request
      end

      it("decodes a urlencoded body, repeated names as arrays", function()
        local req = form_of("name=J%C3%BCrgen+X&tag=a&tag=b&tag=c&empty=&flag")
        assert.are.same({ name = "J\xc3\xbcrgen X", tag = { "a", "b", "c" }, empty = "", flag = "" },
          req:form())
      end)

      it("accepts parameters and any case in the Content-Type", function()
        local req = form_of("a=1", "Application/X-WWW-Form-Urlencoded; charset=UTF-8")
        assert.are.same({ a = "1" }, req:form())
      end)

      it("is empty for another content type, or none", function()
        assert.are.same({}, form_of("a=1", "application/json"):form())
        assert.are.same({}, context(fake_env({ body = "a=1" })).request:form())
      end)

      it("leaves the body readable: form() then body()", function()
        local req = form_of("a=1&b=2")
        assert.are.same({ a = "1", b = "2" }, req:form())
        assert.are.equal("a=1&b=2", req:body())
        assert.are.equal(req:form(), req:form())
      end)

      it("decodes a multipart/form-data body (more in multipart_spec.lua)", function()
        local req = form_of("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--",
          "multipart/form-data; boundary=x")
        assert.are.same({ a = "1" }, req:form())
      end)

      it("returns nil, err, code and the status to answer when reading fails", function()
        local function fails(code)
          return context(fake_env({ fail = code,
            headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })).request
        end
        assert.are.same({ nil, "E2BIG: client closed the connection", "E2BIG", 413 },
          { fails("E2BIG"):form() })
        assert.are.same({ nil, "ETIMEDOUT: client closed the connection", "ETIMEDOUT", 408 },
          { fails("ETIMEDOUT"):form() })
        assert.are.same({ nil, "ECONNRESET: client closed the connection", "ECONNRESET", 400 },
          { fails("ECONNRESET"):form() })
      end)
    end)

    describe("json", function()
      local json = require("owin.json")
      after_each(function() context.set_json(nil) end)

      -- An input stream over chunks that counts its reads.
      local function counted(chunks)
        local env = fake_env({ body = chunks })
        local stream, reads = env[REQB], 0
        local read = stream.read
        function stream.read(self, n)
          reads = reads + 1
          return read(self, n)
        end
        return env, function() return reads end
      end

      it("decodes the body with owin.json: arrays marked, null is json.null", function()
        local req = context(fake_env({ body = '{"a":[1,2],"b":"x","c":[],"d":{},"e":null}' })).request
        local v = req:json()
        assert.are.same({ a = { 1, 2 }, b = "x", c = {}, d = {}, e = json.null }, v)
        assert.is_true(json.is_array(v.a))
        assert.is_true(json.is_array(v.c))
        assert.is_false(json.is_array(v.d))
        assert.are.equal(json.null, v.e)
      end)

      it("returns nil, EINVAL for a body that is not JSON, or empty", function()
        local r = { context(fake_env({ body = "{nope" })).request:json() }
        assert.is_nil(r[1])
        assert.are.equal("EINVAL: invalid JSON: expected object key string but found invalid token " ..
          "at byte 2", r[2])
        assert.are.equal("EINVAL", r[3])
        assert.are.same({ nil, "EINVAL: empty body, JSON expected", "EINVAL" },
          { context(fake_env({ body = " \n" })).request:json() })
        assert.are.same({ nil, "EINVAL: invalid JSON: expected the end but found invalid token " ..
          "at byte 9", "EINVAL" }, { context(fake_env({ body = '{"a":1} x' })).request:json() })
      end)

      it("refuses a body past max_bytes, 1 MiB unless given, reading no more than it must", function()
        local big = '"' .. string.rep("x", 1024 * 1024) .. '"'
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 1048576 bytes", "E2BIG" },
          { context(fake_env({ body = big })).request:json() })
        assert.are.equal(1024 * 1024, #context(fake_env({ body = big })).request:json(2 * 1024 * 1024))

        local env, reads = counted({ '{"a":', '"xxxxxxxxxx', 'xxxxx"}' })
        local req = context(env).request
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 12 bytes", "E2BIG" },
          { req:json(12) })
        assert.are.equal(2, reads())                      -- stopped at the chunk past the limit
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 12 bytes", "E2BIG" },
          { req:body() })                                 -- the body is gone
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 12 bytes", "E2BIG" },
          { req:json(100) })

        env, reads = counted({ "[1]" })
        env[REQH]["Content-Length"] = "3000"
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 100 bytes", "E2BIG" },
          { context(env).request:json(100) })
        assert.are.equal(0, reads())                      -- refused on its Content-Length

        req = context(fake_env({ body = "[1, 2]" })).request
        assert.are.same({ 1, 2 }, req:json(6))
        assert.are.equal("[1, 2]", req:body())            -- kept: body() and json() again
        assert.are.same({ nil, "E2BIG: the JSON body is over the limit of 5 bytes", "E2BIG" },
          { req:json(5) })
      end)

      it("raises on a max_bytes that is not a size", function()
        local req = context(fake_env({ body = "{}" })).request
        assert.has_error(function() req:json(-1) end,
          "bad argument #1 to 'json' (a size in bytes expected, got -1)")
        assert.has_error(function() req:json("1k") end,
          "bad argument #1 to 'json' (a size in bytes expected, got 1k)")
      end)

      it("returns nil, err, code when reading fails", function()
        assert.are.same({ nil, "ECONNRESET: client closed the connection", "ECONNRESET" },
          { context(fake_env({ fail = "ECONNRESET" })).request:json() })
      end)

      it("uses a library given with set_json", function()
        context.set_json({
          encode = function(v) return "ENC:" .. tostring(v) end,
          decode = function(s) if s == "bad" then error("no") end return "DEC:" .. s end,
        })
        assert.are.equal("DEC:x", context(fake_env({ body = "x" })).request:json())
        assert.are.equal("EINVAL", select(3, context(fake_env({ body = "bad" })).request:json()))
        local env, probe = fake_env()
        context(env).response:json(5)
        assert.are.equal("ENC:5", probe.out())
        assert.has_error(function() context.set_json({ encode = print }) end,
          "bad argument #1 to 'set_json' (a table with encode and decode functions expected)")
        context.set_json(nil)
        env, probe = fake_env()
        context(env).response:json(json.array())
        assert.are.equal("[]", probe.out())
      end)

      it("raises, naming what to install, when lua-cjson is not there", function()
        local saved = { cjson = package.loaded.cjson, ["owin.json"] = package.loaded["owin.json"] }
        package.loaded.cjson, package.loaded["owin.json"] = nil, nil
        package.preload.cjson = function() error("not installed") end
        finally(function()
          package.preload.cjson = nil
          package.loaded.cjson, package.loaded["owin.json"] = saved.cjson, saved["owin.json"]
          context.set_json(nil)
        end)
        context.set_json(nil)
        local req = context(fake_env({ body = "{}" })).request
        local ok, err = pcall(req.json, req)
        assert.is_false(ok)
        assert.matches("owin.json needs lua-cjson, which is not installed (Debian: apt install " ..
          "lua-cjson", err, 1, true)
        local res = context(fake_env()).response
        ok, err = pcall(res.json, res, {})
        assert.is_false(ok)
        assert.matches("apt install lua-cjson", err, 1, true)
      end)
    end)
  end)

  describe("ctx.response", function()
    it("reads and writes the status in the env, both ways", function()
      local env = fake_env()
      local res = context(env).response
      assert.are.equal(200, res.status)
      res.status = 201
      assert.are.equal(201, env[STATUS])
      env[STATUS] = 404
      assert.are.equal(404, res.status)
      res.status = 302.0
      assert.are.equal(302, env[STATUS])
      assert.are.equal("integer", math.type(env[STATUS]))
    end)

    it("raises on a status that is not an integer from 100 to 999", function()
      local res = context(fake_env()).response
      for _, bad in ipairs({ 99, 1000, 200.5, "200", true }) do
        assert.has_error(function() res.status = bad end,
          "ctx.response.status must be an integer from 100 to 999, got " .. tostring(bad))
      end
    end)

    it("reads and writes the reason phrase, the headers table and the stream", function()
      local env = fake_env()
      local res = context(env).response
      assert.is_nil(res.reason)
      res.reason = "Fine"
      assert.are.equal("Fine", env[REASON])
      assert.are.equal(env[RESH], res.headers)
      assert.are.equal(env[RESB], res.stream)
      assert.are.equal(env, res.env)
      res.headers = { ["X-New"] = "1" }
      assert.are.same({ "1" }, env[RESH]["x-new"])
      assert.has_error(function() res.sent = true end, "ctx.response.sent cannot be assigned")
    end)

    describe("headers", function()
      it("sets with header(), appends with add_header(), reads joined with get_header()", function()
        local env = fake_env()
        local res = context(env).response
        assert.are.equal(res, res:header("Content-Type", "text/plain"))
        assert.are.same({ "text/plain" }, env[RESH]["content-type"])
        res:header("Vary", { "Accept", "Cookie" })
        assert.are.equal(res, res:add_header("vary", "Origin"))
        assert.are.same({ "Accept", "Cookie", "Origin" }, env[RESH].Vary)
        res:add_header("X-List", { "a", "b" })
        res:add_header("X-List", { "c" })
        assert.are.same({ "a", "b", "c" }, env[RESH]["x-list"])
        assert.are.equal("Accept, Cookie, Origin", res:get_header("VARY"))
        assert.is_nil(res:get_header("missing"))
        res:header("Vary", nil)
        assert.is_nil(env[RESH].vary)
      end)

      it("sees headers set by raw middleware", function()
        local env = fake_env()
        env[RESH]["X-Raw"] = { "1", "2" }
        assert.are.equal("1, 2", context(env).response:get_header("x-raw"))
      end)

      it("does not change an array it appends to", function()
        local env = fake_env()
        local arr = { "a" }
        env[RESH]["X-A"] = arr
        context(env).response:add_header("X-A", "b")
        assert.are.same({ "a" }, arr)
        assert.are.same({ "a", "b" }, env[RESH]["x-a"])
      end)
    end)

    describe("set_cookie", function()
      local function cookie_lines(fn)
        local env = fake_env()
        fn(context(env).response)
        return env[RESH]["set-cookie"]
      end

      it("appends one Set-Cookie line per cookie", function()
        assert.are.same({ "a=1", "b=two" }, cookie_lines(function(res)
          assert.are.equal(res, res:set_cookie("a", "1"))
          res:set_cookie("b", "two")
        end))
      end)

      it("writes every option", function()
        assert.are.same({ "sid=abc; Path=/; Domain=example.com; Max-Age=3600; " ..
          "Expires=Sun, 06 Nov 1994 08:49:37 GMT; Secure; HttpOnly; SameSite=Lax" },
          cookie_lines(function(res)
            res:set_cookie("sid", "abc", { path = "/", domain = "example.com", max_age = 3600,
              expires = 784111777, secure = true, http_only = true, same_site = "lax" })
          end))
        assert.are.same({ "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; SameSite=None" },
          cookie_lines(function(res)
            res:set_cookie("a", 1, { expires = "Wed, 21 Oct 2015 07:28:00 GMT", same_site = "None",
              secure = false, http_only = false })
          end))
      end)

      it("accepts an empty value and a quoted one", function()
        assert.are.same({ "a=", 'b="x"' }, cookie_lines(function(res)
          res:set_cookie("a", "")
          res:set_cookie("b", '"x"')
        end))
      end)

      it("raises on a name that is not a token", function()
        for _, bad in ipairs({ "", "a b", "a=b", "a;b", "\xc3\xa9", 1 }) do
          local ok, err = pcall(function() cookie_lines(function(res) res:set_cookie(bad, "v") end) end)
          assert.is_false(ok, "accepted name " .. tostring(bad))
          assert.matches("bad argument #1 to 'set_cookie'", err, 1, true)
        end
      end)

      it("raises on a value with bytes a cookie cannot carry", function()
        for _, bad in ipairs({ "a b", "a;b", "a,b", 'a"b', "a\\b", "a\nb", "caf\xc3\xa9", '"a', {} }) do
          local ok, err = pcall(function() cookie_lines(function(res) res:set_cookie("n", bad) end) end)
          assert.is_false(ok, "accepted value " .. tostring(bad))
          assert.matches("bad argument #2 to 'set_cookie'", err, 1, true)
          assert.matches("context.escape", err, 1, true)
        end
        assert.are.same({ "n=a%20b" }, cookie_lines(function(res)
          res:set_cookie("n", context.escape("a b"))
        end))
      end)

      it("raises on an unknown option or a bad option value", function()
        local function try(opts)
          local ok, err = pcall(function() cookie_lines(function(res) res:set_cookie("n", "v", opts) end) end)
          assert.is_false(ok)
          return err
        end
        assert.matches("unknown option httponly", try({ httponly = true }), 1, true)
        assert.matches("same_site", try({ same_site = "sometimes" }), 1, true)
        assert.matches("max_age", try({ max_age = 1.5 }), 1, true)
        assert.matches("path", try({ path = "/a;b" }), 1, true)
        assert.matches("domain", try({ domain = "x\r\n" }), 1, true)
        assert.matches("table expected", try("secure"), 1, true)
      end)

      it("deletes a cookie with an expired Set-Cookie", function()
        assert.are.same({ "sid=; Path=/app; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" },
          cookie_lines(function(res) res:delete_cookie("sid", { path = "/app", max_age = 99 }) end))
      end)
    end)

    describe("writing", function()
      it("writes and flushes through the env's stream, returning it", function()
        local env, probe = fake_env()
        local res = context(env).response
        assert.are.equal(env[RESB], res:write("a", 1, "b"))
        assert.are.equal(env[RESB], res:flush())
        assert.is_true(probe.flushed)
        assert.are.equal("a1b", probe.out())
      end)

      it("returns nil, err, code when the client is gone", function()
        local env, probe = fake_env()
        probe.epipe = true
        assert.are.same({ nil, "EPIPE: client closed the connection", "EPIPE" },
          { context(env).response:write("x") })
        assert.are.same({ nil, "EPIPE: client closed the connection", "EPIPE" },
          { context(env).response:text("x") })
      end)

      it("text() and html() set the type and the status", function()
        local env, probe = fake_env()
        local res = context(env).response
        assert.are.equal(res, res:text("hi", 201))
        assert.are.equal(201, env[STATUS])
        assert.are.same({ "text/plain; charset=utf-8" }, env[RESH]["content-type"])
        assert.are.equal("hi", probe.out())
        env, probe = fake_env()
        context(env).response:html("<p>", 404)
        assert.are.same({ "text/html; charset=utf-8" }, env[RESH]["content-type"])
        assert.are.equal(404, env[STATUS])
        assert.are.equal("<p>", probe.out())
        assert.has_error(function() context(fake_env()).response:text({}) end,
          "bad argument #1 to 'text' (string expected, got table)")
        assert.has_error(function() context(fake_env()).response:html("x", 42) end,
          "html: status must be an integer from 100 to 999, got 42")
      end)

      it("json() encodes with owin.json, with application/json", function()
        local json = require("owin.json")
        local env, probe = fake_env()
        context(env).response:json({ list = { 1, 2 } }, 202)
        assert.are.equal(202, env[STATUS])
        assert.are.same({ "application/json" }, env[RESH]["content-type"])
        assert.are.equal('{"list":[1,2]}', probe.out())
        env, probe = fake_env()
        context(env).response:json({ json.array(), json.null, 9007199254740993 })
        assert.are.equal("[[],null,9007199254740993]", probe.out())
        assert.has_error(function() context(fake_env()).response:json({ 0 / 0 }) end,
          "json.encode: NaN cannot be JSON at value[1]")
      end)

      it("redirect() answers 302 with Location and a short body", function()
        local env, probe = fake_env()
        local res = context(env).response
        assert.are.equal(res, res:redirect("/login?next=%2F"))
        assert.are.equal(302, env[STATUS])
        assert.are.same({ "/login?next=%2F" }, env[RESH].location)
        assert.are.equal("Redirecting to /login?next=%2F\n", probe.out())
        env = fake_env()
        context(env).response:redirect("https://example.com/", 308)
        assert.are.equal(308, env[STATUS])
        assert.has_error(function() context(fake_env()).response:redirect("/", 200) end,
          "redirect: status must be an integer from 300 to 399, got 200")
        assert.has_error(function() context(fake_env()).response:redirect(nil) end,
          "bad argument #1 to 'redirect' (string expected, got nil)")
      end)
    end)

    describe("sent", function()
      it("is false until the headers went out, then true, and changes nothing", function()
        local env, probe = fake_env()
        local res = context(env).response
        res.status = 207
        assert.is_false(res.sent)
        assert.are.equal(207, env[STATUS])
        assert.is_false(probe.sent)
        res:write("x")
        assert.is_true(res.sent)
        assert.is_true(res.sent)
        assert.are.equal(207, env[STATUS])
        assert.are.equal("x", probe.out())
      end)

      it("is false for an env that never refuses changes", function()
        local env = { [STATUS] = 200 }
        assert.is_false(context(env).response.sent)
      end)

      it("goes with the env's refusal to change status and headers afterwards", function()
        local env = fake_env()
        local res = context(env).response
        res:write("x")
        assert.has_error(function() res.status = 500 end,
          "headers already sent: cannot change owin.ResponseStatusCode")
        assert.has_error(function() res:header("X-Late", "1") end,
          "headers already sent: cannot set 'X-Late'")
      end)
    end)
  end)

  describe("helpers", function()
    it("escape and unescape percent-encoding", function()
      assert.are.equal("a%20b%2Bc%2F%C3%A9-._~", context.escape("a b+c/\xc3\xa9-._~"))
      assert.are.equal("a b+c/\xc3\xa9", context.unescape("a%20b+c%2F%C3%A9"))
      assert.are.equal("a b c", context.unescape("a+b%20c", true))
      for _, s in ipairs({ "", "plain", "\0\1\255", "100% & more" }) do
        assert.are.equal(s, context.unescape(context.escape(s)))
      end
    end)

    it("formats HTTP dates in English whatever the locale", function()
      assert.are.equal("Thu, 01 Jan 1970 00:00:00 GMT", context.http_date(0))
      assert.are.equal("Sun, 06 Nov 1994 08:49:37 GMT", context.http_date(784111777))
    end)

    it("parse_query and parse_cookies are the parsers behind query and cookies", function()
      local first, all = context.parse_query("a=1&a=2")
      assert.are.same({ a = "1" }, first)
      assert.are.same({ a = { "1", "2" } }, all)
      assert.are.same({ a = "1" }, context.parse_cookies("a=1"))
    end)

    it("app() and middleware() check their argument", function()
      assert.has_error(function() context.app(nil) end,
        "bad argument #1 to 'app' (function expected, got nil)")
      assert.has_error(function() context.middleware("x") end,
        "bad argument #1 to 'middleware' (function expected, got string)")
    end)
  end)

  describe("in one owin.new() pipeline with raw env middleware", function()
    it("lets each style see what the other did, in both directions", function()
      local seen = {}
      local app = owin.new()
      app.use(function(env, next)                       -- raw
        env[STATUS] = 202
        env[RESH]["X-Raw"] = "raw"
        env["myapp.user"] = "alice"
        next()
        seen.raw_after = { env[STATUS], env[RESH]["x-ctx"][1], env[PATH] }
      end)
      app.use(context.middleware(function(ctx, next)      -- context
        seen.ctx_before = { ctx.response.status, ctx.response:get_header("x-raw"), ctx.env["myapp.user"] }
        ctx.response:header("X-Ctx", "ctx")
        ctx.request.path = "/rewritten"
        next()
        seen.ctx_after = ctx.response.status
      end))
      app.use(function(env, next)                       -- raw again
        seen.raw_path = env[PATH]
        next()
      end)
      app.run(context.app(function(ctx)
        seen.app_path = ctx.request.path
        ctx.response.status = 201
        ctx.response:write("done")
      end))
      local env, probe = fake_env({ path = "/original" })
      serve(app.build(), env)
      assert.are.same({ 202, "raw", "alice" }, seen.ctx_before)
      assert.are.equal("/rewritten", seen.raw_path)
      assert.are.equal("/rewritten", seen.app_path)
      assert.are.equal(201, seen.ctx_after)
      assert.are.same({ 201, "ctx", "/rewritten" }, seen.raw_after)
      assert.are.equal("done", probe.out())
    end)

    it("follows map(): path and path_base inside the branch, restored after", function()
      local seen = {}
      local app = owin.new()
      app.use(function(env, next)
        local req = context(env).request
        next()
        seen.after = { req.path_base, req.path }
      end)
      app.map("/api", function(branch)
        branch.run(context.app(function(ctx)
          seen.inside = { ctx.request.path_base, ctx.request.path }
        end))
      end)
      serve(app.build(), fake_env({ path = "/api/items" }))
      assert.are.same({ "/api", "/items" }, seen.inside)
      assert.are.same({ "", "/api/items" }, seen.after)
    end)

    it("sees a query string rewritten by raw middleware", function()
      local got
      local app = owin.new()
      app.use(function(env, next)
        local _ = context(env).request.query     -- parsed before the rewrite
        env[QUERY] = "lang=fr"
        next()
      end)
      app.run(context.app(function(ctx) got = ctx.request.query.lang end))
      serve(app.build(), fake_env({ query = "lang=en" }))
      assert.are.equal("fr", got)
    end)

    it("keeps interleaved requests apart", function()
      local app = owin.new()
      app.use(context.middleware(function(ctx, next)
        coroutine.yield()                          -- the other request runs here
        next()
      end))
      app.run(context.app(function(ctx) ctx.response:write(ctx.request.path) end))
      local appfunc = app.build()
      local env1, p1 = fake_env({ path = "/one" })
      local env2, p2 = fake_env({ path = "/two" })
      local co1, co2 = coroutine.create(appfunc), coroutine.create(appfunc)
      owin.set_env(co1, env1)
      owin.set_env(co2, env2)
      assert(coroutine.resume(co1, env1))
      assert(coroutine.resume(co2, env2))
      assert(coroutine.resume(co1))
      assert(coroutine.resume(co2))
      assert.are.equal("/one", p1.out())
      assert.are.equal("/two", p2.out())
    end)

    it("reads a form in middleware and again in the app after other requests ran", function()
      local got, early
      local app = owin.new()
      app.use(context.middleware(function(ctx, next)
        if ctx.request.method == "POST" then
          early = ctx.request:form().b
          coroutine.yield()
        end
        next()
      end))
      app.run(context.app(function(ctx) got = ctx.request:form() end))
      local appfunc = app.build()
      local env = fake_env({ method = "POST", body = "a=1&a=2&b=3",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
      local co = coroutine.create(appfunc)
      owin.set_env(co, env)
      assert(coroutine.resume(co, env))
      serve(app.build(), fake_env({ path = "/other" }))   -- another request in between
      assert(coroutine.resume(co))
      assert.are.equal("3", early)
      assert.are.same({ a = { "1", "2" }, b = "3" }, got)
    end)
  end)

  it("keeps no state of its own: every key it reads is listed here", function()
    -- a guard against copies: after use, the objects hold the env and nothing else
    local env = fake_env({ query = "a=1", headers = { Cookie = "c=1" }, body = "b" })
    local ctx = context(env)
    local _ = ctx.request.query, ctx.request.cookies, ctx.request:body(), ctx.response.status
    assert.are.same({ "env", "request", "response" }, sorted_keys(ctx))
    assert.are.same({ 1 }, sorted_keys(ctx.request))
    assert.are.same({ 1 }, sorted_keys(ctx.response))
  end)
end)
