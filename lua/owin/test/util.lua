-- owin.test.util: errors raised the way the server's C functions raise
-- them.  A C function's luaL_error names the line of its caller; the test
-- host's API is Lua spread over several files, so an error is raised at the
-- first stack level outside these files: the app's line (or no position at
-- all when the caller is a C function such as pcall, as with the server).

local debug_getinfo, error, type, tostring, getmetatable =
  debug.getinfo, error, type, tostring, getmetatable
local string_format = string.format

local M = {}

local OWN = {}              -- chunk sources of the owin.test modules

-- Each owin.test module registers itself: M.own(debug.getinfo(1, "S").source)
function M.own(source)
  OWN[source] = true
end
M.own(debug_getinfo(1, "S").source)

-- The stack level (as error() counts from the caller of this function) of
-- the first function that is not part of owin.test.
local function foreign_level()
  local level = 3
  while true do
    local info = debug_getinfo(level, "S")
    if info == nil or not OWN[info.source] then return level - 1 end
    level = level + 1
  end
end

-- Raises msg at the app's line (luaL_error's manner).
function M.raise(msg)
  error(msg, foreign_level())
end

-- Raises "bad argument #n to 'name' (extramsg)" as luaL_argerror does:
-- the name is the one the caller used, and a method call does not count
-- self.
function M.argerror(n, extramsg)
  local level = foreign_level()
  local info = debug_getinfo(level - 1, "n") or {}   -- the owin.test function called
  local name = info.name or "?"
  if info.namewhat == "method" then
    n = n - 1
    if n == 0 then
      error(string_format("calling '%s' on bad self (%s)", name, extramsg), level)
    end
  end
  error(string_format("bad argument #%d to '%s' (%s)", n, name, extramsg), level)
end

-- luaL_typename with __name: the name luaL_typeerror prints.
function M.typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

function M.typeerror(n, expected, got)
  return M.argerror(n, expected .. " expected, got " .. M.typename(got))
end

-- server.OnSendingHeaders of a pure-Lua host (owin.test, owin.wsapi's
-- handler): the function the env holds for the response state st.  It keeps
-- (callback, state) pairs in st.onsend until st.committed is set.
function M.on_sending_headers(st)
  return function(callback, state)
    if type(callback) ~= "function" then M.typeerror(1, "function", callback) end
    if st.committed then M.raise("server.OnSendingHeaders: headers already sent") end
    local t = st.onsend or { n = 0 }
    st.onsend = t
    t[t.n + 1], t[t.n + 2] = callback, state
    t.n = t.n + 2
  end
end

-- Runs st's OnSendingHeaders callbacks once, last registered first.
function M.run_sending_headers(st)
  local cbs = st.onsend
  st.onsend = nil
  if cbs then
    for i = cbs.n - 1, 1, -2 do cbs[i](cbs[i + 1]) end
  end
end

-- lua_tolstring: strings and numbers as strings, anything else nil.
function M.tostr(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

-- nil, "ENAME: message", "ENAME": the runtime failure shape.
function M.failure(name, what)
  return nil, name .. ": " .. what, name
end

-- libuv's messages for the error names the test host reports (uv_strerror).
M.STRERROR = {
  EPERM = "operation not permitted", ENOENT = "no such file or directory", EIO = "i/o error",
  EACCES = "permission denied", ENOTDIR = "not a directory",
  EISDIR = "illegal operation on a directory", EINVAL = "invalid argument",
  ENFILE = "file table overflow", EMFILE = "too many open files",
  ENAMETOOLONG = "name too long", ELOOP = "too many symbolic links encountered",
  EPIPE = "broken pipe", ECANCELED = "operation canceled",
}

-- nil, "ENAME: strerror (what)", "ENAME": sendfile's failure shape.
function M.sysfailure(name, what)
  local msg = name .. ": " .. (M.STRERROR[name] or "unknown error")
  if what then msg = msg .. " (" .. what .. ")" end
  return nil, msg, name
end

-- errno values io.open reports on Linux, by name.
M.ERRNO = {
  [1] = "EPERM", [2] = "ENOENT", [5] = "EIO", [13] = "EACCES", [20] = "ENOTDIR",
  [21] = "EISDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE",
  [36] = "ENAMETOOLONG", [40] = "ELOOP",
}

-- RFC 9110 token characters.
function M.is_token(s)
  return type(s) == "string" and s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

-- Is tok in the comma-separated list v (case-insensitive)?
function M.list_has(v, tok)
  if v == nil then return false end
  tok = tok:lower()
  for item in v:gmatch("[^,]+") do
    if item:match("^[ \t]*(.-)[ \t]*$"):lower() == tok then return true end
  end
  return false
end

return M
