/*
** The HTTP/1.1 protocol handler: llhttp and the request head, the request
** cycle's connection-side state, keep-alive and its timers.
**
** Input.  Every read is parsed at once.  The parser pauses at two points of
** every message: when the head is complete (the request is built, outside
** llhttp) and when the message is complete (the app starts, or the waiting
** reader is woken).  While a response is still being produced, input after
** the finished message is kept (owl_conn_kept) and reading stops: pipelined
** requests are answered in order and cost at most one read buffer.  The
** request body goes to req->body; reading stops while more than
** OWL_BODY_HIGH bytes of it are unread.
**
** Output goes to the connection (conn.c): the start of a response body is
** held there until its headers are serialized, so that a small response
** gets a Content-Length.
**
** llhttp 8.1 is lenient in ways RFC 9112 forbids; this file refuses what it
** lets through: bare LF, bare CR and obs-fold in the head (scanhead),
** whitespace before the colon (tchar check), empty field names (the
** header-line states), bytes outside visible ASCII in the target, RTSP/ICE
** versions.  Chunked request bodies go to chunked.c, which is strict where
** llhttp 8.1 is not (extensions, the CRLF after chunk data, trailers).
*/

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http1.h"
#include "http/websocket.h"
#include "codec/token.h"


enum { T_NONE, T_HEAD, T_IDLE, T_BODY };

/* where the parser is within a header line */
enum { H_LINE, H_NAME, H_VALUE0, H_VALUE };


/* The handler's state, in the connection's allocation (owl_conn_proto). */
typedef struct h1 {
  owl_conn_t *conn;
  owl_server_t *srv;
  llhttp_t parser;
  owl_req_t *req;               /* the request being served, or NULL */
  owl_buf_t head;               /* this request's target and header bytes */
  owl_buf_t fields;             /* size_t offsets into head: url, name, value... */
  size_t head_bytes;
  uint64_t body_in;             /* body bytes of the current message */
  owl_chunked_t chunked;        /* decoder of a chunked request body */
  uint64_t deadline;            /* loop time the timer_mode times out, 0: none */
  const char *exec_at;          /* start of the bytes llhttp is parsing */
  unsigned nreq;                /* requests answered on this connection */
  int hstate;                   /* where the parser is within a header line */
  int err_status;               /* status chosen by a callback for a parse error */
  int timer_mode;
  unsigned char last;           /* last head byte scanned */
  char tail[3];                 /* the last 3 head bytes parsed before the
                                   current read (tail[2] the last) */
  unsigned char line_len;
  char line[48];                /* first bytes of the message, for errors */
  unsigned keepalive : 1;
  unsigned in_drive : 1;        /* parsing: do not parse again from inside */
  unsigned got_bytes : 1;       /* some bytes of a request have arrived */
  unsigned in_head : 1;         /* the parser is in a message head */
  unsigned want_chunked : 1;    /* the message has a chunked body */
  unsigned in_chunked : 1;      /* chunked.c is decoding the body */
  unsigned head_ready : 1;      /* paused at headers complete */
  unsigned msg_done : 1;        /* paused at message complete */
  unsigned upgrade : 2;         /* 1: Connection: upgrade; 2: a valid WebSocket handshake */
  unsigned head_req : 1;        /* the message being parsed is a HEAD */
  unsigned proto_seen : 1;      /* its protocol name was checked */
} h1_t;

#define H(c) ((h1_t *)owl_conn_proto(c))

static const owl_handler_t h1_handler;

owl_req_ops_t owl_h1_req;

static void conn_settle (h1_t *h);
static void conn_fail (h1_t *h, int status);
static void update_reading (h1_t *h);


/* {====== fields of the head being parsed */

/* h->fields holds pairs (offset, length) into h->head: the target, then a
** name and a value for each header line. */
static size_t nfields (h1_t *h) {
  return h->fields.len / (2 * sizeof(size_t));
}


static size_t *field (h1_t *h, size_t i) {
  return (size_t *)h->fields.base + 2 * i;
}


static int field_new (h1_t *h) {
  size_t f[2] = { h->head.len, 0 };
  return owl_buf_append(&h->fields, f, sizeof f);
}


/*
** llhttp 8.1 also reports empty spans: the empty target of "CONNECT \r\n"
** (taken as HTTP/0.9), an empty name before ':'.  They add nothing, and
** h->head may have no storage yet (base NULL): no arithmetic on it.
*/
static int field_add (h1_t *h, const char *at, size_t n, int lower) {
  size_t start = h->head.len;
  if (n == 0)
    return 0;
  if (owl_buf_append(&h->head, at, n))
    return -1;
  if (lower) {
    char *p = h->head.base + start;
    for (size_t i = 0; i < n; i++)
      if (p[i] >= 'A' && p[i] <= 'Z')
        p[i] += 32;
  }
  field(h, nfields(h) - 1)[1] += n;
  return 0;
}


/* Is field i (a lowercase name) equal to the literal s? */
static int field_is (h1_t *h, size_t i, const char *s, size_t n) {
  size_t *f = field(h, i);
  return f[1] == n && memcmp(h->head.base + f[0], s, n) == 0;
}
/* }====== */


/* {====== llhttp callbacks: they only collect request state */

#define H1P(p) ((h1_t *)(p)->data)

static int refuse (h1_t *h, int status) {
  h->err_status = status;
  return -1;
}


static int count_head (h1_t *h, size_t n) {
  h->head_bytes += n;
  return h->head_bytes > h->srv->opt.max_header_bytes;
}


