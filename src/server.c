/*
** Server state: listeners, live connections, options, the Date cache,
** graceful shutdown; and the owin.core module that the Lua side drives.
*/

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "owl.h"


/* {====== listeners */

static void on_connection (uv_stream_t *l, int status) {
  if (status < 0)
    return;
  owl_h1_accept(l);
}


static int add_listener (owl_server_t *s, uv_stream_t *h) {
  uv_stream_t **l = realloc(s->listeners, (size_t)(s->nlisteners + 1) * sizeof *l);
  if (l == NULL)
    return UV_ENOMEM;
  s->listeners = l;
  l[s->nlisteners++] = h;
  return 0;
}


static void free_handle (uv_handle_t *h) {
  free(h);
}


/* Parses "host:port" or "[v6]:port" into addr; 0 or UV_EINVAL. */
static int parse_tcp (const char *spec, struct sockaddr_storage *addr, int *v6) {
  char host[256];
  const char *colon = strrchr(spec, ':');
  if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof host)
    return UV_EINVAL;
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535)
    return UV_EINVAL;
  *v6 = host[0] == '[';
  if (*v6) {
    size_t hl = strlen(host);
    if (host[hl - 1] != ']')
      return UV_EINVAL;
    host[hl - 1] = 0;
    return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)addr) ? UV_EINVAL : 0;
  }
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) ? UV_EINVAL : 0;
}


/* Writes the bound address of t as "host:port" / "[v6]:port". */
static void tcp_name (uv_tcp_t *t, char *out, size_t outlen) {
  struct sockaddr_storage bound;
  char ip[64] = "?";
  int len = sizeof bound;
  uv_tcp_getsockname(t, (struct sockaddr *)&bound, &len);
  if (bound.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&bound;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(out, outlen, "[%s]:%d", ip, ntohs(a->sin6_port));
  }
  else {
    struct sockaddr_in *a = (struct sockaddr_in *)&bound;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(out, outlen, "%s:%d", ip, ntohs(a->sin_port));
  }
}


/*
** Binds and listens on spec ("host:port", "[v6]:port", "unix:/path"), or
** with OWL_LISTEN_FD on the inherited listening socket "fd:N:unix:/path".
** OWL_LISTEN_REUSEPORT sets SO_REUSEPORT before bind (a worker's own socket
** in the group); OWL_LISTEN_HOLD binds but never accepts (the master, which
** holds the port for its workers; a unix socket is listening already, for
** the workers to inherit).  Writes the address to print into out.  Returns
** 0 or a libuv error (negative), or UV_EINVAL for a spec that cannot be
** parsed.
*/
int owl_server_listen (owl_server_t *s, const char *spec, int flags,
                       char *out, size_t outlen) {
  int err;
  if ((flags & OWL_LISTEN_FD) || strncmp(spec, "unix:", 5) == 0) {
    uv_pipe_t *p = malloc(sizeof *p);
    if (p == NULL)
      return UV_ENOMEM;
    uv_pipe_init(s->loop, p, 0);
    p->data = s;
    if (flags & OWL_LISTEN_FD) {
      char *end;
      long fd = strtol(spec + 3, &end, 10);
      if (strncmp(spec, "fd:", 3) != 0 || *end != ':' || fd < 0)
        err = UV_EINVAL;
      else
        err = uv_pipe_open(p, (uv_file)fd);
      spec = end + 1;
    }
    else {
      const char *path = spec + 5;
      struct stat st;
      if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);                       /* a stale socket of an earlier run */
      err = uv_pipe_bind(p, path);
    }
    if (!err && (flags & OWL_LISTEN_HOLD)) {
      uv_os_fd_t fd;
      if ((err = uv_fileno((uv_handle_t *)p, &fd)) == 0 && listen(fd, s->opt.backlog) < 0)
        err = uv_translate_sys_error(errno);
    }
    else if (!err)
      err = uv_listen((uv_stream_t *)p, s->opt.backlog, on_connection);
    if (err || (err = add_listener(s, (uv_stream_t *)p))) {
      uv_close((uv_handle_t *)p, free_handle);
      return err;
    }
    snprintf(out, outlen, "%s", spec);
    return 0;
  }
  struct sockaddr_storage addr;
  int v6;
  if (parse_tcp(spec, &addr, &v6))
    return UV_EINVAL;
  uv_tcp_t *t = malloc(sizeof *t);
  if (t == NULL)
    return UV_ENOMEM;
  uv_tcp_init_ex(s->loop, t, v6 ? AF_INET6 : AF_INET);
  t->data = s;
  if (flags & (OWL_LISTEN_REUSEPORT | OWL_LISTEN_HOLD)) {
    uv_os_fd_t fd;
    int on = 1;
    if ((err = uv_fileno((uv_handle_t *)t, &fd)) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
      err = uv_translate_sys_error(errno);
  }
  else
    err = 0;
  if (err || (err = uv_tcp_bind(t, (struct sockaddr *)&addr, v6 ? UV_TCP_IPV6ONLY : 0)) ||
      (!(flags & OWL_LISTEN_HOLD) &&
       (err = uv_listen((uv_stream_t *)t, s->opt.backlog, on_connection))) ||
      (err = add_listener(s, (uv_stream_t *)t))) {
    uv_close((uv_handle_t *)t, free_handle);
    return err;
  }
  char name[80];
  tcp_name(t, name, sizeof name);
  snprintf(out, outlen, "http://%s", name);
  return 0;
}


