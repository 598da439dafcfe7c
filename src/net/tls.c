/*
** TLS over a transport (see tls.h), with OpenSSL.
**
** Bytes.  OpenSSL reads ciphertext through our BIO straight from the lower
** transport's read (the loop's one buffer); what it did not consume when a
** read is handled is copied to s->rkeep.  Plaintext is decrypted into one
** static buffer and handed up at once, as the TCP transport does.  What
** OpenSSL writes goes to s->wq, is offered to the kernel with one
** try_write, and the rest goes out in one queued write (s->wfly) at a time.
**
** Writes from the owner.  try_write encrypts everything it is given only
** when nothing is queued below, and returns 0 otherwise: the owner then
** queues with write, whose completion comes when the ciphertext of its
** bytes is written.  So at most one batch is in flight under the owner's
** own accounting, and back-pressure works as over TCP.
**
** Reading.  The lower transport reads while the owner wants to, and always
** during a handshake.  When the owner stops reading in the middle of what
** was decrypted, the rest stays in OpenSSL (or s->rkeep); read_start hands
** it over from the loop's idle phase (never from inside the call).
**
** Memory.  SSL_MODE_RELEASE_BUFFERS lets OpenSSL free its record buffers
** when idle; s->rkeep and s->wq are freed when empty; an idle connection
** keeps the SSL object and this struct.
*/

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "codec/buf.h"
#include "net/tls.h"

#define PLAIN_MAX (64 * 1024)
#define ERR_MAX 160             /* a connection's error line */
#define MAX_CERTS 64
#define TICKET_PERIOD 3600      /* seconds a ticket key encrypts */
/* AEAD with ECDHE only; AES-128 first (as fast as it gets with AES-NI, as
** strong as needed), ChaCha20 for clients that ask for it first (phones
** without AES instructions: SSL_OP_PRIORITIZE_CHACHA) */
#define DEFAULT_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

void (*owl_tls_log) (owl_transport_t *t, const char *msg);


/* {====== contexts */

typedef struct cert_entry {
  SSL_CTX *ctx;
  char **names;                 /* lower case; "*.x" for a wildcard */
  int nnames;
} cert_entry_t;

struct owl_tls_ctx {
  int refs;
  cert_entry_t *certs;          /* a server's: [0] is the default */
  int ncerts;
  SSL_CTX *client;              /* a client's (NULL: a server context) */
  int verify;
  /* what it was loaded from, for a reload */
  owl_tls_server_opts_t opts;
  char **strings;               /* owned copies behind opts */
  int nstrings;
};


static int init_once (void);


/* Is e OpenSSL's way of saying the passphrase was wrong or missing? */
static int password_error (unsigned long e) {
  int lib = ERR_GET_LIB(e), why = ERR_GET_REASON(e);
  return (lib == ERR_LIB_EVP && why == EVP_R_BAD_DECRYPT) ||
         (lib == ERR_LIB_PEM && (why == PEM_R_BAD_DECRYPT || why == PEM_R_BAD_PASSWORD_READ ||
                                 why == PEM_R_PROBLEMS_GETTING_PASSWORD));
}


/*
** OpenSSL's errors, the root cause first: the oldest entry in the queue (a
** file that does not open is the system's error), into reason; whether any
** entry says the passphrase was wrong.  Empties the queue.
*/
static int drain_errors (char *reason, size_t len) {
  unsigned long e, first = 0;
  int pw = 0;
  while ((e = ERR_get_error()) != 0) {
    if (first == 0)
      first = e;
    pw |= password_error(e);
  }
  reason[0] = 0;
  if (first == 0)
    return pw;
  if (ERR_SYSTEM_ERROR(first))
    snprintf(reason, len, "%s", strerror(ERR_GET_REASON(first)));
  else {
    const char *r = ERR_reason_error_string(first);
    snprintf(reason, len, "%s", r ? r : "unknown error");
  }
  return pw;
}


static void set_err (char *err, size_t errlen, const char *what, const char *file) {
  char reason[200];
  drain_errors(reason, sizeof reason);
  snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "",
           reason[0] ? ": " : "", reason);
}


static void free_entry (cert_entry_t *c) {
  SSL_CTX_free(c->ctx);
  for (int i = 0; i < c->nnames; i++)
    free(c->names[i]);
  free(c->names);
}


void owl_tls_ctx_ref (owl_tls_ctx_t *ctx) {
  ctx->refs++;
}


void owl_tls_ctx_unref (owl_tls_ctx_t *ctx) {
  if (ctx == NULL || --ctx->refs > 0)
    return;
  for (int i = 0; i < ctx->ncerts; i++)
    free_entry(&ctx->certs[i]);
  free(ctx->certs);
  SSL_CTX_free(ctx->client);
  for (int i = 0; i < ctx->nstrings; i++)
    free(ctx->strings[i]);
  free(ctx->strings);
  free((void *)ctx->opts.certs);
  free((void *)ctx->opts.keys);
  free(ctx);
}


/* {------ session tickets */

typedef struct ticket_key {
  unsigned char name[16], aes[32], mac[32];
} ticket_key_t;

static struct {
  int ready;
  unsigned char secret[32];     /* the secret of `epoch` */
  uint64_t epoch;
  ticket_key_t cur, prev;
} tickets;


static void derive (const unsigned char *secret, const char *label, unsigned char *out,
                    size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret, 32, (const unsigned char *)label, strlen(label), md, &len);
  memcpy(out, md, n);
  OPENSSL_cleanse(md, sizeof md);
}


static void key_of (const unsigned char *secret, ticket_key_t *k) {
  derive(secret, "owinlua ticket name", k->name, sizeof k->name);
  derive(secret, "owinlua ticket aes", k->aes, sizeof k->aes);
  derive(secret, "owinlua ticket mac", k->mac, sizeof k->mac);
}


