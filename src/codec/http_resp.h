/*
** An incremental parser of one HTTP/1.1 response (RFC 9112), for a client:
** bytes in, in any split; the status, the header fields, the body and the
** end of the message out.  Pure: llhttp for the status line and the header
** section, chunked.c for chunked bodies; no libuv, no Lua.
**
** What it takes from the caller: whether the request was HEAD (its
** response has no body whatever its header fields say) and the limits.
** What it reports, through owl_resp_events, in wire order:
**   on_head  once, for the final response: 1xx interim responses (100
**            Continue, 103 Early Hints, ...) are parsed and skipped; 101
**            Switching Protocols is final (it has no body, and what follows
**            it is another protocol's: the parse ends there);
**   on_body  zero or more spans of body bytes, de-chunked;
**   on_done  once, when the message is complete.
** The body is framed by RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304;
** else chunked, else Content-Length, else until the connection closes,
** which the caller reports with owl_resp_eof.  Trailer fields are checked
** and dropped.
**
** Refused (OWL_RESP_EPROTO, owl_resp_error says why): a status line other
** than "HTTP/1.0" or "HTTP/1.1", SP, three digits (100..599), then SP and a
** reason phrase or the end of the line; control bytes in the reason; a bare
** CR or a bare LF anywhere in a head; obs-fold (a header line starting
** with SP or HTAB, which RFC 9112 5.2 lets a user agent unfold: refused
** here, as h2o's client does); an empty field name, or one with bytes
** outside tchar (whitespace before the colon among them); control bytes in
** a field value; a Content-Length that is not digits, or given twice;
** Content-Length together with Transfer-Encoding, for any status (RFC 9112
** 6.1 lets a client go by Transfer-Encoding and close afterwards; this
** parser takes the message as a smuggling attempt instead); a transfer
** coding other than one "chunked" (a client that sends no TE gets no
** other, RFC 9112 7.4); Transfer-Encoding in an HTTP/1.0 response; a
** malformed chunked body (chunked.c).
**
** Ownership: owl_resp_t is the caller's memory (embed it).  owl_resp_init
** fills it; owl_resp_free releases the two buffers the head is collected
** in (taken from buf.c's pool) and must be called once for each init.
** The input is borrowed for the length of a call: body spans point into
** it and are valid only during on_body.  The status line and the header
** fields are copied; what owl_resp_reason and owl_resp_header return is
** valid from on_head until owl_resp_drop_head or owl_resp_free.
*/

#ifndef OWL_HTTP_RESP_H
#define OWL_HTTP_RESP_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "codec/buf.h"
#include "codec/chunked.h"


/* Errors (negative, errno values as libuv spells them) */
#define OWL_RESP_EPROTO     (-71)   /* malformed: owl_resp_error says how */
#define OWL_RESP_E2BIG      (-7)    /* over a limit: head, headers, body */
#define OWL_RESP_EEOF       (-4095) /* closed before the message ended */
#define OWL_RESP_ENOMEM     (-12)
#define OWL_RESP_ECANCELED  (-125)  /* a callback returned non-zero */

/* Default limits */
#define OWL_RESP_MAX_HEADER_BYTES  (64 * 1024)
#define OWL_RESP_MAX_HEADERS       200

/* How the body is framed (RFC 9112 6.3), known from on_head on */
enum {
  OWL_RESP_NONE,                /* no body */
  OWL_RESP_LENGTH,              /* Content-Length bytes */
  OWL_RESP_CHUNKED,
  OWL_RESP_CLOSE                /* until the connection closes */
};


/*
** Limits; 0 means the default for the first two and no limit for
** max_body.  max_header_bytes bounds all the heads of the response, the
** interim 1xx ones included, counted in bytes on the wire (status line,
** header lines and their CRLFs).  max_headers bounds the header lines of
** each head.  max_body bounds the decoded body: a Content-Length above it
** fails at the head, other bodies as soon as they pass it.
*/
typedef struct owl_resp_limits {
  size_t max_header_bytes;
  size_t max_headers;
  uint64_t max_body;
} owl_resp_limits_t;


typedef struct owl_resp owl_resp_t;

