/*
** preempt.c -- the options preempt = N and warn_blocking = seconds: a
** count hook on a task, set only when a slice runs long.
**
** Lua 5.4's count hook is not "a C call every N instructions": while any
** hook is set, luaV_execute calls luaG_traceexec before EVERY instruction
** (it decrements the count there), so a task with a permanent count hook
** runs all its Lua code about twice as slowly, whatever N is
** (docs/blocking.md#when-a-task-is-preempted has the callgrind numbers).
** So, with the real clock, no hook is set while slices are short:
**
**   - each such runtime has a POSIX timer on the CPU clock of the thread
**     that runs its rounds (timer_create(CLOCK_THREAD_CPUTIME_ID), made
**     at the first round), which sends that thread SIGURG every quantum of
**     CPU time it uses: no signal while it sleeps (polls, idles), and no
**     other thread;
**   - the scheduler publishes which coroutine it is resuming and a slice
**     counter (plain stores per resume), and which runtime runs a round
**     on this thread (a thread-local, initial-exec: one load in the
**     handler);
**   - the handler, on that thread, arms the count hook on the running
**     slice's coroutine if that slice was already running at the previous
**     tick (it has run a quantum): lua_sethook may be called from a signal
**     handler
**     (ldebug.c says so; lua.c's SIGINT handler does it).  It is never
**     called from another thread: settraps() walks the CallInfo list the
**     VM changes;
**   - the hook yields N instructions later (or reports the slice for
**     warn_blocking), and the scheduler removes it when the slice ends.
**
** SIGURG is ignored by default, so a tick that arrives after the handler
** was removed does no harm; the handler is installed with SA_RESTART while
** a runtime uses it, passes signals that are not our timers' to the
** handler that was there before, and that one is put back when the last
** runtime closes.
**
** With clock = "virtual" (deterministic tests), and where per-thread CPU
** timers do not exist, the exact count hook of before is set on every
** task: a slice then ends after N instructions, at twice the cost of Lua
** code.
*/
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* SIGEV_THREAD_ID */
#endif

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MS 1000000ull

/* ---- the hooks ------------------------------------------------------- */

static void task_hook(lua_State *L, lua_Debug *ar);

