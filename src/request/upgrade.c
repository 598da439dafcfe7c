/*
** 101 answers: websocket.Accept and opaque.Upgrade (raw OWIN), and the
** adapter's accept that switches at once (core.ws_accept).
**
** The connection found the upgrade request (c->upgrade, see http1.c).  The
** raw OWIN calls only record what the app asked (UV_UPGRADE); when the
** pipeline returns, the request's coroutine answers 101 and goes on as the
** socket's coroutine, running the app's callback (owl_upgrade_run).  The
** adapter answers 101 at once and returns the socket in the same
** coroutine.  Either way the request leaves the connection (c->req, r->conn
** cleared) and the socket (websocket.c) takes it over.
*/

#include <string.h>

#include "request/request.h"
#include "request/keys.h"
#include "codec/token.h"
#include "codec/ws.h"


enum { UP_WS = 1, UP_RAW = 2 };


/*
** Pushes the values of request header lname (lowercase) joined with ", "
** (a Lua string, so that an error raised later frees it) and returns it.
*/
static const char *push_values (lua_State *L, owl_conn_t *c, const char *lname,
                                size_t *len) {
  size_t nf = owl_h1_nfields(c);
  size_t ln = strlen(lname);
  int first = 1;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 1; i + 1 < nf; i += 2) {
    size_t nl, vl;
    const char *name = owl_h1_field(c, i, &nl);
    if (nl != ln || memcmp(name, lname, ln) != 0)
      continue;
    const char *v = owl_h1_field(c, i + 1, &vl);
    if (!first)
      luaL_addstring(&b, ", ");
    luaL_addlstring(&b, v, vl);
    first = 0;
  }
  luaL_pushresult(&b);
  return lua_tolstring(L, -1, len);
}


/*
** Picks the subprotocol: the value at idx is a string (the app's choice) or
** an array (the server's preference order).  Pushes the protocol or nil;
** raises if the app chose one the client did not offer.
*/
static void pick_protocol (lua_State *L, int idx, const char *offered, size_t olen) {
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    if (!owl_list_has(offered, olen, p, n))
      luaL_error(L, "WebSocket subprotocol '%s' was not offered by the client", p);
    lua_pushvalue(L, idx);
    return;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    lua_geti(L, idx, i);
    const char *p = lua_tolstring(L, -1, &len);
    if (p && owl_list_has(offered, olen, p, len))
      return;                               /* the first the client offered */
    lua_pop(L, 1);
  }
  lua_pushnil(L);
}


static void sethdr (lua_State *L, int h, const char *name, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, h, name);                 /* through the headers metatable */
}


/*
** Adds "Name: value\r\n" to b, checked as the headers table would have:
** the values come from the request head or from owl_ws_*, so they hold no
** CR, LF or NUL, and the names are constants.
*/
static void addhdr (luaL_Buffer *b, const char *name, const char *v, size_t n) {
  luaL_addstring(b, name);
  luaL_addlstring(b, ": ", 2);
  luaL_addlstring(b, v, n);
  luaL_addlstring(b, "\r\n", 2);
}


