/*
 * bench/idle.c: the idle-connection client of bench/run, on libuv + llhttp
 * (and OpenSSL for -s).
 *
 *   idle [-w] [-s] [-m INFLIGHT] [-t SECS] HOST PORT N
 *
 * Opens N connections to HOST:PORT, at most INFLIGHT (default 100) still
 * connecting or waiting for their answer at a time, so no listen backlog
 * overflows.  On each it sends one keep-alive "GET / HTTP/1.1" and reads the
 * whole response (llhttp, any framing), or with -w a WebSocket upgrade and
 * its 101 (no extensions offered; no message follows).  With -s each
 * connection first makes a TLS handshake (TLS 1.2 or 1.3, OpenSSL's
 * defaults, the certificate not verified) and the GET goes over it: SSL on
 * memory BIOs, fed by the connection's reads, its output written with
 * uv_write; a session ticket or other handshake message the server sends
 * once the answer is in is taken, not counted as lost.  When all N are
 * answered it prints "idle N" and holds them, reading nothing more, for SECS
 * seconds (default 120) or until killed.  A connection the server closes
 * meanwhile is reported on stderr ("lost: ...").  Exits non-zero with the
 * reason on stderr when a connection, a request or an answer fails.
 *
 * Ownership: conns live until exit, their SSL too; requests are a static
 * buffer; a TLS write's uv_write_t and bytes are one malloc'd block, freed in
 * on_tls_write.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>


typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  char hs[1024];                /* -w: the 101 head as it arrives */
  size_t nhs;
  int done;
  SSL *ssl;                     /* -s: on two memory BIOs */
  BIO *rbio, *wbio;             /* what the server sent, what SSL writes */
  int sent;                     /* -s: the GET is written */
} conn_t;


static uv_loop_t *loop;
static llhttp_settings_t settings;
static struct sockaddr_in addr;
static conn_t *conns;
static int n, inflight = 100, secs = 120, ws, tls, started, answered, lost;
static SSL_CTX *ctx;
static char pbuf[64 * 1024];            /* -s: plaintext out of SSL_read */
static char rbuf[64 * 1024];
static char req[512];
static size_t req_len;
static uv_timer_t hold;


static void fail(const char *what, int err) {
  fprintf(stderr, "idle: %s: %s (%d connections answered)\n", what,
          err ? uv_strerror(err) : "failed", answered);
  exit(1);
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}


static void start_one(void);


static void on_hold(uv_timer_t *t) {
  (void)t;
  exit(0);
}


static void answered_one(conn_t *c) {
  c->done = 1;
  if (++answered == n) {
    printf("idle %d\n", n);
    fflush(stdout);
    uv_timer_start(&hold, on_hold, (uint64_t)secs * 1000, 0);
  } else if (started < n) {
    start_one();
  }
}


static int on_message_complete(llhttp_t *p) {
  answered_one(p->data);
  return HPE_PAUSED;
}


static void fail_tls(const char *what) {
  unsigned long e = ERR_get_error();
  fprintf(stderr, "idle: %s: %s (%d connections answered)\n", what,
          e ? ERR_error_string(e, NULL) : "failed", answered);
  exit(1);
}


static void on_tls_write(uv_write_t *w, int status) {
  free(w);
  if (status < 0) fail("write", status);
}


/* -s: writes out what SSL has put in c's write BIO. */
static void tls_flush(conn_t *c) {
  size_t len;
  while ((len = BIO_ctrl_pending(c->wbio)) > 0) {
    uv_write_t *w = malloc(sizeof *w + len);
    uv_buf_t b;
    int r;
    if (!w) fail("malloc", 0);
    b = uv_buf_init((char *)(w + 1), (unsigned)len);
    if (BIO_read(c->wbio, b.base, (int)len) != (int)len) fail("BIO_read", 0);
    if ((r = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_tls_write)) < 0) fail("write", r);
  }
}


static void parse(conn_t *c, const char *p, size_t len);


/* -s: takes len bytes the server sent: the handshake, then the GET, then
 * the answer, as far as they go. */
