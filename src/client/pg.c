/*
** PostgreSQL connections for Lua (owin.pg), on libpq's asynchronous API:
** PQconnectStart/PQconnectPoll, PQsend*, PQconsumeInput/PQisBusy/
** PQgetResult, PQputCopyData/PQgetCopyData and PQnotifies, with the
** connection's socket (PQsocket) watched by a uv_poll_t.  Every wait
** yields the calling task; lua/owin/pg.lua builds the module (parameters'
** statements cache, transactions, the pool) on these primitives.
**
** States.  CONNECTING until PQconnectPoll says OK; IDLE; BUSY from a
** PQsend* until PQgetResult returns NULL (results are kept in p->res);
** COPY_IN / COPY_OUT inside a COPY; LOST once libpq says the connection
** is bad (the server closed it, the network failed); CLOSED.  An IDLE
** connection is watched for reading too: libpq then reads notifications,
** and a server that closes it is seen at once.
**
** Cancellation.  When the waiting task is cancelled, or its client-side
** timeout passes, the wait returns at once and the query is cancelled on
** the server with libpq's PQcancel, which opens a connection of its own and
** waits for it: it runs on libuv's thread pool.  The results still come
** (an error, SQLSTATE 57014) and are dropped; the connection is IDLE again
** after, which wait_idle tells the pool.
**
** Ownership.  The C connection (owl_pg_t) is malloc'd and freed when its
** timer has closed (after PQfinish); its uv_poll_t is malloc'd apart,
** since libpq may change sockets while it connects, and freed in its own
** close callback.  The Lua object points to it and it points back; both
** links are cleared when it closes.  A connection belongs to the process,
** not to a request: the pool hands it to one task at a time.
*/

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "client/client.h"

#define OWL_PG_T "owin.PG"
#define OWL_PGERR_T "owin.PGError"
#define OWL_BYTEA_T "owin.PGBytea"

enum { S_CONNECTING, S_IDLE, S_BUSY, S_COPY_IN, S_COPY_OUT, S_LOST, S_CLOSED };
/* what a waiting task waits for */
enum { W_NONE, W_CONNECT, W_RESULT, W_FLUSH, W_COPY_DATA, W_NOTIFY, W_IDLE };

/* the OIDs of the types converted (catalog/pg_type.dat) */
enum {
  OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
  OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700
};

typedef struct owl_pg owl_pg_t;
typedef struct pg_ud { owl_pg_t *p; } pg_ud_t;

struct owl_pg {
  PGconn *conn;
  uv_poll_t *poll;              /* on PQsocket; NULL when there is none */
  int fd, events;               /* what poll watches */
  uv_timer_t timer;             /* the wait's timeout */
  owl_task_t *waiter;
  int wait_kind;
  int state;
  PGresult **res;               /* the results of the query under way */
  int nres, cres;
  pg_ud_t *ud;
  owl_pg_t *prev, *next;        /* every open connection (teardown) */
  char *lost;                   /* why the connection failed (malloc'd) */
  unsigned timedout : 1;
  unsigned discard : 1;         /* the results are nobody's: drop them */
  unsigned cancel_sent : 1;
};

static owl_pg_t *all_pgs;
static int null_ref = LUA_NOREF;    /* pg.null */


/* {====== life */

static void free_results (owl_pg_t *p) {
  for (int i = 0; i < p->nres; i++)
    PQclear(p->res[i]);
  p->nres = 0;
}


static void on_poll_closed (uv_handle_t *h) {
  free(h);
}


static void poll_close (owl_pg_t *p) {
  if (p->poll != NULL) {
    uv_close((uv_handle_t *)p->poll, on_poll_closed);
    p->poll = NULL;
    p->events = 0;
  }
}


static void on_poll (uv_poll_t *h, int status, int events);


/* Watches libpq's socket for events (it may have changed while connecting). */
static void poll_set (owl_pg_t *p, int events) {
  int fd = p->conn ? PQsocket(p->conn) : -1;
  if (fd < 0) {
    poll_close(p);
    return;
  }
  if (p->poll != NULL && fd != p->fd)
    poll_close(p);
  if (p->poll == NULL) {
    p->poll = malloc(sizeof *p->poll);
    if (p->poll == NULL || uv_poll_init_socket(owl_srv.loop, p->poll, fd) != 0) {
      free(p->poll);
      p->poll = NULL;
      return;
    }
    p->poll->data = p;
    p->fd = fd;
    p->events = 0;
  }
  if (events != p->events) {
    uv_poll_start(p->poll, events, on_poll);
    p->events = events;
  }
}


static void on_timer_closed (uv_handle_t *h) {
  owl_pg_t *p = h->data;
  free(p->res);
  free(p->lost);
  free(p);
}


static void wake (owl_pg_t *p) {
  owl_task_t *t = p->waiter;
  if (t == NULL)
    return;
  p->waiter = NULL;
  p->wait_kind = W_NONE;
  uv_timer_stop(&p->timer);
  owl_task_resume(t, 0);
}


/* Closes p: PQfinish, the handles; a waiting task is woken (it finds the
** connection closed). */
static void pg_close (owl_pg_t *p) {
  if (p->state == S_CLOSED)
    return;
  p->state = S_CLOSED;
  if (p->prev)
    p->prev->next = p->next;
  else
    all_pgs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  if (p->ud != NULL) {
    p->ud->p = NULL;
    p->ud = NULL;
  }
  poll_close(p);                    /* before PQfinish closes the socket */
  free_results(p);
  PQfinish(p->conn);
  p->conn = NULL;
  owl_task_t *t = p->waiter;
  p->waiter = NULL;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, on_timer_closed);
  if (t != NULL)
    owl_task_resume(t, 0);
}