static int on_message_begin (llhttp_t *p) {
  h1_t *h = H1P(p);
  h->head.len = 0;
  h->fields.len = 0;
  h->head_bytes = 0;
  h->hstate = H_LINE;
  h->head_req = 0;
  h->proto_seen = 0;
  return 0;
}


static int on_method_complete (llhttp_t *p) {
  H1P(p)->head_req = llhttp_get_method(p) == HTTP_HEAD;
  return 0;
}


/*
** The first piece of the version: the 3 bytes before it must be "TP/" of
** "HTTP/" (RFC 9112 2.3).  llhttp 8.1 also takes "RTSP/" and "ICE/" in a
** request line; those are not HTTP.  The bytes may have come in an earlier
** read: h->tail keeps the last 3.
*/
static int on_version (llhttp_t *p, const char *at, size_t n) {
  h1_t *h = H1P(p);
  char w[3];
  (void)n;
  if (h->proto_seen)
    return 0;
  h->proto_seen = 1;
  size_t before = (size_t)(at - h->exec_at);    /* this read's bytes before at */
  for (size_t back = 3; back >= 1; back--)
    w[3 - back] = back <= before ? at[-(ptrdiff_t)back] : h->tail[3 - (back - before)];
  return memcmp(w, "TP/", 3) == 0 ? 0 : refuse(h, 400);
}


static int on_url (llhttp_t *p, const char *at, size_t n) {
  h1_t *h = H1P(p);
  if (nfields(h) == 0 && field_new(h))
    return refuse(h, 500);
  if (field(h, 0)[1] + n > h->srv->opt.max_target)
    return refuse(h, 414);
  for (size_t i = 0; i < n; i++)    /* RFC 3986: other bytes are %-encoded */
    if ((unsigned char)at[i] <= ' ' || (unsigned char)at[i] >= 0x7f)
      return refuse(h, 400);
  if (count_head(h, n))
    return refuse(h, 431);
  return field_add(h, at, n, 0) ? refuse(h, 500) : 0;
}


static int on_header_field (llhttp_t *p, const char *at, size_t n) {
  h1_t *h = H1P(p);
  if (h->hstate == H_LINE) {        /* a new header line */
    if ((nfields(h) - 1) / 2 >= h->srv->opt.max_headers)
      return refuse(h, 431);
    if (field_new(h))
      return refuse(h, 500);
    h->hstate = H_NAME;
  }
  else if (h->hstate != H_NAME)
    return refuse(h, 400);
  for (size_t i = 0; i < n; i++)
    if (!owl_istchar((unsigned char)at[i]))
      return refuse(h, 400);        /* e.g. "Host : x" */
  if (count_head(h, n))
    return refuse(h, 431);
  return field_add(h, at, n, 1) ? refuse(h, 500) : 0;
}


static int on_header_field_complete (llhttp_t *p) {
  h1_t *h = H1P(p);
  if (h->hstate != H_NAME || field(h, nfields(h) - 1)[1] == 0)
    return refuse(h, 400);          /* ": value" has no name */
  h->hstate = H_VALUE0;
  return 0;
}


static int on_header_value (llhttp_t *p, const char *at, size_t n) {
  h1_t *h = H1P(p);
  if (h->hstate == H_VALUE0) {
    if (field_new(h))
      return refuse(h, 500);
    h->hstate = H_VALUE;
  }
  else if (h->hstate != H_VALUE)
    return refuse(h, 400);          /* a value with no name: obs-fold */
  if (count_head(h, n))
    return refuse(h, 431);
  return field_add(h, at, n, 0) ? refuse(h, 500) : 0;
}


static int on_header_value_complete (llhttp_t *p) {
  h1_t *h = H1P(p);
  if (h->hstate == H_VALUE0 && field_new(h))
    return refuse(h, 500);          /* an empty value */
  else if (h->hstate == H_LINE || h->hstate == H_NAME)
    return refuse(h, 400);
  size_t *f = field(h, nfields(h) - 1);
  const char *v = h->head.base + f[0];
  while (f[1] > 0 && (v[f[1] - 1] == ' ' || v[f[1] - 1] == '\t'))
    f[1]--;                         /* RFC 9110 5.5: no trailing OWS */
  h->hstate = H_LINE;
  return 0;
}


/* A byte of a Host value: ALPHA, DIGIT or one of "-._~!$&'()*+,;=%:[]". */
static int hostchar (unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
    return 1;
  switch (ch) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&':
    case '\'': case '(': case ')': case '*': case '+': case ',': case ';':
    case '=': case '%': case ':': case '[': case ']':
      return 1;
    default:
      return 0;
  }
}


/* RFC 9110 7.2: Host is uri-host [ ":" port ], no userinfo, no path. */
static int check_host (const char *v, size_t n) {
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  for (size_t i = 0; i < n; i++)
    if (!hostchar((unsigned char)v[i]))
      return -1;
  return 0;
}


/* Checks a Transfer-Encoding value: only one "chunked" is understood. */
static int check_te (h1_t *h, size_t i, int *nchunked) {
  size_t *f = field(h, i);
  const char *s = h->head.base + f[0], *e = s + f[1];
  while (s < e) {
    while (s < e && (*s == ' ' || *s == '\t' || *s == ','))
      s++;
    const char *t = s;
    while (s < e && *s != ',' && *s != ' ' && *s != '\t' && *s != ';')
      s++;
    if (s == t)
      break;
    if ((size_t)(s - t) == 7 && strncasecmp(t, "chunked", 7) == 0)
      (*nchunked)++;
    else
      return 501;
    while (s < e && *s != ',')
      s++;                          /* parameters of a coding */
  }
  return 0;
}


