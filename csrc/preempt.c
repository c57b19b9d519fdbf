/*
** preempt.c -- the options preempt = N and warn_blocking = seconds: a
** count hook on a task, installed only when a slice has run long.
**
** Lua 5.4's count hook is not "a C call every N instructions": while any
** hook is set, luaV_execute calls luaG_traceexec before EVERY instruction
** (it decrements the count there), so a task with a permanent count hook
** runs all its Lua code about twice as slowly, whatever N is
** (bench/README.md#preemption has the callgrind numbers).  So, with the
** real clock, no hook is set while slices are short:
**
**   - the scheduler publishes, per runtime, which coroutine it is resuming
**     and a slice counter (a few plain stores per resume), and marks the
**     runtime busy while it runs a ready round;
**   - one watchdog thread per process (running while any runtime uses it)
**     samples the busy runtimes every tick; a slice it sees at two
**     consecutive ticks has run for at least a tick, and it sends the
**     runtime's thread one SIGURG for that slice (pthread_sigqueue, with a
**     marker, so that other SIGURGs go to the handler that was there
**     before);
**   - the handler, on that thread, arms the count hook on the slice's
**     coroutine: lua_sethook may be called from a signal handler (ldebug.c
**     says so; lua.c's SIGINT handler does it).  It is never called from
**     another thread: settraps() walks the CallInfo list the VM changes;
**   - the hook yields N instructions later (or reports the slice for
**     warn_blocking), and the scheduler removes it when the slice ends.
**
** When nothing runs -- the runtime polls, or is idle -- the watchdog sleeps
** on a condition variable and the scheduler wakes it when a round starts
** (only then: a flag says it sleeps).  SIGURG is ignored by default, so a
** signal that arrives after the handler was removed does no harm; the
** handler is installed with SA_RESTART while a runtime uses the watchdog
** and the previous disposition is restored when the last one closes.
**
** With clock = "virtual" (deterministic tests) and where the signal cannot
** be used (no pthread_sigqueue, the thread or handler cannot be made), the
** exact count hook of before is set on every task: a slice then ends after
** N instructions, at twice the cost of Lua code.
*/
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pthread_sigqueue */
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the hooks ------------------------------------------------------- */

/* Cancellation that an await would raise now. */
static int cancel_pending(sp_task *t) {
  sp_tscope *sc;
  if (t->cancel && t->shield == 0) return 1;
  if (t->nexpired == 0) return 0;
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->expired && sc->shield >= t->shield) return 1;
  return 0;
}

static void task_hook(lua_State *L, lua_Debug *ar);

/* The count hook of a task (and of nothing else: a nested coroutine
** inherits it, and returns at once).  Exact mode: it stays set, and every
** call yields.  Watchdog mode: armed for one slice, by the signal handler
** or at resume; it yields only when armed for preemption (pre->yield). */
static void task_hook(lua_State *L, lua_Debug *ar) {
  sp_box *box = sp_box_get(L);
  sp_runtime *rt = box->cur;
  sp_task *t = rt ? rt->current : NULL;
  sp_preempt *p;
  (void)ar;
  if (t == NULL || t->co != L) return; /* a nested coroutine: not ours */
  p = rt->pre;
  if (rt->warn_blocking > 0 && !t->warned) {
    double secs = (double)(uv_hrtime() - rt->slice_start) / 1e9;
    if (secs > rt->warn_blocking) sp_warn_blocking(L, t, secs);
  }
  if (p != NULL && !p->yield) { /* armed for warn_blocking only: done */
    lua_sethook(L, NULL, 0, 0);
    p->armed = 0;
    return;
  }
  if (rt->preempt > 0) {
    if (p != NULL) /* armed with a count of 1 (a cancellation): from now */
      lua_sethook(L, task_hook, LUA_MASKCOUNT, rt->preempt); /* every N */
    if (lua_isyieldable(L)) {
      sp_check_cancel(L, t); /* aborts reach CPU-bound tasks here */
      t->state = SP_T_READY;
      t->fast = 0;
      lua_yield(L, 0);
    } /* else inside a C call: try again N instructions later */
  }
}

