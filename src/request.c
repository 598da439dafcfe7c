/*
** The request cycle: the OWIN env, the app's coroutine, the response.
**
** The env is a plain table holding the request keys.  Three response keys
** (owin.ResponseStatusCode, owin.ResponseReasonPhrase, owin.ResponseHeaders)
** are never stored in it: its metatable reads and writes them in the
** request, so that changing them after the headers went out raises "headers
** already sent".  Keys that cost a system call or an allocation and are
** rarely used (owin.RequestId, owin.CallCancelled, server.*, host.*) are
** made on first access and then stored.  pairs(env) lists all of them.
**
** A request is a userdata ("owinlua.Request") with the user values listed
** in request.h.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "owl.h"
#include "request.h"
#include "token.h"


const char owl_req_key = 0;         /* env[&owl_req_key] = request userdata */
int owl_req_mt = LUA_NOREF;         /* registry[owl_req_mt]: its metatable */




/* {====== anchors */

/*
** Registry slots that anchored a request and were released: the slot
** holds false (never nil, so that luaL_ref, which hands out only nil
** slots, cannot give it to anyone else) and goes to the next request
** without luaL_ref/luaL_unref's walk of their free list.
*/
#define ANCHORS_MAX 1024
static int anchors[ANCHORS_MAX];
static int nanchors;


/* Pops the value on top into a registry slot and returns the slot. */
static int anchor (lua_State *L) {
  if (nanchors > 0) {
    int ref = anchors[--nanchors];
    lua_rawseti(L, LUA_REGISTRYINDEX, ref);
    return ref;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}


/* Releases a slot made by anchor. */
static void unanchor (lua_State *L, int ref) {
  if (nanchors == ANCHORS_MAX) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return;
  }
  lua_pushboolean(L, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, ref);
  anchors[nanchors++] = ref;
}
/* }====== */


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


static int ieq (const char *a, size_t an, const char *b) {
  size_t bn = strlen(b);
  return an == bn && strncasecmp(a, b, an) == 0;
}


/*
** Protected part of owl_req_begin: [conn] -> (nothing); builds the request
** userdata and the env, and anchors the request with a registry ref.
*/
static int begin (lua_State *L) {
  owl_conn_t *c = lua_touserdata(L, 1);
  owl_server_t *s = c->srv;
  size_t *f = (size_t *)c->fields.base;
  size_t nf = c->fields.len / (2 * sizeof(size_t));
  const char *head = c->head.base;
  owl_req_t *r = lua_newuserdatauv(L, sizeof *r, NUV);
  memset(r, 0, sizeof *r);
  r->task.co_ref = LUA_NOREF;
  r->task.after = NULL;             /* set by owl_req_start */
  r->ref = LUA_NOREF;
  r->status = 200;
  r->content_length = -1;
  r->id = ++s->next_id;
  r->method = (uint8_t)llhttp_get_method(&c->parser);
  r->http_minor = llhttp_get_http_minor(&c->parser);
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
  const char *path, *query;
  size_t qlen, plen = splittarget(head + f[0], f[1], &path, &query, &qlen);
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
  if (c->upgrade)
    owl_upgrade_env(L, c, env, ri);
  lua_settop(L, ri);
  r->ref = anchor(L);
  r->next = s->reqs;
  if (s->reqs)
    s->reqs->prev = r;
  s->reqs = r;
  r->conn = c;
  r->head_live = 1;                 /* headers stay in c->head until asked */
  for (size_t i = 1; i + 1 < nf; i += 2) {
    if (f[2 * i + 1] == 6 && memcmp(head + f[2 * i], "expect", 6) == 0 &&
        r->http_minor == 1 && ieq(head + f[2 * i + 2], f[2 * i + 3], "100-continue"))
      r->expect_continue = 1;
  }
  c->req = r;
  c->keepalive = llhttp_should_keep_alive(&c->parser) && !s->stopping;
  return 0;
}


