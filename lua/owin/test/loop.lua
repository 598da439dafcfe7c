-- owin.test.loop: the test host's event loop.  Tasks are coroutines (a
-- request, the socket it may become, a thread, a timer's run, a fake
-- peer's connection, the app script at start-up); a task waits by yielding
-- a private marker, and whatever it waits for (a timer, request body
-- bytes, a WebSocket message, socket bytes) queues it again.  The loop runs
-- queued work until a condition holds or nothing is left; then it jumps
-- the virtual clock to the next timer, so owin.sleep(30) takes no real
-- time.
--
-- A task yielding anything else (coroutine.yield in app code) is an app
-- error, as in the server.
--
-- Waits inside the app's own coroutines.  As in the server
-- (src/runtime/task.c), a wait in a coroutine that the app (or a library
-- such as lua-redis) created and resumed from a task must reach the loop
-- and come back to the same coroutine.  M.coroutine has the replacements
-- for coroutine.resume, wrap, status and close that owin.test installs:
-- when the marker comes out of the coroutine they resumed they yield it on,
-- up to the task, and resume that coroutine again when the task is woken.

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)

local coroutine_create, coroutine_resume, coroutine_status, coroutine_yield, coroutine_close,
      coroutine_running, coroutine_isyieldable =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield, coroutine.close,
  coroutine.running, coroutine.isyieldable
local setmetatable, type, pcall, error = setmetatable, type, pcall, error
local table_pack, table_unpack = table.pack, table.unpack

local M = {}

local WAIT = setmetatable({}, { __name = "owin.test.wait" })

-- coroutine -> task, for every live task of every loop
local TASKS = setmetatable({}, { __mode = "k" })
M.TASKS = TASKS

-- An app's coroutine -> the coroutine that resumed it through
-- M.coroutine.resume or wrap, while it runs or waits.
local CHAIN = setmetatable({}, { __mode = "k" })
-- An app's coroutines suspended in a wait of the test host.
local WAITING = setmetatable({}, { __mode = "k" })

local MAX_STEPS = 10000000

-- The loop that is running now (owin.now reads its clock outside tasks).
M.active = nil

local Loop = {}
Loop.__index = Loop

function M.new()
  return setmetatable({ now = 0.0, queue = {}, qh = 1, qt = 0, timers = {}, seq = 0,
                        running = false }, Loop)
end

-- Runs fn(...) from the loop, after what is queued already.
function Loop:defer(fn, a, b)
  local qt = self.qt + 1
  self.qt = qt
  self.queue[qt] = { fn, a, b }
end

