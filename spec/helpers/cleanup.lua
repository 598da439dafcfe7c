-- Cleanups for the running test, run last registered first.  (busted 2.1
-- keeps only one finally() per test, so a test that starts several things
-- registers them here and the spec runs them in after_each.)
--
--   local cleanup = require("helpers.cleanup")
--   after_each(cleanup.run)
--   local srv = cleanup.server("apps/hello.lua")    -- stopped, exit 0 asserted
--   cleanup.defer(function() os.remove(path) end)

local server = require("helpers.server")
local assert = require("luassert")

local M = {}

local list = {}

function M.defer(fn)
  list[#list + 1] = fn
end

-- Runs every cleanup, even when one fails; raises the first error after.
function M.run()
  local todo = list
  list = {}
  local first_err
  for i = #todo, 1, -1 do
    local ok, err = pcall(todo[i])
    if not ok and first_err == nil then first_err = err end
  end
  if first_err ~= nil then error(first_err, 0) end
end

-- Starts app and stops it when the test ends, asserting a clean exit.
function M.server(app, args, opts)
  local srv = server.start(app, args, opts)
  M.defer(function()
    local ok, how, code = srv:stop()
    assert.are.same({ true, "exit", 0 }, { ok, how, code },
      "owinlua did not exit cleanly:\n" .. srv:stderr())
  end)
  return srv
end

return M
