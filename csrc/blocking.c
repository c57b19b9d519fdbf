/*
** blocking.c -- spindle.blocking(fn, ...): run fn on a libuv worker thread
** in a Lua state of its own, while the other tasks keep running.
**
** fn travels as bytecode (lua_dump), so it may capture no upvalue other
** than _ENV; the arguments and results travel as a flat encoding of nil,
** booleans, numbers (integers stay integers), strings and tables of these
** without cycles.  The worker takes a state from the runtime's pool (or
** makes one), runs fn there under pcall and encodes the results, or the
** error, the same way.  Everything that crosses threads is plain C memory
** in the request; the caller's Lua state is touched only on the loop
** thread: in the await, and in the continuation that decodes the results.
**
** What one job costs (bench/blocking_bench.lua; bench/README.md has the
** profile): one malloc on the loop thread -- the request, with fn's
** bytecode, the caller's module paths and small arguments and results
** inline -- and one free; no Lua allocation for scalar arguments and
** results.  fn is dumped once per function object (a weak cache holds the
** bytecode and its hash); a worker state loads it once per bytecode (its
** own cache, keyed by the hash and checked byte for byte), and sets
** package.path/cpath only when they differ from the caller's.  Worker
** states wait in lock-free slots; jobs beyond the pool's threads are
** handed to libuv in one burst at the end of the ready round
** (work_submit says why).
**
** Abort while the work runs: a running work item cannot be stopped, so the
** task is detached (its await raises at once) and the request finishes on
** its own; its callback frees it.  rt->inflight counts these requests so
** that the virtual clock does not jump past running work, and each is owned
** by the runtime until work_done, so closing the runtime waits for it (the
** worker runs Lua on memory the request owns).
*/
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

/* ---- a growable byte buffer, inline while small ------------------------ */

typedef struct buf {
  char *p;
  size_t n, cap;
  int oom;
  int heap; /* p was malloc'd (else it is the request's inline space) */
} buf;

static void buf_init(buf *b, char *inl, size_t cap) {
  b->p = inl;
  b->n = 0;
  b->cap = cap;
  b->oom = 0;
  b->heap = 0;
}

static void buf_free(buf *b) {
  if (b->heap) free(b->p);
}

static int buf_grow(buf *b, size_t len) {
  size_t cap = b->cap > 128 ? b->cap : 128;
  char *p;
  if (b->oom) return 0;
  while (cap < b->n + len) {
    if (cap > (size_t)-1 / 2) {
      b->oom = 1;
      return 0;
    }
    cap *= 2;
  }
  if (b->heap)
    p = (char *)realloc(b->p, cap);
  else if ((p = (char *)malloc(cap)) != NULL && b->n > 0)
    memcpy(p, b->p, b->n);
  if (p == NULL) {
    b->oom = 1;
    return 0;
  }
  b->p = p;
  b->cap = cap;
  b->heap = 1;
  return 1;
}

static inline void buf_add(buf *b, const void *data, size_t len) {
  if (len > b->cap - b->n && !buf_grow(b, len)) return;
  memcpy(b->p + b->n, data, len);
  b->n += len;
}

static inline void buf_byte(buf *b, char c) { buf_add(b, &c, 1); }

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

static const char E_CYCLE[] = "a table with a cycle";
static const char E_DEEP[] = "tables nested too deep";

/* Encodes the value at idx.  *seen is the stack index of a table of the
** tables on the current path, made (and left on the stack) at the first
** table met; 0 until then, so that scalars encode without touching the
** Lua heap.  Returns NULL, or what went wrong (E_CYCLE, E_DEEP, or the
** name of a type that cannot cross).  Raises only when a table is met.
** [-0, +(0|1), m] */
static const char *encode(lua_State *L, int idx, buf *b, int *seen, int depth) {
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
      if (depth > 200) return E_DEEP;
      luaL_checkstack(L, 5, NULL);
      if (*seen == 0) {
        lua_newtable(L);
        *seen = lua_gettop(L);
      }
      lua_pushvalue(L, idx);
      if (lua_rawget(L, *seen) != LUA_TNIL) {
        lua_pop(L, 1);
        return E_CYCLE;
      }
      lua_pop(L, 1);
      lua_pushvalue(L, idx);
      lua_pushboolean(L, 1);
      lua_rawset(L, *seen);
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
      lua_rawset(L, *seen); /* off the path: shared subtables are fine */
      return err;
    }
    default: return luaL_typename(L, idx);
  }
}

