/*
** The OWIN env: built for each request from the parsed head (begin_request,
** the handler's owl_h1_req.begin), and its metatable.
**
** Three response keys (owin.ResponseStatusCode, owin.ResponseReasonPhrase,
** owin.ResponseHeaders) are never stored in the env: __index and
** __newindex read and write them in the request, so that changing them
** after the headers went out raises "headers already sent".  Keys that cost
** a system call or an allocation and are often not used (owin.RequestHeaders,
** owin.RequestBody, owin.RequestId, owin.CallCancelled, server.*, host.*)
** are made on first access and kept in the request (UV_LAZY), never in the
** env: reading a key must not change a table that pairs() walks.
** pairs(env) lists all of them.
*/

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "request/request.h"
#include "request/keys.h"
#include "codec/token.h"


static const char *const keynames[] = {
  NULL, "owin.RequestMethod", "owin.RequestPath", "owin.RequestQueryString",
  "owin.ResponseBody",
  "owin.RequestScheme", "owin.RequestPathBase", "owin.RequestProtocol",
  "owin.Version",
  "owin.ResponseStatusCode", "owin.ResponseReasonPhrase", "owin.ResponseHeaders",
  "owin.RequestHeaders", "owin.RequestBody",
  "owin.RequestId", "owin.CallCancelled", "server.RemoteIpAddress",
  "server.RemotePort", "server.LocalIpAddress", "server.LocalPort",
  "server.IsLocal", "server.OnSendingHeaders", "host.OnAppDisposing",
  "sendfile.SendAsync", "server.OnRequestEnd",
  "ssl.ClientCertificate", "ssl.ClientCertificateErrors", "ssl.LoadClientCertAsync"
};


static owl_req_t *checkreq (lua_State *L, int idx) {
  return luaL_checkudata(L, idx, OWL_REQ_T);
}


/* The request of the env at idx (raw slot), or NULL. */
static owl_req_t *envreq (lua_State *L, int idx) {
  lua_rawgetp(L, idx, &owl_req_key);
  owl_req_t *r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return r;
}


/*
** Pushes the request headers table built from the head kept in the
** connection (an empty table once the head is gone).
*/
static void pushreqheaders (lua_State *L, owl_req_t *r) {
  owl_conn_t *c = r->conn;
  if (c == NULL || !r->head_live) {
    owl_headers_new(L, 0, 0);
    return;
  }
  size_t nf = owl_h1_nfields(c);
  owl_headers_new(L, (int)(nf / 2), 0);
  int h = lua_gettop(L);
  for (size_t i = 1; i + 1 < nf; i += 2) {
    size_t nl, vl;
    const char *name = owl_h1_field(c, i, &nl);
    const char *v = owl_h1_field(c, i + 1, &vl);
    owl_headers_add(L, h, name, nl, v, vl);
  }
}



/*
** OnSendingHeaders(callback, state): upvalue 1 is the request.  Entries are
** kept as { n = count, cb1, state1, cb2, state2, ... }; a state may be nil,
** so the count is stored, never taken from the length.
*/
/*
** Appends callback (index 1) and state (index 2) to the list in uservalue
** slot of the request at upvalue 1: { callback, state, ..., n = count }.
*/
static void add_callback (lua_State *L, int slot, int narr) {
  if (lua_getiuservalue(L, lua_upvalueindex(1), slot) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, narr, 1);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, lua_upvalueindex(1), slot);
  }
  lua_getfield(L, 3, "n");
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  lua_rawseti(L, 3, n + 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, 3, n + 2);
  lua_pushinteger(L, n + 2);
  lua_setfield(L, 3, "n");
}


static int on_sending (lua_State *L) {
  owl_req_t *r = checkreq(L, lua_upvalueindex(1));
  lua_settop(L, 2);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (OWL_COMMITTED(r))
    return luaL_error(L, "server.OnSendingHeaders: headers already sent");
  add_callback(L, UV_ONSEND, 4);
  return 0;
}


