/*
** runtime.c -- the runtime object: its loop, one turn of it, run, step and
** close.
**
** One turn:
**   run the tasks that are ready now, FIFO, one slice each;
**   fire due timers (each wakes its task);
**   poll libuv: without blocking if tasks are ready (or when stepping),
**     else until the earliest deadline or I/O -- the runtime's single
**     uv_timer_t is armed to that deadline only for this poll;
**   fire due timers again.
** libuv callbacks only record results and wake tasks.  A wake during a
** poll calls uv_stop(), so a timer that libuv runs before polling can
** never leave the poll blocked with nothing to wake it.
**
** With clock = "virtual" the clock stands still while anything can run;
** when no task is ready and no I/O can complete, it jumps to the earliest
** deadline.
*/
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char weak_key =
    0; /* registry: {[light rt] = runtime}, weak values */

sp_runtime *sp_runtime_check(lua_State *L, int idx) {
  return (sp_runtime *)sp_checkclass(L, idx, SP_RT_MT);
}

/* ---- what the runtime owns -------------------------------------------- */

void sp_own(sp_runtime *rt, sp_owned *o, void (*close)(sp_owned *)) {
  sp_owned *head = &rt->owned;
  o->close = close;
  o->next = head;
  o->prev = head->prev;
  head->prev->next = o;
  head->prev = o;
}

void sp_disown(sp_owned *o) {
  if (o->next == NULL) return;
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = NULL;
}

static void owned_init(sp_owned *head) {
  head->next = head->prev = head;
  head->close = NULL;
}

static int owned_empty(const sp_owned *head) { return head->next == head; }

/* A runtime with live tasks is kept alive by them: anchors[0] holds it
** from the first spawn until no task is left, so an idle runtime nobody
** references is collected (and its __gc closes it).  [-0, +0, m] */
void sp_runtime_pin(lua_State *L, sp_runtime *rt, int on) {
  sp_push_anchors(L, rt);
  if (on) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weak_key);
    lua_rawgetp(L, -1, rt);
    lua_remove(L, -2);
  } else
    lua_pushnil(L);
  lua_rawseti(L, -2, 0);
  lua_pop(L, 1);
}

static sp_runtime *check_open(lua_State *L, int idx) {
  sp_runtime *rt = sp_runtime_check(L, idx);
  if (rt->closed || rt->closing) luaL_error(L, "spindle: runtime is closed");
  return rt;
}

/* ---- entering and leaving: one runtime runs at a time per Lua state -- */

static void enter(lua_State *L, sp_runtime *rt, const char *name) {
  if (rt->box->cur != NULL) luaL_error(L, "%s: already inside a runtime", name);
  rt->box->cur = rt;
  (void)L;
}

static void leave(sp_runtime *rt) {
  rt->box->cur = NULL;
  if (rt->pre != NULL) sp_preempt_round(rt, 0); /* if a round raised */
}

/* ---- polling ---------------------------------------------------------- */

static void timer_cb(uv_timer_t *h) { uv_stop(h->loop); }

static void uvrun(sp_runtime *rt, uv_run_mode mode) {
  rt->polling = 1;
  uv_run(rt->loop, mode);
  rt->polling = 0;
}

/* Polls I/O once; blocks only when may_block and nothing is ready.  A
** virtual clock jumps to the earliest deadline instead of blocking. */
static void poll_io(sp_runtime *rt, int may_block) {
  sp_timer *tm = sp_timer_min(rt);
  int alive = uv_loop_alive(rt->loop);
  if (rt->virtual_clock) {
    if (may_block && rt->nready == 0 && rt->inflight > 0) {
      uvrun(rt, UV_RUN_ONCE); /* thread-pool work completes in real time */
      return;
    }
    if (alive) uvrun(rt, UV_RUN_NOWAIT);
    if (rt->nready > 0 || rt->inflight > 0) return;
    if (tm != NULL) {
      uint64_t d = rt->heap[0].deadline;
      if (d > rt->vnow) rt->vnow = d;
    } else if (may_block) {
      if (uv_loop_alive(rt->loop))
        uvrun(rt, UV_RUN_ONCE); /* only I/O can wake anyone */
      else
        rt->deadlock = 1;
    }
    return;
  }
  if (!may_block || rt->nready > 0) {
    if (alive) uvrun(rt, UV_RUN_NOWAIT);
    return;
  }
  if (tm != NULL) {
    uint64_t now = uv_hrtime(), d = rt->heap[0].deadline;
    if (d <= now) {
      if (alive) uvrun(rt, UV_RUN_NOWAIT);
      return;
    }
    uv_update_time(rt->loop);
    uv_timer_start(&rt->timer, timer_cb, (d - now + 999999) / 1000000, 0);
    uvrun(rt, UV_RUN_ONCE);
    uv_timer_stop(&rt->timer);
  } else if (alive)
    uvrun(rt, UV_RUN_ONCE);
  else
    rt->deadlock = 1; /* no timer, no I/O: nothing can wake anyone */
}

