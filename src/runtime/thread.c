/*
** Threads, timers and the app script's start-up: coroutines that are not a
** request's, run by the loop like one (owin.spawn, owin.wait,
** owin.timer.at/every, core.startup).
**
** A thread is a full userdata (OWL_THREAD_T) with a task inside; a registry
** ref keeps it alive while it runs.  It belongs to a scope: the request
** that spawned it (directly or through other threads), or its own when it
** was detached, ran from a timer, or outlived its request.  Its results go
** to uservalue 1 when it ends; uservalue 2 lists who waits for it (pairs of
** a task's coroutine and the wait_seq of that wait, so that a stale entry
** wakes nobody).
**
** A timer is malloc'd (its uv handle must outlive any Lua object), linked
** in owl_srv.timers while pending; its Lua handle (OWL_TIMER_T) points to
** it weakly.  Each run is a detached thread.
*/

#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#define OWL_THREAD_T "owin.Thread"
#define OWL_TIMER_T "owin.Timer"

enum { UV_RESULTS = 1, UV_WAITERS = 2, NUV = 2 };

typedef struct owl_thread owl_thread_t;

struct owl_thread {
  owl_task_t task;
  owl_scope_t own;              /* when detached, or its request ended */
  owl_thread_t *sprev, *snext;  /* in task.scope->threads */
  owl_thread_t *gprev, *gnext;  /* every live thread */
  int ref;                      /* registry ref while it runs */
  unsigned done : 1;
  unsigned startup : 1;         /* the app script: its error is returned */
};

static owl_thread_t *all_threads;

void (*owl_scope_close_socks) (owl_scope_t *sc);


/* {====== scopes */

static void scope_link (owl_thread_t *th, owl_scope_t *sc) {
  th->task.scope = sc;
  th->sprev = NULL;
  th->snext = sc->threads;
  if (sc->threads)
    sc->threads->sprev = th;
  sc->threads = th;
}


static void scope_unlink (owl_thread_t *th) {
  owl_scope_t *sc = th->task.scope;
  if (sc == NULL)
    return;
  if (th->sprev)
    th->sprev->snext = th->snext;
  else
    sc->threads = th->snext;
  if (th->snext)
    th->snext->sprev = th->sprev;
  th->sprev = th->snext = NULL;
}


void owl_scope_cancel (owl_scope_t *sc) {
  sc->cancelled = 1;
  if (owl_scope_close_socks)
    owl_scope_close_socks(sc);              /* their waiters see "cancelled" */
  for (owl_thread_t *th = sc->threads, *next; th != NULL; th = next) {
    next = th->snext;
    owl_task_interrupt(&th->task);          /* may end it (and unlink it) */
  }
  if (sc->task != NULL)
    owl_task_interrupt(sc->task);           /* last: it may end the scope's owner */
}


void owl_scope_end (owl_scope_t *sc) {
  sc->task = NULL;
  if (owl_scope_close_socks)
    owl_scope_close_socks(sc);
  while (sc->threads != NULL) {
    owl_thread_t *th = sc->threads;
    scope_unlink(th);
    th->own.cancelled = 1;                  /* it lives on, cancelled */
    scope_link(th, &th->own);
    owl_task_interrupt(&th->task);
  }
}
/* }====== */


/* {====== threads */

static owl_thread_t *checkthread (lua_State *L, int i) {
  return luaL_checkudata(L, i, OWL_THREAD_T);
}


