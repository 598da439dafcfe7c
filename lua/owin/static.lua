-- owin.static: serves the files under a directory, as middleware.
--
--   local static = require("owin.static")
--   app.use(static("public", { cache_control = "public, max-age=3600" }))
--   app.run(function(env) ... end)        -- everything static did not serve
--
-- A relative root is relative to the app script's directory (owin.app_dir),
-- not to the working directory the server was started from.
--
-- GET and HEAD requests whose path names a regular file under `root` get the
-- file, with its Content-Type, ETag and Last-Modified, conditional requests
-- (304, 412) and single byte ranges (206, 416).  The bytes go out through
-- the server's `sendfile.SendAsync`, so Lua never holds them.  Anything else
-- (other methods, missing files, directories without an index) goes on down
-- the pipeline.
--
-- No request can reach a file outside `root`: the path is checked segment by
-- segment ("..", ".", backslashes and NUL are refused), and the canonical
-- path of the file (symlinks resolved) must lie under the canonical root.
-- A symlink that leads out of the root counts as missing unless
-- opts.follow_symlinks_outside is true.
--
-- Options:
--   index                    list of index file names for a directory
--                            (default { "index.html" }; {} for none)
--   cache_control            Cache-Control value for served files
--   types                    extension -> Content-Type, adding to or
--                            overriding the built-in table ({ md = "text/markdown" })
--   dotfiles                 "ignore" (default: a path with a segment that
--                            starts with "." is not served, as if missing),
--                            "allow", or "deny" (403)
--   follow_symlinks_outside  serve symlinks whose target leaves the root
--   fs                       the file-system functions (stat, realpath);
--                            default owin.fs from the C core.  For hosts
--                            without the core.
--
-- File metadata comes from owin.fs (stat and realpath); they run in the
-- calling thread, like any system call a few microseconds long.

local type, error, tostring, tonumber, pairs, ipairs, pcall, require =
  type, error, tostring, tonumber, pairs, ipairs, pcall, require
local math_type, math_maxinteger = math.type, math.maxinteger
local string_format, string_byte = string.format, string.byte
local table_concat = table.concat
local os_time, os_date, io_open = os.time, os.date, io.open

local PATH, PATH_BASE, QUERY = "owin.RequestPath", "owin.RequestPathBase", "owin.RequestQueryString"
local METHOD, STATUS = "owin.RequestMethod", "owin.ResponseStatusCode"
local REQH, RESH, BODY = "owin.RequestHeaders", "owin.ResponseHeaders", "owin.ResponseBody"
local SENDFILE, CANCEL = "sendfile.SendAsync", "owin.CallCancelled"

------------------------------------------------------------------------------
-- Content types by extension (lowercase, without the dot).  Types under
-- text/ get "; charset=utf-8" when the built-in table supplies them.

local TYPES = {
  html = "text/html", htm = "text/html", css = "text/css",
  js = "text/javascript", mjs = "text/javascript",       -- RFC 9239
  json = "application/json", map = "application/json",   -- source maps are JSON
  txt = "text/plain", csv = "text/csv", md = "text/markdown",
  xml = "application/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", avif = "image/avif", ico = "image/x-icon",
  wasm = "application/wasm", woff = "font/woff", woff2 = "font/woff2",
  ttf = "font/ttf", otf = "font/otf", pdf = "application/pdf",
  mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg",
  ogg = "audio/ogg", wav = "audio/wav",
}

local DEFAULT_TYPE = "application/octet-stream"

-- Builds the extension table of one middleware: built-ins with charset,
-- then opts.types as given ("." in front of a key and case are ignored).
local function make_types(extra)
  local t = {}
  for ext, ct in pairs(TYPES) do
    if ct:sub(1, 5) == "text/" then ct = ct .. "; charset=utf-8" end
    t[ext] = ct
  end
  for ext, ct in pairs(extra or {}) do
    if type(ext) ~= "string" or type(ct) ~= "string" then
      error("bad option 'types' to 'static' (string keys and values expected)", 3)
    end
    t[ext:gsub("^%.", ""):lower()] = ct
  end
  return t
