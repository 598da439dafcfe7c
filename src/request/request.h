/*
** The request cycle: building the env, the app's coroutine, the response
** and its streams, as the server assembles them.
*/
#ifndef OWL_REQUEST_REQUEST_H
#define OWL_REQUEST_REQUEST_H

#include "http/http1.h"
#include "http/websocket.h"

/* {====== the request cycle (request.c, response.c, env.c) */
/* Anchors the request userdata on top of L (popped) while it runs. */
void owl_req_anchor (lua_State *L, owl_req_t *r);
/* The app returned: the body framed to its end (response.c). */
void owl_req_finish (lua_State *L, owl_req_t *r);
/* Starts the app's coroutine. */
void owl_req_start (owl_req_t *r);
/* Wakes a reader waiting for body bytes, end of body or an error. */
void owl_req_wake_reader (owl_req_t *r);
/* Wakes a writer waiting for the output to drain. */
void owl_req_wake_writer (owl_req_t *r);
/* The connection went away: fire CallCancelled, wake waiters with err. */
void owl_req_detach (owl_req_t *r, int err);
/* Fires the request's CallCancelled token if it was ever materialized. */
void owl_req_cancel (owl_req_t *r);
/* Commits/serializes/finishes (run inside the request coroutine). */
void owl_req_commit (lua_State *L, owl_req_t *r);
void owl_req_serialize (lua_State *L, owl_req_t *r, int final);
int owl_req_body_write (lua_State *L, owl_req_t *r, const char *p, size_t n);
/* Counts n body bytes against the app's Content-Length (raises past it). */
void owl_req_count (lua_State *L, owl_req_t *r, uint64_t n);
/* Appends the head of a chunk of n bytes; 0 or UV_ENOMEM. */
int owl_req_chunk_head (owl_conn_t *c, uint64_t n);
void owl_req_continue (owl_req_t *r);
void owl_open_request (lua_State *L);
/* Frees the body buffers of requests never released (at exit). */
void owl_req_drain (owl_server_t *s);
void owl_open_env (lua_State *L);



/* }====== */


/* {====== streams, files, 101 answers */
void owl_open_stream (lua_State *L);
void owl_sendfile_push (lua_State *L, int ri);
void owl_open_fs (lua_State *L);

/* upgrade.c: 101 answers */
void owl_upgrade_env (lua_State *L, owl_conn_t *c, int env, int ri);
int owl_upgrade_run (lua_State *L, owl_req_t *r);
void owl_upgrade_end (lua_State *L, owl_req_t *r, unsigned code);
void owl_open_upgrade (lua_State *L);
/* Pushes an input stream of r, whose userdata is on top. */
void owl_stream_push (lua_State *L, owl_req_t *r);

/* }====== */

#endif
