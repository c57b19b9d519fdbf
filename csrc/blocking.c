/*
** blocking.c -- spindle.blocking(fn, ...): run fn on a libuv worker thread
** in a Lua state of its own, while the other tasks keep running.
**
** fn travels as bytecode (lua_dump), so it may capture no upvalue other
** than _ENV; the arguments and results travel as a flat encoding of nil,
** booleans, numbers (integers stay integers), strings and tables of these
** without cycles.  The worker makes a fresh state, runs fn there under
** pcall and encodes the results, or the error, the same way.  Everything
** that crosses threads is plain C memory in the request; the caller's Lua
** state is touched only on the loop thread: in the await, and in the
** continuation that decodes the results.
**
** Abort while the work runs: a running work item cannot be stopped, so the
** task is detached (its await raises at once) and the request finishes on
** its own; its callback frees it.  rt->inflight counts these requests so
** that the virtual clock does not jump past running work, and each is owned
** by the runtime until work_done, so closing the runtime waits for it (the
** worker runs Lua on memory the request owns).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

/* ---- a growable byte buffer ------------------------------------------- */

typedef struct buf {
  char *p;
  size_t n, cap;
  int oom;
} buf;

static void buf_add(buf *b, const void *data, size_t len) {
  if (b->oom) return;
  if (b->n + len > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->n + len) cap *= 2;
    if ((p = realloc(b->p, cap)) == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, len);
  b->n += len;
}

static void buf_byte(buf *b, char c) { buf_add(b, &c, 1); }

/* ---- encoding values --------------------------------------------------- */

enum {
  V_NIL = 'n',
  V_FALSE = 'f',
  V_TRUE = 't',
  V_INT = 'i',
  V_NUM = 'd',
  V_STR = 's',
  V_TABLE = '{',
  V_END = '}'
};

/* Encodes the value at idx; seen is a table (absolute index) of tables on
** the current path.  Returns NULL, or what went wrong.  [-0, +0, m] */
static const char *encode(lua_State *L, int idx, buf *b, int seen, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: buf_byte(b, V_NIL); return NULL;
    case LUA_TBOOLEAN:
      buf_byte(b, lua_toboolean(L, idx) ? V_TRUE : V_FALSE);
      return NULL;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        buf_byte(b, V_INT);
        buf_add(b, &i, sizeof i);
      } else {
        lua_Number d = lua_tonumber(L, idx);
        buf_byte(b, V_NUM);
        buf_add(b, &d, sizeof d);
      }
      return NULL;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      buf_byte(b, V_STR);
      buf_add(b, &len, sizeof len);
      buf_add(b, s, len);
      return NULL;
    }
    case LUA_TTABLE: {
      const char *err = NULL;
      if (depth > 200) return "tables nested too deep";
      lua_pushvalue(L, idx);
      if (lua_rawget(L, seen) != LUA_TNIL) {
        lua_pop(L, 1);
        return "a table with a cycle";
      }
      lua_pop(L, 1);
      lua_pushvalue(L, idx);
      lua_pushboolean(L, 1);
      lua_rawset(L, seen);
      luaL_checkstack(L, 4, NULL);
      buf_byte(b, V_TABLE);
      lua_pushnil(L);
      while (err == NULL && lua_next(L, idx)) {
        if ((err = encode(L, -2, b, seen, depth + 1)) == NULL)
          err = encode(L, -1, b, seen, depth + 1);
        lua_pop(L, 1);
      }
      if (err != NULL) lua_pop(L, 1); /* the key left by the break */
      buf_byte(b, V_END);
      lua_pushvalue(L, idx);
      lua_pushnil(L);
      lua_rawset(L, seen); /* off the path: shared subtables are fine */
      return err;
    }
    default: return luaL_typename(L, idx);
  }
}

