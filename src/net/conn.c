/*
** The connection: a transport, its output, its timer, and its protocol
** handler (see conn.h).
**
** Output.  Everything produced while handling one event goes to c->out and
** is written with one try_write; only what the kernel does not take is
** queued (c->wbuf, handed over without a copy when nothing is held).  The
** bytes at the end of c->out that wait for their headers (c->held) are
** never written until unheld.
*/

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/tcp.h"
#include "net/tls.h"

#define LINGER_MS 2000

struct owl_conn {
  owl_tcp_t tcp;                /* the socket */
  owl_transport_t *tp;          /* what the bytes go through: &tcp.t, or TLS over it */
  owl_tls_t *tls;
  uv_timer_t timer;
  owl_conns_t *set;
  owl_conn_t *prev, *next;      /* set->head: live connections */
  const owl_handler_t *handler;
  void *hdata;                  /* the handler's object (weak) */
  owl_buf_t in;                 /* input kept while the handler is paused */
  owl_buf_t out;                /* output not yet handed to the transport */
  owl_buf_t wbuf;               /* output in a queued write */
  size_t held;                  /* bytes at the end of out held back */
  size_t woff;                  /* bytes of wbuf already taken by try_write */
  int nhandles;                 /* open libuv handles; freed at 0 */
  unsigned reading : 1;
  unsigned writing : 1;
  unsigned closing : 1;         /* close called */
  unsigned close_after : 1;     /* close once out is written */
  unsigned lingering : 1;       /* shut down, draining input before close */
  uint64_t proto[];             /* the handler's state (8-byte aligned) */
};

#define TP(c) ((c)->tp)


/* {====== life */

static void on_freed (owl_conn_t *c) {
  if (--c->nhandles > 0)
    return;
  owl_conns_t *set = c->set;
  if (c->handler && c->handler->on_free)
    c->handler->on_free(c);
  if (c->lingering)
    set->nlinger--;
  if (c->prev)
    c->prev->next = c->next;
  else
    set->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  owl_buf_free(&c->in);
  owl_buf_free(&c->out);
  owl_buf_free(&c->wbuf);
  free(c);
  set->n--;
  if (set->on_gone)
    set->on_gone(set);
}


static void on_tp_closed (owl_transport_t *t) {
  on_freed(t->owner);
}


static void on_timer_closed (uv_handle_t *h) {
  on_freed(h->data);
}


void owl_conn_close (owl_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  TP(c)->vt->close(TP(c));
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->handler && c->handler->on_close)
    c->handler->on_close(c);
}


int owl_conn_closing (owl_conn_t *c) {
  return c->closing;
}


void owl_conn_close_after (owl_conn_t *c) {
  c->close_after = 1;
}


int owl_conn_closes_after (owl_conn_t *c) {
  return c->close_after;
}


void owl_conn_keep_open (owl_conn_t *c) {
  c->close_after = 0;
}


int owl_conn_lingering (owl_conn_t *c) {
  return c->lingering;
}


void owl_conn_linger (owl_conn_t *c) {
  c->lingering = 1;
  c->set->nlinger++;                /* not counted against --max-connections */
  if (TP(c)->vt->shutdown(TP(c))) {
    owl_conn_close(c);
    return;
  }
  owl_conn_timer(c, LINGER_MS);
  owl_conn_reading(c, 1);
}


static void on_tp_read (owl_transport_t *t, ssize_t n, char *p) {
  owl_conn_t *c = t->owner;
  if (n < 0) {
    if (c->lingering)
      owl_conn_close(c);
    else
      c->handler->on_eof(c, (int)n);
  }
  else if (!c->lingering)           /* while lingering, input is discarded */
    c->handler->on_read(c, p, (size_t)n);
}


static void on_tp_written (owl_transport_t *t, int status);


/* The loop's one read buffer: every read lands here and is handled at once. */
static char rbuf[64 * 1024];


static void on_timer (uv_timer_t *t) {
  owl_conn_t *c = t->data;
  if (c->lingering)
    owl_conn_close(c);
  else
    c->handler->on_timer(c);
}