/*
** Names listener i for a worker: "host:port" with the bound port (returns
** -1: the worker binds its own socket), or "unix:/path" (returns the
** descriptor, which the worker inherits); -2 on failure.  For the master.
*/
int owl_server_listener_spec (owl_server_t *s, int i, char *out, size_t outlen) {
  uv_stream_t *l = s->listeners[i];
  if (l->type == UV_TCP) {
    tcp_name((uv_tcp_t *)l, out, outlen);
    return -1;
  }
  uv_os_fd_t fd;
  char path[256];
  size_t plen = sizeof path;
  if (uv_fileno((uv_handle_t *)l, &fd) || uv_pipe_getsockname((uv_pipe_t *)l, path, &plen))
    return -2;
  snprintf(out, outlen, "unix:%.*s", (int)plen, path);
  return fd;
}


/*
** Takes the connections waiting in the accept queue of a TCP listener that
** is about to close: with SO_REUSEPORT the kernel queued them for this
** process alone, and closing the socket would reset them.
*/
static void drain_queue (owl_server_t *s, uv_stream_t *l) {
  uv_os_fd_t fd;
  if (l->type != UV_TCP || uv_fileno((uv_handle_t *)l, &fd))
    return;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
      owl_h1_adopt(s, c);
    else if (errno != EINTR && errno != ECONNABORTED)
      break;
  }
}


/* Closes every listener; drain: serve what waits in their accept queues. */
void owl_server_unlisten (owl_server_t *s, int drain) {
  for (int i = 0; i < s->nlisteners; i++) {
    if (drain)
      drain_queue(s, s->listeners[i]);
    uv_close((uv_handle_t *)s->listeners[i], free_handle);
  }
  s->nlisteners = 0;
}
/* }====== */


/* {====== graceful shutdown */

/* After a stop signal, an idle keep-alive connection is kept this long (at
** most the graceful timeout) so that a request already on its way is still
** answered (with Connection: close) rather than cut. */
#define IDLE_GRACE_MS 200


static void finish (owl_server_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->grace_timer)) {
    uv_close((uv_handle_t *)&s->grace_timer, NULL);
    uv_close((uv_handle_t *)&s->idle_timer, NULL);
  }
  if (!uv_is_closing((uv_handle_t *)&s->sigint)) {
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    /* closing the handles restored the default action: a signal during
    ** the rest of the teardown must not kill a process that is exiting 0 */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
  }
  uv_stop(s->loop);
}


/* A connection was freed (conns.on_gone), or a stop step ended. */
static void conn_gone (owl_conns_t *set) {
  owl_server_t *s = &owl_srv;
  if (s->stopping && set->n == 0)
    finish(s);
}


static void on_idle_grace (uv_timer_t *t) {
  owl_server_t *s = t->data;
  for (owl_conn_t *c = owl_conn_next(&s->conns, NULL); c != NULL;
       c = owl_conn_next(&s->conns, c)) {
    const owl_handler_t *h = owl_conn_handler(c);
    if (!owl_conn_closing(c) && h->idle && h->idle(c))
      owl_conn_close(c);                    /* freed later: the walk goes on */
  }
  conn_gone(&s->conns);
}


static void on_grace (uv_timer_t *t) {
  owl_server_t *s = t->data;
  for (owl_conn_t *c = owl_conn_next(&s->conns, NULL); c != NULL;
       c = owl_conn_next(&s->conns, c))
    owl_conn_close(c);                      /* CallCancelled fires */
  conn_gone(&s->conns);
}


/*
** Stop accepting, fire host.OnAppDisposing, close idle connections, let the
** others finish their request within the graceful timeout.
*/
static void begin_shutdown (owl_server_t *s) {
  lua_State *L = s->L;
  if (s->stopping) {                        /* a second signal: now */
    on_grace(&s->grace_timer);
    return;
  }
  s->stopping = 1;
  owl_server_unlisten(s, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->disposing_ref);
  owl_token_fire(L, -1);
  lua_pop(L, 1);
  for (owl_conn_t *c = owl_conn_next(&s->conns, NULL); c != NULL;
       c = owl_conn_next(&s->conns, c)) {
    const owl_handler_t *h = owl_conn_handler(c);
    if (!owl_conn_closing(c) && h->on_stop)
      h->on_stop(c);                        /* WebSockets: close 1001 */
  }
  uv_timer_start(&s->grace_timer, on_grace, s->opt.graceful_timeout, 0);
  uv_timer_start(&s->idle_timer, on_idle_grace, s->opt.graceful_timeout < IDLE_GRACE_MS
                 ? s->opt.graceful_timeout : IDLE_GRACE_MS, 0);
  conn_gone(&s->conns);
}


