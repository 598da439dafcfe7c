/*
** owinlua: the declarations the request cycle and the server share.  The
** layers, from the bottom (docs/ARCHITECTURE.md draws them):
**   codecs      buf.c, chunked.c, ws.c, ws_handshake.c, status.c: bytes in,
**               bytes out; no libuv, no Lua.
**   transport   transport.h, tcp.c: how bytes move (TCP today).
**   connection  conn.c: a transport, its output and timer, and the protocol
**               handler that reads it (struct private to conn.c).
**   handlers    http1.c (HTTP/1.1) and websocket.c (after a 101).
**   runtime     runtime.c (tasks, tokens, owin.sleep, the one owl_srv),
**               headers.c (headers tables).
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

#ifndef OWL_H
#define OWL_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include <llhttp.h>

#include "chunked.h"
#include "conn.h"
#include "status.h"
#include "ws.h"

#define OWL_VERSION "0.1.0"

#define OWL_FIRST_BUF   (16 * 1024)   /* body held back to compute Content-Length */
#define OWL_BODY_HIGH   (64 * 1024)   /* unread request body that pauses reading */
#define OWL_OUT_HIGH    (256 * 1024)  /* unsent response bytes that pause the app */
#define OWL_OUT_LOW     (64 * 1024)   /* ... and let it go on again */
#define OWL_POOL_MAX    256           /* idle coroutines kept for reuse */


#include "buf.h"


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
  char server_name[64];         /* "" leaves out the Server header */
} owl_options_t;

typedef struct owl_server owl_server_t;
typedef struct owl_req owl_req_t;
typedef struct owl_task owl_task_t;
typedef struct owl_wsock owl_wsock_t;


/* {====== tasks: coroutines the loop resumes (runtime.c) */

enum owl_wait {
  OWL_WAIT_NONE = 0,    /* running, or yielded outside our API */
  OWL_WAIT_READ,        /* request body bytes */
  OWL_WAIT_DRAIN,       /* output below the low-water mark */
  OWL_WAIT_SLEEP,       /* a timer */
  OWL_WAIT_WS           /* a change on a WebSocket (websocket.c) */
};

struct owl_task {
  lua_State *co;        /* the coroutine; its extra space points here */
  int co_ref;           /* registry ref anchoring co */
  int wait;             /* enum owl_wait */
  /* called after every lua_resume with its status; owns what follows */
  void (*after) (owl_task_t *t, int status);
};

/* Resumes t->co with the nargs values on top of its stack. */
void owl_task_resume (owl_task_t *t, int nargs);
/* The task running in L, or NULL when L is not one of ours. */
owl_task_t *owl_task_of (lua_State *L);
/* Yields the running task until owl_task_resume; returns lua_yield's value. */
int owl_task_wait (lua_State *L, owl_task_t *t, int wait);
/* }====== */


struct owl_server {
  uv_loop_t *loop;
  lua_State *L;                 /* main state: callbacks run here */
  owl_options_t opt;
  uv_stream_t **listeners;
  int nlisteners;
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
};

extern owl_server_t owl_srv;


/* {====== the HTTP/1.1 handler (http1.c), as the request cycle sees it */

/* What the handler calls in the request cycle (request.c sets them when
** owin.core opens, so that calls point down: the cycle uses the handler). */
typedef struct owl_req_ops {
  /* the head is parsed: builds the request, or NULL (out of memory) */
  owl_req_t *(*begin) (owl_conn_t *c);
  void (*start) (owl_req_t *r);                 /* the app's coroutine */
  void (*wake_reader) (owl_req_t *r);           /* body bytes or its end */
  void (*wake_writer) (owl_req_t *r);           /* the output drained */
  void (*detach) (owl_req_t *r, int err);       /* the connection failed */
} owl_req_ops_t;
extern owl_req_ops_t owl_h1_req;

void owl_h1_accept (uv_stream_t *listener);
/* Serves fd, a TCP socket accepted outside libuv (the queue drained at shutdown). */
void owl_h1_adopt (owl_server_t *s, uv_os_sock_t fd);
/* The parsed head: field 0 is the request-target, then a lowercase name
** and its value (OWS trimmed) for each header line. */
size_t owl_h1_nfields (owl_conn_t *c);
const char *owl_h1_field (owl_conn_t *c, size_t i, size_t *len);
int owl_h1_method (owl_conn_t *c);          /* llhttp_method_t */
int owl_h1_minor (owl_conn_t *c);           /* HTTP/1.x */
/* 1: Connection: upgrade with an Upgrade header; 2: a valid WebSocket handshake */
int owl_h1_upgrade (owl_conn_t *c);
/* The keep-alive decision: what the request said, until a response or the
** server says otherwise. */
int owl_h1_keepalive (owl_conn_t *c);
void owl_h1_no_keepalive (owl_conn_t *c);
/* Appends a response made by the server (errors); close: then close. */
void owl_h1_canned (owl_conn_t *c, int status, const char *extra,
                    const char *body, size_t blen, int close);
