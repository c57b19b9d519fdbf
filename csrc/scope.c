/*
** scope.c -- spindle.scope (structured concurrency), and the watch sets
** that spindle.join_all and spindle.race are built on (docs/structured.md).
**
** spindle.scope(fn) runs fn(s) in the calling task (the owner); s:spawn
** starts children bound to the scope.  The scope ends when fn has returned
** and every child has ended.  Every child carries a finish hook (in a small
** link userdata kept in the scope's children table), so the scope learns
** of each end without anybody polling, and keeps its unfinished children
** in a C list in spawn order.
**
** Phases of a scope (s->phase):
**   BODY   fn is running.  A fail-fast cancellation scope is open on the
**          owner: an sp_tscope without a timer, linked into t->scopes like
**          a spindle.timeout, whose error value is a private cancellation
**          error (the marker).  When a child fails, the scope "expires":
**          the body's current (or next) await raises the marker, level-
**          triggered, exactly like an expired timeout.
**   WAIT   fn returned; the owner waits once until no child is left (the
**          last child's finish hook wakes it).  A failing child wakes it
**          early; an abort of the owner (or an outer timeout) interrupts
**          the wait.
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
** scope.
**
** Watch sets (spindle._watch(handles)): one finish hook per unfinished
** handle, all in one userdata; w:next() waits for the next handle to end
** and returns its index (handles that had already ended come first, in
** index order), nil once every one has been returned.  No helper task, no
** channel: a task waiting in w:next() is woken by the hook itself.
*/
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define SCOPE_MT "spindle.scope"

enum { BODY = 0, WAIT, DRAIN, CLOSED };

typedef struct scope_link scope_link;

/* User values: 1 the array of child links, 2 the first error, 3 the
** marker, 4 the traceback of the first error when a child raised it.  The userdata sits at stack index 1 of the owner's frame while
** the scope is open, which keeps tsc alive while it is linked. */
typedef struct sp_scope {
  sp_tscope tsc; /* fail-fast: "expires" when a child fails */
  sp_task *owner;
  scope_link *live; /* unfinished children, spawn order (circular) */
  scope_link *lost; /* a child that failed before its code ran (memory):
                       child_body never saw it; the owner takes it */
  int nchildren;
  int nlive;
  int failed; /* the first error is recorded */
  int phase;
  int saved_shield;
} sp_scope;

/* One per child: its finish hook.  User value 1 is the child's handle. */
struct scope_link {
  sp_fhook hook;
  sp_scope *s;
  sp_task *child; /* NULL if spawning it failed */
  int idx;        /* in the children table */
  scope_link *next, *prev;
};

#define LINK_MT "spindle.scope.link"

/* Records the value at idx as the first error, unless there is one.  The
** scope userdata is at sidx.  [-0, +0, -] */
static void record_error(lua_State *L, sp_scope *s, int sidx, int idx) {
  if (s->failed) return;
  idx = lua_absindex(L, idx);
  s->failed = 1;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, sidx, 2);
}

/* Aborts every unfinished child but `except`, in spawn order.  The scope
** userdata is at sidx.  [-0, +0, m] */
static void abort_children(lua_State *L, sp_scope *s, int sidx,
                           sp_task *except) {
  int i;
  sidx = lua_absindex(L, sidx);
  lua_getiuservalue(L, sidx, 1);
  for (i = 1; i <= s->nchildren && s->nlive > 0; i++) {
    scope_link *k =
        (scope_link *)(lua_rawgeti(L, -1, i), lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (k != NULL && k->child != NULL && k->child != except &&
        !sp_task_finished(k->child))
      sp_task_abort(L, k->child);
  }
  lua_pop(L, 1);
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
    abort_children(L, s, -1, NULL);
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
  sc->open = 0;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, sc);
}

/* ---- the owner's wait ------------------------------------------------- */

static void describe_scope(sp_task *t, char *buf, size_t size) {
  sp_scope *s = (sp_scope *)t->w.obj;
  if (s->live != NULL)
    snprintf(buf, size, "scope %s (join task %lld)",
             s->phase == DRAIN ? "unwinding" : "wait",
             (long long)s->live->child->id);
  else
    snprintf(buf, size, "scope wait");
}

