/*
** The WebSocket protocol (RFC 6455) and permessage-deflate (RFC 7692) as a
** pure codec: frames, UTF-8 and compression in ws.c, the opening handshake
** and the extension's negotiation in ws_handshake.c.  Bytes and lengths
** in, codes and plain C callbacks out.  No libuv, no Lua; zlib for the
** extension.
**
** Ownership, in one place:
** - owl_ws_conn_t is the caller's memory (embed it, or malloc it).
**   owl_ws_init fills it; owl_ws_free releases what the codec allocated
**   inside it (the message buffer, the compressed-output buffer and the two
**   zlib streams) and must be called exactly once for every owl_ws_init,
**   after which the struct may be reused by another owl_ws_init or freed.
**   The codec allocates lazily: a connection that never sees a fragmented,
**   split or compressed message holds no heap memory at all.
** - owl_ws_feed borrows the input for the length of the call.  It writes
**   to it: masked payloads are unmasked in place, so p[0..consumed) holds
**   unmasked payload bytes afterwards.  Nothing points into it after the
**   call returns.
** - Every pointer a callback receives (message, control payload) is
**   borrowed: valid only until the callback returns.  It points either
**   into the caller's input (a whole unfragmented, uncompressed message
**   that arrived in one read: no copy) or into the connection's own
**   buffers.  Copy what must outlive the callback.
** - owl_ws_send hands its write callback the header (a local array) and a
**   payload that is either the caller's own bytes or the connection's
**   compressed-output buffer; both are valid only during the callback,
**   which must copy them (into an output buffer, a uv_buf_t it owns ...)
**   before returning.
** - owl_ws_deflate's output lives in the connection's compressed-output
**   buffer until the next owl_ws_deflate, owl_ws_send or owl_ws_free.
** - The handshake and negotiation helpers write into caller buffers of the
**   sizes given below and keep nothing.
*/

#ifndef OWL_WS_H
#define OWL_WS_H

#include <stddef.h>
#include <stdint.h>

struct z_stream_s;              /* zlib's z_stream; ws.c includes zlib.h */


/* Opcodes (RFC 6455 section 5.2) */
#define OWL_WS_CONT     0x0
#define OWL_WS_TEXT     0x1
#define OWL_WS_BINARY   0x2
#define OWL_WS_CLOSE    0x8
#define OWL_WS_PING     0x9
#define OWL_WS_PONG     0xa

/* Close codes the codec produces (RFC 6455 section 7.4.1) */
#define OWL_WS_NORMAL       1000
#define OWL_WS_PROTOCOL     1002  /* a framing rule broken */
#define OWL_WS_NO_STATUS    1005  /* a close frame with no payload: never sent */
#define OWL_WS_INVALID_DATA 1007  /* bad UTF-8, corrupt compressed data */
#define OWL_WS_TOO_BIG      1009  /* a frame or message over its limit */
#define OWL_WS_INTERNAL     1011  /* out of memory, zlib refused to start */

/* Errors of the functions that are not fed by the peer (negative, errno
   values as libuv spells them) */
#define OWL_WS_EINVAL   (-22)     /* misuse: bad opcode, order, length */
#define OWL_WS_ENOMEM   (-12)
#define OWL_WS_ENOBUFS  (-105)    /* a caller buffer too small */

/* Roles: a server requires masked frames, a client refuses them. */
#define OWL_WS_SERVER   0
#define OWL_WS_CLIENT   1

/* Default limits (uvicorn's --ws-max-size is 16 MiB) */
#define OWL_WS_MAX_MESSAGE  ((uint64_t)16 << 20)
#define OWL_WS_MAX_FRAME    ((uint64_t)16 << 20)

/* What a callback returns to owl_ws_feed */
#define OWL_WS_GO       0         /* go on parsing */
#define OWL_WS_PAUSE    1         /* stop after this frame: see owl_ws_feed */

/* Sizes of caller buffers */
#define OWL_WS_HEADER_MAX   14    /* owl_ws_header: 2 + 8 + 4 */
#define OWL_WS_ACCEPT_SIZE  29    /* owl_ws_accept: 28 characters and NUL */
#define OWL_WS_EXT_SIZE     160   /* owl_ws_deflate_negotiate response */


/*
** Limits on what the peer may send; 0 means no limit.  max_frame bounds
** the payload length of one frame as it arrives on the wire (compressed or
** not); max_message bounds a whole message after reassembly and after
** decompression.  Going over either fails with 1009, as soon as a frame
** header announces too much or inflated output passes the limit.
*/
typedef struct owl_ws_limits {
  uint64_t max_frame;
  uint64_t max_message;
} owl_ws_limits_t;


