/*
** libFuzzer harness: the HTTP/1.1 connection (src/http1.c: the llhttp
** callbacks, scanhead, error_status, the header checks, the hand-off of
** chunked bodies to chunked.c), with the request cycle behind it, and the
** WebSocket and opaque upgrades that a head can ask for.
**
** The whole server is linked in (every object but main.c) and set up once,
** in-process, with a small Lua app: it reads the whole request body and
** answers with a line about the request; on a valid WebSocket handshake
** it accepts and echoes messages, on another Upgrade it takes the opaque
** stream and echoes bytes.  For each input:
**   - a socketpair; one end is given to the server (owl_h1_adopt);
**   - the input is written to the other end in one write, the writer is
**     shut down, and the loop runs until the connection has closed while
**     the response is read and thrown away;
**   - the same again on a new connection, the input written in two parts
**     cut at a position chosen from the first byte and the length, with
**     the loop run in between so that the server reads them apart.
** Both connections must get the same sequence of response status codes
** (see statuses for what is left out).  A connection that never closes
** after its peer's FIN shows up as a libFuzzer timeout.  With FUZZ_SHOW set in the environment, the responses
** are copied to stderr.
*/

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lualib.h>

#include "server/server.h"

static const char app_src[] =
  "local function readall(s)\n"
  "  local n = 0\n"
  "  while true do\n"
  "    local d = s:read(65536)\n"
  "    if not d then return n end\n"
  "    n = n + #d\n"
  "  end\n"
  "end\n"
  "return function(env)\n"
  "  if env['websocket.Accept'] then\n"
  "    return env['websocket.Accept']({}, function(ws)\n"
  "      while true do\n"
  "        local data, kind, fin = ws['websocket.ReceiveAsync']()\n"
  "        if data == nil or kind == 8 then break end\n"
  "        ws['websocket.SendAsync'](data, kind, fin)\n"
  "      end\n"
  "      ws['websocket.CloseAsync'](1000, '')\n"
  "    end)\n"
  "  end\n"
  "  if env['opaque.Upgrade'] and env['owin.RequestPath'] == '/opaque' then\n"
  "    return env['opaque.Upgrade']({}, function(oenv)\n"
  "      local s = oenv['opaque.Stream']\n"
  "      while true do\n"
  "        local d = s:read()\n"
  "        if not d then break end\n"
  "        s:write(d)\n"
  "      end\n"
  "    end)\n"
  "  end\n"
  "  local n = readall(env['owin.RequestBody'])\n"
  "  local h = env['owin.RequestHeaders']\n"
  "  local k = 0\n"
  "  for name, v in pairs(h) do k = k + #name + #table.concat(v, ',') end\n"
  "  local res = env['owin.ResponseHeaders']\n"
  "  res['Content-Type'] = { 'text/plain' }\n"
  "  env['owin.ResponseBody']:write(env['owin.RequestMethod'], ' ',\n"
  "    env['owin.RequestPath'], '?', env['owin.RequestQueryString'], ' ',\n"
  "    n, ' ', k)\n"
  "end\n";


static int show;                    /* FUZZ_SHOW=1: responses to stderr */

/* What the server answered on one connection */
typedef struct answer {
  char *p;
  size_t n, cap;
} answer_t;


int LLVMFuzzerInitialize (int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  show = getenv("FUZZ_SHOW") != NULL;
  lua_State *L = luaL_newstate();
  owl_server_t *s = &owl_srv;
  owl_server_init(s, L);
  luaL_openlibs(L);
  /* owin.core reads its option defaults from owin.options (lua/, run from
  ** the checkout's root as make fuzz does) */
  if (luaL_dostring(L, "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path")) {
    fprintf(stderr, "http_head: %s\n", lua_tostring(L, -1));
    abort();
  }
  luaL_requiref(L, "owin.core", luaopen_owin_core, 0);
  lua_pop(L, 1);
  s->opt.ws_ping_interval = 0;      /* no timers that the harness waits on */
  s->opt.max_header_bytes = 4096;   /* limits the inputs can reach */
  s->opt.max_target = 1024;
  s->opt.max_headers = 20;
  s->opt.max_body = 2048;
  s->opt.ws_max_message = 1024;
  if (luaL_loadstring(L, app_src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "http_head: the app: %s\n", lua_tostring(L, -1));
    abort();
  }
  s->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}


