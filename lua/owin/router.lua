-- owin.router: routes by method and path, as middleware (docs/router.md).
--
--   local router = require("owin.router").new()
--   router:get("/todos", list)
--   router:get("/todos/:id{%d+}", show, "todo")  -- env["owin.RouteParams"].id
--   router:get("/files/*path", files)            -- the rest of the path
--   router:mount("/admin", admin_router)         -- PathBase as app.map sets it
--   app.use(router)                              -- falls through when nothing matches
--
-- Handlers are function(env, next): an AppFunc works as it is, and so do
-- context.app(function(ctx)) and context.middleware(function(ctx, next)).
--
-- Routes are compiled into a segment trie when they are added.  A request
-- walks it one path segment at a time: at each node the static child (one
-- hash lookup), then the parameter children (constrained ones first), then
-- the wildcard, then the mounts; a dead end backtracks to the next
-- candidate.  The cost of a request depends on its path and on the routes
-- that share its prefix, not on how many routes there are.  A path that is
-- a static route, byte for byte, is one hash lookup.
--
-- The path matched is owin.RequestPath: percent-decoded except "%2F", so an
-- encoded slash never splits a segment, and captures are substrings of it.

local type, tostring, error, pairs, setmetatable, getmetatable, pcall =
  type, tostring, error, pairs, setmetatable, getmetatable, pcall
local string_byte, string_find, string_format, string_gsub, string_lower, string_match,
      string_sub =
  string.byte, string.find, string.format, string.gsub, string.lower, string.match,
  string.sub
local table_concat, table_insert, table_sort = table.concat, table.insert, table.sort

local owin = require("owin")

local METHOD, PATH, PATH_BASE = "owin.RequestMethod", "owin.RequestPath", "owin.RequestPathBase"
local STATUS, RES_HEADERS, RES_BODY = "owin.ResponseStatusCode", "owin.ResponseHeaders",
  "owin.ResponseBody"
local PARAMS = "owin.RouteParams"

local Router = {}
local router_mt = { __index = Router, __name = "owin.router" }

------------------------------------------------------------------------------
-- Patterns
--
-- A pattern is "/" followed by segments separated by "/":
--   text          a static segment, matched whole (ignoring ASCII case
--                 unless the router is case-sensitive)
--   :name         a parameter: one non-empty segment
--   :name{lpat}   a parameter whose segment matches the Lua pattern lpat
--                 (anchored at both ends)
--   *name         the rest of the path, slashes included, possibly empty;
--                 last only
-- parse() returns an array of { kind = "static", text = }, { kind = "param",
-- name =, constraint =, lpat = } and { kind = "wild", name = }, or nil and
-- what is wrong.

local NAME = "^[%a_][%w_]*"

