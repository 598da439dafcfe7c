-- apps/todo.lua through owin.test, as its own busted spec would be written:
-- the REST API's routes, JSON (empty lists are []), and its errors.
--
--   busted --lua=lua5.4 spec/unit/todo_app_spec.lua
local test = require("owin.test")
local json = require("owin.json")

describe("apps/todo.lua #unit", function()
  local client, saved_path

  -- loading an app script puts its directory first on package.path (as
  -- owinlua does): put it back, or apps/*.lua would shadow modules for the
  -- specs that run after this one
  setup(function() saved_path = package.path end)
  teardown(function() package.path = saved_path end)

  before_each(function()
    client = test.client("apps/todo.lua")          -- a fresh store per test
  end)

  local function post(body)
    return client:post("/todos", { body = body, headers = { ["Content-Type"] = "application/json" } })
  end

  it("lists no todos as an empty JSON array", function()
    local res = client:get("/todos")
    assert.are.equal(200, res.status)
    assert.are.equal("application/json", res.headers["content-type"])
    assert.are.equal("[]", res.body)
  end)

  it("creates, reads, updates and deletes a todo", function()
    local res = post('{"title":"write docs"}')
    assert.are.equal(201, res.status)
    assert.are.equal("/todos/1", res.headers["location"])
    assert.are.same({ id = 1, title = "write docs", done = false }, json.decode(res.body))

    res = client:get("/todos/1")
    assert.are.same({ id = 1, title = "write docs", done = false }, json.decode(res.body))

    res = client:patch("/todos/1", { body = '{"done":true}' })
    assert.are.equal(200, res.status)
    assert.is_true(json.decode(res.body).done)

    local list = json.decode(client:get("/todos").body)
    assert.is_true(json.is_array(list))
    assert.are.equal(1, #list)

    res = client:delete("/todos/1")
    assert.are.equal(204, res.status)
    assert.are.equal("", res.body)
    assert.are.equal(404, client:get("/todos/1").status)
    assert.are.equal("[]", client:get("/todos").body)
  end)

  it("answers errors as JSON problems", function()
    local res = client:get("/todos/7")
    assert.are.equal(404, res.status)
    assert.are.same({ status = 404, title = "Not Found", detail = "no todo 7" }, json.decode(res.body))

    res = post("not json")
    assert.are.equal(400, res.status)
    assert.matches("invalid JSON", json.decode(res.body).detail)

    res = post('["a list"]')
    assert.are.equal(422, res.status)
    res = post('{"title":""}')
    assert.are.equal(422, res.status)
    assert.matches("title must be", json.decode(res.body).detail)
    res = client:patch("/todos/1", { body = '{"done":"yes"}' })
    assert.are.equal(404, res.status)                -- no todo 1 yet

    res = client:get("/nothing")
    assert.are.equal(404, res.status)
  end)

  it("answers a browser with an HTML error page", function()
    local res = client:get("/todos/7", { headers = { Accept = "text/html" } })
    assert.are.equal(404, res.status)
    assert.matches("^text/html", res.headers["content-type"])
    assert.matches("no todo 7", res.body)
  end)

  it("routes by method: 405 with Allow, HEAD, OPTIONS, ids only of digits", function()
    local res = client:put("/todos")
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, POST, OPTIONS", res.headers["allow"])
    res = client:head("/todos")
    assert.are.equal(200, res.status)
    assert.are.equal("", res.body)
    res = client:options("/todos/1")
    assert.are.equal(204, res.status)
    assert.matches("PATCH", res.headers["allow"])
    assert.are.equal(404, client:get("/todos/abc").status)
  end)
end)