/* Encodes n values from idx on: "count, values...".  Returns NULL, or what
** went wrong with value #*bad.  Raises (memory) only if a value is a
** table.  [-0, +0, m] */
static const char *encode_values(lua_State *L, int idx, int n, buf *b,
                                 int *bad) {
  const char *err = NULL;
  int i, seen = 0;
  idx = lua_absindex(L, idx);
  buf_add(b, &n, sizeof n);
  for (i = 0; i < n && err == NULL; i++)
    if ((err = encode(L, idx + i, b, &seen, 0)) != NULL) *bad = i + 1;
  if (seen != 0) lua_settop(L, seen - 1);
  if (err == NULL && b->oom) err = "";
  return err;
}

/* Pushes the message for encode_values' failure.  [-0, +1, m] */
static void push_encode_error(lua_State *L, const char *what, int bad,
                              const char *err) {
  if (*err == '\0')
    lua_pushliteral(L, "not enough memory");
  else if (err == E_CYCLE || err == E_DEEP)
    lua_pushfstring(L, "spindle.blocking: %s #%d is %s", what, bad, err);
  else
    lua_pushfstring(L,
                    "spindle.blocking: %s #%d is a %s (only nil, "
                    "booleans, numbers, strings and tables of these "
                    "can cross threads)",
                    what, bad, err);
}

/* Encodes the value on top as the only value: an error.  One that cannot
** cross arrives as its tostring.  [-0, +0, e] */
static void encode_error(lua_State *L, buf *b) {
  int bad = 0;
  if (encode_values(L, -1, 1, b, &bad) != NULL) {
    b->n = 0;
    b->oom = 0;
    luaL_tolstring(L, -1, NULL);
    encode_values(L, -1, 1, b, &bad);
    lua_pop(L, 1);
  }
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

/* Pushes one value.  Returns 0 on a malformed buffer.  Raises (memory) only
** for strings and tables.  [-0, +1, m] */
static int decode(lua_State *L, reader *r) {
  char tag;
  if (!rd(r, &tag, 1)) return 0;
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
      luaL_checkstack(L, 3, NULL);
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

/* The count of an encoding whose values are all nil, booleans or numbers
** (decoding them allocates nothing), or -1. */
static int count_scalars(const char *p, size_t len) {
  reader r = {p, p + len};
  int n, i;
  if (!rd(&r, &n, sizeof n) || n < 0) return -1;
  for (i = 0; i < n; i++) {
    if (r.p >= r.end) return -1;
    switch (*r.p++) {
      case V_NIL:
      case V_FALSE:
      case V_TRUE: break;
      case V_INT:
      case V_NUM:
        if ((size_t)(r.end - r.p) < 8) return -1;
        r.p += 8;
        break;
      default: return -1;
    }
  }
  return n;
}

/* Pushes the values of an encoding and returns how many, or -1.  Raises
** only for strings and tables, and when the stack cannot hold them.
** [-0, +n, m] */
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

#define WORK_INLINE 64 /* bytes of arguments, and of results, kept inline */

/* One malloc: the struct, then the bytecode (or the name), then the module
** paths, each NUL-terminated. */
typedef struct work {
  sp_owned own; /* in the runtime's list until work_done */
  uv_work_t req;
  sp_runtime *rt;
  sp_wpool *pool;   /* the runtime's worker states */
  sp_task *task;    /* the waiting task; NULL once detached (aborted) */
  const char *code; /* fn's bytecode, NULL when fname is used */
  size_t ncode;
  uint64_t hash;     /* of the bytecode: the worker's cache key */
  const char *fname; /* "mod.fn": require("mod").fn in the worker */
  const char *path;  /* the caller's package.path, or NULL */
  const char *cpath; /* the caller's package.cpath, or NULL */
  size_t npath, ncpath;
  buf in;                     /* arguments */
  buf out;                    /* results, or the error as one value */
  struct work *pnext, *pprev; /* in the pool's pending list */
  int pending;                /* waiting for the end of the ready round */
  int failed;                 /* fn raised: out holds the error */
  int status;                 /* < 0: libuv could not run it (cancelled, ...) */
  char inl_in[WORK_INLINE], inl_out[WORK_INLINE];
  char tail[1];
} work;

static void work_free(work *w) {
  buf_free(&w->in);
  buf_free(&w->out);
  free(w);
}

/* fn's bytecode, as kept in the weak cache: a full userdata. */
typedef struct sp_code {
  uint64_t hash;
  size_t n;
  char p[1];
} sp_code;

static const char code_key = 0;   /* registry: weak {[fn] = sp_code} */
static const char loaded_key = 0; /* worker: {[hash] = fn} */
static const char texts_key = 0;  /* worker: {[hash] = bytecode, n = count} */

/* FNV-1a, 64 bits. */
static uint64_t code_hash(const char *p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ull;
  }
  return h;
}

typedef struct dumper {
  luaL_Buffer b;
  int init;
} dumper;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  dumper *d = (dumper *)ud;
  if (!d->init) {
    d->init = 1;
    luaL_buffinit(L, &d->b);
  }
  luaL_addlstring(&d->b, (const char *)p, sz);
  return 0;
}

