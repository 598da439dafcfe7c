-- wrk script for bench/run's pg scenario: GET /todo/ID, ID going through
-- 1..1000 in a scattered order (617 * k mod 1000, a permutation since 617
-- and 1000 are coprime), the same for every server.  The requests are made
-- once, in init: request() only picks the next.
local reqs, i = {}, 0

function init()
  for k = 1, 1000 do reqs[k] = wrk.format("GET", "/todo/" .. (617 * k % 1000 + 1)) end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
