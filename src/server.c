/*
** Server state: listeners, live connections, options, the Date cache,
** graceful shutdown; and the owin.core module that the Lua side drives.
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

#include "owl.h"


owl_server_t owl_srv;


/* {====== status reasons and the Date header */

/* The reason phrase of a status, "" for a code without one.  The same
   phrases as lua/owin/host/status.lua, the pure-Lua hosts' table
   (spec/unit/host_spec.lua checks that the two agree). */
const char *owl_reason (int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}


/* Keeps s->date (IMF-fixdate) current; formats at most once a second. */
void owl_server_date (owl_server_t *s) {
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  time_t now = time(NULL);
  if ((uint64_t)now == s->date_sec)
    return;
  struct tm tm;
  gmtime_r(&now, &tm);
  snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
           days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  s->date_sec = (uint64_t)now;
}
/* }====== */


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


static void accept_deferred (owl_server_t *s) {
  int n = ndeferred;
  ndeferred = 0;
  for (int i = 0; i < n; i++)
    owl_conn_accept(deferred[i]);
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
    owl_conn_accept(l);
    return;
  }
  deferred[ndeferred++] = l;
  if (!uv_is_active((uv_handle_t *)&s->accept_check))
    uv_check_start(&s->accept_check, on_accept_check);
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
                       int *port) {
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
  if (err || (err = add_listener(s, (uv_stream_t *)t))) {
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
static int tcp_listen_spec (owl_server_t *s, const char *spec, int hold,
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
    err = tcp_listen(s, &t.addr[i], hold, &port);
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
    snprintf(out + used, outlen - used, "%shttp://%s", used ? "\n" : "", name);
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


int owl_server_check_listen (const char *spec) {
  tcp_spec_t t;
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
  int err;
  long fd = -1;
  if (flags & OWL_LISTEN_FD) {
    char *end;
    fd = strtol(spec + 3, &end, 10);
    if (strncmp(spec, "fd:", 3) != 0 || *end != ':' || fd < 0)
      return UV_EINVAL;
    spec = end + 1;
    if (strncmp(spec, "tcp:", 4) == 0) {
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
          (err = add_listener(s, (uv_stream_t *)t))) {
        uv_close((uv_handle_t *)t, free_handle);
        return err;
      }
      snprintf(out, outlen, "http://%s", spec + 4);
      return 0;
    }
  }
  else if (owl_server_check_listen(spec))
    return UV_EINVAL;
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
    if (err || (err = add_listener(s, (uv_stream_t *)p))) {
      uv_close((uv_handle_t *)p, free_handle);
      return err;
    }
    snprintf(out, outlen, "%s", spec);
    return 0;
  }
  return tcp_listen_spec(s, spec, flags & OWL_LISTEN_HOLD, out, outlen);
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
    snprintf(out, outlen, "tcp:%s", name);
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
static void drain_queue (owl_server_t *s, uv_stream_t *l) {
  uv_os_fd_t fd;
  if (l->type != UV_TCP || uv_fileno((uv_handle_t *)l, &fd))
    return;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
      owl_conn_adopt(s, c);
    else if (errno != EINTR && errno != ECONNABORTED)
      break;
  }
}


/* Closes every listener; drain: serve what waits in their accept queues. */
void owl_server_unlisten (owl_server_t *s, int drain) {
  accept_deferred(s);                       /* closing would reset them */
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


static void refused_flush (owl_server_t *s);


static void finish (owl_server_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->grace_timer)) {
    uv_close((uv_handle_t *)&s->grace_timer, NULL);
    uv_close((uv_handle_t *)&s->idle_timer, NULL);
    refused_flush(s);
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


void owl_server_conn_gone (owl_server_t *s) {
  if (s->stopping && s->nconns == 0)
    finish(s);
}


static int conn_idle (owl_conn_t *c) {
  return c->req == NULL && c->ws == NULL && !c->got_bytes && owl_conn_pending(c) == 0;
}


static void on_idle_grace (uv_timer_t *t) {
  owl_server_t *s = t->data;
  owl_conn_t *next;
  for (owl_conn_t *c = s->conns; c != NULL; c = next) {
    next = c->next;
    if (conn_idle(c))
      owl_conn_close(c);
  }
  owl_server_conn_gone(s);
}


static void on_grace (uv_timer_t *t) {
  owl_server_t *s = t->data;
  for (owl_conn_t *c = s->conns; c != NULL; c = c->next)
    if (!c->closing) {
      s->ncut++;
      owl_conn_close(c);                    /* CallCancelled fires */
    }
  owl_server_conn_gone(s);
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
          s->nconns, s->nconns == 1 ? "" : "s", s->opt.graceful_timeout / 1e3);
  owl_server_unlisten(s, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->disposing_ref);
  owl_token_fire(L, -1);
  lua_pop(L, 1);
  for (owl_conn_t *c = s->conns; c != NULL; c = c->next) {
    if (c->ws != NULL)
      owl_wsock_shutdown(c->ws);            /* close 1001, CallCancelled */
    else
      c->keepalive = 0;                     /* idle ones: see on_idle_grace */
  }
  uv_timer_start(&s->grace_timer, on_grace, s->opt.graceful_timeout, 0);
  uv_timer_start(&s->idle_timer, on_idle_grace, s->opt.graceful_timeout < IDLE_GRACE_MS
                 ? s->opt.graceful_timeout : IDLE_GRACE_MS, 0);
  owl_server_conn_gone(s);
}


void owl_server_stop (owl_server_t *s) {
  if (!s->stopping && s->app_ref != LUA_NOREF)
    begin_shutdown(s);
}


static void on_signal (uv_signal_t *h, int signum) {
  (void)signum;
  begin_shutdown(h->data);
}


/* SIGHUP restarts the workers in the master (master.c); a single process
** has nothing to restart, and a hangup must not stop a server. */
static void on_sighup (uv_signal_t *h, int signum) {
  owl_server_t *s = h->data;
  (void)signum;
  if (s->worker_id)
    owl_log(OWL_LOG_WARN, NULL, "SIGHUP ignored: send it to the master (pid %d), "
            "which restarts the workers", (int)getppid());
  else
    owl_log(OWL_LOG_WARN, NULL, "SIGHUP ignored: nothing to reload without --workers "
            "or --reload (restart the process to load new code)");
}
/* }====== */


/* {====== log lines */

char owl_log_who[32];


static void vlog (int level, const char *reqid, const char *fmt, va_list ap) {
  static const char *const names[] = { "debug", "info", "warn", "error" };
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  flockfile(stderr);
  fprintf(stderr, "%s [%s] %s", stamp, names[level], owl_log_who);
  if (reqid != NULL)
    fprintf(stderr, "[%s] ", reqid);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  funlockfile(stderr);
  fflush(stderr);
}


static void log_always (int level, const char *reqid, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static void log_always (int level, const char *reqid, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, reqid, fmt, ap);
  va_end(ap);
}


void owl_log (int level, const char *reqid, const char *fmt, ...) {
  va_list ap;
  if (level < owl_srv.opt.log_level)
    return;
  va_start(ap, fmt);
  vlog(level, reqid, fmt, ap);
  va_end(ap);
}


size_t owl_req_idstr (uint64_t n, char *buf, size_t len) {
  int k = snprintf(buf, len, "%s%" PRIu64, owl_srv.id_prefix, n);
  return k < 0 ? 0 : (size_t)k >= len ? len - 1 : (size_t)k;
}


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


/* {====== errors the server answers itself */

#define REFUSED_PER_SEC 10      /* lines a second at most; the rest are counted */


static int refused_level;        /* the highest level of the lines left out */


static void refused_flush (owl_server_t *s) {
  if (s->refused_suppressed == 0)
    return;
  owl_log(refused_level, NULL, "suppressed %u more error answer%s in the last second "
          "(at most %d lines a second)", s->refused_suppressed,
          s->refused_suppressed == 1 ? "" : "s", REFUSED_PER_SEC);
  s->refused_suppressed = 0;
  refused_level = OWL_LOG_DEBUG;
}


static void on_refused_timer (uv_timer_t *t) {
  owl_server_t *s = t->data;
  refused_flush(s);
  s->refused_logged = 0;
  s->refused_window = uv_now(s->loop);
}


/* Why the server answers status itself, from what the connection saw. */
static const char *refusal_reason (owl_conn_t *c, int status, char *buf, size_t len) {
  owl_options_t *o = &c->srv->opt;
  switch (status) {
    case 408:
      return c->req != NULL ? "the request body stalled longer than --body-timeout"
                            : "the request head took longer than --header-timeout";
    case 413:
      snprintf(buf, len, "the request body is larger than --max-body (%" PRIu64 " bytes)",
               o->max_body);
      return buf;
    case 414:
      snprintf(buf, len, "the request-target is longer than --max-target (%zu bytes)",
               o->max_target);
      return buf;
    case 431:
      snprintf(buf, len, "the request head is over --max-header-bytes (%zu) or "
               "--max-headers (%zu)", o->max_header_bytes, o->max_headers);
      return buf;
    case 500:
      return "the server ran out of memory building the request";
    case 503:
      snprintf(buf, len, "%u connections open, --max-connections is %u", c->srv->nconns - 1,
               o->max_connections);
      return buf;
    case 501:
      return llhttp_get_errno(&c->parser) == HPE_INVALID_METHOD
             ? "an unknown method" : "an unknown transfer coding";
    case 505:
      return "the request's HTTP version is not 1.0 or 1.1";
    case 426:
      return "a WebSocket handshake with an unsupported Sec-WebSocket-Version";
  }
  if (!c->err_status && llhttp_get_errno(&c->parser) != HPE_OK &&
      llhttp_get_errno(&c->parser) != HPE_PAUSED) {
    const char *why = llhttp_get_error_reason(&c->parser);
    if (why != NULL && *why) {
      snprintf(buf, len, "%s", why);
      if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] += 32;
      return buf;
    }
  }
  return "a malformed request (its request line, Host or another header)";
}


