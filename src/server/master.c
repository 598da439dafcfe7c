/*
** Processes: the master of --workers / --reload, and a worker's side of it.
**
** The master binds and listens on every listener (core.listen(spec,
** "hold")) and serves nothing itself.  It starts each worker by running
** this binary again with the same arguments and three variables:
** OWINLUA_WORKER_ID (1, 2, ...), OWINLUA_WORKER_TAG (this boot's random tag,
** the worker id and its generation: the worker's part of every request id)
** and OWINLUA_WORKER_LISTEN, one spec per line, "fd:N:tcp:host:port" or
** "fd:N:unix:/path" for a listening socket the worker inherits as
** descriptor N and accepts on.  Descriptor 3 of a worker is a socketpair to
** the master: the worker writes one byte once its app is loaded and its
** listeners open (ready), and stops gracefully when it reads end-of-file
** (the master is gone).  Workers run in their own session, so a terminal's
** Ctrl-C reaches the master only, which passes the stop on.
**
** Why one socket that every worker inherits, not one SO_REUSEPORT socket
** per worker: the kernel then guards the address.  A second master, or any
** other program, asking for the same address gets EADDRINUSE, as with a
** single process; with SO_REUSEPORT a second master of the same user would
** join the group and silently take a share of the connections, and no
** guard socket without SO_REUSEPORT can sit on a port beside such a group.
** The accept queue belongs to the master's socket for the life of the
** server, so a worker that stops (rolling restart, SIGTTOU, a crash) leaves
** the connections queued for the others: none is reset, and none is refused
** while a replacement starts.  The cost is that the kernel no longer hashes
** connections evenly across workers; each idle worker races to accept
** (one connection at a time: see on_connection in server.c).
**
** Slots.  Worker k (1-based) fills slot k-1.  A slot holds its current
** worker and, during a rolling restart, the replacement that is starting.
** A worker that dies unasked is replaced after a backoff that doubles with
** every death of a worker that had not served STABLE_MS yet.  If a worker
** of the first generation dies before it is ready, the app cannot start:
** the master stops the others and exits 1 (with --reload it waits for the
** next change instead).
**
** Signals: SIGTERM/SIGINT stop every worker gracefully (a second one stops
** them at once); SIGHUP replaces the workers one at a time, each old one
** retiring only when its replacement is ready, so that an app that no
** longer loads leaves the old workers serving; SIGTTIN/SIGTTOU add or
** remove a worker.
**
** Ownership: master_t is a userdata on l_master's Lua stack, collected after
** l_master returns, by which time every handle in it is closed.  A
** worker_t is freed in the close callback of the last of its three handles
** (process, channel, start timer); a slot_t in its timer's close callback.
*/

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"
#include "net/tls.h"


#define START_TIMEOUT_MS 60000  /* a worker not ready by then is killed */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_MS 10000         /* a worker that lived this long resets the backoff */
#define KILL_GRACE_MS 5000      /* after the graceful timeout, SIGKILL */
#define RELOAD_DEBOUNCE_MS 150
#define MAX_WATCHED_DIRS 512
#define MAX_WORKERS 512
#define CHAN_FD 3               /* a worker's descriptor to the master */
#define TICKETS_FD(m) (CHAN_FD + 1 + (m)->nfds)   /* the ticket secret's pipe */

extern char **environ;

typedef struct master master_t;
typedef struct worker worker_t;

struct worker {
  uv_process_t proc;
  uv_pipe_t chan;
  uv_timer_t start_timer;
  master_t *m;
  worker_t *next;               /* m->workers: every process not yet reaped */
  int slot;                     /* index into m->slots, -1 once dropped */
  int id;                       /* OWINLUA_WORKER_ID: slot + 1 when started */
  int pid;
  int nhandles;
  uint64_t ready_at;
  unsigned ready : 1;
  unsigned retiring : 1;        /* told to stop: not replaced */
  unsigned exited : 1;
};

