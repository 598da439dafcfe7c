-- Runs routes of a fixture app in plain Lua 5.4, with the real luasocket
-- standing where require("owin.socket") would be, and prints each answer:
--
--   lua5.4 spec/helpers/luasocket_host.lua APP PATH...     (from the repo root)
--
-- For spec/fixtures/outside/luaredis.lua this is the reference: what
-- lua-redis does over luasocket itself, blocking, one route after another.
-- Output: "== PATH" then the body, for each PATH; "!! PATH: error" when a
-- route raised. Environment: what the fixture reads (REDIS_PORT, ...).
local socket = require("socket")

local app_path = assert(arg[1], "usage: luasocket_host.lua APP PATH...")
package.path = app_path:match("^(.*)/[^/]*$") .. "/?.lua;" .. package.path

local stand_in = setmetatable({
  install = function()
    package.loaded.socket = package.loaded["owin.socket"]
    package.loaded["socket.unix"] = require("socket.unix")
  end,
}, { __index = socket })
package.loaded["owin.socket"] = stand_in

owin = {}                                    -- luacheck: ignore (the fixtures' global)
local handler
app = { run = function(f) handler = f end }  -- luacheck: ignore
dofile(app_path)

for i = 2, #arg do
  local path, query = arg[i]:match("^([^?]*)%??(.*)$")
  local body = {}
  local env = {
    ["owin.RequestPath"] = path, ["owin.RequestQueryString"] = query,
    ["owin.ResponseHeaders"] = {},
    ["owin.ResponseBody"] = { write = function(_, ...)
      for _, s in ipairs({ ... }) do body[#body + 1] = tostring(s) end
    end },
  }
  local ok, err = pcall(handler, env)
  if ok then
    io.write("== ", arg[i], "\n", table.concat(body))
  else
    io.write("!! ", arg[i], ": ", tostring(err):gsub("\n", " "), "\n")
  end
end