/* Moves the ratchet on to this hour: the key of the hour before stays for
** decryption; every older secret is overwritten. */
static void tickets_now (void) {
  uint64_t now = (uint64_t)time(NULL) / TICKET_PERIOD;
  if (!tickets.ready) {
    if (RAND_bytes(tickets.secret, sizeof tickets.secret) != 1)
      return;
    tickets.epoch = now;
    tickets.ready = 1;
    key_of(tickets.secret, &tickets.cur);
    memset(&tickets.prev, 0, sizeof tickets.prev);
    return;
  }
  while (tickets.epoch < now) {
    unsigned char next[32];
    derive(tickets.secret, "owinlua ticket ratchet", next, sizeof next);
    memcpy(tickets.secret, next, sizeof next);
    OPENSSL_cleanse(next, sizeof next);
    tickets.epoch++;
    tickets.prev = tickets.cur;
    key_of(tickets.secret, &tickets.cur);
  }
}


void owl_tls_ticket_export (unsigned char out[OWL_TLS_TICKET_STATE]) {
  tickets_now();
  memcpy(out, tickets.secret, 32);
  for (int i = 0; i < 8; i++)
    out[32 + i] = (unsigned char)(tickets.epoch >> (8 * i));
}


void owl_tls_ticket_import (const unsigned char in[OWL_TLS_TICKET_STATE]) {
  uint64_t e = 0;
  for (int i = 0; i < 8; i++)
    e |= (uint64_t)in[32 + i] << (8 * i);
  /* the key of the hour before, for tickets the previous workers issued */
  unsigned char s[32];
  memcpy(s, in, 32);
  memcpy(tickets.secret, s, 32);
  tickets.epoch = e;
  tickets.ready = 1;
  key_of(tickets.secret, &tickets.cur);
  memset(&tickets.prev, 0, sizeof tickets.prev);
  OPENSSL_cleanse(s, sizeof s);
  tickets_now();
}


static int ticket_cb (SSL *ssl, unsigned char name[16], unsigned char *iv,
                      EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *mctx, int enc) {
  (void)ssl;
  tickets_now();
  if (!tickets.ready)
    return -1;
  const ticket_key_t *k;
  int ret = 1;
  if (enc) {
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
      return -1;
    k = &tickets.cur;
    memcpy(name, k->name, 16);
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
      return -1;
  }
  else {
    if (memcmp(name, tickets.cur.name, 16) == 0)
      k = &tickets.cur;
    else if (memcmp(name, tickets.prev.name, 16) == 0 && tickets.epoch > 0) {
      k = &tickets.prev;
      ret = 2;                      /* good, and a fresh ticket follows */
    }
    else
      return 0;                     /* unknown key: a full handshake */
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
      return -1;
  }
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, 32);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
  params[2] = OSSL_PARAM_construct_end();
  return EVP_MAC_CTX_set_params(mctx, params) == 1 ? ret : -1;
}
/* }------ */


/* {------ server contexts */

static int alpn_select (SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char ours[] = "\x08http/1.1";
  (void)ssl; (void)arg;
  if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof ours - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_ALERT_FATAL;    /* RFC 7301: no_application_protocol */
}


/* Does a certificate name (lower case, maybe "*.rest") cover host? */
static int name_matches (const char *pat, const char *host) {
  if (strcasecmp(pat, host) == 0)
    return 1;
  if (pat[0] == '*' && pat[1] == '.') {
    const char *dot = strchr(host, '.');
    return dot != NULL && dot != host && strcasecmp(pat + 1, dot) == 0;
  }
  return 0;
}


static int servername_cb (SSL *ssl, int *alert, void *arg) {
  owl_tls_ctx_t *ctx = arg;
  const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  (void)alert;
  if (host == NULL)
    return SSL_TLSEXT_ERR_OK;
  for (int pass = 0; pass < 2; pass++)   /* exact names first, then wildcards */
    for (int i = 0; i < ctx->ncerts; i++)
      for (int j = 0; j < ctx->certs[i].nnames; j++) {
        const char *n = ctx->certs[i].names[j];
        if ((n[0] == '*') != pass || !name_matches(n, host))
          continue;
        if (SSL_get_SSL_CTX(ssl) != ctx->certs[i].ctx)
          SSL_set_SSL_CTX(ssl, ctx->certs[i].ctx);
        return SSL_TLSEXT_ERR_OK;
      }
  return SSL_TLSEXT_ERR_OK;             /* the default certificate */
}


/*
** A session is resumed only under the name it was made for (RFC 6066
** section 3): a ticket of another name, or of none, gets a full handshake.
*/
static const char *client_sni (SSL *ssl);

static SSL_TICKET_RETURN ticket_decrypted (SSL *ssl, SSL_SESSION *sess,
                                           const unsigned char *keyname, size_t keyname_len,
                                           SSL_TICKET_STATUS status, void *arg) {
  (void)keyname; (void)keyname_len; (void)arg;
  switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW: {
      /* TLS 1.2 decrypts tickets before it reads the SNI extension: the
      ** name comes from the ClientHello as client_hello_cb kept it */
      const char *was = SSL_SESSION_get0_hostname(sess);
      const char *now = client_sni(ssl);
      if ((was == NULL) != (now == NULL) || (was != NULL && strcasecmp(was, now) != 0))
        return SSL_TICKET_RETURN_IGNORE_RENEW;
      return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE
                                          : SSL_TICKET_RETURN_USE_RENEW;
    }
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
      return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
      return SSL_TICKET_RETURN_ABORT;
  }
}


static int client_hello_cb (SSL *ssl, int *alert, void *arg);


