/*
 * tools/hostile/hostile.c: hostile HTTP clients for spec/e2e/hostile_clients_spec.lua.
 * One process, one thread, epoll; every mode ends on its own within a
 * bounded time.  Only talks to 127.0.0.1.  Built by `make build/hostile`.
 *
 *   hostile slowloris [-s N] [-q N] [-n N] [-i MS] [-f K] [-w SECS] [-p PATH] PORT
 *
 *     Opens N slow connections (-s, default 1000) and N silent ones (-q,
 *     default 1000), 100 every 10 ms so that the listen backlog never
 *     overflows.  A slow connection sends a request head one byte per second
 *     (the slow connections take turns, one byte every 1000/N ms in all) and
 *     never finishes it; a silent one sends nothing.  Once all are
 *     connected, a normal client sends -n (400) ordinary GET PATH (-p, "/")
 *     requests, one every -i (10) ms or as soon as the previous answer is
 *     in, on a keep-alive connection, every -f-th (10; 0: never) on a fresh
 *     one, and times each from the send (or the connect, on a fresh
 *     connection) to the last byte of its answer (a request unanswered
 *     after 5 s fails; the requests end after n x i ms + 10 s at most).
 *     Then it waits at most -w (10) s more for the server to close the slow
 *     and silent connections.  Prints one line:
 *
 *       slowloris connected=2000 connect_failed=0 ramp_ms=... requests=400
 *       ok=400 failed=0 p50_us=... p99_us=... max_us=... held=2000
 *       slow_closed=1000 slow_408=1000 silent_closed=1000 silent_answered=0
 *       open=0 close_min_ms=... close_max_ms=...
 *
 *     requests: answered or failed; failed: failed or never sent; *_us:
 *     latencies of the requests that got a 200; held: slow and silent
 *     connections still open when the last request was done;
 *     close_*_ms: from a connection's connect to the server's close of it
 *     (EOF or reset); open: slow or silent connections still open at the
 *     end; slow_408: slow connections whose answer started with a 408
 *     status line; silent_answered: silent ones that got any bytes.
 *
 *   hostile slowread [-b BYTES] [-t SECS] [-u USEC] PORT PATH
 *
 *     Sets SO_RCVBUF to -b (4096) before connecting, sends GET PATH, then
 *     reads the answer one byte per recv(2), sleeping -u (1000) us after
 *     each body byte, for -t (5) s; closes without reading the rest.
 *     Prints one line:
 *
 *       slowread status=200 length=104857600 rcvbuf=... bytes=N eof=0 secs=5.00
 *
 *     length: the Content-Length (-1 if none); bytes: body bytes read; eof:
 *     1 if the server closed the connection before the time was up.
 *
 * Exit status 0 when the run went through (what it measured is for the
 * caller to judge), 1 on a local failure (socket, epoll), 2 on bad usage.
 */
#define _GNU_SOURCE               /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define HARD_LIMIT_SECS 120       /* alarm(2): the process never outlives this */
#define BATCH 100                 /* connections opened per ramp step */
#define BATCH_MS 10
#define RAMP_MS 15000             /* all connected by then, or the run goes on without */
#define REQUEST_TIMEOUT_US 5000000


static struct sockaddr_in addr;


static void die(const char *what) {
  fprintf(stderr, "hostile: %s: %s\n", what, strerror(errno));
  exit(1);
}


static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* Raises the soft RLIMIT_NOFILE to at least want (the hard one too when
** allowed: root). */
static void want_fds(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    die("getrlimit");
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
    return;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
    struct rlimit more = { want, want };
    if (setrlimit(RLIMIT_NOFILE, &more) == 0)
      return;
    rl.rlim_cur = rl.rlim_max;
  }
  else
    rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    die("setrlimit");
  if (rl.rlim_cur < want) {
    fprintf(stderr, "hostile: need %lu file descriptors, the hard limit is %lu\n",
            (unsigned long)want, (unsigned long)rl.rlim_max);
    exit(1);
  }
}


/* A non-blocking TCP socket connecting to addr; -1 on failure (errno set). */
static int start_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}


static int sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    return errno;
  return err;
}


static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}


/* {====== slowloris */

