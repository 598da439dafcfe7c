-- owin.test.util: the test host's small helpers: the shapes of runtime
-- failures (nil, "ENAME: message", "ENAME") with libuv's messages, and
-- RFC 9110 token and list checks for the requests a test describes.  How
-- misuse raises is owin.host.check's.

local type = type

local M = {}

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
