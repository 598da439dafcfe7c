/*
** libFuzzer harness: permessage-deflate inflation (RFC 7692) in the
** message layer of src/ws.c, with its limits.
**
** The harness makes the frames itself, so that the input goes to the
** DEFLATE data rather than to frame headers.  Input: a parameter byte,
** then records.
**   parameter byte: bits 0-2 client_max_window_bits 8 + (0..7); bit 3
**     client_no_context_takeover; bits 4-5 the message limit (125, 4096,
**     64 KiB, 1 MiB); bit 6 every callback pauses; bit 7 the split reads
**     go one byte at a time (else in pieces of 1..256 bytes).
**   record: a kind byte, a 16-bit big-endian length, that many bytes.
**     kind bits 0-1: 0 or 1, the bytes are a compressed payload as the
**       client sent it; 2, the bytes are a message that the harness
**       compresses with the codec's own deflater (client role, same
**       parameters): it must come out of the inflater as it went in;
**       3, a ping with the bytes (up to 125) as its payload.
**     bit 2 text (else binary); bit 3 sent uncompressed (RSV1 clear);
**     bit 4 a ping between the fragments; bits 5-7 fragments - 1.
** Every frame is masked with a key that changes per frame.  The wire bytes
** are fed in one read, then in pieces; both must report the same events.
** Round-tripped messages must match while the two compression contexts
** agree (no raw compressed message before, or no context takeover), or
** fail with 1009 over the limit (or a compressed fragment over the frame
** limit), or with 1007 for text that is not UTF-8.
** The message buffer must never grow past the limit + 1.
*/

#include "ws_util.h"

typedef struct wire {
  unsigned char *p;
  size_t n, cap;
} wire_t;

/* what a message record must become, for round-tripped ones */
typedef struct expect {
  size_t event;                 /* index among the events */
  const uint8_t *data;          /* NULL: unchecked (a raw payload) */
  size_t len;
  size_t zmax;                  /* the longest compressed fragment */
  int text;
} expect_t;

#define MAX_RECORDS 256


static void put (wire_t *w, const void *p, size_t n) {
  if (n > w->cap - w->n) {
    while (n > w->cap - w->n)
      w->cap = w->cap ? 2 * w->cap : 4096;
    w->p = realloc(w->p, w->cap);
  }
  memcpy(w->p + w->n, p, n);
  w->n += n;
}


/* Appends one masked frame */
static void frame (wire_t *w, int fin, int rsv1, int op, const void *p,
                   size_t n, uint32_t *seq) {
  unsigned char head[OWL_WS_HEADER_MAX], key[4];
  uint32_t k = (*seq)++ * 0x9e3779b9u + 0x37fa213du;
  size_t hlen, at;
  memcpy(key, &k, 4);
  hlen = owl_ws_header(head, fin, rsv1, op, n, key);
  put(w, head, hlen);
  at = w->n;
  put(w, p, n);
  owl_ws_mask((char *)w->p + at, n, key, 0);
}


static void ping (wire_t *w, uint32_t *seq) {
  frame(w, 1, 0, OWL_WS_PING, "p", 1, seq);
}


/* Appends p[0..n) as nfrag fragments (the first may be all of it) */
static void fragments (wire_t *w, int op, int rsv1, const uint8_t *p,
                       size_t n, unsigned nfrag, int pings, uint32_t *seq) {
  size_t each = n / nfrag, from = 0;
  for (unsigned i = 0; i < nfrag; i++) {
    size_t len = i + 1 == nfrag ? n - from : each;
    frame(w, i + 1 == nfrag, i == 0 ? rsv1 : 0, i == 0 ? op : OWL_WS_CONT,
          p + from, len, seq);
    from += len;
    if (pings && i + 1 < nfrag)
      ping(w, seq);
  }
}


typedef struct deflated {
  unsigned char *p;
  size_t n, cap;
} deflated_t;


/* Compresses p[0..n) in nfrag pieces with the client's deflater, framing
** each fragment as the codec's own writer would */
static size_t roundtrip (wire_t *w, owl_ws_conn_t *client, int op,
                         const uint8_t *p, size_t n, unsigned nfrag, int pings,
                         uint32_t *seq) {
  size_t each = n / nfrag, from = 0, zmax = 0;
  for (unsigned i = 0; i < nfrag; i++) {
    size_t len = i + 1 == nfrag ? n - from : each;
    const char *z;
    size_t zlen;
    if (owl_ws_deflate(client, (const char *)p + from, len, i + 1 == nfrag,
                       &z, &zlen) != 0)
      FAIL("owl_ws_deflate failed");
    frame(w, i + 1 == nfrag, i == 0, i == 0 ? op : OWL_WS_CONT, z, zlen, seq);
    if (zlen > zmax)
      zmax = zlen;
    from += len;
    if (pings && i + 1 < nfrag)
      ping(w, seq);
  }
  return zmax;
}


