/*
** The request cycle: a request's life from the head the handler parsed to
** the end of its app: anchoring, the coroutine and its pool, waking the
** app, cancellation, detaching from a connection that went away.  The env
** is built in env.c, the response framed in response.c.
**
** A request is a userdata (OWL_REQ_T, "owinlua.OutputStream": it is also
** the env's owin.ResponseBody) with the user values listed
** in request.h.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "request/request.h"
#include "request/keys.h"
#include "codec/token.h"


const char owl_req_key = 0;         /* env[&owl_req_key] = request userdata */
int owl_req_mt = LUA_NOREF;         /* registry[owl_req_mt]: its metatable */
lua_CFunction owl_req_keepheaders;  /* set by env.c */


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


/*
** Anchors the request userdata on top of L (popped) while its coroutine
** may run, and links it in srv->reqs.
*/
void owl_req_anchor (lua_State *L, owl_req_t *r) {
  owl_server_t *s = &owl_srv;
  r->ref = anchor(L);
  r->next = s->reqs;
  if (s->reqs)
    s->reqs->prev = r;
  s->reqs = r;
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
  if (r->resp == R_UPGRADED)                /* the adapter's accept */
    return upgraded_k(L, LUA_OK, ctx);
  owl_req_finish(L, r);
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


static int tostr (lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}


/*
** Pushes on L the text of the error value on top of co (left there): a
** string or a number as it is, what __tostring makes of another value
** (called protected: an owin.error object says what it is), else a note
** of its type, as lua.c prints it.  Returns the text.
*/
static const char *error_text (lua_State *L, lua_State *co) {
  if (lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER) {
    lua_pushstring(L, lua_tostring(co, -1));
    return lua_tostring(L, -1);
  }
  lua_pushcfunction(L, tostr);
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);                      /* [tostr, value] */
  if (luaL_getmetafield(L, -1, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  else {
    const char *tname = luaL_typename(L, -1);
    lua_pop(L, 2);
    return lua_pushfstring(L, "(error object is a %s value)", tname);
  }
  return lua_pushliteral(L, "(error object is not a string)");
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


/* [callback, state] -> (): one OnRequestEnd callback, run protected. */
static int call_onend (lua_State *L) {
  lua_call(L, 1, 0);
  return 0;
}


/*
** Runs the server.OnRequestEnd callbacks of r once each, last registered
** first, in the main state: the request's coroutine is over.  A callback
** registered meanwhile runs too.  An error is logged and the others run.
*/
static void run_onend (lua_State *L, owl_req_t *r) {
  r->onend = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  int ri = lua_gettop(L);
  while (lua_getiuservalue(L, ri, UV_ONEND) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_setiuservalue(L, ri, UV_ONEND);     /* each runs once */
    lua_getfield(L, -1, "n");
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    for (lua_Integer i = n - 1; i >= 1; i -= 2) {
      lua_pushcfunction(L, call_onend);
      lua_rawgeti(L, -2, i);
      lua_rawgeti(L, -3, i + 1);
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        log_error(r, "server.OnRequestEnd callback", msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, ri - 1);                    /* the nil, and r */
}


/* Gives the coroutine back to the pool and releases the request. */
static void req_end (owl_req_t *r, int status) {
  owl_server_t *s = &owl_srv;
  lua_State *L = s->L;
  lua_State *co = r->task.co;
  owl_conn_t *c = r->conn;
  owl_req_reach(r, R_DONE);
  *(owl_task_t **)lua_getextraspace(co) = NULL;
  if (status == LUA_OK)
    lua_settop(co, 0);
  else
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, L);
#else
    lua_resetthread(co);                    /* lua_closethread from 5.4.6 */
#endif
  if (s->npool < OWL_POOL_MAX) {
    s->pool[s->npool] = co;
    s->pool_ref[s->npool++] = r->task.co_ref;
  }
  else
    luaL_unref(L, LUA_REGISTRYINDEX, r->task.co_ref);
  r->task.co = NULL;
  r->task.co_ref = LUA_NOREF;
  r->head_live = 0;                         /* the head goes to the next request */
  owl_scope_end(&r->scope);                 /* its threads and cosockets */
  if (r->onend)
    run_onend(L, r);
  release(r);
  if (c != NULL) {
    r->conn = NULL;
    int keep = owl_h1_keepalive(c) && r->body_done && !r->until_close && !r->abort &&
               !s->stopping;
    owl_h1_request_done(c, keep);
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
      if (c)
        owl_h1_continue(c);                 /* nothing while it is parsing */
      return;
    }
    lua_pushliteral(t->co, "the request's coroutine yielded outside owinlua's API "
                    "(coroutine.yield in app code?)");
    status = LUA_ERRRUN;
  }
  if (status != LUA_OK) {
    luaL_traceback(L, t->co, error_text(L, t->co), 0);
    const char *tb = lua_tostring(L, -1);
    log_error(r, "app error", tb);
    owl_upgrade_end(L, r, 1011);            /* a socket's coroutine failed */
    if (c != NULL && !OWL_SENT(r)) {
      owl_conn_drop_held(c);
      if (!r->body_done)
        owl_h1_no_keepalive(c);
      int close = !owl_h1_keepalive(c);
      if (s->opt.dev)
        owl_h1_canned(c, 500, NULL, tb, strlen(tb), close);
      else {
        static const char body[] = "500 Internal Server Error\n";
        owl_h1_canned(c, 500, NULL, body, sizeof body - 1, close);
      }
    }
    else
      r->abort = 1;
    lua_pop(L, 2);                          /* the traceback and the text */
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
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);  /* r stays alive: its app may end below */
  if (lua_getiuservalue(L, -1, UV_CANCEL) == LUA_TTABLE)
    owl_token_fire(L, -1);
  lua_pop(L, 1);
  if (!r->scope.cancelled && r->started && !OWL_ENDED(r))
    owl_scope_cancel(&r->scope);            /* cosockets, threads, its own wait */
  lua_pop(L, 1);
}


void owl_req_detach (owl_req_t *r, int err) {
  lua_State *L = owl_srv.L;
  if (r->head_live && r->ref != LUA_NOREF) {
    lua_pushcfunction(L, owl_req_keepheaders);
    lua_pushlightuserdata(L, r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      lua_pop(L, 1);                        /* out of memory: they stay empty */
    r->head_live = 0;
  }
  r->conn = NULL;
  if (!r->body_done && r->read_err == 0)
    r->read_err = err;
  if (!r->started) {                        /* no coroutine will end it */
    owl_req_reach(r, R_DONE);
    release(r);
    return;
  }
  if (OWL_ENDED(r))
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);  /* r stays alive: its app may end below */
  owl_req_cancel(r);
  if (!OWL_ENDED(r) && (r->task.wait == OWL_WAIT_READ || r->task.wait == OWL_WAIT_DRAIN))
    owl_task_resume(&r->task, 0);
  lua_pop(L, 1);
}
/* }====== */


/* The request's metatable is the output stream's (stream.c). */
void owl_open_request (lua_State *L) {
  luaL_getmetatable(L, OWL_REQ_T);
  owl_req_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  owl_h1_req.start = owl_req_start;
  owl_h1_req.wake_reader = owl_req_wake_reader;
  owl_h1_req.wake_writer = owl_req_wake_writer;
  owl_h1_req.detach = owl_req_detach;
}
