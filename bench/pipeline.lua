-- wrk script: 16 requests of GET / pipelined in each write.
-- wrk counts every response, so its request count and req/s are per request.
local depth = 16
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
