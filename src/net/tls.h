/*
** TLS (tls.c): a transport over another transport, OpenSSL driven through
** a BIO of our own that reads from the lower transport's read buffer and
** writes into a buffer we hand to it.  A connection (conn.c) or a cosocket
** (client/cosock.c) wraps its TCP transport in one and goes on reading and
** writing plaintext through the same interface (transport.h).
**
** Contexts.  A server context holds one SSL_CTX per certificate (chosen by
** SNI from each certificate's names; the first is the default), the
** options, and the file names, so that it can be loaded again (SIGHUP).  A
** client context holds the verification settings.  Both are counted: every
** connection holds its context, so a reload frees the old one only when
** its last connection is gone.
**
** Session tickets are encrypted with keys that every process of one server
** derives from a shared secret, and that change every hour: a ratchet
** replaces the secret by a hash of itself each hour, so a secret read out of
** memory cannot decrypt tickets of the hours before.  The master hands its
** secret to each worker it starts (owl_tls_ticket_export/import).
*/

#ifndef OWL_TLS_H
#define OWL_TLS_H

#include <stddef.h>

#include "net/transport.h"

typedef struct owl_tls owl_tls_t;
typedef struct owl_tls_ctx owl_tls_ctx_t;

enum { OWL_TLS_CLIENT_CERT_NONE, OWL_TLS_CLIENT_CERT_OPTIONAL, OWL_TLS_CLIENT_CERT_REQUIRE };

typedef struct owl_tls_server_opts {
  const char *const *certs;     /* PEM files, chain included */
  const char *const *keys;      /* PEM keys, paired with certs */
  int ncerts;
  const char *password_file;    /* first line: the keys' passphrase; or NULL */
  const char *ciphers;          /* TLS 1.2 cipher string; NULL: the default */
  int min_version;              /* 12 or 13 */
  const char *client_ca;        /* PEM CAs for client certificates; or NULL */
  int client_cert;              /* OWL_TLS_CLIENT_CERT_* */
} owl_tls_server_opts_t;

typedef struct owl_tls_client_opts {
  int verify;                   /* check the chain and the host name */
  const char *cafile;           /* NULL: the system's store */
  const char *cert, *key;       /* a client certificate, or NULL */
} owl_tls_client_opts_t;

/* {====== contexts */

/* A server context, or NULL with the reason in err (one line). */
owl_tls_ctx_t *owl_tls_server_ctx (const owl_tls_server_opts_t *o, char *err, size_t errlen);
/* The same files and options loaded again (a reload). */
owl_tls_ctx_t *owl_tls_server_reload (owl_tls_ctx_t *old, char *err, size_t errlen);
/* A client context, or NULL with the reason in err. */
owl_tls_ctx_t *owl_tls_client_ctx (const owl_tls_client_opts_t *o, char *err, size_t errlen);
void owl_tls_ctx_ref (owl_tls_ctx_t *ctx);
void owl_tls_ctx_unref (owl_tls_ctx_t *ctx);
/* The certificates' names, for the log ("localhost, *.example.test"). */
void owl_tls_ctx_names (owl_tls_ctx_t *ctx, char *out, size_t outlen);
/* }====== */


/* {====== connections */

/*
** Wraps lower (which must be open and not reading) in a TLS transport of
** ctx; lower's owner and callbacks become the TLS transport's.  Set the
** owner and callbacks of the returned transport (owl_tls_transport) before
** reading.  A server handshake runs as bytes arrive once reading starts; a
** client one with owl_tls_connect.  NULL when out of memory (lower is
** untouched then).
*/
owl_tls_t *owl_tls_new (owl_tls_ctx_t *ctx, owl_transport_t *lower, uv_loop_t *loop);
owl_transport_t *owl_tls_transport (owl_tls_t *s);

/*
** A client handshake: SNI and host check for name (an IP address is checked
** as one), ALPN protocols (wire format: length-prefixed), a session to
** resume (or NULL).  cb(s, 0) when done, or cb(s, error) with the reason in
** owl_tls_error; it is not called if the transport closes first.
*/
int owl_tls_connect (owl_tls_t *s, const char *name, const unsigned char *alpn,
                     size_t alpn_len, void *session,
                     void (*cb) (owl_tls_t *s, int status), void *data);
void *owl_tls_data (owl_tls_t *s);
/* Why the handshake or the connection failed ("" if it did not). */
const char *owl_tls_error (owl_tls_t *s);

int owl_tls_done (owl_tls_t *s);            /* the handshake completed */
const char *owl_tls_version (owl_tls_t *s); /* "TLSv1.3" */
const char *owl_tls_cipher (owl_tls_t *s);
/* The negotiated ALPN protocol (not terminated), or NULL. */
const char *owl_tls_alpn (owl_tls_t *s, size_t *len);
int owl_tls_reused (owl_tls_t *s);          /* the session was resumed */
/* The peer's certificate as PEM into a malloc'd string (caller frees),
** NULL when it sent none. */
char *owl_tls_peer_pem (owl_tls_t *s, size_t *len);
/* The verification error of the peer's certificate, NULL when it verified
** (or none was asked for). */
const char *owl_tls_verify_error (owl_tls_t *s);
/* The newest session of a client connection (a counted SSL_SESSION), for
** reuse by another connection; owl_tls_session_free releases it. */
void *owl_tls_session (owl_tls_t *s);
void owl_tls_session_free (void *session);
/* One more reference to session; returns it. */
void *owl_tls_session_ref (void *session);
/* }====== */


/* {====== process-wide */

/* Where a server connection's failed handshake is told (set by the
** server): the TLS transport (its owner is the connection), and one line. */
extern void (*owl_tls_log) (owl_transport_t *t, const char *msg);
/* The ticket secret, to hand to a worker: TICKET_STATE bytes. */
#define OWL_TLS_TICKET_STATE 40
void owl_tls_ticket_export (unsigned char out[OWL_TLS_TICKET_STATE]);
void owl_tls_ticket_import (const unsigned char in[OWL_TLS_TICKET_STATE]);
/* }====== */

#endif
