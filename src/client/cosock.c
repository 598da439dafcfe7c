/*
** Cosockets: TCP and unix-socket clients for Lua whose every wait yields
** the calling coroutine to the loop (owin.tcp).  The API is luasocket's
** client API plus what OpenResty's users rely on (receiveuntil, timeouts
** per operation, a per-worker connection pool); docs/outside.md is the
** reference.  `connect` itself is written in Lua (lua/owin/init.lua): it
** takes from the pool, resolves the name (dns.c) and calls the primitives
** here.
**
** Ownership.  The C socket (owl_csock_t) is malloc'd; its transport (a
** libuv stream) and two timers must all be closed before it is freed, so it
** counts the handles still closing.  The Lua object (OWL_TCP_T) points to
** it and it points back; either link is cleared when the socket closes or
** goes to the pool, so neither outlives the other.  A socket is linked in
** the scope (request or detached thread) that opened it, which closes it
** when it ends; sockets opened at the process level (the app script) are
** not linked and are shared.
**
** Reading.  Bytes land in the loop's read buffer and are appended to the
** socket's input; reading stops while more than IN_HIGH bytes wait for a
** reader, so a peer cannot make it buffer without bound.  One reader and
** one writer at a time; each waits with a timeout of its own.
*/

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "client/client.h"
#include "net/tcp.h"
#include "net/tls.h"


#define OWL_TCP_T "owin.TCP"
#define IN_HIGH (64 * 1024)        /* unread input that pauses reading */
#define DEFAULT_TIMEOUT 60000      /* milliseconds, per operation */

static char rbuf[64 * 1024];       /* every cosocket's reads land here first */


typedef struct pool pool_t;
typedef struct owl_csock owl_csock_t;
typedef struct tcp_ud tcp_ud_t;

struct owl_csock {
  owl_tcp_t tcp;                    /* the socket */
  owl_transport_t *tp;              /* what bytes go through: &tcp.t, or TLS */
  owl_tls_t *tls;                   /* after sslhandshake */
  int hs_status;                    /* the handshake's outcome, 1: under way */
  uv_timer_t rtimer, wtimer;        /* the reader's and writer's timeouts; the
                                       idle timeout while pooled */
  owl_buf_t in;                     /* received, not yet returned */
  owl_buf_t out;                    /* a send's bytes the kernel did not take */
  owl_task_t *reader, *writer;      /* the tasks waiting on it */
  tcp_ud_t *ud;                     /* its Lua object, or NULL (pooled) */
  owl_scope_t *scope;               /* who owns it; NULL: shared */
  owl_csock_t *sprev, *snext;       /* in scope->socks */
  owl_csock_t *gprev, *gnext;       /* every open cosocket (teardown) */
  pool_t *pool;                     /* the pool it counts in, or NULL */
  owl_csock_t *pprev, *pnext;       /* in pool->idle while pooled */
  int err;                          /* what ended reading (UV_EOF, an error) */
  int werr;                         /* the last write's error */
  int nhandles;                     /* handles still open or closing */
  unsigned reused;
  unsigned connecting : 1;
  unsigned connected : 1;
  unsigned reading : 1;
  unsigned closed : 1;
  unsigned rtimedout : 1;
  unsigned wtimedout : 1;
  unsigned writing : 1;
  unsigned pooled : 1;
  unsigned no_session : 1;          /* sslhandshake(false, ...): true, not a session */
};

struct tcp_ud {
  owl_csock_t *s;                   /* NULL: not connected, or closed */
  void *session;                    /* the TLS session when it closed (counted) */
  pool_t *slot;                     /* a pool slot reserved by connect */
  int64_t ct, st, rt;               /* timeouts in ms; -1: none */
};

struct pool {
  pool_t *next;                     /* every pool of the worker */
  owl_csock_t *idle;                /* most recently used first */
  owl_csock_t *idle_tail;
  unsigned nidle;
  unsigned size;                    /* idle connections kept at most */
  unsigned nlive;                   /* connections counted: open and idle */
  unsigned limit;                   /* open connections at most; 0: none */
  unsigned backlog;                 /* connects that may wait for a slot */
  unsigned nwait;
  owl_task_t **wait;                /* connects waiting for a slot (FIFO) */
  unsigned wcap;
  char key[];
};

static pool_t *pools;
static owl_csock_t *all_socks;


/* {====== closing */

static void on_handle_closed (owl_csock_t *s) {
  if (--s->nhandles > 0)
    return;
  owl_buf_free(&s->in);
  owl_buf_free(&s->out);
  free(s);
}


static void on_tcp_closed (owl_transport_t *t) {
  on_handle_closed(t->owner);
}


static void on_timer_closed (uv_handle_t *h) {
  on_handle_closed(h->data);
}


static void scope_unlink (owl_csock_t *s) {
  owl_scope_t *sc = s->scope;
  if (sc == NULL)
    return;
  if (s->sprev)
    s->sprev->snext = s->snext;
  else
    sc->socks = s->snext;
  if (s->snext)
    s->snext->sprev = s->sprev;
  s->sprev = s->snext = NULL;
  s->scope = NULL;
}


static void scope_link (owl_csock_t *s, owl_scope_t *sc) {
  s->scope = sc;
  if (sc == NULL)
    return;
  s->sprev = NULL;
  s->snext = sc->socks;
  if (sc->socks)
    sc->socks->sprev = s;
  sc->socks = s;
}


static void pool_unidle (owl_csock_t *s);
static void pool_release (pool_t *p);

/*
** Closes s: its Lua object forgets it, its waiters are woken (they find it
** closed), its pool slot is freed; the memory goes when the handles have
** closed.
*/
static void csock_close (owl_csock_t *s) {
  if (s->closed)
    return;
  s->closed = 1;
  if (s->gprev)
    s->gprev->gnext = s->gnext;
  else
    all_socks = s->gnext;
  if (s->gnext)
    s->gnext->gprev = s->gprev;
  if (s->pooled)
    pool_unidle(s);
  scope_unlink(s);
  if (s->ud) {
    if (s->tls != NULL) {           /* sslsession() still answers */
      void *sess = owl_tls_session(s->tls);
      if (sess != NULL) {
        owl_tls_session_free(s->ud->session);
        s->ud->session = sess;
      }
    }
    s->ud->s = NULL;
    s->ud = NULL;
  }
  uv_timer_stop(&s->rtimer);
  uv_timer_stop(&s->wtimer);
  s->tp->vt->close(s->tp);
  uv_close((uv_handle_t *)&s->rtimer, on_timer_closed);
  uv_close((uv_handle_t *)&s->wtimer, on_timer_closed);
  pool_t *p = s->pool;
  s->pool = NULL;
  owl_task_t *r = s->reader, *w = s->writer;
  s->reader = s->writer = NULL;
  if (r)
    owl_task_resume(r, 0);
  if (w && w != r)
    owl_task_resume(w, 0);
  if (p)
    pool_release(p);                        /* a waiting connect may go on */
}


