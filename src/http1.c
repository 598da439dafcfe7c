/*
** The connection: one socket, its llhttp parser, its timer and its output.
**
** Input.  Every read lands in the loop's one buffer (srv->rbuf) and is parsed
** at once.  The parser pauses at two points of every message: when the head
** is complete (the request is built, outside llhttp) and when the message is
** complete (the app starts, or the waiting reader is woken).  While a
** response is still being produced, input after the finished message is
** kept in c->in and reading stops: pipelined requests are answered in order
** and cost at most one read buffer.  The request body goes to req->body;
** reading stops while more than OWL_BODY_HIGH bytes of it are unread.
**
** Output.  Responses are framed into c->out; the bytes of a response whose
** headers are not serialized yet sit at its end (c->held) so that a small
** response gets a Content-Length.  Everything produced while handling one
** read is written with one uv_try_write; only what the kernel does not take
** is queued with uv_write (c->wbuf), with a uv_write_t malloc'd for it and
** freed in its callback (an idle connection holds none).
**
** llhttp 8.1 is lenient in ways RFC 9112 forbids; this file refuses what it
** lets through: bare LF and obs-fold in the head (scanhead), whitespace before
** the colon (tchar check), empty field names (the header-line states).
** Chunked request bodies go to chunked.c, which is strict where llhttp 8.1
** is not (extensions, the CRLF after chunk data, trailers).
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "owl.h"
#include "token.h"


enum { T_NONE, T_HEAD, T_IDLE, T_BODY, T_LINGER };

/* where the parser is within a header line */
enum { H_LINE, H_NAME, H_VALUE0, H_VALUE };

#define LINGER_MS 2000


static void conn_settle (owl_conn_t *c);
static void conn_fail (owl_conn_t *c, int status);
static void update_reading (owl_conn_t *c);


/* {====== fields of the head being parsed */

/* c->fields holds pairs (offset, length) into c->head: the target, then a
** name and a value for each header line. */
static size_t nfields (owl_conn_t *c) {
  return c->fields.len / (2 * sizeof(size_t));
}


static size_t *field (owl_conn_t *c, size_t i) {
  return (size_t *)c->fields.base + 2 * i;
}


static int field_new (owl_conn_t *c) {
  size_t f[2] = { c->head.len, 0 };
  return owl_buf_append(&c->fields, f, sizeof f);
}


static int field_add (owl_conn_t *c, const char *at, size_t n, int lower) {
  size_t start = c->head.len;
  if (owl_buf_append(&c->head, at, n))
    return -1;
  if (lower) {
    char *p = c->head.base + start;
    for (size_t i = 0; i < n; i++)
      if (p[i] >= 'A' && p[i] <= 'Z')
        p[i] += 32;
  }
  field(c, nfields(c) - 1)[1] += n;
  return 0;
}


/* Is field i (a lowercase name) equal to the literal s? */
static int field_is (owl_conn_t *c, size_t i, const char *s, size_t n) {
  size_t *f = field(c, i);
  return f[1] == n && memcmp(c->head.base + f[0], s, n) == 0;
}
/* }====== */


/* {====== llhttp callbacks: they only collect request state */

#define CONN(p) ((owl_conn_t *)(p)->data)

static int refuse (owl_conn_t *c, int status) {
  c->err_status = status;
  return -1;
}


static int count_head (owl_conn_t *c, size_t n) {
  c->head_bytes += n;
  return c->head_bytes > c->srv->opt.max_header_bytes;
}


static int on_message_begin (llhttp_t *p) {
  owl_conn_t *c = CONN(p);
  c->head.len = 0;
  c->fields.len = 0;
  c->head_bytes = 0;
  c->nhost = 0;
  c->hstate = H_LINE;
  c->head_req = 0;
  c->proto_seen = 0;
  return 0;
}


static int on_method_complete (llhttp_t *p) {
  CONN(p)->head_req = llhttp_get_method(p) == HTTP_HEAD;
  return 0;
}


