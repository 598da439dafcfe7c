-- The pipeline builder of lua/owin/init.lua (docs/api.md), driven
-- in plain Lua: fake env tables, no server.  Each fake request runs in its
-- own coroutine registered with owin.set_env, as a host does, so that
-- next() without an argument finds its env.
--
--   busted --lua=lua5.4 spec/unit/builder_spec.lua

local owin = require("owin")
local cli = require("owin.cli")

local PATH, BASE, STATUS = "owin.RequestPath", "owin.RequestPathBase", "owin.ResponseStatusCode"

local function fake_env(path, extra)
  local env = {
    ["owin.RequestMethod"] = "GET",
    ["owin.RequestPath"] = path or "/",
    ["owin.RequestPathBase"] = "",
    ["owin.RequestQueryString"] = "",
    ["owin.ResponseStatusCode"] = 200,
    ["owin.ResponseHeaders"] = {},
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

-- Runs appfunc(env) in a registered coroutine, as the server does; returns
-- the env, or raises what the app raised.
local function serve(appfunc, env)
  env = env or fake_env()
  local co = coroutine.create(appfunc)
  owin.set_env(co, env)
  local ok, err = coroutine.resume(co, env)
  if not ok then error(err, 0) end
  assert.are.equal("dead", coroutine.status(co))
  return env
end

-- Builds `builder` and serves one request for `path`.
local function get(builder, path)
  return serve(builder.build(), fake_env(path))
end

describe("pipeline builder #unit", function()
  describe("use", function()
    it("runs middleware in the order added, each around the rest", function()
      local trace = {}
      local app = owin.new()
      app.use(function(env, next)
        trace[#trace + 1] = "a before"
        next()
        trace[#trace + 1] = "a after"
      end)
      app.use(function(env, next)
        trace[#trace + 1] = "b before"
        next()
        trace[#trace + 1] = "b after"
      end)
      app.run(function(env) trace[#trace + 1] = "run" end)
      get(app, "/")
      assert.are.same({ "a before", "b before", "run", "b after", "a after" }, trace)
    end)

    it("lets the middleware see what the rest of the pipeline did", function()
      local seen
      local app = owin.new()
      app.use(function(env, next)
        next()
        seen = env[STATUS]
      end)
      app.run(function(env) env[STATUS] = 201 end)
      get(app, "/")
      assert.are.equal(201, seen)
    end)

    it("passes the same env table down the pipeline", function()
      local envs = {}
      local app = owin.new()
      app.use(function(env, next) envs[1] = env; next() end)
      app.use(function(env, next) envs[2] = env; next(env) end)
      app.run(function(env) envs[3] = env end)
      local env = get(app, "/")
      assert.are.equal(env, envs[1])
      assert.are.equal(env, envs[2])
      assert.are.equal(env, envs[3])
    end)

    it("short-circuits when a middleware does not call next", function()
      local reached = false
      local app = owin.new()
      app.use(function(env, next) env[STATUS] = 401 end)
      app.run(function(env) reached = true end)
      local env = get(app, "/")
      assert.is_false(reached)
      assert.are.equal(401, env[STATUS])
    end)
  end)

  describe("next", function()
    it("finds the env of the request's own coroutine when called with no argument", function()
      local got
      local app = owin.new()
      app.use(function(env, next) next() end)
      app.run(function(env) got = env end)
      local env = get(app, "/")
      assert.are.equal(env, got)
    end)

    it("keeps interleaved requests apart: each next() gets its own env", function()
      local app = owin.new()
      app.use(function(env, next)
        coroutine.yield()                   -- the other request runs here
        next()
      end)
      app.run(function(env) env.served = env[PATH] end)
      local appfunc = app.build()
      local env1, env2 = fake_env("/one"), fake_env("/two")
      local co1, co2 = coroutine.create(appfunc), coroutine.create(appfunc)
      owin.set_env(co1, env1)
      owin.set_env(co2, env2)
      assert(coroutine.resume(co1, env1))
      assert(coroutine.resume(co2, env2))
      assert(coroutine.resume(co2))
      assert(coroutine.resume(co1))
      assert.are.equal("/one", env1.served)
      assert.are.equal("/two", env2.served)
    end)

    it("takes the env explicitly, which works in any coroutine", function()
      local got
      local app = owin.new()
      app.use(function(env, next) next(env) end)
      app.run(function(env) got = env end)
      local env = fake_env("/")
      app.build()(env)                      -- main coroutine, nothing registered
      assert.are.equal(env, got)
    end)

    it("raises a clear error when called with no env outside a registered coroutine", function()
      local app = owin.new()
      app.use(function(env, next) next() end)
      app.run(function(env) end)
      local appfunc = app.build()
      assert.has_error(function()
        coroutine.wrap(appfunc)(fake_env("/"))
      end)
      local ok, err = pcall(appfunc, fake_env("/"))
      assert.is_false(ok)
      assert.matches("next() was called outside the request's coroutine: call next(env)", err, 1, true)
    end)

    it("returns what the rest of the pipeline returned", function()
      local got
      local app = owin.new()
      app.use(function(env, next) got = next() end)
      app.run(function(env) return "done" end)
      get(app, "/")
      assert.are.equal("done", got)
    end)
  end)

  describe("run", function()
    it("is terminal: nothing added after it runs", function()
      local trace = {}
      local app = owin.new()
      app.run(function(env) trace[#trace + 1] = "first run" end)
      app.use(function(env, next) trace[#trace + 1] = "late use"; next() end)
      app.run(function(env) trace[#trace + 1] = "second run" end)
      local env = get(app, "/")
      assert.are.same({ "first run" }, trace)
      assert.are.equal(200, env[STATUS])
    end)

    it("is the whole pipeline when it is the only step", function()
      local app = owin.new()
      app.run(function(env) env[STATUS] = 204 end)
      assert.are.equal(204, get(app, "/")[STATUS])
    end)
  end)

  describe("use_owin", function()
    it("calls midfunc(next_app) and uses the AppFunc it returns", function()
      local trace = {}
      local app = owin.new()
      app.use_owin(function(next_app)
        assert.is_function(next_app)
        return function(env)
          trace[#trace + 1] = "raw before"
          next_app(env)
          trace[#trace + 1] = "raw after"
        end
      end)
      app.run(function(env) trace[#trace + 1] = "run" end)
      get(app, "/")
      assert.are.same({ "raw before", "run", "raw after" }, trace)
    end)

    it("mixes with use in the order added", function()
      local trace = {}
      local app = owin.new()
      app.use(function(env, next) trace[#trace + 1] = "use 1"; next() end)
      app.use_owin(function(next_app)
        return function(env) trace[#trace + 1] = "owin"; return next_app(env) end
      end)
      app.use(function(env, next) trace[#trace + 1] = "use 2"; next() end)
      app.run(function(env) trace[#trace + 1] = "run" end)
      get(app, "/")
      assert.are.same({ "use 1", "owin", "use 2", "run" }, trace)
    end)

    it("hands the 404 app to a midfunc at the end of the pipeline", function()
      local app = owin.new()
      app.use_owin(function(next_app) return next_app end)
      assert.are.equal(404, get(app, "/")[STATUS])
    end)

    it("calls the factory once per build, not per request", function()
      local calls = 0
      local app = owin.new()
      app.use_owin(function(next_app)
        calls = calls + 1
        return next_app
      end)
      app.run(function(env) end)
      local appfunc = app.build()
      serve(appfunc)
      serve(appfunc)
      assert.are.equal(1, calls)
    end)

    it("raises at build when the factory returns something other than a function", function()
      local app = owin.new()
      app.use_owin(function(next_app) return {} end)
      assert.has_error(function() app.build() end,
        "use_owin: the middleware factory must return an AppFunc, got table")
    end)
  end)

  describe("map", function()
    -- Records the path and path base the branch saw.
    local function mapped(prefix, path, base)
      local seen
      local app = owin.new()
      app.map(prefix, function(branch)
        branch.run(function(env) seen = { path = env[PATH], base = env[BASE] } end)
      end)
      app.run(function(env) seen = "main" end)
      local env = fake_env(path, { [BASE] = base or "" })
      serve(app.build(), env)
      return seen, env
    end

    it("moves the matched prefix from RequestPath to RequestPathBase", function()
      assert.are.same({ path = "/users/7", base = "/api" }, (mapped("/api", "/api/users/7")))
    end)

    it("leaves \"/\" as the path on an exact match", function()
      assert.are.same({ path = "/", base = "/api" }, (mapped("/api", "/api")))
    end)

    it("keeps a trailing slash as the path", function()
      assert.are.same({ path = "/", base = "/api" }, (mapped("/api", "/api/")))
    end)

    it("matches case-insensitively and moves the path's own spelling", function()
      assert.are.same({ path = "/Users", base = "/API" }, (mapped("/api", "/API/Users")))
      assert.are.same({ path = "/x", base = "/Api" }, (mapped("/aPI", "/Api/x")))
    end)

    it("matches on segment boundaries only", function()
      assert.are.equal("main", (mapped("/api", "/apix")))
      assert.are.equal("main", (mapped("/api", "/apix/y")))
      assert.are.equal("main", (mapped("/api", "/ap")))
      assert.are.equal("main", (mapped("/api", "/")))
      assert.are.equal("main", (mapped("/api/v1", "/api/v10")))
    end)

    it("takes multi-segment prefixes", function()
      assert.are.same({ path = "/x", base = "/api/v1" }, (mapped("/api/v1", "/api/v1/x")))
    end)

    it("appends to a RequestPathBase that is already set", function()
      assert.are.same({ path = "/x", base = "/root/api" }, (mapped("/api", "/api/x", "/root")))
    end)

    it("nests: an inner map appends to the base the outer one set", function()
      local seen
      local app = owin.new()
      app.map("/api", function(api)
        api.map("/v2", function(v2)
          v2.run(function(env) seen = { path = env[PATH], base = env[BASE] } end)
        end)
      end)
      get(app, "/api/v2/items")
      assert.are.same({ path = "/items", base = "/api/v2" }, seen)
    end)

    it("restores RequestPath and RequestPathBase after the branch returns", function()
      local after
      local app = owin.new()
      app.use(function(env, next)
        next()
        after = { path = env[PATH], base = env[BASE] }
      end)
      app.map("/api", function(branch) branch.run(function(env) end) end)
      local env = get(app, "/api/users")
      assert.are.same({ path = "/api/users", base = "" }, after)
      assert.are.equal("/api/users", env[PATH])
      assert.are.equal("", env[BASE])
    end)

    it("restores RequestPath and RequestPathBase when the branch raises", function()
      local after
      local app = owin.new()
      app.use(function(env, next)
        local ok, err = pcall(next, env)
        after = { ok = ok, err = err, path = env[PATH], base = env[BASE] }
      end)
      app.map("/api", function(branch)
        branch.run(function(env) error("boom from the branch", 0) end)
      end)
      get(app, "/api/users")
      assert.are.same({ ok = false, err = "boom from the branch", path = "/api/users", base = "" }, after)
    end)

    it("re-raises the branch's error value unchanged", function()
      local thrown = { code = 42 }
      local app = owin.new()
      app.map("/api", function(branch) branch.run(function(env) error(thrown) end) end)
      local ok, err = pcall(get, app, "/api")
      assert.is_false(ok)
      assert.are.equal(thrown, err)
    end)

    it("lets the branch yield (a request waits inside a map)", function()
      local app = owin.new()
      app.map("/api", function(branch)
        branch.run(function(env)
          coroutine.yield()
          env.served = env[PATH]
        end)
      end)
      local env = fake_env("/api/slow")
      local co = coroutine.create(app.build())
      owin.set_env(co, env)
      assert(coroutine.resume(co, env))
      assert.are.equal("/slow", env[PATH])       -- still inside the branch
      assert(coroutine.resume(co))
      assert.are.equal("/slow", env.served)
      assert.are.equal("/api/slow", env[PATH])
    end)

    it("does not fall through to the main pipeline when the branch has no terminal", function()
      local main = false
      local app = owin.new()
      app.map("/api", function(branch) branch.use(function(env, next) next() end) end)
      app.run(function(env) main = true end)
      local env = get(app, "/api/nothing")
      assert.is_false(main)
      assert.are.equal(404, env[STATUS])
    end)

    it("passes requests that do not match to the rest of the pipeline", function()
      local app = owin.new()
      app.map("/api", function(branch) branch.run(function(env) env[STATUS] = 500 end) end)
      app.run(function(env) env[STATUS] = 202 end)
      assert.are.equal(202, get(app, "/other")[STATUS])
    end)

    it("tries maps in the order added", function()
      local app = owin.new()
      app.map("/a", function(b) b.run(function(env) env.hit = "a" end) end)
      app.map("/a/b", function(b) b.run(function(env) env.hit = "a/b" end) end)
      assert.are.equal("a", get(app, "/a/b").hit)
    end)
  end)

  describe("map_when", function()
    local function build()
      local app = owin.new()
      app.map_when(function(env) return env["owin.RequestMethod"] == "POST" end, function(branch)
        branch.run(function(env) env.hit = "branch" end)
      end)
      app.run(function(env) env.hit = "main" end)
      return app.build()
    end

    it("runs the branch when the predicate is true", function()
      assert.are.equal("branch", serve(build(), fake_env("/", { ["owin.RequestMethod"] = "POST" })).hit)
    end)

    it("runs the rest of the pipeline when the predicate is false", function()
      assert.are.equal("main", serve(build(), fake_env("/")).hit)
    end)

    it("leaves the path alone", function()
      local seen
      local app = owin.new()
      app.map_when(function() return true end, function(branch)
        branch.run(function(env) seen = { path = env[PATH], base = env[BASE] } end)
      end)
      get(app, "/x/y")
      assert.are.same({ path = "/x/y", base = "" }, seen)
    end)

    it("ends in 404 when the branch has no terminal", function()
      local app = owin.new()
      app.map_when(function() return true end, function(branch) end)
      app.run(function(env) env[STATUS] = 200 end)
      assert.are.equal(404, get(app, "/")[STATUS])
    end)
  end)

  describe("the end of the pipeline", function()
    it("answers 404 when a request falls off the end", function()
      local app = owin.new()
      app.use(function(env, next) next() end)
      assert.are.equal(404, get(app, "/")[STATUS])
    end)

    it("answers 404 for an empty builder", function()
      assert.are.equal(404, get(owin.new(), "/")[STATUS])
    end)

    it("does not raise when the status can no longer change (headers sent)", function()
      local env = setmetatable(fake_env("/"), {
        __newindex = function(t, k, v)
          if k == STATUS then error("headers already sent", 2) end
          rawset(t, k, v)
        end,
      })
      env[STATUS] = nil                    -- the status lives behind __newindex
      assert.has_no_error(function() serve(owin.new().build(), env) end)
    end)
  end)

  describe("calling conventions", function()
    it("accepts app.use(f) and app:use(f) alike", function()
      local trace = {}
      local app = owin.new()
      app.use(function(env, next) trace[#trace + 1] = "dot"; next() end)
      app:use(function(env, next) trace[#trace + 1] = "colon"; next() end)
      app:use_owin(function(next_app)
        return function(env) trace[#trace + 1] = "colon owin"; next_app(env) end
      end)
      app:map("/api", function(branch) branch:run(function(env) trace[#trace + 1] = "colon map" end) end)
      app:map_when(function(env) return env[PATH] == "/when" end, function(branch)
        branch:run(function(env) trace[#trace + 1] = "colon map_when" end)
      end)
      app:run(function(env) trace[#trace + 1] = "colon run" end)
      local appfunc = app:build()
      serve(appfunc, fake_env("/api"))
      serve(appfunc, fake_env("/when"))
      serve(appfunc, fake_env("/"))
      assert.are.same({
        "dot", "colon", "colon owin", "colon map",
        "dot", "colon", "colon owin", "colon map_when",
        "dot", "colon", "colon owin", "colon run",
      }, trace)
    end)

    it("returns the builder from each step, so calls chain", function()
      local app = owin.new()
      assert.are.equal(app, app.use(function(env, next) next() end))
      assert.are.equal(app, app:use(function(env, next) next() end))
      assert.are.equal(app, app.use_owin(function(n) return n end))
      assert.are.equal(app, app.map("/m", function(b) end))
      assert.are.equal(app, app.map_when(function() return false end, function(b) end))
      assert.are.equal(app, app.run(function(env) env[STATUS] = 203 end))
      assert.are.equal(203, get(app, "/")[STATUS])
    end)
  end)

  describe("bad arguments", function()
    -- The error message, raised as the caller's error.
    local function error_of(f)
      local ok, err = pcall(f)
      assert.is_false(ok, "expected an error")
      return err
    end

    local app = owin.new()
    local fn = function() end

    local cases = {
      { "use(nil)", function() app.use(nil) end,
        "bad argument #1 to 'use' (function expected, got nil)" },
      { "app:use(nil)", function() app:use(nil) end,
        "bad argument #1 to 'use' (function expected, got nil)" },
      { "run('x')", function() app.run("x") end,
        "bad argument #1 to 'run' (function expected, got string)" },
      { "use_owin(1)", function() app.use_owin(1) end,
        "bad argument #1 to 'use_owin' (function expected, got number)" },
      { "map(nil, fn)", function() app.map(nil, fn) end, "bad argument #1 to 'map'" },
      { "map('api', fn)", function() app.map("api", fn) end, "bad argument #1 to 'map'" },
      { "map('/api/', fn)", function() app.map("/api/", fn) end, "bad argument #1 to 'map'" },
      { "map('/api', nil)", function() app.map("/api", nil) end,
        "bad argument #2 to 'map' (function expected, got nil)" },
      { "app:map('/api', {})", function() app:map("/api", {}) end,
        "bad argument #2 to 'map' (function expected, got table)" },
      { "map_when(nil, fn)", function() app.map_when(nil, fn) end,
        "bad argument #1 to 'map_when' (function expected, got nil)" },
      { "map_when(fn, 'x')", function() app.map_when(fn, "x") end,
        "bad argument #2 to 'map_when' (function expected, got string)" },
    }

    for _, case in ipairs(cases) do
      it(case[1] .. " raises an error naming the function and argument", function()
        assert.matches(case[3], error_of(case[2]), 1, true)
      end)
    end

    it("blames the caller's line, not the builder's", function()
      local err = error_of(function() app.use(42) end)
      assert.matches("builder_spec%.lua:%d+: bad argument #1 to 'use'", err)
    end)

    it("rejects \"/\" as a map prefix, as ASP.NET Core's Map does", function()
      -- A prefix "/" can only match the path "/" itself and would leave "/"
      -- in RequestPathBase; ASP.NET Core refuses any pattern ending in "/".
      assert.matches("bad argument #1 to 'map'", error_of(function() app.map("/", fn) end), 1, true)
    end)

    it("leaves the builder unchanged after a rejected call", function()
      local b = owin.new()
      pcall(b.use, nil)
      pcall(b.map, "nope", fn)
      assert.is_true(b.empty())
    end)
  end)

  describe("build", function()
    it("returns a function (an OWIN AppFunc)", function()
      assert.is_function(owin.new().build())
      local app = owin.new()
      app.use(function(env, next) next() end)
      app.run(function(env) end)
      assert.is_function(app.build())
    end)

    it("can be called again: each AppFunc runs the same steps", function()
      local app = owin.new()
      app.use(function(env, next) env.hits = (env.hits or 0) + 1; next() end)
      app.run(function(env) env.hits = env.hits + 1 end)
      local a, b = app.build(), app.build()
      assert.are.equal(2, serve(a).hits)
      assert.are.equal(2, serve(b).hits)
      assert.are.equal(2, serve(a).hits)
    end)
  end)

  describe("owin.is_builder", function()
    it("tells builders from everything else", function()
      assert.is_true(owin.is_builder(owin.new()))
      assert.is_false(owin.is_builder({}))
      assert.is_false(owin.is_builder({ use = function() end, build = function() end }))
      assert.is_false(owin.is_builder(function() end))
      assert.is_false(owin.is_builder(nil))
      assert.is_false(owin.is_builder("builder"))
    end)
  end)

  -- owin.cli.load_app turns an app script into an AppFunc (docs/api.md:
  -- the global `app`, or a returned AppFunc or builder).
  describe("app scripts", function()
    -- Calls f(path) with `source` in a temporary file; one per test, since
    -- busted keeps a single finally handler per test.
    local function with_script(source, f)
      local path = os.tmpname()
      local saved_path, saved_app, saved_owin = package.path, rawget(_G, "app"), rawget(_G, "owin")
      finally(function()
        os.remove(path)
        package.path = saved_path
        rawset(_G, "app", saved_app)
        rawset(_G, "owin", saved_owin)
      end)
      local fh = assert(io.open(path, "w"))
      fh:write(source)
      fh:close()
      return f(path)
    end

    it("may return a builder", function()
      with_script([[
        local b = require("owin").new()
        b.run(function(env) env["owin.ResponseStatusCode"] = 201 end)
        return b
      ]], function(path)
        local appfunc = assert(cli.load_app(path))
        assert.is_function(appfunc)
        assert.are.equal(201, serve(appfunc)[STATUS])
      end)
    end)

    it("may return an AppFunc", function()
      with_script([[
        return function(env) env["owin.ResponseStatusCode"] = 202 end
      ]], function(path)
        assert.are.equal(202, serve(assert(cli.load_app(path)))[STATUS])
      end)
    end)

    it("may build on the global app", function()
      with_script([[
        app.use(function(env, next) next() end)
        app.run(function(env) env["owin.ResponseStatusCode"] = 203 end)
      ]], function(path)
        assert.are.equal(203, serve(assert(cli.load_app(path)))[STATUS])
      end)
    end)

    it("is refused when it defines nothing", function()
      with_script("local x = 1\n", function(path)
        local appfunc, err = cli.load_app(path)
        assert.is_nil(appfunc)
        assert.matches("defines no app", err, 1, true)
      end)
    end)

    it("is refused when it returns something else", function()
      with_script("return 42\n", function(path)
        local appfunc, err = cli.load_app(path)
        assert.is_nil(appfunc)
        assert.matches("returned a number", err, 1, true)
      end)
    end)
  end)
end)

describe("owin.log #unit", function()
  -- Runs Lua code with the owin module in a fresh lua5.4; returns its stderr.
  local function stderr_of(code)
    local script = os.tmpname()
    finally(function() os.remove(script) end)
    local fh = assert(io.open(script, "w"))
    fh:write('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n',
             'local owin = require("owin")\n', code)
    fh:close()
    local proc = assert(io.popen("lua5.4 " .. script .. " 2>&1 >/dev/null"))
    local out = proc:read("a")
    proc:close()
    return out
  end

  it("writes a timestamped, levelled line to stderr", function()
    local out = stderr_of('owin.log.info("%s %d", "hello", 42)\n')
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ %[info%] hello 42\n$", out)
  end)

  it("prints a lone message verbatim, even with a % in it", function()
    local out = stderr_of('owin.log.warn("100% done")\n')
    assert.matches("%[warn%] 100%% done\n$", out)
  end)

  it("drops messages below the level set, info by default", function()
    local out = stderr_of([[
      owin.log.debug("not shown")
      owin.log.set_level("warn")
      owin.log.info("not shown either")
      owin.log.error("shown")
      owin.log.set_level("debug")
      owin.log.debug("debug now")
    ]])
    assert.is_nil(out:find("not shown", 1, true))
    assert.matches("%[error%] shown\n", out)
    assert.matches("%[debug%] debug now\n$", out)
  end)

  it("raises on an unknown level, naming set_level", function()
    local ok, err = pcall(owin.log.set_level, "loud")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'set_level' (debug, info, warn or error expected, got loud)",
      err, 1, true)
  end)
end)