static void after_poll(lua_State *L, sp_runtime *rt) {
  if (rt->after_poll != NULL) rt->after_poll(L, rt);
}

/* One turn (see the top of the file).  It ends early, before polling,
** once `until` has finished or no task is alive: a run must not wait for
** timers or I/O of tasks it is about to abort.  [-0, +0, m] */
static void turn(lua_State *L, sp_runtime *rt, int may_block,
                 uint64_t budget_end, sp_task *until) {
  if (may_block) sp_host_step_begins(rt); /* run: every turn is a step */
  if (rt->pre != NULL) sp_preempt_round(rt, 1);
  sp_run_ready(L, rt, budget_end, until);
  if (rt->pre != NULL) sp_preempt_round(rt, 0);
  if (rt->wpool != NULL) sp_blocking_flush(rt); /* jobs the round queued */
  if (rt->live == 0 || (until != NULL && sp_task_finished(until))) return;
  sp_timers_fire(rt);
  poll_io(rt, may_block && rt->next_step.head == NULL);
  rt->polls++;
  sp_timers_fire(rt);
  after_poll(L, rt);
}

static int push_live_p(lua_State *L) {
  sp_push_live(L, (sp_runtime *)lua_touserdata(L, 1));
  return 1;
}

/* Aborts every live task (dropping their shields if asked): in id order
** when the list can be made, else -- out of memory -- straight from the
** anchors table, which allocates nothing.  [-0, +0, m] */
static void abort_all(lua_State *L, sp_runtime *rt, int drop_shields) {
  int i, n;
  lua_pushcfunction(L, push_live_p);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      sp_task *t = (sp_task *)(lua_rawgeti(L, -1, i), lua_touserdata(L, -1));
      lua_pop(L, 1);
      if (drop_shields) t->shield = 0;
      sp_task_abort(L, t);
    }
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  sp_push_anchors(L, rt);
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* assigning nil to visited slots is allowed */
    if (lua_type(L, -2) == LUA_TNUMBER && lua_tointeger(L, -2) > 0) {
      sp_task *t = (sp_task *)lua_touserdata(L, -1);
      if (drop_shields) t->shield = 0;
      sp_task_abort(L, t);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int dump_p(lua_State *L) {
  sp_dump_push(L, (sp_runtime *)lua_touserdata(L, 1));
  return 1;
}

/* Every task is waiting and nothing can wake them: abort everything. */
static void on_deadlock(lua_State *L, sp_runtime *rt) {
  /* what every task waits for, before they are aborted: for the error */
  luaL_unref(L, LUA_REGISTRYINDEX, rt->deadlock_ref);
  rt->deadlock_ref = LUA_NOREF;
  lua_pushcfunction(L, dump_p);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK)
    rt->deadlock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  rt->deadlock = 0;
  rt->deadlocked = 1;
  abort_all(L, rt, 1); /* a shielded wait that nothing can end */
}

/* Aborts every live task and runs until all have unwound.  New tasks
** spawned meanwhile (say, from a <close> handler) start cancelled. */
void sp_shutdown(lua_State *L, sp_runtime *rt) {
  rt->shutting_down = 1;
  abort_all(L, rt, 0);
  while (rt->live > 0) {
    turn(L, rt, 1, 0, NULL);
    if (rt->deadlock) on_deadlock(L, rt);
  }
  rt->shutting_down = 0;
}

