/*
** owinlua: the declarations the request cycle and the server share.  The
** layers, from the bottom (docs/ARCHITECTURE.md draws them):
**   codecs      buf.c, chunked.c, ws.c, ws_handshake.c, status.c: bytes in,
**               bytes out; no libuv, no Lua.
**   transport   transport.h, tcp.c: how bytes move (TCP today).
**   connection  conn.c: a transport, its output and timer, and the protocol
**               handler that reads it (struct private to conn.c).
**   handlers    http1.c (HTTP/1.1) and websocket.c (after a 101).
**   runtime     task.c (tasks and their waits, the coroutine functions),
**               thread.c (owin.spawn, owin.timer, start-up, scopes),
**               runtime.c (tokens, owin.sleep, the one owl_srv),
**               headers.c (headers tables).
**   client      cosock.c, udp.c, dns.c: owin.tcp, owin.udp, owin.resolve.
**   request     request.c (the app's coroutine, the response), env.c (the
**               OWIN env), stream.c, sendfile.c, upgrade.c.
**   server      server.c, master.c, main.c.
**
** Ownership:
** - owl_srv (runtime.c) lives for the process.
** - A connection is malloc'd on accept and freed in the close callback of
**   its last handle (conn.h); the HTTP/1.1 handler's state is part of it.
** - owl_req_t is a Lua full userdata (OWL_REQ_T, "owinlua.OutputStream": the
**   request is its own owin.ResponseBody); a registry ref
**   (req->ref) keeps it alive while its coroutine runs, and it is linked in
**   srv->reqs for as long.  It has no __gc: a finalizer on every request made
**   each GC cycle keep a whole cycle of requests alive one cycle longer, and
**   the heap grew with the load.  Its one malloc'd buffer (req->body) is
**   freed where the ref is released (req_end, or detach of a request that
**   never started), or at exit for requests still in srv->reqs.  req->conn
**   is a weak pointer that the connection clears when it closes (through
**   the handler's on_close), and the handler forgets the request when its
**   response finishes (owl_h1_request_done).
*/
#ifndef OWL_RUNTIME_RUNTIME_H
#define OWL_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include <llhttp.h>

#include "codec/buf.h"
#include "codec/chunked.h"
#include "codec/status.h"
#include "codec/ws.h"
#include "net/conn.h"

#define OWL_VERSION "0.1.0"

#define OWL_FIRST_BUF   (16 * 1024)   /* body held back to compute Content-Length */
#define OWL_BODY_HIGH   (64 * 1024)   /* unread request body that pauses reading */
#define OWL_OUT_HIGH    (256 * 1024)  /* unsent response bytes that pause the app */
#define OWL_OUT_LOW     (64 * 1024)   /* ... and let it go on again */
#define OWL_POOL_MAX    256           /* idle coroutines kept for reuse */



typedef struct owl_options {
  size_t max_header_bytes;
  size_t max_headers;
  size_t max_target;
  uint64_t max_body;            /* 0: unlimited */
  uint64_t header_timeout;      /* milliseconds */
  uint64_t body_timeout;
  uint64_t keepalive_timeout;
  uint64_t graceful_timeout;
  unsigned max_connections;
  int backlog;
  int dev;
  uint64_t ws_max_message;      /* bytes; a frame is held to it as well */
  uint64_t ws_ping_interval;    /* milliseconds, 0: no pings */
  uint64_t ws_ping_timeout;
  uint64_t ws_close_timeout;
  int ws_deflate;               /* offer permessage-deflate */
  int log_level;                /* OWL_LOG_*: lines below it are not written */
  unsigned max_pending_timers;
  uint64_t dns_ttl;             /* milliseconds a resolved name is kept */
  char server_name[64];         /* "" leaves out the Server header */
} owl_options_t;

typedef struct owl_server owl_server_t;
typedef struct owl_req owl_req_t;
typedef struct owl_task owl_task_t;
typedef struct owl_wsock owl_wsock_t;


/* {====== tasks: coroutines the loop resumes (task.c) */

enum owl_wait {
  OWL_WAIT_NONE = 0,    /* running, or yielded outside our API */
  OWL_WAIT_READ,        /* request body bytes */
  OWL_WAIT_DRAIN,       /* output below the low-water mark */
  OWL_WAIT_SLEEP,       /* a timer */
  OWL_WAIT_WS,          /* a change on a WebSocket (websocket.c) */
  OWL_WAIT_SOCK,        /* a cosocket operation (client/) */
  OWL_WAIT_THREAD,      /* a thread's end (thread.c) */
  OWL_WAIT_DNS          /* a name being resolved (client/dns.c) */
};