typedef struct slot {
  uv_timer_t respawn;           /* backoff before a replacement */
  master_t *m;
  int index;
  worker_t *w;                  /* serving, or NULL */
  worker_t *next_w;             /* starting to replace w (rolling restart) */
  int fails;                    /* deaths in a row before STABLE_MS */
} slot_t;

typedef struct watch {
  uv_fs_event_t ev;
  struct watch *next;
} watch_t;

struct master {
  uv_loop_t *loop;
  char exe[4096];
  char **args;                  /* argv of a worker */
  char *listen_env;             /* "OWINLUA_WORKER_LISTEN=..." */
  char *tickets_env;            /* "OWINLUA_WORKER_TICKETS=N" */
  char boot[16];                /* this boot's random tag (request ids) */
  int nfds;                     /* inherited listeners: worker fd 4.. */
  int fds[32];
  unsigned gen[MAX_WORKERS];    /* workers started per slot, ever */
  slot_t **slots;
  int nslots;
  worker_t *workers;
  int nalive;                   /* workers not yet reaped */
  int ever_ready;
  int stopping;
  int nsignals;                 /* stop signals received */
  int exit_code;
  int done;
  int rolling;                  /* a rolling restart is under way */
  int roll_slot;
  int roll_again;               /* another restart was asked meanwhile */
  uv_signal_t sig[5];
  uv_timer_t kill_timer;
  /* --reload */
  char *watch_dir;
  watch_t *watches;
  int nwatches;
  int changed_lua;
  int changed_tree;
  uv_timer_t debounce;
};


/* The master's log lines ("... [info] master: ...", see l_master). */
#define mlog(level, ...) owl_log(level, NULL, __VA_ARGS__)


static void spawn_slot (master_t *m, int i, int replace);
static void roll_step (master_t *m);
static void master_stop (master_t *m, int code);


static void on_respawn (uv_timer_t *t) {
  slot_t *sl = t->data;
  if (sl->w == NULL && !sl->m->stopping)
    spawn_slot(sl->m, sl->index, 0);
}


/* {====== workers */

static void free_worker (uv_handle_t *h) {
  worker_t *w = h->data;
  if (--w->nhandles == 0)
    free(w);
}


static void close_worker (worker_t *w) {
  uv_close((uv_handle_t *)&w->proc, free_worker);
  if (!uv_is_closing((uv_handle_t *)&w->chan))
    uv_close((uv_handle_t *)&w->chan, free_worker);
  uv_close((uv_handle_t *)&w->start_timer, free_worker);
}


static void retire (worker_t *w) {
  if (w == NULL || w->retiring || w->exited)
    return;
  w->retiring = 1;
  uv_process_kill(&w->proc, SIGTERM);
}


/* A stop is complete when every worker is reaped. */
static void finish (master_t *m) {
  if (m->stopping && m->nalive == 0)
    m->done = 1;
}


