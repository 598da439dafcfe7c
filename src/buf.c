/*
** Growable byte buffers.  A buffer owns its memory; owl_buf_free releases it
** and leaves an empty buffer that can be used again.
*/

#include <stdlib.h>
#include <string.h>

#include "owl.h"


int owl_buf_reserve (owl_buf_t *b, size_t extra) {
  size_t need = b->len + extra;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->base, cap);
  if (p == NULL)
    return UV_ENOMEM;
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
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}