/* libpq's message as one line: no trailing newline, inner ones spaces. */
static char *one_line (const char *msg) {
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
    n--;
  char *s = malloc(n + 1);
  if (s == NULL)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (msg[i] == '\n' || msg[i] == '\t') {
      if (k > 0 && s[k - 1] != ' ')
        s[k++] = ' ';
    }
    else
      s[k++] = msg[i];
  }
  s[k] = 0;
  return s;
}


/* The connection failed: no more I/O; a waiting task hears why. */
static void set_lost (owl_pg_t *p) {
  if (p->state == S_LOST || p->state == S_CLOSED)
    return;
  p->state = S_LOST;
  free(p->lost);
  p->lost = one_line(p->conn ? PQerrorMessage(p->conn) : "closed");
  poll_close(p);
  wake(p);
}
/* }====== */


/* The server's notices (NOTICE, WARNING) go to the server's log, not
** to stderr as libpq's default would write them. */
static void on_notice (void *arg, const char *msg) {
  (void)arg;
  char *m = one_line(msg);
  if (m == NULL)
    return;
  int level = strncmp(m, "WARNING", 7) == 0 ? OWL_LOG_WARN : OWL_LOG_INFO;
  owl_log(level, NULL, "postgres: %s", m);
  free(m);
}
/* }====== */


/* {====== cancel requests, on the thread pool */

typedef struct cancel_job {
  uv_work_t work;
  PGcancel *cancel;
} cancel_job_t;


static void cancel_work (uv_work_t *w) {
  char err[256];
  PQcancel(((cancel_job_t *)w)->cancel, err, sizeof err);   /* may wait: not on the loop */
}


static void cancel_done (uv_work_t *w, int status) {
  (void)status;
  PQfreeCancel(((cancel_job_t *)w)->cancel);
  free(w);
}


/* The query under way is nobody's now: cancel it on the server and drop
** its results as they come. */
static void abandon (owl_pg_t *p) {
  p->discard = 1;
  free_results(p);
  if (p->state == S_COPY_IN) {
    PQputCopyEnd(p->conn, "cancelled by the client");
    p->state = S_BUSY;
    int f = PQflush(p->conn);
    poll_set(p, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
  }
  if ((p->state == S_BUSY || p->state == S_COPY_OUT) && !p->cancel_sent) {
    cancel_job_t *job = malloc(sizeof *job);
    if (job == NULL)
      return;
    job->cancel = PQgetCancel(p->conn);
    if (job->cancel == NULL ||
        uv_queue_work(owl_srv.loop, &job->work, cancel_work, cancel_done) != 0) {
      if (job->cancel)
        PQfreeCancel(job->cancel);
      free(job);
      return;
    }
    p->cancel_sent = 1;
  }
}
/* }====== */


/* {====== events */

/* Reads what the query under way sent: results until PQgetResult says
** NULL (IDLE), or a COPY starts. */
static void collect (owl_pg_t *p) {
  while (p->state == S_BUSY && !PQisBusy(p->conn)) {
    PGresult *r = PQgetResult(p->conn);
    if (r == NULL) {
      p->state = S_IDLE;
      p->cancel_sent = 0;
      if (p->discard) {
        p->discard = 0;
        free_results(p);
      }
      return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT) {
      PQclear(r);
      p->state = st == PGRES_COPY_IN ? S_COPY_IN : S_COPY_OUT;
      if (p->discard)
        abandon(p);
      return;
    }
    if (p->discard) {
      PQclear(r);
      continue;
    }
    if (p->nres == p->cres) {
      int c = p->cres ? p->cres * 2 : 4;
      PGresult **v = realloc(p->res, (size_t)c * sizeof *v);
      if (v == NULL) {
        PQclear(r);
        continue;                       /* a result lost; the others stay */
      }
      p->res = v;
      p->cres = c;
    }
    p->res[p->nres++] = r;
  }
}


/* COPY TO STDOUT that nobody reads any more: its rows go. */
static void drain_copy_out (owl_pg_t *p) {
  char *buf;
  int n;
  while ((n = PQgetCopyData(p->conn, &buf, 1)) > 0)
    PQfreemem(buf);
  if (n < 0) {                          /* done: the final result follows */
    p->state = S_BUSY;
    collect(p);
  }
}


static void on_connect_poll (owl_pg_t *p) {
  switch (PQconnectPoll(p->conn)) {
    case PGRES_POLLING_READING:
      poll_set(p, UV_READABLE);
      break;
    case PGRES_POLLING_WRITING:
      poll_set(p, UV_WRITABLE);
      break;
    case PGRES_POLLING_OK:
      /* only now: PQsetnonblocking clears the error message, and while it
      ** connects libpq's socket does not block anyway */
      PQsetnonblocking(p->conn, 1);
      p->state = S_IDLE;
      poll_set(p, UV_READABLE);
      wake(p);
      break;
    default:
      set_lost(p);
  }
}


static void on_poll (uv_poll_t *h, int status, int events) {
  owl_pg_t *p = h->data;
  if (p->state == S_CONNECTING) {
    on_connect_poll(p);
    return;
  }
  if (status < 0) {
    set_lost(p);
    return;
  }
  if (events & UV_WRITABLE) {
    int f = PQflush(p->conn);
    if (f < 0) {
      set_lost(p);
      return;
    }
    if (f == 0) {
      poll_set(p, UV_READABLE);
      if (p->wait_kind == W_FLUSH)
        wake(p);
    }
  }
  if (!(events & UV_READABLE))
    return;
  if (!PQconsumeInput(p->conn)) {
    set_lost(p);
    return;
  }
  switch (p->state) {
    case S_BUSY:
      collect(p);
      if (p->state != S_BUSY && (p->wait_kind == W_RESULT || p->wait_kind == W_IDLE))
        wake(p);
      break;
    case S_COPY_OUT:
      if (p->discard)
        drain_copy_out(p);
      else if (p->wait_kind == W_COPY_DATA)
        wake(p);
      break;
    case S_IDLE:
      if (p->wait_kind == W_NOTIFY)
        wake(p);
      break;
  }
  if (PQstatus(p->conn) == CONNECTION_BAD)
    set_lost(p);
}


static void on_timeout (uv_timer_t *tm) {
  owl_pg_t *p = tm->data;
  p->timedout = 1;
  if (p->state != S_CONNECTING)
    abandon(p);
  wake(p);
}


static void pg_unwait (owl_task_t *t) {
  owl_pg_t *p = t->wait_on;
  if (p->waiter != t)
    return;
  p->waiter = NULL;
  p->wait_kind = W_NONE;
  uv_timer_stop(&p->timer);
  if (p->state == S_BUSY || p->state == S_COPY_IN || p->state == S_COPY_OUT)
    abandon(p);
}


static int pg_wait (lua_State *L, owl_task_t *t, owl_pg_t *p, int kind, double timeout,
                    lua_KContext ctx, lua_KFunction k) {
  p->waiter = t;
  p->wait_kind = kind;
  p->timedout = 0;
  if (timeout > 0) {
    double ms = ceil(timeout * 1000);
    uv_timer_start(&p->timer, on_timeout, ms > 1e12 ? (uint64_t)1e12 : (uint64_t)ms, 0);
  }
  return owl_task_wait(L, t, OWL_WAIT_SOCK, pg_unwait, p, ctx, k);
}
/* }====== */


/* {====== values */

static void push_null (lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, null_ref);
}


