/*
** WebSocket framing (RFC 6455) and permessage-deflate (RFC 7692) as a pure
** codec: no libuv, no Lua.  The contracts and the ownership rules are in
** ws.h; this file has four parts:
**   UTF-8 validation, SHA-1 and base64 for the handshake;
**   the frame parser and the message layer above it (owl_ws_feed);
**   the writer (owl_ws_send, owl_ws_deflate);
**   permessage-deflate negotiation.
**
** The parser reads a frame header into ws->head (at most 14 bytes, so a
** header split across reads costs nothing), checks it byte by byte as soon
** as each byte arrives, then streams the payload: unmasked in place,
** UTF-8-checked as it comes for text, inflated as it comes for compressed
** messages, and appended to the message buffer unless the whole message is
** in the caller's input already.
*/

#define ZLIB_CONST

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "codec/ws.h"


enum {
  S_HEAD,         /* reading a frame header */
  S_PAYLOAD,      /* reading its payload */
  S_CLOSED,       /* a close frame was received: input is ignored */
  S_FAILED        /* ws->err is returned to every feed */
};

/* internal results besides OWL_WS_GO, OWL_WS_PAUSE and negative codes */
#define R_CLOSED 2

#define E_PROTOCOL  (-OWL_WS_PROTOCOL)
#define E_DATA      (-OWL_WS_INVALID_DATA)
#define E_TOO_BIG   (-OWL_WS_TOO_BIG)
#define E_INTERNAL  (-OWL_WS_INTERNAL)

#define MSG_KEEP   (64 * 1024)  /* a message buffer larger than this is
                                   freed after its message */
#define ZSLICE     (1u << 30)   /* zlib counts in uInt */

static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };


/* {====== UTF-8 */

/*
** The state is 0 between characters; inside one it is
** (bytes still needed << 16) | (lowest allowed next byte << 8) | highest,
** so every impossible byte is refused where it stands: overlongs (c0, c1,
** e0 80..9f, f0 80..8f), surrogates (ed a0..bf) and code points over
** U+10FFFF (f4 90.., f5..ff).  UTF8_BAD sticks once a check has failed.
*/
#define UTF8_BAD 0xffffffffu

static uint32_t lead (uint32_t need, uint32_t lo, uint32_t hi) {
  return (need << 16) | (lo << 8) | hi;
}


int owl_utf8_check (uint32_t *state, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  uint32_t st = *state;
  size_t i = 0;
  if (st == UTF8_BAD)
    return -1;
  while (i < n) {
    unsigned c;
    if (st == 0) {
      while (n - i >= 8) {        /* ASCII eight bytes at a time */
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UINT64_C(0x8080808080808080))
          break;
        i += 8;
      }
      if (i == n)
        break;
      c = p[i++];
      if (c < 0x80)
        continue;
      if (c < 0xc2)
        goto bad;                 /* a continuation, or overlong c0/c1 */
      else if (c < 0xe0)
        st = lead(1, 0x80, 0xbf);
      else if (c < 0xf0)
        st = lead(2, c == 0xe0 ? 0xa0 : 0x80, c == 0xed ? 0x9f : 0xbf);
      else if (c < 0xf5)
        st = lead(3, c == 0xf0 ? 0x90 : 0x80, c == 0xf4 ? 0x8f : 0xbf);
      else
        goto bad;
    }
    else {
      c = p[i++];
      if (c < ((st >> 8) & 0xff) || c > (st & 0xff))
        goto bad;
      st = (st >> 16) > 1 ? lead((st >> 16) - 1, 0x80, 0xbf) : 0;
    }
  }
  *state = st;
  return 0;
bad:
  *state = UTF8_BAD;
  return -1;
}

/* }====== */


/* {====== close codes */

int owl_ws_close_valid (unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}


unsigned owl_ws_close_code (const char *payload, size_t len) {
  const unsigned char *p = (const unsigned char *)payload;
  return len < 2 ? OWL_WS_NO_STATUS : (unsigned)(p[0] << 8 | p[1]);
}


size_t owl_ws_close_payload (char *out, unsigned code, const char *reason,
                             size_t len) {
  if (code == 0)
    return 0;
  if (len > 123) {               /* cut before the character that straddles */
    len = 123;
    while (len > 0 && ((unsigned char)reason[len] & 0xc0) == 0x80)
      len--;
  }
  out[0] = (char)(code >> 8);
  out[1] = (char)(code & 0xff);
  if (len > 0)
    memcpy(out + 2, reason, len);
  return len + 2;
}

