/*
** The server: listeners, stops, workers, and owin.core's assembly.
*/
#ifndef OWL_SERVER_SERVER_H
#define OWL_SERVER_SERVER_H

#include "request/request.h"

#define OWL_LISTEN_HOLD 2       /* bind and listen, accept nothing: the master */
#define OWL_LISTEN_FD 4         /* an inherited listening socket, "fd:N:tcp:..." or
                                   "fd:N:unix:/path" (a worker) */
/* Checks a listen spec without binding: 0 or UV_EINVAL. */
int owl_server_check_listen (const char *spec);
int owl_server_listen (owl_server_t *s, const char *spec, int flags,
                       char *out, size_t outlen);
int owl_server_listener_spec (owl_server_t *s, int i, char *out, size_t outlen);
void owl_server_unlisten (owl_server_t *s, int drain);
/* A graceful stop, as on SIGTERM (nothing if one is under way). */
void owl_server_stop (owl_server_t *s);
/* The same, as a signal: a second one while stopping stops at once. */
void owl_server_shutdown (owl_server_t *s);
/* master.c: core.master, core.worker, core.worker_ready, core.cpus */
void owl_open_master (lua_State *L);
void owl_server_init (owl_server_t *s, lua_State *L);
int luaopen_owin_core (lua_State *L);

#endif
