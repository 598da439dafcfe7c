-- owin.pg: PostgreSQL without blocking the worker (docs/pg.md).
--
-- The C primitives (src/client/pg.c, on libpq's asynchronous API) connect,
-- send a query in one of libpq's ways (simple, with parameters, prepare,
-- execute a prepared statement), run COPY and wait for notifications; each
-- wait yields the calling coroutine.  This module adds what users call:
-- query (prepared statements cached per connection), transaction,
-- copy_from/copy_to, listen, and the pool, whose waiting queries queue on
-- an owin.semaphore.

local owin = require("owin")
local ok_core, core = pcall(require, "owin.core")
if not ok_core or not core.pg_connect then
  error("owin.pg needs the owinlua server (it runs on its event loop)", 2)
end

local type, select, pcall, error, tostring, setmetatable, ipairs =
  type, select, pcall, error, tostring, setmetatable, ipairs
local string_format, math_type, table_remove, table_unpack, table_pack =
  string.format, math.type, table.remove, table.unpack, table.pack

local M = {}

M.null = core.pg_null
M.bytea = core.pg_bytea

local methods = core.pg_methods           -- the C object's methods; ours join them
local error_mt = core.pg_error_mt
local JSON_TYPES = { [114] = true, [3802] = true }
local MAX_STATEMENTS = 256                 -- prepared statements kept per connection

-- What each connection was opened with, and its prepared statements.
local state = setmetatable({}, { __mode = "k" })