/* The values of header lname (lowercase), joined; NULL, 0 if absent. */
static const char *field_value (h1_t *h, const char *lname, size_t *len,
                                owl_buf_t *b) {
  size_t n = nfields(h), ln = strlen(lname);
  b->len = 0;
  for (size_t i = 1; i + 1 < n; i += 2) {
    if (!field_is(h, i, lname, ln))
      continue;
    size_t *f = field(h, i + 1);
    if ((b->len > 0 && owl_buf_append(b, ",", 1)) ||
        owl_buf_append(b, h->head.base + f[0], f[1]))
      return NULL;
  }
  *len = b->len;
  return b->len ? b->base : NULL;
}


/*
** 0: no upgrade; 1: Connection: upgrade with an Upgrade header (what
** opaque.Upgrade needs); 2: a valid WebSocket handshake (RFC 6455 4.2.1);
** -426 for a WebSocket handshake of another version.
*/
static int check_upgrade (h1_t *h, llhttp_t *p) {
  owl_buf_t b = { NULL, 0, 0 };
  size_t n;
  int up = 0;
  const char *v = field_value(h, "connection", &n, &b);
  if (v == NULL || !owl_list_has(v, n, "upgrade", 7))
    goto done;
  if ((v = field_value(h, "upgrade", &n, &b)) == NULL)
    goto done;
  up = 1;
  if (!owl_list_has(v, n, "websocket", 9) || p->method != HTTP_GET || p->http_minor != 1)
    goto done;
  v = field_value(h, "sec-websocket-version", &n, &b);
  if (v == NULL)
    goto done;
  if (n != 2 || memcmp(v, "13", 2) != 0) {
    up = -426;
    goto done;
  }
  v = field_value(h, "sec-websocket-key", &n, &b);
  if (v != NULL && owl_ws_key_valid(v, n))
    up = 2;
done:
  owl_buf_free(&b);
  return up;
}


static int on_headers_complete (llhttp_t *p) {
  h1_t *h = H1P(p);
  owl_options_t *o = &h->srv->opt;
  size_t n = nfields(h);
  int nhost = 0, nchunked = 0, te = 0, close = 0, keep = 0;
  if (n == 0)
    return refuse(h, 400);
  if (p->http_major != 1)
    return refuse(h, 505);
  if (p->method == HTTP_CONNECT)
    return refuse(h, 501);          /* no tunnels: this is an origin server */
  for (size_t i = 1; i + 1 < n; i += 2) {
    if (field_is(h, i, "connection", 10)) {
      size_t *f = field(h, i + 1);
      close |= owl_list_has(h->head.base + f[0], f[1], "close", 5);
      keep |= owl_list_has(h->head.base + f[0], f[1], "keep-alive", 10);
    }
    else if (field_is(h, i, "host", 4)) {
      size_t *f = field(h, i + 1);
      if (check_host(h->head.base + f[0], f[1]))
        return refuse(h, 400);
      nhost++;
    }
    else if (field_is(h, i, "transfer-encoding", 17)) {
      int st = check_te(h, i + 1, &nchunked);
      if (st)
        return refuse(h, st);
      te = 1;
    }
  }
  if (nhost > 1 || (p->http_minor == 1 && nhost == 0))
    return refuse(h, 400);
  if (te && (nchunked != 1 || p->http_minor == 0))
    return refuse(h, 400);
  /* The framing and the keep-alive decision are ours, from the values as
  ** RFC 9110 5.5 reads them (no leading or trailing OWS): llhttp 8.1 keeps
  ** a trailing tab, and would take "chunked\t" for an unknown coding and
  ** "close\t" for another token. */
  if (te)
    p->flags |= F_CHUNKED;
  p->flags &= ~(uint16_t)(F_CONNECTION_CLOSE | F_CONNECTION_KEEP_ALIVE);
  if (close)
    p->flags |= F_CONNECTION_CLOSE;
  else if (keep)
    p->flags |= F_CONNECTION_KEEP_ALIVE;
  if (o->max_body && (p->flags & F_CONTENT_LENGTH) && p->content_length > o->max_body)
    return refuse(h, 413);
  /* A request with a body is not upgraded (RFC 9110 7.8 lets a server
  ** ignore Upgrade): the app could answer 101 before the body is read, and
  ** the rest of the body would then be read as the new protocol's bytes. */
  int body = te || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  int up = body ? 0 : check_upgrade(h, p);
  if (up < 0)
    return refuse(h, -up);
  h->upgrade = (unsigned)up;
  p->upgrade = 0;                   /* llhttp must not switch: the app decides */
  if (p->flags & F_CHUNKED) {
    p->flags |= F_SKIPBODY;         /* chunked.c decodes the body */
    h->want_chunked = 1;
  }
  h->head_ready = 1;
  return HPE_PAUSED;
}


/* A span of request body, from llhttp or from chunked.c. */
static int body_data (h1_t *h, const char *at, size_t n) {
  owl_req_t *r = h->req;
  uint64_t max = h->srv->opt.max_body;
  h->body_in += n;
  if (max && h->body_in > max)
    return refuse(h, 413);
  if (r != NULL && !OWL_ENDED(r) && !r->discard) {
    if (owl_buf_append(&r->body, at, n))
      return refuse(h, 500);
    if (h->timer_mode == T_BODY)    /* progress: the idle timeout starts over */
      h->deadline = uv_now(h->srv->loop) + h->srv->opt.body_timeout;
  }
  return 0;
}