/* Optional client certificates: the handshake goes on whatever the
** verification says; the env reports the error. */
static int verify_optional (int ok, X509_STORE_CTX *x) {
  (void)ok; (void)x;
  return 1;
}


static int add_name (cert_entry_t *c, const char *s, size_t n) {
  char **names = realloc(c->names, (size_t)(c->nnames + 1) * sizeof *names);
  if (names == NULL)
    return -1;
  c->names = names;
  char *v = malloc(n + 1);
  if (v == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    v[i] = (char)tolower((unsigned char)s[i]);
  v[n] = 0;
  names[c->nnames++] = v;
  return 0;
}


/* The DNS names of the certificate of c->ctx (its CN when it has none). */
static int cert_names (cert_entry_t *c) {
  X509 *x = SSL_CTX_get0_certificate(c->ctx);
  if (x == NULL)
    return -1;
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int err = 0;
  for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !err; i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS)
      err = add_name(c, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                     (size_t)ASN1_STRING_length(g->d.dNSName));
  }
  GENERAL_NAMES_free(gens);
  if (c->nnames == 0 && !err) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    if (n > 0)
      err = add_name(c, cn, (size_t)n);
  }
  return err;
}


static int password_cb (char *buf, int size, int rw, void *u) {
  const char *pw = u;
  (void)rw;
  if (pw == NULL)
    return 0;
  int n = (int)strlen(pw);
  if (n > size)
    n = size;
  memcpy(buf, pw, (size_t)n);
  return n;
}


static int read_password (const char *file, char *pw, size_t len, char *err, size_t errlen) {
  FILE *f = fopen(file, "r");
  if (f == NULL) {
    snprintf(err, errlen, "cannot read the TLS password file %s: %s", file, strerror(errno));
    return -1;
  }
  if (fgets(pw, (int)len, f) == NULL)
    pw[0] = 0;
  fclose(f);
  pw[strcspn(pw, "\r\n")] = 0;
  return 0;
}


static SSL_CTX *server_ssl_ctx (owl_tls_ctx_t *ctx, const owl_tls_server_opts_t *o,
                                const char *cert, const char *key, const char *pw,
                                char *err, size_t errlen) {
  static const unsigned char sid_ctx[] = "owinlua";
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (c == NULL) {
    set_err(err, errlen, "cannot make a TLS context", NULL);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                      SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);  /* tickets instead */
  SSL_CTX_set_ciphersuites(c, TLS13_SUITES);
  SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_timeout(c, TICKET_PERIOD);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticket_cb);
  SSL_CTX_set_session_ticket_cb(c, NULL, ticket_decrypted, NULL);
  SSL_CTX_set_client_hello_cb(c, client_hello_cb, NULL);
  SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
  SSL_CTX_set_tlsext_servername_callback(c, servername_cb);
  SSL_CTX_set_tlsext_servername_arg(c, ctx);
  SSL_CTX_set_default_passwd_cb(c, password_cb);
  SSL_CTX_set_default_passwd_cb_userdata(c, (void *)pw);
  const char *ciphers = o->ciphers ? o->ciphers : DEFAULT_CIPHERS;
  if (SSL_CTX_set_cipher_list(c, ciphers) != 1) {
    set_err(err, errlen, "bad --tls-ciphers", ciphers);
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
    set_err(err, errlen, "cannot load the TLS certificate", cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
    char reason[200];
    if (!drain_errors(reason, sizeof reason)) {
      if (strcmp(reason, "key values mismatch") == 0)
        snprintf(err, errlen, "the TLS key %s does not match the certificate %s", key, cert);
      else
        snprintf(err, errlen, "cannot load the TLS key %s%s%s", key, reason[0] ? ": " : "",
                 reason);
    }
    else if (pw != NULL)
      snprintf(err, errlen, "wrong passphrase for the TLS key %s", key);
    else
      snprintf(err, errlen, "the TLS key %s is encrypted: give its passphrase with "
               "--tls-password-file", key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "the TLS key %s does not match the certificate %s", key, cert);
    goto fail;
  }
  SSL_CTX_set_default_passwd_cb_userdata(c, NULL);   /* pw lives on the stack */
  if (o->client_cert != OWL_TLS_CLIENT_CERT_NONE) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
    if (names == NULL || SSL_CTX_load_verify_locations(c, o->client_ca, NULL) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      set_err(err, errlen, "cannot load --tls-client-ca", o->client_ca);
      goto fail;
    }
    SSL_CTX_set_client_CA_list(c, names);
    if (o->client_cert == OWL_TLS_CLIENT_CERT_REQUIRE)
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_optional);
  }
  return c;
fail:
  SSL_CTX_free(c);
  return NULL;
}


static char *keep (owl_tls_ctx_t *ctx, const char *s) {
  if (s == NULL)
    return NULL;
  char **v = realloc(ctx->strings, (size_t)(ctx->nstrings + 1) * sizeof *v);
  if (v == NULL)
    return NULL;
  ctx->strings = v;
  return v[ctx->nstrings++] = strdup(s);
}


