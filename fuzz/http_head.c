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
**   - a socketpair; one end is given to the server (owl_conn_adopt);
**   - the input is written to the other end in one write, the writer is
**     shut down, and the loop runs until the connection has closed while
**     the response is read and thrown away;
**   - the same again on a new connection, the input written in two parts
**     cut at a position chosen from the first byte and the length, with
**     the loop run in between so that the server reads them apart.
** A connection that never closes after its peer's FIN shows up as a
** libFuzzer timeout.  With FUZZ_SHOW set in the environment, the responses
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

#include "owl.h"

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


int LLVMFuzzerInitialize (int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  show = getenv("FUZZ_SHOW") != NULL;
  lua_State *L = luaL_newstate();
  owl_server_t *s = &owl_srv;
  owl_server_init(s, L);
  luaL_openlibs(L);
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


static void drain (int fd) {
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    if (show)
      fwrite(buf, 1, (size_t)n, stderr);
}


/* Writes p[0..n) to the non-blocking fd, running the loop while it is full */
static void put (int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    }
    else if (w < 0 && errno == EAGAIN) {
      drain(fd);
      uv_run(owl_srv.loop, UV_RUN_NOWAIT);
    }
    else
      return;                       /* the server closed: the rest is lost */
  }
}


static void serve (const uint8_t *data, size_t size, size_t cut) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) {
    perror("socketpair");
    abort();
  }
  owl_conn_adopt(&owl_srv, sv[0]);
  put(sv[1], data, cut);
  if (cut < size) {
    uv_run(owl_srv.loop, UV_RUN_NOWAIT);
    drain(sv[1]);
    put(sv[1], data + cut, size - cut);
  }
  shutdown(sv[1], SHUT_WR);
  while (owl_srv.nconns > 0) {
    drain(sv[1]);
    uv_run(owl_srv.loop, UV_RUN_ONCE);
  }
  drain(sv[1]);
  close(sv[1]);
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  serve(data, size, size);
  if (size >= 2)
    serve(data, size, 1 + (data[0] * 257u + size) % (size - 1));
  return 0;
}