/* A numeric: an integer when it is whole and fits, a float when a double
** holds it (15 significant digits at most), else its text. */
static void push_numeric (lua_State *L, const char *v, int len) {
  int digits = 0, frac = 0, other = 0;
  for (int i = 0; i < len; i++) {
    char c = v[i];
    if (c >= '0' && c <= '9')
      digits += digits > 0 || c != '0';
    else if (c == '.')
      frac = 1;
    else if (c != '-')
      other = 1;
  }
  if (!other && !frac) {
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (errno == 0 && end == v + len) {
      lua_pushinteger(L, (lua_Integer)n);
      return;
    }
  }
  if (!other && digits <= 15) {
    lua_pushnumber(L, strtod(v, NULL));
    return;
  }
  if (strcmp(v, "NaN") == 0 || strcmp(v, "Infinity") == 0 || strcmp(v, "-Infinity") == 0) {
    lua_pushnumber(L, strtod(v, NULL));
    return;
  }
  lua_pushlstring(L, v, (size_t)len);
}


static void push_value (lua_State *L, const PGresult *r, int row, int col, Oid type) {
  if (PQgetisnull(r, row, col)) {
    push_null(L);
    return;
  }
  const char *v = PQgetvalue(r, row, col);
  int len = PQgetlength(r, row, col);
  switch (type) {
    case OID_BOOL:
      lua_pushboolean(L, v[0] == 't');
      return;
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: {
      errno = 0;
      char *end;
      long long n = strtoll(v, &end, 10);
      if (errno == 0 && end == v + len) {
        lua_pushinteger(L, (lua_Integer)n);
        return;
      }
      break;
    }
    case OID_FLOAT4: case OID_FLOAT8:
      lua_pushnumber(L, strtod(v, NULL));
      return;
    case OID_NUMERIC:
      push_numeric(L, v, len);
      return;
    case OID_BYTEA: {
      size_t n;
      unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
      if (b != NULL) {
        lua_pushlstring(L, (const char *)b, n);
        PQfreemem(b);
        return;
      }
      break;
    }
  }
  lua_pushlstring(L, v, (size_t)len);
}