static void close_scope (owl_scope_t *sc) {
  while (sc->socks != NULL)
    csock_close(sc->socks);
}
/* }====== */


/* {====== events */

static void wake_reader (owl_csock_t *s) {
  owl_task_t *t = s->reader;
  if (t == NULL)
    return;
  s->reader = NULL;
  uv_timer_stop(&s->rtimer);
  owl_task_resume(t, 0);
}


static void wake_writer (owl_csock_t *s) {
  owl_task_t *t = s->writer;
  if (t == NULL)
    return;
  s->writer = NULL;
  uv_timer_stop(&s->wtimer);
  owl_task_resume(t, 0);
}


static void on_read (owl_transport_t *t, ssize_t n, char *p) {
  owl_csock_t *s = t->owner;
  if (s->pooled) {                          /* the peer spoke or left: drop it */
    csock_close(s);
    return;
  }
  if (n > 0) {
    if (owl_buf_append(&s->in, p, (size_t)n))
      n = UV_ENOMEM;
    else if (s->in.len >= IN_HIGH && s->reading) {
      t->vt->read_stop(t);
      s->reading = 0;
    }
  }
  if (n < 0) {
    s->err = (int)n;
    if (s->reading)
      t->vt->read_stop(t);
    s->reading = 0;
  }
  wake_reader(s);
}


static void on_written (owl_transport_t *t, int status) {
  owl_csock_t *s = t->owner;
  s->writing = 0;
  if (status < 0 && s->werr == 0)
    s->werr = status;
  s->out.len = 0;
  wake_writer(s);
}


static void on_rtimer (uv_timer_t *tm) {
  owl_csock_t *s = tm->data;
  if (s->pooled) {                          /* idle for too long */
    csock_close(s);
    return;
  }
  s->rtimedout = 1;
  wake_reader(s);
}


static void on_wtimer (uv_timer_t *tm) {
  owl_csock_t *s = tm->data;
  s->wtimedout = 1;
  wake_writer(s);
}


/* Starts reading if it is off and the input has room. */
static void want_input (owl_csock_t *s) {
  if (!s->reading && s->err == 0 && s->connected && s->in.len < IN_HIGH) {
    int e = s->tp->vt->read_start(s->tp);
    if (e)
      s->err = e;
    else
      s->reading = 1;
  }
}
/* }====== */


/* {====== waiting */

static void reader_unwait (owl_task_t *t) {
  owl_csock_t *s = t->wait_on;
  if (s->reader == t) {
    s->reader = NULL;
    uv_timer_stop(&s->rtimer);
  }
}


static void writer_unwait (owl_task_t *t) {
  owl_csock_t *s = t->wait_on;
  if (s->writer == t) {
    s->writer = NULL;
    uv_timer_stop(&s->wtimer);
  }
}


static void start_timer (uv_timer_t *tm, int64_t ms, uv_timer_cb cb) {
  if (ms >= 0 && !uv_is_active((uv_handle_t *)tm))
    uv_timer_start(tm, cb, (uint64_t)ms, 0);
}


/* Waits as s's reader (at most ms from the first wait of the operation). */
static int wait_read (lua_State *L, owl_task_t *t, owl_csock_t *s, int64_t ms,
                      lua_KContext ctx, lua_KFunction k) {
  s->reader = t;
  start_timer(&s->rtimer, ms, on_rtimer);
  return owl_task_wait(L, t, OWL_WAIT_SOCK, reader_unwait, s, ctx, k);
}


static int wait_write (lua_State *L, owl_task_t *t, owl_csock_t *s, int64_t ms,
                       lua_KContext ctx, lua_KFunction k) {
  s->writer = t;
  start_timer(&s->wtimer, ms, on_wtimer);
  return owl_task_wait(L, t, OWL_WAIT_SOCK, writer_unwait, s, ctx, k);
}
/* }====== */


/* {====== the Lua object */

static tcp_ud_t *checkud (lua_State *L) {
  return luaL_checkudata(L, 1, OWL_TCP_T);
}



/* The text of a libuv error, as luasocket spells the common ones. */
static const char *errtext (int err) {
  switch (err) {
    case UV_EOF: case UV_ECONNRESET: case UV_EPIPE: case UV_ENOTCONN:
    case UV_ECANCELED: case UV_EBADF:
      return "closed";
    case UV_ETIMEDOUT: return "timeout";
    case UV_ECONNREFUSED: return "connection refused";
    default: return uv_strerror(err);
  }
}


/* The text of a read or write error of s: TLS's own reason when TLS failed
** ("tlsv13 alert certificate required"), else errtext's. */
static const char *sock_err (owl_csock_t *s, int err) {
  if (err == UV_EPROTO && s->tls != NULL && *owl_tls_error(s->tls))
    return owl_tls_error(s->tls);   /* freed only after the close callback */
  return errtext(err);
}


/*
** The socket of the object at 1 for an operation from L, or NULL with
** nil, err pushed (*ret their count): closed, cancelled; a socket of
** another request or thread raises.
*/
static owl_csock_t *usable (lua_State *L, tcp_ud_t *u, owl_task_t *t, int *ret) {
  owl_csock_t *s = u->s;
  if (t != NULL && owl_task_cancelled(t)) {
    if (s)
      csock_close(s);
    *ret = owl_push_cancelled(L);
    return NULL;
  }
  if (s == NULL) {
    *ret = owl_push_error(L, "closed");
    return NULL;
  }
  if (s->scope != NULL && (t == NULL || t->scope != s->scope))
    luaL_error(L, "the socket belongs to another request or thread "
               "(sock:share() hands it over)");
  return s;
}


/* owin.tcp() -> a socket, not connected */
static int l_tcp (lua_State *L) {
  tcp_ud_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  u->session = NULL;
  u->slot = NULL;
  u->ct = u->st = u->rt = DEFAULT_TIMEOUT;
  luaL_setmetatable(L, OWL_TCP_T);
  return 1;
}


static int tcp_gc (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->s)
    csock_close(u->s);
  owl_tls_session_free(u->session);
  u->session = NULL;
  if (u->slot) {
    pool_release(u->slot);
    u->slot = NULL;
  }
  return 0;
}


static int tcp_tostring (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  lua_pushfstring(L, "owin.TCP (%s): %p", u->s ? "connected" : "closed", (void *)u);
  return 1;
}


/* sock:close() -> 1 */
static int tcp_close (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->s)
    csock_close(u->s);
  lua_pushinteger(L, 1);
  return 1;
}


static int64_t opt_ms (lua_State *L, int i, int64_t keep) {
  if (lua_isnoneornil(L, i))
    return keep;
  lua_Number sec = luaL_checknumber(L, i);
  if (sec < 0)
    return -1;
  luaL_argcheck(L, sec < 1e9, i, "too many seconds");
  return (int64_t)(sec * 1000 + 0.5);
}


