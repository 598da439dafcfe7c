/*
** The TCP transport (tcp.c): a libuv stream, TCP or unix socket.
*/

#ifndef OWL_TCP_H
#define OWL_TCP_H

#include "net/transport.h"

typedef struct owl_tcp {
  owl_transport_t t;            /* first: a transport pointer is the owl_tcp */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  char *rbuf;                   /* the loop's one read buffer, shared */
  size_t rlen;
} owl_tcp_t;

/*
** Accepts a connection from listener (fd < 0) or opens the accepted TCP
** socket fd.  Reads land in rbuf[0..rlen).  On an error the handle is still
** initialized and must be closed with t->vt->close.
*/
int owl_tcp_init (owl_tcp_t *tcp, uv_loop_t *loop, uv_stream_t *listener,
                  uv_os_sock_t fd, char *rbuf, size_t rlen);

#endif