/* fn and nargs arguments on top: runs fn as the main task until it ends,
** then aborts and unwinds every other task.  Leaves the main task's
** handle in place of fn and its arguments.  [-(nargs+1), +1, e] */
static int run_main_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  sp_task *t = sp_spawn(L, rt, lua_gettop(L) - 2);
  rt->main = t;
  while (!sp_task_finished(t)) {
    turn(L, rt, 1, 0, t);
    if (rt->deadlock) on_deadlock(L, rt);
  }
  sp_shutdown(L, rt);
  return 1;
}

static int shutdown_p(lua_State *L) {
  sp_shutdown(L, (sp_runtime *)lua_touserdata(L, 1));
  return 0;
}

static int report_p(lua_State *L) {
  sp_report_unobserved(L, (sp_runtime *)lua_touserdata(L, 1));
  return 0;
}

/* A Lua error escaped a driver (a memory error, say; the error is on
** top): unwind the tasks that can be unwound, and leave, so that the
** runtime and the Lua state stay usable.  [-0, +0, -] */
static void recover(lua_State *L, sp_runtime *rt) {
  rt->main = NULL;
  if (rt->live > 0 && lua_checkstack(L, 3)) {
    lua_pushcfunction(L, shutdown_p);
    lua_pushlightuserdata(L, rt);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  rt->shutting_down = 0;
  leave(rt);
}

/* Calls the driver f with rt and the nargs values on top, protected:
** on an error, recovers and re-raises it.  [-nargs, +nres, e] */
static void drive(lua_State *L, sp_runtime *rt, lua_CFunction f, int nargs,
                  int nres) {
  luaL_checkstack(L, 2, "spindle: stack overflow");
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, rt);
  lua_rotate(L, -(nargs + 2), 2);
  if (lua_pcall(L, nargs + 1, nres, 0) != LUA_OK) {
    recover(L, rt);
    lua_error(L);
  }
}

int sp_run_main(lua_State *L, sp_runtime *rt, int nargs) {
  sp_task *t;
  enter(L, rt, "spindle.run");
  rt->deadlocked = 0;
  drive(L, rt, run_main_p, nargs + 1, 1);
  t = (sp_task *)lua_touserdata(L, -1);
  rt->main = NULL;
  leave(rt);
  sp_report_unobserved(L, rt);
  return t->state;
}

static int run_all_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  while (rt->live > 0) {
    turn(L, rt, 1, 0, NULL);
    if (rt->deadlock) {
      on_deadlock(L, rt);
      sp_shutdown(L, rt);
    }
  }
  return 0;
}

/* Runs until no task is alive.  [-0, +0, e] */
static void run_all(lua_State *L, sp_runtime *rt) {
  enter(L, rt, "spindle.run");
  rt->deadlocked = 0;
  drive(L, rt, run_all_p, 0, 0);
  leave(rt);
}

static int step_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  double max_seconds = lua_tonumber(L, 2);
  uint64_t end = 0;
  sp_host_step_begins(rt);
  if (max_seconds > 0) end = uv_hrtime() + (uint64_t)(max_seconds * 1e9);
  do {
    turn(L, rt, 0, end, NULL);
    rt->deadlock = 0;
  } while (end != 0 && rt->nready > 0 && uv_hrtime() < end);
  return 0;
}

/* Runs what is ready and polls without blocking, repeating while tasks
** are ready and the budget lasts.  Returns the number of live tasks. */
static lua_Integer step(lua_State *L, sp_runtime *rt, double max_seconds) {
  enter(L, rt, "step");
  lua_pushnumber(L, max_seconds);
  drive(L, rt, step_p, 1, 0);
  leave(rt);
  return rt->live;
}

/* ---- creation, options and close -------------------------------------- */

