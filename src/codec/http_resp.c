/*
** The client's HTTP/1.1 response parser (http_resp.h): llhttp reads the
** status line and the header section, this file frames the body.
**
** llhttp runs on the head only.  Its callbacks record the reason and the
** header fields (names lowercased, values trimmed) and check what llhttp
** 8.1 lets through; on_headers_complete pauses it, and the rest is ours:
** the checks of the status line and of the framing fields, the 1xx interim
** responses (llhttp is reset for the next head), and the body.  A body of
** Content-Length or until-close bytes is passed through as it comes, a
** chunked one goes through chunked.c, which is strict where llhttp 8.1 is
** not (extensions, the CRLF after chunk data, trailers).
**
** While a head is parsed, llhttp is given at most the bytes left under
** max_header_bytes, so the limit holds whatever the read sizes are.
** scanhead refuses a bare CR, a bare LF and obs-fold in what llhttp took.
** When llhttp or a callback refuses the head, the bytes before the refused
** one are scanned first: the first fault in the stream is the one
** reported, however it was split into reads (fuzz/http_resp.c holds the
** parser to that, message included).
*/

#include <stdio.h>
#include <string.h>

#include "codec/http_resp.h"
#include "codec/token.h"


enum { S_HEAD, S_BODY, S_DONE, S_FAILED };

/* where llhttp is: the status line, then within a header line */
enum { H_START, H_LINE, H_NAME, H_VALUE0, H_VALUE };

#define RP(p) ((owl_resp_t *)(p)->data)

static llhttp_settings_t settings;


/* {====== failures */

/*
** Records the failure: every later call returns code.  why is a static
** string, or r->msg.
*/
static long fail (owl_resp_t *r, long code, const char *why) {
  r->state = S_FAILED;
  r->err = code;
  r->why = why;
  return code;
}


/*
** A callback refuses the head: llhttp stops, parse_head reports why.  at
** is the byte at fault when there is one (in the read being parsed), so
** that a bare CR or LF before it is reported instead, and one after it is
** not: the first fault in the stream wins, however it was split.
*/
static int refuse_at (owl_resp_t *r, long code, const char *why, const char *at) {
  if (r->err == 0) {            /* the first refusal decides */
    r->err = code;
    r->why = why;
    r->fault = at;
  }
  return -1;
}


static int refuse (owl_resp_t *r, long code, const char *why) {
  return refuse_at(r, code, why, NULL);
}


/*
** The message for an llhttp error.  The reasons llhttp gives for the
** framing fields are worded here; others are llhttp's own, copied to r->msg
** with the first letter lowercased.
*/
static const char *llhttp_why (owl_resp_t *r, llhttp_errno_t e) {
  const char *reason = llhttp_get_error_reason(&r->parser);
  switch (e) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
      return reason != NULL && strstr(reason, "Transfer-Encoding") != NULL
             ? "invalid response: Content-Length together with Transfer-Encoding"
             : "invalid response: Content-Length given twice";
    case HPE_INVALID_CONTENT_LENGTH:
      return "invalid response: invalid Content-Length";
    case HPE_INVALID_HEADER_TOKEN:     /* a name, or a line with no colon */
      return reason != NULL && strstr(reason, "value") != NULL
             ? "invalid response: invalid character in a header value"
             : "invalid response: invalid header name";
    case HPE_INVALID_CONSTANT:
    case HPE_INVALID_STATUS:
      return "invalid response: not an HTTP/1.x status line";
    case HPE_INVALID_VERSION:
      return "invalid response: HTTP version is not 1.0 or 1.1";
    case HPE_CR_EXPECTED:               /* an LF with no CR before it */
      return "invalid response: bare LF in the head";
    case HPE_LF_EXPECTED:               /* a CR with no LF after it */
      return "invalid response: bare CR in the head";
    default:
      break;
  }
  snprintf(r->msg, sizeof r->msg, "invalid response: %s",
           reason != NULL && *reason ? reason : "malformed head");
  char *c = r->msg + sizeof "invalid response: " - 1;
  if (*c >= 'A' && *c <= 'Z' && c[1] >= 'a' && c[1] <= 'z')
    *c += 32;
  return r->msg;
}
/* }====== */


/* {====== the fields of the head being parsed */

/* r->fields holds pairs (offset, length) into r->head: the reason, then a
** name and a value for each header line. */
static size_t nfields (const owl_resp_t *r) {
  return r->fields.len / (2 * sizeof(size_t));
}


