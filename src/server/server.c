/*
** Server state: listeners, live connections, signals, graceful shutdown.
** The owin.core module that drives it is assembled in core.c.
*/

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"


/* {====== listeners */

/*
** A worker takes one connection per loop iteration from each listener.
** The workers share the master's accept queue, and libuv would otherwise
** accept until the queue is empty: the first worker to wake would take a
** whole burst of new connections.  When a connection arrives, libuv has accepted it and waits,
** polling that listener no more, until uv_accept takes it; taking it in
** the check phase lets the other workers, woken as well, take the next
** ones, and a worker busy with its requests takes fewer.  (How evenly the
** connections spread is still up to the scheduler: on 2 cores with wrk on
** one of them, wrk's 50 connections split anywhere from about even to all
** on one worker.)
*/
#define MAX_DEFERRED 64
static uv_stream_t *deferred[MAX_DEFERRED];
static int ndeferred;


/* The TLS context of listener l, or NULL for a plain one. */
static owl_tls_ctx_t *tls_of (owl_server_t *s, uv_stream_t *l) {
  for (int i = 0; i < s->nlisteners; i++)
    if (s->listeners[i] == l)
      return s->listener_tls[i] ? s->tls : NULL;
  return NULL;
}


static void accept_deferred (owl_server_t *s) {
  int n = ndeferred;
  ndeferred = 0;
  for (int i = 0; i < n; i++)
    owl_h1_accept(deferred[i], tls_of(s, deferred[i]));
  if (ndeferred == 0)
    uv_check_stop(&s->accept_check);
}


static void on_accept_check (uv_check_t *h) {
  accept_deferred(h->data);
}


static void on_connection (uv_stream_t *l, int status) {
  owl_server_t *s = l->data;
  if (status < 0)
    return;
  if (!s->worker_id || ndeferred == MAX_DEFERRED) {
    owl_h1_accept(l, tls_of(s, l));
    return;
  }
  deferred[ndeferred++] = l;
  if (!uv_is_active((uv_handle_t *)&s->accept_check))
    uv_check_start(&s->accept_check, on_accept_check);
}


static int add_listener (owl_server_t *s, uv_stream_t *h, int tls) {
  uv_stream_t **l = realloc(s->listeners, (size_t)(s->nlisteners + 1) * sizeof *l);
  if (l == NULL)
    return UV_ENOMEM;
  s->listeners = l;
  unsigned char *t = realloc(s->listener_tls, (size_t)(s->nlisteners + 1));
  if (t == NULL)
    return UV_ENOMEM;
  s->listener_tls = t;
  t[s->nlisteners] = (unsigned char)tls;
  l[s->nlisteners++] = h;
  return 0;
}


static void free_handle (uv_handle_t *h) {
  free(h);
}


/*
** TCP listen specs: "a.b.c.d:port", "[v6]:port", "localhost:port" (the
** loopback addresses 127.0.0.1 and ::1) or ":port" (every interface:
** 0.0.0.0 and ::).  A name stands for two addresses; the IPv6 one is left
** out on a machine that lacks it (IPv6 off, or no ::1), never otherwise.
** Host names other than localhost are refused: which addresses they stand
** for is the resolver's to say, and it may say something wider than meant.
*/
typedef struct tcp_spec {
  struct sockaddr_storage addr[2];
  int n;
  int v6_optional;              /* addr[1] may be missing on this machine */
} tcp_spec_t;


static int parse_port (const char *p, int *port) {
  int v = 0, n = 0;
  for (; *p; p++, n++) {
    if (*p < '0' || *p > '9' || n == 5)
      return UV_EINVAL;
    v = v * 10 + (*p - '0');
  }
  if (n == 0 || v > 65535)
    return UV_EINVAL;
  *port = v;
  return 0;
}


