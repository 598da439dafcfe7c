/*
** The WebSocket opening handshake, as a pure codec beside ws.c: the
** Sec-WebSocket-Accept key (SHA-1, FIPS 180-4, and base64, RFC 4648,
** written here) and the permessage-deflate offer/answer (RFC 7692 7.1).
*/

#include <stdlib.h>
#include <string.h>

#include "codec/token.h"
#include "codec/ws.h"


/* {====== SHA-1 (FIPS 180-4) and base64 (RFC 4648), for the handshake */

typedef struct sha1 {
  uint32_t h[5];
  uint64_t bytes;
  unsigned char block[64];
  size_t used;
} sha1_t;


static uint32_t rol (uint32_t x, unsigned k) {
  return (x << k) | (x >> (32 - k));
}


static void sha1_block (uint32_t *h, const unsigned char *b) {
  uint32_t w[80], a, bb, c, d, e;
  int t;
  for (t = 0; t < 16; t++)
    w[t] = (uint32_t)b[4 * t] << 24 | (uint32_t)b[4 * t + 1] << 16 |
           (uint32_t)b[4 * t + 2] << 8 | b[4 * t + 3];
  for (t = 16; t < 80; t++)
    w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  a = h[0]; bb = h[1]; c = h[2]; d = h[3]; e = h[4];
  for (t = 0; t < 80; t++) {
    uint32_t f, k, tmp;
    if (t < 20) { f = (bb & c) | (~bb & d); k = 0x5a827999; }
    else if (t < 40) { f = bb ^ c ^ d; k = 0x6ed9eba1; }
    else if (t < 60) { f = (bb & c) | (bb & d) | (c & d); k = 0x8f1bbcdc; }
    else { f = bb ^ c ^ d; k = 0xca62c1d6; }
    tmp = rol(a, 5) + f + e + k + w[t];
    e = d; d = c; c = rol(bb, 30); bb = a; a = tmp;
  }
  h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e;
}


static void sha1_init (sha1_t *s) {
  static const uint32_t h0[5] = {
    0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0
  };
  memcpy(s->h, h0, sizeof h0);
  s->bytes = 0;
  s->used = 0;
}


static void sha1_update (sha1_t *s, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  s->bytes += n;
  while (n > 0) {
    size_t take = 64 - s->used;
    if (take > n)
      take = n;
    memcpy(s->block + s->used, p, take);
    s->used += take;
    p += take;
    n -= take;
    if (s->used == 64) {
      sha1_block(s->h, s->block);
      s->used = 0;
    }
  }
}


static void sha1_final (sha1_t *s, unsigned char *digest) {
  uint64_t bits = s->bytes * 8;
  unsigned char pad[72];
  size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
  int i;
  memset(pad, 0, sizeof pad);
  pad[0] = 0x80;
  for (i = 0; i < 8; i++)
    pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
  sha1_update(s, pad, padlen + 8);
  for (i = 0; i < 20; i++)
    digest[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}


static const char b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the base64 of p[0..n) and a NUL into out[4 * ((n + 2) / 3) + 1] */
static void base64 (const unsigned char *p, size_t n, char *out) {
  size_t i;
  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *out++ = b64[v >> 18];
    *out++ = b64[(v >> 12) & 63];
    *out++ = b64[(v >> 6) & 63];
    *out++ = b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *out++ = b64[v >> 18];
    *out++ = b64[(v >> 12) & 63];
    *out++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
  *out = '\0';
}


/* Drops spaces and tabs around s[0..*n) */
static const char *trim (const char *s, size_t *n) {
  while (*n > 0 && (s[0] == ' ' || s[0] == '\t')) {
    s++;
    (*n)--;
  }
  while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
    (*n)--;
  return s;
}


int owl_ws_key_valid (const char *key, size_t len) {
  size_t i;
  key = trim(key, &len);
  if (len != 24 || key[22] != '=' || key[23] != '=')
    return 0;
  for (i = 0; i < 22; i++)
    if (key[i] == '\0' || strchr(b64, key[i]) == NULL)
      return 0;
  return 1;
}


void owl_ws_accept (const char *key, size_t len, char *out) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[20];
  sha1_t s;
  key = trim(key, &len);
  sha1_init(&s);
  sha1_update(&s, key, len);
  sha1_update(&s, guid, sizeof guid - 1);
  sha1_final(&s, digest);
  base64(digest, sizeof digest, out);
}

/* }====== */


/* {====== permessage-deflate negotiation */

typedef struct cursor {
  const char *p, *e;
} cursor_t;

typedef struct offer {
  int snct, cnct;
  int swb;                          /* 0: absent */
  int cwb;                          /* -1: absent, 0: no value */
} offer_t;


static void ows (cursor_t *c) {
  while (c->p < c->e && (*c->p == ' ' || *c->p == '\t'))
    c->p++;
}


static size_t token (cursor_t *c) {
  const char *s = c->p;
  while (c->p < c->e && owl_istchar((unsigned char)*c->p))
    c->p++;
  return (size_t)(c->p - s);
}


/* Case-insensitive s[0..n) == lit */
static int ieq (const char *s, size_t n, const char *lit) {
  size_t i;
  if (strlen(lit) != n)
    return 0;
  for (i = 0; i < n; i++) {
    int a = (unsigned char)s[i], b = (unsigned char)lit[i];
    if (a >= 'A' && a <= 'Z')
      a += 'a' - 'A';
    if (a != b)
      return 0;
  }
  return 1;
}