/* Nothing to detach: the owner is woken by the children's hooks, which
** check that it still waits on this scope. */
static const sp_waitops scope_wait = {"scope wait", NULL, describe_scope};

static int owner_waits(sp_scope *s) {
  sp_task *o = s->owner;
  return o->state == SP_T_WAITING && o->wait == &scope_wait && o->w.obj == s;
}

/* A child ended (its finish hook): unlink it; the last one wakes the
** owner if it waits.  C only. */
static void child_ended(sp_fhook *h, sp_task *child) {
  scope_link *k = sp_container_of(h, scope_link, hook);
  sp_scope *s = k->s;
  (void)child;
  if (k->next == k)
    s->live = NULL;
  else {
    k->prev->next = k->next;
    k->next->prev = k->prev;
    if (s->live == k) s->live = k->next;
  }
  k->next = k->prev = NULL;
  --s->nlive;
  if (child->state == SP_T_FAILED && !child->observed && !s->failed &&
      s->lost == NULL && s->phase != CLOSED) {
    /* it failed where child_body could not see it (a memory error before
    ** the child's function ran): the owner records it (take_lost) */
    s->lost = k;
    if (s->tsc.open)
      sp_tscope_fire(s->owner->rt, &s->tsc); /* interrupts a waiting body */
    else if (owner_waits(s))
      sp_wake(s->owner, SP_WAKE_OK);
    return;
  }
  if (s->nlive == 0 && owner_waits(s)) sp_wake(s->owner, SP_WAKE_OK);
}

/* The owner records the failure of a child lost to child_body, as
** child_failed would have.  S at 1.  [-0, +0, m] */
static void take_lost(lua_State *L, sp_scope *s) {
  scope_link *k = s->lost;
  int top = lua_gettop(L);
  if (k == NULL) return;
  s->lost = NULL;
  if (s->failed) return;
  k->child->observed = 1; /* the scope reports it */
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, k->idx);  /* the link */
  lua_getiuservalue(L, -1, 1); /* the child's handle */
  sp_task_push_error(L, -1, k->child);
  record_error(L, s, 1, -1);
  sp_task_push_traceback(L, top + 3, k->child);
  lua_setiuservalue(L, 1, 4);
  lua_settop(L, top);
}

/* A link has no __gc: it is freed only once its child has ended (the
** children table keeps it until the scope ends, and a scope ends after its
** children), or at lua_close, when nothing runs any more. */

/* Starts draining: the first error is recorded (or is on the way). */
static void start_drain(lua_State *L, sp_scope *s) {
  s->phase = DRAIN;
  abort_children(L, s, 1, NULL);
}

static int scope_k(lua_State *L, int status, lua_KContext ctx);