static size_t *field (const owl_resp_t *r, size_t i) {
  return (size_t *)r->fields.base + 2 * i;
}


static int field_new (owl_resp_t *r) {
  size_t f[2] = { r->head.len, 0 };
  return owl_buf_append(&r->fields, f, sizeof f);
}


static int field_add (owl_resp_t *r, const char *at, size_t n, int lower) {
  size_t start = r->head.len;
  if (n == 0)
    return 0;
  if (owl_buf_append(&r->head, at, n))
    return -1;
  if (lower) {
    char *p = r->head.base + start;
    for (size_t i = 0; i < n; i++)
      if (p[i] >= 'A' && p[i] <= 'Z')
        p[i] += 32;
  }
  field(r, nfields(r) - 1)[1] += n;
  return 0;
}


/* Is field i (a lowercase name) equal to the literal s? */
static int field_is (const owl_resp_t *r, size_t i, const char *s, size_t n) {
  const size_t *f = field(r, i);
  return f[1] == n && memcmp(r->head.base + f[0], s, n) == 0;
}


/* Starts a head afresh: no reason, no fields. */
static void head_reset (owl_resp_t *r) {
  r->head.len = 0;
  r->fields.len = 0;
  r->hstate = H_START;
  r->line_len = 0;
  r->last = 0;                          /* a head may not start with SP either,
                                           but that is no obs-fold */
  r->closing = r->keep_token = 0;
  r->has_te = r->chunked_te = r->bad_te = 0;
}
/* }====== */


/* {====== llhttp callbacks: they only collect the head */

static int on_status (llhttp_t *p, const char *at, size_t n) {
  owl_resp_t *r = RP(p);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)at[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return refuse_at(r, OWL_RESP_EPROTO,
                       "invalid response: control character in the reason phrase", at + i);
  }
  if (nfields(r) == 0 && field_new(r))
    return refuse(r, OWL_RESP_ENOMEM, "out of memory");
  return field_add(r, at, n, 0) ? refuse(r, OWL_RESP_ENOMEM, "out of memory") : 0;
}


/* The status line ended: field 0, the reason, exists from here on. */
static int on_status_complete (llhttp_t *p) {
  owl_resp_t *r = RP(p);
  if (nfields(r) == 0 && field_new(r))  /* no reason phrase came */
    return refuse(r, OWL_RESP_ENOMEM, "out of memory");
  r->hstate = H_LINE;
  return 0;
}


static int on_header_field (llhttp_t *p, const char *at, size_t n) {
  owl_resp_t *r = RP(p);
  if (r->hstate == H_LINE) {            /* a new header line */
    if (field_new(r))
      return refuse(r, OWL_RESP_ENOMEM, "out of memory");
    r->hstate = H_NAME;
  }
  else if (r->hstate != H_NAME)
    return refuse(r, OWL_RESP_EPROTO, "invalid response: malformed header line");
  for (size_t i = 0; i < n; i++)
    if (!owl_istchar((unsigned char)at[i]))
      return refuse_at(r, OWL_RESP_EPROTO, "invalid response: invalid header name", at + i);
  return field_add(r, at, n, 1) ? refuse(r, OWL_RESP_ENOMEM, "out of memory") : 0;
}


static int on_header_field_complete (llhttp_t *p) {
  owl_resp_t *r = RP(p);
  if (r->hstate != H_NAME || field(r, nfields(r) - 1)[1] == 0)
    return refuse(r, OWL_RESP_EPROTO, "invalid response: empty header name");
  /* counted once the name is whole: llhttp drops the last span of a read
  ** it fails in, so a check on the span could see what a single read
  ** would not (and report the line count where llhttp refuses the name) */
  if (nfields(r) / 2 > r->lim.max_headers)   /* the reason, and a name */
    return refuse(r, OWL_RESP_E2BIG, "too many response header lines");
  r->hstate = H_VALUE0;
  return 0;
}


static int on_header_value (llhttp_t *p, const char *at, size_t n) {
  owl_resp_t *r = RP(p);
  if (r->hstate == H_VALUE0) {
    if (field_new(r))
      return refuse(r, OWL_RESP_ENOMEM, "out of memory");
    r->hstate = H_VALUE;
  }
  else if (r->hstate != H_VALUE)
    return refuse(r, OWL_RESP_EPROTO, "invalid response: malformed header line");
  return field_add(r, at, n, 0) ? refuse(r, OWL_RESP_ENOMEM, "out of memory") : 0;
}