/* Reads and checks every option (raw reads: no metamethod runs) before
** anything is created, so a bad option leaks nothing.  The on_error and
** on_warning functions are left on the stack, in that order (nil when
** absent).  [-0, +2, v] */
static void parse_options(lua_State *L, int idx, sp_runtime *rt) {
  int top = lua_gettop(L);
  lua_pushnil(L); /* top + 1: on_error */
  lua_pushnil(L); /* top + 2: on_warning */
  if (idx == 0 || lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k == NULL)
      luaL_error(L, "spindle.runtime: option names must be strings");
    if (strcmp(k, "clock") == 0) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(v, "virtual") == 0)
        rt->virtual_clock = 1;
      else if (strcmp(v, "real") != 0)
        luaL_error(L, "spindle.runtime: option 'clock' must be \"real\" or "
                      "\"virtual\"");
    } else if (strcmp(k, "on_error") == 0 || strcmp(k, "on_warning") == 0) {
      if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_error(L, "spindle.runtime: option '%s' must be a function", k);
      lua_pushvalue(L, -1);
      lua_replace(L, k[3] == 'e' ? top + 1 : top + 2);
    } else if (strcmp(k, "preempt") == 0) {
      lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
      if (n < 1 || n > 1000000000)
        luaL_error(L, "spindle.runtime: option 'preempt' must be an integer "
                      "from 1 to 1e9");
      rt->preempt = (int)n;
    } else if (strcmp(k, "warn_blocking") == 0) {
      lua_Number s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
      if (!(s > 0) || s > SP_MAX_SECONDS)
        luaL_error(L, "spindle.runtime: option 'warn_blocking' must be a "
                      "positive number of seconds");
      rt->warn_blocking = (double)s;
    } else if (strcmp(k, "loop") == 0) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(v, "luv") == 0)
        rt->use_luv = 1;
      else if (strcmp(v, "own") != 0)
        luaL_error(L, "spindle.runtime: option 'loop' must be \"own\" or "
                      "\"luv\"");
    } else
      luaL_error(L, "spindle.runtime: unknown option '%s'", k);
    lua_pop(L, 1);
  }
}

/* luv's loop: luv keeps a context userdata in the registry whose first
** field is its uv_loop_t * (luv_ctx_t in luv.h).  [-0, +0, e] */
static uv_loop_t *luv_loop(lua_State *L) {
  uv_loop_t *loop;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luv");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    luaL_error(L, "spindle.runtime: loop = \"luv\" needs the luv module: %s",
               lua_tostring(L, -1));
  /* Pin the module: luv's loop userdata lives as long as the module, and
  ** luv (1.44) keeps a dangling loop pointer if the module is collected
  ** and required again (package.loaded cleared, as busted does). */
  lua_setfield(L, LUA_REGISTRYINDEX, "spindle.luv");
  lua_getfield(L, LUA_REGISTRYINDEX, "luv_context");
  loop = lua_touserdata(L, -1) ? *(uv_loop_t **)lua_touserdata(L, -1) : NULL;
  lua_pop(L, 1);
  if (loop == NULL) luaL_error(L, "spindle.runtime: cannot find luv's loop");
  return loop;
}

/* Creates a runtime on its own loop (loop NULL) or the host's, and pushes
** it.  Options from the table at optidx (0: none).  [-0, +1, e] */
sp_runtime *sp_runtime_new(lua_State *L, int optidx, uv_loop_t *loop) {
  sp_runtime *rt;
  int r;
  if (optidx != 0) optidx = lua_absindex(L, optidx);
  rt = lua_newuserdatauv(L, sizeof *rt, 0);
  memset(rt, 0, sizeof *rt);
  rt->closed = 1; /* born closed: safe for __gc until fully set up */
  rt->anchors_ref = rt->self_ref = rt->pool_ref = LUA_NOREF;
  rt->deadlock_ref = LUA_NOREF;
  rt->on_error_ref = rt->on_warning_ref = LUA_NOREF;
  owned_init(&rt->owned);
  luaL_setmetatable(L, SP_RT_MT);
  parse_options(L, optidx, rt); /* [rt, on_error, on_warning] */
  rt->box = sp_box_get(L);
  lua_pushthread(L);
  rt->L = lua_tothread(L, -1); /* any thread: only used as a "from" */
  lua_pop(L, 1);
  if (loop == NULL && rt->use_luv) loop = luv_loop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &weak_key); /* found by pin */
  lua_pushvalue(L, -4);
  lua_rawsetp(L, -2, rt);
  lua_pop(L, 1);
  /* Everything that allocates in Lua comes before the loop, so an error
  ** (a bad option, no memory) can never leak a loop. */
  rt->on_warning_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF)
                                        : luaL_ref(L, LUA_REGISTRYINDEX);
  rt->on_error_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF)
                                      : luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  rt->anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 256, 0); /* sized: pooling never allocates */
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (loop == NULL) {
    if ((r = uv_loop_init(&rt->own_loop)) != 0)
      luaL_error(L, "spindle.runtime: cannot create a loop: %s",
                 uv_strerror(r));
    rt->loop = &rt->own_loop;
    rt->own = 1;
  } else
    rt->loop = loop;
  if ((r = uv_timer_init(rt->loop, &rt->timer)) != 0) {
    if (rt->own) uv_loop_close(rt->loop);
    luaL_error(L, "spindle.runtime: cannot create a timer: %s", uv_strerror(r));
  }
  rt->timer.data = rt;
  rt->t0 = uv_hrtime();
  rt->vnow = 0; /* virtual time starts at 0 and moves only by jumps */
  rt->closed = 0;
  sp_preempt_start(rt); /* else the exact count hook (preempt.c) */
  return rt;
}