static int on_chunk_data (void *ud, const char *at, size_t n) {
  return body_data(ud, at, n);
}


static int on_body (llhttp_t *p, const char *at, size_t n) {
  return body_data(H1P(p), at, n);
}


static int on_message_complete (llhttp_t *p) {
  h1_t *h = H1P(p);
  if (h->want_chunked) {            /* llhttp skipped the body: decode it */
    h->want_chunked = 0;
    h->in_chunked = 1;
    owl_chunked_init(&h->chunked, h->srv->opt.max_header_bytes);
  }
  else
    h->msg_done = 1;
  return HPE_PAUSED;
}


static llhttp_settings_t settings;


static void init_settings (void) {
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_method_complete = on_method_complete;
  settings.on_url = on_url;
  settings.on_version = on_version;
  settings.on_header_field = on_header_field;
  settings.on_header_field_complete = on_header_field_complete;
  settings.on_header_value = on_header_value;
  settings.on_header_value_complete = on_header_value_complete;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
}
/* }====== */


/* {====== parsing */

static int isdig (char ch) {
  return ch >= '0' && ch <= '9';
}


/*
** The status for a parse error.  An unknown but well-formed method is 501
** (RFC 9110 9.1); a well-formed version other than 1.x is 505; anything
** malformed is 400.  h->line holds the first bytes of the message; the
** version is found from the error position within [p, end).
*/
static int error_status (h1_t *h, llhttp_errno_t err, const char *p,
                         const char *end) {
  if (h->err_status)
    return h->err_status;
  if (err == HPE_INVALID_TRANSFER_ENCODING)
    return 501;
  /* llhttp's error for an RTSP method (ANNOUNCE, ...) before "HTTP/": to
  ** HTTP it is a well-formed method this server does not implement */
  const char *why = llhttp_get_error_reason(&h->parser);
  if (err == HPE_INVALID_METHOD) {
    /* A token is an unknown method (501), anything else is malformed
    ** (400).  The method is what h->line holds up to the first space, or
    ** all of it when no space came yet (llhttp may refuse before the read
    ** that ends the method: a token so far counts as one, so that the
    ** answer does not depend on where the bytes were split). */
    const char *s = h->line, *e = s + h->line_len;
    while (s < e && (*s == '\r' || *s == '\n'))
      s++;
    const char *sp = memchr(s, ' ', (size_t)(e - s));
    if (sp == NULL)
      sp = e;
    if (sp == s)
      return 400;
    for (const char *q = s; q < sp; q++)
      if (!owl_istchar((unsigned char)*q))
        return 400;
    return 501;
  }
  if (err == HPE_INVALID_CONSTANT && why != NULL &&
      strcmp(why, "Invalid method for HTTP/x.x request") == 0) {
    const char *s = h->line, *e = s + h->line_len;
    while (s < e && (*s == '\r' || *s == '\n'))
      s++;
    const char *sp = memchr(s, ' ', (size_t)(e - s));
    if (sp == NULL || sp == s)
      return 400;
    for (const char *q = s; q < sp; q++)
      if (!owl_istchar((unsigned char)*q))
        return 400;
    return 501;
  }
  if (err == HPE_INVALID_VERSION) {
    const char *at = llhttp_get_error_pos(&h->parser);
    const char *v = at;
    while (v > p && v[-1] != ' ')
      v--;
    if (v > p && end - v >= 10 && memcmp(v, "HTTP/", 5) == 0 && isdig(v[5]) &&
        v[6] == '.' && isdig(v[7]) && v[8] == '\r' && v[9] == '\n')
      return 505;
  }
  return 400;
}


/*
** Head bytes may not hold a bare LF or a bare CR (RFC 9112 2.2: a CR not
** followed by LF is rejected, so that no proxy in front reads the line
** differently), nor start a line with SP or HTAB (obs-fold).  h->last is
** the byte before p.
*/
static int scanhead (h1_t *h, const char *p, size_t n) {
  if (n == 0)
    return 0;
  if (h->last == '\r' && p[0] != '\n')
    return -1;
  if (h->last == '\n' && (p[0] == ' ' || p[0] == '\t'))
    return -1;
  const char *e = p + n, *lf = p, *cr = p;
  while ((lf = memchr(lf, '\n', (size_t)(e - lf))) != NULL) {
    if ((lf == p ? h->last : (unsigned char)lf[-1]) != '\r')
      return -1;
    if (++lf == e)
      break;
    if (*lf == ' ' || *lf == '\t')
      return -1;
  }
  while ((cr = memchr(cr, '\r', (size_t)(e - cr))) != NULL) {
    if (++cr == e)
      break;                        /* the next bytes say */
    if (*cr != '\n')
      return -1;
  }
  h->last = (unsigned char)e[-1];
  return 0;
}