/* Encodes n values from idx on: "count, values...".  On failure pushes an
** error message naming what (argument/result #k) and returns 0. */
static int encode_values(lua_State *L, int idx, int n, buf *b,
                         const char *what) {
  int i;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  buf_add(b, &n, sizeof n);
  for (i = 0; i < n; i++) {
    const char *err = encode(L, idx + i, b, lua_gettop(L), 0);
    if (err != NULL) {
      lua_pop(L, 1);
      if (strcmp(err, "a table with a cycle") == 0 ||
          strcmp(err, "tables nested too deep") == 0)
        lua_pushfstring(L, "spindle.blocking: %s #%d is %s", what, i + 1, err);
      else
        lua_pushfstring(L,
                        "spindle.blocking: %s #%d is a %s (only nil, "
                        "booleans, numbers, strings and tables of these "
                        "can cross threads)",
                        what, i + 1, err);
      return 0;
    }
  }
  lua_pop(L, 1);
  if (b->oom) {
    lua_pushliteral(L, "not enough memory");
    return 0;
  }
  return 1;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct reader {
  const char *p, *end;
} reader;

static int rd(reader *r, void *out, size_t len) {
  if ((size_t)(r->end - r->p) < len) return 0;
  memcpy(out, r->p, len);
  r->p += len;
  return 1;
}

/* Pushes one value.  Returns 0 on a malformed buffer.  [-0, +1, m] */
static int decode(lua_State *L, reader *r) {
  char tag;
  if (!rd(r, &tag, 1)) return 0;
  luaL_checkstack(L, 3, NULL);
  switch (tag) {
    case V_NIL: lua_pushnil(L); return 1;
    case V_FALSE: lua_pushboolean(L, 0); return 1;
    case V_TRUE: lua_pushboolean(L, 1); return 1;
    case V_INT: {
      lua_Integer i;
      if (!rd(r, &i, sizeof i)) return 0;
      lua_pushinteger(L, i);
      return 1;
    }
    case V_NUM: {
      lua_Number d;
      if (!rd(r, &d, sizeof d)) return 0;
      lua_pushnumber(L, d);
      return 1;
    }
    case V_STR: {
      size_t len;
      if (!rd(r, &len, sizeof len) || (size_t)(r->end - r->p) < len) return 0;
      lua_pushlstring(L, r->p, len);
      r->p += len;
      return 1;
    }
    case V_TABLE:
      lua_newtable(L);
      for (;;) {
        if (r->p < r->end && *r->p == V_END) {
          r->p++;
          return 1;
        }
        if (!decode(L, r) || !decode(L, r)) return 0;
        lua_rawset(L, -3);
      }
    default: return 0;
  }
}

/* Pushes the values of an encoding and returns how many, or -1. */
static int decode_values(lua_State *L, const char *p, size_t len) {
  reader r = {p, p + len};
  int n, i;
  if (!rd(&r, &n, sizeof n) || n < 0) return -1;
  luaL_checkstack(L, n, "spindle.blocking: too many values");
  for (i = 0; i < n; i++)
    if (!decode(L, &r)) return -1;
  return n;
}

/* ---- the request -------------------------------------------------------- */

typedef struct work {
  sp_owned own; /* in the runtime's list until work_done */
  uv_work_t req;
  sp_runtime *rt;
  sp_wpool *pool;     /* the runtime's worker states */
  sp_task *task;      /* the waiting task; NULL once detached (aborted) */
  buf code;           /* fn's bytecode (empty when fname is used) */
  char *fname;        /* "mod.fn": require("mod").fn in the worker */
  char *path, *cpath; /* the caller's package.path and cpath */
  buf in;             /* arguments */
  buf out;            /* results, or the error as one value */
  int failed;         /* fn raised: out holds the error */
  int status;         /* < 0: libuv could not run it (cancelled, ...) */
} work;

static const char code_key = 0;   /* registry: weak {[fn] = bytecode} */
static const char loaded_key = 0; /* worker registry: {[bytecode] = fn} */

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  buf_add((buf *)ud, p, sz);
  return ((buf *)ud)->oom;
}

static void work_free(work *w) {
  free(w->fname);
  free(w->path);
  free(w->cpath);
  free(w->code.p);
  free(w->in.p);
  free(w->out.p);
  free(w);
}

/* ---- worker states ------------------------------------------------------ */

/* Lua states for the worker threads, kept per runtime: a job takes one (or
** makes one), and gives it back after a job that returned normally; a
** state whose job raised is closed, so an error never leaves half-updated
** globals behind for the next job.  Jobs that succeed may leave globals
** behind (docs/blocking.md#worker-threads says so).  The pool is owned by
** the runtime; it is freed when the runtime has closed and the last job
** came back. */
#define WPOOL_MAX 16

struct sp_wpool {
  sp_owned own;
  sp_runtime *rt;
  uv_mutex_t lock;
  lua_State *free[WPOOL_MAX];
  int nfree;
  int jobs;   /* queued or running */
  int closed; /* the runtime closed: give nothing back */
};

