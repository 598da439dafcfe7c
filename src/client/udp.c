/*
** UDP for Lua on the loop (owin.udp): luasocket's unconnected and
** connected UDP objects.  Receiving is on only while a task waits for a
** datagram, so nothing is buffered here: what arrives meanwhile waits in
** the kernel's socket buffer.  A send the kernel cannot take at once is
** copied and queued; it does not wait.
**
** The C part (owl_udp_t) is malloc'd with its handle and timer and freed
** when both have closed; the Lua object points to it and is cleared when it
** closes.
*/

#include <stdlib.h>
#include <string.h>

#include "client/client.h"


#define OWL_UDP_T "owin.UDP"
#define DGRAM_MAX 65536

typedef struct owl_udp {
  uv_udp_t h;
  struct owl_udp *prev, *next;      /* every open UDP socket (teardown) */
  void *ud;                         /* its Lua object (udp_ud_t) */
  uv_timer_t timer;
  owl_task_t *reader;
  char *dgram;                      /* the datagram received for the reader */
  size_t dlen;
  struct sockaddr_storage from;
  int err;
  int nhandles;
  int64_t timeout;                  /* ms; -1: none */
  unsigned got : 1;
  unsigned timedout : 1;
  unsigned connected : 1;
  unsigned bound : 1;
} owl_udp_t;

typedef struct { owl_udp_t *u; } udp_ud_t;

static char rbuf[DGRAM_MAX];
static owl_udp_t *all_udp;


static void on_closed (uv_handle_t *h) {
  owl_udp_t *u = h->data;
  if (--u->nhandles == 0) {
    free(u->dgram);
    free(u);
  }
}


static void udp_close (udp_ud_t *ud) {
  owl_udp_t *u = ud->u;
  if (u == NULL)
    return;
  ud->u = NULL;
  if (u->prev)
    u->prev->next = u->next;
  else
    all_udp = u->next;
  if (u->next)
    u->next->prev = u->prev;
  uv_close((uv_handle_t *)&u->h, on_closed);
  uv_close((uv_handle_t *)&u->timer, on_closed);
  owl_task_t *t = u->reader;
  u->reader = NULL;
  if (t)
    owl_task_resume(t, 0);
}


static udp_ud_t *checkud (lua_State *L) {
  return luaL_checkudata(L, 1, OWL_UDP_T);
}



static owl_udp_t *open_or_fail (lua_State *L, udp_ud_t *ud) {
  if (ud->u == NULL)
    luaL_error(L, "the UDP socket is closed");
  return ud->u;
}


/* owin.udp() -> a UDP socket */
static int l_udp (lua_State *L) {
  udp_ud_t *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->u = NULL;
  luaL_setmetatable(L, OWL_UDP_T);
  owl_udp_t *u = calloc(1, sizeof *u);
  if (u == NULL)
    return luaL_error(L, "not enough memory");
  int err = uv_udp_init(owl_srv.loop, &u->h);
  if (err) {
    free(u);
    return owl_push_error(L, uv_strerror(err));
  }
  uv_timer_init(owl_srv.loop, &u->timer);
  u->h.data = u->timer.data = u;
  u->nhandles = 2;
  u->timeout = 60000;
  ud->u = u;
  u->ud = ud;
  u->next = all_udp;
  if (all_udp)
    all_udp->prev = u;
  all_udp = u;
  return 1;
}


static int udp_gc (lua_State *L) {
  udp_close(checkud(L));
  return 0;
}


static int udp_close_m (lua_State *L) {
  udp_close(checkud(L));
  lua_pushinteger(L, 1);
  return 1;
}


/* Fills ss from the IP literal and port at i, i + 1; raises on bad ones. */
static void addr_arg (lua_State *L, int i, struct sockaddr_storage *ss) {
  const char *ip = luaL_checkstring(L, i);
  lua_Integer port = luaL_checkinteger(L, i + 1);
  luaL_argcheck(L, port >= 0 && port < 65536, i + 1, "port must be 0 to 65535");
  if (strcmp(ip, "*") == 0)
    ip = "0.0.0.0";
  if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)ss) != 0 &&
      uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)ss) != 0)
    luaL_argerror(L, i, "an IP address expected (owin.resolve turns names into them)");
}


