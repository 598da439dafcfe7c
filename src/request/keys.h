/*
** Internals shared by request.c (the request cycle, the env) and
** upgrade.c (101 answers): the request userdata's user values and the
** indexes of the env key strings.
*/

#ifndef OWL_REQUEST_H
#define OWL_REQUEST_H

#include "request/request.h"

/* user values of a request userdata */
#define UV_RESPH   1   /* response headers table, once made; or a string
                          of "Name: value\r\n" lines the server sent
                          without one (a 101, see upgrade.c) */
#define UV_ONSEND  2   /* { n = count, cb1, state1, cb2, state2, ... } */
#define UV_CANCEL  3   /* CallCancelled token, once materialized */
#define UV_REASON  4   /* reason phrase string */
#define UV_ENV     5
#define UV_LAZY    6   /* lazy values made so far: key -> value */
#define UV_UPGRADE 7   /* { params, callback } of websocket.Accept/opaque.Upgrade */
#define UV_ONEND   8   /* { n = count, cb1, state1, ... } of server.OnRequestEnd */
#define NUV        8

/* The request userdata is also the env's owin.ResponseBody: one object. */
#define OWL_REQ_T "owinlua.OutputStream"

/* indexes into the keys array (srv->keys_ref) */
enum {
  /* stored in the env when it is made */
  K_METHOD = 1, K_PATH, K_QUERY, K_RESPBODY,
  /* constants: answered by __index until the app stores a value */
  K_SCHEME, K_PATHBASE, K_PROTOCOL, K_VERSION,
  /* virtual: kept in the request */
  K_STATUS, K_REASON, K_RESPHEADERS,
  /* lazy: made on first access */
  K_REQHEADERS, K_REQBODY, K_REQID, K_CANCEL, K_REMOTEIP, K_REMOTEPORT,
  K_LOCALIP, K_LOCALPORT, K_ISLOCAL, K_ONSENDING, K_DISPOSING, K_SENDFILE,
  K_ONEND, K_SSLCERT, K_SSLERRORS, K_SSLLOAD,
  K_LAST = K_SSLLOAD,
  K_FIRSTV = K_SCHEME           /* the first key not stored at first */
};

/* values kept after the keys in the keys array: no hashing per request */
#define K_EMPTY (K_LAST + 1)      /* "" */
#define K_SLASH (K_LAST + 2)      /* "/" */
#define K_METHOD0 (K_LAST + 3)    /* + method: its name, stored on first use */


/* env[&owl_req_key] holds the request userdata */
extern const char owl_req_key;
/* registry[owl_req_mt] (a luaL_ref) is the request's metatable (OWL_REQ_T) */
extern int owl_req_mt;

/* [request(light)] -> (): makes owin.RequestHeaders while the head is
** still in the connection (a lua_CFunction, run protected).  env.c sets it
** when it opens, so that the request cycle does not call up into env.c. */
extern lua_CFunction owl_req_keepheaders;


#endif
