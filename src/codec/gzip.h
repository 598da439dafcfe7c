/*
** gzip streams (RFC 1952) over zlib (gzip.c): a streaming deflater for
** response bodies, and a bounded one-shot inflater.  Pure: no libuv, no
** Lua.
**
** Ownership: an owl_gzip_t owns zlib's state (about 256 KiB) from a
** successful owl_gzip_init until owl_gzip_end, which frees it.
** owl_gzip_end may be called more than once, and after a failed init, so a
** wrapper's close and its garbage collection can both call it.  The output
** buffers belong to the caller; these functions only append to them.
*/

#ifndef OWL_GZIP_H
#define OWL_GZIP_H

#include <stddef.h>

#include "codec/buf.h"

struct z_stream_s;              /* zlib's z_stream; gzip.c includes zlib.h */

typedef struct owl_gzip {
  struct z_stream_s *z;         /* owned; NULL before init and after end */
  int finished;                 /* the trailer was written */
} owl_gzip_t;

/* What owl_gzip_deflate does after taking the input. */
enum {
  OWL_GZIP_NONE,                /* nothing more: zlib keeps what it holds */
  OWL_GZIP_SYNC,                /* a sync flush: every byte so far can be
                                   decoded from the output */
  OWL_GZIP_FINISH               /* the end: the last block and the trailer */
};

/*
** Starts a gzip stream at compression level 1 to 9.  Returns 0, -EINVAL
** (a bad level) or -ENOMEM; on failure g holds nothing.
*/
int owl_gzip_init (owl_gzip_t *g, int level);

/*
** Compresses n bytes at in (n may be 0) and appends what zlib gives back
** to out, then flushes as `flush` says.  Returns 0, -ENOMEM, or -EINVAL
** when the stream was ended or finished before.  After OWL_GZIP_FINISH
** the stream is finished and its zlib state freed.
*/
int owl_gzip_deflate (owl_gzip_t *g, const char *in, size_t n, int flush,
                      owl_buf_t *out);

/* Frees zlib's state.  Safe to call again. */
void owl_gzip_end (owl_gzip_t *g);

/*
** Decodes one whole gzip member at in (n bytes) and appends its content to
** out.  *consumed gets the bytes of in that the member took (what follows
** it is left alone).  Returns 0, -EINVAL (not gzip, corrupt, a bad CRC or
** length in the trailer, or cut short), -E2BIG (the content goes over max
** bytes) or -ENOMEM.
*/
int owl_gunzip (const char *in, size_t n, size_t max, owl_buf_t *out,
                size_t *consumed);

#endif