static void unlink_worker (master_t *m, worker_t *w) {
  for (worker_t **p = &m->workers; *p != NULL; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  m->nalive--;
}


static void on_worker_exit (uv_process_t *proc, int64_t status, int sig) {
  worker_t *w = proc->data;
  master_t *m = w->m;
  slot_t *sl = w->slot >= 0 ? m->slots[w->slot] : NULL;
  w->exited = 1;
  uv_timer_stop(&w->start_timer);
  unlink_worker(m, w);
  if (sig)
    mlog(w->retiring || m->stopping ? OWL_LOG_INFO : OWL_LOG_ERROR, "worker %d (pid %d) %s by signal %d (%s)",
         w->id, w->pid, w->retiring || m->stopping ? "stopped" : "killed",
         sig, strsignal(sig));
  else if (w->retiring || m->stopping)
    mlog(OWL_LOG_INFO, "worker %d (pid %d) stopped", w->id, w->pid);
  else
    mlog(OWL_LOG_ERROR, "worker %d (pid %d) exited with status %d", w->id, w->pid, (int)status);
  if (sl != NULL && sl->next_w == w) {
    sl->next_w = NULL;
    if (!m->stopping && !w->retiring) {       /* the new code does not start */
      mlog(OWL_LOG_ERROR, "restart abandoned: the new worker %d did not start; "
           "the running workers keep serving", w->id);
      m->rolling = 0;
      m->roll_again = 0;
    }
  }
  else if (sl != NULL && sl->w == w) {
    sl->w = NULL;
    if (m->stopping || w->retiring) {
      /* nothing to replace */
    }
    else if (!w->ready && !m->ever_ready && m->watch_dir == NULL) {
      mlog(OWL_LOG_ERROR, "worker %d exited before it was ready: the app cannot start", w->id);
      master_stop(m, 1);
    }
    else if (!w->ready && m->watch_dir != NULL) {
      mlog(OWL_LOG_ERROR, "worker %d failed to start; waiting for a change under %s",
           w->id, m->watch_dir);
    }
    else {
      uint64_t delay = 0;
      if (w->ready && uv_now(m->loop) - w->ready_at >= STABLE_MS)
        sl->fails = 0;
      else
        sl->fails++;
      if (sl->fails > 0) {
        delay = BACKOFF_MIN_MS;
        for (int i = 1; i < sl->fails && delay < BACKOFF_MAX_MS; i++)
          delay *= 2;
        if (delay > BACKOFF_MAX_MS)
          delay = BACKOFF_MAX_MS;
      }
      mlog(OWL_LOG_INFO, "replacing worker %d in %.1f s", w->id, delay / 1e3);
      uv_timer_start(&sl->respawn, on_respawn, delay, 0);
    }
  }
  close_worker(w);
  if (m->rolling)
    roll_step(m);
  finish(m);
}


static void on_chan_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char b[64];
  (void)h; (void)size;
  *buf = uv_buf_init(b, sizeof b);
}


/* The worker said it is ready (a byte), or its end closed (EOF). */
static void on_chan_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  worker_t *w = s->data;
  master_t *m = w->m;
  (void)buf;
  if (nread < 0) {
    uv_close((uv_handle_t *)s, free_worker);
    return;
  }
  if (nread == 0 || w->ready)
    return;
  w->ready = 1;
  w->ready_at = uv_now(m->loop);
  m->ever_ready = 1;
  uv_timer_stop(&w->start_timer);
  if (w->slot < 0)
    return;
  slot_t *sl = m->slots[w->slot];
  if (sl->next_w == w) {                    /* rolling restart: old one goes */
    retire(sl->w);
    sl->w = w;
    sl->next_w = NULL;
    m->roll_slot++;
    roll_step(m);
  }
}


static void on_start_timeout (uv_timer_t *t) {
  worker_t *w = t->data;
  mlog(OWL_LOG_ERROR, "worker %d (pid %d) not ready after %d s: killing it",
       w->id, w->pid, START_TIMEOUT_MS / 1000);
  uv_process_kill(&w->proc, SIGKILL);
}


/*
** Builds the environment of worker `id`, generation gen, into a malloc'd
** array: ours without OWINLUA_WORKER_*, then idvar and tagvar (filled in)
** and the listen specs.
*/
static char **worker_env (master_t *m, int id, unsigned gen, char *idvar, size_t idlen,
                          char *tagvar, size_t taglen) {
  size_t n = 0, k = 0;
  while (environ[n] != NULL)
    n++;
  char **env = malloc((n + 5) * sizeof *env);
  if (env == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "OWINLUA_WORKER_", 15) != 0)
      env[k++] = environ[i];
  snprintf(idvar, idlen, "OWINLUA_WORKER_ID=%d", id);
  snprintf(tagvar, taglen, "OWINLUA_WORKER_TAG=%s-%d.%u", m->boot, id, gen);
  env[k++] = idvar;
  env[k++] = tagvar;
  env[k++] = m->listen_env;
  env[k++] = m->tickets_env;
  env[k] = NULL;
  return env;
}


