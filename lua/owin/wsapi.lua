-- owin.wsapi: WSAPI (Lua's Rack/WSGI) and OWIN, both ways.
--
--   local wsapi = require("owin.wsapi")
--   app.run(wsapi.app(wsapi_app))        -- a WSAPI application served by owinlua
--   app.use(wsapi.middleware(wsapi_app)) -- the same as a middleware (never calls next)
--   return wsapi.handler(owin_app)       -- an owinlua app as a WSAPI application,
--                                        -- for wsapi.cgi, FastCGI or Xavante
--
-- A WSAPI application is function(wsapi_env) -> status, headers, iterator
-- (keplerproject/wsapi doc/us/manual.md): wsapi_env holds the CGI
-- meta-variables (RFC 3875) and the streams `input` and `error`; status is a
-- number or a "200 OK" string; header values are strings or arrays of
-- strings; the iterator returns the body piece by piece, then nil.
--
-- Debian's lua-wsapi installs its modules for Lua 5.1 and 5.2 only
-- (/usr/share/lua/5.1, with links in 5.2), and its dependency lua-coxpcall
-- for 5.1 to 5.3.  They are plain Lua that also runs under 5.4, so loading
-- this module adds a searcher that finds `wsapi`, `wsapi.*` and `coxpcall`
-- (and nothing else) there when Lua 5.4's own path has no WSAPI (one
-- installed with luarocks for 5.4 wins).  OWINLUA_WSAPI_PATH overrides the
-- path template.  Require owin.wsapi before any wsapi.* module.
--
-- The two directions live in owin.wsapi.app (WSAPI applications inside
-- owinlua) and owin.wsapi.handler (owinlua apps under a WSAPI host); this
-- module is their public entry.

local app = require("owin.wsapi.app")
local handler = require("owin.wsapi.handler")
local status = require("owin.host.status")

local error, loadfile, string_format, string_sub = error, loadfile, string.format, string.sub

local M = {}

------------------------------------------------------------------------------
-- Finding Debian's WSAPI modules under Lua 5.4

M.wsapi_path = os.getenv("OWINLUA_WSAPI_PATH") or
  "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.3/?.lua;/usr/share/lua/5.2/?.lua;" ..
  "/usr/share/lua/5.1/?.lua"

local function search_wsapi(name)
  if name ~= "wsapi" and name ~= "coxpcall" and string_sub(name, 1, 6) ~= "wsapi." then
    return nil
  end
  local file, err = package.searchpath(name, M.wsapi_path)
  if not file then return err end
  local chunk, lerr = loadfile(file)
  if not chunk then
    error(string_format("error loading module '%s' from file '%s':\n\t%s", name, file, lerr), 2)
  end
  return chunk, file
end

if not package.searchpath("wsapi.common", package.path) then
  package.searchers[#package.searchers + 1] = search_wsapi
end

------------------------------------------------------------------------------
-- The API

M.load = app.load
M.wsapi_env = app.wsapi_env
M.app = app.app
M.middleware = app.middleware
M.handler = handler.handler
M.REASONS = status.REASONS      -- the reason phrases of the handler's status strings

return M
