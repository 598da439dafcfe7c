/*
** Growable byte buffers (buf.c).  A buffer owns its memory; owl_buf_free
** releases it.  Pure: no libuv, no Lua.
*/

#ifndef OWL_BUF_H
#define OWL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct owl_buf {
  char *base;
  size_t len, cap;
} owl_buf_t;

#define OWL_BUF_MIN 4096

/* 0, or -ENOMEM (which is UV_ENOMEM on Unix) */
int owl_buf_reserve (owl_buf_t *b, size_t extra);
int owl_buf_append (owl_buf_t *b, const void *p, size_t n);
int owl_buf_insert (owl_buf_t *b, size_t at, const void *p, size_t n);
void owl_buf_consume (owl_buf_t *b, size_t n);
void owl_buf_free (owl_buf_t *b);
/* Frees the pool of released OWL_BUF_MIN buffers (at exit). */
void owl_buf_drain (void);
/* Writes v in base (10 or 16) ending just before end; returns its start. */
char *owl_fmt_uint (char *end, uint64_t v, unsigned base);

#endif