/*
** OnRequestEnd(callback, state): upvalue 1 is the request.  Kept as
** OnSendingHeaders keeps its entries, in UV_ONEND; the request cycle runs
** them when the request ends (run_onend, request.c).
*/
static int on_end (lua_State *L) {
  owl_req_t *r = checkreq(L, lua_upvalueindex(1));
  lua_settop(L, 2);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (r->ref == LUA_NOREF)
    return luaL_error(L, "server.OnRequestEnd: the request has ended");
  add_callback(L, UV_ONEND, 2);
  r->onend = 1;
  return 0;
}


static void setaddr (lua_State *L, int t, int K, int kip, int kport,
                     const struct sockaddr_storage *ss, int ok) {
  char ip[64] = "";
  int port = 0;
  if (ok && ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  else if (ok && ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  }
  lua_rawgeti(L, K, kip);
  lua_pushstring(L, ip);
  lua_rawset(L, t);
  lua_rawgeti(L, K, kport);
  if (port)
    lua_pushfstring(L, "%d", port);
  else
    lua_pushliteral(L, "");
  lua_rawset(L, t);
}


/* Stores the server.* address keys in the table at t. */
static void addresses (lua_State *L, int t, owl_req_t *r) {
  struct sockaddr_storage peer, self;
  int okp = 0, oks = 0, local = 0;
  owl_conn_t *c = r->conn;
  lua_rawgeti(L, LUA_REGISTRYINDEX, owl_srv.keys_ref);
  int K = lua_gettop(L);
  if (c && !owl_conn_is_pipe(c)) {
    okp = owl_conn_peername(c, &peer) == 0;
    oks = owl_conn_sockname(c, &self) == 0;
  }
  setaddr(L, t, K, K_REMOTEIP, K_REMOTEPORT, &peer, okp);
  setaddr(L, t, K, K_LOCALIP, K_LOCALPORT, &self, oks);
  if (c && owl_conn_is_pipe(c))
    local = 1;
  else if (okp && oks) {
    lua_rawgeti(L, K, K_REMOTEIP);
    lua_rawget(L, t);
    lua_rawgeti(L, K, K_LOCALIP);
    lua_rawget(L, t);
    local = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_rawgeti(L, K, K_ISLOCAL);
  lua_pushboolean(L, local);
  lua_rawset(L, t);
  lua_pop(L, 1);
}


/* ssl.LoadClientCertAsync(): the handshake asked for the certificate
** already, so there is nothing to wait for; returns it (or nil). */
static int load_client_cert (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}


/*
** The ssl.* keys of a TLS connection into the lazy table at t: the
** client's certificate as PEM and its verification error, when it sent one,
** and LoadClientCertAsync.  Nothing for a plain connection, or once the
** connection is gone.
*/
static void ssl_keys (lua_State *L, int t, owl_req_t *r) {
  owl_tls_t *tls = r->conn ? owl_conn_tls(r->conn) : NULL;
  if (tls == NULL)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, owl_srv.keys_ref);
  int K = lua_gettop(L);
  size_t n = 0;
  char *pem = owl_tls_peer_pem(tls, &n);
  if (pem != NULL) {
    lua_rawgeti(L, K, K_SSLCERT);
    lua_pushlstring(L, pem, n);
    free(pem);
    lua_rawset(L, t);
    const char *verr = owl_tls_verify_error(tls);
    if (verr != NULL) {
      lua_rawgeti(L, K, K_SSLERRORS);
      lua_pushstring(L, verr);
      lua_rawset(L, t);
    }
  }
  lua_rawgeti(L, K, K_SSLLOAD);
  lua_rawgeti(L, K, K_SSLCERT);
  lua_rawget(L, t);
  lua_pushcclosure(L, load_client_cert, 1);
  lua_rawset(L, t);
  lua_pop(L, 1);
}


/*
** Sets in the headers table at h the "Name: value\r\n" lines of the string
** at lines (headers the server sent without a table).
*/
static void setlines (lua_State *L, int h, int lines) {
  size_t n;
  const char *p = lua_tolstring(L, lines, &n);
  const char *end = p + n;
  while (p < end) {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *eol = colon ? memchr(colon, '\r', (size_t)(end - colon)) : NULL;
    if (eol == NULL)
      break;
    lua_pushlstring(L, p, (size_t)(colon - p));
    lua_pushlstring(L, colon + 2, (size_t)(eol - colon - 2));
    lua_settable(L, h);                     /* through __newindex */
    p = eol + 2;
  }
}


/*
** Pushes the value of virtual or lazy key id (its name at key) for the env
** at 1 (nil for an env without a request).  Lazy values are made once and
** kept in the request (UV_LAZY), never in the env: reading a key must not
** change a table that pairs() walks.
*/
static void pushvirtual (lua_State *L, int id, int key) {
  lua_rawgetp(L, 1, &owl_req_key);
  int ri = lua_gettop(L);
  owl_req_t *r = lua_touserdata(L, ri);
  if (r == NULL)
    return;                                 /* nil */
  switch (id) {
    case K_SCHEME:
      if (r->tls)
        lua_pushliteral(L, "https");
      else
        lua_pushliteral(L, "http");
      break;
    case K_PATHBASE:
      lua_pushliteral(L, "");
      break;
    case K_PROTOCOL:
      if (r->http_minor == 0)
        lua_pushliteral(L, "HTTP/1.0");
      else
        lua_pushliteral(L, "HTTP/1.1");
      break;
    case K_VERSION:
      lua_pushliteral(L, "1.0");
      break;
    case K_STATUS:
      lua_pushinteger(L, r->status);
      break;
    case K_REASON:
      lua_getiuservalue(L, ri, UV_REASON);
      break;
    case K_RESPHEADERS: {
      int t = lua_getiuservalue(L, ri, UV_RESPH);
      if (t != LUA_TTABLE) {
        owl_headers_new(L, 4, 1);
        if (t == LUA_TSTRING)               /* lines sent without a table */
          setlines(L, lua_gettop(L), lua_gettop(L) - 1);
        lua_remove(L, -2);
        if (OWL_COMMITTED(r))
          owl_headers_freeze(L, -1);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ri, UV_RESPH);
      }
      break;
    }
    case K_CANCEL:
      if (lua_getiuservalue(L, ri, UV_CANCEL) != LUA_TTABLE) {
        lua_pop(L, 1);
        owl_token_new(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ri, UV_CANCEL);
        if (r->cancelled)
          owl_token_fire(L, -1);
      }
      break;
    case K_DISPOSING:
      lua_rawgeti(L, LUA_REGISTRYINDEX, owl_srv.disposing_ref);
      break;
    default: {
      if (lua_getiuservalue(L, ri, UV_LAZY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 8);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ri, UV_LAZY);
      }
      int t = lua_gettop(L);
      lua_pushvalue(L, key);
      if (lua_rawget(L, t) == LUA_TNIL) {
        lua_pop(L, 1);
        if (id == K_REQHEADERS) {
          lua_pushvalue(L, key);
          pushreqheaders(L, r);
          lua_rawset(L, t);
        }
        else if (id == K_REQBODY) {
          lua_pushvalue(L, key);
          lua_pushvalue(L, ri);
          owl_stream_push(L, r);
          lua_remove(L, -2);
          lua_rawset(L, t);
        }
        else if (id == K_REQID) {
          char buf[64];
          size_t n = owl_req_idstr(r->id, buf, sizeof buf);
          lua_pushvalue(L, key);
          lua_pushlstring(L, buf, n);
          lua_rawset(L, t);
        }
        else if (id == K_SENDFILE) {
          lua_pushvalue(L, key);
          owl_sendfile_push(L, ri);
          lua_rawset(L, t);
        }
        else if (id == K_ONSENDING) {
          lua_pushvalue(L, key);
          lua_pushvalue(L, ri);
          lua_pushcclosure(L, on_sending, 1);
          lua_rawset(L, t);
        }
        else if (id == K_ONEND) {
          lua_pushvalue(L, key);
          lua_pushvalue(L, ri);
          lua_pushcclosure(L, on_end, 1);
          lua_rawset(L, t);
        }
        else if (id >= K_SSLCERT)
          ssl_keys(L, t, r);                /* the three at once */
        else
          addresses(L, t, r);               /* all five at once */
        lua_pushvalue(L, key);
        lua_rawget(L, t);
      }
      lua_remove(L, t);
    }
  }
  lua_remove(L, ri);
}