/* sock:settimeout(seconds [, mode]): every operation; nil or < 0: none */
static int tcp_settimeout (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  int64_t ms = lua_isnoneornil(L, 2) ? -1 : opt_ms(L, 2, -1);
  if (!lua_isnoneornil(L, 3)) {
    const char *mode = luaL_checkstring(L, 3);
    luaL_argcheck(L, mode[0] == 'b' || mode[0] == 't' || mode[0] == 'r', 3,
                  "mode must be 'b' or 't'");
  }
  u->ct = u->st = u->rt = ms;
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:settimeouts(connect, send, read) (seconds; nil keeps one) */
static int tcp_settimeouts (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  u->ct = opt_ms(L, 2, u->ct);
  u->st = opt_ms(L, 3, u->st);
  u->rt = opt_ms(L, 4, u->rt);
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:share(): usable from any request or thread, and not closed when
** the one that opened it ends. */
static int tcp_share (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->s)
    scope_unlink(u->s);
  lua_pushinteger(L, 1);
  return 1;
}
/* }====== */


/* {====== connecting */

static pool_t *pool_get (const char *key, int create) {
  for (pool_t *p = pools; p != NULL; p = p->next)
    if (strcmp(p->key, key) == 0)
      return p;
  if (!create)
    return NULL;
  size_t n = strlen(key);
  pool_t *p = calloc(1, sizeof *p + n + 1);
  if (p == NULL)
    return NULL;
  memcpy(p->key, key, n + 1);
  p->size = 30;
  p->next = pools;
  pools = p;
  return p;
}


/* A connection of p closed: a connect waiting for a slot may go on. */
static void pool_release (pool_t *p) {
  if (p->nlive > 0)
    p->nlive--;
  if (p->nwait > 0) {
    owl_task_t *t = p->wait[0];
    memmove(p->wait, p->wait + 1, (p->nwait - 1) * sizeof *p->wait);
    p->nwait--;
    owl_task_resume(t, 0);
  }
}


static void pool_unidle (owl_csock_t *s) {
  pool_t *p = s->pool;
  if (s->pprev)
    s->pprev->pnext = s->pnext;
  else
    p->idle = s->pnext;
  if (s->pnext)
    s->pnext->pprev = s->pprev;
  else
    p->idle_tail = s->pprev;
  s->pprev = s->pnext = NULL;
  s->pooled = 0;
  p->nidle--;
}


/* Attaches s to the object u for the task t. */
static void attach (tcp_ud_t *u, owl_csock_t *s, owl_task_t *t) {
  u->s = s;
  s->ud = u;
  scope_link(s, t ? t->scope : NULL);
}


static void slot_unwait (owl_task_t *t) {
  pool_t *p = t->wait_on;
  for (unsigned i = 0; i < p->nwait; i++)
    if (p->wait[i] == t) {
      memmove(p->wait + i, p->wait + i + 1, (p->nwait - i - 1) * sizeof *p->wait);
      p->nwait--;
      break;
    }
}


static int slot_timedout;                   /* set by the backlog timer */

static void on_slot_timer (uv_timer_t *tm) {
  owl_task_t *t = tm->data;
  uv_close((uv_handle_t *)tm, (uv_close_cb)free);
  if (t != NULL && t->wait == OWL_WAIT_SOCK && t->unwait == slot_unwait) {
    slot_unwait(t);
    slot_timedout = 1;
    owl_task_resume(t, 0);
  }
}


/*
** sock:_take(key [, pool_size [, backlog]]) -> true (an idle connection of
** the pool is attached), false (connect a new one: a slot is reserved), or
** nil, err.  With pool_size and a full pool, waits for a slot with the
** connect timeout when backlog allows.
*/
static int take_k (lua_State *L, int status, lua_KContext ctx) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_of(L);
  (void)status;
  uv_timer_t *tm = (uv_timer_t *)ctx;
  if (tm != NULL) {                         /* after a wait for a slot */
    if (slot_timedout) {
      slot_timedout = 0;
      return owl_push_error(L, "timeout");
    }
    tm->data = NULL;
    uv_close((uv_handle_t *)tm, (uv_close_cb)free);
  }
  if (t != NULL && owl_task_cancelled(t))
    return owl_push_cancelled(L);
  pool_t *p = pool_get(luaL_checkstring(L, 2), 1);
  if (p == NULL)
    return luaL_error(L, "not enough memory");
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer size = luaL_checkinteger(L, 3);
    luaL_argcheck(L, size > 0 && size < 1000000, 3, "pool_size must be a positive integer");
    p->limit = p->size = (unsigned)size;
  }
  if (!lua_isnoneornil(L, 4)) {
    lua_Integer b = luaL_checkinteger(L, 4);
    luaL_argcheck(L, b >= 0 && b < 1000000, 4, "backlog must be 0 or more");
    p->backlog = (unsigned)b;
  }
  while (p->idle != NULL) {
    owl_csock_t *s = p->idle;
    pool_unidle(s);
    uv_timer_stop(&s->rtimer);
    if (s->err != 0) {
      csock_close(s);
      continue;
    }
    s->reused++;
    attach(u, s, t);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (p->limit && p->nlive >= p->limit) {
    if (p->nwait >= p->backlog)
      return owl_push_error(L, p->backlog ? "too many waiting connect operations"
                                : "too many connections in the pool");
    owl_task_check(L, "connect");
    if (p->nwait == p->wcap) {
      unsigned cap = p->wcap ? p->wcap * 2 : 8;
      owl_task_t **a = realloc(p->wait, cap * sizeof *a);
      if (a == NULL)
        return luaL_error(L, "not enough memory");
      p->wait = a;
      p->wcap = cap;
    }
    uv_timer_t *ntm = NULL;
    if (u->ct >= 0) {
      ntm = malloc(sizeof *ntm);
      if (ntm == NULL)
        return luaL_error(L, "not enough memory");
      uv_timer_init(owl_srv.loop, ntm);
      ntm->data = t;
      uv_timer_start(ntm, on_slot_timer, (uint64_t)u->ct, 0);
    }
    p->wait[p->nwait++] = t;
    return owl_task_wait(L, t, OWL_WAIT_SOCK, slot_unwait, p, (lua_KContext)ntm, take_k);
  }
  p->nlive++;
  u->slot = p;
  lua_pushboolean(L, 0);
  return 1;
}


static int tcp_take (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  luaL_checkstring(L, 2);
  if (u->s)
    csock_close(u->s);                      /* a connected socket reconnects */
  if (u->slot) {
    pool_release(u->slot);
    u->slot = NULL;
  }
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, take_k);
  return take_k(L, LUA_OK, 0);
}


/* sock:_unslot(): the reserved slot goes back (the connect failed) */
static int tcp_unslot (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->slot) {
    pool_release(u->slot);
    u->slot = NULL;
  }
  return 0;
}


/* The connect request is malloc'd for its time only: an open or pooled
** connection does not carry it. */
static void on_connect (uv_connect_t *req, int status) {
  owl_csock_t *s = req->data;
  free(req);
  s->connecting = 0;
  if (s->closed)
    return;
  if (status == 0)
    s->connected = 1;
  else
    s->err = status;
  wake_reader(s);
}