/* Parses a TCP spec into t; 0 or UV_EINVAL. */
static int parse_tcp (const char *spec, tcp_spec_t *t) {
  char host[256];
  int port;
  const char *colon = strrchr(spec, ':');
  memset(t, 0, sizeof *t);
  if (colon == NULL || (size_t)(colon - spec) >= sizeof host || parse_port(colon + 1, &port))
    return UV_EINVAL;
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = 0;
  if (host[0] == 0 || strcasecmp(host, "localhost") == 0) {
    int any = host[0] == 0;
    uv_ip4_addr(any ? "0.0.0.0" : "127.0.0.1", port, (struct sockaddr_in *)&t->addr[0]);
    uv_ip6_addr(any ? "::" : "::1", port, (struct sockaddr_in6 *)&t->addr[1]);
    t->n = 2;
    t->v6_optional = 1;
    return 0;
  }
  t->n = 1;
  if (host[0] == '[') {
    size_t hl = strlen(host);
    if (hl < 3 || host[hl - 1] != ']')
      return UV_EINVAL;
    host[hl - 1] = 0;
    return uv_ip6_addr(host + 1, port, (struct sockaddr_in6 *)&t->addr[0]) ? UV_EINVAL : 0;
  }
  return uv_ip4_addr(host, port, (struct sockaddr_in *)&t->addr[0]) ? UV_EINVAL : 0;
}


static int addr_port (const struct sockaddr_storage *a) {
  return ntohs(a->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
                                        : ((const struct sockaddr_in *)a)->sin_port);
}


