-- owin.json: JSON that round-trips (docs/json.md).
--
--   local json = require("owin.json")
--   json.encode({ items = json.array({}), next = json.null })  --> {"items":[],"next":null}
--   local v, err, code = json.decode(text [, max_bytes])       -- nil, "EINVAL: ...", "EINVAL"
--   json.is_array(v.items)                                     --> true: [] stays []
--
-- lua-cjson does the parsing and the writing, in C; this module is the layer
-- that makes Debian's lua-cjson 2.1.0 round-trip, which it does not alone:
--
-- * It writes every empty table as {} and ignores any mark: a table marked
--   with array() (or decoded from JSON) goes out as [] here.
-- * It writes numbers with 14 significant digits (2^53 comes out as
--   9.007199254741e+15): integers are written exactly, floats with as many
--   digits as it takes to read back the same double.
-- * It decodes every number to a float (1 becomes 1.0) and long integers
--   lose digits: whole numbers come back as Lua integers, and integers of 16
--   to 19 digits are read exactly.
-- * It decodes [] and {} to the same empty table: decoded arrays carry the
--   mark, empty ones too.
-- * Its plain-table rules are lossy ({1, 2, x = 3} becomes an object with
--   keys "1" and "2"): mixed keys, holes and odd keys are errors here, with
--   the path of the value at fault.
--
-- Encoding first walks the value (checks, and what lua-cjson cannot write
-- exactly); then lua-cjson writes it, with a placeholder in each empty
-- array for the moment, made [] after; or, when a number needs more than 14
-- digits, a Lua writer that escapes strings with lua-cjson and writes
-- numbers exactly.  The two give the same bytes for what both can write.
-- Decoding is lua-cjson's strict parse, then a walk that marks arrays and
-- makes whole numbers integers; a text with both empty arrays and empty
-- objects, or with an integer lua-cjson rounded, is parsed once more, with
-- those tokens rewritten into ones lua-cjson keeps apart (see rewrite).
-- bench/json.lua measures it against lua-cjson alone and dkjson (pure
-- Lua): docs/json.md has the numbers.
--
-- Misuse raises (a value that cannot be JSON, a bad argument); a text that
-- is not JSON, or too large, gives nil, "ENAME: message", "ENAME".

local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then
  error("owin.json needs lua-cjson, which is not installed (Debian: apt install lua-cjson; " ..
    "LuaRocks: luarocks install lua-cjson)", 2)
end

local type, next, pcall, error, tonumber, tostring, getmetatable, setmetatable, rawget =
  type, next, pcall, error, tonumber, tostring, getmetatable, setmetatable, rawget
local math_type, math_tointeger, huge = math.type, math.tointeger, math.huge
local string_format, string_find, string_byte, string_sub, string_match, string_gsub =
  string.format, string.find, string.byte, string.sub, string.match, string.gsub
local table_concat, utf8_len = table.concat, utf8.len

