/*
** process.c -- spindle.process: spawn (pipes are stream objects from
** stream.h), wait, kill, close, and run (capture both outputs).
**
** A child is a proc_obj: a malloc'd uv_process_t that libuv may touch
** until its close callback.  The handle is referenced only while a task
** waits for the child, so a child nobody waits for never keeps the loop
** alive (deadlock detection still works).
**
** Process object (spawn):
**   running --exit_cb--> exited (status kept in the Lua box)
**   close/__gc while running: SIGKILL (unless opts.detached); the handle
**     stays open until the exit, which reaps the child, then closes;
**     waiters get nil, "closed", "ECANCELED"
**   runtime close while running: SIGKILL and reap at once (waitpid), so
**     no zombie and no handle outlives the runtime; detached children are
**     left running (and are no longer watched)
**
** run(): one proc_obj with two capture pipes of its own (no Lua objects);
** the task waits until the child has exited and both pipes reached EOF.
** Abort or timeout: the undo sends SIGKILL; the continuation then waits,
** shielded, for the exit (reaping it) and only then raises the
** cancellation -- so when the error reaches the caller the child is gone.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif

#include "io.h"

#define PROC_MT "spindle.process"

typedef struct proc_box proc_box;

typedef struct proc_obj {
  sp_ionode node; /* owned until every handle's close callback */
  uv_process_t h;
  sp_runtime *rt;
  proc_box *box; /* the Lua object, NULL once closed or collected */
  sp_wlist waiters;
  int pid;
  int exited, detached;
  int64_t status;
  int termsig;
  int nopen; /* handles whose close callback is still to come */
  int killed_on_close;
  int orphan; /* its owner let go: exit_cb closes the handles */
  /* run() */
  int is_run;
  sp_task *task; /* the task in run(), NULL while detached */
  int reaping;   /* aborted: only the exit is awaited */
  uv_pipe_t cap[2];
  int cap_open[2], eof[2];
  char *buf[2];
  size_t len[2], bcap[2];
  int rerr;
} proc_obj;

struct proc_box {
  proc_obj *p; /* NULL once closed */
  int pid;
  int exited;
  int64_t status;
  int termsig;
};

/* ---- handle life ------------------------------------------------------- */

static void proc_release(uv_handle_t *h) {
  proc_obj *p = (proc_obj *)h->data;
  if (--p->nopen > 0) return;
  sp_io_untrack(&p->node);
  free(p->buf[0]);
  free(p->buf[1]);
  free(p);
}

static void proc_close_handles(proc_obj *p) {
  int i;
  if (!uv_is_closing((uv_handle_t *)&p->h))
    uv_close((uv_handle_t *)&p->h, proc_release);
  for (i = 0; i < 2; i++)
    if (p->cap_open[i]) {
      p->cap_open[i] = 0;
      uv_close((uv_handle_t *)&p->cap[i], proc_release);
    }
}

static void wake_waiters(proc_obj *p, int closed) {
  sp_task *t;
  while ((t = p->waiters.head) != NULL) {
    sp_wlist_remove(&p->waiters, t);
    if (closed) t->w.obj = NULL; /* the continuation says "closed" */
    sp_wake(t, SP_WAKE_OK);
  }
}

static void run_check_done(proc_obj *p) {
  sp_task *t = p->task;
  if (t == NULL || !p->exited) return;
  if (!p->reaping && !(p->eof[0] && p->eof[1])) return;
  p->task = NULL;
  sp_wake(t, SP_WAKE_OK);
}

static void exit_cb(uv_process_t *h, int64_t status, int termsig) {
  proc_obj *p = (proc_obj *)h->data;
  p->exited = 1;
  p->status = status;
  p->termsig = termsig;
  if (p->box != NULL) {
    p->box->exited = 1;
    p->box->status = status;
    p->box->termsig = termsig;
  }
  if (p->is_run) {
    if (p->orphan)
      proc_close_handles(p);
    else
      run_check_done(p);
    return;
  }
  wake_waiters(p, 0);
  uv_unref((uv_handle_t *)h);
  if (p->box == NULL) proc_close_handles(p); /* closed while running */
}