/*
** Runs llhttp over p[0..n) until it ends or pauses; returns the bytes it
** took, or -1 after failing the connection.  *again is set when the parser
** must run once more even without bytes (a head just completed).
*/
static long parse_http (h1_t *h, const char *p, size_t n, int *again) {
  int in_head = h->in_head;
  if (in_head && h->line_len < sizeof h->line) {
    size_t k = sizeof h->line - h->line_len;
    if (k > n)
      k = n;
    memcpy(h->line + h->line_len, p, k);
    h->line_len += (unsigned char)k;
  }
  h->exec_at = p;
  llhttp_errno_t err = llhttp_execute(&h->parser, p, n);
  size_t used = n;
  if (err == HPE_PAUSED) {
    used = (size_t)(llhttp_get_error_pos(&h->parser) - p);
    llhttp_resume(&h->parser);
  }
  else if (err != HPE_OK) {
    /* the first fault in the byte stream decides: a bare CR or LF before
    ** the point where llhttp or a limit refused is a 400 whatever the read
    ** sizes were */
    const char *at = llhttp_get_error_pos(&h->parser);
    size_t upto = at != NULL && at >= p && at <= p + n ? (size_t)(at - p) : n;
    conn_fail(h, in_head && scanhead(h, p, upto) ? 400 : error_status(h, err, p, p + n));
    return -1;
  }
  if (in_head && scanhead(h, p, used)) {
    conn_fail(h, 400);
    return -1;
  }
  if (in_head)                      /* for on_version in the next read */
    for (size_t i = used < 3 ? 0 : used - 3; i < used; i++) {
      h->tail[0] = h->tail[1];
      h->tail[1] = h->tail[2];
      h->tail[2] = p[i];
    }
  if (h->head_ready) {
    h->head_ready = 0;
    *again = 1;                     /* a message without body ends here */
    h->in_head = 0;
    h->body_in = 0;
    h->keepalive = llhttp_should_keep_alive(&h->parser);
    if ((h->req = owl_h1_req.begin(h->conn)) == NULL) {
      conn_fail(h, 500);
      return -1;
    }
  }
  return (long)used;
}


/* Runs chunked.c over p[0..n); as parse_http. */
static long parse_chunked (h1_t *h, const char *p, size_t n) {
  long used = owl_chunked_decode(&h->chunked, p, n, on_chunk_data, h);
  if (used < 0) {
    conn_fail(h, h->err_status ? h->err_status : 400);
    return -1;
  }
  if (owl_chunked_done(&h->chunked)) {
    h->in_chunked = 0;
    h->msg_done = 1;
  }
  return used;
}


/*
** Parses input for as long as no response is pending, building requests and
** starting or waking their apps.  Returns the bytes consumed, or -1 after the
** connection failed (the caller keeps nothing).
*/
static long conn_feed (h1_t *h, const char *p, size_t n) {
  const char *start = p;
  int again = 0;                    /* run llhttp once more, even on no bytes */
  owl_conn_t *c = h->conn;
  while ((n > 0 || again) && !owl_conn_closing(c)) {
    owl_req_t *r = h->req;
    if (owl_conn_handler(c) != &h1_handler) {
      owl_conn_handler(c)->on_read(c, (char *)p, n);
      p += n;                       /* the app answered 101: the rest is the */
      n = 0;                        /* new protocol's */
      break;
    }
    if (r != NULL && r->body_done)
      break;                        /* pipelined input waits for the response */
    if (owl_conn_closes_after(c)) { /* nothing more is read on this one */
      p += n;
      n = 0;
      break;
    }
    again = 0;
    long used = h->in_chunked ? parse_chunked(h, p, n) : parse_http(h, p, n, &again);
    if (used < 0)
      return -1;
    if (used > 0)
      h->got_bytes = 1;
    p += used;
    n -= (size_t)used;
    if (h->msg_done) {
      h->msg_done = 0;
      h->in_head = 1;
      h->last = '\n';
      h->line_len = 0;
      r = h->req;
      if (r == NULL)                /* the app answered before the body ended */
        continue;
      r->body_done = 1;
      if (!r->started)
        owl_h1_req.start(r);
      else
        owl_h1_req.wake_reader(r);
    }
  }
  if (h->req && !h->req->started && !owl_conn_closing(c))
    owl_h1_req.start(h->req);          /* the body is still on its way */
  else if (h->req && h->req->task.wait == OWL_WAIT_READ)
    owl_h1_req.wake_reader(h->req);
  return (long)(p - start);
}


/* Parses the kept input, once the response that held it back is done. */
static void h1_continue (h1_t *h) {
  owl_conn_t *c = h->conn;
  if (owl_conn_closing(c) || h->in_drive)
    return;
  h->in_drive = 1;
  owl_buf_t *in = owl_conn_kept(c);
  if (in->len > 0) {
    long used = conn_feed(h, in->base, in->len);
    if (used > 0 && !owl_conn_closing(c))
      owl_buf_consume(in, (size_t)used);
  }
  h->in_drive = 0;
  if (owl_conn_handler(c) == &h1_handler)
    conn_settle(h);
}
/* }====== */


/* {====== events of the connection */

static void on_read (owl_conn_t *c, char *p, size_t n) {
  h1_t *h = H(c);
  owl_buf_t *in = owl_conn_kept(c);
  if (h->req == NULL && h->timer_mode == T_IDLE) {
    h->timer_mode = T_NONE;         /* a new request: the head timeout runs */
    h->deadline = 0;
  }
  h->in_drive = 1;
  if (in->len > 0) {                /* not expected: reading stops while paused */
    if (owl_buf_append(in, p, n)) {
      h->in_drive = 0;
      owl_conn_close(c);
      return;
    }
    long used = conn_feed(h, in->base, in->len);
    if (used > 0 && !owl_conn_closing(c))
      owl_buf_consume(in, (size_t)used);
  }
  else {
    long used = conn_feed(h, p, n);
    if (used >= 0 && (size_t)used < n && !owl_conn_closing(c) &&
        owl_conn_handler(c) == &h1_handler &&
        owl_buf_append(in, p + used, n - (size_t)used)) {
      h->in_drive = 0;
      owl_conn_close(c);
      return;
    }
  }
  h->in_drive = 0;
  if (owl_conn_handler(c) == &h1_handler)
    conn_settle(h);
}


