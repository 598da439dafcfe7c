-- make bench's smoke mode (sh bench/run --quick): the whole suite runs end to
-- end against every server and prints its tables.  It asserts nothing about
-- the numbers: benchmarks are measured by `make bench`, never by tests.
describe("#e2e #slow bench/run --quick", function()
  it("runs every scenario (TLS and PostgreSQL too) against the floor, owinlua, owinlua+lua-redis, nginx and node", function()
    local errfile = os.tmpname()
    local p = io.popen("sh bench/run --quick 2>" .. errfile)
    local out = p:read("a")
    local ok, _, code = p:close()
    local f = io.open(errfile)
    local err = f and f:read("a") or ""
    if f then f:close() end
    os.remove(errfile)
    assert.is_true(ok, "bench/run exited " .. tostring(code) .. ":\n" .. err .. out)
    for _, row in ipairs({ "hello, 50 keep-alive connections", "16 requests pipelined per write",
                           "1 MiB response", "WebSocket echo, 64 B", "WebSocket echo, 16 KiB",
                           "memory per idle keep-alive connection", "memory per idle WebSocket",
                           "Redis GET through a pooled connection", "memory per pooled Redis connection",
                           "PostgreSQL: primary-key select through a pool of 10",
                           "TLS: hello, 50 keep-alive connections", "TLS: a new connection (full handshake) per request",
                           "TLS: 1 MiB response", "memory per idle TLS connection" }) do
      assert.matches(row, out, 1, true)
    end
    for _, server in ipairs({ "floor (C)", "owinlua", "nginx + lua", "node http", "owinlua+lua-redis",
                              "nginx + lua-resty-redis", "node https", "node + pg" }) do
      assert.matches("| " .. server .. " |", out, 1, true)
    end
    assert.matches("| scenario | floor | nginx | node | owinlua | target | verdict |", out, 1, true)
    assert.matches("| Redis GET, pooled | server | req/s |", out, 1, true)
    assert.matches("| PostgreSQL select, pooled | server | req/s |", out, 1, true)
  end)
end)
