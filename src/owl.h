/*
** owinlua: shared declarations of the C core.
**
** Three layers (see STYLE.md):
**   server   (server.c)  listeners, live connections, options, Date cache,
**                        coroutine pool, graceful shutdown;
**   conn     (http1.c)   one socket: llhttp parser, timer, input kept while
**                        the parser is paused, output buffers, flow control;
**   request  (request.c) the OWIN env, the app's coroutine and the response
**                        state (status, headers, framing).
** Body streams live in stream.c, header tables in headers.c, owin.now/sleep
** and cancellation tokens in runtime.c.
**
** Ownership, in one place:
** - owl_server_t is static in main.c for the life of the process.
** - owl_conn_t is malloc'd on accept and freed in the close callback of the
**   last of its two handles (stream and timer), never earlier.
** - owl_req_t is a Lua full userdata ("owinlua.Request"); a registry ref
**   (req->ref) keeps it alive while its coroutine runs, and it is linked in
**   srv->reqs for as long.  It has no __gc: a finalizer on every request made
**   each GC cycle keep a whole cycle of requests alive one cycle longer, and
**   the heap grew with the load.  Its one malloc'd buffer (req->body) is
**   freed where the ref is released (req_end, or detach of a request that
**   never started), or at exit for requests still in srv->reqs.  req->conn
**   is a weak pointer that the connection clears when it closes, and
**   conn->req is cleared when the response finishes.
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
#include "ws.h"

#define OWL_VERSION "0.1.0"

#define OWL_RBUF_SIZE   (64 * 1024)   /* the loop's one read buffer */
#define OWL_FIRST_BUF   (16 * 1024)   /* body held back to compute Content-Length */
#define OWL_BODY_HIGH   (64 * 1024)   /* unread request body that pauses reading */
#define OWL_OUT_HIGH    (256 * 1024)  /* unsent response bytes that pause the app */
#define OWL_OUT_LOW     (64 * 1024)   /* ... and let it go on again */
#define OWL_POOL_MAX    256           /* idle coroutines kept for reuse */


/* {====== growable byte buffer (buf.c) */

typedef struct owl_buf {
  char *base;
  size_t len, cap;
} owl_buf_t;

int owl_buf_reserve (owl_buf_t *b, size_t extra);
int owl_buf_append (owl_buf_t *b, const void *p, size_t n);
int owl_buf_insert (owl_buf_t *b, size_t at, const void *p, size_t n);
void owl_buf_consume (owl_buf_t *b, size_t n);
void owl_buf_free (owl_buf_t *b);
void owl_buf_drain (void);
char *owl_fmt_uint (char *end, uint64_t v, unsigned base);
#define OWL_BUF_MIN 4096
/* }====== */


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
typedef struct owl_conn owl_conn_t;
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
  owl_conn_t *conns;            /* live connections, doubly linked */
  owl_req_t *reqs;              /* requests not released yet (their body
                                   buffers are freed at exit) */
  unsigned nconns;
  unsigned nlinger;             /* connections closing after a last answer */
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
  char date[32];                /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  owl_buf_t hbuf;               /* scratch for serializing response headers */
  uint64_t date_sec;
  char rbuf[OWL_RBUF_SIZE];
  lua_State *pool[OWL_POOL_MAX];
  int pool_ref[OWL_POOL_MAX];
  int npool;
};

extern owl_server_t owl_srv;


/* {====== connection (http1.c) */

struct owl_conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_timer_t timer;
  llhttp_t parser;
  owl_server_t *srv;
  owl_conn_t *prev, *next;
  owl_req_t *req;               /* the request being served, or NULL */
  owl_wsock_t *ws;              /* after a 101: the socket (websocket.c) */
  owl_buf_t in;                 /* unparsed input kept while paused */
  owl_buf_t out;                /* framed output not yet handed to libuv */
  owl_buf_t wbuf;               /* output in flight in a uv_write */
  owl_buf_t head;               /* this request's target and header bytes */
  owl_buf_t fields;             /* size_t offsets into head: url, name, value... */
  size_t held;                  /* bytes at the end of out waiting for headers */
  size_t woff;                  /* bytes of wbuf already taken by uv_try_write */
  size_t head_bytes;
  uint64_t body_in;             /* body bytes of the current message */
  owl_chunked_t chunked;        /* decoder of a chunked request body */
  unsigned nreq;                /* requests answered on this connection */
  int hstate;                   /* where the parser is within a header line */
  unsigned char last;           /* last head byte scanned */
  char tail[3];                 /* the last 3 head bytes parsed before the
                                   current read (tail[2] the last) */
  const char *exec_at;          /* start of the bytes llhttp is parsing */
  unsigned char line_len;
  char line[48];                /* first bytes of the message, for errors */
  int nhandles;                 /* open libuv handles; freed at 0 */
  int err_status;               /* status chosen by a callback for a parse error */
  int timer_mode;
  uint64_t deadline;            /* loop time the timer_mode times out, 0: none */
  unsigned is_pipe : 1;
  unsigned reading : 1;
  unsigned writing : 1;
  unsigned closing : 1;         /* uv_close called */
  unsigned close_after : 1;     /* close once out is written */
  unsigned lingering : 1;       /* shut down, draining input before close */
  unsigned keepalive : 1;
  unsigned in_drive : 1;
  unsigned got_bytes : 1;       /* some bytes of a request have arrived */
  unsigned in_head : 1;         /* the parser is in a message head */
  unsigned want_chunked : 1;    /* the message has a chunked body */
  unsigned in_chunked : 1;      /* chunked.c is decoding the body */
  unsigned head_ready : 1;      /* paused at headers complete */
  unsigned msg_done : 1;        /* paused at message complete */
  unsigned nhost : 2;
  unsigned upgrade : 2;         /* 1: Connection: upgrade; 2: a valid WebSocket handshake */
  unsigned head_req : 1;        /* the message being parsed is a HEAD */
  unsigned proto_seen : 1;      /* its protocol name was checked */
};

