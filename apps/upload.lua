-- Streaming uploads: reads the request body piece by piece as it arrives,
-- never holding all of it, and answers with its length and Adler-32
-- checksum (RFC 1950), computed incrementally.  A multipart/form-data post
-- (the page at GET /, or curl -F) is read the same way: each file goes
-- through the checksum chunk by chunk as it arrives, not to memory or disk.
-- Run with:
--   owinlua --max-body 1g apps/upload.lua
--   printf Wikipedia | curl --data-binary @- http://127.0.0.1:8080/
--   -> 9 bytes, adler32 11e60398
--   curl -T big.iso http://127.0.0.1:8080/      (PUT streams a file)
--   curl -F note=hi -F file=@big.iso http://127.0.0.1:8080/
--   -> field note: hi
--      file file: big.iso (application/octet-stream), 123456 bytes, adler32 ...
-- or open http://127.0.0.1:8080/ in a browser.

local context = require("owin.context")

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

local PAGE = [[<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Upload</title>
<h1>Upload files</h1>
<form method="post" enctype="multipart/form-data">
  <p><label>Note <input name="note"></label></p>
  <p><input type="file" name="file" multiple></p>
  <p><button>Upload</button></p>
</form>
<p>The answer lists each field, and each file with its size and Adler-32 checksum,
computed as the bytes arrive.</p>
]]

-- A multipart form: fields as they are, files through the checksum.  The
-- limits are request:form()'s options; a file may be as large as the
-- server's --max-body.
local function multipart(ctx)
  local form, err, _, status = ctx.request:form({
    max_file_size = math.huge,
    max_size = math.huge,
    on_file = function(file, chunk)
      if chunk then
        file.a, file.b = adler32_update(file.a or 1, file.b or 0, chunk)
      end
    end,
  })
  if not form then return ctx.response:text(err .. "\n", status) end
  local names = {}
  for name in pairs(form) do names[#names + 1] = name end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local values = form[name]
    if type(values) ~= "table" or values.filename then values = { values } end
    for _, v in ipairs(values) do
      if type(v) == "string" then
        out[#out + 1] = string.format("field %s: %s\n", name, v)
      else
        out[#out + 1] = string.format("file %s: %s (%s), %d bytes, adler32 %08x\n", name,
          v.filename, v.content_type, v.size, ((v.b or 0) << 16) | (v.a or 1))
      end
    end
  end
  ctx.response:text(table.concat(out))
end

app.run(context.app(function(ctx)
  local method = ctx.request.method
  if method == "GET" or method == "HEAD" then
    return ctx.response:html(PAGE)
  end
  if method ~= "POST" and method ~= "PUT" then
    ctx.response:header("Allow", "GET, HEAD, POST, PUT")
    return ctx.response:text("send the data with POST or PUT\n", 405)
  end
  if ctx.request:header("Content-Type") and
     ctx.request:header("Content-Type"):lower():find("^%s*multipart/form%-data") then
    return multipart(ctx)
  end
  local a, b, n = 1, 0, 0
  -- Each chunk is what the server had ready; waiting for the next one
  -- yields this request's coroutine, so other requests are served meanwhile.
  for chunk in ctx.request:chunks() do
    n = n + #chunk
    a, b = adler32_update(a, b, chunk)
  end
  ctx.response:text(string.format("%d bytes, adler32 %08x\n", n, (b << 16) | a))
end))
