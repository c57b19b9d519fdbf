/*
** task.c -- tasks and their handles: spawn, join, result, abort, status,
** and the basic awaits (yield, sleep).
**
** A task is one full userdata -- the handle -- whose user value is its
** coroutine (names live in a weak table: most tasks have none).  The coroutine starts in task_body,
** which runs the user's function in a yieldable pcall, so an error or a
** cancellation unwinds *inside* the task: <close> handlers run in order and
** may themselves await.  Results stay on the finished coroutine's stack.
**
** State machine (t->state):
**
**   NEW --resume--> RUNNING --await--> WAITING --wake--> READY --resume--+
**    |                 |  ^                                              |
**    |                 |  +----------------------------------------------+
**    |                 +--yield/preempt--> READY
**    |                 +--return--> DONE | FAILED | CANCELLED (if aborted)
**    +--abort--> CANCELLED (never runs)
**
** Abort (t->cancel) is recorded once and never cleared: NEW tasks end at
** once; WAITING tasks have their wait undone and are woken to raise the
** cancellation error (unless shielded); READY and RUNNING tasks raise it at
** their next await.  Whatever the body does afterwards, a task whose abort
** was requested before it finished ends CANCELLED ("abort wins").
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The task record's size is what an idle task pays on top of its
** coroutine (internal.h, bench/README.md): keep it within a 160-byte
** malloc chunk on 64-bit targets (Lua's userdata header with one user
** value is 56 bytes). */
#if UINTPTR_MAX > 0xffffffffu
_Static_assert(sizeof(sp_task) <= 96, "struct sp_task grew past 96 bytes");
#endif

static const char unobserved_key =
    0; /* registry: weak set of failed, unseen handles */
static const char names_key = 0; /* registry: weak {[handle] = name} */