/* The one close path of a process object: close, __close, __gc (through
** proc_close, which first closes its pipes) and the runtime closing
** (rtclose).  Waiters are woken with "closed".  A running child is killed
** (SIGKILL) unless detached, and its handle is closed once it has exited,
** which reaps it; the runtime's close waits for that.  A detached child
** runs on: its handle is closed at once when the runtime closes, else
** when it exits. */
static void proc_shut(proc_obj *p, int rtclose) {
  if (p->box != NULL) p->box->p = NULL;
  p->box = NULL;
  p->task = NULL;
  p->orphan = 1;
  wake_waiters(p, 1);
  if (uv_is_closing((uv_handle_t *)&p->h)) return;
  if (p->exited || p->pid <= 0 || (p->detached && rtclose)) {
    proc_close_handles(p);
    return;
  }
  if (p->is_run) { /* its task is gone: stop reading the child's output */
    int i;
    for (i = 0; i < 2; i++)
      if (p->cap_open[i]) {
        p->cap_open[i] = 0;
        uv_close((uv_handle_t *)&p->cap[i], proc_release);
      }
  }
  if (!p->detached) {
    uv_process_kill(&p->h, SIGKILL);
    p->killed_on_close = 1;
    uv_ref((uv_handle_t *)&p->h); /* reap it promptly */
  } else
    uv_unref((uv_handle_t *)&p->h); /* a detached child may run on */
}

static void proc_rtclose(sp_owned *o) {
  proc_shut(sp_container_of(o, proc_obj, node.own), 1);
}

/* close(), __close, __gc: the pipes first, then the process. */
static void proc_close(lua_State *L, int idx, proc_box *box) {
  proc_obj *p = box->p;
  int i;
  if (p == NULL) return;
  for (i = 1; i <= 3; i++) {
    sp_stream *s;
    lua_getiuservalue(L, idx, i);
    if ((s = sp_stream_test(L, -1)) != NULL) sp_stream_close(s);
    lua_pop(L, 1);
  }
  proc_shut(p, 0);
}

/* ---- options ------------------------------------------------------------ */

enum { IO_INHERIT, IO_PIPE, IO_IGNORE };

static int stdio_opt(lua_State *L, int opts, const char *name) {
  static const char *const names[] = {"inherit", "pipe", "ignore", NULL};
  int r = IO_INHERIT;
  if (opts == 0) return r;
  if (lua_getfield(L, opts, name) != LUA_TNIL) {
    const char *v = lua_tostring(L, -1);
    int i;
    if (lua_type(L, -1) != LUA_TSTRING) v = NULL;
    for (i = 0; v != NULL && names[i] != NULL; i++)
      if (strcmp(v, names[i]) == 0) break;
    if (v == NULL || names[i] == NULL)
      luaL_error(L,
                 "bad option '%s' (\"pipe\", \"inherit\" or \"ignore\" "
                 "expected)",
                 name);
    r = i;
  }
  lua_pop(L, 1);
  return r;
}

/* argv, env and cwd for uv_spawn, as pointers into Lua strings and
** arrays (userdata) that an anchor table keeps alive until the caller
** pops it. */
typedef struct spawn_args {
  char **argv;
  char **env;
  const char *cwd;
  int detached;
} spawn_args;

/* The uv_spawn options shared by spawn and run. */
static void spawn_options(uv_process_options_t *o,
                          uv_stdio_container_t stdio[3], const char *file,
                          const spawn_args *sa) {
  o->exit_cb = exit_cb;
  o->file = file;
  o->args = sa->argv;
  o->env = sa->env;
  o->cwd = sa->cwd;
  o->stdio_count = 3;
  o->stdio = stdio;
  o->flags = UV_PROCESS_WINDOWS_HIDE;
}