static int on_header_value_complete (llhttp_t *p) {
  owl_resp_t *r = RP(p);
  if (r->hstate == H_VALUE0) {          /* an empty value */
    if (field_new(r))
      return refuse(r, OWL_RESP_ENOMEM, "out of memory");
  }
  else if (r->hstate != H_VALUE)
    return refuse(r, OWL_RESP_EPROTO, "invalid response: malformed header line");
  size_t *f = field(r, nfields(r) - 1);
  const char *v = r->head.base + f[0];
  while (f[1] > 0 && (v[f[1] - 1] == ' ' || v[f[1] - 1] == '\t'))
    f[1]--;                             /* RFC 9110 5.5: no trailing OWS */
  r->hstate = H_LINE;
  return 0;
}


static int on_headers_complete (llhttp_t *p) {
  (void)p;
  return HPE_PAUSED;                    /* the rest is head_done's */
}


static void init_settings (void) {
  llhttp_settings_init(&settings);
  settings.on_status = on_status;
  settings.on_status_complete = on_status_complete;
  settings.on_header_field = on_header_field;
  settings.on_header_field_complete = on_header_field_complete;
  settings.on_header_value = on_header_value;
  settings.on_header_value_complete = on_header_value_complete;
  settings.on_headers_complete = on_headers_complete;
}
/* }====== */


/* {====== the head */

/*
** Head bytes may not hold a bare LF or a bare CR (RFC 9112 2.2), nor start
** a line with SP or HTAB (obs-fold, 5.2).  r->last is the byte before p.
** Returns why p[0..n) is refused, or NULL: the fault that comes first in
** the bytes, so that the answer does not depend on how they were split.
*/
static const char *scanhead (owl_resp_t *r, const char *p, size_t n) {
  static const char bare_cr[] = "invalid response: bare CR in the head";
  static const char bare_lf[] = "invalid response: bare LF in the head";
  static const char fold[] = "invalid response: obs-fold (a header line "
                             "starting with whitespace)";
  if (n == 0)
    return NULL;
  if (r->last == '\r' && p[0] != '\n')
    return bare_cr;
  if (r->last == '\n' && (p[0] == ' ' || p[0] == '\t'))
    return fold;
  const char *e = p + n, *lf = p, *cr = p, *at = e, *why = NULL;
  while ((lf = memchr(lf, '\n', (size_t)(e - lf))) != NULL) {
    if ((lf == p ? r->last : (unsigned char)lf[-1]) != '\r') {
      at = lf;
      why = bare_lf;
      break;
    }
    if (++lf == e)
      break;
    if (*lf == ' ' || *lf == '\t') {
      at = lf;
      why = fold;
      break;
    }
  }
  while ((cr = memchr(cr, '\r', (size_t)(at - cr))) != NULL) {
    if (++cr == e)
      break;                            /* the next bytes say */
    if (*cr != '\n')
      return bare_cr;                   /* before the LF fault, if any */
  }
  if (why != NULL)
    return why;
  r->last = (unsigned char)e[-1];
  return NULL;
}


static int isdigit_ (char c) {
  return c >= '0' && c <= '9';
}


/*
** RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason ],
** the version 1.0 or 1.1, the code three digits, 100..599.  (llhttp 8.1
** takes RTSP/ and ICE/ versions, 2.0, codes of one to three digits and a
** status line with empty lines before it.)  The last SP may be missing,
** as llhttp allows: some servers end the line after the code.
*/
static const char *check_status_line (owl_resp_t *r) {
  const char *l = r->line;
  if (r->line_len < sizeof r->line || memcmp(l, "HTTP/", 5) != 0 ||
      !isdigit_(l[5]) || l[6] != '.' || !isdigit_(l[7]))
    return "invalid response: not an HTTP/1.x status line";
  if (l[5] != '1' || (l[7] != '0' && l[7] != '1'))
    return "invalid response: HTTP version is not 1.0 or 1.1";
  if (l[8] != ' ' || !isdigit_(l[9]) || !isdigit_(l[10]) || !isdigit_(l[11]) ||
      (l[12] != ' ' && l[12] != '\r'))
    return "invalid response: not an HTTP/1.x status line";
  if (l[9] < '1' || l[9] > '5')
    return "invalid response: status code not in 100..599";
  r->minor = l[7] - '0';
  r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  return NULL;
}


