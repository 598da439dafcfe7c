/*
** gzip for Lua (gzip_lua.c): codec/gzip.c behind a userdata.  It uses only
** the codec layer and Lua, so owin.core and the unit-test module
** build/owl_codec.so carry the same binding.
*/

#ifndef OWL_RUNTIME_GZIP_LUA_H
#define OWL_RUNTIME_GZIP_LUA_H

#include <lua.h>

/* Adds gzip and gunzip to the table on top of the stack. */
void owl_open_gzip (lua_State *L);

#endif
