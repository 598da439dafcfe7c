-- --workers and --reload: a master that binds, starts and supervises worker
-- processes (src/server/master.c), with the real binary over real sockets.
local server = require("helpers.server")
local http = require("helpers.http")
local cleanup = require("helpers.cleanup")
local socket = require("socket")

local APP = "spec/fixtures/workers.lua"

-- The pids whose parent is pid, sorted (zombies left out).
local function children(pid)
  local out = {}
  local p = io.popen("ls /proc")
  for name in p:lines() do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/stat")
      if f then
        local stat = f:read("a") or ""
        f:close()
        local state, ppid = stat:match("^%d+ %b() (%a) (%d+)")
        if tonumber(ppid) == pid and state ~= "Z" then out[#out + 1] = tonumber(name) end
      end
    end
  end
  p:close()
  table.sort(out)
  return out
end

local alive = server.alive

-- n workers, all ready (each answered) -> their pids
local function wait_workers(srv, n)
  local pids
  assert.truthy(server.eventually(function()
    pids = children(srv.pid)
    return #pids == n
  end, 15), "expected " .. n .. " workers, have " .. #(pids or {}))
  return pids
end

-- n workers that all answer (their app is loaded) -> their pids
local function wait_ready(srv, n)
  local pids = wait_workers(srv, n)
  local seen, count = {}, 0
  assert.truthy(server.eventually(function()
    local ok, res = pcall(http.get, srv.port, "/")
    local pid = ok and res.status == 200 and tonumber(res.body:match("^(%d+)"))
    if pid and not seen[pid] then seen[pid] = true; count = count + 1 end
    return count == n
  end, 15), "not every worker answers")
  return pids
end

-- Which worker answers a request on a new connection: pid, id.
local function who(port, path)
  local ok, res = pcall(http.get, port, path or "/")   -- refused: not listening yet
  if not ok or not res or res.status ~= 200 then return nil end
  local pid, id = res.body:match("^(%d+) (%S+)$")
  return tonumber(pid), id
end

-- Pids seen answering n requests, each on its own connection.
local function answering(port, n)
  local seen = {}
  for _ = 1, n do
    local pid = who(port)
    if pid then seen[pid] = true end
  end
  return seen
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Runs wrk against port for secs in the background; returns a function
-- that waits for it and returns its output.  close: a new connection for
-- every request (Connection: close).
local function wrk(port, secs, conns, close)
  local out = os.tmpname()
  os.execute(string.format("wrk -t1 -c%d -d%ds %s http://127.0.0.1:%d/ >%s 2>&1 &",
    conns or 20, secs, close and "-H 'Connection: close'" or "", port, out))
  return function()
    local text
    server.eventually(function()
      text = server.read_file(out)
      return text:find("Requests/sec", 1, true) ~= nil
    end, secs + 10)
    os.remove(out)
    return text
  end
end

-- A copy of files (name -> text) in a fresh directory; returns its path.
local function tempdir(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/lib"))
  cleanup.defer(function() os.execute("rm -rf " .. dir) end)
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local RELOAD_APP = [[
local msg = require("lib.msg")
app.run(function(env) env["owin.ResponseBody"]:write(msg) end)
]]

local function body(port)
  local ok, res = pcall(http.get, port, "/")
  if not ok then return nil end
  return res and res.status == 200 and res.body or nil
end

describe("#e2e --workers", function()
  after_each(cleanup.run)

  it("serves from N worker processes, each with its OWINLUA_WORKER_ID", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    local pids = wait_ready(srv, 2)
    local seen = {}
    assert.truthy(server.eventually(function()
      local pid, id = who(srv.port)
      assert.truthy(set(pids)[pid], "answered by a process that is not a worker")
      seen[id] = true
      return seen["1"] and seen["2"]
    end, 10), "both workers should answer")
    assert.equal("nil", http.get(srv.port, "/listen").body)   -- taken out of the env
    assert.matches("worker 1 started", srv:stderr(), 1, true)
  end)

  it("--workers auto starts one worker per CPU", function()
    local p = io.popen("nproc")
    local n = tonumber(p:read("l"))
    p:close()
    local srv = cleanup.server(APP, { "--workers", "auto" })
    wait_ready(srv, n)
  end)

  it("shares a unix socket listener with every worker", function()
    local path = os.tmpname()
    os.remove(path)
    cleanup.defer(function() os.remove(path) end)
    local srv = cleanup.server(APP, { "--workers", "2" }, { listen = "unix:" .. path })
    assert.equal("listening on unix:" .. path, srv.first_line)
    local pids = set(wait_workers(srv, 2))
    local seen, n = {}, 0
    assert.truthy(server.eventually(function()
      local p = io.popen("curl -s --unix-socket " .. path .. " http://w/")
      local pid = tonumber((p:read("a") or ""):match("^(%d+)"))
      p:close()
      if pid and pids[pid] and not seen[pid] then seen[pid] = true; n = n + 1 end
      return n == 2
    end, 15), "both workers should accept on the inherited socket")
  end)

  it("replaces a worker killed with SIGKILL, while serving under load", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    local before = wait_ready(srv, 2)
    local done = wrk(srv.port, 3)
    socket.sleep(1)
    os.execute("kill -9 " .. before[1])
    local out = done()
    assert.matches("Requests/sec", out)
    local after
    assert.truthy(server.eventually(function()
      after = children(srv.pid)
      return #after == 2 and not set(after)[before[1]]
    end, 10))
    assert.truthy(set(after)[before[2]])          -- the other one kept serving
    assert.truthy(srv:alive())
    local seen = answering(srv.port, 30)
    assert.is_nil(seen[before[1]])
    assert.matches("killed by signal 9", srv:stderr(), 1, true)
    assert.matches("replacing worker", srv:stderr(), 1, true)
  end)

  it("restarts every worker on SIGHUP without failing a request under wrk", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    local before = set(wait_ready(srv, 2))
    local done = wrk(srv.port, 4, 20)
    socket.sleep(1)
    srv:signal("HUP")
    socket.sleep(1.5)
    srv:signal("HUP")                             -- a second restart in the same run
    local out = done()
    local reqs = tonumber(out:match("(%d+) requests in"))
    assert.truthy(reqs and reqs > 1000, out)
    assert.is_nil(out:find("Socket errors", 1, true), out)
    assert.is_nil(out:find("Non-2xx", 1, true), out)
    local after = wait_workers(srv, 2)
    for _, pid in ipairs(after) do assert.is_nil(before[pid], "a worker was not replaced") end
    assert.matches("restart done", srv:stderr(), 1, true)
  end)

  it("keeps the old workers serving when SIGHUP finds an app that no longer loads", function()
    local dir = tempdir({ ["app.lua"] = [[
local msg = require("lib.msg")
local f = assert(io.open("/proc/self/stat"))
local pid = f:read("n")
f:close()
app.run(function(env) env["owin.ResponseBody"]:write(pid .. " " .. msg) end)
]], ["lib/msg.lua"] = 'return "one"' })
    local srv = cleanup.server(dir .. "/app.lua", { "--workers", "2" })
    local before = wait_ready(srv, 2)
    assert.matches("^%d+ one$", body(srv.port))
    write(dir .. "/lib/msg.lua", "return (")    -- a syntax error
    srv:signal("HUP")
    assert.truthy(server.eventually(function()
      return srv:stderr():find("restart abandoned", 1, true)
    end, 15))
    assert.same(before, children(srv.pid))
    for _ = 1, 5 do assert.matches("^%d+ one$", body(srv.port)) end
    write(dir .. "/lib/msg.lua", 'return "two"')
    srv:signal("HUP")
    assert.truthy(server.eventually(function() return (body(srv.port) or ""):match(" two$") end, 15))
    assert.truthy(server.eventually(function()
      local now = children(srv.pid)
      return #now == 2 and not set(now)[before[1]] and not set(now)[before[2]]
    end, 15))
  end)

  it("fails no connection while workers are restarted, added and removed, " ..
     "one connection per request under wrk #slow", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    wait_ready(srv, 2)
    local done = wrk(srv.port, 5, 20, true)
    socket.sleep(0.7)
    srv:signal("HUP")
    socket.sleep(1.3)
    srv:signal("TTIN")
    socket.sleep(1)
    srv:signal("TTOU")
    socket.sleep(0.5)
    srv:signal("TTOU")
    local out = done()
    local reqs = tonumber(out:match("(%d+) requests in"))
    assert.truthy(reqs and reqs > 1000, out)
    assert.is_nil(out:find("Socket errors", 1, true), out)
    assert.is_nil(out:find("Non-2xx", 1, true), out)
    wait_workers(srv, 1)
    assert.matches("restart done", srv:stderr(), 1, true)
  end)

  it("adds a worker on SIGTTIN and removes one on SIGTTOU", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    local two = wait_ready(srv, 2)
    srv:signal("TTIN")
    local three = wait_workers(srv, 3)
    for _, pid in ipairs(two) do assert.truthy(set(three)[pid]) end
    srv:signal("TTOU")
    assert.same(two, wait_workers(srv, 2))        -- the newest one went
    srv:signal("TTOU")
    wait_workers(srv, 1)
    srv:signal("TTOU")                            -- never below one
    socket.sleep(0.5)
    assert.equal(1, #children(srv.pid))
    assert.truthy(who(srv.port))
  end)

  it("refuses to start on an address in use, as a single process does", function()
    local other = cleanup.server("apps/hello.lua")       -- one process, no SO_REUSEPORT
    for _, args in ipairs({ { "--workers", "2" }, { "--reload" } }) do
      local argv = { table.unpack(args) }
      for _, a in ipairs({ "--listen", "127.0.0.1:" .. other.port, APP }) do argv[#argv + 1] = a end
      local out, err, code = server.run(argv, { timeout = 15 })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.equal("owinlua: cannot listen on 127.0.0.1:" .. other.port ..
        ": address already in use\n", err)
    end
    assert.equal("Hello World", http.get(other.port, "/").body)
  end)

  it("refuses a second master on the same address: the first keeps every connection", function()
    local first = cleanup.server(APP, { "--workers", "2" })
    local pids = set(wait_ready(first, 2))
    for _, listen in ipairs({ "127.0.0.1:" .. first.port, "localhost:" .. first.port,
                              ":" .. first.port }) do
      local out, err, code = server.run({ "--workers", "2", "--listen", listen, APP }, { timeout = 15 })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.matches("^owinlua: cannot listen on " .. listen:gsub("%.", "%%.") ..
        ": address already in use\n$", err)
    end
    for _ = 1, 20 do
      local pid = who(first.port)
      assert.truthy(pids[pid], "answered by a process that is not the first master's worker")
    end
  end)

  it("listens only where asked, in the master and every worker", function()
    local srv = cleanup.server(APP, { "--workers", "2", "--listen", "localhost:0" })
    local second = srv.proc:read("l")
    local third = srv.proc:read("l")
    local port = tonumber(second:match("^listening on http://127%.0%.0%.1:(%d+)$"))
    assert.truthy(port, second)
    assert.equal("listening on http://[::1]:" .. port, third)
    local pids = wait_ready(srv, 2)
    local want = { "127.0.0.1:" .. srv.port, "127.0.0.1:" .. port, "[::1]:" .. port }
    table.sort(want)
    assert.same(want, server.listening({ srv.pid }))
    for _, pid in ipairs(pids) do assert.same(want, server.listening({ pid })) end
  end)

  it("gives request ids unique across workers and restarts, and names the worker in every log line", function()
    local srv = cleanup.server(APP, { "--workers", "2" })
    wait_ready(srv, 2)
    local ids, boot, seen = {}, nil, {}
    local function collect(gen)
      assert.truthy(server.eventually(function()
        local res = http.get(srv.port, "/id")
        local w, id = res.body:match("^(%d) (%S+)$")
        assert.is_nil(ids[id], "request id repeated: " .. tostring(id))
        ids[id] = w
        local b, ww, g = id:match("^([0-9a-z]+)%-(%d+)%.(%d+)%-%d+$")
        assert.equal(w, ww, id)
        assert.equal(gen, tonumber(g), id)
        boot = boot or b
        assert.equal(boot, b, id)
        seen[gen .. w] = true
        return seen[gen .. "1"] and seen[gen .. "2"]
      end, 10), "both workers should answer")
    end
    collect(1)
    srv:signal("HUP")
    assert.truthy(server.eventually(function()
      return srv:stderr():find("restart done", 1, true)
    end, 15))
    collect(2)
    local log = srv:stderr()
    for id, w in pairs(ids) do
      assert.truthy(log:find("worker " .. w .. ": [" .. id .. "] id " .. id, 1, true), id)
    end
    for line in log:gmatch("[^\n]+") do
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+Z %[%a+%] (%a+ ?%d*): ", line)
      local who_ = line:match("^%S+ %[%a+%] (%a+)")
      assert.truthy(who_ == "master" or who_ == "worker", line)
    end
    -- another boot, another tag
    local other = cleanup.server(APP, { "--workers", "2" })
    wait_ready(other, 2)
    local id = http.get(other.port, "/id").body:match(" (%S+)$")
    assert.not_equal(boot, id:match("^[0-9a-z]+"))
  end)

  it("exits 1 with the app's error when no worker can start", function()
    local t0 = socket.gettime()
    local out, err, code = server.run({ "--workers", "2", "--listen", "127.0.0.1:0",
                                        "spec/fixtures/load_error.lua" })
    assert.equal(1, code)
    assert.matches("listening on", out, 1, true)
    assert.matches("%[error%] worker %d: error while loading spec/fixtures/load_error%.lua", err)
    assert.matches("the app cannot start", err, 1, true)
    assert.truthy(socket.gettime() - t0 < 10)
  end)

  it("stops gracefully on SIGTERM: a request in flight completes, exit 0", function()
    local srv = server.start(APP, { "--workers", "2" })
    local pids = wait_ready(srv, 2)
    local c = assert(http.connect(srv.port))
    c:send("GET /slow?s=0.6 HTTP/1.1\r\nHost: h\r\n\r\n")
    socket.sleep(0.2)
    local ok, how, code = srv:stop("TERM")
    local res = assert(c:read_response())
    assert.equal(200, res.status)
    assert.is_true(ok, how .. " " .. tostring(code))
    for _, pid in ipairs(pids) do assert.is_false(alive(pid)) end
  end)

  it("workers stop when the master is killed", function()
    local srv = server.start(APP, { "--workers", "2" })
    local pids = wait_ready(srv, 2)
    srv:stop("KILL")
    assert.truthy(server.eventually(function()
      return not alive(pids[1]) and not alive(pids[2])
    end, 10))
  end)
end)

describe("#e2e --reload", function()
  after_each(cleanup.run)

  it("restarts the worker when a .lua file under the app's directory changes", function()
    local dir = tempdir({ ["app.lua"] = RELOAD_APP, ["lib/msg.lua"] = 'return "one"' })
    local srv = cleanup.server(dir .. "/app.lua", { "--reload" })
    assert.truthy(server.eventually(function() return body(srv.port) == "one" end, 10))
    write(dir .. "/lib/msg.lua", 'return "two"')      -- a module in a subdirectory
    assert.truthy(server.eventually(function() return body(srv.port) == "two" end, 15))
    write(dir .. "/app.lua", RELOAD_APP:gsub("write%(msg%)", 'write(msg .. "!")'))
    assert.truthy(server.eventually(function() return body(srv.port) == "two!" end, 15))
    write(dir .. "/notes.txt", "not code")           -- no restart for this
    socket.sleep(0.5)
    local _, n = srv:stderr():gsub("restarting the workers", "")
    assert.equal(2, n)
  end)

  it("keeps serving the old code while the new one fails to load", function()
    local dir = tempdir({ ["app.lua"] = RELOAD_APP, ["lib/msg.lua"] = 'return "one"' })
    local srv = cleanup.server(dir .. "/app.lua", { "--reload" })
    assert.truthy(server.eventually(function() return body(srv.port) == "one" end, 10))
    write(dir .. "/lib/msg.lua", "error('half-edited')")
    assert.truthy(server.eventually(function()
      return srv:stderr():find("restart abandoned", 1, true)
    end, 15))
    assert.matches("half-edited", srv:stderr(), 1, true)
    assert.equal("one", body(srv.port))
    write(dir .. "/lib/msg.lua", 'return "fixed"')
    assert.truthy(server.eventually(function() return body(srv.port) == "fixed" end, 15))
  end)

  it("waits for a fix when the app fails to load at start", function()
    local dir = tempdir({ ["app.lua"] = RELOAD_APP, ["lib/msg.lua"] = "return (" })
    local srv = cleanup.server(dir .. "/app.lua", { "--reload" })
    assert.truthy(server.eventually(function()
      return srv:stderr():find("waiting for a change", 1, true)
    end, 10))
    assert.truthy(srv:alive())
    write(dir .. "/lib/msg.lua", 'return "up"')
    assert.truthy(server.eventually(function() return body(srv.port) == "up" end, 15))
  end)
end)
