/*
** The HTTP client's C half (httpc.c): the response parser's Lua binding,
** which lua/owin/http.lua drives over cosockets.  It uses only the codec
** layer and Lua, so the unit-test module build/owl_codec.so carries it
** too.
*/

#ifndef OWL_CLIENT_HTTPC_H
#define OWL_CLIENT_HTTPC_H

#include <lua.h>

/* Adds http_response_parser to the table on top of the stack. */
void owl_open_httpc (lua_State *L);

#endif