/* The count hook of a task (and of nothing else: a nested coroutine
** inherits it, and returns at once).  Exact mode: it stays set, and every
** call yields.  Timer mode: armed for one slice, by the signal handler or
** at resume; it yields only when armed for preemption (pre->yield). */
static void task_hook(lua_State *L, lua_Debug *ar) {
  sp_box *box = sp_box_get(L);
  sp_runtime *rt = box->cur;
  sp_task *t = rt ? rt->current : NULL;
  sp_preempt *p;
  (void)ar;
  if (t == NULL || t->co != L) return; /* a nested coroutine: not ours */
  p = rt->pre;
  if (p != NULL && p->timer_made < 0) p = NULL; /* no timer: exact mode */
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

#if defined(__linux__) && defined(__GLIBC__) && defined(SIGEV_THREAD_ID)

#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- the signal handler ---------------------------------------------- */

/* The innermost runtime running a ready round on this thread (rounds of
** runtimes of other Lua states may nest: pre->tls_prev).  initial-exec:
** reading it in the signal handler is one load, never an allocation. */
static __thread sp_preempt *tls_cur __attribute__((tls_model("initial-exec")));

static struct sigaction sig_prev; /* SIGURG's disposition before ours */

/* p's slice has run long: the count hook, for yield (preempt) or for one
** instruction (warn_blocking). */
static void arm(sp_preempt *p, lua_State *co, int yield) {
  if (yield) p->yield = 1;
  lua_sethook(co, task_hook, LUA_MASKCOUNT, p->yield ? p->n : 1);
  p->armed = 1;
}

/* A tick of p's timer, on p's thread, after a quantum of its CPU time.
** A slice that was already running at the previous tick has run for at
** least a quantum: it gets the hook (once), and yields N instructions
** later.  warn_blocking looks at the slice's wall time. */
static void on_tick(sp_preempt *p) {
  lua_State *co = atomic_load_explicit(&p->co, memory_order_relaxed);
  unsigned s = atomic_load_explicit(&p->seq, memory_order_relaxed);
  unsigned last = p->last;
  p->last = co != NULL ? s : s - 1; /* between slices: none running */
  if (co == NULL) return;
  if (p->warn > 0 && p->warned != s &&
      uv_hrtime() - atomic_load_explicit(&p->start, memory_order_relaxed) >
          p->warn) {
    p->warned = s;
    arm(p, co, 0);
  }
  if (p->tick > 0 && last == s && p->fired != s) {
    p->fired = s;
    arm(p, co, 1);
  }
}

/* The value our timers carry: the record's address, with a tag in the low
** bits that calloc leaves zero, so that a signal of a timer deleted with a
** tick still pending is recognised (and ignored) without following it. */
#define TAG 0x5u
#define TAGGED(p) ((void *)((uintptr_t)(p) | TAG))

static void on_sigurg(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  sp_preempt *p;
  if (si != NULL && si->si_code == SI_TIMER &&
      ((uintptr_t)si->si_value.sival_ptr & 0xfu) == TAG) {
    /* ours; the pointer is only compared, never followed */
    for (p = tls_cur; p != NULL; p = p->tls_prev)
      if (TAGGED(p) == si->si_value.sival_ptr) {
        on_tick(p);
        break;
      }
    errno = saved;
    return;
  }
  /* not ours: to the previous handler (default and ignore: nothing) */
  if (sig_prev.sa_flags & SA_SIGINFO) {
    if (sig_prev.sa_sigaction != NULL) sig_prev.sa_sigaction(sig, si, uc);
  } else if (sig_prev.sa_handler != SIG_DFL && sig_prev.sa_handler != SIG_IGN)
    sig_prev.sa_handler(sig);
  errno = saved;
}

/* ---- the handler's users ------------------------------------------------ */

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_users;

/* The first user installs the handler.  Returns 0 or -1. */
static int sig_use(void) {
  struct sigaction sa;
  int r = 0;
  pthread_mutex_lock(&sig_lock);
  if (sig_users == 0) {
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigurg;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, NULL, &sig_prev) != 0) {
      r = -1;
    } else {
      /* on the alternate stack only if the handler we pass signals on to
      ** wanted it (Go's does): a library may have left a dangling one */
      sa.sa_flags = SA_SIGINFO | SA_RESTART | (sig_prev.sa_flags & SA_ONSTACK);
      if (sigaction(SIGURG, &sa, NULL) != 0) r = -1;
    }
  }
  if (r == 0) sig_users++;
  pthread_mutex_unlock(&sig_lock);
  return r;
}

