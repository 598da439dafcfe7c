/*
 * bench/wsfloor.c: the WebSocket floor.  A minimal RFC 6455 echo server on
 * libuv + llhttp, the floor bench/run measures WebSocket servers against.
 *
 *   wsfloor [-p PORT]
 *
 * Listens on 127.0.0.1:PORT (default 0: a free port) and prints
 * "listening on PORT".  A GET with Upgrade: websocket and a
 * Sec-WebSocket-Key gets 101; any other request gets "Hello World".  After
 * the upgrade every data frame comes back as it came, unmasked, frame by
 * frame (fragments stay fragments, no reassembly and no UTF-8 check); a
 * ping gets a pong, a close gets the close echoed and the connection
 * closed.  No extensions, no limits beyond memory: it is a floor, not a
 * server.  Runs until killed.
 *
 * Like bench/floor.c: one read buffer for the loop; frames are unmasked in
 * place and all the echoes of one read leave in one write, uv_try_write()
 * first; only what the kernel did not take is copied, into a queued
 * uv_write(), and reading stops until it is out.  Bytes of an unfinished
 * frame are copied into the connection's pend buffer.
 *
 * Ownership: a conn is malloc'd on accept and freed (with its pend and key
 * buffers) in on_close only.  A queued write is one malloc'd block (the
 * uv_write_t followed by the bytes) freed in on_write.
 */
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>
#include <llhttp.h>


typedef struct {
  uv_tcp_t tcp;                 /* first: a handle pointer is a conn pointer */
  llhttp_t parser;
  char *key;                    /* Sec-WebSocket-Key while in HTTP, else NULL */
  char *pend;                   /* bytes of an unfinished frame */
  size_t npend, pend_cap;
  unsigned nresp;               /* HTTP responses owed for the current read */
  unsigned ws : 1;              /* upgraded */
  unsigned in_key : 1;          /* the header being read is the key */
  unsigned want_ws : 1;         /* this request is an upgrade with a key */
  unsigned close_after : 1;
  unsigned closing : 1;
} conn_t;

typedef struct {
  uv_write_t req;
  char data[];
} wblock_t;


static uv_loop_t *loop;
static llhttp_settings_t settings;
static char rbuf[256 * 1024];           /* the one read buffer */
static uv_buf_t *obufs;                 /* the buffers of one write */
static size_t nobufs, obufs_cap;
static unsigned char (*ohdr)[10];       /* frame heads of one write */
static size_t nohdr, ohdr_cap;
static char upgrade_resp[256];
static const char hello_resp[] =
  "HTTP/1.1 200 OK\r\nServer: wsfloor\r\nContent-Type: text/plain\r\n"
  "Content-Length: 11\r\n\r\nHello World";


static void die(const char *what) {
  perror(what);
  exit(1);
}


/* SHA-1 (FIPS 180-4) of len bytes at p into out[20]: for the handshake. */
static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}


