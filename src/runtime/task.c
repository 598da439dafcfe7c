/*
** Tasks: the coroutines the loop resumes (a request, a thread, a timer's
** run, the app script at start-up), their waits, and the coroutine
** functions the server gives apps.
**
** A task's coroutine carries a pointer to its task in the thread's extra
** space (lua_getextraspace), so a C function that must wait can find what
** to resume from the lua_State it runs in.
**
** Waiting inside an app's own coroutine.  Libraries use coroutines of their
** own (an iterator over pub/sub messages, a parser): a wait in one of them
** must reach the loop and come back to the same coroutine, not surface as
** that coroutine's own yield.  Every wait therefore yields one private
** value, &owl_wait_tag.  The server's coroutine.resume (and wrap) sees it
** come out of the coroutine it resumed and yields it on, up the chain, to
** the task's coroutine, which the loop resumed; when the wait ends the loop
** resumes the task, and each resume on the way down resumes the coroutine
** it resumed before, so the value reaches the wait's continuation.  While
** it waits such a coroutine is "normal" to coroutine.status, as it would be
** were the I/O a plain function call.
*/

#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"


static const char wait_tag = 0;      /* the value every wait yields */
static const char waiting_key = 0;   /* registry: weak set of coroutines
                                        suspended in a wait of ours */
static uint64_t wait_seq;


/* {====== the chain of resumes */

/*
** The resumes in progress, innermost last: who resumed which coroutine.
** Only the one running chain is recorded; a wait looks it up to know that
** every coroutine up to its task can yield.
*/
#define CHAIN_MAX 200                   /* Lua's own C-stack limit is 200 */

static struct { lua_State *co, *from; } chain[CHAIN_MAX];
static int nchain;


owl_task_t *owl_task_of (lua_State *L) {
  return *(owl_task_t **)lua_getextraspace(L);
}


int owl_task_can_wait (lua_State *L) {
  owl_task_t *t = owl_task_of(L);
  if (t == NULL || t->co == NULL)
    return 0;
  int i = nchain - 1;
  while (L != t->co) {
    if (!lua_isyieldable(L))
      return 0;
    while (i >= 0 && chain[i].co != L)
      i--;
    if (i < 0)
      return 0;                             /* resumed by someone else's C code */
    L = chain[i].from;
  }
  return lua_isyieldable(L);
}


/* Pushes "file:line:" of the app's code that called: the first Lua frame
** outside owinlua's own modules (connect is written in Lua). */
static void where (lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0 && strstr(ar.short_src, "owin/") == NULL) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
  luaL_where(L, 1);
}


owl_task_t *owl_task_check (lua_State *L, const char *fn) {
  owl_task_t *t = owl_task_of(L);
  if (owl_task_can_wait(L))
    return t;
  where(L);
  if (t == NULL)
    lua_pushfstring(L, "%s: cannot wait here: not in a coroutine the server runs (a "
                    "request, a thread, a timer or the app script)", fn);
  else
    lua_pushfstring(L, "%s: cannot wait here: a C function that cannot yield is in the "
                    "way (require, a table.sort comparator, a gsub callback, a metamethod "
                    "called from C, ...)", fn);
  lua_concat(L, 2);
  lua_error(L);
  return NULL;
}
/* }====== */


/* {====== resuming and waiting */

void owl_task_resume (owl_task_t *t, int nargs) {
  int nres = 0;
  lua_State *co = t->co;
  t->wait = OWL_WAIT_NONE;
  t->unwait = NULL;
  t->wait_on = NULL;
  int status = lua_resume(co, owl_srv.L, nargs, &nres);
  if (status == LUA_YIELD)
    lua_pop(co, nres);
  t->after(t, status);
}


int owl_task_wait (lua_State *L, owl_task_t *t, int kind, void (*unwait) (owl_task_t *),
                   void *on, lua_KContext ctx, lua_KFunction k) {
  t->wait = kind;
  t->unwait = unwait;
  t->wait_on = on;
  t->wait_seq = ++wait_seq;
  lua_pushlightuserdata(L, (void *)&wait_tag);
  return lua_yieldk(L, 1, ctx, k);
}


uint64_t owl_task_next_seq (void) {
  return wait_seq + 1;
}


void owl_task_interrupt (owl_task_t *t) {
  if (t->wait == OWL_WAIT_NONE || t->unwait == NULL)
    return;                                 /* it sees the cancel at its next wait */
  t->unwait(t);
  owl_task_resume(t, 0);
}


int owl_push_cancelled (lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "cancelled");
  return 2;
}


int owl_push_error (lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}
/* }====== */


/* {====== the coroutine functions apps get */

static void set_waiting (lua_State *L, lua_State *co, int on) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &waiting_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (on)
    lua_pushboolean(L, 1);
  else
    lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}


static int is_waiting (lua_State *L, lua_State *co) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &waiting_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  int on = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return on;
}