static void set_port (struct sockaddr_storage *a, int port) {
  if (a->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
}


/* Writes the bound address of t as "host:port" / "[v6]:port". */
static void tcp_name (uv_tcp_t *t, char *out, size_t outlen) {
  struct sockaddr_storage bound;
  char ip[64] = "?";
  int len = sizeof bound;
  memset(&bound, 0, sizeof bound);
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


/* Drops the listener added last (a pair whose second half failed). */
static void drop_last_listener (owl_server_t *s) {
  uv_close((uv_handle_t *)s->listeners[--s->nlisteners], free_handle);
}


/*
** Binds one TCP address and listens on it (hold: listen(2) only, for the
** workers to accept on).  The port it got goes to *port.
**
** libuv reports a failed bind (EADDRINUSE) only at uv_listen; the master
** never calls uv_listen, and a listen(2) on a socket that is not bound binds
** it to a random port on every interface.  So the bind is confirmed with
** uv_tcp_getsockname, which returns that deferred error, before anything
** listens.
*/
static int tcp_listen (owl_server_t *s, const struct sockaddr_storage *addr, int hold,
                       int tls, int *port) {
  int v6 = addr->ss_family == AF_INET6;
  uv_tcp_t *t = malloc(sizeof *t);
  if (t == NULL)
    return UV_ENOMEM;
  int err = uv_tcp_init_ex(s->loop, t, v6 ? AF_INET6 : AF_INET);
  if (err) {                                /* no such family here */
    free(t);
    return err;
  }
  t->data = s;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  if ((err = uv_tcp_bind(t, (const struct sockaddr *)addr, v6 ? UV_TCP_IPV6ONLY : 0)) == 0 &&
      (err = uv_tcp_getsockname(t, (struct sockaddr *)&bound, &len)) == 0) {
    if (hold) {
      uv_os_fd_t fd;
      if ((err = uv_fileno((uv_handle_t *)t, &fd)) == 0 && listen(fd, s->opt.backlog) < 0)
        err = uv_translate_sys_error(errno);
    }
    else
      err = uv_listen((uv_stream_t *)t, s->opt.backlog, on_connection);
  }
  if (err || (err = add_listener(s, (uv_stream_t *)t, tls))) {
    uv_close((uv_handle_t *)t, free_handle);
    return err;
  }
  *port = addr_port(&bound);
  return 0;
}


/* An IPv6 address this machine cannot have (not an address in use). */
static int v6_missing (int err) {
  return err == UV_EAFNOSUPPORT || err == UV_EADDRNOTAVAIL || err == UV_EPROTONOSUPPORT;
}


/*
** Listens on every address of a TCP spec; the names of the bound ones go to
** out, one per line.  With port 0 the second address takes the port the
** first got, and when that port is taken there the pair is tried again.
*/
static int tcp_listen_spec (owl_server_t *s, const char *spec, int hold, int tls,
                            char *out, size_t outlen) {
  tcp_spec_t t;
  int err = parse_tcp(spec, &t), tries = 0;
  if (err)
    return err;
  int want = addr_port(&t.addr[0]);
again:
  out[0] = 0;
  for (int i = 0; i < t.n; i++) {
    int port;
    err = tcp_listen(s, &t.addr[i], hold, tls, &port);
    if (err && i == 1 && t.v6_optional && v6_missing(err))
      break;
    if (err && i == 1 && want == 0 && err == UV_EADDRINUSE && ++tries < 16) {
      drop_last_listener(s);
      set_port(&t.addr[1], 0);
      goto again;
    }
    if (err) {
      if (i == 1)
        drop_last_listener(s);
      return err;
    }
    if (i == 0 && t.n == 2)
      set_port(&t.addr[1], port);
    size_t used = strlen(out);
    char name[80];
    tcp_name((uv_tcp_t *)s->listeners[s->nlisteners - 1], name, sizeof name);
    snprintf(out + used, outlen - used, "%s%s://%s", used ? "\n" : "", tls ? "https" : "http",
             name);
  }
  return 0;
}


/* Is a server accepting on the unix socket at path? */
static int unix_in_use (const char *path) {
  struct sockaddr_un a;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  int in_use = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EAGAIN;
  close(fd);
  return in_use;
}


/* "https://" (a TLS listener: *tls = 1) or "http://" before a TCP spec. */
static const char *scheme_of (const char *spec, int *tls) {
  *tls = 0;
  if (strncmp(spec, "https://", 8) == 0) {
    *tls = 1;
    return spec + 8;
  }
  return strncmp(spec, "http://", 7) == 0 ? spec + 7 : spec;
}


int owl_server_check_listen (const char *spec) {
  tcp_spec_t t;
  int tls;
  const char *rest = scheme_of(spec, &tls);
  if (rest != spec)
    return strncmp(rest, "unix:", 5) == 0 ? UV_EINVAL : parse_tcp(rest, &t);
  if (strncmp(spec, "unix:", 5) == 0) {
    size_t n = strlen(spec + 5);
    return n > 0 && n < sizeof ((struct sockaddr_un *)0)->sun_path ? 0 : UV_EINVAL;
  }
  return parse_tcp(spec, &t);
}


/*
** Binds and listens on spec (see owl_server_check_listen), or with
** OWL_LISTEN_FD takes the inherited listening socket of "fd:N:tcp:addr" or
** "fd:N:unix:/path".  OWL_LISTEN_HOLD binds and listens but never accepts:
** the master, whose workers inherit the socket.  Writes the addresses to
** print into out, one per line.  Returns 0 or a libuv error (negative), or
** UV_EINVAL for a spec that cannot be parsed.
*/
int owl_server_listen (owl_server_t *s, const char *spec, int flags,
                       char *out, size_t outlen) {
  int err, tls = 0;
  long fd = -1;
  if (flags & OWL_LISTEN_FD) {
    char *end;
    fd = strtol(spec + 3, &end, 10);
    if (strncmp(spec, "fd:", 3) != 0 || *end != ':' || fd < 0)
      return UV_EINVAL;
    spec = end + 1;
    if (strncmp(spec, "tls:", 4) == 0)
      tls = 1;
    if (tls || strncmp(spec, "tcp:", 4) == 0) {
      uv_tcp_t *t = malloc(sizeof *t);
      if (t == NULL)
        return UV_ENOMEM;
      uv_tcp_init(s->loop, t);
      t->data = s;
      int on = 0;
      socklen_t olen = sizeof on;
      /* listening already: a uv_listen on a socket that is not bound would
      ** bind it to a random port on every interface */
      if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) < 0 || !on)
        err = UV_EINVAL;
      else
        err = 0;
      if (err || (err = uv_tcp_open(t, (uv_os_sock_t)fd)) ||
          (err = uv_listen((uv_stream_t *)t, s->opt.backlog, on_connection)) ||
          (err = add_listener(s, (uv_stream_t *)t, tls))) {
        uv_close((uv_handle_t *)t, free_handle);
        return err;
      }
      snprintf(out, outlen, "%s://%s", tls ? "https" : "http", spec + 4);
      return 0;
    }
  }
  else if (owl_server_check_listen(spec))
    return UV_EINVAL;
  else
    spec = scheme_of(spec, &tls);
  if (tls && s->tls == NULL)
    return UV_EINVAL;                     /* core.tls_server first */
  if ((flags & OWL_LISTEN_FD) || strncmp(spec, "unix:", 5) == 0) {
    uv_pipe_t *p = malloc(sizeof *p);
    if (p == NULL)
      return UV_ENOMEM;
    uv_pipe_init(s->loop, p, 0);
    p->data = s;
    if (flags & OWL_LISTEN_FD)
      err = uv_pipe_open(p, (uv_file)fd);
    else {
      const char *path = spec + 5;
      struct stat st;
      err = 0;
      if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (unix_in_use(path))
          err = UV_EADDRINUSE;              /* another server answers there */
        else
          unlink(path);                     /* a stale socket of an earlier run */
      }
      if (!err)
        err = uv_pipe_bind(p, path);
    }
    if (!err && (flags & OWL_LISTEN_HOLD)) {
      uv_os_fd_t pfd;
      if ((err = uv_fileno((uv_handle_t *)p, &pfd)) == 0 && listen(pfd, s->opt.backlog) < 0)
        err = uv_translate_sys_error(errno);
    }
    else if (!err)
      err = uv_listen((uv_stream_t *)p, s->opt.backlog, on_connection);
    if (err || (err = add_listener(s, (uv_stream_t *)p, 0))) {
      uv_close((uv_handle_t *)p, free_handle);
      return err;
    }
    snprintf(out, outlen, "%s", spec);
    return 0;
  }
  return tcp_listen_spec(s, spec, flags & OWL_LISTEN_HOLD, tls, out, outlen);
}