/* [-0, +1, e]: pushes a table anchoring every string used. */
static void build_args(lua_State *L, int fidx, int aidx, int opts,
                       spawn_args *sa) {
  lua_Integer n = 0, i;
  int anchor;
  memset(sa, 0, sizeof *sa);
  lua_newtable(L);
  anchor = lua_gettop(L);
  if (!lua_isnoneornil(L, aidx)) {
    luaL_checktype(L, aidx, LUA_TTABLE);
    n = (lua_Integer)luaL_len(L, aidx);
    if (n < 0 || n > 100000) luaL_argerror(L, aidx, "too many arguments");
  }
  sa->argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 2), 0);
  lua_rawseti(L, anchor, 1);
  sa->argv[0] = (char *)lua_tostring(L, fidx);
  for (i = 1; i <= n; i++) {
    lua_geti(L, aidx, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "bad argument #%d (argument %d must be a string, got %s)",
                 aidx, (int)i, luaL_typename(L, -1));
    sa->argv[i] = (char *)lua_tostring(L, -1);
    if (strlen(sa->argv[i]) != lua_rawlen(L, -1))
      luaL_error(L, "bad argument #%d (argument %d contains a zero byte)", aidx,
                 (int)i);
    lua_rawseti(L, anchor, (lua_Integer)(i + 1));
  }
  sa->argv[n + 1] = NULL;
  if (opts == 0) return;
  if (lua_getfield(L, opts, "cwd") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option 'cwd' (string expected)");
    sa->cwd = lua_tostring(L, -1);
    if (strlen(sa->cwd) != lua_rawlen(L, -1))
      luaL_error(L, "bad option 'cwd' (contains a zero byte)");
    lua_rawseti(L, anchor, n + 2);
  } else
    lua_pop(L, 1);
  lua_getfield(L, opts, "detached");
  sa->detached = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, opts, "env") != LUA_TNIL) {
    int env = lua_gettop(L);
    lua_Integer k = 0, cnt = 0;
    if (lua_type(L, env) != LUA_TTABLE)
      luaL_error(L, "bad option 'env' (table expected)");
    lua_pushnil(L);
    while (lua_next(L, env)) {
      cnt++;
      lua_pop(L, 1);
    }
    sa->env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(cnt + 1), 0);
    lua_rawseti(L, anchor, n + 3);
    lua_pushnil(L);
    while (lua_next(L, env)) {
      size_t kl;
      const char *key;
      if (lua_type(L, -2) != LUA_TSTRING ||
          (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
        luaL_error(L, "bad option 'env' (string names and string values "
                      "expected)");
      key = lua_tolstring(L, -2, &kl);
      if (kl == 0 || strchr(key, '=') != NULL || strlen(key) != kl)
        luaL_error(L, "bad option 'env' (invalid variable name)");
      lua_pushvalue(L, -2);
      lua_pushliteral(L, "=");
      lua_pushvalue(L, -3);
      lua_concat(L, 3);
      sa->env[k++] = (char *)lua_tostring(L, -1);
      if (strlen(sa->env[k - 1]) != lua_rawlen(L, -1))
        luaL_error(L, "bad option 'env' (a value contains a zero byte)");
      lua_rawseti(L, anchor, n + 4 + k);
      lua_pop(L, 1);
    }
    sa->env[k] = NULL;
  }
  lua_pop(L, 1);
}

static proc_obj *proc_new(lua_State *L, sp_runtime *rt) {
  proc_obj *p = calloc(1, sizeof *p);
  if (p == NULL) luaL_error(L, "not enough memory");
  p->rt = rt;
  p->h.data = p;
  return p;
}

