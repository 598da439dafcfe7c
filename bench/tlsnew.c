/*
 * bench/tlsnew.c: the new-TLS-connection client of bench/run, on libuv and
 * OpenSSL.
 *
 *   tlsnew [-c CONNS] [-d SECS] [-p PID[,PID...]] HOST PORT
 *
 * Keeps CONNS connections (default 50) to https://HOST:PORT/ in flight for
 * SECS seconds (default 5).  Each one connects, makes a full TLS handshake
 * (a fresh SSL object every time: no session cache, no ticket offered back,
 * so the server signs with its key and runs a new key exchange each time),
 * sends one "GET / HTTP/1.1" with "Connection: close", reads the answer to
 * the server's close and checks it is a 200; then the next connection starts
 * in its place.  (wrk reconnects with the session of the connection before,
 * so its handshakes are resumed, not new.)  Prints one line:
 *
 *   connections N seconds S rate R p50_ms P p99_ms Q errors E ticks T
 *
 * N connections answered and closed in the S seconds measured (from the
 * first connect), R = N / S, latency percentiles from connect() to the
 * server's close, E connections that failed (refused, reset, a failed
 * handshake, not a 200; the first few are told on stderr), and T the
 * utime+stime clock ticks the processes given with -p spent over exactly
 * the measured window (-1 without -p).  The certificate is not verified
 * (a cost of the client, not of the server); the client offers OpenSSL's
 * default groups and TLS 1.2 and 1.3, as any OpenSSL client does.
 *
 * Each connection is a non-blocking socket of its own, driven by a uv_poll_t
 * and SSL over its fd.  Ownership: conns live until exit; a conn's SSL and
 * fd are freed when its poll handle has closed, before the next connect.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "procstat.h"


enum { CONNECTING, HANDSHAKE, WRITING, READING };

typedef struct {
  uv_poll_t poll;
  int fd;
  SSL *ssl;
  int state;
  int events;                   /* what the poll handle waits for */
  uint64_t started;
  char head[16];                /* the first bytes of the answer */
  size_t nhead;
} conn_t;


static uv_loop_t *loop;
static SSL_CTX *ctx;
static conn_t *conns;
static int nconns = 50, secs = 5, stopping;
static struct sockaddr_in addr;
static char rbuf[64 * 1024];
static char req[512];
static size_t req_len;
static uint64_t t0, t1, count, errors;
static uint32_t *lat;                   /* latencies in ns, clamped */
static size_t nlat, lat_cap;
static int pids[16], npids;
static long ticks0;
static uv_timer_t stop_timer;


static void fail(const char *what, int err) {
  fprintf(stderr, "tlsnew: %s: %s\n", what, err ? uv_strerror(err) : "failed");
  exit(1);
}


static void on_stop(uv_timer_t *t) {
  double s, p50 = 0, p99 = 0;
  long ticks1 = cpu_ticks(pids, npids);
  (void)t;
  t1 = uv_hrtime();
  stopping = 1;
  s = (t1 - t0) / 1e9;
  if (nlat) {
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    p50 = lat[(size_t)(nlat * 0.50)] / 1e6;
    p99 = lat[(size_t)(nlat * 0.99)] / 1e6;
  }
  printf("connections %" PRIu64 " seconds %.3f rate %.0f p50_ms %.3f p99_ms %.3f "
         "errors %" PRIu64 " ticks %ld\n", count, s, count / s, p50, p99, errors,
         npids ? ticks1 - ticks0 : -1L);
  fflush(stdout);
  exit(0);                      /* the kernel closes the connections */
}


static void start_one(conn_t *c);
static void on_poll(uv_poll_t *p, int status, int events);


static void on_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  close(c->fd);
  if (!stopping) start_one(c);
}


/* Ends c's connection (ok: answered with a 200 and closed) and starts the
 * next one once its poll handle has closed. */
static void finish(conn_t *c, int ok, const char *why) {
  if (ok) {
    uint64_t d = uv_hrtime() - c->started;
    count++;
    if (nlat == lat_cap) {
      lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
      lat = realloc(lat, lat_cap * sizeof *lat);
      if (!lat) fail("realloc", 0);
    }
    lat[nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
  } else {
    if (errors++ < 5) {
      unsigned long e = ERR_peek_error();
      fprintf(stderr, "tlsnew: %s%s%s\n", why, e ? ": " : "",
              e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "?" : "");
    }
    ERR_clear_error();
  }
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, on_closed);
}