/*
** A Transfer-Encoding value: the codings, comma-separated; any coding but
** one "chunked" marks it bad (no parameters: chunked has none).
*/
static void check_te (owl_resp_t *r, const char *s, size_t n) {
  const char *e = s + n;
  r->has_te = 1;
  while (s < e) {
    while (s < e && (*s == ' ' || *s == '\t' || *s == ','))
      s++;
    const char *t = s;
    while (s < e && *s != ',' && *s != ' ' && *s != '\t')
      s++;
    if (s == t)
      break;
    if ((size_t)(s - t) == 7 && strncasecmp(t, "chunked", 7) == 0 && !r->chunked_te)
      r->chunked_te = 1;
    else
      r->bad_te = 1;                    /* another coding, a second chunked */
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    if (s < e && *s != ',')
      r->bad_te = 1;                    /* "chunked;x=1", "chunked x" */
  }
  if (!r->chunked_te)
    r->bad_te = 1;
}


/* The fields that decide the framing and the connection. */
static void scan_fields (owl_resp_t *r) {
  size_t n = nfields(r);
  for (size_t i = 1; i + 1 < n; i += 2) {
    const size_t *v = field(r, i + 1);
    const char *s = r->head.base + v[0];
    if (field_is(r, i, "connection", 10)) {
      r->closing |= owl_list_has(s, v[1], "close", 5);
      r->keep_token |= owl_list_has(s, v[1], "keep-alive", 10);
    }
    else if (field_is(r, i, "transfer-encoding", 17)) {
      if (r->has_te)
        r->bad_te = 1;                  /* a second line, a second coding */
      check_te(r, s, v[1]);
    }
  }
}


static long finish (owl_resp_t *r) {
  r->state = S_DONE;
  if (r->ev && r->ev->on_done && r->ev->on_done(r->ud, r))
    return fail(r, OWL_RESP_ECANCELED, "stopped by the caller");
  return 0;
}


/*
** llhttp paused at the end of a head.  An interim response is dropped and
** llhttp reset for the next head; the final one decides the framing and
** goes to on_head.  Returns 0 or an error.
*/
static long head_done (owl_resp_t *r) {
  const char *why = check_status_line(r);
  if (why != NULL)
    return fail(r, OWL_RESP_EPROTO, why);
  if (nfields(r) == 0 && field_new(r))
    return fail(r, OWL_RESP_ENOMEM, "out of memory");
  if (r->status < 200 && r->status != 101) {  /* 100, 102, 103 ... */
    head_reset(r);
    llhttp_reset(&r->parser);
    return 0;
  }
  scan_fields(r);
  if (r->has_te && r->bad_te)
    return fail(r, OWL_RESP_EPROTO, "invalid response: a transfer coding other "
                "than chunked");
  if (r->has_te && r->minor == 0)
    return fail(r, OWL_RESP_EPROTO, "invalid response: Transfer-Encoding in an "
                "HTTP/1.0 response");
  if (r->head_req || r->status < 200 || r->status == 204 || r->status == 304)
    r->framing = OWL_RESP_NONE;         /* RFC 9112 6.3, rule 1 */
  else if (r->has_te)
    r->framing = OWL_RESP_CHUNKED;
  else if (r->parser.flags & F_CONTENT_LENGTH) {
    r->content_length = r->left = r->parser.content_length;
    r->framing = r->left > 0 ? OWL_RESP_LENGTH : OWL_RESP_NONE;
  }
  else
    r->framing = OWL_RESP_CLOSE;
  if (r->framing == OWL_RESP_LENGTH && r->lim.max_body && r->left > r->lim.max_body)
    return fail(r, OWL_RESP_E2BIG, "response body too large");
  r->keepalive = (r->minor == 1 ? !r->closing : r->keep_token) &&
                 r->framing != OWL_RESP_CLOSE && r->status != 101;
  if (r->framing == OWL_RESP_CHUNKED)
    owl_chunked_init(&r->chunked, r->lim.max_header_bytes);
  r->state = S_BODY;
  if (r->ev && r->ev->on_head && r->ev->on_head(r->ud, r))
    return fail(r, OWL_RESP_ECANCELED, "stopped by the caller");
  return r->framing == OWL_RESP_NONE ? finish(r) : 0;
}