/* udp:setsockname(ip, port) -> 1, or nil, err */
static int udp_setsockname (lua_State *L) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  struct sockaddr_storage ss;
  addr_arg(L, 2, &ss);
  int err = uv_udp_bind(&u->h, (struct sockaddr *)&ss, UV_UDP_REUSEADDR);
  if (err)
    return owl_push_error(L, uv_strerror(err));
  u->bound = 1;
  lua_pushinteger(L, 1);
  return 1;
}


/* udp:_setpeername(ip, port) -> 1, or nil, err (setpeername resolves) */
static int udp_setpeername (lua_State *L) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  struct sockaddr_storage ss;
  addr_arg(L, 2, &ss);
  if (u->connected)
    uv_udp_connect(&u->h, NULL);
  int err = uv_udp_connect(&u->h, (struct sockaddr *)&ss);
  if (err)
    return owl_push_error(L, uv_strerror(err));
  u->connected = 1;
  u->bound = 1;
  lua_pushinteger(L, 1);
  return 1;
}


static void on_sent (uv_udp_send_t *req, int status) {
  (void)status;
  free(req);                                /* the copy is in the same block */
}


static int do_send (lua_State *L, owl_udp_t *u, const struct sockaddr *to) {
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, len <= DGRAM_MAX - 8 - 20, 2, "datagram too large");
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int n = uv_udp_try_send(&u->h, &b, 1, to);
  if (n == UV_EAGAIN || n == UV_ENOSYS) {   /* queue a copy */
    uv_udp_send_t *req = malloc(sizeof *req + len);
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    memcpy(req + 1, p, len);
    b = uv_buf_init((char *)(req + 1), (unsigned)len);
    n = uv_udp_send(req, &u->h, &b, 1, to, on_sent);
    if (n) {
      free(req);
      return owl_push_error(L, uv_strerror(n));
    }
    n = (int)len;
  }
  if (n < 0)
    return owl_push_error(L, n == UV_ECONNREFUSED ? "connection refused" : uv_strerror(n));
  u->bound = 1;
  lua_pushinteger(L, n);
  return 1;
}


/* udp:send(data) -> bytes sent, or nil, err (after setpeername) */
static int udp_send (lua_State *L) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  if (!u->connected)
    return luaL_error(L, "send needs setpeername first (or use sendto)");
  return do_send(L, u, NULL);
}


/* udp:sendto(data, ip, port) -> bytes sent, or nil, err */
static int udp_sendto (lua_State *L) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  struct sockaddr_storage ss;
  luaL_checkstring(L, 2);
  addr_arg(L, 3, &ss);
  if (u->connected)
    return luaL_error(L, "sendto on a socket with a peer (use send)");
  return do_send(L, u, (struct sockaddr *)&ss);
}


static void on_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h; (void)size;
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}


static void wake (owl_udp_t *u) {
  owl_task_t *t = u->reader;
  uv_udp_recv_stop(&u->h);
  uv_timer_stop(&u->timer);
  u->reader = NULL;
  if (t)
    owl_task_resume(t, 0);
}


static void on_recv (uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
                     const struct sockaddr *addr, unsigned flags) {
  owl_udp_t *u = h->data;
  (void)flags;
  if (n == 0 && addr == NULL)
    return;                                 /* nothing more to read now */
  if (n < 0)
    u->err = (int)n;
  else {
    char *d = malloc(n > 0 ? (size_t)n : 1);
    if (d == NULL)
      u->err = UV_ENOMEM;
    else {
      memcpy(d, buf->base, (size_t)n);
      free(u->dgram);
      u->dgram = d;
      u->dlen = (size_t)n;
      u->got = 1;
      if (addr)
        memcpy(&u->from, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in));
    }
  }
  wake(u);
}


static void on_timer (uv_timer_t *tm) {
  owl_udp_t *u = tm->data;
  u->timedout = 1;
  wake(u);
}


static void unwait (owl_task_t *t) {
  owl_udp_t *u = t->wait_on;
  if (u->reader == t) {
    u->reader = NULL;
    uv_udp_recv_stop(&u->h);
    uv_timer_stop(&u->timer);
  }
}


static int push_from (lua_State *L, owl_udp_t *u) {
  return owl_push_sockaddr(L, (const struct sockaddr *)&u->from);
}


