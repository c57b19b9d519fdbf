/*
** wait.c -- the await protocol shared by every await (sleep, join, read...).
**
** An await is a C function that
**   1. checks its arguments, then sp_await_check(): inside a task, in the
**      task's own coroutine, able to yield, and not cancelled (an abort or
**      an expired timeout raises at once: cancellation is level-triggered);
**   2. completes at once when it can (sp_await_fast, which still yields
**      after SP_FAST_BUDGET immediate completions in a row);
**   3. otherwise records the wait -- its const sp_waitops record (name,
**      undo, describe) and the object waited on -- sets the task WAITING
**      and yields with a continuation (sp_await_block).
** The continuation first calls sp_resumed(): if the task was interrupted
** (abort or timeout), the wait has already been undone and the error is
** raised here, inside the task, so pcall, <close> and error handlers run
** exactly as for any other error.
*/
#include <math.h>
#include <stdio.h>

#include "internal.h"

static const char cancel_key =
    0; /* registry: the cancellation error singleton */
static const char tbstash_key =
    0; /* registry: weak {[thread] = {err, traceback}} */

/* The traceback stash is keyed by the thread object itself, weakly, so an
** entry lives no longer than the coroutine it describes (an error caught
** by the task's own pcall is not retained past the task), and sp_finish
** clears it when a task ends. */

/* [-0, +1, -] */
void sp_push_cancel_error(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cancel_key);
}

/* The outermost expired timeout of t opened at the current shield depth:
** the one an await raises now.  NULL if none. */
static sp_tscope *expired_scope(sp_task *t) {
  sp_tscope *sc, *hit = NULL;
  if (t->scopes == NULL) return NULL;
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->expired && sc->shield >= t->shield) hit = sc;
  return hit;
}

int sp_cancel_pending(sp_task *t) {
  return (t->cancel && t->shield == 0) || expired_scope(t) != NULL;
}

/* Raises the pending cancellation of t, if any can be delivered now: an
** abort (unless shielded), else the outermost expired timeout opened at
** the current shield depth.  [-0, +(0|1), v] */
void sp_check_cancel(lua_State *L, sp_task *t) {
  sp_tscope *sc;
  if (t->cancel && t->shield == 0) {
    sp_push_cancel_error(L);
    lua_error(L);
  }
  if ((sc = expired_scope(t)) != NULL) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, sc);
    lua_error(L);
  }
}

/* Continuation of the yield above: raise what is pending (an expired
** timeout may be pending without being deliverable behind a shield). */
static int raise_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  (void)status;
  sp_resumed(L, t);
  sp_check_cancel(L, t);
  return 0;
}

sp_task *sp_await_check(lua_State *L, const char *name) {
  sp_runtime *rt = sp_box_of(L)->cur;
  sp_task *t = rt ? rt->current : NULL;
  if (t == NULL) luaL_error(L, "%s: not inside a task", name);
  if (t->co != L)
    luaL_error(L,
               "%s: cannot await inside a nested coroutine (one created "
               "by the task with coroutine.create/wrap); await from the "
               "task's own code",
               name);
  if (!lua_isyieldable(L))
    luaL_error(L,
               "%s: cannot await here: a C function is in the way "
               "(attempt to yield across a C-call boundary, e.g. inside "
               "table.sort, string.gsub, require or __tostring)",
               name);
  if (sp_cancel_pending(t)) {
    /* A task that keeps swallowing its cancellation would raise here
    ** forever without yielding; it still yields every SP_FAST_BUDGET
    ** raises, so it cannot freeze the other tasks. */
    if (++t->fast >= SP_FAST_BUDGET) {
      t->state = SP_T_READY;
      sp_await_yield(L, t, raise_k, (lua_KContext)t);
    }
    sp_check_cancel(L, t);
  }
  return t;
}

/* First thing in every continuation.  A task's coroutine can be reached
** with coroutine.running(); resuming it by hand instead of through the
** scheduler is refused here.  [-0, +0, v] */
void sp_resumed(lua_State *L, sp_task *t) {
  sp_runtime *rt = t->rt;
  if (rt == NULL || rt->current != t || t->co != L)
    luaL_error(L, "spindle: a task's coroutine was resumed from outside "
                  "the scheduler");
  if (t->wake == SP_WAKE_INTERRUPT) {
    t->wake = SP_WAKE_OK;
    sp_check_cancel(L, t);
    sp_push_cancel_error(L); /* unreachable: an interrupt always has a */
    lua_error(L);            /* reason that can be delivered */
  }
}

/* The caller has set t->state (WAITING with t->wait, or READY to be
** requeued). */
int sp_await_yield(lua_State *L, sp_task *t, lua_KFunction k,
                   lua_KContext ctx) {
  t->fast = 0;
  return lua_yieldk(L, 0, ctx, k);
}

/* Suspends t at an await: it waits for `obj`, as ops says (dump reads
** its name and description, abort runs its undo).  [-0, +0, y] */
static void wait_for(sp_task *t, const sp_waitops *ops, void *obj) {
  t->wait = ops;
  t->w.obj = obj;
  t->state = SP_T_WAITING;
}

int sp_await_block(lua_State *L, sp_task *t, const sp_waitops *ops, void *obj,
                   lua_KFunction k, lua_KContext ctx) {
  wait_for(t, ops, obj);
  return sp_await_yield(L, t, k, ctx);
}

void sp_await_park(sp_task *t, const sp_waitops *ops, void *obj) {
  wait_for(t, ops, obj);
  t->fast = 0;
  t->parked = 1;
}

