/*
** WebSockets and the opaque upgrade: a connection that answered 101.
**
** The protocol is ws.c's (a pure codec); this file joins it to the
** connection and to Lua.  A socket is a userdata ("owinlua.WebSocket", or
** "owinlua.OpaqueStream" after opaque.Upgrade) holding an owl_wsock_t;
** its user values are:
*/
#define WV_ENV     1   /* the raw OWIN websocket env (websocket.* keys),
                          made when first asked for (getenv) */
#define WV_CANCEL  2   /* its CallCancelled token, made when first asked
                          for (gettoken): an idle socket of the adapter
                          holds neither */
#define WV_REQ     3   /* the request it came from (anchor) */
#define NWV        3
/*
** Ownership: the connection points to its socket (its handler's data, see
** conn.h) and the socket back (w->conn, weak: cleared when the connection
** closes).  A registry
** ref (w->ref) keeps the userdata alive while the connection is open; after
** that the GC frees it, and __gc releases the codec and queued messages.
**
** Received messages wait in a queue (copied out of the read buffer) until
** the app takes them; reading from the socket stops while the queue holds
** more than WS_QUEUE_HIGH bytes.  Any coroutine may send; a sender waits
** (yields) while more than OWL_OUT_HIGH bytes are unsent.  Tasks waiting on
** a socket (a receive, a drain, a close) are all woken on any change and
** look again at its state.
*/

#include <stdlib.h>
#include <string.h>

#include "http/websocket.h"
#include "http/http1.h"
#include "codec/ws.h"

#define WS_T "owinlua.WebSocket"
#define RAW_T "owinlua.OpaqueStream"
#define WS_QUEUE_HIGH (1024 * 1024)
#define MAXWAIT 64

enum { W_NONE, W_PING, W_PONG, W_CLOSE };   /* what the timer waits for */


typedef struct wsmsg {
  struct wsmsg *next;
  int opcode;
  size_t len;
  char data[];
} wsmsg_t;


struct owl_wsock {
  owl_conn_t *conn;             /* weak; NULL once the connection is gone */
  owl_ws_conn_t codec;
  int ref;                      /* registry ref while the connection lives */
  wsmsg_t *head, *tail;         /* received messages, owned */
  size_t queued;
  owl_buf_t rawin;              /* opaque: received bytes not read yet */
  owl_task_t **wait;            /* tasks waiting on this socket: wait0, or
                                   malloc'd when more than 2 wait, owned */
  owl_task_t *wait0[2];
  uint64_t last_rx;             /* loop time of the last frame received */
  char *reason;                 /* the peer's close reason, malloc'd when a
                                   close frame brings one, owned */
  unsigned client_code;
  unsigned fail_code;           /* a protocol violation: the close code to
                                   send once the messages before it are
                                   taken (0: none) */
  unsigned char nwait, wcap;
  unsigned char timer;          /* W_* */
  unsigned char reason_len;
  unsigned raw : 1;             /* opaque: bytes, no framing */
  unsigned close_sent : 1;
  unsigned close_rcvd : 1;
  unsigned shutting : 1;        /* server shutdown: 1001 sent */
  unsigned in_drive : 1;        /* handling a read: wake no sender from settle */
};


static void gettoken (lua_State *L, int idx);
static void pushenv (lua_State *L, int idx);


static owl_wsock_t *checkws (lua_State *L, int idx) {
  owl_wsock_t *w = luaL_testudata(L, idx, WS_T);
  if (w == NULL)
    w = luaL_checkudata(L, idx, RAW_T);
  return w;
}


/* Pushes nil, "ENAME: message", "ENAME"; returns 3. */
static int failure (lua_State *L, int err, const char *what) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), what);
  lua_pushstring(L, uv_err_name(err));
  return 3;
}


/* {====== waiting */

