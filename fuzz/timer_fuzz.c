/*
** fuzz/timer_fuzz.c -- the timer heap (csrc/timer.c), the ready queue and
** the wait lists (csrc/sched.c) against naive models, driven directly
** through their internal API on a bare runtime record (virtual clock).
**
** Input bytes are operations (opcode % 9, then arguments):
**   0 add timer i with a deadline now + d (small d: many ties)
**   1 remove timer i (armed or not)
**   2 advance the clock by d and fire what is due: the fired order must be
**     the model's (deadline, then insertion order), each fired entry
**     disarmed
**   3 compare sp_timer_min / sp_timer_deadline with the model
**   4 push task j on the ready queue (if not queued)
**   5 remove task j from the ready queue (if queued)
**   6 pop the ready queue's head: the model's first
**   7 push task k on wait list l (if on none)
**   8 remove task k from its wait list
** After every operation the structures are checked whole: the heap
** property, every entry's index, the heap size; the ready queue's links
** both ways, its tail and count; every wait list's circle.  A difference
** is reported with sp_fuzz_fail (fuzz/replay.c counts it, libFuzzer
** stops).
*/
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "internal.h"

#define NTIMERS 48
#define NTASKS 24
#define NWAIT 24
#define NLISTS 3

typedef struct entry {
  sp_timer tm;
  int id;
  int armed;         /* model */
  uint64_t deadline; /* model */
  uint64_t seq;      /* model: insertion order */
} entry;

static entry timers[NTIMERS];
static sp_task tasks[NTASKS], waiters[NWAIT];
static sp_runtime rt;
static lua_State *L;
static uint64_t model_seq;

/* ready queue model: task indexes in order */
static int ready[NTASKS], nready;
static int queued[NTASKS];
/* wait list models */
static sp_wlist lists[NLISTS];
static int wl[NLISTS][NWAIT], nwl[NLISTS];
static int on_list[NWAIT]; /* list index + 1, or 0 */

static int fired[NTIMERS], nfired;

/* A finding: under libFuzzer print and abort; in the replay program
** (SP_FUZZ_REPLAY) count it and go on with the next input. */
void sp_fuzz_fail(const char *what);
#ifndef SP_FUZZ_REPLAY
void sp_fuzz_fail(const char *what) {
  fprintf(stderr, "%s\n", what);
  abort();
}
#endif
static jmp_buf bail; /* the structures are broken: drop this input */

#define CHECK(c, ...)                                                          \
  do {                                                                         \
    if (!(c)) {                                                                \
      char msg_[256];                                                          \
      int n_ = snprintf(msg_, sizeof msg_, "timer_fuzz: " __VA_ARGS__);        \
      if (n_ > 0 && (size_t)n_ < sizeof msg_)                                  \
        snprintf(msg_ + n_, sizeof msg_ - (size_t)n_, " (%s:%d)", __FILE__,    \
                 __LINE__);                                                    \
      sp_fuzz_fail(msg_);                                                      \
      longjmp(bail, 1);                                                        \
    }                                                                          \
  } while (0)

static void on_fire(sp_runtime *r, sp_timer *tm) {
  entry *e = sp_container_of(tm, entry, tm);
  CHECK(r == &rt, "fired with another runtime");
  CHECK(tm->index == -1, "timer %d fired while still armed", e->id);
  CHECK(nfired < NTIMERS, "too many fired");
  fired[nfired++] = e->id;
}

static void reset(void) {
  int i;
  free(rt.heap);
  memset(&rt, 0, sizeof rt);
  rt.virtual_clock = 1;
  rt.vnow = 1000;
  for (i = 0; i < NTIMERS; i++) {
    memset(&timers[i], 0, sizeof timers[i]);
    timers[i].id = i;
    sp_timer_init(&timers[i].tm, on_fire);
  }
  memset(tasks, 0, sizeof tasks);
  memset(waiters, 0, sizeof waiters);
  memset(queued, 0, sizeof queued);
  memset(lists, 0, sizeof lists);
  memset(nwl, 0, sizeof nwl);
  memset(on_list, 0, sizeof on_list);
  for (i = 0; i < NTASKS; i++) tasks[i].rt = &rt;
  for (i = 0; i < NWAIT; i++) waiters[i].rt = &rt;
  nready = 0;
  model_seq = 0;
}

/* The model's earliest armed entry, or -1. */
static int model_min(void) {
  int i, best = -1;
  for (i = 0; i < NTIMERS; i++) {
    entry *e = &timers[i];
    if (!e->armed) continue;
    if (best < 0 || e->deadline < timers[best].deadline ||
        (e->deadline == timers[best].deadline && e->seq < timers[best].seq))
      best = i;
  }
  return best;
}

