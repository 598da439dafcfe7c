-- apps/todo_pg.lua end to end: the real owinlua binary against a real
-- PostgreSQL (helpers.pg starts a throwaway cluster): the REST API with its
-- status codes and problem bodies, what lands in the table, and the change
-- events that LISTEN/NOTIFY brings to WebSocket clients (on one instance and
-- across two sharing the database).
--
--   busted --lua=lua5.4 spec/e2e/todo_pg_spec.lua

local server = require("helpers.server")
local http = require("helpers.http")
local ws = require("helpers.ws")
local pgh = require("helpers.pg")
local cjson = require("cjson")

local TEXT = 1
local eventually = server.eventually

-- One request on a fresh connection; the body (a string) is sent as JSON.
local function call(port, method, path, body, headers)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                  "Accept: application/json" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  return assert(http.request(port, table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""),
                             { method = method }))
end

local function decode(res)
  assert.are.equal("application/json", res.headers["content-type"], res.body)
  return cjson.decode(res.body)
end

local function stop_clean(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code },
    "owinlua did not exit cleanly:\n" .. srv:stderr())
end

describe("apps/todo_pg.lua against PostgreSQL #e2e", function()
  if not pgh.available() then
    it("needs PostgreSQL (tools/install-deps)", function() pending("no PostgreSQL server binaries") end)
    return
  end

  local db, srv

  -- psql's output without the trailing newline; fails on an error
  local function psql(sql)
    local out, code, err = db:psql(sql)
    assert.are.equal(0, code, "psql failed: " .. tostring(err))
    return (out:gsub("\n$", ""))
  end

  -- the connections of apps that LISTEN on "todos" (owin.pg quotes the name)
  local function listeners()
    return tonumber(psql("select count(*) from pg_stat_activity where query ilike 'listen%todos%'"))
  end

  local function start()
    return server.start("apps/todo_pg.lua", nil, { env = { DATABASE_URL = db.conninfo } })
  end

  setup(function()
    db = pgh.start()
    srv = start()
  end)

  teardown(function()
    if srv then stop_clean(srv) end
    if db then db:stop() end
  end)

  before_each(function()
    psql("truncate todos restart identity")
  end)

  it("creates its table at start-up", function()
    assert.are.equal("id|bigint\ntitle|text\ndone|boolean\ncreated_at|timestamp with time zone",
      psql("select column_name, data_type from information_schema.columns " ..
           "where table_name = 'todos' order by ordinal_position"))
    -- and starts again on the table it finds
    local again = start()
    assert.are.equal("[]", call(again.port, "GET", "/todos").body)
    stop_clean(again)
  end)

  it("lists no todos as an empty JSON array", function()
    local res = call(srv.port, "GET", "/todos")
    assert.are.equal(200, res.status)
    assert.are.equal("application/json", res.headers["content-type"])
    assert.are.equal("[]", res.body)
  end)

  it("creates, reads, updates and deletes a todo, in the table", function()
    local res = call(srv.port, "POST", "/todos", '{"title":"write docs"}')
    assert.are.equal(201, res.status)
    assert.are.equal("/todos/1", res.headers["location"])
    local todo = decode(res)
    assert.are.same({ id = 1, title = "write docs", done = false }, { id = todo.id, title = todo.title, done = todo.done })
    assert.matches("^%d%d%d%d%-%d%d%-%d%d ", todo.created_at)
    assert.are.equal("1|write docs|f", psql("select id, title, done from todos"))

    res = call(srv.port, "GET", "/todos/1")
    assert.are.equal(200, res.status)
    assert.are.same(todo, decode(res))

    res = call(srv.port, "PATCH", "/todos/1", '{"done":true}')
    assert.are.equal(200, res.status)
    local patched = decode(res)
    assert.is_true(patched.done)
    assert.are.equal("write docs", patched.title)                   -- left alone
    res = call(srv.port, "PATCH", "/todos/1", '{"title":"write more docs"}')
    assert.are.same({ "write more docs", true }, { decode(res).title, decode(res).done })
    assert.are.equal("1|write more docs|t", psql("select id, title, done from todos"))

    call(srv.port, "POST", "/todos", '{"title":"second","done":true}')
    local list = decode(call(srv.port, "GET", "/todos"))
    assert.are.same({ 1, 2 }, { list[1].id, list[2].id })
    assert.are.same({ "write more docs", "second" }, { list[1].title, list[2].title })

    res = call(srv.port, "DELETE", "/todos/1")
    assert.are.equal(204, res.status)
    assert.are.equal("", res.body)
    assert.are.equal(404, call(srv.port, "GET", "/todos/1").status)
    assert.are.equal(404, call(srv.port, "DELETE", "/todos/1").status)
    assert.are.equal("2", psql("select string_agg(id::text, ',') from todos"))
  end)

  it("keeps a title as sent: parameters are never spliced into the SQL", function()
    local title = "Robert'); drop table todos; --"
    local res = call(srv.port, "POST", "/todos", cjson.encode({ title = title }))
    assert.are.equal(201, res.status)
    assert.are.equal(title, decode(call(srv.port, "GET", "/todos/1")).title)
    assert.are.equal(title, psql("select title from todos"))
  end)

  it("shows SQL NULL as JSON null", function()
    psql("insert into todos (title, created_at) values ('no date', null)")
    local list = decode(call(srv.port, "GET", "/todos"))
    assert.are.equal(cjson.null, list[1].created_at)
    assert.are.equal(cjson.null, decode(call(srv.port, "GET", "/todos/1")).created_at)
  end)

  it("answers 404 with a JSON problem", function()
    local res = call(srv.port, "GET", "/todos/7")
    assert.are.equal(404, res.status)
    assert.are.same({ status = 404, title = "Not Found", detail = "no todo 7" }, decode(res))
    assert.are.equal(404, call(srv.port, "PATCH", "/todos/7", '{"done":true}').status)
    assert.are.equal(404, call(srv.port, "DELETE", "/todos/7").status)
    -- past 64 bits, and not digits
    assert.are.equal(404, call(srv.port, "GET", "/todos/99999999999999999999").status)
    assert.are.equal(404, call(srv.port, "GET", "/todos/abc").status)
    assert.are.equal(404, call(srv.port, "GET", "/nothing").status)
  end)

  it("answers 405 with Allow for a method the path has no route for", function()
    local res = call(srv.port, "PUT", "/todos", "{}")
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, POST, OPTIONS", res.headers["allow"])
    res = call(srv.port, "POST", "/todos/1", "{}")
    assert.are.equal(405, res.status)
    assert.matches("PATCH", res.headers["allow"])
    assert.matches("DELETE", res.headers["allow"])
  end)

  it("answers 422 for input that is JSON but not a todo, and stores nothing", function()
    for _, case in ipairs({
      { '["a list"]', "the body must be a JSON object" },
      { '"a string"', "the body must be a JSON object" },
      { '{}', "title must be" },
      { '{"title":""}', "title must be" },
      { '{"title":null}', "title must be" },
      { '{"title":5}', "title must be" },
      { cjson.encode({ title = string.rep("x", 201) }), "title must be" },
      { '{"title":"ok","done":"yes"}', "done must be true or false" },
    }) do
      local res = call(srv.port, "POST", "/todos", case[1])
      assert.are.equal(422, res.status, case[1])
      local problem = decode(res)
      assert.are.equal(422, problem.status)
      assert.matches(case[2], problem.detail, 1, true)
    end
    assert.are.equal("0", psql("select count(*) from todos"))

    call(srv.port, "POST", "/todos", '{"title":"keep"}')
    for _, body in ipairs({ '{"done":"yes"}', '{"done":null}', '{"title":""}', '[true]' }) do
      assert.are.equal(422, call(srv.port, "PATCH", "/todos/1", body).status, body)
    end
    assert.are.equal("keep|f", psql("select title, done from todos"))
  end)

  it("answers 400 for a body that is not JSON", function()
    local res = call(srv.port, "POST", "/todos", "not json")
    assert.are.equal(400, res.status)
    assert.matches("invalid JSON", decode(res).detail)
    call(srv.port, "POST", "/todos", '{"title":"keep"}')
    assert.are.equal(400, call(srv.port, "PATCH", "/todos/1", '{"done":').status)
    assert.are.equal("1", psql("select count(*) from todos"))
  end)

  describe("GET /todos/events", function()
    local clients

    before_each(function() clients = {} end)
    after_each(function()
      for _, c in ipairs(clients) do pcall(c.close, c, 1000) end
    end)

    local function watch(s)
      local c, res = ws.connect(s.port, "/todos/events")
      assert.is_truthy(c, "no 101: " .. tostring(res and res.status or res))
      c.conn:settimeout(5)
      clients[#clients + 1] = c
      return c
    end

    local function event(c)
      local m = assert(c:read_message())
      assert.are.equal(TEXT, m.opcode)
      return cjson.decode(m.payload)
    end

    it("pushes every change to each client, in order, once committed", function()
      assert.is_truthy(eventually(function() return listeners() >= 1 end), "no LISTEN connection")
      local a, b = watch(srv), watch(srv)
      call(srv.port, "POST", "/todos", '{"title":"watch me"}')
      call(srv.port, "PATCH", "/todos/1", '{"done":true}')
      call(srv.port, "POST", "/todos", '{"title":""}')                -- 422: no change, no event
      call(srv.port, "DELETE", "/todos/1")
      for _, c in ipairs({ a, b }) do
        local e = event(c)
        assert.are.same({ "created", 1, "watch me", false }, { e.op, e.todo.id, e.todo.title, e.todo.done })
        e = event(c)
        assert.are.same({ "updated", 1, true }, { e.op, e.todo.id, e.todo.done })
        e = event(c)
        assert.are.same({ "deleted", 1 }, { e.op, e.todo.id })
      end
      -- a NOTIFY from any session reaches them too
      psql([[select pg_notify('todos', '{"op":"hello"}')]])
      assert.are.equal("hello", event(a).op)
      assert.are.equal("hello", event(b).op)
    end)

    it("reaches the clients of another instance on the same database", function()
      local other = start()
      local ok, err = pcall(function()
        assert.is_truthy(eventually(function() return listeners() >= 2 end), "no second LISTEN connection")
        local c = watch(other)
        call(srv.port, "POST", "/todos", '{"title":"from the first"}')
        local e = event(c)
        assert.are.same({ "created", "from the first" }, { e.op, e.todo.title })
        c:close(1000)
      end)
      stop_clean(other)
      assert(ok, err)
    end)

    it("answers 426 to a request that is not a WebSocket upgrade", function()
      local res = call(srv.port, "GET", "/todos/events")
      assert.are.equal(426, res.status)
      assert.are.equal("websocket", res.headers["upgrade"])
    end)
  end)
end)