/* Raises the pending cancellation of a task resumed from a bare
** coroutine.yield.  It is a return hook: it runs as coroutine.yield
** returns, so the error comes out of the yield itself (a pcall around it
** catches it, as for any await).  Then the usual hooks are restored. */
static void cancel_hook(lua_State *L, lua_Debug *ar) {
  sp_box *box = sp_box_get(L);
  sp_runtime *rt = box->cur;
  sp_task *t = rt ? rt->current : NULL;
  (void)ar;
  if (t == NULL || t->co != L) return;
  sp_set_hooks(rt, L);
  sp_check_cancel(L, t);
}

void sp_hook_cancel(lua_State *co) {
  lua_sethook(co, cancel_hook, LUA_MASKRET, 0);
}

void sp_set_hooks(sp_runtime *rt, lua_State *co) {
  if (rt->pre == NULL && (rt->preempt > 0 || rt->warn_blocking > 0))
    lua_sethook(co, task_hook, LUA_MASKCOUNT,
                rt->preempt > 0 ? rt->preempt : 10000);
  else if (lua_gethook(co) != NULL)
    lua_sethook(co, NULL, 0, 0); /* inherited, or left by a cancel hook */
}

#if defined(__linux__) && defined(__GLIBC__)

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* ---- the signal handler ---------------------------------------------- */

/* The innermost runtime running a ready round on this thread (nested
** runs stack through pre->tls_prev).  initial-exec: reading it in the
** signal handler is one load, never an allocation. */
static __thread sp_preempt *tls_cur __attribute__((tls_model("initial-exec")));

static const char wd_marker = 0; /* si_value of the watchdog's signals */
static struct sigaction wd_prev; /* SIGURG's disposition before ours */

static void on_sigurg(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  sp_preempt *p;
  if (si == NULL || si->si_code != SI_QUEUE ||
      si->si_value.sival_ptr != (void *)&wd_marker) {
    /* not ours: to the previous handler (default and ignore: nothing) */
    if (wd_prev.sa_flags & SA_SIGINFO) {
      if (wd_prev.sa_sigaction != NULL) wd_prev.sa_sigaction(sig, si, uc);
    } else if (wd_prev.sa_handler != SIG_DFL && wd_prev.sa_handler != SIG_IGN)
      wd_prev.sa_handler(sig);
    errno = saved;
    return;
  }
  for (p = tls_cur; p != NULL; p = p->tls_prev) {
    lua_State *co = atomic_load_explicit(&p->co, memory_order_relaxed);
    unsigned s = atomic_load_explicit(&p->seq, memory_order_relaxed);
    if (co != NULL && s == atomic_load(&p->target)) {
      if (atomic_load(&p->target_yield)) p->yield = 1;
      lua_sethook(co, task_hook, LUA_MASKCOUNT, p->yield ? p->n : 1);
      p->armed = 1;
      break;
    }
  }
  errno = saved;
}

/* ---- the watchdog ------------------------------------------------------ */

/* wd_life serializes starting and stopping the thread (and the handler);
** wd_lock guards the list and every wd_ field of the records. */
static pthread_mutex_t wd_life = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond;
static int wd_cond_made;
static sp_preempt *wd_list;
static int wd_users, wd_stop, wd_running;
static pthread_t wd_thread;
static atomic_int wd_sleeping; /* waiting without a deadline */

#define MS 1000000ull

/* Sends the runtime's thread the signal that arms its slice s. */
static void wd_fire(sp_preempt *p, unsigned s, int yield) {
  union sigval v;
  atomic_store(&p->target_yield, yield);
  atomic_store(&p->target, s);
  v.sival_ptr = (void *)&wd_marker;
  pthread_sigqueue(atomic_load(&p->thread), SIGURG, v);
}