void owl_server_stop (owl_server_t *s) {
  if (!s->stopping && s->app_ref != LUA_NOREF)
    begin_shutdown(s);
}


static void on_signal (uv_signal_t *h, int signum) {
  (void)signum;
  begin_shutdown(h->data);
}
/* }====== */


/* {====== owin.core */

static lua_Number optnum (lua_State *L, const char *k, lua_Number d) {
  lua_getfield(L, 1, k);
  lua_Number v = luaL_optnumber(L, -1, d);
  lua_pop(L, 1);
  return v;
}


/* core.configure(options): sizes in bytes, times in seconds. */
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
  lua_getfield(L, 1, "dev");
  if (!lua_isnil(L, -1))
    o->dev = lua_toboolean(L, -1);
  lua_getfield(L, 1, "ws_deflate");
  if (!lua_isnil(L, -1))
    o->ws_deflate = lua_toboolean(L, -1);
  lua_getfield(L, 1, "server_name");
  if (lua_isstring(L, -1))
    snprintf(o->server_name, sizeof o->server_name, "%s", lua_tostring(L, -1));
  return 0;
}


/*
** core.listen(spec [, mode]) -> address, or nil, err.  mode: "reuseport" (a
** worker's own socket; "fd:N:unix:/path" takes an inherited unix socket) or
** "hold" (the master: bind, accept nothing).
*/
static int l_listen (lua_State *L) {
  static const char *const modes[] = { "plain", "reuseport", "hold", NULL };
  static const int flags[] = { 0, OWL_LISTEN_REUSEPORT, OWL_LISTEN_HOLD };
  char out[300];
  const char *spec = luaL_checkstring(L, 1);
  int f = flags[luaL_checkoption(L, 2, "plain", modes)];
  if (f == OWL_LISTEN_REUSEPORT && strncmp(spec, "fd:", 3) == 0)
    f = OWL_LISTEN_FD;
  int err = owl_server_listen(&owl_srv, spec, f, out, sizeof out);
  if (err == UV_EINVAL && strncmp(spec, "unix:", 5) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "invalid listen address '%s' (expected host:port, "
                    "[v6]:port or unix:/path)", spec);
    return 2;
  }
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s: %s", spec, uv_strerror(err));
    return 2;
  }
  lua_pushstring(L, out);
  return 1;
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
  if (owl_srv.app_ref != LUA_NOREF)
    begin_shutdown(&owl_srv);
  return 0;
}


int luaopen_owin_core (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"configure", l_configure},
    {"listen", l_listen},
    {"run", l_run},
    {"stop", l_stop},
    {NULL, NULL}
  };
  owl_server_t *s = &owl_srv;
  luaL_newlib(L, funcs);
  lua_pushliteral(L, OWL_VERSION);
  lua_setfield(L, -2, "version");
  owl_open_headers(L);
  owl_open_stream(L);
  owl_open_runtime(L);
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


/* Defaults, before any option is read. */
void owl_server_init (owl_server_t *s, lua_State *L) {
  memset(s, 0, sizeof *s);
  s->L = L;
  /* no task runs in the main thread; new threads copy this extra space */
  *(owl_task_t **)lua_getextraspace(L) = NULL;
  s->loop = uv_default_loop();
  s->conns.on_gone = conn_gone;
  s->app_ref = LUA_NOREF;
  s->opt.max_header_bytes = 32 * 1024;
  s->opt.max_headers = 100;
  s->opt.max_target = 8 * 1024;
  s->opt.max_body = 32 * 1024 * 1024;
  s->opt.header_timeout = 30000;
  s->opt.body_timeout = 60000;
  s->opt.keepalive_timeout = 75000;
  s->opt.graceful_timeout = 30000;
  s->opt.max_connections = 10000;
  s->opt.backlog = 511;
  s->opt.ws_max_message = 16 * 1024 * 1024;
  s->opt.ws_ping_interval = 20000;
  s->opt.ws_ping_timeout = 20000;
  s->opt.ws_close_timeout = 5000;
  s->opt.ws_deflate = 1;
  strcpy(s->opt.server_name, "owinlua");
  /* Signals are caught from the start: a SIGTERM that arrives before the
  ** loop runs (while the app loads, right after the "listening" lines) is
  ** handled when it does, as a graceful stop. */
  uv_timer_init(s->loop, &s->grace_timer);
  uv_timer_init(s->loop, &s->idle_timer);
  s->grace_timer.data = s->idle_timer.data = s;
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&s->sigint);
  uv_unref((uv_handle_t *)&s->sigterm);
}