local MAX_DEPTH = 1000            -- nesting, for encode and decode (lua-cjson's default)
local MAX_EXACT = 1e14            -- integers below this are exact in lua-cjson's %.14g
local MAX_SAFE = 2 ^ 53           -- whole floats up to this are exact integers

-- Two parsers: strict (the one that judges the text), and lenient, which
-- reads NaN: only the rewritten texts, whose every NaN is ours, go to it.
local strict = cjson.new()
strict.decode_invalid_numbers(false)
strict.decode_max_depth(MAX_DEPTH)
strict.encode_max_depth(MAX_DEPTH)
strict.encode_number_precision(14)
local lenient = cjson.new()
lenient.decode_invalid_numbers(true)
lenient.decode_max_depth(MAX_DEPTH + 1)   -- a long integer's [NaN,"..."] is one level more

local cjson_encode, strict_decode, lenient_decode = strict.encode, strict.decode, lenient.decode

-- JSON null: lua-cjson's own (a light userdata), so values from code that
-- uses lua-cjson directly mean the same here.
local null = cjson.null

-- The mark of arrays: dkjson's convention, so dkjson writes them as arrays too.
local ARRAY = { __jsontype = "array", __name = "owin.json.array" }

local function marked(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__jsontype") == "array"
end

------------------------------------------------------------------------------
-- Paths in error messages: keys[d] is the key being walked at depth d.

local keys = {}

local function path(depth)
  local parts = { "value" }
  local d = 1
  while d <= depth do
    if depth > 12 and d == 6 then               -- a cycle's path: its two ends
      parts[#parts + 1] = string_format("(...%d more...)", depth - 10)
      d = depth - 4
    end
    local k = keys[d]
    if type(k) == "string" and string_find(k, "^[%a_][%w_]*$") then
      parts[#parts + 1] = "." .. k
    elseif type(k) == "string" then                -- %q, and bytes past ASCII as \ddd
      parts[#parts + 1] = "[" .. string_gsub(string_format("%q", k), "[\128-\255]", function(c)
        return "\\" .. string_byte(c)
      end) .. "]"
    else
      parts[#parts + 1] = "[" .. tostring(k) .. "]"
    end
    d = d + 1
  end
  return table_concat(parts)
end

-- What walk() found that lua-cjson cannot write alone: the empty tables
-- marked as arrays (empties[1..n_empty]), and whether any number needs
-- more than lua-cjson's 14 digits (or a string is the placeholder below).
local empties, n_empty, inexact = {}, 0, false

local function fail(depth, fmt, ...)
  for i = 1, n_empty do empties[i] = nil end
  n_empty = 0
  error("json.encode: " .. string_format(fmt, ...) .. " at " .. path(depth), 0)
end

local function describe_key(k)
  if type(k) == "number" then return string_format("the number key %s", tostring(k)) end
  return "a " .. type(k) .. " key"
end

------------------------------------------------------------------------------
-- Encoding

-- An empty array is written by lua-cjson as ["<PLACEHOLDER>"] for a moment
-- (see encode), then replaced by [].  A value holding that string itself
-- goes to the Lua writer.
local PLACEHOLDER = "\0owin.json: an empty array\0"
local PLACEHOLDER_JSON = cjson_encode({ PLACEHOLDER })

-- Checks the table t at `depth` (1 for the value itself) and everything in
-- it; raises what cannot be JSON.  Notes what lua-cjson cannot write
-- exactly (empties, inexact: an integer from 1e14, a float that needs more
-- than 14 digits).
local function walk(t, depth)
  if depth > MAX_DEPTH then
    fail(depth - 1, "tables nested deeper than %d levels (does a table contain itself?)", MAX_DEPTH)
  end
  local n, maxi, strings = 0, 0, false
  for k, x in next, t do
    if type(k) == "string" then
      strings = true
      if not utf8_len(k) then
        keys[depth] = k
        fail(depth, "a key is not valid UTF-8")
      end
    elseif math_type(k) == "integer" and k > 0 then
      if k > maxi then maxi = k end
    else
      fail(depth - 1, "%s cannot be JSON (keys are strings, or array indexes from 1)",
        describe_key(k))
    end
    n = n + 1
    local tx = type(x)
    if tx == "string" then
      if not utf8_len(x) then
        keys[depth] = k
        fail(depth, "a string is not valid UTF-8")
      end
      if x == PLACEHOLDER then inexact = true end
    elseif tx == "table" then
      keys[depth] = k
      walk(x, depth + 1)
    elseif tx == "number" then
      if math_type(x) == "integer" then
        if x >= MAX_EXACT or x <= -MAX_EXACT then inexact = true end
      elseif x ~= x or x == huge or x == -huge then
        keys[depth] = k
        fail(depth, "%s cannot be JSON", x ~= x and "NaN" or (x > 0 and "inf" or "-inf"))
      elseif (x % 1 ~= 0 or x >= MAX_EXACT or x <= -MAX_EXACT) and
             tonumber(string_format("%.14g", x)) ~= x then
        inexact = true
      end
    elseif tx ~= "boolean" and x ~= null then
      keys[depth] = k
      fail(depth, "a %s cannot be JSON", tx)
    end
  end
  if n == 0 then
    if marked(t) then
      n_empty = n_empty + 1
      empties[n_empty] = t
    end
  elseif strings then
    if maxi > 0 then
      fail(depth - 1, "a table with both string keys and array indexes cannot be JSON " ..
        "(mixed keys; make it an object or an array)")
    end
    if marked(t) then
      fail(depth - 1, "a table marked as an array has string keys")
    end
  elseif maxi ~= n then
    local i = 1
    while t[i] ~= nil do i = i + 1 end
    fail(depth - 1, "an array has a hole at index %d (use json.null for a null element)", i)
  end
end

-- A number as JSON: integers exactly, floats with the fewest digits (14 to
-- 17) that read back as the same double (lua-cjson's %.14g when that is
-- exact, so both writers agree).
local function number(x)
  if math_type(x) == "integer" then return string_format("%d", x) end
  local s = string_format("%.14g", x)
  if tonumber(s) == x then return s end
  s = string_format("%.15g", x)
  if tonumber(s) == x then return s end
  s = string_format("%.16g", x)
  if tonumber(s) == x then return s end
  return string_format("%.17g", x)
end

-- The Lua writer, for values walk() passed but lua-cjson cannot write
-- exactly.  Strings go through lua-cjson, so both writers escape alike.
local function write(v, buf, n)
  local tv = type(v)
  if tv == "string" then
    n = n + 1
    buf[n] = cjson_encode(v)
  elseif tv == "number" then
    n = n + 1
    buf[n] = number(v)
  elseif tv == "boolean" then
    n = n + 1
    buf[n] = v and "true" or "false"
  elseif tv ~= "table" then
    n = n + 1
    buf[n] = "null"
  elseif v[1] ~= nil then
    n = n + 1
    buf[n] = "["
    for i = 1, #v do
      if i > 1 then
        n = n + 1
        buf[n] = ","
      end
      n = write(v[i], buf, n)
    end
    n = n + 1
    buf[n] = "]"
  elseif next(v) == nil then
    n = n + 1
    buf[n] = marked(v) and "[]" or "{}"
  else
    local sep = "{"
    for k, x in next, v do
      n = n + 1
      buf[n] = sep .. cjson_encode(k) .. ":"
      sep = ","
      n = write(x, buf, n)
    end
    n = n + 1
    buf[n] = "}"
  end
  return n
end

-- lua-cjson's text with each ["<PLACEHOLDER>"] made [].
local function unplace(out)
  local parts, n, i = {}, 0, 1
  while true do
    local a, b = string_find(out, PLACEHOLDER_JSON, i, true)
    if a == nil then break end
    parts[n + 1], parts[n + 2] = string_sub(out, i, a - 1), "[]"
    n = n + 2
    i = b + 1
  end
  parts[n + 1] = string_sub(out, i)
  return table_concat(parts)
end

-- lua-cjson writes "/" as "\/"; JSON does not need it, people do not expect
-- it.  Every "/" in its text has its backslash, so each "\/" found, left to
-- right, is one (plain searches: no pattern scan over the text).
local function unslash(out)
  local a = string_find(out, "\\/", 1, true)
  if a == nil then return out end
  local parts, n, i = {}, 0, 1
  repeat
    parts[n + 1] = string_sub(out, i, a - 1)
    n = n + 1
    i = a + 1
    a = string_find(out, "\\/", i, true)
  until a == nil
  parts[n + 1] = string_sub(out, i)
  return table_concat(parts)
end

-- encode(value) -> the JSON text.  Raises when value cannot be JSON.
local function encode(v)
  local tv = type(v)
  if tv == "table" then
    n_empty, inexact = 0, false
    walk(v, 1)
    if inexact then
      for i = 1, n_empty do empties[i] = nil end
      local buf = {}
      return unslash(table_concat(buf, "", 1, write(v, buf, 0)))
    end
    if n_empty == 0 then return unslash(cjson_encode(v)) end
    -- The empty arrays hold the placeholder while lua-cjson writes (nothing
    -- else runs meanwhile: lua-cjson calls no Lua code), then are emptied.
    local n = n_empty
    for i = 1, n do rawset(empties[i], 1, PLACEHOLDER) end
    local ok, out = pcall(cjson_encode, v)
    for i = 1, n do
      rawset(empties[i], 1, nil)
      empties[i] = nil
    end
    if not ok then error(out, 0) end
    return unslash(unplace(out))
  elseif tv == "string" then
    if not utf8_len(v) then fail(0, "a string is not valid UTF-8") end
    return unslash(cjson_encode(v))
  elseif tv == "number" then
    if v ~= v or v == huge or v == -huge then
      fail(0, "%s cannot be JSON", v ~= v and "NaN" or (v > 0 and "inf" or "-inf"))
    end
    return number(v)
  elseif tv == "boolean" then
    return v and "true" or "false"
  elseif v == nil or v == null then
    return "null"
  end
  fail(0, "a %s cannot be JSON", tv)
end

------------------------------------------------------------------------------
-- Decoding

-- lua-cjson's token names, for people.
local TOKENS = {
  T_OBJ_BEGIN = "'{'", T_OBJ_END = "'}'", T_ARR_BEGIN = "'['", T_ARR_END = "']'",
  T_STRING = "a string", T_NUMBER = "a number", T_BOOLEAN = "a boolean", T_NULL = "null",
  T_COLON = "':'", T_COMMA = "','", T_END = "the end of the text", T_WHITESPACE = "whitespace",
  T_ERROR = "an error", T_UNKNOWN = "an unknown token",
}

local function invalid(msg)
  return nil, "EINVAL: invalid JSON: " .. msg, "EINVAL"
end

-- lua-cjson's message about the text, reworded; `shift` bytes were cut
-- from the front (a byte order mark).
local function reworded(msg, shift)
  msg = string_gsub(tostring(msg), "^[^\n]-:%d+: ", "")
  local depth_at = string_match(msg, "^Found too many nested data structures %(%d+%) at character (%d+)")
  if depth_at then
    return string_format("nested deeper than %d levels at byte %d", MAX_DEPTH, depth_at + shift)
  end
  msg = string_gsub(msg, "T_[%u_]+", TOKENS)
  msg = string_gsub(msg, "at character (%d+)", function(p)
    return "at byte " .. (tonumber(p) + shift)
  end)
  return (string_gsub(msg, "^%u", string.lower))
end

local function out_of_range()
  error({ "a number is too large for a double (out of range)" })
end

-- Set by whole() when a float could have been written as an integer that
-- lua-cjson rounded (a whole number past 2^53 and within 64 bits).
local rounded = false

-- A float from lua-cjson: whole values up to 2^53 as integers.
local function whole(x)
  if x % 1 == 0 then
    if x < MAX_SAFE and x > -MAX_SAFE then return math_tointeger(x) end
    if x < 0x1p63 and x >= -0x1p63 then rounded = true end
  elseif x == huge or x == -huge then
    out_of_range()
  end
  return x
end

-- Puts in place what lua-cjson leaves out (see the header): marks arrays,
-- makes whole floats integers, undoes rewrite()'s tokens.  Returns the
-- value that replaces t: t, or the number a long integer's token stands for.
local empty_arrays = false   -- set by parse(): the text has empty arrays and no empty objects

local function fix(t)
  local x1 = t[1]
  if x1 == nil then                           -- an object (lua-cjson gives string keys)
    if empty_arrays and next(t) == nil then return setmetatable(t, ARRAY) end
    for k, x in next, t do
      local tx = type(x)
      if tx == "table" then
        local y = fix(x)
        if y ~= x then t[k] = y end
      elseif tx == "number" and math_type(x) == "float" then
        t[k] = whole(x)
      end
    end
    return t
  end
  if x1 ~= x1 then                            -- NaN: only rewrite() puts one there
    local digits = t[2]
    if digits == nil then
      t[1] = nil
      return setmetatable(t, ARRAY)           -- [] (was [NaN])
    end
    return tonumber(digits)                   -- an integer when it fits in 64 bits
  end
  setmetatable(t, ARRAY)
  for i = 1, #t do
    local x = t[i]
    local tx = type(x)
    if tx == "table" then
      local y = fix(x)
      if y ~= x then t[i] = y end
    elseif tx == "number" and math_type(x) == "float" then
      t[i] = whole(x)
    end
  end
  return t
end

-- The end of the string whose opening quote is at q (the text is valid).
local function string_end(s, q)
  local j = q + 1
  while true do
    local e = string_find(s, '"', j, true)
    local k = e - 1
    while string_byte(s, k) == 92 do k = k - 1 end     -- backslashes before it
    if (e - 1 - k) % 2 == 0 then return e end
    j = e + 1
  end
end

-- rewrite() for empty arrays only, with plain searches (the common case:
-- a pattern costs ten times more a byte).
local function rewrite_empties(s)
  local out, n, last = {}, 0, 1
  local q, b = string_find(s, '"', 1, true), string_find(s, "[", 1, true)
  while b do
    if q and q < b then                       -- a string first: past it
      local i = string_end(s, q) + 1
      q = string_find(s, '"', i, true)
      if b < i then b = string_find(s, "[", i, true) end
    else
      local _, e = string_find(s, "^[ \t\r\n]*%]", b + 1)
      if e then
        out[n + 1], out[n + 2] = string_sub(s, last, b), "NaN]"
        n = n + 2
        last = e + 1
      end
      b = string_find(s, "[", b + 1, true)
    end
  end
  if n == 0 then return nil end
  out[n + 1] = string_sub(s, last)
  return table_concat(out)
end

-- The text with what lua-cjson would lose rewritten, outside strings, into
-- tokens that only the lenient parser reads: [] into [NaN], an integer of
-- 16 to 19 digits into [NaN,"digits"].  The strict parse already refused
-- every NaN of the text itself, so fix() can tell them.  nil when there is
-- nothing to rewrite.  (The text is valid JSON: the strict parse passed.)
local function rewrite(s, longs)
  if not longs then return rewrite_empties(s) end
  local out, n, last, i = {}, 0, 1, 1
  while true do
    local a = string_find(s, '["%[%-%d]', i)
    if a == nil then break end
    local c = string_byte(s, a)
    if c == 34 then                           -- a string: on to its closing quote
      i = string_end(s, a) + 1
    elseif c == 91 then                       -- "[": empty?
      local _, e = string_find(s, "^[ \t\r\n]*%]", a + 1)
      if e then
        out[n + 1], out[n + 2] = string_sub(s, last, a), "NaN]"
        n = n + 2
        last = e + 1
        i = e + 1
      else
        i = a + 1
      end
    else                                      -- a number
      local _, e = string_find(s, "^%-?[%d%.eE%+%-]*", a)
      local token = string_sub(s, a, e)
      local digits = string_match(token, "^%-?(%d+)$")
      if digits and #digits >= 16 and #digits <= 19 then
        out[n + 1], out[n + 2], out[n + 3] = string_sub(s, last, a - 1), '[NaN,"', token
        out[n + 4] = '"]'
        n = n + 4
        last = e + 1
      end
      i = e + 1
    end
  end
  if n == 0 then return nil end
  out[n + 1] = string_sub(s, last)
  return table_concat(out)
end

-- Whether the text may hold an empty array (open = "[") or object ("{"):
-- the bracket, then the closing one or whitespace.  Plain searches, as a
-- pattern costs ten times more; a false yes (in a string) only costs time.
local CLOSE = { ["["] = "]", ["{"] = "}" }

local function has_empty(s, open)
  return string_find(s, open .. CLOSE[open], 1, true) or string_find(s, open .. " ", 1, true) or
    string_find(s, open .. "\n", 1, true) or string_find(s, open .. "\r", 1, true) or
    string_find(s, open .. "\t", 1, true)
end

-- lua-cjson's value, then fix().  Empty tables are objects, or arrays when
-- the text has empty arrays and no empty object; when it may have both, it
-- is parsed again with rewrite(), and so it is when fix() met a float that
-- may have been a long integer (then with those rewritten too).
local function parse(s)
  local v = strict_decode(s)
  local tv = type(v)
  if tv ~= "table" and tv ~= "number" then return v end      -- a string, a boolean, null
  local arrays = tv == "table" and has_empty(s, "[")
  local both = arrays and has_empty(s, "{")
  local longs = false
  while true do
    local s2 = (both or longs) and rewrite(s, longs)
    if s2 then
      v = lenient_decode(s2)
    elseif v == nil then
      v = strict_decode(s)
    end
    rounded, empty_arrays = false, arrays and not both
    v = type(v) == "table" and fix(v) or whole(v)
    if longs or not rounded then return v end
    longs, v = true, nil
  end
end

local function check_max(max, fname, n)
  if max == nil then return nil end
  local m = math_type(max) == "integer" and max or (type(max) == "number" and math_tointeger(max))
  if not m or m < 0 then
    error(string_format("bad argument #%d to '%s' (a size in bytes expected, got %s)", n, fname,
      tostring(max)), 3)
  end
  return m
end

-- decode(text [, max_bytes]) -> value, or nil, "EINVAL: invalid JSON: ...",
-- "EINVAL" (not JSON, invalid UTF-8, nested deeper than 1000 levels, a
-- number out of range), or nil, "E2BIG: ...", "E2BIG" (longer than
-- max_bytes; no limit unless given).  JSON null is json.null.
local function decode(s, max_bytes)
  if type(s) ~= "string" then
    error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ")", 2)
  end
  max_bytes = check_max(max_bytes, "decode", 2)
  if max_bytes and #s > max_bytes then
    return nil, string_format("E2BIG: the JSON text is %d bytes, over the limit of %d",
      #s, max_bytes), "E2BIG"
  end
  local shift = 0
  if string_byte(s, 1) == 0xEF and string_sub(s, 1, 3) == "\239\187\191" then
    s, shift = string_sub(s, 4), 3              -- a byte order mark (RFC 8259 8.1)
  end
  local len, bad = utf8_len(s)
  if not len then return invalid(string_format("not UTF-8 at byte %d", bad + shift)) end
  local ok, v = pcall(parse, s)
  if ok then return v end
  if type(v) == "table" then return invalid(v[1]) end
  return invalid(reworded(v, shift))
end

------------------------------------------------------------------------------
-- Marks

-- array([t]) -> t, marked as an array (a new empty one without t): encoded
-- as [] when empty.  Raises if t has a metatable of its own.
local function array(t)
  if t == nil then return setmetatable({}, ARRAY) end
  if type(t) ~= "table" then
    error("bad argument #1 to 'array' (table expected, got " .. type(t) .. ")", 2)
  end
  local mt = getmetatable(t)
  if mt == nil then return setmetatable(t, ARRAY) end
  if mt == ARRAY or (type(mt) == "table" and rawget(mt, "__jsontype") == "array") then return t end
  error("bad argument #1 to 'array' (the table has a metatable of its own)", 2)
end

-- is_array(v) -> true when v is a table marked as an array (decoded from a
-- JSON array, or given to array()).
local function is_array(v)
  return type(v) == "table" and marked(v)
end

-- For specs: the Lua writer alone (the bytes must equal lua-cjson's).
local function write_lua(v)
  local buf = {}
  if type(v) == "table" then
    n_empty, inexact = 0, false
    walk(v, 1)
    for i = 1, n_empty do empties[i] = nil end
  end
  return unslash(table_concat(buf, "", 1, write(v, buf, 0)))
end

return {
  encode = encode,
  decode = decode,
  array = array,
  is_array = is_array,
  null = null,
  max_depth = MAX_DEPTH,
  _write_lua = write_lua,
}
