-- apps/echo.lua and its page in a real browser: owinlua on port 0, then
-- spec/browser/echo.js drives Debian's Chromium through playwright-core to
-- send a text and a binary message over the page's WebSocket and see both
-- echoes.  Needs /usr/bin/chromium and spec/browser/node_modules: run
-- tools/install-browser (as root) first.
--
--   busted --lua=lua5.4 spec/e2e/browser_spec.lua

local server = require("helpers.server")

local CHROMIUM = os.getenv("CHROMIUM") or "/usr/bin/chromium"
local NODE = os.getenv("NODE") or "node"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

describe("apps/echo.html in Chromium #e2e #browser", function()
  it("connects, and echoes a text and a binary message", function()
    assert(exists(CHROMIUM) and exists("spec/browser/node_modules/playwright-core/package.json"),
      "no Chromium or playwright-core: run tools/install-browser as root")
    local srv = server.start("apps/echo.lua")
    finally(function()
      local ok, how, code = srv:stop()
      assert.are.same({ true, "exit", 0 }, { ok, how, code },
        "owinlua did not exit cleanly:\n" .. srv:stderr())
    end)

    -- echo.js bounds itself (60 s); timeout(1) is the backstop.
    local cmd = string.format("CHROMIUM=%s timeout -k 5 90 %s spec/browser/echo.js %d 2>&1",
      server.shell_quote(CHROMIUM), NODE, srv.port)
    local proc = assert(io.popen(cmd, "r"))
    local out = proc:read("a")
    local _, how, code = proc:close()
    local line = out                          -- the last JSON line, if any
    for l in out:gmatch("[^\n]+") do
      if l:sub(1, 1) == "{" then line = l end
    end

    assert.are.same({ "exit", 0 }, { how, code }, "echo.js failed:\n" .. out)
    assert.is_truthy(line:find('"ok":true', 1, true), line)
    assert.is_truthy(line:find('{"kind":"text","text":"hello from Chromium ✓"}', 1, true), line)
    assert.is_truthy(line:find('{"kind":"binary","text":"binary de ad be ff"}', 1, true), line)
  end)
end)
