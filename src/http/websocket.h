/*
** WebSockets and the opaque upgrade (websocket.c): the handler a 101
** swaps in, and the socket's Lua API.
*/
#ifndef OWL_HTTP_WEBSOCKET_H
#define OWL_HTTP_WEBSOCKET_H

#include "runtime/runtime.h"

/* websocket.c: a connection after a 101 */
void owl_wsock_new (lua_State *L, owl_conn_t *c, int reqidx, int raw,
                    const owl_ws_deflate_t *pmd);
void owl_wsock_wake (owl_wsock_t *w);
void owl_wsock_env (lua_State *L, int idx, int raw);
void owl_wsock_end (lua_State *L, int idx, unsigned code);
void owl_open_websocket (lua_State *L);

#endif