/* A result as rows (tables keyed by column name) with affected, command
** and columns. */
static void push_rows (lua_State *L, const PGresult *r) {
  int nt = PQntuples(r), nf = PQnfields(r);
  luaL_checkstack(L, nf + 8, "too many columns");
  lua_createtable(L, nt, 3);
  int t = lua_gettop(L);
  lua_createtable(L, nf, 0);
  for (int f = 0; f < nf; f++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, PQfname(r, f));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)PQftype(r, f));
    lua_setfield(L, -2, "type");
    lua_rawseti(L, -2, f + 1);
  }
  lua_setfield(L, t, "columns");
  const char *status = PQcmdStatus((PGresult *)r);
  if (status != NULL && *status) {
    lua_pushlstring(L, status, strcspn(status, " "));
    lua_setfield(L, t, "command");
  }
  const char *tuples = PQcmdTuples((PGresult *)r);
  if (tuples != NULL && *tuples) {
    lua_pushinteger(L, (lua_Integer)strtoll(tuples, NULL, 10));
    lua_setfield(L, t, "affected");
  }
  int names = lua_gettop(L) + 1;
  for (int f = 0; f < nf; f++)
    lua_pushstring(L, PQfname(r, f));
  for (int row = 0; row < nt; row++) {
    lua_createtable(L, 0, nf);
    for (int f = 0; f < nf; f++) {
      lua_pushvalue(L, names + f);
      push_value(L, r, row, f, PQftype(r, f));
      lua_rawset(L, -3);
    }
    lua_rawseti(L, t, row + 1);
  }
  lua_settop(L, t);
}


static void error_field (lua_State *L, const PGresult *r, int code, const char *name) {
  const char *v = PQresultErrorField(r, code);
  if (v != NULL) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, name);
  }
}


/* The server's error as a table (sqlstate, message, detail, hint, ...). */
static void push_error (lua_State *L, const PGresult *r) {
  lua_createtable(L, 0, 10);
  error_field(L, r, PG_DIAG_SEVERITY_NONLOCALIZED, "severity");
  error_field(L, r, PG_DIAG_SQLSTATE, "sqlstate");
  error_field(L, r, PG_DIAG_MESSAGE_PRIMARY, "message");
  error_field(L, r, PG_DIAG_MESSAGE_DETAIL, "detail");
  error_field(L, r, PG_DIAG_MESSAGE_HINT, "hint");
  error_field(L, r, PG_DIAG_CONTEXT, "where");
  error_field(L, r, PG_DIAG_SCHEMA_NAME, "schema");
  error_field(L, r, PG_DIAG_TABLE_NAME, "table");
  error_field(L, r, PG_DIAG_COLUMN_NAME, "column");
  error_field(L, r, PG_DIAG_CONSTRAINT_NAME, "constraint");
  const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
  if (pos != NULL) {
    lua_pushinteger(L, (lua_Integer)strtol(pos, NULL, 10));
    lua_setfield(L, -2, "position");
  }
  lua_getfield(L, -1, "message");
  if (lua_isnil(L, -1)) {                 /* not from the server: libpq's own */
    char *m = one_line(PQresultErrorMessage(r));
    lua_pushstring(L, m ? m : "error");
    free(m);
    lua_setfield(L, -3, "message");
  }
  lua_pop(L, 1);
  luaL_setmetatable(L, OWL_PGERR_T);
}


/* tostring(err): "ERROR 23505: message (DETAIL: ...) (HINT: ...)" */
static int err_tostring (lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "severity");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "ERROR");
  lua_pop(L, 1);
  lua_getfield(L, 1, "sqlstate");
  if (lua_isstring(L, -1)) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  luaL_addstring(&b, ": ");
  static const char *const extra[][2] = { { "detail", " (DETAIL: " }, { "hint", " (HINT: " } };
  lua_getfield(L, 1, "message");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, 1, extra[i][0]);
    if (lua_isstring(L, -1)) {
      luaL_addstring(&b, extra[i][1]);
      luaL_addstring(&b, lua_tostring(L, -1));
      luaL_addchar(&b, ')');
    }
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}


/* Pushes the results of the query: each as rows, or nil, err for the
** first error.  Frees them. */
static int push_results (lua_State *L, owl_pg_t *p) {
  for (int i = 0; i < p->nres; i++) {
    ExecStatusType st = PQresultStatus(p->res[i]);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
      lua_pushnil(L);
      push_error(L, p->res[i]);
      free_results(p);
      return 2;
    }
  }
  int n = p->nres;
  luaL_checkstack(L, n + 2, "too many results");
  for (int i = 0; i < n; i++)
    push_rows(L, p->res[i]);
  free_results(p);
  if (n == 0) {                         /* an empty query */
    lua_newtable(L);
    n = 1;
  }
  return n;
}
/* }====== */


/* {====== the Lua object */

static pg_ud_t *checkud (lua_State *L) {
  return luaL_checkudata(L, 1, OWL_PG_T);
}



static int lost_error (lua_State *L, owl_pg_t *p) {
  lua_pushnil(L);
  lua_pushfstring(L, "connection lost: %s", p->lost && *p->lost ? p->lost : "closed");
  pg_close(p);
  return 2;
}


/* The connection of the object at 1, ready for a new operation, or NULL
** with nil, err pushed (*ret their count). */
static owl_pg_t *ready (lua_State *L, owl_task_t *t, int *ret) {
  pg_ud_t *u = checkud(L);
  owl_pg_t *p = u->p;
  if (owl_task_cancelled(t)) {
    *ret = owl_push_cancelled(L);
    return NULL;
  }
  if (p == NULL) {
    *ret = owl_push_error(L, "closed");
    return NULL;
  }
  if (p->state == S_LOST) {
    *ret = lost_error(L, p);
    return NULL;
  }
  if (p->waiter != NULL || p->state != S_IDLE) {
    *ret = owl_push_error(L, "connection busy");
    return NULL;
  }
  return p;
}


