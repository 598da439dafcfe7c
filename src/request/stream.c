/*
** owin.RequestBody and owin.ResponseBody: C objects shaped like Lua's file
** handles.  The output stream is the request userdata itself (its
** metatable is OUT_T), so a request costs no second object.  An input
** stream is a userdata holding a pointer to its request; its user value is
** the request userdata, which keeps the pointer valid for as long as the
** stream lives.
**
** Waiting (a read with no bytes yet, a write above the high-water mark)
** yields the request's coroutine; the loop resumes it with no values and
** the continuation looks again at the request's state: a wake-up is a hint,
** never a result.
**
** Misuse raises (a stream used after its response finished, a bad
** argument).  Runtime failures return nil, "ENAME: message", "ENAME".
*/

#include <stdint.h>
#include <string.h>

#include "request/request.h"
#include "request/keys.h"

#define IN_T "owinlua.InputStream"
#define OUT_T OWL_REQ_T
#define READ_ALL ((lua_KContext)-1)
#define CHUNK OWL_BODY_HIGH


typedef struct owl_stream {
  owl_req_t *r;
} owl_stream_t;


/* Pushes an input stream of r, whose userdata is on top. */
void owl_stream_push (lua_State *L, owl_req_t *r) {
  owl_stream_t *s = lua_newuserdatauv(L, sizeof *s, 1);
  s->r = r;
  luaL_setmetatable(L, IN_T);
  lua_pushvalue(L, -2);                     /* the request userdata is below */
  lua_setiuservalue(L, -2, 1);
}


static owl_req_t *checkstream (lua_State *L, int idx, const char *tname) {
  owl_stream_t *s = luaL_checkudata(L, idx, tname);
  if (OWL_ENDED(s->r))
    luaL_error(L, "%s used after its response finished", tname + 8);
  return s->r;
}


static const void *out_mt;          /* OUT_T's metatable (the registry keeps it) */


/*
** The output stream at 1, which is its request.  Its metatable is told by
** address: the check costs no registry lookup.
*/
static owl_req_t *checkout (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, 1);
  if (r == NULL || !lua_getmetatable(L, 1) || lua_topointer(L, -1) != out_mt)
    r = luaL_checkudata(L, 1, OUT_T);       /* raises the usual message */
  else
    lua_pop(L, 1);
  if (OWL_ENDED(r))
    luaL_error(L, "%s used after its response finished", &OUT_T[8]);
  return r;
}


/* Pushes nil, "ENAME: message", "ENAME"; returns 3. */
static int failure (lua_State *L, int err, const char *what) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), what);
  lua_pushstring(L, uv_err_name(err));
  return 3;
}


static const char *read_reason (int err) {
  switch (err) {
    case UV_E2BIG: return "request body exceeds the server's limit";
    case UV_ETIMEDOUT: return "request body timed out";
    default: return "client closed the connection";
  }
}


/* Yields the request's coroutine until woken; k continues. */
static int wait (lua_State *L, owl_req_t *r, int what, lua_KContext ctx,
                 lua_KFunction k) {
  if (owl_task_of(L) != &r->task || !owl_task_can_wait(L))
    return luaL_error(L, "the request body can only wait in its own request's "
                      "coroutine");
  return owl_task_wait(L, &r->task, what, NULL, NULL, ctx, k);
}


/* {====== input */

/*
** read continuation: stack [stream, ...].  ctx: bytes wanted, or READ_ALL.
** With `iter` the caller is chunks(): errors raise instead of returning.
*/
static int read_k (lua_State *L, int status, lua_KContext ctx) {
  owl_req_t *r = checkstream(L, 1, IN_T);
  owl_conn_t *c = r->conn;
  (void)status;
  if (r->discard) {                         /* closed: nothing more to read */
    lua_pushnil(L);
    return 1;
  }
  if (r->expect_continue && !r->continue_sent && !r->body_done)
    owl_req_continue(r);
  if (ctx == READ_ALL) {
    if (!r->body_done) {
      if (r->read_err || c == NULL) {
        r->read_all = 0;
        return failure(L, r->read_err ? r->read_err : UV_ECONNRESET,
                       read_reason(r->read_err));
      }
      r->read_all = 1;
      owl_h1_resume_reading(c);
      return wait(L, r, OWL_WAIT_READ, ctx, read_k);
    }
    r->read_all = 0;
    lua_pushlstring(L, r->body.base ? r->body.base : "", r->body.len);
    owl_buf_free(&r->body);
    return 1;
  }
  if (r->body.len > 0) {
    size_t n = r->body.len < (size_t)ctx ? r->body.len : (size_t)ctx;
    lua_pushlstring(L, r->body.base, n);
    owl_buf_consume(&r->body, n);
    if (c != NULL && r->body.len < OWL_BODY_HIGH)
      owl_h1_resume_reading(c);
    return 1;
  }
  if (r->body_done) {
    lua_pushnil(L);
    return 1;
  }
  if (r->read_err || c == NULL)
    return failure(L, r->read_err ? r->read_err : UV_ECONNRESET,
                   read_reason(r->read_err));
  owl_h1_resume_reading(c);
  return wait(L, r, OWL_WAIT_READ, ctx, read_k);
}