/*
** The callbacks of owl_resp_feed and owl_resp_eof; each returns 0 to go
** on, anything else to stop the parse with OWL_RESP_ECANCELED.  Any may be
** NULL.
*/
typedef struct owl_resp_events {
  int (*on_head) (void *ud, owl_resp_t *r);
  int (*on_body) (void *ud, const char *at, size_t len);
  int (*on_done) (void *ud, owl_resp_t *r);
} owl_resp_events;


struct owl_resp {
  /* read-only for the caller, set when on_head runs */
  int status;                   /* the final status code */
  int minor;                    /* HTTP/1.<minor> */
  int framing;                  /* OWL_RESP_NONE ... OWL_RESP_CLOSE */
  uint64_t content_length;      /* with OWL_RESP_LENGTH */
  unsigned keepalive : 1;       /* the connection may carry another
                                   request once the message is done */
  /* private */
  unsigned head_req : 1;        /* the request was HEAD */
  unsigned closing : 1;         /* Connection: close */
  unsigned keep_token : 1;      /* Connection: keep-alive */
  unsigned has_te : 1;          /* Transfer-Encoding seen */
  unsigned chunked_te : 1;      /* ... and it is exactly "chunked" */
  unsigned bad_te : 1;          /* ... or it is not */
  unsigned char line_len;
  unsigned char last;           /* the head byte before this read */
  char line[13];                /* the first bytes of the status line */
  int state;
  int hstate;                   /* where llhttp is within a header line */
  long err;                     /* once failed: the code every call returns */
  const char *why;              /* ... and the message */
  const char *fault;            /* the byte a callback refused, or NULL */
  char msg[96];                 /* a message made from llhttp's reason */
  owl_resp_limits_t lim;
  size_t head_bytes;            /* bytes of the heads so far */
  uint64_t left;                /* Content-Length bytes still to come */
  uint64_t body_bytes;          /* decoded body bytes so far */
  llhttp_t parser;
  owl_chunked_t chunked;
  owl_buf_t head;               /* the reason, names (lowercased), values */
  owl_buf_t fields;             /* size_t pairs (offset, length) into head:
                                   the reason, then a name and a value for
                                   each header line */
  const owl_resp_events *ev;    /* during a call */
  void *ud;
};


/* head_req: the request was HEAD.  limits NULL: the defaults. */
void owl_resp_init (owl_resp_t *r, int head_req, const owl_resp_limits_t *limits);
void owl_resp_free (owl_resp_t *r);

/*
** Feeds p[0..n) from the connection.  Returns the bytes consumed, or a
** negative error; once failed, every later call returns the same error.
** Fewer than n bytes are consumed only once the response is complete (on
** done has run): the rest was sent after it (another response, or the new
** protocol after a 101).  A feed after the end consumes nothing.
*/
long owl_resp_feed (owl_resp_t *r, const char *p, size_t n,
                    const owl_resp_events *ev, void *ud);

/*
** The connection closed (no more bytes will come).  Ends a body framed by
** the close (on_done runs); returns 0, or OWL_RESP_EEOF when the head or a
** body of known length was cut short, or the error the parser failed with.
*/
int owl_resp_eof (owl_resp_t *r, const owl_resp_events *ev, void *ud);

/* The response is complete (on_done has run). */
int owl_resp_done (const owl_resp_t *r);

/* Some bytes of a response head were fed (and the final head is not yet
** complete, or is): what tells "closed before anything came" apart. */
int owl_resp_started (const owl_resp_t *r);

/* Why the parser failed, as a phrase ("invalid response: ..."); NULL
** while it has not. */
const char *owl_resp_error (const owl_resp_t *r);

/* The reason phrase, and the header lines in wire order: name lowercased,
** value without leading or trailing whitespace.  From on_head on. */
const char *owl_resp_reason (const owl_resp_t *r, size_t *len);
size_t owl_resp_nheaders (const owl_resp_t *r);
void owl_resp_header (const owl_resp_t *r, size_t i, const char **name,
                      size_t *nlen, const char **value, size_t *vlen);

/* Releases the head's buffers (after on_head, once they are copied). */
void owl_resp_drop_head (owl_resp_t *r);

#endif
