-- apps/echo.lua and its page in a real browser: owinlua on port 0, then
-- spec/browser/echo.js drives Debian's Chromium through playwright-core to
-- send a text and a binary message over the page's WebSocket and see both
-- echoes; then the same over HTTPS and wss, with the spec's CA trusted
-- through an NSS database in a HOME of its own (certutil, libnss3-tools).
-- Needs /usr/bin/chromium, certutil and spec/browser/node_modules: run
-- tools/install-browser (as root) first.
--
--   busted --lua=lua5.4 spec/e2e/browser_spec.lua

local server = require("helpers.server")
local tls = require("helpers.tls")

local CHROMIUM = os.getenv("CHROMIUM") or "/usr/bin/chromium"
local NODE = os.getenv("NODE") or "node"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Runs echo.js against srv (extra: its arguments after the port); returns
-- the last JSON line.
local function echo(srv, extra)
  -- echo.js bounds itself (60 s); timeout(1) is the backstop.
  local cmd = string.format("CHROMIUM=%s timeout -k 5 90 %s spec/browser/echo.js %d %s 2>&1",
    server.shell_quote(CHROMIUM), NODE, srv.port, extra or "")
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
  return line
end

local function stop_clean(srv)
  local ok, how, code = srv:stop()
  assert.are.same({ true, "exit", 0 }, { ok, how, code },
    "owinlua did not exit cleanly:\n" .. srv:stderr())
end

describe("apps/echo.html in Chromium #e2e #browser", function()
  it("connects, and echoes a text and a binary message", function()
    assert(exists(CHROMIUM) and exists("spec/browser/node_modules/playwright-core/package.json"),
      "no Chromium or playwright-core: run tools/install-browser as root")
    local srv = server.start("apps/echo.lua")
    finally(function() stop_clean(srv) end)
    echo(srv)
  end)

  it("does the same over HTTPS and wss, trusting the spec's CA", function()
    assert(exists(CHROMIUM) and exists("spec/browser/node_modules/playwright-core/package.json"),
      "no Chromium or playwright-core: run tools/install-browser as root")
    local pki = tls.pki()
    local home = tls.tempdir()
    finally(function() os.execute("rm -rf " .. tls.q(home)) end)
    local db = "sql:" .. home .. "/.pki/nssdb"
    local out, code = tls.run(string.format("mkdir -p %s/.pki/nssdb && " ..
      "certutil -d %s -N --empty-password && certutil -d %s -A -t C,, -n owinlua-spec-ca -i %s",
      tls.q(home), tls.q(db), tls.q(db), tls.q(pki.ca)), 30)
    assert.equal(0, code, "certutil (libnss3-tools: run tools/install-browser): " .. out)
    local srv = server.start("apps/echo.lua", { "--tls-cert", pki.server_crt, "--tls-key",
      pki.server_key }, { listen = "https://127.0.0.1:0" })
    finally(function() stop_clean(srv) end)
    assert.equal("https", srv.scheme)
    local line = echo(srv, "https " .. server.shell_quote(home))
    assert.is_truthy(line:find('"url":"https://localhost:' .. srv.port .. '/echo.html"', 1, true), line)
    assert.is_truthy(line:find('"ws":"wss://localhost:' .. srv.port .. '/"', 1, true), line)
    assert.is_truthy(line:find('"tls":{"secure":true,"alpn":"http/1.1"}', 1, true), line)
  end)
end)