/*
** A client that leaves while its request runs cancels it (as nginx's
** lua_check_client_abort and uvicorn do); output already produced for a
** finished request is still written before closing.
*/
static void on_eof (owl_conn_t *c, int err) {
  h1_t *h = H(c);
  if (h->req == NULL && err == UV_EOF && owl_conn_pending(c) > 0) {
    owl_conn_close_after(c);
    update_reading(h);
  }
  else
    owl_conn_close(c);
}


static void update_reading (h1_t *h) {
  owl_conn_t *c = h->conn;
  owl_req_t *r = h->req;
  int want;
  if (owl_conn_closing(c) || owl_conn_lingering(c))
    return;                         /* lingering: conn.c reads and discards */
  if (owl_conn_closes_after(c) || owl_conn_kept(c)->len > 0)
    want = 0;
  else if (r == NULL || r->body_done)
    want = 1;                       /* next request, or notice a client leaving */
  else
    want = r->read_all || r->body.len < OWL_BODY_HIGH;
  owl_conn_reading(c, want);
}


static void on_drain (owl_conn_t *c) {
  h1_t *h = H(c);
  if (h->req && h->req->task.wait == OWL_WAIT_DRAIN && owl_conn_pending(c) <= OWL_OUT_LOW)
    owl_h1_req.wake_writer(h->req);
  else
    conn_settle(h);
}


/* The connection is closing: a request in flight is detached, its
** CallCancelled fires. */
static void on_close (owl_conn_t *c) {
  h1_t *h = H(c);
  if (h->req != NULL) {
    owl_req_t *r = h->req;
    h->req = NULL;
    owl_h1_req.detach(r, UV_ECONNRESET);
  }
}


static void on_free (owl_conn_t *c) {
  h1_t *h = H(c);
  owl_buf_free(&h->head);
  owl_buf_free(&h->fields);
}
/* }====== */


/* {====== lines about the answers this handler makes itself */

/* The port of an IPv4 or IPv6 address. */
static int port_of (const struct sockaddr_storage *a) {
  return a->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)a)->sin6_port)
                                   : ntohs(((const struct sockaddr_in *)a)->sin_port);
}


/* Why the server answers status itself, from what the connection saw. */
static const char *refusal_reason (h1_t *h, int status, char *buf, size_t len) {
  owl_options_t *o = &h->srv->opt;
  switch (status) {
    case 408:
      return h->req != NULL ? "the request body stalled longer than --body-timeout"
                            : "the request head took longer than --header-timeout";
    case 413:
      snprintf(buf, len, "the request body is larger than --max-body (%" PRIu64 " bytes)",
               o->max_body);
      return buf;
    case 414:
      snprintf(buf, len, "the request-target is longer than --max-target (%zu bytes)",
               o->max_target);
      return buf;
    case 431:
      snprintf(buf, len, "the request head is over --max-header-bytes (%zu) or "
               "--max-headers (%zu)", o->max_header_bytes, o->max_headers);
      return buf;
    case 500:
      return "the server ran out of memory building the request";
    case 503:
      snprintf(buf, len, "%u connections open, --max-connections is %u", h->srv->conns.n - 1,
               o->max_connections);
      return buf;
    case 505:
      return "the request's HTTP version is not 1.0 or 1.1";
    case 426:
      return "a WebSocket handshake with an unsupported Sec-WebSocket-Version";
    case 501:
      if (h->err_status == 501 && h->parser.method == HTTP_CONNECT)
        return "CONNECT asks for a tunnel, and this is an origin server";
      return h->err_status == 501 ||
             llhttp_get_errno(&h->parser) == HPE_INVALID_TRANSFER_ENCODING
             ? "an unknown transfer coding" : "an unknown method";
  }
  if (!h->err_status && llhttp_get_errno(&h->parser) != HPE_OK &&
      llhttp_get_errno(&h->parser) != HPE_PAUSED) {
    const char *why = llhttp_get_error_reason(&h->parser);
    if (why != NULL && *why) {
      snprintf(buf, len, "%s", why);
      if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] += 32;
      return buf;
    }
  }
  return "a malformed request (its request line, Host or another header)";
}


/* The client's address as "host:port", or "a unix socket client". */
static void peer_name (owl_conn_t *c, char *out, size_t len) {
  struct sockaddr_storage a;
  char ip[64];
  int pipe = owl_conn_is_pipe(c);
  if (pipe || owl_conn_peername(c, &a) != 0) {
    snprintf(out, len, "%s", pipe ? "a unix socket client" : "a client gone");
    return;
  }
  if (a.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&a, ip, sizeof ip);
    snprintf(out, len, "[%s]:%d", ip, port_of(&a));
  }
  else {
    uv_ip4_name((struct sockaddr_in *)&a, ip, sizeof ip);
    snprintf(out, len, "%s:%d", ip, port_of(&a));
  }
}