/*
** Answers 101 for request r (userdata at ri) and pushes the new socket,
** then the chosen subprotocol (or nil).  protoidx: the subprotocol choice
** (see pick_protocol), or 0.
**
** When the app never touched the response headers and registered no
** OnSendingHeaders callback, a WebSocket's 101 headers are not put in a
** headers table: they go into UV_RESPH as one string of header lines,
** which owl_req_serialize copies as they are and env.c turns into a
** (frozen) headers table if the app ever reads owin.ResponseHeaders.  An
** idle socket then holds one short string instead of four tables.
*/
static void upgrade (lua_State *L, owl_req_t *r, int ri, int kind, int protoidx) {
  owl_conn_t *c = r->conn;
  owl_options_t *o = &owl_srv.opt;
  owl_ws_deflate_t agreed;
  char accept[OWL_WS_ACCEPT_SIZE], ext[OWL_WS_EXT_SIZE];
  const char *v;
  size_t n;
  ri = lua_absindex(L, ri);
  if (protoidx)
    protoidx = lua_absindex(L, protoidx);
  if (c == NULL || !r->head_live)
    luaL_error(L, "cannot upgrade: the client is gone");
  if (OWL_COMMITTED(r))
    luaL_error(L, "cannot upgrade: the response has already started");
  memset(&agreed, 0, sizeof agreed);
  int top = lua_gettop(L);
  int direct = kind == UP_WS &&
               lua_getiuservalue(L, ri, UV_RESPH) == LUA_TNIL &&
               lua_getiuservalue(L, ri, UV_ONSEND) == LUA_TNIL;
  lua_settop(L, top);
  lua_pushnil(L);                           /* top+1: the chosen subprotocol */
  int proto = lua_gettop(L);
  if (direct) {
    luaL_Buffer b;
    v = push_values(L, c, "sec-websocket-key", &n);
    owl_ws_accept(v, n, accept);
    lua_pop(L, 1);
    v = push_values(L, c, "sec-websocket-protocol", &n);
    if (protoidx) {
      pick_protocol(L, protoidx, v, n);
      lua_replace(L, proto);
    }
    v = push_values(L, c, "sec-websocket-extensions", &n);
    if (o->ws_deflate && n > 0) {
      owl_ws_deflate_t policy;
      memset(&policy, 0, sizeof policy);
      policy.enabled = 1;
      if (owl_ws_deflate_negotiate(&policy, v, n, &agreed, ext, sizeof ext) <= 0)
        agreed.enabled = 0;
    }
    luaL_buffinit(L, &b);
    addhdr(&b, "Upgrade", "websocket", 9);
    addhdr(&b, "Sec-WebSocket-Accept", accept, strlen(accept));
    if (lua_isstring(L, proto)) {
      v = lua_tolstring(L, proto, &n);
      addhdr(&b, "Sec-WebSocket-Protocol", v, n);
    }
    if (agreed.enabled)
      addhdr(&b, "Sec-WebSocket-Extensions", ext, strlen(ext));
    luaL_pushresult(&b);
    lua_setiuservalue(L, ri, UV_RESPH);
  }
  else {
    lua_getiuservalue(L, ri, UV_ENV);
    lua_getfield(L, -1, "owin.ResponseHeaders");
    int h = lua_gettop(L);
    if (kind == UP_WS) {
      v = push_values(L, c, "sec-websocket-key", &n);
      owl_ws_accept(v, n, accept);
      sethdr(L, h, "Upgrade", "websocket");
      sethdr(L, h, "Sec-WebSocket-Accept", accept);
      v = push_values(L, c, "sec-websocket-protocol", &n);
      if (protoidx) {
        pick_protocol(L, protoidx, v, n);
        lua_pushvalue(L, -1);
        lua_replace(L, proto);
        if (!lua_isnil(L, -1))
          lua_setfield(L, h, "Sec-WebSocket-Protocol");
        else
          lua_pop(L, 1);
      }
      v = push_values(L, c, "sec-websocket-extensions", &n);
      if (o->ws_deflate && n > 0) {
        owl_ws_deflate_t policy;
        memset(&policy, 0, sizeof policy);
        policy.enabled = 1;
        if (owl_ws_deflate_negotiate(&policy, v, n, &agreed, ext, sizeof ext) > 0)
          sethdr(L, h, "Sec-WebSocket-Extensions", ext);
        else
          agreed.enabled = 0;
      }
    }
    else {
      lua_getfield(L, h, "Upgrade");        /* opaque: the app's, or the client's */
      if (lua_isnil(L, -1)) {
        push_values(L, c, "upgrade", &n);
        lua_setfield(L, h, "Upgrade");
      }
    }
  }
  lua_settop(L, proto);
  r->status = 101;
  owl_req_commit(L, r);                     /* OnSendingHeaders run here */
  owl_conn_drop_held(c);                    /* a 101 has no body */
  owl_req_serialize(L, r, 1);
  r->resp = R_UPGRADED;                     /* its body streams are done */
  r->head_live = 0;
  owl_h1_upgraded(c);
  r->conn = NULL;
  owl_wsock_new(L, c, ri, kind == UP_RAW, agreed.enabled ? &agreed : NULL);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, ri, UV_UPGRADE);     /* the request keeps its socket */
  lua_insert(L, proto);                     /* socket, subprotocol */
}


