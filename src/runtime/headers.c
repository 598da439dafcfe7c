/*
** OWIN headers tables: a name maps to an array of strings; lookup and
** assignment ignore case; a plain string is stored as a one-element array;
** pairs() yields every header once.
**
** A headers table is an empty proxy table whose entries live in a store
** table kept in the proxy under a light userdata key (so raw access from
** Lua cannot reach it):
**   proxy[&store_key]  = { [lowercase name] = { "v1", "v2" } }
**   proxy[&names_key]  = { [lowercase name] = "Display-Name" }  (created lazily,
**                        only for names spelled otherwise than by default)
** Four flags (OWL_HF_*) are told by which of sixteen metatables the proxy
** has, so that reading them costs no lookup: CANON, the default spelling
** is Canonical-Case; FROZEN, the response headers were sent; SPECIAL, a
** name the server reads when it commits (content-length, connection) was
** set; NAMED, the names table exists.  Each metamethod is a closure over
** its metatable's flags.  Names spelled otherwise than in lowercase map to
** their lowercase form through a bounded cache, so that the usual
** spellings are not lowered and interned again for every request.
** Request headers arrive with lowercase names (as HTTP/2 and Node do), and
** lowercase is their default spelling.  Response headers keep the spelling
** the app gave; their default is Canonical-Case, so the usual spellings
** ("Content-Type") cost no names table.
**
** The lowercase names the server itself looks at (owl_hname) are interned
** once and kept referenced: the string of a store key is one of them exactly
** when its pointer is.
*/

#include <string.h>

#include "runtime/runtime.h"
#include "codec/token.h"


static const char store_key = 0;
static const char names_key = 0;
static int hmt_ref[16];                   /* registry refs: metatable by flags */
static const void *hmt_ptr[16];           /* the metatables, by flags */
static const char hnames_key = 0;         /* registry: the interned names */

enum { CANON = OWL_HF_CANON, FROZEN = OWL_HF_FROZEN, SPECIAL = OWL_HF_SPECIAL,
       NAMED = OWL_HF_NAMED };

/* upvalue 1 of the metamethods: the flags; upvalue 2: the lowercase cache */
#define FLAGS (lua_tointeger(L, lua_upvalueindex(1)))
#define LCACHE lua_upvalueindex(2)
#define LCACHE_MAX 512

static int nlcache;                       /* entries in the lowercase cache */

const char *owl_hname[OWL_HN_N];
static const char *const hnames[OWL_HN_N] = {
  "content-length", "transfer-encoding", "connection", "date", "server"
};

#define NAMEBUF 256


/*
** Checks that the string at idx is a valid field name; raises otherwise.
*/
static const char *checkname (lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "header name must be a string, got %s", luaL_typename(L, idx));
  const char *s = lua_tolstring(L, idx, len);
  if (*len == 0)
    luaL_error(L, "invalid header name: empty");
  for (size_t i = 0; i < *len; i++)
    if (!owl_istchar((unsigned char)s[i]))
      luaL_error(L, "invalid header name '%s': byte %d is not a token character",
                 s, (int)(unsigned char)s[i]);
  return s;
}


/* Raises if the value at idx (a string) holds CR, LF or NUL. */
static void checkvalue (lua_State *L, int idx, const char *name) {
  size_t len;
  const char *v = lua_tolstring(L, idx, &len);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c == '\r' || c == '\n' || c == 0)
      luaL_error(L, "invalid value for header '%s': CR, LF and NUL are not allowed",
                 name);
  }
}


static int haslower (const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] >= 'A' && s[i] <= 'Z')
      return 0;
  return 1;
}


/*
** Pushes the lowercase form of s[0..len).
*/
static void pushlower (lua_State *L, const char *s, size_t len) {
  char small[NAMEBUF];
  char *p = small;
  luaL_Buffer b;
  if (len > NAMEBUF)
    p = luaL_buffinitsize(L, &b, len);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    p[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
  }
  if (p == small)
    lua_pushlstring(L, p, len);
  else
    luaL_pushresultsize(&b, len);
}


static int istoken (const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!owl_istchar((unsigned char)s[i]))
      return 0;
  return len > 0;
}


/*
** Pushes the lowercase form of the string at idx (a metamethod's argument);
** names with capitals go through the cache, so that "Content-Type" costs a
** lookup instead of a new string.  Only valid names are cached: returns 1
** when the name was found there (it is a valid name then), else 0.
*/
static int pushlname (lua_State *L, int idx, const char *s, size_t len) {
  if (haslower(s, len)) {
    lua_pushvalue(L, idx);
    return 0;
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, LCACHE) == LUA_TSTRING)
    return 1;
  lua_pop(L, 1);
  pushlower(L, s, len);
  if (nlcache < LCACHE_MAX && len <= 40 && istoken(s, len)) {
    nlcache++;                              /* short names only: interned */
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, LCACHE);
  }
  return 0;
}