owl_tls_ctx_t *owl_tls_server_ctx (const owl_tls_server_opts_t *o, char *err, size_t errlen) {
  char pw[1024] = "";
  if (init_once()) {
    snprintf(err, errlen, "cannot set up OpenSSL");
    return NULL;
  }
  if (o->ncerts < 1 || o->ncerts > MAX_CERTS) {
    snprintf(err, errlen, o->ncerts < 1 ? "an https listener needs --tls-cert and --tls-key"
             : "too many TLS certificates");
    return NULL;
  }
  if (o->client_cert != OWL_TLS_CLIENT_CERT_NONE && o->client_ca == NULL) {
    snprintf(err, errlen, "--tls-client-cert needs --tls-client-ca");
    return NULL;
  }
  if (o->password_file && read_password(o->password_file, pw, sizeof pw, err, errlen))
    return NULL;
  owl_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  const char **certs = calloc((size_t)o->ncerts, sizeof *certs);
  const char **keys = calloc((size_t)o->ncerts, sizeof *keys);
  if (ctx == NULL || certs == NULL || keys == NULL ||
      (ctx->certs = calloc((size_t)o->ncerts, sizeof *ctx->certs)) == NULL) {
    free(ctx);
    free(certs);
    free(keys);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ctx->refs = 1;
  ctx->opts = *o;
  ctx->opts.certs = certs;
  ctx->opts.keys = keys;
  for (int i = 0; i < o->ncerts; i++) {
    certs[i] = keep(ctx, o->certs[i]);
    keys[i] = keep(ctx, o->keys[i]);
  }
  ctx->opts.password_file = keep(ctx, o->password_file);
  ctx->opts.ciphers = keep(ctx, o->ciphers);
  ctx->opts.client_ca = keep(ctx, o->client_ca);
  tickets_now();
  for (int i = 0; i < o->ncerts; i++) {
    cert_entry_t *c = &ctx->certs[i];
    c->ctx = server_ssl_ctx(ctx, o, o->certs[i], o->keys[i], o->password_file ? pw : NULL,
                            err, errlen);
    if (c->ctx == NULL)
      goto fail;
    ctx->ncerts++;
    if (cert_names(c)) {
      snprintf(err, errlen, "cannot read the names of %s", o->certs[i]);
      goto fail;
    }
  }
  OPENSSL_cleanse(pw, sizeof pw);
  return ctx;
fail:
  OPENSSL_cleanse(pw, sizeof pw);
  owl_tls_ctx_unref(ctx);
  return NULL;
}


owl_tls_ctx_t *owl_tls_server_reload (owl_tls_ctx_t *old, char *err, size_t errlen) {
  return owl_tls_server_ctx(&old->opts, err, errlen);
}


void owl_tls_ctx_names (owl_tls_ctx_t *ctx, char *out, size_t outlen) {
  size_t used = 0;
  out[0] = 0;
  for (int i = 0; i < ctx->ncerts; i++)
    for (int j = 0; j < ctx->certs[i].nnames && used < outlen; j++)
      used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? ", " : "",
                               ctx->certs[i].names[j]);
}
/* }------ */


/* {------ client contexts */

static int client_new_session (SSL *ssl, SSL_SESSION *sess);


owl_tls_ctx_t *owl_tls_client_ctx (const owl_tls_client_opts_t *o, char *err, size_t errlen) {
  if (init_once()) {
    snprintf(err, errlen, "cannot set up OpenSSL");
    return NULL;
  }
  owl_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL || c == NULL) {
    free(ctx);
    SSL_CTX_free(c);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ctx->refs = 1;
  ctx->client = c;
  ctx->verify = o->verify;
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  /* sessions are kept by the connections (client_new_session), not here */
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, client_new_session);
  if (o->verify) {
    int ok = o->cafile ? SSL_CTX_load_verify_locations(c, o->cafile, NULL)
                       : SSL_CTX_set_default_verify_paths(c);
    if (ok != 1) {
      set_err(err, errlen, o->cafile ? "cannot load cafile" : "cannot load the system's CA store",
              o->cafile);
      goto fail;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  }
  if (o->cert != NULL) {
    if (SSL_CTX_use_certificate_chain_file(c, o->cert) != 1) {
      set_err(err, errlen, "cannot load cert", o->cert);
      goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, o->key ? o->key : o->cert, SSL_FILETYPE_PEM) != 1) {
      set_err(err, errlen, "cannot load key", o->key ? o->key : o->cert);
      goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
      ERR_clear_error();
      snprintf(err, errlen, "the key %s does not match the certificate %s",
               o->key ? o->key : o->cert, o->cert);
      goto fail;
    }
  }
  return ctx;
fail:
  owl_tls_ctx_unref(ctx);
  return NULL;
}
/* }------ */
/* }====== */


/* {====== the transport */

struct owl_tls {
  owl_transport_t t;            /* first: what the owner sees */
  owl_transport_t *lower;
  uv_loop_t *loop;
  SSL *ssl;
  owl_tls_ctx_t *ctx;
  const char *rin;              /* the lower read being handled */
  size_t rn;
  owl_buf_t rkeep;              /* ciphertext read and not consumed yet */
  owl_buf_t wq;                 /* ciphertext not handed to the lower yet */
  owl_buf_t wfly;               /* ciphertext in the lower's queued write */
  uv_buf_t pend[2];             /* the owner's queued write, not encrypted yet */
  unsigned npend;
  void (*hs_cb) (owl_tls_t *s, int status);
  void *data;
  void *session;                /* client: the newest session (counted) */
  char *sni;                    /* server: the ClientHello's name, during the handshake */
  owl_tls_t *pump_next;         /* on the pump list */
  char *err;                    /* why it failed (malloc'd then), or NULL */
  unsigned want_read : 1;       /* the owner reads */
  unsigned lower_reading : 1;
  unsigned hs_done : 1;
  unsigned flying : 1;          /* a lower write is queued */
  unsigned owner_write : 2;     /* 1: pend waits; 2: encrypted, in wq/wfly */
  unsigned eof : 1;             /* the end was told to the owner */
  unsigned failed : 1;
  unsigned closing : 1;
  unsigned pumped : 1;          /* on the pump list */
  unsigned shut : 1;            /* close_notify sent */
  unsigned first : 1;           /* no byte seen yet (server) */
  unsigned started : 1;         /* reading began, or the client handshake */
};

#define TLS(t) ((owl_tls_t *)(t))

static int ex_index = -1;       /* the owl_tls_t of an SSL */
static BIO_METHOD *bio_method;
static char plain[PLAIN_MAX];

