/*
** Decoder of the chunked transfer coding (chunked.c): pure, no libuv, no Lua.
*/

#ifndef OWL_CHUNKED_H
#define OWL_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

/* Receives a span of body data; returns non-zero to stop with an error. */
typedef int (*owl_chunked_cb) (void *ud, const char *at, size_t len);

typedef struct owl_chunked {
  int state;
  uint64_t size;        /* the chunk size being read */
  uint64_t left;        /* data bytes left in the current chunk */
  size_t line;          /* bytes of the current size or trailer line */
  size_t max_line;      /* longer lines are an error */
} owl_chunked_t;

void owl_chunked_init (owl_chunked_t *d, size_t max_line);
long owl_chunked_decode (owl_chunked_t *d, const char *p, size_t n,
                         owl_chunked_cb on_data, void *ud);
int owl_chunked_done (const owl_chunked_t *d);

#endif
