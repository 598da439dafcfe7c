-- owin.semaphore in the test host (lua/owin/test/runtime.lua), the same
-- behaviour as the server's (src/runtime/sem.c, spec/e2e/semaphore_spec.lua).
--
--   busted --lua=lua5.4 spec/unit/semaphore_spec.lua

local owin = require("owin")
local test = require("owin.test")

describe("owin.semaphore in owin.test #unit", function()
  it("takes free units at once, queues the rest in order, times out", function()
    local log = {}
    local client = test.client(function(env)
      local sem = owin.semaphore(1)
      local function worker(name, timeout)
        local ok, err = sem:wait(timeout)
        log[#log + 1] = name .. (ok and " got" or (" " .. err)) .. " at " .. owin.now()
        if ok then owin.sleep(1); sem:post() end
      end
      local a = owin.spawn(worker, "a")
      local b = owin.spawn(worker, "b")
      local c = owin.spawn(worker, "c", 0.5)
      local d = owin.spawn(worker, "d", 5)
      owin.wait(a); owin.wait(b); owin.wait(d)
      env["owin.ResponseBody"]:write(tostring(sem:count()))
    end)
    local res = client:get("/")
    assert.equal("1", res.body)
    assert.same({ "a got at 0.0", "c timeout at 0.5", "b got at 1.0", "d got at 2.0" }, log)
  end)

  it("returns cancelled when the request is cancelled while it waits", function()
    local got
    local client = test.client(function(env)
      local sem = owin.semaphore(0)
      local ok, err = sem:wait(10)
      got = { ok, err }
    end)
    client:get("/", { cancel_after = 1 })
    assert.same({ nil, "cancelled" }, got)
  end)
end)
