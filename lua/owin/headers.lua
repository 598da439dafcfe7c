-- owin.headers: OWIN headers tables in pure Lua, for hosts that run without
-- the C core (a WSAPI host, plain Lua).  They behave like the server's
-- (src/runtime/headers.c):
--
--   local headers = require("owin.headers")
--   local h = headers.new({ ["Content-Type"] = "text/plain" })
--   h["content-type"]       --> { "text/plain" }   (names ignore case)
--   h["X-Count"] = 3        --> stored as { "3" }
--   h["X-Count"] = nil      --> removed
--   for name, values in pairs(h) do ... end        (each header once)
--
-- A name maps to an array of strings.  A string or number is stored as a
-- one-element array; an array is stored as given (its values are checked).
-- pairs() yields the spelling the app last gave a name.  A name that is not
-- an RFC 9110 token, or a value with CR, LF or NUL, raises at assignment.
-- headers.freeze(h) makes later assignments raise "headers already sent".

local type, error, next, pairs, tostring, setmetatable, rawget, rawset =
  type, error, next, pairs, tostring, setmetatable, rawget, rawset
local string_format, string_find, string_lower = string.format, string.find, string.lower

local M = {}

-- Private keys of the proxy's raw fields: only this module holds them.
local STORE, NAMES, FROZEN, MISS, PROBED = {}, {}, {}, {}, {}

-- RFC 9110 tchar: "!#$%&'*+-.^_`|~", digits, letters.
local function checkname(name)
  if type(name) ~= "string" then
    error(string_format("header name must be a string, got %s", type(name)), 3)
  end
  if name == "" then error("invalid header name: empty", 3) end
  local bad = string_find(name, "[^%w!#$%%&'*+%-.^_`|~]")
  if bad then
    error(string_format("invalid header name '%s': byte %d is not a token character",
      name, name:byte(bad)), 3)
  end
end

local function checkvalue(v, name)
  if string_find(v, "[\r\n%z]") then
    error(string_format("invalid value for header '%s': CR, LF and NUL are not allowed",
      name), 3)
  end
end

local HMT = {}

-- A miss on a name the proxy has never seen asks the miss function once
-- (hosts use it to look request headers up lazily); whatever it returns is
-- stored as if assigned.
HMT.__index = function(h, name)
  if type(name) ~= "string" then return nil end
  local lname = string_lower(name)
  local v = rawget(h, STORE)[lname]
  if v == nil then
    local miss = rawget(h, MISS)
    if miss then
      local probed = rawget(h, PROBED)
      if not probed[lname] then
        probed[lname] = true
        v = miss(lname)
        if v ~= nil then rawget(h, STORE)[lname] = v end
      end
    end
  end
  return v
end

HMT.__newindex = function(h, name, value)
  checkname(name)
  if rawget(h, FROZEN) then
    error(string_format("headers already sent: cannot set '%s'", name), 2)
  end
  local t = type(value)
  if t == "string" or t == "number" then
    value = tostring(value)
    checkvalue(value, name)
    value = { value }
  elseif t == "table" then
    for i = 1, #value do
      local v = value[i]
      local vt = type(v)
      if vt ~= "string" and vt ~= "number" then
        error(string_format("value %d of header '%s' must be a string, got %s", i, name, vt), 2)
      end
      checkvalue(tostring(v), name)
    end
  elseif t ~= "nil" then
    error(string_format("value of header '%s' must be a string or an array of strings, got %s",
      name, t), 2)
  end
  local lname = string_lower(name)
  rawget(h, STORE)[lname] = value
  local probed = rawget(h, PROBED)
  if probed then probed[lname] = true end   -- a removed header stays removed
  local names = rawget(h, NAMES)
  if lname ~= name and value ~= nil then
    if not names then
      names = {}
      rawset(h, NAMES, names)
    end
    names[lname] = name
  elseif names then
    names[lname] = nil
  end
end

local function hnext(h, name)
  local store = rawget(h, STORE)
  local lname, values = next(store, name and string_lower(name))
  if lname == nil then return nil end
  local names = rawget(h, NAMES)
  return names and names[lname] or lname, values
end

HMT.__pairs = function(h)
  return hnext, h, nil
end

HMT.__tostring = function(h)
  return (tostring(rawget(h, STORE)):gsub("^table", "owinlua.Headers"))
end

HMT.__name = "owinlua.Headers"
HMT.__metatable = false           -- getmetatable() hides it, as the C one does

-- headers.new([init [, miss]]) -> a headers table.  init: any table of
-- name -> string | number | array, copied through the checks.  miss: an
-- optional function(lowercase name) -> array|nil consulted once per name
-- on lookup misses.
function M.new(init, miss)
  if init ~= nil and type(init) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(init) .. ")", 2)
  end
  if miss ~= nil and type(miss) ~= "function" then
    error("bad argument #2 to 'new' (function expected, got " .. type(miss) .. ")", 2)
  end
  local h = setmetatable({ [STORE] = {} }, HMT)
  if miss then
    rawset(h, MISS, miss)
    rawset(h, PROBED, {})
  end
  if init then
    for k, v in pairs(init) do h[k] = v end
  end
  return h
end

-- True when x is a headers table made by this module.
function M.is(x)
  return type(x) == "table" and rawget(x, STORE) ~= nil
end

-- After this, assignments raise "headers already sent".
function M.freeze(h)
  rawset(h, FROZEN, true)
end

function M.frozen(h)
  return rawget(h, FROZEN) == true
end

return M
