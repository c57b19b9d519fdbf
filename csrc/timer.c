/*
** timer.c -- every sleep and deadline of a runtime in one 4-ary min-heap.
**
** A sleeping task costs a heap slot, not a libuv handle: the runtime owns a
** single uv_timer_t, armed to the earliest deadline only while the loop
** blocks.  Entries are ordered by (deadline, seq): equal deadlines fire in
** insertion order.  Each entry carries the function that fires it (a
** sleeping task, a spindle.timeout scope), so the heap knows nothing of its
** owners.  Deadlines come from a fresh clock (uv_hrtime), never
** from libuv's cached loop time, and an entry fires only once the fresh
** clock has reached it, so nothing wakes early.
*/
#include <stdlib.h>

#include "internal.h"

#define ARITY 4

uint64_t sp_now(sp_runtime *rt) {
  return rt->virtual_clock ? rt->vnow : uv_hrtime();
}

/* Ties (rare) are broken by the insertion sequence in the record. */
static int before(sp_heapent a, sp_heapent b) {
  if (a.deadline != b.deadline) return a.deadline < b.deadline;
  return a.tm->seq < b.tm->seq;
}

static void place(sp_runtime *rt, int i, sp_heapent e) {
  rt->heap[i] = e;
  e.tm->index = i;
}

static void sift_up(sp_runtime *rt, int i, sp_heapent e) {
  while (i > 0) {
    int parent = (i - 1) / ARITY;
    if (!before(e, rt->heap[parent])) break;
    place(rt, i, rt->heap[parent]);
    i = parent;
  }
  place(rt, i, e);
}

static void sift_down(sp_runtime *rt, int i, sp_heapent e) {
  int n = rt->nheap;
  for (;;) {
    int first = i * ARITY + 1, best = first, c;
    if (first >= n) break;
    for (c = first + 1; c < first + ARITY && c < n; c++)
      if (before(rt->heap[c], rt->heap[best])) best = c;
    if (!before(rt->heap[best], e)) break;
    place(rt, i, rt->heap[best]);
    i = best;
  }
  place(rt, i, e);
}

void sp_timer_init(sp_timer *tm, void (*fire)(sp_runtime *, sp_timer *)) {
  tm->seq = 0;
  tm->fire = fire;
  tm->index = -1;
}

uint64_t sp_timer_deadline(sp_runtime *rt, const sp_timer *tm) {
  return tm->index >= 0 ? rt->heap[tm->index].deadline : 0;
}

/* Adds tm (not armed) with the given deadline.  The caller has made room
** with sp_timer_reserve, so this never fails. */
void sp_timer_add(sp_runtime *rt, sp_timer *tm, uint64_t deadline) {
  sp_heapent e;
  tm->seq = rt->tseq++;
  e.deadline = deadline;
  e.tm = tm;
  sift_up(rt, rt->nheap++, e);
}

void sp_timer_remove(sp_runtime *rt, sp_timer *tm) {
  int i = tm->index;
  sp_heapent last;
  if (i < 0) return;
  tm->index = -1;
  last = rt->heap[--rt->nheap];
  if (last.tm == tm) return;
  if (i > 0 && before(last, rt->heap[(i - 1) / ARITY]))
    sift_up(rt, i, last);
  else
    sift_down(rt, i, last);
}

sp_timer *sp_timer_min(sp_runtime *rt) {
  return rt->nheap > 0 ? rt->heap[0].tm : NULL;
}

/* Makes room for one more entry; a Lua memory error if it cannot.
** [-0, +0, m] */
void sp_timer_reserve(lua_State *L, sp_runtime *rt) {
  if (rt->nheap < rt->heapcap) return;
  {
    int cap = rt->heapcap ? rt->heapcap * 2 : 64;
    sp_heapent *h = realloc(rt->heap, (size_t)cap * sizeof *h);
    if (h == NULL) luaL_error(L, "not enough memory");
    rt->heap = h;
    rt->heapcap = cap;
  }
}

int sp_timers_fire(sp_runtime *rt) {
  int n = 0;
  uint64_t now;
  if (rt->nheap == 0) return 0;
  now = sp_now(rt);
  while (rt->nheap > 0 && rt->heap[0].deadline <= now) {
    sp_timer *tm = rt->heap[0].tm;
    sp_timer_remove(rt, tm);
    tm->fire(rt, tm);
    n++;
  }
  return n;
}
