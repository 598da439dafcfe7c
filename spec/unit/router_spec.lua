-- owin.router (docs/router.md) through owin.test: methods, captures,
-- constraints, the wildcard, precedence, trailing slashes, 405 and Allow,
-- HEAD, OPTIONS, mounts and PathBase, url_for, percent-decoding, and the
-- errors bad patterns raise.
--
--   busted --lua=lua5.4 spec/unit/router_spec.lua

local test = require("owin.test")
local owin = require("owin")
local context = require("owin.context")
local routerlib = require("owin.router")

-- A handler that answers "tag base path k=v ..." (params sorted).
local function show(tag)
  return function(env)
    local params, keys = env["owin.RouteParams"], {}
    for k in pairs(params) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = { tag, env["owin.RequestPathBase"], env["owin.RequestPath"] }
    for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. params[k] end
    env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
    env["owin.ResponseBody"]:write(table.concat(out, " "))
  end
end

-- A client for `router` used as middleware, in front of an app answering
-- "next <path>".
local function client(router)
  local app = owin.new()
  app.use(router)
  app.run(function(env)
    env["owin.ResponseBody"]:write("next " .. env["owin.RequestPath"])
  end)
  return test.client(app)
end

local function req(c, method, path)
  return c:request({ method = method, path = path })
end

