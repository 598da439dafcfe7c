-- owin.multipart: multipart/form-data (RFC 7578, with RFC 2046's boundary
-- rules), read as a stream (docs/forms.md).
--
--   local multipart = require("owin.multipart")
--   local form, err, code, status = multipart.form(env["owin.RequestBody"],
--     content_type, { max_file_size = 8 * 2^20 })     -- what request:form() runs
--
--   local p = multipart.parser(assert(multipart.boundary(content_type)))
--   p:feed(bytes) ... p:feed(nil)                     -- nil: the body ended
--   local ev, x = p:next()     -- "part", part | "data", bytes | "end" | "done"
--                              -- | false (feed more) | nil, err, code
--
-- The parser is pure (bytes in, events out) and holds at most one part's
-- headers, or the bytes that could still be the start of a boundary:
-- whatever the chunks, a part's content comes out as it arrives.  form()
-- drives it from an input stream's read(n): fields are kept in memory,
-- files are spooled to new files made by owin.fs.mkstemp (mode 0600) or
-- handed to a callback chunk by chunk, and every limit is checked as the
-- bytes arrive.
--
-- Misuse raises (a bad argument, an unknown option); a body that breaks the
-- rules or a limit gives nil, "ENAME: message", "ENAME" (and from form(),
-- the HTTP status to answer with).

local type, tostring, tonumber, error, setmetatable, pcall, pairs, require =
  type, tostring, tonumber, error, setmetatable, pcall, pairs, require
local string_byte, string_char, string_find, string_format, string_gmatch, string_gsub,
      string_lower, string_match, string_sub =
  string.byte, string.char, string.find, string.format, string.gmatch, string.gsub,
  string.lower, string.match, string.sub
local table_concat, math_tointeger, math_random, math_huge = table.concat, math.tointeger,
  math.random, math.huge
local utf8_len, utf8_char = utf8.len, utf8.char
local io_open, os_remove, os_getenv, os_tmpname = io.open, os.remove, os.getenv, os.tmpname

local M = {}

local CHUNK = 65536

------------------------------------------------------------------------------
-- Header values: Content-Type and Content-Disposition parameters

local TOKEN = "[%w!#%$%%&'%*%+%-%.%^_`|~]+"

-- A name or value from the client, made fit for an error message: at most
-- 64 bytes, control characters, quotes and backslashes as "?".
local function quote(s)
  if #s > 64 then s = string_sub(s, 1, 61) .. "..." end
  return '"' .. string_gsub(s, "[%c\"\\\127]", "?") .. '"'
end