/*
** What a request, or a detached thread, owns: the threads it spawned and
** the cosockets it opened.  When it ends they are cancelled and closed;
** when it is cancelled (the client went away, the server stops) every wait
** of its tasks returns "cancelled".  Tasks at the process level (the app
** script's start-up) have no scope: what they open is shared.
*/
typedef struct owl_scope {
  struct owl_thread *threads;   /* its live threads (thread.c) */
  struct owl_csock *socks;      /* its open cosockets (client/cosock.c) */
  owl_task_t *task;             /* the request's or thread's own task; NULL
                                   once it ended */
  unsigned cancelled : 1;
  unsigned is_req : 1;          /* it is a request's (owl_req_t.scope) */
} owl_scope_t;

struct owl_task {
  lua_State *co;        /* the coroutine; its extra space points here */
  int co_ref;           /* registry ref anchoring co */
  int wait;             /* enum owl_wait */
  /* called after every lua_resume with its status; owns what follows,
  ** the results left on co's stack included */
  void (*after) (owl_task_t *t, int status);
  /* set by a wait that can be interrupted: forgets what it waits on */
  void (*unwait) (owl_task_t *t);
  void *wait_on;        /* what the wait is on */
  uint64_t wait_seq;    /* unique per wait (owl_task_wait) */
  owl_scope_t *scope;   /* what it belongs to; NULL: the process */
  uint64_t rid;         /* the request id its log lines carry, 0: none */
  unsigned killed : 1;
};

/* Resumes t->co with the nargs values on top of its stack. */
void owl_task_resume (owl_task_t *t, int nargs);
/* The task running in L, or NULL when L is not one of ours.  L may be a
** coroutine of the app's own, resumed (through the server's coroutine
** functions) by one of our tasks: its task is the one that resumed it. */
owl_task_t *owl_task_of (lua_State *L);
/* Whether L can wait: every coroutine from L up to its task's can yield. */
int owl_task_can_wait (lua_State *L);
/* The task that can wait in L, or raises "cannot wait here: ..." for fn. */
owl_task_t *owl_task_check (lua_State *L, const char *fn);
/*
** Yields L, which runs task t, until the loop resumes t; then k(L, ctx)
** continues in L.  unwait (or NULL) forgets the wait on `on` if the task is
** interrupted instead.  A wait inside an app's own coroutine suspends the
** whole chain of coroutines up to t->co.
*/
int owl_task_wait (lua_State *L, owl_task_t *t, int kind, void (*unwait) (owl_task_t *),
                   void *on, lua_KContext ctx, lua_KFunction k);
/* The wait_seq the next owl_task_wait will give its task. */
uint64_t owl_task_next_seq (void);
/* Ends t's wait early: unwait, then resume (its wait sees the cancel). */
void owl_task_interrupt (owl_task_t *t);
/* Whether t's waits return "cancelled": its scope was cancelled, or it was
** killed. */
static inline int owl_task_cancelled (const owl_task_t *t) {
  return t->killed || (t->scope != NULL && t->scope->cancelled);
}
/* The server's coroutine functions (coroutine.create, resume, ...). */
void owl_open_task (lua_State *L);
/* }====== */


/* {====== threads, timers, scopes (thread.c) */
void owl_open_thread (lua_State *L);
/* A request ends (or is cancelled): its threads are cancelled and moved
** out, its cosockets closed; its own task is not touched. */
void owl_scope_end (owl_scope_t *sc);
/* Cancels the scope: its cosockets close, and every wait of its threads
** and of its own task returns "cancelled".  Its task may end meanwhile: the
** caller keeps the memory of the scope alive. */
void owl_scope_cancel (owl_scope_t *sc);
/* Closes every cosocket of a scope (set by client/cosock.c). */
extern void (*owl_scope_close_socks) (owl_scope_t *sc);
/* A graceful stop began: pending timers run once, premature. */
void owl_threads_stopping (void);
/* The graceful timeout passed: every thread is cancelled. */
void owl_threads_cut (void);
/* Frees what the runtime holds at exit (timers). */
void owl_threads_teardown (void);
/* }====== */