/* The last user puts the previous handler back, unless someone replaced
** ours meanwhile. */
static void sig_unuse(void) {
  struct sigaction cur;
  pthread_mutex_lock(&sig_lock);
  if (--sig_users == 0 && sigaction(SIGURG, NULL, &cur) == 0 &&
      (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigurg)
    sigaction(SIGURG, &sig_prev, NULL);
  pthread_mutex_unlock(&sig_lock);
}

/* ---- the timer ------------------------------------------------------------ */

_Static_assert(sizeof(timer_t) <= sizeof(void *), "timer_t fits in a pointer");

static timer_t timer_of(sp_preempt *p) {
  timer_t t;
  memcpy(&t, &p->timer, sizeof t);
  return t;
}

/* The runtime closes (an owned entry: no Lua). */
static void preempt_close(sp_owned *o) {
  sp_preempt *p = sp_container_of(o, sp_preempt, own);
  if (p->timer_made > 0) timer_delete(timer_of(p));
  if (tls_cur == p) tls_cur = p->tls_prev;
  sig_unuse();
  p->rt->pre = NULL;
  sp_disown(&p->own);
  free(p);
}

int sp_preempt_start(sp_runtime *rt) {
  sp_preempt *p;
  if (rt->virtual_clock || (rt->preempt == 0 && rt->warn_blocking == 0))
    return 0;
  if ((p = (sp_preempt *)calloc(1, sizeof *p)) == NULL) return 0;
  p->rt = rt;
  p->n = rt->preempt;
  /* a quantum long enough that the armed hook (N instructions at twice
  ** the cost, ~4 ns more each) stays about 2% of it: N x 0.2 us, at
  ** least 2 ms (the kernel rounds it up to its tick: 4 ms at HZ=250) */
  if (rt->preempt > 0) p->tick = (uint64_t)rt->preempt * 200u;
  if (p->tick > 0 && p->tick < 2 * MS) p->tick = 2 * MS;
  if (rt->warn_blocking > 0) p->warn = (uint64_t)(rt->warn_blocking * 1e9);
  atomic_init(&p->co, NULL);
  atomic_init(&p->seq, 0);
  atomic_init(&p->start, 0);
  p->fired = p->warned = p->last = (unsigned)-1;
  if (sig_use() != 0) {
    free(p);
    return 0;
  }
  rt->pre = p;
  sp_own(rt, &p->own, preempt_close);
  return 1;
}

/* A timer on the CPU clock of the thread that runs the rounds, ticking
** every quantum of that thread's CPU time: no tick while it sleeps (polls,
** idles).  Made at the first round, again if the thread changes.  If it
** cannot be made (no memory, too many timers), every slice on this thread
** gets the exact count hook (sp_preempt_enter). */
static void timer_on(sp_preempt *p) {
  struct sigevent sev;
  struct itimerspec its;
  timer_t t;
  uint64_t every = p->tick;
  if (p->warn > 0 && (every == 0 || p->warn / 2 < every)) every = p->warn / 2;
  if (every < MS) every = MS;
  if (p->timer_made > 0) timer_delete(timer_of(p));
  p->timer_made = -1; /* until it works: not tried again on this thread */
  p->thread = pthread_self();
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGURG;
  sev.sigev_value.sival_ptr = TAGGED(p);
#ifdef sigev_notify_thread_id
  sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
#else
  sev._sigev_un._tid = (pid_t)syscall(SYS_gettid); /* glibc < 2.38 */
#endif
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &t) != 0) return;
  its.it_interval.tv_sec = (time_t)(every / 1000000000u);
  its.it_interval.tv_nsec = (long)(every % 1000000000u);
  its.it_value = its.it_interval;
  if (timer_settime(t, 0, &its, NULL) != 0) {
    timer_delete(t);
    return;
  }
  memcpy(&p->timer, &t, sizeof t);
  p->timer_made = 1;
}

void sp_preempt_round(sp_runtime *rt, int on) {
  sp_preempt *p = rt->pre;
  if (on) {
    if (p->timer_made == 0 || !pthread_equal(p->thread, pthread_self()))
      timer_on(p);
    if (tls_cur != p) { /* (p is on top after a round that raised) */
      p->tls_prev = tls_cur;
      tls_cur = p;
    }
  } else if (tls_cur == p) /* also from leave(): a round that raised */
    tls_cur = p->tls_prev;
}

#else /* no per-thread CPU timers: the exact count hook */

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
  if (p->timer_made < 0) { /* no timer on this thread: the exact hook */
    if (lua_gethook(t->co) != NULL) return; /* a cancel hook goes first */
    p->armed = 1;
    lua_sethook(t->co, task_hook, LUA_MASKCOUNT,
                rt->preempt > 0 ? rt->preempt : 10000);
  } else if (rt->preempt > 0 && t->wake != SP_WAKE_INTERRUPT &&
             lua_gethook(t->co) == NULL && sp_cancel_pending(t)) {
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
