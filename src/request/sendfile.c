/*
** sendfile.SendAsync and owin.fs: files for responses.
**
** SendAsync(path, offset, length_or_nil, cancel) sends a file range as
** (part of) the response body with sendfile(2): the kernel copies from the
** page cache to the socket, no user-space copy.  It runs in the request's
** coroutine: everything the response had buffered goes out first (the
** coroutine waits for it), then sendfile fills the socket; when the socket
** is full (EAGAIN), one piece of the file goes through the connection's
** output buffer instead, so that the write completion of libuv says when
** the socket drains, and the coroutine waits for that.  Disk reads happen
** on the loop thread, as in nginx without aio threads: files in the page
** cache cost nothing, cold disks stall the loop.
**
** The open file belongs to a small userdata ("owinlua.Sendfile") on the
** coroutine's stack, so an error or an abandoned coroutine closes it (__gc).
*/

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "request/request.h"
#include "request/keys.h"

#define SF_T "owinlua.Sendfile"
#define PIECE (64 * 1024)       /* what goes through libuv when the socket is full */


typedef struct owl_sendfile {
  int fd;                       /* -1 once closed */
  off_t off;
  uint64_t left;
  int chunked;                  /* a chunk header went out: end it with CRLF */
} owl_sendfile_t;


/*
** Pushes nil, "ENAME: message (what)", "ENAME" for errno value e (what:
** the path, or NULL); returns 3.
*/
static int failure (lua_State *L, int e, const char *what) {
  int err = uv_translate_sys_error(e);
  lua_pushnil(L);
  if (what)
    lua_pushfstring(L, "%s: %s (%s)", uv_err_name(err), uv_strerror(err), what);
  else
    lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}


static void sf_close (owl_sendfile_t *sf) {
  if (sf->fd >= 0) {
    close(sf->fd);
    sf->fd = -1;
  }
}


static int sf_gc (lua_State *L) {
  sf_close(lua_touserdata(L, 1));
  return 0;
}


/* Is the token at idx (nil, or a table with .cancelled) cancelled? */
static int cancelled (lua_State *L, int idx) {
  int c = 0;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "cancelled");
    c = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return c;
}


