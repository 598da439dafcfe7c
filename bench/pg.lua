-- The PostgreSQL AppFunc for bench/run: one indexed primary-key select per
-- request through an owin.pg pool of 10 connections, written as an app
-- would.  The connection comes from libpq's environment (PGHOST, PGPORT,
-- PGUSER, PGDATABASE), which bench/run sets to the cluster it started.
--
--   GET /todo/ID   {"id":ID,"title":"todo ID","done":false} (404 when there
--                  is no such row, 500 when the query fails)
local pg = require("owin.pg")
local json = require("owin.json")

local db = pg.pool{ conninfo = "", size = 10 }
local SQL = "select id, title, done from todos where id = $1"
local encode, match, tointeger, tonumber = json.encode, string.match, math.tointeger, tonumber

return function(env)
  local id = tointeger(tonumber(match(env["owin.RequestPath"], "^/todo/(%d+)$")))
  local res = env["owin.ResponseBody"]
  if not id then
    env["owin.ResponseStatusCode"] = 404
    return res:write("no such row\n")
  end
  local rows, err = db:query(SQL, id)
  if not rows then
    env["owin.ResponseStatusCode"] = 500
    return res:write("pg: ", tostring(err), "\n")
  end
  local row = rows[1]
  if not row then
    env["owin.ResponseStatusCode"] = 404
    return res:write("no such row\n")
  end
  env["owin.ResponseHeaders"]["Content-Type"] = { "application/json" }
  res:write(encode({ id = row.id, title = row.title, done = row.done }))
end