/* Pushes the sp_code of the Lua function at fn: from the cache, or checked
** and dumped now (once per function object; the cache's keys are weak, so
** it goes with the function).  A function in the cache passed the checks:
** the names of its upvalues cannot change.  [-0, +1, e] */
static const sp_code *code_push(lua_State *L, int fn) {
  dumper d;
  sp_code *c;
  size_t n;
  int i;
  const char *s, *name;
  fn = lua_absindex(L, fn);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &code_key);
  lua_pushvalue(L, fn);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    lua_remove(L, -2);
    return (const sp_code *)lua_touserdata(L, -1);
  }
  lua_pop(L, 1);
  if (lua_iscfunction(L, fn))
    luaL_argerror(L, 1,
                  "a Lua function expected (C functions cannot be "
                  "moved to another thread)");
  for (i = 1; (name = lua_getupvalue(L, fn, i)) != NULL; i++) {
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      luaL_error(L,
                 "spindle.blocking: fn may not capture upvalues other "
                 "than _ENV (it captures '%s')",
                 name);
  }
  lua_pushvalue(L, fn);
  d.init = 0;
  if (lua_dump(L, dump_writer, &d, 0) != 0 || !d.init)
    luaL_error(L, "spindle.blocking: cannot dump the function");
  luaL_pushresult(&d.b); /* [cache, fn, bytecode] */
  s = lua_tolstring(L, -1, &n);
  c = (sp_code *)lua_newuserdatauv(L, offsetof(sp_code, p) + n, 0);
  c->n = n;
  memcpy(c->p, s, n);
  c->hash = code_hash(s, n);
  lua_replace(L, -3); /* [cache, c, bytecode] */
  lua_pop(L, 1);
  lua_pushvalue(L, fn);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
  return c;
}

/* ---- worker states ------------------------------------------------------ */

/* Lua states for the worker threads, kept per runtime: a job takes one (or
** makes one), and gives it back after a job that returned normally; a
** state whose job raised is closed, so an error never leaves half-updated
** globals behind for the next job.  Jobs that succeed may leave globals
** behind (docs/blocking.md#worker-threads says so).
**
** The free states sit in WPOOL_MAX slots that the worker threads take and
** fill with atomic exchanges, without a lock: with more pool threads than
** cores, a lock held by a preempted thread put the others to sleep (a
** futex wait and a wake per job in the profile).  The pool is owned by
** the runtime; it is freed when the runtime has closed and the last job
** came back (work_done, on the loop thread, after the worker let go of the
** state); a state given back after the close is closed then. */
#define WPOOL_MAX 16