enum { K_SLOW, K_SILENT, K_NORMAL };
enum { C_NONE, C_CONNECTING, C_OPEN, C_CLOSED };

typedef struct hconn {
  int kind;                     /* K_*: the first field, so an epoll pointer tells */
  int state;                    /* C_* */
  int fd;
  int got408;
  size_t sent;                  /* head bytes sent (slow) */
  size_t nin;                   /* bytes received */
  char first[16];               /* the first bytes received */
  int64_t connected_at, closed_at;
} hconn_t;

/* The normal client's connection and its request in progress. */
typedef struct normal {
  int kind;                     /* K_NORMAL */
  int fd;                       /* -1: none */
  int connecting;
  int busy;                     /* a request is in progress */
  int64_t started;              /* when the request (or its connect) began */
  size_t len;
  char buf[64 * 1024];
} normal_t;

static const char SLOW_HEAD[] =
  "GET /slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hostile-slowloris\r\n"
  "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  /* never ends with the blank line; at one byte a second it takes minutes */

static int ep;
static hconn_t *conns;
static int nslow = 1000, nsilent = 1000, nconns;
static int nconnected, nconnect_failed, nopen_hostile;
static normal_t nc = { .kind = K_NORMAL, .fd = -1 };
static char request[512];
static size_t request_len;
static uint32_t *lat;
static int nreq = 400, nok, nfailed, ndone;


static void ep_add(int fd, uint32_t events, void *ptr) {
  struct epoll_event ev = { .events = events, .data.ptr = ptr };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    die("epoll_ctl add");
}


static void ep_mod(int fd, uint32_t events, void *ptr) {
  struct epoll_event ev = { .events = events, .data.ptr = ptr };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
    die("epoll_ctl mod");
}


static void hostile_closed(hconn_t *c, int64_t now) {
  close(c->fd);                 /* also leaves the epoll set */
  c->fd = -1;
  c->state = C_CLOSED;
  c->closed_at = now;
  nopen_hostile--;
}


static void hostile_event(hconn_t *c, uint32_t events, int64_t now) {
  if (c->state == C_CONNECTING) {
    int err = sock_error(c->fd);
    if (err != 0) {
      nconnect_failed++;
      close(c->fd);
      c->fd = -1;
      c->state = C_CLOSED;
      c->closed_at = 0;
      nopen_hostile--;
      return;
    }
    c->state = C_OPEN;
    c->connected_at = now;
    nconnected++;
    ep_mod(c->fd, EPOLLIN, c);
    return;
  }
  if (c->state != C_OPEN || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    return;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (c->nin < sizeof c->first) {
        size_t take = sizeof c->first - c->nin < (size_t)n ? sizeof c->first - c->nin : (size_t)n;
        memcpy(c->first + c->nin, buf, take);
      }
      c->nin += (size_t)n;
      if (c->nin >= 12 && memcmp(c->first, "HTTP/1.1 408", 12) == 0)
        c->got408 = 1;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    hostile_closed(c, now);     /* EOF or reset: the server closed it */
    return;
  }
}


/* Slow connection k sends its next head byte, if it is open. */
static void dribble(hconn_t *c, int64_t now) {
  if (c->state != C_OPEN || c->sent >= sizeof SLOW_HEAD - 1)
    return;
  ssize_t n = send(c->fd, SLOW_HEAD + c->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == 1)
    c->sent++;
  else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    hostile_closed(c, now);     /* EPIPE, ECONNRESET: closed by the server */
}


static void normal_close(void) {
  if (nc.fd >= 0)
    close(nc.fd);
  nc.fd = -1;
  nc.connecting = 0;
}