struct owl_server {
  uv_loop_t *loop;
  lua_State *L;                 /* main state: callbacks run here */
  owl_options_t opt;
  uv_stream_t **listeners;
  unsigned char *listener_tls;  /* 1: listeners[i] speaks TLS */
  int nlisteners;
  owl_tls_ctx_t *tls;           /* the TLS listeners' context (SNI set) */
  owl_conns_t conns;            /* live connections (conn.c) */
  owl_req_t *reqs;              /* requests not released yet (their body
                                   buffers are freed at exit) */
  uint64_t next_id;             /* owin.RequestId counter */
  char id_prefix[40];           /* owin.RequestId before the counter: "<boot>-"
                                   or, in a worker, "<boot>-<id>.<generation>-" */
  int app_ref;                  /* the composed AppFunc */
  int keys_ref;                 /* array of interned env key strings */
  int env_mt_ref;               /* metatable shared by every env */
  int disposing_ref;            /* host.OnAppDisposing token */
  int stopping;
  uv_timer_t grace_timer;
  uv_timer_t idle_timer;         /* closes idle connections after a stop signal */
  uv_signal_t sigint, sigterm, sighup;
  uv_check_t accept_check;      /* a worker's accepts, one per iteration */
  uv_timer_t refused_timer;     /* ends a second of logged server answers */
  uint64_t refused_window;      /* loop time the current second began */
  unsigned refused_logged;      /* lines written in that second */
  unsigned refused_suppressed;  /* and those left out */
  unsigned ncut;                /* connections cut at the graceful timeout */
  int worker_id;                /* OWINLUA_WORKER_ID in a worker, else 0 */
  owl_buf_t hbuf;               /* scratch for serializing response headers */
  lua_State *pool[OWL_POOL_MAX];
  int pool_ref[OWL_POOL_MAX];
  int npool;
  unsigned nthreads;            /* threads and timer runs alive (thread.c) */
  struct owl_timer *timers;     /* pending timers (thread.c) */
  unsigned ntimers;
  int threads_cut;              /* the graceful timeout passed: stop waiting */
};

extern owl_server_t owl_srv;


/* {====== the request, as the handlers and the request cycle share it */

/*
** The response, as one state.  It only moves forward:
**   R_OPEN       status and headers may change.
**   R_COMMITTED  OnSendingHeaders ran; status and headers are frozen (a
**                change raises "headers already sent"); the first body
**                bytes are held in the connection (owl_req_commit).
**   R_SENT       the status line and headers went to the connection, or it
**                was gone; body bytes go straight out (owl_req_serialize).
**   R_DONE       the app returned and the body is framed to its end, or the
**                request ended without finishing (an error, a detach).
**   R_UPGRADED   a 101 went out and a socket took the connection.
** OPEN -> COMMITTED -> SENT -> DONE is the life of an answer; COMMITTED ->
** SENT -> UPGRADED that of a 101; any state before DONE may go to DONE.
*/
enum owl_resp { R_OPEN, R_COMMITTED, R_SENT, R_DONE, R_UPGRADED };

#define OWL_COMMITTED(r) ((r)->resp >= R_COMMITTED)
#define OWL_SENT(r) ((r)->resp >= R_SENT)
#define OWL_ENDED(r) ((r)->resp >= R_DONE)

struct owl_req {
  owl_task_t task;
  owl_scope_t scope;            /* its threads and cosockets */
  owl_conn_t *conn;             /* weak; NULL once the connection is gone */
  owl_req_t *prev, *next;       /* srv->reqs: requests still anchored by ref */
  int ref;                      /* registry ref anchoring this userdata */
  uint64_t id;
  int status;
  uint8_t method;
  uint8_t http_minor;
  unsigned resp : 3;            /* enum owl_resp */
  unsigned started : 1;         /* the app's coroutine was started */
  unsigned body_done : 1;       /* the whole request body has arrived */
  unsigned cancelled : 1;
  unsigned tls : 1;             /* came over TLS: owin.RequestScheme "https" */
  unsigned expect_continue : 1;
  unsigned continue_sent : 1;
  unsigned chunked : 1;         /* response framing */
  unsigned until_close : 1;
  unsigned no_body : 1;         /* HEAD, 1xx, 204, 304 */
  unsigned is_head : 1;
  unsigned read_all : 1;        /* a read("a") is waiting: do not pause */
  unsigned discard : 1;         /* the input stream was closed: the rest of
                                   the body is read and dropped */
  unsigned abort : 1;           /* the response cannot end well: cut the connection */
  unsigned head_live : 1;       /* conn->head still holds this request's head */
  unsigned upgrade_kind : 2;    /* websocket.Accept (1) or opaque.Upgrade (2) called */
  unsigned onend : 1;           /* server.OnRequestEnd callbacks are registered */
  unsigned hflags : 4;          /* OWL_HF_* of the response headers at commit */
  int read_err;                 /* 0 or a libuv error for body reads */
  int64_t content_length;       /* set by the app, -1 if not */
  uint64_t body_in;             /* request body bytes received */
  uint64_t written;             /* response body bytes written by the app */
  size_t want;                  /* bytes asked by the waiting read */
  owl_buf_t body;               /* request body received, not yet read */
};