/*
** Builds the request from the head collected in c and makes it c->req.
** Returns 0, or -1 when Lua ran out of memory (logged).
*/
int owl_req_begin (owl_conn_t *c) {
  lua_State *L = c->srv->L;
  lua_pushcfunction(L, begin);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    owl_log(OWL_LOG_ERROR, NULL, "cannot build a request: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}
/* }====== */


/* {====== response headers */

static inline void append (lua_State *L, owl_buf_t *b, const char *p, size_t n) {
  if (b->cap - b->len < n && owl_buf_reserve(b, n))
    luaL_error(L, "not enough memory");
  memcpy(b->base + b->len, p, n);
  b->len += n;
}


static void append_length (lua_State *L, owl_buf_t *b, uint64_t n) {
  char num[24];
  char *d = owl_fmt_uint(num + sizeof num - 2, n, 10);
  memcpy(num + sizeof num - 2, "\r\n", 2);
  append(L, b, "Content-Length: ", 16);
  append(L, b, d, (size_t)(num + sizeof num - d));
}


static void checkfield (lua_State *L, const char *name, const char *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] == '\r' || v[i] == '\n' || v[i] == 0)
      luaL_error(L, "invalid value for response header '%s': CR, LF and NUL are "
                 "not allowed", name);
}


/* Parses the app's Content-Length (values array on top); -1 if absent. */
static int64_t app_length (lua_State *L) {
  int64_t len = -1;
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      size_t sl;
      lua_geti(L, -1, i);
      const char *s = lua_tolstring(L, -1, &sl);
      int64_t v = 0;
      if (s == NULL || sl == 0 || sl > 18)
        luaL_error(L, "invalid Content-Length response header");
      for (size_t k = 0; k < sl; k++) {
        if (s[k] < '0' || s[k] > '9')
          luaL_error(L, "invalid Content-Length response header '%s'", s);
        v = v * 10 + (s[k] - '0');
      }
      if (len >= 0 && v != len)
        luaL_error(L, "conflicting Content-Length response headers");
      len = v;
      lua_pop(L, 1);
    }
  }
  return len;
}


/*
** Headers are sent now as far as the app is concerned: run the
** OnSendingHeaders callbacks (last registered first), then freeze status
** and headers.  Runs in the request's coroutine; errors propagate to it.
*/
void owl_req_commit (lua_State *L, owl_req_t *r) {
  if (r->committed)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  int ri = lua_gettop(L);
  if (lua_getiuservalue(L, ri, UV_ONSEND) == LUA_TTABLE) {
    lua_getfield(L, -1, "n");
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, ri, UV_ONSEND);    /* each runs once */
    for (lua_Integer i = n - 1; i >= 1; i -= 2) {
      lua_rawgeti(L, -1, i);
      lua_rawgeti(L, -2, i + 1);
      lua_call(L, 1, 0);
    }
  }
  lua_pop(L, 1);
  r->committed = 1;
  if (lua_getiuservalue(L, ri, UV_RESPH) != LUA_TTABLE) {
    lua_settop(L, ri - 1);                  /* the app never set a header */
    r->no_body = r->is_head || r->status < 200 || r->status == 204 || r->status == 304;
    return;
  }
  r->hflags = (unsigned)owl_headers_freeze(L, -1);
  if (!(r->hflags & OWL_HF_SPECIAL)) {      /* no Content-Length, no Connection */
    lua_settop(L, ri - 1);
    r->no_body = r->is_head || r->status < 200 || r->status == 204 || r->status == 304;
    return;
  }
  owl_headers_rawget(L, -1, OWL_HN_CONTENT_LENGTH);
  r->content_length = app_length(L);
  lua_pop(L, 1);
  owl_headers_rawget(L, -1, OWL_HN_CONNECTION);
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      size_t sl;
      lua_geti(L, -1, i);
      const char *s = lua_tolstring(L, -1, &sl);
      if (s && ieq(s, sl, "close") && r->conn)
        r->conn->keepalive = 0;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, ri - 1);
  r->no_body = r->is_head || r->status < 200 || r->status == 204 || r->status == 304;
}


/*
** The "Date: ...\r\nServer: ...\r\n" lines (Server left out when the
** option is ""), rebuilt when the Date changes (once a second).
*/
static const char *date_server (owl_server_t *s, size_t *n) {
  static char block[6 + 29 + 2 + 8 + sizeof ((owl_options_t *)0)->server_name + 2];
  static size_t len;
  static uint64_t sec = UINT64_MAX;
  owl_server_date(s);
  if (s->date_sec != sec) {
    char *w = block;
    memcpy(w, "Date: ", 6);
    memcpy(w + 6, s->date, 29);
    memcpy(w + 35, "\r\n", 2);
    w += 37;
    size_t sl = strlen(s->opt.server_name);
    if (sl > 0) {
      memcpy(w, "Server: ", 8);
      memcpy(w + 8, s->opt.server_name, sl);
      memcpy(w + 8 + sl, "\r\n", 2);
      w += 8 + sl + 2;
    }
    len = (size_t)(w - block);
    sec = s->date_sec;
  }
  *n = len;
  return block;
}