/*
** The first piece of the version: the 3 bytes before it must be "TP/" of
** "HTTP/" (RFC 9112 2.3).  llhttp 8.1 also takes "RTSP/" and "ICE/" in a
** request line; those are not HTTP.  The bytes may have come in an earlier
** read: c->tail keeps the last 3.
*/
static int on_version (llhttp_t *p, const char *at, size_t n) {
  owl_conn_t *c = CONN(p);
  char w[3];
  (void)n;
  if (c->proto_seen)
    return 0;
  c->proto_seen = 1;
  size_t before = (size_t)(at - c->exec_at);    /* this read's bytes before at */
  for (size_t back = 3; back >= 1; back--)
    w[3 - back] = back <= before ? at[-(ptrdiff_t)back] : c->tail[3 - (back - before)];
  return memcmp(w, "TP/", 3) == 0 ? 0 : refuse(c, 400);
}


static int on_url (llhttp_t *p, const char *at, size_t n) {
  owl_conn_t *c = CONN(p);
  if (nfields(c) == 0 && field_new(c))
    return refuse(c, 500);
  if (field(c, 0)[1] + n > c->srv->opt.max_target)
    return refuse(c, 414);
  for (size_t i = 0; i < n; i++)    /* RFC 3986: other bytes are %-encoded */
    if ((unsigned char)at[i] <= ' ' || (unsigned char)at[i] >= 0x7f)
      return refuse(c, 400);
  if (count_head(c, n))
    return refuse(c, 431);
  return field_add(c, at, n, 0) ? refuse(c, 500) : 0;
}


static int on_header_field (llhttp_t *p, const char *at, size_t n) {
  owl_conn_t *c = CONN(p);
  if (c->hstate == H_LINE) {        /* a new header line */
    if ((nfields(c) - 1) / 2 >= c->srv->opt.max_headers)
      return refuse(c, 431);
    if (field_new(c))
      return refuse(c, 500);
    c->hstate = H_NAME;
  }
  else if (c->hstate != H_NAME)
    return refuse(c, 400);
  for (size_t i = 0; i < n; i++)
    if (!owl_istchar((unsigned char)at[i]))
      return refuse(c, 400);        /* e.g. "Host : x" */
  if (count_head(c, n))
    return refuse(c, 431);
  return field_add(c, at, n, 1) ? refuse(c, 500) : 0;
}


static int on_header_field_complete (llhttp_t *p) {
  owl_conn_t *c = CONN(p);
  if (c->hstate != H_NAME || field(c, nfields(c) - 1)[1] == 0)
    return refuse(c, 400);          /* ": value" has no name */
  c->hstate = H_VALUE0;
  return 0;
}


static int on_header_value (llhttp_t *p, const char *at, size_t n) {
  owl_conn_t *c = CONN(p);
  if (c->hstate == H_VALUE0) {
    if (field_new(c))
      return refuse(c, 500);
    c->hstate = H_VALUE;
  }
  else if (c->hstate != H_VALUE)
    return refuse(c, 400);          /* a value with no name: obs-fold */
  if (count_head(c, n))
    return refuse(c, 431);
  return field_add(c, at, n, 0) ? refuse(c, 500) : 0;
}