/* The client's address as "host:port", or "a unix socket client". */
static void peer_name (owl_conn_t *c, char *out, size_t len) {
  struct sockaddr_storage a;
  int alen = sizeof a;
  char ip[64];
  if (c->is_pipe || uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&a, &alen) != 0) {
    snprintf(out, len, "%s", c->is_pipe ? "a unix socket client" : "a client gone");
    return;
  }
  if (a.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&a, ip, sizeof ip);
    snprintf(out, len, "[%s]:%d", ip, addr_port(&a));
  }
  else {
    uv_ip4_name((struct sockaddr_in *)&a, ip, sizeof ip);
    snprintf(out, len, "%s:%d", ip, addr_port(&a));
  }
}


/* The first bytes of the request as a quoted string, unprintable bytes as
** \xNN, up to the end of the first line. */
static void request_excerpt (owl_conn_t *c, char *out, size_t len) {
  size_t k = 0;
  unsigned i = 0;
  while (i < c->line_len && (c->line[i] == '\r' || c->line[i] == '\n'))
    i++;
  for (; i < c->line_len && k + 5 < len; i++) {
    unsigned char ch = (unsigned char)c->line[i];
    if (ch == '\r' || ch == '\n')
      break;
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
      k += (size_t)snprintf(out + k, len - k, "\\x%02x", ch);
    else
      out[k++] = (char)ch;
  }
  out[k] = 0;
}


