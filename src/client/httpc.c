/*
** The HTTP client's response parser for Lua: codec/http_resp.c behind a
** userdata, fed with the strings a cosocket returns.  lua/owin/http.lua
** is its user; the unit specs drive it through build/owl_codec.so.
**
**   local p = core.http_response_parser{ method = "HEAD",
**     max_header_bytes = 65536, max_headers = 200, max_body = 0 }
**   p:feed(data) -> events | nil, err
**   p:eof()      -> events | nil, err     (the connection closed)
**   p:done()     -> true once the response is complete
**
** Every option may be left out (method: not HEAD; the limits: the
** parser's defaults, max_body 0 or absent for none).  events is a list of
** at most three tables, in this order:
**   { type = "head", status = 200, reason = "OK", version = "1.1",
**     headers = { "content-type", "text/plain", "set-cookie", "a=1", ... } }
**       the final head (interim 1xx ones are skipped): headers is flat,
**       name then value, in wire order, names lowercased, values trimmed;
**   { type = "body", data = "..." }
**       the body bytes this call decoded (de-chunked), as one string;
**   { type = "done", keepalive = true, extra = 0 }
**       the response is complete; extra counts the bytes of data after its
**       end (another response the server should not have sent, or the new
**       protocol after a 101); keepalive is false when extra > 0.
** A feed after "done" consumes nothing and returns an empty list.  Errors
** are strings ("invalid response: ...", "response head too large", "too
** many response header lines", "response body too large", "closed before
** the response head", "closed before the end of the body"); once failed,
** every call returns the same.
**
** The codec's callbacks never touch Lua: they set flags and note body
** spans, and the events are built once owl_resp_feed has returned, so no
** Lua error (out of memory) can escape from inside the parser.
*/

#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "client/httpc.h"
#include "codec/http_resp.h"


#define PARSER_T "owinlua.HttpResponseParser"


typedef struct lparser {
  owl_resp_t r;
  owl_buf_t acc;                /* body bytes of one feed, when they came
                                   in more than one span */
  const char *span;             /* the first span of this feed */
  size_t span_len;
  unsigned head : 1;            /* on_head ran in this call */
  unsigned done : 1;            /* on_done ran in this call */
  unsigned failed_acc : 1;      /* acc ran out of memory */
} lparser_t;


static lparser_t *check_parser (lua_State *L, int idx) {
  return (lparser_t *)luaL_checkudata(L, idx, PARSER_T);
}


/* {====== the codec's callbacks */

static int on_head (void *ud, owl_resp_t *r) {
  (void)r;
  ((lparser_t *)ud)->head = 1;
  return 0;
}


/* The first span is only noted (it points into the Lua string being fed);
** a second one moves both into acc. */
static int on_body (void *ud, const char *at, size_t n) {
  lparser_t *lp = (lparser_t *)ud;
  if (lp->span == NULL && lp->acc.len == 0) {
    lp->span = at;
    lp->span_len = n;
    return 0;
  }
  if (lp->span != NULL) {
    if (owl_buf_append(&lp->acc, lp->span, lp->span_len))
      goto nomem;
    lp->span = NULL;
  }
  if (owl_buf_append(&lp->acc, at, n) == 0)
    return 0;
nomem:
  lp->failed_acc = 1;
  return 1;
}


static int on_done (void *ud, owl_resp_t *r) {
  (void)r;
  ((lparser_t *)ud)->done = 1;
  return 0;
}


static const owl_resp_events events = { on_head, on_body, on_done };
/* }====== */


/* {====== events */

/* Pushes the head event. */
static void push_head (lua_State *L, lparser_t *lp) {
  owl_resp_t *r = &lp->r;
  size_t n = owl_resp_nheaders(r), len;
  const char *reason = owl_resp_reason(r, &len);
  lua_createtable(L, 0, 5);
  lua_pushliteral(L, "head");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, reason, len);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, r->minor == 1 ? "1.1" : "1.0");
  lua_setfield(L, -2, "version");
  lua_createtable(L, (int)(2 * n), 0);
  for (size_t i = 0; i < n; i++) {
    const char *name, *value;
    size_t nlen, vlen;
    owl_resp_header(r, i, &name, &nlen, &value, &vlen);
    lua_pushlstring(L, name, nlen);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 1));
    lua_pushlstring(L, value, vlen);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 2));
  }
  lua_setfield(L, -2, "headers");
}


