-- owin.compress: gzip for responses, as middleware.
--
--   local compress = require("owin.compress")
--   app.use(compress())                          -- or compress{ level = 6, threshold = 1024 }
--
-- The middleware puts a stream of its own in owin.ResponseBody (and its own
-- sendfile.SendAsync) while the rest of the pipeline runs.  What the app
-- writes is held until there is enough to decide (threshold bytes, a
-- flush, or the end of the app); then the response is either compressed
-- as a stream or passed through unchanged, and that choice holds for the
-- whole response.
--
-- A response is compressed when all of these hold:
--   - the client accepts gzip (Accept-Encoding, with q-values) and prefers
--     it to identity;
--   - its type is compressible (opts.filter, default compress.compressible:
--     text/*, JSON, XML, JavaScript, SVG, WebAssembly, ...);
--   - it has no Content-Encoding and no Cache-Control: no-transform;
--   - it is not a HEAD, a 1xx, 204, 206 or 304, and the request has no Range;
--   - it is at least `threshold` bytes long (its Content-Length, or all that
--     was written when the app ended), unless the client refused identity
--     (identity;q=0): then small bodies are compressed too.  A response the
--     app flushes before reaching the threshold is a stream whose length is
--     unknown: it is compressed.
-- A compressible response gets Vary: Accept-Encoding whether or not this
-- request was compressed, so caches keep the two apart.  A compressed one
-- gets Content-Encoding: gzip, loses Content-Length (the server frames it:
-- Content-Length when it ends within 16 KiB, else chunked) and
-- Accept-Ranges, and a strong ETag becomes weak (the bytes differ).
--
-- Writes are deflated as they come (zlib gives output a block at a time);
-- only the app's flush() makes a sync flush, so every byte written so far
-- reaches the client then.  sendfile.SendAsync: a response that is not
-- compressed keeps the zero-copy path; one that is compressed has the file
-- read in 64 KiB pieces and deflated (the bytes must pass through zlib).
--
-- Options:
--   level      zlib's compression level, 1 (fast) to 9 (small); default 6
--   threshold  bodies shorter than this many bytes are sent as they are;
--              default 1024
--   filter     function(env, content_type) -> boolean: whether the
--              response may be compressed (content_type is the media type,
--              lowercase, without parameters, or nil)
--   gzip       function(level) -> deflater (write, flush, finish, close);
--              default the C core's.  Without one (plain Lua), responses
--              pass through uncompressed.

local type, error, tostring, ipairs, pairs, pcall, select, setmetatable, require =
  type, error, tostring, ipairs, pairs, pcall, select, setmetatable, require
local tonumber, math_type, string_format = tonumber, math.type, string.format
local table_concat = table.concat
local io_open = io.open

local METHOD, STATUS = "owin.RequestMethod", "owin.ResponseStatusCode"
local REQH, RESH, BODY = "owin.RequestHeaders", "owin.ResponseHeaders", "owin.ResponseBody"
local SENDFILE = "sendfile.SendAsync"

local PIECE = 65536                 -- file read size for compressed sendfile

------------------------------------------------------------------------------
-- What may be compressed

local COMPRESSIBLE = {
  ["application/json"] = true, ["application/javascript"] = true,
  ["application/x-javascript"] = true, ["application/ecmascript"] = true,
  ["application/xml"] = true, ["application/wasm"] = true,
  ["application/x-ndjson"] = true, ["application/yaml"] = true,
  ["application/toml"] = true, ["application/x-www-form-urlencoded"] = true,
  ["application/graphql"] = true, ["application/rtf"] = true,
  ["application/x-sh"] = true, ["application/x-tar"] = true,
  ["application/vnd.ms-fontobject"] = true, ["application/x-font-ttf"] = true,
  ["font/ttf"] = true, ["font/otf"] = true, ["font/collection"] = true,
  ["image/svg+xml"] = true, ["image/x-icon"] = true,
  ["image/vnd.microsoft.icon"] = true, ["image/bmp"] = true,
}

-- The media type of a Content-Type value: lowercase, no parameters.
local function media_type(v)
  if v == nil then return nil end
  local t = v:match("^[ \t]*([^;%s]+)")
  return t and t:lower()
end

-- True for a media type worth compressing: text/*, anything +json, +xml
-- or +yaml, and the known text-like or uncompressed binary types.  Images,
-- audio, video, fonts in woff/woff2 and archives are compressed already.
local function compressible(ctype)
  if type(ctype) ~= "string" then return false end
  ctype = media_type(ctype)
  if ctype == nil then return false end
  if ctype:sub(1, 5) == "text/" then return true end
  if COMPRESSIBLE[ctype] then return true end
  local suffix = ctype:match("%+(%w+)$")
  return suffix == "json" or suffix == "xml" or suffix == "yaml"
end

------------------------------------------------------------------------------
-- Accept-Encoding (RFC 9110 12.5.3)

-- A qvalue, or nil when it is not one.
local function qvalue(s)
  if not s:match("^[01]%.?%d*$") or #s > 5 then return nil end
  local q = tonumber(s)
  if q == nil or q > 1 then return nil end
  return q
end

-- negotiate(accept_encoding) -> "gzip" | "identity", identity_ok.
-- accept_encoding is the header's value (several fields joined with ","),
-- or nil when the request had none: then only identity is chosen, as
-- browsers always send the header and other clients may not decode gzip.
-- identity_ok is false when the client refused it (identity;q=0, or *;q=0
-- without an identity entry); the answer should be gzip then even for a
-- small body.
local function negotiate(value)
  if value == nil then return "identity", true end
  local gzip, identity, star
  for item in value:gmatch("[^,]+") do
    local coding, params = item:match("^[ \t]*([^;%s]+)[ \t]*(.*)$")
    if coding then
      local q = 1
      for name, v in params:gmatch(";[ \t]*([^=; \t]+)[ \t]*=[ \t]*([^; \t]*)") do
        if name:lower() == "q" then q = qvalue(v) end
      end
      if q ~= nil then                              -- a bad qvalue: the item is ignored
        coding = coding:lower()
        if coding == "gzip" or coding == "x-gzip" then
          if gzip == nil or q > gzip then gzip = q end
        elseif coding == "identity" then
          if identity == nil or q > identity then identity = q end
        elseif coding == "*" then
          if star == nil or q > star then star = q end
        end
      end
    end
  end
  local gq = gzip or star or 0
  local identity_ok = not (identity == 0 or (identity == nil and star == 0))
  if gq > 0 and (identity == nil or gq >= identity) then return "gzip", identity_ok end
  return "identity", identity_ok
end

------------------------------------------------------------------------------
-- Headers

local function first(h, name)
  local v = h[name]
  return v and v[1]
end

local function has_token(values, token)
  if values == nil then return false end
  for _, v in ipairs(values) do
    for item in v:gmatch("[^,]+") do
      if item:match("^[ \t]*(.-)[ \t]*$"):lower() == token then return true end
    end
  end
  return false
end

-- Adds token to Vary unless it is there (or Vary is "*").
local function vary(h, token)
  local cur = h["Vary"]
  if cur == nil then
    h["Vary"] = token
    return
  end
  if has_token(cur, token:lower()) or has_token(cur, "*") then return end
  local t = {}
  for i, v in ipairs(cur) do t[i] = v end
  t[#t + 1] = token
  h["Vary"] = t
end

-- True once the status line and headers went out: the server's env refuses
-- a change of the status then (owin.context's response.sent does the same).
local function touch_status(env) env[STATUS] = env[STATUS] end
local function sent(env) return not pcall(touch_status, env) end

------------------------------------------------------------------------------
-- The choice, made once per response

-- Returns true to compress.  size: the body's length if known, else nil.
-- Sets Vary on a compressible response, and the gzip headers when it says
-- yes.
local function choose(self, env, size)
  if sent(env) then return false end
  local status = env[STATUS]
  if status < 200 or status == 204 or status == 304 then return false end
  local h = env[RESH]
  local ce = first(h, "Content-Encoding")
  if ce ~= nil and ce:lower() ~= "identity" then return false end
  if has_token(h["Cache-Control"], "no-transform") then return false end
  local ctype = media_type(first(h, "Content-Type"))
  if not self.filter(env, ctype) then return false end
  vary(h, "Accept-Encoding")
  if env[METHOD] == "HEAD" then return false end
  local reqh = env[REQH]
  if status == 206 or h["Content-Range"] ~= nil or reqh["range"] ~= nil then return false end
  local ae = reqh["accept-encoding"]
  local coding, identity_ok = negotiate(ae and table_concat(ae, ","))
  if coding ~= "gzip" then return false end
  if size == nil then size = tonumber(first(h, "Content-Length")) end
  if identity_ok and size ~= nil and (size < self.threshold or size == 0) then return false end
  h["Content-Encoding"] = "gzip"
  h["Content-Length"] = nil
  h["Accept-Ranges"] = nil
  local etag = first(h, "ETag")
  if etag and etag:sub(1, 1) == '"' then h["ETag"] = "W/" .. etag end
  return true
end

------------------------------------------------------------------------------
-- The response stream: owin.ResponseBody while the rest of the pipeline runs

local Body = {}
Body.__index = Body
Body.__name = "owin.compress stream"
function Body.__tostring() return "owin.compress stream" end

-- Bytes to the client's stream; returns true, or nil, err, code.
local function out(self, data)
  if data == "" then return true end
  local ok, err, code = self.real:write(data)
  if not ok then return nil, err, code end
  return true
end

-- Makes the choice and lets out what was held.  size as in choose.
local function decide(self, size)
  local held = table_concat(self.held)
  self.held, self.held_len = nil, 0
  if self.make_gzip and choose(self.opts, self.env, size) then
    self.deflater = self.make_gzip(self.opts.level)
    self.mode = "gzip"
    return out(self, self.deflater:write(held))
  end
  self.mode = "identity"
  return out(self, held)
end

local function check_open(self)
  if self.mode == "done" then error("owin.ResponseBody used after its response finished", 3) end
end

-- body:write(...) -> body, or nil, err, code: as the server's stream.
function Body:write(...)
  check_open(self)
  local n = select("#", ...)
  if self.mode == "identity" then
    local ok, err, code = self.real:write(...)
    if not ok then return nil, err, code end
    return self
  end
  local data
  if n == 1 then
    data = ...
    local t = type(data)
    if t == "number" then data = tostring(data)
    elseif t ~= "string" then
      error(string_format("bad argument #1 to 'write' (string expected, got %s)", t), 2)
    end
  else
    local parts = { ... }
    for i = 1, n do
      local t = type(parts[i])
      if t == "number" then parts[i] = tostring(parts[i])
      elseif t ~= "string" then
        error(string_format("bad argument #%d to 'write' (string expected, got %s)", i, t), 2)
      end
    end
    data = table_concat(parts)
  end
  if self.mode == "gzip" then
    local ok, err, code = out(self, self.deflater:write(data))
    if not ok then return nil, err, code end
    return self
  end
  local held = self.held
  held[#held + 1] = data
  self.held_len = self.held_len + #data
  if self.held_len >= self.opts.threshold and self.held_len > 0 then
    local ok, err, code = decide(self, nil)
    if not ok then return nil, err, code end
  end
  return self
end

-- body:flush() -> body, or nil, err, code: what was written goes out now
-- (a sync flush of the deflater).  The first flush decides for a response
-- whose length is unknown.
function Body:flush()
  check_open(self)
  if self.mode == nil then
    local ok, err, code = decide(self, nil)
    if not ok then return nil, err, code end
  end
  if self.mode == "gzip" then
    local ok, err, code = out(self, self.deflater:flush())
    if not ok then return nil, err, code end
  end
  local ok, err, code = self.real:flush()
  if not ok then return nil, err, code end
  return self
end

-- `local body <close> = env["owin.ResponseBody"]`: nothing to do; the
-- middleware ends the stream when the app returns.
function Body.__close() end

-- errno values io.open reports on Linux, and libuv's messages for them, so
-- that a failure has the shape sendfile.SendAsync gives.
local ERRNO = {
  [1] = { "EPERM", "operation not permitted" }, [2] = { "ENOENT", "no such file or directory" },
  [13] = { "EACCES", "permission denied" }, [20] = { "ENOTDIR", "not a directory" },
  [21] = { "EISDIR", "illegal operation on a directory" }, [36] = { "ENAMETOOLONG", "name too long" },
  [40] = { "ELOOP", "too many symbolic links encountered" },
}

local function sysfailure(errno, what)
  local e = ERRNO[errno] or { "EIO", "i/o error" }
  return nil, string_format("%s: %s (%s)", e[1], e[2], what), e[1]
end

-- sendfile.SendAsync in the middleware's place: the server's own when the
-- response is not compressed, a read-and-deflate loop when it is.
local function make_sendfile(self)
  return function(path, offset, length, cancel)
    check_open(self)
    if self.mode == "identity" then return self.sendfile(path, offset, length, cancel) end
    if type(path) ~= "string" then
      error("bad argument #1 to 'SendAsync' (string expected, got " .. type(path) .. ")", 2)
    end
    offset = offset or 0
    if math_type(offset) ~= "integer" or offset < 0 then
      error("bad argument #2 to 'SendAsync' (offset must be a whole number, 0 or more)", 2)
    end
    if length ~= nil and (math_type(length) ~= "integer" or length < 0) then
      error("bad argument #3 to 'SendAsync' (length must be nil or a whole number, 0 or more)", 2)
    end
    local f, _, errno = io_open(path, "rb")
    if not f then return sysfailure(errno, path) end
    local probe, _, perr = f:read(0)
    if probe == nil and perr then
      f:close()
      return sysfailure(perr, path)
    end
    local size = f:seek("end")
    if offset > size or (length and offset + length > size) then
      f:close()
      return nil, "EINVAL: invalid argument (range past the end of the file)", "EINVAL"
    end
    length = length or size - offset
    if self.mode == nil then
      local total = self.held_len + length
      local cl = tonumber(first(self.env[RESH], "Content-Length"))
      local ok, err, code = decide(self, cl or total)
      if not ok then
        f:close()
        return nil, err, code
      end
      if self.mode == "identity" then
        f:close()
        return self.sendfile(path, offset, length, cancel)
      end
    end
    f:seek("set", offset)
    while length > 0 do
      if type(cancel) == "table" and cancel.cancelled then
        f:close()
        return nil, "ECANCELED: operation canceled", "ECANCELED"
      end
      local piece = f:read(length < PIECE and length or PIECE)
      if piece == nil then
        f:close()
        return nil, "EIO: i/o error (the file ended before the range did)", "EIO"
      end
      length = length - #piece
      local ok, err, code = out(self, self.deflater:write(piece))
      if not ok then
        f:close()
        return nil, err, code
      end
    end
    f:close()
    return true
  end
end

-- Ends the stream when the app returned: decides if it was not done yet
-- (the length is now known), and writes the gzip trailer.
local function finish(self)
  if self.mode == nil then
    local cl = tonumber(first(self.env[RESH], "Content-Length"))
    decide(self, cl or self.held_len)
  end
  if self.mode == "gzip" then
    out(self, self.deflater:finish())
  end
end

-- Puts the server's stream and sendfile back, and frees the deflater,
-- whether the app returned or raised (a to-be-closed { stream }).
local restore_mt = {
  __close = function(r)
    local self = r[1]
    local env = self.env
    if rawequal(env[BODY], self) then env[BODY] = self.real end
    if self.wrapped_sendfile and rawequal(env[SENDFILE], self.wrapped_sendfile) then
      env[SENDFILE] = self.sendfile
    end
    if self.deflater then self.deflater:close() end
    self.mode = "done"
  end,
}

------------------------------------------------------------------------------
-- The module: compress(opts) -> function(env, next).  The module table's
-- __call tail-calls compress, so error levels count from compress itself.

local function default_gzip()
  local ok, core = pcall(require, "owin.core")
  return ok and type(core) == "table" and core.gzip or nil
end

local KNOWN = { level = true, threshold = true, filter = true, gzip = true }

local function bad(key, fmt, ...)
  error(string_format("bad option '%s' to 'compress' (" .. fmt .. ")", key, ...), 3)
end

local function compress(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'compress' (table of options expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then bad(tostring(k), "unknown option") end
  end
  local level = opts.level or 6
  if math_type(level) ~= "integer" or level < 1 or level > 9 then
    bad("level", "a whole number from 1 to 9 expected, got %s", tostring(opts.level))
  end
  local threshold = opts.threshold or 1024
  if math_type(threshold) ~= "integer" or threshold < 0 then
    bad("threshold", "a byte count, 0 or more, expected, got %s", tostring(opts.threshold))
  end
  local filter = opts.filter
  if filter ~= nil and type(filter) ~= "function" then
    bad("filter", "function expected, got %s", type(filter))
  end
  local make_gzip = opts.gzip
  if make_gzip ~= nil and type(make_gzip) ~= "function" then
    bad("gzip", "function expected, got %s", type(make_gzip))
  end
  local conf = {
    level = level,
    threshold = threshold,
    filter = filter or function(_, ctype) return compressible(ctype) end,
  }
  make_gzip = make_gzip or default_gzip()
  return function(env, next)
    local self = setmetatable({
      env = env, opts = conf, make_gzip = make_gzip, real = env[BODY],
      sendfile = env[SENDFILE], held = {}, held_len = 0,
    }, Body)
    env[BODY] = self
    if self.sendfile then
      self.wrapped_sendfile = make_sendfile(self)
      env[SENDFILE] = self.wrapped_sendfile
    end
    local _ <close> = setmetatable({ self }, restore_mt)
    next(env)
    finish(self)
  end
end

return setmetatable({
  compressible = compressible,
  negotiate = negotiate,
}, { __call = function(_, opts) return compress(opts) end })