/*
** A pipe holding the TLS ticket secret (net/tls.h) for a new worker, which
** inherits its reading end as descriptor TICKETS_FD and reads it at start:
** every worker encrypts session tickets with the same keys, so a client
** resumes its session on any of them, across rolling restarts too.  The
** secret goes through a pipe, not the environment, which other processes
** of the user could read.  Returns the reading end, or -1.
*/
static int tickets_pipe (void) {
  unsigned char st[OWL_TLS_TICKET_STATE];
  int fd[2];
  if (pipe2(fd, O_CLOEXEC) < 0)
    return -1;
  owl_tls_ticket_export(st);
  ssize_t n = write(fd[1], st, sizeof st);  /* 40 bytes: a pipe takes them */
  memset(st, 0, sizeof st);
  close(fd[1]);
  if (n != (ssize_t)sizeof st) {
    close(fd[0]);
    return -1;
  }
  return fd[0];
}


/* Starts the worker of slot i; replace: as the slot's next worker. */
static void spawn_slot (master_t *m, int i, int replace) {
  slot_t *sl = m->slots[i];
  char idvar[40], tagvar[64];
  uv_stdio_container_t io[CHAN_FD + 1 + 32 + 1];
  uv_process_options_t opt;
  worker_t *w = calloc(1, sizeof *w);
  unsigned gen = m->gen[i] + 1;
  char **env = worker_env(m, i + 1, gen, idvar, sizeof idvar, tagvar, sizeof tagvar);
  int err;
  if (w == NULL || env == NULL) {
    free(w);
    free(env);
    err = UV_ENOMEM;
    goto fail;
  }
  w->m = m;
  w->slot = i;
  w->id = i + 1;
  w->proc.data = w->chan.data = w->start_timer.data = w;
  uv_pipe_init(m->loop, &w->chan, 0);
  for (int k = 0; k < 3; k++) {
    io[k].flags = UV_INHERIT_FD;
    io[k].data.fd = k;
  }
  io[CHAN_FD].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  io[CHAN_FD].data.stream = (uv_stream_t *)&w->chan;
  for (int k = 0; k < m->nfds; k++) {
    io[CHAN_FD + 1 + k].flags = UV_INHERIT_FD;
    io[CHAN_FD + 1 + k].data.fd = m->fds[k];
  }
  int tfd = tickets_pipe();
  io[TICKETS_FD(m)].flags = tfd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
  io[TICKETS_FD(m)].data.fd = tfd;
  memset(&opt, 0, sizeof opt);
  opt.file = m->exe;
  opt.args = m->args;
  opt.env = env;
  opt.stdio = io;
  opt.stdio_count = TICKETS_FD(m) + 1;
  opt.flags = UV_PROCESS_DETACHED;    /* its own session: no terminal signals */
  opt.exit_cb = on_worker_exit;
  err = uv_spawn(m->loop, &w->proc, &opt);
  free(env);                          /* the child has its copy */
  if (tfd >= 0)
    close(tfd);
  if (err) {
    w->nhandles = 2;                  /* a failed spawn is closed all the same */
    uv_close((uv_handle_t *)&w->chan, free_worker);
    uv_close((uv_handle_t *)&w->proc, free_worker);
    goto fail;
  }
  w->pid = w->proc.pid;
  m->gen[i] = gen;
  w->nhandles = 3;
  uv_timer_init(m->loop, &w->start_timer);
  uv_timer_start(&w->start_timer, on_start_timeout, START_TIMEOUT_MS, 0);
  uv_read_start((uv_stream_t *)&w->chan, on_chan_alloc, on_chan_read);
  w->next = m->workers;
  m->workers = w;
  m->nalive++;
  if (replace)
    sl->next_w = w;
  else
    sl->w = w;
  mlog(OWL_LOG_INFO, "worker %d started (pid %d, request ids %s-%d.%u-N)", i + 1, w->pid,
       m->boot, i + 1, gen);
  return;
fail:
  mlog(OWL_LOG_ERROR, "cannot start worker %d: %s", i + 1, uv_strerror(err));
  if (!m->ever_ready)
    master_stop(m, 1);
  else if (replace) {
    m->rolling = 0;
    m->roll_again = 0;
  }
  else
    uv_timer_start(&sl->respawn, on_respawn, BACKOFF_MAX_MS, 0);
}
/* }====== */


