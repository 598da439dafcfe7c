/*
** owl_codec: a thin Lua binding of the pure protocol codecs, for unit specs
** (spec/unit/).  It is built as build/owl_codec.so and is not part of the
** server.
**
**   local codec = require("owl_codec")
**   codec.chunked(pieces [, max_line]) -> body, consumed, done | nil, err
**
** The WebSocket codec (ws.c), opcodes as numbers and permessage-deflate
** parameters as tables { server_no_context_takeover = true,
** client_max_window_bits = 10, ... }:
**   codec.ws_parse(pieces [, opts]) -> events, consumed, closed
**                                    | nil, close_code, events, piece, held
**   codec.ws_frame(opcode, payload [, opts]) -> frame bytes
**   codec.ws_header(opcode, length [, opts]) -> header bytes
**   codec.ws_send(frames [, params]) -> wire bytes | nil, code, index
**   codec.ws_deflate(message | fragments, params) -> payload | payloads
**   codec.ws_accept(key) -> accept value
**   codec.ws_key_valid(key) -> boolean
**   codec.ws_close_payload(code, reason) -> payload
**   codec.utf8_valid(pieces) -> true | false, piece
**   codec.deflate_negotiate(offer [, policy]) -> params, response | nil
**
** The HTTP client's response parser, the very binding owin.core carries
** (client/httpc.c):
**   codec.http_response_parser([opts]) -> parser; parser:feed(data),
**   parser:eof(), parser:done()
**
** gzip streams, the very binding owin.core carries (runtime/gzip_lua.c):
**   codec.gzip([level]) -> deflater; d:write(data), d:flush(),
**   d:finish([data]), d:close()
**   codec.gunzip(data [, max]) -> content, consumed | nil, err, code
*/

#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "client/httpc.h"
#include "runtime/gzip_lua.h"
#include "codec/chunked.h"
#include "codec/ws.h"


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


/* {====== WebSocket */

/*
** optbool, optint: the field k of the table at t, or def when it is nil.
** Leave the stack as it was.
*/
static int optbool (lua_State *L, int t, const char *k, int def) {
  int v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}


static lua_Integer optint (lua_State *L, int t, const char *k,
                           lua_Integer def) {
  lua_Integer v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}


/*
** Reads the permessage-deflate parameter table at index t into *d (which
** is then enabled).  Leaves the stack as it was.
*/
static void check_params (lua_State *L, int t, owl_ws_deflate_t *d) {
  luaL_checktype(L, t, LUA_TTABLE);
  memset(d, 0, sizeof *d);
  d->enabled = 1;
  d->server_no_context_takeover =
    optbool(L, t, "server_no_context_takeover", 0);
  d->client_no_context_takeover =
    optbool(L, t, "client_no_context_takeover", 0);
  d->server_max_window_bits = (int)optint(L, t, "server_max_window_bits", 0);
  d->client_max_window_bits = (int)optint(L, t, "client_max_window_bits", 0);
  d->level = (int)optint(L, t, "level", 0);
  d->mem_level = (int)optint(L, t, "mem_level", 0);
}


/* Pushes *d as a parameter table */
static void push_params (lua_State *L, const owl_ws_deflate_t *d) {
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, d->server_no_context_takeover);
  lua_setfield(L, -2, "server_no_context_takeover");
  lua_pushboolean(L, d->client_no_context_takeover);
  lua_setfield(L, -2, "client_no_context_takeover");
  lua_pushinteger(L, d->server_max_window_bits);
  lua_setfield(L, -2, "server_max_window_bits");
  lua_pushinteger(L, d->client_max_window_bits);
  lua_setfield(L, -2, "client_max_window_bits");
}


/*
** Checks that the value at t is an array of strings, or a string which it
** replaces with { string }.  Returns the length of the array.
*/
static lua_Integer check_pieces (lua_State *L, int t) {
  lua_Integer n, i;
  if (lua_type(L, t) == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, t);
    lua_seti(L, -2, 1);
    lua_replace(L, t);
    return 1;
  }
  luaL_checktype(L, t, LUA_TTABLE);
  n = luaL_len(L, t);
  for (i = 1; i <= n; i++) {
    luaL_argexpected(L, lua_geti(L, t, i) == LUA_TSTRING, t,
                     "array of strings");
    lua_pop(L, 1);
  }
  return n;
}