/*
** The upgraded request's coroutine ends (the callback or the app returned,
** code 1000, or raised, 1011): a socket still open is closed (its close
** handshake goes on without the coroutine); an opaque one is cut.
*/
void owl_upgrade_end (lua_State *L, owl_req_t *r, unsigned code) {
  if (r->resp != R_UPGRADED || r->ref == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  lua_getiuservalue(L, -1, UV_UPGRADE);
  owl_wsock_end(L, -1, code);
  lua_pop(L, 2);
}


/*
** websocket.Accept(params, callback) and opaque.Upgrade(params, callback):
** upvalue 1 is the request, upvalue 2 the kind.  They record the call;
** the 101 goes out when the pipeline returns.
*/
static int accept_later (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, lua_upvalueindex(1));
  int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TTABLE);
  if (OWL_COMMITTED(r) || r->upgrade_kind)
    return luaL_error(L, "%s: the response has already started or was upgraded",
                      kind == UP_WS ? "websocket.Accept" : "opaque.Upgrade");
  r->upgrade_kind = kind;
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  lua_setiuservalue(L, lua_upvalueindex(1), UV_UPGRADE);
  return 0;
}


/*
** Adds websocket.Accept, opaque.Upgrade and opaque.Version to the env at
** env for an upgrade request (c->upgrade: 1 any protocol, 2 a valid
** WebSocket handshake); ri is the request userdata.
*/
void owl_upgrade_env (lua_State *L, owl_conn_t *c, int env, int ri) {
  if (owl_h1_upgrade(c) == 2) {
    lua_pushvalue(L, ri);
    lua_pushinteger(L, UP_WS);
    lua_pushcclosure(L, accept_later, 2);
    lua_setfield(L, env, "websocket.Accept");
  }
  lua_pushvalue(L, ri);
  lua_pushinteger(L, UP_RAW);
  lua_pushcclosure(L, accept_later, 2);
  lua_setfield(L, env, "opaque.Upgrade");
  lua_pushliteral(L, "1.0");
  lua_setfield(L, env, "opaque.Version");
}


/*
** In the request's coroutine, after the pipeline returned: answers 101 if
** the app called websocket.Accept or opaque.Upgrade, and pushes the
** callback and its argument.  Returns 1 then, 0 when nothing was asked.
*/
int owl_upgrade_run (lua_State *L, owl_req_t *r) {
  if (!r->upgrade_kind || r->resp == R_UPGRADED)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  int ri = lua_gettop(L);
  lua_getiuservalue(L, ri, UV_UPGRADE);     /* { params, callback } */
  int rec = lua_gettop(L);
  lua_rawgeti(L, rec, 1);
  int params = lua_gettop(L);
  int protoidx = 0;
  if (lua_istable(L, params)) {
    lua_getfield(L, params, "websocket.SubProtocol");
    protoidx = lua_gettop(L);
  }
  upgrade(L, r, ri, r->upgrade_kind, protoidx);   /* socket, subprotocol */
  lua_pop(L, 1);
  int w = lua_gettop(L);
  lua_rawgeti(L, rec, 2);                   /* the callback */
  owl_wsock_env(L, w, r->upgrade_kind == UP_RAW);   /* its argument */
  lua_rotate(L, ri, 2);                     /* callback, arg to ri, ri+1 */
  lua_settop(L, ri + 1);
  return 1;
}


/*
** core.ws_accept(env [, protocol]) -> socket, subprotocol or false:
** answers 101 now, in the request's coroutine (the adapter's accept).
** protocol: a string the client offered, or an array in the server's order
** of preference.  The second result is the subprotocol sent (false when
** none was), so that the adapter need not read the response headers.
*/
static int l_ws_accept (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_rawgetp(L, 1, &owl_req_key);
  owl_req_t *r = luaL_testudata(L, -1, OWL_REQ_T);
  luaL_argexpected(L, r != NULL, 1, "OWIN env");
  int ri = lua_gettop(L);
  if (r->conn == NULL || owl_h1_upgrade(r->conn) != 2)
    return luaL_error(L, "not a WebSocket request (check websocket.is_request(env))");
  if (r->upgrade_kind || r->resp == R_UPGRADED)
    return luaL_error(L, "the request was already upgraded");
  r->upgrade_kind = UP_WS;
  upgrade(L, r, ri, UP_WS, lua_isnoneornil(L, 2) ? 0 : 2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
  }
  return 2;
}


void owl_open_upgrade (lua_State *L) {
  lua_pushcfunction(L, l_ws_accept);
  lua_setfield(L, -2, "ws_accept");
}