/* Wakes every task waiting on w; each looks again at w's state. */
void owl_wsock_wake (owl_wsock_t *w) {
  owl_task_t *t[MAXWAIT];
  int n = w->nwait;
  memcpy(t, w->wait, (size_t)n * sizeof t[0]);
  w->nwait = 0;
  for (int i = 0; i < n; i++)
    if (t[i]->wait == OWL_WAIT_WS)
      owl_task_resume(t[i], 0);
}


/* An interrupted task (killed, cancelled) stops waiting on w. */
static void ws_unwait (owl_task_t *t) {
  owl_wsock_t *w = t->wait_on;
  for (int i = 0; i < w->nwait; i++)
    if (w->wait[i] == t) {
      w->wait[i] = w->wait[--w->nwait];
      break;
    }
}


/* Yields the running task until w changes; k continues. */
static int wait (lua_State *L, owl_wsock_t *w, lua_KContext ctx, lua_KFunction k) {
  owl_task_t *t = owl_task_check(L, "websocket");
  if (w->nwait == w->wcap) {
    if (w->wcap == MAXWAIT)
      return luaL_error(L, "too many coroutines waiting on one WebSocket");
    owl_task_t **a = malloc((size_t)w->wcap * 2 * sizeof *a);
    if (a == NULL)
      return luaL_error(L, "not enough memory");
    memcpy(a, w->wait, (size_t)w->nwait * sizeof *a);
    if (w->wait != w->wait0)
      free(w->wait);
    w->wait = a;
    w->wcap *= 2;
  }
  w->wait[w->nwait++] = t;
  return owl_task_wait(L, t, OWL_WAIT_WS, ws_unwait, w, ctx, k);
}
/* }====== */


/* {====== output */

static int put (void *ud, const char *head, size_t hlen, const char *data,
                size_t dlen) {
  owl_conn_t *c = ud;
  char *to = owl_conn_reserve(c, hlen + dlen);
  if (to == NULL)
    return OWL_WS_ENOMEM;
  memcpy(to, head, hlen);
  memcpy(to + hlen, data, dlen);
  owl_conn_commit(c, hlen + dlen);
  return 0;
}


/* Queues one frame; 0 or a negative code. */
static int frame (owl_wsock_t *w, int opcode, int fin, const char *p, size_t n,
                  int compress) {
  owl_conn_t *c = w->conn;
  if (c == NULL || owl_conn_closing(c))
    return UV_EPIPE;
  if (w->raw)
    return owl_conn_append(c, p, n);
  return owl_ws_send(&w->codec, opcode, fin, p, n, compress, put, c);
}


static void send_close (owl_wsock_t *w, unsigned code, const char *reason,
                        size_t len) {
  char payload[125];
  size_t n = 0;
  if (w->close_sent || w->raw)
    return;
  if (code != OWL_WS_NO_STATUS)
    n = owl_ws_close_payload(payload, code, reason, len);
  if (frame(w, OWL_WS_CLOSE, 1, payload, n, 0) == 0) {
    w->close_sent = 1;
    if (w->conn)
      owl_conn_flush(w->conn);
  }
}
/* }====== */


/* {====== input */

/*
** Answers the peer's close frame (its code echoed), or fails the
** connection after a protocol violation (its code), and closes after it.
*/
static void reply_close (owl_wsock_t *w) {
  if (w->fail_code)
    send_close(w, w->fail_code, NULL, 0);
  else
    send_close(w, w->client_code == OWL_WS_NO_STATUS || w->client_code == 1006 ?
               OWL_WS_NORMAL : w->client_code, NULL, 0);
  if (w->conn)
    owl_conn_close_after(w->conn);
}


static int on_message (void *ud, int opcode, const char *data, size_t len) {
  owl_wsock_t *w = ud;
  wsmsg_t *m = malloc(sizeof *m + len);
  if (m == NULL)
    return -OWL_WS_INTERNAL;
  m->next = NULL;
  m->opcode = opcode;
  m->len = len;
  memcpy(m->data, data, len);
  if (w->tail)
    w->tail->next = m;
  else
    w->head = m;
  w->tail = m;
  w->queued += len;
  return OWL_WS_GO;
}