typedef struct parse_ctx {
  lua_State *L;
  int events;                   /* stack index of the event list */
  int pause;                    /* callbacks ask to pause */
} parse_ctx;


/*
** The callback of both events: appends { opcode =, data = [, code = ] } to
** the event list.  Leaves the stack as it was.  (A Lua error here, only on
** out of memory, would leak the connection's buffers: a test binding.)
*/
static int on_event (void *ud, int opcode, const char *p, size_t n) {
  parse_ctx *c = (parse_ctx *)ud;
  lua_State *L = c->L;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, opcode);
  lua_setfield(L, -2, "opcode");
  lua_pushlstring(L, p, n);
  lua_setfield(L, -2, "data");
  if (opcode == OWL_WS_CLOSE) {
    lua_pushinteger(L, (lua_Integer)owl_ws_close_code(p, n));
    lua_setfield(L, -2, "code");
  }
  lua_seti(L, c->events, luaL_len(L, c->events) + 1);
  return c->pause ? OWL_WS_PAUSE : OWL_WS_GO;
}


/*
** ws_parse(pieces [, opts]): feeds each string of `pieces` to one
** connection, as separate reads (each copied first: the codec unmasks in
** place).  opts: client (parse a server's frames), max_frame, max_message,
** deflate (agreed parameters), pause (every callback pauses; the rest is
** fed again).  Returns the events, the bytes consumed and whether a close
** frame ended the parse; or nil, the close code, the events before it, the
** piece being fed and the message buffer's size at the failure.
*/
static int l_ws_parse (lua_State *L) {
  owl_ws_events ev = { on_event, on_event };
  owl_ws_limits_t lim = { OWL_WS_MAX_FRAME, OWL_WS_MAX_MESSAGE };
  owl_ws_deflate_t pmd = { 0, 0, 0, 0, 0, 0, 0 };
  owl_ws_conn_t ws;
  parse_ctx c = { L, 0, 0 };
  int role = OWL_WS_SERVER;
  lua_Integer n = check_pieces(L, 1), consumed = 0, i;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    role = optbool(L, 2, "client", 0) ? OWL_WS_CLIENT : OWL_WS_SERVER;
    c.pause = optbool(L, 2, "pause", 0);
    lim.max_frame = (uint64_t)optint(L, 2, "max_frame",
                                     (lua_Integer)lim.max_frame);
    lim.max_message = (uint64_t)optint(L, 2, "max_message",
                                       (lua_Integer)lim.max_message);
    if (lua_getfield(L, 2, "deflate") != LUA_TNIL)
      check_params(L, lua_gettop(L), &pmd);
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  lua_newtable(L);
  c.events = lua_gettop(L);
  owl_ws_init(&ws, role, &lim, &pmd);
  for (i = 1; i <= n && !owl_ws_closed(&ws); i++) {
    size_t len, off = 0;
    const char *s;
    char *buf;
    lua_geti(L, 1, i);
    s = lua_tolstring(L, -1, &len);
    buf = (char *)lua_newuserdatauv(L, len > 0 ? len : 1, 0);
    memcpy(buf, s, len);
    while (off < len && !owl_ws_closed(&ws)) {
      long r = owl_ws_feed(&ws, buf + off, len - off, &ev, &c);
      if (r < 0) {
        size_t held = ws.cap;
        owl_ws_free(&ws);
        lua_pushnil(L);
        lua_pushinteger(L, -r);
        lua_pushvalue(L, c.events);
        lua_pushinteger(L, i);
        lua_pushinteger(L, (lua_Integer)held);
        return 5;
      }
      off += (size_t)r;
      consumed += r;
    }
    lua_pop(L, 2);                  /* the piece and its copy */
  }
  lua_pushinteger(L, consumed);
  lua_pushboolean(L, owl_ws_closed(&ws));
  owl_ws_free(&ws);
  return 3;
}