/*
** Pushes the list of what one call produced (used: the bytes of data it
** consumed, n: all of them), and clears the call's state.
*/
static void push_events (lua_State *L, lparser_t *lp, size_t used, size_t n) {
  lua_Integer k = 0;
  lua_createtable(L, 3, 0);
  if (lp->head) {
    push_head(L, lp);
    lua_rawseti(L, -2, ++k);
    owl_resp_drop_head(&lp->r);         /* copied: give the buffers back */
  }
  if (lp->span != NULL || lp->acc.len > 0) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "body");
    lua_setfield(L, -2, "type");
    if (lp->span != NULL)
      lua_pushlstring(L, lp->span, lp->span_len);
    else
      lua_pushlstring(L, lp->acc.base, lp->acc.len);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, ++k);
  }
  if (lp->done) {
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "done");
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, lp->r.keepalive && used == n);
    lua_setfield(L, -2, "keepalive");
    lua_pushinteger(L, (lua_Integer)(n - used));
    lua_setfield(L, -2, "extra");
    lua_rawseti(L, -2, ++k);
  }
  lp->head = lp->done = 0;
  lp->span = NULL;
  owl_buf_free(&lp->acc);
}


/* Pushes nil and the parser's error; returns 2. */
static int push_error (lua_State *L, lparser_t *lp) {
  const char *why = owl_resp_error(&lp->r);
  lp->head = lp->done = 0;
  lp->span = NULL;
  owl_buf_free(&lp->acc);
  lua_pushnil(L);
  lua_pushstring(L, lp->failed_acc ? "out of memory" : why ? why : "invalid response");
  return 2;
}
/* }====== */


/* {====== methods */

/* p:feed(data) -> events | nil, err */
static int p_feed (lua_State *L) {
  lparser_t *lp = check_parser(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (owl_resp_error(&lp->r) != NULL)
    return push_error(L, lp);
  if (owl_resp_done(&lp->r)) {
    lua_createtable(L, 0, 0);
    return 1;
  }
  long used = owl_resp_feed(&lp->r, data, n, &events, lp);
  if (used < 0)
    return push_error(L, lp);
  push_events(L, lp, (size_t)used, n);
  return 1;
}


/* p:eof() -> events | nil, err */
static int p_eof (lua_State *L) {
  lparser_t *lp = check_parser(L, 1);
  if (owl_resp_eof(&lp->r, &events, lp) < 0)
    return push_error(L, lp);
  push_events(L, lp, 0, 0);
  return 1;
}


/* p:done() -> boolean */
static int p_done (lua_State *L) {
  lparser_t *lp = check_parser(L, 1);
  lua_pushboolean(L, owl_resp_done(&lp->r));
  return 1;
}


static int p_gc (lua_State *L) {
  lparser_t *lp = check_parser(L, 1);
  owl_resp_free(&lp->r);
  owl_buf_free(&lp->acc);
  return 0;
}


static int p_tostring (lua_State *L) {
  lparser_t *lp = check_parser(L, 1);
  lua_pushfstring(L, "http response parser (%s): %p",
                  owl_resp_error(&lp->r) ? "failed" :
                  owl_resp_done(&lp->r) ? "done" : "parsing", (void *)lp);
  return 1;
}
/* }====== */


/*
** optsize: the field k of the options table at index 1 as a count (0 when
** absent); an error naming the field if it is not a non-negative integer.
** Leaves the stack as it was.
*/
static lua_Integer optsize (lua_State *L, const char *k) {
  lua_Integer v = 0;
  int isnum;
  if (lua_getfield(L, 1, k) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v < 0)
      luaL_error(L, "bad argument #1 to 'http_response_parser' (%s must be a "
                 "non-negative integer)", k);
  }
  lua_pop(L, 1);
  return v;
}


/*
** http_response_parser([opts]) -> parser.  Expects the options table (or
** nothing) at index 1; leaves the parser on top.
*/
static int l_parser (lua_State *L) {
  owl_resp_limits_t lim = { 0, 0, 0 };
  int head_req = 0;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "method") != LUA_TNIL) {
      luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1, "method must be a string");
      head_req = strcmp(lua_tostring(L, -1), "HEAD") == 0;
    }
    lua_pop(L, 1);
    lim.max_header_bytes = (size_t)optsize(L, "max_header_bytes");
    lim.max_headers = (size_t)optsize(L, "max_headers");
    lim.max_body = (uint64_t)optsize(L, "max_body");
  }
  lparser_t *lp = (lparser_t *)lua_newuserdatauv(L, sizeof *lp, 0);
  memset(lp, 0, sizeof *lp);
  owl_resp_init(&lp->r, head_req, &lim);
  luaL_setmetatable(L, PARSER_T);
  return 1;
}


void owl_open_httpc (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"feed", p_feed},
    {"eof", p_eof},
    {"done", p_done},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", p_gc},
    {"__tostring", p_tostring},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, PARSER_T)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_parser);
  lua_setfield(L, -2, "http_response_parser");
}
