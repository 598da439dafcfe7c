-- owin.options: owinlua's options, in one table that the command line
-- (owin.cli: parsing, OWINLUA_* variables, --help) and the C core (its
-- defaults, when owin.core opens) both read.
--
-- Each entry: name, value name, kind, default, help.  CORE maps an option
-- to the key owin.core's configure takes; sizes are bytes and times
-- seconds there, as convert returns them.

local tostring, tonumber, type = tostring, tonumber, type
local math_tointeger, string_format = math.tointeger, string.format

local M = {}

local OPTIONS = {
  { "listen", "ADDR", "list", "127.0.0.1:8080",
    "address to serve on; repeat for more (OWINLUA_LISTEN: a comma-separated list):\n" ..
    "  IPv4:PORT       one IPv4 address, e.g. 127.0.0.1:8080 or 0.0.0.0:8080\n" ..
    "  [IPv6]:PORT     one IPv6 address, e.g. [::1]:8080 or [::]:8080\n" ..
    "  localhost:PORT  the loopback addresses: 127.0.0.1 and [::1] (the latter\n" ..
    "                  when the machine has IPv6)\n" ..
    "  :PORT           every interface: 0.0.0.0 and [::] (the latter when the\n" ..
    "                  machine has IPv6)\n" ..
    "  unix:/PATH      a unix socket\n" ..
    "  https://ADDR    TLS on one of the TCP addresses above (--tls-cert, --tls-key)\n" ..
    "port 0 picks a free port (the same one for both addresses of a name);\n" ..
    "other host names are refused" },
  { "tls-cert", "FILE", "list", nil,
    "certificate of the https:// listeners (PEM, chain included); repeat it with\n" ..
    "--tls-key for more, each chosen by the names it holds when a client asks\n" ..
    "for one (SNI); the first serves the others" },
  { "tls-key", "FILE", "list", nil, "private key (PEM) of the --tls-cert in the same place" },
  { "tls-password-file", "FILE", "string", nil,
    "a file whose first line is the passphrase of encrypted --tls-key files" },
  { "tls-ciphers", "LIST", "string", nil,
    "OpenSSL cipher list for TLS 1.2 (default: ECDHE key exchange with AES-GCM\n" ..
    "or ChaCha20-Poly1305 only, AES-128 first)" },
  { "tls-min-version", "V", "choice", "1.2",
    "oldest TLS version accepted: 1.2 or 1.3 (1.0 and 1.1 are never offered)",
    { "1.2", "1.3" } },
  { "tls-client-ca", "FILE", "string", nil,
    "CA certificates (PEM) that client certificates must chain to" },
  { "tls-client-cert", "MODE", "choice", "none",
    "ask clients for a certificate: none; optional (the app reads the outcome in\n" ..
    "ssl.ClientCertificateErrors); require (no valid certificate, no handshake)",
    { "none", "optional", "require" } },
  { "max-header-bytes", "SIZE", "size", "32k",
    "largest request head (request line and headers); larger gets 431" },
  { "max-headers", "N", "int", 100, "most header lines in a request; more gets 431" },
  { "max-target", "SIZE", "size", "8k", "longest request-target; longer gets 414" },
  { "max-body", "SIZE", "size", "32m", "largest request body, 0 for no limit; larger gets 413" },
  { "header-timeout", "SEC", "seconds", 30,
    "time to receive a request head; a partial head then gets 408" },
  { "body-timeout", "SEC", "seconds", 60,
    "idle time allowed while the app waits for request body bytes (408)" },
  { "keepalive-timeout", "SEC", "seconds", 75,
    "idle keep-alive connections close after this; keep it longer than the idle\n" ..
    "timeout of any load balancer in front (AWS ALB: 60 s), or it will see 502s" },
  { "max-connections", "N", "int", 10000, "open connections at most; beyond, new ones get 503" },
  { "graceful-timeout", "SEC", "seconds", 30,
    "on SIGTERM/SIGINT, time in-flight requests get to finish before they are\n" ..
    "cancelled (owin.CallCancelled) and their connections closed" },
  { "backlog", "N", "int", 511, "listen(2) backlog" },
  { "ws-max-message", "SIZE", "size", "16m",
    "largest WebSocket message (and frame) a client may send; larger: close 1009" },
  { "ws-ping-interval", "SEC", "seconds", 20,
    "ping an idle WebSocket after this long; 0 never pings" },
  { "ws-ping-timeout", "SEC", "seconds", 20,
    "close a WebSocket whose peer does not answer a ping within this" },
  { "ws-close-timeout", "SEC", "seconds", 5,
    "after sending a close frame, wait this long for the peer's before cutting" },
  { "ws-compression", nil, "flag", true,
    "accept permessage-deflate (RFC 7692) when a client offers it;\n" ..
    "--no-ws-compression turns it off" },
  { "max-pending-timers", "N", "int", 1024,
    "timers (owin.timer.at/every) waiting to run at most; past it a new one\n" ..
    "gets nil, \"too many pending timers\"" },
  { "dns-ttl", "SEC", "seconds", 30,
    "how long a worker keeps a name it resolved (owin.resolve, connect)" },
  { "workers", "N", "workers", 1,
    "worker processes; more than 1 (or auto: one per CPU) starts a master that\n" ..
    "binds the listeners and supervises the workers, which all accept on the\n" ..
    "master's sockets; SIGHUP restarts them one at a time (reloading the app),\n" ..
    "SIGTTIN/SIGTTOU add/remove one" },
  { "reload", nil, "flag", false,
    "development: restart the workers when a .lua file under the app's\n" ..
    "directory changes; code that fails to load leaves the old workers serving" },
  { "server-header", "NAME", "string", "owinlua", "value of the Server header; empty leaves it out" },
  { "log-level", "LEVEL", "level", "info",
    "log threshold, for owin.log and the server's own lines: debug, info, warn or error" },
  { "dev", nil, "flag", false, "development mode: tracebacks in 500 responses" },
  { "check", nil, "flag", false,
    "check the options and listen addresses and load the app, as a start would\n" ..
    "(binding nothing); print APP: ok and exit 0, or the error and exit 1 or 2" },
  { "help", nil, "flag", false, "show this help and exit" },
  { "version", nil, "flag", false, "show the version and exit" },
}