/* __index(env, key); upvalue 1: key string -> id */
static int env_index (lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNUMBER)
    return 1;                               /* nil */
  int id = (int)lua_tointeger(L, -1);
  pushvirtual(L, id, 2);
  return 1;
}


static void sent_error (lua_State *L, const char *key) {
  luaL_error(L, "headers already sent: cannot change %s", key);
}


/* __newindex(env, key, value) */
static int env_newindex (lua_State *L) {
  lua_pushvalue(L, 2);
  int id = lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER ?
           (int)lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  owl_req_t *r = envreq(L, 1);
  if (r == NULL || id < K_STATUS || id > K_RESPHEADERS) {
    lua_rawset(L, 1);
    return 0;
  }
  if (OWL_COMMITTED(r))
    sent_error(L, lua_tostring(L, 2));
  lua_rawgetp(L, 1, &owl_req_key);
  int ri = lua_gettop(L);
  switch (id) {
    case K_STATUS: {
      int isnum;
      lua_Integer st = lua_tointegerx(L, 3, &isnum);
      if (!isnum || st < 100 || st > 999)
        return luaL_error(L, "owin.ResponseStatusCode must be an integer from 100 "
                          "to 999, got %s", luaL_tolstring(L, 3, NULL));
      r->status = (int)st;
      break;
    }
    case K_REASON:
      if (!lua_isnil(L, 3)) {
        size_t n;
        const char *s = luaL_tolstring(L, 3, &n);
        for (size_t i = 0; i < n; i++)
          if (s[i] == '\r' || s[i] == '\n' || s[i] == 0)
            return luaL_error(L, "owin.ResponseReasonPhrase: CR, LF and NUL are "
                              "not allowed");
        lua_replace(L, 3);
      }
      lua_pushvalue(L, 3);
      lua_setiuservalue(L, ri, UV_REASON);
      break;
    case K_RESPHEADERS:
      luaL_argexpected(L, lua_istable(L, 3), 3, "table");
      if (!owl_headers_is(L, 3)) {
        owl_headers_from(L, 3);
        lua_replace(L, 3);
      }
      lua_pushvalue(L, 3);
      lua_setiuservalue(L, ri, UV_RESPH);
      break;
  }
  return 0;
}


