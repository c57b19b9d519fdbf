/*
** scope.c -- spindle.scope: structured concurrency (api.md section 4).
**
** spindle.scope(fn) runs fn(s) in the calling task (the owner); s:spawn
** starts children bound to the scope.  The scope ends when fn has returned
** and every child has ended.
**
** Phases of a scope (s->phase):
**   BODY   fn is running.  A fail-fast cancellation scope is open on the
**          owner: an sp_tscope without a timer, linked into t->scopes like
**          a spindle.timeout, whose error value is a private cancellation
**          error (the marker).  When a child fails, the scope "expires":
**          the body's current (or next) await raises the marker, level-
**          triggered, exactly like an expired timeout.
**   WAIT   fn returned; the owner waits for the children, one at a time,
**          in the joiners list of the first unfinished child (sp_finish
**          wakes it).  A failing child wakes it early; an abort of the
**          owner (or an outer timeout) interrupts the wait.
**   DRAIN  something failed: fn raised, a child failed, or the owner was
**          cancelled.  The first error is recorded, every unfinished child
**          is aborted, and the owner waits -- shielded, so its own pending
**          cancellation cannot cut the wait short -- until all have
**          unwound; then the first error is raised.
**   CLOSED the scope has ended; s:spawn raises.
**
** Children run under child_body, which pcalls the user's function; a
** child that raises (without having been aborted) records the first error,
** aborts its siblings, expires the body's scope or wakes the waiting
** owner, and re-raises so that its own status is "failed".  Its failure is
** marked observed: the scope reports it.  A child that was aborted (by the
** scope or by anyone) ends "cancelled", which is not a failure of the
** scope.  A child aborted before it started never runs child_body; the
** owner learns of its end through the joiners list like any other.
*/
#include <stdio.h>
#include <string.h>

#include "sync.h"

#define SCOPE_MT "spindle.scope"

enum { BODY = 0, WAIT, DRAIN, CLOSED };

/* User values: 1 the array of child handles, 2 the first error, 3 the
** marker.  The userdata sits at stack index 1 of the owner's frame while
** the scope is open, which keeps tsc alive while it is linked. */
typedef struct sp_scope {
  sp_tscope tsc;  /* fail-fast: "expires" when a child fails */
  sp_task *owner;
  sp_task *joined; /* the child whose joiners list the owner waits in */
  int nchildren;
  int scan;        /* children before this index (1-based) have ended */
  int failed;      /* the first error is recorded */
  int phase;
  int saved_shield;
} sp_scope;

static sp_scope *check_scope(lua_State *L, int idx) {
  return (sp_scope *)luaL_checkudata(L, idx, SCOPE_MT);
}

/* Records the value at idx as the first error, unless there is one.  The
** scope userdata is at sidx.  [-0, +0, -] */
static void record_error(lua_State *L, sp_scope *s, int sidx, int idx) {
  if (s->failed) return;
  idx = lua_absindex(L, idx);
  s->failed = 1;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, sidx, 2);
}

/* Aborts every unfinished child but `except`.  [-0, +0, m] */
static void abort_children(lua_State *L, sp_scope *s, int sidx,
                           sp_task *except) {
  int i;
  lua_getiuservalue(L, sidx, 1);
  for (i = s->scan > 0 ? s->scan : 1; i <= s->nchildren; i++) {
    sp_task *c = (sp_task *)(lua_rawgeti(L, -1, i), lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (c != except && !sp_task_finished(c)) sp_task_abort(L, c);
  }
  lua_pop(L, 1);
}

/* The first child that has not ended, or NULL.  [-0, +0, -] */
static sp_task *first_unfinished(lua_State *L, sp_scope *s, int sidx) {
  sp_task *found = NULL;
  if (s->scan < 1) s->scan = 1;
  lua_getiuservalue(L, sidx, 1);
  for (; s->scan <= s->nchildren; s->scan++) {
    sp_task *c =
        (sp_task *)(lua_rawgeti(L, -1, s->scan), lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (!sp_task_finished(c)) {
      found = c;
      break;
    }
  }
  lua_pop(L, 1);
  return found;
}

/* Pushes the owner's pending cancellation (its abort, else the outermost
** expired timeout it may receive now) and returns 1, or returns 0.
** Mirrors sp_check_cancel without raising.  [-0, +(0|1), -] */
static int pending_cancel(lua_State *L, sp_task *t) {
  sp_tscope *sc, *hit = NULL;
  if (t->cancel && t->shield == 0) {
    sp_push_cancel_error(L);
    return 1;
  }
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->expired && sc->shield >= t->shield) hit = sc;
  if (hit == NULL) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, hit);
  return 1;
}