owl_conn_t *owl_conn_new (uv_loop_t *loop, owl_conns_t *set, uv_stream_t *listener,
                          uv_os_sock_t fd, owl_tls_ctx_t *tls, size_t proto) {
  owl_conn_t *c = calloc(1, sizeof *c + proto);
  if (c == NULL) {
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  c->set = set;
  c->tp = &c->tcp.t;
  TP(c)->owner = c;
  TP(c)->on_read = on_tp_read;
  TP(c)->on_written = on_tp_written;
  TP(c)->on_closed = on_tp_closed;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 2;
  c->next = set->head;
  if (set->head)
    set->head->prev = c;
  set->head = c;
  set->n++;
  if (owl_tcp_init(&c->tcp, loop, listener, fd, rbuf, sizeof rbuf)) {
    owl_conn_close(c);              /* no handler yet: nothing is told */
    return NULL;
  }
  if (tls != NULL) {
    c->tls = owl_tls_new(tls, &c->tcp.t, loop);
    if (c->tls == NULL) {
      owl_conn_close(c);
      return NULL;
    }
    c->tp = owl_tls_transport(c->tls);
    TP(c)->owner = c;
    TP(c)->on_read = on_tp_read;
    TP(c)->on_written = on_tp_written;
    TP(c)->on_closed = on_tp_closed;
  }
  return c;
}


void *owl_conn_proto (owl_conn_t *c) {
  return c->proto;
}


void owl_conn_set_handler (owl_conn_t *c, const owl_handler_t *h, void *data) {
  c->handler = h;
  c->hdata = data;
}


void *owl_conn_data (owl_conn_t *c) {
  return c->hdata;
}


const owl_handler_t *owl_conn_handler (owl_conn_t *c) {
  return c->handler;
}


owl_conn_t *owl_conn_next (owl_conns_t *set, owl_conn_t *c) {
  return c == NULL ? set->head : c->next;
}
/* }====== */


/* {====== reading */

void owl_conn_reading (owl_conn_t *c, int want) {
  if (c->closing)
    return;
  if (want && !c->reading)
    c->reading = TP(c)->vt->read_start(TP(c)) == 0;
  else if (!want && c->reading) {
    TP(c)->vt->read_stop(TP(c));
    c->reading = 0;
  }
}


owl_buf_t *owl_conn_kept (owl_conn_t *c) {
  return &c->in;
}
/* }====== */


/* {====== writing */

size_t owl_conn_pending (owl_conn_t *c) {
  return c->out.len + (c->writing ? c->wbuf.len - c->woff : 0);
}



static void on_tp_written (owl_transport_t *t, int status) {
  owl_conn_t *c = t->owner;
  c->writing = 0;
  c->wbuf.len = 0;
  c->woff = 0;
  if (c->closing)
    return;
  if (status < 0) {
    owl_conn_close(c);
    return;
  }
  owl_conn_flush(c);
  if (!c->closing && c->handler->on_drain)
    c->handler->on_drain(c);
}


void owl_conn_flush (owl_conn_t *c) {
  if (c->closing || c->writing)
    return;
  size_t n = c->out.len - c->held;
  if (n == 0)
    return;
  owl_transport_t *t = TP(c);
  uv_buf_t b = uv_buf_init(c->out.base, (unsigned int)n);
  int w = t->vt->try_write(t, &b, 1);
  if (w < 0) {
    owl_conn_close(c);
    return;
  }
  if ((size_t)w == n) {
    owl_buf_consume(&c->out, n);
    return;
  }
  if (c->held == 0) {               /* hand the whole buffer over: no copy */
    owl_buf_t tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    c->out.len = 0;
    c->woff = (size_t)w;
  }
  else {
    c->wbuf.len = 0;
    if (owl_buf_append(&c->wbuf, c->out.base + w, n - (size_t)w)) {
      owl_conn_close(c);
      return;
    }
    owl_buf_consume(&c->out, n);
    c->woff = 0;
  }
  b = uv_buf_init(c->wbuf.base + c->woff, (unsigned int)(c->wbuf.len - c->woff));
  if (t->vt->write(t, &b, 1)) {
    owl_conn_close(c);
    return;
  }
  c->writing = 1;
}


int owl_conn_append (owl_conn_t *c, const void *p, size_t n) {
  return owl_buf_append(&c->out, p, n);
}


char *owl_conn_reserve (owl_conn_t *c, size_t n) {
  return owl_buf_reserve(&c->out, n) ? NULL : c->out.base + c->out.len;
}


void owl_conn_commit (owl_conn_t *c, size_t k) {
  c->out.len += k;
}


/*
** Writes first straight from p as much as the kernel takes in one writev
** behind what c->out already holds: a large body piece is then copied only
** for the part the socket could not take.  Keeps the order of the output;
** does nothing new while a write is queued or bytes are held.
*/
int owl_conn_write_through (owl_conn_t *c, const char *p, size_t n) {
  if (!c->closing && !c->writing && c->held == 0 && n <= UINT32_MAX &&
      c->out.len <= UINT32_MAX) {
    uv_buf_t b[2];
    int nb = 0;
    if (c->out.len > 0)
      b[nb++] = uv_buf_init(c->out.base, (unsigned int)c->out.len);
    b[nb++] = uv_buf_init((char *)p, (unsigned int)n);
    int w = TP(c)->vt->try_write(TP(c), b, (unsigned int)nb);
    if (w > 0) {                    /* errors: the next flush meets them */
      size_t k = (size_t)w;
      if (k < c->out.len)
        owl_buf_consume(&c->out, k);
      else {
        k -= c->out.len;
        c->out.len = 0;
        p += k;
        n -= k;
      }
    }
  }
  return n > 0 ? owl_buf_append(&c->out, p, n) : 0;
}


int owl_conn_hold (owl_conn_t *c, const void *p, size_t n) {
  int err = owl_buf_append(&c->out, p, n);
  if (err == 0)
    c->held += n;
  return err;
}


size_t owl_conn_held (owl_conn_t *c) {
  return c->held;
}


int owl_conn_unhold (owl_conn_t *c, const char *head, size_t n) {
  int err = owl_buf_insert(&c->out, c->out.len - c->held, head, n);
  c->held = 0;
  return err;
}


int owl_conn_insert (owl_conn_t *c, const char *p, size_t n) {
  return owl_buf_insert(&c->out, c->out.len - c->held, p, n);
}


void owl_conn_drop_held (owl_conn_t *c) {
  c->out.len -= c->held;
  c->held = 0;
}


void owl_conn_trim (owl_conn_t *c) {
  if (c->out.len == 0)
    owl_buf_free(&c->out);
  if (!c->writing)
    owl_buf_free(&c->wbuf);
  if (c->in.len == 0)
    owl_buf_free(&c->in);
}
/* }====== */


/* {====== timer and socket */

void owl_conn_timer (owl_conn_t *c, uint64_t ms) {
  if (c->closing)
    return;
  if (ms == 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timer, ms, 0);
}


uint64_t owl_conn_timer_due (owl_conn_t *c) {
  return uv_is_active((uv_handle_t *)&c->timer) ? uv_timer_get_due_in(&c->timer)
                                                : UINT64_MAX;
}



owl_tls_t *owl_conn_tls (owl_conn_t *c) {
  return c->tls;
}


int owl_conn_is_pipe (owl_conn_t *c) {
  return TP(c)->is_pipe;
}


int owl_conn_fileno (owl_conn_t *c, uv_os_fd_t *fd) {
  return TP(c)->vt->fileno(TP(c), fd);
}


int owl_conn_peername (owl_conn_t *c, struct sockaddr_storage *sa) {
  int len = (int)sizeof *sa;
  return TP(c)->vt->peername(TP(c), (struct sockaddr *)sa, &len);
}


int owl_conn_sockname (owl_conn_t *c, struct sockaddr_storage *sa) {
  int len = (int)sizeof *sa;
  return TP(c)->vt->sockname(TP(c), (struct sockaddr *)sa, &len);
}
/* }====== */
