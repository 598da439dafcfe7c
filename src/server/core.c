/*
** owin.core, assembled: the one file that sees every layer.  It opens each
** area's Lua API, reads the options' defaults from owin.options, and gives
** the command line configure, listen, run and stop.
*/

#include <stdio.h>
#include <string.h>

#include "server/server.h"
#include "client/client.h"
#include "client/httpc.h"
#include "runtime/gzip_lua.h"


/* {====== owin.core */

static lua_Number optnum (lua_State *L, const char *k, lua_Number d) {
  lua_getfield(L, 1, k);
  lua_Number v = luaL_optnumber(L, -1, d);
  lua_pop(L, 1);
  return v;
}


/*
** core.configure(options): sizes in bytes, times in seconds; a key left out
** keeps its value.
*/
static int l_configure (lua_State *L) {
  owl_options_t *o = &owl_srv.opt;
  luaL_checktype(L, 1, LUA_TTABLE);
  o->max_header_bytes = (size_t)optnum(L, "max_header_bytes", (lua_Number)o->max_header_bytes);
  o->max_headers = (size_t)optnum(L, "max_headers", (lua_Number)o->max_headers);
  o->max_target = (size_t)optnum(L, "max_target", (lua_Number)o->max_target);
  o->max_body = (uint64_t)optnum(L, "max_body", (lua_Number)o->max_body);
  o->header_timeout = (uint64_t)(optnum(L, "header_timeout", o->header_timeout / 1e3) * 1e3);
  o->body_timeout = (uint64_t)(optnum(L, "body_timeout", o->body_timeout / 1e3) * 1e3);
  o->keepalive_timeout = (uint64_t)(optnum(L, "keepalive_timeout", o->keepalive_timeout / 1e3) * 1e3);
  o->graceful_timeout = (uint64_t)(optnum(L, "graceful_timeout", o->graceful_timeout / 1e3) * 1e3);
  o->max_connections = (unsigned)optnum(L, "max_connections", o->max_connections);
  o->ws_max_message = (uint64_t)optnum(L, "ws_max_message", (lua_Number)o->ws_max_message);
  o->ws_ping_interval = (uint64_t)(optnum(L, "ws_ping_interval", o->ws_ping_interval / 1e3) * 1e3);
  o->ws_ping_timeout = (uint64_t)(optnum(L, "ws_ping_timeout", o->ws_ping_timeout / 1e3) * 1e3);
  o->ws_close_timeout = (uint64_t)(optnum(L, "ws_close_timeout", o->ws_close_timeout / 1e3) * 1e3);
  o->backlog = (int)optnum(L, "backlog", o->backlog);
  o->max_pending_timers = (unsigned)optnum(L, "max_pending_timers", o->max_pending_timers);
  o->dns_ttl = (uint64_t)(optnum(L, "dns_ttl", o->dns_ttl / 1e3) * 1e3);
  lua_getfield(L, 1, "dev");
  if (!lua_isnil(L, -1))
    o->dev = lua_toboolean(L, -1);
  lua_getfield(L, 1, "ws_deflate");
  if (!lua_isnil(L, -1))
    o->ws_deflate = lua_toboolean(L, -1);
  lua_getfield(L, 1, "log_level");
  if (lua_isstring(L, -1)) {
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    o->log_level = luaL_checkoption(L, -1, NULL, levels);
  }
  lua_getfield(L, 1, "server_name");
  if (lua_isstring(L, -1))
    snprintf(o->server_name, sizeof o->server_name, "%s", lua_tostring(L, -1));
  return 0;
}


/*
** The options' defaults, from owin.options (the table the command line
** reads too): [core] -> [core].
*/
static void defaults (lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "owin.options");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "core_config");
  lua_call(L, 0, 1);                        /* [core, options, config] */
  lua_pushcfunction(L, l_configure);
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
}


static void push_invalid (lua_State *L, const char *spec) {
  lua_pushnil(L);
  lua_pushfstring(L, "invalid listen address '%s' (expected IPv4:port, [IPv6]:port, "
                  "localhost:port, :port or unix:/path, the TCP ones maybe after https://)",
                  spec);
}


/* core.check_listen(spec) -> true, or nil, err: spec parses (nothing bound). */
static int l_check_listen (lua_State *L) {
  const char *spec = luaL_checkstring(L, 1);
  if (owl_server_check_listen(spec)) {
    push_invalid(L, spec);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}


/*
** core.listen(spec [, mode]) -> {address...}, or nil, err.  mode: "hold"
** (the master: bind and listen, accept nothing) or "inherit" (a worker:
** "fd:N:tcp:..." or "fd:N:unix:..." from the master).
*/
static int l_listen (lua_State *L) {
  static const char *const modes[] = { "plain", "hold", "inherit", NULL };
  static const int flags[] = { 0, OWL_LISTEN_HOLD, OWL_LISTEN_FD };
  char out[400];
  const char *spec = luaL_checkstring(L, 1);
  int f = flags[luaL_checkoption(L, 2, "plain", modes)];
  int err = owl_server_listen(&owl_srv, spec, f, out, sizeof out);
  if (err == UV_EINVAL && !(f & OWL_LISTEN_FD) && owl_server_check_listen(spec)) {
    push_invalid(L, spec);
    return 2;
  }
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s: %s", spec, uv_strerror(err));
    return 2;
  }
  lua_newtable(L);
  int i = 0;
  for (char *p = out, *nl; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    lua_pushlstring(L, p, nl ? (size_t)(nl - p) : strlen(p));
    lua_rawseti(L, -2, ++i);
    if (nl == NULL)
      break;
  }
  return 1;
}


