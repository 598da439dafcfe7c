/*
** gzip streams over zlib: deflate with a gzip wrapper (window bits 15 + 16)
** in slices that fit zlib's 32-bit counters, and a bounded inflate.
*/

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <zlib.h>

#include "codec/gzip.h"

#define SLICE (1u << 30)        /* at most this much per zlib call */
#define ROOM 16384              /* output room made before each call */


int owl_gzip_init (owl_gzip_t *g, int level) {
  g->z = NULL;
  g->finished = 0;
  if (level < 1 || level > 9)
    return -EINVAL;
  z_stream *z = calloc(1, sizeof *z);
  if (z == NULL)
    return -ENOMEM;
  if (deflateInit2(z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(z);
    return -ENOMEM;
  }
  g->z = z;
  return 0;
}


void owl_gzip_end (owl_gzip_t *g) {
  if (g->z != NULL) {
    deflateEnd(g->z);
    free(g->z);
    g->z = NULL;
  }
}


/* Points zlib's output at the free room of out (at least ROOM bytes). */
static int room (z_stream *z, owl_buf_t *out) {
  if (owl_buf_reserve(out, ROOM))
    return -ENOMEM;
  size_t free_bytes = out->cap - out->len;
  z->next_out = (Bytef *)out->base + out->len;
  z->avail_out = free_bytes > SLICE ? SLICE : (uInt)free_bytes;
  return 0;
}


int owl_gzip_deflate (owl_gzip_t *g, const char *in, size_t n, int flush,
                      owl_buf_t *out) {
  z_stream *z = g->z;
  if (z == NULL || g->finished)
    return -EINVAL;
  int mode = flush == OWL_GZIP_FINISH ? Z_FINISH :
             flush == OWL_GZIP_SYNC ? Z_SYNC_FLUSH : Z_NO_FLUSH;
  for (;;) {
    if (z->avail_in == 0 && n > 0) {
      uInt slice = n > SLICE ? SLICE : (uInt)n;
      z->next_in = (Bytef *)(uintptr_t)in;
      z->avail_in = slice;
      in += slice;
      n -= slice;
    }
    if (room(z, out))
      return -ENOMEM;
    uInt before = z->avail_out;
    /* the flush applies once every slice is in */
    int zr = deflate(z, n > 0 ? Z_NO_FLUSH : mode);
    out->len += before - z->avail_out;
    if (zr == Z_STREAM_END)
      break;
    if (zr != Z_OK && zr != Z_BUF_ERROR)
      return -EINVAL;
    /* done when all input is in and zlib left output room unused (for
       Z_FINISH: only Z_STREAM_END ends it) */
    if (z->avail_in == 0 && n == 0 && z->avail_out > 0 && mode != Z_FINISH)
      break;
  }
  if (mode == Z_FINISH) {
    g->finished = 1;
    owl_gzip_end(g);
  }
  return 0;
}


int owl_gunzip (const char *in, size_t n, size_t max, owl_buf_t *out,
                size_t *consumed) {
  z_stream z = { 0 };
  size_t start = out->len, left = n;
  int r = 0;
  *consumed = 0;
  if (inflateInit2(&z, 15 + 16) != Z_OK)
    return -ENOMEM;
  for (;;) {
    if (z.avail_in == 0 && left > 0) {
      uInt slice = left > SLICE ? SLICE : (uInt)left;
      z.next_in = (Bytef *)(uintptr_t)in;
      z.avail_in = slice;
      in += slice;
      left -= slice;
    }
    if (room(&z, out)) {
      r = -ENOMEM;
      break;
    }
    size_t allowed = max - (out->len - start) + 1;  /* one byte over shows it */
    if (z.avail_out > allowed)
      z.avail_out = (uInt)allowed;
    uInt before = z.avail_out;
    int zr = inflate(&z, Z_NO_FLUSH);
    out->len += before - z.avail_out;
    if (out->len - start > max) {
      r = -E2BIG;
      break;
    }
    if (zr == Z_STREAM_END)
      break;
    if (zr == Z_MEM_ERROR) {
      r = -ENOMEM;
      break;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      r = -EINVAL;
      break;
    }
    if (z.avail_in == 0 && left == 0 && z.avail_out > 0) {
      r = -EINVAL;                  /* all input read, no end: cut short */
      break;
    }
  }
  *consumed = n - left - z.avail_in;
  inflateEnd(&z);
  if (r)
    out->len = start;
  return r;
}