/*
** pairs(env) iterator: the raw keys, then the virtual and lazy ones that
** are not stored yet.  upvalue 1: key -> id; upvalue 2: keys array.
*/
static int env_next (lua_State *L) {
  int id = 0;
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER)
      id = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (id >= K_FIRSTV) {
      lua_pushvalue(L, 2);
      if (lua_rawget(L, 1) != LUA_TNIL)
        id = 0;                             /* a lazy key already stored */
      lua_pop(L, 1);
    }
    else
      id = 0;
  }
  if (id == 0) {
    lua_pushvalue(L, 2);
    while (lua_next(L, 1)) {
      if (lua_type(L, -2) != LUA_TLIGHTUSERDATA)
        return 2;
      lua_pop(L, 1);                        /* skip the hidden request slot */
    }
    id = K_FIRSTV - 1;
  }
  owl_req_t *r = envreq(L, 1);
  for (id = id + 1; r != NULL && id <= K_LAST; id++) {
    lua_rawgeti(L, lua_upvalueindex(2), id);  /* key */
    lua_pushvalue(L, -1);
    if ((id < K_STATUS || id > K_RESPHEADERS) && lua_rawget(L, 1) != LUA_TNIL) {
      lua_pop(L, 2);
      continue;                             /* listed with the raw keys */
    }
    lua_pop(L, 1);
    lua_replace(L, 2);
    pushvirtual(L, id, 2);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    return 2;
  }
  return 0;
}


static int env_pairs (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, env_next, 2);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* [request(light)] -> (): makes the headers table while the head exists. */
static int keepheaders (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  lua_getiuservalue(L, -1, UV_ENV);
  lua_replace(L, 1);                        /* 1: env, as pushvirtual wants */
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, owl_srv.keys_ref);
  lua_rawgeti(L, 2, K_REQHEADERS);          /* 3: the key */
  pushvirtual(L, K_REQHEADERS, 3);
  return 0;
}


