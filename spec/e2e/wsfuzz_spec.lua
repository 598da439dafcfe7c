-- WebSocket conformance: runs tools/wsfuzz/wsfuzz.js (an Autobahn-style
-- fuzzing client written from RFC 6455 and RFC 7692, Node.js built-ins only)
-- against apps/echo.lua, one group of case sections per test so that a
-- failing group is visible by name. Each group must end with exit status 0
-- and a summary of 0 FAILED, 0 UNCLEAN and 0 NON-STRICT; INFORMATIONAL is
-- reported by the runner but allowed. Groups 1-7 run once more with the
-- frames of a case sent in one write (--one-write): a valid message and a
-- protocol violation read together must still be answered in order, the
-- echo before the close. Then groups 1-7 and 12-13 again over TLS (wss,
-- the spec's CA), where every frame goes through OpenSSL's records.  The
-- whole file runs in about 40 s.
--
-- By hand: node tools/wsfuzz/wsfuzz.js --port PORT [--cases 6.4] [--verbose]
local server = require("helpers.server")
local tls = require("helpers.tls")

local RUNNER = "tools/wsfuzz/wsfuzz.js"

local function have_node()
  local p = io.popen("command -v node 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out ~= ""
end

-- Runs the runner on `cases`; returns its output and exit code.
local function wsfuzz(port, cases, extra)
  local cmd = string.format("node %s --port %d --cases %s --timeout 5 %s 2>&1",
    RUNNER, port, server.shell_quote(cases), extra or "")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

-- The summary line's counts, or nil.
local function summary(out)
  local ok, ns, info, failed, unclean = out:match(
    "wsfuzz: (%d+) OK, (%d+) NON%-STRICT, (%d+) INFORMATIONAL, (%d+) FAILED, (%d+) UNCLEAN")
  if not ok then return nil end
  return { ok = tonumber(ok), ns = tonumber(ns), info = tonumber(info),
           failed = tonumber(failed), unclean = tonumber(unclean) }
end

-- The lines worth showing when a group fails: every case not OK, and the summary.
local function not_ok(out)
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    if not line:match("^%S+%s+OK%s") then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n")
end

describe("#e2e #wsfuzz WebSocket conformance (Autobahn-style)", function()
  local srv

  setup(function()
    srv = server.start("apps/echo.lua", { "--ws-max-message", "16m" })
  end)

  teardown(function()
    if srv then assert.is_true(srv:stop()) end
  end)

  local groups = {
    { "1-5: framing, ping/pong, reserved bits, opcodes, fragmentation", "1,2,3,4,5", 70 },
    { "6: UTF-8 handling, fail-fast", "6", 200 },
    { "7: close handling and close codes", "7", 40 },
    { "9-10: large messages, limits (16m, close 1009), auto-fragmentation", "9,10", 60 },
    { "12-13: permessage-deflate payloads, parameters, edge cases", "12,13", 330 },
    { "1-7 with the frames of each case in one write", "1,2,3,4,5,6,7", 320, "--one-write" },
  }

  for _, g in ipairs(groups) do
    local title, cases, at_least, extra = g[1], g[2], g[3], g[4]
    it(title, function()
      if not have_node() then pending("node is not installed") return end
      local out, code = wsfuzz(srv.port, cases, extra)
      local s = summary(out)
      assert(s, "no summary line from wsfuzz:\n" .. out)
      local detail = "\n" .. not_ok(out)
      assert.equal(0, s.failed, "FAILED cases:" .. detail)
      assert.equal(0, s.unclean, "UNCLEAN cases:" .. detail)
      assert.equal(0, s.ns, "NON-STRICT cases:" .. detail)
      assert.equal(0, code, "wsfuzz exit status " .. tostring(code) .. detail)
      -- guards against a filter that silently matched (almost) nothing
      assert.is_true(s.ok + s.ns + s.info >= at_least,
        "only " .. (s.ok + s.ns + s.info) .. " cases ran" .. detail)
    end)
  end

  describe("over TLS (wss)", function()
    local tsrv, pki

    setup(function()
      pki = tls.pki()
      tsrv = server.start("apps/echo.lua", { "--ws-max-message", "16m", "--tls-cert",
        pki.server_crt, "--tls-key", pki.server_key }, { listen = "https://127.0.0.1:0" })
    end)

    teardown(function()
      if tsrv then assert.is_true(tsrv:stop()) end
    end)

    for _, g in ipairs({ groups[1], groups[2], groups[3], groups[5] }) do
      local title, cases, at_least = g[1], g[2], g[3]
      it(title, function()
        if not have_node() then pending("node is not installed") return end
        local out, code = wsfuzz(tsrv.port, cases, "--tls --servername localhost --ca " ..
          server.shell_quote(pki.ca))
        local s = summary(out)
        assert(s, "no summary line from wsfuzz:\n" .. out)
        local detail = "\n" .. not_ok(out)
        assert.equal(0, s.failed, "FAILED cases:" .. detail)
        assert.equal(0, s.unclean, "UNCLEAN cases:" .. detail)
        assert.equal(0, s.ns, "NON-STRICT cases:" .. detail)
        assert.equal(0, code, "wsfuzz exit status " .. tostring(code) .. detail)
        assert.is_true(s.ok + s.ns + s.info >= at_least,
          "only " .. (s.ok + s.ns + s.info) .. " cases ran" .. detail)
      end)
    end
  end)
end)