/* CPU time of the thread that runs p's round, ns (0: cannot tell). */
static uint64_t wd_cpu(sp_preempt *p) {
  struct timespec ts;
  if (clock_gettime((clockid_t)atomic_load(&p->cpuclock), &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One look at every runtime.  A slice is preempted once its thread has
** spent p->tick of CPU time since the watchdog first saw it (time the
** thread waited for a core does not count); warn_blocking counts wall
** time from the slice's start.  Returns the next tick in ns (0: nothing
** is busy).  Under wd_lock. */
static uint64_t wd_scan(void) {
  uint64_t tick = 0, now = uv_hrtime();
  sp_preempt *p;
  for (p = wd_list; p != NULL; p = p->wd_next) {
    unsigned s;
    uint64_t t = 0, cpu;
    if (!atomic_load(&p->busy)) {
      p->wd_seen = 0;
      continue;
    }
    if (p->tick > 0) t = p->tick;
    if (p->warn > 0 && (t == 0 || p->warn / 2 < t)) t = p->warn / 2;
    if (t < MS) t = MS;
    if (tick == 0 || t < tick) tick = t;
    s = atomic_load(&p->seq);
    if (atomic_load(&p->co) == NULL) { /* between two slices */
      p->wd_seen = 0;
      continue;
    }
    if (p->warn > 0 && p->wd_warned != s &&
        now - atomic_load(&p->start) > p->warn) {
      p->wd_warned = s;
      wd_fire(p, s, 0);
    }
    if (p->tick == 0 || p->wd_fired == s) continue;
    cpu = wd_cpu(p);
    if (!p->wd_seen || p->wd_seq != s) {
      p->wd_seen = 1;
      p->wd_seq = s;
      p->wd_at = cpu;
    } else if (cpu - p->wd_at >= p->tick) {
      p->wd_fired = s; /* one signal per slice: it may be in a C call */
      wd_fire(p, s, 1);
    }
  }
  return tick;
}

static int wd_any_busy(void) {
  sp_preempt *p;
  for (p = wd_list; p != NULL; p = p->wd_next)
    if (atomic_load(&p->busy)) return 1;
  return 0;
}

static void *wd_main(void *arg) {
  sigset_t all;
  (void)arg;
  sigfillset(&all); /* signals are for the other threads */
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&wd_lock);
  while (!wd_stop) {
    uint64_t tick = wd_scan();
    if (tick == 0) {
      atomic_store(&wd_sleeping, 1); /* then look again: see round() */
      if (!wd_any_busy() && !wd_stop) pthread_cond_wait(&wd_cond, &wd_lock);
      atomic_store(&wd_sleeping, 0);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += (time_t)(tick / 1000000000u);
      ts.tv_nsec += (long)(tick % 1000000000u);
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
    }
  }
  pthread_mutex_unlock(&wd_lock);
  return NULL;
}

/* The first user installs the handler and starts the thread.  Under
** wd_life.  Returns 0 or -1. */
static int wd_start(void) {
  struct sigaction sa;
  pthread_attr_t attr;
  int ok;
  if (!wd_cond_made) {
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ok = pthread_cond_init(&wd_cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok) return -1;
    wd_cond_made = 1;
  }
  if (sigaction(SIGURG, NULL, &wd_prev) != 0) return -1;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigurg;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGURG, &sa, NULL) != 0) return -1;
  wd_stop = 0;
  if (pthread_attr_init(&attr) != 0) goto fail;
  pthread_attr_setstacksize(&attr, 64 * 1024);
  ok = pthread_create(&wd_thread, &attr, wd_main, NULL) == 0;
  pthread_attr_destroy(&attr);
  if (!ok) goto fail;
  wd_running = 1;
  return 0;
fail:
  sigaction(SIGURG, &wd_prev, NULL);
  return -1;
}