static void drain (int fd, answer_t *a) {
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (show)
      fwrite(buf, 1, (size_t)n, stderr);
    if ((size_t)n > a->cap - a->n) {
      while ((size_t)n > a->cap - a->n)
        a->cap = a->cap ? 2 * a->cap : 65536;
      a->p = realloc(a->p, a->cap);
    }
    memcpy(a->p + a->n, buf, (size_t)n);
    a->n += (size_t)n;
  }
}


/* Writes p[0..n) to the non-blocking fd, running the loop while it is full */
static void put (int fd, const uint8_t *p, size_t n, answer_t *a) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    }
    else if (w < 0 && errno == EAGAIN) {
      drain(fd, a);
      uv_run(owl_srv.loop, UV_RUN_NOWAIT);
    }
    else
      return;                       /* the server closed: the rest is lost */
  }
}


static void serve (const uint8_t *data, size_t size, size_t cut, answer_t *a) {
  int sv[2];
  a->n = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) {
    perror("socketpair");
    abort();
  }
  owl_h1_adopt(&owl_srv, sv[0], NULL);
  put(sv[1], data, cut, a);
  if (cut < size) {
    uv_run(owl_srv.loop, UV_RUN_NOWAIT);
    drain(sv[1], a);
    put(sv[1], data + cut, size - cut, a);
  }
  shutdown(sv[1], SHUT_WR);
  while (owl_srv.conns.n > 0) {
    drain(sv[1], a);
    uv_run(owl_srv.loop, UV_RUN_ONCE);
  }
  drain(sv[1], a);
  close(sv[1]);
}


/*
** The status codes of the HTTP responses in a[0..n), up to a 101 (what
** follows is WebSocket or opaque), as one string.  100 Continue is left
** out: whether it is sent depends on when the body arrives.  Every error
** the server answers itself (400, 408, 413, 414, 431, 501, 505) counts as
** one "4xx": a head with two faults is refused for the one found first, and
** a limit (413, 414, 431) is checked as the bytes arrive while the line
** rules are checked per read, so which fault comes first can depend on the
** split.  That a request is refused, and where the refusals are among the
** answers, may not.
*/
static size_t statuses (const answer_t *a, char *out, size_t cap) {
  static const char v[] = "HTTP/1.1 ";
  size_t k = 0;
  const char *s = a->p, *e = a->p + a->n;
  while (s != NULL && (size_t)(e - s) >= sizeof v + 2 && k + 3 <= cap) {
    s = memmem(s, (size_t)(e - s), v, sizeof v - 1);
    if (s == NULL || (size_t)(e - s) < sizeof v + 2)
      break;
    s += sizeof v - 1;
    if (memcmp(s, "100", 3) == 0)
      continue;
    int refused = s[0] == '4' || (s[0] == '5' && memcmp(s, "500", 3) != 0);
    memcpy(out + k, refused ? "4xx" : s, 3);
    k += 3;
    if (memcmp(s, "101", 3) == 0)
      break;
  }
  return k;
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static answer_t whole, split;
  char s1[512], s2[512];
  size_t n1, n2;
  serve(data, size, size, &whole);
  if (size < 2)
    return 0;
  serve(data, size, 1 + (data[0] * 257u + size) % (size - 1), &split);
  /* the same requests, read in two parts, get the same answers */
  n1 = statuses(&whole, s1, sizeof s1);
  n2 = statuses(&split, s2, sizeof s2);
  if (n1 != n2 || memcmp(s1, s2, n1) != 0) {
    fprintf(stderr, "http_head: answered %.*s in one read, %.*s in two\n",
            (int)n1, s1, (int)n2, s2);
    abort();
  }
  return 0;
}