-- Parses the parameters of a header value from index i: `; name=value`
-- pairs, each value a token or a quoted string.  Returns name (lowercase)
-- -> value, or nil, err.  Inside quotes, \" and \\ stand for " and \; any
-- other backslash is kept as it is, because browsers do not escape them
-- (Windows paths, RFC 7578 section 4.2).  A parameter given twice is an
-- error: two parsers could each take a different one.
local function parse_params(s, i)
  local params = {}
  while true do
    i = string_find(s, "[^ \t]", i)
    if i == nil then return params end
    if string_byte(s, i) ~= 59 then            -- ";"
      return nil, "';' expected before " .. quote(string_sub(s, i))
    end
    i = string_find(s, "[^ \t]", i + 1)
    if i == nil then return params end          -- a trailing ";"
    local name, j = string_match(s, "^(" .. TOKEN .. ")[ \t]*=[ \t]*()", i)
    if name == nil then return nil, "a parameter is not name=value: " .. quote(string_sub(s, i)) end
    name = string_lower(name)
    local value
    if string_byte(s, j) == 34 then            -- a quoted string
      local out, k = {}, j + 1
      while true do
        local q = string_find(s, '["\\]', k)
        if q == nil then return nil, "a quoted parameter value has no closing quote" end
        out[#out + 1] = string_sub(s, k, q - 1)
        if string_byte(s, q) == 34 then
          k = q + 1
          break
        end
        local c = string_sub(s, q + 1, q + 1)
        if c == '"' or c == "\\" then
          out[#out + 1] = c
          k = q + 2
        else
          out[#out + 1] = "\\"
          k = q + 1
        end
      end
      value, i = table_concat(out), k
    else
      local v, k = string_match(s, "^([^;]*)()", j)
      value, i = string_match(v, "^(.-)[ \t]*$"), k
    end
    if params[name] ~= nil then return nil, "parameter " .. quote(name) .. " is given twice" end
    params[name] = value
  end
end

local function hexbyte(h) return string_char(tonumber(h, 16)) end

-- An RFC 5987 ext-value (charset'language'percent-encoded) as UTF-8, or nil
-- for a charset other than UTF-8 and ISO-8859-1, or bytes that are not UTF-8.
local function ext_value(v)
  local charset, encoded = string_match(v, "^([%w!#%$%%&%+%-%^_`{}~]+)'[^']*'(.*)$")
  if charset == nil then return nil end
  charset = string_lower(charset)
  local s = string_gsub(encoded, "%%(%x%x)", hexbyte)
  if charset == "utf-8" then
    if utf8_len(s) then return s end
  elseif charset == "iso-8859-1" then
    return (string_gsub(s, "[\128-\255]", function(c) return utf8_char(string_byte(c)) end))
  end
  return nil
end

-- bchars of RFC 2046 section 5.1.1: 1 to 70 of them, the last not a space.
local BOUNDARY = "^[%w'()+_,%-%./:=? ]*[%w'()+_,%-%./:=?]$"

local function valid_boundary(b)
  return type(b) == "string" and #b >= 1 and #b <= 70 and string_find(b, BOUNDARY) ~= nil
end

-- multipart.boundary(content_type) -> the boundary parameter of a
-- multipart/* Content-Type value, or nil, "EINVAL: ...", "EINVAL".
function M.boundary(content_type)
  if type(content_type) ~= "string" then
    return nil, "EINVAL: a multipart body needs a Content-Type header", "EINVAL"
  end
  local mtype, i = string_match(content_type, "^[ \t]*([^;, \t]*)[ \t]*()")
  if not string_find(string_lower(mtype), "^multipart/") then
    return nil, string_format("EINVAL: %s is not a multipart media type", quote(mtype)), "EINVAL"
  end
  local params, err = parse_params(content_type, i)
  if params == nil then
    return nil, "EINVAL: invalid Content-Type parameters: " .. err, "EINVAL"
  end
  local b = params.boundary
  if b == nil then
    return nil, string_format("EINVAL: %s without a boundary parameter", string_lower(mtype)),
      "EINVAL"
  end
  if not valid_boundary(b) then
    return nil, string_format("EINVAL: invalid multipart boundary %s (1 to 70 letters, digits, " ..
      "spaces or '()+_,-./:=? as RFC 2046 allows, not ending in a space)", quote(b)), "EINVAL"
  end
  return b
end

------------------------------------------------------------------------------
-- File names

-- Bytes that are not UTF-8, each as U+FFFD.
local function fix_utf8(s)
  if utf8_len(s) then return s end
  local out, i = {}, 1
  while true do
    local n, bad = utf8_len(s, i)
    if n then
      out[#out + 1] = string_sub(s, i)
      return table_concat(out)
    end
    out[#out + 1] = string_sub(s, i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
end

-- multipart.display_name(filename) -> the name a client sent, fit to show:
-- controls (C0, DEL, C1) and bidirectional overrides removed, everything up
-- to the last "/" or "\" dropped, spaces around trimmed, "." and ".." made
-- "", bytes that are not UTF-8 replaced by U+FFFD, at most 255 bytes.  It is
-- still never a path: a file's content is spooled under a name the server
-- makes.
function M.display_name(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'display_name' (string expected, got " .. type(s) .. ")", 2)
  end
  s = string_gsub(s, "[%z\1-\31\127]", "")
  s = fix_utf8(s)
  s = string_gsub(s, "\194[\128-\159]", "")                   -- C1 controls
  s = string_gsub(s, "\226\128[\170-\174]", "")               -- U+202A..U+202E
  s = string_gsub(s, "\226\129[\166-\169]", "")               -- U+2066..U+2069
  s = string_match(s, "([^/\\]*)$")
  s = string_match(s, "^%s*(.-)%s*$")
  if s == "." or s == ".." then return "" end
  if #s > 255 then
    s = string_sub(s, 1, 255)
    while not utf8_len(s) do s = string_sub(s, 1, -2) end
  end
  return s
end

------------------------------------------------------------------------------
-- The parser

local PREAMBLE, HEADERS, BODY, DONE, FAILED = 1, 2, 3, 4, 5

local Parser = {}
Parser.__index = Parser
Parser.__name = "owin.multipart.Parser"

local function fail(self, msg)
  self.state, self.err = FAILED, "EINVAL: malformed multipart body: " .. msg
  self.buf, self.pos, self.from = "", 1, 1
  return nil, self.err, "EINVAL"
end

local function ended_early(self, in_boundary)
  if self.state == PREAMBLE and not in_boundary then
    return fail(self, string_format("no boundary line (--%s) in the body", self.boundary))
  end
  return fail(self, string_format("the body ends before the closing boundary (--%s--)",
    self.boundary))
end

local BARE_LF = "a boundary line ends in LF without CR"
local NOT_CRLF = "text after the boundary on a boundary line"

-- What follows "\r\n--boundary" at index j of buf: "close" (the final
-- "--"), "open", k (transport padding and CRLF: the next part's headers
-- start at k), "no" (another character: not a boundary, RFC 2046's
-- grammar), "bad", why (padding not ended by CRLF), or "more" (not known
-- yet).
local function after_boundary(self, buf, j)
  local c = string_byte(buf, j)
  if c == nil then return "more" end
  if c == 45 then                               -- "-"
    local c2 = string_byte(buf, j + 1)
    if c2 == nil then return "more" end
    if c2 == 45 then return "close" end
    return "no"
  end
  if c == 10 then return "bad", BARE_LF end
  if c ~= 32 and c ~= 9 and c ~= 13 then return "no" end
  local k = string_find(buf, "[^ \t]", j)
  if k == nil then
    if #buf - j >= self.max_header_size then return "bad", NOT_CRLF end
    return "more"
  end
  c = string_byte(buf, k)
  if c == 10 then return "bad", BARE_LF end
  if c ~= 13 then return "bad", NOT_CRLF end
  local lf = string_byte(buf, k + 1)
  if lf == nil then return "more" end
  if lf ~= 10 then return "bad", NOT_CRLF end
  return "open", k + 2
end

-- The first index of buf (from `from` on) that may start delim: the last
-- CR of the final #delim - 1 bytes when what follows it is the start of
-- delim (delim holds one CR, its first byte), else #buf + 1.
local function held_from(buf, from, delim)
  local n = #buf
  local w = n - #delim + 2
  if w < from then w = from end
  local r = string_find(buf, "\r[^\r]*$", w)
  if r ~= nil and string_sub(buf, r) == string_sub(delim, 1, n - r + 1) then return r end
  return n + 1
end

-- Parses a part's header block (without its final CRLF CRLF) into
-- lowercase name -> value (the first of repeated names), checking the
-- Content-Disposition RFC 7578 requires.  Returns the part, or nil, err.
local function parse_part(block)
  local h = {}
  if block ~= "" then
    block = string_gsub(block, "\r\n[ \t]+", " ")         -- obs-fold
    for line in string_gmatch(block .. "\r\n", "(.-)\r\n") do
      if string_find(line, "[\r\n]") then return nil, "a part header holds a bare CR or LF" end
      local name, value = string_match(line, "^(" .. TOKEN .. "):[ \t]*(.-)[ \t]*$")
      if name == nil then
        return nil, "a part header is not 'Name: value': " .. quote(line)
      end
      name = string_lower(name)
      if h[name] == nil then
        h[name] = value
      elseif name == "content-disposition" then
        return nil, "a part has two Content-Disposition headers"
      end
    end
  end
  local cd = h["content-disposition"]
  if cd == nil then return nil, "a part has no Content-Disposition header" end
  local dtype, i = string_match(cd, "^(" .. TOKEN .. ")[ \t]*()")
  if dtype == nil or string_lower(dtype) ~= "form-data" then
    return nil, "a part's Content-Disposition is " .. quote(dtype or cd) .. ", not form-data"
  end
  local params, err = parse_params(cd, i)
  if params == nil then return nil, "a part's Content-Disposition: " .. err end
  if params.name == nil then return nil, "a part's Content-Disposition has no name parameter" end
  local filename = params.filename
  if params["filename*"] then filename = ext_value(params["filename*"]) or filename end
  return { name = params.name, filename = filename,
           content_type = h["content-type"] or "text/plain", headers = h }
end

-- PREAMBLE: skips to the first boundary line.  The buffer starts with a
-- CRLF of the parser's own, so that a body that opens with the boundary
-- needs no special case.
local function preamble(self)
  local buf, delim = self.buf, self.delim
  while true do
    local i = string_find(buf, delim, self.from, true)
    if i == nil then
      if self.eof then return ended_early(self) end
      local keep = held_from(buf, self.from, delim)
      self.pos, self.from = keep, keep
      return false
    end
    local kind, k = after_boundary(self, buf, i + #delim)
    if kind == "more" then
      if self.eof then return ended_early(self, true) end
      self.pos, self.from = i, i
      return false
    elseif kind == "bad" then
      return fail(self, k)
    elseif kind == "close" then
      self.state = DONE                         -- a form without parts
      return "done"
    elseif kind == "open" then
      self.pos, self.from, self.state = k, k, HEADERS
      return self:next()
    end
    self.from = i + 1                           -- "no": preamble text
  end
end

-- HEADERS: one part's header block, up to the empty line.
local function headers(self)
  local buf, pos = self.buf, self.pos
  local block, after
  if string_sub(buf, pos, pos + 1) == "\r\n" then
    block, after = "", pos + 2
  else
    local e = string_find(buf, "\r\n\r\n", self.from, true)
    if e == nil or e - pos > self.max_header_size then
      if #buf - pos >= self.max_header_size then
        return fail(self, string_format("a part's headers are larger than %d bytes",
          self.max_header_size))
      end
      if self.eof then return ended_early(self) end
      local from = #buf - 2                     -- what was searched is not searched again
      if from > self.from then self.from = from end
      return false
    end
    block, after = string_sub(buf, pos, e - 1), e + 4
  end
  local part, err = parse_part(block)
  if part == nil then return fail(self, err) end
  self.pos, self.from, self.state = after, after, BODY
  return "part", part
end

-- BODY: a part's content, up to the next boundary line.  What cannot be the
-- start of "\r\n--boundary" comes out at once.
local function body(self)
  local buf, pos, delim = self.buf, self.pos, self.delim
  while true do
    local i = string_find(buf, delim, self.from, true)
    if i == nil then
      if self.eof then return ended_early(self) end
      local held = held_from(buf, self.from, delim)
      self.from = held
      if held == pos then return false end
      self.pos = held
      return "data", string_sub(buf, pos, held - 1)
    end
    if i > pos then
      self.pos, self.from = i, i
      return "data", string_sub(buf, pos, i - 1)
    end
    local kind, k = after_boundary(self, buf, i + #delim)
    if kind == "more" then
      if self.eof then return ended_early(self) end
      return false
    elseif kind == "bad" then
      return fail(self, k)
    elseif kind == "close" then
      self.state = DONE                         -- the rest is the epilogue
      self.buf, self.pos, self.from = "", 1, 1
      return "end"
    elseif kind == "open" then
      self.pos, self.from, self.state = k, k, HEADERS
      return "end"
    end
    self.from = i + 1                           -- "no": content
  end
end

-- parser:next() -> the next event:
--   "part", part   a part begins: { name, filename (as sent, or nil when the
--                  part is not a file: display it through display_name, and
--                  never use it in a path), content_type ("text/plain" when
--                  not given), headers (lowercase name -> value) }
--   "data", bytes  the next bytes of the part's content (never "")
--   "end"          the part is complete
--   "done"         the closing boundary was read; what follows is ignored
--   false          more input is needed: feed it
--   nil, err, code the body is malformed ("EINVAL: ..."); again on each call
function Parser:next()
  local st = self.state
  if st == BODY then return body(self) end
  if st == HEADERS then return headers(self) end
  if st == PREAMBLE then return preamble(self) end
  if st == DONE then return "done" end
  return nil, self.err, "EINVAL"
end

-- parser:feed(bytes) adds input; parser:feed(nil) says the body ended.
-- Returns the parser.
function Parser:feed(s)
  if s == nil then
    self.eof = true
    return self
  end
  if type(s) ~= "string" then
    error("bad argument #1 to 'feed' (string or nil expected, got " .. type(s) .. ")", 2)
  end
  if self.eof then error("parser:feed() after the end of the body (feed(nil))", 2) end
  local st = self.state
  if s == "" or st == DONE or st == FAILED then return self end
  local buf, pos = self.buf, self.pos
  if pos > #buf then
    self.buf = s
  else
    self.buf = string_sub(buf, pos) .. s
  end
  self.from = self.from - pos + 1
  self.pos = 1
  return self
end

local PARSER_OPTS = { max_header_size = true }

-- opts[k], checked: nil, a whole number of bytes (8 * 2^20 will do) or
-- math.huge.  Raises at stack level `level` of its caller.
local function check_size(opts, k, fname, level)
  local v = opts[k]
  if v == nil or v == math_huge then return v end
  local n = type(v) == "number" and math_tointeger(v)
  if not n or n < 0 then
    error(string_format("bad option %s to '%s' (a number of bytes expected, got %s)", k, fname,
      type(v) == "number" and tostring(v) or type(v)), level + 1)
  end
  return n
end

-- multipart.parser(boundary [, opts]) -> a parser.  opts.max_header_size:
-- the largest header block of one part, in bytes (16 KiB).  Raises when the
-- boundary is not one RFC 2046 allows (multipart.boundary checks it).
function M.parser(boundary, opts)
  if not valid_boundary(boundary) then
    error("bad argument #1 to 'parser' (a boundary of 1 to 70 RFC 2046 characters expected, " ..
      "got " .. (type(boundary) == "string" and quote(boundary) or type(boundary)) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'parser' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not PARSER_OPTS[k] then error("bad argument #2 to 'parser' (unknown option " ..
      tostring(k) .. ")", 2) end
  end
  return setmetatable({
    boundary = boundary,
    delim = "\r\n--" .. boundary,
    buf = "\r\n",             -- see preamble()
    pos = 1,                  -- the first byte not consumed
    from = 1,                 -- where the next search for delim starts
    state = PREAMBLE,
    eof = false,
    max_header_size = check_size(opts, "max_header_size", "parser", 2) or 16384,
  }, Parser)
end

------------------------------------------------------------------------------
-- Forms

-- The limits and places form() uses when its options do not say: change
-- them here for the whole app.
M.defaults = {
  max_parts = 1000,             -- parts, fields and files together
  max_field_size = 1048576,     -- one field's value, in bytes (kept in memory)
  max_file_size = 33554432,     -- one file, in bytes
  max_size = 33554432,          -- the content of all parts together, in bytes
  max_header_size = 16384,      -- one part's headers, in bytes
  tmpdir = nil,                 -- where files are spooled: $TMPDIR, else /tmp
}

local FORM_OPTS = {
  max_parts = "size", max_field_size = "size", max_file_size = "size", max_size = "size",
  max_header_size = "size", tmpdir = "string", on_file = "function",
}

-- The options of form(), checked, over the defaults.  Raises on a wrong
-- one, at stack level `level` of its caller.
local function form_options(opts, fname, level)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  if opts == nil then return o end
  if type(opts) ~= "table" then
    error(string_format("bad argument to '%s' (options table expected, got %s)", fname,
      type(opts)), level + 1)
  end
  for k, v in pairs(opts) do
    local kind = FORM_OPTS[k]
    if kind == nil then
      error(string_format("bad option to '%s' (unknown option %s)", fname, tostring(k)),
        level + 1)
    end
    if kind == "size" then
      v = check_size(opts, k, fname, level + 1)
    elseif type(v) ~= kind then
      error(string_format("bad option %s to '%s' (%s expected, got %s)", k, fname, kind,
        type(v)), level + 1)
    end
    o[k] = v
  end
  return o
end

-- multipart.options(opts [, fname [, level]]) -> the options of form()
-- over the defaults.  Raises on a wrong one, naming fname, at stack level
-- `level` (1: the caller of options, as error() counts).
function M.options(opts, fname, level)
  local o = form_options(opts, fname or "form", (level or 1) + 1)
  return o                      -- not a tail call: the levels count this one
end

local owin_fs
local function mkstemp_of_server()
  if owin_fs == nil then
    local ok, owin = pcall(require, "owin")
    owin_fs = ok and type(owin) == "table" and owin.fs or false
  end
  return owin_fs and owin_fs.mkstemp
end

local NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

-- A new file in dir for a part's content: file, path, or nil, err, code.
-- The server makes it with mkstemp (mode 0600, a name nobody has).  Plain
-- Lua (owin.test) can do that only in /tmp (os.tmpname); elsewhere it opens
-- a fresh random name, with the mode the umask gives.
local function spool_open(dir)
  local mkstemp = mkstemp_of_server()
  if mkstemp then return mkstemp(dir .. "/owinlua-upload-XXXXXX") end
  local path
  if dir == "/tmp" then
    path = os_tmpname()
  else
    for _ = 1, 100 do
      local t = {}
      for i = 1, 12 do
        local n = math_random(#NAME_CHARS)
        t[i] = string_sub(NAME_CHARS, n, n)
      end
      path = dir .. "/owinlua-upload-" .. table_concat(t)
      local f = io_open(path, "rb")
      if f == nil then break end
      f:close()
    end
  end
  local f, err = io_open(path, "w+b")
  if f == nil then return nil, "EIO: " .. tostring(err), "EIO" end
  return f, path
end

-- The status to answer a failed read of the body with.
local READ_STATUS = { E2BIG = 413, ETIMEDOUT = 408 }

-- Removes what form() spooled when it fails or raises (a to-be-closed value).
local cleanup_mt = {
  __close = function(g)
    if g.ok then return end
    if g.file then pcall(g.file.close, g.file) end
    for i = 1, #g do os_remove(g[i]) end
  end,
}

-- Adds value under name as request:form() does for urlencoded forms: the
-- first value as it is, an array of the values once a name repeats.
local function add(form, lists, name, value)
  local list = lists[name]
  if list then
    list[#list + 1] = value
  elseif form[name] ~= nil then
    list = { form[name], value }
    lists[name], form[name] = list, list
  else
    form[name] = value
  end
end

local function too_big(msg)
  return nil, "E2BIG: " .. msg, "E2BIG", 413
end

-- multipart.form(body, content_type [, opts]) -> form, or nil, err, code,
-- status.  body is an input stream (read(n)) or the whole body as a string;
-- content_type the request's Content-Type.  form maps each name to a field's
-- value (a string) or a file ({ name, filename, content_type, headers, size,
-- path }), and a name sent more than once to an array of them, in order.
-- opts (over multipart.defaults): max_parts, max_field_size, max_file_size,
-- max_size, max_header_size, tmpdir, and on_file = function(file, chunk),
-- which takes each file's content instead of a spooled file: called with
-- each chunk, then once with nil when the file is complete (file.size counts
-- the bytes so far; fields you set in file stay in the form).
--
-- Files are spooled to new files in tmpdir; the caller removes them
-- (request:form() does when the request ends).  On failure, and when
-- on_file raises, form() removes those it made.  Failures: "EINVAL" and 400
-- for a malformed body, "E2BIG" and 413 for a limit, the read's own error
-- (E2BIG 413, ETIMEDOUT 408, others 400), and 500 when a file cannot be
-- made or written.
function M.form(source, content_type, opts)
  local o = form_options(opts, "form", 2)
  local st = type(source)
  if st ~= "string" and not ((st == "table" or st == "userdata") and source.read) then
    error("bad argument #1 to 'form' (an input stream or a string expected, got " .. st .. ")", 2)
  end
  local boundary, err = M.boundary(content_type)
  if boundary == nil then return nil, err, "EINVAL", 400 end
  local p = M.parser(boundary, { max_header_size = o.max_header_size })
  if st == "string" then p:feed(source):feed(nil) end
  local on_file, tmpdir = o.on_file, o.tmpdir or os_getenv("TMPDIR") or "/tmp"
  local form, lists = {}, {}
  local spooled <close> = setmetatable({}, cleanup_mt)
  local nparts, total = 0, 0
  local part, file, chunks, size
  while true do
    local ev, x, code = p:next()
    if ev == "data" then
      local n = #x
      total, size = total + n, size + n
      if total > o.max_size then
        return too_big(string_format("the form is larger than %d bytes (max_size)", o.max_size))
      end
      if part.filename == nil then
        if size > o.max_field_size then
          return too_big(string_format("field %s is larger than %d bytes (max_field_size)",
            quote(part.name), o.max_field_size))
        end
        chunks[#chunks + 1] = x
      else
        if size > o.max_file_size then
          return too_big(string_format("file %s of field %s is larger than %d bytes " ..
            "(max_file_size)", quote(file.filename), quote(part.name), o.max_file_size))
        end
        file.size = size
        if on_file then
          on_file(file, x)
        else
          local ok, werr = spooled.file:write(x)
          if not ok then return nil, "EIO: cannot write an uploaded file: " .. tostring(werr),
            "EIO", 500 end
        end
      end
    elseif ev == "part" then
      nparts = nparts + 1
      if nparts > o.max_parts then
        return too_big(string_format("the form has more than %d parts (max_parts)", o.max_parts))
      end
      part, size = x, 0
      if x.filename == nil then
        chunks = {}
      else
        file = { name = x.name, filename = M.display_name(x.filename),
                 content_type = x.content_type, headers = x.headers, size = 0 }
        if not on_file then
          local f, path, fcode = spool_open(tmpdir)
          if f == nil then
            return nil, string_format("%s (spooling an uploaded file to %s)", path, tmpdir),
              fcode, 500
          end
          spooled[#spooled + 1], spooled.file, file.path = path, f, path
        end
      end
    elseif ev == "end" then
      if part.filename == nil then
        add(form, lists, part.name, table_concat(chunks))
        chunks = nil
      else
        if on_file then
          on_file(file, nil)
        else
          local f = spooled.file
          spooled.file = nil
          local ok, cerr = f:close()
          if not ok then return nil, "EIO: cannot write an uploaded file: " .. tostring(cerr),
            "EIO", 500 end
        end
        add(form, lists, part.name, file)
        file = nil
      end
      part = nil
    elseif ev == false then
      local s, rerr, rcode = source:read(CHUNK)
      if s == nil and rerr ~= nil then
        return nil, rerr, rcode, READ_STATUS[rcode] or 400
      end
      p:feed(s)
    elseif ev == "done" then
      if st ~= "string" then                    -- the epilogue: read to the end, so
        repeat                                  -- that the connection may be kept
          local s, rerr, rcode = source:read(CHUNK)
          if s == nil and rerr ~= nil then
            return nil, rerr, rcode, READ_STATUS[rcode] or 400
          end
        until s == nil
      end
      spooled.ok = true
      return form
    else
      return nil, x, code, 400
    end
  end
end

M.Parser = Parser
return M