static int on_control (void *ud, int opcode, const char *data, size_t len) {
  owl_wsock_t *w = ud;
  if (opcode == OWL_WS_PING)
    frame(w, OWL_WS_PONG, 1, data, len, 0);   /* automatic pong */
  else if (opcode == OWL_WS_CLOSE) {
    w->close_rcvd = 1;
    w->client_code = owl_ws_close_code(data, len);
    if (len > 2 && w->reason == NULL &&
        (w->reason = malloc(len - 2)) != NULL) {   /* none if out of memory */
      w->reason_len = (unsigned char)(len - 2);     /* at most 123 */
      memcpy(w->reason, data + 2, w->reason_len);
    }
    /* echo the code (RFC 6455 5.5.1) once the app has taken the messages
    ** that came before the close (it may still answer them); then the TCP
    ** close is ours */
    if (w->head == NULL)
      reply_close(w);
  }
  return OWL_WS_GO;
}


static const owl_ws_events events = { on_message, on_control };


static void settle (owl_wsock_t *w);


/* Bytes from the peer (the read buffer, or what HTTP parsing left). */
static void on_bytes (owl_wsock_t *w, char *p, size_t n) {
  owl_conn_t *c = w->conn;
  w->last_rx = uv_now(owl_srv.loop);
  if (w->timer == W_PONG)
    w->timer = W_NONE;
  if (w->raw) {
    if (owl_buf_append(&w->rawin, p, n))
      owl_conn_close(c);
  }
  else if (!w->close_rcvd) {
    long r = owl_ws_feed(&w->codec, p, n, &events, w);
    if (r < 0) {                            /* fail the connection (7.1.7) */
      unsigned code = (unsigned)-r;
      w->fail_code = owl_ws_close_valid(code) ? code : OWL_WS_INTERNAL;
      w->close_rcvd = 1;                    /* read no more */
      w->client_code = 1006;
      /* frames are handled in order: messages complete before the
      ** violation reach the app, and what it sends for them goes out
      ** before the close (recv_k sends it once the queue is empty) */
      if (w->head == NULL)
        reply_close(w);
    }
  }
  w->in_drive = 1;
  owl_wsock_wake(w);
  w->in_drive = 0;
  settle(w);
}


/* Reading stops while the app is behind; the timer pings idle peers. */
static void settle (owl_wsock_t *w) {
  owl_conn_t *c = w->conn;
  owl_options_t *o = &owl_srv.opt;
  if (c == NULL || owl_conn_closing(c))
    return;
  owl_conn_flush(c);
  if (owl_conn_closing(c))
    return;
  if (w->nwait > 0 && !w->in_drive && owl_conn_pending(c) <= OWL_OUT_LOW) {
    owl_wsock_wake(w);                      /* a sender may go on: the kernel */
    if (w->conn == NULL || owl_conn_closing(c))   /* took it all, no write */
      return;                               /* callback will come */
  }
  if (owl_conn_closes_after(c) && owl_conn_pending(c) == 0 &&
      (w->close_rcvd || w->raw)) {
    owl_conn_close(c);                      /* the handshake is over */
    return;
  }
  owl_conn_reading(c, (w->raw ? w->rawin.len : w->queued) < WS_QUEUE_HIGH &&
                      !w->close_rcvd);
  owl_conn_trim(c);                         /* an idle socket keeps no buffers */
  if ((w->close_sent || w->close_rcvd) && w->timer != W_CLOSE) {
    w->timer = W_CLOSE;                     /* the peer's close, or our reply */
    owl_conn_timer(c, o->ws_close_timeout);
  }
  else if (w->timer == W_NONE && o->ws_ping_interval && !w->raw) {
    w->timer = W_PING;
    owl_conn_timer(c, o->ws_ping_interval);
  }
}


/* {====== the handler */

