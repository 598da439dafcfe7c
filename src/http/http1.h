/*
** The HTTP/1.1 protocol handler (http1.c) as the layers above see it.
*/
#ifndef OWL_HTTP_HTTP1_H
#define OWL_HTTP_HTTP1_H

#include "runtime/runtime.h"

/* {====== the HTTP/1.1 handler (http1.c), as the request cycle sees it */

/* What the handler calls in the request cycle (request.c sets them when
** owin.core opens, so that calls point down: the cycle uses the handler). */
typedef struct owl_req_ops {
  /* the head is parsed: builds the request, or NULL (out of memory) */
  owl_req_t *(*begin) (owl_conn_t *c);
  void (*start) (owl_req_t *r);                 /* the app's coroutine */
  void (*wake_reader) (owl_req_t *r);           /* body bytes or its end */
  void (*wake_writer) (owl_req_t *r);           /* the output drained */
  void (*detach) (owl_req_t *r, int err);       /* the connection failed */
} owl_req_ops_t;
extern owl_req_ops_t owl_h1_req;

/* A connection from listener; tls: its TLS context, or NULL. */
void owl_h1_accept (uv_stream_t *listener, owl_tls_ctx_t *tls);
/* Serves fd, a TCP socket accepted outside libuv (the queue drained at shutdown). */
void owl_h1_adopt (owl_server_t *s, uv_os_sock_t fd, owl_tls_ctx_t *tls);
/* The parsed head: field 0 is the request-target, then a lowercase name
** and its value (OWS trimmed) for each header line. */
size_t owl_h1_nfields (owl_conn_t *c);
const char *owl_h1_field (owl_conn_t *c, size_t i, size_t *len);
int owl_h1_method (owl_conn_t *c);          /* llhttp_method_t */
int owl_h1_minor (owl_conn_t *c);           /* HTTP/1.x */
/* 1: Connection: upgrade with an Upgrade header; 2: a valid WebSocket handshake */
int owl_h1_upgrade (owl_conn_t *c);
/* The keep-alive decision: what the request said, until a response or the
** server says otherwise. */
int owl_h1_keepalive (owl_conn_t *c);
void owl_h1_no_keepalive (owl_conn_t *c);
/* Appends a response made by the server (errors); close: then close. */
void owl_h1_canned (owl_conn_t *c, int status, const char *extra,
                    const char *body, size_t blen, int close);
/* The response of c's request ended; keep: the connection may be reused. */
void owl_h1_request_done (owl_conn_t *c, int keep);
/* Runs the parse cycle after an app wait ended. */
void owl_h1_continue (owl_conn_t *c);
/* The request read some body: reading may go on. */
void owl_h1_resume_reading (owl_conn_t *c);
/* A 101 went out: the connection is another handler's now. */
void owl_h1_upgraded (owl_conn_t *c);
/* }====== */

#endif
