/*
** owin.semaphore(n): a counting semaphore for tasks, as OpenResty's
** ngx.semaphore.  sem:wait([timeout]) takes one unit or yields the task
** until sem:post() gives one (first come, first served); sem:post([n])
** gives units back.  What a pool of connections (owin.pg) waits on when
** every connection is busy, and what an app may use to bound any work.
**
** Ownership.  The semaphore is a Lua full userdata; a waiting task holds it
** on its stack, so it lives while anyone waits.  A waiter is malloc'd per
** wait that has to yield, its timer first, and freed when its timer closes:
** by the wait's continuation, or by the unwait of an interrupted or killed
** task (a killed one never continues), or at exit (owl_sem_dispose).
*/

#include <math.h>
#include <stdlib.h>

#include "runtime/runtime.h"

#define OWL_SEM_T "owin.Semaphore"

typedef struct waiter waiter_t;

typedef struct owl_sem {
  lua_Integer count;
  waiter_t *head, *tail;        /* waiting tasks, in order */
  lua_Integer nwait;
} owl_sem_t;

enum { W_WAITING, W_GOT, W_TIMEOUT, W_INTERRUPTED };

struct waiter {
  uv_timer_t timer;             /* first: the waiter is freed when it closes */
  owl_task_t *task;
  owl_sem_t *sem;                /* alive while the task waits: on its stack */
  waiter_t *prev, *next;
  int linked;                   /* in sem's queue */
  int outcome;
};

static const char waiter_tag = 0;   /* timer.data of a waiter's timer */


static void on_waiter_closed (uv_handle_t *h) {
  free(h);
}


int owl_sem_dispose (uv_handle_t *h) {
  if (h->data != &waiter_tag)
    return 0;
  uv_close(h, on_waiter_closed);
  return 1;
}


static void unlink_waiter (waiter_t *w) {
  owl_sem_t *s = w->sem;
  if (!w->linked)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    s->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    s->tail = w->prev;
  s->nwait--;
  w->linked = 0;
}


static void on_timeout (uv_timer_t *tm) {
  waiter_t *w = (waiter_t *)tm;
  unlink_waiter(w);
  w->outcome = W_TIMEOUT;
  owl_task_resume(w->task, 0);
}


static void on_granted (uv_timer_t *tm) {
  owl_task_resume(((waiter_t *)tm)->task, 0);
}


/* Gives the first waiters the free units; each is resumed from the loop,
** not from inside the post (the poster's task goes on first). */
static void grant (owl_sem_t *s) {
  while (s->count > 0 && s->head != NULL) {
    waiter_t *w = s->head;
    unlink_waiter(w);
    s->count--;
    w->outcome = W_GOT;
    uv_timer_start(&w->timer, on_granted, 0, 0);
  }
}


/* The waiting task was interrupted (cancelled) or killed: a unit granted
** to it and not taken yet goes to the next waiter, and the waiter goes (its
** memory until the close callback, after wait_k if that runs). */
static void waiter_unwait (owl_task_t *t) {
  waiter_t *w = t->wait_on;
  unlink_waiter(w);
  if (w->outcome == W_GOT) {
    w->sem->count++;
    grant(w->sem);
  }
  w->outcome = W_INTERRUPTED;
  uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
}


static owl_sem_t *checksem (lua_State *L) {
  return luaL_checkudata(L, 1, OWL_SEM_T);
}


/* owin.semaphore([n]) -> a semaphore holding n units (0) */
static int l_semaphore (lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, n >= 0, 1, "the count must be 0 or more");
  owl_sem_t *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->count = n;
  s->head = s->tail = NULL;
  s->nwait = 0;
  luaL_setmetatable(L, OWL_SEM_T);
  return 1;
}


static int wait_k (lua_State *L, int status, lua_KContext ctx) {
  waiter_t *w = (waiter_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  int outcome = w->outcome;
  (void)status;
  if (outcome == W_INTERRUPTED)
    return owl_push_cancelled(L);           /* waiter_unwait closed it */
  uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
  if (outcome == W_GOT) {
    if (t != NULL && owl_task_cancelled(t)) {  /* got it, but too late: give it on */
      w->sem->count++;
      grant(w->sem);
      return owl_push_cancelled(L);
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  if (outcome == W_TIMEOUT) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return owl_push_cancelled(L);
}


/* sem:wait([timeout]) -> true, or nil, "timeout" | "cancelled" */
static int sem_wait_l (lua_State *L) {
  owl_sem_t *s = checksem(L);
  double timeout = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, !isnan(timeout), 2, "timeout must be a number of seconds");
  if (s->count > 0 && s->head == NULL) {
    s->count--;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (timeout == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  owl_task_t *t = owl_task_check(L, "wait");
  if (owl_task_cancelled(t))
    return owl_push_cancelled(L);
  waiter_t *w = malloc(sizeof *w);
  if (w == NULL)
    return luaL_error(L, "not enough memory");
  uv_timer_init(owl_srv.loop, &w->timer);
  w->timer.data = (void *)&waiter_tag;
  w->task = t;
  w->sem = s;
  w->linked = 1;
  w->outcome = W_WAITING;
  w->next = NULL;
  w->prev = s->tail;
  if (s->tail)
    s->tail->next = w;
  else
    s->head = w;
  s->tail = w;
  s->nwait++;
  if (timeout > 0) {
    double ms = ceil(timeout * 1000);
    uv_timer_start(&w->timer, on_timeout, ms > 1e12 ? (uint64_t)1e12 : (uint64_t)ms, 0);
  }
  return owl_task_wait(L, t, OWL_WAIT_SLEEP, waiter_unwait, w, (lua_KContext)w, wait_k);
}


/* sem:post([n]) -> n units back (1): waiting tasks get them first */
static int sem_post_l (lua_State *L) {
  owl_sem_t *s = checksem(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, n >= 0, 2, "the count must be 0 or more");
  s->count += n;
  grant(s);
  return 0;
}


/* sem:count() -> units free now (negative: that many tasks wait) */
static int sem_count_l (lua_State *L) {
  owl_sem_t *s = checksem(L);
  lua_pushinteger(L, s->nwait > 0 ? -s->nwait : s->count);
  return 1;
}


static int sem_tostring (lua_State *L) {
  owl_sem_t *s = checksem(L);
  lua_pushfstring(L, "owin.Semaphore (%I free, %I waiting): %p", s->count, s->nwait,
                  (void *)s);
  return 1;
}


void owl_open_sem (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"wait", sem_wait_l},
    {"post", sem_post_l},
    {"count", sem_count_l},
    {NULL, NULL}
  };
  owl_newclass(L, OWL_SEM_T, methods, sem_tostring, NULL);
  lua_pushcfunction(L, l_semaphore);
  lua_setfield(L, -2, "semaphore");
}