void owl_conn_accept (uv_stream_t *listener);
/* Serves fd, a TCP socket accepted outside libuv (the queue drained at shutdown). */
void owl_conn_adopt (owl_server_t *s, uv_os_sock_t fd);
void owl_conn_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf);
void owl_conn_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
void owl_conn_timer (uv_timer_t *t);
void owl_conn_close (owl_conn_t *c);
void owl_conn_flush (owl_conn_t *c);
/* Runs the request/parse cycle after an app wait ended or the app finished. */
void owl_conn_continue (owl_conn_t *c);
/* Number of bytes waiting to go out on c. */
size_t owl_conn_pending (owl_conn_t *c);
/* Appends a large body piece, written straight from p as far as the
** socket takes it (the rest is copied). */
int owl_conn_write_through (owl_conn_t *c, const char *p, size_t n);
/* The status line + headers are about to precede the held body. */
int owl_conn_unhold (owl_conn_t *c, const char *head, size_t n);
/* Appends a response made by the server (errors); close: then close. */
void owl_conn_canned (owl_conn_t *c, int status, const char *extra,
                      const char *body, size_t blen, int close);
/* The response of c's request ended; keep: the connection may be reused. */
void owl_conn_request_done (owl_conn_t *c, int keep);
void owl_conn_resume_reading (owl_conn_t *c);
/* }====== */


/* {====== request (request.c) */

struct owl_req {
  owl_task_t task;
  owl_conn_t *conn;             /* weak; NULL once the connection is gone */
  owl_req_t *prev, *next;       /* srv->reqs: requests still anchored by ref */
  int ref;                      /* registry ref anchoring this userdata */
  uint64_t id;
  int status;
  uint8_t method;
  uint8_t http_minor;
  unsigned started : 1;         /* the app's coroutine was started */
  unsigned committed : 1;       /* headers "sent": frozen for the app */
  unsigned serialized : 1;      /* status line and headers are in conn->out */
  unsigned finished : 1;        /* the app returned and the response ended */
  unsigned body_done : 1;       /* the whole request body has arrived */
  unsigned cancelled : 1;
  unsigned expect_continue : 1;
  unsigned continue_sent : 1;
  unsigned chunked : 1;         /* response framing */
  unsigned until_close : 1;
  unsigned no_body : 1;         /* HEAD, 1xx, 204, 304 */
  unsigned is_head : 1;
  unsigned read_all : 1;        /* a read("a") is waiting: do not pause */
  unsigned wire : 1;            /* some bytes of the response reached conn->out unheld */
  unsigned abort : 1;           /* the response cannot end well: cut the connection */
  unsigned head_live : 1;       /* conn->head still holds this request's head */
  unsigned upgrade_kind : 2;    /* websocket.Accept (1) or opaque.Upgrade (2) called */
  unsigned upgraded : 1;        /* the 101 went out: a socket took the connection */
  unsigned hflags : 4;          /* OWL_HF_* of the response headers at commit */
  int read_err;                 /* 0 or a libuv error for body reads */
  int64_t content_length;       /* set by the app, -1 if not */
  uint64_t body_in;             /* request body bytes received */
  uint64_t written;             /* response body bytes written by the app */
  size_t want;                  /* bytes asked by the waiting read */
  owl_buf_t body;               /* request body received, not yet read */
};

/* Builds the request from the parsed head and makes it c->req. */
int owl_req_begin (owl_conn_t *c);
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
void owl_wsock_on_read (owl_wsock_t *w, char *p, size_t n);
void owl_wsock_settle (owl_wsock_t *w);
void owl_wsock_on_timer (owl_wsock_t *w);
void owl_wsock_detach (owl_wsock_t *w);
void owl_wsock_shutdown (owl_wsock_t *w);
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
void owl_server_date (owl_server_t *s);
void owl_server_conn_gone (owl_server_t *s);
/* A graceful stop, as on SIGTERM (nothing if one is under way). */
void owl_server_stop (owl_server_t *s);
/* master.c: core.master, core.worker, core.worker_ready, core.cpus */
void owl_open_master (lua_State *L);
void owl_server_init (owl_server_t *s, lua_State *L);
int luaopen_owin_core (lua_State *L);
const char *owl_reason (int status);
/* }====== */


/* {====== log lines (server.c) */

/* "2026-01-02T03:04:05Z [info] worker 2: [<request id>] message" on stderr. */
enum { OWL_LOG_DEBUG, OWL_LOG_INFO, OWL_LOG_WARN, OWL_LOG_ERROR };
/* Who writes: "" (one process), "master: " or "worker 2: ". */
extern char owl_log_who[32];
void owl_log (int level, const char *reqid, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Writes the owin.RequestId of request number n into buf; returns its length. */
size_t owl_req_idstr (uint64_t n, char *buf, size_t len);
/* The server answered c itself with an error status (or cut it): logs the
** status, the reason and the client, at most a few lines a second. */
void owl_server_refused (owl_conn_t *c, int status);
/* }====== */

#endif
