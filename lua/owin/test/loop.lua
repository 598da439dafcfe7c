-- owin.test.loop: the test host's event loop.  Tasks are coroutines (a
-- request, and the socket it may become); a task waits by yielding a
-- private marker, and whatever it waits for (a timer, request body bytes,
-- a WebSocket message) queues it again.  The loop runs queued work until a
-- condition holds or nothing is left; then it jumps the virtual clock to
-- the next timer, so owin.sleep(30) takes no real time.
--
-- A task yielding anything else (coroutine.yield in app code) is an app
-- error, as in the server.

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)

local coroutine_create, coroutine_resume, coroutine_status, coroutine_yield, coroutine_close =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield, coroutine.close
local setmetatable, type, pcall, error = setmetatable, type, pcall, error

local M = {}

local WAIT = setmetatable({}, { __name = "owin.test.wait" })

-- coroutine -> task, for every live task of every loop
local TASKS = setmetatable({}, { __mode = "k" })
M.TASKS = TASKS

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

-- A task ends: on_end(task, ok, err, traceback) then its coroutine closes
-- (to-be-closed variables of a failed task run last, as in the server).
local function finish(task, ok, err)
  task.dead = true
  local co = task.co
  local tb
  if not ok then
    local msg = type(err) == "string" and err or "(error object is not a string)"
    tb = debug.traceback(co, msg)
  end
  task.on_end(task, ok, err, tb)
  if not ok then coroutine_close(co) end
  TASKS[co] = nil
end

local function resume(task)
  if task.dead then return end
  task.wait, task.queued = nil, false
  local co = task.co
  local ok, v = coroutine_resume(co, task.arg)
  task.arg = nil
  if not ok then
    finish(task, false, v)
  elseif coroutine_status(co) == "dead" then
    finish(task, true)
  elseif v ~= WAIT or task.wait == nil then
    task.wait = nil
    finish(task, false, check.STRAY_YIELD)
  end
end

-- Starts fn(arg) as a task; on_end(task, ok, err, traceback) runs when it
-- ends.  owner: what the task serves (the request).
function Loop:spawn(fn, arg, on_end, owner)
  local task = { co = coroutine_create(fn), loop = self, on_end = on_end, owner = owner,
                 arg = arg, queued = true }
  TASKS[task.co] = task
  self:defer(resume, task)
  return task
end

-- In the task's coroutine: waits until woken.  what names the wait
-- ("sleep", "read", "ws"); arm(ticket), if given, registers the wake-up.
function Loop:wait(task, what, arm)
  local ticket = {}
  task.wait, task.ticket = what, ticket
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

function Loop:sleep(task, s)
  return self:wait(task, "sleep", function(ticket)
    self:after(s, function() self:wake(task, ticket) end)
  end)
end

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

return M