static void sha1(const unsigned char *p, size_t len, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  unsigned char blk[64];
  uint64_t bits = (uint64_t)len * 8;
  size_t i, total = ((len + 8) / 64 + 1) * 64;
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80], a, b, c, d, e, f, k, t;
    for (i = 0; i < 64; i++) {
      size_t at = off + i;
      if (at < len) blk[i] = p[at];
      else if (at == len) blk[i] = 0x80;
      else if (at >= total - 8) blk[i] = (unsigned char)(bits >> (8 * (total - 1 - at)));
      else blk[i] = 0;
    }
    for (i = 0; i < 16; i++)
      w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
             (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
    for (i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (i = 0; i < 80; i++) {
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
      else { f = b ^ c ^ d; k = 0xCA62C1D6; }
      t = rol(a, 5) + f + e + k + w[i];
      e = d; d = c; c = rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
  }
  for (i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}


/* Base64 of len bytes at p into out (NUL-terminated). */
static void base64(const unsigned char *p, size_t len, char *out) {
  static const char t[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i;
  for (i = 0; i + 2 < len; i += 3) {
    *out++ = t[p[i] >> 2];
    *out++ = t[(p[i] & 3) << 4 | p[i + 1] >> 4];
    *out++ = t[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
    *out++ = t[p[i + 2] & 63];
  }
  if (i < len) {
    *out++ = t[p[i] >> 2];
    if (i + 1 < len) {
      *out++ = t[(p[i] & 3) << 4 | p[i + 1] >> 4];
      *out++ = t[(p[i + 1] & 15) << 2];
    } else {
      *out++ = t[(p[i] & 3) << 4];
      *out++ = '=';
    }
    *out++ = '=';
  }
  *out = 0;
}


static void on_close(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  free(c->key);
  free(c->pend);
  free(c);
}


static void close_conn(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}


/* Appends a buffer to the write being built. */
static void out(const void *p, size_t len) {
  if (nobufs == obufs_cap) {
    obufs_cap = obufs_cap ? obufs_cap * 2 : 64;
    obufs = realloc(obufs, obufs_cap * sizeof *obufs);
    if (!obufs) die("realloc");
  }
  obufs[nobufs++] = uv_buf_init((char *)p, len);
}


/* A frame head slot that stays put until the write is out: frames() sizes
 * ohdr for its input before any slot of this write is taken. */
static unsigned char *head_slot(void) {
  return ohdr[nohdr++];
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);


static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  if (status < 0 || c->close_after) { close_conn(c); return; }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}


/* Writes the buffers built (obufs), uv_try_write first; copies the rest. */
static void flush(conn_t *c) {
  size_t total = 0, i, left;
  int r;
  if (nobufs == 0) {
    if (c->close_after) close_conn(c);
    return;
  }
  for (i = 0; i < nobufs; i++) total += obufs[i].len;
  r = uv_try_write((uv_stream_t *)&c->tcp, obufs, nobufs);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) { nobufs = nohdr = 0; close_conn(c); return; }
  if ((size_t)r == total) {
    nobufs = nohdr = 0;
    if (c->close_after) close_conn(c);
    return;
  }
  left = total - (size_t)r;
  wblock_t *w = malloc(sizeof *w + left);
  if (!w) die("malloc");
  char *d = w->data;
  for (i = 0; i < nobufs; i++) {
    size_t len = obufs[i].len;
    const char *p = obufs[i].base;
    if ((size_t)r >= len) { r -= len; continue; }
    memcpy(d, p + r, len - r);
    d += len - r;
    r = 0;
  }
  nobufs = nohdr = 0;
  w->req.data = c;
  uv_buf_t b = uv_buf_init(w->data, left);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
    free(w);
    close_conn(c);
    return;
  }
  uv_read_stop((uv_stream_t *)&c->tcp);
}


/* XORs len bytes at p with the 4-byte mask, 8 bytes at a time. */
static void unmask(unsigned char *p, size_t len, const unsigned char m[4]) {
  uint64_t m8;
  uint32_t m4;
  size_t i = 0;
  memcpy(&m4, m, 4);
  m8 = (uint64_t)m4 << 32 | m4;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    v ^= m8;
    memcpy(p + i, &v, 8);
  }
  for (; i < len; i++) p[i] ^= m[i & 3];
}


/* Echoes the complete frames in p[0..n); returns the bytes used.  The echoes
 * are appended to obufs (payloads point into p, unmasked in place). */
static size_t frames(conn_t *c, unsigned char *p, size_t n) {
  size_t at = 0;
  size_t need = n / 6 + 1;              /* a frame takes at least 6 bytes */
  if (need > ohdr_cap) {                /* nohdr is 0: nothing points in */
    ohdr_cap = need;
    ohdr = realloc(ohdr, ohdr_cap * sizeof *ohdr);
    if (!ohdr) die("realloc");
  }
  while (!c->close_after && n - at >= 2) {
    unsigned char *f = p + at, *h;
    unsigned op = f[0] & 0x0F, fin = f[0] & 0x80;
    uint64_t len = f[1] & 0x7F;
    size_t hl = 2, i;
    if (!(f[1] & 0x80)) { c->close_after = 1; break; }       /* unmasked */
    if (len == 126) {
      if (n - at < 4) break;
      len = (uint64_t)f[2] << 8 | f[3];
      hl = 4;
    } else if (len == 127) {
      if (n - at < 10) break;
      len = 0;
      for (i = 0; i < 8; i++) len = len << 8 | f[2 + i];
      hl = 10;
    }
    if (n - at < hl + 4 || n - at - hl - 4 < len) break;     /* unfinished */
    unsigned char *pay = f + hl + 4;
    unmask(pay, (size_t)len, f + hl);
    at += hl + 4 + (size_t)len;
    if (op == 0xA) continue;                                  /* pong */
    if (op == 0x9) op = 0xA;                                  /* ping: pong */
    else if (op == 0x8) c->close_after = 1;                   /* echo close */
    h = head_slot();
    h[0] = (unsigned char)(fin | op);
    if (len < 126) { h[1] = (unsigned char)len; hl = 2; }
    else if (len < 65536) { h[1] = 126; h[2] = (unsigned char)(len >> 8); h[3] = (unsigned char)len; hl = 4; }
    else { h[1] = 127; for (i = 0; i < 8; i++) h[2 + i] = (unsigned char)(len >> (56 - 8 * i)); hl = 10; }
    out(h, hl);
    if (len) out(pay, (size_t)len);
  }
  return at;
}