/*
** Names listener i for a worker, which inherits its descriptor (returned;
** -2 on failure): "tcp:host:port" with the bound port, or "unix:/path".
** For the master.
*/
int owl_server_listener_spec (owl_server_t *s, int i, char *out, size_t outlen) {
  uv_stream_t *l = s->listeners[i];
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)l, &fd))
    return -2;
  if (l->type == UV_TCP) {
    char name[80];
    tcp_name((uv_tcp_t *)l, name, sizeof name);
    snprintf(out, outlen, "%s:%s", s->listener_tls[i] ? "tls" : "tcp", name);
    return fd;
  }
  char path[256];
  size_t plen = sizeof path;
  if (uv_pipe_getsockname((uv_pipe_t *)l, path, &plen))
    return -2;
  snprintf(out, outlen, "unix:%.*s", (int)plen, path);
  return fd;
}


/*
** Takes the connections waiting in the accept queue of a TCP listener that
** is about to close: closing the last descriptor of the socket would reset
** them.  (A worker's socket is shared with the master and the other workers;
** what it takes here is answered once, with Connection: close.)
*/
static void drain_queue (owl_server_t *s, uv_stream_t *l, owl_tls_ctx_t *tls) {
  uv_os_fd_t fd;
  if (l->type != UV_TCP || uv_fileno((uv_handle_t *)l, &fd))
    return;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
      owl_h1_adopt(s, c, tls);
    else if (errno != EINTR && errno != ECONNABORTED)
      break;
  }
}


