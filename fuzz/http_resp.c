/*
** libFuzzer harness: the client's response parser (src/codec/http_resp.c,
** with llhttp and chunked.c behind it).
**
** The first byte of the input chooses the parse: bit 0, the request was
** HEAD; bit 1, small limits (max_header_bytes 64 + the byte, max_headers
** 4, max_body 32); bit 2, the connection closes after the last byte (eof).
** The rest is what the server sent.  It is parsed in one read (the
** reference), then again in pieces: split in two at up to 24 positions,
** one byte a read, and in pieces of 2..17 bytes.  Each piece is copied to
** a buffer of its own size, so that a read past it is caught.  Every split
** must give the same status, header fields, body, end state, keep-alive,
** bytes consumed and error (code and message) as the single read; the
** body may not be longer than the input, nor the head fields either.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http_resp.h"


typedef struct result {
  char *out;                    /* status, fields and body, serialized */
  size_t len, cap;
  long consumed;                /* total, or the error code */
  int done, keepalive, heads;
  char why[128];
} result_t;


static void put (result_t *res, const void *p, size_t n) {
  if (n > res->cap - res->len) {
    fprintf(stderr, "http_resp: %zu bytes out of %zu-byte input\n", res->len + n, res->cap);
    abort();
  }
  memcpy(res->out + res->len, p, n);
  res->len += n;
}


static int on_head (void *ud, owl_resp_t *r) {
  result_t *res = ud;
  char line[32];
  size_t rlen;
  const char *reason = owl_resp_reason(r, &rlen);
  res->heads++;
  int n = snprintf(line, sizeof line, "%d %d %d ", r->status, r->minor, r->framing);
  put(res, line, (size_t)n);
  put(res, reason, rlen);
  for (size_t i = 0; i < owl_resp_nheaders(r); i++) {
    const char *name, *value;
    size_t nlen, vlen;
    owl_resp_header(r, i, &name, &nlen, &value, &vlen);
    put(res, name, nlen);
    put(res, value, vlen);
  }
  return 0;
}


static int on_body (void *ud, const char *at, size_t n) {
  if (n == 0) {
    fprintf(stderr, "http_resp: an empty body span\n");
    abort();
  }
  put(ud, at, n);
  return 0;
}


static int on_done (void *ud, owl_resp_t *r) {
  result_t *res = ud;
  res->done++;
  res->keepalive = r->keepalive;
  return 0;
}


static const owl_resp_events events = { on_head, on_body, on_done };


static void parse (result_t *res, const uint8_t *data, size_t size, const size_t *cuts,
                   size_t ncut, int head_req, const owl_resp_limits_t *lim, int eof) {
  owl_resp_t r;
  size_t from = 0;
  long st = 0;
  owl_resp_init(&r, head_req, lim);
  res->len = 0;
  res->consumed = 0;
  res->done = res->keepalive = res->heads = 0;
  res->why[0] = 0;
  for (size_t k = 0; k <= ncut; k++) {
    size_t to = k < ncut ? cuts[k] : size, n = to - from;
    char *piece = malloc(n ? n : 1);
    memcpy(piece, data + from, n);
    st = owl_resp_feed(&r, piece, n, &events, res);
    free(piece);
    if (st < 0)
      break;
    if ((size_t)st > n || ((size_t)st < n && !owl_resp_done(&r))) {
      fprintf(stderr, "http_resp: consumed %ld of %zu bytes, not done\n", st, n);
      abort();
    }
    res->consumed += st;
    from = to;
  }
  if (st >= 0 && eof)
    st = owl_resp_eof(&r, &events, res);
  if (st < 0) {
    res->consumed = st;
    snprintf(res->why, sizeof res->why, "%s", owl_resp_error(&r));
  }
  if (res->heads > 1 || res->done > 1 || (res->done && !res->heads)) {
    fprintf(stderr, "http_resp: %d heads, %d ends\n", res->heads, res->done);
    abort();
  }
  owl_resp_free(&r);
}


static void same (const result_t *a, const result_t *b, const char *what) {
  if (a->consumed != b->consumed || a->done != b->done || a->keepalive != b->keepalive ||
      strcmp(a->why, b->why) != 0 ||
      (a->consumed >= 0 && (a->len != b->len || memcmp(a->out, b->out, a->len) != 0))) {
    fprintf(stderr, "http_resp: %s differs from one read: consumed %ld/%ld, done %d/%d, "
            "keep-alive %d/%d, \"%s\"/\"%s\", %zu/%zu bytes out\n", what, b->consumed,
            a->consumed, b->done, a->done, b->keepalive, a->keepalive, b->why, a->why,
            b->len, a->len);
    abort();
  }
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  int head_req = data[0] & 1, eof = (data[0] >> 2) & 1;
  owl_resp_limits_t lim = { 0, 0, 0 }, *limp = NULL;
  if (data[0] & 2) {
    lim.max_header_bytes = 64 + data[0];
    lim.max_headers = 4;
    lim.max_body = 32;
    limp = &lim;
  }
  data++;
  size--;
  result_t whole, part;
  size_t *cuts = malloc((size ? size : 1) * sizeof *cuts), step, ncut;
  /* out: a status line of numbers (at most 32 bytes) and input bytes */
  whole.cap = part.cap = size + 32;
  whole.out = malloc(whole.cap);
  part.out = malloc(part.cap);

  parse(&whole, data, size, NULL, 0, head_req, limp, eof);

  step = size <= 25 ? 1 : (size - 1) / 24 + 1;
  for (size_t i = 1 + (size > 25 ? data[0] % step : 0); i < size; i += step) {
    cuts[0] = i;
    parse(&part, data, size, cuts, 1, head_req, limp, eof);
    same(&whole, &part, "a split in two");
  }

  for (ncut = 0; ncut + 1 < size; ncut++)
    cuts[ncut] = ncut + 1;
  parse(&part, data, size, cuts, ncut, head_req, limp, eof);
  same(&whole, &part, "one byte a read");

  if (size > 0) {
    step = 2 + data[0] % 16;
    for (ncut = 0; (ncut + 1) * step < size; ncut++)
      cuts[ncut] = (ncut + 1) * step;
    parse(&part, data, size, cuts, ncut, head_req, limp, eof);
    same(&whole, &part, "fixed-size pieces");
  }

  free(cuts);
  free(whole.out);
  free(part.out);
  return 0;
}