/* Lua: core.env() -> the env of the request running in this coroutine */
static int l_env (lua_State *L) {
  owl_req_t *r = owl_task_req(owl_task_of(L));
  if (r == NULL || r->ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  lua_getiuservalue(L, -1, UV_ENV);
  return 1;
}


/* Lua: owin.keys() -> array of every key an env can hold */
static int l_keys (lua_State *L) {
  lua_createtable(L, K_LAST, 0);
  for (int i = 1; i <= K_LAST; i++) {
    lua_pushstring(L, keynames[i]);
    lua_rawseti(L, -2, i);
  }
  return 1;
}


/* {====== building the env */

/*
** Pushes the path percent-decoded, except "%2F" which stays encoded (as
** ASP.NET Core does, so that a decoded "/" cannot change the segments).
** Invalid escapes are kept as they are.
*/
static void pushpath (lua_State *L, int K, const char *p, size_t n) {
  if (n == 0 || (n == 1 && p[0] == '/')) {
    lua_rawgeti(L, K, K_SLASH);
    return;
  }
  if (memchr(p, '%', n) == NULL) {
    lua_pushlstring(L, p, n);
    return;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n);
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    int h, l;
    if (p[i] == '%' && i + 2 < n && (h = owl_hexval((unsigned char)p[i + 1])) >= 0 &&
        (l = owl_hexval((unsigned char)p[i + 2])) >= 0 && !(h == 2 && l == 15)) {
      out[j++] = (char)(h * 16 + l);
      i += 2;
    }
    else
      out[j++] = p[i];
  }
  luaL_pushresultsize(&b, j);
}


/*
** Splits the request-target t[0..n) into the path (*p, returned length)
** and the query (*q, *qn; NULL when there is none).
*/
static size_t splittarget (const char *t, size_t n, const char **p,
                           const char **q, size_t *qn) {
  const char *end = t + n;
  const char *hash = memchr(t, '#', n);
  if (hash)
    end = hash;
  if (n > 0 && t[0] != '/' && t[0] != '*') {
    /* absolute-form: skip "scheme://authority" */
    const char *s = memchr(t, ':', (size_t)(end - t));
    if (s && s + 2 < end && s[1] == '/' && s[2] == '/') {
      s = memchr(s + 3, '/', (size_t)(end - (s + 3)));
      const char *qm = memchr(t, '?', (size_t)(end - t));
      if (s == NULL || (qm && qm < s))
        s = qm ? qm : end;
      t = s;
    }
  }
  const char *qm = memchr(t, '?', (size_t)(end - t));
  *p = t;
  *q = qm ? qm + 1 : NULL;
  *qn = qm ? (size_t)(end - qm - 1) : 0;
  return (size_t)((qm ? qm : end) - t);
}