/*
** permessage-deflate parameters (RFC 7692 section 7.1), as agreed by
** owl_ws_deflate_negotiate and given to owl_ws_init.  The same struct is a
** server's policy for owl_ws_deflate_negotiate (see there).
**   server_*: our compressor (the server's side); client_*: the peer's
**   compressor, that is our decompressor.  The roles are named as in the
**   RFC even when the codec plays the client.
**   *_no_context_takeover: the compressor starts afresh with each message.
**   *_max_window_bits: 8..15 (0 means 15).  zlib cannot make raw deflate
**   streams with an 8-bit window, so 8 compresses with 9 (as common servers
**   do).  They bound our compressor only: the peer's data is always
**   decompressed with a 15-bit window (always safe: a larger window reads
**   a smaller one's output; see make_inflater in ws.c for why).
**   level: zlib compression level 1..9 (0 or out of range: 6);
**   mem_level: zlib memLevel 1..9 (0: 8).  Neither is negotiated.
*/
typedef struct owl_ws_deflate {
  int enabled;
  int server_no_context_takeover;
  int client_no_context_takeover;
  int server_max_window_bits;
  int client_max_window_bits;
  int level;
  int mem_level;
} owl_ws_deflate_t;


/*
** The callbacks of owl_ws_feed.  Each returns OWL_WS_GO, OWL_WS_PAUSE or a
** negative code that aborts the feed (owl_ws_feed returns it, and the
** connection is then failed with it).  Either may be NULL (events dropped).
**
** on_message(ud, opcode, data, len): one whole message, OWL_WS_TEXT (data
**   is valid UTF-8) or OWL_WS_BINARY, reassembled and decompressed.
** on_control(ud, opcode, data, len): a control frame, OWL_WS_PING,
**   OWL_WS_PONG or OWL_WS_CLOSE, with its payload (0..125 bytes).  A close
**   payload has been checked: empty, or a valid code (owl_ws_close_code
**   reads it) and a UTF-8 reason.  The codec answers nothing itself: the
**   caller sends the pong, and the close reply (echoing the code, or 1000
**   for an empty close) before it shuts down.
*/
typedef struct owl_ws_events {
  int (*on_message) (void *ud, int opcode, const char *data, size_t len);
  int (*on_control) (void *ud, int opcode, const char *data, size_t len);
} owl_ws_events;


typedef struct owl_ws_conn {
  /* configuration */
  int role;
  owl_ws_limits_t lim;
  owl_ws_deflate_t pmd;         /* pmd.enabled 0: no extension */
  /* frame parser */
  int state;
  long err;                     /* negative: the code the feed failed with */
  unsigned char head[OWL_WS_HEADER_MAX];
  unsigned hlen, hneed;         /* header bytes held, and needed */
  int fin, rsv1, opcode;        /* of the frame being read */
  uint64_t flen;                /* its payload length */
  uint64_t left;                /* payload bytes still to come */
  unsigned char mask[4];
  unsigned moff;                /* position in the mask */
  unsigned char ctl[125];       /* a control frame's payload */
  size_t clen;
  /* message layer */
  int msg_op;                   /* opcode of the open message, 0: none */
  int msg_z;                    /* the open message is compressed */
  uint32_t utf8;                /* validator state of a text message */
  char *msg;                    /* reassembled message, owned */
  size_t len, cap;
  struct z_stream_s *inflater;  /* owned, made on first use */
  /* writer */
  int out_op;                   /* opcode of a fragmented message being
                                   sent, 0: none */
  int out_z;                    /* ... and whether it is compressed */
  struct z_stream_s *deflater;  /* owned, made on first use */
  char *zout;                   /* compressed output, owned */
  size_t zlen, zcap;
} owl_ws_conn_t;


/*
** Connections.  owl_ws_init never fails (zlib streams are made when first
** needed); limits NULL means OWL_WS_MAX_FRAME and OWL_WS_MAX_MESSAGE, pmd
** NULL (or pmd->enabled 0) means no permessage-deflate.
*/
void owl_ws_init (owl_ws_conn_t *ws, int role, const owl_ws_limits_t *limits,
                  const owl_ws_deflate_t *pmd);
void owl_ws_free (owl_ws_conn_t *ws);

/*
** Feeds p[0..n) from the peer, in any split.  Returns the bytes consumed,
** or a negative close code (-1002, -1007, -1009, -1011) or a callback's
** negative return; the caller then sends a close frame with that code (if
** it is one) and closes.  Once failed, every later feed returns the same.
**   Fewer than n bytes are consumed only when a callback returned
**   OWL_WS_PAUSE (the count runs to the end of that frame: feed the rest
**   later), or after a close frame (the count runs to its end; every later
**   feed consumes and ignores everything, as RFC 6455 5.5.1 asks).
**   Callbacks run synchronously inside the feed, in wire order; the codec
**   keeps no pointer into p between calls (a frame split across reads is
**   copied into the message buffer).
*/
long owl_ws_feed (owl_ws_conn_t *ws, char *p, size_t n,
                  const owl_ws_events *ev, void *ud);