/*
** A parameter value, token or quoted-string, unescaped into v[16]; *vlen
** is 16 for anything longer (no valid value is).  -1: a syntax error.
*/
static int value (cursor_t *c, char *v, size_t *vlen) {
  size_t n = 0;
  if (c->p < c->e && *c->p == '"') {
    for (c->p++; ; c->p++) {
      if (c->p == c->e)
        return -1;
      if (*c->p == '"')
        break;
      if (*c->p == '\\' && ++c->p == c->e)
        return -1;
      if ((unsigned char)*c->p < 0x20 && *c->p != '\t')
        return -1;
      if (n < 16)
        v[n++] = *c->p;
    }
    c->p++;
  }
  else {
    const char *s = c->p;
    size_t len = token(c);
    if (len == 0)
      return -1;
    n = len < 16 ? len : 16;
    memcpy(v, s, n);
  }
  *vlen = n;
  return 0;
}


/* "8" .. "15" without leading zeros, else 0 */
static int window (const char *v, size_t n) {
  if (n == 1 && (v[0] == '8' || v[0] == '9'))
    return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
    return 10 + v[1] - '0';
  return 0;
}


/* One parameter of a permessage-deflate offer; 0 if it spoils the offer */
static int param (offer_t *o, const char *name, size_t n, int has,
                  const char *v, size_t vlen) {
  if (ieq(name, n, "server_no_context_takeover")) {
    if (o->snct || has)
      return 0;
    o->snct = 1;
  }
  else if (ieq(name, n, "client_no_context_takeover")) {
    if (o->cnct || has)
      return 0;
    o->cnct = 1;
  }
  else if (ieq(name, n, "server_max_window_bits")) {
    if (o->swb || !has || (o->swb = window(v, vlen)) == 0)
      return 0;
  }
  else if (ieq(name, n, "client_max_window_bits")) {
    if (o->cwb >= 0 || (has && window(v, vlen) == 0))
      return 0;
    o->cwb = has ? window(v, vlen) : 0;
  }
  else
    return 0;
  return 1;
}


static int clampbits (int bits) {
  return bits < 8 || bits > 15 ? 15 : bits;
}


/* Accepts a valid offer under policy: fills *a, writes resp */
static int agree (const owl_ws_deflate_t *pol, const offer_t *o,
                  owl_ws_deflate_t *a, char *resp) {
  static const owl_ws_deflate_t none = { 0, 0, 0, 15, 15, 0, 0 };
  int pswb, pcwb, say_cwb = 0;
  char *w = resp;
  if (pol == NULL)
    pol = &none;
  pswb = clampbits(pol->server_max_window_bits);
  pcwb = clampbits(pol->client_max_window_bits);
  memset(a, 0, sizeof *a);
  a->enabled = 1;
  a->level = pol->level;
  a->mem_level = pol->mem_level;
  a->server_no_context_takeover = o->snct || pol->server_no_context_takeover;
  a->client_no_context_takeover = o->cnct || pol->client_no_context_takeover;
  a->server_max_window_bits = o->swb && o->swb < pswb ? o->swb : pswb;
  a->client_max_window_bits = 15;
  if (o->cwb >= 0) {                /* only then may the answer limit it */
    int cwb = o->cwb > 0 && o->cwb < pcwb ? o->cwb : pcwb;
    if (cwb < 15) {
      a->client_max_window_bits = cwb;
      say_cwb = 1;
    }
  }
  w += strlen(strcpy(w, "permessage-deflate"));
  if (a->server_no_context_takeover)
    w += strlen(strcpy(w, "; server_no_context_takeover"));
  if (a->client_no_context_takeover)
    w += strlen(strcpy(w, "; client_no_context_takeover"));
  if (o->swb) {                     /* never unasked (RFC 7692 7.1.2.1) */
    w += strlen(strcpy(w, "; server_max_window_bits="));
    if (a->server_max_window_bits >= 10)
      *w++ = '1';
    *w++ = (char)('0' + a->server_max_window_bits % 10);
  }
  if (say_cwb) {
    w += strlen(strcpy(w, "; client_max_window_bits="));
    if (a->client_max_window_bits >= 10)
      *w++ = '1';
    *w++ = (char)('0' + a->client_max_window_bits % 10);
  }
  *w = '\0';
  return (int)(w - resp);
}


int owl_ws_deflate_negotiate (const owl_ws_deflate_t *policy,
                              const char *offer, size_t len,
                              owl_ws_deflate_t *agreed, char *resp,
                              size_t cap) {
  cursor_t c;
  if (cap < OWL_WS_EXT_SIZE)
    return OWL_WS_ENOBUFS;
  c.p = offer;
  c.e = offer + len;
  for (;;) {                        /* one extension of the list */
    const char *name;
    size_t nlen;
    int pmd, valid = 1;
    offer_t o = { 0, 0, 0, -1 };
    ows(&c);
    if (c.p == c.e)
      return 0;
    if (*c.p == ',') {              /* empty list elements are allowed */
      c.p++;
      continue;
    }
    name = c.p;
    if ((nlen = token(&c)) == 0)
      return 0;                     /* not a list of extensions at all */
    pmd = ieq(name, nlen, "permessage-deflate");
    for (;;) {                      /* its parameters */
      const char *pname;
      size_t plen, vlen = 0;
      char v[16];
      int has = 0;
      ows(&c);
      if (c.p == c.e || *c.p == ',')
        break;
      if (*c.p != ';')
        return 0;
      c.p++;
      ows(&c);
      pname = c.p;
      if ((plen = token(&c)) == 0)
        return 0;
      ows(&c);
      if (c.p < c.e && *c.p == '=') {
        c.p++;
        ows(&c);
        if (value(&c, v, &vlen) != 0)
          return 0;
        has = 1;
      }
      if (pmd && valid)
        valid = param(&o, pname, plen, has, v, vlen);
    }
    if (pmd && valid)
      return agree(policy, &o, agreed, resp);
  }
}

/* }====== */