/* {====== rolling restart, stop, worker count */

/* Starts the replacement of the next slot that has a worker; ends the
** restart when none is left. */
static void roll_step (master_t *m) {
  if (m->stopping || !m->rolling)
    return;
  while (m->roll_slot < m->nslots) {
    slot_t *sl = m->slots[m->roll_slot];
    if (sl->next_w != NULL)
      return;                               /* waiting for it to be ready */
    if (sl->w == NULL) {                    /* dead or never started: now */
      uv_timer_stop(&sl->respawn);
      sl->fails = 0;
      spawn_slot(m, m->roll_slot, 0);
      m->roll_slot++;
      continue;
    }
    spawn_slot(m, m->roll_slot, 1);
    if (m->rolling)
      return;
  }
  if (!m->rolling)
    return;
  m->rolling = 0;
  mlog(OWL_LOG_INFO, "restart done: %d worker%s", m->nslots, m->nslots == 1 ? "" : "s");
  if (m->roll_again) {
    m->roll_again = 0;
    m->rolling = 1;
    m->roll_slot = 0;
    roll_step(m);
  }
}


/* Replaces every worker, one at a time (SIGHUP, or a change with --reload). */
static void roll (master_t *m, const char *why) {
  if (m->stopping)
    return;
  if (m->rolling) {
    m->roll_again = 1;
    return;
  }
  mlog(OWL_LOG_INFO, "%s: restarting the workers one at a time", why);
  m->rolling = 1;
  m->roll_slot = 0;
  roll_step(m);
}


static void on_kill_timer (uv_timer_t *t) {
  master_t *m = t->data;
  for (worker_t *w = m->workers; w != NULL; w = w->next)
    uv_process_kill(&w->proc, SIGKILL);
}


static void master_stop (master_t *m, int code) {
  if (code > m->exit_code)
    m->exit_code = code;
  if (m->stopping)
    return;
  m->stopping = 1;
  m->rolling = 0;
  for (int i = 0; i < m->nslots; i++)
    uv_timer_stop(&m->slots[i]->respawn);
  for (worker_t *w = m->workers; w != NULL; w = w->next)
    if (!w->exited)
      uv_process_kill(&w->proc, SIGTERM);
  /* no worker is started from now on: the workers' copies of the listening
  ** sockets are the last, and the addresses close as the workers stop */
  owl_server_unlisten(&owl_srv, 0);
  uv_timer_start(&m->kill_timer, on_kill_timer, owl_srv.opt.graceful_timeout + KILL_GRACE_MS, 0);
  finish(m);
}


static void free_slot (uv_handle_t *h) {
  free(h->data);
}


static int add_slot (master_t *m) {
  slot_t **s = realloc(m->slots, (size_t)(m->nslots + 1) * sizeof *s);
  if (s == NULL)
    return UV_ENOMEM;
  m->slots = s;
  slot_t *sl = calloc(1, sizeof *sl);
  if (sl == NULL)
    return UV_ENOMEM;
  sl->m = m;
  sl->index = m->nslots;
  uv_timer_init(m->loop, &sl->respawn);
  sl->respawn.data = sl;
  s[m->nslots++] = sl;
  return 0;
}


/* Drops the last slot: its workers stop gracefully. */
static void drop_slot (master_t *m) {
  slot_t *sl = m->slots[--m->nslots];
  for (worker_t *w = m->workers; w != NULL; w = w->next)
    if (w->slot == sl->index) {
      retire(w);
      w->slot = -1;
    }
  uv_close((uv_handle_t *)&sl->respawn, free_slot);
  if (m->rolling && m->roll_slot >= m->nslots)
    roll_step(m);
}


