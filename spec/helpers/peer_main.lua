-- A scripted TCP peer for the cosocket specs, run as its own process (busted
-- is single-threaded, and the peer must act while the server waits on it):
--
--   lua5.4 spec/helpers/peer_main.lua PORTFILE [script|acceptor]
--
-- It listens on 127.0.0.1:0 and writes "PORT HOLEPORT" to PORTFILE. HOLEPORT
-- is a listener whose accept queue is full (backlog 1, filled by the peer
-- itself, never accepted), so a connect there gets no answer: a connect
-- timeout without leaving the loopback.
--
-- "script" (the default): every connection starts with a line naming what
-- the peer does with it (any other first line is echoed, then ECHO):
--   ECHO      echoes each line; inside it, the lines STATS (answers the
--             counters), TWO (answers "x\ny\n" in one write), CLOSEIN
--             (answers "ok", closes 0.1 s later), PUSHIN (answers "ok",
--             writes "unasked" 0.1 s later), QUIT (closes)
--   HELLO     writes "line1\r\nli\rne2\nabcdefghij", then "tail", closes
--   PARTIAL   writes "abc"; after a line, "def"; after a line, "ghi\n"; ECHO
--   CLOSEMID  writes "partial data" and closes
--   SPLIT     writes "alpha--XYZ--beta--X--XYZ--gamma---XYZ--tail\n" in
--             pieces 50 ms apart (the pattern split across writes, and
--             near-misses of it just before it); ECHO
--   ANY       writes "hello", 300 ms later "world"; ECHO
--   SINK      reads and discards everything, never writes
--   HOLD      never reads, never writes (its receive buffer fills up)
--   STATS     answers "open=N accepted=N sink=N" (this connection left out)
-- open: connections that named a mode and are not closed yet (HOLD ones stay
-- open, since the peer never reads them); accepted: all that named a mode.
--
-- "acceptor": accepts and closes each connection at once, as fast as it can.
--
-- Either way it exits by itself after $PEER_LIFETIME seconds (default 900).
local socket = require("socket")

local portfile, kind = arg[1], arg[2] or "script"
local LIFETIME = tonumber(os.getenv("PEER_LIFETIME") or "") or 900
local started = socket.gettime()

local function publish(s)
  local f = assert(io.open(portfile .. ".tmp", "w"))
  f:write(s, "\n")
  f:close()
  assert(os.rename(portfile .. ".tmp", portfile))
end

local function listener(backlog)
  local s = assert(socket.tcp())
  s:setoption("reuseaddr", true)        -- refused on some sandboxes: not needed
  assert(s:bind("127.0.0.1", 0))
  assert(s:listen(backlog))
  local _, port = s:getsockname()
  return s, tonumber(port)
end

if kind == "acceptor" then
  local srv, port = listener(1024)
  publish(tostring(port))
  srv:settimeout(1)
  while socket.gettime() - started < LIFETIME do
    local c = srv:accept()
    if c then c:close() end
  end
  os.exit(0)
end

local srv, port = listener(128)
srv:settimeout(0)
local hole, hole_port = listener(1)   -- luacheck: ignore (kept open, never accepted)
local fillers = {}                    -- luacheck: ignore (they hold the backlog full)
for i = 1, 3 do
  local f = socket.tcp()
  f:settimeout(0)
  f:connect("127.0.0.1", hole_port)
  fillers[i] = f
end
socket.sleep(0.05)
publish(port .. " " .. hole_port)

local stats = { open = 0, accepted = 0, sink = 0 }
local conns = {}      -- socket -> state

local function now() return socket.gettime() end

-- Inside a connection's coroutine:
local function readline(st)
  while true do
    local line, err, partial = st.sock:receive("*l", st.pending)
    if line then
      st.pending = nil
      return line
    end
    if err == "closed" then return nil end
    st.pending = partial
    coroutine.yield("read")
  end
end

local function write(st, data)
  st.sock:settimeout(2)
  local ok = st.sock:send(data)
  st.sock:settimeout(0)
  return ok