/* Pushes what thread:wait() returns: true, results... or false, err. */
static int push_results (lua_State *L, int ti) {
  lua_getiuservalue(L, ti, UV_RESULTS);
  int ri = lua_gettop(L);
  lua_getfield(L, ri, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many results");
  lua_getfield(L, ri, "ok");
  for (int i = 1; i <= n; i++)
    lua_rawgeti(L, ri, i);
  lua_remove(L, ri);
  return n + 1;
}


/* Wakes every task waiting for th (it ended). */
static void wake_waiters (lua_State *L, owl_thread_t *th) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, th->ref);
  lua_getiuservalue(L, -1, UV_WAITERS);
  lua_pushnil(L);
  lua_setiuservalue(L, -3, UV_WAITERS);
  lua_remove(L, -2);
  int wi = lua_gettop(L);
  if (!lua_istable(L, wi)) {
    lua_pop(L, 1);
    return;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, wi);
  for (lua_Integer i = 1; i + 1 <= n; i += 2) {
    lua_rawgeti(L, wi, i);
    lua_State *co = lua_tothread(L, -1);
    lua_rawgeti(L, wi, i + 1);
    uint64_t seq = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 2);
    owl_task_t *t = co ? owl_task_of(co) : NULL;
    if (t != NULL && t->co == co && t->wait == OWL_WAIT_THREAD && t->wait_seq == seq)
      owl_task_resume(t, 0);
  }
  lua_pop(L, 1);
}


/* th's coroutine ended (status) or was killed: results, waiters, refs. */
static void thread_end (owl_thread_t *th, int status) {
  owl_server_t *s = &owl_srv;
  lua_State *L = s->L;
  lua_State *co = th->task.co;
  lua_rawgeti(L, LUA_REGISTRYINDEX, th->ref);
  int ti = lua_gettop(L);
  if (status == LUA_OK) {
    int n = lua_gettop(co);
    lua_createtable(L, n, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ok");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    for (int i = n; i >= 1; i--) {
      lua_xmove(co, L, 1);                  /* the last result first */
      lua_rawseti(L, -2, i);
    }
  }
  else {
    lua_createtable(L, 1, 3);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "n");
    if (th->task.killed)
      lua_pushliteral(L, "killed");
    else {
      const char *msg = lua_tostring(co, -1);
      if (msg == NULL)
        msg = "(error object is not a string)";
      luaL_traceback(L, co, msg, 0);
      if (!th->startup) {                   /* the start-up's goes to its caller */
        char id[64];
        if (th->task.rid)
          owl_req_idstr(th->task.rid, id, sizeof id);
        owl_log(OWL_LOG_ERROR, th->task.rid ? id : NULL, "thread error: %s",
                lua_tostring(L, -1));
      }
      lua_setfield(L, -2, "traceback");
      lua_pushstring(L, msg);
    }
    lua_rawseti(L, -2, 1);
  }
  lua_setiuservalue(L, ti, UV_RESULTS);
  lua_pop(L, 1);
  th->done = 1;
  scope_unlink(th);
  if (th->gprev)
    th->gprev->gnext = th->gnext;
  else
    all_threads = th->gnext;
  if (th->gnext)
    th->gnext->gprev = th->gprev;
  *(owl_task_t **)lua_getextraspace(co) = NULL;
  if (status != LUA_OK)
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, L);
#else
    lua_resetthread(co);
#endif
  lua_settop(co, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, th->task.co_ref);
  th->task.co_ref = LUA_NOREF;
  th->task.co = NULL;
  owl_scope_end(&th->own);                  /* what a detached thread owned */
  wake_waiters(L, th);
  luaL_unref(L, LUA_REGISTRYINDEX, th->ref);
  th->ref = LUA_NOREF;
  s->nthreads--;
  if (s->stopping && s->conns.on_gone)
    s->conns.on_gone(&s->conns);            /* the stop may be waiting for it */
}


static void thread_after (owl_task_t *t, int status) {
  owl_thread_t *th = (owl_thread_t *)t;
  if (status == LUA_YIELD) {
    if (t->wait != OWL_WAIT_NONE)
      return;
    lua_settop(t->co, 0);
    lua_pushliteral(t->co, "a thread yielded outside owinlua's API "
                    "(coroutine.yield outside a coroutine of its own?)");
    status = LUA_ERRRUN;
  }
  thread_end(th, status);
}


