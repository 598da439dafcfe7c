-- owin.wsapi (docs/wsapi.md) and owin.headers in plain Lua: no
-- server.  OWIN -> WSAPI runs WSAPI apps on fake OWIN envs whose streams
-- behave like the server's (short reads, reads that may only wait in the
-- request's coroutine); WSAPI -> OWIN runs owinlua apps on WSAPI envs made
-- by Debian lua-wsapi's own wsapi.common (CGI-style lazy variables, an input
-- that reads byte counts only).
--
--   busted --lua=lua5.4 spec/unit/wsapi_spec.lua

local owin = require("owin")
local headers = require("owin.headers")
local wsapi = require("owin.wsapi")

local STATUS, REASON, RESPH = "owin.ResponseStatusCode", "owin.ResponseReasonPhrase",
  "owin.ResponseHeaders"

------------------------------------------------------------------------------
-- A fake OWIN env.  RequestBody:read(n) gives at most `step` bytes at a time
-- (as a socket does) and, like the server's, refuses to wait outside the
-- request's coroutine; ResponseBody records writes and flushes.

local function fake_env(t)
  t = t or {}
  local body, pos, step = t.body or "", 1, t.step or 3
  local res = { parts = {}, flushes = 0, writes = 0 }
  local req_co
  local input = {}
  function input:read(n)
    if t.read_error then return nil, t.read_error .. ": boom", t.read_error end
    if coroutine.running() ~= req_co then
      error("the request body can only wait in its own request's coroutine", 2)
    end
    if n == nil or n == "a" then
      local s = body:sub(pos)
      pos = #body + 1
      return s
    end
    if pos > #body then return nil end
    local s = body:sub(pos, pos + math.min(n, step) - 1)
    pos = pos + #s
    return s
  end
  local output = {}
  function output:write(...)
    if t.fail_after and res.writes >= t.fail_after then
      return nil, "EPIPE: client closed the connection", "EPIPE"
    end
    res.writes = res.writes + 1
    for i = 1, select("#", ...) do res.parts[#res.parts + 1] = tostring((select(i, ...))) end
    return self
  end
  function output:flush()
    res.flushes = res.flushes + 1
    return self
  end
  local env = {
    ["owin.RequestScheme"] = t.scheme or "http",
    ["owin.RequestMethod"] = t.method or "GET",
    ["owin.RequestPathBase"] = t.base or "",
    ["owin.RequestPath"] = t.path or "/",
    ["owin.RequestQueryString"] = t.query or "",
    ["owin.RequestProtocol"] = t.protocol or "HTTP/1.1",
    ["owin.RequestHeaders"] = headers.new(t.headers or { host = "example.com" }),
    ["owin.RequestBody"] = input,
    [STATUS] = 200,
    [RESPH] = headers.new(),
    ["owin.ResponseBody"] = output,
    ["server.RemoteIpAddress"] = t.remote or "10.1.2.3",
    ["server.RemotePort"] = t.rport or "40000",
    ["server.LocalIpAddress"] = t.laddr or "10.9.9.9",
    ["server.LocalPort"] = t.lport or "8080",
  }
  function res.body() return table.concat(res.parts) end
  function res.set_co(co) req_co = co end
  return env, res
end

-- Runs appfunc(env) in a coroutine registered with owin.set_env, as a host
-- does; raises what the app raised.
local function serve(appfunc, env, res)
  local co = coroutine.create(appfunc)
  res.set_co(co)
  owin.set_env(co, env)
  local ok, err = coroutine.resume(co, env)
  if not ok then error(err, 0) end
  assert.are.equal("dead", coroutine.status(co))
end

-- The WSAPI env the app saw for a request made from fake_env(t).
local function wsapi_env_of(t, opts)
  local env, res = fake_env(t)
  local seen
  serve(wsapi.app(function(w)
    seen = w
    return 200, {}, nil
  end, opts), env, res)
  return seen
end

-- Runs a WSAPI app on fake_env(t): returns env, res.
local function run(wsapi_app, t, opts)
  local env, res = fake_env(t)
  serve(wsapi.app(wsapi_app, opts), env, res)
  return env, res
end

------------------------------------------------------------------------------

describe("owin.headers (pure Lua) #unit", function()
  it("maps names to arrays, ignoring case", function()
    local h = headers.new({ ["Content-Type"] = "text/plain" })
    assert.are.same({ "text/plain" }, h["content-type"])
    assert.are.equal(h["CONTENT-TYPE"], h["Content-Type"])
    assert.is_nil(h["x-missing"])
    assert.is_nil(h[1])
  end)

  it("wraps strings and numbers, keeps arrays, removes on nil", function()
    local h = headers.new()
    h["X-Count"] = 3
    assert.are.same({ "3" }, h["x-count"])
    h["Set-Cookie"] = { "a=1", "b=2" }
    assert.are.same({ "a=1", "b=2" }, h["set-cookie"])
    h["x-count"] = nil
    assert.is_nil(h["X-Count"])
  end)

  it("yields each header once from pairs, with the spelling last given", function()
    local h = headers.new()
    h["x-a"] = "1"
    h["X-A"] = "2"
    h["b"] = "3"
    local seen = {}
    for name, values in pairs(h) do seen[name] = values[1] end
    assert.are.same({ ["X-A"] = "2", b = "3" }, seen)
  end)

  it("raises on names that are not tokens and on CR, LF or NUL in values", function()
    local h = headers.new()
    assert.has_error(function() h["bad name"] = "x" end,
      "invalid header name 'bad name': byte 32 is not a token character")
    assert.has_error(function() h[""] = "x" end, "invalid header name: empty")
    assert.has_error(function() h[1] = "x" end, "header name must be a string, got number")
    for _, v in ipairs({ "a\rb", "a\nb", "a\0b" }) do
      assert.has_error(function() h["x"] = v end,
        "invalid value for header 'x': CR, LF and NUL are not allowed")
      assert.has_error(function() h["x"] = { "ok", v } end,
        "invalid value for header 'x': CR, LF and NUL are not allowed")
    end
    assert.has_error(function() h["x"] = { {} } end, "value 1 of header 'x' must be a string, got table")
    assert.has_error(function() h["x"] = true end,
      "value of header 'x' must be a string or an array of strings, got boolean")
  end)

  it("accepts every RFC 9110 token character in names", function()
    local h = headers.new()
    h["!#$%&'*+-.^_`|~09azAZ"] = "ok"
    assert.are.same({ "ok" }, h["!#$%&'*+-.^_`|~09azaz"])
  end)

  it("hides its metatable, names itself, and is recognised", function()
    local h = headers.new()
    assert.are.equal(false, getmetatable(h))
    assert.matches("^owinlua.Headers: ", tostring(h))
    assert.is_true(headers.is(h))
    assert.is_false(headers.is({}))
  end)

  it("refuses assignments once frozen", function()
    local h = headers.new({ a = "1" })
    headers.freeze(h)
    assert.has_error(function() h["b"] = "2" end, "headers already sent: cannot set 'b'")
    assert.are.same({ "1" }, h.a)
  end)

  it("asks a miss function once per name, and a removed header stays removed", function()
    local asked = {}
    local h = headers.new(nil, function(lname)
      asked[#asked + 1] = lname
      if lname == "x-lazy" then return { "v" } end
    end)
    assert.are.same({ "v" }, h["X-Lazy"])
    assert.are.same({ "v" }, h["x-lazy"])
    assert.is_nil(h["x-none"])
    assert.is_nil(h["x-none"])
    assert.are.same({ "x-lazy", "x-none" }, asked)
    h["x-lazy"] = nil
    assert.is_nil(h["x-lazy"])
    h["x-set"] = "1"
    assert.are.same({ "1" }, h["x-set"])
    assert.are.same({ "x-lazy", "x-none" }, asked)
  end)
end)

------------------------------------------------------------------------------

describe("owin.wsapi: Debian's lua-wsapi under Lua 5.4 #unit", function()
  it("finds wsapi.* (and coxpcall) through the searcher and they load", function()
    for _, m in ipairs({ "wsapi", "wsapi.common", "wsapi.request", "wsapi.response",
                         "wsapi.util", "wsapi.cgi", "wsapi.xavante" }) do
      local ok, mod = pcall(require, m)
      assert(ok, "lua-wsapi: cannot require " .. m .. " (apt-get install lua-wsapi): " ..
        tostring(mod))
      assert.are.equal("table", type(mod))
    end
  end)
end)

describe("owin.wsapi: the WSAPI env of an OWIN request #unit", function()
  it("sets every CGI meta-variable from the OWIN env", function()
    local w = wsapi_env_of({ method = "POST", base = "/app", path = "/a/b", query = "x=1&y=2",
      protocol = "HTTP/1.0", remote = "10.1.2.3", rport = "40000", laddr = "10.9.9.9",
      lport = "8080", body = "abc",
      headers = { host = "example.com:9000", ["content-type"] = "text/plain",
                  ["content-length"] = "3", ["user-agent"] = "spec" } })
    assert.are.equal("POST", w.REQUEST_METHOD)
    assert.are.equal("/app", w.SCRIPT_NAME)
    assert.are.equal("/a/b", w.PATH_INFO)
    assert.are.equal("x=1&y=2", w.QUERY_STRING)
    assert.are.equal("HTTP/1.0", w.SERVER_PROTOCOL)
    assert.are.equal("example.com", w.SERVER_NAME)
    assert.are.equal("8080", w.SERVER_PORT)          -- the port it came in on, as nginx
    assert.are.equal("10.9.9.9", w.SERVER_ADDR)
    assert.are.equal("10.1.2.3", w.REMOTE_ADDR)
    assert.are.equal("40000", w.REMOTE_PORT)
    assert.are.equal("text/plain", w.CONTENT_TYPE)
    assert.are.equal("3", w.CONTENT_LENGTH)
    assert.are.equal("CGI/1.1", w.GATEWAY_INTERFACE)
    assert.are.equal("owinlua/" .. owin.version, w.SERVER_SOFTWARE)
    assert.are.equal("http", w.REQUEST_SCHEME)
    assert.are.equal("", w.HTTPS)
    assert.are.equal("example.com:9000", w.HTTP_HOST)
    assert.are.equal("spec", w.HTTP_USER_AGENT)
    assert.are.equal(io.stderr, w.error)
    assert.are.equal("table", type(w.input))
    assert.are.equal("table", type(w.owin_env))
  end)

  it("reads undefined variables as the empty string (WSAPI's rule)", function()
    local w = wsapi_env_of({})
    assert.are.equal("", w.CONTENT_TYPE)
    assert.are.equal("", w.CONTENT_LENGTH)
    assert.are.equal("", w.HTTP_COOKIE)
    assert.are.equal("", w.DOCUMENT_ROOT)
  end)

  it("keeps CONTENT_TYPE and CONTENT_LENGTH out of HTTP_*", function()
    local w = wsapi_env_of({ headers = { host = "h", ["content-type"] = "a/b",
                                         ["content-length"] = "0" } })
    assert.are.equal("", rawget(w, "HTTP_CONTENT_TYPE") or "")
    assert.are.equal("", rawget(w, "HTTP_CONTENT_LENGTH") or "")
    assert.are.equal("a/b", w.CONTENT_TYPE)
  end)

  it("gives PATH_INFO \"/\" for an empty path", function()
    assert.are.equal("/", wsapi_env_of({ path = "" }).PATH_INFO)
  end)

  it("says HTTPS=on and port 443 for https when the local port is unknown", function()
    local w = wsapi_env_of({ scheme = "https", lport = "", headers = { host = "secure.example" } })
    assert.are.equal("on", w.HTTPS)
    assert.are.equal("https", w.REQUEST_SCHEME)
    assert.are.equal("443", w.SERVER_PORT)
  end)

  it("takes SERVER_NAME and, on a unix socket, SERVER_PORT from Host", function()
    local w = wsapi_env_of({ lport = "", laddr = "", remote = "", rport = "",
                             headers = { host = "[::1]:8443" } })
    assert.are.equal("::1", w.SERVER_NAME)
    assert.are.equal("8443", w.SERVER_PORT)
    assert.are.equal("", w.REMOTE_ADDR)
    w = wsapi_env_of({ lport = "", headers = { host = "plain.example" } })
    assert.are.equal("plain.example", w.SERVER_NAME)
    assert.are.equal("80", w.SERVER_PORT)
  end)

  it("falls back to the local address when there is no Host (HTTP/1.0)", function()
    local w = wsapi_env_of({ headers = {} })
    assert.are.equal("10.9.9.9", w.SERVER_NAME)
  end)

  it("maps other headers to HTTP_*: upper case, \"-\" to \"_\"", function()
    local w = wsapi_env_of({ headers = { host = "h", ["x-request-id"] = "r1",
                                         ["Accept-Language"] = "en" } })
    assert.are.equal("r1", w.HTTP_X_REQUEST_ID)
    assert.are.equal("en", w.HTTP_ACCEPT_LANGUAGE)
  end)

  it("joins repeated headers with \", \", and Cookie with \"; \"", function()
    local w = wsapi_env_of({ headers = { host = "h", accept = { "a/b", "c/d" },
                                         cookie = { "a=1", "b=2" } } })
    assert.are.equal("a/b, c/d", w.HTTP_ACCEPT)
    assert.are.equal("a=1; b=2", w.HTTP_COOKIE)
  end)

  describe("header names with \"_\" (CVE-2024-45614)", function()
    it("never let X_Forwarded_For overwrite X-Forwarded-For, whatever the order", function()
      -- both spellings map to HTTP_X_FORWARDED_FOR; only the "-" one may
      for _, order in ipairs({ { "X-Forwarded-For", "X_Forwarded_For" },
                               { "X_Forwarded_For", "X-Forwarded-For" } }) do
        local h = { host = "h" }
        h[order[1]] = order[1] == "X-Forwarded-For" and "10.0.0.1" or "6.6.6.6"
        h[order[2]] = order[2] == "X-Forwarded-For" and "10.0.0.1" or "6.6.6.6"
        local w = wsapi_env_of({ headers = h })
        assert.are.equal("10.0.0.1", w.HTTP_X_FORWARDED_FOR)
      end
    end)

    it("drop a header spelled with \"_\" even when no \"-\" twin exists", function()
      local w = wsapi_env_of({ headers = { host = "h", x_forwarded_for = "6.6.6.6",
                                           content_length = "99" } })
      assert.are.equal("", w.HTTP_X_FORWARDED_FOR)
      assert.are.equal("", w.HTTP_CONTENT_LENGTH)
      assert.are.equal("", w.CONTENT_LENGTH)
      for k in pairs(w) do assert.is_nil(k:find("FORWARDED"), k) end
    end)

    it("drop other names nginx would refuse, and Proxy (httpoxy)", function()
      local w = wsapi_env_of({ headers = { host = "h", ["x.dot"] = "1", proxy = "evil:3128" } })
      for k in pairs(w) do
        assert.is_nil(k:find("DOT"), k)
        assert.are_not.equal("HTTP_PROXY", k)
      end
    end)

    it("keep them in the OWIN env the WSAPI env points to", function()
      local w = wsapi_env_of({ headers = { host = "h", x_y = "1" } })
      assert.are.same({ "1" }, w.owin_env["owin.RequestHeaders"]["x_y"])
    end)
  end)

  it("adds opts.vars and takes opts.error", function()
    local err = { write = function() end }
    local w = wsapi_env_of({}, { vars = { DOCUMENT_ROOT = "/srv/www", APP_PATH = "/srv/app" },
                                 error = err })
    assert.are.equal("/srv/www", w.DOCUMENT_ROOT)
    assert.are.equal("/srv/app", w.APP_PATH)
    assert.are.equal(err, w.error)
  end)

  it("reads a chunked body up front so CONTENT_LENGTH tells its size", function()
    local w, got
    local env, res = fake_env({ method = "POST", body = "a=1&b=2",
      headers = { host = "h", ["transfer-encoding"] = "chunked" } })
    serve(wsapi.app(function(wenv)
      w = wenv
      got = wenv.input:read(tonumber(wenv.CONTENT_LENGTH))
      return 200, {}, nil
    end), env, res)
    assert.are.equal("7", w.CONTENT_LENGTH)
    assert.are.equal("a=1&b=2", got)
  end)
end)

------------------------------------------------------------------------------

describe("owin.wsapi: the WSAPI input stream #unit", function()
  -- Runs f(input) inside a WSAPI app over a body; returns what f returns.
  local function with_input(body, f, t)
    t = t or {}
    t.body, t.method = body, "POST"
    t.headers = { host = "h", ["content-length"] = tostring(#body) }
    local out
    run(function(w)
      out = table.pack(f(w.input))
      return 200, {}, nil
    end, t)
    return table.unpack(out, 1, out.n)
  end

  it("read(n) returns n bytes across short reads, then the tail, then nil", function()
    local a, b, c = with_input("0123456789", function(i)
      return i:read(7), i:read(7), i:read(7)
    end, { step = 2 })
    assert.are.equal("0123456", a)
    assert.are.equal("789", b)
    assert.is_nil(c)
  end)

  it("read(0) returns \"\"", function()
    assert.are.equal("", with_input("abc", function(i) return i:read(0) end))
  end)

  it("read() returns the whole input, then nil (WSAPI's connectors' rule)", function()
    local a, b = with_input("whole body", function(i) return i:read(), i:read() end)
    assert.are.equal("whole body", a)
    assert.is_nil(b)
  end)

  it("read(\"*a\") and read(\"a\") return the rest, then \"\"", function()
    local a, b, c = with_input("abcdef", function(i) return i:read(2), i:read("*a"), i:read("a") end)
    assert.are.same({ "ab", "cdef", "" }, { a, b, c })
  end)

  it("read(\"*l\") returns lines without the newline; \"L\" keeps it", function()
    local a, b, c, d = with_input("one\ntwo\nlast", function(i)
      return i:read("*l"), i:read("L"), i:read("l"), i:read("l")
    end, { step = 2 })
    assert.are.same({ "one", "two\n", "last" }, { a, b, c })
    assert.is_nil(d)
  end)

  it("mixes lines, counts and the rest", function()
    local a, b, c = with_input("head\nbody-bytes", function(i)
      return i:read("l"), i:read(4), i:read("a")
    end)
    assert.are.same({ "head", "body", "-bytes" }, { a, b, c })
  end)

  it("iterates lines", function()
    local lines = with_input("a\nb\n", function(i)
      local t = {}
      for l in i:lines() do t[#t + 1] = l end
      return t
    end)
    assert.are.same({ "a", "b" }, lines)
  end)

  it("raises when the request body fails (a short body must not look complete)", function()
    local ok, err = pcall(with_input, "abc", function(i) return i:read(3) end,
      { read_error = "ECONNRESET" })
    assert.is_false(ok)
    assert.matches("owin.wsapi: request body: ECONNRESET: boom", err, 1, true)
  end)

  it("raises on a format it does not know", function()
    local ok, err = pcall(with_input, "abc", function(i) return i:read("n") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'read' (a byte count, \"a\", \"l\" or \"L\" expected, got n)",
      err, 1, true)
  end)

  it("reads for a coroutine iterator in the request's coroutine", function()
    -- the fake body refuses to read outside the request's coroutine, as the
    -- server's refuses to wait there
    local _, res = run(function(w)
      return 200, {}, coroutine.wrap(function()
        coroutine.yield("[" .. w.input:read(4) .. "]")
        coroutine.yield("[" .. w.input:read("l") .. "]")
        coroutine.yield("[" .. w.input:read("a") .. "]")
      end)
    end, { method = "POST", body = "abcdef\ntail", step = 1 })
    assert.are.equal("[abcd][ef][tail]", res.body())
  end)

  it("raises a clear error for a read in a coroutine nested in the iterator's", function()
    local ok, err = pcall(run, function(w)
      return 200, {}, coroutine.wrap(function()
        local inner = coroutine.wrap(function() return w.input:read(1) end)
        coroutine.yield(inner())
      end)
    end, { method = "POST", body = "abc" })
    assert.is_false(ok)
    assert.matches("read in a coroutine nested inside the body iterator's", err, 1, true)
  end)
end)

------------------------------------------------------------------------------

describe("owin.wsapi: running a WSAPI app #unit", function()
  local function body_of(s) return function() local d = s; s = nil; return d end end

  describe("status", function()
    it("takes a number", function()
      local env = run(function() return 201, {}, nil end)
      assert.are.equal(201, env[STATUS])
      assert.is_nil(env[REASON])
    end)

    it("takes a string of digits", function()
      assert.are.equal(404, run(function() return "404", {}, nil end)[STATUS])
    end)

    it("takes \"200 OK\" and keeps a reason phrase of its own", function()
      local env = run(function() return "200 OK", {}, nil end)
      assert.are.equal(200, env[STATUS])
      env = run(function() return "299 Quite Fine", {}, nil end)
      assert.are.equal(299, env[STATUS])
      assert.are.equal("Quite Fine", env[REASON])
    end)

    it("raises on anything else", function()
      for _, bad in ipairs({ "OK", "20", "1000 x", "2000", 99, 200.5, false }) do
        local ok, err = pcall(run, function() return bad, {}, nil end)
        assert.is_false(ok)
        assert.matches("owin.wsapi: the WSAPI application returned an invalid status: " ..
          tostring(bad), err, 1, true)
      end
      assert.has_error(function() run(function() return nil end) end)
    end)
  end)

  describe("headers", function()
    it("takes strings, numbers and arrays (Set-Cookie)", function()
      local env = run(function()
        return 200, { ["Content-Type"] = "text/plain", ["Content-Length"] = 2,
                      ["Set-Cookie"] = { "a=1; Path=/", "b=2" } }, body_of("ok")
      end)
      local h = env[RESPH]
      assert.are.same({ "text/plain" }, h["content-type"])
      assert.are.same({ "2" }, h["content-length"])
      assert.are.same({ "a=1; Path=/", "b=2" }, h["set-cookie"])
    end)

    it("adds up names that differ only in case", function()
      local env = run(function()
        return 200, { ["X-A"] = "1", ["x-a"] = { "2", "3" } }, nil
      end)
      local got = env[RESPH]["x-a"]
      table.sort(got)
      assert.are.same({ "1", "2", "3" }, got)
    end)

    it("replaces a header the pipeline set before, keeps the others", function()
      local env, res = fake_env()
      env[RESPH]["X-Frame-Options"] = "DENY"
      env[RESPH]["Content-Type"] = "application/json"
      serve(wsapi.app(function() return 200, { ["content-type"] = "text/html" }, nil end), env, res)
      assert.are.same({ "DENY" }, env[RESPH]["x-frame-options"])
      assert.are.same({ "text/html" }, env[RESPH]["content-type"])
    end)

    it("lets the headers table refuse a response split", function()
      assert.has_error(function()
        run(function() return 200, { ["X-Evil"] = "a\r\nSet-Cookie: x=1" }, nil end)
      end, "invalid value for header 'X-Evil': CR, LF and NUL are not allowed")
    end)
  end)

  describe("body", function()
    it("writes what a coroutine iterator yields (the WSAPI manual's hello)", function()
      local _, res = run(function(w)
        local function hello_text()
          coroutine.yield("<html><body>")
          coroutine.yield("<p>PATH_INFO: " .. w.PATH_INFO .. "</p>")
          coroutine.yield("</body></html>")
        end
        return 200, { ["Content-type"] = "text/html" }, coroutine.wrap(hello_text)
      end, { path = "/x" })
      assert.are.equal("<html><body><p>PATH_INFO: /x</p></body></html>", res.body())
      assert.are.equal(3, res.writes)
      assert.are.equal(0, res.flushes)
    end)

    it("writes what a plain function iterator returns until nil", function()
      local _, res = run(function()
        local i = 0
        return 200, {}, function()
          i = i + 1
          if i <= 3 then return "p" .. i end
        end
      end)
      assert.are.equal("p1p2p3", res.body())
    end)

    it("takes no body, or a string", function()
      local _, res = run(function() return 204, {}, nil end)
      assert.are.equal("", res.body())
      _, res = run(function() return 200, {}, "plain" end)
      assert.are.equal("plain", res.body())
    end)

    it("flushes after every piece with opts.flush", function()
      local _, res = run(function()
        return 200, {}, coroutine.wrap(function()
          coroutine.yield("a")
          coroutine.yield("b")
        end)
      end, nil, { flush = true })
      assert.are.equal(2, res.flushes)
    end)

    it("stops pulling the iterator once the client is gone", function()
      local pulled = 0
      local _, res = run(function()
        return 200, {}, function()
          pulled = pulled + 1
          if pulled < 100 then return "x" end
        end
      end, { fail_after = 2 })
      assert.are.equal("xx", res.body())
      assert.are.equal(3, pulled)
    end)

    it("raises on pieces that are not strings", function()
      assert.has_error(function()
        run(function() return 200, {}, body_of({}) end)
      end, "owin.wsapi: the body iterator returned a table (a string expected)")
    end)
  end)

  describe("errors", function()
    it("propagate to the host, which answers 500, with the app's message", function()
      local ok, err = pcall(run, function() error("kaboom") end)
      assert.is_false(ok)
      assert.matches("kaboom", err)
      assert.matches("stack traceback", err)
    end)

    it("from the iterator propagate too", function()
      local ok, err = pcall(run, function()
        return 200, {}, function() error("late") end
      end)
      assert.is_false(ok)
      assert.matches("late", err)
    end)

    it("error({ 404, msg }) answers that status, as WSAPI's launchers do", function()
      local env, res = run(function() error({ 404, "no such page" }) end)
      assert.are.equal(404, env[STATUS])
      assert.are.equal("no such page", res.body())
    end)
  end)

  describe("apps", function()
    it("may be a table with run", function()
      local _, res = run({ run = function() return 200, {}, "t" end })
      assert.are.equal("t", res.body())
    end)

    it("are refused when they are not apps", function()
      assert.has_error(function() wsapi.app(42) end)
      assert.has_error(function() wsapi.app({}) end)
    end)

    it("run as middleware, which never calls next", function()
      local b = owin.new()
      b.use(wsapi.middleware(function() return 200, {}, "mw" end))
      b.run(function() error("next was called") end)
      local env, res = fake_env()
      serve(b.build(), env, res)
      assert.are.equal("mw", res.body())
    end)

    it("see a map prefix as SCRIPT_NAME and the rest as PATH_INFO", function()
      local seen
      local b = owin.new()
      b.map("/legacy", function(branch)
        branch.run(wsapi.app(function(w)
          seen = { w.SCRIPT_NAME, w.PATH_INFO }
          return 200, {}, nil
        end))
      end)
      local env, res = fake_env({ path = "/legacy/page" })
      serve(b.build(), env, res)
      assert.are.same({ "/legacy", "/page" }, seen)
    end)

    it("use Debian's wsapi.request and wsapi.response", function()
      local request, response = require("wsapi.request"), require("wsapi.response")
      local env, res = run(function(w)
        local req = request.new(w)
        local r = response.new()
        r:set_cookie("seen", "yes")
        r:write("q=", req.GET.q, " name=", req.POST.name, " c=", req.cookies.c)
        return r:finish()
      end, { method = "POST", query = "q=lua", body = "name=Ada+L",
             headers = { host = "h", ["content-type"] = "application/x-www-form-urlencoded",
                         ["content-length"] = "10", cookie = "c=3" } })
      assert.are.equal("q=lua name=Ada L c=3", res.body())
      assert.are.same({ "seen=yes" }, env[RESPH]["set-cookie"])
      assert.are.same({ tostring(#res.body()) }, env[RESPH]["content-length"])
      assert.are.same({ "text/html" }, env[RESPH]["content-type"])
    end)
  end)

  describe("wsapi.load", function()
    local files = {}
    local function script(text)
      local name = os.tmpname()
      os.remove(name)
      name = name .. "_wsapiapp.lua"
      local f = assert(io.open(name, "w"))
      f:write(text)
      f:close()
      files[#files + 1] = name
      return name
    end
    after_each(function()
      for _, f in ipairs(files) do os.remove(f) end
      files = {}
    end)

    it("loads a Lua 5.1 module(..., package.seeall) app", function()
      local path = script([[
        module(..., package.seeall)
        local greeting = "hi from " .. _NAME
        function run(wsapi_env)
          return 200, { ["Content-type"] = "text/plain" },
            coroutine.wrap(function() coroutine.yield(greeting .. " at " .. wsapi_env.PATH_INFO) end)
        end
      ]])
      local app = wsapi.load(path, "spec_module_app")
      local _, res = run(app, { path = "/p" })
      assert.are.equal("hi from spec_module_app at /p", res.body())
      assert.are.equal("table", type(package.loaded.spec_module_app))
      assert.are.equal(app, package.loaded.spec_module_app.run)
      package.loaded.spec_module_app, _G.spec_module_app = nil, nil
    end)

    it("loads an app that returns a function, and one with a global run", function()
      local f = wsapi.load(script("return function() return 200, {}, 'ret' end"))
      assert.are.equal("ret", select(2, run(f)).body())
      local g = wsapi.load(script("function run() return 200, {}, 'glob' end"))
      assert.are.equal("glob", select(2, run(g)).body())
      assert.is_nil(rawget(_G, "run"))     -- its globals stay its own
    end)

    it("raises for scripts that are not apps", function()
      assert.has_error(function() wsapi.load(script("return 42")) end)
      assert.has_error(function() wsapi.load("/nonexistent/app.lua") end)
    end)
  end)
end)

------------------------------------------------------------------------------
-- WSAPI -> OWIN.  WSAPI envs come from wsapi.common.wsapi_env, the function
-- Debian's CGI and FastCGI connectors use: variables looked up one by one,
-- "" when missing, an input that reads byte counts.

local function cgi_env(vars, body, extra_input)
  local common = require("wsapi.common")
  local data = (body or "") .. (extra_input or "")
  local pos = 1
  local stdin = {
    reads = 0,
    read = function(self, n)
      assert(type(n) == "number", "the WSAPI input takes byte counts only")
      self.reads = self.reads + 1
      if pos > #data then return nil end
      local s = data:sub(pos, pos + n - 1)
      pos = pos + #s
      return s
    end,
  }
  local errors = {}
  local err = { write = function(_, ...) for _, s in ipairs({ ... }) do errors[#errors + 1] = s end end }
  local v = { REQUEST_METHOD = "GET", PATH_INFO = "/", SCRIPT_NAME = "", QUERY_STRING = "",
              SERVER_PROTOCOL = "HTTP/1.1", SERVER_NAME = "cgi.example", SERVER_PORT = "80",
              REMOTE_ADDR = "192.0.2.7", REMOTE_PORT = "5555" }
  for k, val in pairs(vars or {}) do v[k] = val end
  if body then v.CONTENT_LENGTH = v.CONTENT_LENGTH or tostring(#body) end
  local w = common.wsapi_env({ env = v, input = stdin, error = err })
  return w, { errors = errors, stdin = stdin, consumed = function() return pos - 1 end }
end

-- Calls a WSAPI app and drains its iterator: status, headers, body, pieces.
local function call(wsapi_app, w)
  local status, h, iter = wsapi_app(w)
  local pieces = {}
  for s in iter do pieces[#pieces + 1] = s end
  return status, h, table.concat(pieces), pieces
end

describe("owin.wsapi.handler: an owinlua app under a WSAPI host #unit", function()
  local function capture(vars, body, extra)
    local seen
    local w, io_ = cgi_env(vars, body, extra)
    local status, h, out = call(wsapi.handler(function(env)
      seen = env
      local b = env["owin.RequestBody"]:read("a")
      env["owin.ResponseBody"]:write(b)
    end), w)
    return seen, status, h, out, io_
  end

  it("builds the OWIN request keys from the CGI variables", function()
    local env = capture({ REQUEST_METHOD = "PUT", SCRIPT_NAME = "/cgi-bin/app.lua",
      PATH_INFO = "/items/7", QUERY_STRING = "a=1", SERVER_PROTOCOL = "HTTP/1.0" })
    assert.are.equal("PUT", env["owin.RequestMethod"])
    assert.are.equal("/cgi-bin/app.lua", env["owin.RequestPathBase"])
    assert.are.equal("/items/7", env["owin.RequestPath"])
    assert.are.equal("a=1", env["owin.RequestQueryString"])
    assert.are.equal("HTTP/1.0", env["owin.RequestProtocol"])
    assert.are.equal("http", env["owin.RequestScheme"])
    assert.are.equal("1.0", env["owin.Version"])
    assert.are.equal("192.0.2.7", env["server.RemoteIpAddress"])
    assert.are.equal("5555", env["server.RemotePort"])
    assert.are.equal("80", env["server.LocalPort"])
    assert.is_false(env["server.IsLocal"])
    assert.are.equal("table", type(env["wsapi.env"]))
  end)

  it("normalises SCRIPT_NAME \"/\" and an empty PATH_INFO", function()
    local env = capture({ SCRIPT_NAME = "/", PATH_INFO = "" })
    assert.are.equal("", env["owin.RequestPathBase"])
    assert.are.equal("/", env["owin.RequestPath"])
  end)

  it("says https for HTTPS=on", function()
    assert.are.equal("https", capture({ HTTPS = "on" })["owin.RequestScheme"])
    assert.are.equal("https", capture({ HTTPS = "ON" })["owin.RequestScheme"])
    assert.are.equal("http", capture({ HTTPS = "off" })["owin.RequestScheme"])
  end)

  it("looks request headers up case-insensitively from HTTP_* variables", function()
    local env = capture({ HTTP_HOST = "cgi.example", HTTP_USER_AGENT = "spec/1",
      HTTP_X_CUSTOM_THING = "yes", CONTENT_TYPE = "text/plain" }, "")
    local h = env["owin.RequestHeaders"]
    assert.are.same({ "cgi.example" }, h.Host)
    assert.are.same({ "spec/1" }, h["user-agent"])
    assert.are.same({ "yes" }, h["X-Custom-Thing"])      -- looked up on demand
    assert.are.same({ "text/plain" }, h["content-type"])
    assert.are.same({ "0" }, h["content-length"])
    assert.is_nil(h["x-absent"])
    -- pairs lists the common headers it found (CGI cannot list variables)
    local names = {}
    for name in pairs(h) do names[name] = true end
    assert.is_true(names.host and names["user-agent"] and names["content-type"])
  end)

  it("never reads HTTP_X_Y for a name spelled with \"_\"", function()
    local env = capture({ HTTP_X_FORWARDED_FOR = "10.0.0.1" })
    local h = env["owin.RequestHeaders"]
    assert.is_nil(h["x_forwarded_for"])
    assert.are.same({ "10.0.0.1" }, h["x-forwarded-for"])
  end)

  it("lists the HTTP_* variables a connector stored in the env table", function()
    local w = cgi_env({})
    rawset(w, "HTTP_X_STORED", "s")
    local seen
    call(wsapi.handler(function(env) seen = env end), w)
    local names = {}
    for name, v in pairs(seen["owin.RequestHeaders"]) do names[name] = v[1] end
    assert.are.equal("s", names["x-stored"])
  end)

  it("gives request headers the same behaviour as the server's", function()
    local env = capture({ HTTP_ACCEPT = "a/b" })
    local h = env["owin.RequestHeaders"]
    h["X-Added"] = "1"
    assert.are.same({ "1" }, h["x-added"])
    assert.has_error(function() h["x"] = "a\nb" end)
    h.accept = nil
    assert.is_nil(h.Accept)
  end)

  describe("owin.RequestBody", function()
    it("reads no further than CONTENT_LENGTH", function()
      local _, _, _, out, io_ = capture({ REQUEST_METHOD = "POST" }, "exactly", "MORE-BYTES-AFTER")
      assert.are.equal("exactly", out)
      assert.are.equal(7, io_.consumed())
    end)

    it("has no body without CONTENT_LENGTH", function()
      local w = cgi_env({ REQUEST_METHOD = "POST" })
      local got = {}
      call(wsapi.handler(function(env)
        local b = env["owin.RequestBody"]
        got = { b:read(10), b:read("a") }
      end), w)
      assert.are.same({ nil, "" }, { got[1], got[2] })
    end)

    it("reads up to n bytes, nil at the end, and iterates chunks", function()
      local w = cgi_env({ REQUEST_METHOD = "POST" }, "0123456789")
      local got
      call(wsapi.handler(function(env)
        local b = env["owin.RequestBody"]
        got = { b:read(4) }
        for c in b:chunks() do got[#got + 1] = c end
        got[#got + 1] = tostring(b:read(1))
      end), w)
      assert.are.same({ "0123", "456789", "nil" }, got)
    end)

    it("returns nil, \"ECONNRESET: ...\", \"ECONNRESET\" for a body cut short", function()
      local w = cgi_env({ REQUEST_METHOD = "POST", CONTENT_LENGTH = "10" }, "abc")
      local r
      call(wsapi.handler(function(env)
        r = table.pack(env["owin.RequestBody"]:read("a"))
      end), w)
      assert.are.same({ n = 3, nil, "ECONNRESET: request body ended before its Content-Length",
        "ECONNRESET" }, r)
    end)

    it("raises on a bad argument", function()
      local w = cgi_env({})
      local status = call(wsapi.handler(function(env) env["owin.RequestBody"]:read(0) end), w)
      assert.are.equal("500 Internal Server Error", status)
    end)
  end)

  describe("the response", function()
    it("returns a \"code reason\" status WSAPI connectors pass on as it is", function()
      local function status_of(code, reason)
        return (call(wsapi.handler(function(env)
          env[STATUS] = code
          env[REASON] = reason
        end), cgi_env({})))
      end
      assert.are.equal("200 OK", status_of(200))
      assert.are.equal("429 Too Many Requests", status_of(429))   -- missing in wsapi.common's table
      assert.are.equal("308 Permanent Redirect", status_of(308))
      assert.are.equal("299 Success", status_of(299))
      assert.are.equal("200 Fine Thanks", status_of(200, "Fine Thanks"))
    end)

    it("returns single values as strings and repeated ones as arrays", function()
      local _, h = call(wsapi.handler(function(env)
        env[RESPH]["Content-Type"] = "text/plain"
        env[RESPH]["Set-Cookie"] = { "a=1", "b=2" }
        env["owin.ResponseBody"]:write("hi")
      end), cgi_env({}))
      assert.are.equal("text/plain", h["Content-Type"])
      assert.are.same({ "a=1", "b=2" }, h["Set-Cookie"])
      assert.are.equal("2", h["Content-Length"])
    end)

    it("adds Content-Length except for 204 and 304, and keeps it for HEAD without a body", function()
      local _, h, body = call(wsapi.handler(function(env) env[STATUS] = 204 end), cgi_env({}))
      assert.is_nil(h["Content-Length"])
      assert.are.equal("", body)
      _, h, body = call(wsapi.handler(function(env)
        env["owin.ResponseBody"]:write("twelve bytes")
      end), cgi_env({ REQUEST_METHOD = "HEAD" }))
      assert.are.equal("12", h["Content-Length"])
      assert.are.equal("", body)
    end)

    it("keeps the app's Content-Length and holds the body to it", function()
      local status, h, body = call(wsapi.handler(function(env)
        env[RESPH]["Content-Length"] = "3"
        env["owin.ResponseBody"]:write("abc")
      end), cgi_env({}))
      assert.are.same({ "200 OK", "3", "abc" }, { status, h["Content-Length"], body })
      local w, io_ = cgi_env({})
      status = call(wsapi.handler(function(env)
        env[RESPH]["Content-Length"] = "3"
        env["owin.ResponseBody"]:write("abcd")
      end), w)
      assert.are.equal("500 Internal Server Error", status)
      assert.matches("response body exceeds its Content%-Length %(3 bytes%)", table.concat(io_.errors))
      status = call(wsapi.handler(function(env)
        env[RESPH]["Content-Length"] = "3"
        env["owin.ResponseBody"]:write("ab")
      end), cgi_env({}))
      assert.are.equal("500 Internal Server Error", status)
    end)

    it("freezes status and headers at the first write; OnSendingHeaders runs before, last first, once", function()
      local trace, late = {}, {}
      call(wsapi.handler(function(env)
        env["server.OnSendingHeaders"](function(s) trace[#trace + 1] = s end, "first")
        env["server.OnSendingHeaders"](function(s)
          trace[#trace + 1] = s
          env[RESPH]["X-Late"] = "ok"
        end, "second")
        env["owin.ResponseBody"]:write("x")
        env["owin.ResponseBody"]:write("y")
        late.status = { pcall(function() env[STATUS] = 404 end) }
        late.header = { pcall(function() env[RESPH]["X-More"] = "1" end) }
        late.onsend = { pcall(env["server.OnSendingHeaders"], function() end) }
      end), cgi_env({}))
      assert.are.same({ "second", "first" }, trace)
      assert.is_false(late.status[1])
      assert.matches("headers already sent: cannot change owin.ResponseStatusCode", late.status[2])
      assert.matches("headers already sent: cannot set 'X%-More'", late.header[2])
      assert.matches("server.OnSendingHeaders: headers already sent", late.onsend[2])
    end)

    it("runs OnRequestEnd last first once the app is over: returned, streamed or failed", function()
      local trace = {}
      local function app(env)
        env["server.OnRequestEnd"](function(s) trace[#trace + 1] = s end, "first")
        env["server.OnRequestEnd"](function(s) trace[#trace + 1] = s end, "second")
        local path = env["owin.RequestPath"]
        if path == "/stream" then
          env["owin.ResponseBody"]:write("a")
          env["owin.ResponseBody"]:flush()
          trace[#trace + 1] = "after flush"
          env["owin.ResponseBody"]:write("b")
        elseif path == "/fail" then
          error("boom")
        end
      end
      call(wsapi.handler(app), cgi_env({}))
      assert.are.same({ "second", "first" }, trace)
      trace = {}
      local _, _, body = call(wsapi.handler(app), cgi_env({ PATH_INFO = "/stream" }))
      assert.are.equal("ab", body)
      assert.are.same({ "after flush", "second", "first" }, trace)
      trace = {}
      local status = call(wsapi.handler(app), cgi_env({ PATH_INFO = "/fail" }))
      assert.are.equal("500 Internal Server Error", status)
      assert.are.same({ "second", "first" }, trace)
    end)

    it("validates the status and the reason as the server does", function()
      local errs = {}
      call(wsapi.handler(function(env)
        errs[1] = select(2, pcall(function() env[STATUS] = 42 end))
        errs[2] = select(2, pcall(function() env[REASON] = "a\r\nb" end))
        env[RESPH] = { ["X-Plain"] = "copied" }
        errs[3] = env[RESPH]["x-plain"][1]
      end), cgi_env({}))
      assert.matches("owin.ResponseStatusCode must be an integer from 100 to 999, got 42", errs[1])
      assert.matches("owin.ResponseReasonPhrase: CR, LF and NUL are not allowed", errs[2])
      assert.are.equal("copied", errs[3])
    end)

    it("lists the response keys in pairs(env)", function()
      local keys = {}
      call(wsapi.handler(function(env)
        for k in pairs(env) do keys[k] = true end
      end), cgi_env({}))
      for _, k in ipairs({ "owin.RequestMethod", "owin.RequestBody", "owin.ResponseBody",
                           "owin.ResponseStatusCode", "owin.ResponseHeaders",
                           "owin.CallCancelled", "server.OnSendingHeaders",
                           "server.OnRequestEnd", "host.OnAppDisposing", "owin.RequestId" }) do
        assert.is_true(keys[k], k)
      end
    end)

    it("streams: after a flush the rest comes as the host pulls the iterator", function()
      local progress = {}
      local status, h, iter = wsapi.handler(function(env)
        local out = env["owin.ResponseBody"]
        out:write("one")
        out:flush()
        progress[#progress + 1] = "after flush"
        out:write("two")
        out:flush()
        progress[#progress + 1] = "after second flush"
        out:write("three")
      end)(cgi_env({}))
      assert.are.equal("200 OK", status)
      assert.is_nil(h["Content-Length"])
      assert.are.same({}, progress)                 -- nothing ran past the first flush yet
      assert.are.equal("one", iter())
      assert.are.equal("two", iter())
      assert.are.same({ "after flush" }, progress)
      assert.are.equal("three", iter())
      assert.is_nil(iter())
      assert.are.same({ "after flush", "after second flush" }, progress)
    end)

    it("streams a large body in pieces of about 16 KiB", function()
      local _, h, body, pieces = call(wsapi.handler(function(env)
        for _ = 1, 10 do env["owin.ResponseBody"]:write(string.rep("x", 10000)) end
      end), cgi_env({}))
      assert.are.equal(100000, #body)
      assert.is_nil(h["Content-Length"])
      assert.is_true(#pieces >= 5)
    end)

    it("refuses the streams after the response finished", function()
      local kept
      call(wsapi.handler(function(env) kept = env end), cgi_env({}))
      assert.has_error(function() kept["owin.ResponseBody"]:write("late") end,
        "OutputStream used after its response finished")
      assert.has_error(function() kept["owin.RequestBody"]:read(1) end,
        "InputStream used after its response finished")
    end)
  end)

  describe("errors", function()
    it("answer 500 with a generic body and log the traceback to the error stream", function()
      local w, io_ = cgi_env({})
      local status, h, body = call(wsapi.handler(function() error("broken app") end), w)
      assert.are.equal("500 Internal Server Error", status)
      assert.are.equal("500 Internal Server Error\n", body)
      assert.are.equal(tostring(#body), h["Content-Length"])
      local log = table.concat(io_.errors)
      assert.matches("owinlua app error: .*broken app", log)
      assert.matches("stack traceback", log)
    end)

    it("put the traceback in the page with opts.dev", function()
      local _, _, body = call(wsapi.handler(function() error("dev detail") end, { dev = true }),
        cgi_env({}))
      assert.matches("dev detail", body)
    end)

    it("after streaming started end the body and go to the log", function()
      local w, io_ = cgi_env({})
      local status, _, body = call(wsapi.handler(function(env)
        env["owin.ResponseBody"]:write("partial"):flush()
        error("midway")
      end), w)
      assert.are.equal("200 OK", status)
      assert.are.equal("partial", body)
      assert.matches("midway", table.concat(io_.errors))
    end)

    it("include a bare coroutine.yield where nobody can take it", function()
      local w, io_ = cgi_env({})
      local status = call(wsapi.handler(function() coroutine.yield("stray") end), w)
      assert.are.equal("500 Internal Server Error", status)
      assert.matches("yielded outside owinlua's API", table.concat(io_.errors))
    end)
  end)

  it("passes other yields to the host's own scheduler (Copas under Xavante)", function()
    -- the WSAPI app runs inside a scheduler's coroutine; the owinlua app's
    -- I/O yields to that scheduler and gets its answer back
    local handler = wsapi.handler(function(env)
      local answer = coroutine.yield("scheduler: wait for socket")
      env["owin.ResponseBody"]:write("got " .. answer)
    end)
    local host = coroutine.create(function()
      return call(handler, cgi_env({}))
    end)
    local ok, what = coroutine.resume(host)
    assert.is_true(ok)
    assert.are.equal("scheduler: wait for socket", what)
    local ok2, status, _, body = coroutine.resume(host, "ready")
    assert.is_true(ok2)
    assert.are.equal("200 OK", status)
    assert.are.equal("got ready", body)
  end)

  it("cancellation tokens exist and never fire", function()
    local env = capture({})
    local tok = env["owin.CallCancelled"]
    assert.is_false(tok.cancelled)
    local fired = false
    tok:register(function() fired = true end)
    assert.is_false(fired)
    assert.is_false(env["host.OnAppDisposing"].cancelled)
    tok:cancel()                      -- an app may still fire one itself
    assert.is_true(tok.cancelled)
    assert.is_true(fired)
  end)

  it("gives each request its own id", function()
    local a, b = capture({}), capture({})
    assert.are_not.equal(a["owin.RequestId"], b["owin.RequestId"])
  end)

  it("runs builders (next() finds its env) and app scripts", function()
    local b = owin.new()
    b.use(function(env, next)
      env["server.OnSendingHeaders"](function() env[RESPH]["X-After"] = "mw" end)
      next()
    end)
    b.map("/api", function(branch)
      branch.run(function(env)
        env["owin.ResponseBody"]:write(env["owin.RequestPathBase"] .. "|" .. env["owin.RequestPath"])
      end)
    end)
    local _, h, body = call(wsapi.handler(b), cgi_env({ PATH_INFO = "/api/x" }))
    assert.are.equal("/api|/x", body)
    assert.are.equal("mw", h["X-After"])
    owin.log.set_level("warn")           -- hello.lua logs each request at info
    local ok, status, h2, body2 = pcall(call, wsapi.handler("apps/hello.lua"), cgi_env({}))
    owin.log.set_level("info")
    assert(ok, status)
    assert.are.same({ "200 OK", "text/plain", "Hello World" }, { status, h2["Content-Type"], body2 })
  end)

  it("refuses what is not an app", function()
    assert.has_error(function() wsapi.handler(42) end)
    assert.has_error(function() wsapi.handler("/nonexistent/app.lua") end)
  end)

  it("round-trips: a WSAPI app through owinlua through WSAPI sees the same request", function()
    local seen
    local inner = function(w)
      seen = { w.REQUEST_METHOD, w.SCRIPT_NAME, w.PATH_INFO, w.QUERY_STRING, w.CONTENT_TYPE,
               w.CONTENT_LENGTH, w.HTTP_X_TOKEN, w.input:read(tonumber(w.CONTENT_LENGTH)) }
      return "202 Accepted", { ["Set-Cookie"] = { "k=1", "l=2" } }, coroutine.wrap(function()
        coroutine.yield("round")
        coroutine.yield("trip")
      end)
    end
    local status, h, body = call(wsapi.handler(wsapi.app(inner)), cgi_env({
      REQUEST_METHOD = "POST", SCRIPT_NAME = "/s", PATH_INFO = "/p", QUERY_STRING = "q=1",
      CONTENT_TYPE = "text/plain", HTTP_X_TOKEN = "t" }, "payload"))
    assert.are.same({ "POST", "/s", "/p", "q=1", "text/plain", "7", "t", "payload" }, seen)
    assert.are.equal("202 Accepted", status)
    assert.are.same({ "k=1", "l=2" }, h["Set-Cookie"])
    assert.are.equal("roundtrip", body)
  end)
end)
