-- A multi-room chat: WebSocket fan-out under back-pressure.
-- Run with: owinlua apps/chat.lua
--   websocat ws://127.0.0.1:8080/room/lobby     (in two terminals; type lines)
--   curl http://127.0.0.1:8080/rooms            -> "lobby 2"
--
-- Every text message a member sends goes to each member of its room, the
-- sender included, as "m7: text" (m7 is the sender's member id).
--
-- Several instances sharing rooms: with CHAT_REDIS=host:port (or
-- unix:/path) each instance also publishes every line on the Redis channel
-- "chat:<room>" and delivers what the others publish there:
--   CHAT_REDIS=127.0.0.1:6379 owinlua --listen 127.0.0.1:8080 apps/chat.lua &
--   CHAT_REDIS=127.0.0.1:6379 owinlua --listen 127.0.0.1:8081 apps/chat.lua &
-- A member on 8080 and one on 8081 in the same room see each other's lines.
-- Each envelope starts with the sending instance's id, and an instance drops
-- its own (it delivered them locally already).  Each worker keeps one
-- subscriber connection (PSUBSCRIBE chat:*), in a thread started by a timer
-- at start-up; when it breaks, the thread reconnects with a backoff from
-- 0.1 s doubling to 5 s and subscribes again.  Delivery between instances is
-- at most once: a line published while an instance's subscriber is
-- reconnecting is not seen there, and Redis drops messages for subscribers
-- that fall too far behind.  Member ids carry the instance id.  /rooms lists
-- this instance's members.  A member
-- leaves when its socket closes or its CallCancelled token fires (the
-- connection dropped, or the server is shutting down).
--
-- Back-pressure.  ws:send queues the frame on the recipient's connection
-- and then, while more than 256 KiB is unsent there, yields the coroutine
-- that called it (the sender's, not the recipient's) until the recipient
-- has read it down to 64 KiB.  The server goes on serving everyone else,
-- but a plain `for m in pairs(members) do m.ws:send(line) end` would hold
-- that sender's loop on the slowest member, and every other sender that
-- reaches the same member would queue up behind it too.  deliver() keeps a
-- room moving: members that are closing or closed are skipped, and at most
-- one sender waits on a given member at a time.  The others put the line
-- in that member's backlog, which the waiting sender sends once the socket
-- drains; when the backlog is full the line is dropped for that member
-- only.  The one waiting sender is held until the slow member reads, or
-- until the server drops it: a peer that reads nothing answers no ping
-- (--ws-ping-interval, --ws-ping-timeout), and then ws:send returns nil.
local websocket = require("owin.websocket")
local REDIS = os.getenv("CHAT_REDIS")

local concat, remove, sort = table.concat, table.remove, table.sort

local BACKLOG = 100           -- lines kept for a member that is behind

local rooms = {}              -- name -> { members = { [member] = true }, n = count }
local last_id = 0


-- Sends line to member m, or backlogs or drops it (see above).
local function deliver(m, line)
  if m.ws:state() ~= "open" then return end      -- leaving: skip
  local backlog = m.backlog
  if m.busy then                                 -- a sender already waits on m
    if #backlog < BACKLOG then
      backlog[#backlog + 1] = line
    else
      m.dropped = m.dropped + 1
    end
    return
  end
  m.busy = true
  local ok = m.ws:send(line)                     -- may yield while m is behind
  while ok and #backlog > 0 do
    ok = m.ws:send(remove(backlog, 1))
  end
  m.busy = false
end


-- Delivers line to this instance's members of room.
local function deliver_local(room, line)
  -- deliver() may yield, and members may join or leave meanwhile: walk a
  -- copy (adding keys to a table that pairs() is walking is an error).
  local list = {}
  for m in pairs(room.members) do list[#list + 1] = m end
  for i = 1, #list do deliver(list[i], line) end
end


-- {====== sharing rooms between instances through Redis pub/sub

-- This instance's id: random bytes from the kernel (two instances started in
-- the same second may seed math.random alike).
local function instance_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(6)
  if f then f:close() end
  if not bytes or #bytes < 6 then
    return string.format("%06x%06x", math.random(0, 0xffffff), math.random(0, 0xffffff))
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
local INSTANCE = instance_id()
local publish = function() end

if REDIS then
  require("owin.socket").install()
  local redis = require("redis")
  local host, port = REDIS:match("^(.+):(%d+)$")
  if REDIS:sub(1, 5) == "unix:" then host, port = REDIS, nil end
  assert(host, "CHAT_REDIS must be host:port or unix:/path, got " .. REDIS)
  port = port and tonumber(port)

  local function client(read_timeout)
    local sock = owin.tcp()
    sock:settimeouts(2, 2, read_timeout)
    local ok, err = sock:connect(host, port)
    if not ok then return nil, err end
    return redis.connect({ socket = sock }), sock
  end

  -- PUBLISH over a pooled connection; a failure loses the line for the
  -- other instances only (at most once).
  publish = function(name, line)
    local r, sock = client(2)
    if not r then return end
    local ok = pcall(r.publish, r, "chat:" .. name, INSTANCE .. "\t" .. line)
    if ok then sock:setkeepalive(60, 16) else sock:close() end
  end

  -- The subscriber: one per worker, for the life of the worker.
  local function subscribe(premature)
    local backoff = 0.1
    while not premature do
      local r, err = client(-1)             -- no read timeout: it waits for messages
      if r then
        backoff = 0.1
        local ok, perr = pcall(function()
          for msg in r:pubsub({ psubscribe = "chat:*" }) do
            if msg.kind == "pmessage" then
              local from, line = msg.payload:match("^([^\t]*)\t(.*)$")
              local room = rooms[msg.channel:sub(6)]
              if from and from ~= INSTANCE and room then deliver_local(room, line) end
            end
          end
        end)
        err = ok and "the subscription ended" or perr
      end
      owin.log.warn("chat: Redis subscriber: %s; again in %.1f s", tostring(err), backoff)
      if not owin.sleep(backoff) then return end   -- cancelled: the server stops
      backoff = math.min(backoff * 2, 5)
    end
  end
  owin.timer.at(0, subscribe)
end


local function broadcast(room, name, line)
  deliver_local(room, line)
  publish(name, line)
end
-- }======


local function join(env, name)
  local ws = websocket.accept(env)               -- 101 goes out now
  last_id = last_id + 1
  local me = { id = (REDIS and INSTANCE:sub(1, 4) .. "-m" or "m") .. last_id, ws = ws, backlog = {}, dropped = 0 }
  local room = rooms[name]
  if not room then
    room = { members = {}, n = 0 }
    rooms[name] = room
  end
  room.members[me] = true
  room.n = room.n + 1

  local function leave()                         -- runs once, whichever comes first
    if not room.members[me] then return end
    room.members[me] = nil
    room.n = room.n - 1
    if room.n == 0 and rooms[name] == room then rooms[name] = nil end
  end
  ws:cancelled():register(leave)

  for msg, kind in ws:messages() do              -- ends when the socket closes
    if kind == "text" then broadcast(room, name, me.id .. ": " .. msg) end
  end
  leave()
  if me.dropped > 0 then
    owin.log.info("%s left %s; %d lines dropped for it", me.id, name, me.dropped)
  end
end                                              -- the server ends the close handshake


local function list_rooms(env)
  local names = {}
  for name in pairs(rooms) do names[#names + 1] = name end
  sort(names)
  local lines = {}
  for i, name in ipairs(names) do lines[i] = name .. " " .. rooms[name].n .. "\n" end
  env["owin.ResponseHeaders"]["Content-Type"] = "text/plain"
  env["owin.ResponseBody"]:write(concat(lines))
end


app.run(function(env)
  local path = env["owin.RequestPath"]
  local name = path:match("^/room/([%w_.-]+)$")
  if name and websocket.is_request(env) then return join(env, name) end
  if path == "/rooms" then return list_rooms(env) end
  local headers = env["owin.ResponseHeaders"]
  headers["Content-Type"] = "text/plain"
  if name then
    env["owin.ResponseStatusCode"] = 426          -- Upgrade Required
    headers["Upgrade"] = "websocket"
    env["owin.ResponseBody"]:write("connect with a WebSocket client\n")
  else
    env["owin.ResponseStatusCode"] = 404
    env["owin.ResponseBody"]:write("WebSocket: /room/<name>; room list: GET /rooms\n")
  end
end)