static void wpool_release(sp_wpool *p) {
  int i;
  for (i = 0; i < p->nfree; i++) lua_close(p->free[i]);
  p->nfree = 0;
}

/* The runtime closes (no job can be queued any more). */
static void wpool_close(sp_owned *o) {
  sp_wpool *p = sp_container_of(o, sp_wpool, own);
  p->rt->wpool = NULL;
  uv_mutex_lock(&p->lock);
  p->closed = 1;
  wpool_release(p);
  uv_mutex_unlock(&p->lock);
  if (p->jobs == 0) { /* else the last work_done frees it */
    sp_disown(&p->own);
    uv_mutex_destroy(&p->lock);
    free(p);
  }
}

/* The runtime's pool, made on first use; NULL when out of memory. */
static sp_wpool *wpool_get(sp_runtime *rt) {
  sp_wpool *p = rt->wpool;
  if (p != NULL) return p;
  if ((p = calloc(1, sizeof *p)) == NULL) return NULL;
  if (uv_mutex_init(&p->lock) != 0) {
    free(p);
    return NULL;
  }
  p->rt = rt;
  sp_own(rt, &p->own, wpool_close);
  rt->wpool = p;
  return p;
}

/* Worker thread: a state from the pool, or a new one.  NULL: no memory. */
static lua_State *wpool_take(sp_wpool *p) {
  lua_State *L = NULL;
  uv_mutex_lock(&p->lock);
  if (p->nfree > 0) L = p->free[--p->nfree];
  uv_mutex_unlock(&p->lock);
  if (L == NULL && (L = luaL_newstate()) != NULL) luaL_openlibs(L);
  return L;
}

/* Worker thread: back to the pool, or closed. */
static void wpool_give(sp_wpool *p, lua_State *L, int reuse) {
  if (reuse) {
    lua_settop(L, 0);
    uv_mutex_lock(&p->lock);
    if (!p->closed && p->nfree < WPOOL_MAX) {
      p->free[p->nfree++] = L;
      L = NULL;
    }
    uv_mutex_unlock(&p->lock);
  }
  if (L != NULL) lua_close(L);
}

/* ---- the job ------------------------------------------------------------- */

/* In the worker's state, protected: fn and its arguments decoded, fn
** called under pcall, results (or the error) encoded. */
static int job_p(lua_State *L) {
  work *w = (work *)lua_touserdata(L, 1);
  int n, top;
  lua_settop(L, 0);
  /* the caller's module paths, so that require finds what it finds */
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    if (w->path != NULL) {
      lua_pushstring(L, w->path);
      lua_setfield(L, -2, "path");
    }
    if (w->cpath != NULL) {
      lua_pushstring(L, w->cpath);
      lua_setfield(L, -2, "cpath");
    }
  }
  lua_settop(L, 0);
  if (w->fname != NULL) { /* "mod.fn": require("mod").fn */
    const char *dot = strrchr(w->fname, '.');
    lua_getglobal(L, "require");
    lua_pushlstring(L, w->fname, (size_t)(dot - w->fname));
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      lua_getfield(L, -1, dot + 1);
      lua_remove(L, -2);
      if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        lua_pushfstring(L, "spindle.blocking: %s is not a function", w->fname);
      }
    }
    if (!lua_isfunction(L, 1) || (n = decode_values(L, w->in.p, w->in.n)) < 0) {
      w->failed = 1;
      if (lua_type(L, -1) != LUA_TSTRING)
        lua_pushliteral(L, "spindle.blocking: cannot load the function");
      encode_values(L, -1, 1, &w->out, "error");
      return 0;
    }
    goto call;
  }
  /* functions already loaded in this state: keyed by their bytecode */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
  }
  lua_pushlstring(L, w->code.p, w->code.n); /* [cache, code] */
  if (lua_rawget(L, 1) == LUA_TFUNCTION) {
    lua_remove(L, 1);
  } else {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, w->code.p, w->code.n, "=blocking") == LUA_OK) {
      lua_Integer k = (lua_rawgeti(L, 1, 0), lua_tointeger(L, -1));
      lua_pop(L, 1);
      if (k >= 64) { /* bounded: start over */
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
        lua_replace(L, 1);
        k = 0;
      }
      lua_pushlstring(L, w->code.p, w->code.n);
      lua_pushvalue(L, -2);
      lua_rawset(L, 1);
      lua_pushinteger(L, k + 1);
      lua_rawseti(L, 1, 0);
    }
    lua_remove(L, 1);
  }
  if (lua_type(L, 1) != LUA_TFUNCTION ||
      (n = decode_values(L, w->in.p, w->in.n)) < 0) {
    w->failed = 1;
    if (lua_type(L, -1) != LUA_TSTRING)
      lua_pushliteral(L, "spindle.blocking: cannot load the function");
    encode_values(L, -1, 1, &w->out, "error");
    return 0;
  }