-- Runs fn after `delay` virtual seconds; returns the timer (timer.fn = nil
-- cancels it).
function Loop:after(delay, fn)
  self.seq = self.seq + 1
  local t = { at = self.now + delay, seq = self.seq, fn = fn }
  self.timers[#self.timers + 1] = t
  return t
end

local function next_timer(self)
  local timers, best, bi = self.timers, nil, nil
  local i = 1
  while i <= #timers do
    local t = timers[i]
    if t.fn == nil then
      timers[i] = timers[#timers]
      timers[#timers] = nil
    else
      if best == nil or t.at < best.at or (t.at == best.at and t.seq < best.seq) then
        best, bi = t, i
      end
      i = i + 1
    end
  end
  return best, bi
end

-- {====== tasks

-- A task ends: on_end(task, ok, err, traceback, results) then its
-- coroutine closes (to-be-closed variables of a failed task run last, as
-- in the server).  results: table.pack of what its function returned.
local function finish(task, ok, err, results)
  task.dead = true
  local co = task.co
  local tb
  if not ok then
    local msg = type(err) == "string" and err or "(error object is not a string)"
    tb = debug.traceback(co, msg)
  end
  task.on_end(task, ok, err, tb, results)
  if not ok then coroutine_close(co) end
  TASKS[co] = nil
end

local function resumed(task, ok, ...)
  local co = task.co
  if not ok then
    finish(task, false, (...))
  elseif coroutine_status(co) == "dead" then
    finish(task, true, nil, table_pack(...))
  elseif (...) ~= WAIT or task.wait == nil then
    task.wait = nil
    finish(task, false, check.STRAY_YIELD)
  end
end

local function resume(task)
  if task.dead then return end
  task.wait, task.queued, task.unwait = nil, false, nil
  local arg = task.arg
  task.arg = nil
  return resumed(task, coroutine_resume(task.co, arg))
end

-- Makes a task of fn(arg), not started; on_end(task, ok, err, traceback,
-- results) runs when it ends.  owner: the request it serves, if any.
function Loop:task(fn, arg, on_end, owner)
  local task = { co = coroutine_create(fn), loop = self, on_end = on_end, owner = owner,
                 arg = arg, queued = false }
  TASKS[task.co] = task
  return task
end

-- Starts fn(arg) as a task, from the loop.
function Loop:spawn(fn, arg, on_end, owner)
  local task = self:task(fn, arg, on_end, owner)
  task.queued = true
  self:defer(resume, task)
  return task
end

-- Runs a task made by Loop:task now, until its first wait or its end
-- (owin.spawn's thread, a timer's run), from whatever coroutine calls.
function Loop:run_now(task)
  resume(task)
end

-- In the task's coroutine (or one of the app's coroutines it resumed):
-- waits until woken.  what names the wait ("sleep", "read", "ws", "sock",
-- "thread"); arm(ticket), if given, registers the wake-up.  unwait (true
-- or a function that forgets the wake-up) makes the wait one that a
-- cancellation interrupts (Loop:interrupt).
function Loop:wait(task, what, arm, unwait)
  local ticket = {}
  task.wait, task.ticket, task.unwait, task.spins = what, ticket, unwait, 0
  if arm then arm(ticket) end
  return coroutine_yield(WAIT)
end

-- Queues a waiting task.  With a ticket, only the wait it was made for.
function Loop:wake(task, ticket)
  if task.wait == nil or task.queued or task.dead then return end
  if ticket ~= nil and task.ticket ~= ticket then return end
  task.queued = true
  self:defer(resume, task)
end

-- Ends an interruptible wait early (src/runtime/task.c's
-- owl_task_interrupt): the task is queued and its wait, seeing the task
-- cancelled, returns "cancelled".  Other waits see it at their next wait.
function Loop:interrupt(task)
  if task.dead or task.wait == nil or not task.unwait then return end
  local unwait = task.unwait
  task.unwait = nil
  if type(unwait) == "function" then unwait(task) end
  self:wake(task, task.ticket)
end

-- Ends a waiting task now without resuming it (thread:kill):
-- on_end(task, false, why), then its coroutine closes.
function Loop:kill(task, why)
  if task.dead then return end
  local unwait = task.unwait
  if type(unwait) == "function" then unwait(task) end
  task.wait, task.unwait = nil, nil
  task.dead = true
  task.on_end(task, false, why)
  coroutine_close(task.co)
  TASKS[task.co] = nil
end

function Loop:sleep(task, s)
  local timer
  return self:wait(task, "sleep", function(ticket)
    timer = self:after(s, function() self:wake(task, ticket) end)
  end, function() timer.fn = nil end)
end
-- }======

-- {====== the task of the running coroutine

-- Walks from co up the app's coroutines to the task: the task, and
-- whether every coroutine on the way can yield.
local function find(co)
  local yieldable = true
  while true do
    if not coroutine_isyieldable(co) then yieldable = false end
    local t = TASKS[co]
    if t then return t, yieldable end
    co = CHAIN[co]
    if co == nil then return nil, false end
  end
end

-- The task the running coroutine serves, or nil.
function M.current()
  local co = coroutine_running()
  local t = TASKS[co]
  if t then return t end
  return (find(co))
end

-- The task that can wait in the running coroutine, or nil.
function M.can_wait()
  local t, yieldable = find(coroutine_running())
  if yieldable then return t end
  return nil
end

-- The task that can wait in the running coroutine; raises the server's
-- "cannot wait here" error for `what` (the function's name) otherwise.
function M.waiter(what)
  local t, yieldable = find(coroutine_running())
  if t and yieldable then return t end
  if t == nil then
    check.raise(what .. ": cannot wait here: not in a coroutine the server runs " ..
      "(a request, a thread, a timer or the app script)")
  end
  check.raise(what .. ": cannot wait here: a C function that cannot yield is in the way " ..
    "(require, a table.sort comparator, a gsub callback, a metamethod called from C, ...)")
end
-- }======

-- {====== the coroutine functions apps get (owin.test installs them)

-- Resumes co; while a wait of the test host comes out of it, yields the
-- marker on (up to the task) and resumes co again with what woke it.
local function chain_resume(co, ...)
  if WAITING[co] then return false, "cannot resume non-suspended coroutine" end
  CHAIN[co] = coroutine_running()
  local r = table_pack(coroutine_resume(co, ...))
  while r[1] and r.n == 2 and r[2] == WAIT and coroutine_status(co) == "suspended" do
    WAITING[co] = true
    local v = coroutine_yield(WAIT)
    WAITING[co] = nil
    r = table_pack(coroutine_resume(co, v))
  end
  CHAIN[co] = nil
  return table_unpack(r, 1, r.n)
end

local co_funcs = {}
M.coroutine = co_funcs

function co_funcs.resume(co, ...)
  if type(co) ~= "thread" then check.typeerror(1, "coroutine", co) end
  return chain_resume(co, ...)
end

local function wrap_answer(co, ok, ...)
  if ok then return ... end
  local e = ...
  if coroutine_status(co) == "dead" then       -- an error in the body: close it
    local closed, ce = coroutine_close(co)
    if not closed then e = ce end
  end
  error(e, 2)                                  -- a string gets the caller's position
end

function co_funcs.wrap(f)
  if type(f) ~= "function" then check.typeerror(1, "function", f) end
  local co = coroutine_create(f)
  return function(...)
    return wrap_answer(co, chain_resume(co, ...))
  end
end

-- A coroutine suspended in a wait is "normal": it cannot be resumed from
-- elsewhere, as if the wait were a function call still running.
function co_funcs.status(co)
  if WAITING[co] then return "normal" end
  return coroutine_status(co)
end

function co_funcs.close(co)
  if WAITING[co] then check.raise("cannot close a normal coroutine") end
  return coroutine_close(co)
end

-- Puts the functions above in the global `coroutine` table (once).
local installed = false
function M.install_coroutines()
  if installed then return end
  installed = true
  coroutine.resume, coroutine.wrap = co_funcs.resume, co_funcs.wrap
  coroutine.status, coroutine.close = co_funcs.status, co_funcs.close
end
-- }======

local function run(self, done, deadline)
  local steps = 0
  local queue = self.queue
  while true do
    if done and done() then return true end
    if self.qh <= self.qt then
      local qh = self.qh
      local item = queue[qh]
      queue[qh] = nil
      self.qh = qh + 1
      item[1](item[2], item[3])
      steps = steps + 1
      if steps > MAX_STEPS then
        error("owin.test: the app keeps running without waiting for anything " ..
              "(an endless loop of owin.sleep(0)?)", 0)
      end
    else
      self.qh, self.qt = 1, 0
      local t, i = next_timer(self)
      if t == nil then return false, "idle" end
      if deadline and t.at > deadline then
        if deadline > self.now then self.now = deadline end
        return false, "timeout"
      end
      self.timers[i] = self.timers[#self.timers]
      self.timers[#self.timers] = nil
      if t.at > self.now then self.now = t.at end
      local fn = t.fn
      t.fn = nil
      fn()
    end
  end
end

-- Runs until done() is true (true), nothing is left to run (false,
-- "idle"), or the next timer lies past `deadline` (false, "timeout"; the
-- clock then reads deadline).  Without done, runs until idle.
function Loop:run(done, deadline)
  if self.running then
    error("owin.test: a client call cannot run inside another one " ..
          "(from the app, a body function or a callback)", 3)
  end
  self.running = true
  local prev = M.active
  M.active = self
  local ok, a, b = pcall(run, self, done, deadline)
  self.running = false
  M.active = prev
  if not ok then error(a, 0) end
  return a, b
end

-- Calls fn(...) with this loop active (owin.now, timers and threads
-- started by token callbacks the test fires from outside the loop).
function Loop:call(fn, ...)
  local prev = M.active
  M.active = self
  local r = table_pack(pcall(fn, ...))
  M.active = prev
  if not r[1] then error(r[2], 0) end
  return table_unpack(r, 2, r.n)
end

return M
