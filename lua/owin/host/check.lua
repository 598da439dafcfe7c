-- owin.host.check: arguments checked and errors raised the way the
-- server's C functions do it, for the pure-Lua hosts (owin.test, the
-- handler side of owin.wsapi).  A C function's luaL_error names the line of
-- its caller; a host's API is Lua spread over several files, so an error is
-- raised at the first stack level outside the host's files: the app's line
-- (or no position at all when the caller is a C function such as pcall, as
-- with the server).

local debug_getinfo, error, type, tostring, getmetatable, next, rawequal =
  debug.getinfo, error, type, tostring, getmetatable, next, rawequal
local string_format = string.format

local OWN = {}              -- chunk sources of the hosts' modules

-- Each host module registers itself: check.own(debug.getinfo(1, "S").source)
local function own(source)
  if type(source) ~= "string" then
    error("bad argument #1 to 'own' (a chunk source string expected, got " .. type(source) .. ")",
      2)
  end
  OWN[source] = true
end
own(debug_getinfo(1, "S").source)

-- The stack level (as error() counts from the caller of this function) of
-- the first function that is not part of a host.
local function foreign_level()
  local level = 3
  while true do
    local info = debug_getinfo(level, "S")
    if info == nil or not OWN[info.source] then return level - 1 end
    level = level + 1
  end
end

-- Raises msg at the app's line (luaL_error's manner).
local function raise(msg)
  error(msg, foreign_level())
end

-- The name luaL_argerror finds for a function its caller did not name
-- (pcall(f, ...)): "module.field" of a loaded module, without "_G.".
local function global_name(fn)
  if fn == nil then return nil end
  for mod, v in next, package.loaded do
    if rawequal(v, fn) then return mod end
    if type(v) == "table" then
      for k, f in next, v do
        if rawequal(f, fn) and type(k) == "string" then
          local name = mod .. "." .. k
          if name:sub(1, 3) == "_G." then name = name:sub(4) end
          return name
        end
      end
    end
  end
  return nil
end

-- Raises "bad argument #n to 'name' (extramsg)" as luaL_argerror does:
-- the name is the one the caller used (or the function's name in a loaded
-- module), and a method call does not count self.
local function argerror(n, extramsg)
  local level = foreign_level()
  local info = debug_getinfo(level - 1, "nf") or {}  -- the host function called
  local name = info.name or global_name(info.func) or "?"
  if info.namewhat == "method" then
    n = n - 1
    if n == 0 then
      error(string_format("calling '%s' on bad self (%s)", name, extramsg), level)
    end
  end
  error(string_format("bad argument #%d to '%s' (%s)", n, name, extramsg), level)
end

-- luaL_typename with __name: the name luaL_typeerror prints.
local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

-- luaL_typeerror: "bad argument #n to 'name' (expected expected, got typename)".
local function typeerror(n, expected, got)
  return argerror(n, expected .. " expected, got " .. typename(got))
end

-- lua_tolstring: strings and numbers as strings, anything else nil (what
-- luaL_checklstring accepts).
local function tostr(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

-- The server's error when an app's coroutine.yield reaches the request's
-- coroutine: only owinlua's API may yield there.
local STRAY_YIELD = "the request's coroutine yielded outside owinlua's API " ..
  "(coroutine.yield in app code?)"

return {
  STRAY_YIELD = STRAY_YIELD,
  own = own,
  raise = raise,
  argerror = argerror,
  typename = typename,
  typeerror = typeerror,
  tostr = tostr,
}