int sp_await_fast(lua_State *L, sp_task *t, lua_KFunction k, lua_KContext ctx) {
  if (++t->fast >= SP_FAST_BUDGET) {
    t->state = SP_T_READY;
    return sp_await_yield(L, t, k, ctx);
  }
  return k(L, LUA_OK, ctx);
}

/* A duration argument: a number, >= 0, finite, at most SP_MAX_SECONDS. */
double sp_check_seconds(lua_State *L, int arg) {
  lua_Number s;
  if (lua_type(L, arg) != LUA_TNUMBER) luaL_typeerror(L, arg, "number");
  s = lua_tonumber(L, arg);
  if (!(s >= 0)) luaL_argerror(L, arg, "non-negative number expected");
  if (s > SP_MAX_SECONDS)
    luaL_argerror(L, arg, "duration too large (at most 1e9 seconds)");
  return (double)s;
}

/* Message handler of the pcalls that run task bodies, timeouts and
** shields: records the traceback at the point of the error in a stash
** keyed by the thread, and returns the error unchanged (tables keep their
** identity).  A re-raise of the same value keeps the first traceback.
** Aborted tasks skip the work: their status will be "cancelled". */
int sp_msgh(lua_State *L) {
  sp_box *box = sp_box_get(L);
  sp_task *t = box->cur ? box->cur->current : NULL;
  if (t != NULL && t->cancel) return 1;
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tbstash_key); /* 2 */
  lua_pushthread(L);
  if (lua_rawget(L, 2) == LUA_TTABLE) { /* 3 */
    lua_rawgeti(L, 3, 1);
    if (lua_rawequal(L, 1, -1)) {
      lua_settop(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (lua_type(L, 1) == LUA_TSTRING)
    lua_pushvalue(L, 1);
  else if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    luaL_tolstring(L, 1, NULL);
  } else
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, lua_tostring(L, -1), 1); /* 4 */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_pushthread(L);
  lua_insert(L, -2);
  lua_rawset(L, 2);
  lua_settop(L, 1);
  if (t != NULL && t->co == L) t->stashed = 1; /* sp_finish forgets it */
  return 1;
}

/* Pushes the traceback stashed in this thread for the error at erridx,
** or nil; the stash keeps it.  [-0, +1, m] */
void sp_stashed_traceback(lua_State *L, int erridx) {
  erridx = lua_absindex(L, erridx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tbstash_key);
  lua_pushthread(L);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    if (lua_rawequal(L, -1, erridx)) {
      lua_rawgeti(L, -2, 2);
      lua_replace(L, -4);
      lua_pop(L, 2);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_pushnil(L);
}

/* The error at erridx is raised again in this thread (by join, by a
** scope) after it was raised in another task, whose traceback is the
** string on top (popped; nil: nothing to do).  The message handler will
** then report that traceback, followed by `what` and where it was raised
** again here, instead of only the latter.  [-1, +0, m] */
void sp_reraise_traceback(lua_State *L, int erridx, const char *what) {
  sp_box *box = sp_box_get(L);
  sp_task *t = box->cur ? box->cur->current : NULL;
  erridx = lua_absindex(L, erridx);
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushliteral(L, "\n");
  luaL_traceback(L, L, what, 1);
  lua_concat(L, 3); /* the whole story */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tbstash_key);
  lua_pushthread(L);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, erridx);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -4);
  lua_rawseti(L, -2, 2);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  if (t != NULL && t->co == L) t->stashed = 1;
}

/* Forgets the traceback recorded on co, if any.  [-0, +0, m] */
void sp_forget_traceback(lua_State *L, lua_State *co) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tbstash_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Pushes the traceback recorded on co for the error at idx, or nil, and
** forgets it.  [-0, +1, m] */
void sp_take_traceback(lua_State *co, int idx) {
  int top;
  idx = lua_absindex(co, idx);
  lua_rawgetp(co, LUA_REGISTRYINDEX, &tbstash_key);
  top = lua_gettop(co);
  lua_pushnil(co);
  lua_pushthread(co);
  if (lua_rawget(co, top) == LUA_TTABLE) {
    lua_rawgeti(co, top + 2, 1);
    if (lua_rawequal(co, -1, idx)) {
      lua_rawgeti(co, top + 2, 2);
      lua_replace(co, top + 1);
    }
    lua_pushthread(co);
    lua_pushnil(co);
    lua_rawset(co, top);
  }
  lua_settop(co, top + 1);
  lua_remove(co, top);
}

/* preemption and warn_blocking (the count hook): preempt.c */

/* ---- cancellation errors --------------------------------------------- */

/* Makes registry[key] a table with weak keys, unless it exists already.
** [-0, +0, m] */
void sp_weak_keys(lua_State *L, const void *key) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TNIL) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}

static int cancel_tostring(lua_State *L) {
  lua_pushliteral(L, "cancelled");
  return 1;
}

static int is_cancelled(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushboolean(L, luaL_testudata(L, 1, SP_CANCEL_MT) != NULL ||
                         luaL_testudata(L, 1, SP_TIMEOUT_MT) != NULL);
  return 1;
}

static int is_timeout(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushboolean(L, luaL_testudata(L, 1, SP_TIMEOUT_MT) != NULL);
  return 1;
}

/* Adds the functions to the module table at -1.  [-0, +0, m] */
int sp_wait_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"is_cancelled", is_cancelled}, {"is_timeout", is_timeout}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", cancel_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, SP_CANCEL_MT, NULL, meta);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cancel_key) == LUA_TNIL) {
    lua_newuserdatauv(L, 0, 0);
    luaL_setmetatable(L, SP_CANCEL_MT);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cancel_key);
  }
  lua_pop(L, 1);
  sp_weak_keys(L, &tbstash_key);
  sp_setfuncs(L, fns);
  return 0;
}