static int connect_k (lua_State *L, int status, lua_KContext ctx) {
  tcp_ud_t *u = checkud(L);
  owl_csock_t *s = (owl_csock_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  if (u->s != s) {                          /* closed while connecting */
    if (t && owl_task_cancelled(t))
      return owl_push_cancelled(L);
    return owl_push_error(L, "closed");
  }
  if (t && owl_task_cancelled(t)) {
    csock_close(s);
    return owl_push_cancelled(L);
  }
  if (s->connecting) {
    if (s->rtimedout) {
      s->rtimedout = 0;
      csock_close(s);
      return owl_push_error(L, "timeout");
    }
    return wait_read(L, t, s, u->ct, ctx, connect_k);
  }
  if (!s->connected) {
    const char *e = errtext(s->err);
    csock_close(s);
    return owl_push_error(L, e);
  }
  s->err = 0;
  s->rtimedout = 0;
  if (!s->tcp.t.is_pipe)
    uv_tcp_nodelay(&s->tcp.h.tcp, 1);
  s->pool = u->slot;                        /* the slot is the connection's now */
  u->slot = NULL;
  want_input(s);
  lua_pushinteger(L, 1);
  return 1;
}


/*
** sock:_connect(ip, port) or sock:_connect("unix:/path") -> 1, or nil, err:
** a new connection (connect in init.lua resolves and pools).
*/
static int tcp_connect_addr (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_check(L, "connect");
  if (owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, owl_cancelled_k);
  const char *host = luaL_checkstring(L, 2);
  struct sockaddr_storage ss;
  const char *path = NULL;
  if (strncmp(host, "unix:", 5) == 0)
    path = host + 5;
  else {
    lua_Integer port = luaL_checkinteger(L, 3);
    luaL_argcheck(L, port > 0 && port < 65536, 3, "port must be 1 to 65535");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
      return luaL_argerror(L, 2, "an IP address expected");
  }
  if (u->s)
    csock_close(u->s);
  owl_csock_t *s = calloc(1, sizeof *s);
  uv_connect_t *creq = malloc(sizeof *creq);
  if (s == NULL || creq == NULL) {
    free(s);
    free(creq);
    return luaL_error(L, "not enough memory");
  }
  s->tp = &s->tcp.t;
  s->tcp.t.owner = s;
  s->tcp.t.on_read = on_read;
  s->tcp.t.on_written = on_written;
  s->tcp.t.on_closed = on_tcp_closed;
  uv_timer_init(owl_srv.loop, &s->rtimer);
  uv_timer_init(owl_srv.loop, &s->wtimer);
  s->rtimer.data = s->wtimer.data = s;
  s->nhandles = 3;
  creq->data = s;
  s->connecting = 1;
  s->gnext = all_socks;
  if (all_socks)
    all_socks->gprev = s;
  all_socks = s;
  attach(u, s, t);
  int err = owl_tcp_connect(&s->tcp, owl_srv.loop, (struct sockaddr *)&ss, path, creq,
                            on_connect, rbuf, sizeof rbuf);
  if (err) {                                /* no callback will come */
    free(creq);
    s->connecting = 0;
    csock_close(s);
    return owl_push_error(L, errtext(err));
  }
  return wait_read(L, t, s, u->ct, (lua_KContext)s, connect_k);
}
/* }====== */


/* {====== sending */

/* Appends the string or number at i, or the strings of the (nested) array
** at i, to b; raises on anything else. */
static void flatten (lua_State *L, int i, luaL_Buffer *b, int depth) {
  if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
    lua_pushvalue(L, i);
    luaL_addvalue(b);
    return;
  }
  if (!lua_istable(L, i) || depth > 32)
    luaL_argerror(L, 2, "a string, a number or an array of them expected");
  lua_Integer n = (lua_Integer)lua_rawlen(L, i);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, i, k);
    flatten(L, lua_gettop(L), b, depth + 1);
    lua_pop(L, 1);
  }
}


static int send_k (lua_State *L, int status, lua_KContext ctx) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_of(L);
  lua_Integer last = (lua_Integer)ctx;      /* index of the last byte taken */
  (void)status;
  owl_csock_t *s = u->s;
  if (t && owl_task_cancelled(t)) {
    if (s)
      csock_close(s);
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled");
    lua_pushinteger(L, last);
    return 3;
  }
  if (s == NULL || s->werr) {
    const char *e = s ? sock_err(s, s->werr) : "closed";
    if (s)
      csock_close(s);
    lua_pushnil(L);
    lua_pushstring(L, e);
    lua_pushinteger(L, last);
    return 3;
  }
  if (s->writing) {
    if (s->wtimedout) {                     /* a write cannot be taken back */
      csock_close(s);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      lua_pushinteger(L, last);
      return 3;
    }
    return wait_write(L, t, s, u->st, ctx, send_k);
  }
  s->wtimedout = 0;
  return 1;                                 /* [sock, j]: j */
}


/* sock:send(data [, i [, j]]) -> j, or nil, err, last */
static int tcp_send (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_of(L);
  int ret;
  size_t len;
  const char *p;
  if (lua_istable(L, 2)) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    flatten(L, 2, &b, 0);
    luaL_pushresult(&b);
    lua_replace(L, 2);
  }
  else if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
    return luaL_argerror(L, 2, "a string, a number or an array of them expected");
  p = lua_tolstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
  if (i < 0) i = (lua_Integer)len + i + 1;
  if (i < 1) i = 1;
  if (j < 0) j = (lua_Integer)len + j + 1;
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  if (t != NULL && owl_task_cancelled(t)) {
    lua_settop(L, 1);
    return owl_task_pause(L, t, (lua_KContext)(i - 1), send_k);
  }
  owl_csock_t *s = usable(L, u, t, &ret);
  if (s == NULL) {
    lua_pushinteger(L, i - 1);
    return ret + 1;
  }
  if (s->writer != NULL || s->writing)
    return owl_push_error(L, "socket busy writing");
  if (s->werr || s->closed) {
    const char *e = sock_err(s, s->werr ? s->werr : UV_EPIPE);
    csock_close(s);
    lua_pushnil(L);
    lua_pushstring(L, e);
    lua_pushinteger(L, i - 1);
    return 3;
  }
  lua_settop(L, 1);
  lua_pushinteger(L, j < i ? i - 1 : j);   /* what a success returns, on top */
  if (j < i)
    return 1;
  const char *d = p + i - 1;
  size_t n = (size_t)(j - i + 1);
  uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
  int w = s->tp->vt->try_write(s->tp, &b, 1);
  if (w < 0) {
    s->werr = w;
    const char *e = sock_err(s, w);
    csock_close(s);
    lua_pushnil(L);
    lua_pushstring(L, e);
    lua_pushinteger(L, i - 1);
    return 3;
  }
  if ((size_t)w == n)
    return 1;
  /* the rest goes from a copy, the socket's own */
  s->out.len = 0;
  if (owl_buf_append(&s->out, d + w, n - (size_t)w))
    return luaL_error(L, "not enough memory");
  uv_buf_t rest = uv_buf_init(s->out.base, (unsigned)s->out.len);
  int e = s->tp->vt->write(s->tp, &rest, 1);
  if (e) {
    csock_close(s);
    lua_pushnil(L);
    lua_pushstring(L, errtext(e));
    lua_pushinteger(L, i - 1 + w);
    return 3;
  }
  s->writing = 1;
  if (!owl_task_can_wait(L) || t == NULL)
    return 1;                               /* queued; it goes out on its own */
  return wait_write(L, t, s, u->st, (lua_KContext)(i - 1 + w), send_k);
}
/* }====== */


