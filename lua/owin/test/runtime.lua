-- owin.test.runtime: threads, timers and scopes in the test host, with the
-- server's semantics (src/runtime/thread.c) on the virtual loop:
-- owin.spawn, thread:wait/kill/status, owin.wait, owin.timer.at/every,
-- and what a request owns (its threads and cosockets), cancelled with it.
--
-- A scope is what a request, or a thread of its own (detached, a timer's
-- run, or one that outlived its request), owns: its live threads and the
-- cosockets it opened.  Cancelling it (the client went away) interrupts
-- every wait of its threads, which return "cancelled"; ending it (the
-- request returned) cancels its threads and moves them out.  Tasks with no
-- scope (the app script at start-up, fake peers) own nothing: what they
-- open is shared.
--
-- Per client: client.threads (the app's live threads), client.timers (the
-- pending timers), client.errors (thread and peer errors, as the server
-- logs them).

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)
local loop_m = require("owin.test.loop")

local type, select, setmetatable, getmetatable, tostring, tonumber, ipairs =
  type, select, setmetatable, getmetatable, tostring, tonumber, ipairs
local table_pack, table_unpack, string_format = table.pack, table.unpack, string.format
local raise, typeerror, argerror = check.raise, check.typeerror, check.argerror

local M = {}

-- {====== scopes and cancellation

function M.scope()
  return { threads = {}, socks = {}, cancelled = false }
end

-- Closes the cosockets of a scope (set by owin.test.cosocket).
M.close_socks = function() end

local function remove(list, x)
  for i = #list, 1, -1 do
    if list[i] == x then
      table.remove(list, i)
      return true
    end
  end
  return false
end
M.remove = remove

local function copy(list)
  local c = {}
  for i = 1, #list do c[i] = list[i] end
  return c
end
M.copy = copy

-- Whether the waits of task return "cancelled": it was killed, or its
-- scope was cancelled.
function M.cancelled(task)
  return task.killed == true or (task.scope ~= nil and task.scope.cancelled)
end

-- The client went away: every wait of the scope's threads returns
-- "cancelled" now, and its sockets close.
function M.scope_cancel(sc)
  if sc.cancelled then return end
  sc.cancelled = true
  M.close_socks(sc)
  for _, th in ipairs(copy(sc.threads)) do th.task.loop:interrupt(th.task) end
end

-- What owned the scope ended: its sockets close, its threads live on in
-- scopes of their own, cancelled.
function M.scope_end(sc)
  M.close_socks(sc)
  local threads = sc.threads
  sc.threads = {}
  for _, th in ipairs(threads) do
    th.own.cancelled = true
    th.task.scope = th.own
    th.own.threads[#th.own.threads + 1] = th
    th.task.loop:interrupt(th.task)
  end
end

-- A wait of a cancelled task returns at once.  One that goes on waiting
-- regardless would spin forever in the server; here it is stopped with an
-- error after SPIN_LIMIT such waits in a row, and parked if it catches
-- that too.
local SPIN_LIMIT = 10000

local function park(task)
  task.loop:wait(task, "cancelled")   -- nothing wakes it; thread:kill can end it
end

-- Called by every wait before it waits: true when the task's waits return
-- "cancelled" (the caller returns that).
function M.refused(task)
  if not M.cancelled(task) then return false end
  local n = (task.spins or 0) + 1
  task.spins = n
  if n > SPIN_LIMIT then
    if n > 2 * SPIN_LIMIT then park(task) end
    raise(string_format("owin.test: this task was cancelled and its waits return nil, " ..
      "\"cancelled\" at once, yet it went on waiting %d times: a loop that ignores what " ..
      "owin.sleep or a socket returns spins forever in the server", SPIN_LIMIT))
  end
  return true
end
-- }======

-- {====== errors the server logs

local function id_of(task)
  return task.owner and ("test-" .. task.owner.id) or nil
end

-- Records an error of a thread, a timer's run or a peer in client.errors
-- ({ kind, error, traceback, request_id }), and writes it to stderr as the
-- server logs it when the client has log_errors.
function M.report(client, kind, task, err, traceback)
  local id = id_of(task)
  client.errors[#client.errors + 1] = { kind = kind, error = err, traceback = traceback,
                                        request_id = id }
  if client.opts.log_errors then
    io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), " [error] ", id and ("[" .. id .. "] ") or "",
      kind, " error: ", tostring(traceback or err), "\n")
  end
end
-- }======

