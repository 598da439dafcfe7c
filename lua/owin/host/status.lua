-- owin.host.status: the reason phrases of HTTP status codes, one table for
-- every host: the ones RFC 9110 section 15 defines (306 and 418 are unused
-- there and have none) and the registered ones apps commonly send (103,
-- 425, 428, 429, 431, 451).  The server's owl_reason (src/codec/status.c) is
-- made from this table at build time (tools/gen-reasons.lua).
--
--   local status = require("owin.host.status")
--   status.reason(404)       --> "Not Found"
--   status.reason(299)       --> ""   (no standard phrase: the server sends none)

local type, error, tostring, math_tointeger = type, error, tostring, math.tointeger

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [103] = "Early Hints",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [406] = "Not Acceptable", [407] = "Proxy Authentication Required",
  [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
  [412] = "Precondition Failed", [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [421] = "Misdirected Request",
  [422] = "Unprocessable Content", [425] = "Too Early", [426] = "Upgrade Required",
  [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}

-- status.reason(code) -> the phrase of code, "" for a code without one.
local function reason(code)
  if type(code) ~= "number" or math_tointeger(code) == nil then
    error("bad argument #1 to 'reason' (an integer status code expected, got " ..
      (type(code) == "number" and tostring(code) or type(code)) .. ")", 2)
  end
  return REASONS[code] or ""
end

return {
  REASONS = REASONS,
  reason = reason,
}
