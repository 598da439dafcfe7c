-- Writes the C body of owl_reason (src/codec/status.c) from lua/owin/host/status.lua,
-- the one table of reason phrases: the server and the pure-Lua hosts send
-- the same phrases because there is one list.
--
--   lua5.4 tools/gen-reasons.lua lua/owin/host/status.lua > build/reasons.h
local path = assert(arg[1], "usage: gen-reasons.lua lua/owin/host/status.lua")
local status = assert(loadfile(path, "t"))()
local codes = {}
for code in pairs(status.REASONS) do codes[#codes + 1] = code end
table.sort(codes)
io.write("/* made by tools/gen-reasons.lua from ", path, ": do not edit */\n")
for _, code in ipairs(codes) do
  local phrase = status.REASONS[code]
  assert(phrase:match("^[ -~]*$") and not phrase:find('["\\]'), "phrase of " .. code)
  io.write(("case %d: return \"%s\";\n"):format(code, phrase))
end