/* Handles WebSocket bytes: pending bytes first, keeps what is unfinished. */
static void ws_read(conn_t *c, unsigned char *p, size_t n) {
  size_t used;
  if (c->npend) {
    if (c->npend + n > c->pend_cap) {
      c->pend_cap = (c->npend + n) * 2;
      c->pend = realloc(c->pend, c->pend_cap);
      if (!c->pend) die("realloc");
    }
    memcpy(c->pend + c->npend, p, n);
    n += c->npend;
    p = (unsigned char *)c->pend;
  }
  used = frames(c, p, n);
  flush(c);                           /* before pend moves: obufs point into it */
  if (used < n && !c->close_after) {
    if (n - used > c->pend_cap) {
      c->pend_cap = n - used;
      c->pend = realloc(c->pend, c->pend_cap);
      if (!c->pend) die("realloc");
      /* p may have been c->pend: it only grows when p is rbuf */
    }
    memmove(c->pend, p + used, n - used);
  }
  c->npend = used < n ? n - used : 0;
}


static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = p->data;
  c->in_key = len == 17 && !strncasecmp(at, "sec-websocket-key", 17);
  return 0;
}


static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->in_key && len < 64) {
    free(c->key);
    c->key = strndup(at, len);
    if (!c->key) die("strndup");
  }
  return 0;
}


static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->want_ws = p->upgrade && c->key != NULL;
  return 0;
}


static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  if (c->want_ws) return 0;         /* llhttp pauses: HPE_PAUSED_UPGRADE */
  c->nresp++;
  if (!llhttp_should_keep_alive(p)) {
    c->close_after = 1;
    return HPE_PAUSED;
  }
  return 0;
}


/* Answers the upgrade: 101 with Sec-WebSocket-Accept; frees the key. */
static void accept_ws(conn_t *c) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char kg[128], dig[20];
  char acc[32];
  size_t kl = strlen(c->key);
  int n;
  memcpy(kg, c->key, kl);
  memcpy(kg + kl, guid, sizeof guid - 1);
  sha1(kg, kl + sizeof guid - 1, dig);
  base64(dig, 20, acc);
  free(c->key);
  c->key = NULL;
  n = snprintf(upgrade_resp, sizeof upgrade_resp,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
  out(upgrade_resp, (size_t)n);
  c->ws = 1;
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  llhttp_errno_t err;
  unsigned i;
  if (nread < 0) { close_conn(c); return; }
  if (nread == 0) return;
  if (c->ws) { ws_read(c, (unsigned char *)buf->base, (size_t)nread); return; }
  err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  for (i = 0; i < c->nresp; i++) out(hello_resp, sizeof hello_resp - 1);
  c->nresp = 0;
  if (err == HPE_PAUSED_UPGRADE && c->want_ws) {
    const char *rest = llhttp_get_error_pos(&c->parser);
    size_t left = (size_t)(buf->base + nread - rest);
    accept_ws(c);
    if (left) {                       /* frames sent before the 101 arrived */
      ws_read(c, (unsigned char *)rest, left);
      return;
    }
  } else if (err != HPE_OK && err != HPE_PAUSED) {
    c->close_after = 1;
  }
  flush(c);
}


static void on_connection(uv_stream_t *server, int status) {
  conn_t *c;
  if (status < 0) return;
  c = calloc(1, sizeof *c);
  if (!c) die("calloc");
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
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int port = 0, i, r, namelen = sizeof name;

  for (i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p") && i + 1 < argc) port = atoi(argv[++i]);
    else { fprintf(stderr, "usage: wsfloor [-p PORT]\n"); return 2; }
  }
  signal(SIGPIPE, SIG_IGN);           /* a peer gone mid-write: EPIPE, not death */
  loop = uv_default_loop();
  llhttp_settings_init(&settings);
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_headers_complete = on_headers_complete;
  settings.on_message_complete = on_message_complete;

  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", port, &addr);
  if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0)) < 0 ||
      (r = uv_listen((uv_stream_t *)&server, 4096, on_connection)) < 0) {
    fprintf(stderr, "wsfloor: %s\n", uv_strerror(r));
    return 1;
  }
  uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen);
  printf("listening on %d\n", ntohs(((struct sockaddr_in *)&name)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
