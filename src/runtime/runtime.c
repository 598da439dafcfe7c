/*
** The runtime around the app: tasks (coroutines the loop resumes),
** owin.now, owin.sleep, cancellation tokens and the current request id.
**
** A task's coroutine carries a pointer to its task in the thread's extra
** space (lua_getextraspace), so a C function that must wait can find what
** to resume from the lua_State it runs in.
*/

#include <stdio.h>
#include <stdlib.h>

#include <stdarg.h>
#include <inttypes.h>
#include <time.h>
#include "runtime/runtime.h"


/* The process's one server: the loop and main state the runtime runs on,
** and what the layers above keep there (server.c fills it). */
owl_server_t owl_srv;


static const char token_mt = 0;     /* registry key of the token metatable */
static const char cbs_key = 0;      /* token[&cbs_key] = { callbacks } */


/* {====== owin.now, owin.sleep */

static int l_now (lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}


/* core.gettime() -> seconds since the epoch, with microseconds (luasocket's
** socket.gettime) */
static int l_gettime (lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return 0;
  lua_pushnumber(L, (lua_Number)tv.tv_sec + tv.tv_usec / 1e6);
  return 1;
}


/* owin.stopping() -> true once a graceful stop has begun */
static int l_stopping (lua_State *L) {
  lua_pushboolean(L, owl_srv.stopping);
  return 1;
}


/* core.gethostname() -> the machine's host name */
static int l_gethostname (lua_State *L) {
  char name[256];
  size_t n = sizeof name;
  int err = uv_os_gethostname(name, &n);
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(err));
    return 2;
  }
  lua_pushlstring(L, name, n);
  return 1;
}


/* An owin.sleep timer; timer.data is &sleep_tag so teardown can tell it. */
typedef struct owl_sleep {
  uv_timer_t timer;
  owl_task_t *task;
} owl_sleep_t;

static const char sleep_tag = 0;


static void on_sleep_close (uv_handle_t *h) {
  free(h);                                  /* the timer is the first member */
}


int owl_sleep_dispose (uv_handle_t *h) {
  if (h->data != &sleep_tag)
    return 0;
  uv_close(h, on_sleep_close);
  return 1;
}


static void on_sleep (uv_timer_t *tm) {
  owl_task_t *t = ((owl_sleep_t *)tm)->task;
  uv_close((uv_handle_t *)tm, on_sleep_close);
  owl_task_resume(t, 0);
}


/* The sleeping task was interrupted: its timer goes. */
static void sleep_unwait (owl_task_t *t) {
  uv_close((uv_handle_t *)t->wait_on, on_sleep_close);
}


static int sleep_k (lua_State *L, int status, lua_KContext ctx) {
  owl_task_t *t = owl_task_of(L);
  (void)status; (void)ctx;
  if (owl_task_cancelled(t))
    return owl_push_cancelled(L);
  lua_pushboolean(L, 1);
  return 1;
}


/* Yields t for ms milliseconds; k(L, ctx) continues. */
static int timed_wait (lua_State *L, owl_task_t *t, uint64_t ms, lua_KContext ctx,
                       lua_KFunction k) {
  owl_sleep_t *sl = malloc(sizeof *sl);
  if (sl == NULL)
    return luaL_error(L, "not enough memory");
  uv_timer_init(owl_srv.loop, &sl->timer);
  sl->timer.data = (void *)&sleep_tag;
  sl->task = t;
  /* at least 1 ms: a zero timer started from a timer callback is due at
  ** once, and a loop of owin.sleep(0) would keep libuv in its timer phase
  ** (no I/O, no clock update) for ever */
  uv_timer_start(&sl->timer, on_sleep, ms > 0 ? ms : 1, 0);
  return owl_task_wait(L, t, OWL_WAIT_SLEEP, sleep_unwait, sl, ctx, k);
}


int owl_cancelled_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return owl_push_cancelled(L);
}


int owl_task_pause (lua_State *L, owl_task_t *t, lua_KContext ctx, lua_KFunction k) {
  if (t == NULL || !owl_task_can_wait(L))
    return k(L, LUA_OK, ctx);
  return timed_wait(L, t, 0, ctx, k);
}


/* owin.sleep(seconds) -> true, or nil, "cancelled": yields the calling
** coroutine for that long. */
static int l_sleep (lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s < 1e9, 1, "must be a number of seconds from 0");
  owl_task_t *t = owl_task_check(L, "owin.sleep");
  if (owl_task_cancelled(t))
    return owl_task_pause(L, t, 0, sleep_k);
  return timed_wait(L, t, (uint64_t)(s * 1000 + 0.5), 0, sleep_k);
}


/* owin.request_id() -> the owin.RequestId of the request running now, or nil */
static int l_request_id (lua_State *L) {
  owl_task_t *t = owl_task_of(L);
  char buf[64];
  if (t == NULL || t->rid == 0)
    return 0;
  lua_pushlstring(L, buf, owl_req_idstr(t->rid, buf, sizeof buf));
  return 1;
}
/* }====== */


/* {====== cancellation tokens */

