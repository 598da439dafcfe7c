-- owin.json against what it is built on (lua-cjson alone) and against the
-- pure-Lua alternative (dkjson), encoding and decoding the same values.
--
--   lua5.4 bench/json.lua [rounds]        (from the checkout; default 5 rounds)
--
-- Each cell is the median over the rounds of the time per call, in
-- microseconds, measured with os.clock (CPU time of this process) over
-- enough calls to last about 0.2 s.  The values: a small object (one todo),
-- a list of 100 todos (about 16 KB of JSON), and the same list with an
-- empty array and an empty object in every todo (so owin.json takes its
-- slower paths: the placeholder for [] when encoding, and the second parse
-- that tells [] from {} when decoding).  Needs lua-cjson and dkjson
-- (Debian: lua-cjson, lua-dkjson; tools/install-deps installs both).

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local json = require("owin.json")
local cjson = require("cjson").new()
local ok_dk, dkjson = pcall(require, "dkjson")
if not ok_dk then
  io.stderr:write("bench/json.lua: dkjson is not installed (Debian: apt install lua-dkjson)\n")
  os.exit(1)
end

local ROUNDS = tonumber(arg[1]) or 5

local function todo(i, empty)
  return {
    id = i, title = "Buy milk, number " .. i, done = i % 2 == 0,
    tags = empty and json.array({}) or json.array({ "home", "errand" }),
    created = "2024-05-01T10:00:00Z", price = 1.25 * i,
    owner = { name = "Ana", id = 7 }, meta = empty and {} or { v = 1 },
  }
end

local function list(n, empty)
  local items = {}
  for i = 1, n do items[i] = todo(i, empty) end
  return { items = json.array(items), total = n, page = 1 }
end

local VALUES = {
  { "one todo", todo(1) },
  { "100 todos", list(100) },
  { "100 todos, with [] and {}", list(100, true) },
}

-- Median time per call of f, in microseconds.
local function measure(f)
  local n, t0 = 0, os.clock()
  repeat
    f()
    n = n + 1
  until os.clock() - t0 > 0.02
  local iters = math.max(1, math.floor(n * 10))
  local times = {}
  for r = 1, ROUNDS do
    local start = os.clock()
    for _ = 1, iters do f() end
    times[r] = (os.clock() - start) / iters * 1e6
  end
  table.sort(times)
  return times[(ROUNDS + 1) // 2]
end

local function row(cells)
  print("| " .. table.concat(cells, " | ") .. " |")
end

print(string.format("JSON, time per call in microseconds (median of %d rounds; %s)", ROUNDS,
  _VERSION))
print()
row({ "value", "bytes", "owin.json encode", "cjson encode", "dkjson encode",
      "owin.json decode", "cjson decode", "dkjson decode" })
row({ "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:" })
for _, v in ipairs(VALUES) do
  local name, value = v[1], v[2]
  local text = json.encode(value)
  assert(json.encode(json.decode(text)) and dkjson.decode(text))
  local cells = { name, tostring(#text) }
  for _, f in ipairs({
    function() return json.encode(value) end,
    function() return cjson.encode(value) end,
    function() return dkjson.encode(value) end,
    function() return json.decode(text) end,
    function() return cjson.decode(text) end,
    function() return dkjson.decode(text) end,
  }) do
    cells[#cells + 1] = string.format("%.1f", measure(f))
  end
  row(cells)
end
