/*
 * bench/wsload.c: the WebSocket load client of bench/run, on libuv.
 *
 *   wsload [-c CONNS] [-d SECS] [-s BYTES] [-p PID[,PID...]] HOST PORT [PATH]
 *
 * Opens CONNS connections (default 50) to ws://HOST:PORT/PATH (no
 * extensions offered), and once every one is upgraded, has each send a
 * masked binary message of BYTES bytes (default 64), wait for its echo, check
 * it byte for byte, and send the next, for SECS seconds (default 5).  Prints
 * one line:
 *
 *   messages N seconds S rate R p50_ms P p99_ms Q errors E ticks T
 *
 * N echoes completed in the S seconds measured, R = N / S, latency
 * percentiles from send to the echo's last byte, E wrong echoes or
 * connections lost while measuring, and T the utime+stime clock ticks the
 * processes given with -p spent over exactly the measured window (read from
 * /proc/PID/stat at its start and end; -1 without -p).  Exits non-zero, with
 * the reason on stderr, if a connection or an upgrade fails.
 *
 * Each connection's frame is built and masked once (a random key per
 * connection), so the client spends its time in the kernel, not in masking.
 * Ownership: conns live until exit; a queued write's uv_write_t is malloc'd
 * and freed in on_write; the frame it writes belongs to the conn.
 */
#include <inttypes.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "procstat.h"


typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int upgraded;
  int dead;
  char hs[2048];                /* the 101 response as it arrives */
  size_t nhs;
  unsigned char *frame;         /* the masked frame this conn sends */
  size_t frame_len;
  unsigned char hdr[14];        /* the head of the frame being received */
  size_t nhdr, hneed;
  int in_payload, op;
  uint64_t plen, got;
  uint64_t sent_at;
  int bad;                      /* the echo being received differs */
} conn_t;


static uv_loop_t *loop;
static conn_t *conns;
static int nconns = 50, secs = 5, nupgraded, measuring, stopping;
static size_t size = 64;
static const char *host, *path = "/";
static int port;
static unsigned char *msg;              /* the payload every conn sends */
static char rbuf[256 * 1024];
static char req[512];
static size_t req_len;
static uint64_t t0, t1, count, errors;
static uint32_t *lat;                   /* latencies in ns, clamped */
static size_t nlat, lat_cap;
static int pids[16], npids;
static long ticks0;
static uv_timer_t stop_timer;


static void fail(const char *what, int err) {
  fprintf(stderr, "wsload: %s: %s\n", what, err ? uv_strerror(err) : "failed");
  exit(1);
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}


static void on_write(uv_write_t *w, int status) {
  conn_t *c = w->data;
  free(w);
  if (status < 0 && !stopping) fail("write", status);
  (void)c;
}


/* Writes buf: uv_try_write first, a queued write for the rest.  buf must
 * live until the write is out (the conn's frame or the static request). */
static void send_bytes(conn_t *c, const void *buf, size_t len) {
  uv_buf_t b = uv_buf_init((char *)buf, len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) fail("write", r);
  if ((size_t)r == len) return;
  uv_write_t *w = malloc(sizeof *w);
  if (!w) fail("malloc", 0);
  w->data = c;
  b.base += r;
  b.len -= r;
  if ((r = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write)) < 0) fail("write", r);
}


static void send_msg(conn_t *c) {
  c->sent_at = uv_hrtime();
  send_bytes(c, c->frame, c->frame_len);
}


static void report(void) {
  double s = (t1 - t0) / 1e9;
  double p50 = 0, p99 = 0;
  long ticks1 = cpu_ticks(pids, npids);
  if (nlat) {
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    p50 = lat[(size_t)(nlat * 0.50)] / 1e6;
    p99 = lat[(size_t)(nlat * 0.99)] / 1e6;
  }
  printf("messages %" PRIu64 " seconds %.3f rate %.0f p50_ms %.3f p99_ms %.3f "
         "errors %" PRIu64 " ticks %ld\n", count, s, count / s, p50, p99, errors,
         npids ? ticks1 - ticks0 : -1L);
  fflush(stdout);
}


static void on_stop(uv_timer_t *t) {
  (void)t;
  t1 = uv_hrtime();
  measuring = 0;
  stopping = 1;
  report();
  exit(0);                      /* the kernel closes the connections */
}


static void start_measuring(void) {
  int i;
  measuring = 1;
  ticks0 = cpu_ticks(pids, npids);
  t0 = uv_hrtime();
  uv_timer_start(&stop_timer, on_stop, (uint64_t)secs * 1000, 0);
  for (i = 0; i < nconns; i++) send_msg(&conns[i]);
}


static void echo_done(conn_t *c) {
  uint64_t now = uv_hrtime();
  if (c->bad || c->plen != size) errors++;
  c->bad = 0;
  if (!measuring) return;
  count++;
  if (nlat == lat_cap) {
    lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
    lat = realloc(lat, lat_cap * sizeof *lat);
    if (!lat) fail("realloc", 0);
  }
  now -= c->sent_at;
  lat[nlat++] = now > UINT32_MAX ? UINT32_MAX : (uint32_t)now;
  send_msg(c);
}