/* The owner is aborted while its body runs: abort the children first.
** The scope userdata is found at registry[&s->owner] while the body runs.
** [-0, +0, m] */
static void on_owner_abort(lua_State *L, sp_tscope *sc) {
  sp_scope *s = (sp_scope *)sc; /* tsc is the first member */
  if (s->phase != BODY) return;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &s->owner) == LUA_TUSERDATA)
    abort_children(L, s, lua_gettop(L), NULL);
  lua_pop(L, 1);
}

/* Unlinks the fail-fast scope from the owner.  [-0, +0, -] */
static void close_body_scope(lua_State *L, sp_scope *s) {
  sp_tscope *sc = &s->tsc, **p;
  sp_task *t = sc->task;
  if (!sc->open) return;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &s->owner);
  for (p = &t->scopes; *p != NULL; p = &(*p)->outer)
    if (*p == sc) {
      *p = sc->outer;
      break;
    }
  if (sc->expired) t->nexpired--;
  sc->open = 0;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, sc);
}

static void scope_undo(sp_task *t) {
  sp_scope *s = (sp_scope *)t->u.w.obj;
  sp_wlist_remove(&s->joined->joiners, t);
  s->joined = NULL;
}

static void describe_scope(sp_task *t, char *buf, size_t size) {
  sp_scope *s = (sp_scope *)t->u.w.obj;
  if (s->joined != NULL)
    snprintf(buf, size, "scope %s (join task %lld)",
             s->phase == DRAIN ? "unwinding" : "wait",
             (long long)s->joined->id);
  else
    snprintf(buf, size, "scope wait");
}

/* Starts draining: the first error is recorded (or is on the way). */
static void start_drain(lua_State *L, sp_scope *s) {
  s->phase = DRAIN;
  abort_children(L, s, 1, NULL);
}

static int scope_k(lua_State *L, int status, lua_KContext ctx);

/* The owner's side after the body: wait for the children.  Stack: [S,
** msgh, results...] or, when failed, anything above S.  [-?, +?, e] */
static int wait_children(lua_State *L, sp_scope *s) {
  sp_task *t = s->owner, *c;
  for (;;) {
    if (s->phase == WAIT && s->failed) start_drain(L, s);
    if ((c = first_unfinished(L, s, 1)) == NULL) break;
    if (s->phase == WAIT && pending_cancel(L, t)) {
      record_error(L, s, 1, -1);
      lua_pop(L, 1);
      start_drain(L, s);
      continue;
    }
    t->wkind = SP_W_SCOPE;
    t->undo = scope_undo;
    t->u.w.obj = s;
    s->joined = c;
    sp_wlist_push(&c->joiners, t);
    if (s->phase == DRAIN) { /* the children unwind whatever happens */
      s->saved_shield = t->shield;
      t->shield++;
    }
    t->state = SP_T_WAITING;
    return sp_await_yield(L, t, scope_k, (lua_KContext)s);
  }
  s->phase = CLOSED;
  if (s->failed) {
    lua_getiuservalue(L, 1, 2);
    return lua_error(L);
  }
  return lua_gettop(L) - 2;
}

static int scope_k(lua_State *L, int status, lua_KContext ctx) {
  sp_scope *s = (sp_scope *)ctx;
  sp_task *t = s->owner;
  (void)status;
  if (s->phase == DRAIN) t->shield = (unsigned short)s->saved_shield;
  if (t->rt == NULL || t->rt->current != t || t->co != L)
    luaL_error(L, "spindle: a task's coroutine was resumed from outside "
                  "the scheduler");
  s->joined = NULL;
  if (t->wake == SP_WAKE_INTERRUPT) { /* abort or outer timeout */
    t->wake = SP_WAKE_OK;
    if (s->phase == WAIT && pending_cancel(L, t)) {
      record_error(L, s, 1, -1);
      lua_pop(L, 1);
      start_drain(L, s);
    }
  }
  return wait_children(L, s);
}

/* The body has returned or raised.  Stack [S, msgh, results... | err]. */
static int body_k(lua_State *L, int status, lua_KContext ctx) {
  sp_scope *s = (sp_scope *)ctx;
  close_body_scope(L, s);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_getiuservalue(L, 1, 3);
    if (!lua_rawequal(L, -1, -2)) record_error(L, s, 1, -2);
    lua_settop(L, 1);
    s->failed = 1; /* the marker is only raised after a failure */
    start_drain(L, s);
  } else
    s->phase = WAIT;
  return wait_children(L, s);
}