/* The response of c's request ended; keep: the connection may be reused. */
void owl_h1_request_done (owl_conn_t *c, int keep);
/* Runs the parse cycle after an app wait ended. */
void owl_h1_continue (owl_conn_t *c);
/* The request read some body: reading may go on. */
void owl_h1_resume_reading (owl_conn_t *c);
/* Flushes and decides what the connection waits for next. */
void owl_h1_settle (owl_conn_t *c);
/* A 101 went out: the connection is another handler's now. */
void owl_h1_upgraded (owl_conn_t *c);
/* }====== */


/* {====== request (request.c) */

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


/* Builds the request from the parsed head and makes it c->req. */
/* Anchors the request userdata on top of L (popped) while it runs. */
void owl_req_anchor (lua_State *L, owl_req_t *r);
/* The app returned: the body framed to its end (response.c). */
void owl_req_finish (lua_State *L, owl_req_t *r);
/* Starts the app's coroutine. */
void owl_req_start (owl_req_t *r);
/* Wakes a reader waiting for body bytes, end of body or an error. */
void owl_req_wake_reader (owl_req_t *r);
/* Wakes a writer waiting for the output to drain. */
void owl_req_wake_writer (owl_req_t *r);
/* The connection went away: fire CallCancelled, wake waiters with err. */
void owl_req_detach (owl_req_t *r, int err);
/* Fires the request's CallCancelled token if it was ever materialized. */
void owl_req_cancel (owl_req_t *r);
/* Commits/serializes/finishes (run inside the request coroutine). */
void owl_req_commit (lua_State *L, owl_req_t *r);
void owl_req_serialize (lua_State *L, owl_req_t *r, int final);
int owl_req_body_write (lua_State *L, owl_req_t *r, const char *p, size_t n);
/* Counts n body bytes against the app's Content-Length (raises past it). */
void owl_req_count (lua_State *L, owl_req_t *r, uint64_t n);
/* Appends the head of a chunk of n bytes; 0 or UV_ENOMEM. */
int owl_req_chunk_head (owl_conn_t *c, uint64_t n);
void owl_req_continue (owl_req_t *r);
void owl_open_request (lua_State *L);
/* Frees the body buffers of requests never released (at exit). */
void owl_req_drain (owl_server_t *s);
void owl_open_env (lua_State *L);
/* }====== */


/* {====== other areas */
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

void owl_open_stream (lua_State *L);
void owl_sendfile_push (lua_State *L, int ri);
void owl_open_fs (lua_State *L);

/* websocket.c: a connection after a 101 */
void owl_wsock_new (lua_State *L, owl_conn_t *c, int reqidx, int raw,
                    const owl_ws_deflate_t *pmd);
void owl_wsock_wake (owl_wsock_t *w);
void owl_wsock_env (lua_State *L, int idx, int raw);
void owl_wsock_end (lua_State *L, int idx, unsigned code);
void owl_open_websocket (lua_State *L);
/* upgrade.c: 101 answers */
void owl_upgrade_env (lua_State *L, owl_conn_t *c, int env, int ri);
int owl_upgrade_run (lua_State *L, owl_req_t *r);
void owl_upgrade_end (lua_State *L, owl_req_t *r, unsigned code);
void owl_open_upgrade (lua_State *L);
/* Pushes an input stream of r, whose userdata is on top. */
void owl_stream_push (lua_State *L, owl_req_t *r);

void owl_open_runtime (lua_State *L);
void owl_newclass (lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction tostring, lua_CFunction gc);
void owl_token_new (lua_State *L);                  /* pushes a token */
void owl_token_fire (lua_State *L, int idx);
/* Closes h if it is an owin.sleep timer; returns 1 then. */
int owl_sleep_dispose (uv_handle_t *h);

#define OWL_LISTEN_HOLD 2       /* bind and listen, accept nothing: the master */
#define OWL_LISTEN_FD 4         /* an inherited listening socket, "fd:N:tcp:..." or
                                   "fd:N:unix:/path" (a worker) */
/* Checks a listen spec without binding: 0 or UV_EINVAL. */
int owl_server_check_listen (const char *spec);
int owl_server_listen (owl_server_t *s, const char *spec, int flags,
                       char *out, size_t outlen);
int owl_server_listener_spec (owl_server_t *s, int i, char *out, size_t outlen);
void owl_server_unlisten (owl_server_t *s, int drain);
/* A graceful stop, as on SIGTERM (nothing if one is under way). */
void owl_server_stop (owl_server_t *s);
/* The same, as a signal: a second one while stopping stops at once. */
void owl_server_shutdown (owl_server_t *s);
/* master.c: core.master, core.worker, core.worker_ready, core.cpus */
void owl_open_master (lua_State *L);
void owl_server_init (owl_server_t *s, lua_State *L);
int luaopen_owin_core (lua_State *L);
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