end

local function content_type(types, name)
  local ext = name:match("%.([^./]+)$")
  return ext and types[ext:lower()] or DEFAULT_TYPE
end

------------------------------------------------------------------------------
-- HTTP dates (RFC 9110 5.6.7).  Made and parsed by hand: os.date's %a/%b
-- follow the C locale and os.time reads local time.

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local MONTH_NUM = {}
for i, m in ipairs(MONTHS) do MONTH_NUM[m] = i end

-- IMF-fixdate of epoch seconds: "Sun, 06 Nov 1994 08:49:37 GMT".
local function http_date(t)
  local d = os_date("!*t", t)
  return string_format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[d.wday], d.day,
    MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

-- Days from 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's
-- days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- Epoch seconds of an HTTP date in any of the three forms a recipient must
-- accept: IMF-fixdate, RFC 850 and asctime.  nil when it is none of them.
local function parse_http_date(s)
  if not s then return nil end
  local day, mon, year, hh, mm, ss =
    s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not day then                                        -- RFC 850
    day, mon, year, hh, mm, ss =
      s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if year then
      -- two-digit years: 70-99 are 19xx (RFC 9110 asks for "more than 50
      -- years in the future" to mean the past; close enough for validators)
      year = tonumber(year)
      year = year < 70 and 2000 + year or 1900 + year
    end
  end
  if not day then                                        -- asctime
    mon, day, hh, mm, ss, year =
      s:match("^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = mon and MONTH_NUM[mon]
  if not m then return nil end
  day, year, hh, mm, ss = tonumber(day), tonumber(year), tonumber(hh), tonumber(mm), tonumber(ss)
  if day < 1 or day > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(year, m, day) * 86400 + hh * 3600 + mm * 60 + ss
end

------------------------------------------------------------------------------
-- Entity tags (RFC 9110 8.8.3).  The ETag is strong, "<size hex>-<mtime
-- hex>" as nginx makes it, so that If-Range (strong comparison only) works.

local function make_etag(st)
  return string_format('"%x-%x"', st.size, st.mtime)
end

-- Splits an If-Match/If-None-Match value into { weak = bool, tag = '"..."' }
-- items; "*" gives the string "*".  nil on a syntax error.  Commas may sit
-- inside the quotes, so this scans instead of splitting on ",".
local function parse_etags(s)
  if s:match("^[ \t]*%*[ \t]*$") then return "*" end
  local list, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == " " or c == "\t" or c == "," then
      i = i + 1
    else
      local weak = false
      if s:sub(i, i + 1) == "W/" then weak, i = true, i + 2 end
      if s:sub(i, i) ~= '"' then return nil end
      local close = s:find('"', i + 1, true)
      if not close then return nil end
      list[#list + 1] = { weak = weak, tag = s:sub(i, close) }
      i = close + 1
    end
  end
  return list
end

-- True when any tag in the header matches `etag`: weakly (If-None-Match) or
-- strongly (If-Match).  A malformed header matches nothing.
local function etag_matches(header, etag, strong)
  local list = parse_etags(header)
  if list == "*" then return true end
  for _, e in ipairs(list or {}) do
    if e.tag == etag and not (strong and e.weak) then return true end
  end
  return false
end

------------------------------------------------------------------------------
-- Byte ranges (RFC 9110 14).  One range-spec only: a list of several, or
-- anything malformed, is ignored and the whole file is sent (14.2 allows it).

-- A decimal string as an integer; numbers too big for one become maxinteger
-- (beyond any file, so they clamp or make the range unsatisfiable).
local function position(digits)
  local v = tonumber(digits)
  if math_type(v) ~= "integer" then return math_maxinteger end
  return v
end

-- Returns first, last (inclusive) for a satisfiable range; false for an
-- unsatisfiable one (416); nil when the header is to be ignored.
local function parse_range(header, size)
  local spec = header:match("^[Bb][Yy][Tt][Ee][Ss]=[ \t]*(.-)[ \t]*$")
  if not spec or spec:find(",", 1, true) then return nil end
  local a, b = spec:match("^(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  if a == "" then                                        -- bytes=-n: the last n
    local n = position(b)
    if n == 0 or size == 0 then return false end
    if n > size then n = size end
    return size - n, size - 1
  end
  local first = position(a)
  local last = b ~= "" and position(b) or math_maxinteger
  if last < first then return nil end                   -- invalid: ignored
  if first >= size then return false end
  if last >= size then last = size - 1 end
  return first, last
end

------------------------------------------------------------------------------
-- Paths

-- Characters a path keeps unescaped when it goes back into a Location.
local function escape_path(p)
  return (p:gsub("[^%w%-%._~!%$&'%(%)%*%+,;=:@/]", function(c)
    return string_format("%%%02X", string_byte(c))
  end))
end

-- Checks a decoded request path.  Returns nil when it may be mapped onto
-- the root, else the status to answer: 404 for ".." and an encoded slash
-- (no such name can exist), 400 for ".", backslash and NUL (never valid in
-- a request for a file).  Also returns whether a segment starts with ".".
local function check_path(path)
  if path:find("\0", 1, true) or path:find("\\", 1, true) then return 400 end
  if path:find("%%2[fF]") then return 404 end
  local dot = false
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then return 404 end
    if seg == "." then return 400 end
    if string_byte(seg, 1) == 46 then dot = true end
  end
  return nil, dot
end

-- True when the canonical path `p` is `root` or below it.
local function inside(p, root)
  if root == "/" then return true end
  return p == root or (p:sub(1, #root + 1) == root .. "/")
end

------------------------------------------------------------------------------
-- Responses

local function answer(env, status)
  env[STATUS] = status
  env[RESH]["Content-Length"] = "0"
end

-- Codes that mean the client went away while the file was being sent: the
-- request just ends.  Others are errors of the server (a file that vanished
-- or cannot be read): raised, so the server logs them and gives a 500 or
-- cuts the connection.
local GONE = { EPIPE = true, ECONNRESET = true, ECANCELED = true, ECONNABORTED = true }

-- Reads the range from disk and writes it to the body: for hosts that have
-- no sendfile.SendAsync (the in-process test host).
local function copy_file(env, path, offset, length)
  local f, err = io_open(path, "rb")
  if not f then error("owin.static: " .. err, 0) end
  f:seek("set", offset)
  local body = env[BODY]
  while length > 0 do
    local chunk = f:read(length < 65536 and length or 65536)
    if not chunk then break end
    length = length - #chunk
    if not body:write(chunk) then break end
  end
  f:close()
end

local function send(env, path, offset, length)
  if length == 0 then return end
  local sendfile = env[SENDFILE]
  if not sendfile then return copy_file(env, path, offset, length) end
  local ok, err, code = sendfile(path, offset, length, env[CANCEL])
  if not ok and not GONE[code] then
    error(string_format("owin.static: sending %s: %s", path, tostring(err)), 0)
  end
end

-- Evaluates the preconditions in RFC 9110 13.2.2's order.  Returns 412, 304,
-- or nil to go on.
local function preconditions(reqh, etag, mtime)
  local im = reqh["if-match"]
  if im then
    if not etag_matches(table_concat(im, ","), etag, true) then return 412 end
  else
    local ius = parse_http_date(reqh["if-unmodified-since"] and reqh["if-unmodified-since"][1])
    if ius and mtime > ius then return 412 end
  end
  local inm = reqh["if-none-match"]
  if inm then
    if etag_matches(table_concat(inm, ","), etag, false) then return 304 end
  else
    local ims = parse_http_date(reqh["if-modified-since"] and reqh["if-modified-since"][1])
    -- a date in the future is invalid (RFC 9110 13.1.3) and ignored
    if ims and ims <= os_time() and mtime <= ims then return 304 end
  end
  return nil
end

-- True when an If-Range value (absent, an entity tag or a date) lets the
-- Range through: the tag must match strongly, the date exactly.
local function if_range_ok(reqh, etag, mtime)
  local v = reqh["if-range"]
  if not v then return true end
  v = v[1]
  if v:sub(1, 1) == '"' or v:sub(1, 2) == "W/" then
    return v == etag
  end
  return parse_http_date(v) == mtime
end

-- Sends the regular file `real` (canonical path) whose stat is `st`.
local function serve(env, self, real, name, st)
  local reqh, resh = env[REQH], env[RESH]
  local etag, mtime, size = make_etag(st), st.mtime, st.size
  resh["ETag"] = etag
  resh["Last-Modified"] = http_date(mtime)
  if self.cache_control then resh["Cache-Control"] = self.cache_control end
  local pre = preconditions(reqh, etag, mtime)
  if pre == 304 then
    env[STATUS] = 304
    return
  elseif pre then
    return answer(env, pre)
  end
  resh["Accept-Ranges"] = "bytes"
  resh["Content-Type"] = content_type(self.types, name)
  local first, last = 0, size - 1
  local range = reqh["range"]
  if range and env[METHOD] == "GET" and if_range_ok(reqh, etag, mtime) then
    -- several Range fields are a list of ranges: ignored like one with commas
    local a, b = parse_range(table_concat(range, ","), size)
    if a == false then
      resh["Content-Range"] = "bytes */" .. size
      resh["Content-Type"] = nil
      return answer(env, 416)
    elseif a then
      first, last = a, b
      env[STATUS] = 206
      resh["Content-Range"] = string_format("bytes %d-%d/%d", first, last, size)
    end
  end
  resh["Content-Length"] = tostring(last - first + 1)
  if env[METHOD] == "HEAD" then return end
  send(env, real, first, last - first + 1)
end

-- Answers a directory path without its final "/": 301 to the path with it,
-- the query kept.  The leading slashes are collapsed so that "//host" can
-- never become a redirect to another site.
local function redirect_slash(env)
  local target = escape_path((env[PATH_BASE] or "") .. env[PATH] .. "/"):gsub("^//+", "/")
  local q = env[QUERY]
  if q and q ~= "" then target = target .. "?" .. q end
  env[STATUS] = 301
  local resh = env[RESH]
  resh["Location"] = target
  resh["Content-Type"] = "text/html; charset=utf-8"
  local html = '<a href="' .. target:gsub("&", "&amp;"):gsub('"', "&quot;"):gsub("<", "&lt;") ..
    '">Moved permanently</a>\n'
  resh["Content-Length"] = tostring(#html)
  if env[METHOD] ~= "HEAD" then env[BODY]:write(html) end
end

-- The middleware's request handler.  Returns true when it answered.
local function handle(self, env)
  local path = env[PATH]
  if string_byte(path, 1) ~= 47 then return false end    -- "*" and the like
  local bad, dotted = check_path(path)
  if bad then
    answer(env, bad)
    return true
  end
  if dotted and self.dotfiles ~= "allow" then
    if self.dotfiles == "deny" then
      answer(env, 403)
      return true
    end
    return false
  end
  local fs, root = self.fs, self.root
  local file = root == "/" and path or root .. path
  local st = fs.stat(file)
  if not st then return false end                         -- missing: next
  local name = path
  if st.type == "directory" then
    local real = fs.realpath(file)
    if not real or not (self.follow or inside(real, root)) then
      answer(env, 404)
      return true
    end
    if string_byte(path, -1) ~= 47 then
      redirect_slash(env)
      return true
    end
    st = nil
    for _, index in ipairs(self.index) do
      local f = file .. index
      local ist = fs.stat(f)
      if ist and ist.type == "file" then
        file, name, st = f, index, ist
        break
      end
    end
    if not st then return false end                       -- no index: next
  elseif st.type ~= "file" then
    return false                                          -- fifos, devices...
  end
  -- The canonical path decides: symlinks anywhere on the way are resolved,
  -- and the file must still be under the canonical root.  The canonical
  -- path is what gets sent, so the check and the send name the same file.
  local real = fs.realpath(file)
  if not real or not (self.follow or inside(real, root)) then
    answer(env, 404)
    return true
  end
  serve(env, self, real, name, st)
  return true
end

------------------------------------------------------------------------------
-- The module: static(root, opts) -> function(env, next)

local function option(opts, key, kind)
  local v = opts[key]
  if v ~= nil and type(v) ~= kind then
    error(string_format("bad option '%s' to 'static' (%s expected, got %s)", key, kind, type(v)), 3)
  end
  return v
end

-- The owin module (the C core's owin.fs, app_dir), looked up when a
-- middleware is made: this module itself loads without it.
local function owin_module()
  local ok, owin = pcall(require, "owin")
  return ok and type(owin) == "table" and owin or nil
end

local function default_fs()
  local owin = owin_module()
  return owin and owin.fs or nil
end

-- The path to open for `root`, and how to name it in an error.  A relative
-- root is relative to the app script's directory (owin.app_dir), whatever
-- the working directory; without a script, to the working directory.
local function resolve_root(fs, root)
  if string_byte(root, 1) == 47 then return root, root end
  local owin = owin_module()
  local base = owin and owin.app_dir and owin.app_dir()
  if base == nil then base = fs.realpath(".") end
  if base == nil then return root, root end
  local path = (base == "/" and "" or base) .. "/" .. root:gsub("^%./", "")
  return path, root .. " (resolved to " .. path .. ")"
end

local function static(root, opts)
  if type(root) ~= "string" or root == "" then
    error("bad argument #1 to 'static' (directory path expected, got " .. type(root) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'static' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local fs = option(opts, "fs", "table") or default_fs()
  if not fs or not fs.stat or not fs.realpath then
    error("owin.static: no owin.fs (stat, realpath) in this host", 2)
  end
  local index = option(opts, "index", "table") or { "index.html" }
  for i, name in ipairs(index) do
    if type(name) ~= "string" or name == "" or name:find("/", 1, true) then
      error("bad option 'index' to 'static' (file names expected; #" .. i .. " is not one)", 2)
    end
  end
  local dotfiles = option(opts, "dotfiles", "string") or "ignore"
  if dotfiles ~= "ignore" and dotfiles ~= "allow" and dotfiles ~= "deny" then
    error("bad option 'dotfiles' to 'static' (\"ignore\", \"allow\" or \"deny\" expected, got \"" ..
      dotfiles .. "\")", 2)
  end
  -- The root is resolved once: a missing root is a mistake to report at
  -- start-up, not a 404 on every request.
  local path, shown = resolve_root(fs, root)
  local real, err, code = fs.realpath(path)
  if not real then
    err = tostring(err or code):gsub(" %(.*%)$", "")     -- the path is in `shown`
    error("owin.static: bad root " .. shown .. ": " .. err, 2)
  end
  local st = fs.stat(real)
  if not st or st.type ~= "directory" then
    error("owin.static: bad root " .. shown .. ": not a directory", 2)
  end
  local self = {
    fs = fs,
    root = real,
    index = index,
    types = make_types(option(opts, "types", "table")),
    cache_control = option(opts, "cache_control", "string"),
    dotfiles = dotfiles,
    follow = option(opts, "follow_symlinks_outside", "boolean") == true,
  }
  return function(env, next)
    local m = env[METHOD]
    if (m ~= "GET" and m ~= "HEAD") or not handle(self, env) then
      return next(env)
    end
  end
end

return static