static long run (const owl_ws_limits_t *lim, const owl_ws_deflate_t *pmd,
                 int pause, const unsigned char *wire, size_t n,
                 size_t piece, events_t *e) {
  owl_ws_conn_t ws;
  long r = 0;
  owl_ws_init(&ws, OWL_WS_SERVER, lim, pmd);
  events_reset(e);
  e->max_message = lim->max_message;
  e->pause = pause;
  for (size_t from = 0; from < n && r == 0; from += piece) {
    size_t len = n - from < piece ? n - from : piece;
    char *p = malloc(len);
    memcpy(p, wire + from, len);
    r = feed_all(&ws, p, len, e);
    free(p);
    if (ws.cap > lim->max_message + 1 && ws.cap > 1024)
      FAIL("a message buffer of %zu bytes for a limit of %llu", ws.cap,
           (unsigned long long)lim->max_message);
  }
  owl_ws_free(&ws);
  return r;
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static const uint64_t limits[4] = { 125, 4096, 65536, 1 << 20 };
  static events_t whole, part;
  static expect_t ex[MAX_RECORDS];
  owl_ws_limits_t lim;
  owl_ws_deflate_t pmd;
  owl_ws_conn_t client;
  wire_t w = { NULL, 0, 0 };
  size_t nex = 0, nevents = 0, i = 1, piece;
  uint32_t seq = 0;
  int pause, bytewise, clean = 1;
  long r0, r;
  if (size < 1)
    return 0;
  memset(&pmd, 0, sizeof pmd);
  pmd.enabled = 1;
  pmd.client_max_window_bits = 8 + (data[0] & 7);
  pmd.client_no_context_takeover = (data[0] >> 3) & 1;
  lim.max_frame = lim.max_message = limits[(data[0] >> 4) & 3];
  pause = (data[0] >> 6) & 1;
  bytewise = data[0] >> 7;
  owl_ws_init(&client, OWL_WS_CLIENT, NULL, &pmd);

  while (i + 3 <= size && nex < MAX_RECORDS) {
    unsigned kind = data[i];
    size_t len = (size_t)data[i + 1] << 8 | data[i + 2];
    const uint8_t *p = data + i + 3;
    int op = kind & 4 ? OWL_WS_TEXT : OWL_WS_BINARY;
    int plain = (kind >> 3) & 1, pings = (kind >> 4) & 1;
    unsigned nfrag = 1 + (kind >> 5);
    if (len > size - i - 3)
      len = size - i - 3;
    i += 3 + len;
    switch (kind & 3) {
      case 0:
      case 1:
        fragments(&w, op, !plain, p, len, nfrag, pings, &seq);
        ex[nex].data = NULL;
        if (!plain && !pmd.client_no_context_takeover)
          clean = 0;                /* the inflater's window is its own now */
        break;
      case 2:
        ex[nex].zmax = 0;
        if (plain)
          fragments(&w, op, 0, p, len, nfrag, pings, &seq);
        else
          ex[nex].zmax = roundtrip(&w, &client, op, p, len, nfrag, pings, &seq);
        ex[nex].data = clean || plain ? p : NULL;
        break;
      case 3:
        frame(&w, 1, 0, OWL_WS_PING, p, len > 125 ? 125 : len, &seq);
        nevents++;
        continue;
    }
    if (pings && nfrag > 1)
      nevents += nfrag - 1;
    ex[nex].event = nevents++;
    ex[nex].len = len;
    ex[nex].text = op == OWL_WS_TEXT;
    nex++;
  }
  owl_ws_free(&client);

  r0 = run(&lim, &pmd, pause, w.p, w.n, w.n ? w.n : 1, &whole);

  /* the events before a failure are the records' */
  for (size_t k = 0; k < nex; k++) {
    const expect_t *x = &ex[k];
    if (x->event >= whole.n) {     /* failed at or before this message */
      if (r0 == 0)
        FAIL("%zu events for %zu expected", whole.n, x->event + 1);
      if (x->data != NULL && x->event == whole.n) {
        int big = x->len > lim.max_message || x->zmax > lim.max_frame;
        int bad = x->text && !ref_utf8(x->data, x->len);
        if (!((big && r0 == -OWL_WS_TOO_BIG) || (bad && r0 == -OWL_WS_INVALID_DATA)))
          FAIL("message %zu (%zu bytes%s) failed with %ld", k, x->len,
               bad ? ", not UTF-8" : "", r0);
      }
      break;
    }
    if (x->data != NULL) {
      size_t off = 0;
      for (size_t j = 0; j < x->event; j++)
        off += whole.len[j];
      if (whole.len[x->event] != x->len ||
          (x->len > 0 && memcmp(whole.data + off, x->data, x->len) != 0))
        FAIL("message %zu came out as %zu other bytes (%zu sent)", k,
             whole.len[x->event], x->len);
    }
  }

  piece = bytewise ? 1 : 1 + (w.n > 1 ? data[size - 1] % 256 : 0);
  r = run(&lim, &pmd, pause, w.p, w.n, piece, &part);
  events_same(&whole, r0, &part, r, bytewise ? "one byte a read" : "pieces");

  free(w.p);
  return 0;
}