/* Gives the headers table at idx the metatable of flags. */
static void setflags (lua_State *L, int idx, int flags) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, hmt_ref[flags]);  /* array part: no hash */
  lua_setmetatable(L, idx);
}


static char upper (char c) {
  return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}


/* Writes the Canonical-Case form of lname[0..n) into dst[0..n). */
void owl_headers_canonical (char *dst, const char *lname, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = (i == 0 || lname[i - 1] == '-') ? upper(lname[i]) : lname[i];
}


/* Is name spelled the default way: Canonical-Case, or all lowercase? */
static int isdefault (const char *name, size_t len, int canon) {
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    char l = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    char want = (canon && (i == 0 || name[i - 1] == '-')) ? upper(l) : l;
    if (c != want)
      return 0;
  }
  return 1;
}


/* Pushes proxy[&key] for the proxy at idx. */
static int pushslot (lua_State *L, int idx, const char *key) {
  return lua_rawgetp(L, idx, key);
}


/*
** __index(proxy, name): values array or nil.
*/
static int h_index (lua_State *L) {
  size_t len;
  if (lua_type(L, 2) != LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  const char *s = lua_tolstring(L, 2, &len);
  pushslot(L, 1, &store_key);                 /* store */
  pushlname(L, 2, s, len);
  lua_rawget(L, -2);
  return 1;
}


/*
** __newindex(proxy, name, value): value is nil (remove), a string or number
** (one value), or an array of strings.
*/
static int h_newindex (lua_State *L) {
  size_t len;
  const char *name;
  int flags = (int)FLAGS;
  if (lua_type(L, 2) == LUA_TSTRING) {
    name = lua_tolstring(L, 2, &len);
    if (!pushlname(L, 2, name, len))        /* a cached name is valid */
      checkname(L, 2, &len);
  }
  else
    name = checkname(L, 2, &len);           /* raises */
  if (flags & FROZEN)
    return luaL_error(L, "headers already sent: cannot set '%s'", name);
  int lname = 4;
  lua_settop(L, lname);                     /* 1: proxy, 2: name, 3: value, 4: lname */
  const char *ls = lua_tostring(L, lname);
  int t = lua_type(L, 3);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 3);
    lua_tostring(L, -1);                      /* numbers become strings */
    checkvalue(L, -1, name);
    lua_rawseti(L, -2, 1);
    lua_replace(L, 3);
  }
  else if (t == LUA_TTABLE) {
    int raw = !lua_getmetatable(L, 3);        /* a plain array: no __len, __index */
    if (!raw)
      lua_pop(L, 1);
    lua_Integer n = raw ? (lua_Integer)lua_rawlen(L, 3) : luaL_len(L, 3);
    for (lua_Integer i = 1; i <= n; i++) {
      int vt = raw ? lua_rawgeti(L, 3, i) : lua_geti(L, 3, i);
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        return luaL_error(L, "value %d of header '%s' must be a string, got %s",
                          (int)i, name, luaL_typename(L, -1));
      checkvalue(L, -1, name);
      lua_pop(L, 1);
    }
  }
  else if (t != LUA_TNIL)
    return luaL_error(L, "value of header '%s' must be a string or an array of "
                      "strings, got %s", name, luaL_typename(L, 3));
  pushslot(L, 1, &store_key);
  lua_pushvalue(L, lname);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);                          /* store[lname] = value */
  lua_pop(L, 1);
  int nflags = flags;
  if (ls == owl_hname[OWL_HN_CONTENT_LENGTH] || ls == owl_hname[OWL_HN_CONNECTION])
    nflags |= SPECIAL;
  if (!isdefault(name, len, flags & CANON) && !lua_isnil(L, 3)) {
    if (!(flags & NAMED)) {
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, 1, &names_key);
      nflags |= NAMED;
    }
    else
      pushslot(L, 1, &names_key);
    lua_pushvalue(L, lname);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);                        /* names[lname] = name */
  }
  else if (flags & NAMED) {
    pushslot(L, 1, &names_key);
    lua_pushvalue(L, lname);
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  if (nflags != flags)
    setflags(L, 1, nflags);
  return 0;
}


/*
** Iterator for pairs: next(proxy, name) -> name, values.
*/
static int h_next (lua_State *L) {
  lua_settop(L, 2);
  pushslot(L, 1, &store_key);                 /* 3: store */
  int names = pushslot(L, 1, &names_key) == LUA_TTABLE ? 4 : 0;
  if (lua_isnil(L, 2))
    lua_pushnil(L);
  else {
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    pushlower(L, s, len);
  }
  if (!lua_next(L, 3))
    return 0;
  if (names) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, names) != LUA_TNIL) {
      lua_replace(L, -3);                     /* display name instead of lname */
      return 2;
    }
    lua_pop(L, 1);
  }
  if (FLAGS & CANON) {
    size_t n;
    const char *lname = lua_tolstring(L, -2, &n);
    luaL_Buffer b;
    owl_headers_canonical(luaL_buffinitsize(L, &b, n), lname, n);
    luaL_pushresultsize(&b, n);
    lua_replace(L, -3);                       /* Canonical-Case instead */
  }
  return 2;
}