#define WSOCK(c) ((owl_wsock_t *)owl_conn_data(c))

static void on_read (owl_conn_t *c, char *p, size_t n) {
  on_bytes(WSOCK(c), p, n);
}


static void on_eof (owl_conn_t *c, int err) {
  (void)err;
  owl_conn_close(c);
}


static void on_drain (owl_conn_t *c) {
  owl_wsock_t *w = WSOCK(c);
  if (owl_conn_pending(c) <= OWL_OUT_LOW)
    owl_wsock_wake(w);
  settle(w);
}


static void on_timer (owl_conn_t *c) {
  owl_wsock_t *w = WSOCK(c);
  owl_options_t *o = &owl_srv.opt;
  uint64_t now = uv_now(owl_srv.loop);
  switch (w->timer) {
    case W_PING:
      if (now - w->last_rx < o->ws_ping_interval) {
        owl_conn_timer(c, o->ws_ping_interval - (now - w->last_rx));
        return;                             /* the peer spoke meanwhile */
      }
      frame(w, OWL_WS_PING, 1, "", 0, 0);
      w->timer = W_PONG;
      owl_conn_timer(c, o->ws_ping_timeout);
      owl_conn_flush(c);
      return;
    case W_CLOSE:
      if (w->close_rcvd && !w->close_sent) {  /* the app never came back */
        reply_close(w);
        w->timer = W_NONE;
        settle(w);                          /* closes once written */
        return;
      }
      owl_conn_close(c);                    /* no close frame came back */
      return;
    case W_PONG:                            /* no answer: the peer is gone */
      owl_conn_close(c);
      return;
  }
}


static void detach (owl_wsock_t *w);
static void shutdown_ (owl_wsock_t *w);


static void on_close (owl_conn_t *c) {
  detach(WSOCK(c));
}


static void on_stop (owl_conn_t *c) {
  shutdown_(WSOCK(c));
}


static int is_idle (owl_conn_t *c) {
  (void)c;
  return 0;                                 /* closed by the close handshake */
}


static const owl_handler_t ws_handler = {
  on_read, on_eof, on_drain, on_timer, on_close, NULL, on_stop, is_idle
};
/* }====== */


/*
** Cancels the waits of the request whose handler runs on the socket at
** idx (its cosockets, threads, sleep), if that handler still runs.
*/
static void cancel_handler (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, WV_REQ);
  owl_req_t *r = lua_touserdata(L, -1);
  if (r != NULL && r->ref != LUA_NOREF && !r->scope.cancelled)
    owl_scope_cancel(&r->scope);            /* r is pinned on the stack */
  lua_pop(L, 1);
}


/* The connection closed: fire CallCancelled, wake the waiting tasks. */
static void detach (owl_wsock_t *w) {
  lua_State *L = owl_srv.L;
  w->conn = NULL;
  if (!w->close_rcvd)
    w->client_code = 1006;                  /* abnormal closure */
  w->close_rcvd = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
  if (lua_getiuservalue(L, -1, WV_CANCEL) == LUA_TTABLE)
    owl_token_fire(L, -1);
  lua_pop(L, 1);
  cancel_handler(L, -1);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
  w->ref = LUA_NOREF;
  owl_wsock_wake(w);
}


/* Graceful shutdown: close 1001 to the peer, CallCancelled to the app. */
static void shutdown_ (owl_wsock_t *w) {
  lua_State *L = owl_srv.L;
  if (w->shutting)
    return;
  w->shutting = 1;
  if (w->raw) {
    owl_conn_close(w->conn);
    return;
  }
  send_close(w, 1001, "server shutting down", 20);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
  if (lua_getiuservalue(L, -1, WV_CANCEL) == LUA_TTABLE)
    owl_token_fire(L, -1);
  lua_pop(L, 1);
  cancel_handler(L, -1);
  lua_pop(L, 1);
  owl_wsock_wake(w);
  settle(w);
}
/* }====== */


/* {====== Lua methods */