/* {====== receiving */

enum { PAT_LINE, PAT_ALL, PAT_COUNT, PAT_ANY, PAT_UNTIL };

/* Returns prefix .. the first n bytes of the input, consumed. */
static int give (lua_State *L, owl_csock_t *s, size_t n, int prefix, int strip_cr) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (prefix && lua_type(L, prefix) == LUA_TSTRING) {
    lua_pushvalue(L, prefix);
    luaL_addvalue(&b);
  }
  if (strip_cr) {
    for (size_t k = 0; k < n; k++)
      if (s->in.base[k] != '\r')
        luaL_addchar(&b, s->in.base[k]);
  }
  else if (n > 0)
    luaL_addlstring(&b, s->in.base, n);
  luaL_pushresult(&b);
  return 1;
}


static void consume (owl_csock_t *s, size_t n) {
  owl_buf_consume(&s->in, n);
  if (s->in.len == 0 && s->in.cap > IN_HIGH)
    owl_buf_free(&s->in);
  want_input(s);
}


/* nil, err, partial: everything buffered (with the prefix) is returned. */
static int partial (lua_State *L, owl_csock_t *s, const char *err, int prefix, int line) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  if (s) {
    give(L, s, s->in.len, prefix, line);
    consume(s, s->in.len);
  }
  else if (prefix && lua_type(L, prefix) == LUA_TSTRING)
    lua_pushvalue(L, prefix);
  else
    lua_pushliteral(L, "");
  return 3;
}


/* Stack: [sock, pattern, prefix]; ctx: PAT_* | count << 3 */
static int recv_k (lua_State *L, int status, lua_KContext ctx) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_of(L);
  int pat = (int)(ctx & 7);
  size_t count = (size_t)(ctx >> 3);
  (void)status;
  owl_csock_t *s = u->s;
  if (t && owl_task_cancelled(t)) {
    if (s)
      csock_close(s);
    return partial(L, NULL, "cancelled", 3, 0);
  }
  if (s == NULL)
    return partial(L, NULL, "closed", 3, 0);
  switch (pat) {
    case PAT_LINE: {
      char *nl = s->in.len ? memchr(s->in.base, '\n', s->in.len) : NULL;
      if (nl != NULL) {
        size_t n = (size_t)(nl - s->in.base);
        give(L, s, n, 3, 1);
        consume(s, n + 1);
        return 1;
      }
      break;
    }
    case PAT_COUNT:
      if (s->in.len >= count) {
        give(L, s, count, 3, 0);
        consume(s, count);
        return 1;
      }
      break;
    case PAT_ANY:
      if (s->in.len > 0) {
        size_t n = s->in.len < count ? s->in.len : count;
        give(L, s, n, 0, 0);
        consume(s, n);
        return 1;
      }
      break;
    case PAT_ALL:
      if (s->err == UV_EOF) {
        give(L, s, s->in.len, 3, 0);
        consume(s, s->in.len);
        return 1;
      }
      break;
  }
  if (s->err) {
    int e = s->err;
    if (pat == PAT_ANY) {
      csock_close(s);
      return owl_push_error(L, sock_err(s, e));
    }
    partial(L, s, sock_err(s, e), 3, pat == PAT_LINE);
    csock_close(s);
    return 3;
  }
  if (s->rtimedout || u->rt == 0) {         /* the socket stays usable */
    s->rtimedout = 0;
    uv_timer_stop(&s->rtimer);
    if (pat == PAT_ANY)
      return owl_push_error(L, "timeout");
    return partial(L, s, "timeout", 3, pat == PAT_LINE);
  }
  if (t == NULL || !owl_task_can_wait(L))
    owl_task_check(L, "receive");
  want_input(s);
  return wait_read(L, t, s, u->rt, ctx, recv_k);
}


/* Checks that the object can read now; NULL with the answer pushed. */
static owl_csock_t *reader_ok (lua_State *L, tcp_ud_t *u, int *ret) {
  owl_csock_t *s = usable(L, u, owl_task_of(L), ret);
  if (s != NULL && s->reader != NULL) {
    *ret = owl_push_error(L, "socket busy reading");
    return NULL;
  }
  if (s != NULL && s->connecting) {
    *ret = owl_push_error(L, "not connected");
    return NULL;
  }
  return s;
}


/* sock:receive([pattern [, prefix]]) -> data, or nil, err, partial */
static int tcp_receive (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  lua_Integer ctx;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n < ((lua_Integer)1 << 40), 2, "count out of range");
    ctx = PAT_COUNT | n << 3;
  }
  else {
    const char *p = luaL_optstring(L, 2, "*l");
    if (p[0] == '*')
      p++;
    if (p[0] == 'l' && p[1] == 0)
      ctx = PAT_LINE;
    else if (p[0] == 'a' && p[1] == 0)
      ctx = PAT_ALL;
    else
      return luaL_argerror(L, 2, "invalid receive pattern ('*l', '*a' or a number)");
  }
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TSTRING);
  lua_settop(L, 3);
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, (lua_KContext)ctx, recv_k);
  int ret;
  if (reader_ok(L, u, &ret) == NULL)
    return ret == 2 && lua_isnil(L, -2) ? (lua_pushliteral(L, ""), 3) : ret;
  return recv_k(L, LUA_OK, (lua_KContext)ctx);
}


/* sock:receiveany(max) -> 1..max bytes, or nil, err */
static int tcp_receiveany (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n > 0 && n < ((lua_Integer)1 << 40), 2, "must be a positive count");
  lua_settop(L, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, (lua_KContext)(PAT_ANY | n << 3), recv_k);
  int ret;
  if (reader_ok(L, u, &ret) == NULL)
    return ret;
  return recv_k(L, LUA_OK, (lua_KContext)(PAT_ANY | n << 3));
}