-- option name -> owin.core configure key
local CORE = {
  ["max-header-bytes"] = "max_header_bytes",
  ["max-headers"] = "max_headers",
  ["max-target"] = "max_target",
  ["max-body"] = "max_body",
  ["header-timeout"] = "header_timeout",
  ["body-timeout"] = "body_timeout",
  ["keepalive-timeout"] = "keepalive_timeout",
  ["graceful-timeout"] = "graceful_timeout",
  ["max-connections"] = "max_connections",
  ["backlog"] = "backlog",
  ["dev"] = "dev",
  ["server-header"] = "server_name",
  ["log-level"] = "log_level",
  ["ws-max-message"] = "ws_max_message",
  ["ws-ping-interval"] = "ws_ping_interval",
  ["ws-ping-timeout"] = "ws_ping_timeout",
  ["ws-close-timeout"] = "ws_close_timeout",
  ["ws-compression"] = "ws_deflate",
  ["max-pending-timers"] = "max_pending_timers",
  ["dns-ttl"] = "dns_ttl",
}

local BY_NAME = {}
for _, o in ipairs(OPTIONS) do BY_NAME[o[1]] = o end

local function env_name(name)
  return "OWINLUA_" .. name:upper():gsub("-", "_")
end


local UNITS = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 }

-- Converts a textual value to the option's kind; nil, err when it does not fit.
local function convert(o, text)
  local name, kind = o[1], o[3]
  if kind == "flag" then
    if type(text) == "boolean" then return text end
    local t = tostring(text):lower()
    if t == "1" or t == "true" or t == "yes" or t == "on" then return true end
    if t == "0" or t == "false" or t == "no" or t == "off" or t == "" then return false end
    return nil, string_format("--%s takes no value (or 1/0 in %s), got '%s'", name, env_name(name), text)
  elseif kind == "size" then
    local num, unit = tostring(text):lower():match("^(%d+)%s*([kmg]?)i?b?$")
    if not num then
      return nil, string_format("--%s expects a size such as 65536, 64k or 1m, got '%s'", name, text)
    end
    return math_tointeger(tonumber(num) * UNITS[unit])
  elseif kind == "int" then
    local n = math_tointeger(tonumber(text))
    if not n or n < 0 then
      return nil, string_format("--%s expects a whole number, got '%s'", name, text)
    end
    return n
  elseif kind == "seconds" then
    local n = tonumber(text)
    if not n or n < 0 then
      return nil, string_format("--%s expects a number of seconds, got '%s'", name, text)
    end
    return n
  elseif kind == "workers" then
    local t = tostring(text):lower()
    if t == "auto" then return "auto" end
    local n = math_tointeger(tonumber(t))
    if not n or n < 1 or n > 512 then
      return nil, string_format("--%s expects a number from 1 to 512 or auto, got '%s'", name, text)
    end
    return n
  elseif kind == "level" then
    local t = tostring(text)
    if t ~= "debug" and t ~= "info" and t ~= "warn" and t ~= "error" then
      return nil, string_format("--%s expects debug, info, warn or error, got '%s'", name, t)
    end
    return t
  elseif kind == "choice" then
    local t = tostring(text)
    for _, v in ipairs(o[6]) do
      if t == v then return t end
    end
    return nil, string_format("--%s expects %s, got '%s'", name, table.concat(o[6], " or "), t)
  end
  return tostring(text)
end


-- The configure table for opts (option name -> value), or for the
-- defaults when opts is nil.
local function core_config(opts)
  local cfg = {}
  for _, o in ipairs(OPTIONS) do
    local key = CORE[o[1]]
    if key then
      local v
      if opts then
        v = opts[o[1]]
      else
        local err
        v, err = convert(o, o[4])
        if v == nil then error(err) end
      end
      cfg[key] = v
    end
  end
  return cfg
end

M.OPTIONS = OPTIONS
M.BY_NAME = BY_NAME
M.CORE = CORE
M.env_name = env_name
M.convert = convert
M.core_config = core_config
return M
