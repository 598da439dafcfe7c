/*
** Character classes of HTTP (RFC 9110 5.6.2), shared by the parsers.
*/

#ifndef OWL_TOKEN_H
#define OWL_TOKEN_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
** "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static inline int owl_istchar (unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
      return 1;
    default:
      return 0;
  }
}


/* The value of a hex digit, or -1. */
static inline int owl_hexval (unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}


/* Is a[0..an) equal to the C string b, case ignored? */
static inline int owl_ieq (const char *a, size_t an, const char *b) {
  size_t bn = strlen(b);
  return an == bn && strncasecmp(a, b, an) == 0;
}


/* Is tok[0..n) an element of the comma-separated list v[0..vn)?  (Case
** and the whitespace around elements are ignored.) */
static inline int owl_list_has (const char *v, size_t vn, const char *tok, size_t n) {
  const char *e = v + vn;
  while (v < e) {
    while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
      v++;
    const char *s = v;
    while (v < e && *v != ',')
      v++;
    const char *t = v;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if ((size_t)(t - s) == n && strncasecmp(s, tok, n) == 0)
      return 1;
  }
  return 0;
}

#endif
