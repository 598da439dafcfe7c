/*
** Shared by the WebSocket harnesses: an independent UTF-8 check (a plain
** decoder, written apart from ws.c's state machine) and a recorder of the
** events owl_ws_feed reports, checked as they come.
*/

#ifndef FUZZ_WS_UTIL_H
#define FUZZ_WS_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ws.h"

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), abort())


/* 1 if p[0..n) is UTF-8 as RFC 3629 defines it: decodes every character */
static inline int ref_utf8 (const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i], need;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) { need = 1; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { need = 2; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - i - 1 < need)
      return 0;
    for (unsigned k = 1; k <= need; k++) {
      unsigned b = p[i + k];
      if ((b & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += need + 1;
  }
  return 1;
}


/* Events as reported: opcode and length of each, payloads end to end. */
typedef struct events {
  int *op;
  size_t *len;
  size_t n, ncap;
  unsigned char *data;
  size_t dlen, dcap;
  uint64_t max_message;         /* 0: no limit */
  int pause;                    /* every callback asks to pause */
  int closed;                   /* a close frame was reported */
} events_t;


static inline void events_reset (events_t *e) {
  e->n = 0;
  e->dlen = 0;
  e->closed = 0;
}


static inline void events_free (events_t *e) {
  free(e->op);
  free(e->len);
  free(e->data);
  memset(e, 0, sizeof *e);
}


static inline void events_add (events_t *e, int op, const char *p, size_t n) {
  if (e->n == e->ncap) {
    e->ncap = e->ncap ? 2 * e->ncap : 16;
    e->op = realloc(e->op, e->ncap * sizeof *e->op);
    e->len = realloc(e->len, e->ncap * sizeof *e->len);
  }
  if (n > e->dcap - e->dlen) {
    while (n > e->dcap - e->dlen)
      e->dcap = e->dcap ? 2 * e->dcap : 4096;
    e->data = realloc(e->data, e->dcap);
  }
  e->op[e->n] = op;
  e->len[e->n++] = n;
  if (n > 0)
    memcpy(e->data + e->dlen, p, n);
  e->dlen += n;
}


static inline int on_message (void *ud, int op, const char *p, size_t n) {
  events_t *e = ud;
  if (e->closed)
    FAIL("a message after the close frame");
  if (op != OWL_WS_TEXT && op != OWL_WS_BINARY)
    FAIL("on_message with opcode %d", op);
  if (n > 0 && p == NULL)
    FAIL("a message of %zu bytes at NULL", n);
  if (e->max_message != 0 && n > e->max_message)
    FAIL("a message of %zu bytes over the limit of %llu", n,
         (unsigned long long)e->max_message);
  if (op == OWL_WS_TEXT && !ref_utf8((const unsigned char *)p, n))
    FAIL("a text message that is not UTF-8");
  events_add(e, op, p, n);
  return e->pause ? OWL_WS_PAUSE : OWL_WS_GO;
}


static inline int on_control (void *ud, int op, const char *p, size_t n) {
  events_t *e = ud;
  if (e->closed)
    FAIL("a control frame after the close frame");
  if (op != OWL_WS_PING && op != OWL_WS_PONG && op != OWL_WS_CLOSE)
    FAIL("on_control with opcode %d", op);
  if (n > 125)
    FAIL("a control payload of %zu bytes", n);
  if (op == OWL_WS_CLOSE) {
    if (n == 1)
      FAIL("a close payload of one byte");
    if (n >= 2 && !owl_ws_close_valid(owl_ws_close_code(p, n)))
      FAIL("close code %u", owl_ws_close_code(p, n));
    if (n >= 2 && !ref_utf8((const unsigned char *)p + 2, n - 2))
      FAIL("a close reason that is not UTF-8");
    e->closed = 1;
  }
  events_add(e, op, p, n);
  return e->pause ? OWL_WS_PAUSE : OWL_WS_GO;
}


static const owl_ws_events fuzz_events = { on_message, on_control };


/*
** Feeds p[0..n) to ws, feeding again after every pause; checks the
** consumed counts against the contract.  Returns 0 or the error code.
*/
static inline long feed_all (owl_ws_conn_t *ws, char *p, size_t n,
                             events_t *e) {
  size_t off = 0;
  do {
    long r = owl_ws_feed(ws, p + off, n - off, &fuzz_events, e);
    if (r < 0)
      return r;
    if ((size_t)r > n - off)
      FAIL("feed consumed %ld of %zu bytes", r, n - off);
    if ((size_t)r < n - off && !e->pause && !owl_ws_closed(ws))
      FAIL("feed stopped at %ld of %zu bytes: no pause, no close", r, n - off);
    if (r == 0 && n - off > 0)
      FAIL("feed consumed nothing of %zu bytes", n - off);
    off += (size_t)r;
  } while (off < n);
  return 0;
}


static inline void events_same (const events_t *a, long ra, const events_t *b,
                                 long rb, const char *what) {
  if (ra != rb)
    FAIL("%s: ended with %ld, one read with %ld", what, rb, ra);
  if (a->n != b->n || a->dlen != b->dlen)
    FAIL("%s: %zu events (%zu bytes), one read %zu (%zu bytes)", what, b->n,
         b->dlen, a->n, a->dlen);
  for (size_t i = 0; i < a->n; i++)
    if (a->op[i] != b->op[i] || a->len[i] != b->len[i])
      FAIL("%s: event %zu is %d/%zu, one read %d/%zu", what, i, b->op[i],
           b->len[i], a->op[i], a->len[i]);
  if (a->dlen > 0 && memcmp(a->data, b->data, a->dlen) != 0)
    FAIL("%s: other payload bytes", what);
}

#endif