/*
** Continuation: stack [path, offset, length, cancel, sendfile]; upvalue 1
** the request.  Sends what is left, waiting for drains as needed.
*/
static int send_k (lua_State *L, int status, lua_KContext ctx) {
  owl_req_t *r = lua_touserdata(L, lua_upvalueindex(1));
  owl_sendfile_t *sf = lua_touserdata(L, 5);
  owl_conn_t *c = r->conn;
  int sock;
  (void)status;
  (void)ctx;
  if (c == NULL) {
    sf_close(sf);
    return failure(L, EPIPE, NULL);
  }
  if (cancelled(L, 4)) {
    sf_close(sf);
    return failure(L, ECANCELED, NULL);
  }
  owl_conn_flush(c);
  if (r->conn == NULL) {
    sf_close(sf);
    return failure(L, EPIPE, NULL);
  }
  /* a transport without a descriptor to write to (TLS) gets the file
  ** through the bounded copy below */
  int direct = owl_conn_fileno(c, &sock) == 0;
  while (sf->left > 0) {
    if (owl_conn_pending(c) > 0) {          /* bytes before ours: wait */
      return owl_task_wait(L, &r->task, OWL_WAIT_DRAIN, NULL, NULL, 0, send_k);
    }
    size_t want = sf->left > (1u << 30) ? (1u << 30) : (size_t)sf->left;
    ssize_t n = -1;
    errno = EAGAIN;
    if (direct)
      n = sendfile(sock, sf->fd, &sf->off, want);
    if (n > 0) {
      sf->left -= (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN) {
      int e = errno;
      sf_close(sf);
      owl_conn_close(c);
      return failure(L, e, NULL);
    }
    if (n == 0) {                           /* the file got shorter */
      sf_close(sf);
      r->abort = 1;
      return failure(L, EIO, "the file ended before the range did");
    }
    size_t piece = sf->left < PIECE ? (size_t)sf->left : PIECE;
    char *to = owl_conn_reserve(c, piece);
    if (to == NULL)
      return luaL_error(L, "not enough memory");
    ssize_t got = pread(sf->fd, to, piece, sf->off);
    if (got <= 0) {
      int e = got < 0 ? errno : EIO;
      sf_close(sf);
      r->abort = 1;
      return failure(L, e, NULL);
    }
    owl_conn_commit(c, (size_t)got);
    sf->off += got;
    sf->left -= (uint64_t)got;
    owl_conn_flush(c);                      /* the socket is full: libuv waits */
    if (r->conn == NULL) {
      sf_close(sf);
      return failure(L, EPIPE, NULL);
    }
  }
  sf_close(sf);
  if (sf->chunked && owl_conn_append(c, "\r\n", 2))
    return luaL_error(L, "not enough memory");
  lua_pushboolean(L, 1);
  return 1;
}


/*
** sendfile.SendAsync(path, offset, length_or_nil, cancel) -> true, or
** nil, err, code (a missing or unreadable file, a range past its end, the
** client gone, the token cancelled).  Sets Content-Length when the headers
** are still unsent and the app set none.
*/
static int l_sendfile (lua_State *L) {
  owl_req_t *r = lua_touserdata(L, lua_upvalueindex(1));
  const char *path = luaL_checkstring(L, 1);
  lua_Integer off = luaL_optinteger(L, 2, 0);
  lua_Integer len = luaL_opt(L, luaL_checkinteger, 3, -1);
  struct stat st;
  luaL_argcheck(L, off >= 0, 2, "offset must not be negative");
  luaL_argcheck(L, len >= -1, 3, "length must not be negative");
  lua_settop(L, 4);
  if (OWL_ENDED(r))
    return luaL_error(L, "sendfile.SendAsync used after its response finished");
  /* O_NONBLOCK: opening a FIFO must not block the loop (it is refused below) */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return failure(L, errno, path);
  owl_sendfile_t *sf = lua_newuserdatauv(L, sizeof *sf, 0);
  sf->fd = fd;
  sf->chunked = 0;
  luaL_setmetatable(L, SF_T);
  if (fstat(fd, &st) != 0) {
    int e = errno;
    sf_close(sf);
    return failure(L, e, path);
  }
  if (!S_ISREG(st.st_mode)) {
    sf_close(sf);
    return failure(L, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, path);
  }
  if ((uint64_t)off > (uint64_t)st.st_size ||
      (len >= 0 && (uint64_t)off + (uint64_t)len > (uint64_t)st.st_size)) {
    sf_close(sf);
    return failure(L, EINVAL, "range past the end of the file");
  }
  if (len < 0)
    len = st.st_size - off;
  sf->off = (off_t)off;
  sf->left = (uint64_t)len;
  if (!OWL_COMMITTED(r)) {                      /* Content-Length, if the app set none */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
    lua_getiuservalue(L, -1, UV_ENV);
    lua_getfield(L, -1, "owin.ResponseHeaders");
    if (lua_getfield(L, -1, "Content-Length") == LUA_TNIL && r->written == 0 &&
        (r->conn == NULL || owl_conn_held(r->conn) == 0)) {
      lua_pushinteger(L, len);
      lua_setfield(L, -3, "Content-Length");
    }
    lua_settop(L, 5);
  }
  owl_req_commit(L, r);
  if (r->content_length >= 0 && !r->no_body &&
      r->written + (uint64_t)len > (uint64_t)r->content_length)
    sf_close(sf);                           /* owl_req_count raises */
  owl_req_count(L, r, (uint64_t)len);
  if (r->no_body || len == 0 || r->conn == NULL) {
    sf_close(sf);
    if (r->conn == NULL)
      return failure(L, EPIPE, NULL);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!OWL_SENT(r))
    owl_req_serialize(L, r, 0);
  if (r->chunked) {
    if (owl_req_chunk_head(r->conn, (uint64_t)len))
      return luaL_error(L, "not enough memory");
    sf->chunked = 1;
  }
  if (owl_task_of(L) != &r->task || !owl_task_can_wait(L))
    return luaL_error(L, "sendfile.SendAsync can only run in its request's coroutine");
  return send_k(L, LUA_OK, 0);
}


/* Pushes the sendfile.SendAsync closure of the request userdata at ri. */
void owl_sendfile_push (lua_State *L, int ri) {
  lua_pushvalue(L, ri);
  lua_pushcclosure(L, l_sendfile, 1);
}


/* {====== owin.fs */

static int pushstat (lua_State *L, const struct stat *st) {
  const char *type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "directory" :
                     S_ISLNK(st->st_mode) ? "link" : "other";
  lua_createtable(L, 0, 4);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st->st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st->st_mtime);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)st->st_mode);
  lua_setfield(L, -2, "mode");
  return 1;
}