/* upvalue 2: h_next over the same flags */
static int h_pairs (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}


static int h_tostring (lua_State *L) {
  lua_pushfstring(L, "owinlua.Headers: %p", lua_topointer(L, 1));
  return 1;
}


/*
** Pushes a new, empty headers table with room for narr names.
*/
int owl_headers_new (lua_State *L, int narr, int canon) {
  lua_createtable(L, 0, 1);                 /* store (names when needed) */
  lua_createtable(L, 0, narr);
  lua_rawsetp(L, -2, &store_key);
  setflags(L, -2, canon ? CANON : 0);
  return 1;
}


/* The flags of the headers table at idx, or -1 if it is not one. */
static int getflags (lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx))
    return -1;
  const void *mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  for (int flags = 0; flags < 16; flags++)
    if (hmt_ptr[flags] == mt)
      return flags;
  return -1;
}


int owl_headers_is (lua_State *L, int idx) {
  return getflags(L, idx) >= 0;
}


int owl_headers_freeze (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int flags = getflags(L, idx);
  if (flags >= 0 && !(flags & FROZEN))
    setflags(L, idx, flags | FROZEN);
  return flags < 0 ? 0 : flags;
}


/* Pushes the store (name -> values) and the names table (or nil) of idx,
** whose flags are known. */
void owl_headers_store (lua_State *L, int idx, int flags) {
  idx = lua_absindex(L, idx);
  pushslot(L, idx, &store_key);
  if (flags & NAMED)
    pushslot(L, idx, &names_key);
  else
    lua_pushnil(L);
}


void owl_headers_rawget (lua_State *L, int idx, int which) {
  idx = lua_absindex(L, idx);
  pushslot(L, idx, &store_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &hnames_key);
  lua_rawgeti(L, -1, which + 1);            /* the interned name */
  lua_remove(L, -2);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}


/*
** Appends a value to the header `lname` (already lowercase) of the headers
** table at idx; used to build request headers from the wire.
*/
void owl_headers_add (lua_State *L, int idx, const char *lname, size_t nlen,
                      const char *v, size_t vlen) {
  idx = lua_absindex(L, idx);
  pushslot(L, idx, &store_key);               /* store */
  lua_pushlstring(L, lname, nlen);
  if (lua_rawget(L, -2) == LUA_TTABLE) {      /* repeated header */
    lua_pushlstring(L, v, vlen);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  lua_pushlstring(L, lname, nlen);
  lua_createtable(L, 1, 0);
  lua_pushlstring(L, v, vlen);
  lua_rawseti(L, -2, 1);
  lua_rawset(L, -3);                          /* store[lname] = { v } */
  lua_pop(L, 1);
}


/*
** Copies any table of name -> string|array into a new headers table, which
** is left on the stack (used when the app assigns a plain table).
*/
void owl_headers_from (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  owl_headers_new(L, 4, 1);
  int h = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);                        /* key, key, value */
    lua_settable(L, h);                       /* through __newindex: validated */
  }
}


/* Lua: owin.headers([init]) -> a new headers table */
static int l_headers (lua_State *L) {
  if (lua_istable(L, 1))
    owl_headers_from(L, 1);
  else
    owl_headers_new(L, 0, 1);
  return 1;
}


/*
** Creates the four metatables and interns the names of owl_hname; adds
** headers() to the module table on top.
*/
void owl_open_headers (lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", h_index},
    {"__newindex", h_newindex},
    {"__tostring", h_tostring},
    {NULL, NULL}
  };
  lua_newtable(L);                            /* the lowercase cache */
  int lcache = lua_gettop(L);
  for (int flags = 0; flags < 16; flags++) {
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, flags);
    lua_pushvalue(L, lcache);
    luaL_setfuncs(L, meta, 2);                /* each over its flags */
    lua_pushinteger(L, flags);
    lua_pushinteger(L, flags);
    lua_pushcclosure(L, h_next, 1);
    lua_pushcclosure(L, h_pairs, 2);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "owinlua.Headers");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");       /* getmetatable() hides it */
    hmt_ptr[flags] = lua_topointer(L, -1);  /* anchored by the registry */
    hmt_ref[flags] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  lua_createtable(L, OWL_HN_N, 0);            /* keeps the names interned */
  for (int i = 0; i < OWL_HN_N; i++) {
    owl_hname[i] = lua_pushstring(L, hnames[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hnames_key);
  lua_pushcfunction(L, l_headers);            /* module table is on top-1 */
  lua_setfield(L, -2, "headers");
}