/* The owner's side after the body: wait for the children.  Stack: [S,
** msgh, results...] or, when failed, anything above S.  [-?, +?, e] */
static int wait_children(lua_State *L, sp_scope *s) {
  sp_task *t = s->owner;
  for (;;) {
    take_lost(L, s);
    if (s->phase == WAIT && s->failed) start_drain(L, s);
    if (s->nlive == 0) break;
    if (s->phase == WAIT && pending_cancel(L, t)) {
      record_error(L, s, 1, -1);
      lua_pop(L, 1);
      start_drain(L, s);
      continue;
    }
    if (s->phase == DRAIN) { /* the children unwind whatever happens */
      s->saved_shield = t->shield;
      t->shield++;
    }
    return sp_await_block(L, t, &scope_wait, s, scope_k, (lua_KContext)s);
  }
  s->phase = CLOSED;
  if (s->failed) {
    lua_getiuservalue(L, 1, 2);
    lua_getiuservalue(L, 1, 4); /* a child's traceback, or nil */
    sp_reraise_traceback(L, -2, "(raised again by spindle.scope)");
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
  take_lost(L, s);
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
  s = lua_newuserdatauv(L, sizeof *s, 4); /* [fn, S] */
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
  sp_timer_init(&s->tsc.timer, NULL); /* never armed */
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
  return body_k(L, lua_pcallk(L, 1, LUA_MULTRET, 2, (lua_KContext)s, body_k),
                (lua_KContext)s);
}

/* ---- children -------------------------------------------------------- */

/* A child failed: first error, siblings aborted, owner told.  S at sidx,
** the error on top.  [-0, +0, m] */
static void child_failed(lua_State *L, sp_scope *s, int sidx, sp_task *me) {
  if (s->failed || s->phase == CLOSED) return;
  record_error(L, s, sidx, -1);
  sp_stashed_traceback(L, -1); /* the child's, from its message handler */
  lua_setiuservalue(L, sidx, 4);
  abort_children(L, s, sidx, me);
  if (s->tsc.open)
    sp_tscope_fire(s->owner->rt, &s->tsc); /* interrupts a waiting body */
  else if (s->phase == WAIT && owner_waits(s))
    sp_wake(s->owner, SP_WAKE_OK);
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

/* s:spawn(f, ...) -> handle.  Everything that may fail for lack of memory
** comes before the child is counted: the link is made and stored first,
** then the child spawned; a link whose spawn failed stays empty. */
static int scope_spawn(lua_State *L) {
  sp_scope *s = (sp_scope *)sp_checkclass(L, 1, SCOPE_MT);
  sp_runtime *rt = sp_box_of(L)->cur;
  scope_link *k;
  sp_task *c;
  int n;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (s->phase == CLOSED) luaL_error(L, "spawn: the scope has ended");
  if (rt == NULL || rt != s->owner->rt)
    luaL_error(L, "spawn: not inside the scope's runtime");
  n = lua_gettop(L);
  k = lua_newuserdatauv(L, sizeof *k, 1);
  memset(k, 0, sizeof *k);
  k->s = s;
  luaL_setmetatable(L, LINK_MT);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, s->nchildren + 1);
  s->nchildren++;
  k->idx = s->nchildren;
  lua_pop(L, 2); /* the table keeps the link */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, child_body, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 2, 2);    /* [S, child_body, S, f, args...] */
  c = sp_spawn(L, rt, n); /* [S, handle] */
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, s->nchildren); /* the link made above */
  k = (scope_link *)lua_touserdata(L, -1);
  lua_pushvalue(L, -3);
  lua_setiuservalue(L, -2, 1); /* the link keeps the handle */
  lua_pop(L, 2);
  k->child = c;
  if (!sp_task_finished(c)) { /* one spawned during shutdown has ended */
    sp_fhook_add(c, &k->hook, child_ended);
    if (s->live == NULL)
      s->live = k->next = k->prev = k;
    else {
      k->next = s->live;
      k->prev = s->live->prev;
      s->live->prev->next = k;
      s->live->prev = k;
    }
    s->nlive++;
  }
  if (s->failed) sp_task_abort(L, c); /* a failing scope starts nothing */
  return 1;
}

static int scope_tostring(lua_State *L) {
  static const char *const phases[] = {"running", "waiting for children",
                                       "unwinding", "ended"};
  sp_scope *s = (sp_scope *)sp_checkclass(L, 1, SCOPE_MT);
  lua_pushfstring(L, "spindle.scope (%d children, %s)", s->nchildren,
                  phases[s->phase]);
  return 1;
}

/* ---- watch sets: spindle._watch(handles) ------------------------------- */

#define WATCH_MT "spindle.watch"

typedef struct watch_ent {
  sp_fhook hook;
  sp_task *t;
  struct sp_watch *w;
  int idx;
} watch_ent;

typedef struct sp_watch {
  sp_task *waiter; /* the task in w:next(), NULL if none */
  int n;           /* handles */
  int head, tail;  /* ended, not yet returned: done[head..tail) */
  int *done;       /* indices in the order they ended (after ent) */
  watch_ent ent[1];
} sp_watch;

static void watch_hook(sp_fhook *h, sp_task *finished) {
  watch_ent *e = sp_container_of(h, watch_ent, hook);
  sp_watch *w = e->w;
  (void)finished;
  w->done[w->tail++] = e->idx;
  if (w->waiter != NULL && w->waiter->state == SP_T_WAITING) {
    sp_task *t = w->waiter;
    w->waiter = NULL;
    sp_wake(t, SP_WAKE_OK);
  }
}

