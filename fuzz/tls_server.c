/*
** libFuzzer harness: the TLS transport of a server connection (src/net/tls.c)
** fed arbitrary bytes as if a client sent them.
**
**   - one server context, made once: a self-signed ECDSA P-256 certificate
**     and key written to a temporary directory at start;
**   - per input: a TLS transport over an in-memory lower transport (what it
**     writes is dropped), reading on; the input arrives in pieces whose
**     sizes come from its first byte, so that records and ClientHellos cut
**     anywhere are tried; the owner stops and starts reading on the way
**     (what tls.c keeps then must come out in order); then the transport
**     closes and the loop runs until everything is freed.
**
** What it looks for: memory errors and leaks in the glue between OpenSSL
** and the transport (the BIO, the kept ciphertext, the first-byte check for
** plain HTTP, failures), under ASan and UBSan.  OpenSSL's own parsing is
** exercised but is not the target.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "net/tls.h"


/* {====== the lower transport: bytes in from the harness, out to nowhere */

typedef struct mock {
  owl_transport_t t;
  int reading;
  int pending;                            /* a queued write, completed later */
} mock_t;

static int m_read_start (owl_transport_t *t) { ((mock_t *)t)->reading = 1; return 0; }
static void m_read_stop (owl_transport_t *t) { ((mock_t *)t)->reading = 0; }

static int m_try_write (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  size_t n = 0;
  (void)t;
  for (unsigned i = 0; i < nb; i++)
    n += b[i].len;
  return (int)(n > 1000 ? n / 2 : n);     /* sometimes the rest gets queued */
}

static int m_write (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  (void)b; (void)nb;
  ((mock_t *)t)->pending = 1;             /* completed between pieces */
  return 0;
}


static void complete (mock_t *m) {
  if (m->pending) {
    m->pending = 0;
    m->t.on_written(&m->t, 0);
  }
}

static int m_shutdown (owl_transport_t *t) { (void)t; return 0; }
static void m_close (owl_transport_t *t) { t->on_closed(t); }
static int m_fileno (owl_transport_t *t, uv_os_fd_t *fd) { (void)t; (void)fd; return UV_ENOTSUP; }

static int m_name (owl_transport_t *t, struct sockaddr *sa, int *len) {
  (void)t; (void)sa; (void)len;
  return UV_ENOTSUP;
}

static const owl_transport_vt mock_vt = {
  m_read_start, m_read_stop, m_try_write, m_write, m_shutdown, m_close, m_fileno, m_name, m_name
};
/* }====== */


/* {====== the owner */

static size_t plain_bytes;
static int owner_closed, owner_eof;
static owl_transport_t *up;

static void o_read (owl_transport_t *t, ssize_t n, char *p) {
  (void)t;
  if (n > 0) {
    plain_bytes += (size_t)n;
    volatile char sink = p[n - 1];        /* the bytes must be readable */
    (void)sink;
  }
  else
    owner_eof = 1;
}

static void o_written (owl_transport_t *t, int status) { (void)t; (void)status; }
static void o_closed (owl_transport_t *t) { (void)t; owner_closed = 1; }
/* }====== */


static owl_tls_ctx_t *ctx;


/* A self-signed certificate for the context, written where it can load it. */
static void make_ctx (void) {
  char dir[] = "/tmp/owl-fuzz-tls-XXXXXX", cert[64], key[64], err[300];
  if (mkdtemp(dir) == NULL)
    abort();
  snprintf(cert, sizeof cert, "%s/c.pem", dir);
  snprintf(key, sizeof key, "%s/k.pem", dir);
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (pk == NULL || x == NULL)
    abort();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pk);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, name);
  if (!X509_sign(x, pk, EVP_sha256()))
    abort();
  FILE *f = fopen(cert, "w"), *g = fopen(key, "w");
  if (f == NULL || g == NULL || !PEM_write_X509(f, x) ||
      !PEM_write_PrivateKey(g, pk, NULL, NULL, 0, NULL, NULL))
    abort();
  fclose(f);
  fclose(g);
  X509_free(x);
  EVP_PKEY_free(pk);
  const char *certs[1] = { cert }, *keys[1] = { key };
  owl_tls_server_opts_t o = { certs, keys, 1, NULL, NULL, 12, NULL, OWL_TLS_CLIENT_CERT_NONE };
  ctx = owl_tls_server_ctx(&o, err, sizeof err);
  if (ctx == NULL) {
    fprintf(stderr, "tls_server harness: %s\n", err);
    abort();
  }
  unlink(cert);
  unlink(key);
  rmdir(dir);
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static char buf[64 * 1024];
  if (ctx == NULL)
    make_ctx();
  if (size == 0)
    return 0;
  mock_t *m = calloc(1, sizeof *m);
  m->t.vt = &mock_vt;
  owl_tls_t *s = owl_tls_new(ctx, &m->t, uv_default_loop());
  if (s == NULL)
    abort();
  up = owl_tls_transport(s);
  up->owner = NULL;
  up->on_read = o_read;
  up->on_written = o_written;
  up->on_closed = o_closed;
  owner_closed = owner_eof = 0;
  plain_bytes = 0;
  up->vt->read_start(up);
  size_t piece = 1 + data[0] % 97, at = 1;
  unsigned turn = 0;
  while (at < size && !owner_eof) {
    size_t n = size - at < piece ? size - at : piece;
    memcpy(buf, data + at, n);            /* the loop's read buffer: reused */
    if (m->reading)
      m->t.on_read(&m->t, (ssize_t)n, buf);
    at += n;
    complete(m);
    if (++turn % 3 == 0) {                /* the owner pauses, then goes on */
      up->vt->read_stop(up);
      up->vt->read_start(up);
      uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    }
  }
  if (!owner_eof && (data[0] & 1) && m->reading)
    m->t.on_read(&m->t, UV_EOF, NULL);    /* the client goes */
  complete(m);
  up->vt->close(up);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT);
  if (!owner_closed)
    abort();
  free(m);
  return 0;
}