struct sp_wpool {
  sp_owned own;
  sp_runtime *rt;
  _Atomic(lua_State *) slot[WPOOL_MAX];
  atomic_int closed; /* the runtime closed: give nothing back */
  /* loop thread only: */
  int jobs;                   /* handed to libuv, work_done not yet run */
  int threads;                /* libuv's pool threads (UV_THREADPOOL_SIZE) */
  struct work *phead, *ptail; /* pending: queued at the end of the round */
  int npending;
};

/* Closes the states in the slots.  Loop thread. */
static void wpool_drain(sp_wpool *p) {
  int i;
  for (i = 0; i < WPOOL_MAX; i++) {
    lua_State *L = atomic_exchange(&p->slot[i], NULL);
    if (L != NULL) lua_close(L);
  }
}

static void wpool_free(sp_wpool *p) {
  wpool_drain(p);
  sp_disown(&p->own);
  free(p);
}

static void work_drop_pending(struct work *w);

/* The runtime closes (no job can be queued any more): pending jobs are
** dropped (their tasks are gone already). */
static void wpool_close(sp_owned *o) {
  sp_wpool *p = sp_container_of(o, sp_wpool, own);
  while (p->phead != NULL) work_drop_pending(p->phead);
  p->rt->wpool = NULL;
  atomic_store(&p->closed, 1);
  wpool_drain(p);
  if (p->jobs == 0) wpool_free(p); /* else the last work_done frees it */
}

/* The size of libuv's thread pool, as libuv reads it (at most 1024). */
static int pool_threads(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  int k = v != NULL ? atoi(v) : 0;
  return k < 1 ? 4 : k > 1024 ? 1024 : k;
}

/* The runtime's pool, made on first use; NULL when out of memory. */
static sp_wpool *wpool_get(sp_runtime *rt) {
  sp_wpool *p = rt->wpool;
  int i;
  if (p != NULL) return p;
  if ((p = (sp_wpool *)malloc(sizeof *p)) == NULL) return NULL;
  for (i = 0; i < WPOOL_MAX; i++) atomic_init(&p->slot[i], NULL);
  atomic_init(&p->closed, 0);
  p->jobs = 0;
  p->threads = pool_threads();
  p->phead = p->ptail = NULL;
  p->npending = 0;
  p->rt = rt;
  sp_own(rt, &p->own, wpool_close);
  rt->wpool = p;
  return p;
}

/* Worker thread: a state from the pool, or a new one.  NULL: no memory. */
static lua_State *wpool_take(sp_wpool *p) {
  lua_State *L = NULL;
  int i;
  for (i = 0; i < WPOOL_MAX && L == NULL; i++)
    if (atomic_load_explicit(&p->slot[i], memory_order_relaxed) != NULL)
      L = atomic_exchange(&p->slot[i], NULL);
  if (L == NULL && (L = luaL_newstate()) != NULL) luaL_openlibs(L);
  return L;
}

/* Worker thread: back to the pool, or closed. */
static void wpool_give(sp_wpool *p, lua_State *L, int reuse) {
  int i;
  if (reuse && !atomic_load(&p->closed)) {
    lua_settop(L, 0);
    for (i = 0; i < WPOOL_MAX && L != NULL; i++) {
      lua_State *none = NULL;
      if (atomic_load_explicit(&p->slot[i], memory_order_relaxed) == NULL &&
          atomic_compare_exchange_strong(&p->slot[i], &none, L))
        L = NULL;
    }
  }
  if (L != NULL) lua_close(L);
}

/* ---- the job ------------------------------------------------------------- */

