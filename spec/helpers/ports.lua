-- Free loopback TCP ports and temporary directories for the services a spec
-- starts (redis, a scripted peer).
--
--   local ports = require("helpers.ports")
--   ports.free()           -> a port nothing listens on right now
--   ports.tmpdir()         -> a fresh directory (mktemp -d)
--   ports.rmdir(path)      -> removes it and everything in it
local socket = require("socket")

local M = {}

-- Binds 127.0.0.1:0, reads the port the kernel chose, closes the socket.
-- Nothing listens there afterwards, so a connect to it is refused (until
-- something else takes the port, which the kernel avoids for a while).
function M.free()
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/owinlua-spec.XXXXXX"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir:match("^/tmp/owinlua%-spec%.%w+$"), "mktemp -d failed")
  return dir
end

function M.rmdir(dir)
  if dir and dir:match("^/tmp/owinlua%-spec%.%w+$") then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

-- Sends sig to pid, waits up to `grace` seconds for it to go, then SIGKILL.
-- proc (an io.popen handle whose shell exec'd into pid) is closed (reaped).
function M.kill(pid, proc, grace)
  local server = require("helpers.server")
  if pid and server.alive(pid) then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + (grace or 2)
    while server.alive(pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if server.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  if proc then pcall(proc.close, proc) end
end

return M