/* 1 once a close frame was received, 0 before. */
int owl_ws_closed (const owl_ws_conn_t *ws);


/*
** The writer (server frames are never masked).
**
** owl_ws_header writes a frame header into out[OWL_WS_HEADER_MAX] and
**   returns its length; mask (4 bytes) is for a client's frame, NULL for a
**   server's.  It checks nothing: owl_ws_send does.
** owl_ws_mask xors p[0..n) with key, starting at offset (mod 4) of it.
** owl_ws_send frames one fragment or whole message and gives it to
**   write(ud, head, hlen, data, dlen) exactly once, or fails without
**   calling it: opcode OWL_WS_TEXT/BINARY starts a message (fin 1: the
**   whole message), OWL_WS_CONT continues the one begun with fin 0, and
**   control frames (fin 1, n <= 125) may come between fragments.  compress
**   (only if deflate was agreed, only on a message's first fragment;
**   continuations follow it) sets RSV1 and deflates the payload.  Returns
**   0, OWL_WS_EINVAL for a sequence or length the protocol forbids,
**   OWL_WS_ENOMEM / OWL_WS_INTERNAL (zlib), or write's nonzero return.
** owl_ws_deflate compresses one fragment of an outgoing message (fin 1:
**   the last) into the connection's buffer, *out and *outlen: raw deflate,
**   each fragment sync-flushed, the final 00 00 ff ff of the message
**   stripped, the context reset after it with server_no_context_takeover.
**   Returns 0 or a negative code; for callers that frame by themselves.
** owl_ws_close_payload writes a close payload (code, then reason cut to
**   123 bytes at a UTF-8 boundary) into out[125] and returns its length.
*/
size_t owl_ws_header (unsigned char *out, int fin, int rsv1, int opcode,
                      uint64_t len, const unsigned char *mask);
void owl_ws_mask (char *p, size_t n, const unsigned char key[4],
                  size_t offset);

typedef int (*owl_ws_write_cb) (void *ud, const char *head, size_t hlen,
                                const char *data, size_t dlen);
int owl_ws_send (owl_ws_conn_t *ws, int opcode, int fin, const char *p,
                 size_t n, int compress, owl_ws_write_cb write, void *ud);
int owl_ws_deflate (owl_ws_conn_t *ws, const char *p, size_t n, int fin,
                    const char **out, size_t *outlen);
size_t owl_ws_close_payload (char *out, unsigned code, const char *reason,
                             size_t len);

/*
** Close codes.  owl_ws_close_code reads the code of a checked close
** payload (OWL_WS_NO_STATUS when empty).  owl_ws_close_valid says whether
** a code may appear in a close frame (RFC 6455 7.4: 1000-1003, 1007-1011,
** and 1012-1014 from the IANA registry; 3000-4999).
*/
unsigned owl_ws_close_code (const char *payload, size_t len);
int owl_ws_close_valid (unsigned code);


/*
** UTF-8 (RFC 3629: no overlongs, no surrogates, nothing over U+10FFFF),
** streaming and fail-fast.  *state starts at 0; owl_utf8_check returns 0
** while p[0..n) continues a valid sequence (a character may be cut
** between calls), -1 at the first byte that cannot; the text is valid if
** the last call returned 0 and left *state 0.
*/
int owl_utf8_check (uint32_t *state, const char *p, size_t n);


/*
** The opening handshake.
** owl_ws_key_valid: 1 if key[0..len) (spaces and tabs around it ignored)
**   is the base64 of exactly 16 bytes (22 characters and "=="), else 0.
** owl_ws_accept: writes Sec-WebSocket-Accept for a Sec-WebSocket-Key,
**   base64(SHA-1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), as 28
**   characters and a NUL into out[OWL_WS_ACCEPT_SIZE].
*/
int owl_ws_key_valid (const char *key, size_t len);
void owl_ws_accept (const char *key, size_t len, char *out);

/*
** permessage-deflate negotiation (RFC 7692 section 7.1) over a
** Sec-WebSocket-Extensions value (several header lines joined with ",").
** Takes the first permessage-deflate offer that is valid (no unknown,
** repeated or out-of-range parameter) and acceptable; offers of other
** extensions are skipped.  policy (NULL: accept as offered) lets the
** server insist on server_/client_no_context_takeover and cap both window
** sizes.  On success fills *agreed (for owl_ws_init; level and mem_level
** copied from policy) and writes the response header value with a NUL
** into resp[cap] and returns its length; returns 0 when nothing was
** acceptable (answer without the extension) and OWL_WS_ENOBUFS when cap is
** under OWL_WS_EXT_SIZE.
*/
int owl_ws_deflate_negotiate (const owl_ws_deflate_t *policy,
                              const char *offer, size_t len,
                              owl_ws_deflate_t *agreed, char *resp,
                              size_t cap);

#endif