static void tls_read(conn_t *c, const char *p, size_t len) {
  int r;
  if (BIO_write(c->rbio, p, (int)len) != (int)len) fail("BIO_write", 0);
  if (!c->sent) {
    if ((r = SSL_do_handshake(c->ssl)) != 1) {
      if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) fail_tls("the TLS handshake");
      tls_flush(c);
      return;
    }
    if (SSL_write(c->ssl, req, (int)req_len) != (int)req_len) fail_tls("SSL_write");
    c->sent = 1;
  }
  while ((r = SSL_read(c->ssl, pbuf, sizeof pbuf)) > 0) parse(c, pbuf, (size_t)r);
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ: break;
  case SSL_ERROR_ZERO_RETURN:
    if (!c->done) fail("the server closed TLS before its answer", 0);
    fprintf(stderr, "lost: close_notify\n");
    lost++;
    break;
  default: fail_tls(c->done ? "TLS on an idle connection" : "reading the answer");
  }
  tls_flush(c);
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  if (nread == 0) return;
  if (nread < 0) {
    if (!c->done) fail("reading the answer", (int)nread);
    fprintf(stderr, "lost: %s\n", uv_strerror((int)nread));
    lost++;
    uv_read_stop(s);
    return;
  }
  if (tls) {
    tls_read(c, buf->base, (size_t)nread);
    return;
  }
  parse(c, buf->base, (size_t)nread);
}


/* The answer's bytes (decrypted with -s). */
static void parse(conn_t *c, const char *p, size_t len) {
  ssize_t nread = (ssize_t)len;
  if (c->done) {
    fprintf(stderr, "lost: %zd unexpected bytes\n", nread);
    return;
  }
  if (ws) {
    size_t take = (size_t)nread;
    if (take > sizeof c->hs - 1 - c->nhs) fail("the 101 head is too long", 0);
    memcpy(c->hs + c->nhs, p, take);
    c->nhs += take;
    c->hs[c->nhs] = 0;
    if (!strstr(c->hs, "\r\n\r\n")) return;
    if (strncmp(c->hs, "HTTP/1.1 101", 12)) {
      fprintf(stderr, "idle: no 101 from the server:\n%s\n", c->hs);
      exit(1);
    }
    answered_one(c);
    return;
  }
  llhttp_errno_t err = llhttp_execute(&c->parser, p, len);
  if (err != HPE_OK && err != HPE_PAUSED) fail(llhttp_errno_name(err), 0);
  if (c->done && llhttp_get_status_code(&c->parser) != 200) fail("status not 200", 0);
}


static void on_write(uv_write_t *w, int status) {
  (void)w;
  if (status < 0) fail("write", status);
}


static void on_connect(uv_connect_t *creq, int status) {
  conn_t *c = creq->data;
  uv_buf_t b = uv_buf_init(req, req_len);
  int r;
  if (status < 0) fail("connect", status);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (tls) {
    /* the ClientHello; the GET follows the handshake (tls_read) */
    if (!(c->ssl = SSL_new(ctx)) || !(c->rbio = BIO_new(BIO_s_mem())) ||
        !(c->wbio = BIO_new(BIO_s_mem())))
      fail_tls("SSL_new");
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    if ((r = SSL_do_handshake(c->ssl)) != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ)
      fail_tls("the TLS handshake");
    tls_flush(c);
    return;
  }
  if ((r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write)) < 0) fail("write", r);
}


static void start_one(void) {
  conn_t *c = &conns[started++];
  int r;
  uv_tcp_init(loop, &c->tcp);
  llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
  c->parser.data = c;
  c->creq.data = c;
  if ((r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect)) < 0)
    fail("connect", r);
}


int main(int argc, char **argv) {
  int i, r;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "-w")) ws = 1;
    else if (!strcmp(argv[i], "-s")) tls = 1;
    else if (!strcmp(argv[i], "-m") && i + 1 < argc) inflight = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc) secs = atoi(argv[++i]);
    else goto usage;
  }
  if (argc - i != 3 || (n = atoi(argv[i + 2])) < 1 || inflight < 1) goto usage;
  if ((r = uv_ip4_addr(argv[i], atoi(argv[i + 1]), &addr)) < 0) fail(argv[i], r);
  if (ws)
    req_len = (size_t)snprintf(req, sizeof req,
      "GET / HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      argv[i], argv[i + 1]);
  else
    req_len = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                               argv[i], argv[i + 1]);

  signal(SIGPIPE, SIG_IGN);           /* a peer gone mid-write: EPIPE, not death */
  loop = uv_default_loop();
  llhttp_settings_init(&settings);
  settings.on_message_complete = on_message_complete;
  uv_timer_init(loop, &hold);
  if (tls) {
    if (!(ctx = SSL_CTX_new(TLS_client_method()))) fail_tls("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  conns = calloc((size_t)n, sizeof *conns);
  if (!conns) fail("calloc", 0);
  while (started < n && started < inflight) start_one();
  return uv_run(loop, UV_RUN_DEFAULT);

usage:
  fprintf(stderr, "usage: idle [-w] [-s] [-m INFLIGHT] [-t SECS] HOST PORT N\n");
  return 2;
}