/* package[k] = s unless it is that string already.  [-0, +0, m] */
static void job_path(lua_State *L, int pkg, const char *k, const char *s,
                     size_t n) {
  size_t len;
  const char *cur;
  if (s == NULL) return;
  lua_getfield(L, pkg, k);
  cur = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  if (cur == NULL || len != n || memcmp(cur, s, n) != 0) {
    lua_pushlstring(L, s, n);
    lua_setfield(L, pkg, k);
  }
  lua_pop(L, 1);
}

/* Pushes fn, loaded from its bytecode once per state: the cache is keyed
** by the hash and checked byte for byte, so that a new closure of the same
** function (an inline `function ... end` in a loop) is not loaded again.
** At most 64 functions are kept.  Pushes a message instead if the
** bytecode does not load.  [-0, +1, m] */
static void job_load(lua_State *L, work *w) {
  lua_Integer key = (lua_Integer)w->hash;
  int loaded, texts;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &texts_key);
  }
  loaded = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &texts_key);
  texts = loaded + 1;
  if (lua_rawgeti(L, texts, key) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (len == w->ncode && memcmp(s, w->code, len) == 0) {
      lua_rawgeti(L, loaded, key);
      lua_replace(L, loaded);
      lua_settop(L, loaded);
      return;
    }
  }
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, w->code, w->ncode, "=blocking") == LUA_OK) {
    lua_Integer k = (lua_getfield(L, texts, "n"), lua_tointeger(L, -1));
    lua_pop(L, 1);
    if (k >= 64) { /* bounded: start over */
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
      lua_replace(L, loaded);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &texts_key);
      lua_replace(L, texts);
      k = 0;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, loaded, key);
    lua_pushlstring(L, w->code, w->ncode);
    lua_rawseti(L, texts, key);
    lua_pushinteger(L, k + 1);
    lua_setfield(L, texts, "n");
  }
  lua_replace(L, loaded);
  lua_settop(L, loaded);
}

/* In the worker's state, protected: fn and its arguments decoded, fn
** called under pcall, results (or the error) encoded. */
static int job_p(lua_State *L) {
  work *w = (work *)lua_touserdata(L, 1);
  int n, top, bad = 0;
  lua_settop(L, 0);
  /* the caller's module paths, so that require finds what it finds */
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    job_path(L, 1, "path", w->path, w->npath);
    job_path(L, 1, "cpath", w->cpath, w->ncpath);
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
  } else
    job_load(L, w);
  if (lua_type(L, 1) != LUA_TFUNCTION ||
      (n = decode_values(L, w->in.p, w->in.n)) < 0) {
    w->failed = 1;
    if (lua_type(L, -1) != LUA_TSTRING)
      lua_pushliteral(L, "spindle.blocking: cannot load the function");
    encode_error(L, &w->out);
    return 0;
  }
  top = lua_gettop(L) - n - 1;
  if (lua_pcall(L, n, LUA_MULTRET, 0) != LUA_OK) {
    w->failed = 1;
    encode_error(L, &w->out);
  } else {
    const char *err =
        encode_values(L, top + 1, lua_gettop(L) - top, &w->out, &bad);
    if (err != NULL) {
      w->failed = 1;
      push_encode_error(L, "result", bad, err);
      w->out.n = 0;
      w->out.oom = 0; /* "not enough memory" itself may fit */
      encode_error(L, &w->out);
    }
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
  if (--p->jobs == 0 && atomic_load(&p->closed))
    wpool_free(p); /* the runtime closed meanwhile */
  w->status = status;
  if (w->task == NULL) {
    work_free(w);
    return;
  }
  sp_wake(w->task, SP_WAKE_OK);
}

/* A pending request leaves the list and is freed: it never reached libuv,
** so nothing else will.  The task (if any) is no longer waiting for it. */
static void work_drop_pending(struct work *w) {
  sp_wpool *p = w->pool;
  if (w->pprev != NULL)
    w->pprev->pnext = w->pnext;
  else
    p->phead = w->pnext;
  if (w->pnext != NULL)
    w->pnext->pprev = w->pprev;
  else
    p->ptail = w->pprev;
  w->rt->inflight--;
  p->npending--;
  sp_disown(&w->own);
  work_free(w);
}

