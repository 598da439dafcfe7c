-- owin.test's tls option: an https:// listener's env (owin.RequestScheme
-- "https", the ssl.* keys), as the server gives it (spec/e2e/tls_spec.lua).
--
--   busted --lua=lua5.4 spec/unit/test_host_tls_spec.lua

local test = require("owin.test")

local function show(env)
  local load = env["ssl.LoadClientCertAsync"]
  env["owin.ResponseBody"]:write(table.concat({
    env["owin.RequestScheme"], tostring(env["ssl.ClientCertificate"]),
    tostring(env["ssl.ClientCertificateErrors"]), type(load),
    tostring(load and load()) }, "|"))
end

describe("owin.test with tls #unit", function()
  it("gives plain requests no ssl keys", function()
    assert.equal("http|nil|nil|nil|nil", test.client(show):get("/").body)
  end)

  it("gives https, and LoadClientCertAsync answering at once", function()
    assert.equal("https|nil|nil|function|nil", test.client(show, { tls = true }):get("/").body)
  end)

  it("gives the client certificate and its errors, per client or per request", function()
    local c = test.client(show, { tls = { client_cert = "PEM", client_cert_errors = "expired" } })
    assert.equal("https|PEM|expired|function|PEM", c:get("/").body)
    assert.equal("https|OTHER|nil|function|OTHER", c:get("/", { tls = { client_cert = "OTHER" } }).body)
    assert.equal("http|nil|nil|nil|nil", c:get("/", { tls = false }).body)
  end)

  it("refuses a tls option of the wrong shape", function()
    local c = test.client(show)
    assert.has_error(function() c:get("/", { tls = "yes" }) end,
      "owin.test: tls must be true or a table, got string")
    assert.has_error(function() c:get("/", { tls = { cert = "x" } }) end,
      "owin.test: tls: client_cert and client_cert_errors are strings, got cert = string")
  end)
end)