-- Calls f and returns the error message (failing if f does not raise).
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("owin.router #unit", function()
  describe("methods", function()
    it("routes each method helper to its own handler", function()
      local r = routerlib.new()
      for _, m in ipairs({ "get", "post", "put", "patch", "delete", "options" }) do
        r[m](r, "/x", show(m))
      end
      r:head("/h", show("head"))
      local c = client(r)
      for _, m in ipairs({ "get", "post", "put", "patch", "delete", "options" }) do
        local res = req(c, m:upper(), "/x")
        assert.are.equal(200, res.status)
        assert.are.equal(m .. "  /x", res.body)
      end
      local res = req(c, "HEAD", "/h")
      assert.are.equal(200, res.status)
      assert.are.equal("", res.body)
    end)

    it("route() takes a method or an array of them, upper-cased", function()
      local r = routerlib.new()
      r:route({ "get", "POST" }, "/a", show("a"))
      r:route("PROPFIND", "/a", show("propfind"))
      local c = client(r)
      assert.are.equal("a  /a", req(c, "GET", "/a").body)
      assert.are.equal("a  /a", req(c, "POST", "/a").body)
      assert.are.equal("propfind  /a", req(c, "PROPFIND", "/a").body)
      assert.are.equal(405, req(c, "PUT", "/a").status)
    end)

    it("all() takes every method, and a method route beats it", function()
      local r = routerlib.new()
      r:all("/any", show("all"))
      r:get("/any", show("get"))
      local c = client(r)
      assert.are.equal("get  /any", req(c, "GET", "/any").body)
      assert.are.equal("all  /any", req(c, "DELETE", "/any").body)
      assert.are.equal("all  /any", req(c, "OPTIONS", "/any").body)
      assert.are.equal("all  /any", req(c, "BREW", "/any").body)
    end)

    it("returns the router, so calls chain", function()
      local r = routerlib.new()
      assert.are.equal(r, r:get("/a", show("a")):post("/a", show("b")))
    end)
  end)

  describe("as middleware", function()
    it("falls through to next when no route matches the path", function()
      local r = routerlib.new():get("/a", show("a"))
      local c = client(r)
      assert.are.equal("next /b", req(c, "GET", "/b").body)
      assert.are.equal("next /a/b", req(c, "GET", "/a/b").body)
    end)

    it("answers 404 when it is the whole app and no route matches", function()
      local r = routerlib.new():get("/a", show("a"))
      local c = test.client(r)
      assert.are.equal(200, c:get("/a").status)
      assert.are.equal(404, c:get("/b").status)
    end)

    it("gives handlers next(), which runs the rest of the pipeline", function()
      local r = routerlib.new()
      r:get("/a", function(env, next)
        env["owin.ResponseHeaders"]["X-Route"] = "a"
        next()
      end)
      local res = client(r):get("/a")
      assert.are.equal("next /a", res.body)
      assert.are.equal("a", res.headers["x-route"])
      -- with the router as the whole app, next() is the 404 at the end
      local r2 = routerlib.new():get("/a", function(_, next) next() end)
      assert.are.equal(404, test.client(r2):get("/a").status)
    end)

    it("works under app.run, app.map and as an app script's return value", function()
      local r = routerlib.new():get("/users/:id", show("user"))
      local app = owin.new()
      app.map("/v1", function(b) b.run(r) end)
      local res = test.client(app):get("/v1/users/7")
      assert.are.equal("user /v1 /users/7 id=7", res.body)
      local script = os.tmpname()
      finally(function() os.remove(script) end)
      local f = assert(io.open(script, "w"))
      f:write('return require("owin.router").new():get("/s/:x", function(env) ',
        'env["owin.ResponseBody"]:write(env["owin.RouteParams"].x) end)')
      f:close()
      local sc = test.client(script)
      assert.are.equal("hello", sc:get("/s/hello").body)
      assert.are.equal(404, sc:get("/t").status)
    end)

    it("takes context handlers: ctx.params is the route's parameters", function()
      local r = routerlib.new()
      r:get("/todos/:id", context.app(function(ctx)
        ctx.response:text("todo " .. ctx.params.id)
      end))
      r:get("/plain", context.middleware(function(ctx)
        ctx.response:header("X-Params", tostring(next(ctx.params) == nil))
        ctx.response:text("plain")
      end))
      local c = client(r)
      assert.are.equal("todo 42", c:get("/todos/42").body)
      local res = c:get("/plain")
      assert.are.equal("plain", res.body)
      assert.are.equal("true", res.headers["x-params"])
      -- outside a route, ctx.params is an empty table
      local app = owin.new()
      app.run(context.app(function(ctx) ctx.response:text(tostring(next(ctx.params))) end))
      assert.are.equal("nil", test.client(app):get("/").body)
    end)

    it("leaves owin.RouteParams set for the middleware around it", function()
      local app = owin.new()
      app.use(function(env, next)
        next()
        env["owin.ResponseBody"]:write(" after:" .. env["owin.RouteParams"].id)
      end)
      app.use(routerlib.new():get("/t/:id", show("t")))
      assert.are.equal("t  /t/9 id=9 after:9", test.client(app):get("/t/9").body)
    end)
  end)

  describe("captures", function()
    it(":name captures one non-empty segment", function()
      local r = routerlib.new():get("/todos/:id", show("show")):get("/a/:x/b/:y", show("two"))
      local c = client(r)
      assert.are.equal("show  /todos/42 id=42", c:get("/todos/42").body)
      assert.are.equal("show  /todos/hello-world id=hello-world", c:get("/todos/hello-world").body)
      assert.are.equal("two  /a/1/b/2 x=1 y=2", c:get("/a/1/b/2").body)
      assert.are.equal("next /todos/", c:get("/todos/").body)
      assert.are.equal("next /todos/1/2", c:get("/todos/1/2").body)
      assert.are.equal("next /a//b/2", c:get("/a//b/2").body)
    end)

    it(":name{lua pattern} takes only a segment the whole pattern matches", function()
      local r = routerlib.new():put("/todos/:id{%d+}", show("update"))
      local c = client(r)
      assert.are.equal("update  /todos/12 id=12", req(c, "PUT", "/todos/12").body)
      assert.are.equal("next /todos/12a", req(c, "PUT", "/todos/12a").body)
      assert.are.equal("next /todos/a12", req(c, "PUT", "/todos/a12").body)
      -- anchors written out are kept, not doubled
      local r2 = routerlib.new():get("/v/:n{^[a-c]+$}", show("v"))
      local c2 = client(r2)
      assert.are.equal("v  /v/abc n=abc", c2:get("/v/abc").body)
      assert.are.equal("next /v/abcd", c2:get("/v/abcd").body)
      -- any Lua pattern: ? and braces inside, followed by more segments
      local r3 = routerlib.new():get("/y/:y{%d%d%d%d?}/m/:m{[01]%d}", show("ym"))
      local c3 = client(r3)
      assert.are.equal("ym  /y/999/m/12 m=12 y=999", c3:get("/y/999/m/12").body)
      assert.are.equal("ym  /y/2024/m/01 m=01 y=2024", c3:get("/y/2024/m/01").body)
      assert.are.equal("next /y/20245/m/01", c3:get("/y/20245/m/01").body)
    end)

    it("*name captures the rest of the path, slashes included, possibly empty", function()
      local r = routerlib.new():get("/files/*path", show("files"))
      local c = client(r)
      assert.are.equal("files  /files/a/b/c.txt path=a/b/c.txt", c:get("/files/a/b/c.txt").body)
      assert.are.equal("files  /files/ path=", c:get("/files/").body)
      assert.are.equal("next /files", c:get("/files").body)
      local root = client(routerlib.new():get("/*all", show("all")))
      assert.are.equal("all  / all=", root:get("/").body)
      assert.are.equal("all  /x/y all=x/y", root:get("/x/y").body)
    end)

    it("puts a fresh params table in the env for each request", function()
      local seen = {}
      local r = routerlib.new():get("/s", function(env) seen[#seen + 1] = env["owin.RouteParams"] end)
      local c = client(r)
      c:get("/s")
      c:get("/s")
      assert.are.same({}, seen[1])
      assert.are_not.equal(seen[1], seen[2])
    end)
  end)

  describe("precedence", function()
    it("static beats a parameter beats the wildcard, whatever the order added", function()
      local r = routerlib.new()
      r:get("/u/*rest", show("wild"))
      r:get("/u/:id", show("param"))
      r:get("/u/me", show("static"))
      local c = client(r)
      assert.are.equal("static  /u/me", c:get("/u/me").body)
      assert.are.equal("param  /u/7 id=7", c:get("/u/7").body)
      assert.are.equal("wild  /u/7/x rest=7/x", c:get("/u/7/x").body)
    end)

    it("a constrained parameter is tried before a plain one", function()
      local r = routerlib.new()
      r:get("/p/:slug", show("slug"))
      r:get("/p/:id{%d+}", show("id"))
      local c = client(r)
      assert.are.equal("id  /p/12 id=12", c:get("/p/12").body)
      assert.are.equal("slug  /p/ab slug=ab", c:get("/p/ab").body)
    end)

    it("backtracks from a dead end to the next candidate", function()
      local r = routerlib.new()
      r:get("/a/b/d", show("static"))
      r:get("/a/:x/c", show("param"))
      r:get("/a/*rest", show("wild"))
      local c = client(r)
      assert.are.equal("param  /a/b/c x=b", c:get("/a/b/c").body)
      assert.are.equal("static  /a/b/d", c:get("/a/b/d").body)
      assert.are.equal("wild  /a/b/e rest=b/e", c:get("/a/b/e").body)
    end)

    it("looks past a path match without the method for one that has it", function()
      local r = routerlib.new()
      r:get("/users/me", show("me"))
      r:delete("/users/:id", show("delete"))
      local c = client(r)
      assert.are.equal("me  /users/me", req(c, "GET", "/users/me").body)
      assert.are.equal("delete  /users/me id=me", req(c, "DELETE", "/users/me").body)
    end)

    it("lets routes with different parameter names share a position", function()
      local r = routerlib.new()
      r:get("/a/:id", show("get"))
      r:delete("/a/:key", show("delete"))
      r:get("/a/:name/x", show("x"))
      local c = client(r)
      assert.are.equal("get  /a/1 id=1", req(c, "GET", "/a/1").body)
      assert.are.equal("delete  /a/1 key=1", req(c, "DELETE", "/a/1").body)
      assert.are.equal("x  /a/1/x name=1", req(c, "GET", "/a/1/x").body)
    end)
  end)

  describe("paths", function()
    it("treats a trailing slash strictly", function()
      local r = routerlib.new():get("/todos", show("list")):get("/dir/", show("dir"))
      local c = client(r)
      assert.are.equal("list  /todos", c:get("/todos").body)
      assert.are.equal("next /todos/", c:get("/todos/").body)
      assert.are.equal("dir  /dir/", c:get("/dir/").body)
      assert.are.equal("next /dir", c:get("/dir").body)
    end)

    it("routes the root", function()
      local c = client(routerlib.new():get("/", show("root")))
      assert.are.equal("root  /", c:get("/").body)
      assert.are.equal("next //", c:get("//").body)
    end)

    it("ignores ASCII case in static segments, unless told not to", function()
      local r = routerlib.new():get("/Todos/:id", show("t"))
      local c = client(r)
      assert.are.equal("t  /todos/AbC id=AbC", c:get("/todos/AbC").body)
      assert.are.equal("t  /TODOS/x id=x", c:get("/TODOS/x").body)
      local cs = client(routerlib.new({ case_sensitive = true }):get("/Todos", show("t")))
      assert.are.equal("t  /Todos", cs:get("/Todos").body)
      assert.are.equal("next /todos", cs:get("/todos").body)
    end)

    it("matches owin.RequestPath: captures are decoded as it is, %2F included", function()
      local r = routerlib.new()
      r:get("/todos/:id", show("show"))
      r:get("/files/*path", show("files"))
      r:get("/café", show("cafe"))
      local c = client(r)
      -- %41 decodes, %2F (either case) stays encoded and never splits a segment
      assert.are.equal("show  /todos/Ab id=Ab", c:get("/todos/%41b").body)
      assert.are.equal("show  /todos/a%2Fb id=a%2Fb", c:get("/todos/a%2Fb").body)
      assert.are.equal("show  /todos/a%2fb id=a%2fb", c:get("/todos/a%2fb").body)
      -- %252F is "%2F" once decoded, like the path itself
      assert.are.equal("show  /todos/a%2Fb id=a%2Fb", c:get("/todos/a%252Fb").body)
      assert.are.equal("show  /todos/a b id=a b", c:get("/todos/a%20b").body)
      assert.are.equal("files  /files/x/y%2Fz path=x/y%2Fz", c:get("/files/x/y%2Fz").body)
      -- static segments are written decoded
      assert.are.equal("cafe  /café", c:get("/caf%C3%A9").body)
    end)
  end)

  describe("405, HEAD and OPTIONS", function()
    it("answers 405 with Allow when the path matches but the method does not", function()
      local r = routerlib.new()
      r:get("/todos", show("list")):post("/todos", show("create"))
      r:put("/x/:id", show("put")):patch("/x/:id{%d+}", show("patch"))
      local c = client(r)
      local res = req(c, "DELETE", "/todos")
      assert.are.equal(405, res.status)
      assert.are.equal("GET, HEAD, POST, OPTIONS", res.headers.allow)
      assert.are.equal("Method Not Allowed\n", res.body)
      assert.matches("^text/plain", res.headers["content-type"])
      -- Allow lists every route that matches the path
      assert.are.equal("PUT, PATCH, OPTIONS", req(c, "GET", "/x/1").headers.allow)
      assert.are.equal("PUT, OPTIONS", req(c, "GET", "/x/a").headers.allow)
    end)

    it("lets opts.method_not_allowed write the 405", function()
      local r = routerlib.new({ method_not_allowed = function(env)
        env["owin.ResponseBody"]:write("no: ", env["owin.ResponseHeaders"]["Allow"][1],
          " ", env["owin.ResponseStatusCode"])
      end })
      r:get("/a", show("a"))
      local res = req(client(r), "POST", "/a")
      assert.are.equal(405, res.status)
      assert.are.equal("no: GET, HEAD, OPTIONS 405", res.body)
    end)

    it("answers HEAD with the GET route, unless a HEAD route exists", function()
      local r = routerlib.new()
      r:get("/g/:id", function(env)
        env["owin.ResponseHeaders"]["X-Method"] = env["owin.RequestMethod"]
        env["owin.ResponseBody"]:write("body")
      end)
      r:get("/h", show("get")):head("/h", function(env)
        env["owin.ResponseHeaders"]["X-Head"] = "own"
      end)
      local c = client(r)
      local res = req(c, "HEAD", "/g/1")
      assert.are.equal(200, res.status)
      assert.are.equal("HEAD", res.headers["x-method"])
      assert.are.equal("", res.body)
      assert.are.equal("own", req(c, "HEAD", "/h").headers["x-head"])
    end)

    it("answers OPTIONS with 204 and Allow, unless an OPTIONS route exists", function()
      local r = routerlib.new()
      r:get("/a", show("a")):delete("/a", show("d"))
      r:get("/b", show("b")):options("/b", show("own options"))
      local c = client(r)
      local res = req(c, "OPTIONS", "/a")
      assert.are.equal(204, res.status)
      assert.are.equal("GET, HEAD, DELETE, OPTIONS", res.headers.allow)
      assert.are.equal("", res.body)
      assert.are.equal("own options  /b", req(c, "OPTIONS", "/b").body)
      -- a path no route matches falls through, OPTIONS or not
      assert.are.equal("next /c", req(c, "OPTIONS", "/c").body)
    end)
  end)

  describe("mount", function()
    it("moves the prefix to owin.RequestPathBase, as app.map does, and puts it back", function()
      local api = routerlib.new()
      api:get("/", show("index"))
      api:get("/todos/:id", show("todo"))
      local r = routerlib.new():mount("/api", api)
      local app = owin.new()
      app.use(function(env, next)
        next()
        env["owin.ResponseBody"]:write(" | " .. env["owin.RequestPathBase"] .. " " ..
          env["owin.RequestPath"])
      end)
      app.use(r)
      local c = test.client(app)
      assert.are.equal("todo /api /todos/3 id=3 |  /api/todos/3", c:get("/api/todos/3").body)
      assert.are.equal("index /api / |  /api", c:get("/api").body)
      assert.are.equal("index /api / |  /api/", c:get("/api/").body)
      assert.are.equal("index /API / |  /API", c:get("/API").body)
      assert.are.equal(404, c:get("/apix").status)
    end)

    it("adds to a PathBase set before it", function()
      local api = routerlib.new():get("/t", show("t"))
      local app = owin.new()
      app.map("/v1", function(b) b.use(routerlib.new():mount("/api", api)) end)
      assert.are.equal("t /v1/api /t", test.client(app):get("/v1/api/t").body)
    end)

    it("takes parameters in the prefix and nests", function()
      local posts = routerlib.new():get("/:post", show("post"))
      local users = routerlib.new():mount("/:user/posts", posts)
      local r = routerlib.new():mount("/users", users)
      local res = client(r):get("/users/ann/posts/5")
      assert.are.equal("post /users/ann/posts /5 post=5 user=ann", res.body)
    end)

    it("mounts a function, which gets every method and path under the prefix", function()
      local r = routerlib.new():mount("/static", show("fn"))
      local c = client(r)
      assert.are.equal("fn /static /a/b.css", req(c, "POST", "/static/a/b.css").body)
      assert.are.equal("fn /static /", c:get("/static").body)
    end)

    it("mounts at the root with \"/\", moving nothing", function()
      local other = routerlib.new():get("/x", show("other"))
      local r = routerlib.new():get("/y", show("own")):mount("/", other)
      local c = client(r)
      assert.are.equal("other  /x", c:get("/x").body)
      assert.are.equal("own  /y", c:get("/y").body)
      assert.are.equal("next /z", c:get("/z").body)
    end)

    it("comes after the routes of its own router", function()
      local api = routerlib.new():get("/health", show("sub")):get("/other", show("sub"))
      local r = routerlib.new():get("/api/health", show("parent")):mount("/api", api)
      local c = client(r)
      assert.are.equal("parent  /api/health", c:get("/api/health").body)
      assert.are.equal("sub /api /other", c:get("/api/other").body)
    end)

    it("answers 405 for the mounted routes, and falls through past them", function()
      local api = routerlib.new():get("/t", show("t"))
      local c = client(routerlib.new():mount("/api", api))
      local res = req(c, "POST", "/api/t")
      assert.are.equal(405, res.status)
      assert.are.equal("GET, HEAD, OPTIONS", res.headers.allow)
      assert.are.equal("next /api/u", c:get("/api/u").body)
    end)

    it("gives a mounted handler's next() the path as it was", function()
      local api = routerlib.new():get("/t", function(env, next)
        next()
        env["owin.ResponseBody"]:write(" back in " .. env["owin.RequestPathBase"] .. " " ..
          env["owin.RequestPath"])
      end)
      local res = client(routerlib.new():mount("/api", api)):get("/api/t")
      assert.are.equal("next /api/t back in /api /t", res.body)
    end)

    it("refuses a router that would contain itself", function()
      local a, b = routerlib.new(), routerlib.new()
      a:mount("/b", b)
      assert.matches("bad argument #2 to 'mount' %(the router would contain itself%)",
        raised(b.mount, b, "/a", a))
      assert.matches("contain itself", raised(a.mount, a, "/", a))
    end)
  end)

  describe("url_for", function()
    local r, api
    before_each(function()
      r = routerlib.new()
      r:get("/todos/:id{%d+}", show("todo"), "todo")
      r:get("/files/*path", show("files"), "files")
      r:get("/About Us", show("about"), "about")
      r:get("/u/:name", show("user"), "user")
      api = routerlib.new():get("/items/:item", show("item"), "item")
      r:mount("/shops/:shop", api)
    end)

    it("builds the path of a named route", function()
      assert.are.equal("/todos/42", r:url_for("todo", { id = 42 }))
      assert.are.equal("/todos/7", r:url_for("todo", { id = "7" }))
      assert.are.equal("/About%20Us", r:url_for("about"))
      assert.are.equal("/files/a/b%20c.txt", r:url_for("files", { path = "a/b c.txt" }))
      assert.are.equal("/files/", r:url_for("files", { path = "" }))
    end)

    it("percent-encodes values, and a request for the path gives them back", function()
      local c = client(r)
      for _, v in ipairs({ "ann", "a b", "100%", "é", "x?y#z", "a+b&c=d", "%2F", "a.b~c" }) do
        local url = r:url_for("user", { name = v })
        assert.is_nil(url:find("[^%w%%%-%._~/]"), url)
        assert.are.equal("user  /u/" .. v .. " name=" .. v, c:get(url).body)
      end
      -- a slash in a :name value is encoded, and comes back as %2F
      assert.are.equal("/u/a%2Fb", r:url_for("user", { name = "a/b" }))
      assert.are.equal("user  /u/a%2Fb name=a%2Fb", c:get(r:url_for("user", { name = "a/b" })).body)
    end)

    it("appends a query, names sorted, arrays repeated", function()
      assert.are.equal("/todos/1?a=x%20y&b=1&b=2&c=true",
        r:url_for("todo", { id = 1 }, { c = true, b = { 1, 2 }, a = "x y" }))
      assert.are.equal("/todos/1", r:url_for("todo", { id = 1 }, {}))
    end)

    it("finds names in mounted routers, with their prefix", function()
      assert.are.equal("/shops/s%201/items/9", r:url_for("item", { shop = "s 1", item = 9 }))
      assert.are.equal("/items/9", api:url_for("item", { item = 9 }))
    end)

    it("raises naming what is missing or wrong", function()
      assert.matches("url_for%(\"todo\"%): missing parameter \"id\" %(route /todos/:id{%%d%+}%)",
        raised(r.url_for, r, "todo", {}))
      assert.matches("missing parameter \"shop\"", raised(r.url_for, r, "item", { item = 1 }))
      assert.matches("parameter \"id\" = \"x\" does not match {%%d%+}",
        raised(r.url_for, r, "todo", { id = "x" }))
      assert.matches("the route /todos/:id{%%d%+} has no parameter ID",
        raised(r.url_for, r, "todo", { id = 1, ID = 2 }))
      assert.matches("parameter \"name\" is empty", raised(r.url_for, r, "user", { name = "" }))
      assert.matches("parameter \"name\" must be a string or a number, got table",
        raised(r.url_for, r, "user", { name = {} }))
      assert.matches("bad argument #1 to 'url_for' %(no route is named \"nope\"%)",
        raised(r.url_for, r, "nope"))
      assert.matches("bad argument #2 to 'url_for'", raised(r.url_for, r, "todo", 5))
      assert.matches("bad argument #3 to 'url_for'", raised(r.url_for, r, "todo", { id = 1 }, "q"))
    end)
  end)

  describe("bad input raises, naming the argument", function()
    local r
    before_each(function() r = routerlib.new() end)
    local h = function() end

    it("refuses bad patterns", function()
      local cases = {
        { "todos", "a path pattern starting with \"/\" expected, got \"todos\"" },
        { nil, "a path pattern starting with \"/\" expected, got nil" },
        { "/a/:", "':' at byte 4 must be followed by a name" },
        { "/a/:1x", "':' at byte 4 must be followed by a name" },
        { "/a/*", "'*' at byte 4 must be followed by a name" },
        { "/a/:id{%d+", "the constraint of :id has no closing '}'" },
        { "/a/:id{}", "the constraint of :id is empty" },
        { "/a/:id{[a}", "the constraint of :id is not a Lua pattern: malformed pattern" },
        { "/a/*rest/b", "a wildcard %(%*rest%) must be the last segment" },
        { "/a/:id/:id", "the name id is used twice" },
        { "/a/:id/*id", "the name id is used twice" },
        { "/a?b=1", "without '%?' or '#'" },
        { "/a/:id.json", "unexpected '%.' after :id" },
      }
      for _, case in ipairs(cases) do
        local msg = raised(r.get, r, case[1], h)
        assert.matches("bad argument #1 to 'get' %(", msg, 1, false)
        assert.matches(case[2], msg)
      end
      assert.matches("bad argument #1 to 'post' %(bad pattern \"/:\"", raised(r.post, r, "/:", h))
    end)

    it("refuses bad handlers, names and methods", function()
      assert.matches("bad argument #2 to 'get' %(function expected, got nil%)",
        raised(r.get, r, "/a", nil))
      assert.matches("bad argument #3 to 'put' %(a route name", raised(r.put, r, "/a", h, 5))
      assert.matches("bad argument #3 to 'get' %(a route name %(a non%-empty string%) expected, " ..
        "got an empty string%)", raised(r.get, r, "/a", h, ""))
      assert.matches("bad argument #1 to 'route' %(a method name",
        raised(r.route, r, "GE T", "/a", h))
      assert.matches("bad argument #1 to 'route' %(a method or an array of methods expected, got " ..
        "an empty table%)", raised(r.route, r, {}, "/a", h))
    end)

    it("refuses a route or a name given twice", function()
      r:get("/a/:id", h, "a")
      assert.matches("bad argument #1 to 'get' %(GET /a/:x is already routed, by /a/:id%)",
        raised(r.get, r, "/a/:x", h))
      assert.matches("bad argument #3 to 'post' %(the route name \"a\" is taken by /a/:id%)",
        raised(r.post, r, "/b", h, "a"))
      r:all("/c", h)
      assert.matches("every method of /c is already routed", raised(r.all, r, "/c", h))
    end)

    it("refuses bad mounts and options", function()
      assert.matches("bad argument #1 to 'mount' %(the prefix must not end with \"/\": \"/api/\"%)",
        raised(r.mount, r, "/api/", h))
      assert.matches("bad argument #1 to 'mount' %(bad pattern \"/a/%*x\": a mount prefix cannot " ..
        "hold a wildcard%)", raised(r.mount, r, "/a/*x", h))
      assert.matches("bad argument #2 to 'mount' %(a router or a function expected, got string%)",
        raised(r.mount, r, "/a", "x"))
      assert.matches("bad argument #1 to 'new' %(unknown option strict%)",
        raised(routerlib.new, { strict = true }))
      assert.matches("bad argument #1 to 'new' %(opts.method_not_allowed must be a function",
        raised(routerlib.new, { method_not_allowed = 405 }))
    end)

    it("says to use a colon when a method is called with a dot", function()
      assert.matches("bad self to 'get' %(call it with a colon: router:get%(...%)%)",
        raised(r.get, "/a", h))
    end)

    it("points the error at the caller's line", function()
      local ok, err = pcall(function() r:get("bad", h) end)
      assert.is_false(ok)
      assert.matches("router_spec%.lua:%d+: bad argument", err)
    end)
  end)
end)
