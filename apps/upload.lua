-- Streaming upload: reads the request body piece by piece as it arrives,
-- never holding all of it, and answers with its length and Adler-32
-- checksum (RFC 1950), computed incrementally.  Run with:
--   owinlua --max-body 1g apps/upload.lua
--   printf Wikipedia | curl --data-binary @- http://127.0.0.1:8080/
--   -> 9 bytes, adler32 11e60398
--   curl -T big.iso http://127.0.0.1:8080/      (PUT streams a file)

local byte, min = string.byte, math.min

local MOD = 65521     -- the largest prime below 2^16
local NMAX = 5552     -- bytes zlib sums between reductions; keeps a and b small

-- Folds `s` into the running sums a and b; returns the new a, b.
local function adler32_update(a, b, s)
  local len = #s
  for first = 1, len, NMAX do
    for i = first, min(first + NMAX - 1, len) do
      a = a + byte(s, i)
      b = b + a
    end
    a, b = a % MOD, b % MOD
  end
  return a, b
end

app.run(function(env)
  local method = env["owin.RequestMethod"]
  local headers = env["owin.ResponseHeaders"]
  headers["Content-Type"] = "text/plain"
  if method ~= "POST" and method ~= "PUT" then
    env["owin.ResponseStatusCode"] = 405
    headers["Allow"] = "POST, PUT"
    env["owin.ResponseBody"]:write("send the data with POST or PUT\n")
    return
  end
  local a, b, n = 1, 0, 0
  -- Each chunk is what the server had ready; waiting for the next one
  -- yields this request's coroutine, so other requests are served meanwhile.
  for chunk in env["owin.RequestBody"]:chunks() do
    n = n + #chunk
    a, b = adler32_update(a, b, chunk)
  end
  env["owin.ResponseBody"]:write(string.format("%d bytes, adler32 %08x\n", n, (b << 16) | a))
end)