/* After a wait: the common outcomes (closed, cancelled, timeout, lost);
** returns -1 when the operation may go on. */
static int after_wait (lua_State *L, owl_pg_t *p, owl_task_t *t) {
  if (checkud(L)->p != p)
    return (t && owl_task_cancelled(t)) ? owl_push_cancelled(L) : owl_push_error(L, "closed");
  if (t && owl_task_cancelled(t))
    return owl_push_cancelled(L);
  if (p->timedout) {
    p->timedout = 0;
    return owl_push_error(L, "timeout");
  }
  if (p->state == S_LOST)
    return lost_error(L, p);
  return -1;
}


static void on_connect_start (owl_pg_t *p) {
  /* libpq's rule: poll as if PQconnectPoll had said WRITING */
  poll_set(p, UV_WRITABLE);
  if (p->poll == NULL)
    on_connect_poll(p);
}


static int connect_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  if (p->state == S_LOST && checkud(L)->p == p && !(t && owl_task_cancelled(t))) {
    lua_pushnil(L);                     /* libpq's reason, as it words it */
    lua_pushstring(L, p->lost && *p->lost ? p->lost : "cannot connect");
    pg_close(p);
    return 2;
  }
  int r = after_wait(L, p, t);
  if (r >= 0) {
    if (checkud(L)->p == p)
      pg_close(p);                      /* a timeout or a cancel: not half open */
    return r;
  }
  if (p->state == S_CONNECTING)
    return pg_wait(L, t, p, W_CONNECT, 0, ctx, connect_k);
  return 1;                             /* the object, at 1 */
}


static int pg_gc (lua_State *L) {
  pg_ud_t *u = checkud(L);
  if (u->p)
    pg_close(u->p);
  return 0;
}


/* core.pg_connect(conninfo, timeout) -> a connection, or nil, err */
static int l_pg_connect (lua_State *L) {
  const char *info = luaL_checkstring(L, 1);
  double timeout = luaL_optnumber(L, 2, 10);
  owl_task_t *t = owl_task_check(L, "connect");
  if (owl_task_cancelled(t))
    return owl_push_cancelled(L);
  owl_pg_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return luaL_error(L, "not enough memory");
  p->conn = PQconnectStart(info);
  if (p->conn == NULL) {
    free(p);
    return luaL_error(L, "not enough memory");
  }
  uv_timer_init(owl_srv.loop, &p->timer);
  p->timer.data = p;
  p->state = S_CONNECTING;
  p->next = all_pgs;
  if (all_pgs)
    all_pgs->prev = p;
  all_pgs = p;
  lua_settop(L, 0);
  pg_ud_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->p = p;
  p->ud = u;
  luaL_setmetatable(L, OWL_PG_T);
  if (PQstatus(p->conn) == CONNECTION_BAD) {
    char *m = one_line(PQerrorMessage(p->conn));
    lua_pushnil(L);
    lua_pushstring(L, m ? m : "cannot connect");
    free(m);
    pg_close(p);
    return 2;
  }
  PQsetNoticeProcessor(p->conn, on_notice, NULL);
  on_connect_start(p);
  if (p->state != S_CONNECTING)
    return connect_k(L, 0, (lua_KContext)p);
  return pg_wait(L, t, p, W_CONNECT, timeout, (lua_KContext)p, connect_k);
}


/* Sends what PQsend* queued; the results come with the socket readable. */
static int sent (owl_pg_t *p) {
  p->state = S_BUSY;
  p->discard = 0;
  p->cancel_sent = 0;
  free_results(p);
  int f = PQflush(p->conn);
  if (f < 0)
    return -1;
  poll_set(p, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
  return 0;
}


static int result_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  int r = after_wait(L, p, t);
  if (r >= 0)
    return r;
  if (p->state == S_BUSY)
    return pg_wait(L, t, p, W_RESULT, 0, ctx, result_k);   /* not woken for this: on */
  if (p->state == S_COPY_IN || p->state == S_COPY_OUT) {
    free_results(p);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, p->state == S_COPY_IN ? "in" : "out");
    lua_setfield(L, -2, "copy");
    return 1;
  }
  return push_results(L, p);
}


/* Waits for the results of what was just sent; timeout: seconds or 0. */
static int wait_results (lua_State *L, owl_task_t *t, owl_pg_t *p, double timeout) {
  if (sent(p) < 0) {
    set_lost(p);
    return lost_error(L, p);
  }
  return pg_wait(L, t, p, W_RESULT, timeout, (lua_KContext)p, result_k);
}


/* The text of parameter at index i into *v (NULL: SQL NULL); binary ones
** set *format.  Strings made here stay on the stack until the send. */
static void param (lua_State *L, int i, int n, const char **v, int *len, int *format) {
  *format = 0;
  *len = 0;
  switch (lua_type(L, i)) {
    case LUA_TNIL:
      *v = NULL;
      return;
    case LUA_TBOOLEAN:
      *v = lua_toboolean(L, i) ? "t" : "f";
      return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, i))
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, i));
      else {
        double d = lua_tonumber(L, i);
        char buf[64];
        if (isnan(d))
          snprintf(buf, sizeof buf, "NaN");
        else if (isinf(d))
          snprintf(buf, sizeof buf, d > 0 ? "Infinity" : "-Infinity");
        else
          snprintf(buf, sizeof buf, "%.17g", d);
        lua_pushstring(L, buf);
      }
      *v = lua_tostring(L, -1);
      return;
    case LUA_TSTRING:
      *v = lua_tostring(L, i);
      return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, i) == NULL) {   /* pg.null */
        *v = NULL;
        return;
      }
      break;
    case LUA_TUSERDATA: {
      if (luaL_testudata(L, i, OWL_BYTEA_T)) {
        size_t n2;
        lua_getiuservalue(L, i, 1);
        *v = lua_tolstring(L, -1, &n2);
        if (n2 > INT32_MAX)
          luaL_error(L, "parameter $%d: bytea too large", n);
        *len = (int)n2;
        *format = 1;
        return;
      }
      break;
    }
  }
  luaL_error(L, "parameter $%d: a %s cannot be sent (tables: encode them, e.g. "
             "owin.json.encode)", n, luaL_typename(L, i));
}