static int spawn_fail(lua_State *L, const char *file, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", file, uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* ---- spawn and the process object --------------------------------------- */

static const char *const spawn_options_known[] = {
    "stdin", "stdout", "stderr", "env", "cwd", "detached", NULL};
/* run always captures: stdio options are accepted and ignored (docs). */
static const char *const run_options_known[] = {"env",    "cwd",    "stdin",
                                                "stdout", "stderr", NULL};

/* spindle.process.spawn(file, args, [opts]) */
static int l_spawn(lua_State *L) {
  const char *file = sp_io_checkpath(L, 1);
  int opts = lua_isnoneornil(L, 3) ? 0 : 3;
  sp_runtime *rt;
  spawn_args sa;
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  int modes[3], i, r, boxidx;
  proc_box *box;
  proc_obj *p;
  sp_check_options(L, 3, spawn_options_known);
  rt = sp_io_runtime(L, "spindle.process.spawn");
  lua_settop(L, 3);
  for (i = 0; i < 3; i++) modes[i] = stdio_opt(L, opts, names[i]);
  build_args(L, 1, 2, opts, &sa);             /* 4: anchor */
  box = lua_newuserdatauv(L, sizeof *box, 3); /* 5 */
  memset(box, 0, sizeof *box);
  luaL_setmetatable(L, PROC_MT);
  boxidx = lua_gettop(L);
  memset(&o, 0, sizeof o);
  memset(stdio, 0, sizeof stdio);
  for (i = 0; i < 3; i++) {
    if (modes[i] == IO_PIPE) {
      uv_pipe_t *pp = malloc(sizeof *pp);
      if (pp == NULL) luaL_error(L, "not enough memory");
      if ((r = uv_pipe_init(rt->loop, pp, 0)) < 0) {
        free(pp);
        return sp_io_fail(L, r);
      }
      sp_stream_wrap(L, rt, (uv_stream_t *)pp, "pipe"); /* owns pp now */
      lua_setiuservalue(L, boxidx, i + 1);
      stdio[i].flags =
          UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = (uv_stream_t *)pp;
    } else if (modes[i] == IO_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else
      stdio[i].flags = UV_IGNORE;
  }
  p = proc_new(L, rt);
  spawn_options(&o, stdio, file, &sa);
  if (sa.detached) o.flags |= UV_PROCESS_DETACHED;
  p->detached = sa.detached;
  r = uv_spawn(rt->loop, &p->h, &o);
  p->nopen = 1;
  sp_io_track(&p->node, rt, proc_rtclose);
  if (r < 0) {
    for (i = 1; i <= 3; i++) {
      sp_stream *s;
      lua_getiuservalue(L, boxidx, i);
      if ((s = sp_stream_test(L, -1)) != NULL) sp_stream_close(s);
      lua_pop(L, 1);
    }
    p->exited = 1;
    proc_close_handles(p);
    return spawn_fail(L, file, r);
  }
  uv_unref((uv_handle_t *)&p->h);
  p->pid = p->h.pid;
  p->box = box;
  box->p = p;
  box->pid = p->pid;
  lua_settop(L, boxidx);
  return 1;
}

static proc_box *proc_check(lua_State *L) {
  return (proc_box *)sp_checkclass(L, 1, PROC_MT);
}

/* Pushes what wait() returns for an exited child.  [-0, +2, m] */
static int push_status(lua_State *L, int64_t status, int termsig) {
  if (termsig != 0) {
    const char *name = sp_signame(termsig);
    lua_pushnil(L);
    if (name != NULL)
      lua_pushstring(L, name);
    else
      lua_pushinteger(L, termsig);
  } else {
    lua_pushinteger(L, (lua_Integer)status);
    lua_pushnil(L);
  }
  return 2;
}

static void wait_undo(sp_task *t) {
  proc_obj *p = (proc_obj *)t->w.obj;
  sp_wlist_remove(&p->waiters, t);
  if (p->waiters.head == NULL && !p->killed_on_close)
    uv_unref((uv_handle_t *)&p->h);
}

static void proc_describe(sp_task *t, char *buf, size_t size);

static const sp_waitops wait_wait = {"process wait", wait_undo, proc_describe};

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  proc_box *box = proc_check(L);
  (void)status;
  sp_resumed(L, t);
  if (box->exited) return push_status(L, box->status, box->termsig);
  return sp_io_closed(L, "ECANCELED");
}

static int proc_wait(lua_State *L) {
  proc_box *box = proc_check(L);
  sp_task *t = sp_await_check(L, "wait");
  proc_obj *p = box->p;
  lua_settop(L, 1);
  if (box->exited || p == NULL)
    return sp_await_fast(L, t, wait_k, (lua_KContext)t);
  if (p->rt != t->rt)
    luaL_error(L, "wait: the process belongs to another runtime");
  if (p->waiters.head == NULL) uv_ref((uv_handle_t *)&p->h);
  sp_wlist_push(&p->waiters, t);
  return sp_await_block(L, t, &wait_wait, p, wait_k, (lua_KContext)t);
}

static int proc_kill(lua_State *L) {
  proc_box *box = proc_check(L);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : sp_signum(L, 2);
  int r;
  if (box->exited) {
    lua_pushnil(L);
    lua_pushliteral(L, "process has exited");
    lua_pushliteral(L, "ESRCH");
    return 3;
  }
  if (box->p == NULL) return sp_io_closed(L, "ECANCELED");
  if ((r = uv_process_kill(&box->p->h, sig)) < 0) return sp_io_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_pid(lua_State *L) {
  lua_pushinteger(L, proc_check(L)->pid);
  return 1;
}

static int proc_close_m(lua_State *L) {
  proc_box *box = proc_check(L);
  proc_close(L, 1, box);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_gc(lua_State *L) {
  proc_box *box = (proc_box *)sp_testclass(L, 1, PROC_MT);
  if (box != NULL) proc_close(L, 1, box);
  return 0;
}

static int proc_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  proc_check(L);
  if (k != NULL && lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(k, "stdin") == 0) return lua_getiuservalue(L, 1, 1), 1;
    if (strcmp(k, "stdout") == 0) return lua_getiuservalue(L, 1, 2), 1;
    if (strcmp(k, "stderr") == 0) return lua_getiuservalue(L, 1, 3), 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1)); /* the methods */
  return 1;
}