/* owin.fs.stat(path) -> { type, size, mtime, mode }, or nil, err, code */
static int fs_stat (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0)
    return failure(L, errno, path);
  return pushstat(L, &st);
}


/* owin.fs.lstat(path): as stat, but a symbolic link is itself ("link") */
static int fs_lstat (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0)
    return failure(L, errno, path);
  return pushstat(L, &st);
}


/* owin.fs.realpath(path) -> the canonical absolute path, or nil, err, code */
static int fs_realpath (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *p = realpath(path, NULL);
  if (p == NULL)
    return failure(L, errno, path);
  lua_pushstring(L, p);
  free(p);
  return 1;
}


/* __close and __gc of a file handle made by fs_mkstemp, as io's own. */
static int io_fclose (lua_State *L) {
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  errno = 0;
  return luaL_fileresult(L, fclose(p->f) == 0, NULL);
}


/*
** owin.fs.mkstemp(template) -> file, path, or nil, err, code.  Makes a new
** file from template, whose last six characters must be "XXXXXX" (they are
** replaced to make a name no file has), created exclusively with mode 0600
** (mkstemp(3)), and opens it for reading and writing.  file is an io file
** handle: file:write, file:seek, file:close ...
*/
static int fs_mkstemp (lua_State *L) {
  size_t n;
  const char *t = luaL_checklstring(L, 1, &n);
  if (n < 6 || memcmp(t + n - 6, "XXXXXX", 6) != 0 || memchr(t, '\0', n) != NULL)
    return luaL_argerror(L, 1, "a path ending in XXXXXX expected");
  luaL_Stream *p = (luaL_Stream *)lua_newuserdatauv(L, sizeof *p, 0);
  p->closef = NULL;                         /* a closed file until it is open */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  char *path = (char *)lua_newuserdatauv(L, n + 1, 0);   /* freed by the GC */
  memcpy(path, t, n + 1);
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0)
    return failure(L, errno, t);
  p->f = fdopen(fd, "w+b");
  if (p->f == NULL) {
    int e = errno;
    close(fd);
    unlink(path);
    return failure(L, e, path);
  }
  p->closef = io_fclose;
  lua_pushstring(L, path);
  lua_remove(L, -2);                        /* the path's buffer */
  return 2;
}


/* Adds fs = { stat, lstat, realpath, mkstemp } to the module table on top. */
void owl_open_fs (lua_State *L) {
  static const luaL_Reg fs[] = {
    {"stat", fs_stat},
    {"lstat", fs_lstat},
    {"realpath", fs_realpath},
    {"mkstemp", fs_mkstemp},
    {NULL, NULL}
  };
  static const luaL_Reg sf_m[] = {
    {NULL, NULL}
  };
  owl_newclass(L, SF_T, sf_m, NULL, sf_gc);
  luaL_newlib(L, fs);
  lua_setfield(L, -2, "fs");
}
/* }====== */