/*
** Writes the status line and headers in front of the held body.  final:
** the app has finished, so the whole body is the held bytes.
*/
void owl_req_serialize (lua_State *L, owl_req_t *r, int final) {
  owl_conn_t *c = r->conn;
  owl_server_t *s = &owl_srv;
  owl_buf_t *b = &s->hbuf;
  int hasdate = 0, hasserver = 0;
  if (c == NULL) {
    r->serialized = 1;
    return;
  }
  b->len = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  int ri = lua_gettop(L);
  char num[24];
  char *d;
  if (lua_getiuservalue(L, ri, UV_REASON) == LUA_TNIL && r->status == 200)
    append(L, b, "HTTP/1.1 200 OK\r\n", 17);
  else {
    size_t rl = 0;
    const char *reason = lua_tolstring(L, -1, &rl);
    if (reason == NULL) {
      reason = owl_reason(r->status);
      rl = strlen(reason);
    }
    d = owl_fmt_uint(num + sizeof num, (uint64_t)r->status, 10);
    size_t dl = (size_t)(num + sizeof num - d);
    if (owl_buf_reserve(b, 9 + dl + 1 + rl + 2))
      luaL_error(L, "not enough memory");
    char *w = b->base;
    memcpy(w, "HTTP/1.1 ", 9);
    memcpy(w + 9, d, dl);
    w += 9 + dl;
    *w++ = ' ';
    memcpy(w, reason, rl);
    memcpy(w + rl, "\r\n", 2);
    b->len = 9 + dl + 1 + rl + 2;
  }
  lua_pop(L, 1);
  int ht = lua_getiuservalue(L, ri, UV_RESPH);
  if (ht == LUA_TSTRING) {                  /* header lines made by the server */
    size_t hl;
    const char *hp = lua_tolstring(L, -1, &hl);
    append(L, b, hp, hl);
  }
  else if (ht == LUA_TTABLE) {
    owl_headers_store(L, -1, (int)r->hflags);   /* store, names */
    int names = lua_gettop(L), store = names - 1;
    lua_pushnil(L);
    while (lua_next(L, store)) {
      size_t nl;
      const char *lname = lua_tolstring(L, -2, &nl);
      const char *name = lname;
      if (lname == owl_hname[OWL_HN_CONTENT_LENGTH] ||
          lname == owl_hname[OWL_HN_TRANSFER_ENCODING] ||
          lname == owl_hname[OWL_HN_CONNECTION]) {
        lua_pop(L, 1);                      /* framing is the server's */
        continue;
      }
      if (lname == owl_hname[OWL_HN_DATE])
        hasdate = 1;
      else if (lname == owl_hname[OWL_HN_SERVER])
        hasserver = 1;
      int spelled = 0;
      if (lua_istable(L, names)) {
        lua_pushvalue(L, -2);
        if (lua_rawget(L, names) == LUA_TSTRING) {
          name = lua_tolstring(L, -1, &nl);
          spelled = 1;
        }
        lua_pop(L, 1);                      /* still anchored by names */
      }
      int vt = lua_type(L, -1);
      lua_Integer n = vt == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 1;
      for (lua_Integer i = 1; i <= n; i++) {
        size_t vl;
        if (vt == LUA_TTABLE)
          lua_rawgeti(L, -1, i);
        else
          lua_pushvalue(L, -1);
        const char *v = lua_tolstring(L, -1, &vl);
        if (v == NULL)
          luaL_error(L, "value of response header '%s' must be a string", name);
        checkfield(L, name, v, vl);
        if (owl_buf_reserve(b, nl + vl + 4))
          luaL_error(L, "not enough memory");
        char *o = b->base + b->len;
        if (spelled)
          memcpy(o, name, nl);
        else                                /* Canonical-Case by default */
          owl_headers_canonical(o, name, nl);
        o += nl;
        *o++ = ':';
        *o++ = ' ';
        memcpy(o, v, vl);
        o += vl;
        *o++ = '\r';
        *o++ = '\n';
        b->len = (size_t)(o - b->base);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, ri - 1);
  if (!hasdate && !hasserver) {
    size_t n;
    const char *ds = date_server(s, &n);
    append(L, b, ds, n);
  }
  else if (!hasdate) {
    owl_server_date(s);
    append(L, b, "Date: ", 6);
    append(L, b, s->date, 29);
    append(L, b, "\r\n", 2);
  }
  else if (!hasserver && s->opt.server_name[0]) {
    append(L, b, "Server: ", 8);
    append(L, b, s->opt.server_name, strlen(s->opt.server_name));
    append(L, b, "\r\n", 2);
  }
  int st = r->status;
  int chunk = 0;
  if (r->content_length >= 0) {
    if (st != 204 && !(st >= 100 && st < 200))
      append_length(L, b, (uint64_t)r->content_length);
  }
  else if (final) {
    if (st != 204 && st != 304 && st >= 200)
      append_length(L, b, r->written);
  }
  else if (r->http_minor >= 1) {
    if (st != 204 && st != 304 && st >= 200)
      append(L, b, "Transfer-Encoding: chunked\r\n", 28);
    r->chunked = !r->no_body;
    chunk = r->chunked && c->held > 0;
  }
  else {
    r->until_close = 1;
    c->keepalive = 0;
  }
  if (final && !r->body_done)
    c->keepalive = 0;                       /* the rest of the body is not read */
  if (st == 101)
    append(L, b, "Connection: Upgrade\r\n", 21);
  else if (!c->keepalive || s->stopping) {
    c->keepalive = 0;
    append(L, b, "Connection: close\r\n", 19);
  }
  else if (r->http_minor == 0)
    append(L, b, "Connection: keep-alive\r\n", 24);
  append(L, b, "\r\n", 2);
  size_t held = c->held;
  if (chunk) {
    d = owl_fmt_uint(num + sizeof num - 2, held, 16);
    memcpy(num + sizeof num - 2, "\r\n", 2);
    append(L, b, d, (size_t)(num + sizeof num - d));
  }
  if (owl_conn_unhold(c, b->base, b->len) ||
      (chunk && owl_buf_append(&c->out, "\r\n", 2)))
    luaL_error(L, "not enough memory");
  r->serialized = 1;
  r->wire = 1;
}


/* A large piece goes to the socket straight from the Lua string as far as
** it can; a small one is copied, to leave with the rest of this read's output. */
static int append_body (owl_conn_t *c, const char *p, size_t n) {
  return n >= OWL_FIRST_BUF ? owl_conn_write_through(c, p, n) : owl_buf_append(&c->out, p, n);
}


/*
** Appends n bytes of response body.  Runs in a coroutine (may raise).
** Returns 0 or a libuv error when the connection is gone.
*/
int owl_req_body_write (lua_State *L, owl_req_t *r, const char *p, size_t n) {
  owl_req_commit(L, r);
  if (r->content_length >= 0 && !r->no_body &&
      r->written + n > (uint64_t)r->content_length)
    return luaL_error(L, "response body exceeds its Content-Length (%d bytes)",
                      (int)r->content_length);
  r->written += n;
  owl_conn_t *c = r->conn;
  if (c == NULL)
    return UV_EPIPE;
  if (r->no_body || n == 0)
    return 0;
  if (!r->serialized) {
    if (c->held + n <= OWL_FIRST_BUF) {
      if (owl_buf_append(&c->out, p, n))
        return luaL_error(L, "not enough memory");
      c->held += n;
      return 0;
    }
    owl_req_serialize(L, r, 0);
  }
  if (r->chunked) {
    char hex[24];
    char *d = owl_fmt_uint(hex + sizeof hex - 2, n, 16);
    memcpy(hex + sizeof hex - 2, "\r\n", 2);
    size_t hl = (size_t)(hex + sizeof hex - d);
    if (owl_buf_append(&c->out, d, hl) || append_body(c, p, n) ||
        owl_buf_append(&c->out, "\r\n", 2))
      return luaL_error(L, "not enough memory");
  }
  else if (append_body(c, p, n))
    return luaL_error(L, "not enough memory");
  return 0;
}


/* Sends "100 Continue" before the first read of an expecting request. */
void owl_req_continue (owl_req_t *r) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  owl_conn_t *c = r->conn;
  r->continue_sent = 1;
  if (c == NULL || r->serialized)
    return;
  if (owl_buf_insert(&c->out, c->out.len - c->held, msg, sizeof msg - 1) == 0)
    owl_conn_flush(c);
}


/*
** The app returned: headers out (if they never were), body framed to its
** end.  Runs in the coroutine (errors become a 500 while nothing is sent).
*/
static void finish (lua_State *L, owl_req_t *r) {
  owl_req_commit(L, r);
  if (r->content_length >= 0 && !r->no_body &&
      r->written != (uint64_t)r->content_length) {
    if (!r->wire)
      luaL_error(L, "response body is shorter than its Content-Length "
                 "(%d of %d bytes)", (int)r->written, (int)r->content_length);
    r->abort = 1;                           /* too late: cut the connection */
  }
  if (!r->serialized)
    owl_req_serialize(L, r, 1);
  else if (r->chunked && r->conn && !r->abort &&
           owl_buf_append(&r->conn->out, "0\r\n\r\n", 5))
    luaL_error(L, "not enough memory");
  r->finished = 1;
}
/* }====== */


/* {====== the coroutine */

/* After an upgrade callback (or the app holding the socket) returned. */
static int upgraded_k (lua_State *L, int status, lua_KContext ctx) {
  owl_req_t *r = (owl_req_t *)ctx;
  (void)status;
  owl_upgrade_end(L, r, 1000);
  return 0;
}


static int main_k (lua_State *L, int status, lua_KContext ctx) {
  owl_req_t *r = (owl_req_t *)ctx;
  (void)status;
  if (owl_upgrade_run(L, r)) {              /* 101: the callback runs here */
    lua_callk(L, 1, 0, ctx, upgraded_k);
    return upgraded_k(L, LUA_OK, ctx);
  }
  if (r->upgraded)                          /* the adapter's accept */
    return upgraded_k(L, LUA_OK, ctx);
  finish(L, r);
  return 0;
}


/* Coroutine body: [app, env, request(light)] */
static int req_main (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, 3);
  lua_settop(L, 2);
  lua_callk(L, 1, 0, (lua_KContext)r, main_k);
  return main_k(L, LUA_OK, (lua_KContext)r);
}