local function parse(pattern, allow_wild)
  if type(pattern) ~= "string" or string_byte(pattern, 1) ~= 47 then
    return nil, string_format("a path pattern starting with \"/\" expected, got %s",
      type(pattern) == "string" and string_format("%q", pattern) or type(pattern))
  end
  local function bad(why)
    return nil, string_format("bad pattern %q: %s", pattern, why)
  end
  local segs, seen = {}, {}
  local i, n = 2, #pattern
  while true do
    local c = string_sub(pattern, i, i)
    if c == ":" or c == "*" then
      local name = string_match(pattern, NAME, i + 1)
      if not name then
        return bad(string_format("'%s' at byte %d must be followed by a name (a letter or '_', " ..
          "then letters, digits or '_')", c, i))
      end
      if seen[name] then return bad("the name " .. name .. " is used twice") end
      seen[name] = true
      local j = i + 1 + #name                -- just after the name
      if c == "*" then
        if not allow_wild then return bad("a mount prefix cannot hold a wildcard") end
        if j <= n then
          return bad("a wildcard (*" .. name .. ") must be the last segment")
        end
        segs[#segs + 1] = { kind = "wild", name = name }
        return segs
      end
      local seg = { kind = "param", name = name }
      segs[#segs + 1] = seg
      local after = string_sub(pattern, j, j)
      if after == "{" then
        local close = string_find(pattern, "}/", j + 1, true)
        if not close then
          if string_byte(pattern, n) ~= 125 then
            return bad("the constraint of :" .. name .. " has no closing '}'")
          end
          close = n
        end
        local lpat = string_sub(pattern, j + 1, close - 1)
        if lpat == "" then return bad("the constraint of :" .. name .. " is empty") end
        seg.constraint = lpat
        -- anchored at both ends (an anchor given already is kept)
        local anchored = lpat
        if string_byte(anchored, 1) ~= 94 then anchored = "^" .. anchored end
        if not string_find(anchored, "[^%%]%$$") then anchored = anchored .. "$" end
        local ok, err = pcall(string_find, "", anchored)
        if not ok then
          return bad("the constraint of :" .. name .. " is not a Lua pattern: " ..
            tostring(err):gsub("^.-:%d+: ", ""))
        end
        seg.lpat = anchored
        j = close + 1
      elseif after ~= "/" and after ~= "" then
        return bad(string_format("unexpected '%s' after :%s (a parameter is a whole segment; " ..
          "a constraint is written :%s{lua pattern})", after, name, name))
      end
      if j > n then return segs end
      i = j + 1                              -- past the "/"
    else
      local j = string_find(pattern, "/", i, true)
      local text = string_sub(pattern, i, (j or n + 1) - 1)
      if string_find(text, "[?#]") then
        return bad("a pattern matches the path only, without '?' or '#'")
      end
      segs[#segs + 1] = { kind = "static", text = text }
      if not j then return segs end
      i = j + 1
    end
  end
end

------------------------------------------------------------------------------
-- The trie
--
-- node = { static = { [segment] = node }, params = { node ... } (the
--   parameter children: constrained first, then in the order added),
--   constraint =, lpat = (on a parameter child: its constraint and the
--   anchored Lua pattern), ep = endpoint (routes that end here), wild =
--   endpoint (routes whose wildcard starts here), mounts = { mount ... } }
-- endpoint = { [METHOD] = route, [ANY] = route (router:all) }
-- route = { handler =, names = { capture names in path order }, pattern =,
--   segs = (named routes only, for url_for) }
-- mount = { names =, segs =, router = router } or { names =, segs =, fn = f }
--
-- Captures are positional while a request walks the trie: parameter names
-- are the route's, so "/a/:id" (GET) and "/a/:key" (DELETE) share a node.
-- Routes are kept small: the garbage collector walks through all of them.

local ANY = true                 -- the endpoint key of router:all's route

local function child(node, seg, cs)
  if seg.kind == "static" then
    local key = cs and seg.text or string_lower(seg.text)
    local static = node.static
    if not static then static = {}; node.static = static end
    local c = static[key]
    if not c then c = {}; static[key] = c end
    return c
  end
  local params = node.params
  if not params then params = {}; node.params = params end
  for k = 1, #params do
    if params[k].constraint == seg.constraint then return params[k] end
  end
  local p = { constraint = seg.constraint, lpat = seg.lpat }
  if seg.constraint then
    local at = 1
    while params[at] and params[at].constraint do at = at + 1 end
    table_insert(params, at, p)
  else
    params[#params + 1] = p
  end
  return p
end

-- Walks (and makes) the nodes of segs but the wildcard; returns the last
-- node, the wildcard segment if any, and the capture names in order.
local function descend(root, segs, cs)
  local node, names, wild = root, {}, nil
  for k = 1, #segs do
    local seg = segs[k]
    if seg.kind ~= "static" then names[#names + 1] = seg.name end
    if seg.kind == "wild" then
      wild = seg
    else
      node = child(node, seg, cs)
    end
  end
  return node, wild, names
end

------------------------------------------------------------------------------
-- Matching.  A walk never yields, so its state lives in upvalues.

local NO_NAMES = {}              -- the capture names of a route without captures
local vals, nvals = {}, 0        -- captured values, in path order
local chain, nchain = {}, 0      -- the capture names of the mounts entered
local allow                      -- methods of the endpoints that matched the path
                                 -- but not the method (nil until one did)
local hit_handler, hit_params, hit_base, hit_path

-- The route of endpoint ep for method, or nil (recording ep's methods).
local function take(ep, method)
  local r = ep[method]
  if r then return r end
  if method == "HEAD" then
    r = ep.GET
    if r then return r end
  end
  r = ep[ANY]
  if r then return r end
  allow = allow or {}
  for m in pairs(ep) do allow[m] = true end      -- no ANY here: it would have matched
  return nil
end

-- Records a match: the handler, its params, and the path it is to see
-- (base: how many bytes of owin.RequestPath mounts moved to the base;
-- path: what is left).
local function found(handler, names, base, path)
  local params, i = {}, 0
  for c = 1, nchain do
    local ns = chain[c]
    for k = 1, #ns do
      i = i + 1
      params[ns[k]] = vals[i]
    end
  end
  for k = 1, #names do
    i = i + 1
    params[names[k]] = vals[i]
  end
  hit_handler, hit_params, hit_base, hit_path = handler, params, base, path
  return true
end

local walk

-- Enters mount m at position pos of s (a "/" or, with s == "/", the end of
-- the path); base counts the bytes moved to the base before s.
local function enter(m, s, pos, method, base)
  local rest = pos == 1 and s or string_sub(s, pos)
  local nbase = base + pos - 1
  local r = m.router
  if not r then return found(m.fn, m.names, nbase, rest) end
  nchain = nchain + 1
  chain[nchain] = m.names
  if walk(r.root, rest, 1, #rest, method, r.cs, nbase) then return true end
  nchain = nchain - 1
  return false
end

-- walk(node, s, pos, n, method, cs, base) -> true when a route (or mount)
-- takes the request.  s is the path (n its length); pos the index of the
-- "/" before the next segment, or n + 1 at the end.
function walk(node, s, pos, n, method, cs, base)
  if pos > n then
    local ep = node.ep
    if ep then
      local r = take(ep, method)
      if r then return found(r.handler, r.names, base, s) end
    end
    local mounts = node.mounts
    if mounts then
      for k = 1, #mounts do
        if enter(mounts[k], "/", 1, method, base + n) then return true end
      end
    end
    return false
  end
  local slash = string_find(s, "/", pos + 1, true)
  local npos = slash or n + 1
  local seg = string_sub(s, pos + 1, npos - 1)
  local static = node.static
  if static then
    local c = static[seg]
    if c == nil and not cs then
      local l = string_lower(seg)
      if l ~= seg then c = static[l] end
    end
    if c and walk(c, s, npos, n, method, cs, base) then return true end
  end
  local params = node.params
  if params and seg ~= "" then
    for k = 1, #params do
      local p = params[k]
      local lpat = p.lpat
      if not lpat or string_find(seg, lpat) then
        nvals = nvals + 1
        vals[nvals] = seg
        if walk(p, s, npos, n, method, cs, base) then return true end
        nvals = nvals - 1
      end
    end
  end
  local wild = node.wild
  if wild then
    local r = take(wild, method)
    if r then
      nvals = nvals + 1
      vals[nvals] = string_sub(s, pos + 1)
      return found(r.handler, r.names, base, s)
    end
  end
  local mounts = node.mounts
  if mounts then
    for k = 1, #mounts do
      if enter(mounts[k], s, pos, method, base) then return true end
    end
  end
  return false
end

------------------------------------------------------------------------------
-- Answers of the router's own

local METHOD_ORDER = { GET = 1, HEAD = 2, POST = 3, PUT = 4, PATCH = 5, DELETE = 6, OPTIONS = 7 }

local function method_before(a, b)
  local x, y = METHOD_ORDER[a] or 8, METHOD_ORDER[b] or 8
  if x ~= y then return x < y end
  return a < b
end

-- The Allow header for a set of methods: HEAD with GET, OPTIONS always
-- (the router answers it), in a fixed order.
local function allow_header(set)
  if set.GET then set.HEAD = true end
  set.OPTIONS = true
  local list = {}
  for m in pairs(set) do list[#list + 1] = m end
  table_sort(list, method_before)
  return table_concat(list, ", ")
end

local function set_404(env) env[STATUS] = 404 end

-- What a handler's next() does when the router is the end of the pipeline
-- (app.run(router), or called as an AppFunc): 404, as the builder's end.
local function no_next(env)
  env = env or owin.current_env()
  if env ~= nil then pcall(set_404, env) end
end

local function default_405(env)
  env[RES_HEADERS]["Content-Type"] = "text/plain; charset=utf-8"
  env[RES_BODY]:write("Method Not Allowed\n")
end

-- Puts owin.RequestPathBase and owin.RequestPath back when a mount's
-- handler returns, by return or by error (as app.map does).
local restore_mt = {
  __close = function(r)
    local env = r[1]
    env[PATH_BASE], env[PATH] = r[2], r[3]
  end,
}

-- Calls a mounted handler with the path moved to the base.  Its next()
-- runs the rest of the pipeline with the path as it was, and puts the
-- mount's back when that returns.
local function call_mounted(handler, env, nxt, base, path, rest)
  local old_base = env[PATH_BASE]
  local new_base = old_base .. string_sub(path, 1, base)
  local _ <close> = setmetatable({ env, old_base, path }, restore_mt)
  env[PATH_BASE], env[PATH] = new_base, rest
  local function next_(e)
    e = e or env
    e[PATH_BASE], e[PATH] = old_base, path
    local _ <close> = setmetatable({ e, new_base, rest }, restore_mt)
    return nxt(e)
  end
  handler(env, next_)
end

-- router(env, next): the middleware.
local function dispatch(self, env, nxt)
  nxt = nxt or no_next
  local path, method = env[PATH], env[METHOD]
  -- a static route, byte for byte: one lookup
  local ep = self.exact[path]
  if ep then
    local r = ep[method] or (method == "HEAD" and ep.GET) or ep[ANY]
    if r then
      env[PARAMS] = {}
      return r.handler(env, nxt)
    end
  end
  nvals, nchain, allow = 0, 0, nil
  if type(path) == "string" and string_byte(path, 1) == 47
      and walk(self.root, path, 1, #path, method, self.cs, 0) then
    local handler, params, base, rest = hit_handler, hit_params, hit_base, hit_path
    hit_handler, hit_params, hit_path = nil, nil, nil
    env[PARAMS] = params
    if base > 0 then return call_mounted(handler, env, nxt, base, path, rest) end
    return handler(env, nxt)
  end
  local set = allow
  if set then
    allow = nil
    env[RES_HEADERS]["Allow"] = allow_header(set)
    if method == "OPTIONS" then
      env[STATUS] = 204
      return
    end
    env[STATUS] = 405
    return self.on_405(env, nxt)
  end
  return nxt(env)
end
router_mt.__call = dispatch

------------------------------------------------------------------------------
-- Building a router

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and type(mt.__call) == "function"
end

local function check_self(self, fname)
  if getmetatable(self) ~= router_mt then
    error(string_format("bad self to '%s' (call it with a colon: router:%s(...))", fname, fname), 3)
  end
end

local TOKEN = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$"

-- One table per distinct list of capture names, shared by the routes.
local names_lists = setmetatable({}, { __mode = "v" })

local function shared_names(names)
  if names[1] == nil then return NO_NAMES end
  local key = table_concat(names, "/")
  local list = names_lists[key]
  if not list then
    list = names
    names_lists[key] = list
  end
  return list
end

-- add(self, methods, pattern, handler, name, fname, level): methods is an
-- array of method names, or false for every method; errors are raised
-- `level` levels above the router method that called add.
local function add(self, methods, pattern, handler, name, fname, level)
  level = level + 2
  local segs, why = parse(pattern, true)
  if not segs then
    error(string_format("bad argument #1 to '%s' (%s)", fname, why), level)
  end
  if not callable(handler) then
    error(string_format("bad argument #2 to '%s' (function expected, got %s)", fname,
      type(handler)), level)
  end
  if name ~= nil and (type(name) ~= "string" or name == "") then
    error(string_format("bad argument #3 to '%s' (a route name (a non-empty string) expected, " ..
      "got %s)", fname, name == "" and "an empty string" or type(name)), level)
  end
  if name ~= nil and self.names[name] then
    error(string_format("bad argument #3 to '%s' (the route name %q is taken by %s)", fname, name,
      self.names[name].pattern), level)
  end
  local node, wild, names = descend(self.root, segs, self.cs)
  local ep
  if wild then
    ep = node.wild
    if not ep then ep = {}; node.wild = ep end
  else
    ep = node.ep
    if not ep then ep = {}; node.ep = ep end
  end
  -- what a request needs, and the segments only for url_for (a route
  -- costs memory the garbage collector walks through at every cycle)
  local route = { handler = handler, names = shared_names(names), pattern = pattern,
                  segs = name ~= nil and segs or nil }
  if methods then
    for k = 1, #methods do
      local old = ep[methods[k]]
      if old then
        error(string_format("bad argument #1 to '%s' (%s %s is already routed, by %s)", fname,
          methods[k], pattern, old.pattern), level)
      end
    end
    for k = 1, #methods do ep[methods[k]] = route end
  else
    if ep[ANY] then
      error(string_format("bad argument #1 to '%s' (every method of %s is already routed, by %s)",
        fname, pattern, ep[ANY].pattern), level)
    end
    ep[ANY] = route
  end
  if name ~= nil then self.names[name] = route end
  local static = true
  for k = 1, #segs do
    if segs[k].kind ~= "static" then static = false end
  end
  if static then
    self.exact[self.cs and pattern or string_lower(pattern)] = ep
  end
end

-- router:route(methods, pattern, handler [, name]): methods is a method
-- ("GET") or an array of them.  Names are upper-cased.
function Router:route(methods, pattern, handler, name)
  check_self(self, "route")
  local list = {}
  if type(methods) == "string" then methods = { methods } end
  if type(methods) ~= "table" or methods[1] == nil then
    error("bad argument #1 to 'route' (a method or an array of methods expected, got " ..
      (type(methods) == "table" and "an empty table" or type(methods)) .. ")", 2)
  end
  for k = 1, #methods do
    local m = methods[k]
    if type(m) ~= "string" or not string_find(m, TOKEN) then
      error(string_format("bad argument #1 to 'route' (a method name (an HTTP token) expected, " ..
        "got %s)", type(m) == "string" and string_format("%q", m) or type(m)), 2)
    end
    list[k] = m:upper()
  end
  add(self, list, pattern, handler, name, "route", 1)
  return self
end

-- router:get(pattern, handler [, name]), and post, put, patch, delete, head,
-- options.
for _, m in pairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
  local methods = { m:upper() }
  Router[m] = function(self, pattern, handler, name)
    check_self(self, m)
    add(self, methods, pattern, handler, name, m, 1)
    return self
  end
end

-- router:all(pattern, handler [, name]): every method.
function Router:all(pattern, handler, name)
  check_self(self, "all")
  add(self, false, pattern, handler, name, "all", 1)
  return self
end

-- Whether router a reaches router b through its mounts (or is b).
local function reaches(a, b)
  if a == b then return true end
  for k = 1, #a.mount_list do
    local r = a.mount_list[k].router
    if r and reaches(r, b) then return true end
  end
  return false
end

-- router:mount(prefix, target): target (a router, or a function(env, next))
-- takes every request under prefix, with the prefix moved from
-- owin.RequestPath to owin.RequestPathBase.  The prefix may hold parameters
-- but no wildcard; "/" mounts at the root, moving nothing.
function Router:mount(prefix, target)
  check_self(self, "mount")
  local segs
  if prefix == "/" then
    segs = {}
  else
    local why
    segs, why = parse(prefix, false)
    if not segs then error("bad argument #1 to 'mount' (" .. why .. ")", 2) end
    if prefix:sub(-1) == "/" then
      error(string_format("bad argument #1 to 'mount' (the prefix must not end with \"/\": %q)",
        prefix), 2)
    end
  end
  local m
  if getmetatable(target) == router_mt then
    if reaches(target, self) then
      error("bad argument #2 to 'mount' (the router would contain itself)", 2)
    end
    m = { router = target }
  elseif callable(target) then
    m = { fn = target }
  else
    error("bad argument #2 to 'mount' (a router or a function expected, got " .. type(target) ..
      ")", 2)
  end
  local node, _, names = descend(self.root, segs, self.cs)
  m.names, m.segs = names, segs
  node.mounts = node.mounts or {}
  node.mounts[#node.mounts + 1] = m
  self.mount_list[#self.mount_list + 1] = m
  return self
end

------------------------------------------------------------------------------
-- url_for

local function pct(c) return string_format("%%%02X", string_byte(c)) end

-- A parameter value: everything but RFC 3986's unreserved bytes encoded.
local function escape(s)
  return (string_gsub(s, "[^A-Za-z0-9%-%._~]", pct))
end

-- A static segment: pchar (unreserved, sub-delims, ":" and "@") kept.
local function escape_static(s)
  return (string_gsub(s, "[^A-Za-z0-9%-%._~!%$&'%(%)%*%+,;=:@]", pct))
end

-- The route named name in router r or its mounted routers (its own first,
-- then the mounts in the order made): returns the route and the list of the
-- prefixes' segment arrays in front of it.
local function lookup(r, name)
  local route = r.names[name]
  if route then return route, {} end
  for k = 1, #r.mount_list do
    local m = r.mount_list[k]
    if m.router then
      local found_route, prefixes = lookup(m.router, name)
      if found_route then
        table_insert(prefixes, 1, m.segs)
        return found_route, prefixes
      end
    end
  end
  return nil
end

local function value_string(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == math.floor(v) and v >= -2^53 and v <= 2^53 then return string_format("%d", v) end
    return tostring(v)
  end
  return nil
end

-- router:url_for(name, params [, query]) -> the path of the route named
-- name, from the router's root ("/todos/42"), with params (name -> string
-- or number) percent-encoded into it, and query (name -> value or array
-- of values) appended as "?a=1&b=2" (names sorted).  Raises naming a
-- missing parameter, one the route does not have, or a value its
-- constraint refuses.
function Router:url_for(name, params, query)
  check_self(self, "url_for")
  if type(name) ~= "string" then
    error("bad argument #1 to 'url_for' (a route name expected, got " .. type(name) .. ")", 2)
  end
  if params ~= nil and type(params) ~= "table" then
    error("bad argument #2 to 'url_for' (a table of parameters expected, got " .. type(params) ..
      ")", 2)
  end
  if query ~= nil and type(query) ~= "table" then
    error("bad argument #3 to 'url_for' (a table of query parameters expected, got " ..
      type(query) .. ")", 2)
  end
  params = params or {}
  local route, prefixes = lookup(self, name)
  if not route then
    error(string_format("bad argument #1 to 'url_for' (no route is named %q)", name), 2)
  end
  prefixes[#prefixes + 1] = route.segs
  local out, used = {}, {}
  for p = 1, #prefixes do
    local segs = prefixes[p]
    for k = 1, #segs do
      local seg = segs[k]
      if seg.kind == "static" then
        out[#out + 1] = escape_static(seg.text)
      else
        local v = params[seg.name]
        if v == nil then
          error(string_format("url_for(%q): missing parameter %q (route %s)", name, seg.name,
            route.pattern), 2)
        end
        local s = value_string(v)
        if not s then
          error(string_format("url_for(%q): parameter %q must be a string or a number, got %s",
            name, seg.name, type(v)), 2)
        end
        used[seg.name] = true
        if seg.kind == "param" then
          if s == "" then
            error(string_format("url_for(%q): parameter %q is empty", name, seg.name), 2)
          end
          if seg.lpat and not string_find(s, seg.lpat) then
            error(string_format("url_for(%q): parameter %q = %q does not match {%s}", name,
              seg.name, s, seg.constraint), 2)
          end
          out[#out + 1] = escape(s)
        else
          out[#out + 1] = (string_gsub(s, "[^/]+", escape))
        end
      end
    end
  end
  for k in pairs(params) do
    if not used[k] then
      error(string_format("url_for(%q): the route %s has no parameter %s", name, route.pattern,
        tostring(k)), 2)
    end
  end
  local url = "/" .. table_concat(out, "/")
  if query then
    local keys = {}
    for k in pairs(query) do
      if type(k) ~= "string" then
        error("bad argument #3 to 'url_for' (query names must be strings, got " .. type(k) .. ")", 2)
      end
      keys[#keys + 1] = k
    end
    table_sort(keys)
    local parts = {}
    for _, k in pairs(keys) do
      local v = query[k]
      local list = type(v) == "table" and v or { v }
      for i = 1, #list do
        local s = value_string(list[i]) or (type(list[i]) == "boolean" and tostring(list[i]))
        if not s then
          error(string_format("bad argument #3 to 'url_for' (query value of %s must be a string " ..
            "or a number, got %s)", k, type(list[i])), 2)
        end
        parts[#parts + 1] = escape(k) .. "=" .. escape(s)
      end
    end
    if #parts > 0 then url = url .. "?" .. table_concat(parts, "&") end
  end
  return url
end

------------------------------------------------------------------------------

local OPTIONS = { case_sensitive = true, method_not_allowed = true }

-- new([opts]) -> a router.  opts.case_sensitive: static segments and mount
-- prefixes match byte for byte (default: ASCII case is ignored, as app.map
-- does).  opts.method_not_allowed: function(env, next) that writes the 405
-- answer (the status and Allow are set already; default: a plain-text
-- "Method Not Allowed").
local function new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'new' (a table of options expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error("bad argument #1 to 'new' (unknown option " .. tostring(k) .. ")", 2)
    end
  end
  if opts.method_not_allowed ~= nil and not callable(opts.method_not_allowed) then
    error("bad argument #1 to 'new' (opts.method_not_allowed must be a function, got " ..
      type(opts.method_not_allowed) .. ")", 2)
  end
  return setmetatable({
    root = {},
    exact = {},
    names = {},
    mount_list = {},
    cs = opts.case_sensitive and true or false,
    on_405 = opts.method_not_allowed or default_405,
  }, router_mt)
end

return {
  new = new,
  is_router = function(x) return getmetatable(x) == router_mt end,
}