/*
** Protected part of owl_req_begin: [conn] -> (nothing); builds the request
** userdata and the env, and anchors the request with a registry ref.
*/
static int begin (lua_State *L) {
  owl_conn_t *c = lua_touserdata(L, 1);
  owl_server_t *s = &owl_srv;
  size_t nf = owl_h1_nfields(c);
  owl_req_t *r = lua_newuserdatauv(L, sizeof *r, NUV);
  memset(r, 0, sizeof *r);
  r->task.co_ref = LUA_NOREF;
  r->task.after = NULL;             /* set by owl_req_start */
  r->ref = LUA_NOREF;
  r->status = 200;
  r->content_length = -1;
  r->id = ++s->next_id;
  r->task.rid = r->id;
  r->task.scope = &r->scope;
  r->scope.is_req = 1;
  r->scope.task = &r->task;
  r->method = (uint8_t)owl_h1_method(c);
  r->http_minor = (uint8_t)owl_h1_minor(c);
  r->tls = owl_conn_tls(c) != NULL;
  r->is_head = r->method == HTTP_HEAD;
  lua_rawgeti(L, LUA_REGISTRYINDEX, owl_req_mt);
  lua_setmetatable(L, -2);
  int ri = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->keys_ref);
  int K = lua_gettop(L);
  lua_createtable(L, 0, 5);                 /* the request slot, 4 keys */
  int env = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->env_mt_ref);
  lua_setmetatable(L, env);
  lua_pushvalue(L, ri);
  lua_rawsetp(L, env, &owl_req_key);
  const char *path, *query, *target;
  size_t tlen, qlen;
  target = owl_h1_field(c, 0, &tlen);
  size_t plen = splittarget(target, tlen, &path, &query, &qlen);
  lua_rawgeti(L, K, K_METHOD);
  if (lua_rawgeti(L, K, K_METHOD0 + r->method) != LUA_TSTRING) {
    lua_pop(L, 1);                          /* first request with it */
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)r->method));
    lua_pushvalue(L, -1);
    lua_rawseti(L, K, K_METHOD0 + r->method);
  }
  lua_rawset(L, env);
  lua_rawgeti(L, K, K_PATH);
  pushpath(L, K, path, plen);
  lua_rawset(L, env);
  lua_rawgeti(L, K, K_QUERY);
  if (query && qlen > 0)
    lua_pushlstring(L, query, qlen);
  else
    lua_rawgeti(L, K, K_EMPTY);
  lua_rawset(L, env);
  lua_rawgeti(L, K, K_RESPBODY);
  lua_pushvalue(L, ri);                     /* the request is the body stream */
  lua_rawset(L, env);
  lua_pushvalue(L, env);
  lua_setiuservalue(L, ri, UV_ENV);
  if (owl_h1_upgrade(c))
    owl_upgrade_env(L, c, env, ri);
  lua_settop(L, ri);
  owl_req_anchor(L, r);
  r->conn = c;
  r->head_live = 1;                 /* headers stay in c->head until asked */
  for (size_t i = 1; i + 1 < nf; i += 2) {
    size_t nl, vl;
    const char *name = owl_h1_field(c, i, &nl);
    if (nl == 6 && memcmp(name, "expect", 6) == 0 && r->http_minor == 1) {
      const char *v = owl_h1_field(c, i + 1, &vl);
      if (owl_ieq(v, vl, "100-continue"))
        r->expect_continue = 1;
    }
  }
  if (s->stopping)
    owl_h1_no_keepalive(c);
  lua_pushlightuserdata(L, r);      /* owl_req_begin's answer */
  return 1;
}


/*
** Builds the request from the head the HTTP/1.1 handler parsed on c.
** Returns it, or NULL when Lua ran out of memory (logged).
*/
static owl_req_t *begin_request (owl_conn_t *c) {
  lua_State *L = owl_srv.L;
  lua_pushcfunction(L, begin);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    owl_log(OWL_LOG_ERROR, NULL, "cannot build a request: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  owl_req_t *r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return r;
}
/* }====== */


/*
** Creates the keys array and the env metatable; adds keys() and env() to
** the module table on top.
*/
void owl_open_env (lua_State *L) {
  owl_server_t *s = &owl_srv;
  owl_req_keepheaders = keepheaders;
  owl_h1_req.begin = begin_request;
  lua_createtable(L, K_SLASH, 0);
  for (int i = 1; i <= K_LAST; i++) {
    lua_pushstring(L, keynames[i]);
    lua_rawseti(L, -2, i);
  }
  int K = lua_gettop(L);
  lua_pushliteral(L, "");
  lua_rawseti(L, K, K_EMPTY);
  lua_pushliteral(L, "/");
  lua_rawseti(L, K, K_SLASH);
  lua_pushvalue(L, K);
  s->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, K_LAST);            /* key -> id for virtual/lazy */
  for (int i = K_FIRSTV; i <= K_LAST; i++) {
    lua_rawgeti(L, K, i);
    lua_pushinteger(L, i);
    lua_rawset(L, -3);
  }
  int ids = lua_gettop(L);
  lua_createtable(L, 0, 4);                 /* env metatable */
  lua_pushvalue(L, ids);
  lua_pushcclosure(L, env_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, ids);
  lua_pushcclosure(L, env_newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, ids);
  lua_pushvalue(L, K);
  lua_pushcclosure(L, env_pairs, 2);
  lua_setfield(L, -2, "__pairs");
  lua_pushliteral(L, "owin.env");
  lua_setfield(L, -2, "__name");
  s->env_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 2);                            /* ids, K */
  lua_pushcfunction(L, l_keys);
  lua_setfield(L, -2, "keys");
  lua_pushcfunction(L, l_env);
  lua_setfield(L, -2, "env");
}
