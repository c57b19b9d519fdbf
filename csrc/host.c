/*
** host.c -- awaits for hosts: spindle.next_step() and spindle.await().
**
** next_step: a task waits in rt->next_step until the host's next step
** begins (rt:step, spindle_step; in rt:run and spindle.run every turn of
** the loop is a step).  The waiters present when a step begins are woken
** together; a task that calls next_step during that step waits for the
** following one.
**
** await(fn, ...): calls fn(..., callback) and returns what the callback
** is called with -- at once if fn called it before returning, else when
** it is called later (from a luv callback, say).  The state shared by the
** task and the callback is a small userdata (an upvalue of the callback):
** the callback copies its arguments into the userdata's table and wakes
** the task.  Only the first call counts; calls after the first, or after
** the waiting task was aborted, are ignored.
*/
#include <stdio.h>

#include "internal.h"

/* ---- next_step -------------------------------------------------------- */

static void next_step_undo(sp_task *t) {
  sp_wlist_remove(&t->rt->next_step, t);
}

static const sp_waitops next_step_wait = {"next step", next_step_undo, NULL};

void sp_host_step_begins(sp_runtime *rt) {
  sp_task *last, *t;
  if (rt->next_step.head == NULL) return;
  last = rt->next_step.head->w.prev; /* waiters from before this step */
  do {
    t = rt->next_step.head;
    sp_wlist_remove(&rt->next_step, t);
    sp_wake(t, SP_WAKE_OK);
  } while (t != last);
}

static int next_step_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  return 0;
}

static int l_next_step(lua_State *L) {
  sp_task *t = sp_await_check(L, "spindle.next_step");
  sp_wlist_push(&t->rt->next_step, t);
  return sp_await_block(L, t, &next_step_wait, NULL, next_step_k,
                        (lua_KContext)t);
}

/* ---- await ------------------------------------------------------------ */

#define AWAIT_MT "spindle.await"

typedef struct await_box {
  sp_task *task; /* the waiting task, NULL when nobody waits */
  int called;    /* the callback has run */
  int nargs;     /* how many arguments it got (in the user value) */
} await_box;

/* The callback handed to fn: upvalue 1 is the await_box. */
static int await_callback(lua_State *L) {
  await_box *b = (await_box *)lua_touserdata(L, lua_upvalueindex(1));
  int i, n = lua_gettop(L);
  if (b->called) return 0;
  b->called = 1;
  b->nargs = n;
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_setiuservalue(L, lua_upvalueindex(1), 1);
  if (b->task != NULL) {
    sp_task *t = b->task;
    b->task = NULL;
    sp_wake(t, SP_WAKE_OK);
  }
  return 0;
}

static void await_undo(sp_task *t) {
  await_box *b = (await_box *)t->w.obj;
  b->task = NULL; /* a later call finds nobody and is ignored */
}

static const sp_waitops await_wait = {"await callback", await_undo, NULL};

/* [box, ...] -> the callback's arguments */
static int await_results(lua_State *L) {
  await_box *b = (await_box *)lua_touserdata(L, 1);
  int i;
  lua_settop(L, 1);
  luaL_checkstack(L, b->nargs, "spindle.await: too many results");
  lua_getiuservalue(L, 1, 1);
  for (i = 1; i <= b->nargs; i++) lua_rawgeti(L, 2, i);
  return b->nargs;
}

static int await_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  return await_results(L);
}

/* After fn returned (its results are dropped): wait for the callback. */
static int await_fn_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  await_box *b = (await_box *)lua_touserdata(L, 1);
  (void)status;
  if (b->called) return sp_await_fast(L, t, await_wait_k, ctx);
  sp_check_cancel(L, t); /* fn may have swallowed a cancellation */
  b->task = t;
  return sp_await_block(L, t, &await_wait, b, await_wait_k, ctx);
}

static int l_await(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  await_box *b;
  sp_task *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  t = sp_await_check(L, "spindle.await");
  b = (await_box *)lua_newuserdatauv(L, sizeof *b, 1);
  b->task = NULL;
  b->called = 0;
  b->nargs = 0;
  luaL_setmetatable(L, AWAIT_MT);
  lua_insert(L, 1); /* [box, fn, args...] */
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, await_callback, 1);
  lua_callk(L, nargs + 1, 0, (lua_KContext)t, await_fn_k);
  return await_fn_k(L, LUA_OK, (lua_KContext)t);
}

int sp_host_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"next_step", l_next_step}, {"await", l_await}, {NULL, NULL}};
  sp_newclass(L, AWAIT_MT, NULL, NULL);
  lua_pop(L, 1);
  sp_setfuncs(L, fns);
  return 0;
}