/*
** Makes a thread of the function and nargs arguments on top of L (popped)
** in scope sc (NULL: its own), and pushes its userdata.  It runs when the
** caller resumes it.
*/
static owl_thread_t *thread_new (lua_State *L, owl_scope_t *sc, uint64_t rid, int nargs) {
  owl_server_t *s = &owl_srv;
  owl_thread_t *th = lua_newuserdatauv(L, sizeof *th, NUV);
  memset(th, 0, sizeof *th);
  th->ref = LUA_NOREF;
  th->task.co_ref = LUA_NOREF;
  luaL_setmetatable(L, OWL_THREAD_T);
  lua_insert(L, -(nargs + 2));              /* below the function */
  lua_State *co = lua_newthread(L);
  th->task.co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  th->task.co = co;
  th->task.after = thread_after;
  th->task.rid = rid;
  th->own.task = &th->task;
  lua_xmove(L, co, nargs + 1);
  *(owl_task_t **)lua_getextraspace(co) = &th->task;
  lua_pushvalue(L, -1);
  th->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  scope_link(th, sc ? sc : &th->own);
  th->gnext = all_threads;
  if (all_threads)
    all_threads->gprev = th;
  all_threads = th;
  s->nthreads++;
  return th;
}


/* Runs th until its first wait (or its end); from: the state calling. */
static void thread_run (owl_thread_t *th, lua_State *from) {
  int nres = 0;
  lua_State *co = th->task.co;
  int status = lua_resume(co, from, lua_gettop(co) - 1, &nres);
  if (status == LUA_YIELD)
    lua_pop(co, nres);
  th->task.after(&th->task, status);
}


/*
** owin.spawn([opts,] fn, ...) -> thread: fn(...) runs now in a new
** coroutine, until its first wait.  opts.detached: it does not belong to
** the request (or thread) spawning it.
*/
static int l_spawn (lua_State *L) {
  int fi = 1, detached = 0;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "detached");
    detached = lua_toboolean(L, -1);
    lua_pop(L, 1);
    fi = 2;
  }
  luaL_checktype(L, fi, LUA_TFUNCTION);
  owl_task_t *parent = owl_task_of(L);
  owl_scope_t *sc = parent && !detached ? parent->scope : NULL;
  uint64_t rid = parent && !detached ? parent->rid : 0;
  if (sc != NULL && sc->cancelled)
    return owl_push_cancelled(L);
  int nargs = lua_gettop(L) - fi;
  owl_thread_t *th = thread_new(L, sc, rid, nargs);   /* [.., thread] */
  thread_run(th, L);
  return 1;
}


/* Registers the running task as a waiter of the thread at ti, for the
** wait that is about to begin. */
static void add_waiter (lua_State *L, int ti, owl_task_t *t) {
  if (lua_getiuservalue(L, ti, UV_WAITERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ti, UV_WAITERS);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (n >= 64) {                            /* drop entries of waits that ended */
    lua_Integer k = 0;
    for (lua_Integer i = 1; i + 1 <= n; i += 2) {
      lua_rawgeti(L, -1, i);
      lua_State *co = lua_tothread(L, -1);
      lua_rawgeti(L, -2, i + 1);
      uint64_t seq = (uint64_t)lua_tointeger(L, -1);
      lua_pop(L, 2);
      owl_task_t *w = co ? owl_task_of(co) : NULL;
      if (w && w->co == co && w->wait == OWL_WAIT_THREAD && w->wait_seq == seq) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, ++k);
        lua_rawgeti(L, -1, i + 1);
        lua_rawseti(L, -2, ++k);
      }
    }
    for (lua_Integer i = k + 1; i <= n; i++) {
      lua_pushnil(L);
      lua_rawseti(L, -2, i);
    }
    n = k;
  }
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_rawseti(L, -2, n + 1);
  lua_pushinteger(L, (lua_Integer)owl_task_next_seq());
  lua_rawseti(L, -2, n + 2);
  lua_pop(L, 1);
}