/*
** conn:_send(mode, text, timeout, ...) -> each result as rows, or nil, err.
** mode "simple": PQsendQuery(text), several statements, no parameters;
** "params": PQsendQueryParams(text, ...); "prepare": PQsendPrepare with
** text the name and the SQL as the 4th argument; "prepared":
** PQsendQueryPrepared(text = the name, ...).  timeout: seconds, 0: none.
*/
static int pg_send (lua_State *L) {
  static const char *const modes[] = { "simple", "params", "prepare", "prepared", NULL };
  owl_task_t *t = owl_task_check(L, "query");
  int ret;
  owl_pg_t *p = ready(L, t, &ret);
  if (p == NULL)
    return ret;
  int mode = luaL_checkoption(L, 2, NULL, modes);
  const char *text = luaL_checkstring(L, 3);
  double timeout = luaL_optnumber(L, 4, 0);
  int first = 5, top = lua_gettop(L);
  int n = top >= first ? top - first + 1 : 0;
  int ok;
  if (mode == 0)
    ok = PQsendQuery(p->conn, text);
  else if (mode == 2) {                 /* prepare: the SQL is argument 5 */
    const char *sql = luaL_checkstring(L, 5);
    ok = PQsendPrepare(p->conn, text, sql, 0, NULL);
  }
  else {
    if (n > 65535)
      return luaL_error(L, "too many parameters (%d; at most 65535)", n);
    const char **values = lua_newuserdatauv(L, (size_t)(n ? n : 1) * (sizeof *values + 2 * sizeof(int)), 0);
    int *lens = (int *)(values + (n ? n : 1));
    int *formats = lens + (n ? n : 1);
    luaL_checkstack(L, n + 4, "too many parameters");
    for (int i = 0; i < n; i++)
      param(L, first + i, i + 1, &values[i], &lens[i], &formats[i]);
    if (mode == 1)
      ok = PQsendQueryParams(p->conn, text, n, NULL, values, lens, formats, 0);
    else
      ok = PQsendQueryPrepared(p->conn, text, n, values, lens, formats, 0);
  }
  if (!ok) {
    if (PQstatus(p->conn) == CONNECTION_BAD) {
      set_lost(p);
      return lost_error(L, p);
    }
    char *m = one_line(PQerrorMessage(p->conn));
    lua_pushnil(L);
    lua_pushstring(L, m ? m : "cannot send the query");
    free(m);
    return 2;
  }
  lua_settop(L, 1);
  return wait_results(L, t, p, timeout);
}


/* {------ COPY */

static int copy_k (lua_State *L, int status, lua_KContext ctx);


/* The connection of the object at 1, inside the COPY `state`, for a call of
** task t; NULL with nil, err pushed (*ret their count). */
static owl_pg_t *in_copy (lua_State *L, owl_task_t *t, int state, int *ret) {
  owl_pg_t *p = checkud(L)->p;
  if (owl_task_cancelled(t))
    *ret = owl_push_cancelled(L);
  else if (p == NULL)
    *ret = owl_push_error(L, "closed");
  else if (p->state == S_LOST)
    *ret = lost_error(L, p);
  else if (p->state != state || p->waiter != NULL)
    *ret = owl_push_error(L, state == S_COPY_IN ? "not in COPY FROM STDIN"
                                                 : "not in COPY TO STDOUT");
  else
    return p;
  return NULL;
}


/* conn:_put_copy(data) -> true, or nil, err: a piece of COPY FROM STDIN */
static int pg_put_copy (lua_State *L) {
  owl_task_t *t = owl_task_check(L, "copy_from");
  size_t n;
  const char *d = luaL_checklstring(L, 2, &n);
  int ret;
  owl_pg_t *p = in_copy(L, t, S_COPY_IN, &ret);
  if (p == NULL)
    return ret;
  while (n > 0) {
    int piece = n > (1 << 20) ? (1 << 20) : (int)n;
    int r = PQputCopyData(p->conn, d, piece);
    if (r < 0) {
      set_lost(p);
      return lost_error(L, p);
    }
    if (r == 0)
      break;                            /* libpq's buffer is full: flush first */
    d += piece;
    n -= (size_t)piece;
  }
  lua_settop(L, 1);
  lua_pushlstring(L, d, n);             /* what is left, at 2 */
  int f = PQflush(p->conn);
  if (f < 0) {
    set_lost(p);
    return lost_error(L, p);
  }
  if (f == 1 || n > 0) {                /* wait until the socket takes it */
    poll_set(p, UV_READABLE | UV_WRITABLE);
    return pg_wait(L, t, p, W_FLUSH, 0, (lua_KContext)p, copy_k);
  }
  lua_pushboolean(L, 1);
  return 1;
}