/*
** receiveuntil's reader: upvalues [sock, pattern, inclusive, state];
** state 1 when the last sized read reached the pattern (the next call
** returns nil, then goes on).  Stack of a call: [size].
*/
static int until_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  tcp_ud_t *u = luaL_checkudata(L, lua_upvalueindex(1), OWL_TCP_T);
  size_t plen;
  const char *pat = lua_tolstring(L, lua_upvalueindex(2), &plen);
  int inclusive = lua_toboolean(L, lua_upvalueindex(3));
  lua_Integer size = lua_isnoneornil(L, 1) ? 0 : lua_tointeger(L, 1);
  owl_task_t *t = owl_task_of(L);
  owl_csock_t *s = u->s;
  if (t && owl_task_cancelled(t)) {
    if (s)
      csock_close(s);
    return partial(L, NULL, "cancelled", 0, 0);
  }
  if (s == NULL)
    return partial(L, NULL, "closed", 0, 0);
  if (lua_toboolean(L, lua_upvalueindex(4))) {   /* the pattern was reached */
    lua_pushboolean(L, 0);
    lua_replace(L, lua_upvalueindex(4));
    lua_pushnil(L);
    return 1;
  }
  const char *hit = plen ? memmem(s->in.base ? s->in.base : "", s->in.len, pat, plen) : NULL;
  if (hit != NULL) {
    size_t before = (size_t)(hit - s->in.base);
    size_t upto = before + (inclusive ? plen : 0);
    if (size > 0 && upto > (size_t)size) {
      give(L, s, (size_t)size, 0, 0);
      consume(s, (size_t)size);
      return 1;
    }
    give(L, s, upto, 0, 0);
    consume(s, before + plen);
    if (size > 0) {
      lua_pushboolean(L, 1);
      lua_replace(L, lua_upvalueindex(4));
    }
    return 1;
  }
  if (size > 0 && s->in.len >= plen) {      /* what cannot begin a match */
    size_t safe = s->in.len - (plen - 1);
    for (size_t k = 1; k < plen; k++)        /* the longest tail that might */
      if (memcmp(s->in.base + s->in.len - k, pat, k) == 0)
        safe = s->in.len - k;
    if (safe > 0) {
      size_t n = safe < (size_t)size ? safe : (size_t)size;
      give(L, s, n, 0, 0);
      consume(s, n);
      return 1;
    }
  }
  if (s->err) {
    int e = s->err;
    partial(L, s, sock_err(s, e), 0, 0);
    csock_close(s);
    return 3;
  }
  if (s->rtimedout || u->rt == 0) {
    s->rtimedout = 0;
    uv_timer_stop(&s->rtimer);
    return partial(L, s, "timeout", 0, 0);
  }
  owl_task_check(L, "receiveuntil");
  want_input(s);
  return wait_read(L, t, s, u->rt, 0, until_k);
}


static int until_reader (lua_State *L) {
  tcp_ud_t *u = luaL_checkudata(L, lua_upvalueindex(1), OWL_TCP_T);
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0, 1, "size must be positive");
  }
  lua_settop(L, 1);
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, until_k);
  int ret;
  if (reader_ok(L, u, &ret) == NULL)
    return ret;
  lua_settop(L, 1);
  return until_k(L, LUA_OK, 0);
}


/* sock:receiveuntil(pattern [, {inclusive = true}]) -> reader([size]) */
static int tcp_receiveuntil (lua_State *L) {
  checkud(L);
  size_t plen;
  luaL_checklstring(L, 2, &plen);
  luaL_argcheck(L, plen > 0, 2, "pattern must not be empty");
  int inclusive = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "inclusive");
    inclusive = lua_toboolean(L, -1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushboolean(L, inclusive);
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, until_reader, 4);
  return 1;
}
/* }====== */


/* {====== the pool */

/* sock:setkeepalive([idle_seconds [, pool_size]]) -> 1, or nil, err */
static int tcp_setkeepalive (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_of(L);
  int64_t idle = opt_ms(L, 2, 60000);
  lua_Integer size = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, size >= 0 && size < 1000000, 3, "pool_size must be a positive integer");
  if (!lua_isnoneornil(L, 3))
    luaL_argcheck(L, size > 0, 3, "pool_size must be a positive integer");
  owl_csock_t *s = u->s;
  if (s == NULL)
    return owl_push_error(L, "closed");
  if (t && owl_task_cancelled(t)) {
    csock_close(s);
    return owl_push_cancelled(L);
  }
  if (s->scope != NULL && (t == NULL || t->scope != s->scope))
    return luaL_error(L, "the socket belongs to another request or thread "
                      "(sock:share() hands it over)");
  if (s->in.len > 0 || s->reader || s->writer || s->writing || s->connecting || s->err) {
    int dubious = s->err == 0;
    csock_close(s);
    return owl_push_error(L, dubious ? "connection in dubious state" : "closed");
  }
  pool_t *p = s->pool;
  if (p == NULL) {                          /* not connected through connect() */
    csock_close(s);
    return owl_push_error(L, "closed");
  }
  if (size > 0)
    p->size = (unsigned)size;
  scope_unlink(s);
  s->ud = NULL;
  u->s = NULL;
  owl_buf_free(&s->in);
  s->pooled = 1;
  s->pprev = NULL;
  s->pnext = p->idle;
  if (p->idle)
    p->idle->pprev = s;
  else
    p->idle_tail = s;
  p->idle = s;
  p->nidle++;
  if (idle > 0)
    uv_timer_start(&s->rtimer, on_rtimer, (uint64_t)idle, 0);
  want_input(s);                            /* to see the peer close it */
  while (p->nidle > p->size)
    csock_close(p->idle_tail);              /* the least recently used */
  if (p->nwait > 0) {                       /* a connect waits for this one */
    owl_task_t *w = p->wait[0];
    memmove(p->wait, p->wait + 1, (p->nwait - 1) * sizeof *p->wait);
    p->nwait--;
    owl_task_resume(w, 0);
  }
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:getreusedtimes() -> how often the connection came from the pool */
static int tcp_getreusedtimes (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->s == NULL)
    return owl_push_error(L, "closed");
  lua_pushinteger(L, u->s->reused);
  return 1;
}
/* }====== */


/* {====== TLS (sslhandshake) */

#define OWL_SESSION_T "owin.SSLSession"

/* The client contexts made so far, one per set of settings. */
typedef struct client_ctx {
  struct client_ctx *next;
  owl_tls_ctx_t *ctx;
  char key[];
} client_ctx_t;

static client_ctx_t *client_ctxs;


static owl_tls_ctx_t *client_ctx (const owl_tls_client_opts_t *o, char *err, size_t errlen) {
  char key[3 * 1024];
  int n = snprintf(key, sizeof key, "%d\n%s\n%s\n%s", o->verify, o->cafile ? o->cafile : "",
                   o->cert ? o->cert : "", o->key ? o->key : "");
  if (n < 0 || (size_t)n >= sizeof key) {
    snprintf(err, errlen, "file names too long");
    return NULL;
  }
  for (client_ctx_t *c = client_ctxs; c != NULL; c = c->next)
    if (strcmp(c->key, key) == 0)
      return c->ctx;
  owl_tls_ctx_t *ctx = owl_tls_client_ctx(o, err, errlen);
  if (ctx == NULL)
    return NULL;
  client_ctx_t *c = malloc(sizeof *c + (size_t)n + 1);
  if (c == NULL) {
    owl_tls_ctx_unref(ctx);
    snprintf(err, errlen, "not enough memory");
    return NULL;
  }
  memcpy(c->key, key, (size_t)n + 1);
  c->ctx = ctx;
  c->next = client_ctxs;
  client_ctxs = c;
  return ctx;
}