static void on_signal (uv_signal_t *h, int signum) {
  master_t *m = h->data;
  switch (signum) {
    case SIGINT: case SIGTERM:
      if (++m->nsignals > 1) {              /* a second one: workers stop now */
        mlog(OWL_LOG_INFO, "stopping the workers now");
        for (worker_t *w = m->workers; w != NULL; w = w->next)
          uv_process_kill(&w->proc, SIGTERM);
      }
      else {
        mlog(OWL_LOG_INFO, "stopping: the workers finish their requests");
        master_stop(m, 0);
      }
      break;
    case SIGHUP:
      roll(m, "SIGHUP");
      break;
    case SIGTTIN:
      if (m->stopping || m->nslots >= MAX_WORKERS || add_slot(m))
        break;
      mlog(OWL_LOG_INFO, "SIGTTIN: adding worker %d", m->nslots);
      spawn_slot(m, m->nslots - 1, 0);
      break;
    case SIGTTOU:
      if (m->stopping || m->nslots <= 1)
        break;
      mlog(OWL_LOG_INFO, "SIGTTOU: removing worker %d", m->nslots);
      drop_slot(m);
      break;
  }
}
/* }====== */


/* {====== --reload: watching the app's directory */

static void watch_tree (master_t *m, const char *dir, int depth);


static void free_watch (uv_handle_t *h) {
  free(h->data);
}


static void unwatch (master_t *m) {
  while (m->watches != NULL) {
    watch_t *w = m->watches;
    m->watches = w->next;
    uv_close((uv_handle_t *)&w->ev, free_watch);
  }
  m->nwatches = 0;
}


static void on_debounce (uv_timer_t *t) {
  master_t *m = t->data;
  if (m->changed_tree) {                    /* directories may have come or gone */
    m->changed_tree = 0;
    unwatch(m);
    watch_tree(m, m->watch_dir, 0);
  }
  if (m->changed_lua) {
    m->changed_lua = 0;
    roll(m, "a .lua file changed");
  }
}


static void on_fs_event (uv_fs_event_t *h, const char *name, int events, int status) {
  master_t *m = h->loop->data;
  size_t n = name ? strlen(name) : 0;
  (void)status;
  if (n == 0 || name[0] == '.')
    return;
  if (n > 4 && strcmp(name + n - 4, ".lua") == 0)
    m->changed_lua = 1;
  else if (events & UV_RENAME)
    m->changed_tree = 1;
  else
    return;
  uv_timer_start(&m->debounce, on_debounce, RELOAD_DEBOUNCE_MS, 0);
}


/* Watches dir and its subdirectories (not hidden ones, not node_modules). */
static void watch_tree (master_t *m, const char *dir, int depth) {
  if (m->nwatches >= MAX_WATCHED_DIRS)
    return;
  watch_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    return;
  uv_fs_event_init(m->loop, &w->ev);
  w->ev.data = w;
  if (uv_fs_event_start(&w->ev, on_fs_event, dir, 0)) {
    uv_close((uv_handle_t *)&w->ev, free_watch);
    return;
  }
  w->next = m->watches;
  m->watches = w;
  m->nwatches++;
  DIR *d = depth < 8 ? opendir(dir) : NULL;
  if (d == NULL)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[4096];
    struct stat st;
    if (e->d_name[0] == '.' || strcmp(e->d_name, "node_modules") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      watch_tree(m, path, depth + 1);
  }
  closedir(d);
}
/* }====== */


/* {====== owin.core: master and worker */

static void close_master_handle (uv_handle_t *h, void *arg) {
  master_t *m = arg;
  if (uv_is_closing(h))
    return;
  for (int i = 0; i < 5; i++)
    if (h == (uv_handle_t *)&m->sig[i])
      uv_close(h, NULL);
  if (h == (uv_handle_t *)&m->kill_timer || h == (uv_handle_t *)&m->debounce)
    uv_close(h, NULL);
}