/* Pushes the close result: nil, 8, code, reason. */
static int closed (lua_State *L, owl_wsock_t *w) {
  lua_pushnil(L);
  lua_pushinteger(L, OWL_WS_CLOSE);
  lua_pushinteger(L, w->client_code);
  lua_pushlstring(L, w->reason ? w->reason : "", w->reason_len);
  return 4;
}


/*
** Receive continuation: stack [socket].  ctx 1: the raw OWIN shape
** (data, type, fin; a close is "", 8, true and fills the env's
** ClientCloseStatus/Description); ctx 0: data, opcode, or
** nil, 8, close code, reason once closed.
*/
static int recv_k (lua_State *L, int status, lua_KContext ctx) {
  owl_wsock_t *w = checkws(L, 1);
  wsmsg_t *m = w->head;
  (void)status;
  if (m != NULL) {
    w->head = m->next;
    if (w->head == NULL)
      w->tail = NULL;
    w->queued -= m->len;
    lua_pushlstring(L, m->data, m->len);
    lua_pushinteger(L, m->opcode);
    free(m);
    if (w->conn)
      settle(w);                  /* reading may go on */
    if (!ctx)
      return 2;
    lua_pushboolean(L, 1);                  /* whole messages: always fin */
    return 3;
  }
  if (!w->close_rcvd && w->conn != NULL)
    return wait(L, w, ctx, recv_k);
  if (w->conn != NULL && !w->close_sent) {
    reply_close(w);                         /* the app has seen everything */
    settle(w);
  }
  if (!ctx)
    return closed(L, w);
  pushenv(L, 1);
  lua_pushinteger(L, w->client_code);
  lua_setfield(L, -2, "websocket.ClientCloseStatus");
  lua_pushlstring(L, w->reason ? w->reason : "", w->reason_len);
  lua_setfield(L, -2, "websocket.ClientCloseDescription");
  lua_pushliteral(L, "");
  lua_pushinteger(L, OWL_WS_CLOSE);
  lua_pushboolean(L, 1);
  return 3;
}


/*
** ws:receive() -> data, opcode (1 text, 2 binary), or, once closed,
** nil, 8, close code (1006 when the connection just dropped), reason.
*/
static int ws_receive (lua_State *L) {
  checkws(L, 1);
  lua_settop(L, 1);
  return recv_k(L, LUA_OK, 0);
}


static int drained_k (lua_State *L, int status, lua_KContext ctx) {
  owl_wsock_t *w = checkws(L, 1);
  (void)status;
  (void)ctx;
  if (w->conn == NULL)
    return failure(L, UV_EPIPE, "the WebSocket is closed");
  if (owl_conn_pending(w->conn) > OWL_OUT_LOW && owl_task_can_wait(L))
    return wait(L, w, 0, drained_k);
  lua_settop(L, 1);
  return 1;
}


/* After queueing output: flush, then wait while too much is pending. */
static int backpressure (lua_State *L, owl_wsock_t *w) {
  owl_conn_t *c = w->conn;
  if (!w->in_drive)
    owl_conn_flush(c);
  if (w->conn && owl_conn_pending(c) >= OWL_OUT_HIGH && owl_task_can_wait(L))
    return wait(L, w, 0, drained_k);
  lua_settop(L, 1);
  return 1;
}


/*
** ws:send(data [, opcode [, fin]]) -> ws, or nil, err, code.  opcode 1
** (text, the default for strings) or 2 (binary); fin false sends a
** fragment of a message that later sends continue.
*/
static int ws_send (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  int opcode = (int)luaL_optinteger(L, 3, OWL_WS_TEXT);
  int fin = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  luaL_argcheck(L, opcode == OWL_WS_TEXT || opcode == OWL_WS_BINARY ||
                opcode == OWL_WS_CONT, 3, "1 (text), 2 (binary) or 0 (continuation)");
  if (w->conn == NULL || w->close_sent)
    return failure(L, UV_EPIPE, "the WebSocket is closed");
  if (w->codec.out_op && opcode != OWL_WS_CONT)
    opcode = OWL_WS_CONT;                   /* OWIN: later fragments keep the type */
  int err = frame(w, opcode, fin, p, n, w->codec.pmd.enabled && opcode != OWL_WS_CONT);
  if (err == OWL_WS_EINVAL)
    return luaL_error(L, "cannot send this frame now (a fragmented message is open?)");
  if (err)
    return failure(L, err < 0 ? err : UV_EPIPE, "cannot send");
  return backpressure(L, w);
}