/*
** body:read(n) -> up to n bytes, nil at the end;
** body:read("a") -> the rest of the body ("" at the end).
*/
static int in_read (lua_State *L) {
  checkstream(L, 1, IN_T);
  lua_KContext ctx;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n > 0, 2, "byte count must be positive");
    ctx = (lua_KContext)(n > INTPTR_MAX / 2 ? INTPTR_MAX / 2 : n);
  }
  else {
    const char *fmt = luaL_optstring(L, 2, "a");
    if (*fmt == '*')
      fmt++;
    luaL_argcheck(L, *fmt == 'a', 2, "expected a byte count or \"a\"");
    ctx = READ_ALL;
  }
  lua_settop(L, 1);
  return read_k(L, LUA_OK, ctx);
}


/* Iterator of chunks(): upvalue 1 is the stream. */
static int chunk_k (lua_State *L, int status, lua_KContext ctx) {
  int n = read_k(L, status, ctx);
  if (n == 3)
    return luaL_error(L, "body:chunks(): %s", lua_tostring(L, -2));
  return n;
}


static int chunk_next (lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return chunk_k(L, LUA_OK, (lua_KContext)CHUNK);
}


/* for chunk in body:chunks() do ... end */
static int in_chunks (lua_State *L) {
  checkstream(L, 1, IN_T);
  lua_settop(L, 1);
  lua_pushcclosure(L, chunk_next, 1);
  return 1;
}
/* }====== */


/* {====== output */

static int drained_k (lua_State *L, int status, lua_KContext ctx) {
  owl_req_t *r = checkout(L);
  (void)status;
  (void)ctx;
  if (r->conn == NULL)
    return failure(L, UV_EPIPE, "client closed the connection");
  if (owl_conn_pending(r->conn) > OWL_OUT_LOW && owl_task_of(L) == &r->task)
    return wait(L, r, OWL_WAIT_DRAIN, 0, drained_k);
  lua_settop(L, 1);
  return 1;
}


/* Waits for the output to drain when too much is pending. */
static int backpressure (lua_State *L, owl_req_t *r) {
  owl_conn_t *c = r->conn;
  if (owl_conn_pending(c) >= OWL_OUT_HIGH) {
    owl_conn_flush(c);
    if (r->conn == NULL)
      return failure(L, UV_EPIPE, "client closed the connection");
    if (owl_conn_pending(c) >= OWL_OUT_HIGH && owl_task_of(L) == &r->task &&
        owl_task_can_wait(L))
      return wait(L, r, OWL_WAIT_DRAIN, 0, drained_k);
  }
  lua_settop(L, 1);
  return 1;
}


/* body:write(...) -> body, or nil, err, code */
static int out_write (lua_State *L) {
  owl_req_t *r = checkout(L);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *s = luaL_checklstring(L, i, &len);
    int err = owl_req_body_write(L, r, s, len);
    if (err)
      return failure(L, err, "client closed the connection");
  }
  if (n == 1) {
    int err = owl_req_body_write(L, r, "", 0);
    if (err)
      return failure(L, err, "client closed the connection");
  }
  if (r->conn == NULL)
    return failure(L, UV_EPIPE, "client closed the connection");
  return backpressure(L, r);
}


/* body:flush() -> body: sends what is buffered now. */
static int out_flush (lua_State *L) {
  owl_req_t *r = checkout(L);
  owl_req_commit(L, r);
  if (r->conn == NULL)
    return failure(L, UV_EPIPE, "client closed the connection");
  if (!OWL_SENT(r))
    owl_req_serialize(L, r, 0);
  owl_conn_flush(r->conn);
  if (r->conn == NULL)
    return failure(L, UV_EPIPE, "client closed the connection");
  return backpressure(L, r);
}
/* }====== */


/*
** body:close(), and __close for `local body <close> = ...`: the app reads no
** more; what is buffered is dropped and the rest of the body is read and
** dropped as it comes (so the connection can serve the next request).
** Later reads return nil.
*/
static int in_close (lua_State *L) {
  owl_req_t *r = checkstream(L, 1, IN_T);
  r->discard = 1;
  owl_buf_free(&r->body);
  if (r->conn != NULL)
    owl_h1_resume_reading(r->conn);
  return 0;
}


/*
** __close of the output stream: what is buffered goes to the socket now
** (nothing is committed that the app had not committed: a response whose
** headers are not out yet is left to the end of the app).
*/
static int out_close (lua_State *L) {
  owl_req_t *r = checkout(L);
  if (r->conn != NULL && OWL_SENT(r))
    owl_conn_flush(r->conn);
  return 0;
}


static int in_tostring (lua_State *L) {
  owl_stream_t *s = lua_touserdata(L, 1);
  char id[64];
  owl_req_idstr(s->r->id, id, sizeof id);
  lua_pushfstring(L, IN_T " (request %s)", id);
  return 1;
}


static int out_tostring (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, 1);
  char id[64];
  owl_req_idstr(r->id, id, sizeof id);
  lua_pushfstring(L, OUT_T " (request %s)", id);
  return 1;
}


void owl_open_stream (lua_State *L) {
  static const luaL_Reg in_m[] = {
    {"read", in_read},
    {"chunks", in_chunks},
    {"close", in_close},
    {NULL, NULL}
  };
  static const luaL_Reg out_m[] = {
    {"write", out_write},
    {"flush", out_flush},
    {NULL, NULL}
  };
  owl_newclass(L, IN_T, in_m, in_tostring, NULL);
  luaL_getmetatable(L, IN_T);
  lua_pushcfunction(L, in_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newmetatable(L, OUT_T);
  out_mt = lua_topointer(L, -1);
  lua_createtable(L, 0, 2);
  luaL_setfuncs(L, out_m, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, out_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, out_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}