/* Moves r to state st if it is behind it. */
static inline void owl_req_reach (owl_req_t *r, enum owl_resp st) {
  if (r->resp < st)
    r->resp = st;
}


/* The request task t runs for (its own, or a thread's of it), or NULL. */
static inline owl_req_t *owl_task_req (owl_task_t *t) {
  if (t == NULL || t->scope == NULL || !t->scope->is_req)
    return NULL;
  return (owl_req_t *)((char *)t->scope - offsetof(owl_req_t, scope));
}

/* }====== */


/* {====== headers tables (headers.c) */
void owl_open_headers (lua_State *L);
/* Pushes a headers table; canon: names spelled Canonical-Case by default
** (response headers), else lowercase (request headers). */
int owl_headers_new (lua_State *L, int narr, int canon);
void owl_headers_canonical (char *dst, const char *lname, size_t n);
int owl_headers_is (lua_State *L, int idx);
/* Flags of a headers table: the default spelling is Canonical-Case; sent;
** content-length or connection was set; a names table exists. */
#define OWL_HF_CANON 1
#define OWL_HF_FROZEN 2
#define OWL_HF_SPECIAL 4
#define OWL_HF_NAMED 8
/* Freezes the headers table at idx; returns its flags (0 if not one). */
int owl_headers_freeze (lua_State *L, int idx);
/* Pushes the store and the names table (or nil) of the table at idx. */
void owl_headers_store (lua_State *L, int idx, int flags);
void owl_headers_from (lua_State *L, int idx);      /* pushes a copy */
/* Lowercase header names the server looks at, interned at start-up and
** kept referenced: a store key is one of them when its pointer is. */
enum { OWL_HN_CONTENT_LENGTH, OWL_HN_TRANSFER_ENCODING, OWL_HN_CONNECTION,
       OWL_HN_DATE, OWL_HN_SERVER, OWL_HN_N };
extern const char *owl_hname[OWL_HN_N];
/* Pushes the values array (or nil) of header owl_hname[which] from the
** headers table at idx. */
void owl_headers_rawget (lua_State *L, int idx, int which);
/* Appends value to header lname at idx (table left unchanged on the stack). */
void owl_headers_add (lua_State *L, int idx, const char *lname, size_t nlen,
                      const char *v, size_t vlen);

/* }====== */


/* {====== runtime.c */
void owl_open_runtime (lua_State *L);
void owl_newclass (lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction tostring, lua_CFunction gc);
void owl_token_new (lua_State *L);                  /* pushes a token */
void owl_token_fire (lua_State *L, int idx);
/* Closes h if it is an owin.sleep timer; returns 1 then. */
int owl_sleep_dispose (uv_handle_t *h);
/* owin.semaphore (sem.c): opens it; closes a waiter's timer at exit. */
void owl_open_sem (lua_State *L);
int owl_sem_dispose (uv_handle_t *h);
/* Pushes nil, "cancelled": what a wait of a cancelled task returns. */
int owl_push_cancelled (lua_State *L);
/* Pushes nil, err; returns 2: the failure of an operation on the outside. */
int owl_push_error (lua_State *L, const char *err);
/*
** For a cancelled task: lets the loop run once (a zero timer), then k(L,
** ctx) gives the answer.  A wait of a cancelled task returns "cancelled"
** without waiting for its event, but never without yielding: an app that
** ignores the answer and waits again in a loop must not hold the worker
** (the graceful timeout still fires and ends it).
*/
int owl_task_pause (lua_State *L, owl_task_t *t, lua_KContext ctx, lua_KFunction k);
/* A continuation that returns nil, "cancelled". */
int owl_cancelled_k (lua_State *L, int status, lua_KContext ctx);

/* }====== */


/* {====== log lines (runtime.c) */

/* "2026-01-02T03:04:05Z [info] worker 2: [<request id>] message" on stderr. */
enum { OWL_LOG_DEBUG, OWL_LOG_INFO, OWL_LOG_WARN, OWL_LOG_ERROR };
/* Who writes: "" (one process), "master: " or "worker 2: ". */
extern char owl_log_who[32];
void owl_log (int level, const char *reqid, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Writes the owin.RequestId of request number n into buf; returns its length. */
size_t owl_req_idstr (uint64_t n, char *buf, size_t len);
void owl_log_always (int level, const char *reqid, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Lines about answers the server made itself (errors it answered, responses
** it cut): 1 when one of level may be written now (at most a few a second;
** the rest are counted and summed up). */
int owl_log_refused_ok (int level);
/* Writes the summary of the lines left out, if any. */
void owl_log_refused_flush (void);
/* }====== */

#endif