static int proc_tostring(lua_State *L) {
  proc_box *box = proc_check(L);
  lua_pushfstring(L, "spindle.process (pid %d%s)", box->pid,
                  box->exited ? ", exited"
                  : box->p    ? ""
                              : ", closed");
  return 1;
}

/* ---- run ------------------------------------------------------------------ */

static void cap_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  proc_obj *p = (proc_obj *)h->data;
  int i = (uv_pipe_t *)h == &p->cap[0] ? 0 : 1;
  (void)hint;
  if (p->bcap[i] - p->len[i] < 65536) {
    size_t ncap = p->bcap[i] ? p->bcap[i] * 2 : 65536 * 2;
    char *nb = realloc(p->buf[i], ncap);
    if (nb == NULL) {
      *buf = uv_buf_init(NULL, 0); /* reported as UV_ENOBUFS */
      return;
    }
    p->buf[i] = nb;
    p->bcap[i] = ncap;
  }
  *buf = uv_buf_init(p->buf[i] + p->len[i],
                     (unsigned int)(p->bcap[i] - p->len[i]));
}

static void cap_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  proc_obj *p = (proc_obj *)s->data;
  int i = (uv_pipe_t *)s == &p->cap[0] ? 0 : 1;
  (void)buf;
  if (n > 0) {
    p->len[i] += (size_t)n;
    return;
  }
  if (n == 0) return;
  if (n != UV_EOF && p->rerr == 0) p->rerr = (int)n;
  p->eof[i] = 1;
  uv_read_stop(s);
  run_check_done(p);
}

static void run_undo(sp_task *t) {
  proc_obj *p = (proc_obj *)t->w.obj;
  p->task = NULL;
  if (!p->exited) uv_process_kill(&p->h, SIGKILL);
}

static void reap_undo(sp_task *t) { ((proc_obj *)t->w.obj)->task = NULL; }

static const sp_waitops run_wait = {"process run", run_undo, proc_describe};
static const sp_waitops reap_wait = {"process run", reap_undo, proc_describe};