static void process (owl_tls_t *s);
static void lower_flush (owl_tls_t *s);
static void progress (owl_tls_t *s);


/* {------ the BIO */

static int bio_write (BIO *b, const char *p, int n) {
  owl_tls_t *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (owl_buf_append(&s->wq, p, (size_t)n))
    return -1;
  return n;
}


static int bio_read (BIO *b, char *p, int n) {
  owl_tls_t *s = BIO_get_data(b);
  size_t want = (size_t)n;
  BIO_clear_retry_flags(b);
  if (s->rkeep.len > 0) {
    if (want > s->rkeep.len)
      want = s->rkeep.len;
    memcpy(p, s->rkeep.base, want);
    owl_buf_consume(&s->rkeep, want);
    if (s->rkeep.len == 0)
      owl_buf_free(&s->rkeep);
    return (int)want;
  }
  if (s->rn == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  if (want > s->rn)
    want = s->rn;
  memcpy(p, s->rin, want);
  s->rin += want;
  s->rn -= want;
  return (int)want;
}


static long bio_ctrl (BIO *b, int cmd, long num, void *ptr) {
  (void)b; (void)num; (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}


static int bio_create (BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}


static int init_once (void) {
  if (bio_method != NULL)
    return 0;
  ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "owinlua");
  if (bio_method == NULL)
    return -1;
  BIO_meth_set_write(bio_method, bio_write);
  BIO_meth_set_read(bio_method, bio_read);
  BIO_meth_set_ctrl(bio_method, bio_ctrl);
  BIO_meth_set_create(bio_method, bio_create);
  return 0;
}
/* }------ */


/* {------ the pump: deliveries deferred to the loop's idle phase */

static uv_idle_t pump;
static owl_tls_t *pump_head;


static void pump_remove (owl_tls_t *s) {
  if (!s->pumped)
    return;
  for (owl_tls_t **p = &pump_head; *p; p = &(*p)->pump_next)
    if (*p == s) {
      *p = s->pump_next;
      break;
    }
  s->pumped = 0;
  if (pump_head == NULL)
    uv_idle_stop(&pump);
}


static void on_pump (uv_idle_t *h) {
  (void)h;
  while (pump_head != NULL) {
    owl_tls_t *s = pump_head;
    pump_remove(s);
    s->rin = NULL;
    s->rn = 0;
    progress(s);
    process(s);
  }
}


static void pump_add (owl_tls_t *s) {
  if (s->pumped)
    return;
  if (pump.loop == NULL) {
    uv_idle_init(s->loop, &pump);
    uv_unref((uv_handle_t *)&pump);
  }
  s->pumped = 1;
  s->pump_next = pump_head;
  pump_head = s;
  uv_idle_start(&pump, on_pump);
}
/* }------ */


static void lower_reading (owl_tls_t *s) {
  /* during the handshake the lower reads whatever the owner wants */
  int want = !s->closing && !s->eof && !s->failed &&
             (s->hs_done ? s->want_read : s->started);
  if (want && !s->lower_reading)
    s->lower_reading = s->lower->vt->read_start(s->lower) == 0;
  else if (!want && s->lower_reading) {
    s->lower->vt->read_stop(s->lower);
    s->lower_reading = 0;
  }
}


/* Records why the connection failed (malloc'd on the first failure only: a
** healthy connection carries no room for it). */
static void set_error (owl_tls_t *s, const char *fmt, ...) {
  va_list ap;
  if (s->err == NULL && (s->err = malloc(ERR_MAX)) == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(s->err, ERR_MAX, fmt, ap);
  va_end(ap);
}


/* The failure of OpenSSL's last call, as one line into s->err. */
static void record_error (owl_tls_t *s, int ret) {
  int e = SSL_get_error(s->ssl, ret);
  unsigned long code = ERR_peek_last_error();
  if (e == SSL_ERROR_SSL && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(s->ssl);
    set_error(s, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  }
  else if (e == SSL_ERROR_SSL && code != 0) {
    const char *r = ERR_reason_error_string(code);
    set_error(s, "%s", r ? r : "TLS error");
  }
  else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
    set_error(s, "connection closed during the TLS handshake");
  else
    set_error(s, "TLS error %d", e);
  ERR_clear_error();
}


/* The connection cannot go on: the owner hears of it as a read error. */
static void fail (owl_tls_t *s, int code) {
  if (s->failed || s->closing)
    return;
  s->failed = 1;
  if (!s->hs_done && s->hs_cb != NULL) {
    void (*cb) (owl_tls_t *, int) = s->hs_cb;
    s->hs_cb = NULL;
    cb(s, code);
    return;
  }
  if (!s->hs_done && owl_tls_log != NULL && s->err != NULL)
    owl_tls_log(&s->t, s->err);
  s->eof = 1;
  s->t.on_read(&s->t, code, NULL);
}


/*
** A plain HTTP request on a TLS port: a 400 in plain text, as nginx does,
** so that a browser shows why.  What the kernel takes now; then the end.
*/
static void plain_http (owl_tls_t *s) {
  static char answer[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n"
    "Connection: close\r\n\r\nThis port speaks HTTPS: use https:// to reach it\n";
  uv_buf_t b = uv_buf_init(answer, sizeof answer - 1);
  set_error(s, "a plain HTTP request on a TLS port (answered 400)");
  s->lower->vt->try_write(s->lower, &b, 1);
  fail(s, UV_EPROTO);
}


static void handshake (owl_tls_t *s) {
  int r = SSL_do_handshake(s->ssl);
  lower_flush(s);
  if (r == 1) {
    s->hs_done = 1;
    free(s->sni);
    s->sni = NULL;
    if (s->hs_cb != NULL) {
      void (*cb) (owl_tls_t *, int) = s->hs_cb;
      s->hs_cb = NULL;
      cb(s, 0);
    }
    return;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return;
  record_error(s, r);
  fail(s, UV_EPROTO);
}


/* Reads what OpenSSL can decrypt now and hands it up while the owner reads. */
static void deliver (owl_tls_t *s) {
  while (!s->closing && !s->failed && !s->eof && s->want_read) {
    size_t n = 0, got;
    int r = 1;
    while (n < PLAIN_MAX && (r = SSL_read_ex(s->ssl, plain + n, PLAIN_MAX - n, &got)) == 1)
      n += got;
    if (n > 0) {
      /* the owner may write meanwhile, which resets OpenSSL's error state:
      ** whatever ended the reads shows again on the next call */
      s->t.on_read(&s->t, (ssize_t)n, plain);
      continue;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {  /* close_notify: the end */
      s->eof = 1;
      s->t.on_read(&s->t, UV_EOF, NULL);
      return;
    }
    record_error(s, r);
    fail(s, UV_EPROTO);
    return;
  }
}


/* Drives the connection with the ciphertext at s->rin (and s->rkeep). */
static void process (owl_tls_t *s) {
  if (s->closing || s->failed)
    return;
  if (!s->hs_done) {
    handshake(s);
    if (s->hs_done)
      progress(s);                  /* an answer queued before the handshake */
  }
  if (s->hs_done) {
    deliver(s);
    lower_flush(s);                 /* tickets, alerts, key updates */
  }
  if (s->rn > 0 && !s->closing) {  /* not consumed: keep it */
    if (owl_buf_append(&s->rkeep, s->rin, s->rn))
      fail(s, UV_ENOMEM);
  }
  s->rin = NULL;
  s->rn = 0;
  if (!s->closing)
    lower_reading(s);
}


static void on_lower_read (owl_transport_t *lower, ssize_t n, char *p) {
  owl_tls_t *s = lower->owner;
  if (n < 0) {
    if (!s->hs_done) {
      /* a peer that connects and leaves without a byte is no news */
      if (n == UV_EOF && !s->first)
        set_error(s, "closed during the TLS handshake");
      else if (n != UV_EOF)
        set_error(s, "%s during the TLS handshake", uv_strerror((int)n));
      fail(s, (int)n);
    }
    else if (!s->eof) {
      s->eof = 1;
      s->t.on_read(&s->t, n, NULL);
    }
    return;
  }
  if (s->first && !s->hs_done && s->hs_cb == NULL) {
    s->first = 0;
    unsigned char c0 = (unsigned char)p[0];
    if (c0 >= 'A' && c0 <= 'Z') {
      plain_http(s);
      return;
    }
  }
  s->first = 0;
  if (s->rkeep.len > 0) {
    if (owl_buf_append(&s->rkeep, p, (size_t)n)) {
      fail(s, UV_ENOMEM);
      return;
    }
  }
  else {
    s->rin = p;
    s->rn = (size_t)n;
  }
  process(s);
}


/* {------ writing below */

static void on_lower_written (owl_transport_t *lower, int status);


/* Hands s->wq to the lower transport: what the kernel takes now, the rest
** in one queued write. */
static void lower_flush (owl_tls_t *s) {
  if (s->flying || s->wq.len == 0 || s->closing)
    return;
  uv_buf_t b = uv_buf_init(s->wq.base, (unsigned int)s->wq.len);
  int w = s->lower->vt->try_write(s->lower, &b, 1);
  if (w < 0) {
    fail(s, w);
    return;
  }
  owl_buf_consume(&s->wq, (size_t)w);
  if (s->wq.len == 0) {
    owl_buf_free(&s->wq);
    return;
  }
  owl_buf_t tmp = s->wfly;          /* swap: no copy */
  s->wfly = s->wq;
  s->wq = tmp;
  s->wq.len = 0;
  b = uv_buf_init(s->wfly.base, (unsigned int)s->wfly.len);
  int err = s->lower->vt->write(s->lower, &b, 1);
  if (err) {
    fail(s, err);
    return;
  }
  s->flying = 1;
}


/* Encrypts the owner's bytes into s->wq; 0 or an error. */
static int encrypt (owl_tls_t *s, const uv_buf_t *b, unsigned nb) {
  size_t total = 0;
  for (unsigned i = 0; i < nb; i++)
    total += b[i].len;
  if (nb > 1 && total <= 16384) {   /* small pieces: one record */
    char one[16384];
    size_t k = 0;
    for (unsigned i = 0; i < nb; i++) {
      memcpy(one + k, b[i].base, b[i].len);
      k += b[i].len;
    }
    uv_buf_t g = uv_buf_init(one, (unsigned int)k);
    return encrypt(s, &g, 1);
  }
  for (unsigned i = 0; i < nb; i++) {
    size_t done;
    if (b[i].len == 0)
      continue;
    int r = SSL_write_ex(s->ssl, b[i].base, b[i].len, &done);
    if (r != 1) {
      record_error(s, r);
      return UV_EPROTO;
    }
  }
  return 0;
}


static int tls_try_write (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  owl_tls_t *s = TLS(t);
  if (s->failed || s->closing || s->shut)
    return UV_EPIPE;
  if (!s->hs_done || s->flying || s->owner_write)
    return 0;
  int err = encrypt(s, b, nb);
  if (err)
    return err;
  lower_flush(s);
  if (s->failed)
    return UV_EPIPE;
  size_t total = 0;
  for (unsigned i = 0; i < nb; i++)
    total += b[i].len;
  return (int)total;
}


/* The owner's queued write is encrypted and queued below. */
static int start_owner_write (owl_tls_t *s) {
  int err = encrypt(s, s->pend, s->npend);
  s->npend = 0;
  if (err)
    return err;
  s->owner_write = 2;
  lower_flush(s);
  return 0;
}


static int tls_write (owl_transport_t *t, const uv_buf_t *b, unsigned nb) {
  owl_tls_t *s = TLS(t);
  if (s->failed || s->closing || s->shut)
    return UV_EPIPE;
  if (s->owner_write || nb > 2)
    return UV_EINVAL;
  memcpy(s->pend, b, nb * sizeof *b);
  s->npend = nb;
  s->owner_write = 1;
  if (s->hs_done && !s->flying && s->wq.len == 0) {
    int err = start_owner_write(s);
    if (err)
      s->owner_write = 0;
    else if (!s->flying)
      pump_add(s);                  /* all written at once: tell it soon */
    return err;
  }
  return 0;
}


/* The owner's write completed if everything is written below. */
static void owner_written (owl_tls_t *s) {
  if (s->owner_write == 2 && !s->flying && s->wq.len == 0) {
    s->owner_write = 0;
    s->t.on_written(&s->t, 0);
  }
}


/*
** Moves the output on when nothing is in flight below: what OpenSSL wrote,
** then the owner's queued write, then its completion.  From callbacks only
** (never inside a call of the owner's).
*/
static void progress (owl_tls_t *s) {
  if (s->flying || s->closing || s->failed)
    return;
  if (s->wq.len > 0) {
    lower_flush(s);
    if (s->flying || s->failed)
      return;
  }
  if (s->owner_write == 1 && s->hs_done) {
    int err = start_owner_write(s);
    if (err) {
      s->owner_write = 0;
      s->t.on_written(&s->t, err);
      return;
    }
    if (s->flying)
      return;
  }
  owner_written(s);
}


static void on_lower_written (owl_transport_t *lower, int status) {
  owl_tls_t *s = lower->owner;
  s->flying = 0;
  s->wfly.len = 0;
  if (s->closing)
    return;
  if (status < 0) {
    s->failed = 1;
    if (s->owner_write) {
      s->owner_write = 0;
      s->t.on_written(&s->t, status);
    }
    return;
  }
  if (s->wq.len == 0)               /* idle below: keep no buffer */
    owl_buf_free(&s->wfly);
  progress(s);
}
/* }------ */


static int tls_read_start (owl_transport_t *t) {
  owl_tls_t *s = TLS(t);
  if (s->closing)
    return UV_EINVAL;
  s->want_read = 1;
  s->started = 1;
  if (s->hs_done && (s->rkeep.len > 0 || SSL_pending(s->ssl) > 0))
    pump_add(s);
  lower_reading(s);
  return 0;
}


static void tls_read_stop (owl_transport_t *t) {
  owl_tls_t *s = TLS(t);
  s->want_read = 0;
  if (s->hs_done)
    lower_reading(s);
}


static int tls_shutdown (owl_transport_t *t) {
  owl_tls_t *s = TLS(t);
  if (s->closing || s->failed)
    return UV_EPIPE;
  if (s->hs_done && !s->shut) {
    s->shut = 1;
    SSL_shutdown(s->ssl);           /* close_notify into wq */
    ERR_clear_error();
    lower_flush(s);
  }
  return s->lower->vt->shutdown(s->lower);    /* after the queued writes */
}


static void on_lower_closed (owl_transport_t *lower) {
  owl_tls_t *s = lower->owner;
  s->t.on_closed(&s->t);            /* the owner may free lower now */
  /* A connection that ended without a TLS failure leaves its session
  ** resumable: OpenSSL would mark it spoiled when no close_notify went
  ** out (a pooled connection's session, kept by owin.http, is reused by the
  ** next connection to the same place). */
  if (s->hs_done && !s->failed)
    SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(s->ssl);
  owl_tls_ctx_unref(s->ctx);
  owl_tls_session_free(s->session);
  free(s->sni);
  free(s->err);
  owl_buf_free(&s->rkeep);
  owl_buf_free(&s->wq);
  owl_buf_free(&s->wfly);
  free(s);
}


static void tls_close (owl_transport_t *t) {
  owl_tls_t *s = TLS(t);
  if (s->closing)
    return;
  s->closing = 1;
  pump_remove(s);
  s->lower->vt->close(s->lower);
}


static int tls_fileno (owl_transport_t *t, uv_os_fd_t *fd) {
  (void)t; (void)fd;
  return UV_ENOTSUP;                /* bytes must go through OpenSSL */
}


static int tls_peername (owl_transport_t *t, struct sockaddr *sa, int *len) {
  return TLS(t)->lower->vt->peername(TLS(t)->lower, sa, len);
}


static int tls_sockname (owl_transport_t *t, struct sockaddr *sa, int *len) {
  return TLS(t)->lower->vt->sockname(TLS(t)->lower, sa, len);
}


static const owl_transport_vt tls_vt = {
  tls_read_start, tls_read_stop, tls_try_write, tls_write, tls_shutdown, tls_close,
  tls_fileno, tls_peername, tls_sockname
};


owl_tls_t *owl_tls_new (owl_tls_ctx_t *ctx, owl_transport_t *lower, uv_loop_t *loop) {
  if (init_once())
    return NULL;
  owl_tls_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  int server = ctx->client == NULL;
  SSL_CTX *base = server ? ctx->certs[0].ctx : ctx->client;
  s->ssl = SSL_new(base);
  BIO *bio = BIO_new(bio_method);
  if (s->ssl == NULL || bio == NULL) {
    SSL_free(s->ssl);
    BIO_free(bio);
    free(s);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_data(bio, s);
  SSL_set_bio(s->ssl, bio, bio);
  SSL_set_ex_data(s->ssl, ex_index, s);
  if (server)
    SSL_set_accept_state(s->ssl);
  else
    SSL_set_connect_state(s->ssl);
  owl_tls_ctx_ref(ctx);
  s->ctx = ctx;
  s->loop = loop;
  s->lower = lower;
  s->first = 1;
  s->t.vt = &tls_vt;
  s->t.is_pipe = lower->is_pipe;
  lower->owner = s;
  lower->on_read = on_lower_read;
  lower->on_written = on_lower_written;
  lower->on_closed = on_lower_closed;
  return s;
}


owl_transport_t *owl_tls_transport (owl_tls_t *s) {
  return &s->t;
}


int owl_tls_connect (owl_tls_t *s, const char *name, const unsigned char *alpn,
                     size_t alpn_len, void *session,
                     void (*cb) (owl_tls_t *s, int status), void *data) {
  s->hs_cb = cb;
  s->data = data;
  s->first = 0;
  s->started = 1;
  if (name != NULL && *name) {
    int ip = strspn(name, "0123456789.") == strlen(name) || strchr(name, ':') != NULL;
    if (!ip)
      SSL_set_tlsext_host_name(s->ssl, name);
    if (s->ctx->verify) {
      X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
      if (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1 : SSL_set1_host(s->ssl, name) != 1) {
        ERR_clear_error();
        return UV_EINVAL;
      }
    }
  }
  if (alpn != NULL && alpn_len > 0 && SSL_set_alpn_protos(s->ssl, alpn, (unsigned)alpn_len) != 0)
    return UV_EINVAL;
  if (session != NULL)
    SSL_set_session(s->ssl, session);
  handshake(s);                     /* the ClientHello into wq, out */
  if (!s->failed)
    lower_reading(s);
  return 0;
}


/*
** Keeps the host name of the ClientHello's server_name extension (RFC 6066
** section 3: a list of 2 bytes of length, then entries of a type byte, 0
** for a host name, 2 bytes of length and the name) for ticket_decrypted.
*/
static int client_hello_cb (SSL *ssl, int *alert, void *arg) {
  owl_tls_t *s = SSL_get_ex_data(ssl, ex_index);
  const unsigned char *p;
  size_t n;
  (void)alert; (void)arg;
  if (s == NULL || s->sni != NULL ||
      !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n) || n < 2)
    return SSL_CLIENT_HELLO_SUCCESS;
  size_t list = (size_t)p[0] << 8 | p[1];
  p += 2;
  n -= 2;
  if (list > n)
    return SSL_CLIENT_HELLO_SUCCESS;    /* OpenSSL refuses it later */
  while (list >= 3) {
    size_t len = (size_t)p[1] << 8 | p[2];
    if (len + 3 > list)
      break;
    if (p[0] == TLSEXT_NAMETYPE_host_name && len > 0 && len < 256 &&
        memchr(p + 3, 0, len) == NULL) {
      s->sni = malloc(len + 1);
      if (s->sni != NULL) {
        memcpy(s->sni, p + 3, len);
        s->sni[len] = 0;
      }
      break;
    }
    p += 3 + len;
    list -= 3 + len;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}


static const char *client_sni (SSL *ssl) {
  owl_tls_t *s = SSL_get_ex_data(ssl, ex_index);
  return s ? s->sni : NULL;
}


static int client_new_session (SSL *ssl, SSL_SESSION *sess) {
  owl_tls_t *s = SSL_get_ex_data(ssl, ex_index);
  if (s == NULL)
    return 0;
  owl_tls_session_free(s->session);
  s->session = sess;
  return 1;                         /* we keep the reference */
}


void *owl_tls_data (owl_tls_t *s) {
  return s->data;
}


const char *owl_tls_error (owl_tls_t *s) {
  return s->err ? s->err : "";
}


int owl_tls_done (owl_tls_t *s) {
  return s->hs_done;
}


const char *owl_tls_version (owl_tls_t *s) {
  return SSL_get_version(s->ssl);
}


const char *owl_tls_cipher (owl_tls_t *s) {
  return SSL_get_cipher_name(s->ssl);
}


const char *owl_tls_alpn (owl_tls_t *s, size_t *len) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(s->ssl, &p, &n);
  *len = n;
  return n > 0 ? (const char *)p : NULL;
}


int owl_tls_reused (owl_tls_t *s) {
  return SSL_session_reused(s->ssl);
}


char *owl_tls_peer_pem (owl_tls_t *s, size_t *len) {
  X509 *x = SSL_get0_peer_certificate(s->ssl);
  if (x == NULL)
    return NULL;
  BIO *b = BIO_new(BIO_s_mem());
  char *out = NULL;
  if (b != NULL && PEM_write_bio_X509(b, x) == 1) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
      memcpy(out, p, (size_t)n);
      out[n] = 0;
      *len = (size_t)n;
    }
  }
  BIO_free(b);
  ERR_clear_error();
  return out;
}


const char *owl_tls_verify_error (owl_tls_t *s) {
  if (SSL_get0_peer_certificate(s->ssl) == NULL)
    return NULL;
  long v = SSL_get_verify_result(s->ssl);
  return v == X509_V_OK ? NULL : X509_verify_cert_error_string(v);
}


void *owl_tls_session (owl_tls_t *s) {
  SSL_SESSION *sess = s->session;
  if (sess == NULL)
    sess = SSL_get1_session(s->ssl);
  else
    SSL_SESSION_up_ref(sess);
  if (sess != NULL && !SSL_SESSION_is_resumable(sess)) {
    SSL_SESSION_free(sess);
    return NULL;
  }
  return sess;
}


void *owl_tls_session_ref (void *session) {
  SSL_SESSION_up_ref(session);
  return session;
}


void owl_tls_session_free (void *session) {
  if (session != NULL)
    SSL_SESSION_free(session);
}
/* }====== */