/* Pushes the name of the handle at idx, or nil.  [-0, +1, -] */
int sp_push_name(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

const char *sp_status_name(int state) {
  switch (state) {
    case SP_T_NEW:
    case SP_T_READY: return "ready";
    case SP_T_RUNNING: return "running";
    case SP_T_WAITING: return "waiting";
    case SP_T_DONE: return "done";
    case SP_T_FAILED: return "failed";
    default: return "cancelled";
  }
}

static const char task_mt_key =
    0; /* registry: the handle metatable, by address */

/* A handle at idx, or NULL.  Compares metatables by address (kept in the
** box) instead of looking them up by name.  [-0, +0, -] */
sp_task *sp_task_test(lua_State *L, int idx) {
  const void *mt;
  sp_box *box;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  box = sp_box_get(L);
  if (mt != box->task_mt && mt != box->task_gc_mt) return NULL;
  return (sp_task *)lua_touserdata(L, idx);
}

sp_task *sp_task_check(lua_State *L, int idx) {
  sp_task *t = sp_task_test(L, idx);
  if (t == NULL) luaL_typeerror(L, idx, SP_TASK_MT);
  return t;
}

/* ---- the body of every task's coroutine ------------------------------ */

static int task_body_k(lua_State *co, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  if (status == LUA_OK || status == LUA_YIELD)
    return lua_gettop(co) - 1; /* the results, above the handler */
  t->failed = 1;               /* [msgh, err] */
  sp_take_traceback(co, -1);   /* [msgh, err, tb] */
  lua_insert(co, -2);          /* [msgh, tb, err] */
  return 2;
}

/* [task, fn, args...] */
static int task_body(lua_State *co) {
  lua_KContext t = (lua_KContext)lua_touserdata(co, 1);
  lua_pushcfunction(co, sp_msgh);
  lua_replace(co, 1);
  return task_body_k(
      co, lua_pcallk(co, lua_gettop(co) - 2, LUA_MULTRET, 1, t, task_body_k),
      t);
}

/* fn and nargs arguments on top of L: creates the task, queues it, and
** leaves its handle in their place.  The function and its arguments wait
** in the handle's user values: a task gets its coroutine only when its
** first slice begins (sp_task_start).  [-(nargs+1), +1, m] */
sp_task *sp_spawn(lua_State *L, sp_runtime *rt, int nargs) {
  int fidx = lua_gettop(L) - nargs, i, nuv = nargs + 1;
  sp_task *t;
  int slot;
  if (nargs > 65000) luaL_error(L, "spindle.spawn: too many arguments");
  if (rt->nslots >= rt->freecap) { /* the free list can hold every slot */
    int cap = rt->freecap ? rt->freecap * 2 : 256;
    int *p = realloc(rt->freeslots, (size_t)cap * sizeof *p);
    if (p == NULL) luaL_error(L, "not enough memory");
    rt->freeslots = p;
    rt->freecap = cap;
  }
  t = lua_newuserdatauv(L, sizeof *t, nuv);
  memset(t, 0, sizeof *t);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_mt_key);
  lua_setmetatable(L, -2);
  for (i = 1; i <= nuv; i++) {
    lua_pushvalue(L, fidx + i - 1);
    lua_setiuservalue(L, -2, i);
  }
  t->nuv = (unsigned short)nuv;
  slot = rt->nfree > 0 ? rt->freeslots[--rt->nfree] : ++rt->nslots;
  sp_push_anchors(L, rt);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  lua_replace(L, fidx); /* the handle in place of fn */
  lua_settop(L, fidx);
  t->anchor = slot;
  t->rt = rt;
  t->id = ++rt->nextid;
  { /* the loop's cached time: no clock read on the hot path */
    int64_t ms = rt->virtual_clock
                     ? (int64_t)(rt->vnow / 1000000)
                     : (int64_t)uv_now(rt->loop) - (int64_t)(rt->t0 / 1000000);
    t->born = ms > 0 ? (uint32_t)ms : 0;
  }
  if (rt->live == 0) sp_runtime_pin(L, rt, 1); /* tasks keep it alive */
  rt->live++;
  rt->spawned++;
  t->state = SP_T_NEW;
  if (rt->shutting_down) { /* spawned while everything is being aborted */
    t->cancel = 1;
    sp_finish(L, rt, t, SP_T_CANCELLED);
  } else
    sp_ready_push(rt, t);
  return t;
}

/* ---- the coroutine pool ---------------------------------------------- */

/* A task needs a coroutine only from its first slice to its end.  Ended
** tasks give theirs back (results are kept in the handle), so a runtime
** that spawns and joins many short tasks reuses a handful of coroutines.
** A coroutine goes back only after its last resume returned LUA_OK with
** its stack popped: nothing of the old task is left on it (no values,
** frames, <close> variables); its hooks are set again when it is taken.
** What a user kept of an old task -- a coroutine.running() value -- may
** meet a new task running in that coroutine: docs/tasks.md#coroutines-are-reused
** says so.  The pool holds at most SP_POOL_MAX coroutines; the collector
** shrinks their stacks. */
#define SP_POOL_MAX 1024 /* the pool table is made with this many slots */

void sp_task_start(lua_State *L, sp_runtime *rt, sp_task *t) {
  lua_State *co;
  int i, top = lua_gettop(L);
  luaL_checkstack(L, t->nuv + 4, "spindle.spawn: too many arguments");
  sp_push_task(L, t); /* top + 1 */
  if (rt->npool > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref); /* top + 2 */
    lua_rawgeti(L, -1, rt->npool);                   /* top + 3 */
    co = lua_tothread(L, -1);
  } else {
    lua_pushnil(L);
    co = lua_newthread(L); /* top + 3 */
  }
  if (!lua_checkstack(co, t->nuv + 3))
    luaL_error(L, "spindle.spawn: too many arguments");
  lua_pushcfunction(co, task_body);
  lua_pushlightuserdata(co, t);
  for (i = 1; i <= t->nuv; i++) lua_getiuservalue(L, top + 1, i);
  lua_xmove(L, co, t->nuv);
  /* nothing can fail from here on */
  if (rt->npool > 0) {
    lua_pushnil(L);
    lua_rawseti(L, top + 2, rt->npool--);
  }
  lua_pushvalue(L, top + 3);
  lua_setiuservalue(L, top + 1, 1); /* the handle anchors its coroutine */
  lua_settop(L, top);
  t->co = co;
  sp_set_hooks(rt, co);
}