static void log_error (owl_req_t *r, const char *what, const char *msg) {
  char id[64];
  owl_req_idstr(r->id, id, sizeof id);
  owl_log(OWL_LOG_ERROR, id, "%s: %s", what, msg);
}


/* Drops the registry ref and the body buffer: the GC may take r now. */
static void release (owl_req_t *r) {
  owl_server_t *s = &owl_srv;
  owl_buf_free(&r->body);
  if (r->ref == LUA_NOREF)
    return;
  unanchor(s->L, r->ref);
  r->ref = LUA_NOREF;
  if (r->prev)
    r->prev->next = r->next;
  else
    s->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}


void owl_req_drain (owl_server_t *s) {
  for (owl_req_t *r = s->reqs; r != NULL; r = r->next)
    owl_buf_free(&r->body);
}


/* Gives the coroutine back to the pool and releases the request. */
static void req_end (owl_req_t *r, int status) {
  owl_server_t *s = &owl_srv;
  lua_State *L = s->L;
  lua_State *co = r->task.co;
  owl_conn_t *c = r->conn;
  r->finished = 1;
  *(owl_task_t **)lua_getextraspace(co) = NULL;
  if (status == LUA_OK)
    lua_settop(co, 0);
  else
    lua_resetthread(co);
  if (s->npool < OWL_POOL_MAX) {
    s->pool[s->npool] = co;
    s->pool_ref[s->npool++] = r->task.co_ref;
  }
  else
    luaL_unref(L, LUA_REGISTRYINDEX, r->task.co_ref);
  r->task.co = NULL;
  r->task.co_ref = LUA_NOREF;
  r->head_live = 0;                         /* c->head goes to the next request */
  release(r);
  if (c != NULL) {
    r->conn = NULL;
    c->req = NULL;
    int keep = c->keepalive && r->body_done && !r->until_close && !r->abort &&
               !s->stopping;
    owl_conn_request_done(c, keep);
  }
}