end

local function pause(st, s)
  st.wake = now() + s
  coroutine.yield("sleep")
  st.wake = nil
end

local function stats_line(self_counted)
  local adj = self_counted and 1 or 0
  return string.format("open=%d accepted=%d sink=%d\n", stats.open - adj,
    stats.accepted - adj, stats.sink)
end

local function echo_loop(st)
  while true do
    local line = readline(st)
    if not line then return end
    if line == "STATS" then write(st, stats_line(false))
    elseif line == "TWO" then write(st, "x\ny\n")
    elseif line == "CLOSEIN" then
      write(st, "ok\n")
      pause(st, 0.1)
      return
    elseif line == "PUSHIN" then
      write(st, "ok\n")
      pause(st, 0.1)
      write(st, "unasked\n")
    elseif line == "QUIT" then return
    else write(st, line .. "\n") end
  end
end

local modes = {}
modes.ECHO = echo_loop
function modes.HELLO(st)
  write(st, "line1\r\nli\rne2\nabcdefghij")
  pause(st, 0.05)
  write(st, "tail")
end
function modes.PARTIAL(st)
  write(st, "abc")
  if not readline(st) then return end
  write(st, "def")
  if not readline(st) then return end
  write(st, "ghi\n")
  echo_loop(st)
end
function modes.CLOSEMID(st) write(st, "partial data") end
function modes.SPLIT(st)
  for _, piece in ipairs({ "alpha-", "-XY", "Z--be", "ta--X-", "-XYZ--gam", "ma---XY", "Z--tail\n" }) do
    write(st, piece)
    pause(st, 0.05)
  end
  echo_loop(st)
end
function modes.ANY(st)
  write(st, "hello")
  pause(st, 0.3)
  write(st, "world")
  echo_loop(st)
end
function modes.SINK(st)
  stats.sink = stats.sink + 1
  st.sink = true
  while true do
    local data, err, partial = st.sock:receive(65536)
    if err == "closed" then return end
    if not data and (partial == nil or partial == "") then coroutine.yield("read") end
  end
end
function modes.HOLD(st)
  coroutine.yield("hold")       -- never resumed
end

local function handle(st)
  local mode = readline(st)
  if not mode then return end
  if mode == "STATS" then
    write(st, stats_line(false))
    return
  end
  st.counted = true
  stats.open = stats.open + 1
  stats.accepted = stats.accepted + 1
  local f = modes[mode]
  if f then return f(st) end
  write(st, mode .. "\n")
  return echo_loop(st)
end

local function close(st)
  if st.closed then return end
  st.closed = true
  st.sock:close()
  conns[st.sock] = nil
  if st.counted then stats.open = stats.open - 1 end
  if st.sink then stats.sink = stats.sink - 1 end
end

local function resume(st)
  local ok, what = coroutine.resume(st.co, st)
  if not ok then
    io.stderr:write("peer: ", tostring(what), "\n")
    close(st)
  elseif coroutine.status(st.co) == "dead" then
    close(st)
  else
    st.wait = what
  end
end

while now() - started < LIFETIME do
  local readers, timeout = { srv }, 1
  for s, st in pairs(conns) do
    if st.wait == "read" then readers[#readers + 1] = s end
    if st.wait == "sleep" then timeout = math.min(timeout, math.max(0, st.wake - now())) end
  end
  local ready = socket.select(readers, nil, timeout)
  for _, s in ipairs(ready) do
    if s == srv then
      local c = srv:accept()
      while c do
        c:settimeout(0)
        c:setoption("tcp-nodelay", true)
        local st = { sock = c }
        st.co = coroutine.create(handle)
        conns[c] = st
        resume(st)
        c = srv:accept()
      end
    elseif conns[s] and conns[s].wait == "read" then
      resume(conns[s])
    end
  end
  local t = now()
  for _, st in pairs(conns) do
    if st.wait == "sleep" and st.wake <= t and not st.closed then resume(st) end
  end
end