/* Pops v from L into a protected table of nres values on co's top. */
static int pack_p(lua_State *L) {
  lua_State *co = (lua_State *)lua_touserdata(L, 1);
  int n = (int)lua_tointeger(L, 2), i;
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(co, -n + i - 1);
    lua_xmove(co, L, 1);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* The coroutine of the task whose handle is at h back to the pool, while
** the handle still anchors it (user value 1). */
static void pool_put(lua_State *L, sp_runtime *rt, int h) {
  if (rt->npool < SP_POOL_MAX) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
    lua_getiuservalue(L, h, 1);
    lua_rawseti(L, -2, rt->npool + 1); /* may fail: then not pooled */
    rt->npool++;
    lua_pop(L, 1);
  }
}

void sp_task_keep_end(lua_State *L, sp_runtime *rt, sp_task *t, int nres) {
  lua_State *co = t->co;
  int top = lua_gettop(L), i, h;
  if (!lua_checkstack(L, nres + 6)) nres = 0; /* cannot happen in practice */
  if (t->stashed && !t->failed) sp_forget_traceback(L, co);
  t->stashed = 0;
  sp_push_task(L, t);
  h = top + 1;
  pool_put(L, rt, h);
  if (t->cancel) { /* abort wins: nothing is kept */
    t->rkind = SP_R_NONE;
  } else if (t->failed) { /* co: [traceback, error] */
    t->rkind = SP_R_ERROR;
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    lua_setiuservalue(L, h, 1);
    if (t->nuv > 1) {
      lua_pushvalue(co, -2);
      lua_xmove(co, L, 1);
      lua_setiuservalue(L, h, 2);
    } else if (!lua_isnil(co, -2)) { /* room for one: pack both */
      lua_pushcfunction(L, pack_p);
      lua_pushlightuserdata(L, co);
      lua_pushinteger(L, 2);
      if (lua_pcall(L, 2, 1, 0) == LUA_OK) { /* {traceback, error} */
        lua_rawgeti(L, -1, 2);
        lua_rawgeti(L, -2, 1);
        lua_rawseti(L, -3, 2); /* {error, traceback} */
        lua_rawseti(L, -2, 1);
        lua_setiuservalue(L, h, 1);
        t->rkind = SP_R_ERRPACK;
      } else
        lua_pop(L, 1); /* out of memory: the error without traceback */
    }
  } else if (nres <= t->nuv) {
    t->rkind = SP_R_INLINE;
    for (i = 1; i <= nres; i++) {
      lua_pushvalue(co, -nres + i - 1);
      lua_xmove(co, L, 1);
      lua_setiuservalue(L, h, i);
    }
  } else {
    lua_pushcfunction(L, pack_p);
    lua_pushlightuserdata(L, co);
    lua_pushinteger(L, nres);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK) {
      t->rkind = SP_R_PACKED;
      lua_setiuservalue(L, h, 1);
    } else { /* out of memory: the task fails with the memory error */
      t->rkind = SP_R_ERROR;
      t->failed = 1;
      lua_setiuservalue(L, h, 1);
    }
  }
  t->nres = nres;
  for (i = t->rkind == SP_R_INLINE  ? nres + 1
           : t->rkind == SP_R_ERROR ? 3
                                    : 2;
       i <= t->nuv; i++) { /* let go of the arguments */
    lua_pushnil(L);
    lua_setiuservalue(L, h, i);
  }
  if (t->rkind == SP_R_NONE) {
    lua_pushnil(L);
    lua_setiuservalue(L, h, 1);
  }
  lua_settop(co, 0);
  t->co = NULL;
  lua_settop(L, top);
}