/*
** core.master{ workers = n, argv = {...}, reload = dir|nil } -> exit code.
** Expects the listeners bound with core.listen(spec, "hold").  Runs the
** loop until every worker has exited after a stop.
*/
static int l_master (lua_State *L) {
  static const int signals[5] = { SIGINT, SIGTERM, SIGHUP, SIGTTIN, SIGTTOU };
  owl_server_t *s = &owl_srv;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "workers");
  int n = (int)luaL_checkinteger(L, -1);
  luaL_argcheck(L, n >= 1 && n <= MAX_WORKERS, 1, "workers out of range");
  lua_getfield(L, 1, "argv");
  luaL_checktype(L, -1, LUA_TTABLE);
  lua_getfield(L, 1, "reload");
  const char *reload = luaL_optstring(L, -1, NULL);
  master_t *m = lua_newuserdatauv(L, sizeof *m, 0);   /* freed with the stack */
  memset(m, 0, sizeof *m);
  m->loop = s->loop;
  snprintf(owl_log_who, sizeof owl_log_who, "master: ");
  /* the boot tag this process drew (owl_server_init) is the workers' too */
  snprintf(m->boot, sizeof m->boot, "%.*s", (int)strcspn(s->id_prefix, "-"), s->id_prefix);
  ssize_t len = readlink("/proc/self/exe", m->exe, sizeof m->exe - 1);
  if (len <= 0)
    return luaL_error(L, "cannot find this program (/proc/self/exe)");
  m->exe[len] = 0;
  /* args: exe, then argv[1..]; strings anchored by the argv table */
  int argc = (int)luaL_len(L, -3);
  m->args = lua_newuserdatauv(L, (size_t)(argc + 2) * sizeof(char *), 0);
  m->args[0] = m->exe;
  for (int i = 1; i <= argc; i++) {
    lua_rawgeti(L, -4, i);
    m->args[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  m->args[argc + 1] = NULL;
  /* the listen specs, and the unix sockets to pass on */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "OWINLUA_WORKER_LISTEN=");
  for (int i = 0; i < s->nlisteners; i++) {
    char spec[320];
    int fd = owl_server_listener_spec(s, i, spec, sizeof spec);
    if (fd == -2)
      return luaL_error(L, "cannot name listener %d", i + 1);
    if (i > 0)
      luaL_addchar(&b, '\n');
    if (m->nfds == (int)(sizeof m->fds / sizeof m->fds[0]))
      return luaL_error(L, "too many listeners (at most %d with workers)", m->nfds);
    m->fds[m->nfds] = fd;
    lua_pushfstring(L, "fd:%d:", CHAN_FD + 1 + m->nfds++);
    luaL_addvalue(&b);
    luaL_addstring(&b, spec);
  }
  luaL_pushresult(&b);
  m->listen_env = (char *)lua_tostring(L, -1);        /* anchored on the stack */
  lua_pushfstring(L, "OWINLUA_WORKER_TICKETS=%d", TICKETS_FD(m));
  m->tickets_env = (char *)lua_tostring(L, -1);
  m->watch_dir = (char *)reload;
  m->exit_code = 0;
  s->loop->data = m;
  /* the master's own signals replace the server's */
  uv_signal_stop(&s->sigint);
  uv_signal_stop(&s->sigterm);
  uv_signal_stop(&s->sighup);
  for (int i = 0; i < 5; i++) {
    uv_signal_init(m->loop, &m->sig[i]);
    m->sig[i].data = m;
    uv_signal_start(&m->sig[i], on_signal, signals[i]);
  }
  uv_timer_init(m->loop, &m->kill_timer);
  uv_timer_init(m->loop, &m->debounce);
  m->kill_timer.data = m->debounce.data = m;
  if (reload != NULL)
    watch_tree(m, reload, 0);
  for (int i = 0; i < n && !m->stopping; i++) {
    if (add_slot(m))
      master_stop(m, 1);
    else
      spawn_slot(m, i, 0);
  }
  while (!m->done)
    uv_run(m->loop, UV_RUN_ONCE);
  /* every worker is reaped: close what is ours and let the callbacks run */
  unwatch(m);
  while (m->nslots > 0)
    drop_slot(m);
  uv_walk(m->loop, close_master_handle, m);
  owl_server_unlisten(s, 0);
  uv_run(m->loop, UV_RUN_NOWAIT);
  free(m->slots);
  m->slots = NULL;
  s->loop->data = NULL;
  signal(SIGINT, SIG_IGN);                  /* exiting: no second chance */
  signal(SIGTERM, SIG_IGN);
  lua_pushinteger(L, m->exit_code);
  return 1;
}