static void check_all(void) {
  int i, n = 0, l;
  sp_task *t, *prev = NULL;
  /* the heap */
  for (i = 0; i < NTIMERS; i++) n += timers[i].armed;
  CHECK(rt.nheap == n, "heap holds %d, model %d", rt.nheap, n);
  for (i = 0; i < rt.nheap; i++) {
    sp_heapent *h = &rt.heap[i];
    entry *e = sp_container_of(h->tm, entry, tm);
    CHECK(h->tm->index == i, "entry %d at slot %d says %d", e->id, i,
          h->tm->index);
    CHECK(e->armed && h->deadline == e->deadline,
          "slot %d: entry %d deadline %llu, model %llu armed %d", i, e->id,
          (unsigned long long)h->deadline, (unsigned long long)e->deadline,
          e->armed);
    if (i > 0) {
      sp_heapent *p = &rt.heap[(i - 1) / 4];
      CHECK(p->deadline < h->deadline ||
                (p->deadline == h->deadline && p->tm->seq < h->tm->seq),
            "heap order broken at slot %d", i);
    }
  }
  for (i = 0; i < NTIMERS; i++)
    if (!timers[i].armed)
      CHECK(timers[i].tm.index == -1, "disarmed entry %d has index %d", i,
            timers[i].tm.index);
  /* the ready queue */
  CHECK(rt.nready == nready, "nready %lld, model %d", (long long)rt.nready,
        nready);
  for (i = 0, t = rt.rhead; i < nready; i++, t = t->w.rnext) {
    CHECK(t == &tasks[ready[i]], "ready queue position %d differs", i);
    CHECK(t->w.rprev == prev, "ready queue back link at %d", i);
    prev = t;
  }
  CHECK(t == NULL, "ready queue longer than the model");
  CHECK(rt.rtail == prev, "ready queue tail");
  /* the wait lists: a circle from the head, in push order */
  for (l = 0; l < NLISTS; l++) {
    sp_task *h = lists[l].head;
    if (nwl[l] == 0) {
      CHECK(h == NULL, "wait list %d should be empty", l);
      continue;
    }
    for (i = 0, t = h; i < nwl[l]; i++, t = t->w.next) {
      CHECK(t == &waiters[wl[l][i]], "wait list %d position %d", l, i);
      CHECK(t->w.next->w.prev == t, "wait list %d links at %d", l, i);
    }
    CHECK(t == h, "wait list %d is not a circle of %d", l, nwl[l]);
  }
}

__attribute__((destructor)) static void close_state(void) {
  if (L != NULL) lua_close(L);
  L = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t p = 0;
  if (L == NULL) L = luaL_newstate();
  reset();
  if (setjmp(bail) != 0) return 0; /* reported; reset() at the next input */
#define ARG() (p < size ? data[p++] : 0)
  while (p < size) {
    int op = data[p++] % 9, i, j, k;
    switch (op) {
      case 0: { /* add */
        uint64_t d = (uint64_t)ARG() % 16;
        entry *e = &timers[ARG() % NTIMERS];
        if (e->armed) break;
        sp_timer_reserve(L, &rt);
        e->armed = 1;
        e->deadline = rt.vnow + d * 1000;
        e->seq = model_seq++;
        sp_timer_add(&rt, &e->tm, e->deadline);
        CHECK(e->tm.seq == e->seq, "insertion order differs");
        break;
      }
      case 1: { /* remove */
        entry *e = &timers[ARG() % NTIMERS];
        sp_timer_remove(&rt, &e->tm);
        e->armed = 0;
        break;
      }
      case 2: { /* advance and fire */
        int want[NTIMERS], nwant = 0, n;
        rt.vnow += (uint64_t)(ARG() % 8) * 1000;
        for (;;) { /* the model: pop its minimum while due */
          int m = model_min();
          if (m < 0 || timers[m].deadline > rt.vnow) break;
          timers[m].armed = 0;
          want[nwant++] = m;
        }
        nfired = 0;
        n = sp_timers_fire(&rt);
        CHECK(n == nwant && nfired == nwant, "fired %d (%d), model %d", n,
              nfired, nwant);
        for (i = 0; i < nwant; i++)
          CHECK(fired[i] == want[i], "firing order differs at %d: %d vs %d", i,
                fired[i], want[i]);
        break;
      }
      case 3: { /* min */
        int m = model_min();
        sp_timer *tm = sp_timer_min(&rt);
        CHECK((m < 0 && tm == NULL) || (m >= 0 && tm == &timers[m].tm),
              "minimum differs");
        if (m >= 0)
          CHECK(sp_timer_deadline(&rt, tm) == timers[m].deadline,
                "deadline of the minimum");
        break;
      }
      case 4: /* ready push */
        j = ARG() % NTASKS;
        if (queued[j]) break;
        sp_ready_push(&rt, &tasks[j]);
        queued[j] = 1;
        ready[nready++] = j;
        break;
      case 5: /* ready remove */
        j = ARG() % NTASKS;
        if (!queued[j]) break;
        sp_ready_remove(&rt, &tasks[j]);
        queued[j] = 0;
        for (i = 0; i < nready && ready[i] != j; i++) {
        }
        memmove(&ready[i], &ready[i + 1],
                (size_t)(nready - i - 1) * sizeof ready[0]);
        nready--;
        break;
      case 6: /* ready pop */
        if (nready == 0) {
          CHECK(rt.rhead == NULL, "ready head of an empty queue");
          break;
        }
        CHECK(rt.rhead == &tasks[ready[0]], "ready head differs");
        sp_ready_remove(&rt, rt.rhead);
        queued[ready[0]] = 0;
        memmove(&ready[0], &ready[1], (size_t)(nready - 1) * sizeof ready[0]);
        nready--;
        break;
      case 7: /* wait list push */
        k = ARG() % NWAIT;
        j = ARG() % NLISTS;
        if (on_list[k]) break;
        sp_wlist_push(&lists[j], &waiters[k]);
        on_list[k] = j + 1;
        wl[j][nwl[j]++] = k;
        break;
      default: /* wait list remove */
        k = ARG() % NWAIT;
        if (!on_list[k]) break;
        j = on_list[k] - 1;
        sp_wlist_remove(&lists[j], &waiters[k]);
        on_list[k] = 0;
        for (i = 0; i < nwl[j] && wl[j][i] != k; i++) {
        }
        memmove(&wl[j][i], &wl[j][i + 1],
                (size_t)(nwl[j] - i - 1) * sizeof wl[j][0]);
        nwl[j]--;
        break;
    }
    check_all();
  }
#undef ARG
  free(rt.heap);
  rt.heap = NULL;
  return 0;
}
