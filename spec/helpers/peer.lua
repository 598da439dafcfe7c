-- Starts spec/helpers/peer_main.lua (a scripted TCP peer, see there) as a
-- separate process, and stops it by its pid.
--
--   local peer = require("helpers.peer")
--   local p = peer.start()            -- or peer.start("acceptor")
--   p.port, p.hole, p.pid
--   p:stats()                         -> { open=, accepted=, sink= }
--   p:stop()
local socket = require("socket")
local ports = require("helpers.ports")
local server = require("helpers.server")

local M = {}

local LUA = os.getenv("LUA") or "lua5.4"
local MAIN = "spec/helpers/peer_main.lua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Peer = {}
Peer.__index = Peer

function Peer:stats()
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", self.port))
  assert(c:send("STATS\n"))
  local line = assert(c:receive("*l"))
  c:close()
  local t = {}
  for k, v in line:gmatch("(%w+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

function Peer:log()
  local f = io.open(self.dir .. "/peer.log", "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function Peer:stop()
  if self.stopped then return end
  self.stopped = true
  ports.kill(self.pid, self.proc, 2)
  ports.rmdir(self.dir)
end

function M.start(kind)
  local dir = ports.tmpdir()
  local portfile = dir .. "/port"
  local proc = assert(io.popen(string.format("echo $$; exec %s %s %s %s >%s 2>&1 </dev/null",
    LUA, q(MAIN), q(portfile), q(kind or "script"), q(dir .. "/peer.log")), "r"))
  local self = setmetatable({ pid = tonumber(proc:read("l")), proc = proc, dir = dir }, Peer)
  local deadline = socket.gettime() + 10
  local line
  repeat
    local f = io.open(portfile)
    if f then
      line = f:read("l")
      f:close()
    else
      socket.sleep(0.02)
    end
  until line or socket.gettime() > deadline or not server.alive(self.pid)
  if not line then
    local log = self:log()
    self:stop()
    error("the peer did not start:\n" .. log, 2)
  end
  local port, hole = line:match("^(%d+) ?(%d*)$")
  self.port, self.hole = tonumber(port), tonumber(hole)
  return self
end

return M
