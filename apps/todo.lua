-- A JSON REST API for todos: routing, JSON that round-trips, and errors.
-- Run with: owinlua apps/todo.lua
--   curl -s localhost:8080/todos                          -> []
--   curl -s -d '{"title":"write docs"}' localhost:8080/todos   -> 201 and the todo
--   curl -s localhost:8080/todos/1
--   curl -s -X PATCH -d '{"done":true}' localhost:8080/todos/1
--   curl -s -X DELETE localhost:8080/todos/1              -> 204
--   curl -si -X PUT localhost:8080/todos                  -> 405, Allow: GET, HEAD, POST, OPTIONS
--
-- The store is a table in the worker: a real app would keep it in a
-- database (see docs/outside.md).  Errors are JSON problem objects (or HTML
-- pages for browsers): a bad id is a 404, a body that is not JSON a 400, a
-- missing title a 422.  Its spec, through owin.test: spec/unit/todo_app_spec.lua.
local context = require("owin.context")
local errors = require("owin.errors")
local json = require("owin.json")
local router = require("owin.router").new()

local todos, order, last_id = {}, {}, 0

local function find(ctx)
  local todo = todos[tonumber(ctx.params.id)]
  if not todo then owin.error(404, "no todo " .. ctx.params.id) end
  return todo
end

-- The request's body as a JSON object, or a 400/413/422.
local function body(ctx)
  local value, err, code = ctx.request:json()
  owin.assert(value, err, code)                   -- 400 (not JSON) or 413 (too big)
  if type(value) ~= "table" or json.is_array(value) then
    owin.error(422, "the body must be a JSON object")
  end
  return value
end

local function check_title(title)
  if type(title) ~= "string" or title == "" or #title > 200 then
    owin.error(422, "title must be a string of 1 to 200 bytes")
  end
end

router:get("/todos", context.app(function(ctx)
  local list = json.array()                       -- [] when empty, not {}
  for _, id in ipairs(order) do
    if todos[id] then list[#list + 1] = todos[id] end
  end
  ctx.response:json(list)
end), "todos")

router:post("/todos", context.app(function(ctx)
  local input = body(ctx)
  check_title(input.title)
  last_id = last_id + 1
  local todo = { id = last_id, title = input.title, done = input.done == true }
  todos[last_id], order[#order + 1] = todo, last_id
  ctx.response:header("Location", router:url_for("todo", { id = last_id }))
  ctx.response:json(todo, 201)
end))

router:get("/todos/:id{%d+}", context.app(function(ctx)
  ctx.response:json(find(ctx))
end), "todo")

router:patch("/todos/:id{%d+}", context.app(function(ctx)
  local todo, input = find(ctx), body(ctx)
  if input.title ~= nil then check_title(input.title) todo.title = input.title end
  if input.done ~= nil then
    if type(input.done) ~= "boolean" then owin.error(422, "done must be true or false") end
    todo.done = input.done
  end
  ctx.response:json(todo)
end))

router:delete("/todos/:id{%d+}", context.app(function(ctx)
  find(ctx)
  todos[tonumber(ctx.params.id)] = nil
  ctx.response.status = 204
end))

app.use(errors())                                 -- first: it answers what the rest raises
app.use(router)
app.run(function() owin.error(404, "no such resource") end)