void owl_server_refused (owl_conn_t *c, int status) {
  owl_server_t *s = c->srv;
  int level = status >= 500 && status != 501 && status != 505 ? OWL_LOG_WARN : OWL_LOG_INFO;
  if (level < s->opt.log_level)
    return;
  uint64_t now = uv_now(s->loop);
  if (now - s->refused_window >= 1000 && !uv_is_active((uv_handle_t *)&s->refused_timer)) {
    s->refused_window = now;
    s->refused_logged = 0;
  }
  if (s->refused_logged >= REFUSED_PER_SEC) {
    if (level > refused_level)
      refused_level = level;
    if (s->refused_suppressed++ == 0 && !uv_is_closing((uv_handle_t *)&s->refused_timer))
      uv_timer_start(&s->refused_timer, on_refused_timer,
                     s->refused_window + 1000 > now ? s->refused_window + 1000 - now : 1, 0);
    return;
  }
  s->refused_logged++;
  char peer[80], why[160], line[sizeof c->line * 4 + 8];
  const char *reason = refusal_reason(c, status, why, sizeof why);
  peer_name(c, peer, sizeof peer);
  request_excerpt(c, line, sizeof line);
  const char *q = line[0] ? " (request \"" : "", *qe = line[0] ? "\")" : "";
  if (c->req != NULL && c->req->wire)
    owl_log(level, NULL, "cut the response to %s: %s%s%s%s", peer, reason, q, line, qe);
  else
    owl_log(level, NULL, "answered %d %s to %s: %s%s%s%s", status, owl_reason(status),
            peer, reason, q, line, qe);
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


static void push_invalid (lua_State *L, const char *spec) {
  lua_pushnil(L);
  lua_pushfstring(L, "invalid listen address '%s' (expected IPv4:port, [IPv6]:port, "
                  "localhost:port, :port or unix:/path)", spec);
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


/* core.log_write(level, id|nil, message): one log line, as the C core
** writes them (owin.log filters by its own threshold first). */
static int l_log_write (lua_State *L) {
  static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
  int level = luaL_checkoption(L, 1, NULL, levels);
  const char *id = luaL_optstring(L, 2, NULL);
  const char *msg = luaL_checkstring(L, 3);
  log_always(level, id, "%s", msg);
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
  if (owl_srv.app_ref != LUA_NOREF)
    begin_shutdown(&owl_srv);
  return 0;
}


int luaopen_owin_core (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"configure", l_configure},
    {"listen", l_listen},
    {"check_listen", l_check_listen},
    {"log_write", l_log_write},
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
  s->opt.log_level = OWL_LOG_INFO;
  char tag[9];
  boot_tag(tag);
  snprintf(s->id_prefix, sizeof s->id_prefix, "%s-", tag);
}
