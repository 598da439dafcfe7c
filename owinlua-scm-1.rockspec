-- owinlua from a checkout:
--
--   luarocks --lua-version 5.4 make owinlua-scm-1.rockspec            (system tree)
--   luarocks --lua-version 5.4 make --tree DIR owinlua-scm-1.rockspec (any tree)
--
-- The Makefile does the work: its `owinlua` target builds the binary and its
-- `install` target puts it in $(BINDIR) and the owin modules in $(LUADIR).
-- LuaRocks deploys them to <tree>/bin and <tree>/share/lua/5.4, where the
-- binary looks for its modules (<bindir>/../share/lua/5.4).
--
-- `luarocks make` builds the current directory and never fetches
-- source.url; the url names this checkout (the repository has no public
-- home yet), so `luarocks build` of this file is not supported.

rockspec_format = "3.0"
package = "owinlua"
version = "scm-1"

source = {
  url = "git+file://.",
}

description = {
  summary = "A Lua 5.4 web server implementing OWIN on libuv and llhttp",
  detailed = [[
owinlua serves OWIN applications written in Lua 5.4.  The request is one
table of OWIN keys; apps and middleware are Lua functions composed into a
pipeline; every request runs in its own coroutine on a libuv event loop,
with HTTP/1.1 parsed by llhttp.
]],
  license = "MIT",
  labels = { "http", "server", "owin", "libuv" },
}

dependencies = {
  "lua >= 5.4",
}

external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
}

build = {
  type = "make",
  build_target = "owinlua",
  install_target = "install",
  variables = {                 -- passed to both make runs
    CFLAGS = "$(CFLAGS) -I$(LIBUV_INCDIR)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    UV_LIBS = "-L$(LIBUV_LIBDIR) -luv",
  },
  install_variables = {
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
  },
}