/*
** llhttp 8.1 drops the span it was collecting when it fails (the callback
** never sees it), and takes SP inside a field name.  When it fails within
** a name, the name's bytes in this read, from the start of its line up to
** the error, are checked here as on_header_field would have: so a name
** such as "X Y" followed by a bad byte is refused for the name whether or
** not a read ended inside it.  Returns the first byte that is not a tchar
** (before any CR), or NULL.
*/
static const char *unseen_name_fault (owl_resp_t *r, const char *p, const char *at) {
  if (r->hstate != H_LINE && r->hstate != H_NAME)
    return NULL;
  const char *s = at;
  while (s > p && s[-1] != '\n' && s[-1] != '\r')
    s--;                                /* llhttp ends a line at a bare CR */
  for (; s < at && *s != '\r'; s++)     /* a CR is scanhead's to judge */
    if (!owl_istchar((unsigned char)*s))
      return s;
  return NULL;
}


/*
** Is llhttp's error position the byte it refused?  For these errors it
** is, and that byte was read; for the others (a bad version digit, ...)
** the position is the byte after the fault, which a read may end before:
** left out, every split sees the same bytes.
*/
static int refuses_byte (llhttp_errno_t e) {
  return e == HPE_INVALID_HEADER_TOKEN || e == HPE_CR_EXPECTED || e == HPE_LF_EXPECTED ||
         e == HPE_INVALID_CONTENT_LENGTH || e == HPE_INVALID_CONSTANT;
}


/* Runs llhttp over head bytes; returns the bytes it took or an error. */
static long parse_head (owl_resp_t *r, const char *p, size_t n) {
  size_t room = r->lim.max_header_bytes - r->head_bytes;
  if (room == 0)
    return fail(r, OWL_RESP_E2BIG, "response head too large");
  size_t k = n < room ? n : room, used = k;
  llhttp_errno_t e = llhttp_execute(&r->parser, p, k);
  if (e == HPE_PAUSED)
    used = (size_t)(llhttp_get_error_pos(&r->parser) - p);
  else if (e != HPE_OK) {
    /* the first fault in the byte stream decides, whatever the splits: a
    ** bare CR, a bare LF or obs-fold up to the byte a callback or llhttp
    ** refused (see refuses_byte), or else before llhttp's error position */
    const char *at = llhttp_get_error_pos(&r->parser);
    size_t upto = k;
    if (!r->err && at != NULL && at >= p && at <= p + k) {
      const char *bad = unseen_name_fault(r, p, at);
      if (bad != NULL)
        refuse_at(r, OWL_RESP_EPROTO, "invalid response: invalid header name", bad);
    }
    if (r->err && r->fault != NULL && r->fault >= p && r->fault < p + k)
      upto = (size_t)(r->fault - p) + 1;
    else if (at != NULL && at >= p && at <= p + k)
      upto = (size_t)(at - p) + (!r->err && at < p + k && refuses_byte(e));
    const char *why = scanhead(r, p, upto);
    if (why != NULL)
      return fail(r, OWL_RESP_EPROTO, why);
    if (r->err)                         /* a callback refused */
      return fail(r, r->err, r->why);
    return fail(r, OWL_RESP_EPROTO, llhttp_why(r, e));
  }
  const char *why = scanhead(r, p, used);
  if (why != NULL)
    return fail(r, OWL_RESP_EPROTO, why);
  if (r->line_len < sizeof r->line) {   /* for check_status_line */
    size_t c = sizeof r->line - r->line_len;
    if (c > used)
      c = used;
    memcpy(r->line + r->line_len, p, c);
    r->line_len += (unsigned char)c;
  }
  r->head_bytes += used;
  if (e != HPE_PAUSED)
    return r->head_bytes == r->lim.max_header_bytes
           ? fail(r, OWL_RESP_E2BIG, "response head too large") : (long)used;
  long st = head_done(r);
  return st < 0 ? st : (long)used;
}
/* }====== */


/* {====== the body */

static int body (owl_resp_t *r, const char *at, size_t n) {
  r->body_bytes += n;
  if (r->lim.max_body && r->body_bytes > r->lim.max_body) {
    fail(r, OWL_RESP_E2BIG, "response body too large");
    return -1;
  }
  if (n > 0 && r->ev && r->ev->on_body && r->ev->on_body(r->ud, at, n)) {
    fail(r, OWL_RESP_ECANCELED, "stopped by the caller");
    return -1;
  }
  return 0;
}


