/*
** Growable byte buffers.  A buffer owns its memory; owl_buf_free releases it
** and leaves an empty buffer that can be used again.
*/

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/buf.h"


/*
** Buffers start at OWL_BUF_MIN bytes.  Released buffers of exactly that size
** go to a small free list instead of free(): a connection gives its buffers
** back whenever it is idle (so an idle connection holds none), and takes
** them again for its next request without calling malloc.
*/
#define POOL_MAX 256

static char *pool[POOL_MAX];
static int npool;


int owl_buf_reserve (owl_buf_t *b, size_t extra) {
  size_t need = b->len + extra;
  if (need <= b->cap)
    return 0;
  if (b->cap == 0 && need <= OWL_BUF_MIN && npool > 0) {
    b->base = pool[--npool];
    b->cap = OWL_BUF_MIN;
    return 0;
  }
  size_t cap = b->cap ? b->cap : OWL_BUF_MIN;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->base, cap);
  if (p == NULL)
    return -ENOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}


int owl_buf_append (owl_buf_t *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  int err = owl_buf_reserve(b, n);
  if (err)
    return err;
  memcpy(b->base + b->len, p, n);
  b->len += n;
  return 0;
}


/* Inserts n bytes at offset `at`, moving what follows. */
int owl_buf_insert (owl_buf_t *b, size_t at, const void *p, size_t n) {
  int err = owl_buf_reserve(b, n);
  if (err)
    return err;
  memmove(b->base + at + n, b->base + at, b->len - at);
  memcpy(b->base + at, p, n);
  b->len += n;
  return 0;
}


/* Drops the first n bytes. */
void owl_buf_consume (owl_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->base, b->base + n, b->len - n);
  b->len -= n;
}


void owl_buf_free (owl_buf_t *b) {
  if (b->base == NULL) {                  /* nothing to give back */
    b->len = b->cap = 0;
    return;
  }
  if (b->cap == OWL_BUF_MIN && npool < POOL_MAX)
    pool[npool++] = b->base;
  else
    free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}


/* Frees the free list (at exit). */
void owl_buf_drain (void) {
  while (npool > 0)
    free(pool[--npool]);
}


/*
** Writes v in decimal (base 10) or hex (16) ending just before `end`;
** returns the first character.  No locale, no format parsing.
*/
char *owl_fmt_uint (char *end, uint64_t v, unsigned base) {
  static const char digits[] = "0123456789abcdef";
  do {
    *--end = digits[v % base];
    v /= base;
  } while (v > 0);
  return end;
}
