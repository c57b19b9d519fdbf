/*
** sched.c -- the ready queue and the one place that calls lua_resume.
**
** Everything that makes a task runnable goes through sp_wake(); the
** scheduler pops tasks in FIFO order and resumes each for one slice.  A
** slice ends in one of three ways:
**   - a yield: an await left the task WAITING (or READY, to requeue it);
**     a yield the runtime did not make (a bare coroutine.yield at task
**     level, or a preemption) leaves it RUNNING and it is requeued;
**   - a return: task_body's continuation has set t->failed and left the
**     results (or traceback and error) on the coroutine's stack;
**   - an error that escaped task_body itself (memory errors only).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The ready queue is linked through t->w.rnext/rprev, which share storage
** with the wait's own links (internal.h): a queued task waits for nothing.
** Only w.obj survives the queue, for continuations that read it. */
void sp_ready_push(sp_runtime *rt, sp_task *t) {
  t->w.rnext = NULL;
  t->w.rprev = rt->rtail;
  if (rt->rtail)
    rt->rtail->w.rnext = t;
  else
    rt->rhead = t;
  rt->rtail = t;
  rt->nready++;
}

void sp_ready_remove(sp_runtime *rt, sp_task *t) {
  if (t->w.rprev)
    t->w.rprev->w.rnext = t->w.rnext;
  else
    rt->rhead = t->w.rnext;
  if (t->w.rnext)
    t->w.rnext->w.rprev = t->w.rprev;
  else
    rt->rtail = t->w.rprev;
  t->w.rnext = t->w.rprev = NULL;
  rt->nready--;
}

/* Makes a waiting task ready; why = SP_WAKE_OK (its await completed) or
** SP_WAKE_INTERRUPT (abort or timeout: the await raises).  C only. */
void sp_wake(sp_task *t, int why) {
  sp_runtime *rt = t->rt;
  t->wake = (unsigned char)why;
  t->state = SP_T_READY;
  t->wait = NULL;
  sp_ready_push(rt, t);
  if (rt->polling) uv_stop(rt->loop); /* do not block in this poll */
}

void sp_wlist_push(sp_wlist *l, sp_task *t) {
  sp_task *h = l->head;
  if (h == NULL) {
    t->w.next = t->w.prev = t;
    l->head = t;
  } else { /* append before the head: the tail of the circle */
    t->w.next = h;
    t->w.prev = h->w.prev;
    h->w.prev->w.next = t;
    h->w.prev = t;
  }
}

void sp_wlist_remove(sp_wlist *l, sp_task *t) {
  if (t->w.next == t)
    l->head = NULL;
  else {
    t->w.prev->w.next = t->w.next;
    t->w.next->w.prev = t->w.prev;
    if (l->head == t) l->head = t->w.next;
  }
  t->w.next = t->w.prev = NULL;
}

void sp_fhook_add(sp_task *t, sp_fhook *h, void (*fn)(sp_fhook *, sp_task *)) {
  sp_fhook *head = t->hooks;
  h->fn = fn;
  if (head == NULL) {
    h->next = h->prev = h;
    t->hooks = h;
  } else { /* append: hooks run in the order they were added */
    h->next = head;
    h->prev = head->prev;
    head->prev->next = h;
    head->prev = h;
  }
}

void sp_fhook_remove(sp_task *t, sp_fhook *h) {
  if (h->next == NULL) return;
  if (h->next == h)
    t->hooks = NULL;
  else {
    h->prev->next = h->next;
    h->next->prev = h->prev;
    if (t->hooks == h) t->hooks = h->next;
  }
  h->next = h->prev = NULL;
}

/* [-0, +1, -] */
void sp_push_anchors(lua_State *L, sp_runtime *rt) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
}

/* Pushes the handle of an unfinished task.  [-0, +1, -] */
void sp_push_task(lua_State *L, sp_task *t) {
  sp_push_anchors(L, t->rt);
  lua_rawgeti(L, -1, t->anchor);
  lua_remove(L, -2);
}