/* A session object for reused_session, or true when there is none yet. */
static int push_session (lua_State *L, void *sess) {
  if (sess == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  void **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = sess;
  luaL_setmetatable(L, OWL_SESSION_T);
  return 1;
}


static int session_gc (lua_State *L) {
  void **ud = luaL_checkudata(L, 1, OWL_SESSION_T);
  owl_tls_session_free(*ud);
  *ud = NULL;
  return 0;
}


static int session_tostring (lua_State *L) {
  lua_pushfstring(L, "owin.SSLSession: %p", lua_touserdata(L, 1));
  return 1;
}


static void on_handshake (owl_tls_t *tls, int status) {
  owl_csock_t *s = owl_tls_data(tls);
  s->hs_status = status;
  wake_reader(s);
}


static int handshake_k (lua_State *L, int status, lua_KContext ctx) {
  tcp_ud_t *u = checkud(L);
  owl_csock_t *s = (owl_csock_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  if (u->s != s) {                          /* closed meanwhile */
    if (t && owl_task_cancelled(t))
      return owl_push_cancelled(L);
    return owl_push_error(L, "closed");
  }
  if (t && owl_task_cancelled(t)) {
    csock_close(s);
    return owl_push_cancelled(L);
  }
  if (s->hs_status == 1) {
    if (s->rtimedout) {
      s->rtimedout = 0;
      csock_close(s);
      return owl_push_error(L, "timeout");
    }
    return wait_read(L, t, s, u->ct, ctx, handshake_k);
  }
  if (s->hs_status != 0) {
    char msg[200];
    const char *e = owl_tls_error(s->tls);
    snprintf(msg, sizeof msg, "%s", *e ? e : errtext(s->hs_status));
    csock_close(s);
    return owl_push_error(L, msg);
  }
  s->rtimedout = 0;
  want_input(s);
  if (s->no_session) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return push_session(L, owl_tls_session(s->tls));
}


/* The ALPN list of the table at i, in the wire format, into out. */
static size_t alpn_wire (lua_State *L, int i, unsigned char *out, size_t cap) {
  size_t n = 0;
  for (lua_Integer k = 1; lua_rawgeti(L, i, k) != LUA_TNIL; k++) {
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    if (p == NULL || len == 0 || len > 255 || n + 1 + len > cap)
      luaL_error(L, "alpn: protocol names of 1 to 255 bytes expected");
    out[n++] = (unsigned char)len;
    memcpy(out + n, p, len);
    n += len;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}


static const char *optstr (lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *v = luaL_optstring(L, -1, NULL);
  lua_pop(L, 1);                            /* a string of the table's */
  return v;
}


/*
** sock:sslhandshake{ server_name =, verify = true, cafile =, cert =, key =,
** alpn = {...}, reused_session = } or OpenResty's
** sock:sslhandshake(reused_session, server_name, verify) -> a session (or
** true), or nil, err.  Verification is on unless verify is false; it needs
** server_name.  A connection taken from the pool keeps its TLS: nothing to
** do then.
*/
static int tcp_sslhandshake (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_check(L, "sslhandshake");
  owl_tls_client_opts_t o = { 1, NULL, NULL, NULL };
  const char *name = NULL;
  void *sess = NULL;
  int want_session = 1;
  unsigned char alpn[512];
  size_t alpn_len = 0;
  int si = 2;                               /* where reused_session is */
  if (lua_istable(L, 2)) {
    name = optstr(L, 2, "server_name");
    o.cafile = optstr(L, 2, "cafile");
    o.cert = optstr(L, 2, "cert");
    o.key = optstr(L, 2, "key");
    if (lua_getfield(L, 2, "verify") != LUA_TNIL)
      o.verify = lua_toboolean(L, -1);
    if (lua_getfield(L, 2, "alpn") == LUA_TTABLE)
      alpn_len = alpn_wire(L, lua_gettop(L), alpn, sizeof alpn);
    else if (!lua_isnil(L, -1))
      luaL_argerror(L, 2, "alpn: a list of protocol names expected");
    lua_getfield(L, 2, "reused_session");
    si = lua_gettop(L);
  }
  else {
    name = luaL_optstring(L, 3, NULL);
    if (!lua_isnoneornil(L, 4))
      o.verify = lua_toboolean(L, 4);
  }
  if (lua_type(L, si) == LUA_TUSERDATA)
    sess = *(void **)luaL_checkudata(L, si, OWL_SESSION_T);
  else if (lua_type(L, si) == LUA_TBOOLEAN && !lua_toboolean(L, si))
    want_session = 0;
  else if (!lua_isnoneornil(L, si))
    return luaL_argerror(L, 2, "reused_session: a session, false or nil expected");
  if (o.verify && (name == NULL || *name == 0))
    return luaL_argerror(L, 2, "server_name is needed to verify the certificate "
                         "(or verify = false)");
  if (o.key != NULL && o.cert == NULL)
    return luaL_argerror(L, 2, "key without cert");
  int ret;
  owl_csock_t *s = usable(L, u, t, &ret);
  if (s == NULL)
    return ret;
  if (s->tls != NULL) {                     /* from the pool, or done before */
    if (s->hs_status != 0)
      return owl_push_error(L, "socket busy reading");
    if (!want_session) {
      lua_pushboolean(L, 1);
      return 1;
    }
    return push_session(L, owl_tls_session(s->tls));
  }
  if (!s->connected)
    return owl_push_error(L, "closed");
  if (s->reader || s->writer || s->writing)
    return owl_push_error(L, s->reader ? "socket busy reading" : "socket busy writing");
  if (s->in.len > 0 || s->err) {
    csock_close(s);
    return owl_push_error(L, "bytes arrived before the TLS handshake: closed");
  }
  char err[300];
  owl_tls_ctx_t *ctx = client_ctx(&o, err, sizeof err);
  if (ctx == NULL)
    return owl_push_error(L, err);
  if (s->reading) {
    s->tcp.t.vt->read_stop(&s->tcp.t);
    s->reading = 0;
  }
  owl_tls_t *tls = owl_tls_new(ctx, &s->tcp.t, owl_srv.loop);
  if (tls == NULL)
    return luaL_error(L, "not enough memory");
  owl_transport_t *tp = owl_tls_transport(tls);
  tp->owner = s;
  tp->on_read = on_read;
  tp->on_written = on_written;
  tp->on_closed = on_tcp_closed;
  s->tp = tp;
  s->tls = tls;
  s->hs_status = 1;
  s->no_session = !want_session;
  if (owl_tls_connect(tls, name, alpn, alpn_len, sess, on_handshake, s)) {
    csock_close(s);
    return owl_push_error(L, "bad server_name");
  }
  if (s->hs_status == 1)
    return wait_read(L, t, s, u->ct, (lua_KContext)s, handshake_k);
  return handshake_k(L, 0, (lua_KContext)s);
}


/* sock:sslsession() -> the newest session of a TLS connection (under TLS
** 1.3 the server sends it after the handshake), also once it closed; or nil */
static int tcp_sslsession (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  void *sess = u->s && u->s->tls ? owl_tls_session(u->s->tls) : NULL;
  if (sess == NULL && u->session != NULL)
    sess = owl_tls_session_ref(u->session);
  if (sess == NULL) {
    lua_pushnil(L);
    return 1;
  }
  return push_session(L, sess);
}


/* sock:sslinfo() -> { version =, cipher =, alpn =, reused = } or nil */
static int tcp_sslinfo (lua_State *L) {
  tcp_ud_t *u = checkud(L);
  if (u->s == NULL || u->s->tls == NULL || !owl_tls_done(u->s->tls)) {
    lua_pushnil(L);
    return 1;
  }
  owl_tls_t *tls = u->s->tls;
  size_t n;
  const char *alpn = owl_tls_alpn(tls, &n);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, owl_tls_version(tls));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, owl_tls_cipher(tls));
  lua_setfield(L, -2, "cipher");
  if (alpn != NULL) {
    lua_pushlstring(L, alpn, n);
    lua_setfield(L, -2, "alpn");
  }
  lua_pushboolean(L, owl_tls_reused(tls));
  lua_setfield(L, -2, "reused");
  return 1;
}
/* }====== */


/* {====== options and addresses */

/* sock:setoption("tcp-nodelay" | "keepalive" | "reuseaddr", bool) */
static int tcp_setoption (lua_State *L) {
  static const char *const names[] = { "tcp-nodelay", "keepalive", "reuseaddr", "linger", NULL };
  tcp_ud_t *u = checkud(L);
  int opt = luaL_checkoption(L, 2, NULL, names);
  int on = lua_toboolean(L, 3);
  if (u->s == NULL)
    return owl_push_error(L, "closed");
  owl_csock_t *s = u->s;
  if (s->tcp.t.is_pipe) {
    lua_pushinteger(L, 1);                  /* nothing to set on a unix socket */
    return 1;
  }
  int err = 0;
  switch (opt) {
    case 0: err = uv_tcp_nodelay(&s->tcp.h.tcp, on); break;
    case 1: err = uv_tcp_keepalive(&s->tcp.h.tcp, on, 60); break;
    default: {
      uv_os_fd_t fd;
      err = uv_fileno(&s->tcp.h.handle, &fd);
      if (err == 0 && opt == 2 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on))
        err = -errno;
      break;
    }
  }
  if (err)
    return owl_push_error(L, uv_strerror(err));
  lua_pushinteger(L, 1);
  return 1;
}


