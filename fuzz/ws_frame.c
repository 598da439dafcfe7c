/*
** libFuzzer harness: the WebSocket frame decoder and message layer
** (owl_ws_feed in src/ws.c) and the UTF-8 validator (owl_utf8_check).
**
** Input: one configuration byte, then the bytes from the peer.
**   bit 0     role: 0 server (frames must be masked), 1 client
**   bits 1-2  limits: the defaults (16 MiB), none, 64 bytes, 1000 bytes
**   bit 3     every callback asks to pause (the rest is fed again)
**   bit 4     permessage-deflate agreed (RSV1 frames are compressed)
**   bits 5-7  how the split reads are cut (see below)
** The bytes are fed in one read first; the events (messages, control
** frames), their payloads and the final error are the reference.  Then
** the same bytes are fed to a fresh connection in pieces: two, cut at up
** to 8 positions spread over the input, one byte a read, and pieces of a
** length chosen by bits 5-7; each must report exactly the reference.
** Fragmented messages thus have their state carried across frames and
** across reads.  Every text message and close reason is checked against
** an independent UTF-8 decoder, every message against the limit.
**
** The UTF-8 validator is also run over the input itself, whole and in two
** pieces, against the same decoder.
*/

#include "ws_util.h"


typedef struct config {
  int role;
  owl_ws_limits_t lim;
  owl_ws_deflate_t pmd;
  int pause;
  unsigned cut;
} config_t;


static void configure (config_t *c, unsigned b) {
  static const uint64_t limits[4] = { OWL_WS_MAX_MESSAGE, 0, 64, 1000 };
  memset(c, 0, sizeof *c);
  c->role = b & 1 ? OWL_WS_CLIENT : OWL_WS_SERVER;
  c->lim.max_frame = c->lim.max_message = limits[(b >> 1) & 3];
  c->pause = (b >> 3) & 1;
  c->pmd.enabled = (b >> 4) & 1;
  c->cut = b >> 5;
}


/*
** Feeds data[0..size) cut at cuts[0..ncut) to a new connection.  The codec
** unmasks in place: the bytes are copied first, with own each piece to a
** buffer of its own size (reading past a piece is then caught), else all
** to one buffer of the input's size (cheaper for many small pieces).
** Returns 0 or the error code.
*/
static long run (const config_t *c, const uint8_t *data, size_t size,
                 const size_t *cuts, size_t ncut, int own, events_t *e) {
  owl_ws_conn_t ws;
  size_t from = 0;
  char *all = NULL;
  long r = 0;
  owl_ws_init(&ws, c->role, &c->lim, &c->pmd);
  events_reset(e);
  e->max_message = c->lim.max_message;
  e->pause = c->pause;
  if (!own) {
    all = malloc(size ? size : 1);
    memcpy(all, data, size);
  }
  for (size_t k = 0; k <= ncut && r == 0; k++) {
    size_t to = k < ncut ? cuts[k] : size;
    char *piece = all;
    if (!own)
      piece += from;
    else {
      piece = malloc(to - from + 1);
      memcpy(piece, data + from, to - from);
    }
    r = feed_all(&ws, piece, to - from, e);
    if (own)
      free(piece);
    from = to;
  }
  free(all);
  if (r == 0 && owl_ws_closed(&ws) != e->closed)
    FAIL("owl_ws_closed is %d, a close was %sreported", owl_ws_closed(&ws),
         e->closed ? "" : "not ");
  if (r != 0) {                     /* failed for good */
    char x = 0;
    if (owl_ws_feed(&ws, &x, 1, &fuzz_events, e) != r)
      FAIL("a feed after failing with %ld did not fail the same", r);
  }
  owl_ws_free(&ws);
  return r;
}


static void utf8 (const uint8_t *p, size_t n) {
  uint32_t st = 0;
  int want = ref_utf8(p, n);
  int got = owl_utf8_check(&st, (const char *)p, n) == 0 && st == 0;
  if (got != want)
    FAIL("owl_utf8_check says %d, the decoder %d", got, want);
  if (n > 1) {
    size_t i = 1 + p[0] % (n - 1);
    st = 0;
    got = owl_utf8_check(&st, (const char *)p, i) == 0 &&
          owl_utf8_check(&st, (const char *)p + i, n - i) == 0 && st == 0;
    if (got != want)
      FAIL("owl_utf8_check in two pieces (at %zu) says %d, the decoder %d", i,
           got, want);
  }
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static events_t whole, part;
  config_t c;
  size_t *cuts, ncut, step;
  long r0, r;
  if (size < 1)
    return 0;
  configure(&c, data[0]);
  data++;
  size--;
  utf8(data, size);
  cuts = malloc((size + 1) * sizeof *cuts);

  r0 = run(&c, data, size, NULL, 0, 1, &whole);

  step = size <= 9 ? 1 : (size - 1) / 8 + 1;
  for (size_t i = 1 + (size > 9 ? data[0] % step : 0); i < size; i += step) {
    cuts[0] = i;
    r = run(&c, data, size, cuts, 1, 1, &part);
    events_same(&whole, r0, &part, r, "two reads");
  }

  for (ncut = 0; ncut + 1 < size; ncut++)
    cuts[ncut] = ncut + 1;
  r = run(&c, data, size, cuts, ncut, 0, &part);
  events_same(&whole, r0, &part, r, "one byte a read");

  step = 2 + c.cut * 3;             /* 2, 5, ... 23 */
  for (ncut = 0; (ncut + 1) * step < size; ncut++)
    cuts[ncut] = (ncut + 1) * step;
  r = run(&c, data, size, cuts, ncut, 1, &part);
  events_same(&whole, r0, &part, r, "pieces");

  free(cuts);
  return 0;
}