static int by_id(const void *a, const void *b) {
  lua_Integer x = (*(sp_task *const *)a)->id, y = (*(sp_task *const *)b)->id;
  return (x > y) - (x < y);
}

/* Pushes an array of the handles of every live task, in id order, and
** returns how many.  Slots are reused, so the anchors table is not in id
** order: the tasks are collected and sorted (qsort, in a scratch userdata
** so that a memory error leaks nothing).  [-0, +1, m] */
int sp_push_live(lua_State *L, sp_runtime *rt) {
  int n = 0, i, top = lua_gettop(L);
  sp_task **v = (sp_task **)lua_newuserdatauv(
      L, (size_t)(rt->live > 0 ? rt->live : 1) * sizeof *v, 0);
  sp_push_anchors(L, rt);
  for (i = 1; i <= rt->nslots && n < rt->live; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TNIL) v[n++] = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  qsort(v, (size_t)n, sizeof *v, by_id);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, -2, v[i]->anchor);
    lua_rawseti(L, -2, i + 1);
  }
  lua_replace(L, top + 1); /* the list where the scratch was */
  lua_settop(L, top + 1);
  return n;
}

/* The one place a task becomes finished: runs its finish hooks (joiners,
** scopes, watch sets) and releases its anchor.  A failure nobody has seen yet is remembered for the
** reporter (sp_report_unobserved), and the handle gets a metatable with __gc so
** that dropping it reports the failure.  [-0, +0, m] */
void sp_finish(lua_State *L, sp_runtime *rt, sp_task *t, int state) {
  sp_fhook *h;
  t->state = (unsigned char)state;
  t->wait = NULL;
  rt->finished++;
  rt->live--;
  if (state == SP_T_FAILED)
    rt->failed++;
  else if (state == SP_T_CANCELLED)
    rt->cancelled++;
  while ((h = t->hooks) != NULL) {
    sp_fhook_remove(t, h);
    h->fn(h, t);
  }
  sp_push_anchors(L, rt);
  if (t->co == NULL && t->rkind == SP_R_NONE) { /* never started: drop fn */
    int i;
    lua_rawgeti(L, -1, t->anchor);
    for (i = 1; i <= t->nuv; i++) {
      lua_pushnil(L);
      lua_setiuservalue(L, -2, i);
    }
    lua_pop(L, 1);
  }
  if (state == SP_T_FAILED && !t->observed && t != rt->main) {
    lua_rawgeti(L, -1, t->anchor); /* the handle */
    luaL_setmetatable(L, SP_TASK_GC_MT);
    sp_task_unobserved(L, t);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, t->anchor);
  if (rt->live == 0) { /* idle: the runtime may be collected now */
    lua_pushnil(L);
    lua_rawseti(L, -2, 0);
  }
  lua_pop(L, 1);
  if (rt->nfree < rt->freecap) rt->freeslots[rt->nfree++] = t->anchor;
  t->anchor = 0;
}

/* The end of a slice that returned: the task's final state. */
static void slice_returned(lua_State *L, sp_runtime *rt, sp_task *t) {
  int state = t->failed ? SP_T_FAILED : SP_T_DONE;
  if (t->cancel) state = SP_T_CANCELLED; /* abort wins */
  sp_finish(L, rt, t, state);
}

/* An error escaped task_body (it only can before its pcall is set up, by
** running out of memory).  Closes the thread and keeps [nil, err]. */
static void slice_raised(lua_State *L, sp_runtime *rt, sp_task *t) {
  lua_State *co = t->co;
  lua_xmove(co, L, 1);
  sp_closethread(co, L); /* reset: the pool may take it again */
  lua_settop(co, 0);
  lua_pushnil(co);
  lua_xmove(L, co, 1);
  t->failed = 1;
  sp_task_keep_end(L, rt, t, 2);
  slice_returned(L, rt, t);
}

