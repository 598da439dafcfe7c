/*
** gzip streams for Lua: codec/gzip.c behind a userdata.  lua/owin/compress.lua
** is its user; the unit specs drive it through build/owl_codec.so.
**
**   local d = core.gzip([level])   level 1 to 9, default 6
**   d:write(data)  -> the compressed bytes zlib gave back ("" while it
**                     gathers input for a block)
**   d:flush()      -> the bytes up to a sync-flush point: everything written
**                     so far can be decoded from the output
**   d:finish([data]) -> the last bytes and the gzip trailer; zlib's state
**                     (about 256 KiB) is freed at once
**   d:close()      -> frees zlib's state without a trailer (also __close
**                     and __gc)
**   core.gunzip(data [, max]) -> content, consumed | nil, err, code
**                     one gzip member; max bounds the content (default
**                     64 MiB); err is "EINVAL: not a valid gzip stream" or
**                     "E2BIG: more than MAX bytes when decompressed"
**
** A deflater used after finish or close raises.
*/

#include <errno.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec/gzip.h"
#include "runtime/gzip_lua.h"


#define GZIP_T "owinlua.Gzip"
#define GUNZIP_MAX ((lua_Integer)64 << 20)


typedef struct lgzip {
  owl_gzip_t g;
  owl_buf_t out;                /* reused: emptied after each call */
} lgzip_t;


/* The deflater at idx, still open; raises otherwise. */
static lgzip_t *check_open (lua_State *L, int idx) {
  lgzip_t *d = luaL_checkudata(L, idx, GZIP_T);
  if (d->g.z == NULL)
    luaL_error(L, "gzip stream used after %s", d->g.finished ? "finish" : "close");
  return d;
}


/*
** Deflates the optional string at 2 with `flush`.  Expects the deflater
** at 1; leaves the output string on top.
*/
static int run (lua_State *L, int flush) {
  lgzip_t *d = check_open(L, 1);
  size_t n = 0;
  const char *s = luaL_optlstring(L, 2, "", &n);
  int r = owl_gzip_deflate(&d->g, s, n, flush, &d->out);
  if (r) {
    owl_gzip_end(&d->g);
    owl_buf_free(&d->out);
    return luaL_error(L, "gzip: %s", r == -ENOMEM ? "not enough memory" : "deflate failed");
  }
  lua_pushlstring(L, d->out.base ? d->out.base : "", d->out.len);
  if (flush == OWL_GZIP_FINISH || d->out.cap > 4 * 65536)
    owl_buf_free(&d->out);      /* finished, or grown by one large write */
  else
    d->out.len = 0;
  return 1;
}


static int d_write (lua_State *L) {
  luaL_checktype(L, 2, LUA_TSTRING);
  return run(L, OWL_GZIP_NONE);
}


static int d_flush (lua_State *L) {
  return run(L, OWL_GZIP_SYNC);
}


static int d_finish (lua_State *L) {
  return run(L, OWL_GZIP_FINISH);
}


/* d:close(), __close and __gc: frees what the deflater holds; no results. */
static int d_close (lua_State *L) {
  lgzip_t *d = luaL_checkudata(L, 1, GZIP_T);
  owl_gzip_end(&d->g);
  owl_buf_free(&d->out);
  return 0;
}


static int d_tostring (lua_State *L) {
  lgzip_t *d = luaL_checkudata(L, 1, GZIP_T);
  lua_pushfstring(L, GZIP_T " (%s)", d->g.z ? "open" : d->g.finished ? "finished" : "closed");
  return 1;
}


/* gzip([level]) -> deflater.  Leaves the deflater on top. */
static int l_gzip (lua_State *L) {
  lua_Integer level = luaL_optinteger(L, 1, 6);
  luaL_argcheck(L, level >= 1 && level <= 9, 1, "level from 1 to 9 expected");
  lgzip_t *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->g.z = NULL;
  d->g.finished = 0;
  d->out = (owl_buf_t){ NULL, 0, 0 };
  luaL_setmetatable(L, GZIP_T);
  if (owl_gzip_init(&d->g, (int)level))
    return luaL_error(L, "gzip: not enough memory");
  return 1;
}


/* gunzip(data [, max]) -> content, consumed | nil, err, code */
static int l_gunzip (lua_State *L) {
  size_t n, consumed;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, GUNZIP_MAX);
  luaL_argcheck(L, max >= 0, 2, "a byte count expected");
  owl_buf_t out = { NULL, 0, 0 };
  int r = owl_gunzip(s, n, (size_t)max, &out, &consumed);
  if (r == -ENOMEM) {
    owl_buf_free(&out);
    return luaL_error(L, "gunzip: not enough memory");
  }
  if (r) {
    owl_buf_free(&out);
    lua_pushnil(L);
    if (r == -E2BIG) {
      lua_pushfstring(L, "E2BIG: more than %I bytes when decompressed", max);
      lua_pushliteral(L, "E2BIG");
    }
    else {
      lua_pushliteral(L, "EINVAL: not a valid gzip stream");
      lua_pushliteral(L, "EINVAL");
    }
    return 3;
  }
  lua_pushlstring(L, out.base ? out.base : "", out.len);
  owl_buf_free(&out);
  lua_pushinteger(L, (lua_Integer)consumed);
  return 2;
}


void owl_open_gzip (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", d_write},
    {"flush", d_flush},
    {"finish", d_finish},
    {"close", d_close},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", d_close},
    {"__close", d_close},
    {"__tostring", d_tostring},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, GZIP_T)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_gzip);
  lua_setfield(L, -2, "gzip");
  lua_pushcfunction(L, l_gunzip);
  lua_setfield(L, -2, "gunzip");
}