/* The end of a slice whose function parked the task (sp_await_park):
** the coroutine goes back to the pool as at the task's end, and the
** function it returned takes its place in user value 1, to be called
** again with the task's arguments when the task is woken. */
void sp_task_park_end(lua_State *L, sp_runtime *rt, sp_task *t, int nres) {
  lua_State *co = t->co;
  int top = lua_gettop(L), h;
  if (t->stashed) sp_forget_traceback(L, co);
  t->stashed = 0;
  sp_push_task(L, t);
  h = top + 1;
  pool_put(L, rt, h);
  if (nres >= 1 && lua_type(co, -1) == LUA_TFUNCTION) {
    lua_xmove(co, L, 1);
  } else { /* a misuse of sp_await_park: the wake will fail the task */
    lua_pushnil(L);
  }
  lua_setiuservalue(L, h, 1);
  lua_settop(co, 0);
  t->co = NULL;
  lua_settop(L, top);
}

int sp_task_push_results(lua_State *L, int idx, sp_task *t) {
  int i, n = t->nres;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, n + 1, "too many results");
  if (t->rkind == SP_R_PACKED) {
    lua_getiuservalue(L, idx, 1);
    for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
  } else if (t->rkind == SP_R_INLINE)
    for (i = 1; i <= n; i++) lua_getiuservalue(L, idx, i);
  else
    n = 0;
  return n;
}

void sp_task_push_error(lua_State *L, int idx, sp_task *t) {
  lua_getiuservalue(L, idx, 1);
  if (t->rkind == SP_R_ERRPACK) {
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
}

void sp_task_push_traceback(lua_State *L, int idx, sp_task *t) {
  if (t->rkind == SP_R_ERRPACK) {
    lua_getiuservalue(L, idx, 1);
    lua_rawgeti(L, -1, 2);
    lua_remove(L, -2);
  } else if (t->rkind == SP_R_ERROR && t->nuv > 1)
    lua_getiuservalue(L, idx, 2);
  else
    lua_pushnil(L);
}

/* ---- abort ----------------------------------------------------------- */

void sp_interrupt(sp_task *t) {
  if (t->wait != NULL && t->wait->undo != NULL) t->wait->undo(t);
  sp_wake(t, SP_WAKE_INTERRUPT);
}

/* Returns 1 if t had not finished.  [-0, +0, m] */
int sp_task_abort(lua_State *L, sp_task *t) {
  sp_tscope *sc;
  int first = !t->cancel;
  if (sp_task_finished(t)) return 0;
  t->cancel = 1;
  if (t->state == SP_T_NEW) {
    sp_ready_remove(t->rt, t);
    sp_finish(L, t->rt, t, SP_T_CANCELLED);
    return 1;
  }
  if (first && t->shield == 0) /* scopes act before the task unwinds */
    for (sc = t->scopes; sc != NULL; sc = sc->outer)
      if (sc->on_abort != NULL) sc->on_abort(L, sc);
  if (t->state == SP_T_WAITING && t->shield == 0 && !sp_task_finished(t))
    sp_interrupt(t);
  return 1;
}

/* ---- reporting failures nobody observed ------------------------------ */

static void unobserved_set(lua_State *L, int idx, int on) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &unobserved_key);
  lua_pushvalue(L, idx);
  if (on)
    lua_pushboolean(L, 1);
  else
    lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Called by sp_finish with the failed task's handle on top.  [-0, +0, m] */
void sp_task_unobserved(lua_State *L, sp_task *t) {
  (void)t;
  unobserved_set(L, -1, 1);
}

static void observe(lua_State *L, int idx, sp_task *t) {
  if (t->observed) return;
  t->observed = 1;
  unobserved_set(L, idx, 0);
}