/* Closes every listener; drain: serve what waits in their accept queues. */
void owl_server_unlisten (owl_server_t *s, int drain) {
  accept_deferred(s);                       /* closing would reset them */
  for (int i = 0; i < s->nlisteners; i++) {
    if (drain)
      drain_queue(s, s->listeners[i], s->listener_tls[i] ? s->tls : NULL);
    uv_close((uv_handle_t *)s->listeners[i], free_handle);
  }
  s->nlisteners = 0;
  free(s->listener_tls);
  s->listener_tls = NULL;
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
    owl_log_refused_flush();
    uv_close((uv_handle_t *)&s->refused_timer, NULL);
    uv_close((uv_handle_t *)&s->accept_check, NULL);
    if (s->ncut)
      owl_log(OWL_LOG_INFO, NULL, "stopped: %u connection%s cut at the graceful timeout",
              s->ncut, s->ncut == 1 ? "" : "s");
    else
      owl_log(OWL_LOG_INFO, NULL, "stopped");
  }
  if (!uv_is_closing((uv_handle_t *)&s->sigint)) {
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
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
  if (s->stopping && set->n == 0 && (s->nthreads == 0 || s->threads_cut))
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
  owl_threads_cut();                        /* threads and timer runs left */
  for (owl_conn_t *c = owl_conn_next(&s->conns, NULL); c != NULL;
       c = owl_conn_next(&s->conns, c))
    if (!owl_conn_closing(c)) {
      s->ncut++;
      owl_conn_close(c);                    /* CallCancelled fires */
    }
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
  owl_log(OWL_LOG_INFO, NULL, "stopping: %u connection%s open, up to %g s to finish",
          s->conns.n, s->conns.n == 1 ? "" : "s", s->opt.graceful_timeout / 1e3);
  owl_server_unlisten(s, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->disposing_ref);
  owl_token_fire(L, -1);
  lua_pop(L, 1);
  owl_threads_stopping();                   /* pending timers run, premature */
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


void owl_server_shutdown (owl_server_t *s) {
  if (s->app_ref != LUA_NOREF)
    begin_shutdown(s);
}


static void on_signal (uv_signal_t *h, int signum) {
  (void)signum;
  begin_shutdown(h->data);
}


/*
** A single process reloads its TLS certificates and keys: new connections
** get the new context, open ones keep theirs (counted) until they close.
** A certificate that does not load leaves the old ones in place.
*/
static void reload_tls (owl_server_t *s) {
  char err[400], names[400];
  owl_tls_ctx_t *ctx = owl_tls_server_reload(s->tls, err, sizeof err);
  if (ctx == NULL) {
    owl_log(OWL_LOG_ERROR, NULL, "SIGHUP: TLS certificates not reloaded, the old ones "
            "stay: %s", err);
    return;
  }
  owl_tls_ctx_unref(s->tls);
  s->tls = ctx;
  owl_tls_ctx_names(ctx, names, sizeof names);
  owl_log(OWL_LOG_INFO, NULL, "SIGHUP: TLS certificates reloaded (%s)", names);
}


/* SIGHUP restarts the workers in the master (master.c); a single process
** reloads its TLS certificates, if it has any, and nothing else: a hangup
** must not stop a server. */
static void on_sighup (uv_signal_t *h, int signum) {
  owl_server_t *s = h->data;
  (void)signum;
  if (s->tls != NULL && !s->worker_id)
    reload_tls(s);
  else if (s->worker_id)
    owl_log(OWL_LOG_WARN, NULL, "SIGHUP ignored: send it to the master (pid %d), "
            "which restarts the workers", (int)getppid());
  else
    owl_log(OWL_LOG_WARN, NULL, "SIGHUP ignored: nothing to reload without --workers "
            "or --reload (restart the process to load new code)");
}
/* }====== */


/* {====== request ids */

/* Fills tag with 8 random characters from [0-9a-z]: this boot's part of
** every request id. */
static void boot_tag (char *tag) {
  static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint64_t v;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
    v = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 32 ^ uv_hrtime();
  for (int i = 0; i < 8; i++, v /= 36)
    tag[i] = digits[v % 36];
  tag[8] = 0;
}
/* }====== */


/* The server's state before owin.core opens (core.c sets the options). */
void owl_server_init (owl_server_t *s, lua_State *L) {
  memset(s, 0, sizeof *s);
  s->L = L;
  /* no task runs in the main thread; new threads copy this extra space */
  *(owl_task_t **)lua_getextraspace(L) = NULL;
  s->loop = uv_default_loop();
  s->conns.on_gone = conn_gone;
  s->app_ref = LUA_NOREF;
  /* the options' defaults come from owin.options when owin.core opens */
  /* Signals are caught from the start: a SIGTERM that arrives before the
  ** loop runs (while the app loads, right after the "listening" lines) is
  ** handled when it does, as a graceful stop. */
  uv_timer_init(s->loop, &s->grace_timer);
  uv_timer_init(s->loop, &s->idle_timer);
  s->grace_timer.data = s->idle_timer.data = s;
  uv_check_init(s->loop, &s->accept_check);
  s->accept_check.data = s;
  uv_unref((uv_handle_t *)&s->accept_check);
  uv_timer_init(s->loop, &s->refused_timer);
  s->refused_timer.data = s;
  uv_unref((uv_handle_t *)&s->refused_timer);
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sigterm);
  uv_signal_init(s->loop, &s->sighup);
  s->sigint.data = s->sigterm.data = s->sighup.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_signal_start(&s->sighup, on_sighup, SIGHUP);
  uv_unref((uv_handle_t *)&s->sigint);
  uv_unref((uv_handle_t *)&s->sigterm);
  uv_unref((uv_handle_t *)&s->sighup);
  char tag[9];
  boot_tag(tag);
  snprintf(s->id_prefix, sizeof s->id_prefix, "%s-", tag);
}