static void normal_finish(int ok, int64_t now) {
  if (ok) {
    int64_t us = now - nc.started;
    lat[nok++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  }
  else {
    nfailed++;
    normal_close();
  }
  nc.busy = 0;
  nc.len = 0;
  ndone++;
}


static void normal_send(int64_t now) {
  size_t off = 0;
  while (off < request_len) {
    ssize_t n = send(nc.fd, request + off, request_len - off, MSG_NOSIGNAL);
    if (n > 0)
      off += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      continue;                 /* a few hundred bytes on an idle socket: not expected */
    else {
      normal_finish(0, now);
      return;
    }
  }
}


static void normal_begin(int fresh, int64_t now) {
  nc.busy = 1;
  nc.len = 0;
  nc.started = now;
  if (fresh)
    normal_close();
  if (nc.fd < 0) {
    nc.fd = start_connect();
    if (nc.fd < 0) {
      normal_finish(0, now);
      return;
    }
    nc.connecting = 1;
    ep_add(nc.fd, EPOLLOUT, &nc);
    return;
  }
  normal_send(now);
}


/* Has buf a whole answer?  1 yes (status in *status), 0 not yet, -1 bad. */
static int whole_answer(const char *buf, size_t len, int *status) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (end == NULL)
    return len >= sizeof nc.buf ? -1 : 0;
  size_t head = (size_t)(end - buf) + 4;
  if (head < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
    return -1;
  *status = atoi(buf + 9);
  long clen = -1;
  for (const char *p = buf; p < end; ) {
    const char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
    if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
      clen = strtol(p + 15, NULL, 10);
    p = eol + 2;
  }
  if (clen < 0)
    return -1;                  /* the server gives small answers a Content-Length */
  if (head + (size_t)clen > sizeof nc.buf)
    return -1;
  return len >= head + (size_t)clen;
}


static void normal_event(uint32_t events, int64_t now) {
  if (nc.connecting) {
    if (sock_error(nc.fd) != 0) {
      normal_finish(0, now);
      return;
    }
    nc.connecting = 0;
    ep_mod(nc.fd, EPOLLIN, &nc);
    normal_send(now);
    return;
  }
  for (;;) {
    ssize_t n = recv(nc.fd, nc.buf + nc.len, sizeof nc.buf - nc.len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {               /* closed: a failure only in the middle of a request */
      if (nc.busy)
        normal_finish(0, now);
      else
        normal_close();
      return;
    }
    if (!nc.busy)
      continue;                 /* bytes nobody asked for: ignored */
    nc.len += (size_t)n;
    int status = 0;
    int r = whole_answer(nc.buf, nc.len, &status);
    if (r < 0)
      normal_finish(0, now);
    else if (r > 0)
      normal_finish(status == 200, now);
    if (r != 0)
      return;
  }
}


static int slowloris(int argc, char **argv) {
  int interval_ms = 10, fresh_every = 10, wait_s = 10;
  const char *path = "/";
  int i;
  for (i = 2; i < argc && argv[i][0] == '-'; i++) {
    if (i + 1 >= argc) goto usage;
    if (!strcmp(argv[i], "-s")) nslow = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-q")) nsilent = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-n")) nreq = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-i")) interval_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-f")) fresh_every = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-w")) wait_s = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-p")) path = argv[++i];
    else goto usage;
  }
  if (argc - i != 1 || nslow < 0 || nsilent < 0 || nreq < 1 || interval_ms < 0 ||
      fresh_every < 0 || wait_s < 0 || strlen(path) > 256)
    goto usage;
  addr.sin_port = htons((uint16_t)atoi(argv[i]));
  request_len = (size_t)snprintf(request, sizeof request,
                                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
  nconns = nslow + nsilent;
  want_fds((rlim_t)nconns + 64);
  conns = calloc((size_t)nconns + 1, sizeof *conns);
  lat = calloc((size_t)nreq, sizeof *lat);
  if (conns == NULL || lat == NULL)
    die("calloc");
  /* slow and silent connections alternate, so both spread over the ramp */
  for (int k = 0, s = 0, q = 0; k < nconns; k++) {
    int slow = (s < nslow) && (q >= nsilent || k % 2 == 0);
    conns[k].kind = slow ? K_SLOW : K_SILENT;
    conns[k].fd = -1;
    if (slow) s++; else q++;
  }
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
    die("epoll_create1");

  int64_t t0 = now_us(), ramp_done = 0, normal_t0 = 0, normal_end = 0, deadline = 0;
  int opened = 0, next_req = 0, held = 0;
  int64_t slot = 0;               /* dribble slots: one slow connection's turn each */
  int64_t slot_us = nslow > 0 ? 1000000 / nslow : 0;
  int *slow_index = calloc((size_t)nslow + 1, sizeof *slow_index);
  if (slow_index == NULL)
    die("calloc");
  for (int k = 0, s = 0; k < nconns; k++)
    if (conns[k].kind == K_SLOW) slow_index[s++] = k;

  for (;;) {
    int64_t now = now_us();
    /* ramp: BATCH more connections every BATCH_MS */
    while (opened < nconns && now - t0 >= (int64_t)(opened / BATCH) * BATCH_MS * 1000) {
      hconn_t *c = &conns[opened++];
      c->fd = start_connect();
      if (c->fd < 0) {
        nconnect_failed++;
        c->state = C_CLOSED;
        continue;
      }
      c->state = C_CONNECTING;
      nopen_hostile++;
      ep_add(c->fd, EPOLLOUT, c);
    }
    if (!ramp_done && opened == nconns &&
        (nconnected + nconnect_failed == nconns || now - t0 > RAMP_MS * 1000)) {
      ramp_done = now;
      normal_t0 = now;
    }
    /* the slow connections' turns that are due (at most one round) */
    if (slot_us > 0) {
      int64_t due = (now - t0) / slot_us;
      if (due - slot > nslow)
        slot = due - nslow;
      for (; slot < due; slot++)
        dribble(&conns[slow_index[slot % nslow]], now);
    }
    /* the normal client */
    if (normal_t0 && !normal_end) {
      if (nc.busy && now - nc.started > REQUEST_TIMEOUT_US)
        normal_finish(0, now);
      if (!nc.busy && (ndone == nreq ||
                       now - normal_t0 > (int64_t)nreq * interval_ms * 1000 + 10000000)) {
        normal_end = now;
        held = nopen_hostile;
        deadline = now + (int64_t)wait_s * 1000000;
        normal_close();
      }
      else if (!nc.busy && next_req < nreq &&
               now >= normal_t0 + (int64_t)next_req * interval_ms * 1000) {
        int fresh = fresh_every > 0 && next_req % fresh_every == 0;
        next_req++;
        normal_begin(fresh, now);
      }
    }
    if (normal_end && (nopen_hostile == 0 || now >= deadline))
      break;
    if (now - t0 > (int64_t)(HARD_LIMIT_SECS - 5) * 1000000)
      break;

    /* sleep until the next thing due: a slot, a ramp step, a request */
    int64_t wake = now + 100000;
    if (slot_us > 0 && t0 + (slot + 1) * slot_us < wake) wake = t0 + (slot + 1) * slot_us;
    if (opened < nconns) {
      int64_t step = t0 + (int64_t)(opened / BATCH) * BATCH_MS * 1000;
      if (step < wake) wake = step;
    }
    if (normal_t0 && !normal_end && !nc.busy) {
      int64_t at = normal_t0 + (int64_t)next_req * interval_ms * 1000;
      if (at < wake) wake = at;
    }
    int timeout = wake > now ? (int)((wake - now + 999) / 1000) : 0;
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    now = now_us();
    for (int e = 0; e < n; e++) {
      int kind = *(int *)evs[e].data.ptr;
      if (kind == K_NORMAL)
        normal_event(evs[e].events, now);
      else
        hostile_event(evs[e].data.ptr, evs[e].events, now);
    }
  }

  int slow_closed = 0, slow408 = 0, silent_closed = 0, silent_answered = 0, open = 0;
  int64_t cmin = -1, cmax = -1;
  for (int k = 0; k < nconns; k++) {
    hconn_t *c = &conns[k];
    if (c->state == C_OPEN || c->state == C_CONNECTING)
      open++;
    if (c->state == C_CLOSED && c->connected_at > 0) {
      int64_t ms = (c->closed_at - c->connected_at) / 1000;
      if (cmin < 0 || ms < cmin) cmin = ms;
      if (ms > cmax) cmax = ms;
      if (c->kind == K_SLOW) slow_closed++; else silent_closed++;
    }
    if (c->kind == K_SLOW && c->got408) slow408++;
    if (c->kind == K_SILENT && c->nin > 0) silent_answered++;
  }
  qsort(lat, (size_t)nok, sizeof *lat, cmp_u32);
  uint32_t p50 = nok ? lat[(nok - 1) / 2] : 0;
  uint32_t p99 = nok ? lat[(nok * 99 + 99) / 100 - 1] : 0;
  uint32_t mx = nok ? lat[nok - 1] : 0;
  printf("slowloris connected=%d connect_failed=%d ramp_ms=%lld requests=%d ok=%d failed=%d "
         "p50_us=%u p99_us=%u max_us=%u held=%d slow_closed=%d slow_408=%d silent_closed=%d "
         "silent_answered=%d open=%d close_min_ms=%lld close_max_ms=%lld\n",
         nconnected, nconnect_failed, (long long)((ramp_done ? ramp_done : now_us()) - t0) / 1000,
         ndone, nok, nfailed + (nreq - ndone), p50, p99, mx, held, slow_closed, slow408,
         silent_closed, silent_answered, open, (long long)cmin, (long long)cmax);
  return 0;

usage:
  fprintf(stderr, "usage: hostile slowloris [-s N] [-q N] [-n N] [-i MS] [-f K] [-w SECS] "
                  "[-p PATH] PORT\n");
  return 2;
}
/* }====== */


