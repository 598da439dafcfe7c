/*
** Talking to the outside: cosockets (cosock.c), UDP (udp.c) and names
** (dns.c), for Lua, on the loop.  Every wait yields the calling task
** (runtime/task.c).
*/
#ifndef OWL_CLIENT_CLIENT_H
#define OWL_CLIENT_CLIENT_H

#include "runtime/runtime.h"

/* Each adds its functions to the owin.core table on top of L. */
void owl_open_cosock (lua_State *L);
void owl_open_udp (lua_State *L);
void owl_open_dns (lua_State *L);
void owl_open_pg (lua_State *L);          /* pg.c: owin.pg's primitives */
/* Pushes the address and port of sa (IPv4 or IPv6); returns 2 (dns.c). */
int owl_push_sockaddr (lua_State *L, const struct sockaddr *sa);
/* Closes the pooled connections (at exit). */
void owl_cosock_teardown (void);
void owl_udp_teardown (void);
void owl_pg_teardown (void);

#endif