/* The first bytes of the request as a quoted string, unprintable bytes as
** \xNN, up to the end of the first line. */
static void request_excerpt (h1_t *h, char *out, size_t len) {
  size_t k = 0;
  unsigned i = 0;
  while (i < h->line_len && (h->line[i] == '\r' || h->line[i] == '\n'))
    i++;
  for (; i < h->line_len && k + 5 < len; i++) {
    unsigned char ch = (unsigned char)h->line[i];
    if (ch == '\r' || ch == '\n')
      break;
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
      k += (size_t)snprintf(out + k, len - k, "\\x%02x", ch);
    else
      out[k++] = (char)ch;
  }
  out[k] = 0;
}


/* A TLS handshake failed (net/tls.c): a line per client, rate-limited as
** the refusals. */
static void tls_log (owl_transport_t *t, const char *msg) {
  char peer[80];
  if (!owl_log_refused_ok(OWL_LOG_INFO))
    return;
  peer_name(t->owner, peer, sizeof peer);
  owl_log(OWL_LOG_INFO, NULL, "TLS with %s failed: %s", peer, msg);
}


static void log_refused (h1_t *h, int status) {
  owl_conn_t *c = h->conn;
  int level = status >= 500 && status != 501 && status != 505 ? OWL_LOG_WARN : OWL_LOG_INFO;
  if (!owl_log_refused_ok(level))
    return;
  char peer[80], why[160], line[sizeof h->line * 4 + 8];
  const char *reason = refusal_reason(h, status, why, sizeof why);
  peer_name(c, peer, sizeof peer);
  request_excerpt(h, line, sizeof line);
  const char *q = line[0] ? " (request \"" : "", *qe = line[0] ? "\")" : "";
  if (h->req != NULL && OWL_SENT(h->req))
    owl_log(level, NULL, "cut the response to %s: %s%s%s%s", peer, reason, q, line, qe);
  else
    owl_log(level, NULL, "answered %d %s to %s: %s%s%s%s", status, owl_reason(status),
            peer, reason, q, line, qe);
}
/* }====== */


/* {====== answers made by the server */

/*
** Appends a complete response made by the server itself (errors, 100).
*/
void owl_h1_canned (owl_conn_t *c, int status, const char *extra,
                    const char *body, size_t blen, int close) {
  h1_t *h = H(c);
  char head[512];
  owl_server_t *s = h->srv;
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s%s"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n%s\r\n",
                   status, owl_reason(status), owl_http_date(NULL),
                   s->opt.server_name[0] ? "Server: " : "", s->opt.server_name,
                   s->opt.server_name[0] ? "\r\n" : "", extra ? extra : "", blen,
                   close ? "Connection: close\r\n" : "");
  if (h->head_req)
    blen = 0;                       /* the length is said, no body sent */
  if (owl_conn_insert(c, head, (size_t)n) || owl_conn_insert(c, body, blen))
    owl_conn_close_after(c);
  if (close)
    owl_conn_close_after(c);
}


/*
** Bad input or a limit: answer with status (unless the response already
** started: then just close) and close after writing.
*/
static void conn_fail (h1_t *h, int status) {
  owl_conn_t *c = h->conn;
  owl_req_t *r = h->req;
  log_refused(h, status);
  int err = status == 413 ? UV_E2BIG : status == 408 ? UV_ETIMEDOUT : UV_ECONNRESET;
  if (r != NULL) {
    int sent = OWL_SENT(r);
    owl_conn_drop_held(c);          /* drop what the app had buffered */
    h->req = NULL;
    owl_h1_req.detach(r, err);
    if (sent) {
      owl_conn_close_after(c);
      return;
    }
  }
  char body[64];
  int n = snprintf(body, sizeof body, "%d %s\n", status, owl_reason(status));
  owl_h1_canned(c, status, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL,
                body, (size_t)n, 1);
}
/* }====== */


/* {====== timers */

static void on_timer (owl_conn_t *c) {
  h1_t *h = H(c);
  if (h->deadline == 0)
    return;                         /* nothing is timed now */
  uint64_t now = uv_now(h->srv->loop);
  if (now < h->deadline) {          /* set later than the timer was */
    owl_conn_timer(c, h->deadline - now);
    return;
  }
  switch (h->timer_mode) {
    case T_HEAD:
      if (h->got_bytes && !owl_conn_closes_after(c)) {
        conn_fail(h, 408);
        conn_settle(h);
      }
      else
        owl_conn_close(c);
      break;
    case T_BODY:
      if (h->req && !h->req->body_done) {
        conn_fail(h, 408);
        conn_settle(h);
      }
      break;
    default:                        /* idle keep-alive */
      owl_conn_close(c);
  }
}


/*
** Times mode from now.  The timer is lazy: changing the deadline costs no
** timer operation unless the timer would fire too late; when it fires early
** (the deadline moved on, or nothing is timed any more) on_timer arms it
** again for what is left, or does nothing.  A keep-alive request thus costs
** no timer operation at all.
*/
static void set_timer (h1_t *h, int mode) {
  if (mode == h->timer_mode)
    return;
  h->timer_mode = mode;
  owl_options_t *o = &h->srv->opt;
  uint64_t ms = 0;
  switch (mode) {
    case T_HEAD: ms = o->header_timeout; break;
    case T_IDLE: ms = o->keepalive_timeout; break;
    case T_BODY: ms = o->body_timeout; break;
  }
  if (ms == 0) {
    h->deadline = 0;                /* a pending expiry finds nothing to do */
    return;
  }
  h->deadline = uv_now(h->srv->loop) + ms;
  if (owl_conn_timer_due(h->conn) > ms)
    owl_conn_timer(h->conn, ms);
}