/* The strings of list field k of the table at 1, into v (at most max). */
static int strings (lua_State *L, const char *k, const char **v, int max) {
  int n = 0;
  if (lua_getfield(L, 1, k) == LUA_TTABLE) {
    int t = lua_gettop(L);
    for (; n < max && lua_rawgeti(L, t, n + 1) == LUA_TSTRING; n++)
      v[n] = lua_tostring(L, -1);             /* anchored by the table */
    lua_settop(L, t);
  }
  lua_pop(L, 1);
  return n;
}


static const char *optfield (lua_State *L, const char *k) {
  lua_getfield(L, 1, k);
  const char *v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);                              /* a string of the table's */
  return v;
}


/*
** core.tls_server{ certs = {...}, keys = {...}, password_file, ciphers,
** min_version = 12|13, client_ca, client_cert = "none"|"optional"|"require" }
** -> the certificates' names, or nil, err.  Loads the TLS listeners'
** context (before core.listen of an https:// spec).
*/
static int l_tls_server (lua_State *L) {
  static const char *const modes[] = { "none", "optional", "require", NULL };
  const char *certs[64], *keys[64];
  char err[400], names[400];
  owl_tls_server_opts_t o;
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&o, 0, sizeof o);
  o.ncerts = strings(L, "certs", certs, 64);
  if (strings(L, "keys", keys, 64) != o.ncerts)
    return luaL_error(L, "as many TLS keys as certificates are needed");
  o.certs = certs;
  o.keys = keys;
  o.password_file = optfield(L, "password_file");
  o.ciphers = optfield(L, "ciphers");
  o.client_ca = optfield(L, "client_ca");
  lua_getfield(L, 1, "min_version");
  o.min_version = (int)luaL_optinteger(L, -1, 12);
  lua_getfield(L, 1, "client_cert");
  o.client_cert = luaL_checkoption(L, -1, "none", modes);
  lua_pop(L, 2);
  owl_tls_ctx_t *ctx = owl_tls_server_ctx(&o, err, sizeof err);
  if (ctx == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  owl_tls_ctx_unref(owl_srv.tls);
  owl_srv.tls = ctx;
  owl_tls_ctx_names(ctx, names, sizeof names);
  lua_pushstring(L, names);
  return 1;
}


/* core.dev() -> true when the server runs with --dev (owin.dev). */
static int l_dev (lua_State *L) {
  lua_pushboolean(L, owl_srv.opt.dev);
  return 1;
}


/* core.log_write(level, id|nil, message): one log line, as the C core
** writes them (owin.log filters by its own threshold first). */
static int l_log_write (lua_State *L) {
  static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
  int level = luaL_checkoption(L, 1, NULL, levels);
  const char *id = luaL_optstring(L, 2, NULL);
  const char *msg = luaL_checkstring(L, 3);
  owl_log_always(level, id, "%s", msg);
  return 0;
}


/* core.run(appfunc): serves until a graceful stop; returns true. */
static int l_run (lua_State *L) {
  owl_server_t *s = &owl_srv;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  s->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_run(s->loop, UV_RUN_DEFAULT);
  lua_pushboolean(L, 1);
  return 1;
}


/* core.stop(): begins a graceful stop, as SIGTERM does. */
static int l_stop (lua_State *L) {
  (void)L;
  owl_server_shutdown(&owl_srv);
  return 0;
}


int luaopen_owin_core (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"configure", l_configure},
    {"listen", l_listen},
    {"tls_server", l_tls_server},
    {"check_listen", l_check_listen},
    {"log_write", l_log_write},
    {"dev", l_dev},
    {"run", l_run},
    {"stop", l_stop},
    {NULL, NULL}
  };
  owl_server_t *s = &owl_srv;
  luaL_newlib(L, funcs);
  defaults(L);
  lua_pushliteral(L, OWL_VERSION);
  lua_setfield(L, -2, "version");
  owl_open_headers(L);
  owl_open_stream(L);
  owl_open_runtime(L);
  owl_open_task(L);
  owl_open_thread(L);
  owl_open_cosock(L);
  owl_open_udp(L);
  owl_open_dns(L);
  owl_open_pg(L);
  owl_open_sem(L);
  owl_open_httpc(L);
  owl_open_gzip(L);
  owl_open_request(L);
  owl_open_env(L);
  owl_open_websocket(L);
  owl_open_upgrade(L);
  owl_open_fs(L);
  owl_open_master(L);
  owl_token_new(L);
  lua_pushvalue(L, -1);
  s->disposing_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "disposing");
  return 1;
}
/* }====== */
