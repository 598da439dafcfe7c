/*
** owl_codec: a thin Lua binding of the pure protocol codecs, for unit specs
** (spec/unit/).  It is built as build/owl_codec.so and is not part of the
** server.
**
**   local codec = require("owl_codec")
**   codec.chunked(pieces [, max_line]) -> body, consumed, done | nil, err
*/

#include <lua.h>
#include <lauxlib.h>

#include "chunked.h"


static int collect (void *ud, const char *at, size_t len) {
  luaL_addlstring((luaL_Buffer *)ud, at, len);
  return 0;
}


/*
** chunked(pieces, max_line): feeds each string of the array `pieces` to one
** decoder, as separate reads.  Returns the decoded body, the bytes consumed
** and whether the body ended; nil and an error at the first framing error.
*/
static int l_chunked (lua_State *L) {
  owl_chunked_t d;
  luaL_Buffer b;
  lua_Integer consumed = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  owl_chunked_init(&d, (size_t)luaL_optinteger(L, 2, 4096));
  lua_Integer n = luaL_len(L, 1);
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n && !owl_chunked_done(&d); i++) {
    size_t len;
    lua_geti(L, 1, i);
    const char *p = luaL_checklstring(L, -1, &len);
    lua_pop(L, 1);                  /* the table still anchors the string */
    long used = owl_chunked_decode(&d, p, len, collect, &b);
    if (used < 0) {
      luaL_pushresult(&b);
      lua_pop(L, 1);                /* what was decoded before the error */
      lua_pushnil(L);
      lua_pushfstring(L, "framing error in piece %d", (int)i);
      return 2;
    }
    consumed += used;
  }
  luaL_pushresult(&b);
  lua_pushinteger(L, consumed);
  lua_pushboolean(L, owl_chunked_done(&d));
  return 3;
}


int luaopen_owl_codec (lua_State *L);

int luaopen_owl_codec (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"chunked", l_chunked},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
