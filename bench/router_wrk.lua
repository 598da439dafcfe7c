-- wrk script for bench/router.sh: cycles through four GETs of one route
-- group of bench/router.lua (a constrained parameter, two parameters, a
-- wildcard, a static path).  The group is wrk's first script argument:
--   wrk ... -s bench/router_wrk.lua http://127.0.0.1:PORT/ -- 100
local reqs, i = {}, 0

function init(args)
  local g = args[1] or "1"
  for _, path in ipairs({ "/r" .. g .. "/items/42", "/r" .. g .. "/users/ann/posts/7",
                          "/r" .. g .. "/files/css/site.css", "/r" .. g .. "/about" }) do
    reqs[#reqs + 1] = wrk.format("GET", path)
  end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
