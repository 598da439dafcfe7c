-- The todo API of apps/todo.lua, kept in PostgreSQL through owin.pg, with a
-- WebSocket that pushes every change, fed by LISTEN/NOTIFY.
-- Run with: DATABASE_URL=postgresql://user:secret@127.0.0.1/app owinlua apps/todo_pg.lua
--   curl -s localhost:8080/todos                               -> []
--   curl -s -d '{"title":"write docs"}' localhost:8080/todos   -> 201, Location: /todos/1
--   curl -s -X PATCH -d '{"done":true}' localhost:8080/todos/1
--   curl -s -X DELETE localhost:8080/todos/1                   -> 204
--   websocat ws://127.0.0.1:8080/todos/events   -> {"op":"created","todo":{...}} per change
--
-- DATABASE_URL is anything libpq takes (unset: libpq's PGHOST, PGUSER, ...).
-- The table is created at start-up when missing.  Each write runs in a
-- transaction with its pg_notify('todos', ...), so the event goes out when,
-- and only when, the change is committed; every worker (and every other
-- instance on the same database) hears it on its own LISTEN connection and
-- passes it on to its WebSocket clients.  Errors as in apps/todo.lua: JSON
-- problems, 400 for a body that is not JSON, 404, 405 (the router), 422.
local context = require("owin.context")
local errors = require("owin.errors")
local json = require("owin.json")
local pg = require("owin.pg")
local websocket = require("owin.websocket")
local router = require("owin.router").new()

local db = pg.pool{ conninfo = os.getenv("DATABASE_URL") or "", size = 10 }

-- A query's rows, or an error (a 500 for the client, logged with its cause).
local function must(rows, err)
  if not rows then error("database: " .. tostring(err), 2) end
  return rows
end

-- At start-up (the script's top level may wait).  Two workers may race to
-- create the table: the loser's "already exists" (42P07, or 23505 on the
-- type's name) is fine.
local ok, err = db:query([[
  create table if not exists todos (
    id bigserial primary key,
    title text not null,
    done boolean not null default false,
    created_at timestamptz default now())]])
if not ok and not (type(err) == "table" and (err.sqlstate == "42P07" or err.sqlstate == "23505")) then
  error("cannot create the todos table: " .. tostring(err))
end

local COLUMNS = "id, title, done, created_at"

-- A row as the API shows it (the rows table also holds affected, command,
-- ...).  A NULL created_at is pg.null, which is json.null: JSON null.
local function todo(row)
  return { id = row.id, title = row.title, done = row.done, created_at = row.created_at }
end

-- Runs a write returning COLUMNS and, when it hit a row, notifies the
-- listeners with { op = op, todo = row }, in one transaction.  Returns the
-- row, or nil when there was none.
local function change(op, sql, ...)
  local row, terr = db:transaction(function(tx, ...)
    local rows = must(tx:query(sql, ...))
    if not rows[1] then return nil end
    local t = todo(rows[1])
    must(tx:query("select pg_notify('todos', $1)", json.encode({ op = op, todo = t })))
    return t
  end, ...)
  if terr then error("database: " .. tostring(terr)) end       -- COMMIT failed
  return row
end

-- The id of /todos/:id, or a 404 (digits past 64 bits match no todo).
local function id_of(ctx)
  local id = math.tointeger(tonumber(ctx.params.id))
  if not id then owin.error(404, "no todo " .. ctx.params.id) end
  return id
end

-- The request's body as a JSON object, or a 400/413/422.
local function body(ctx)
  local value, verr, code = ctx.request:json()
  owin.assert(value, verr, code)                   -- 400 (not JSON) or 413 (too big)
  if type(value) ~= "table" or json.is_array(value) then
    owin.error(422, "the body must be a JSON object")
  end
  if value.title ~= nil and (type(value.title) ~= "string" or value.title == "" or #value.title > 200) then
    owin.error(422, "title must be a string of 1 to 200 bytes")
  end
  if value.done ~= nil and type(value.done) ~= "boolean" then
    owin.error(422, "done must be true or false")
  end
  return value
end

router:get("/todos", context.app(function(ctx)
  local list = json.array()                        -- [] when empty, not {}
  for _, row in ipairs(must(db:query("select " .. COLUMNS .. " from todos order by id"))) do
    list[#list + 1] = todo(row)
  end
  ctx.response:json(list)
end))

router:post("/todos", context.app(function(ctx)
  local input = body(ctx)
  if input.title == nil then owin.error(422, "title must be a string of 1 to 200 bytes") end
  local t = change("created", "insert into todos (title, done) values ($1, $2) returning " .. COLUMNS,
                   input.title, input.done == true)
  ctx.response:header("Location", router:url_for("todo", { id = t.id }))
  ctx.response:json(t, 201)
end))

router:get("/todos/:id{%d+}", context.app(function(ctx)
  local id = id_of(ctx)
  local row = must(db:query("select " .. COLUMNS .. " from todos where id = $1", id))[1]
  if not row then owin.error(404, "no todo " .. id) end
  ctx.response:json(todo(row))
end), "todo")

router:patch("/todos/:id{%d+}", context.app(function(ctx)
  local id, input = id_of(ctx), body(ctx)
  -- nil is SQL NULL: coalesce keeps the column for a field left out
  local t = change("updated", "update todos set title = coalesce($2, title), done = coalesce($3, done)"
                   .. " where id = $1 returning " .. COLUMNS, id, input.title, input.done)
  if not t then owin.error(404, "no todo " .. id) end
  ctx.response:json(t)
end))

router:delete("/todos/:id{%d+}", context.app(function(ctx)
  local id = id_of(ctx)
  if not change("deleted", "delete from todos where id = $1 returning " .. COLUMNS, id) then
    owin.error(404, "no todo " .. id)
  end
  ctx.response.status = 204
end))

-- GET /todos/events: a WebSocket that receives every change as a JSON text
-- message.  The clients of this worker:
local watchers = {}

-- One LISTEN connection per worker (it reconnects by itself).  The payload
-- is already JSON: it goes out as it came.  A send waits only once a client
-- has 256 KiB unread; see apps/chat.lua to keep one slow client from
-- delaying the others.
db:listen("todos", function(payload)
  local list = {}                                  -- sends may yield: walk a copy
  for ws in pairs(watchers) do list[#list + 1] = ws end
  for _, ws in ipairs(list) do
    if ws:state() == "open" then ws:send(payload) else watchers[ws] = nil end
  end
end)

router:get("/todos/events", function(env)
  if not websocket.is_request(env) then
    env["owin.ResponseHeaders"]["Upgrade"] = { "websocket" }
    owin.error(426, "connect with a WebSocket client")
  end
  local ws <close> = websocket.accept(env)          -- 101 now
  watchers[ws] = true
  for _ in ws:messages() do end                     -- nothing to read: wait for the close
  watchers[ws] = nil
end)

app.use(errors())                                  -- first: it answers what the rest raises
app.use(router)
app.run(function() owin.error(404, "no such resource") end)