static int on_chunk_data (void *ud, const char *at, size_t n) {
  return body(ud, at, n);
}


static long parse_body (owl_resp_t *r, const char *p, size_t n) {
  switch (r->framing) {
    case OWL_RESP_LENGTH: {
      size_t take = n < r->left ? n : (size_t)r->left;
      if (body(r, p, take))
        return r->err;
      r->left -= take;
      if (r->left == 0 && finish(r))
        return r->err;
      return (long)take;
    }
    case OWL_RESP_CHUNKED: {
      long used = owl_chunked_decode(&r->chunked, p, n, on_chunk_data, r);
      if (used < 0)
        return r->err ? r->err
               : fail(r, OWL_RESP_EPROTO, "invalid response: malformed chunked body");
      if (owl_chunked_done(&r->chunked) && finish(r))
        return r->err;
      return used;
    }
    default:                            /* OWL_RESP_CLOSE */
      return body(r, p, n) ? r->err : (long)n;
  }
}
/* }====== */


/* {====== the interface */

void owl_resp_init (owl_resp_t *r, int head_req, const owl_resp_limits_t *limits) {
  if (settings.on_headers_complete == NULL)
    init_settings();
  memset(r, 0, sizeof *r);
  if (limits != NULL)
    r->lim = *limits;
  if (r->lim.max_header_bytes == 0)
    r->lim.max_header_bytes = OWL_RESP_MAX_HEADER_BYTES;
  if (r->lim.max_headers == 0)
    r->lim.max_headers = OWL_RESP_MAX_HEADERS;
  r->head_req = head_req != 0;
  r->state = S_HEAD;
  head_reset(r);
  llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
  r->parser.data = r;
}


void owl_resp_free (owl_resp_t *r) {
  owl_buf_free(&r->head);
  owl_buf_free(&r->fields);
}


void owl_resp_drop_head (owl_resp_t *r) {
  owl_resp_free(r);
}


long owl_resp_feed (owl_resp_t *r, const char *p, size_t n,
                    const owl_resp_events *ev, void *ud) {
  size_t off = 0;
  if (r->state == S_FAILED)
    return r->err;
  r->ev = ev;
  r->ud = ud;
  while (off < n && r->state != S_DONE) {
    long used = r->state == S_HEAD ? parse_head(r, p + off, n - off)
                                   : parse_body(r, p + off, n - off);
    if (used < 0)
      return used;
    off += (size_t)used;
  }
  r->ev = NULL;
  return (long)off;
}


int owl_resp_eof (owl_resp_t *r, const owl_resp_events *ev, void *ud) {
  switch (r->state) {
    case S_FAILED:
      return (int)r->err;
    case S_DONE:
      return 0;
    case S_HEAD:
      return (int)fail(r, OWL_RESP_EEOF, "closed before the response head");
    default:
      if (r->framing != OWL_RESP_CLOSE)
        return (int)fail(r, OWL_RESP_EEOF, "closed before the end of the body");
      r->ev = ev;
      r->ud = ud;
      long st = finish(r);
      r->ev = NULL;
      return (int)st;
  }
}


int owl_resp_done (const owl_resp_t *r) {
  return r->state == S_DONE;
}


int owl_resp_started (const owl_resp_t *r) {
  return r->head_bytes > 0 || r->state != S_HEAD;
}


const char *owl_resp_error (const owl_resp_t *r) {
  return r->state == S_FAILED ? r->why : NULL;
}


const char *owl_resp_reason (const owl_resp_t *r, size_t *len) {
  if (nfields(r) == 0 || r->head.base == NULL) {   /* none, or empty */
    *len = 0;
    return "";
  }
  const size_t *f = field(r, 0);
  *len = f[1];
  return r->head.base + f[0];
}


size_t owl_resp_nheaders (const owl_resp_t *r) {
  size_t n = nfields(r);
  return n > 0 ? (n - 1) / 2 : 0;
}


void owl_resp_header (const owl_resp_t *r, size_t i, const char **name,
                      size_t *nlen, const char **value, size_t *vlen) {
  const size_t *nf = field(r, 1 + 2 * i), *vf = field(r, 2 + 2 * i);
  *name = r->head.base + nf[0];
  *nlen = nf[1];
  *value = r->head.base + vf[0];
  *vlen = vf[1];
}
/* }====== */