/* }====== */


/* {====== connections and zlib streams */

static int wbits (int bits) {
  return bits <= 0 || bits > 15 ? 15 : bits < 9 ? 9 : bits;
}


/*
** The parameters are named after the RFC's roles: as a server we inflate
** what the client's compressor made and deflate with the server's; as a
** client the other way round.  The peer's *_max_window_bits only bound its
** compressor: see make_inflater.
*/
static int peer_resets (const owl_ws_conn_t *ws) {
  return ws->role == OWL_WS_SERVER ? ws->pmd.client_no_context_takeover
                                   : ws->pmd.server_no_context_takeover;
}


static int own_bits (const owl_ws_conn_t *ws) {
  return wbits(ws->role == OWL_WS_SERVER ? ws->pmd.server_max_window_bits
                                         : ws->pmd.client_max_window_bits);
}


static int own_resets (const owl_ws_conn_t *ws) {
  return ws->role == OWL_WS_SERVER ? ws->pmd.server_no_context_takeover
                                   : ws->pmd.client_no_context_takeover;
}


void owl_ws_init (owl_ws_conn_t *ws, int role, const owl_ws_limits_t *limits,
                  const owl_ws_deflate_t *pmd) {
  memset(ws, 0, sizeof *ws);
  ws->role = role;
  if (limits != NULL)
    ws->lim = *limits;
  else {
    ws->lim.max_frame = OWL_WS_MAX_FRAME;
    ws->lim.max_message = OWL_WS_MAX_MESSAGE;
  }
  if (pmd != NULL && pmd->enabled)
    ws->pmd = *pmd;
  ws->state = S_HEAD;
}


void owl_ws_free (owl_ws_conn_t *ws) {
  if (ws->inflater != NULL) {
    inflateEnd(ws->inflater);
    free(ws->inflater);
  }
  if (ws->deflater != NULL) {
    deflateEnd(ws->deflater);
    free(ws->deflater);
  }
  free(ws->msg);
  free(ws->zout);
  ws->inflater = ws->deflater = NULL;
  ws->msg = ws->zout = NULL;
  ws->len = ws->cap = ws->zlen = ws->zcap = 0;
}


int owl_ws_closed (const owl_ws_conn_t *ws) {
  return ws->state == S_CLOSED;
}


/*
** The inflater always has a 32 KiB window, whatever window the peer's
** compressor announced.  zlib does not hold a raw stream to a smaller
** window: it takes a distance past it whenever the bytes pointed at came
** out in the same inflate call, and refuses it otherwise, so with the
** announced window a message that goes too far back would be read or
** refused (1007) depending on how its bytes were split into reads.  With
** the largest window every distance DEFLATE can express is read wherever
** the reads fall, and a back-reference before the start of the stream (or
** of a reset window) is refused wherever they fall.  The cost is the
** window's memory for a peer that announced a smaller one.
*/
static int make_inflater (owl_ws_conn_t *ws) {
  z_stream *z = calloc(1, sizeof *z);
  if (z == NULL)
    return E_INTERNAL;
  if (inflateInit2(z, -15) != Z_OK) {
    free(z);
    return E_INTERNAL;
  }
  ws->inflater = z;
  return 0;
}


