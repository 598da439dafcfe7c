-- owin.pg end to end: the real owinlua binary running spec/fixtures/pg_app.lua
-- against a real PostgreSQL (spec/helpers/pg.lua, a fresh cluster for this
-- file), checked over HTTP against the contract in docs/pg.md.
--
--   busted --lua=lua5.4 --run=e2e spec/e2e/pg_spec.lua
--
-- The fixture answers "key=value" lines; values carry their Lua type
-- ("int:42", "float:nan", "str:\"...\"", "pg.null", "nil", "bool:true",
-- "error:{sqlstate=...,...}"): see the fixture's header.

local server = require("helpers.server")
local http = require("helpers.http")
local pgh = require("helpers.pg")
local ports = require("helpers.ports")
local socket = require("socket")

local FIXTURE = os.getenv("PG_FIXTURE") or "spec/fixtures/pg_app.lua"
local eventually = server.eventually

local SETUP_SQL = [[
create table aff (id int);
create table blobs (id int primary key, b bytea);
create table notes (id serial primary key, body text);
create table x (id int);
create table uniq (id int primary key);
insert into uniq values (1);
create table acct (id int, tag text);
create table copyt (id int, name text);
create role ]] .. pgh.PASSWORD_USER .. [[ login password 'secret';
]]

-- "k=v" lines to a table (the first "=" splits).
local function parse(body)
  local t = {}
  for line in (body or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

local function str(s)   -- how the fixture shows a string
  return 'str:"' .. s:gsub('[%c"\\\128-\255]', function(c)
    return string.format("\\x%02x", c:byte())
  end) .. '"'
end

describe("owin.pg #e2e", function()
  if not pgh.available() then
    it("needs PostgreSQL (tools/install-deps)", function() pending("no PostgreSQL server binaries") end)
    return
  end

  local db, srv

  local function get(path, timeout)
    local c = assert(http.connect(srv.port, nil, timeout or 15))
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    local res, err = c:read_response()
    c:close()
    assert(res, "no response to " .. path .. ": " .. tostring(err) .. "\n" .. srv:stderr())
    assert.are.equal(200, res.status, path .. " answered " .. res.status .. ": " .. res.body ..
      "\n" .. srv:stderr())
    return parse(res.body), res
  end

  -- Sends every path on a connection of its own, all at once, and reads the
  -- responses as they come: a list of { res, map, at = socket.gettime() }.
  -- opts.during() runs between reads; opts.timeout bounds the whole (30 s).
  local function concurrent(paths, opts)
    opts = opts or {}
    local conns, pending, n = {}, {}, 0
    for i, p in ipairs(paths) do
      local c = assert(http.connect(srv.port, nil, 15))
      assert(c:send("GET " .. p .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
      conns[i] = c
      pending[c.sock] = i
      n = n + 1
    end
    local out = {}
    local deadline = socket.gettime() + (opts.timeout or 30)
    while n > 0 and socket.gettime() < deadline do
      local socks = {}
      for s in pairs(pending) do socks[#socks + 1] = s end
      local ready = socket.select(socks, nil, 0.05)
      for _, s in ipairs(ready) do
        local i = pending[s]
        pending[s] = nil
        n = n - 1
        local res, err = conns[i]:read_response()
        out[i] = { res = res, err = err, at = socket.gettime(),
                   map = res and parse(res.body) or {} }
        conns[i]:close()
      end
      if opts.during then opts.during() end
    end
    for s, i in pairs(pending) do
      out[i] = { err = "no response in time" }
      conns[i]:close()
      pending[s] = nil
    end
    return out
  end

  local function psql(sql)
    local out, code, err = db:psql(sql)
    assert(code == 0, "psql failed (" .. tostring(code) .. "): " .. sql .. "\n" .. err)
    return (out:gsub("\n$", ""))
  end

  -- Server connections of one of the fixture's pools (application_name),
  -- without db:listen's own connection (not counted in the pool's size).
  local function backends(app_name)
    return tonumber(psql("select count(*) from pg_stat_activity where application_name = '" ..
      app_name .. "' and query not ilike 'listen %'"))
  end

  -- Backends running a query tagged /* tag */ (other than psql's own).
  local function active(tag)
    return tonumber(psql("select count(*) from pg_stat_activity where state = 'active' and " ..
      "query like '%/* " .. tag .. " */%' and pid <> pg_backend_pid()"))
  end

  local function stats(pool)
    local s = get("/stats?pool=" .. (pool or "main"))
    return {
      open = tonumber(s.open:match("^int:(%-?%d+)$")), idle = tonumber(s.idle:match("^int:(%-?%d+)$")),
      busy = tonumber(s.busy:match("^int:(%-?%d+)$")), waiting = tonumber(s.waiting:match("^int:(%-?%d+)$")),
      raw = s,
    }
  end

  setup(function()
    db = pgh.start()
    psql(SETUP_SQL)
    srv = server.start(FIXTURE, nil, { env = {
      PG_CONNINFO = db.conninfo,
      PG_TCP_CONNINFO = db.tcp_conninfo,
      PG_POOL_SIZE = "5",
    } })
  end)

  teardown(function()
    local stopped = srv and table.pack(pcall(srv.stop, srv))
    local log = srv and srv:stderr() or ""
    if db then db:stop() end
    if srv then
      assert(stopped[1], stopped[2])   -- a sanitizer report
      assert.are.same({ true, "exit", 0 }, { stopped[2], stopped[3], stopped[4] },
        "owinlua did not exit cleanly:\n" .. log)
    end
  end)

  describe("values", function()
    it("converts each column type as the table in docs/pg.md says", function()
      local v = get("/types")
      assert.are.equal("int:1", v.nrows)
      assert.are.equal(str("SELECT"), v.command)
      assert.are.equal("int:1", v.affected)
      assert.are.equal("int:1", v["v.i2"])
      assert.are.equal("int:-2", v["v.i4"])
      assert.are.equal("int:9223372036854775807", v["v.i8"])
      assert.are.equal("int:-9223372036854775808", v["v.i8min"])
      assert.are.equal("int:26", v["v.o"])
      assert.are.equal("float:1.5", v["v.f4"])
      assert.are.equal("float:0.10000000000000001", v["v.f8"])   -- 0.1 exactly as a double
      assert.are.equal("float:inf", v["v.finf"])
      assert.are.equal("float:-inf", v["v.fninf"])
      assert.are.equal("float:nan", v["v.fnan"])
      assert.are.equal("float:nan", v["v.f4nan"])
      -- numeric: whole and fitting 64 bits -> integer; <= 15 significant digits -> float; else the text
      assert.are.equal("int:42", v["v.nwhole"])
      assert.are.equal("int:-7", v["v.nneg"])
      assert.are.equal("int:9223372036854775807", v["v.nmax"])
      assert.are.equal("float:1.5", v["v.nfrac"])
      assert.are.equal("float:0.10000000000000001", v["v.ntenth"])
      assert.are.equal(str("1234567890123456789012345678901234567890"), v["v.nbig"])
      assert.are.equal(str("3.14159265358979323846"), v["v.npi"])
      assert.are.equal("bool:true", v["v.t"])
      assert.are.equal("bool:false", v["v.f"])
      assert.are.equal(str("héllo"), v["v.txt"])
      assert.are.equal(str("v c"), v["v.vc"])
      assert.are.equal(str('{"a": [1, 2, null], "s": "x"}'), v["v.j"])   -- json: the text as written
      assert.are.equal(str('{"b": true}'), v["v.jb"])                     -- jsonb: as PostgreSQL writes it
      assert.are.equal(str("2024-02-29"), v["v.d"])
      assert.are.equal(str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), v["v.u"])
      assert.are.equal(str("{1,2,3}"), v["v.arr"])
      assert.are.equal(str("\0\255A"), v["v.by"])
    end)

    it("gives SQL NULL as pg.null, distinct from nil, and pairs shows the column", function()
      local v = get("/types")
      assert.are.equal("pg.null", v["v.n"])
      assert.are.equal("pg.null", v["v.ntext"])
      assert.are.equal("bool:true", v.n_is_null)
      assert.are.equal("bool:false", v.n_is_nil)
      assert.are.equal("nil", v.missing)
      local keys = {}
      for k in v.keys:gmatch("[^,]+") do keys[k] = true end
      assert.is_true(keys.n, "pairs(row) lists the NULL column n: " .. v.keys)
      assert.is_true(keys.ntext, v.keys)
      assert.is_true(keys.i8, v.keys)
    end)

    it("lists rows.columns in order with their names and type oids", function()
      local v = get("/types")
      local expect = {
        { "i2", 21 }, { "i4", 23 }, { "i8", 20 }, { "i8min", 20 }, { "o", 26 },
        { "f4", 700 }, { "f8", 701 }, { "finf", 701 }, { "fninf", 701 }, { "fnan", 701 }, { "f4nan", 700 },
        { "nwhole", 1700 }, { "nneg", 1700 }, { "nmax", 1700 }, { "nfrac", 1700 }, { "ntenth", 1700 },
        { "nbig", 1700 }, { "npi", 1700 },
        { "t", 16 }, { "f", 16 }, { "txt", 25 }, { "vc", 1043 }, { "j", 114 }, { "jb", 3802 },
        { "d", 1082 }, { "u", 2950 }, { "arr", 1007 }, { "n", 23 }, { "ntext", 25 }, { "by", 17 },
      }
      assert.are.equal("int:" .. #expect, v.ncolumns)
      for i, c in ipairs(expect) do
        assert.are.equal(str(c[1]) .. " int:" .. c[2], v["col." .. i], "column " .. i)
      end
    end)

    it("decodes json and jsonb with json = true", function()
      local v = get("/types?json=1")
      assert.are.equal("table", v["j.type"])
      assert.are.equal("int:1", v["j.a1"])
      assert.are.equal("bool:true", v["j.a3_is_json_null"])
      assert.are.equal("int:3", v["j.a_len"])
      assert.are.equal(str("x"), v["j.s"])
      assert.are.equal("table", v["jb.type"])
      assert.are.equal("bool:true", v["jb.b"])
      -- the other columns as without json
      assert.are.equal("int:9223372036854775807", v["v.i8"])
      assert.are.equal("pg.null", v["v.n"])
    end)

    it("round-trips all 256 byte values in bytea, as a parameter and as a result", function()
      local v = get("/bytea")
      assert.are.equal("int:1", v.insert)
      assert.are.equal("bool:true", v.server_hex_ok)   -- the parameter reached the server intact
      assert.are.equal("int:256", v.server_len)
      assert.are.equal("bool:true", v.stored_back_ok)
      assert.are.equal("int:256", v.result_len)
      local hex = {}
      for i = 0, 255 do hex[#hex + 1] = string.format("%02x", i) end
      assert.are.equal(table.concat(hex), v.result_hex)
      assert.are.equal("bool:true", v.result_ok)
      assert.are.equal("bool:true", v.param_echo_ok)
    end)

    it("gives rows.affected and rows.command for insert, update, delete, select", function()
      local v = get("/affected")
      assert.are.equal(str("INSERT") .. " int:3 int:0", v.insert)
      assert.are.equal(str("INSERT") .. " int:1 int:0", v.insert_param)
      assert.are.equal(str("UPDATE") .. " int:2 int:0", v.update)
      assert.are.equal(str("SELECT") .. " int:4 int:4", v.select)
      assert.are.equal(str("SELECT") .. " int:0 int:0", v.select_none)
      assert.are.equal(str("DELETE") .. " int:2 int:0", v.delete)
      assert.are.equal(str("DO") .. " nil int:0", v["do"])   -- no row count: nil
    end)
  end)

  describe("parameters", function()
    it("stores and reads back strings that would be injections, exactly, and the table survives", function()
      local v = get("/inject")
      assert.are.equal("int:11", v.n)
      for i = 1, 11 do
        assert.are.equal("bool:true bool:true", v["p" .. i], "payload " .. i)
        assert.are.equal("bool:true", v["echo" .. i], "payload " .. i .. " as $1::text")
      end
      assert.are.equal(str("x"), v.x)   -- still there
      assert.are.equal(str("notes"), v.notes)
      assert.are.equal("t", psql("select to_regclass('x') is not null"))
      assert.are.equal("11", psql("select count(*) from notes"))
      assert.are.equal(tostring(1024 * 1024), psql("select max(length(body)) from notes"))
    end)

    it("sends nil and pg.null as NULL, booleans, integers and floats as themselves", function()
      local v = get("/params")
      assert.are.equal("bool:true bool:true int:5", v.nulls)
      assert.are.equal("int:1 pg.null bool:true", v.trailing_nil)   -- a trailing nil counts
      assert.are.equal("bool:true bool:false bool:true", v.bools)
      assert.are.equal("int:9223372036854775807 int:-9223372036854775808 int:-42 bool:true", v.ints)
      assert.are.equal("float:0.10000000000000001 float:1.0000000000000001e+300 float:-2.5 bool:true", v.floats)
      assert.are.equal(str("0.5"), v.float_text)
      assert.are.equal(str("7"), v.int_text)
      assert.are.equal("bool:false str", (v.table_param:gsub("^(%S+) str:.*$", "%1 str")))  -- a table raises
      assert.are.equal("int:1", v.after)
    end)
  end)

  it("returns one result per statement for several statements in one call", function()
    local v = get("/multi")
    assert.are.equal("int:3", v.n)
    assert.are.equal("int:1 " .. str("SELECT"), v.a)
    assert.are.equal("int:2 " .. str("z"), v.b)
    assert.are.equal("int:0 int:0", v.c)
  end)

  describe("errors", function()
    local v
    before_each(function() v = v or get("/errors") end)

    it("gives a unique violation as a table: sqlstate 23505, message, detail, constraint", function()
      assert.are.equal("nil", v["unique.r"])
      assert.are.equal("table", v["unique.type"])
      local e = v["unique.err"]
      assert.matches('sqlstate=str:"23505"', e, 1, true)
      assert.matches('severity=str:"ERROR"', e, 1, true)
      assert.matches('message=str:"duplicate key value violates unique constraint \\x22uniq_pkey\\x22"', e, 1, true)
      assert.matches('detail=str:"Key (id)=(1) already exists."', e, 1, true)
      assert.matches('constraint=str:"uniq_pkey"', e, 1, true)
      assert.matches('table=str:"uniq"', e, 1, true)
      assert.matches('sqlstate=str:"23505"', v["unique_param.err"], 1, true)
    end)

    it("gives tostring(err) as one line with the sqlstate", function()
      local s = v["unique.tostring"]
      assert.is_nil(s:find("\\x0a", 1, true), "one line: " .. s)
      assert.are.equal(str('ERROR 23505: duplicate key value violates unique constraint "uniq_pkey" ' ..
        '(DETAIL: Key (id)=(1) already exists.)'), s)
      assert.matches("42601", v["syntax.tostring"], 1, true)
      assert.is_nil(v["syntax.tostring"]:find("\\x0a", 1, true), v["syntax.tostring"])
    end)

    it("gives a syntax error as 42601 with its position, an unknown table as 42P01", function()
      assert.matches('sqlstate=str:"42601"', v["syntax.err"], 1, true)
      local pos = v["syntax.err"]:match("position=([^,]+)")
      assert.is_truthy(pos == "int:1" or pos == str("1"), "position of 'selec 1': " .. tostring(pos))
      assert.matches('sqlstate=str:"42P01"', v["undefined.err"], 1, true)
      assert.matches('no_such_table', v["undefined.err"], 1, true)
      assert.matches('sqlstate=str:"22P02"', v["bad_param.err"], 1, true)
      assert.matches('sqlstate=str:"42P01"', v["pool.err"], 1, true)
    end)

    it("keeps the connection usable after each error (same backend, next query works)", function()
      for _, name in ipairs({ "unique", "unique_param", "syntax", "undefined", "bad_param" }) do
        assert.are.equal("int:1 bool:true", v[name .. ".after"], name)
      end
      assert.are.equal("int:2", v["pool.after"])
    end)
  end)

  describe("transactions", function()
    it("commits when the block returns, and returns what it returned", function()
      local v = get("/tx/commit")
      assert.are.equal(str("done") .. " int:2 int:2", v.ret)
      assert.are.equal("int:2", v.count)
    end)

    it("rolls back when the block raises, and raises the error again", function()
      local v = get("/tx/raise")
      assert.are.equal("bool:false", v.ok)
      assert.are.equal("bool:true", v.err_has_boom, v.err)
      assert.are.equal("int:0", v.count)
      assert.are.equal("int:0", v.busy)   -- the connection went back
    end)

    it("shows the block's rows to the block only, until COMMIT", function()
      local v = get("/tx/visible")
      assert.are.equal("int:1", v.inside)
      assert.are.equal("int:0", v.other)
      assert.are.equal("bool:true", v.other_conn)
      assert.are.equal("bool:true", v.ret)
      assert.are.equal("int:1", v.after)
    end)

    it("keeps the block's rows from psql while it runs", function()
      local c = assert(http.connect(srv.port, nil, 10))
      assert(c:send("GET /tx/visible?tag=held-row&hold=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      -- the block holds its connection in a transaction; psql does not see the row
      assert.is_truthy(eventually(function()
        return psql("select count(*) from pg_stat_activity where application_name = 'owin_main' " ..
          "and state = 'idle in transaction'") == "1"
      end, 3), "no transaction open")
      assert.are.equal("0", psql("select count(*) from acct where tag = 'held-row'"))
      local res = assert(c:read_response())
      c:close()
      local v = parse(res.body)
      assert.are.equal("bool:true", v.ret)
      assert.are.equal("1", psql("select count(*) from acct where tag = 'held-row'"))
    end)

    it("returns nil, err from a COMMIT after a failed statement, and keeps nothing", function()
      local v = get("/tx/failed")
      assert.matches('^nil error:{sqlstate=str:"23505"', v.inner)
      assert.matches('^nil error:{sqlstate=str:"25P02"', v.aborted)   -- the block is aborted
      assert.are.equal("nil", v.ret1)
      assert.are_not.equal("nil", v.ret2, "transaction returns nil, err")
      assert.are.equal("int:0", v.count)
      assert.are.equal("int:0", v.busy)
    end)
  end)

  describe("the pool", function()
    it("serves 200 concurrent requests on at most 5 connections, never one to two requests at once", function()
      local paths = {}
      for i = 1, 200 do paths[i] = "/pid?sleep=0.05" .. (i % 2 == 0 and "&mode=acquire" or "") end
      local max_seen, samples, last_sample = 0, 0, 0
      local t0 = socket.gettime()
      local results = concurrent(paths, { timeout = 60, during = function()
        if socket.gettime() - last_sample > 0.2 then
          last_sample = socket.gettime()
          local n = backends("owin_main")
          samples = samples + 1
          if n > max_seen then max_seen = n end
        end
      end })
      local elapsed = socket.gettime() - t0
      local by_pid = { query = {}, acquire = {} }
      local pids = {}
      for i, r in ipairs(results) do
        assert.is_truthy(r.res, "request " .. i .. ": " .. tostring(r.err))
        assert.are.equal(200, r.res.status, "request " .. i .. ": " .. r.res.body)
        local m = r.map
        local pid = assert(tonumber(m.pid), r.res.body)
        pids[pid] = true
        local kind = i % 2 == 0 and "acquire" or "query"
        by_pid[kind][pid] = by_pid[kind][pid] or {}
        table.insert(by_pid[kind][pid], { tonumber(m.t0), tonumber(m.t1), i })
      end
      local distinct = 0
      for _ in pairs(pids) do distinct = distinct + 1 end
      assert.is_true(distinct >= 1 and distinct <= 5, "distinct backends: " .. distinct)
      for kind, list in pairs(by_pid) do
        for pid, spans in pairs(list) do
          table.sort(spans, function(a, b) return a[1] < b[1] end)
          for k = 2, #spans do
            assert.is_true(spans[k - 1][2] <= spans[k][1],
              string.format("%s: backend %d served requests %d and %d at once ([%f, %f] and [%f, %f])",
                kind, pid, spans[k - 1][3], spans[k][3], spans[k - 1][1], spans[k - 1][2], spans[k][1], spans[k][2]))
          end
        end
      end
      assert.is_true(samples > 0)
      assert.is_true(max_seen <= 5, "server connections of the pool seen at once: " .. max_seen)
      assert.is_true(backends("owin_main") <= 5)
      -- 200 x 50 ms on 5 connections is at least 2 s
      assert.is_true(elapsed >= 1.9, "too fast for 5 connections: " .. elapsed)
      local s = stats()
      assert.is_true(s.open >= 1 and s.open <= 5, "open " .. tostring(s.open))
      assert.are.equal(0, s.busy)
      assert.are.equal(0, s.waiting)
      assert.are.equal(s.open, s.idle)
      assert.are.equal(s.open, backends("owin_main"))
    end)

    it("answers 100 other requests while a query sleeps 1 s", function()
      local slow = assert(http.connect(srv.port, nil, 10))
      assert(slow:send("GET /sleep?s=1&tag=slow1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      local t0 = socket.gettime()
      assert.is_truthy(eventually(function() return active("slow1") == 1 end, 2), "the slow query did not start")
      local paths = {}
      for i = 1, 100 do paths[i] = "/plain" end
      local results = concurrent(paths, { timeout = 10 })
      local last_at = 0
      for i, r in ipairs(results) do
        assert.is_truthy(r.res, "request " .. i .. ": " .. tostring(r.err))
        assert.are.equal("ok\n", r.res.body)
        if r.at > last_at then last_at = r.at end
      end
      local res = assert(slow:read_response())
      local slow_at = socket.gettime()
      slow:close()
      local v = parse(res.body)
      assert.are.equal("nil", v.err, res.body)
      assert.is_true(last_at < slow_at, "the 100 came after the slow one")
      assert.is_true(last_at - t0 < 1, "the 100 took " .. (last_at - t0) .. " s")
      assert.is_true(tonumber(v.elapsed) >= 0.95, v.elapsed)
    end)

    it("cancels the query on the server when the client leaves, and the pool goes on", function()
      local before = stats()
      local c = assert(http.connect(srv.port, nil, 10))
      assert(c:send("GET /sleep?s=30&tag=cancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      assert.is_truthy(eventually(function() return active("cancel") == 1 end, 2), "the query did not start")
      socket.sleep(0.3)
      c:close()
      local t0 = socket.gettime()
      assert.is_truthy(eventually(function() return active("cancel") == 0 end, 2),
        "pg_sleep(30) still runs on the server 2 s after the client left:\n" ..
        psql("select pid, state, query from pg_stat_activity where query like '%/* cancel */%'"))
      assert.is_true(socket.gettime() - t0 < 2.5)
      assert.is_truthy(eventually(function() return get("/last?tag=cancel").err == str("cancelled") end, 2),
        "the query returned: " .. tostring(get("/last?tag=cancel").err))
      local e = tonumber(get("/last?tag=cancel").elapsed)
      assert.is_true(e < 2, "the query returned after " .. e .. " s")
      -- the pool still works, with as many connections as before
      local v = get("/pid?sleep=0")
      assert.is_truthy(tonumber(v.pid))
      local after
      assert.is_truthy(eventually(function()
        after = stats()
        return after.busy == 0 and after.open == math.max(before.open, 1)
      end, 3), "pool before " .. before.open .. "/" .. before.busy .. ", after " ..
        tostring(after and after.open) .. "/" .. tostring(after and after.busy))
      assert.is_true(backends("owin_main") <= 5)
    end)

    it("keeps using the pool after its backend was terminated mid-query", function()
      local c = assert(http.connect(srv.port, nil, 15))
      assert(c:send("GET /sleep?s=10&tag=killme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      assert.is_truthy(eventually(function() return active("killme") == 1 end, 2), "the query did not start")
      assert.are.equal("t", psql("select pg_terminate_backend(pid) from pg_stat_activity " ..
        "where query like '%/* killme */%' and state = 'active' and pid <> pg_backend_pid()"))
      local res = assert(c:read_response())
      c:close()
      local v = parse(res.body)
      assert.are.equal("nil", v.r)
      assert.matches('^str:"connection lost', v.err)
      assert.is_true(tonumber(v.elapsed) < 5, v.elapsed)
      for _ = 1, 6 do   -- more than the pool's size: every connection is checked out once
        local p = get("/pid?sleep=0")
        assert.is_truthy(tonumber(p.pid), p.err)
      end
      local s = stats()
      assert.is_true(s.open <= 5 and s.busy == 0 and s.waiting == 0, "stats " .. s.open .. "/" .. s.busy)
      assert.are.equal(s.open, backends("owin_main"))
    end)
  end)

  it("waits acquire_timeout for a free connection, then says timeout; past backlog, too many waiting", function()
    local hold = assert(http.connect(srv.port, nil, 10))
    assert(hold:send("GET /hold?s=1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert.is_truthy(eventually(function() return stats("wait").busy == 1 end, 2), "the hold did not start")
    local results = concurrent({ "/wq", "/wq" }, { timeout = 5 })
    local errs = {}
    for i, r in ipairs(results) do
      assert.is_truthy(r.res, "request " .. i .. ": " .. tostring(r.err))
      errs[#errs + 1] = r.map.err .. " after " .. r.map.elapsed
    end
    table.sort(errs)
    assert.matches('^str:"timeout" after 0%.[2-9]', errs[1])                            -- waited 0.3 s
    assert.matches('^str:"too many waiting for a connection" after 0%.0', errs[2])       -- at once
    local res = assert(hold:read_response())
    hold:close()
    assert.matches("held=ok", res.body, 1, true)
    assert.are.equal("int:1", get("/wq").r)
  end)

  it("raises \"cannot wait here\" in a table.sort comparator", function()
    local v = get("/cannot")
    assert.are.equal("bool:false", v.ok)
    assert.matches("cannot wait here", v.err, 1, true)
    assert.are.equal("int:1", v.after)
  end)

  it("keeps at most 256 prepared statements per connection, and evicted ones still run", function()
    local v = get("/prepared?n=300")
    assert.are.equal("int:0", v.bad)
    local n = tonumber(v.cached:match("^int:(%d+)$"))
    assert.is_truthy(n and n >= 1 and n <= 256, "prepared statements on the connection: " .. v.cached)
    assert.are.equal("int:42", v.first_again)
    assert.are.equal("int:301", v.last_again)
  end)

  it("prepares a statement again, once, when it went stale (outside a transaction)", function()
    local v = get("/stale")
    assert.are.equal("a", v.before)
    assert.are.equal("a,b", v.altered)                 -- 0A000 "cached plan must not change"
    assert.are.equal("a,b", v.discarded)               -- 26000 after DISCARD ALL
    assert.matches('sqlstate=str:"0A000"', v.in_transaction, 1, true)
  end)

  it("runs queries from several threads of one request at once", function()
    local v = get("/spawn")
    assert.are.equal("bool:true int:1", v.t1)
    assert.are.equal("bool:true int:2", v.t2)
    assert.are.equal("bool:true int:3", v.t3)
    local e = tonumber(v.elapsed)
    assert.is_true(e >= 0.28 and e < 0.8, "three 0.3 s queries took " .. e .. " s")
  end)

  it("gets the connection back when a thread is killed during its query #slow", function()
    local v = get("/kill")
    assert.are.equal("bool:true nil", v.kill)
    assert.are.equal(str("dead"), v.status)
    local s
    local back = eventually(function()
      s = stats("kill")
      return s.busy == 0 and active("killed") == 0
    end, 5)
    assert.is_truthy(back, "busy " .. tostring(s and s.busy) .. ", active " .. active("killed"))
    assert.is_true(s.open <= 2)
    assert.are.equal(s.open, backends("owin_kill"))
    assert.are.equal("int:1", get("/kq").r)
    assert.are.equal("int:1", get("/kq").r)
    assert.are.equal("int:1", get("/kq").r)
  end)

  it("closes a connection idle longer than idle_timeout #slow", function()
    local pid1 = assert(tonumber(get("/pid?pool=idle&sleep=0").pid))
    assert.are.equal(1, backends("owin_idle"))
    assert.are.equal(1, stats("idle").open)
    local closed = eventually(function() return backends("owin_idle") == 0 end, 3)
    assert.are.equal(0, stats("idle").open)
    local pid2 = assert(tonumber(get("/pid?pool=idle&sleep=0").pid))   -- and opens one again
    assert.are_not.equal(pid1, pid2)
  end)

  it("closes every connection on db:close()", function()
    local v = get("/close")
    assert.are.equal("int:2", v.before)
    assert.are.equal("int:0", v.after)
    assert.is_truthy(eventually(function() return backends("owin_close") == 0 end, 2),
      "connections left: " .. backends("owin_close"))
  end)

  describe("timeouts", function()
    it("returns nil, \"timeout\" after query_timeout and ends the query on the server", function()
      local v = get("/sleep?s=5&pool=qt&tag=qt")
      assert.are.equal("nil", v.r)
      assert.are.equal(str("timeout"), v.err)
      local e = tonumber(v.elapsed)
      assert.is_true(e >= 0.45 and e < 1.5, "returned after " .. e .. " s")
      assert.is_truthy(eventually(function() return active("qt") == 0 end, 2), "pg_sleep(5) still runs")
      local again = get("/sleep?s=0&pool=qt&tag=qt0")
      assert.are.equal("nil", again.err)
      local s = stats("qt")
      assert.is_true(s.open <= 2 and s.busy == 0, "qt pool " .. s.open .. "/" .. s.busy)
    end)

    it("applies query_timeout on a connection of its own, which works after", function()
      local v = get("/sleep?s=5&via=conn&qt=0.5&tag=qtconn")
      assert.are.equal("nil", v.r)
      assert.are.equal(str("timeout"), v.err)
      local e = tonumber(v.elapsed)
      assert.is_true(e >= 0.45 and e < 1.5, "returned after " .. e .. " s")
      assert.is_truthy(eventually(function() return active("qtconn") == 0 end, 2))
      assert.are.equal("int:7", v.conn_after)   -- the next query waits for the cancelled one
    end)

    it("gives statement_timeout's error as sqlstate 57014", function()
      local v = get("/sleep?s=5&pool=st&tag=st")
      assert.are.equal("nil", v.r)
      assert.matches('sqlstate=str:"57014"', v.err, 1, true)
      local e = tonumber(v.elapsed)
      assert.is_true(e >= 0.25 and e < 2, "returned after " .. e .. " s")
      assert.are.equal("nil", get("/sleep?s=0&pool=st&tag=st0").err)
    end)
  end)

  describe("LISTEN and NOTIFY", function()
    local function has_note(want)
      local res = select(2, get("/notes"))
      for line in res.body:gmatch("[^\n]+") do
        if line == want then return true end
      end
      return false
    end

    it("runs db:listen's callback for a NOTIFY from psql and for pg_notify through the pool", function()
      psql("notify events, 'from psql'")
      assert.is_truthy(eventually(function() return has_note("from psql|events|integer") end, 3),
        "notes: " .. select(2, get("/notes")).body)
      assert.are.equal("r=" .. str("SELECT"), (select(2, get("/notify?channel=events&payload=via%20pool")).body
        :gsub("\n$", "")))
      assert.is_truthy(eventually(function() return has_note("via%20pool|events|integer") end, 3),
        "notes: " .. select(2, get("/notes")).body)
    end)

    it("keeps db:listen going after its connection was terminated #slow", function()
      assert.are.equal("t", psql("select bool_and(pg_terminate_backend(pid)) from pg_stat_activity " ..
        "where application_name = 'owin_main' and query ilike 'listen%events%' and pid <> pg_backend_pid()"))
      local n = 0
      assert.is_truthy(eventually(function()
        n = n + 1
        psql("notify events, 'again " .. n .. "'")
        socket.sleep(0.2)
        return select(2, get("/notes")).body:find("again %d+|events|integer") ~= nil
      end, 10), "no notification after the listener's backend was terminated")
    end)

    it("gives conn:notification() as { channel, payload, pid }, and nil, \"timeout\" when none", function()
      local s = get("/cl/start?channel=chan_x")
      assert.are.equal("ok", s.listen)
      local own_pid = tonumber(s.pid)
      local v = get("/cl/next?timeout=0.2")
      assert.are.equal(str("timeout"), v.err)
      local e = tonumber(v.elapsed)
      assert.is_true(e >= 0.15 and e < 1, "timeout after " .. e)
      psql("notify chan_x, 'p1'")
      v = get("/cl/next?timeout=3")
      assert.are.equal(str("chan_x"), v.channel)
      assert.are.equal(str("p1"), v.payload)
      local pid = tonumber((v.pid or ""):match("^int:(%d+)$"))
      assert.is_truthy(pid and pid ~= own_pid, "pid " .. tostring(v.pid))
      get("/notify?channel=chan_x&payload=p2")
      v = get("/cl/next?timeout=3")
      assert.are.equal(str("p2"), v.payload)
      -- and through the iterator: those already in, in order
      psql("notify chan_x, 'i1'; notify chan_x, 'i2'")
      psql("notify chan_x, 'i3'")
      assert.are.equal("i1,i2,i3", get("/cl/iter?n=3").payloads)
      get("/cl/stop")
      -- the channel's name is quoted as an identifier
      s = get("/cl/start?channel=odd")
      assert.are.equal("ok", s.listen)
      psql([[notify "Odd ""Chan""", 'q']])
      v = get("/cl/next?timeout=3")
      assert.are.equal(str('Odd "Chan"'), v.channel)
      assert.are.equal(str("q"), v.payload)
      get("/cl/stop")
    end)
  end)

  it("copies in from a string, a list and a function (10,000 rows) and out again", function()
    local v = get("/copy?n=10000")
    assert.are.equal("int:2 nil", v.string)
    assert.are.equal("int:2 nil", v.list)
    assert.are.equal("int:10000 nil", v["function"])
    assert.are.equal("int:10004", v.count)
    assert.are.equal("int:10004 nil", v.copy_to)
    assert.are.equal("int:10004", v.lines)
    assert.are.equal("int:0", v.bad_lines)
    assert.are.equal(str("1\tone"), v.first)
    assert.are.equal(str("10100\trow 10000"), v.last)
    -- a bad row: nil, err; nothing of that COPY is kept; the connection works
    assert.matches('^nil error:{sqlstate=str:"22P02"', v.bad)
    assert.are.equal("int:10004", v.after_bad)
    assert.are.equal("int:1 nil", v.pool_from)
    assert.are.equal("int:1 nil pool", v.pool_to)
  end)

  describe("connecting", function()
    it("says so when the password is wrong, and connects with the right one", function()
      local v = get("/connect?case=password")
      assert.are.equal("bool:false", v.conn)
      assert.matches('password authentication failed for user \\x22' .. pgh.PASSWORD_USER .. '\\x22', v.err, 1, true)
      v = get("/connect?case=goodpassword")
      assert.are.equal("bool:true", v.conn, v.err)
      assert.are.equal(str(pgh.PASSWORD_USER), v.user)
    end)

    it("says so when the database does not exist", function()
      local v = get("/connect?case=database")
      assert.are.equal("bool:false", v.conn)
      assert.matches('database \\x22no_such_db\\x22 does not exist', v.err, 1, true)
    end)

    it("gives libpq's reason, one line, when the server refuses the connection", function()
      local port = ports.free()
      local v = get("/connect?case=refused&port=" .. port)
      assert.are.equal("bool:false", v.conn)
      assert.matches('^str:"connection to server at \\x22127%.0%.0%.1\\x22, port ' .. port ..
        ' failed: Connection refused', v.err)
      assert.is_nil(v.err:find("\\x0a"), "one line: " .. v.err)
    end)

    it("fails at start-up with one clear line when the top level cannot connect", function()
      local port = ports.free()
      local out, err, code = server.run({ "spec/fixtures/pg_connect_fail.lua" },
        { env = { PG_CLOSED_PORT = tostring(port) }, timeout = 30 })
      assert.are_not.equal(0, code)
      assert.are.equal("", out)
      local first = err:match("^[^\n]*")
      assert.matches("^owinlua: ", first)
      assert.matches("Connection refused", first, 1, true)
      -- after the line, only the script's traceback (as for any error while loading)
      local rest = err:sub(#first + 2)
      assert.is_truthy(rest == "" or rest:find("^stack traceback:\n"), "after the first line:\n" .. err)
    end)
  end)

  it("leaks nothing in the pool after all of the above", function()
    local s = stats()
    assert.is_true(s.open <= 5, "open " .. s.open)
    assert.are.equal(0, s.busy)
    assert.are.equal(0, s.waiting)
    assert.are.equal(s.open, backends("owin_main"))
  end)
end)
