-- Every input the http_head fuzz harness once failed on
-- (fuzz/regressions/http_head/), replayed against the real server with the
-- harness's app and limits (fuzz/http_head.c): written in one write, then in
-- two cut where the harness cuts it (1 + (first byte * 257 + size) %
-- (size - 1)), with a pause between, each followed by a half-close.  As in
-- the harness, both must get the same answers: the statuses up to a 101,
-- 100 left out, and every error the server answers itself counted as one
-- "4xx".  The server must close each connection, and still serve after them
-- all (under owinlua-asan, any sanitizer report fails the spec at stop).
local http = require("helpers.http")
local server = require("helpers.server")

local DIR = "fuzz/regressions/http_head"

-- The harness's app (app_src in fuzz/http_head.c)
local APP = [[
local function readall(s)
  local n = 0
  while true do
    local d = s:read(65536)
    if not d then return n end
    n = n + #d
  end
end
return function(env)
  if env['websocket.Accept'] then
    return env['websocket.Accept']({}, function(ws)
      while true do
        local data, kind, fin = ws['websocket.ReceiveAsync']()
        if data == nil or kind == 8 then break end
        ws['websocket.SendAsync'](data, kind, fin)
      end
      ws['websocket.CloseAsync'](1000, '')
    end)
  end
  if env['opaque.Upgrade'] and env['owin.RequestPath'] == '/opaque' then
    return env['opaque.Upgrade']({}, function(oenv)
      local s = oenv['opaque.Stream']
      while true do
        local d = s:read()
        if not d then break end
        s:write(d)
      end
    end)
  end
  local n = readall(env['owin.RequestBody'])
  local h = env['owin.RequestHeaders']
  local k = 0
  for name, v in pairs(h) do k = k + #name + #table.concat(v, ',') end
  local res = env['owin.ResponseHeaders']
  res['Content-Type'] = { 'text/plain' }
  env['owin.ResponseBody']:write(env['owin.RequestMethod'], ' ',
    env['owin.RequestPath'], '?', env['owin.RequestQueryString'], ' ',
    n, ' ', k)
end
]]

-- The harness's limits (LLVMFuzzerInitialize in fuzz/http_head.c)
local ARGS = { "--ws-ping-interval", "0", "--max-header-bytes", "4096",
               "--max-target", "1024", "--max-headers", "20", "--max-body", "2048",
               "--ws-max-message", "1024" }

local function read_file(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

local function inputs()
  local names = {}
  local p = assert(io.popen("ls " .. server.shell_quote(DIR)))
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

-- Everything the server sent on one connection for raw cut at cut (0: one
-- write), the writer half-closed after it; and whether the server closed.
local function exchange(port, raw, cut)
  local c = assert(http.connect(port))
  if cut == 0 then
    c:send(raw)
  else
    c:send(raw:sub(1, cut))
    server.sleep(0.02)
    c:send(raw:sub(cut + 1))
  end
  c.sock:shutdown("send")
  local closed = c:is_closed(5)
  local got = c.buf
  c:close()
  return got, closed
end

-- The answers as the harness counts them (statuses in fuzz/http_head.c)
local function statuses(s)
  local out, at = {}, 1
  while true do
    local i = s:find("HTTP/1.1 ", at, true)
    if i == nil or #s - i + 1 < 11 then break end
    local st = s:sub(i + 9, i + 11)
    at = i + 9
    if st ~= "100" then
      local refused = st:sub(1, 1) == "4" or (st:sub(1, 1) == "5" and st ~= "500")
      out[#out + 1] = refused and "4xx" or st
      if st == "101" then break end
    end
  end
  return table.concat(out, " ")
end

describe("#e2e the http_head fuzz regressions", function()
  local srv, app
  setup(function()
    app = os.tmpname()
    local fh = assert(io.open(app, "w"))
    fh:write(APP)
    fh:close()
    srv = server.start(app, ARGS)
  end)
  teardown(function()
    if srv then assert.is_true(srv:stop()) end
    if app then os.remove(app) end
  end)

  local names = inputs()

  it("are there", function()
    assert.is_true(#names > 0, "no inputs in " .. DIR)
  end)

  for _, name in ipairs(names) do
    it(name .. ": the same answers in one write and in two, and a close", function()
      local raw = read_file(DIR .. "/" .. name)
      local whole, closed = exchange(srv.port, raw, 0)
      assert.is_true(closed, "one write: the connection stays open")
      assert.is_true(#whole > 0, "one write: no answer")
      if #raw >= 2 then
        local cut = 1 + (raw:byte(1) * 257 + #raw) % (#raw - 1)
        local split, closed2 = exchange(srv.port, raw, cut)
        assert.is_true(closed2, "split after byte " .. cut .. ": the connection stays open")
        assert.are.equal(statuses(whole), statuses(split), "split after byte " .. cut)
      end
      assert.is_true(srv:alive())
    end)
  end

  it("leave the server serving", function()
    local res = assert(http.request(srv.port, "GET /after?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert.are.equal(200, res.status)
    assert.are.equal("GET /after?x=1 0 ", res.body:sub(1, 17))
  end)
end)