/* Stack [udp, size]; ctx: 1 for receivefrom */
static int recv_k (lua_State *L, int status, lua_KContext ctx) {
  udp_ud_t *ud = checkud(L);
  owl_task_t *t = owl_task_of(L);
  (void)status;
  owl_udp_t *u = ud->u;
  if (t && owl_task_cancelled(t))
    return owl_push_cancelled(L);
  if (u == NULL)
    return owl_push_error(L, "closed");
  if (u->got) {
    size_t max = (size_t)luaL_optinteger(L, 2, DGRAM_MAX);
    u->got = 0;
    lua_pushlstring(L, u->dgram, u->dlen < max ? u->dlen : max);
    free(u->dgram);
    u->dgram = NULL;
    return ctx ? 1 + push_from(L, u) : 1;
  }
  if (u->err) {
    int e = u->err;
    u->err = 0;
    return owl_push_error(L, e == UV_ECONNREFUSED ? "connection refused" : uv_strerror(e));
  }
  if (u->timedout || u->timeout == 0) {
    u->timedout = 0;
    return owl_push_error(L, "timeout");
  }
  if (u->reader != NULL)
    return owl_push_error(L, "socket busy reading");
  t = owl_task_check(L, "receive");
  if (!u->bound)
    return luaL_error(L, "receive needs setsockname, setpeername or a send first");
  int err = uv_udp_recv_start(&u->h, on_alloc, on_recv);
  if (err)
    return owl_push_error(L, uv_strerror(err));
  u->reader = t;
  if (u->timeout >= 0)
    uv_timer_start(&u->timer, on_timer, (uint64_t)u->timeout, 0);
  return owl_task_wait(L, t, OWL_WAIT_SOCK, unwait, u, ctx, recv_k);
}


/* udp:receive([size]) -> datagram, or nil, err */
static int udp_receive (lua_State *L) {
  checkud(L);
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, luaL_checkinteger(L, 2) > 0, 2, "size must be positive");
  lua_settop(L, 2);
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, recv_k);
  return recv_k(L, LUA_OK, 0);
}


/* udp:receivefrom([size]) -> datagram, ip, port, or nil, err */
static int udp_receivefrom (lua_State *L) {
  checkud(L);
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, luaL_checkinteger(L, 2) > 0, 2, "size must be positive");
  lua_settop(L, 2);
  owl_task_t *t = owl_task_of(L);
  if (t != NULL && owl_task_cancelled(t))
    return owl_task_pause(L, t, 1, recv_k);
  return recv_k(L, LUA_OK, 1);
}


/* udp:settimeout(seconds): nil or < 0 for none */
static int udp_settimeout (lua_State *L) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  if (lua_isnoneornil(L, 2))
    u->timeout = -1;
  else {
    lua_Number s = luaL_checknumber(L, 2);
    u->timeout = s < 0 ? -1 : (int64_t)(s * 1000 + 0.5);
  }
  lua_pushinteger(L, 1);
  return 1;
}


static int name_of (lua_State *L, int peer) {
  owl_udp_t *u = open_or_fail(L, checkud(L));
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int err = peer ? uv_udp_getpeername(&u->h, (struct sockaddr *)&ss, &len)
                 : uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len);
  if (err)
    return owl_push_error(L, uv_strerror(err));
  memcpy(&u->from, &ss, sizeof ss);
  return push_from(L, u);
}


static int udp_getsockname (lua_State *L) {
  return name_of(L, 0);
}


static int udp_getpeername (lua_State *L) {
  return name_of(L, 1);
}


/* Closes every UDP socket (at exit). */
void owl_udp_teardown (void) {
  while (all_udp != NULL)
    udp_close(all_udp->ud);
}


void owl_open_udp (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"setsockname", udp_setsockname},
    {"_setpeername", udp_setpeername},
    {"send", udp_send},
    {"sendto", udp_sendto},
    {"receive", udp_receive},
    {"receivefrom", udp_receivefrom},
    {"settimeout", udp_settimeout},
    {"getsockname", udp_getsockname},
    {"getpeername", udp_getpeername},
    {"close", udp_close_m},
    {NULL, NULL}
  };
  owl_newclass(L, OWL_UDP_T, methods, NULL, udp_gc);
  lua_pushcfunction(L, l_udp);
  lua_setfield(L, -2, "udp");
  luaL_getmetatable(L, OWL_UDP_T);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "udp_methods");
  lua_pop(L, 1);
}