/* Reports the failure of the task whose handle is at idx: on_error(err, h)
** if set, else stderr.  Never raises.  [-0, +0, -] */
static void report(lua_State *L, int idx, sp_task *t) {
  sp_runtime *rt = t->rt;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  t->observed = 1;
  if (!lua_checkstack(L, 6)) return;
  if (rt != NULL && !rt->closed && rt->on_error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->on_error_ref);
    sp_task_push_error(L, idx, t);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      lua_settop(L, top);
      return;
    }
    fprintf(stderr, "spindle: on_error failed: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    lua_settop(L, top);
  }
  sp_task_push_traceback(L, idx, t); /* traceback or nil */
  sp_task_push_error(L, idx, t);
  sp_push_name(L, idx);
  if (lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "spindle: task %lld (%s) failed and was never joined: ",
            (long long)t->id, lua_tostring(L, -1));
  else
    fprintf(stderr, "spindle: task %lld failed and was never joined: ",
            (long long)t->id);
  if (lua_type(L, -3) == LUA_TSTRING)
    fprintf(stderr, "%s\n", lua_tostring(L, -3));
  else if (lua_type(L, -2) == LUA_TSTRING || lua_type(L, -2) == LUA_TNUMBER)
    fprintf(stderr, "%s\n", lua_tostring(L, -2));
  else
    fprintf(stderr, "(error object is a %s value)\n", luaL_typename(L, -2));
  fflush(stderr);
  lua_settop(L, top);
}

void sp_warning(lua_State *L, sp_runtime *rt, int hidx) {
  int top = lua_gettop(L);
  hidx = lua_absindex(L, hidx);
  if (rt != NULL && !rt->closed && rt->on_warning_ref != LUA_NOREF &&
      lua_checkstack(L, 3)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->on_warning_ref);
    lua_pushvalue(L, top);
    lua_pushvalue(L, hidx);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      lua_settop(L, top - 1);
      return;
    }
    fprintf(stderr, "spindle: on_warning failed: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
  }
  fprintf(stderr, "%s\n", lua_isstring(L, top) ? lua_tostring(L, top) : "?");
  fflush(stderr);
  lua_settop(L, top - 1);
}

/* At the end of a runtime: reports every failure still unobserved, in
** task id order.  [-0, +0, m] */
typedef struct unobs {
  lua_Integer id;
  int idx; /* in the list of handles */
} unobs;

static int unobs_cmp(const void *a, const void *b) {
  lua_Integer x = ((const unobs *)a)->id, y = ((const unobs *)b)->id;
  return (x > y) - (x < y);
}

