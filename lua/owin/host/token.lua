-- owin.host.token: cancellation tokens in pure Lua, shaped like the
-- server's (src/runtime/runtime.c): token.cancelled, token:register(fn) and
-- token:cancel().  The host fires a token when what it stands for ends
-- (owin.CallCancelled: the client went away; host.OnAppDisposing: the
-- server stops).
--
--   local token = require("owin.host.token")
--   local tok = token.new()
--   tok:register(function() ... end)
--   token.fire(tok)          -- tok.cancelled is true, the callbacks ran

local check = require("owin.host.check")
check.own(debug.getinfo(1, "S").source)

local setmetatable, type, pcall, tostring = setmetatable, type, pcall, tostring
local typeerror = check.typeerror

-- token -> its callbacks, in the order registered
local CALLBACKS = setmetatable({}, { __mode = "k" })

local Token = { __name = "owin.CancellationToken" }
local methods = {}
Token.__index = methods

-- token:register(fn): fn() runs when the token fires (at once if it has).
function methods.register(tok, fn)
  if type(tok) ~= "table" then typeerror(1, "table", tok) end
  if type(fn) ~= "function" then typeerror(2, "function", fn) end
  if tok.cancelled then
    fn()
    return
  end
  local cbs = CALLBACKS[tok]
  if cbs == nil then
    cbs = {}
    CALLBACKS[tok] = cbs
  end
  cbs[#cbs + 1] = fn
end

-- Fires the token: cancelled = true, then every callback in the order
-- registered; an error in one is logged and the others still run.  A
-- token fires once.
local function fire(tok)
  if tok.cancelled then return end
  tok.cancelled = true
  local cbs = CALLBACKS[tok]
  CALLBACKS[tok] = nil
  for i = 1, cbs and #cbs or 0 do
    local ok, err = pcall(cbs[i])
    if not ok then
      io.stderr:write("owinlua: error in a cancellation callback: ", tostring(err), "\n")
    end
  end
end

-- token:cancel(): an app may fire a token itself.
function methods.cancel(tok)
  if type(tok) ~= "table" then typeerror(1, "table", tok) end
  fire(tok)
end

-- A new token, not fired.
local function new()
  return setmetatable({ cancelled = false }, Token)
end

return {
  new = new,
  fire = fire,
}
