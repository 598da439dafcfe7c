/*
** The response on the wire, in HTTP/1.1 framing: committing the status and
** headers (OnSendingHeaders, then frozen), the status line and header
** block, Content-Length or chunked framing of the body as the app writes
** it, the last chunk, "100 Continue".  stream.c and sendfile.c write
** through it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request/request.h"
#include "request/keys.h"
#include "codec/token.h"


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
  if (OWL_COMMITTED(r))
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
  owl_req_reach(r, R_COMMITTED);
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
      if (s && owl_ieq(s, sl, "close") && r->conn)
        owl_h1_no_keepalive(r->conn);
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
  uint64_t now;
  const char *date = owl_http_date(&now);
  if (now != sec) {
    char *w = block;
    memcpy(w, "Date: ", 6);
    memcpy(w + 6, date, 29);
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
    sec = now;
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
    owl_req_reach(r, R_SENT);
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
    append(L, b, "Date: ", 6);
    append(L, b, owl_http_date(NULL), 29);
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
    chunk = r->chunked && owl_conn_held(c) > 0;
  }
  else {
    r->until_close = 1;
    owl_h1_no_keepalive(c);
  }
  if (final && !r->body_done)
    owl_h1_no_keepalive(c);                 /* the rest of the body is not read */
  if (st == 101)
    append(L, b, "Connection: Upgrade\r\n", 21);
  else if (!owl_h1_keepalive(c) || s->stopping) {
    owl_h1_no_keepalive(c);
    append(L, b, "Connection: close\r\n", 19);
  }
  else if (r->http_minor == 0)
    append(L, b, "Connection: keep-alive\r\n", 24);
  append(L, b, "\r\n", 2);
  size_t held = owl_conn_held(c);
  if (chunk) {
    d = owl_fmt_uint(num + sizeof num - 2, held, 16);
    memcpy(num + sizeof num - 2, "\r\n", 2);
    append(L, b, d, (size_t)(num + sizeof num - d));
  }
  if (owl_conn_unhold(c, b->base, b->len) ||
      (chunk && owl_conn_append(c, "\r\n", 2)))
    luaL_error(L, "not enough memory");
  owl_req_reach(r, R_SENT);
}


/*
** Counts n more bytes of body against the app's Content-Length: raises
** when they would go past it.  Runs in the request's coroutine.
*/
void owl_req_count (lua_State *L, owl_req_t *r, uint64_t n) {
  if (r->content_length >= 0 && !r->no_body &&
      r->written + n > (uint64_t)r->content_length)
    luaL_error(L, "response body exceeds its Content-Length (%d bytes)",
               (int)r->content_length);
  r->written += n;
}


/* Appends the head of a chunk of n bytes ("<hex>\r\n"); 0 or UV_ENOMEM. */
int owl_req_chunk_head (owl_conn_t *c, uint64_t n) {
  char hex[24];
  char *d = owl_fmt_uint(hex + sizeof hex - 2, n, 16);
  memcpy(hex + sizeof hex - 2, "\r\n", 2);
  return owl_conn_append(c, d, (size_t)(hex + sizeof hex - d));
}


/* A large piece goes to the socket straight from the Lua string as far as
** it can; a small one is copied, to leave with the rest of this read's output. */
static int append_body (owl_conn_t *c, const char *p, size_t n) {
  return n >= OWL_FIRST_BUF ? owl_conn_write_through(c, p, n) : owl_conn_append(c, p, n);
}


/*
** Appends n bytes of response body.  Runs in a coroutine (may raise).
** Returns 0 or a libuv error when the connection is gone.
*/
int owl_req_body_write (lua_State *L, owl_req_t *r, const char *p, size_t n) {
  owl_req_commit(L, r);
  owl_req_count(L, r, n);
  owl_conn_t *c = r->conn;
  if (c == NULL)
    return UV_EPIPE;
  if (r->no_body || n == 0)
    return 0;
  if (!OWL_SENT(r)) {
    if (owl_conn_held(c) + n <= OWL_FIRST_BUF) {
      if (owl_conn_hold(c, p, n))
        return luaL_error(L, "not enough memory");
      return 0;
    }
    owl_req_serialize(L, r, 0);
  }
  if (r->chunked) {
    if (owl_req_chunk_head(c, n) || append_body(c, p, n) ||
        owl_conn_append(c, "\r\n", 2))
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
  if (c == NULL || OWL_SENT(r))
    return;
  if (owl_conn_insert(c, msg, sizeof msg - 1) == 0)
    owl_conn_flush(c);
}


/*
** The app returned: headers out (if they never were), body framed to its
** end.  Runs in the coroutine (errors become a 500 while nothing is sent).
*/
void owl_req_finish (lua_State *L, owl_req_t *r) {
  owl_req_commit(L, r);
  if (r->content_length >= 0 && !r->no_body &&
      r->written != (uint64_t)r->content_length) {
    if (!OWL_SENT(r))
      luaL_error(L, "response body is shorter than its Content-Length "
                 "(%d of %d bytes)", (int)r->written, (int)r->content_length);
    r->abort = 1;                           /* too late: cut the connection */
  }
  if (!OWL_SENT(r))
    owl_req_serialize(L, r, 1);
  else if (r->chunked && r->conn && !r->abort &&
           owl_conn_append(r->conn, "0\r\n\r\n", 5))
    luaL_error(L, "not enough memory");
  owl_req_reach(r, R_DONE);
}
/* }====== */