/* The runtime closes: detach the task; work_done (which always comes)
** frees the request. */
static void work_close(sp_owned *o) {
  work *w = sp_container_of(o, work, own);
  if (w->pending) {
    work_drop_pending(w);
    return;
  }
  w->task = NULL;
  uv_cancel((uv_req_t *)&w->req);
}

static void work_undo(sp_task *t) {
  work *w = (work *)t->w.obj;
  if (w->pending) {
    work_drop_pending(w);
    return;
  }
  w->task = NULL;                 /* work_done frees it */
  uv_cancel((uv_req_t *)&w->req); /* in case it has not started yet */
}

/* ---- handing jobs to libuv ----------------------------------------------- */

/* Jobs are handed to libuv at once while the runtime's earlier jobs leave
** a pool thread free: the job starts now, in parallel with the rest of the
** ready round.  Beyond that it would only wait in libuv's queue, so it
** waits in ours, and goes with the others in one burst: when WORK_BATCH
** are waiting, or at the end of the round (sp_blocking_flush).  A burst of
** jobs (one task per job) then costs about what a loop of uv_queue_work
** calls costs: queued while the pool threads are busy, each handed over
** without waking a thread, instead of one handoff -- and often a thread
** woken and the loop thread preempted by it -- between every two task
** slices (a quarter to half less CPU per empty job; bench/README.md).  The
** batch keeps the pool fed during a long round.  The order of jobs is
** kept: once one waits, the next waits too.  Returns 0 or a libuv
** error. */
#define WORK_BATCH 64

static int work_submit(work *w) {
  sp_wpool *p = w->pool;
  int r;
  if (p->phead == NULL && p->jobs < p->threads) {
    if ((r = uv_queue_work(w->rt->loop, &w->req, work_run, work_done)) != 0)
      return r;
    p->jobs++;
    return 0;
  }
  w->pending = 1;
  w->pnext = NULL;
  w->pprev = p->ptail;
  if (p->ptail != NULL)
    p->ptail->pnext = w;
  else
    p->phead = w;
  p->ptail = w;
  if (++p->npending >= WORK_BATCH) sp_blocking_flush(w->rt);
  return 0;
}