/* ws:ping([data]) -> ws */
static int ws_ping (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  size_t n;
  const char *p = luaL_optlstring(L, 2, "", &n);
  luaL_argcheck(L, n <= 125, 2, "a ping carries at most 125 bytes");
  if (w->conn == NULL || w->close_sent)
    return failure(L, UV_EPIPE, "the WebSocket is closed");
  frame(w, OWL_WS_PING, 1, p, n, 0);
  return backpressure(L, w);
}


static int close_k (lua_State *L, int status, lua_KContext ctx) {
  owl_wsock_t *w = checkws(L, 1);
  (void)status;
  (void)ctx;
  if (w->conn != NULL && !w->close_rcvd)
    return wait(L, w, 0, close_k);          /* the peer's close, or timeout */
  if (w->conn != NULL)
    owl_conn_close(w->conn);
  lua_pushboolean(L, 1);
  return 1;
}


/*
** ws:close([code [, reason]]) -> true: sends a close frame (1000 by
** default), waits for the peer's close (at most --ws-close-timeout), and
** closes the connection.
*/
static int ws_close (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, OWL_WS_NORMAL);
  size_t n;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  luaL_argcheck(L, owl_ws_close_valid((unsigned)code), 2,
                "a close code RFC 6455 allows (1000-1003, 1007-1014, 3000-4999)");
  luaL_argcheck(L, n <= 123, 3, "a close reason has at most 123 bytes");
  lua_settop(L, 1);
  if (w->conn == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (w->raw) {
    owl_conn_close_after(w->conn);          /* after what was written */
    settle(w);
    lua_pushboolean(L, 1);
    return 1;
  }
  send_close(w, (unsigned)code, reason, n);
  settle(w);
  if (!owl_task_can_wait(L)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return close_k(L, LUA_OK, 0);
}


/* ws:state() -> "open", "closing" or "closed" */
/*
** __close, for `local ws <close> = ...`: starts the close handshake without
** waiting for it (1000, or 1011 when the scope ends with an error); an
** opaque stream closes after what was written.
*/
static int ws_tbc (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  if (w->conn == NULL)
    return 0;
  if (w->raw)
    owl_conn_close_after(w->conn);
  else
    send_close(w, lua_isnoneornil(L, 2) ? OWL_WS_NORMAL : OWL_WS_INTERNAL, NULL, 0);
  settle(w);
  return 0;
}


static int ws_state (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  lua_pushstring(L, w->conn == NULL ? "closed" :
                 (w->close_sent || w->close_rcvd) ? "closing" : "open");
  return 1;
}


/* ws:cancelled() -> the CallCancelled token of the socket */
static int ws_token (lua_State *L) {
  checkws(L, 1);
  gettoken(L, 1);
  return 1;
}


/* ws:env() -> the raw OWIN websocket env */
static int ws_env (lua_State *L) {
  checkws(L, 1);
  pushenv(L, 1);
  return 1;
}


static int raw_read_k (lua_State *L, int status, lua_KContext ctx) {
  owl_wsock_t *w = checkws(L, 1);
  (void)status;
  if (w->rawin.len > 0) {
    size_t n = w->rawin.len < (size_t)ctx ? w->rawin.len : (size_t)ctx;
    lua_pushlstring(L, w->rawin.base, n);
    owl_buf_consume(&w->rawin, n);
    if (w->conn)
      settle(w);
    return 1;
  }
  if (w->conn == NULL) {
    lua_pushnil(L);
    return 1;
  }
  return wait(L, w, ctx, raw_read_k);
}


/* stream:read([n]) -> up to n bytes (default 64 KiB), nil once closed */
static int raw_read (lua_State *L) {
  checkws(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, n > 0, 2, "byte count must be positive");
  lua_settop(L, 1);
  return raw_read_k(L, LUA_OK, (lua_KContext)n);
}


/* stream:write(...) -> stream, or nil, err, code */
static int raw_write (lua_State *L) {
  owl_wsock_t *w = checkws(L, 1);
  int top = lua_gettop(L);
  for (int i = 2; i <= top; i++) {
    size_t n;
    const char *p = luaL_checklstring(L, i, &n);
    int err = frame(w, 0, 1, p, n, 0);
    if (err)
      return failure(L, err < 0 ? err : UV_EPIPE, "the connection is closed");
  }
  if (w->conn == NULL)
    return failure(L, UV_EPIPE, "the connection is closed");
  return backpressure(L, w);
}


static int ws_gc (lua_State *L) {
  owl_wsock_t *w = lua_touserdata(L, 1);
  while (w->head) {
    wsmsg_t *m = w->head;
    w->head = m->next;
    free(m);
  }
  owl_ws_free(&w->codec);
  owl_buf_free(&w->rawin);
  free(w->reason);
  w->reason = NULL;
  w->reason_len = 0;
  if (w->wait != w->wait0)
    free(w->wait);
  w->wait = w->wait0;
  return 0;
}
/* }====== */


/* {====== the raw OWIN websocket env */

/* websocket.SendAsync(data, type, fin): upvalue 1 is the socket */
static int raw_send (lua_State *L) {
  lua_settop(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);                         /* ws, data, type, fin */
  if (lua_isnil(L, 3)) {
    lua_pushinteger(L, OWL_WS_TEXT);
    lua_replace(L, 3);
  }
  lua_Integer kind = lua_tointeger(L, 3);
  if (kind == OWL_WS_CLOSE) {               /* a close through SendAsync */
    lua_settop(L, 1);
    lua_pushinteger(L, OWL_WS_NORMAL);
    return ws_close(L);
  }
  return ws_send(L);
}


/* websocket.ReceiveAsync() -> data, type, fin (type 8 once closed) */
static int raw_recv (lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return recv_k(L, LUA_OK, 1);
}


/* websocket.CloseAsync(status, description) */
static int raw_closefn (lua_State *L) {
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_isnil(L, 2)) {
    lua_pushinteger(L, OWL_WS_NORMAL);
    lua_replace(L, 2);
  }
  return ws_close(L);
}