/* A wait for threads is forgotten by its wait_seq: nothing to undo. */
static void thread_unwait (owl_task_t *t) {
  (void)t;
}


static int th_wait_k (lua_State *L, int status, lua_KContext ctx) {
  owl_thread_t *th = checkthread(L, 1);
  (void)status;
  if (th->done)
    return push_results(L, 1);
  owl_task_t *t = owl_task_check(L, "thread:wait");
  if (&th->task == t)
    return luaL_error(L, "a thread cannot wait for itself");
  if (owl_task_cancelled(t)) {
    if (ctx == 0)                           /* once through the loop first */
      return owl_task_pause(L, t, 1, th_wait_k);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "cancelled");
    return 2;
  }
  add_waiter(L, 1, t);
  return owl_task_wait(L, t, OWL_WAIT_THREAD, thread_unwait, NULL, 1, th_wait_k);
}


/* thread:wait() -> true, results... or false, err */
static int th_wait (lua_State *L) {
  checkthread(L, 1);
  lua_settop(L, 1);
  return th_wait_k(L, LUA_OK, 0);
}


static int l_wait_k (lua_State *L, int status, lua_KContext ctx) {
  int n = lua_gettop(L);
  (void)status;
  for (int i = 1; i <= n; i++)
    if (checkthread(L, i)->done) {
      lua_pushvalue(L, i);
      return 1 + push_results(L, i);
    }
  owl_task_t *t = owl_task_check(L, "owin.wait");
  if (owl_task_cancelled(t)) {
    if (ctx == 0)                           /* once through the loop first */
      return owl_task_pause(L, t, 1, l_wait_k);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "cancelled");
    return 3;
  }
  for (int i = 1; i <= n; i++) {
    if (&checkthread(L, i)->task == t)
      return luaL_error(L, "a thread cannot wait for itself");
    add_waiter(L, i, t);
  }
  return owl_task_wait(L, t, OWL_WAIT_THREAD, thread_unwait, NULL, 1, l_wait_k);
}


/* owin.wait(t1, t2, ...) -> the first to end: thread, true, results... or
** thread, false, err */
static int l_wait (lua_State *L) {
  int n = lua_gettop(L);
  luaL_argcheck(L, n > 0, 1, "a thread expected");
  for (int i = 1; i <= n; i++)
    checkthread(L, i);
  return l_wait_k(L, LUA_OK, 0);
}


/* thread:kill() -> true, or nil, err: a waiting thread ends now. */
static int th_kill (lua_State *L) {
  owl_thread_t *th = checkthread(L, 1);
  if (th->done) {
    lua_pushnil(L);
    lua_pushliteral(L, "dead");
    return 2;
  }
  if (th->task.wait == OWL_WAIT_NONE || th->startup) {
    lua_pushnil(L);
    lua_pushliteral(L, "running");          /* it is this one, or below it */
    return 2;
  }
  if (th->task.unwait)
    th->task.unwait(&th->task);
  th->task.wait = OWL_WAIT_NONE;
  th->task.killed = 1;
  thread_end(th, LUA_ERRRUN);
  lua_pushboolean(L, 1);
  return 1;
}


/* thread:status() -> "running" | "waiting" | "dead" */
static int th_status (lua_State *L) {
  owl_thread_t *th = checkthread(L, 1);
  lua_pushstring(L, th->done ? "dead" : th->task.wait != OWL_WAIT_NONE ? "waiting"
                 : "running");
  return 1;
}


static int th_tostring (lua_State *L) {
  owl_thread_t *th = checkthread(L, 1);
  lua_pushfstring(L, "owin.Thread (%s): %p", th->done ? "dead" : "alive", (void *)th);
  return 1;
}