/* {------ the worker's side */

static uv_pipe_t chan;
static int chan_open;


static void on_master_alloc (uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char b[16];
  (void)h; (void)size;
  *buf = uv_buf_init(b, sizeof b);
}


/* The master is gone (end of file): stop as on SIGTERM. */
static void on_master_read (uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread >= 0)
    return;
  uv_read_stop(st);
  owl_server_stop(&owl_srv);
}


/*
** core.worker() -> id, {spec...} when started by a master, else nothing.
** Takes OWINLUA_WORKER_LISTEN and OWINLUA_WORKER_TAG out of the
** environment (a program the app runs must not mistake itself for a
** worker); OWINLUA_WORKER_ID stays.  From here on log lines say
** "worker <id>: " and request ids start with the tag.
*/
static int l_worker (lua_State *L) {
  const char *specs = getenv("OWINLUA_WORKER_LISTEN");
  const char *id = getenv("OWINLUA_WORKER_ID");
  const char *tag = getenv("OWINLUA_WORKER_TAG");
  if (specs == NULL || id == NULL)
    return 0;
  owl_srv.worker_id = (int)strtol(id, NULL, 10);
  snprintf(owl_log_who, sizeof owl_log_who, "worker %d: ", owl_srv.worker_id);
  if (tag != NULL && *tag && strlen(tag) + 2 <= sizeof owl_srv.id_prefix)
    snprintf(owl_srv.id_prefix, sizeof owl_srv.id_prefix, "%s-", tag);
  unsetenv("OWINLUA_WORKER_TAG");
  lua_pushinteger(L, owl_srv.worker_id);
  lua_newtable(L);
  int i = 0;
  while (*specs) {
    const char *nl = strchr(specs, '\n');
    size_t n = nl ? (size_t)(nl - specs) : strlen(specs);
    lua_pushlstring(L, specs, n);
    lua_rawseti(L, -2, ++i);
    specs += n + (nl != NULL);
  }
  unsetenv("OWINLUA_WORKER_LISTEN");
  const char *tickets = getenv("OWINLUA_WORKER_TICKETS");
  if (tickets != NULL) {
    unsigned char st[OWL_TLS_TICKET_STATE];
    struct stat sb;
    int fd = (int)strtol(tickets, NULL, 10);
    if (fd > CHAN_FD && fstat(fd, &sb) == 0 && S_ISFIFO(sb.st_mode)) {   /* the master's pipe */
      ssize_t n = read(fd, st, sizeof st);
      if (n == (ssize_t)sizeof st)
        owl_tls_ticket_import(st);
      memset(st, 0, sizeof st);
      close(fd);
    }
    unsetenv("OWINLUA_WORKER_TICKETS");
  }
  return 2;
}


/* core.worker_ready(): tells the master this worker serves; afterwards
** the master's going away stops it gracefully. */
static int l_worker_ready (lua_State *L) {
  static char ready[1] = { 'R' };
  uv_buf_t buf = uv_buf_init(ready, 1);
  if (chan_open)
    return 0;
  uv_pipe_init(owl_srv.loop, &chan, 0);
  int err = uv_pipe_open(&chan, CHAN_FD);
  if (!err) {
    chan_open = 1;
    int n = uv_try_write((uv_stream_t *)&chan, &buf, 1);
    err = n < 0 ? n : uv_read_start((uv_stream_t *)&chan, on_master_alloc, on_master_read);
  }
  if (err) {
    if (!chan_open)
      uv_close((uv_handle_t *)&chan, NULL);
    return luaL_error(L, "cannot reach the master on descriptor %d: %s", CHAN_FD, uv_strerror(err));
  }
  uv_unref((uv_handle_t *)&chan);
  return 0;
}


/* core.cpus() -> the number of CPUs this process may use. */
static int l_cpus (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}
/* }------ */


void owl_open_master (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"master", l_master},
    {"worker", l_worker},
    {"worker_ready", l_worker_ready},
    {"cpus", l_cpus},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}
/* }====== */
