/*
** The chunked transfer coding of request bodies (RFC 9112 section 7.1), as
** a pure decoder: bytes in, body spans out, no libuv and no Lua.
**
**   chunked-body = *chunk last-chunk trailer-section CRLF
**   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
**   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
**   chunk-ext-val = token / quoted-string
**
** llhttp 8.1 gets parts of this wrong (it refuses ";a=1;b=2", accepts an
** empty extension name and ignores what follows chunk data), so the
** connection hands chunked bodies to this decoder instead.  Extensions are
** checked and dropped; trailer lines are checked (no obs-fold, no bare LF)
** and dropped.  Every line ends with CRLF; a bare LF is an error.
*/

#include <string.h>

#include "codec/chunked.h"
#include "codec/token.h"


enum {
  S_SIZE0,        /* first hex digit of a chunk size */
  S_SIZE,         /* more hex digits */
  S_SIZE_WS,      /* BWS after the size or an extension: ";" must follow */
  S_EXT_END,      /* just after a quoted value */
  S_EXT_NAME0,    /* BWS, then the first character of an extension name */
  S_EXT_NAME,
  S_EXT_NAME_WS,  /* BWS after a name: "=" may still come */
  S_EXT_EQ,       /* BWS after "=" */
  S_EXT_TOKEN,    /* token value */
  S_EXT_QUOTED,   /* inside a quoted-string */
  S_EXT_ESCAPE,   /* after a backslash */
  S_LF,           /* CR seen at the end of the size line */
  S_DATA,
  S_DATA_CR,
  S_DATA_LF,
  S_TRAILER0,     /* start of a trailer line, or the final CRLF */
  S_TRAILER_NAME, /* a trailer field name */
  S_TRAILER,      /* a trailer field value */
  S_TRAILER_LF,
  S_END_LF,
  S_DONE
};


/*
** After a size, an extension name or a value: ";" starts an extension, CR
** ends the line, BWS moves to ws; anything else is an error (-1).  BWS
** comes only before ";" or "=" (chunk-ext = *( BWS ";" ... )): after it,
** next_ws refuses the CR, so "5 \r\n" and "5;a=b \r\n" are errors.
*/
static int next_item (unsigned char c, int ws) {
  if (c == ';')
    return S_EXT_NAME0;
  if (c == '\r')
    return S_LF;
  if (c == ' ' || c == '\t')
    return ws;
  return -1;
}


static int next_ws (unsigned char c, int ws) {
  return c == '\r' ? -1 : next_item(c, ws);
}


void owl_chunked_init (owl_chunked_t *d, size_t max_line) {
  memset(d, 0, sizeof *d);
  d->state = S_SIZE0;
  d->max_line = max_line;
}


int owl_chunked_done (const owl_chunked_t *d) {
  return d->state == S_DONE;
}


/*
** Decodes p[0..n).  Data spans are given to on_data(ud, at, len) as they
** are found.  Returns the number of bytes consumed (less than n only once
** the body is complete: the rest belongs to the next message), or -1 on a
** framing error.
*/
long owl_chunked_decode (owl_chunked_t *d, const char *p, size_t n,
                         owl_chunked_cb on_data, void *ud) {
  size_t i = 0;
  while (i < n && d->state != S_DONE) {
    unsigned char c = (unsigned char)p[i];
    if (d->state == S_DATA) {
      size_t take = n - i;
      if (take > d->left)
        take = (size_t)d->left;
      if (on_data(ud, p + i, take))
        return -1;
      d->left -= take;
      i += take;
      if (d->left == 0)
        d->state = S_DATA_CR;
      continue;
    }
    if (d->state != S_DATA_CR && d->state != S_DATA_LF && ++d->line > d->max_line)
      return -1;                  /* a size line or trailer too long */
    i++;
    switch (d->state) {
      case S_SIZE0:
      case S_SIZE: {
        int h = owl_hexval(c);
        if (h >= 0) {
          if (d->size >> 59)
            return -1;            /* would overflow */
          d->size = d->size * 16 + (uint64_t)h;
          d->state = S_SIZE;
        }
        else if (d->state == S_SIZE0 || (d->state = next_item(c, S_SIZE_WS)) < 0)
          return -1;
        break;
      }
      case S_SIZE_WS:
        if ((d->state = next_ws(c, S_SIZE_WS)) < 0)
          return -1;
        break;
      case S_EXT_TOKEN:
      case S_EXT_END:
        if (d->state == S_EXT_TOKEN && owl_istchar(c))
          break;
        if ((d->state = next_item(c, S_SIZE_WS)) < 0)
          return -1;
        break;
      case S_EXT_NAME0:
        if (owl_istchar(c))
          d->state = S_EXT_NAME;
        else if (c != ' ' && c != '\t')
          return -1;              /* ";=v", ";;" */
        break;
      case S_EXT_NAME:
      case S_EXT_NAME_WS:
        if (d->state == S_EXT_NAME && owl_istchar(c))
          break;
        if (c == '=')
          d->state = S_EXT_EQ;
        else if ((d->state = d->state == S_EXT_NAME ? next_item(c, S_EXT_NAME_WS)
                                                    : next_ws(c, S_EXT_NAME_WS)) < 0)
          return -1;
        break;
      case S_EXT_EQ:
        if (owl_istchar(c))
          d->state = S_EXT_TOKEN;
        else if (c == '"')
          d->state = S_EXT_QUOTED;
        else if (c != ' ' && c != '\t')
          return -1;
        break;
      case S_EXT_QUOTED:
        if (c == '"')
          d->state = S_EXT_END;
        else if (c == '\\')
          d->state = S_EXT_ESCAPE;
        else if (c < 0x20 && c != '\t')
          return -1;              /* CTLs, CR and LF among them */
        else if (c == 0x7f)
          return -1;
        break;
      case S_EXT_ESCAPE:
        if ((c < 0x20 && c != '\t') || c == 0x7f)
          return -1;
        d->state = S_EXT_QUOTED;
        break;
      case S_LF:
        if (c != '\n')
          return -1;
        d->line = 0;
        if (d->size == 0)
          d->state = S_TRAILER0;
        else {
          d->left = d->size;
          d->size = 0;
          d->state = S_DATA;
        }
        break;
      case S_DATA_CR:
        if (c != '\r')
          return -1;
        d->state = S_DATA_LF;
        break;
      case S_DATA_LF:
        if (c != '\n')
          return -1;
        d->line = 0;
        d->state = S_SIZE0;
        break;
      case S_TRAILER0:
        if (c == '\r')
          d->state = S_END_LF;
        else if (owl_istchar(c))
          d->state = S_TRAILER_NAME;
        else
          return -1;              /* obs-fold, bare LF, ":" ... */
        break;
      case S_TRAILER_NAME:
        if (c == ':')
          d->state = S_TRAILER;
        else if (!owl_istchar(c))
          return -1;              /* whitespace before the colon too */
        break;
      case S_TRAILER:
        if (c == '\r')
          d->state = S_TRAILER_LF;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
          return -1;
        break;
      case S_TRAILER_LF:
        if (c != '\n')
          return -1;
        d->line = 0;
        d->state = S_TRAILER0;
        break;
      case S_END_LF:
        if (c != '\n')
          return -1;
        d->state = S_DONE;
        break;
    }
  }
  return (long)i;
}