/*
** core.startup(fn, ...) -> true, results... or false, message, traceback:
** runs fn as a coroutine on the loop (the app script's top level, which may
** use cosockets) and runs the loop until it ends.
*/
static int l_startup (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  owl_thread_t *th = thread_new(L, NULL, 0, nargs);
  th->startup = 1;
  scope_unlink(th);                         /* the process's: what it opens is shared */
  th->task.scope = NULL;
  int ti = lua_gettop(L);
  thread_run(th, L);
  while (!th->done)
    if (uv_run(owl_srv.loop, UV_RUN_ONCE) == 0 && !th->done) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "the app script waits for something that cannot happen");
      return 2;
    }
  int n = push_results(L, ti);
  if (!lua_toboolean(L, ti + 1)) {
    lua_getiuservalue(L, ti, UV_RESULTS);
    lua_getfield(L, -1, "traceback");
    lua_remove(L, -2);
    return 3;
  }
  return n;
}
/* }====== */


/* {====== timers */

typedef struct owl_timer {
  uv_timer_t h;
  struct owl_timer *prev, *next;    /* owl_srv.timers */
  struct owl_timer **handle;        /* the Lua handle's pointer to it, or NULL */
  int fn_ref;                       /* registry: { fn, n = #args, args... } */
  uint64_t every;                   /* milliseconds; 0: once */
} owl_timer_t;


static void timer_free (uv_handle_t *h) {
  free(h);                                  /* h is the first member */
}


/* Unlinks tm and closes it (freed in the close callback). */
static void timer_drop (owl_timer_t *tm) {
  owl_server_t *s = &owl_srv;
  if (tm->prev)
    tm->prev->next = tm->next;
  else
    s->timers = tm->next;
  if (tm->next)
    tm->next->prev = tm->prev;
  s->ntimers--;
  if (tm->handle)
    *tm->handle = NULL;
  luaL_unref(s->L, LUA_REGISTRYINDEX, tm->fn_ref);
  uv_close((uv_handle_t *)&tm->h, timer_free);
}


/* One run of a timer whose table { fn, n = #args, args... } is on top of
** L (popped): a detached thread calling fn(premature, args...). */
static void timer_run (lua_State *L, int premature) {
  int fi = lua_gettop(L);
  lua_getfield(L, fi, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 4, "too many timer arguments");
  lua_rawgeti(L, fi, 1);
  lua_pushboolean(L, premature);
  for (int i = 1; i <= n; i++)
    lua_rawgeti(L, fi, i + 1);
  owl_thread_t *th = thread_new(L, NULL, 0, n + 1);
  lua_pop(L, 2);                            /* the userdata (ref'd) and the table */
  thread_run(th, L);
}


static void on_timer (uv_timer_t *h) {
  owl_timer_t *tm = (owl_timer_t *)h;
  lua_State *L = owl_srv.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tm->fn_ref);
  if (tm->every == 0)
    timer_drop(tm);                         /* it ran: no longer pending */
  timer_run(L, 0);
}