/* {====== slowread */

static int slowread(int argc, char **argv) {
  int rcvbuf = 4096, secs = 5, pause_us = 1000;
  int i;
  for (i = 2; i < argc && argv[i][0] == '-'; i++) {
    if (i + 1 >= argc) goto usage;
    if (!strcmp(argv[i], "-b")) rcvbuf = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-t")) secs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-u")) pause_us = atoi(argv[++i]);
    else goto usage;
  }
  if (argc - i != 2 || rcvbuf < 0 || secs < 1 || pause_us < 0 || strlen(argv[i + 1]) > 256)
    goto usage;
  addr.sin_port = htons((uint16_t)atoi(argv[i]));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  /* before connect: the window scale is agreed in the handshake */
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
    die("SO_RCVBUF");
  struct timeval tv = { 2, 0 };   /* a recv that waits this long ends the run */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
    die("connect");
  int actual = 0;
  socklen_t alen = sizeof actual;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &actual, &alen);
  char req[512];
  int rlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", argv[i + 1]);
  if (send(fd, req, (size_t)rlen, MSG_NOSIGNAL) != rlen)
    die("send");

  char head[8192];
  size_t hlen = 0;
  int status = 0, eof = 0;
  long long length = -1, bytes = 0;
  int64_t t0 = now_us(), end = t0 + (int64_t)secs * 1000000;
  while (now_us() < end) {
    char b;
    ssize_t n = recv(fd, &b, 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;                    /* nothing for 2 s: reported through bytes */
    if (n <= 0) {
      eof = 1;
      break;
    }
    if (status == 0) {          /* the head, byte by byte too */
      if (hlen == sizeof head - 1)
        break;
      head[hlen++] = b;
      head[hlen] = 0;
      if (hlen >= 4 && memcmp(head + hlen - 4, "\r\n\r\n", 4) == 0) {
        status = atoi(head + 9);
        if (status == 0)
          status = -1;
        for (char *p = head; (p = strchr(p, '\n')) != NULL; ) {
          p++;
          if (strncasecmp(p, "content-length:", 15) == 0)
            length = strtoll(p + 15, NULL, 10);
        }
      }
      continue;
    }
    bytes++;
    if (pause_us > 0)
      usleep((useconds_t)pause_us);
  }
  printf("slowread status=%d length=%lld rcvbuf=%d bytes=%lld eof=%d secs=%.2f\n",
         status, length, actual, bytes, eof, (double)(now_us() - t0) / 1e6);
  close(fd);
  return 0;

usage:
  fprintf(stderr, "usage: hostile slowread [-b BYTES] [-t SECS] [-u USEC] PORT PATH\n");
  return 2;
}
/* }====== */


int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  alarm(HARD_LIMIT_SECS);         /* whatever happens, the run ends */
  setvbuf(stdout, NULL, _IOLBF, 0);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc >= 2 && !strcmp(argv[1], "slowloris"))
    return slowloris(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "slowread"))
    return slowread(argc, argv);
  fprintf(stderr, "usage: hostile slowloris|slowread [options] PORT ...\n");
  return 2;
}