static int make_deflater (owl_ws_conn_t *ws) {
  int level = ws->pmd.level, mem = ws->pmd.mem_level;
  z_stream *z = calloc(1, sizeof *z);
  if (z == NULL)
    return OWL_WS_ENOMEM;
  if (level < 1 || level > 9)
    level = 6;
  if (mem < 1 || mem > 9)
    mem = 8;
  if (deflateInit2(z, level, Z_DEFLATED, -own_bits(ws),
                   mem, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(z);
    return -OWL_WS_INTERNAL;
  }
  ws->deflater = z;
  return 0;
}

/* }====== */


/* {====== the message layer */

/*
** Makes room for need bytes in the message buffer: doubling, but never
** past limit + 1 (one byte over the limit is enough to see it passed).
*/
static int reserve (owl_ws_conn_t *ws, size_t need) {
  uint64_t limit = ws->lim.max_message;
  size_t cap = ws->cap ? ws->cap : 1024;
  char *p;
  if (need <= ws->cap)
    return 0;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (limit != 0 && limit < SIZE_MAX && cap > limit + 1 && need <= limit + 1)
    cap = (size_t)limit + 1;
  p = realloc(ws->msg, cap);
  if (p == NULL)
    return E_INTERNAL;
  ws->msg = p;
  ws->cap = cap;
  return 0;
}


/*
** A compressed message reached the end of a DEFLATE stream (a block with
** BFINAL set, RFC 7692 7.2.3.4) and goes on: start a new raw stream that
** keeps the sliding window, unless the client resets its context anyway.
*/
static int restart (owl_ws_conn_t *ws) {
  z_stream *z = ws->inflater;
  unsigned char *dict = NULL;
  uInt dlen = 0;
  if (!peer_resets(ws)) {
    dict = malloc(32768);
    if (dict == NULL)
      return E_INTERNAL;
    if (inflateGetDictionary(z, dict, &dlen) != Z_OK)
      dlen = 0;
  }
  inflateReset(z);
  if (dlen > 0)
    inflateSetDictionary(z, dict, dlen);
  free(dict);
  return 0;
}


/*
** Inflates in[0..n) onto the message, checking text as it comes out and
** failing with 1009 as soon as the output passes the message limit.
*/
static int inflate_some (owl_ws_conn_t *ws, const char *in, size_t n) {
  uint64_t limit = ws->lim.max_message;
  z_stream *z;
  int r;
  if (ws->inflater == NULL && (r = make_inflater(ws)) != 0)
    return r;
  z = ws->inflater;
  z->avail_in = 0;
  for (;;) {
    size_t room, got;
    int zr;
    if (z->avail_in == 0 && n > 0) {
      uInt slice = n > ZSLICE ? ZSLICE : (uInt)n;
      z->next_in = (const Bytef *)in;
      z->avail_in = slice;
      in += slice;
      n -= slice;
    }
    if (ws->len == ws->cap && (r = reserve(ws, ws->len + 1)) != 0)
      return r;
    room = ws->cap - ws->len;
    if (room > ZSLICE)
      room = ZSLICE;
    z->next_out = (Bytef *)ws->msg + ws->len;
    z->avail_out = (uInt)room;
    zr = inflate(z, Z_SYNC_FLUSH);
    got = room - z->avail_out;
    if (ws->msg_op == OWL_WS_TEXT &&
        owl_utf8_check(&ws->utf8, ws->msg + ws->len, got) != 0)
      return E_DATA;
    ws->len += got;
    if (limit != 0 && ws->len > limit)
      return E_TOO_BIG;
    if (zr == Z_STREAM_END) {
      if ((r = restart(ws)) != 0)
        return r;
    }
    else if (zr == Z_MEM_ERROR)
      return E_INTERNAL;
    else if ((zr != Z_OK && zr != Z_BUF_ERROR) ||
             (zr == Z_BUF_ERROR && z->avail_in > 0 && z->avail_out > 0))
      return E_DATA;                /* corrupt, or stuck (never seen) */
    if (z->avail_in == 0 && n == 0 && z->avail_out > 0)
      return 0;
  }
}


/* Takes in a chunk of a data frame's (unmasked) payload */
static int data (owl_ws_conn_t *ws, const char *p, size_t n) {
  int r;
  if (ws->msg_z)
    return inflate_some(ws, p, n);
  if (ws->msg_op == OWL_WS_TEXT && owl_utf8_check(&ws->utf8, p, n) != 0)
    return E_DATA;
  if ((r = reserve(ws, ws->len + n)) != 0)
    return r;
  memcpy(ws->msg + ws->len, p, n);
  ws->len += n;
  return 0;
}


/*
** The message is complete in p[0..n) (the caller's input or ws->msg):
** closes it and hands it to on_message.
*/
static int deliver (owl_ws_conn_t *ws, const char *p, size_t n,
                    const owl_ws_events *ev, void *ud) {
  int op = ws->msg_op, r = 0;
  if (op == OWL_WS_TEXT && ws->utf8 != 0)
    return E_DATA;                  /* ends inside a character */
  if (ws->msg_z && peer_resets(ws))
    inflateReset(ws->inflater);
  ws->msg_op = ws->msg_z = 0;
  ws->utf8 = 0;
  ws->len = 0;
  if (ev != NULL && ev->on_message != NULL)
    r = ev->on_message(ud, op, p, n);
  if (ws->cap > MSG_KEEP) {         /* keep no large buffer while idle */
    free(ws->msg);
    ws->msg = NULL;
    ws->cap = 0;
  }
  return r < 0 ? r : r > 0 ? OWL_WS_PAUSE : OWL_WS_GO;
}


/* A control frame's payload is in ws->ctl: checks a close, then calls */
static int control (owl_ws_conn_t *ws, const owl_ws_events *ev, void *ud) {
  int r = 0;
  if (ws->opcode == OWL_WS_CLOSE) {
    if (ws->clen == 1)
      return E_PROTOCOL;
    if (ws->clen >= 2) {
      uint32_t u = 0;
      if (!owl_ws_close_valid(owl_ws_close_code((char *)ws->ctl, ws->clen)))
        return E_PROTOCOL;
      if (owl_utf8_check(&u, (char *)ws->ctl + 2, ws->clen - 2) != 0 || u)
        return E_DATA;
    }
    ws->state = S_CLOSED;
  }
  if (ev != NULL && ev->on_control != NULL)
    r = ev->on_control(ud, ws->opcode, (char *)ws->ctl, ws->clen);
  if (r < 0)
    return r;
  return ws->opcode == OWL_WS_CLOSE ? R_CLOSED : r > 0 ? OWL_WS_PAUSE : 0;
}


/* The frame's payload is all in: back to headers, and finish it */
static int end_frame (owl_ws_conn_t *ws, const owl_ws_events *ev, void *ud) {
  int r;
  ws->state = S_HEAD;
  ws->hlen = 0;
  if (ws->opcode >= 8)
    return control(ws, ev, ud);
  if (!ws->fin)
    return 0;
  if (ws->msg_z) {
    if ((r = inflate_some(ws, (const char *)tail, 4)) != 0)
      return r;
    if (!(ws->inflater->data_type & 128))
      return E_DATA;                /* the data stops inside a block */
  }
  return deliver(ws, ws->msg != NULL ? ws->msg : "", ws->len, ev, ud);
}

/* }====== */


/* {====== the frame parser */

/* The first header byte: FIN, RSV, opcode, against the message state */
static int check_b0 (owl_ws_conn_t *ws, unsigned c) {
  int op = (int)(c & 0x0f);
  ws->fin = (c & 0x80) != 0;
  ws->rsv1 = (c & 0x40) != 0;
  ws->opcode = op;
  if (c & 0x30)
    return E_PROTOCOL;              /* RSV2, RSV3: no extension owns them */
  switch (op) {
    case OWL_WS_CONT:
      if (ws->msg_op == 0 || ws->rsv1)
        return E_PROTOCOL;
      return 0;
    case OWL_WS_TEXT:
    case OWL_WS_BINARY:
      if (ws->msg_op != 0 || (ws->rsv1 && !ws->pmd.enabled))
        return E_PROTOCOL;
      return 0;
    case OWL_WS_CLOSE:
    case OWL_WS_PING:
    case OWL_WS_PONG:
      if (!ws->fin || ws->rsv1)
        return E_PROTOCOL;
      return 0;
    default:
      return E_PROTOCOL;            /* reserved opcodes */
  }
}


/* The second header byte: MASK against the role, the 7-bit length */
static int check_b1 (owl_ws_conn_t *ws, unsigned c) {
  unsigned len7 = c & 0x7f;
  int masked = (c & 0x80) != 0;
  if (masked != (ws->role == OWL_WS_SERVER))
    return E_PROTOCOL;
  if (ws->opcode >= 8 && len7 > 125)
    return E_PROTOCOL;
  ws->hneed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
  return 0;
}


/* The header is complete: the length, the mask key, the limits */
static int begin_frame (owl_ws_conn_t *ws) {
  const unsigned char *h = ws->head;
  unsigned len7 = h[1] & 0x7f, at = 2;
  uint64_t len = len7;
  int i;
  if (len7 == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    at = 4;
    if (len < 126)
      return E_PROTOCOL;            /* not the minimal encoding */
  }
  else if (len7 == 127) {
    for (len = 0, i = 0; i < 8; i++)
      len = len << 8 | h[2 + i];
    at = 10;
    if (len >> 63)
      return E_PROTOCOL;
    if (len <= 0xffff)
      return E_PROTOCOL;
  }
  if (h[1] & 0x80)
    memcpy(ws->mask, h + at, 4);
  ws->moff = 0;
  ws->flen = ws->left = len;
  ws->clen = 0;
  if (ws->lim.max_frame != 0 && len > ws->lim.max_frame)
    return E_TOO_BIG;
#if SIZE_MAX < UINT64_MAX
  if (len > SIZE_MAX)
    return E_TOO_BIG;
#endif
  if (ws->opcode < 8) {
    if (ws->opcode != OWL_WS_CONT) {
      ws->msg_op = ws->opcode;
      ws->msg_z = ws->rsv1;
      ws->utf8 = 0;
      ws->len = 0;
    }
    if (!ws->msg_z && ws->lim.max_message != 0 &&
        len > ws->lim.max_message - ws->len)
      return E_TOO_BIG;
  }
  ws->state = S_PAYLOAD;
  return 0;
}


void owl_ws_mask (char *p, size_t n, const unsigned char key[4],
                  size_t offset) {
  unsigned char *b = (unsigned char *)p;
  size_t i = 0, i0;
  offset &= 3;
  while (i < n && offset != 0) {
    b[i++] ^= key[offset];
    offset = (offset + 1) & 3;
  }
  i0 = i;                           /* b[i0] goes with key[0] */
  if (n - i >= 8) {                 /* eight bytes a step */
    unsigned char k8[8];
    uint64_t k, w;
    memcpy(k8, key, 4);
    memcpy(k8 + 4, key, 4);
    memcpy(&k, k8, 8);
    for (; n - i >= 8; i += 8) {
      memcpy(&w, b + i, 8);
      w ^= k;
      memcpy(b + i, &w, 8);
    }
  }
  for (; i < n; i++)
    b[i] ^= key[(i - i0) & 3];
}


static long failed (owl_ws_conn_t *ws, long code) {
  ws->state = S_FAILED;
  ws->err = code;
  return code;
}


long owl_ws_feed (owl_ws_conn_t *ws, char *p, size_t n,
                  const owl_ws_events *ev, void *ud) {
  size_t i = 0;
  int r;
  if (ws->state == S_FAILED)
    return ws->err;
  if (ws->state == S_CLOSED)
    return (long)n;
  while (i < n) {
    if (ws->state == S_HEAD) {
      unsigned c = (unsigned char)p[i++];
      ws->head[ws->hlen++] = (unsigned char)c;
      if (ws->hlen == 1)
        r = check_b0(ws, c);
      else if (ws->hlen == 2)
        r = check_b1(ws, c);
      else
        r = 0;
      if (r == 0 && ws->hlen >= 2 && ws->hlen == ws->hneed) {
        r = begin_frame(ws);
        if (r == 0 && ws->flen == 0)
          r = end_frame(ws, ev, ud);
      }
    }
    else {
      size_t take = n - i;
      char *at = p + i;
      if (take > ws->left)
        take = (size_t)ws->left;
      if (ws->role == OWL_WS_SERVER) {
        owl_ws_mask(at, take, ws->mask, ws->moff);
        ws->moff = (unsigned)((ws->moff + take) & 3);
      }
      i += take;
      ws->left -= take;
      if (ws->opcode >= 8) {
        memcpy(ws->ctl + ws->clen, at, take);
        ws->clen += take;
        r = 0;
      }
      else if (ws->fin && ws->opcode != OWL_WS_CONT && !ws->msg_z &&
               take == ws->flen) {
        /* a whole one-frame message in the input: no copy */
        ws->state = S_HEAD;
        ws->hlen = 0;
        if (ws->msg_op == OWL_WS_TEXT &&
            owl_utf8_check(&ws->utf8, at, take) != 0)
          r = E_DATA;
        else
          r = deliver(ws, at, take, ev, ud);
        goto done;
      }
      else
        r = data(ws, at, take);
      if (r == 0 && ws->left == 0)
        r = end_frame(ws, ev, ud);
    }
  done:
    if (r < 0)
      return failed(ws, r);
    if (r > 0)                      /* paused, or closed */
      return (long)i;
  }
  return (long)i;
}

/* }====== */


/* {====== the writer */

size_t owl_ws_header (unsigned char *out, int fin, int rsv1, int opcode,
                      uint64_t len, const unsigned char *mask) {
  unsigned char m = mask != NULL ? 0x80 : 0;
  size_t n = 2;
  int i;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) |
                           (opcode & 0x0f));
  if (len < 126)
    out[1] = (unsigned char)(m | len);
  else if (len <= 0xffff) {
    out[1] = m | 126;
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
    n = 4;
  }
  else {
    out[1] = m | 127;
    for (i = 0; i < 8; i++)
      out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask != NULL) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}