/*
** Reads the frame options at index 3 (fin, default true; rsv1; mask, 4
** bytes for a client's frame) and writes the header of a frame of len
** bytes into head.  Returns the header's length; leaves the stack as it
** was (the options table anchors the mask).
*/
static size_t frame_head (lua_State *L, uint64_t len, unsigned char *head,
                          const unsigned char **mask) {
  int opcode = (int)luaL_checkinteger(L, 1), fin = 1, rsv1 = 0;
  *mask = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    fin = optbool(L, 3, "fin", 1);
    rsv1 = optbool(L, 3, "rsv1", 0);
    if (lua_getfield(L, 3, "mask") != LUA_TNIL) {
      size_t mlen;
      *mask = (const unsigned char *)luaL_checklstring(L, -1, &mlen);
      luaL_argcheck(L, mlen == 4, 3, "mask must be 4 bytes");
    }
    lua_pop(L, 1);
  }
  return owl_ws_header(head, fin, rsv1, opcode, len, *mask);
}


/* ws_frame(opcode, payload [, opts]): a frame as a peer would send it */
static int l_ws_frame (lua_State *L) {
  unsigned char head[OWL_WS_HEADER_MAX];
  const unsigned char *mask;
  size_t n, hlen;
  const char *p = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  char *out;
  hlen = frame_head(L, n, head, &mask);
  out = luaL_buffinitsize(L, &b, hlen + n);
  memcpy(out, head, hlen);
  memcpy(out + hlen, p, n);
  if (mask != NULL)
    owl_ws_mask(out + hlen, n, mask, 0);
  luaL_pushresultsize(&b, hlen + n);
  return 1;
}


/* ws_header(opcode, length [, opts]): a frame header alone */
static int l_ws_header (lua_State *L) {
  unsigned char head[OWL_WS_HEADER_MAX];
  const unsigned char *mask;
  lua_Integer len = luaL_checkinteger(L, 2);
  size_t hlen;
  luaL_argcheck(L, len >= 0, 2, "negative length");
  hlen = frame_head(L, (uint64_t)len, head, &mask);
  lua_pushlstring(L, (const char *)head, hlen);
  return 1;
}


static int append (void *ud, const char *head, size_t hlen, const char *data,
                   size_t dlen) {
  luaL_Buffer *b = (luaL_Buffer *)ud;
  luaL_addlstring(b, head, hlen);
  luaL_addlstring(b, data, dlen);
  return 0;
}


/*
** ws_send(frames [, params]): what a server connection writes for frames,
** an array of { opcode =, data = [, fin = true] [, compress = false] },
** with permessage-deflate when params are given.  nil, the error and the
** index of the frame on misuse.
*/
static int l_ws_send (lua_State *L) {
  owl_ws_deflate_t pmd = { 0, 0, 0, 0, 0, 0, 0 };
  owl_ws_conn_t ws;
  luaL_Buffer b;
  lua_Integer n, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2))
    check_params(L, 2, &pmd);
  n = luaL_len(L, 1);
  for (i = 1; i <= n; i++) {        /* check all before the connection */
    luaL_argexpected(L, lua_geti(L, 1, i) == LUA_TTABLE, 1, "array of frames");
    luaL_checkinteger(L, (lua_getfield(L, -1, "opcode"), -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "data") != LUA_TNIL)
      luaL_checkstring(L, -1);
    lua_pop(L, 2);
  }
  owl_ws_init(&ws, OWL_WS_SERVER, NULL, &pmd);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    size_t len = 0;
    const char *p = "";
    int opcode, fin, compress, r;
    lua_geti(L, 1, i);
    opcode = (int)optint(L, -1, "opcode", 0);
    fin = optbool(L, -1, "fin", 1);
    compress = optbool(L, -1, "compress", 0);
    if (lua_getfield(L, -1, "data") != LUA_TNIL)
      p = lua_tolstring(L, -1, &len);
    lua_pop(L, 2);                  /* the frames table anchors the data */
    r = owl_ws_send(&ws, opcode, fin, p, len, compress, append, &b);
    if (r != 0) {
      owl_ws_free(&ws);
      luaL_pushresult(&b);
      lua_pushnil(L);
      lua_pushinteger(L, r);
      lua_pushinteger(L, i);
      return 3;
    }
  }
  owl_ws_free(&ws);
  luaL_pushresult(&b);
  return 1;
}