/* Polls for what SSL wants next (err: SSL_get_error's answer). */
static int want(conn_t *c, int err) {
  int ev;
  if (err == SSL_ERROR_WANT_READ) ev = UV_READABLE;
  else if (err == SSL_ERROR_WANT_WRITE) ev = UV_WRITABLE;
  else return -1;
  if (ev != c->events) {
    c->events = ev;
    uv_poll_start(&c->poll, ev, on_poll);
  }
  return 0;
}


/* Runs c's connection as far as it goes without blocking. */
static void step(conn_t *c) {
  int r, e;
  switch (c->state) {
  case CONNECTING: {
    int so = 0;
    socklen_t len = sizeof so;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &len) < 0) so = errno;
    if (so) { finish(c, 0, strerror(so)); return; }
    if (!(c->ssl = SSL_new(ctx))) fail("SSL_new", 0);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->state = HANDSHAKE;
  }
  /* fall through */
  case HANDSHAKE:
    if ((r = SSL_connect(c->ssl)) != 1) {
      if (want(c, e = SSL_get_error(c->ssl, r)) < 0) finish(c, 0, "the TLS handshake failed");
      return;
    }
    c->state = WRITING;
  /* fall through */
  case WRITING:
    if ((r = SSL_write(c->ssl, req, (int)req_len)) <= 0) {
      if (want(c, e = SSL_get_error(c->ssl, r)) < 0) finish(c, 0, "write");
      return;
    }
    c->state = READING;
  /* fall through */
  case READING:
    for (;;) {
      if ((r = SSL_read(c->ssl, rbuf, sizeof rbuf)) > 0) {
        size_t take = sizeof c->head - c->nhead;
        if (take > (size_t)r) take = (size_t)r;
        memcpy(c->head + c->nhead, rbuf, take);
        c->nhead += take;
        continue;
      }
      e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_ZERO_RETURN) {
        /* the server's close (close_notify or a bare FIN) */
        if (c->nhead >= 12 && !memcmp(c->head, "HTTP/1.1 200", 12)) finish(c, 1, NULL);
        else finish(c, 0, c->nhead ? "not a 200" : "closed with no answer");
      } else if (want(c, e) < 0) {
        finish(c, 0, e == SSL_ERROR_SYSCALL ? strerror(errno) : "read");
      }
      return;
    }
  }
}


static void on_poll(uv_poll_t *p, int status, int events) {
  conn_t *c = (conn_t *)p;
  (void)events;
  if (status < 0 && c->state == CONNECTING) { finish(c, 0, uv_strerror(status)); return; }
  step(c);
}


static void start_one(conn_t *c) {
  int one = 1, r;
  c->state = CONNECTING;
  c->nhead = 0;
  c->started = uv_hrtime();
  if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
    fail("socket", uv_translate_sys_error(errno));
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if ((r = uv_poll_init(loop, &c->poll, c->fd)) < 0) fail("uv_poll_init", r);
  c->events = UV_WRITABLE;
  uv_poll_start(&c->poll, UV_WRITABLE, on_poll);
  if (connect(c->fd, (const struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    errors++;
    if (errors <= 5) fprintf(stderr, "tlsnew: connect: %s\n", strerror(errno));
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_closed);
  }
}


int main(int argc, char **argv) {
  int i, r;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    if (i + 1 >= argc) goto usage;
    if (!strcmp(argv[i], "-c")) nconns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-d")) secs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-p")) {
      char *s = argv[++i], *e;
      while (*s && npids < 16) {
        pids[npids++] = (int)strtol(s, &e, 10);
        s = *e ? e + 1 : e;
      }
    } else goto usage;
  }
  if (argc - i != 2 || nconns < 1 || secs < 1) goto usage;
  if ((r = uv_ip4_addr(argv[i], atoi(argv[i + 1]), &addr)) < 0) fail(argv[i], r);
  req_len = (size_t)snprintf(req, sizeof req,
    "GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", argv[i], argv[i + 1]);

  signal(SIGPIPE, SIG_IGN);           /* a peer gone mid-write: EPIPE, not death */
  if (!(ctx = SSL_CTX_new(TLS_client_method()))) fail("SSL_CTX_new", 0);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* a close without close_notify ends the answer as well */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  loop = uv_default_loop();
  uv_timer_init(loop, &stop_timer);
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns) fail("calloc", 0);
  ticks0 = cpu_ticks(pids, npids);
  t0 = uv_hrtime();
  uv_timer_start(&stop_timer, on_stop, (uint64_t)secs * 1000, 0);
  for (i = 0; i < nconns; i++) start_one(&conns[i]);
  return uv_run(loop, UV_RUN_DEFAULT);

usage:
  fprintf(stderr, "usage: tlsnew [-c CONNS] [-d SECS] [-p PID[,PID...]] HOST PORT\n");
  return 2;
}