static int copy_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  int r = after_wait(L, p, t);
  if (r >= 0)
    return r;
  size_t n;
  lua_tolstring(L, 2, &n);
  if (n > 0) {                          /* the rest of the piece */
    lua_settop(L, 2);
    return pg_put_copy(L);
  }
  lua_pushboolean(L, 1);
  return 1;
}


/* conn:_end_copy([error]) -> the final result, or nil, err: ends COPY FROM
** STDIN (an error message aborts it) */
static int pg_end_copy (lua_State *L) {
  owl_task_t *t = owl_task_check(L, "copy_from");
  const char *abort_msg = luaL_optstring(L, 2, NULL);
  double timeout = luaL_optnumber(L, 3, 0);
  int ret;
  owl_pg_t *p = in_copy(L, t, S_COPY_IN, &ret);
  if (p == NULL)
    return ret;
  if (PQputCopyEnd(p->conn, abort_msg) < 0) {
    set_lost(p);
    return lost_error(L, p);
  }
  lua_settop(L, 1);
  return wait_results(L, t, p, timeout);
}


static int get_copy_k (lua_State *L, int status, lua_KContext ctx);


/* conn:_get_copy() -> a row of COPY TO STDOUT; at the end false, then the
** final result (or nil, err) */
static int pg_get_copy (lua_State *L) {
  owl_task_t *t = owl_task_check(L, "copy_to");
  int ret;
  owl_pg_t *p = in_copy(L, t, S_COPY_OUT, &ret);
  if (p == NULL)
    return ret;
  lua_settop(L, 1);
  return get_copy_k(L, 0, (lua_KContext)p);
}


static int get_copy_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  int r = after_wait(L, p, t);
  if (r >= 0)
    return r;
  if (p->state == S_COPY_OUT) {
    char *buf;
    int n = PQgetCopyData(p->conn, &buf, 1);
    if (n > 0) {
      lua_pushlstring(L, buf, (size_t)n);
      PQfreemem(buf);
      return 1;
    }
    if (n == 0)
      return pg_wait(L, t, p, W_COPY_DATA, 0, ctx, get_copy_k);
    if (n == -2) {
      set_lost(p);
      return lost_error(L, p);
    }
    p->state = S_BUSY;                  /* the end: the final result follows */
    collect(p);
  }
  if (p->state == S_BUSY)
    return pg_wait(L, t, p, W_RESULT, 0, ctx, get_copy_k);
  lua_pushboolean(L, 0);
  int k = push_results(L, p);
  return k + 1;
}
/* }------ */


/* {------ notifications, idleness, the rest */

/* Pushes the next notification as { channel, payload, pid }; 0 if none. */
static int push_notification (lua_State *L, owl_pg_t *p) {
  PGnotify *n = PQnotifies(p->conn);
  if (n == NULL)
    return 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, n->relname);
  lua_setfield(L, -2, "channel");
  lua_pushstring(L, n->extra);
  lua_setfield(L, -2, "payload");
  lua_pushinteger(L, n->be_pid);
  lua_setfield(L, -2, "pid");
  PQfreemem(n);
  return 1;
}


/* The seconds left until the loop time at index i (0: no deadline). */
static double left (lua_State *L, int i) {
  double due = lua_tonumber(L, i);
  if (due <= 0)
    return 0;
  double now = (double)uv_now(owl_srv.loop);
  return due > now ? (due - now) / 1000 : 0.001;
}


static int notify_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  int r = after_wait(L, p, t);
  if (r >= 0)
    return r;
  if (push_notification(L, p))
    return 1;
  return pg_wait(L, t, p, W_NOTIFY, left(L, 2), ctx, notify_k);   /* other messages */
}


/* conn:notification([timeout]) -> { channel, payload, pid }, or nil, err */
static int pg_notification (lua_State *L) {
  owl_task_t *t = owl_task_check(L, "notification");
  double timeout = luaL_optnumber(L, 2, 0);
  int ret;
  owl_pg_t *p = ready(L, t, &ret);
  if (p == NULL)
    return ret;
  if (!PQconsumeInput(p->conn)) {
    set_lost(p);
    return lost_error(L, p);
  }
  if (push_notification(L, p))
    return 1;
  lua_settop(L, 1);
  lua_pushnumber(L, timeout > 0 ? (double)uv_now(owl_srv.loop) + timeout * 1000 : 0);
  return pg_wait(L, t, p, W_NOTIFY, timeout, (lua_KContext)p, notify_k);
}