void sp_report_unobserved(lua_State *L, sp_runtime *rt) {
  int top = lua_gettop(L), n = 0, i;
  unobs *v;
  lua_newtable(L); /* top+1: list of handles of this runtime */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &unobserved_key);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    sp_task *t = (sp_task *)lua_touserdata(L, -2);
    lua_pop(L, 1);
    if (t->rt == rt && !t->observed) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, top + 1, ++n);
    }
  }
  lua_pop(L, 1);
  if (n == 0) {
    lua_settop(L, top);
    return;
  }
  v = (unobs *)lua_newuserdatauv(L, (size_t)n * sizeof *v, 0); /* top+2 */
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, top + 1, i + 1);
    v[i].id = ((sp_task *)lua_touserdata(L, -1))->id;
    v[i].idx = i + 1;
    lua_pop(L, 1);
  }
  qsort(v, (size_t)n, sizeof *v, unobs_cmp); /* report in id order */
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, top + 1, v[i].idx);
    observe(L, -1, (sp_task *)lua_touserdata(L, -1));
    report(L, -1, (sp_task *)lua_touserdata(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

/* __gc of a failed handle nobody observed. */
static int task_gc(lua_State *L) {
  sp_task *t = sp_task_test(L, 1);
  if (t != NULL && t->state == SP_T_FAILED && !t->observed && t->rt != NULL &&
      !t->rt->closed)
    report(L, 1, t);
  return 0;
}

/* ---- join and result ------------------------------------------------- */

enum { JOIN = 0, RESULT = 1 };

static void join_undo(sp_task *t) {
  sp_fhook_remove((sp_task *)t->w.obj, &t->w.hook);
}

/* The target ended: wake the joiner (its hook is in its own wait). */
static void join_hook(sp_fhook *h, sp_task *target) {
  (void)target;
  sp_wake(sp_container_of(h, sp_task, w.hook), SP_WAKE_OK);
}

static void describe_join(sp_task *t, char *buf, size_t size) {
  snprintf(buf, size, "join task %lld", (long long)((sp_task *)t->w.obj)->id);
}

static const sp_waitops join_wait = {"join", join_undo, describe_join};

/* The finished target at index 1: push (join) or return (result) what it
** ended with. */
static int join_finish(lua_State *L, int mode) {
  sp_task *target = (sp_task *)lua_touserdata(L, 1);
  int n;
  lua_settop(L, 1);
  switch (target->state) {
    case SP_T_DONE:
      if (mode == RESULT) lua_pushboolean(L, 1);
      n = sp_task_push_results(L, 1, target);
      return n + mode;
    case SP_T_FAILED:
      observe(L, 1, target);
      if (mode == RESULT) lua_pushboolean(L, 0);
      sp_task_push_error(L, 1, target);
      if (mode == RESULT) return 2;
      /* the report of the joiner shows where the error really happened */
      lua_pushfstring(L, "(raised again by join of task %I)", target->id);
      sp_task_push_traceback(L, 1, target); /* [err, what, tb] */
      sp_reraise_traceback(L, -3, lua_tostring(L, -2));
      lua_pop(L, 1);
      return lua_error(L);
    default:
      if (mode == RESULT) lua_pushboolean(L, 0);
      sp_push_cancel_error(L);
      if (mode == RESULT) return 2;
      return lua_error(L);
  }
}

/* ctx: the joining task, with the mode in bit 0. */
static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)(ctx & ~(lua_KContext)1));
  return join_finish(L, (int)(ctx & 1));
}

static int join_common(lua_State *L, int mode, const char *name) {
  sp_task *target = sp_task_check(L, 1);
  sp_task *t = sp_await_check(L, name);
  if (target == t) luaL_error(L, "deadlock: a task cannot join itself");
  if (target->rt != t->rt && !sp_task_finished(target))
    luaL_error(L, "%s: the task belongs to another runtime", name);
  if (sp_task_finished(target))
    return sp_await_fast(L, t, join_k, (lua_KContext)t | mode);
  sp_fhook_add(target, &t->w.hook, join_hook);
  return sp_await_block(L, t, &join_wait, target, join_k,
                        (lua_KContext)t | mode);
}

static int task_join(lua_State *L) { return join_common(L, JOIN, "join"); }

static int task_result(lua_State *L) {
  return join_common(L, RESULT, "result");
}

/* ---- the other handle methods ---------------------------------------- */

static int task_abort(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  lua_pushboolean(L, sp_task_abort(L, t));
  return 1;
}

static int task_status(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  lua_pushstring(L, sp_status_name(t->state));
  return 1;
}

static int task_traceback(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  if (t->state == SP_T_FAILED)
    sp_task_push_traceback(L, 1, t);
  else if (t->state == SP_T_WAITING && t->co != NULL)
    luaL_traceback(L, t->co, NULL, 0);
  else if (t->state == SP_T_WAITING) /* parked: no frames */
    lua_pushliteral(L, "stack traceback:\n\t[C]: in ?");
  else
    lua_pushnil(L);
  return 1;
}

static int task_id(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  lua_pushinteger(L, t->id);
  return 1;
}

static int task_name(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  (void)t;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TSTRING) luaL_typeerror(L, 2, "string");
    lua_settop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  sp_push_name(L, 1);
  return 1;
}

