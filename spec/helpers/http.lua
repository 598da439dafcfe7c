-- A raw HTTP/1.x client over LuaSocket for end-to-end specs: it sends exactly
-- the bytes it is given and parses responses strictly enough to catch framing
-- errors (a Content-Length that lies, a chunk that never ends).
--
--   local http = require("helpers.http")
--   local c = http.connect(srv.port)
--   c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
--   local res = c:read_response()     -- { status, reason, version, headers, list, body }
--   c:close()
--
--   http.request(port, raw_bytes) -> res            (one connection, one response)
--   http.get(port, path, headers)  -> res

local socket = require("socket")

local M = {}

local Conn = {}
Conn.__index = Conn

function M.connect(port, host, timeout)
  local sock = assert(socket.tcp())
  sock:settimeout(timeout or 5)
  local ok, err = sock:connect(host or "127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, buf = "", timeout = timeout or 5 }, Conn)
end

function Conn:settimeout(t)
  self.timeout = t
  self.sock:settimeout(t)
end

-- Sends all bytes; returns true or nil, err.
function Conn:send(data)
  local i = 1
  while i <= #data do
    local n, err, partial = self.sock:send(data, i)
    if not n then
      if err == "timeout" and partial then
        i = partial + 1
      else
        return nil, err
      end
    else
      i = n + 1
    end
  end
  return true
end

-- Sends data one byte at a time with a pause between writes so each byte is
-- its own TCP segment.
function Conn:send_slowly(data, pause)
  for i = 1, #data do
    local ok, err = self:send(data:sub(i, i))
    if not ok then return nil, err end
    if pause and pause > 0 then socket.sleep(pause) end
  end
  return true
end

-- Fills the buffer with whatever bytes arrive next; returns true, or nil and
-- "closed"/"timeout".  (receive(n) would wait for all n bytes.)
function Conn:fill()
  local ready = socket.select({ self.sock }, nil, self.timeout)
  if #ready == 0 then return nil, "timeout" end
  self.sock:settimeout(0)
  local data, err, partial = self.sock:receive(65536)
  self.sock:settimeout(self.timeout)
  data = data or partial
  if data and #data > 0 then
    self.buf = self.buf .. data
    return true
  end
  if err == "timeout" then return nil, "timeout" end
  return nil, err
end

function Conn:read_line()
  while true do
    local i = self.buf:find("\r\n", 1, true)
    if i then
      local line = self.buf:sub(1, i - 1)
      self.buf = self.buf:sub(i + 2)
      return line
    end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

function Conn:read_exact(n)
  while #self.buf < n do
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

function Conn:read_all()
  while true do
    local ok, err = self:fill()
    if not ok then
      local s = self.buf
      self.buf = ""
      return s, err
    end
  end
end

-- True when the peer closed the connection (EOF) within `timeout` seconds,
-- after discarding whatever bytes were still in flight.
function Conn:is_closed(timeout)
  local deadline = socket.gettime() + (timeout or 2)
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return false end
    local ready = socket.select({ self.sock }, nil, left)
    if #ready == 0 then return false end
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(65536)
    self.sock:settimeout(self.timeout)
    data = data or partial
    if data and #data > 0 then
      self.buf = self.buf .. data
    elseif err == "closed" then
      return true
    end
  end
end

local function parse_head(self)
  local line, err = self:read_line()
  if not line then return nil, err end
  local version, status, reason = line:match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
  if not version then return nil, "bad status line: " .. line end
  local res = { version = version, status = tonumber(status), reason = reason,
                headers = {}, list = {} }
  while true do
    local h, herr = self:read_line()
    if not h then return nil, herr end
    if h == "" then break end
    local name, value = h:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "bad header line: " .. h end
    res.list[#res.list + 1] = { name, value }
    local key = name:lower()
    if res.headers[key] then
      res.headers[key] = res.headers[key] .. ", " .. value
    else
      res.headers[key] = value
    end
  end
  return res
end

-- Reads one response. opts.method = "HEAD" when the request was HEAD (no body).
-- Interim 1xx responses are returned as they come (status 100).
function Conn:read_response(opts)
  opts = opts or {}
  local res, err = parse_head(self)
  if not res then return nil, err end
  local status = res.status
  if opts.method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    res.body = ""
    return res
  end
  local te = res.headers["transfer-encoding"]
  local cl = res.headers["content-length"]
  if te and te:lower():find("chunked") then
    local parts = {}
    while true do
      local sizeline, lerr = self:read_line()
      if not sizeline then return nil, "chunk size: " .. tostring(lerr) end
      local size = tonumber(sizeline:match("^(%x+)"), 16)
      if not size then return nil, "bad chunk size line: " .. sizeline end
      if size == 0 then
        -- trailers until empty line
        while true do
          local t, terr = self:read_line()
          if not t then return nil, terr end
          if t == "" then break end
        end
        break
      end
      local data, derr = self:read_exact(size)
      if not data then return nil, "chunk data: " .. tostring(derr) end
      parts[#parts + 1] = data
      local crlf, cerr = self:read_exact(2)
      if crlf ~= "\r\n" then return nil, "chunk not followed by CRLF: " .. tostring(crlf or cerr) end
    end
    res.body = table.concat(parts)
    res.chunked = true
  elseif cl then
    local n = tonumber(cl)
    if not n then return nil, "bad content-length: " .. cl end
    local data, derr = self:read_exact(n)
    if not data then return nil, "body: " .. tostring(derr) end
    res.body = data
  else
    res.body = self:read_all()
    res.until_close = true
  end
  return res
end

function Conn:close() self.sock:close() end

function M.request(port, raw, opts)
  local c = assert(M.connect(port))
  local ok, err = c:send(raw)
  if not ok then c:close() return nil, err end
  local res, rerr = c:read_response(opts)
  c:close()
  return res, rerr
end

function M.get(port, path, headers, method)
  local lines = { (method or "GET") .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  lines[#lines + 1] = "Connection: close"
  return M.request(port, table.concat(lines, "\r\n") .. "\r\n\r\n", { method = method })
end

return M
