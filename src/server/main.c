/*
** owinlua: the program.  Creates the Lua state, makes the owin modules
** reachable, and hands the command line to owin.cli, which reads options,
** loads the app and calls owin.core.run.  Afterwards every handle is closed
** and the state freed, so that sanitizers see a clean exit.
*/

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lualib.h>

#include "server/server.h"
#include "client/client.h"



/*
** Puts the owin modules first on package.path when they sit beside the
** binary: dir/lua (a checkout) or dir/../share/lua/5.4 (an install prefix
** such as a luarocks tree).  Otherwise the default path finds them.
*/
static void setpath (lua_State *L) {
  static const char *const layouts[] = { "%s/lua", "%s/../share/lua/5.4" };
  char exe[PATH_MAX], dir[PATH_MAX + 32], probe[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return;
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (slash == NULL)
    return;
  *slash = 0;
  for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
    snprintf(dir, sizeof dir, layouts[i], exe);
    snprintf(probe, sizeof probe, "%s/owin/init.lua", dir);
    if (access(probe, R_OK) != 0)
      continue;
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    return;
  }
}


static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}


/* [argv(light), argc] -> exit code from owin.cli.main */
static int pmain (lua_State *L) {
  char **argv = lua_touserdata(L, 1);
  int argc = (int)lua_tointeger(L, 2);
  luaL_openlibs(L);
  setpath(L);
  luaL_requiref(L, "owin.core", luaopen_owin_core, 0);
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "owin.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_call(L, 1, 1);
  return 1;
}


static void close_left (uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (!owl_sleep_dispose(h) && !owl_sem_dispose(h))
    uv_close(h, NULL);
}


int main (int argc, char **argv) {
  struct rlimit rl;
  int code = 1;
  signal(SIGPIPE, SIG_IGN);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;              /* one descriptor per connection */
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "owinlua: cannot create a Lua state\n");
    return 1;
  }
  owl_server_init(&owl_srv, L);
  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, argc);
  if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
    fprintf(stderr, "owinlua: %s\n", lua_tostring(L, -1));
    code = 1;
  }
  else
    code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  fflush(stdout);
  owl_threads_teardown();
  owl_cosock_teardown();
  owl_udp_teardown();
  owl_pg_teardown();
  uv_walk(owl_srv.loop, close_left, NULL);
  uv_run(owl_srv.loop, UV_RUN_DEFAULT);
  owl_req_drain(&owl_srv);                  /* before lua_close frees them */
  lua_close(L);
  uv_loop_close(owl_srv.loop);
  free(owl_srv.listeners);
  owl_buf_free(&owl_srv.hbuf);
  owl_buf_drain();
  return code;
}
