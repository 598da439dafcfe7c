/*
** Names: owin.resolve(name) -> { "ip", ... }, getaddrinfo on libuv's thread
** pool (never on the loop), so /etc/hosts and nsswitch apply as for any
** program.  Answers are kept per worker for --dns-ttl seconds (the system
** resolver gives no TTL); failures are not kept.
**
** A lookup is malloc'd; the task waiting for it is a weak pointer that an
** interrupted wait clears, so a late answer only frees the request.
*/

#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <arpa/inet.h>

#include "client/client.h"


static const char cache_key = 0;    /* registry: name -> { expires, addrs } */

typedef struct lookup {
  uv_getaddrinfo_t req;
  owl_task_t *task;                 /* NULL once the wait was interrupted */
  int status;
  int done;
  struct addrinfo *res;
} lookup_t;


static void on_resolved (uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup_t *lk = (lookup_t *)req;
  lk->status = status;
  lk->res = res;
  lk->done = 1;
  owl_task_t *t = lk->task;
  if (t == NULL) {                          /* nobody waits any more */
    uv_freeaddrinfo(res);
    free(lk);
    return;
  }
  owl_task_resume(t, 0);
}


static void dns_unwait (owl_task_t *t) {
  lookup_t *lk = t->wait_on;
  lk->task = NULL;
  uv_cancel((uv_req_t *)&lk->req);          /* if it has not started */
}


/* Pushes the array of distinct addresses of res. */
static void push_addrs (lua_State *L, struct addrinfo *res) {
  lua_newtable(L);
  int n = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    char ip[64];
    if (ai->ai_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      continue;
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(L, -1, i);
      dup = strcmp(lua_tostring(L, -1), ip) == 0;
      lua_pop(L, 1);
    }
    if (!dup) {
      lua_pushstring(L, ip);
      lua_rawseti(L, -2, ++n);
    }
  }
}


/* A copy of the cached array for name (index 1), or nothing. */
static int from_cache (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
  if (lua_getfield(L, -1, lua_tostring(L, 1)) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_getfield(L, -1, "expires");
  double expires = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if ((double)uv_now(owl_srv.loop) >= expires) {
    lua_pop(L, 2);
    return 0;
  }
  lua_getfield(L, -1, "addrs");
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i);
  }
  return 1;
}


int owl_push_sockaddr (lua_State *L, const struct sockaddr *sa) {
  char ip[64];
  int port;
  if (sa->sa_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  }
  else {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}


/* nil, "host not found: NAME" when the name has no address; nil, "cannot
** resolve NAME: reason" when the lookup itself failed (no resolver, ...). */
static int not_found (lua_State *L, const char *name, int err) {
  lua_pushnil(L);
  if (err == UV_EAI_NONAME || err == UV_EAI_NODATA || err == UV_EAI_FAIL ||
      err == UV_EAI_ADDRFAMILY)
    lua_pushfstring(L, "host not found: %s", name);
  else
    lua_pushfstring(L, "cannot resolve %s: %s", name, uv_strerror(err));
  return 2;
}


static int resolve_k (lua_State *L, int status, lua_KContext ctx) {
  lookup_t *lk = (lookup_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  if (!lk->done) {                          /* interrupted: the answer is dropped */
    if (owl_task_cancelled(t))
      return owl_push_cancelled(L);
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled");
    return 2;
  }
  struct addrinfo *res = lk->res;
  int st = lk->status;
  free(lk);
  if (owl_task_cancelled(t)) {
    uv_freeaddrinfo(res);
    return owl_push_cancelled(L);
  }
  if (st != 0)
    return not_found(L, lua_tostring(L, 1), st);
  push_addrs(L, res);
  uv_freeaddrinfo(res);
  if (lua_rawlen(L, -1) == 0)
    return not_found(L, lua_tostring(L, 1), UV_EAI_NODATA);
  if (owl_srv.opt.dns_ttl > 0) {            /* keep a copy */
    int ai = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (double)(uv_now(owl_srv.loop) + owl_srv.opt.dns_ttl));
    lua_setfield(L, -2, "expires");
    lua_Integer n = (lua_Integer)lua_rawlen(L, ai);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, ai, i);
      lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "addrs");
    lua_setfield(L, -2, lua_tostring(L, 1));
    lua_settop(L, ai);
  }
  return 1;
}


/* owin.resolve(name) -> { "ip", ... }, or nil, err */
static int l_resolve (lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len > 0 && len < 254 && strlen(name) == len, 1, "not a host name");
  lua_settop(L, 1);
  unsigned char buf[sizeof(struct in6_addr)];
  if (uv_inet_pton(AF_INET, name, buf) == 0 || uv_inet_pton(AF_INET6, name, buf) == 0) {
    lua_createtable(L, 1, 0);               /* an address already */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    return 1;
  }
  if (from_cache(L))
    return 1;
  owl_task_t *t = owl_task_check(L, "owin.resolve");
  if (owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, owl_cancelled_k);
  lookup_t *lk = calloc(1, sizeof *lk);
  if (lk == NULL)
    return luaL_error(L, "not enough memory");
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  lk->task = t;
  int err = uv_getaddrinfo(owl_srv.loop, &lk->req, on_resolved, name, NULL, &hints);
  if (err) {
    free(lk);
    return not_found(L, name, err);
  }
  return owl_task_wait(L, t, OWL_WAIT_DNS, dns_unwait, lk, (lua_KContext)lk, resolve_k);
}


void owl_open_dns (lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
  lua_pushcfunction(L, l_resolve);
  lua_setfield(L, -2, "resolve");
}