/* Makes room for at least 64 more bytes of compressed output */
static int zroom (owl_ws_conn_t *ws, size_t hint) {
  size_t cap;
  char *p;
  if (ws->zcap - ws->zlen >= 64)
    return 0;
  cap = ws->zcap ? ws->zcap * 2 : (hint < 4096 ? 4096 : hint);
  if (cap < ws->zcap)
    return OWL_WS_ENOMEM;
  p = realloc(ws->zout, cap);
  if (p == NULL)
    return OWL_WS_ENOMEM;
  ws->zout = p;
  ws->zcap = cap;
  return 0;
}


int owl_ws_deflate (owl_ws_conn_t *ws, const char *p, size_t n, int fin,
                    const char **out, size_t *outlen) {
  z_stream *z;
  int r;
  if (ws->deflater == NULL && (r = make_deflater(ws)) != 0)
    return r;
  z = ws->deflater;
  z->avail_in = 0;
  ws->zlen = 0;
  for (;;) {
    size_t room;
    int zr;
    if (z->avail_in == 0 && n > 0) {
      uInt slice = n > ZSLICE ? ZSLICE : (uInt)n;
      z->next_in = (const Bytef *)p;
      z->avail_in = slice;
      p += slice;
      n -= slice;
    }
    if ((r = zroom(ws, z->avail_in / 2 + 64)) != 0)
      return r;
    room = ws->zcap - ws->zlen;
    if (room > ZSLICE)
      room = ZSLICE;
    z->next_out = (Bytef *)ws->zout + ws->zlen;
    z->avail_out = (uInt)room;
    zr = deflate(z, n == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
    ws->zlen += room - z->avail_out;
    if (zr != Z_OK && zr != Z_BUF_ERROR)
      return -OWL_WS_INTERNAL;
    if (z->avail_in == 0 && n == 0 && z->avail_out > 0)
      break;                        /* flushed: the output ends 00 00 ff ff */
  }
  if (fin) {
    if (ws->zlen >= 4 && memcmp(ws->zout + ws->zlen - 4, tail, 4) == 0)
      ws->zlen -= 4;
    else if (ws->zlen == 0)         /* nothing since the last flush: an */
      ws->zout[ws->zlen++] = 0;     /* empty stored block, less its tail */
    if (own_resets(ws))
      deflateReset(z);
  }
  *out = ws->zout;
  *outlen = ws->zlen;
  return 0;
}


int owl_ws_send (owl_ws_conn_t *ws, int opcode, int fin, const char *p,
                 size_t n, int compress, owl_ws_write_cb write, void *ud) {
  unsigned char head[OWL_WS_HEADER_MAX];
  const char *data = p;
  size_t dlen = n, hlen;
  int z = 0, rsv1 = 0, r;
  switch (opcode) {
    case OWL_WS_TEXT:
    case OWL_WS_BINARY:
      if (ws->out_op != 0)
        return OWL_WS_EINVAL;       /* a fragmented message is open */
      z = rsv1 = compress && ws->pmd.enabled;
      break;
    case OWL_WS_CONT:
      if (ws->out_op == 0)
        return OWL_WS_EINVAL;
      z = ws->out_z;
      break;
    case OWL_WS_CLOSE:
    case OWL_WS_PING:
    case OWL_WS_PONG:
      if (!fin || n > 125)
        return OWL_WS_EINVAL;
      break;
    default:
      return OWL_WS_EINVAL;
  }
  if (z && (r = owl_ws_deflate(ws, p, n, fin, &data, &dlen)) != 0)
    return r;
  hlen = owl_ws_header(head, fin, rsv1, opcode, dlen, NULL);
  if (opcode < 8) {
    if (fin)
      ws->out_op = ws->out_z = 0;
    else if (opcode != OWL_WS_CONT) {
      ws->out_op = opcode;
      ws->out_z = z;
    }
  }
  return write(ud, (const char *)head, hlen, data, dlen);
}

/* }====== */


