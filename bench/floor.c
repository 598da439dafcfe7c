/*
 * bench/floor.c: the floor for owinlua's architecture.  A minimal HTTP/1.1
 * server on libuv + llhttp that answers every request with one constant
 * response, doing only what any server on this stack must: one read and one
 * write per batch of requests.  bench/run measures every server's CPU per
 * request against it (PERFORMANCE.md explains the techniques).
 *
 *   floor [-b BYTES] [-p PORT]
 *
 * Listens on 127.0.0.1:PORT (default 0: a free port) and prints
 * "listening on PORT".  The body is "Hello World", or with -b a constant
 * body of BYTES bytes ('x'), made once at start-up.  Runs until killed.
 *
 * What it does, and a server of this architecture should too:
 * - one read buffer for the loop (rbuf), never a malloc per read;
 * - all the responses owed after one read leave in one write (pipelining);
 * - uv_try_write() first, and a uv_write() only for what the kernel did not
 *   take; reading stops while such a write is queued;
 * - headers and a small body in one buffer; the Date header is formatted
 *   once a second;
 * - small per-connection state: uv_tcp_t and llhttp_t, nothing else.
 *
 * Ownership: a conn is malloc'd on accept and freed in on_close only.  The
 * uv_write_t of a queued write is malloc'd then and freed in on_write.  The
 * buffers written point into the static response (head/body), which lives
 * for the whole run; the head is rewritten once a second in place with the
 * same length, so a queued write may carry either Date.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include <llhttp.h>


typedef struct {
  uv_tcp_t tcp;                 /* first: a handle pointer is a conn pointer */
  llhttp_t parser;
  unsigned nresp;               /* responses owed for the current read */
  unsigned close_after : 1;     /* close once the owed responses are out */
  unsigned closing : 1;
} conn_t;


static uv_loop_t *loop;
static llhttp_settings_t settings;
static char rbuf[64 * 1024];            /* the one read buffer */
static uv_buf_t *obufs;                 /* the buffers of one write */
static size_t obufs_cap;
static char head[512];                  /* status line + headers (+ body) */
static size_t head_len;
static size_t date_at;                  /* offset of the Date value in head */
static char *body;                      /* -b: the large body, else NULL */
static size_t body_len;
static const char hello[] = "Hello World";


/* Formats the Date value (29 bytes) for now into head, in place. */
static void set_date(void) {
  char d[64];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(d, sizeof d, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  memcpy(head + date_at, d, 29);
}


static void on_date(uv_timer_t *t) {
  (void)t;
  set_date();
}


/* Builds the response head (and, for "Hello World", the body after it). */
static void make_head(void) {
  size_t len = body ? body_len : sizeof hello - 1;
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 200 OK\r\nServer: floor\r\nDate: ");
  date_at = (size_t)n;
  n += snprintf(head + n, sizeof head - n,
                "%29s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                "", len, body ? "" : hello);
  head_len = (size_t)n;
  set_date();
}


static void on_close(uv_handle_t *h) {
  free(h);
}


static void close_conn(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}


static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->nresp++;
  if (!llhttp_should_keep_alive(p)) {
    c->close_after = 1;
    return HPE_PAUSED;              /* nothing after this request is read */
  }
  return 0;
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);


static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  if (status < 0 || c->close_after) { close_conn(c); return; }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}


/* Writes the c->nresp responses owed, in one write. */
static void respond(conn_t *c) {
  size_t per = body ? 2 : 1, n = c->nresp * per, i;
  size_t total = c->nresp * (head_len + body_len);
  int r;
  if (n > obufs_cap) {
    obufs_cap = n * 2;
    obufs = realloc(obufs, obufs_cap * sizeof *obufs);
    if (!obufs) { perror("realloc"); exit(1); }
  }
  for (i = 0; i < n; i += per) {
    obufs[i] = uv_buf_init(head, head_len);
    if (body) obufs[i + 1] = uv_buf_init(body, body_len);
  }
  c->nresp = 0;
  r = uv_try_write((uv_stream_t *)&c->tcp, obufs, n);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) { close_conn(c); return; }
  if ((size_t)r == total) {
    if (c->close_after) close_conn(c);
    return;
  }
  /* skip what the kernel took, queue the rest (uv_write copies the array) */
  for (i = 0; (size_t)r >= obufs[i].len; i++) r -= obufs[i].len;
  obufs[i].base += r;
  obufs[i].len -= r;
  uv_write_t *req = malloc(sizeof *req);
  if (!req) { perror("malloc"); exit(1); }
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->tcp, obufs + i, n - i, on_write) < 0) {
    free(req);
    close_conn(c);
    return;
  }
  uv_read_stop((uv_stream_t *)&c->tcp);     /* until on_write */
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  llhttp_errno_t err;
  if (nread < 0) { close_conn(c); return; }
  if (nread == 0) return;
  err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  if (err != HPE_OK && err != HPE_PAUSED) c->close_after = 1;
  if (c->nresp) respond(c);
  else if (c->close_after) close_conn(c);
}


static void on_connection(uv_stream_t *server, int status) {
  conn_t *c;
  if (status < 0) return;
  c = malloc(sizeof *c);
  if (!c) { perror("malloc"); exit(1); }
  memset(c, 0, sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    close_conn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}


int main(int argc, char **argv) {
  uv_tcp_t server;
  uv_timer_t date;
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int port = 0, i, r, namelen = sizeof name;

  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-b") && i + 1 < argc) body_len = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "-p") && i + 1 < argc) port = atoi(argv[++i]);
    else { fprintf(stderr, "usage: floor [-b BYTES] [-p PORT]\n"); return 2; }
  }
  if (body_len) {
    body = malloc(body_len);
    if (!body) { perror("malloc"); return 1; }
    memset(body, 'x', body_len);
  }
  make_head();

  signal(SIGPIPE, SIG_IGN);           /* a peer gone mid-write: EPIPE, not death */
  loop = uv_default_loop();
  llhttp_settings_init(&settings);
  settings.on_message_complete = on_message_complete;

  uv_timer_init(loop, &date);
  uv_timer_start(&date, on_date, 1000, 1000);
  uv_unref((uv_handle_t *)&date);

  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", port, &addr);
  if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0)) < 0 ||
      (r = uv_listen((uv_stream_t *)&server, 4096, on_connection)) < 0) {
    fprintf(stderr, "floor: %s\n", uv_strerror(r));
    return 1;
  }
  uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen);
  printf("listening on %d\n", ntohs(((struct sockaddr_in *)&name)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