static int timer_new (lua_State *L, int every) {
  owl_server_t *s = &owl_srv;
  lua_Number d = luaL_checknumber(L, 1);
  if (every)
    luaL_argcheck(L, d > 0 && d < 1e9, 1, "must be a number of seconds above 0");
  else
    luaL_argcheck(L, d >= 0 && d < 1e9, 1, "must be a number of seconds from 0");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (s->stopping) {
    lua_pushnil(L);
    lua_pushliteral(L, "the server is stopping");
    return 2;
  }
  if (s->ntimers >= s->opt.max_pending_timers) {
    lua_pushnil(L);
    lua_pushliteral(L, "too many pending timers");
    return 2;
  }
  int n = lua_gettop(L) - 2;
  lua_createtable(L, n + 1, 1);
  for (int i = 2; i <= n + 2; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  owl_timer_t *tm = malloc(sizeof *tm);
  if (tm == NULL)
    return luaL_error(L, "not enough memory");
  owl_timer_t **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = tm;
  luaL_setmetatable(L, OWL_TIMER_T);
  lua_insert(L, -2);
  tm->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  tm->handle = ud;
  tm->every = every ? (uint64_t)(d * 1000 + 0.5) : 0;
  if (every && tm->every == 0)
    tm->every = 1;
  uv_timer_init(s->loop, &tm->h);
  tm->prev = NULL;
  tm->next = s->timers;
  if (s->timers)
    s->timers->prev = tm;
  s->timers = tm;
  s->ntimers++;
  uv_timer_start(&tm->h, on_timer, every ? tm->every : (uint64_t)(d * 1000 + 0.5), tm->every);
  return 1;
}


/* owin.timer.at(delay, fn, ...) -> handle, or nil, err */
static int l_timer_at (lua_State *L) {
  return timer_new(L, 0);
}


/* owin.timer.every(interval, fn, ...) -> handle, or nil, err */
static int l_timer_every (lua_State *L) {
  return timer_new(L, 1);
}


/* handle:cancel() -> true if it was pending, else false */
static int tm_cancel (lua_State *L) {
  owl_timer_t **ud = luaL_checkudata(L, 1, OWL_TIMER_T);
  if (*ud == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  timer_drop(*ud);
  lua_pushboolean(L, 1);
  return 1;
}


/* handle:pending() -> whether it will still run */
static int tm_pending (lua_State *L) {
  owl_timer_t **ud = luaL_checkudata(L, 1, OWL_TIMER_T);
  lua_pushboolean(L, *ud != NULL);
  return 1;
}


static int tm_gc (lua_State *L) {
  owl_timer_t **ud = luaL_checkudata(L, 1, OWL_TIMER_T);
  if (*ud)
    (*ud)->handle = NULL;                   /* it runs on without its handle */
  return 0;
}


/*
** A graceful stop began.  Threads of no request (detached ones, timer
** runs: loops that would otherwise run until the graceful timeout) are
** cancelled; then every pending timer runs once more, premature, in a
** thread that is not.  Threads of requests end with their requests.
*/
void owl_threads_stopping (void) {
  owl_server_t *s = &owl_srv;
  for (owl_thread_t *th = all_threads, *next; th != NULL; th = next) {
    next = th->gnext;
    if (th->task.scope == &th->own && !th->startup) {
      th->own.cancelled = 1;
      owl_task_interrupt(&th->task);
    }
  }
  while (s->timers != NULL) {
    owl_timer_t *tm = s->timers;
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, tm->fn_ref);
    timer_drop(tm);
    timer_run(s->L, 1);
  }
}


void owl_threads_cut (void) {
  owl_srv.threads_cut = 1;
  for (owl_thread_t *th = all_threads, *next; th != NULL; th = next) {
    next = th->gnext;
    th->own.cancelled = 1;
    if (th->task.scope)
      th->task.scope->cancelled = 1;
    owl_task_interrupt(&th->task);
  }
}


void owl_threads_teardown (void) {
  while (owl_srv.timers != NULL)
    timer_drop(owl_srv.timers);
}
/* }====== */


void owl_open_thread (lua_State *L) {
  static const luaL_Reg th_m[] = {
    {"wait", th_wait},
    {"kill", th_kill},
    {"status", th_status},
    {NULL, NULL}
  };
  static const luaL_Reg tm_m[] = {
    {"cancel", tm_cancel},
    {"pending", tm_pending},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"spawn", l_spawn},
    {"wait", l_wait},
    {"startup", l_startup},
    {NULL, NULL}
  };
  static const luaL_Reg timer_f[] = {
    {"at", l_timer_at},
    {"every", l_timer_every},
    {NULL, NULL}
  };
  owl_newclass(L, OWL_THREAD_T, th_m, th_tostring, NULL);
  owl_newclass(L, OWL_TIMER_T, tm_m, NULL, tm_gc);
  luaL_setfuncs(L, funcs, 0);
  luaL_newlib(L, timer_f);
  lua_setfield(L, -2, "timer");
}