void sp_blocking_flush(sp_runtime *rt) {
  sp_wpool *p = rt->wpool;
  work *w;
  if (p == NULL) return;
  while ((w = p->phead) != NULL) {
    int r;
    p->phead = w->pnext;
    if (p->phead != NULL)
      p->phead->pprev = NULL;
    else
      p->ptail = NULL;
    w->pending = 0;
    p->npending--;
    p->jobs++;
    if ((r = uv_queue_work(rt->loop, &w->req, work_run, work_done)) != 0)
      work_done(&w->req, r); /* cannot happen: the arguments are valid */
  }
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
  /* nil, booleans and numbers push without allocating: no pcall needed */
  n = w->failed ? -1 : count_scalars(w->out.p, w->out.n);
  if (n >= 0 && lua_checkstack(L, n)) {
    n = decode_values(L, w->out.p, w->out.n);
    work_free(w);
    return n;
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

/* [w, args...]: the arguments into w->in, when one is a table (encoding
** tables allocates).  [-n, +0, e] */
static int encode_p(lua_State *L) {
  work *w = (work *)lua_touserdata(L, 1);
  int bad = 0;
  const char *err = encode_values(L, 2, lua_gettop(L) - 1, &w->in, &bad);
  if (err != NULL) {
    push_encode_error(L, "argument", bad, err);
    return lua_error(L);
  }
  return 0;
}

/* Queues the job: fn (a Lua function, whose code is c, or "mod.fn") at 1,
** nargs arguments after it; waits.  [-0, +?, e] */
static int blocking_start(lua_State *L, int nargs, const sp_code *c) {
  sp_task *t = sp_await_check(L, "spindle.blocking");
  const char *fname = NULL, *path = NULL, *cpath = NULL, *err;
  size_t nfname = 0, npath = 0, ncpath = 0, size;
  int i, r, bad = 0, tables = 0;
  work *w;
  char *p;
  luaL_checkstack(L, nargs + 8, "spindle.blocking: too many arguments");
  if (c == NULL) fname = lua_tolstring(L, 1, &nfname);
  /* the caller's module paths travel with the job */
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    if (lua_getfield(L, -1, "path") == LUA_TSTRING)
      path = lua_tolstring(L, -1, &npath);
    if (lua_getfield(L, -2, "cpath") == LUA_TSTRING)
      cpath = lua_tolstring(L, -1, &ncpath);
  }
  size = offsetof(work, tail) + (c != NULL ? c->n : nfname + 1) + npath + 1 +
         ncpath + 1;
  if ((w = (work *)malloc(size)) == NULL)
    return luaL_error(L, "not enough memory");
  memset(w, 0, offsetof(work, inl_in));
  buf_init(&w->in, w->inl_in, WORK_INLINE);
  buf_init(&w->out, w->inl_out, WORK_INLINE);
  p = w->tail;
  if (c != NULL) {
    memcpy(p, c->p, c->n);
    w->code = p;
    w->ncode = c->n;
    w->hash = c->hash;
    p += c->n;
  } else {
    memcpy(p, fname, nfname + 1);
    w->fname = p;
    p += nfname + 1;
  }
  if (path != NULL) {
    memcpy(p, path, npath + 1);
    w->path = p;
    w->npath = npath;
    p += npath + 1;
  }
  if (cpath != NULL) {
    memcpy(p, cpath, ncpath + 1);
    w->cpath = p;
    w->ncpath = ncpath;
  }
  /* the arguments: scalars and strings encode without raising */
  for (i = 2; i <= nargs + 1; i++)
    if (lua_type(L, i) == LUA_TTABLE) tables = 1;
  if (!tables) {
    if ((err = encode_values(L, 2, nargs, &w->in, &bad)) != NULL) {
      work_free(w);
      push_encode_error(L, "argument", bad, err);
      return lua_error(L);
    }
  } else {
    lua_pushcfunction(L, encode_p);
    lua_pushlightuserdata(L, w);
    for (i = 2; i <= nargs + 1; i++) lua_pushvalue(L, i);
    if (lua_pcall(L, nargs + 1, 0, 0) != LUA_OK) {
      work_free(w);
      return lua_error(L);
    }
  }
  w->rt = t->rt;
  w->task = t;
  w->req.data = w;
  if ((w->pool = wpool_get(t->rt)) == NULL) {
    work_free(w);
    return luaL_error(L, "not enough memory");
  }
  if ((r = work_submit(w)) != 0) {
    work_free(w);
    return luaL_error(L, "spindle.blocking: %s", uv_strerror(r));
  }
  t->rt->inflight++;
  sp_own(t->rt, &w->own, work_close);
  return sp_await_block(L, t, &blocking_wait, w, blocking_k, (lua_KContext)t);
}

/* spindle.blocking(fn, ...) */
static int l_blocking(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  const sp_code *c;
  if (lua_type(L, 1) == LUA_TSTRING) { /* "mod.fn" */
    const char *fn = lua_tostring(L, 1), *dot = strrchr(fn, '.');
    size_t len = lua_rawlen(L, 1);
    if (dot == NULL || dot == fn || dot[1] == '\0' || strlen(fn) != len)
      luaL_argerror(L, 1, "\"module.function\" expected");
    return blocking_start(L, nargs, NULL);
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checkstack(L, 8, "spindle.blocking: too many arguments");
  c = code_push(L, 1); /* stays on the stack while the request is made */
  return blocking_start(L, nargs, c);
}

int sp_blocking_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"blocking", l_blocking}, {NULL, NULL}};
  sp_weak_keys(L, &code_key);
  sp_setfuncs(L, fns);
  return 0;
}