/* warn_blocking: a slice that ran too long is reported once per task, with
** the traceback of where the task is now.  [-0, +0, m] */
void sp_warn_blocking(lua_State *L, sp_task *t, double secs) {
  if (t->warned || !lua_checkstack(L, 4)) return;
  t->warned = 1;
  sp_push_task(L, t);
  if (sp_push_name(L, -1) == LUA_TSTRING)
    lua_pushfstring(L, "spindle: task %I (%s) ran %f s without awaiting", t->id,
                    lua_tostring(L, -1), secs);
  else
    lua_pushfstring(L, "spindle: task %I ran %f s without awaiting", t->id,
                    secs);
  luaL_traceback(L, t->co, lua_tostring(L, -1), 0);
  sp_warning(L, t->rt, -4); /* pops the message */
  lua_pop(L, 3);
}

/* Is a timeout scope of t expired (and still open)? */
static int any_expired(const sp_task *t) {
  const sp_tscope *sc;
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->expired) return 1;
  return 0;
}

static void resume(lua_State *L, sp_runtime *rt, sp_task *t) {
  lua_State *co = t->co;
  int nres = 0, st;
  int nargs = t->state == SP_T_NEW || t->parked ? lua_gettop(co) - 1 : 0;
  t->parked = 0;
  if (t->bare) { /* resuming a bare coroutine.yield: it has no */
    t->bare = 0; /* continuation, so a cancellation goes through a hook */
    if ((t->cancel && t->shield == 0) || any_expired(t)) sp_hook_cancel(co);
  }
  t->state = SP_T_RUNNING;
  rt->current = t;
  if (rt->warn_blocking > 0) rt->slice_start = uv_hrtime();
  if (rt->pre != NULL) sp_preempt_enter(rt, t);
  st = lua_resume(co, L, nargs, &nres);
  if (rt->pre != NULL) sp_preempt_leave(rt, co);
  rt->current = NULL;
  if (rt->warn_blocking > 0) { /* also catches blocking C calls */
    double secs = (double)(uv_hrtime() - rt->slice_start) / 1e9;
    if (secs > rt->warn_blocking) sp_warn_blocking(L, t, secs);
  }
  if (st == LUA_YIELD) {
    if (nres > 0) lua_pop(co, nres);
    if (t->state == SP_T_RUNNING) { /* a yield the runtime did not make */
      t->bare = 1;
      t->state = SP_T_READY;
      sp_ready_push(rt, t);
    } else if (t->state == SP_T_READY) /* spindle.yield, fairness, preempt */
      sp_ready_push(rt, t);
  } else if (st == LUA_OK && t->parked && !t->failed) {
    sp_task_park_end(L, rt, t, nres); /* waits on, without a coroutine */
  } else if (st == LUA_OK) {
    t->parked = 0;
    sp_task_keep_end(L, rt, t, nres);
    slice_returned(L, rt, t);
  } else {
    slice_raised(L, rt, t);
  }
}

/* Runs the tasks that are ready now, one slice each; tasks they wake run
** in a later turn.  It stops early once the budget (ns deadline, 0: none)
** is spent or `until` has finished: when main returns, the tasks behind it
** in the queue are aborted, not run.  [-0, +0, m] */
void sp_run_ready(lua_State *L, sp_runtime *rt, uint64_t budget_end,
                  sp_task *until) {
  lua_Integer n = rt->nready;
  while (n-- > 0 && rt->rhead != NULL) {
    sp_task *t = rt->rhead;
    if (t->co == NULL) sp_task_start(L, rt, t); /* may raise: still queued */
    sp_ready_remove(rt, t);
    resume(L, rt, t);
    if (until != NULL && sp_task_finished(until)) break;
    if (budget_end && uv_hrtime() >= budget_end) break;
  }
}
