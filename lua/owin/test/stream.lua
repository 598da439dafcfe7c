-- owin.test.stream: owin.RequestBody and owin.ResponseBody in the test host,
-- shaped like Lua's file handles as the server's are (src/request/stream.c), and
-- sendfile.SendAsync (the file read in Lua and written as body).  A read
-- with no bytes yet waits: the loop pulls the next piece of a streamed
-- request body and wakes the reader.  Misuse raises; runtime failures
-- return nil, "ENAME: message", "ENAME".

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local util = require("owin.test.util")
local hresponse = require("owin.host.response")
local response = require("owin.test.response")
local loop_m = require("owin.test.loop")

local type, setmetatable, getmetatable, tostring, select =
  type, setmetatable, getmetatable, tostring, select
local math_tointeger, string_format, table_concat = math.tointeger, string.format, table.concat
local raise, tostr, typeerror, argerror = check.raise, check.tostr, check.typeerror,
  check.argerror
local failure, sysfailure = util.failure, util.sysfailure
local commit, serialize, body_write = response.commit, response.serialize, response.body_write

local M = {}

local CHUNK = 64 * 1024          -- body:chunks() size
local RESPH = hresponse.RESPH

local STREAMS = setmetatable({}, { __mode = "k" })  -- stream -> request

-- {====== body buffers: pieces with a read offset, no quadratic copies

local function buf_new() return { n = 0, h = 1, t = 0, off = 0 } end

local function buf_push(b, s)
  if #s == 0 then return end
  b.t = b.t + 1
  b[b.t] = s
  b.n = b.n + #s
end

local function buf_take(b, want)
  local out, got = {}, 0
  while got < want and b.h <= b.t do
    local p = b[b.h]
    local avail = #p - b.off
    if avail <= want - got then
      out[#out + 1] = b.off == 0 and p or p:sub(b.off + 1)
      got = got + avail
      b[b.h] = nil
      b.h, b.off = b.h + 1, 0
    else
      out[#out + 1] = p:sub(b.off + 1, b.off + want - got)
      b.off = b.off + want - got
      got = want
    end
  end
  b.n = b.n - got
  return table_concat(out)
end
-- }======

-- {====== streams

local In = { __name = "owinlua.InputStream" }
local in_methods = {}
In.__index = in_methods

local Out = { __name = "owinlua.OutputStream" }
local out_methods = {}
Out.__index = out_methods

local function stream_tostring(s)
  return string_format("%s (request %d)", getmetatable(s).__name, STREAMS[s].id)
end
In.__tostring, Out.__tostring = stream_tostring, stream_tostring

local function checkstream(s, mt)
  local R = STREAMS[s]
  if R == nil or getmetatable(s) ~= mt then typeerror(1, mt.__name, s) end
  if R.finished then raise(mt.__name:sub(9) .. " used after its response finished") end
  return R
end

local READ_REASON = {
  E2BIG = "request body exceeds the server's limit",
  ETIMEDOUT = "request body timed out",
}

-- Pulls the next piece of a streamed request body into the buffer.
local function feed(R)
  R.feeding = false
  if not R.body_done and not R.gone then
    local kind, v = R.source()
    if kind == "delay" then
      R.feeding = true
      R.loop:after(v, function() feed(R) end)
      return
    elseif kind == "end" then
      R.body_done = true
    else
      R.body_in = R.body_in + #v
      if R.opts.max_body > 0 and R.body_in > R.opts.max_body then
        return response.fail(R, 413)
      end
      buf_push(R.inbuf, v)
    end
  end
  local t = R.task
  if t and t.wait == "read" then R.loop:wake(t) end
end

local function wait_body(R)
  local t = R.task
  if t == nil or loop_m.can_wait() ~= t then
    raise("the request body can only wait in its own request's coroutine")
  end
  if not R.feeding then
    R.feeding = true
    R.loop:defer(feed, R)
  end
  R.loop:wait(t, "read")
end

-- n bytes at most, or everything (n nil); nil at the end; nil, err, code.
local function read(R, n)
  if R.discard then return nil end   -- closed by the app: nothing more
  while true do
    if R.expect_continue and not R.continue_sent and not R.body_done then
      R.continue_sent = true         -- "100 Continue" goes out now: the body comes
      if not R.source then R.body_done = true end
    end
    if n == nil then
      if R.body_done then return buf_take(R.inbuf, R.inbuf.n) end
    else
      if R.inbuf.n > 0 then return buf_take(R.inbuf, n) end
      if R.body_done then return nil end
    end
    if R.read_err or R.gone then
      local code = R.read_err or "ECONNRESET"
      return failure(code, READ_REASON[code] or "client closed the connection")
    end
    wait_body(R)
  end
end

-- body:read(n) -> up to n bytes, nil at the end; body:read("a") -> the rest
function in_methods.read(s, fmt)
  local R = checkstream(s, In)
  if type(fmt) == "number" then
    local n = math_tointeger(fmt)
    if n == nil then argerror(2, "number has no integer representation") end
    if n <= 0 then argerror(2, "byte count must be positive") end
    return read(R, n)
  end
  if fmt == nil then fmt = "a" end
  if type(fmt) ~= "string" then typeerror(2, "string", fmt) end
  if fmt:sub(1, 1) == "*" then fmt = fmt:sub(2) end
  if fmt:sub(1, 1) ~= "a" then argerror(2, "expected a byte count or \"a\"") end
  return read(R, nil)
end

-- for chunk in body:chunks() do ... end  (raises on failures)
function in_methods.chunks(s)
  checkstream(s, In)
  return function()
    local R = checkstream(s, In)
    local chunk, err = read(R, CHUNK)
    if chunk == nil and err then raise("body:chunks(): " .. err) end
    return chunk
  end
end

-- body:close() (and __close): the app reads no more; what is buffered is
-- dropped, and so is the rest of the body; later reads return nil.
function in_methods.close(s)
  local R = checkstream(s, In)
  R.discard = true
  R.inbuf = buf_new()
end
In.__close = in_methods.close

-- __close of the output stream: the server flushes what is out already; the
-- test host has nothing to flush.
Out.__close = function() end

-- body:write(...) -> body, or nil, "EPIPE: ...", "EPIPE"
function out_methods.write(s, ...)
  local R = checkstream(s, Out)
  local n = select("#", ...)
  for i = 1, n do
    local v = select(i, ...)
    local str = tostr(v)
    if str == nil then typeerror(i + 1, "string", v) end
    if body_write(R, str) then return failure("EPIPE", "client closed the connection") end
  end
  if n == 0 and body_write(R, "") then return failure("EPIPE", "client closed the connection") end
  if R.gone then return failure("EPIPE", "client closed the connection") end
  return s
end

-- body:flush() -> body: the headers (and what is held) go out now.
function out_methods.flush(s)
  local R = checkstream(s, Out)
  commit(R)
  if R.gone then return failure("EPIPE", "client closed the connection") end
  if not R.serialized then serialize(R, false) end
  R.flushes = R.flushes + 1
  return s
end

local function new_stream(R, mt)
  local s = setmetatable({}, mt)
  STREAMS[s] = R
  return s
end
-- }======

-- {====== sendfile.SendAsync(path, offset, length_or_nil, cancel)

local function sendfile(R, path, offset, length, cancel)
  if type(path) ~= "string" and type(path) ~= "number" then typeerror(1, "string", path) end
  path = tostring(path)
  if offset == nil then offset = 0 end
  if math_tointeger(offset) == nil then typeerror(2, "number", offset) end
  if length == nil then length = -1 end
  if math_tointeger(length) == nil then typeerror(3, "number", length) end
  offset, length = math_tointeger(offset), math_tointeger(length)
  if offset < 0 then argerror(2, "offset must not be negative") end
  if length < -1 then argerror(3, "length must not be negative") end
  if R.finished then raise("sendfile.SendAsync used after its response finished") end
  local f, _, errno = io.open(path, "rb")
  if not f then return sysfailure(util.ERRNO[errno] or "EIO", path) end
  local probe, perr, pcode = f:read(0)
  if probe == nil and perr then
    f:close()
    return sysfailure(util.ERRNO[pcode] or "EINVAL", path)
  end
  local size = f:seek("end")
  if offset > size or (length >= 0 and offset + length > size) then
    f:close()
    return sysfailure("EINVAL", "range past the end of the file")
  end
  if length < 0 then length = size - offset end
  if not R.committed then            -- Content-Length, if the app set none
    local h = R.env[RESPH]
    if h["Content-Length"] == nil and R.written == 0 and R.held_len == 0 then
      h["Content-Length"] = length
    end
  end
  commit(R)
  if hresponse.overflow(R, length) then f:close() end
  hresponse.wrote(R, length)       -- raises when it does not fit the Content-Length
  if R.no_body or length == 0 or R.gone then
    f:close()
    if R.gone then return sysfailure("EPIPE") end
    return true
  end
  if not R.serialized then serialize(R, false) end
  if R.task == nil or loop_m.can_wait() ~= R.task then
    f:close()
    raise("sendfile.SendAsync can only run in its request's coroutine")
  end
  if type(cancel) == "table" and cancel.cancelled then
    f:close()
    return sysfailure("ECANCELED")
  end
  f:seek("set", offset)
  local left = length
  while left > 0 do
    local piece = f:read(left < CHUNK and left or CHUNK)
    if piece == nil or #piece == 0 then
      f:close()
      R.abort = true
      return sysfailure("EIO", "the file ended before the range did")
    end
    R.body[#R.body + 1] = piece
    left = left - #piece
  end
  f:close()
  return true
end
-- }======

M.buf_new, M.buf_push = buf_new, buf_push

-- The request's input and output streams.
function M.input(R) return new_stream(R, In) end
function M.output(R) return new_stream(R, Out) end
M.sendfile = sendfile

return M