enum { RESUMED_ERROR = -1, RESUMED_WAITING = -2 };

/*
** Resumes co with the narg values on top of L.  Returns how many results
** it moved to L, RESUMED_ERROR (the message on L), or RESUMED_WAITING (co
** is suspended in a wait of ours: the caller passes the wait on).
*/
static int auxresume (lua_State *L, lua_State *co, int narg) {
  int nres;
  /* a coroutine in a wait of ours is suspended (LUA_YIELD) */
  if (co == L || (lua_status(co) == LUA_YIELD && is_waiting(L, co))) {
    lua_pushliteral(L, "cannot resume non-suspended coroutine");
    return RESUMED_ERROR;
  }
  if (lua_status(co) == LUA_OK) {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar)) {         /* it has a frame: running or normal */
      lua_pushliteral(L, "cannot resume non-suspended coroutine");
      return RESUMED_ERROR;
    }
    if (lua_gettop(co) == 0) {
      lua_pushliteral(L, "cannot resume dead coroutine");
      return RESUMED_ERROR;
    }
  }
  else if (lua_status(co) != LUA_YIELD) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    return RESUMED_ERROR;
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return RESUMED_ERROR;
  }
  if (nchain == CHAIN_MAX) {
    lua_pushliteral(L, "C stack overflow");
    return RESUMED_ERROR;
  }
  lua_xmove(L, co, narg);
  *(owl_task_t **)lua_getextraspace(co) = owl_task_of(L);
  chain[nchain].co = co;
  chain[nchain++].from = L;
  int status = lua_resume(co, L, narg, &nres);
  nchain--;
  if (status == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == &wait_tag) {
    lua_pop(co, 1);
    set_waiting(L, co, 1);
    return RESUMED_WAITING;
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return RESUMED_ERROR;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);                      /* the error */
  return RESUMED_ERROR;
}


static int resume_k (lua_State *L, int status, lua_KContext ctx);

/* coroutine.resume's answer for r = auxresume(...), co at index 1. */
static int resume_answer (lua_State *L, int r) {
  if (r == RESUMED_WAITING) {
    lua_pushlightuserdata(L, (void *)&wait_tag);
    return lua_yieldk(L, 1, 0, resume_k);
  }
  if (r == RESUMED_ERROR) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}


/* The wait inside co (index 1) ended: resume it again. */
static int resume_k (lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = lua_tothread(L, 1);
  (void)status; (void)ctx;
  set_waiting(L, co, 0);
  return resume_answer(L, auxresume(L, co, lua_gettop(L) - 1));
}


static int co_resume (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return resume_answer(L, auxresume(L, co, lua_gettop(L) - 1));
}


static int wrap_k (lua_State *L, int status, lua_KContext ctx);

static int wrap_answer (lua_State *L, lua_State *co, int r) {
  if (r == RESUMED_WAITING) {
    lua_pushlightuserdata(L, (void *)&wait_tag);
    return lua_yieldk(L, 1, 0, wrap_k);
  }
  if (r == RESUMED_ERROR) {
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) {  /* an error in the body: close it */
#if LUA_VERSION_RELEASE_NUM >= 50406
      st = lua_closethread(co, L);
#else
      st = lua_resetthread(co);
#endif
      lua_xmove(co, L, 1);
    }
    if (lua_type(L, -1) == LUA_TSTRING) {   /* add where the wrap was called */
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}


static int wrap_k (lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  (void)status; (void)ctx;
  set_waiting(L, co, 0);
  return wrap_answer(L, co, auxresume(L, co, lua_gettop(L)));
}


static int auxwrap (lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  return wrap_answer(L, co, auxresume(L, co, lua_gettop(L)));
}


static int co_wrap (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, auxwrap, 1);
  return 1;
}


/* The standard function `name` of the coroutine library, upvalue 1. */
static int co_status (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  if (co != L && lua_status(co) == LUA_YIELD && is_waiting(L, co)) {
    lua_pushliteral(L, "normal");
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}


static int co_close (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  if (co != L && lua_status(co) == LUA_YIELD && is_waiting(L, co))
    return luaL_error(L, "cannot close a normal coroutine");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}


/*
** Replaces coroutine.resume, wrap, status and close with the functions
** above; create, yield, running and isyieldable stay the standard ones
** (a coroutine is bound to a task when it is resumed, not created).
*/
void owl_open_task (lua_State *L) {
  lua_newtable(L);                          /* weak set of waiting coroutines */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &waiting_key);
  if (lua_getglobal(L, "coroutine") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, co_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, co_wrap);
  lua_setfield(L, -2, "wrap");
  lua_getfield(L, -1, "status");
  lua_pushcclosure(L, co_status, 1);
  lua_setfield(L, -2, "status");
  lua_getfield(L, -1, "close");
  lua_pushcclosure(L, co_close, 1);
  lua_setfield(L, -2, "close");
  lua_pop(L, 1);
}
/* }====== */