/* After each resume of a request's coroutine. */
static void req_after (owl_task_t *t, int status) {
  owl_req_t *r = (owl_req_t *)t;
  owl_server_t *s = &owl_srv;
  lua_State *L = s->L;
  owl_conn_t *c = r->conn;
  if (status == LUA_YIELD) {
    if (t->wait != OWL_WAIT_NONE) {
      if (c && !c->in_drive)
        owl_conn_continue(c);
      return;
    }
    lua_pushliteral(t->co, "the request's coroutine yielded outside owinlua's API "
                    "(coroutine.yield in app code?)");
    status = LUA_ERRRUN;
  }
  if (status != LUA_OK) {
    const char *msg = lua_tostring(t->co, -1);
    luaL_traceback(L, t->co, msg ? msg : "(error object is not a string)", 0);
    const char *tb = lua_tostring(L, -1);
    log_error(r, "app error", tb);
    owl_upgrade_end(L, r, 1011);            /* a socket's coroutine failed */
    if (c != NULL && !r->wire) {
      c->out.len -= c->held;
      c->held = 0;
      if (!r->body_done)
        c->keepalive = 0;
      if (s->opt.dev)
        owl_conn_canned(c, 500, NULL, tb, strlen(tb), !c->keepalive);
      else {
        static const char body[] = "500 Internal Server Error\n";
        owl_conn_canned(c, 500, NULL, body, sizeof body - 1, !c->keepalive);
      }
    }
    else
      r->abort = 1;
    lua_pop(L, 1);
  }
  else if (r->abort && c != NULL)         /* not when the client left */
    log_error(r, "app error", "response body is shorter than its Content-Length");
  req_end(r, status);
}


