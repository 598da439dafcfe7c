/*
** A transport: how a connection moves bytes.  The connection (conn.c) sees
** only this interface, so that TLS (OpenSSL over memory BIOs) or an
** in-memory transport for tests can take the place of the TCP one without
** touching the protocol handlers.  One implementation today: tcp.c, a libuv
** stream (TCP or unix socket).
**
** Events go up through the three function pointers the owner sets; each is
** called at most once per operation, never from inside the call that
** started it (libuv's rule).
*/

#ifndef OWL_TRANSPORT_H
#define OWL_TRANSPORT_H

#include <sys/types.h>
#include <uv.h>

typedef struct owl_transport owl_transport_t;

typedef struct owl_transport_vt {
  /* Reading on; bytes arrive through on_read. 0 or a libuv error. */
  int (*read_start) (owl_transport_t *t);
  void (*read_stop) (owl_transport_t *t);
  /* Writes what the kernel takes now; returns the bytes taken (0 when it
  ** would block) or a libuv error. */
  int (*try_write) (owl_transport_t *t, const uv_buf_t *b, unsigned nb);
  /* Queues b (which must stay valid until on_written). 0 or an error (and
  ** then no on_written). */
  int (*write) (owl_transport_t *t, const uv_buf_t *b, unsigned nb);
  /* Sends FIN once queued writes are done; an error closes. */
  int (*shutdown) (owl_transport_t *t);
  /* Closes; on_closed follows, after which the memory may go. */
  void (*close) (owl_transport_t *t);
  /* The descriptor, for sendfile(2); an error when bytes cannot go to it
  ** directly (a TLS transport without kernel TLS). */
  int (*fileno) (owl_transport_t *t, uv_os_fd_t *fd);
  int (*peername) (owl_transport_t *t, struct sockaddr *sa, int *len);
  int (*sockname) (owl_transport_t *t, struct sockaddr *sa, int *len);
} owl_transport_vt;

struct owl_transport {
  const owl_transport_vt *vt;
  void *owner;
  /* n > 0 bytes at p, or n < 0: UV_EOF or an error */
  void (*on_read) (owl_transport_t *t, ssize_t n, char *p);
  void (*on_written) (owl_transport_t *t, int status);
  void (*on_closed) (owl_transport_t *t);
  unsigned is_pipe : 1;         /* a unix socket: no TCP addresses */
};

#endif