/*
** ws_deflate(message | fragments, params): the compressed payload of one
** outgoing message, or of each of its fragments (the last one ends it).
*/
static int l_ws_deflate (lua_State *L) {
  owl_ws_deflate_t pmd;
  owl_ws_conn_t ws;
  int single = lua_type(L, 1) == LUA_TSTRING;
  lua_Integer n = check_pieces(L, 1), i;
  check_params(L, 2, &pmd);
  lua_settop(L, 1);
  lua_createtable(L, (int)n, 0);
  owl_ws_init(&ws, OWL_WS_SERVER, NULL, &pmd);
  for (i = 1; i <= n; i++) {
    size_t len, olen;
    const char *p, *out;
    int r;
    lua_geti(L, 1, i);
    p = lua_tolstring(L, -1, &len);
    r = owl_ws_deflate(&ws, p, len, i == n, &out, &olen);
    lua_pop(L, 1);
    if (r != 0) {
      owl_ws_free(&ws);
      return luaL_error(L, "owl_ws_deflate failed (%d)", r);
    }
    lua_pushlstring(L, out, olen);  /* may raise: ws would leak, only */
    lua_seti(L, 2, i);              /* on out of memory */
  }
  owl_ws_free(&ws);
  if (single)
    lua_geti(L, 2, 1);
  return 1;
}


static int l_ws_accept (lua_State *L) {
  char out[OWL_WS_ACCEPT_SIZE];
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  owl_ws_accept(key, n, out);
  lua_pushstring(L, out);
  return 1;
}


static int l_ws_key_valid (lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, owl_ws_key_valid(key, n));
  return 1;
}


static int l_ws_close_payload (lua_State *L) {
  char out[125];
  size_t n = 0;
  lua_Integer code = luaL_checkinteger(L, 1);
  const char *reason = luaL_optlstring(L, 2, "", &n);
  luaL_argcheck(L, code >= 0 && code <= 0xffff, 1, "not a 16-bit code");
  n = owl_ws_close_payload(out, (unsigned)code, reason, n);
  lua_pushlstring(L, out, n);
  return 1;
}


/*
** utf8_valid(pieces): true if the concatenated strings are UTF-8; else
** false and the index of the piece where the first bad byte was seen (one
** past the last piece when the text ends inside a character).
*/
static int l_utf8_valid (lua_State *L) {
  uint32_t st = 0;
  lua_Integer n = check_pieces(L, 1), i;
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_geti(L, 1, i);
    s = lua_tolstring(L, -1, &len);
    if (owl_utf8_check(&st, s, len) != 0) {
      lua_pushboolean(L, 0);
      lua_pushinteger(L, i);
      return 2;
    }
    lua_pop(L, 1);
  }
  if (st != 0) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, n + 1);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}


/*
** deflate_negotiate(offer [, policy]): the agreed parameters and the
** response header value, or nil when no offer is acceptable.
*/
static int l_deflate_negotiate (lua_State *L) {
  owl_ws_deflate_t policy, agreed;
  char resp[OWL_WS_EXT_SIZE];
  size_t n;
  const char *offer = luaL_checklstring(L, 1, &n);
  int r;
  if (!lua_isnoneornil(L, 2))
    check_params(L, 2, &policy);
  r = owl_ws_deflate_negotiate(lua_isnoneornil(L, 2) ? NULL : &policy,
                               offer, n, &agreed, resp, sizeof resp);
  if (r <= 0) {
    lua_pushnil(L);
    return 1;
  }
  push_params(L, &agreed);
  lua_pushlstring(L, resp, (size_t)r);
  return 2;
}

/* }====== */


int luaopen_owl_codec (lua_State *L);

int luaopen_owl_codec (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"chunked", l_chunked},
    {"ws_parse", l_ws_parse},
    {"ws_frame", l_ws_frame},
    {"ws_header", l_ws_header},
    {"ws_send", l_ws_send},
    {"ws_deflate", l_ws_deflate},
    {"ws_accept", l_ws_accept},
    {"ws_key_valid", l_ws_key_valid},
    {"ws_close_payload", l_ws_close_payload},
    {"utf8_valid", l_utf8_valid},
    {"deflate_negotiate", l_deflate_negotiate},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  owl_open_httpc(L);
  owl_open_gzip(L);
  return 1;
}