/*
** After any event: flush, then decide what the connection waits for next.
*/
static void conn_settle (h1_t *h) {
  owl_conn_t *c = h->conn;
  if (owl_conn_closing(c) || owl_conn_lingering(c))
    return;
  owl_conn_flush(c);
  if (owl_conn_closing(c))
    return;
  owl_req_t *r = h->req;
  if (r == NULL) {
    if (owl_conn_closes_after(c) ||
        (h->srv->stopping && owl_conn_kept(c)->len == 0 && h->nreq > 0)) {
      if (owl_conn_pending(c) == 0)
        owl_conn_linger(c);
      return;
    }
    if (!h->got_bytes && owl_conn_kept(c)->len == 0 && owl_conn_pending(c) == 0) {
      owl_conn_trim(c);             /* an idle connection keeps no buffers */
      owl_buf_free(&h->head);
      owl_buf_free(&h->fields);
    }
    set_timer(h, h->got_bytes || h->nreq == 0 ? T_HEAD : T_IDLE);
  }
  else if (r->task.wait == OWL_WAIT_READ && !r->body_done)
    set_timer(h, T_BODY);
  else
    set_timer(h, T_NONE);
  update_reading(h);
}
/* }====== */


/* {====== what the request cycle asks of the connection */

void owl_h1_request_done (owl_conn_t *c, int keep) {
  h1_t *h = H(c);
  h->req = NULL;
  h->nreq++;
  h->got_bytes = 0;
  h->timer_mode = T_NONE;           /* let settle choose afresh */
  h->deadline = 0;
  if (!keep)
    owl_conn_close_after(c);
  if (!h->in_drive)
    h1_continue(h);
}


void owl_h1_continue (owl_conn_t *c) {
  h1_continue(H(c));
}


void owl_h1_resume_reading (owl_conn_t *c) {
  update_reading(H(c));
}



int owl_h1_keepalive (owl_conn_t *c) {
  return H(c)->keepalive;
}


void owl_h1_no_keepalive (owl_conn_t *c) {
  H(c)->keepalive = 0;
}


int owl_h1_method (owl_conn_t *c) {
  return llhttp_get_method(&H(c)->parser);
}


int owl_h1_minor (owl_conn_t *c) {
  return llhttp_get_http_minor(&H(c)->parser);
}


int owl_h1_upgrade (owl_conn_t *c) {
  return H(c)->upgrade;
}


size_t owl_h1_nfields (owl_conn_t *c) {
  return nfields(H(c));
}


const char *owl_h1_field (owl_conn_t *c, size_t i, size_t *len) {
  h1_t *h = H(c);
  size_t *f = field(h, i);
  *len = f[1];
  return h->head.base + f[0];
}


/*
** The request took the connection (a 101): the head is done with, the
** timer and keep-alive with it, and the next bytes are the new handler's.
*/
void owl_h1_upgraded (owl_conn_t *c) {
  h1_t *h = H(c);
  h->req = NULL;
  owl_buf_free(&h->head);
  owl_buf_free(&h->fields);
  h->keepalive = 0;
  h->deadline = 0;
  owl_conn_timer(c, 0);
  owl_conn_keep_open(c);
}


/* Graceful stop: idle connections can go; busy ones end after their answer. */
static int is_idle (owl_conn_t *c) {
  h1_t *h = H(c);
  return h->req == NULL && !h->got_bytes && owl_conn_pending(c) == 0;
}


static void on_stop (owl_conn_t *c) {
  H(c)->keepalive = 0;              /* idle ones: see the server's grace timer */
}
/* }====== */


static const owl_handler_t h1_handler = {
  on_read, on_eof, on_drain, on_timer, on_close, on_free, on_stop, is_idle
};


/*
** A new connection on s: fd >= 0 is a socket accepted by the caller (TCP),
** else it is taken from listener with uv_accept.
*/
static void conn_new (owl_server_t *s, uv_stream_t *listener, uv_os_sock_t fd,
                      owl_tls_ctx_t *tls) {
  owl_conn_t *c = owl_conn_new(s->loop, &s->conns, listener, fd, tls, sizeof(h1_t));
  if (c == NULL)
    return;
  if (settings.on_message_begin == NULL) {
    init_settings();
    owl_tls_log = tls_log;
  }
  h1_t *h = H(c);
  owl_conn_set_handler(c, &h1_handler, NULL);
  h->conn = c;
  h->srv = s;
  llhttp_init(&h->parser, HTTP_REQUEST, &settings);
  h->parser.data = h;
  h->in_head = 1;
  h->last = '\n';
  h->keepalive = 1;
  if (s->conns.n - s->conns.nlinger > s->opt.max_connections) {
    static const char busy[] = "503 Service Unavailable: too many connections\n";
    log_refused(h, 503);
    owl_h1_canned(c, 503, NULL, busy, sizeof busy - 1, 1);
  }
  else if (s->stopping)
    h->keepalive = 0;               /* taken from the queue at shutdown: one answer */
  conn_settle(h);
}


void owl_h1_accept (uv_stream_t *listener, owl_tls_ctx_t *tls) {
  conn_new(listener->data, listener, -1, tls);
}


void owl_h1_adopt (owl_server_t *s, uv_os_sock_t fd, owl_tls_ctx_t *tls) {
  conn_new(s, NULL, fd, tls);
}
