/*
** libFuzzer harness: the chunked request-body decoder (src/chunked.c).
**
** The input is the bytes that follow a head with "Transfer-Encoding:
** chunked".  It is decoded in one read (the reference), then again in
** pieces: split in two at up to 24 positions spread over the input, one
** byte a read, and in pieces of a length taken from the input.  Every
** split must give the same body, the same count of bytes consumed, the
** same end state and the same error as the single read.  A shorter line
** limit may refuse more, never accept more or decode otherwise.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/chunked.h"

#define MAX_LINE 4096           /* what a test decoder uses (codec_lua.c) */

typedef struct result {
  unsigned char *body;          /* decoded bytes, at most the input's size */
  size_t blen, cap;
  long used;                    /* total consumed, or -1 after an error */
  int done;
} result_t;


static int collect (void *ud, const char *at, size_t n) {
  result_t *r = ud;
  if (n > r->cap - r->blen) {
    fprintf(stderr, "chunked: %zu body bytes out of %zu input bytes\n",
            r->blen + n, r->cap);
    abort();
  }
  memcpy(r->body + r->blen, at, n);
  r->blen += n;
  return 0;
}


/*
** Decodes data[0..size) cut at the offsets cuts[0..ncut) (ascending).  With
** own, each piece is copied to a buffer of its own size, so that reading
** past a piece is caught; else the pieces are views of data (cheaper for
** many small ones).
*/
static void decode (result_t *r, const uint8_t *data, size_t size,
                    const size_t *cuts, size_t ncut, size_t max_line, int own) {
  owl_chunked_t d;
  size_t from = 0;
  owl_chunked_init(&d, max_line);
  r->blen = 0;
  r->used = 0;
  for (size_t k = 0; k <= ncut && !owl_chunked_done(&d); k++) {
    size_t to = k < ncut ? cuts[k] : size;
    size_t n = to - from;
    char *piece = (char *)data + from;
    if (own) {
      piece = malloc(n ? n : 1);
      memcpy(piece, data + from, n);
    }
    long used = owl_chunked_decode(&d, piece, n, collect, r);
    if (own)
      free(piece);
    if (used < 0) {
      r->used = -1;
      break;
    }
    if ((size_t)used > n || ((size_t)used < n && !owl_chunked_done(&d))) {
      fprintf(stderr, "chunked: consumed %ld of %zu bytes, not done\n", used, n);
      abort();
    }
    r->used += used;
    from = to;
  }
  r->done = r->used >= 0 && owl_chunked_done(&d);
}


static void same (const result_t *a, const result_t *b, const char *what) {
  if (a->used != b->used || a->done != b->done || a->blen != b->blen ||
      memcmp(a->body, b->body, a->blen) != 0) {
    fprintf(stderr, "chunked: %s differs from one read: used %ld/%ld, "
            "done %d/%d, body %zu/%zu bytes\n", what, b->used, a->used,
            b->done, a->done, b->blen, a->blen);
    abort();
  }
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  result_t whole, part;
  size_t *cuts = malloc((size ? size : 1) * sizeof *cuts);
  uint8_t *copy = malloc(size ? size : 1);  /* exactly sized: overreads show */
  size_t step, ncut;
  memcpy(copy, data, size);
  data = copy;
  whole.cap = part.cap = size;
  whole.body = malloc(size ? size : 1);
  part.body = malloc(size ? size : 1);

  decode(&whole, data, size, NULL, 0, MAX_LINE, 0);

  /* two pieces, at up to 24 positions */
  step = size <= 25 ? 1 : (size - 1) / 24 + 1;
  for (size_t i = 1 + (size > 25 ? data[0] % step : 0); i < size; i += step) {
    cuts[0] = i;
    decode(&part, data, size, cuts, 1, MAX_LINE, 1);
    same(&whole, &part, "a split in two");
  }

  /* one byte a read */
  for (ncut = 0; ncut + 1 < size; ncut++)
    cuts[ncut] = ncut + 1;
  decode(&part, data, size, cuts, ncut, MAX_LINE, 0);
  same(&whole, &part, "one byte a read");

  /* pieces of 2..17 bytes, the length from the first byte */
  if (size > 0) {
    step = 2 + data[0] % 16;
    for (ncut = 0; (ncut + 1) * step < size; ncut++)
      cuts[ncut] = (ncut + 1) * step;
    decode(&part, data, size, cuts, ncut, MAX_LINE, 1);
    same(&whole, &part, "fixed-size pieces");
  }

  /* a short line limit: refuses more or decodes the same */
  if (size > 0) {
    decode(&part, data, size, NULL, 0, 1 + data[size - 1] % 64, 0);
    if (part.used >= 0)
      same(&whole, &part, "a shorter line limit");
    else if (part.blen > whole.blen || memcmp(part.body, whole.body, part.blen)) {
      fprintf(stderr, "chunked: a shorter line limit decoded other bytes\n");
      abort();
    }
  }

  free(cuts);
  free(copy);
  free(whole.body);
  free(part.body);
  return 0;
}