static int name_of (lua_State *L, int peer) {
  tcp_ud_t *u = checkud(L);
  if (u->s == NULL || !u->s->connected)
    return owl_push_error(L, "closed");
  owl_transport_t *t = u->s->tp;
  if (t->is_pipe) {
    char path[256];
    size_t n = sizeof path;
    int err = peer ? uv_pipe_getpeername(&u->s->tcp.h.pipe, path, &n)
                   : uv_pipe_getsockname(&u->s->tcp.h.pipe, path, &n);
    if (err)
      return owl_push_error(L, uv_strerror(err));
    lua_pushlstring(L, path, n);
    return 1;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int err = peer ? t->vt->peername(t, (struct sockaddr *)&ss, &len)
                 : t->vt->sockname(t, (struct sockaddr *)&ss, &len);
  if (err)
    return owl_push_error(L, uv_strerror(err));
  owl_push_sockaddr(L, (struct sockaddr *)&ss);
  lua_pushstring(L, ss.ss_family == AF_INET6 ? "inet6" : "inet");
  return 3;
}


static int tcp_getpeername (lua_State *L) {
  return name_of(L, 1);
}


static int tcp_getsockname (lua_State *L) {
  return name_of(L, 0);
}


/* sock:shutdown(["both" | "send" | "receive"]) -> 1, or nil, err */
static int tcp_shutdown (lua_State *L) {
  static const char *const hows[] = { "both", "send", "receive", NULL };
  tcp_ud_t *u = checkud(L);
  int how = luaL_checkoption(L, 2, "both", hows);
  owl_csock_t *s = u->s;
  if (s == NULL)
    return owl_push_error(L, "closed");
  if (how != 1) {                           /* no more reading */
    if (s->reading)
      s->tp->vt->read_stop(s->tp);
    s->reading = 0;
    if (s->err == 0)
      s->err = UV_EOF;
  }
  if (how != 2) {
    int err = s->tp->vt->shutdown(s->tp);
    if (err)
      return owl_push_error(L, uv_strerror(err));
  }
  lua_pushinteger(L, 1);
  return 1;
}
/* }====== */


void owl_open_cosock (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"_take", tcp_take},
    {"_unslot", tcp_unslot},
    {"_connect", tcp_connect_addr},
    {"send", tcp_send},
    {"receive", tcp_receive},
    {"receiveany", tcp_receiveany},
    {"receiveuntil", tcp_receiveuntil},
    {"settimeout", tcp_settimeout},
    {"settimeouts", tcp_settimeouts},
    {"setoption", tcp_setoption},
    {"setkeepalive", tcp_setkeepalive},
    {"getreusedtimes", tcp_getreusedtimes},
    {"getpeername", tcp_getpeername},
    {"getsockname", tcp_getsockname},
    {"shutdown", tcp_shutdown},
    {"close", tcp_close},
    {"share", tcp_share},
    {"sslhandshake", tcp_sslhandshake},
    {"sslsession", tcp_sslsession},
    {"sslinfo", tcp_sslinfo},
    {NULL, NULL}
  };
  static const luaL_Reg no_methods[] = { {NULL, NULL} };
  owl_newclass(L, OWL_SESSION_T, no_methods, session_tostring, session_gc);
  owl_newclass(L, OWL_TCP_T, methods, tcp_tostring, tcp_gc);
  lua_pushcfunction(L, l_tcp);
  lua_setfield(L, -2, "tcp");
  luaL_getmetatable(L, OWL_TCP_T);          /* connect is added in Lua */
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "tcp_methods");
  lua_pop(L, 1);
  owl_scope_close_socks = close_scope;
}


/* Closes every cosocket and frees the pools (at exit). */
void owl_cosock_teardown (void) {
  while (all_socks != NULL)
    csock_close(all_socks);
  for (pool_t *p = pools, *next; p != NULL; p = next) {
    next = p->next;
    free(p->wait);
    free(p);
  }
  pools = NULL;
  for (client_ctx_t *c = client_ctxs, *next; c != NULL; c = next) {
    next = c->next;
    owl_tls_ctx_unref(c->ctx);
    free(c);
  }
  client_ctxs = NULL;
}