static int run_reaped_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  proc_obj *p = (proc_obj *)t->w.obj;
  (void)status;
  t->shield--;
  p->task = NULL;
  proc_close_handles(p);
  t->wake = SP_WAKE_INTERRUPT; /* raise the abort or timeout now */
  sp_resumed(L, t);
  return 0;
}

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  proc_obj *p = (proc_obj *)t->w.obj;
  int code;
  (void)status;
  if (t->wake == SP_WAKE_INTERRUPT && t->rt != NULL && t->rt->current == t &&
      t->co == L && !p->exited) {
    /* aborted or timed out: the child was sent SIGKILL; wait for it to
    ** be reaped before the error is raised */
    t->wake = SP_WAKE_OK;
    t->shield++;
    p->reaping = 1;
    p->task = t;
    return sp_await_block(L, t, &reap_wait, p, run_reaped_k, (lua_KContext)t);
  }
  if (t->wake == SP_WAKE_INTERRUPT) {
    p->task = NULL;
    proc_close_handles(p);
    sp_resumed(L, t); /* raises */
  }
  sp_resumed(L, t);
  if (p->rerr != 0) { /* output was lost (ENOBUFS): never a silent cut */
    proc_close_handles(p);
    return sp_io_fail(L, p->rerr);
  }
  if (p->termsig != 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)p->status);
  lua_pushlstring(L, p->buf[0] ? p->buf[0] : "", p->len[0]);
  lua_pushlstring(L, p->buf[1] ? p->buf[1] : "", p->len[1]);
  code = 3;
  if (p->termsig != 0) {
    const char *name = sp_signame(p->termsig);
    if (name)
      lua_pushstring(L, name);
    else
      lua_pushinteger(L, p->termsig);
    code = 4;
  }
  proc_close_handles(p);
  return code;
}

/* spindle.process.run(file, args, [opts]) -> code, stdout, stderr[, sig] */
static int l_run(lua_State *L) {
  const char *file = sp_io_checkpath(L, 1);
  int opts = lua_isnoneornil(L, 3) ? 0 : 3;
  sp_task *t;
  spawn_args sa;
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  proc_obj *p;
  int i, r;
  sp_check_options(L, 3, run_options_known);
  lua_settop(L, 3);
  build_args(L, 1, 2, opts, &sa);
  t = sp_await_check(L, "spindle.process.run");
  p = proc_new(L, t->rt);
  p->is_run = 1;
  memset(&o, 0, sizeof o);
  memset(stdio, 0, sizeof stdio);
  stdio[0].flags = UV_IGNORE;
  for (i = 0; i < 2; i++) {
    if ((r = uv_pipe_init(t->rt->loop, &p->cap[i], 0)) < 0) {
      while (--i >= 0) { /* the ones made so far */
        p->cap_open[i] = 0;
        uv_close((uv_handle_t *)&p->cap[i], proc_release);
      }
      if (p->nopen == 0) free(p); /* else the last proc_release frees it */
      return sp_io_fail(L, r);
    }
    p->cap[i].data = p;
    p->cap_open[i] = 1;
    p->nopen++;
    stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[i + 1].data.stream = (uv_stream_t *)&p->cap[i];
  }
  spawn_options(&o, stdio, file, &sa);
  r = uv_spawn(t->rt->loop, &p->h, &o);
  p->nopen++;
  sp_io_track(&p->node, t->rt, proc_rtclose);
  if (r < 0) {
    p->exited = 1;
    proc_close_handles(p);
    return spawn_fail(L, file, r);
  }
  p->pid = p->h.pid;
  for (i = 0; i < 2; i++)
    if ((r = uv_read_start((uv_stream_t *)&p->cap[i], cap_alloc, cap_read)) < 0)
      p->eof[i] = 1;
  p->task = t;
  return sp_await_block(L, t, &run_wait, p, run_k, (lua_KContext)t);
}

/* spindle.dump: "process wait pid 123", "process run pid 123". */
static void proc_describe(sp_task *t, char *buf, size_t size) {
  proc_obj *p = (proc_obj *)t->w.obj;
  snprintf(buf, size, "process %s pid %d%s",
           t->wait == &wait_wait ? "wait" : "run", p ? p->pid : 0,
           p && p->reaping ? " (killed, reaping)" : "");
}

int sp_process_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", proc_wait},
                                     {"kill", proc_kill},
                                     {"close", proc_close_m},
                                     {"pid", proc_pid},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"spawn", l_spawn}, {"run", l_run}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", proc_gc},
                                  {"__close", proc_gc},
                                  {"__tostring", proc_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, PROC_MT, NULL, meta);
  lua_newtable(L);
  sp_setfuncs(L, methods);
  lua_pushcclosure(L, proc_index, 1); /* __index(p, k): pipes, methods */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  sp_setfuncs(L, fns);
  lua_setfield(L, -2, "process");
  return 0;
}