/* token:register(fn): fn() runs when the token fires (at once if it has). */
static int t_register (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_getfield(L, 1, "cancelled");
  if (lua_toboolean(L, -1)) {
    lua_pushvalue(L, 2);
    lua_call(L, 0, 0);
    return 0;
  }
  if (lua_rawgetp(L, 1, &cbs_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, 1, &cbs_key);
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}


void owl_token_new (lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "cancelled");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &token_mt);
  lua_setmetatable(L, -2);
}


/*
** Fires the token at idx: cancelled = true, then every callback in the
** order registered; an error in one is logged and the others still run.
*/
void owl_token_fire (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "cancelled");
  int done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (done)
    return;
  lua_pushboolean(L, 1);
  lua_setfield(L, idx, "cancelled");
  if (lua_rawgetp(L, idx, &cbs_key) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        owl_log(OWL_LOG_ERROR, NULL, "error in a cancellation callback: %s",
                lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawsetp(L, idx, &cbs_key);
}


/* owin.token() -> a new token; token:cancel() fires it (for tests, apps) */
static int l_token (lua_State *L) {
  owl_token_new(L);
  return 1;
}


static int t_cancel (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  owl_token_fire(L, 1);
  return 0;
}
/* }====== */


/*
** Creates the metatable `name` for a userdata class: methods as __index,
** and the metamethods tostring and gc when not NULL.  Leaves the stack as
** it was.
*/
void owl_newclass (lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction tostring, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  if (tostring) {
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
  }
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}


/* {====== log lines */


char owl_log_who[32];


static void vlog (int level, const char *reqid, const char *fmt, va_list ap) {
  static const char *const names[] = { "debug", "info", "warn", "error" };
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  flockfile(stderr);
  fprintf(stderr, "%s [%s] %s", stamp, names[level], owl_log_who);
  if (reqid != NULL)
    fprintf(stderr, "[%s] ", reqid);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  funlockfile(stderr);
  fflush(stderr);
}


void owl_log_always (int level, const char *reqid, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, reqid, fmt, ap);
  va_end(ap);
}


void owl_log (int level, const char *reqid, const char *fmt, ...) {
  va_list ap;
  if (level < owl_srv.opt.log_level)
    return;
  va_start(ap, fmt);
  vlog(level, reqid, fmt, ap);
  va_end(ap);
}


size_t owl_req_idstr (uint64_t n, char *buf, size_t len) {
  int k = snprintf(buf, len, "%s%" PRIu64, owl_srv.id_prefix, n);
  return k < 0 ? 0 : (size_t)k >= len ? len - 1 : (size_t)k;
}


/* }====== */


/* {====== lines about answers the server made itself */

#define REFUSED_PER_SEC 10      /* lines a second at most; the rest are counted */


static int refused_level;        /* the highest level of the lines left out */


void owl_log_refused_flush (void) {
  owl_server_t *s = &owl_srv;
  if (s->refused_suppressed == 0)
    return;
  owl_log(refused_level, NULL, "suppressed %u more error answer%s in the last second "
          "(at most %d lines a second)", s->refused_suppressed,
          s->refused_suppressed == 1 ? "" : "s", REFUSED_PER_SEC);
  s->refused_suppressed = 0;
  refused_level = OWL_LOG_DEBUG;
}


static void on_refused_timer (uv_timer_t *t) {
  owl_server_t *s = t->data;
  owl_log_refused_flush();
  s->refused_logged = 0;
  s->refused_window = uv_now(s->loop);
}


/*
** Whether a line about an answer the server made itself (level) may be
** written now: at most REFUSED_PER_SEC a second; the rest are counted and
** summed up in one line when the second ends.
*/
int owl_log_refused_ok (int level) {
  owl_server_t *s = &owl_srv;
  if (level < s->opt.log_level)
    return 0;
  uint64_t now = uv_now(s->loop);
  if (now - s->refused_window >= 1000 && !uv_is_active((uv_handle_t *)&s->refused_timer)) {
    s->refused_window = now;
    s->refused_logged = 0;
  }
  if (s->refused_logged >= REFUSED_PER_SEC) {
    if (level > refused_level)
      refused_level = level;
    if (s->refused_suppressed++ == 0 && !uv_is_closing((uv_handle_t *)&s->refused_timer))
      uv_timer_start(&s->refused_timer, on_refused_timer,
                     s->refused_window + 1000 > now ? s->refused_window + 1000 - now : 1, 0);
    return 0;
  }
  s->refused_logged++;
  return 1;
}
/* }====== */


void owl_open_runtime (lua_State *L) {
  static const luaL_Reg token_m[] = {
    {"register", t_register},
    {"cancel", t_cancel},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"now", l_now},
    {"gettime", l_gettime},
    {"gethostname", l_gethostname},
    {"stopping", l_stopping},
    {"sleep", l_sleep},
    {"request_id", l_request_id},
    {"token", l_token},
    {NULL, NULL}
  };
  /* Almost everything a request makes (env, headers, value arrays) dies
  ** with it: the generational collector frees such young objects without
  ** walking the old ones every cycle. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_createtable(L, 0, 3);                 /* token metatable */
  lua_newtable(L);
  luaL_setfuncs(L, token_m, 0);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "owin.CancellationToken");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &token_mt);
  luaL_setfuncs(L, funcs, 0);               /* into the module table */
}