local function argerror(n, fname, msg)
  error(string_format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

local function seconds(v, name, fname)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v < 0 then
    argerror(1, fname, name .. " must be a number of seconds, got " .. tostring(v))
  end
  return v
end

-- The options pg.connect and pg.pool share, checked; a table of their own.
local function conn_options(opts, fname)
  local o = {}
  o.connect_timeout = seconds(opts.connect_timeout, "connect_timeout", fname) or 10
  o.query_timeout = seconds(opts.query_timeout, "query_timeout", fname)
  local st = opts.statement_timeout
  if st ~= nil and math_type(st) ~= "integer" then
    argerror(1, fname, "statement_timeout must be whole milliseconds, got " .. tostring(st))
  end
  o.statement_timeout = st
  if opts.json ~= nil and type(opts.json) ~= "boolean" then
    argerror(1, fname, "json must be a boolean")
  end
  o.json = opts.json == true
  if opts.prepare ~= nil and type(opts.prepare) ~= "boolean" then
    argerror(1, fname, "prepare must be a boolean")
  end
  o.prepare = opts.prepare ~= false
  return o
end

------------------------------------------------------------------------------
-- Queries

local json
local function decode_json(results)
  json = json or require("owin.json")
  for i = 1, results.n do
    local rows = results[i]
    local cols = rows.columns
    for c = 1, cols and #cols or 0 do
      if JSON_TYPES[cols[c].type] then
        local name = cols[c].name
        for r = 1, #rows do
          local v = rows[r][name]
          if type(v) == "string" then
            local d = json.decode(v)
            if d ~= nil then rows[r][name] = d end
          end
        end
      end
    end
  end
end

-- Is err PostgreSQL saying a prepared statement cannot be used as it is?
local function stale(err)
  return type(err) == "table" and (err.sqlstate == "26000" or
    (err.sqlstate == "0A000" and type(err.message) == "string" and
     err.message:find("cached plan", 1, true) ~= nil))
end

local function forget(st, sql)
  st.stmts[sql] = nil
  for i, s in ipairs(st.order) do
    if s == sql then table_remove(st.order, i) break end
  end
end

-- The statement name of sql on conn, prepared now if it was not.
local function prepared(conn, st, sql, timeout)
  local name = st.stmts[sql]
  if name then return name end
  st.seq = st.seq + 1
  name = "owl_" .. st.seq
  local ok, err = conn:_send("prepare", name, timeout, sql)
  if not ok then return nil, err end
  st.stmts[sql] = name
  st.order[#st.order + 1] = sql
  if #st.order > MAX_STATEMENTS then          -- the oldest goes
    local old = table_remove(st.order, 1)
    local oname = st.stmts[old]
    st.stmts[old] = nil
    conn:_send("simple", "DEALLOCATE " .. oname, timeout)
  end
  return name
end

-- conn:query(sql, ...) -> rows (one per statement), or nil, err
function methods.query(conn, sql, ...)
  if type(sql) ~= "string" then argerror(1, "query", "SQL string expected, got " .. type(sql)) end
  local st = state[conn]
  local timeout = st.query_timeout or 0
  local status = conn:status()
  if status == "busy" or status == "copy" then
    -- a query of ours that timed out or was cancelled is still ending on
    -- the server: wait for it (another coroutine's query: "connection busy")
    local ok, err = conn:wait_idle(timeout > 0 and timeout or nil)
    if not ok then return nil, err end
  end
  local res
  if select("#", ...) == 0 then
    res = table_pack(conn:_send("simple", sql, timeout))
  elseif st.prepare then
    local name, err = prepared(conn, st, sql, timeout)
    if not name then return nil, err end
    res = table_pack(conn:_send("prepared", name, timeout, ...))
    if res[1] == nil and stale(res[2]) and conn:transaction_status() == "idle" then
      -- the statement is gone (DISCARD ALL) or its plan no longer fits the
      -- table (a column added under SELECT *): prepared again, once
      forget(st, sql)
      name, err = prepared(conn, st, sql, timeout)
      if not name then return nil, err end
      res = table_pack(conn:_send("prepared", name, timeout, ...))
    end
  else
    res = table_pack(conn:_send("params", sql, timeout, ...))
  end
  if res[1] == nil then return nil, res[2] end
  if st.json then decode_json(res) end
  return table_unpack(res, 1, res.n)
end

------------------------------------------------------------------------------
-- Transactions

local function rolled_back()
  return setmetatable({ severity = "ERROR", sqlstate = "25P02",
    message = "the transaction was rolled back: a statement in it failed" }, error_mt)
end

-- conn:transaction(fn, ...) -> what fn returned, or nil, err; fn's errors
-- roll back and are raised again
function methods.transaction(conn, fn, ...)
  if type(fn) ~= "function" then argerror(1, "transaction", "function expected, got " .. type(fn)) end
  local ok, err = conn:query("BEGIN")
  if not ok then return nil, err end
  local res = table_pack(pcall(fn, conn, ...))
  if not res[1] then
    if conn:status() == "idle" then conn:query("ROLLBACK") end
    error(res[2], 0)
  end
  local c, cerr = conn:query("COMMIT")
  if not c then return nil, cerr end
  if c.command == "ROLLBACK" then return nil, rolled_back() end
  return table_unpack(res, 2, res.n)
end

------------------------------------------------------------------------------
-- COPY

-- conn:copy_from(sql, data) -> rows copied, or nil, err.  data: a string, a
-- list of strings, or a function returning pieces until nil.
function methods.copy_from(conn, sql, data)
  local dt = type(data)
  if dt ~= "string" and dt ~= "table" and dt ~= "function" then
    argerror(2, "copy_from", "string, list or function expected, got " .. dt)
  end
  local r, err = conn:query(sql)
  if not r then return nil, err end
  if r.copy ~= "in" then
    if r.copy == "out" then conn:cancel() end
    return nil, "copy_from: not a COPY ... FROM STDIN statement"
  end
  local timeout = state[conn].query_timeout or 0
  local perr
  if dt == "string" then
    local okp, e = conn:_put_copy(data)
    if not okp then perr = e end
  elseif dt == "table" then
    for _, piece in ipairs(data) do
      local okp, e = conn:_put_copy(tostring(piece))
      if not okp then perr = e break end
    end
  else
    while true do
      local okf, piece = pcall(data)
      if not okf then
        conn:_end_copy("the data source failed", timeout)
        error(piece, 0)
      end
      if piece == nil then break end
      local okp, e = conn:_put_copy(tostring(piece))
      if not okp then perr = e break end
    end
  end
  if perr then return nil, perr end
  local res, eerr = conn:_end_copy(nil, timeout)
  if not res then return nil, eerr end
  return res.affected or 0
end

-- conn:copy_to(sql, fn) -> rows copied, or nil, err: fn(row) for each row
function methods.copy_to(conn, sql, fn)
  if type(fn) ~= "function" then argerror(2, "copy_to", "function expected, got " .. type(fn)) end
  local r, err = conn:query(sql)
  if not r then return nil, err end
  if r.copy ~= "out" then
    if r.copy == "in" then conn:_end_copy("not a COPY TO STDOUT") end
    return nil, "copy_to: not a COPY ... TO STDOUT statement"
  end
  while true do
    local row, a, b = conn:_get_copy()
    if row == nil then return nil, a end
    if row == false then
      if a == nil then return nil, b end
      return a.affected or 0
    end
    local okf, ferr = pcall(fn, row)
    if not okf then
      conn:cancel()                          -- the rest is dropped as it comes
      error(ferr, 0)
    end
  end
end

------------------------------------------------------------------------------
-- LISTEN

-- conn:listen(channel) -> true, or nil, err
function methods.listen(conn, channel)
  if type(channel) ~= "string" then argerror(1, "listen", "channel name expected") end
  local q, err = conn:escape_identifier(channel)
  if not q then return nil, err end
  local ok, lerr = conn:query("LISTEN " .. q)
  if not ok then return nil, lerr end
  return true
end

-- for n in conn:notifications() do ... end: each notification, waiting as
-- long as it takes; the loop ends when the connection fails or the task is
-- cancelled (conn:notification() then says why)
function methods.notifications(conn)
  return function()
    local n = conn:notification()
    return n
  end
end

function methods.unlisten(conn, channel)
  local q, err = conn:escape_identifier(channel)
  if not q then return nil, err end
  local ok, lerr = conn:query("UNLISTEN " .. q)
  if not ok then return nil, lerr end
  return true
end

------------------------------------------------------------------------------
-- Connecting

local function setup(conn, o)
  state[conn] = { json = o.json, prepare = o.prepare, query_timeout = o.query_timeout,
                  stmts = {}, order = {}, seq = 0, born = owin.now() }
  if o.statement_timeout then
    local ok, err = conn:query("SET statement_timeout = " .. o.statement_timeout)
    if not ok then
      conn:close()
      return nil, err
    end
  end
  return conn
end

-- pg.connect(conninfo [, opts]) -> a connection, or nil, err
function M.connect(conninfo, opts)
  if type(conninfo) ~= "string" then
    argerror(1, "connect", "conninfo string expected, got " .. type(conninfo))
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(2, "connect", "table of options expected, got " .. type(opts))
  end
  local o = conn_options(opts or {}, "connect")
  local conn, err = core.pg_connect(conninfo, o.connect_timeout)
  if not conn then return nil, err end
  return setup(conn, o)
end

------------------------------------------------------------------------------
-- Pools

local Pool = {}
Pool.__index = Pool

local function count(v, name, default, min)
  if v == nil then return default end
  if math_type(v) ~= "integer" or v < min then
    argerror(1, "pool", name .. " must be a whole number from " .. min .. ", got " .. tostring(v))
  end
  return v
end

-- pg.pool{ conninfo, size, idle_timeout, max_lifetime, acquire_timeout,
-- backlog, ... } -> a pool (per worker)
function M.pool(opts)
  if type(opts) ~= "table" then argerror(1, "pool", "table of options expected, got " .. type(opts)) end
  if type(opts.conninfo) ~= "string" then
    argerror(1, "pool", "conninfo must be a string, got " .. type(opts.conninfo))
  end
  local self = setmetatable({
    conninfo = opts.conninfo,
    copts = conn_options(opts, "pool"),
    size = count(opts.size, "size", 10, 1),
    backlog = count(opts.backlog, "backlog", 1000, 0),
    idle_timeout = seconds(opts.idle_timeout, "idle_timeout", "pool") or 60,
    max_lifetime = seconds(opts.max_lifetime, "max_lifetime", "pool") or 3600,
    acquire_timeout = seconds(opts.acquire_timeout, "acquire_timeout", "pool") or 10,
    idle = {},                                 -- { conn, since } most recent last
    open = 0, busy = 0, waiting = 0,
  }, Pool)
  self.sem = owin.semaphore(self.size)
  return self
end

local function too_old(self, conn, now)
  local st = state[conn]
  return st == nil or now - st.born >= self.max_lifetime
end

-- Closes the idle connections that waited longer than idle_timeout.
local function sweep(self, now)
  local idle, keep = self.idle, {}
  for _, e in ipairs(idle) do
    if now - e.since >= self.idle_timeout or e.conn:status() ~= "idle" then
      e.conn:close()
      self.open = self.open - 1
    else
      keep[#keep + 1] = e
    end
  end
  self.idle = keep
end

-- db:acquire() -> a connection of the pool's, or nil, err
function Pool:acquire()
  if self.closed then return nil, "closed" end
  if self.sem:count() <= 0 and self.waiting >= self.backlog then
    return nil, "too many waiting for a connection"
  end
  self.waiting = self.waiting + 1
  local ok, err = self.sem:wait(self.acquire_timeout > 0 and self.acquire_timeout or nil)
  self.waiting = self.waiting - 1
  if not ok then return nil, err end
  local now = owin.now()
  sweep(self, now)
  while #self.idle > 0 do
    local e = table_remove(self.idle)
    if e.conn:status() == "idle" and not too_old(self, e.conn, now) then
      self.busy = self.busy + 1
      return e.conn
    end
    e.conn:close()
    self.open = self.open - 1
  end
  self.open = self.open + 1                  -- counted while it connects
  local conn, cerr = M.connect(self.conninfo, self.copts)
  if not conn then
    self.open = self.open - 1
    self.sem:post()
    return nil, cerr
  end
  self.busy = self.busy + 1
  return conn
end

-- Closes idle connections as their idle_timeout passes, from a timer that
-- runs while any connection is idle.
local function schedule_sweep(self)
  if self.sweeping or #self.idle == 0 or self.idle_timeout <= 0 then return end
  local first = self.idle[1].since             -- the oldest: idle is in order
  local delay = first + self.idle_timeout - owin.now()
  self.sweeping = true
  owin.timer.at(delay > 0.01 and delay or 0.01, function(premature)
    self.sweeping = false
    if premature or self.closed then return end
    sweep(self, owin.now())
    schedule_sweep(self)
  end)
end

local function put_back(self, conn)
  if self.closed or too_old(self, conn, owin.now()) then
    conn:close()
    self.open = self.open - 1
  else
    self.idle[#self.idle + 1] = { conn = conn, since = owin.now() }
    schedule_sweep(self)
  end
  self.sem:post()
end

-- db:release(conn): the connection goes back, or is closed when it cannot
-- be used again; one still busy (a cancelled query) waits until it is idle
function Pool:release(conn)
  self.busy = self.busy - 1
  local status = conn:status()
  if status == "idle" and conn:transaction_status() == "idle" then
    put_back(self, conn)
  elseif status == "lost" or status == "closed" then
    conn:close()
    self.open = self.open - 1
    self.sem:post()
  else
    -- a query cancelled (its results still come) or a transaction left
    -- open: a thread of no request's brings it back once it is clean
    owin.spawn({ detached = true }, function()
      local ok = conn:wait_idle(30)
      if ok and conn:transaction_status() ~= "idle" then ok = conn:query("ROLLBACK") end
      if ok and conn:status() == "idle" then
        put_back(self, conn)
      else
        conn:close()
        self.open = self.open - 1
        self.sem:post()
      end
    end)
  end
end

-- Gives the connection back when the block that holds it ends, whatever
-- way it ends: a return, an error, or its thread killed (thread:kill closes
-- the coroutine, which runs this).
local Guard = { __close = function(g) g.pool:release(g.conn) end }

-- Runs method on a connection of the pool, given back after.
local function on_conn(self, method, ...)
  local conn, err = self:acquire()
  if not conn then return nil, err end
  local guard <close> = setmetatable({ pool = self, conn = conn }, Guard)
  return method(conn, ...)
end

function Pool:query(sql, ...) return on_conn(self, methods.query, sql, ...) end
function Pool:transaction(fn, ...) return on_conn(self, methods.transaction, fn, ...) end
function Pool:copy_from(sql, data) return on_conn(self, methods.copy_from, sql, data) end
function Pool:copy_to(sql, fn) return on_conn(self, methods.copy_to, sql, fn) end

-- db:listen(channel, fn) -> a listener: fn(payload, channel, pid) for each
-- notification, on a connection of its own that reconnects when lost
function Pool:listen(channel, fn)
  if type(channel) ~= "string" then argerror(1, "listen", "channel name expected") end
  if type(fn) ~= "function" then argerror(2, "listen", "function expected") end
  local l = { closed = false }
  local pool = self
  l.thread = owin.spawn({ detached = true }, function()
    local backoff = 0.1
    while not l.closed and not pool.closed do
      local conn, err = M.connect(pool.conninfo, pool.copts)
      if conn then
        l.conn = conn
        local ok, lerr = conn:listen(channel)
        if ok then
          backoff = 0.1
          while not l.closed do
            local n, nerr = conn:notification()
            if n then
              local okf, ferr = pcall(fn, n.payload, n.channel, n.pid)
              if not okf then owin.log.error("pg listen " .. channel .. ": " .. tostring(ferr)) end
            else
              if nerr == "cancelled" then l.closed = true end
              if not l.closed then
                owin.log.warn("pg listen " .. channel .. ": " .. tostring(nerr) .. "; reconnecting")
              end
              break
            end
          end
        else
          owin.log.warn("pg listen " .. channel .. ": " .. tostring(lerr))
        end
        conn:close()
        l.conn = nil
      elseif err == "cancelled" then
        break
      else
        owin.log.warn("pg listen " .. channel .. ": " .. tostring(err) .. "; retrying")
      end
      if l.closed or pool.closed then break end
      if owin.sleep(backoff) == nil then break end
      backoff = backoff * 2 > 5 and 5 or backoff * 2
    end
  end)
  function l.close()
    l.closed = true
    if l.conn then l.conn:close() end
  end
  return l
end

-- db:stats() -> { open, idle, busy, waiting }
function Pool:stats()
  return { open = self.open, idle = #self.idle, busy = self.busy, waiting = self.waiting }
end

-- db:close(): idle connections close now, busy ones when given back
function Pool:close()
  self.closed = true
  for _, e in ipairs(self.idle) do
    e.conn:close()
    self.open = self.open - 1
  end
  self.idle = {}
end

return M