/* spindle.scope(fn) */
static int l_scope(lua_State *L) {
  sp_task *t;
  sp_scope *s;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  t = sp_await_check(L, "spindle.scope");
  s = lua_newuserdatauv(L, sizeof *s, 3); /* [fn, S] */
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SCOPE_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lua_newuserdatauv(L, 0, 0); /* the marker: a cancellation error */
  luaL_setmetatable(L, SP_CANCEL_MT);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, 3);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &s->tsc);
  s->owner = t;
  s->phase = BODY;
  s->tsc.timer.index = -1; /* never armed */
  s->tsc.timer.kind = SP_TM_TIMEOUT;
  s->tsc.task = t;
  s->tsc.shield = t->shield;
  s->tsc.outer = t->scopes;
  s->tsc.open = 1;
  s->tsc.on_abort = on_owner_abort;
  t->scopes = &s->tsc;
  lua_pushvalue(L, -1); /* [fn, S, S]: found by on_owner_abort */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &s->owner);
  lua_insert(L, 1); /* [S, fn] */
  lua_pushcfunction(L, sp_msgh);
  lua_insert(L, 2); /* [S, msgh, fn] */
  lua_pushvalue(L, 1);
  return body_k(L,
                lua_pcallk(L, 1, LUA_MULTRET, 2, (lua_KContext)s, body_k),
                (lua_KContext)s);
}

/* ---- children -------------------------------------------------------- */

/* A child failed: first error, siblings aborted, owner told.  S at sidx,
** the error on top.  [-0, +0, m] */
static void child_failed(lua_State *L, sp_scope *s, int sidx, sp_task *me) {
  sp_task *o = s->owner;
  if (s->failed || s->phase == CLOSED) return;
  record_error(L, s, sidx, -1);
  abort_children(L, s, sidx, me);
  if (s->tsc.open)
    sp_tscope_fire(o->rt, &s->tsc); /* interrupts the body if it waits */
  else if (s->phase == WAIT && o->state == SP_T_WAITING &&
           o->wkind == SP_W_SCOPE && o->u.w.obj == s) {
    sp_wlist_remove(&s->joined->joiners, o);
    s->joined = NULL;
    o->undo = NULL;
    sp_wake(o, SP_WAKE_OK);
  }
}

/* Stack [S, msgh, results... | err] */
static int child_k(lua_State *L, int status, lua_KContext ctx) {
  sp_runtime *rt;
  sp_task *me;
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L) - 2;
  rt = sp_box_of(L)->cur;
  me = rt ? rt->current : NULL;
  if (me != NULL && me->co == L && !me->cancel) {
    me->observed = 1; /* the scope reports it */
    child_failed(L, (sp_scope *)lua_touserdata(L, 1), 1, me);
  }
  return lua_error(L);
}

/* The body of every child: [S, f, args...] */
static int child_body(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushcfunction(L, sp_msgh);
  lua_insert(L, 2);
  return child_k(L, lua_pcallk(L, n - 2, LUA_MULTRET, 2, 0, child_k), 0);
}

/* s:spawn(f, ...) -> handle */
static int scope_spawn(lua_State *L) {
  sp_scope *s = check_scope(L, 1);
  sp_runtime *rt = sp_box_of(L)->cur;
  sp_task *c;
  int n;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (s->phase == CLOSED) luaL_error(L, "spawn: the scope has ended");
  if (rt == NULL || rt != s->owner->rt)
    luaL_error(L, "spawn: not inside the scope's runtime");
  n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, child_body, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 2, 2); /* [S, child_body, S, f, args...] */
  c = sp_spawn(L, rt, n);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, ++s->nchildren);
  lua_pop(L, 1);
  if (s->failed) sp_task_abort(L, c); /* a failing scope starts nothing */
  return 1;
}

static int scope_tostring(lua_State *L) {
  static const char *const phases[] = {"running", "waiting for children",
                                       "unwinding", "ended"};
  sp_scope *s = check_scope(L, 1);
  lua_pushfstring(L, "spindle.scope (%d children, %s)", s->nchildren,
                  phases[s->phase]);
  return 1;
}

/* Adds spindle.scope to the module table at -1.  [-0, +0, m] */
int sp_scope_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"spawn", scope_spawn}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"scope", l_scope}, {NULL, NULL}};
  luaL_newmetatable(L, SCOPE_MT);
  lua_newtable(L);
  sp_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, scope_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  sp_describe_register(SP_W_SCOPE, describe_scope);
  sp_setfuncs(L, fns);
  return 0;
}
