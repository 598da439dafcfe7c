/*
** The TCP transport: the transport interface over a libuv stream (a TCP or
** unix socket).  A queued write mallocs its uv_write_t and frees it in the
** callback, so an idle connection holds none.
*/

#include <stdlib.h>
#include <unistd.h>

#include "net/tcp.h"


#define TCP(t) ((owl_tcp_t *)(t))


static void on_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf) {
  owl_tcp_t *tcp = h->data;
  (void)size;
  buf->base = tcp->rbuf;
  buf->len = tcp->rlen;
}


static void on_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  owl_tcp_t *tcp = s->data;
  if (nread != 0)
    tcp->t.on_read(&tcp->t, nread, buf->base);
}


static int read_start (owl_transport_t *t) {
  return uv_read_start(&TCP(t)->h.stream, on_alloc, on_read);
}


static void read_stop (owl_transport_t *t) {
  uv_read_stop(&TCP(t)->h.stream);
}


static int try_write (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  int w = uv_try_write(&TCP(t)->h.stream, b, nb);
  return w == UV_EAGAIN || w == UV_ENOSYS ? 0 : w;
}


static void on_write (uv_write_t *w, int status) {
  owl_transport_t *t = w->data;
  free(w);
  t->on_written(t, status);
}


static int write_ (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  uv_write_t *w = malloc(sizeof *w);        /* freed in on_write */
  if (w == NULL)
    return UV_ENOMEM;
  w->data = t;
  int err = uv_write(w, &TCP(t)->h.stream, b, nb, on_write);
  if (err)
    free(w);
  return err;
}


static void on_shutdown (uv_shutdown_t *sr, int status) {
  owl_transport_t *t = sr->data;
  free(sr);
  if (status < 0 && !uv_is_closing(&TCP(t)->h.handle))
    t->on_read(t, status, NULL);      /* the owner closes, as on a read error */
}


static int shutdown_ (owl_transport_t *t) {
  uv_shutdown_t *sr = malloc(sizeof *sr);
  if (sr == NULL)
    return UV_ENOMEM;
  sr->data = t;
  int err = uv_shutdown(sr, &TCP(t)->h.stream, on_shutdown);
  if (err)
    free(sr);
  return err;
}


static void on_closed (uv_handle_t *h) {
  owl_tcp_t *tcp = h->data;
  tcp->t.on_closed(&tcp->t);
}


static void close_ (owl_transport_t *t) {
  uv_close(&TCP(t)->h.handle, on_closed);
}


static int fileno_ (owl_transport_t *t, uv_os_fd_t *fd) {
  return uv_fileno(&TCP(t)->h.handle, fd);
}


static int peername (owl_transport_t *t, struct sockaddr *sa, int *len) {
  return t->is_pipe ? UV_ENOTSUP : uv_tcp_getpeername(&TCP(t)->h.tcp, sa, len);
}


static int sockname (owl_transport_t *t, struct sockaddr *sa, int *len) {
  return t->is_pipe ? UV_ENOTSUP : uv_tcp_getsockname(&TCP(t)->h.tcp, sa, len);
}


static const owl_transport_vt tcp_vt = {
  read_start, read_stop, try_write, write_, shutdown_, close_, fileno_,
  peername, sockname
};


int owl_tcp_init (owl_tcp_t *tcp, uv_loop_t *loop, uv_stream_t *listener,
                  uv_os_sock_t fd, char *rbuf, size_t rlen) {
  int pipe = listener != NULL && listener->type == UV_NAMED_PIPE;
  tcp->t.vt = &tcp_vt;
  tcp->t.is_pipe = pipe;
  tcp->rbuf = rbuf;
  tcp->rlen = rlen;
  if (pipe)
    uv_pipe_init(loop, &tcp->h.pipe, 0);
  else
    uv_tcp_init(loop, &tcp->h.tcp);
  tcp->h.handle.data = tcp;
  int err = fd >= 0 ? uv_tcp_open(&tcp->h.tcp, fd) : uv_accept(listener, &tcp->h.stream);
  if (err) {
    if (fd >= 0)
      close(fd);
    return err;
  }
  if (!pipe)
    uv_tcp_nodelay(&tcp->h.tcp, 1);
  return 0;
}


int owl_tcp_connect (owl_tcp_t *tcp, uv_loop_t *loop, const struct sockaddr *sa,
                     const char *path, uv_connect_t *req, uv_connect_cb cb,
                     char *rbuf, size_t rlen) {
  tcp->t.vt = &tcp_vt;
  tcp->t.is_pipe = path != NULL;
  tcp->rbuf = rbuf;
  tcp->rlen = rlen;
  if (path != NULL) {
    uv_pipe_init(loop, &tcp->h.pipe, 0);
    tcp->h.handle.data = tcp;
    uv_pipe_connect(req, &tcp->h.pipe, path, cb);   /* errors come through cb */
    return 0;
  }
  uv_tcp_init(loop, &tcp->h.tcp);
  tcp->h.handle.data = tcp;
  return uv_tcp_connect(req, &tcp->h.tcp, sa, cb);
}