static int task_tostring(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  if (sp_push_name(L, 1) == LUA_TSTRING)
    lua_pushfstring(L, "task %I (%s)", t->id, lua_tostring(L, -1));
  else
    lua_pushfstring(L, "task %I", t->id);
  return 1;
}

/* ---- module functions: spawn, yield, sleep, now, current, tasks ------ */

static int l_spawn(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (rt == NULL) luaL_error(L, "spindle.spawn: not inside a runtime");
  sp_spawn(L, rt, lua_gettop(L) - 1);
  return 1;
}

static int yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  return 0;
}

static int l_yield(lua_State *L) {
  sp_task *t = sp_await_check(L, "spindle.yield");
  t->state = SP_T_READY;
  return sp_await_yield(L, t, yield_k, (lua_KContext)t);
}

static void sleep_undo(sp_task *t) { sp_timer_remove(t->rt, &t->w.timer); }

static void sleep_fire(sp_runtime *rt, sp_timer *tm) {
  (void)rt;
  sp_wake(sp_container_of(tm, sp_task, w.timer), SP_WAKE_OK);
}

static void describe_sleep(sp_task *t, char *buf, size_t size) {
  uint64_t d = sp_timer_deadline(t->rt, &t->w.timer), now = sp_now(t->rt);
  snprintf(buf, size, "sleep %.1f s left",
           d > now ? (double)(d - now) / 1e9 : 0.0);
}

static const sp_waitops sleep_wait = {"sleep", sleep_undo, describe_sleep};

static int l_sleep(lua_State *L) {
  double s = sp_check_seconds(L, 1);
  sp_task *t = sp_await_check(L, "spindle.sleep");
  sp_runtime *rt = t->rt;
  if (s <= 0) {
    t->state = SP_T_READY;
    return sp_await_yield(L, t, yield_k, (lua_KContext)t);
  }
  sp_timer_reserve(L, rt);
  sp_timer_init(&t->w.timer, sleep_fire);
  sp_timer_add(rt, &t->w.timer, sp_now(rt) + (uint64_t)ceil(s * 1e9));
  return sp_await_block(L, t, &sleep_wait, NULL, yield_k, (lua_KContext)t);
}

static int l_now(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  uint64_t ns = rt ? sp_now(rt) : uv_hrtime();
  lua_pushnumber(L, (lua_Number)ns / 1e9);
  return 1;
}

static int l_current(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  if (rt != NULL && rt->current != NULL)
    sp_push_task(L, rt->current);
  else
    lua_pushnil(L);
  return 1;
}

static int l_tasks(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  if (rt == NULL) luaL_error(L, "spindle.tasks: not inside a runtime");
  sp_push_live(L, rt);
  return 1;
}

/* Adds the task functions to the module table at -1 and creates the
** handle metatables.  [-0, +0, m] */
int sp_task_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"join", task_join},           {"result", task_result},
      {"abort", task_abort},         {"status", task_status},
      {"traceback", task_traceback}, {"id", task_id},
      {"name", task_name},           {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"spawn", l_spawn}, {"yield", l_yield},     {"sleep", l_sleep},
      {"now", l_now},     {"current", l_current}, {"tasks", l_tasks},
      {NULL, NULL}};
  const char *const mts[] = {SP_TASK_MT, SP_TASK_GC_MT};
  lua_newtable(L); /* shared method table */
  sp_setfuncs(L, methods);
  for (int i = 0; i < 2; i++) {
    luaL_newmetatable(L, mts[i]);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "spindle.task");
    lua_setfield(L, -2, "__name");
    if (i == 1) {
      lua_pushcfunction(L, task_gc);
      lua_setfield(L, -2, "__gc");
      sp_box_get(L)->task_gc_mt = lua_topointer(L, -1);
    } else {
      sp_box_get(L)->task_mt = lua_topointer(L, -1);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &task_mt_key);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  sp_weak_keys(L, &unobserved_key);
  sp_weak_keys(L, &names_key);
  sp_setfuncs(L, fns);
  return 0;
}