call:
  top = lua_gettop(L) - n - 1;
  if (lua_pcall(L, n, LUA_MULTRET, 0) != LUA_OK) {
    w->failed = 1;
    if (!encode_values(L, -1, 1, &w->out, "error")) {
      /* the error itself cannot cross: send it as a string */
      const char *s = luaL_tolstring(L, -2, NULL);
      lua_pushstring(L, s);
      w->out.n = 0;
      w->out.oom = 0;
      encode_values(L, -1, 1, &w->out, "error");
    }
  } else if (!encode_values(L, top + 1, lua_gettop(L) - top, &w->out,
                            "result")) {
    w->failed = 1; /* the message about the bad result is on top */
    w->out.n = 0;
    w->out.oom = 0; /* "not enough memory" itself may fit */
    encode_values(L, -1, 1, &w->out, "error");
  }
  return 0;
}

/* On the worker thread. */
static void work_run(uv_work_t *req) {
  work *w = (work *)req->data;
  lua_State *L = wpool_take(w->pool);
  int ok;
  if (L == NULL) {
    w->failed = -1;
    return;
  }
  lua_pushcfunction(L, job_p);
  lua_pushlightuserdata(L, w);
  ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
  if (!ok) w->failed = -1; /* out of memory in the worker */
  wpool_give(w->pool, L, ok && !w->failed);
}

/* On the loop thread: wake the task (C only), or free a detached request. */
static void work_done(uv_work_t *req, int status) {
  work *w = (work *)req->data;
  sp_wpool *p = w->pool;
  w->rt->inflight--;
  sp_disown(&w->own);
  if (--p->jobs == 0 && p->closed) { /* the runtime closed meanwhile */
    sp_disown(&p->own);
    uv_mutex_destroy(&p->lock);
    free(p);
  }
  w->status = status;
  if (w->task == NULL) {
    work_free(w);
    return;
  }
  sp_wake(w->task, SP_WAKE_OK);
}

/* The runtime closes: detach the task; work_done (which always comes)
** frees the request. */
static void work_close(sp_owned *o) {
  work *w = sp_container_of(o, work, own);
  w->task = NULL;
  uv_cancel((uv_req_t *)&w->req);
}

static void work_undo(sp_task *t) {
  work *w = (work *)t->w.obj;
  w->task = NULL;                 /* work_done frees it */
  uv_cancel((uv_req_t *)&w->req); /* in case it has not started yet */
}

static const sp_waitops blocking_wait = {"blocking (worker thread)", work_undo,
                                         NULL};

/* [w] -> the decoded values; a bad encoding raises.  [-1, +n, e] */
static int decode_p(lua_State *L) {
  work *w = (work *)lua_touserdata(L, 1);
  int n;
  lua_settop(L, 0);
  n = decode_values(L, w->out.p, w->out.n);
  if (n < 0) return luaL_error(L, "spindle.blocking: bad result encoding");
  return n;
}

static int blocking_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  work *w;
  int n;
  sp_resumed(L, t);
  w = (work *)t->w.obj;
  t->w.obj = NULL;
  if (w->status < 0) {
    const char *why = uv_strerror(w->status); /* static: w can go first */
    work_free(w);
    return luaL_error(L, "spindle.blocking: %s", why);
  }
  if (w->failed < 0) {
    work_free(w);
    return luaL_error(L, "spindle.blocking: cannot create a Lua state");
  }
  lua_settop(L, 0);
  if (w->out.oom) { /* not even the error fitted */
    work_free(w);
    return luaL_error(L, "spindle.blocking: not enough memory");
  }
  /* decoding allocates: protected, so that w is freed whatever happens */
  lua_pushcfunction(L, decode_p);
  lua_pushlightuserdata(L, w);
  status = lua_pcall(L, 1, LUA_MULTRET, 0);
  n = lua_gettop(L);
  if (status != LUA_OK || w->failed) {
    work_free(w);
    return lua_error(L);
  }
  work_free(w);
  return n;
}