/* Reads server frames (unmasked) from p[0..n). */
static void frames(conn_t *c, const unsigned char *p, size_t n) {
  while (n > 0) {
    if (!c->in_payload) {
      if (c->nhdr < 2) {
        c->hdr[c->nhdr++] = *p++;
        n--;
        if (c->nhdr < 2) continue;
        c->hneed = 2 + ((c->hdr[1] & 0x7F) == 126 ? 2 : (c->hdr[1] & 0x7F) == 127 ? 8 : 0);
        if (c->hdr[1] & 0x80) c->hneed += 4;
      }
      while (n > 0 && c->nhdr < c->hneed) { c->hdr[c->nhdr++] = *p++; n--; }
      if (c->nhdr < c->hneed) return;
      uint64_t len = c->hdr[1] & 0x7F;
      if (len == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      else if (len == 127) { len = 0; for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i]; }
      c->op = c->hdr[0] & 0x0F;
      if (c->op == 0x8) {
        if (!stopping) { fprintf(stderr, "wsload: the server sent close\n"); errors++; }
        c->dead = 1;
        return;
      }
      if (c->op != 0x2 && c->op < 0x8) c->bad = 1;      /* not binary */
      if (!(c->hdr[0] & 0x80)) c->bad = 1;               /* fragmented */
      c->plen = len;
      c->got = 0;
      c->in_payload = 1;
    }
    size_t take = n < c->plen - c->got ? n : (size_t)(c->plen - c->got);
    if (c->op < 0x8 && take &&
        (c->got + take > size || memcmp(p, msg + c->got, take))) c->bad = 1;
    c->got += take;
    p += take;
    n -= take;
    if (c->got == c->plen) {
      c->in_payload = 0;
      c->nhdr = 0;
      if (c->op < 0x8) echo_done(c);                      /* pings ignored */
    }
  }
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  if (nread == 0 || c->dead) return;
  if (nread < 0) {
    if (!c->upgraded) fail("the upgrade", (int)nread);
    if (!stopping) { fprintf(stderr, "wsload: connection lost: %s\n", uv_strerror((int)nread)); errors++; }
    c->dead = 1;
    uv_read_stop(s);
    return;
  }
  if (c->upgraded) { frames(c, (unsigned char *)buf->base, (size_t)nread); return; }
  size_t take = (size_t)nread;
  if (take > sizeof c->hs - 1 - c->nhs) take = sizeof c->hs - 1 - c->nhs;
  memcpy(c->hs + c->nhs, buf->base, take);
  c->nhs += take;
  c->hs[c->nhs] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (!end) {
    if (c->nhs == sizeof c->hs - 1) fail("the upgrade (response head too long)", 0);
    return;
  }
  if (strncmp(c->hs, "HTTP/1.1 101", 12)) {
    fprintf(stderr, "wsload: no 101 from the server:\n%s\n", c->hs);
    exit(1);
  }
  c->upgraded = 1;
  size_t head = (size_t)(end + 4 - c->hs);
  if (c->nhs > head) frames(c, (unsigned char *)c->hs + head, c->nhs - head);
  if (take < (size_t)nread) frames(c, (unsigned char *)buf->base + take, (size_t)nread - take);
  if (++nupgraded == nconns) start_measuring();
}


static void on_connect(uv_connect_t *creq, int status) {
  conn_t *c = creq->data;
  if (status < 0) fail("connect", status);
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  send_bytes(c, req, req_len);
}


/* Builds c's frame: FIN + binary, the length, a random mask, masked msg. */
static void make_frame(conn_t *c) {
  unsigned char *f, m[4];
  size_t hl = size < 126 ? 2 : size < 65536 ? 4 : 10, i;
  c->frame_len = hl + 4 + size;
  f = c->frame = malloc(c->frame_len);
  if (!f) fail("malloc", 0);
  f[0] = 0x82;
  if (hl == 2) f[1] = 0x80 | (unsigned char)size;
  else if (hl == 4) { f[1] = 0x80 | 126; f[2] = (unsigned char)(size >> 8); f[3] = (unsigned char)size; }
  else { f[1] = 0x80 | 127; for (i = 0; i < 8; i++) f[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i)); }
  for (i = 0; i < 4; i++) m[i] = (unsigned char)(rand() >> 7);
  memcpy(f + hl, m, 4);
  for (i = 0; i < size; i++) f[hl + 4 + i] = msg[i] ^ m[i & 3];
}


int main(int argc, char **argv) {
  struct sockaddr_in addr;
  int i, r;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    if (i + 1 >= argc) goto usage;
    if (!strcmp(argv[i], "-c")) nconns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-d")) secs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-s")) size = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "-p")) {
      char *s = argv[++i], *e;
      while (*s && npids < 16) {
        pids[npids++] = (int)strtol(s, &e, 10);
        s = *e ? e + 1 : e;
      }
    } else goto usage;
  }
  if (argc - i < 2 || nconns < 1 || secs < 1) goto usage;
  host = argv[i];
  port = atoi(argv[i + 1]);
  if (argc - i > 2) path = argv[i + 2];

  srand((unsigned)uv_hrtime());
  msg = malloc(size ? size : 1);
  if (!msg) fail("malloc", 0);
  for (size_t k = 0; k < size; k++) msg[k] = (unsigned char)(k * 31 + 7);
  req_len = (size_t)snprintf(req, sizeof req,
    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    path, host, port);

  signal(SIGPIPE, SIG_IGN);           /* a peer gone mid-write: EPIPE, not death */
  loop = uv_default_loop();
  uv_timer_init(loop, &stop_timer);
  if ((r = uv_ip4_addr(host, port, &addr)) < 0) fail(host, r);
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns) fail("calloc", 0);
  for (i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    make_frame(c);
    uv_tcp_init(loop, &c->tcp);
    c->creq.data = c;
    if ((r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect)) < 0)
      fail("connect", r);
  }
  return uv_run(loop, UV_RUN_DEFAULT);

usage:
  fprintf(stderr, "usage: wsload [-c CONNS] [-d SECS] [-s BYTES] [-p PID[,PID...]] HOST PORT [PATH]\n");
  return 2;
}