/* Builds the raw env of the socket at idx into its user value. */
/*
** Pushes the CallCancelled token of the socket at idx, made on first use:
** fired already when the connection is gone or the server shuts down.
*/
static void gettoken (lua_State *L, int idx) {
  owl_wsock_t *w = lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, WV_CANCEL) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  owl_token_new(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, WV_CANCEL);
  if (w->conn == NULL || w->shutting)
    owl_token_fire(L, -1);
}


/* Makes the raw OWIN env of the socket at idx (WV_ENV). */
static void raw_env (lua_State *L, int idx) {
  static const struct { const char *name; lua_CFunction f; } fns[] = {
    {"websocket.SendAsync", raw_send},
    {"websocket.ReceiveAsync", raw_recv},
    {"websocket.CloseAsync", raw_closefn},
  };
  idx = lua_absindex(L, idx);
  lua_createtable(L, 0, 8);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, fns[i].f, 1);
    lua_setfield(L, -2, fns[i].name);
  }
  lua_pushliteral(L, "1.0");
  lua_setfield(L, -2, "websocket.Version");
  gettoken(L, idx);
  lua_setfield(L, -2, "websocket.CallCancelled");
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "owinlua.WebSocket");
  lua_setiuservalue(L, idx, WV_ENV);
}


/* Pushes the raw OWIN env of the socket at idx, made on first use. */
static void pushenv (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, WV_ENV) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  raw_env(L, idx);
  lua_getiuservalue(L, idx, WV_ENV);
}
/* }====== */