static int idle_k (lua_State *L, int status, lua_KContext ctx) {
  owl_pg_t *p = (owl_pg_t *)ctx;
  owl_task_t *t = owl_task_of(L);
  (void)status;
  int r = after_wait(L, p, t);
  if (r >= 0)
    return r;
  if (p->state == S_IDLE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return pg_wait(L, t, p, W_IDLE, left(L, 2), ctx, idle_k);
}


/* conn:wait_idle([timeout]) -> true once the connection is idle again (a
** cancelled query's results are in and dropped), or nil, err */
static int pg_wait_idle (lua_State *L) {
  pg_ud_t *u = checkud(L);
  owl_task_t *t = owl_task_check(L, "wait_idle");
  double timeout = luaL_optnumber(L, 2, 0);
  owl_pg_t *p = u->p;
  if (owl_task_cancelled(t))
    return owl_push_cancelled(L);
  if (p == NULL)
    return owl_push_error(L, "closed");
  if (p->state == S_LOST)
    return lost_error(L, p);
  if (p->waiter != NULL)
    return owl_push_error(L, "connection busy");
  if (p->state == S_IDLE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_settop(L, 1);
  lua_pushnumber(L, timeout > 0 ? (double)uv_now(owl_srv.loop) + timeout * 1000 : 0);
  return pg_wait(L, t, p, W_IDLE, timeout, (lua_KContext)p, idle_k);
}


/* conn:status() -> "idle", "busy", "copy", "connecting", "lost" or "closed" */
static int pg_status (lua_State *L) {
  static const char *const names[] = { "connecting", "idle", "busy", "copy", "copy", "lost",
                                       "closed" };
  owl_pg_t *p = checkud(L)->p;
  lua_pushstring(L, p ? names[p->state] : "closed");
  return 1;
}


/* conn:transaction_status() -> "idle", "active", "intrans", "inerror" or
** "unknown" (libpq's PQtransactionStatus) */
static int pg_txstatus (lua_State *L) {
  static const char *const names[] = { "idle", "active", "intrans", "inerror", "unknown" };
  owl_pg_t *p = checkud(L)->p;
  int s = p && p->conn ? (int)PQtransactionStatus(p->conn) : PQTRANS_UNKNOWN;
  lua_pushstring(L, names[s >= 0 && s <= 4 ? s : 4]);
  return 1;
}


/* conn:cancel(): the query under way is cancelled on the server and its
** results dropped as they come (wait_idle tells when they are in) */
static int pg_cancel (lua_State *L) {
  owl_pg_t *p = checkud(L)->p;
  if (p != NULL && p->waiter == NULL &&
      (p->state == S_BUSY || p->state == S_COPY_IN || p->state == S_COPY_OUT))
    abandon(p);
  return 0;
}


static int pg_close_l (lua_State *L) {
  owl_pg_t *p = checkud(L)->p;
  if (p)
    pg_close(p);
  return 0;
}


/* conn:backend_pid() -> the server process's id */
static int pg_backend_pid (lua_State *L) {
  owl_pg_t *p = checkud(L)->p;
  if (p == NULL || p->conn == NULL)
    return owl_push_error(L, "closed");
  lua_pushinteger(L, PQbackendPID(p->conn));
  return 1;
}


/* conn:escape_identifier(s) / escape_literal(s) -> s quoted for SQL */
static int escape (lua_State *L, int literal) {
  owl_pg_t *p = checkud(L)->p;
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (p == NULL || p->conn == NULL)
    return owl_push_error(L, "closed");
  char *q = literal ? PQescapeLiteral(p->conn, s, n) : PQescapeIdentifier(p->conn, s, n);
  if (q == NULL) {
    char *m = one_line(PQerrorMessage(p->conn));
    lua_pushnil(L);
    lua_pushstring(L, m ? m : "cannot escape");
    free(m);
    return 2;
  }
  lua_pushstring(L, q);
  PQfreemem(q);
  return 1;
}


static int pg_escape_identifier (lua_State *L) {
  return escape(L, 0);
}


static int pg_escape_literal (lua_State *L) {
  return escape(L, 1);
}


static int pg_tostring (lua_State *L) {
  owl_pg_t *p = checkud(L)->p;
  lua_pushfstring(L, "owin.PG (%s): %p", p ? "open" : "closed", lua_touserdata(L, 1));
  return 1;
}


/* core.pg_bytea(s) -> s marked to go as binary (a bytea parameter) */
static int l_pg_bytea (lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, OWL_BYTEA_T);
  return 1;
}


/* }------ */


void owl_open_pg (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"_send", pg_send},
    {"_put_copy", pg_put_copy},
    {"_end_copy", pg_end_copy},
    {"_get_copy", pg_get_copy},
    {"notification", pg_notification},
    {"wait_idle", pg_wait_idle},
    {"status", pg_status},
    {"transaction_status", pg_txstatus},
    {"backend_pid", pg_backend_pid},
    {"escape_identifier", pg_escape_identifier},
    {"escape_literal", pg_escape_literal},
    {"cancel", pg_cancel},
    {"close", pg_close_l},
    {NULL, NULL}
  };
  owl_newclass(L, OWL_PG_T, methods, pg_tostring, pg_gc);
  luaL_getmetatable(L, OWL_PG_T);           /* methods in Lua are added to it */
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "pg_methods");
  lua_pop(L, 1);
  luaL_newmetatable(L, OWL_PGERR_T);
  lua_pushcfunction(L, err_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "pg_error_mt");
  luaL_newmetatable(L, OWL_BYTEA_T);
  lua_pop(L, 1);
  /* pg.null is lua-cjson's null (and OpenResty's ngx.null): a light
  ** userdata NULL, so that rows with NULLs encode to JSON as they are */
  lua_pushlightuserdata(L, NULL);
  lua_pushvalue(L, -1);
  null_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "pg_null");
  lua_pushcfunction(L, l_pg_connect);
  lua_setfield(L, -2, "pg_connect");
  lua_pushcfunction(L, l_pg_bytea);
  lua_setfield(L, -2, "pg_bytea");
}


/* Closes every connection (at exit). */
void owl_pg_teardown (void) {
  while (all_pgs != NULL)
    pg_close(all_pgs);
}