static void timer_closed(uv_handle_t *h) {
  ((sp_runtime *)h->data)->closed = 2;
}

#ifndef NDEBUG
static void stray_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr,
          "spindle: internal error: a %s handle was not owned by "
          "the runtime\n",
          uv_handle_type_name(h->type));
  abort();
}
#endif

static void stray_close_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes everything the runtime owns -- one walk over rt->owned, each
** entry's close called once -- then runs the loop until every entry has
** released itself (close callbacks, requests on the thread pool, blocking
** work still running) and, for its own loop, until uv_loop_close() == 0.
** Runs no Lua. */
static void release_c(sp_runtime *rt) {
  sp_owned dying, *o;
  owned_init(&dying);
  while (!owned_empty(&rt->owned)) { /* entries made meanwhile too */
    o = rt->owned.next;
    sp_disown(o); /* to the dying list until it releases itself */
    o->next = &dying;
    o->prev = dying.prev;
    dying.prev->next = o;
    dying.prev = o;
    o->close(o);
  }
  uv_close((uv_handle_t *)&rt->timer, timer_closed);
  while (!owned_empty(&dying) || !owned_empty(&rt->owned) || rt->closed != 2) {
    while (!owned_empty(&rt->owned)) { /* made by a callback: close too */
      o = rt->owned.next;
      sp_disown(o);
      o->next = &dying;
      o->prev = dying.prev;
      dying.prev->next = o;
      dying.prev = o;
      o->close(o);
    }
    uv_run(rt->loop, UV_RUN_ONCE);
  }
  if (rt->own) {
    uv_run(rt->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(rt->loop) == UV_EBUSY) {
#ifndef NDEBUG
      uv_walk(rt->loop, stray_cb, NULL);
#endif
      uv_walk(rt->loop, stray_close_cb, NULL);
      uv_run(rt->loop, UV_RUN_DEFAULT);
      uv_loop_close(rt->loop);
    }
  }
  free(rt->heap);
  free(rt->freeslots);
  rt->heap = NULL;
  rt->freeslots = NULL;
  rt->nheap = rt->heapcap = rt->nfree = rt->freecap = 0;
}

/* Aborts and unwinds every task, reports unobserved failures, closes every
** handle the runtime created and releases everything it holds.  The
** userdata itself is freed by the collector.  [-0, +0, e] */
void sp_runtime_close(lua_State *L, sp_runtime *rt) {
  if (rt->closed || rt->closing) return;
  if (rt->box->cur == rt)
    luaL_error(L, "spindle: cannot close a runtime from inside itself");
  if (rt->live > 0 && rt->box->cur != NULL)
    luaL_error(L, "spindle: cannot close a runtime with live tasks from "
                  "inside another runtime");
  rt->closing = 1;
  if (rt->live > 0) { /* protected: a memory error still closes it */
    int tries;
    rt->box->cur = rt;
    for (tries = 0; tries < 3 && rt->live > 0; tries++) {
      if (tries > 0) lua_gc(L, LUA_GCCOLLECT); /* make room, try again */
      lua_pushcfunction(L, shutdown_p);
      lua_pushlightuserdata(L, rt);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    rt->shutting_down = 0;
    rt->box->cur = NULL;
  }
  lua_pushcfunction(L, report_p);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  release_c(rt);
  luaL_unref(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, rt->pool_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, rt->on_error_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, rt->on_warning_ref);
  rt->anchors_ref = rt->on_error_ref = rt->on_warning_ref = LUA_NOREF;
  rt->pool_ref = LUA_NOREF;
  rt->npool = 0;
  /* deadlock_ref stays until collection: main_results reads it after */
  /* a host's runtime (spindle_new) keeps its self_ref until lua_close:
  ** the host may still hold our pointer */
  rt->closed = 1;
  rt->closing = 0;
}

/* ---- Lua functions ----------------------------------------------------- */

/* The deadlock error: what happened, then what every task waited for.
** [-0, +1, m] */
void sp_push_deadlock(lua_State *L, sp_runtime *rt) {
  lua_pushliteral(L, "spindle.run: deadlock: every task is waiting and no "
                     "timer or I/O can wake them; the tasks were:\n");
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->deadlock_ref);
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  lua_concat(L, 2);
}