static void watch_undo(sp_task *t) {
  sp_watch *w = (sp_watch *)t->w.obj;
  if (w->waiter == t) w->waiter = NULL;
}

static const sp_waitops watch_wait = {"join", watch_undo, NULL};

/* Unhooks every entry still linked.  [-0, +0, -] */
static void watch_release(sp_watch *w) {
  int i;
  for (i = 0; i < w->n; i++)
    if (w->ent[i].hook.next != NULL)
      sp_fhook_remove(w->ent[i].t, &w->ent[i].hook);
  w->waiter = NULL;
}

static int watch_close(lua_State *L) {
  watch_release((sp_watch *)sp_checkclass(L, 1, WATCH_MT));
  return 0;
}

static int watch_gc(lua_State *L) {
  sp_watch *w = (sp_watch *)sp_testclass(L, 1, WATCH_MT);
  if (w != NULL) watch_release(w);
  return 0;
}

/* Pushes the next index, or nil when all have been returned. */
static int watch_pop(lua_State *L, sp_watch *w) {
  if (w->head < w->tail)
    lua_pushinteger(L, w->done[w->head++]);
  else
    lua_pushnil(L);
  return 1;
}

static int watch_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  (void)status;
  sp_resumed(L, t);
  return watch_pop(L, (sp_watch *)lua_touserdata(L, 1));
}

/* w:next() -> index of the next handle to end, or nil */
static int watch_next(lua_State *L) {
  sp_watch *w = (sp_watch *)sp_checkclass(L, 1, WATCH_MT);
  sp_task *t = sp_await_check(L, "join");
  lua_settop(L, 1);
  if (w->head < w->tail || w->head == w->n)
    return sp_await_fast(L, t, watch_k, (lua_KContext)t);
  if (w->waiter != NULL) luaL_error(L, "join: watch set busy");
  w->waiter = t;
  return sp_await_block(L, t, &watch_wait, w, watch_k, (lua_KContext)t);
}

/* spindle._watch(handles) -> w.  handles: an array of task handles (the
** caller has checked them).  Those already ended come first, in index
** order.  [-0, +1, m] */
static int l_watch(lua_State *L) {
  lua_Integer n, i;
  sp_watch *w;
  size_t size;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1 << 24, 1, "too many handles");
  size = sizeof *w + (size_t)(n > 0 ? n - 1 : 0) * sizeof(watch_ent) +
         (size_t)n * sizeof(int);
  w = lua_newuserdatauv(L, size, 1);
  memset(w, 0, size);
  w->done = (int *)(void *)&w->ent[n > 0 ? n : 1];
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* keeps the handles alive */
  for (i = 1; i <= n; i++) {   /* check first: no hook is added on error */
    lua_rawgeti(L, 1, i);
    w->ent[i - 1].t = sp_task_check(L, -1);
    lua_pop(L, 1);
  }
  w->n = (int)n;
  luaL_setmetatable(L, WATCH_MT);
  for (i = 0; i < n; i++) {
    watch_ent *e = &w->ent[i];
    e->w = w;
    e->idx = (int)i + 1;
    if (sp_task_finished(e->t)) w->done[w->tail++] = e->idx;
  }
  for (i = 0; i < n; i++) {
    watch_ent *e = &w->ent[i];
    if (!sp_task_finished(e->t) && e->hook.next == NULL)
      sp_fhook_add(e->t, &e->hook, watch_hook);
  }
  return 1;
}

/* Adds spindle.scope and spindle._watch to the module table at -1.
** [-0, +0, m] */
int sp_scope_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"spawn", scope_spawn}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", scope_tostring}, {NULL, NULL}};
  static const luaL_Reg watch_methods[] = {
      {"next", watch_next}, {"close", watch_close}, {NULL, NULL}};
  static const luaL_Reg watch_meta[] = {
      {"__close", watch_close}, {"__gc", watch_gc}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"scope", l_scope}, {"_watch", l_watch}, {NULL, NULL}};
  sp_newclass(L, SCOPE_MT, methods, meta);
  sp_newclass(L, LINK_MT, NULL, NULL);
  sp_newclass(L, WATCH_MT, watch_methods, watch_meta);
  lua_pop(L, 3);
  sp_setfuncs(L, fns);
  return 0;
}
