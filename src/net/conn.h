/*
** The connection: one transport (a TCP or unix socket today), its output
** buffers, its timer, and the protocol handler that reads it.
**
** A connection knows nothing of HTTP.  Bytes read are handed to its
** handler (HTTP/1.1 first; the 101 swaps in the WebSocket handler, as h2o
** and uvicorn do); what the handler and the request above it produce is
** appended to the output and written with one uv_try_write per event, the
** rest queued with uv_write.  The struct is private to conn.c: everything
** else goes through the functions below.
**
** Output.  The output buffer may end with bytes "held" back (the start of a
** response body whose headers are not serialized yet, so that a small
** response gets a Content-Length): they are not written until unheld.
**
** Ownership.  A connection is malloc'd on accept and freed in the close
** callback of the last of its two libuv handles (socket and timer), never
** earlier; the handler's on_free runs just before.  The handler's state
** lives in the same allocation (owl_conn_proto), so an accept costs one
** malloc.  Every pointer to a connection held elsewhere is weak and is
** cleared by the handler's on_close.
*/

#ifndef OWL_CONN_H
#define OWL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "codec/buf.h"
#include "net/tls.h"

typedef struct owl_conn owl_conn_t;

/*
** A protocol handler.  Every callback may close the connection; none may
** free it.
*/
typedef struct owl_handler {
  /* n > 0 bytes arrived; p is the loop's read buffer (valid until return) */
  void (*on_read) (owl_conn_t *c, char *p, size_t n);
  /* reading ended: UV_EOF, or a libuv error */
  void (*on_eof) (owl_conn_t *c, int err);
  /* a queued write completed and the output went on (less is pending) */
  void (*on_drain) (owl_conn_t *c);
  /* the connection's timer fired */
  void (*on_timer) (owl_conn_t *c);
  /* the connection is closing (uv_close was called): drop weak pointers */
  void (*on_close) (owl_conn_t *c);
  /* the memory is about to be freed: release the handler's buffers */
  void (*on_free) (owl_conn_t *c);
  /* the server stops gracefully: finish what is under way, then close */
  void (*on_stop) (owl_conn_t *c);
  /* nothing under way: the connection can be closed at once at a stop */
  int (*idle) (owl_conn_t *c);
} owl_handler_t;

/* The live connections of a server, and what tells it one is gone. */
typedef struct owl_conns {
  owl_conn_t *head;
  unsigned n;                   /* open, lingering ones included */
  unsigned nlinger;             /* closing after a last answer */
  void (*on_gone) (struct owl_conns *set);
} owl_conns_t;


/* {====== life */

/*
** A new connection in set: fd >= 0 is a TCP socket accepted by the caller,
** else one is taken from listener with uv_accept; tls (or NULL) makes it a
** TLS connection of that server context.  proto bytes of handler
** state (zeroed) come with it.  Returns NULL when it could not be made (the
** socket is closed).  The caller sets a handler before returning to the loop.
*/
owl_conn_t *owl_conn_new (uv_loop_t *loop, owl_conns_t *set, uv_stream_t *listener,
                          uv_os_sock_t fd, owl_tls_ctx_t *tls, size_t proto);
/* The handler's state, proto bytes (see owl_conn_new). */
void *owl_conn_proto (owl_conn_t *c);
/* Makes h the handler of c; data is its object (owl_conn_data), if any. */
void owl_conn_set_handler (owl_conn_t *c, const owl_handler_t *h, void *data);
const owl_handler_t *owl_conn_handler (owl_conn_t *c);
void *owl_conn_data (owl_conn_t *c);
/* The next live connection of the set after c (c NULL: the first). */
owl_conn_t *owl_conn_next (owl_conns_t *set, owl_conn_t *c);
/* Closes now; the handler's on_close runs at once, on_free later. */
void owl_conn_close (owl_conn_t *c);
int owl_conn_closing (owl_conn_t *c);
/* Close once everything queued is written. */
void owl_conn_close_after (owl_conn_t *c);
int owl_conn_closes_after (owl_conn_t *c);
void owl_conn_keep_open (owl_conn_t *c);   /* undoes close_after (a 101) */
/* All written and nothing more to say: FIN, then input is drained for a
** while (the peer reads the last answer) and the connection closes. */
void owl_conn_linger (owl_conn_t *c);
int owl_conn_lingering (owl_conn_t *c);
/* }====== */


/* {====== reading */

/* Reading on (1) or paused (0). */
void owl_conn_reading (owl_conn_t *c, int want);
/* Input read but not parsed yet, kept while the handler is paused. */
owl_buf_t *owl_conn_kept (owl_conn_t *c);
/* }====== */


/* {====== writing */

/* Bytes appended and not yet taken by the kernel, held ones included. */
size_t owl_conn_pending (owl_conn_t *c);
/* Appends n bytes to the output; 0 or UV_ENOMEM. */
int owl_conn_append (owl_conn_t *c, const void *p, size_t n);
/* Makes room for n more bytes at the end of the output and returns where
** they go (NULL: out of memory); owl_conn_commit(c, k) then appends k <= n. */
char *owl_conn_reserve (owl_conn_t *c, size_t n);
void owl_conn_commit (owl_conn_t *c, size_t k);
/* Appends a large piece, written straight from p as far as the socket
** takes it in one writev behind what is queued (the rest is copied). */
int owl_conn_write_through (owl_conn_t *c, const char *p, size_t n);
/* Held bytes: appended by owl_conn_hold, not written until unheld. */
int owl_conn_hold (owl_conn_t *c, const void *p, size_t n);
size_t owl_conn_held (owl_conn_t *c);
/* Puts n bytes (a status line and headers) before the held ones and lets
** them all go. */
int owl_conn_unhold (owl_conn_t *c, const char *head, size_t n);
/* Inserts n bytes before the held ones, which stay held. */
int owl_conn_insert (owl_conn_t *c, const char *p, size_t n);
/* Forgets the held bytes. */
void owl_conn_drop_held (owl_conn_t *c);
/* Writes what is not held: uv_try_write first, uv_write for the rest. */
void owl_conn_flush (owl_conn_t *c);
/* An idle connection keeps no output buffers. */
void owl_conn_trim (owl_conn_t *c);
/* }====== */


/* {====== timer and socket */

/* The timer fires the handler's on_timer after ms (0: stopped). */
void owl_conn_timer (owl_conn_t *c, uint64_t ms);
/* Milliseconds until the timer fires; UINT64_MAX when it is not running. */
uint64_t owl_conn_timer_due (owl_conn_t *c);
int owl_conn_is_pipe (owl_conn_t *c);
/* The TLS layer of a TLS connection, else NULL. */
owl_tls_t *owl_conn_tls (owl_conn_t *c);
/* The socket's descriptor (for sendfile); 0 or a libuv error. */
int owl_conn_fileno (owl_conn_t *c, uv_os_fd_t *fd);
/* The peer's and our address (TCP only); 0 or a libuv error. */
int owl_conn_peername (owl_conn_t *c, struct sockaddr_storage *sa);
int owl_conn_sockname (owl_conn_t *c, struct sockaddr_storage *sa);
/* }====== */

#endif