/* The last user stops the thread and puts the previous handler back,
** unless someone replaced ours meanwhile.  Under wd_life. */
static void wd_end(void) {
  struct sigaction cur;
  pthread_mutex_lock(&wd_lock);
  wd_stop = 1;
  pthread_cond_signal(&wd_cond);
  pthread_mutex_unlock(&wd_lock);
  pthread_join(wd_thread, NULL);
  wd_running = 0;
  if (sigaction(SIGURG, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
      cur.sa_sigaction == on_sigurg)
    sigaction(SIGURG, &wd_prev, NULL);
}

/* The runtime closes (an owned entry: no Lua). */
static void preempt_close(sp_owned *o) {
  sp_preempt *p = sp_container_of(o, sp_preempt, own);
  sp_preempt **pp;
  pthread_mutex_lock(&wd_life);
  pthread_mutex_lock(&wd_lock);
  for (pp = &wd_list; *pp != NULL; pp = &(*pp)->wd_next)
    if (*pp == p) {
      *pp = p->wd_next;
      break;
    }
  wd_users--;
  pthread_mutex_unlock(&wd_lock);
  if (wd_users == 0 && wd_running) wd_end();
  pthread_mutex_unlock(&wd_life);
  if (tls_cur == p) tls_cur = p->tls_prev;
  p->rt->pre = NULL;
  sp_disown(&p->own);
  free(p);
}

int sp_preempt_start(sp_runtime *rt) {
  sp_preempt *p;
  int ok = 1;
  if (rt->virtual_clock || (rt->preempt == 0 && rt->warn_blocking == 0))
    return 0;
  if ((p = (sp_preempt *)calloc(1, sizeof *p)) == NULL) return 0;
  p->rt = rt;
  p->n = rt->preempt;
  /* a quantum long enough that the armed hook (N instructions at twice
  ** the cost) stays about 1% of the slice: N x 0.1 us, at least 2 ms */
  if (rt->preempt > 0) p->tick = (uint64_t)rt->preempt * 100u;
  if (p->tick > 0 && p->tick < 2 * MS) p->tick = 2 * MS;
  if (rt->warn_blocking > 0) p->warn = (uint64_t)(rt->warn_blocking * 1e9);
  atomic_init(&p->co, NULL);
  atomic_init(&p->seq, 0);
  atomic_init(&p->target, (unsigned)-1);
  atomic_init(&p->target_yield, 0);
  atomic_init(&p->busy, 0);
  atomic_init(&p->start, 0);
  atomic_init(&p->thread, 0); /* set by the first round */
  atomic_init(&p->cpuclock, (int)CLOCK_MONOTONIC);
  pthread_mutex_lock(&wd_life);
  if (!wd_running && wd_start() != 0) ok = 0;
  if (ok) {
    pthread_mutex_lock(&wd_lock);
    p->wd_next = wd_list;
    wd_list = p;
    wd_users++;
    pthread_mutex_unlock(&wd_lock);
  }
  pthread_mutex_unlock(&wd_life);
  if (!ok) {
    free(p);
    return 0;
  }
  rt->pre = p;
  sp_own(rt, &p->own, preempt_close);
  return 1;
}

void sp_preempt_round(sp_runtime *rt, int on) {
  sp_preempt *p = rt->pre;
  if (on) {
    if (tls_cur != p) { /* (p is on top after a round that raised) */
      p->tls_prev = tls_cur;
      tls_cur = p;
    }
    if (!pthread_equal((pthread_t)atomic_load(&p->thread), pthread_self())) {
      clockid_t c;
      atomic_store(&p->thread, pthread_self());
      if (pthread_getcpuclockid(pthread_self(), &c) == 0)
        atomic_store(&p->cpuclock, (int)c);
    }
    atomic_store(&p->busy, 1);
    if (atomic_load(&wd_sleeping)) { /* rare: the first round after idling */
      pthread_mutex_lock(&wd_lock);
      pthread_cond_signal(&wd_cond);
      pthread_mutex_unlock(&wd_lock);
    }
  } else { /* also from leave(): a round that raised ends here */
    atomic_store_explicit(&p->busy, 0, memory_order_relaxed);
    if (tls_cur == p) tls_cur = p->tls_prev;
  }
}

#else /* no pthread_sigqueue: the exact count hook */

int sp_preempt_start(sp_runtime *rt) {
  (void)rt;
  return 0;
}

void sp_preempt_round(sp_runtime *rt, int on) {
  (void)rt;
  (void)on;
}

#endif

/* Before a slice: publish it; a task with a cancellation to deliver gets
** the hook at once (its slice may never await). */
void sp_preempt_enter(sp_runtime *rt, sp_task *t) {
  sp_preempt *p = rt->pre;
  unsigned s = atomic_load_explicit(&p->seq, memory_order_relaxed) + 1;
  p->yield = 0;
  if (rt->warn_blocking > 0)
    atomic_store_explicit(&p->start, rt->slice_start, memory_order_relaxed);
  atomic_store_explicit(&p->seq, s, memory_order_relaxed);
  atomic_store_explicit(&p->co, t->co, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  if (rt->preempt > 0 && t->wake != SP_WAKE_INTERRUPT &&
      lua_gethook(t->co) == NULL && cancel_pending(t)) {
    p->yield = 1;
    p->armed = 1;
    lua_sethook(t->co, task_hook, LUA_MASKCOUNT, 1);
  }
}

/* After it: nothing may arm co any more; an armed hook goes. */
void sp_preempt_leave(sp_runtime *rt, lua_State *co) {
  sp_preempt *p = rt->pre;
  atomic_store_explicit(&p->co, NULL, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  if (p->armed) {
    p->armed = 0;
    lua_sethook(co, NULL, 0, 0);
  }
}