/* After sp_run_main left the main handle on top: returns main's results
** or raises its error.  Closes rt first when asked. */
static int main_results(lua_State *L, sp_runtime *rt, int close) {
  sp_task *t = (sp_task *)lua_touserdata(L, -1);
  int base = lua_gettop(L), failed = 0;
  switch (t->state) {
    case SP_T_DONE: sp_task_push_results(L, base, t); break;
    case SP_T_FAILED:
      sp_task_push_error(L, base, t);
      failed = 1;
      break;
    default:
      if (rt->deadlocked)
        sp_push_deadlock(L, rt);
      else
        sp_push_cancel_error(L);
      failed = 1;
      break;
  }
  if (close) sp_runtime_close(L, rt);
  if (failed) return lua_error(L);
  return lua_gettop(L) - base;
}

/* [rt, fn, args...]: runs main, closes rt, returns or raises. */
static int run_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  sp_run_main(L, rt, lua_gettop(L) - 2);
  return main_results(L, rt, 1);
}

static int close_p(lua_State *L) {
  sp_runtime_close(L, (sp_runtime *)lua_touserdata(L, 1));
  return 0;
}

/* spindle.run(main, ...) */
static int l_run(lua_State *L) {
  sp_runtime *rt;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (sp_box_of(L)->cur != NULL)
    luaL_error(L, "spindle.run: already inside a runtime");
  rt = sp_runtime_new(L, 0, NULL);
  lua_insert(L, 1); /* [rt, fn, args...] */
  lua_pushcfunction(L, run_p);
  lua_pushvalue(L, 1);
  lua_rotate(L, 2, 2); /* [rt, run_p, rt, fn, args...] */
  if (lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0) != LUA_OK) {
    if (!rt->closed && lua_checkstack(L, 3)) { /* an error of the driver */
      lua_pushcfunction(L, close_p);
      lua_pushlightuserdata(L, rt);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

/* spindle.runtime([opts]) */
static int l_runtime(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  sp_runtime_new(L, lua_isnoneornil(L, 1) ? 0 : 1, NULL);
  return 1;
}

/* rt:run([main, ...]) */
static int rt_run(lua_State *L) {
  sp_runtime *rt = check_open(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    if (rt->box->cur != NULL)
      luaL_error(L, "spindle.run: already inside a runtime");
    run_all(L, rt);
    if (rt->deadlocked) {
      sp_push_deadlock(L, rt);
      return lua_error(L);
    }
    return 0;
  }
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (rt->box->cur != NULL)
    luaL_error(L, "spindle.run: already inside a runtime");
  sp_run_main(L, rt, lua_gettop(L) - 2);
  return main_results(L, rt, 0);
}

static int rt_spawn(lua_State *L) {
  sp_runtime *rt = check_open(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  sp_spawn(L, rt, lua_gettop(L) - 2);
  return 1;
}

static int rt_step(lua_State *L) {
  sp_runtime *rt = check_open(L, 1);
  double max = 0;
  if (!lua_isnoneornil(L, 2)) max = sp_check_seconds(L, 2);
  lua_pushinteger(L, step(L, rt, max));
  return 1;
}

static int rt_close(lua_State *L) {
  sp_runtime *rt = sp_runtime_check(L, 1);
  sp_runtime_close(L, rt);
  return 0;
}

/* lua_close (os.exit(code, true), say) from inside one of this runtime's
** own tasks: the running task cannot be unwound, so only the C side is
** released -- libuv handles, the loop, the heap.  No Lua runs. */
static void close_from_inside(sp_runtime *rt) {
  rt->closing = 1;
  release_c(rt);
  rt->closed = 1;
}

static int rt_gc(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)sp_testclass(L, 1, SP_RT_MT);
  if (rt == NULL || rt->closing) return 0;
  if (rt->closed) { /* closed, or failed half-way through creation */
    luaL_unref(L, LUA_REGISTRYINDEX, rt->anchors_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->pool_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->deadlock_ref);
    rt->deadlock_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, rt->on_error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->on_warning_ref);
    rt->anchors_ref = rt->on_error_ref = rt->on_warning_ref = LUA_NOREF;
    rt->pool_ref = LUA_NOREF;
    return 0;
  }
  if (rt->box->cur == rt || (rt->box->cur != NULL && rt->live > 0)) {
    /* Its tasks are running or will run, so the collector cannot reach it
    ** unless the state is closing (lua_close from inside a task,
    ** os.exit(c, true)): then only its C side is released.  Inside a
    ** finalizer lua_gc answers -1 (5.4.4+) or 0 (older 5.4); a __gc called
    ** by hand gets 1 and does nothing on a busy runtime. */
    if (lua_gc(L, LUA_GCISRUNNING) != 1) close_from_inside(rt);
  } else
    sp_runtime_close(L, rt);
  return 0;
}

static void push_stats(lua_State *L, sp_runtime *rt) {
  lua_createtable(L, 0, 8);
#define F(name, v)                                                             \
  lua_pushinteger(L, v);                                                       \
  lua_setfield(L, -2, name)
  F("spawned", rt->spawned);
  F("finished", rt->finished);
  F("failed", rt->failed);
  F("cancelled", rt->cancelled);
  F("live", rt->live);
  F("ready", rt->nready);
  F("polls", rt->polls);
  F("pooled", rt->npool);
#undef F
}

static int rt_stats(lua_State *L) {
  push_stats(L, sp_runtime_check(L, 1));
  return 1;
}

static int l_stats(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  if (rt == NULL) luaL_error(L, "spindle.stats: not inside a runtime");
  push_stats(L, rt);
  return 1;
}

static int rt_backend_fd(lua_State *L) {
  sp_runtime *rt = check_open(L, 1);
  int fd = uv_backend_fd(rt->loop);
  if (fd < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, fd);
  return 1;
}

static int rt_next_timeout(lua_State *L) {
  sp_runtime *rt = check_open(L, 1);
  sp_timer *tm = sp_timer_min(rt);
  if (rt->nready > 0)
    lua_pushnumber(L, 0);
  else if (tm == NULL)
    lua_pushnil(L);
  else {
    uint64_t now = sp_now(rt), d = rt->heap[0].deadline;
    uint64_t ms = d <= now ? 0 : (d - now + 999999) / 1000000;
    lua_pushnumber(L, (lua_Number)ms / 1000);
  }
  return 1;
}

static int rt_tostring(lua_State *L) {
  sp_runtime *rt = sp_runtime_check(L, 1);
  lua_pushfstring(L, "spindle.runtime (%s, %I live)",
                  rt->closed ? "closed" : "open", rt->live);
  return 1;
}

int sp_runtime_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"run", rt_run},
                                     {"spawn", rt_spawn},
                                     {"step", rt_step},
                                     {"close", rt_close},
                                     {"stats", rt_stats},
                                     {"backend_fd", rt_backend_fd},
                                     {"next_timeout", rt_next_timeout},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"run", l_run}, {"runtime", l_runtime}, {"stats", l_stats}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", rt_gc},
                                  {"__close", rt_close},
                                  {"__tostring", rt_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, SP_RT_MT, methods, meta);
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &weak_key) == LUA_TNIL) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weak_key);
  }
  lua_pop(L, 1);
  sp_setfuncs(L, fns);
  return 0;
}

/* ---- the C API (spindle.h) ------------------------------------------- */

/* ... lives in capi.c; these hooks let it drive the runtime. */
int sp_capi_step(lua_State *L, sp_runtime *rt, double max_seconds) {
  return (int)step(L, rt, max_seconds);
}

void sp_capi_run_all(lua_State *L, sp_runtime *rt) { run_all(L, rt); }
