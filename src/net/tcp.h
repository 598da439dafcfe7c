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

/*
** A client socket: initializes tcp as a TCP socket (pipe 0) or a unix
** socket (pipe 1) and connects it to sa or path; cb(req, status) follows.
** On an error the handle is initialized all the same and must be closed.
*/
int owl_tcp_connect (owl_tcp_t *tcp, uv_loop_t *loop, const struct sockaddr *sa,
                     const char *path, uv_connect_t *req, uv_connect_cb cb,
                     char *rbuf, size_t rlen);

#endif