static int on_header_value_complete (llhttp_t *p) {
  owl_conn_t *c = CONN(p);
  if (c->hstate == H_VALUE0 && field_new(c))
    return refuse(c, 500);          /* an empty value */
  else if (c->hstate == H_LINE || c->hstate == H_NAME)
    return refuse(c, 400);
  size_t *f = field(c, nfields(c) - 1);
  const char *v = c->head.base + f[0];
  while (f[1] > 0 && (v[f[1] - 1] == ' ' || v[f[1] - 1] == '\t'))
    f[1]--;                         /* RFC 9110 5.5: no trailing OWS */
  c->hstate = H_LINE;
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
static int check_te (owl_conn_t *c, size_t i, int *nchunked) {
  size_t *f = field(c, i);
  const char *s = c->head.base + f[0], *e = s + f[1];
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
static const char *field_value (owl_conn_t *c, const char *lname, size_t *len,
                                owl_buf_t *b) {
  size_t n = nfields(c), ln = strlen(lname);
  b->len = 0;
  for (size_t i = 1; i + 1 < n; i += 2) {
    if (!field_is(c, i, lname, ln))
      continue;
    size_t *f = field(c, i + 1);
    if ((b->len > 0 && owl_buf_append(b, ",", 1)) ||
        owl_buf_append(b, c->head.base + f[0], f[1]))
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
static int check_upgrade (owl_conn_t *c, llhttp_t *p) {
  owl_buf_t b = { NULL, 0, 0 };
  size_t n;
  int up = 0;
  const char *v = field_value(c, "connection", &n, &b);
  if (v == NULL || !owl_list_has(v, n, "upgrade", 7))
    goto done;
  if ((v = field_value(c, "upgrade", &n, &b)) == NULL)
    goto done;
  up = 1;
  if (!owl_list_has(v, n, "websocket", 9) || p->method != HTTP_GET || p->http_minor != 1)
    goto done;
  v = field_value(c, "sec-websocket-version", &n, &b);
  if (v == NULL)
    goto done;
  if (n != 2 || memcmp(v, "13", 2) != 0) {
    up = -426;
    goto done;
  }
  v = field_value(c, "sec-websocket-key", &n, &b);
  if (v != NULL && owl_ws_key_valid(v, n))
    up = 2;
done:
  owl_buf_free(&b);
  return up;
}


static int on_headers_complete (llhttp_t *p) {
  owl_conn_t *c = CONN(p);
  owl_options_t *o = &c->srv->opt;
  size_t n = nfields(c);
  int nhost = 0, nchunked = 0, te = 0, close = 0, keep = 0;
  if (n == 0)
    return refuse(c, 400);
  if (p->http_major != 1)
    return refuse(c, 505);
  if (p->method == HTTP_CONNECT)
    return refuse(c, 501);          /* no tunnels: this is an origin server */
  for (size_t i = 1; i + 1 < n; i += 2) {
    if (field_is(c, i, "connection", 10)) {
      size_t *f = field(c, i + 1);
      close |= owl_list_has(c->head.base + f[0], f[1], "close", 5);
      keep |= owl_list_has(c->head.base + f[0], f[1], "keep-alive", 10);
    }
    else if (field_is(c, i, "host", 4)) {
      size_t *f = field(c, i + 1);
      if (check_host(c->head.base + f[0], f[1]))
        return refuse(c, 400);
      nhost++;
    }
    else if (field_is(c, i, "transfer-encoding", 17)) {
      int st = check_te(c, i + 1, &nchunked);
      if (st)
        return refuse(c, st);
      te = 1;
    }
  }
  if (nhost > 1 || (p->http_minor == 1 && nhost == 0))
    return refuse(c, 400);
  if (te && (nchunked != 1 || p->http_minor == 0))
    return refuse(c, 400);
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
    return refuse(c, 413);
  int up = check_upgrade(c, p);
  if (up < 0)
    return refuse(c, -up);
  c->upgrade = (unsigned)up;
  p->upgrade = 0;                   /* llhttp must not switch: the app decides */
  if (p->flags & F_CHUNKED) {
    p->flags |= F_SKIPBODY;         /* chunked.c decodes the body */
    c->want_chunked = 1;
  }
  c->head_ready = 1;
  return HPE_PAUSED;
}


/* A span of request body, from llhttp or from chunked.c. */
static int body_data (owl_conn_t *c, const char *at, size_t n) {
  owl_req_t *r = c->req;
  uint64_t max = c->srv->opt.max_body;
  c->body_in += n;
  if (max && c->body_in > max)
    return refuse(c, 413);
  if (r != NULL && !r->finished) {
    if (owl_buf_append(&r->body, at, n))
      return refuse(c, 500);
    if (c->timer_mode == T_BODY)    /* progress: the idle timeout starts over */
      c->deadline = uv_now(c->srv->loop) + c->srv->opt.body_timeout;
  }
  return 0;
}


static int on_chunk_data (void *ud, const char *at, size_t n) {
  return body_data(ud, at, n);
}


static int on_body (llhttp_t *p, const char *at, size_t n) {
  return body_data(CONN(p), at, n);
}


static int on_message_complete (llhttp_t *p) {
  owl_conn_t *c = CONN(p);
  if (c->want_chunked) {            /* llhttp skipped the body: decode it */
    c->want_chunked = 0;
    c->in_chunked = 1;
    owl_chunked_init(&c->chunked, c->srv->opt.max_header_bytes);
  }
  else
    c->msg_done = 1;
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
** malformed is 400.  c->line holds the first bytes of the message; the
** version is found from the error position within [p, end).
*/
static int error_status (owl_conn_t *c, llhttp_errno_t err, const char *p,
                         const char *end) {
  if (c->err_status)
    return c->err_status;
  if (err == HPE_INVALID_TRANSFER_ENCODING)
    return 501;
  /* llhttp's error for an RTSP method (ANNOUNCE, ...) before "HTTP/": to
  ** HTTP it is a well-formed method this server does not implement */
  const char *why = llhttp_get_error_reason(&c->parser);
  if (err == HPE_INVALID_METHOD ||
      (err == HPE_INVALID_CONSTANT && why != NULL &&
       strcmp(why, "Invalid method for HTTP/x.x request") == 0)) {
    const char *s = c->line, *e = s + c->line_len;
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
    const char *at = llhttp_get_error_pos(&c->parser);
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
** differently), nor start a line with SP or HTAB (obs-fold).  c->last is
** the byte before p.
*/
static int scanhead (owl_conn_t *c, const char *p, size_t n) {
  if (n == 0)
    return 0;
  if (c->last == '\r' && p[0] != '\n')
    return -1;
  if (c->last == '\n' && (p[0] == ' ' || p[0] == '\t'))
    return -1;
  const char *e = p + n, *lf = p, *cr = p;
  while ((lf = memchr(lf, '\n', (size_t)(e - lf))) != NULL) {
    if ((lf == p ? c->last : (unsigned char)lf[-1]) != '\r')
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
  c->last = (unsigned char)e[-1];
  return 0;
}


/*
** Runs llhttp over p[0..n) until it ends or pauses; returns the bytes it
** took, or -1 after failing the connection.  *again is set when the parser
** must run once more even without bytes (a head just completed).
*/
static long parse_http (owl_conn_t *c, const char *p, size_t n, int *again) {
  int in_head = c->in_head;
  if (in_head && c->line_len < sizeof c->line) {
    size_t k = sizeof c->line - c->line_len;
    if (k > n)
      k = n;
    memcpy(c->line + c->line_len, p, k);
    c->line_len += (unsigned char)k;
  }
  c->exec_at = p;
  llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
  size_t used = n;
  if (err == HPE_PAUSED) {
    used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
    llhttp_resume(&c->parser);
  }
  else if (err != HPE_OK) {
    conn_fail(c, error_status(c, err, p, p + n));
    return -1;
  }
  if (in_head && scanhead(c, p, used)) {
    conn_fail(c, 400);
    return -1;
  }
  if (in_head)                      /* for on_version in the next read */
    for (size_t i = used < 3 ? 0 : used - 3; i < used; i++) {
      c->tail[0] = c->tail[1];
      c->tail[1] = c->tail[2];
      c->tail[2] = p[i];
    }
  if (c->head_ready) {
    c->head_ready = 0;
    *again = 1;                     /* a message without body ends here */
    c->in_head = 0;
    c->body_in = 0;
    if (owl_req_begin(c)) {
      conn_fail(c, 500);
      return -1;
    }
  }
  return (long)used;
}


/* Runs chunked.c over p[0..n); as parse_http. */
static long parse_chunked (owl_conn_t *c, const char *p, size_t n) {
  long used = owl_chunked_decode(&c->chunked, p, n, on_chunk_data, c);
  if (used < 0) {
    conn_fail(c, c->err_status ? c->err_status : 400);
    return -1;
  }
  if (owl_chunked_done(&c->chunked)) {
    c->in_chunked = 0;
    c->msg_done = 1;
  }
  return used;
}


/*
** Parses input for as long as no response is pending, building requests and
** starting or waking their apps.  Returns the bytes consumed, or -1 after the
** connection failed (the caller keeps nothing).
*/
static long conn_feed (owl_conn_t *c, const char *p, size_t n) {
  const char *start = p;
  int again = 0;                    /* run llhttp once more, even on no bytes */
  while ((n > 0 || again) && !c->closing) {
    owl_req_t *r = c->req;
    if (c->ws != NULL) {            /* the app answered 101: the rest is its */
      owl_wsock_on_read(c->ws, (char *)p, n);
      p += n;
      n = 0;
      break;
    }
    if (r != NULL && r->body_done)
      break;                        /* pipelined input waits for the response */
    if (c->close_after) {           /* nothing more is read on this one */
      p += n;
      n = 0;
      break;
    }
    again = 0;
    long used = c->in_chunked ? parse_chunked(c, p, n) : parse_http(c, p, n, &again);
    if (used < 0)
      return -1;
    if (used > 0)
      c->got_bytes = 1;
    p += used;
    n -= (size_t)used;
    if (c->msg_done) {
      c->msg_done = 0;
      c->in_head = 1;
      c->last = '\n';
      c->line_len = 0;
      r = c->req;
      if (r == NULL)                /* the app answered before the body ended */
        continue;
      r->body_done = 1;
      if (!r->started)
        owl_req_start(r);
      else
        owl_req_wake_reader(r);
    }
  }
  if (c->req && !c->req->started && !c->closing)
    owl_req_start(c->req);          /* the body is still on its way */
  else if (c->req && c->req->task.wait == OWL_WAIT_READ)
    owl_req_wake_reader(c->req);
  return (long)(p - start);
}


/* Parses what c->in holds, once the response that held it back is done. */
void owl_conn_continue (owl_conn_t *c) {
  if (c->closing || c->in_drive)
    return;
  c->in_drive = 1;
  if (c->in.len > 0) {
    long used = conn_feed(c, c->in.base, c->in.len);
    if (used > 0 && !c->closing)
      owl_buf_consume(&c->in, (size_t)used);
  }
  c->in_drive = 0;
  conn_settle(c);
}
/* }====== */


/* {====== reading */

void owl_conn_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf) {
  owl_conn_t *c = h->data;
  (void)size;
  buf->base = c->srv->rbuf;
  buf->len = sizeof c->srv->rbuf;
}


void owl_conn_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  owl_conn_t *c = s->data;
  if (nread == 0)
    return;
  if (c->ws != NULL) {              /* after a 101 */
    if (nread < 0)
      owl_conn_close(c);
    else
      owl_wsock_on_read(c->ws, buf->base, (size_t)nread);
    return;
  }
  if (nread < 0) {
    /* A client that leaves while its request runs cancels it (as nginx's
    ** lua_check_client_abort and uvicorn do); output already produced for
    ** a finished request is still written before closing. */
    if (c->req == NULL && !c->lingering && nread == UV_EOF && owl_conn_pending(c) > 0) {
      c->close_after = 1;
      update_reading(c);
    }
    else
      owl_conn_close(c);
    return;
  }
  if (c->lingering)
    return;                         /* discarded: we are closing */
  if (c->req == NULL && c->timer_mode == T_IDLE) {
    c->timer_mode = T_NONE;         /* a new request: the head timeout runs */
    c->deadline = 0;
  }
  c->in_drive = 1;
  if (c->in.len > 0) {              /* not expected: reading stops while paused */
    if (owl_buf_append(&c->in, buf->base, (size_t)nread)) {
      c->in_drive = 0;
      owl_conn_close(c);
      return;
    }
    long used = conn_feed(c, c->in.base, c->in.len);
    if (used > 0 && !c->closing)
      owl_buf_consume(&c->in, (size_t)used);
  }
  else {
    long used = conn_feed(c, buf->base, (size_t)nread);
    if (used >= 0 && (size_t)used < (size_t)nread && !c->closing &&
        owl_buf_append(&c->in, buf->base + used, (size_t)nread - (size_t)used)) {
      c->in_drive = 0;
      owl_conn_close(c);
      return;
    }
  }
  c->in_drive = 0;
  conn_settle(c);
}


static void update_reading (owl_conn_t *c) {
  owl_req_t *r = c->req;
  int want;
  if (c->closing)
    return;
  if (c->lingering)
    want = 1;
  else if (c->close_after || c->in.len > 0)
    want = 0;
  else if (r == NULL || r->body_done)
    want = 1;                       /* next request, or notice a client leaving */
  else
    want = r->read_all || r->body.len < OWL_BODY_HIGH;
  if (want && !c->reading) {
    if (uv_read_start(&c->h.stream, owl_conn_alloc, owl_conn_read) == 0)
      c->reading = 1;
  }
  else if (!want && c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
}


void owl_conn_resume_reading (owl_conn_t *c) {
  update_reading(c);
}
/* }====== */


/* {====== writing */

size_t owl_conn_pending (owl_conn_t *c) {
  return c->out.len + (c->writing ? c->wbuf.len - c->woff : 0);
}


static void on_write (uv_write_t *w, int status) {
  owl_conn_t *c = w->data;
  free(w);
  c->writing = 0;
  c->wbuf.len = 0;
  c->woff = 0;
  if (c->closing)
    return;
  if (status < 0) {
    owl_conn_close(c);
    return;
  }
  owl_conn_flush(c);
  if (c->ws != NULL) {
    if (owl_conn_pending(c) <= OWL_OUT_LOW)
      owl_wsock_wake(c->ws);
    owl_wsock_settle(c->ws);
  }
  else if (c->req && c->req->task.wait == OWL_WAIT_DRAIN && owl_conn_pending(c) <= OWL_OUT_LOW)
    owl_req_wake_writer(c->req);
  else
    conn_settle(c);
}


/*
** Writes the bytes of c->out that are not held back: uv_try_write first,
** uv_write for what the kernel did not take.
*/
void owl_conn_flush (owl_conn_t *c) {
  if (c->closing || c->writing)
    return;
  size_t n = c->out.len - c->held;
  if (n == 0)
    return;
  uv_buf_t b = uv_buf_init(c->out.base, (unsigned int)n);
  int w = uv_try_write(&c->h.stream, &b, 1);
  if (w == UV_EAGAIN || w == UV_ENOSYS)
    w = 0;
  if (w < 0) {
    owl_conn_close(c);
    return;
  }
  if ((size_t)w == n) {
    owl_buf_consume(&c->out, n);
    return;
  }
  if (c->held == 0) {               /* hand the whole buffer over: no copy */
    owl_buf_t t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    c->woff = (size_t)w;
  }
  else {
    c->wbuf.len = 0;
    if (owl_buf_append(&c->wbuf, c->out.base + w, n - (size_t)w)) {
      owl_conn_close(c);
      return;
    }
    owl_buf_consume(&c->out, n);
    c->woff = 0;
  }
  b = uv_buf_init(c->wbuf.base + c->woff, (unsigned int)(c->wbuf.len - c->woff));
  uv_write_t *wr = malloc(sizeof *wr);      /* freed in on_write */
  if (wr == NULL) {
    owl_conn_close(c);
    return;
  }
  wr->data = c;
  if (uv_write(wr, &c->h.stream, &b, 1, on_write)) {
    free(wr);
    owl_conn_close(c);
    return;
  }
  c->writing = 1;
}


/*
** Appends p[0..n) to c->out, writing first straight from p as much as the
** kernel takes in one writev behind what c->out already holds: a large body
** piece is then copied only for the part the socket could not take.  Keeps
** the order of the output; does nothing new while a write is in flight or
** bytes are held.  Returns 0 or UV_ENOMEM.
*/
int owl_conn_write_through (owl_conn_t *c, const char *p, size_t n) {
  if (!c->closing && !c->writing && c->held == 0 && n <= UINT32_MAX &&
      c->out.len <= UINT32_MAX) {
    uv_buf_t b[2];
    int nb = 0;
    if (c->out.len > 0)
      b[nb++] = uv_buf_init(c->out.base, (unsigned int)c->out.len);
    b[nb++] = uv_buf_init((char *)p, (unsigned int)n);
    int w = uv_try_write(&c->h.stream, b, (unsigned int)nb);
    if (w > 0) {                    /* errors: the next flush meets them */
      size_t k = (size_t)w;
      if (k < c->out.len)
        owl_buf_consume(&c->out, k);
      else {
        k -= c->out.len;
        c->out.len = 0;
        p += k;
        n -= k;
      }
    }
  }
  return n > 0 ? owl_buf_append(&c->out, p, n) : 0;
}


/* Puts n bytes (a status line and headers) before the held body. */
int owl_conn_unhold (owl_conn_t *c, const char *head, size_t n) {
  int err = owl_buf_insert(&c->out, c->out.len - c->held, head, n);
  c->held = 0;
  return err;
}


/*
** Appends a complete response made by the server itself (errors, 100).
*/
void owl_conn_canned (owl_conn_t *c, int status, const char *extra,
                      const char *body, size_t blen, int close) {
  char head[512];
  owl_server_t *s = c->srv;
  owl_server_date(s);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s%s"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n%s\r\n",
                   status, owl_reason(status), s->date,
                   s->opt.server_name[0] ? "Server: " : "", s->opt.server_name,
                   s->opt.server_name[0] ? "\r\n" : "", extra ? extra : "", blen,
                   close ? "Connection: close\r\n" : "");
  if (c->head_req)
    blen = 0;                       /* the length is said, no body sent */
  if (owl_buf_insert(&c->out, c->out.len - c->held, head, (size_t)n) ||
      owl_buf_insert(&c->out, c->out.len - c->held, body, blen))
    c->close_after = 1;
  if (close)
    c->close_after = 1;
}


/*
** Bad input or a limit: answer with status (unless the response already
** started: then just close) and close after writing.
*/
static void conn_fail (owl_conn_t *c, int status) {
  owl_req_t *r = c->req;
  owl_server_refused(c, status);    /* logged (server.c) */
  int err = status == 413 ? UV_E2BIG : status == 408 ? UV_ETIMEDOUT : UV_ECONNRESET;
  if (r != NULL) {
    int wire = r->wire;
    c->out.len -= c->held;          /* drop what the app had buffered */
    c->held = 0;
    c->req = NULL;
    owl_req_detach(r, err);
    if (wire) {
      c->close_after = 1;
      return;
    }
  }
  char body[64];
  int n = snprintf(body, sizeof body, "%d %s\n", status, owl_reason(status));
  owl_conn_canned(c, status, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL,
                  body, (size_t)n, 1);
}
/* }====== */


/* {====== timers and closing */

static void on_close (uv_handle_t *h) {
  owl_conn_t *c = h->data;
  if (--c->nhandles > 0)
    return;
  owl_server_t *s = c->srv;
  if (c->lingering)
    s->nlinger--;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  owl_buf_free(&c->in);
  owl_buf_free(&c->out);
  owl_buf_free(&c->wbuf);
  owl_buf_free(&c->head);
  owl_buf_free(&c->fields);
  free(c);
  s->nconns--;
  owl_server_conn_gone(s);
}


/* Closes now; a request in flight is detached and its CallCancelled fires. */
void owl_conn_close (owl_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close(&c->h.handle, on_close);
  uv_close((uv_handle_t *)&c->timer, on_close);
  if (c->req != NULL) {
    owl_req_t *r = c->req;
    c->req = NULL;
    owl_req_detach(r, UV_ECONNRESET);
  }
  if (c->ws != NULL)
    owl_wsock_detach(c->ws);
}


void owl_conn_timer (uv_timer_t *t) {
  owl_conn_t *c = t->data;
  if (c->ws != NULL) {
    owl_wsock_on_timer(c->ws);
    return;
  }
  if (c->deadline == 0)
    return;                         /* nothing is timed now */
  uint64_t now = uv_now(c->srv->loop);
  if (now < c->deadline) {          /* set later than the timer was */
    uv_timer_start(t, owl_conn_timer, c->deadline - now, 0);
    return;
  }
  switch (c->timer_mode) {
    case T_HEAD:
      if (c->got_bytes && !c->close_after) {
        conn_fail(c, 408);
        conn_settle(c);
      }
      else
        owl_conn_close(c);
      break;
    case T_BODY:
      if (c->req && !c->req->body_done) {
        conn_fail(c, 408);
        conn_settle(c);
      }
      break;
    default:                        /* idle keep-alive, linger */
      owl_conn_close(c);
  }
}


/*
** Times mode from now.  The timer is lazy: changing the deadline costs no
** timer operation unless the timer would fire too late; when it fires early
** (the deadline moved on, or nothing is timed any more) owl_conn_timer arms
** it again for what is left, or does nothing.  A keep-alive request thus
** costs no timer operation at all.
*/
static void set_timer (owl_conn_t *c, int mode) {
  if (mode == c->timer_mode)
    return;
  c->timer_mode = mode;
  owl_options_t *o = &c->srv->opt;
  uint64_t ms = 0;
  switch (mode) {
    case T_HEAD: ms = o->header_timeout; break;
    case T_IDLE: ms = o->keepalive_timeout; break;
    case T_BODY: ms = o->body_timeout; break;
    case T_LINGER: ms = LINGER_MS; break;
  }
  if (ms == 0) {
    c->deadline = 0;                /* a pending expiry finds nothing to do */
    return;
  }
  c->deadline = uv_now(c->srv->loop) + ms;
  if (!uv_is_active((uv_handle_t *)&c->timer) || uv_timer_get_due_in(&c->timer) > ms)
    uv_timer_start(&c->timer, owl_conn_timer, ms, 0);
}


static void on_shutdown (uv_shutdown_t *sr, int status) {
  owl_conn_t *c = sr->data;
  free(sr);
  if (status < 0)
    owl_conn_close(c);
}


/* All written and nothing more to say: send FIN, drain input for a while. */
static void conn_linger (owl_conn_t *c) {
  uv_shutdown_t *sr = malloc(sizeof *sr);
  c->lingering = 1;
  c->srv->nlinger++;                /* not counted against --max-connections */
  if (sr == NULL) {
    owl_conn_close(c);
    return;
  }
  sr->data = c;
  if (uv_shutdown(sr, &c->h.stream, on_shutdown)) {
    free(sr);
    owl_conn_close(c);
    return;
  }
  set_timer(c, T_LINGER);
  update_reading(c);
}


/*
** After any event: flush, then decide what the connection waits for next.
*/
static void conn_settle (owl_conn_t *c) {
  if (c->closing || c->lingering)
    return;
  if (c->ws != NULL) {
    owl_wsock_settle(c->ws);
    return;
  }
  owl_conn_flush(c);
  if (c->closing)
    return;
  owl_req_t *r = c->req;
  if (r == NULL) {
    if (c->close_after || (c->srv->stopping && c->in.len == 0 && c->nreq > 0)) {
      if (!c->writing && c->out.len == 0)
        conn_linger(c);
      return;
    }
    if (!c->got_bytes && c->in.len == 0 && !c->writing && c->out.len == 0) {
      owl_buf_free(&c->out);        /* an idle connection keeps no buffers */
      owl_buf_free(&c->wbuf);
      owl_buf_free(&c->head);
      owl_buf_free(&c->fields);
      owl_buf_free(&c->in);
    }
    set_timer(c, c->got_bytes || c->nreq == 0 ? T_HEAD : T_IDLE);
  }
  else if (r->task.wait == OWL_WAIT_READ && !r->body_done)
    set_timer(c, T_BODY);
  else
    set_timer(c, T_NONE);
  update_reading(c);
}


void owl_conn_request_done (owl_conn_t *c, int keep) {
  c->nreq++;
  c->got_bytes = 0;
  c->timer_mode = T_NONE;           /* let settle choose afresh */
  c->deadline = 0;
  if (!keep)
    c->close_after = 1;
  if (!c->in_drive)
    owl_conn_continue(c);
}
/* }====== */


/*
** A new connection on s: fd >= 0 is a socket accepted by the caller (TCP),
** else it is taken from listener with uv_accept.
*/
static void conn_new (owl_server_t *s, uv_stream_t *listener, uv_os_sock_t fd) {
  owl_conn_t *c = calloc(1, sizeof *c);
  int pipe = listener != NULL && listener->type == UV_NAMED_PIPE;
  if (c == NULL) {
    if (fd >= 0)
      close(fd);
    return;
  }
  if (settings.on_message_begin == NULL)
    init_settings();
  c->srv = s;
  c->is_pipe = pipe;
  if (pipe)
    uv_pipe_init(s->loop, &c->h.pipe, 0);
  else
    uv_tcp_init(s->loop, &c->h.tcp);
  c->h.handle.data = c;
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 2;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (fd >= 0 ? uv_tcp_open(&c->h.tcp, fd) : uv_accept(listener, &c->h.stream)) {
    if (fd >= 0)
      close(fd);
    owl_conn_close(c);
    return;
  }
  if (!pipe)
    uv_tcp_nodelay(&c->h.tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->in_head = 1;
  c->last = '\n';
  c->keepalive = 1;
  if (s->nconns - s->nlinger > s->opt.max_connections) {
    static const char busy[] = "503 Service Unavailable: too many connections\n";
    owl_server_refused(c, 503);
    owl_conn_canned(c, 503, NULL, busy, sizeof busy - 1, 1);
  }
  else if (s->stopping)
    c->keepalive = 0;               /* taken from the queue at shutdown: one answer */
  conn_settle(c);
}


void owl_conn_accept (uv_stream_t *listener) {
  conn_new(listener->data, listener, -1);
}


void owl_conn_adopt (owl_server_t *s, uv_os_sock_t fd) {
  conn_new(s, NULL, fd);
}