/* {====== the upgrade */

/*
** Makes the socket for connection c (after the 101 went into c->out) and
** pushes it; feeds it what the HTTP parser had read past the request.
** req is the request userdata at index reqidx.
*/
void owl_wsock_new (lua_State *L, owl_conn_t *c, int reqidx, int raw,
                    const owl_ws_deflate_t *pmd) {
  owl_options_t *o = &owl_srv.opt;
  owl_ws_limits_t lim = { o->ws_max_message, o->ws_max_message };
  reqidx = lua_absindex(L, reqidx);
  owl_wsock_t *w = lua_newuserdatauv(L, sizeof *w, NWV);
  memset(w, 0, sizeof *w);
  w->ref = LUA_NOREF;
  w->raw = raw != 0;
  w->wait = w->wait0;
  w->wcap = 2;
  owl_ws_init(&w->codec, OWL_WS_SERVER, &lim, pmd);
  luaL_setmetatable(L, raw ? RAW_T : WS_T);
  lua_pushvalue(L, reqidx);
  lua_setiuservalue(L, -2, WV_REQ);
  lua_pushvalue(L, -1);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->conn = c;
  w->last_rx = uv_now(owl_srv.loop);
  owl_conn_set_handler(c, &ws_handler, w);
  owl_buf_t *in = owl_conn_kept(c);
  if (in->len > 0) {                        /* frames that came with the head */
    owl_buf_t left = *in;
    memset(in, 0, sizeof *in);
    on_bytes(w, left.base, left.len);
    owl_buf_free(&left);
  }
  else
    settle(w);
}


/*
** Pushes the argument of an upgrade callback for the socket at idx: its
** raw OWIN websocket env, or for an opaque upgrade the opaque env.
*/
void owl_wsock_env (lua_State *L, int idx, int raw) {
  idx = lua_absindex(L, idx);
  if (!raw) {
    pushenv(L, idx);
    return;
  }
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "opaque.Stream");
  lua_pushliteral(L, "1.0");
  lua_setfield(L, -2, "opaque.Version");
  gettoken(L, idx);
  lua_setfield(L, -2, "opaque.CallCancelled");
}


/* The app is done with the socket at idx: close it with code if open. */
void owl_wsock_end (lua_State *L, int idx, unsigned code) {
  owl_wsock_t *w = lua_touserdata(L, idx);
  if (w == NULL || w->conn == NULL)
    return;
  if (w->raw)
    owl_conn_close_after(w->conn);          /* once what was written is out */
  else if (w->close_rcvd)
    reply_close(w);                         /* the peer's close, unanswered */
  else
    send_close(w, code, NULL, 0);
  settle(w);
}


void owl_open_websocket (lua_State *L) {
  static const luaL_Reg ws_m[] = {
    {"receive", ws_receive},
    {"send", ws_send},
    {"ping", ws_ping},
    {"close", ws_close},
    {"state", ws_state},
    {"cancelled", ws_token},
    {"env", ws_env},
    {NULL, NULL}
  };
  static const luaL_Reg raw_m[] = {
    {"read", raw_read},
    {"write", raw_write},
    {"close", ws_close},
    {"state", ws_state},
    {"cancelled", ws_token},
    {NULL, NULL}
  };
  owl_newclass(L, WS_T, ws_m, NULL, ws_gc);
  owl_newclass(L, RAW_T, raw_m, NULL, ws_gc);
  for (int i = 0; i < 2; i++) {
    luaL_getmetatable(L, i ? RAW_T : WS_T);
    lua_pushcfunction(L, ws_tbc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
  }
}
/* }====== */