-- {====== threads

local Thread = { __name = "owin.Thread" }
local methods = {}
Thread.__index = methods
Thread.__tostring = function(th)
  return string_format("owin.Thread (%s): %p", th.done and "dead" or "alive", th)
end

local function checkthread(n, th)
  if getmetatable(th) ~= Thread then typeerror(n, "owin.Thread", th) end
  return th
end

local function thread_body(th)
  local args = th.args
  th.args = nil
  return th.fn(table_unpack(args, 1, args.n))
end

-- The error message a waiter gets (lua_tostring's, as the server's).
local function message(err)
  if type(err) == "string" then return err end
  if type(err) == "number" then return tostring(err) end
  return "(error object is not a string)"
end

local function thread_end(task, ok, err, traceback, results)
  local th = task.thread
  local client = task.loop.client
  if ok then
    results = results or { n = 0 }
    local r = { true, n = results.n + 1 }
    for i = 1, results.n do r[i + 1] = results[i] end
    th.results = r
  elseif task.killed then
    th.results = { false, "killed", n = 2 }
  else
    th.results = { false, message(err), n = 2 }
    th.traceback = traceback
    M.report(client, task.peer and "peer" or "thread", task, err, traceback)
  end
  th.done = true
  remove(task.scope.threads, th)
  if not task.peer then remove(client.threads, th) end
  M.scope_end(th.own)                     -- what a detached thread owned
  local waiters = th.waiters
  th.waiters = {}
  for i = 1, #waiters do
    local w = waiters[i]
    w[1].loop:wake(w[1], w[2])
  end
end

-- owin.spawn([opts,] fn, ...) -> thread, or nil, "cancelled".  parent: the
-- task spawning it (nil outside tasks); the thread runs now, until its
-- first wait.
function M.spawn(loop, parent, ...)
  local fi, detached = 1, false
  local first = ...
  if type(first) == "table" then
    detached = first.detached and true or false
    fi = 2
  end
  local fn = select(fi, ...)
  if type(fn) ~= "function" then typeerror(fi, "function", fn) end
  local sc = parent and not detached and parent.scope or nil
  if sc and sc.cancelled then return nil, "cancelled" end
  local th = setmetatable({ fn = fn, args = table_pack(select(fi + 1, ...)), waiters = {},
                            own = M.scope(), done = false }, Thread)
  local owner = parent and not detached and parent.owner or nil
  local task = loop:task(thread_body, th, thread_end, owner)
  task.thread = th
  task.peer = parent and parent.peer or nil
  th.task = task
  task.scope = sc or th.own
  local list = task.scope.threads
  list[#list + 1] = th
  if not task.peer then
    local all = loop.client.threads
    all[#all + 1] = th
  end
  loop:run_now(task)
  return th
end

-- Registers task t's wait (ticket) to be woken when th ends; entries of
-- waits that are over go when the list grows.
local function add_waiter(th, t, ticket)
  local w = th.waiters
  if #w >= 64 then
    local live = {}
    for i = 1, #w do
      local e = w[i]
      if e[1].ticket == e[2] and e[1].wait == "thread" and not e[1].dead then live[#live + 1] = e end
    end
    th.waiters, w = live, live
  end
  w[#w + 1] = { t, ticket }
end

local function results(th)
  local r = th.results
  return table_unpack(r, 1, r.n)
end

-- thread:wait() -> true, results... or false, err ("killed", "cancelled",
-- or the message of its error).
function methods.wait(th)
  checkthread(1, th)
  while true do
    if th.done then return results(th) end
    local t = loop_m.waiter("thread:wait")
    if t == th.task then raise("a thread cannot wait for itself") end
    if M.refused(t) then return false, "cancelled" end
    t.loop:wait(t, "thread", function(ticket) add_waiter(th, t, ticket) end, true)
    if not th.done and M.cancelled(t) then return false, "cancelled" end
  end
end

-- owin.wait(t1, t2, ...) -> the first to end: thread, true, results... or
-- thread, false, err; nil, false, "cancelled" when the caller is.
function M.wait_any(...)
  local n = select("#", ...)
  if n == 0 then argerror(1, "a thread expected") end
  local ths = { ... }
  for i = 1, n do checkthread(i, ths[i]) end
  while true do
    for i = 1, n do
      local th = ths[i]
      if th.done then return th, results(th) end
    end
    local t = loop_m.waiter("owin.wait")
    for i = 1, n do
      if ths[i].task == t then raise("a thread cannot wait for itself") end
    end
    if M.refused(t) then return nil, false, "cancelled" end
    t.loop:wait(t, "thread", function(ticket)
      for i = 1, n do add_waiter(ths[i], t, ticket) end
    end, true)
    local any = false
    for i = 1, n do any = any or ths[i].done end
    if not any and M.cancelled(t) then return nil, false, "cancelled" end
  end
end

-- thread:kill() -> true (a waiting thread ends now), or nil, "dead" |
-- "running" (it is the caller, or runs the caller).
function methods.kill(th)
  checkthread(1, th)
  if th.done then return nil, "dead" end
  local task = th.task
  if task.wait == nil then return nil, "running" end
  task.killed = true
  task.loop:kill(task, "killed")
  return true
end

-- thread:status() -> "running" | "waiting" | "dead"
function methods.status(th)
  checkthread(1, th)
  if th.done then return "dead" end
  return th.task.wait ~= nil and "waiting" or "running"
end

-- The graceful timeout passed: every thread of the client is cancelled.
function M.cut(client)
  for _, th in ipairs(copy(client.threads)) do
    th.own.cancelled = true
    if th.task.scope then th.task.scope.cancelled = true end
    th.task.loop:interrupt(th.task)
  end
end
-- }======

-- {====== timers

local Timer = { __name = "owin.Timer" }
local timer_methods = {}
Timer.__index = timer_methods

local function drop(h)
  local client = h.client
  remove(client.timers, h)
  h.entry.fn = nil
  h.entry = nil
end

-- One run: a detached thread calling fn(premature, args...).
local function run(h, premature)
  local args = h.args
  M.spawn(h.client.loop, nil, { detached = true }, h.fn, premature, table_unpack(args, 1, args.n))
end

local function schedule(h, delay)
  h.entry = h.client.loop:after(delay, function()
    if h.every then
      schedule(h, h.every)
    else
      drop(h)
    end
    run(h, false)
  end)
end

local function number_arg(n, v)
  local d = (type(v) == "number" or type(v) == "string") and tonumber(v)
  if not d then typeerror(n, "number", v) end
  return d
end

-- owin.timer.at(delay, fn, ...) / owin.timer.every(interval, fn, ...) ->
-- handle, or nil, err.
function M.timer(client, every, delay, fn, ...)
  delay = number_arg(1, delay)
  if every then
    if not (delay > 0 and delay < 1e9) then argerror(1, "must be a number of seconds above 0") end
  elseif not (delay >= 0 and delay < 1e9) then
    argerror(1, "must be a number of seconds from 0")
  end
  if type(fn) ~= "function" then typeerror(2, "function", fn) end
  if client.stopping then return nil, "the server is stopping" end
  if #client.timers >= client.opts.max_pending_timers then
    return nil, "too many pending timers"
  end
  local h = setmetatable({ client = client, fn = fn, args = table_pack(...),
                           every = every and delay or nil }, Timer)
  client.timers[#client.timers + 1] = h
  schedule(h, delay)
  return h
end

local function checktimer(h)
  if getmetatable(h) ~= Timer then typeerror(1, "owin.Timer", h) end
  return h
end

-- handle:cancel() -> true if it was pending
function timer_methods.cancel(h)
  checktimer(h)
  if h.entry == nil then return false end
  drop(h)
  return true
end

-- handle:pending() -> whether it will still run
function timer_methods.pending(h)
  checktimer(h)
  return h.entry ~= nil
end

-- A graceful stop began: each pending timer runs once now, premature
-- (every timers too), the newest first as in the server; new timers are
-- refused.
function M.stopping(client)
  client.stopping = true
  local timers = client.timers
  while #timers > 0 do
    local h = timers[#timers]
    drop(h)
    run(h, true)
  end
end
-- }======

M.Thread, M.Timer = Thread, Timer
-- {====== owin.semaphore(n) on the virtual loop (src/runtime/sem.c)

local Semaphore = {}
Semaphore.__index = Semaphore
Semaphore.__name = "owin.Semaphore"

function M.semaphore(n)
  n = n == nil and 0 or n
  if math.type(n) ~= "integer" or n < 0 then argerror(1, "the count must be 0 or more") end
  return setmetatable({ n = n, queue = {} }, Semaphore)
end

local function grant(s)
  while s.n > 0 and #s.queue > 0 do
    local w = table.remove(s.queue, 1)
    s.n = s.n - 1
    w.got = true
    w.task.loop:wake(w.task, w.ticket)
  end
end

-- sem:wait([timeout]) -> true, or nil, "timeout" | "cancelled"
function Semaphore:wait(timeout)
  if getmetatable(self) ~= Semaphore then typeerror(1, "owin.Semaphore", self) end
  if timeout ~= nil and type(timeout) ~= "number" then typeerror(2, "number", timeout) end
  if self.n > 0 and #self.queue == 0 then
    self.n = self.n - 1
    return true
  end
  if timeout == 0 then return nil, "timeout" end
  local task = loop_m.waiter("sem:wait")
  if M.refused(task) then return nil, "cancelled" end
  local w = { task = task }
  local timer
  task.loop:wait(task, "sem", function(ticket)
    w.ticket = ticket
    self.queue[#self.queue + 1] = w
    if timeout and timeout > 0 then
      timer = task.loop:after(timeout, function()
        for i, x in ipairs(self.queue) do
          if x == w then table.remove(self.queue, i) break end
        end
        w.timedout = true
        task.loop:wake(task, ticket)
      end)
    end
  end, function()
    for i, x in ipairs(self.queue) do
      if x == w then table.remove(self.queue, i) break end
    end
    if timer then timer.fn = nil end
  end)
  if timer then timer.fn = nil end
  if w.got then
    if M.cancelled(task) then                -- too late: the unit goes on
      self.n = self.n + 1
      grant(self)
      return nil, "cancelled"
    end
    return true
  end
  if w.timedout then return nil, "timeout" end
  return nil, "cancelled"
end

-- sem:post([n])
function Semaphore:post(n)
  n = n == nil and 1 or n
  if math.type(n) ~= "integer" or n < 0 then argerror(1, "the count must be 0 or more") end
  self.n = self.n + n
  grant(self)
end

-- sem:count() -> free units (negative: that many tasks wait)
function Semaphore:count()
  return #self.queue > 0 and -#self.queue or self.n
end
-- }======

return M