static lua_State *pool_get (owl_server_t *s, int *ref) {
  if (s->npool > 0) {
    s->npool--;
    *ref = s->pool_ref[s->npool];
    return s->pool[s->npool];
  }
  lua_State *co = lua_newthread(s->L);
  *ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
  return co;
}


void owl_req_start (owl_req_t *r) {
  owl_server_t *s = &owl_srv;
  lua_State *co = pool_get(s, &r->task.co_ref);
  r->started = 1;
  r->task.co = co;
  r->task.after = req_after;
  *(owl_task_t **)lua_getextraspace(co) = &r->task;
  lua_pushcfunction(co, req_main);
  lua_rawgeti(co, LUA_REGISTRYINDEX, s->app_ref);
  lua_rawgeti(co, LUA_REGISTRYINDEX, r->ref);
  lua_getiuservalue(co, -1, UV_ENV);
  lua_remove(co, -2);
  lua_pushlightuserdata(co, r);
  owl_task_resume(&r->task, 3);
}


void owl_req_wake_reader (owl_req_t *r) {
  if (r->task.wait == OWL_WAIT_READ)
    owl_task_resume(&r->task, 0);
}


void owl_req_wake_writer (owl_req_t *r) {
  if (r->task.wait == OWL_WAIT_DRAIN)
    owl_task_resume(&r->task, 0);
}


void owl_req_cancel (owl_req_t *r) {
  lua_State *L = owl_srv.L;
  r->cancelled = 1;
  if (r->ref == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  if (lua_getiuservalue(L, -1, UV_CANCEL) == LUA_TTABLE)
    owl_token_fire(L, -1);
  lua_pop(L, 2);
}


void owl_req_detach (owl_req_t *r, int err) {
  if (r->head_live && r->ref != LUA_NOREF) {
    lua_State *L = owl_srv.L;
    lua_pushcfunction(L, owl_env_keepheaders);
    lua_pushlightuserdata(L, r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      lua_pop(L, 1);                        /* out of memory: they stay empty */
    r->head_live = 0;
  }
  r->conn = NULL;
  if (!r->body_done && r->read_err == 0)
    r->read_err = err;
  if (!r->started) {                        /* no coroutine will end it */
    r->finished = 1;
    release(r);
    return;
  }
  if (r->finished)
    return;
  owl_req_cancel(r);
  if (r->task.wait == OWL_WAIT_READ || r->task.wait == OWL_WAIT_DRAIN)
    owl_task_resume(&r->task, 0);
}
/* }====== */


/* The request's metatable is the output stream's (stream.c). */
void owl_open_request (lua_State *L) {
  luaL_getmetatable(L, OWL_REQ_T);
  owl_req_mt = luaL_ref(L, LUA_REGISTRYINDEX);
}