/* [w, fn, args...]: fn (its name "mod.fn", or its bytecode), the caller's
** module paths and the arguments into w.  Run protected by blocking_start,
** which frees w if anything here raises.  [-n, +0, e] */
static int prepare_p(lua_State *L) {
  work *w = (work *)lua_touserdata(L, 1);
  int nargs = lua_gettop(L) - 2;
  if (lua_type(L, 2) == LUA_TSTRING) {
    if ((w->fname = strdup(lua_tostring(L, 2))) == NULL)
      return luaL_error(L, "not enough memory");
  } else {
    /* fn's bytecode: dumped once per function object, then copied from a
    ** cache (weak keys: it goes with the function) */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &code_key);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) == LUA_TSTRING) {
      size_t len;
      const char *code = lua_tolstring(L, -1, &len);
      buf_add(&w->code, code, len);
      lua_pop(L, 2);
    } else {
      lua_pop(L, 1);
      lua_pushvalue(L, 2);
      if (lua_dump(L, dump_writer, &w->code, 0) != 0 || w->code.oom)
        return luaL_error(L, "spindle.blocking: %s",
                          w->code.oom ? "not enough memory"
                                      : "cannot dump the function");
      lua_pop(L, 1);
      lua_pushvalue(L, 2);
      lua_pushlstring(L, w->code.p, w->code.n);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
    if (w->code.oom) return luaL_error(L, "not enough memory");
  }
  /* the caller's module paths travel with the job */
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    if (lua_getfield(L, -1, "path") == LUA_TSTRING)
      w->path = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "cpath") == LUA_TSTRING)
      w->cpath = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!encode_values(L, 3, nargs, &w->in, "argument")) return lua_error(L);
  return 0;
}

/* Queues the job: fn (a function, or "mod.fn") at 1, nargs arguments
** after it; waits.  [-0, +?, e] */
static int blocking_start(lua_State *L, int nargs) {
  sp_task *t = sp_await_check(L, "spindle.blocking");
  work *w;
  int r;
  luaL_checkstack(L, 2, "spindle.blocking: too many arguments");
  if ((w = calloc(1, sizeof *w)) == NULL)
    return luaL_error(L, "not enough memory");
  lua_pushcfunction(L, prepare_p);
  lua_insert(L, 1);
  lua_pushlightuserdata(L, w);
  lua_insert(L, 2); /* [prepare_p, w, fn, args...] */
  if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
    work_free(w);
    return lua_error(L);
  }
  w->rt = t->rt;
  w->task = t;
  w->req.data = w;
  if ((w->pool = wpool_get(t->rt)) == NULL) {
    work_free(w);
    return luaL_error(L, "not enough memory");
  }
  if ((r = uv_queue_work(t->rt->loop, &w->req, work_run, work_done)) != 0) {
    work_free(w);
    return luaL_error(L, "spindle.blocking: %s", uv_strerror(r));
  }
  t->rt->inflight++;
  w->pool->jobs++;
  sp_own(t->rt, &w->own, work_close);
  return sp_await_block(L, t, &blocking_wait, w, blocking_k, (lua_KContext)t);
}

/* spindle.blocking(fn, ...) */
static int l_blocking(lua_State *L) {
  int nargs = lua_gettop(L) - 1, i;
  const char *name;
  if (lua_type(L, 1) == LUA_TSTRING) { /* "mod.fn" */
    const char *fn = lua_tostring(L, 1), *dot = strrchr(fn, '.');
    size_t len = lua_rawlen(L, 1);
    if (dot == NULL || dot == fn || dot[1] == '\0' || strlen(fn) != len)
      luaL_argerror(L, 1, "\"module.function\" expected");
    return blocking_start(L, nargs);
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_iscfunction(L, 1))
    luaL_argerror(L, 1,
                  "a Lua function expected (C functions cannot be "
                  "moved to another thread)");
  for (i = 1; (name = lua_getupvalue(L, 1, i)) != NULL; i++) {
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      return luaL_error(L,
                        "spindle.blocking: fn may not capture upvalues "
                        "other than _ENV (it captures '%s')",
                        name);
  }
  return blocking_start(L, nargs);
}

int sp_blocking_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"blocking", l_blocking}, {NULL, NULL}};
  sp_weak_keys(L, &code_key);
  sp_setfuncs(L, fns);
  return 0;
}
