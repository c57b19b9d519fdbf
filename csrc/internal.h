/*
** internal.h -- private structures and sp_ prototypes shared by the C files.
**
** Ownership in one paragraph: a runtime (struct sp_runtime) is a full
** userdata; it owns a uv_loop_t (or borrows the host's), one uv_timer_t that
** stands for the whole timer heap, the ready queue, the list of live tasks,
** and -- through rt->owned -- every libuv handle, request and worker job
** any subsystem made for it.  A task (struct sp_task) is a full userdata --
** it *is* the join handle -- whose first user value is its coroutine.
** Unfinished tasks are anchored in the runtime's anchors table (one slot
** each, one release site: sp_finish), and they keep the runtime alive;
** finished tasks live as long as their handles.  A waiting task points at
** a const sp_waitops record.  libuv callbacks never run Lua: they record
** results and call sp_wake().
**
** Layers: the core (module, runtime, sched, task, wait, timer, cancel,
** host, capi, dump) never calls into the I/O files; the I/O layer (io.h)
** and the rest build on sp_own, sp_await_block and sp_wake.
*/
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "compat.h"
#include "spindle.h"

typedef struct sp_runtime sp_runtime;
typedef struct sp_task sp_task;
typedef struct sp_tscope sp_tscope;
typedef struct sp_wpool sp_wpool;     /* blocking.c: worker states */
typedef struct sp_preempt sp_preempt; /* preempt.c: the CPU-time timer */

/* Metatable names (also the __name shown by luaL_typeerror). */
#define SP_TASK_MT "spindle.task"
#define SP_TASK_GC_MT "spindle.task*" /* failed, not yet observed */
#define SP_RT_MT "spindle.runtime"
#define SP_TIMEOUT_MT "spindle.timeout"
#define SP_CANCEL_MT "spindle.cancelled"

/* Largest accepted duration in seconds (about 31 years). */
#define SP_MAX_SECONDS 1e9

/* After this many awaits in a row that completed without waiting, an await
** yields anyway (docs/blocking.md#io-fairness). */
#define SP_FAST_BUDGET 128

/* ---- per-Lua-state box: which runtime is running now ------------------ */

typedef struct sp_box {
  sp_runtime *cur;        /* the runtime inside run/step in this Lua state */
  const void *task_mt;    /* the handle metatables, to recognise handles */
  const void *task_gc_mt; /* without a lookup by name */
} sp_box;

/* Every C function of the module has upvalue 1 = the box userdata. */
#define sp_box_of(L) ((sp_box *)lua_touserdata((L), lua_upvalueindex(1)))
sp_box *sp_box_get(lua_State *L); /* from the registry; [-0, +0, m] */
/* luaL_setfuncs into the table at -1 with the box as upvalue 1. */
void sp_setfuncs(lua_State *L, const luaL_Reg *fns); /* [-0, +0, m] */
/* The same with the nup values at the top as upvalues 2..nup+1 (popped).
** [-nup, +0, m] */
void sp_setfuncs_up(lua_State *L, const luaL_Reg *fns, int nup);

/* ---- timers (timer.c) -------------------------------------------------- */

typedef struct sp_timer sp_timer;

/* A heap entry's owner: a sleeping task or a cancellation scope.  fire runs
** when the entry is due (it has been removed from the heap); no Lua. */
struct sp_timer {
  uint64_t seq; /* insertion order, breaks ties FIFO */
  void (*fire)(sp_runtime *rt, sp_timer *tm);
  int index; /* slot in the heap, -1 while not armed */
};

/* A heap slot keeps its deadline next to the pointer: sifting compares
** deadlines without touching the (scattered) timer records. */
typedef struct sp_heapent {
  uint64_t deadline;
  sp_timer *tm;
} sp_heapent;

void sp_timer_init(sp_timer *tm, void (*fire)(sp_runtime *, sp_timer *));
void sp_timer_add(sp_runtime *rt, sp_timer *tm, uint64_t deadline);
void sp_timer_remove(sp_runtime *rt, sp_timer *tm);
sp_timer *sp_timer_min(sp_runtime *rt);
uint64_t sp_timer_deadline(sp_runtime *rt, const sp_timer *tm); /* armed */
void sp_timer_reserve(lua_State *L, sp_runtime *rt); /* [-0, +0, m] */
int sp_timers_fire(sp_runtime *rt); /* fires due timers; count fired */
uint64_t sp_now(sp_runtime *rt);    /* ns; fresh clock or virtual */

/* ---- waits: one const record per kind of wait ------------------------ */

/* What a waiting task waits for.  Every await passes one of these (a
** file-scope const) to sp_await_block; sp_wake clears t->wait.
**   name      a short phrase for spindle.dump ("channel recv");
**   undo      detaches the task from the object it waits on when it is
**             aborted or timed out (NULL: nothing to detach); C only;
**   describe  writes a longer phrase ("tcp read 127.0.0.1:4000") into buf,
**             NULL to use name; runs no Lua and must not fail. */
typedef struct sp_waitops {
  const char *name;
  void (*undo)(sp_task *t);
  void (*describe)(sp_task *t, char *buf, size_t size);
} sp_waitops;

/* Why a task was resumed. */
enum { SP_WAKE_OK = 0, SP_WAKE_INTERRUPT = 1 };

/* A FIFO list of waiting tasks: circular through t->w.next/prev. */
typedef struct sp_wlist {
  sp_task *head;
} sp_wlist;

void sp_wlist_push(sp_wlist *l, sp_task *t);
void sp_wlist_remove(sp_wlist *l, sp_task *t);

/* ---- finish hooks: who learns that a task ended ----------------------- */

/* An entry in a task's list of finish hooks, walked once by sp_finish in
** the order they were added.  fn runs no Lua (it may wake tasks); the
** hook is unlinked before fn runs.  join, spindle.scope and the watch
** sets of join_all/race are built on these. */
typedef struct sp_fhook sp_fhook;
struct sp_fhook {
  sp_fhook *next, *prev; /* circular; next == NULL while not linked */
  void (*fn)(sp_fhook *h, sp_task *finished);
};

void sp_fhook_add(sp_task *t, sp_fhook *h, void (*fn)(sp_fhook *, sp_task *));
void sp_fhook_remove(sp_task *t, sp_fhook *h); /* idempotent */

/* ---- owned handles and requests --------------------------------------- */

/* Everything a runtime owns outside the Lua heap -- libuv handles,
** requests in flight, thread-pool work -- is linked into rt->owned with
** the function that closes or detaches it when the runtime closes (libuv's
** handle_queue is the model).  An entry unlinks itself (sp_disown) at the
** one place its memory is released: a close callback, the last callback of
** a request, a __gc.  Closing the runtime calls every close once, then
** runs the loop until the list is empty and the loop closes. */
typedef struct sp_owned sp_owned;
struct sp_owned {
  sp_owned *next, *prev;      /* NULL while not linked */
  void (*close)(sp_owned *o); /* no Lua; may sp_disown(o) itself */
};

void sp_own(sp_runtime *rt, sp_owned *o, void (*close)(sp_owned *));
void sp_disown(sp_owned *o); /* idempotent */

/* ---- tasks ------------------------------------------------------------- */

/* Task states; see the state machine at the top of task.c. */
enum {
  SP_T_NEW = 0,  /* spawned, queued, never resumed */
  SP_T_READY,    /* started, queued to run */
  SP_T_RUNNING,  /* being resumed now */
  SP_T_WAITING,  /* suspended at an await */
  SP_T_DONE,     /* returned */
  SP_T_FAILED,   /* raised */
  SP_T_CANCELLED /* aborted before it finished */
};

#define sp_task_finished(t) ((t)->state >= SP_T_DONE)

/* Kept small: a task idle in an await should cost little more than its
** coroutine (bench/: RSS per idle task; the breakdown is in
** bench/README.md).  96 bytes on 64-bit targets: with Lua's userdata header
** and one user value, a 152-byte block (a 160-byte malloc chunk).  Fields
** that are never live together share storage:
**   - a task in the ready queue waits for nothing, so the ready-queue links
**     share the union of w (w.obj stays: continuations read it after the
**     wake);
**   - born is read (by dump) only while the task lives, nres only once it
**     has ended. */
struct sp_task {
  sp_runtime *rt; /* valid while unfinished or unobserved */
  lua_State *co;  /* its coroutine while it runs (user value 1);
                               NULL before its first slice and once it
                               ended (the coroutine went back to the
                               runtime's pool) */
  lua_Integer id;
  sp_tscope *scopes;      /* innermost open spindle.timeout */
  const sp_waitops *wait; /* what it waits for, NULL when not waiting */
  struct {
    void *obj; /* the object waited on; kept after the wake */
    union {
      struct {
        sp_task *next, *prev; /* links in an sp_wlist */
      };
      sp_timer timer; /* sleep */
      sp_fhook hook;  /* join: in the target's finish hooks */
      struct {
        sp_task *rnext, *rprev; /* ready queue (sched.c): READY, NEW */
      };
    };
  } w;
  sp_fhook *hooks; /* finish hooks (join, scope, watch sets) */
  union {
    uint32_t born; /* while it lives: ms since the runtime started (dump) */
    int nres;      /* once it ended, SP_R_INLINE/PACKED: how many results */
  };
  int anchor;                 /* slot in the anchors table, 0 when none */
  unsigned short shield;      /* depth of spindle.shield calls */
  unsigned short nuv;         /* user values: 1 + the arguments */
  unsigned char fast;         /* awaits completed without waiting, in a row */
  unsigned char state;        /* SP_T_* */
  unsigned char rkind;        /* SP_R_*: how its end is kept */
  unsigned char cancel : 1;   /* abort requested */
  unsigned char failed : 1;   /* body raised (set by task_body_k) */
  unsigned char observed : 1; /* a failure was seen by join/result */
  unsigned char warned : 1;   /* warn_blocking reported */
  unsigned char bare : 1;     /* suspended in a bare coroutine.yield */
  unsigned char stashed : 1;  /* a traceback is stashed for its thread */
  unsigned char wake : 1;     /* SP_WAKE_* for the pending resume */
  unsigned char parked : 1;   /* waits without a coroutine (sp_await_park) */
};

/* What a task's user values hold (task.c has the picture):
**   not started   1..nuv: fn, its arguments
**   running       1: the coroutine
**   ended         by rkind: */
enum {
  SP_R_NONE = 0, /* nothing (cancelled) */
  SP_R_INLINE,   /* results 1..nres in user values 1..nres */
  SP_R_PACKED,   /* user value 1: a table of results 1..nres */
  SP_R_ERROR,    /* user value 1: the error; 2 (if nuv > 1): traceback */
  SP_R_ERRPACK   /* user value 1: {error, traceback} */
};

/* A spindle.timeout() in progress; the userdata is also its error value. */
/* A cancellation scope on a task: spindle.timeout, or spindle.scope's
** fail-fast scope.  on_abort, if set, runs when the task is aborted (before
** the abort reaches the task itself): spindle.scope aborts its children
** there, so that they are aborted first. */
struct sp_tscope {
  sp_timer timer;
  sp_task *task;
  sp_tscope *outer;
  void (*on_abort)(lua_State *L, sp_tscope *sc); /* [-0, +0, m] */
  int shield; /* task->shield when it was opened */
  int expired;
  int open;
};

/* ---- the runtime ------------------------------------------------------- */

struct sp_runtime {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  uv_timer_t timer; /* armed to the earliest deadline while polling */
  sp_box *box;
  lua_State *L;           /* the main thread of the Lua state */
  sp_task *current;       /* the task being resumed */
  sp_task *main;          /* main task of run(main) */
  sp_task *rhead, *rtail; /* ready queue */
  sp_heapent *heap;
  int nheap, heapcap;
  uint64_t tseq;
  uint64_t vnow;        /* virtual clock, ns */
  uint64_t t0;          /* clock at creation, ns */
  sp_wlist next_step;   /* tasks in spindle.next_step() */
  uint64_t slice_start; /* ns, for warn_blocking */
  lua_Integer nextid;
  int *freeslots;
  int nfree, freecap, nslots;
  int anchors_ref;    /* registry ref: the anchors table */
  int pool_ref;       /* registry ref: coroutines to reuse */
  int deadlock_ref;   /* registry ref: the dump at the last deadlock */
  int npool;          /* how many are in it */
  int self_ref;       /* registry ref to this userdata until closed */
  int host_owned;     /* made by spindle_new: self_ref kept for good */
  int on_error_ref;   /* registry ref or LUA_NOREF */
  int on_warning_ref; /* registry ref or LUA_NOREF */
  int virtual_clock;
  int use_luv;          /* loop = "luv": luv's default loop */
  int preempt;          /* instructions per slice, 0: off */
  double warn_blocking; /* seconds, 0: off */
  int own;              /* loop is own_loop */
  int polling;          /* inside uv_run */
  int closing, closed;
  int shutting_down; /* aborting everything: new tasks start cancelled */
  int inflight;      /* requests that will complete in real time */
  int deadlock;      /* nothing can wake the waiting tasks */
  int deadlocked;    /* run ended because of a deadlock */
  sp_owned owned;    /* sentinel: everything the runtime owns */
  void *http;        /* the HTTP client's multi handle and pool
                          ** (http_client.c): made by the first request,
                          ** an owned entry, NULL again once closed */
  sp_wpool *wpool;   /* spindle.blocking's worker states, or NULL */
  void *sbufs;       /* stream.c's cache of given-back read buffers, an
                     ** owned entry, or NULL */
  sp_preempt *pre;   /* preempt/warn_blocking by a CPU-time timer, or NULL
                     ** (then the exact count hook is on every task) */
  /* Called after every poll, from the scheduler (not from libuv): the
  ** command's signal handlers act here.  May run Lua.  [-0, +0, m] */
  void (*after_poll)(lua_State *L, sp_runtime *rt);
  void *after_poll_data;
  lua_Integer spawned, finished, failed, cancelled, live, nready, polls;
};

/* runtime.c */
sp_runtime *sp_runtime_new(lua_State *L, int optidx, uv_loop_t *loop);
sp_runtime *sp_runtime_check(lua_State *L, int idx);
void sp_runtime_close(lua_State *L, sp_runtime *rt);
void sp_push_deadlock(lua_State *L, sp_runtime *rt); /* [-0, +1, m] */
int sp_run_main(lua_State *L, sp_runtime *rt, int nargs);
void sp_report_unobserved(lua_State *L, sp_runtime *rt);
void sp_shutdown(lua_State *L, sp_runtime *rt);
int sp_capi_step(lua_State *L, sp_runtime *rt, double max_seconds);
void sp_capi_run_all(lua_State *L, sp_runtime *rt);
void sp_runtime_pin(lua_State *L, sp_runtime *rt, int on); /* [-0,+0,m] */

/* preempt.c (the top of the file explains).  The record is read by the
** SIGURG handler on the runtime's thread: atomics (lock-free, so safe in a
** handler) for what the scheduler publishes, volatile for the rest. */
struct sp_preempt {
  sp_owned own;
  sp_runtime *rt;
  sp_preempt *tls_prev;            /* the runtime running further out */
  _Atomic(lua_State *) co;         /* being resumed, NULL between slices */
  _Atomic unsigned seq;            /* slices started */
  _Atomic uint64_t start;          /* the slice's start (hrtime), for warn */
  volatile sig_atomic_t armed;     /* a hook is set for this slice */
  volatile sig_atomic_t yield;     /* ... and it preempts */
  volatile unsigned last;          /* the handler's: slice at the last tick */
  volatile unsigned fired, warned; /* ... slices armed */
  int n;                           /* preempt: the hook's count */
  uint64_t tick, warn;             /* ns; 0: off */
  int timer_made;                  /* 1: timer ticks for thread; -1: failed */
  void *timer;                     /* timer_t, on the CPU clock of thread */
  unsigned long thread;            /* pthread_t of the rounds */
};
int sp_preempt_start(sp_runtime *rt);                 /* 0: exact count hook */
void sp_preempt_round(sp_runtime *rt, int on);        /* around a ready round */
void sp_preempt_enter(sp_runtime *rt, sp_task *t);    /* before a slice */
void sp_preempt_leave(sp_runtime *rt, lua_State *co); /* after it */

/* blocking.c: hands the jobs queued during a ready round to libuv's
** thread pool; turn() calls it after every round.  [-0, +0, -] */
void sp_blocking_flush(sp_runtime *rt);

/* sched.c */
void sp_wake(sp_task *t, int why);
void sp_ready_push(sp_runtime *rt, sp_task *t);
void sp_ready_remove(sp_runtime *rt, sp_task *t);
void sp_run_ready(lua_State *L, sp_runtime *rt, uint64_t budget_end,
                  sp_task *until);
void sp_finish(lua_State *L, sp_runtime *rt, sp_task *t, int state);
void sp_push_anchors(lua_State *L, sp_runtime *rt);
void sp_push_task(lua_State *L, sp_task *t);
int sp_push_live(lua_State *L, sp_runtime *rt);
void sp_warn_blocking(lua_State *L, sp_task *t, double secs);

/* task.c */
sp_task *sp_spawn(lua_State *L, sp_runtime *rt, int nargs);
int sp_task_abort(lua_State *L, sp_task *t);
sp_task *sp_task_check(lua_State *L, int idx);
sp_task *sp_task_test(lua_State *L, int idx);
void sp_task_unobserved(lua_State *L, sp_task *t);
/* The reporter's second half: a warning message on top (a blocking task,
** say) about the task whose handle is at hidx goes to opts.on_warning(msg,
** handle) if the runtime has one, else to stderr.  Pops the message;
** never raises.  [-1, +0, -] */
void sp_warning(lua_State *L, sp_runtime *rt, int hidx);
void sp_interrupt(sp_task *t);
int sp_push_name(lua_State *L, int idx); /* [-0, +1, -] */
/* The end of a finished task whose handle is at idx: its results (returns
** how many), its error, its traceback (nil if none).  [-0, +n, m] */
int sp_task_push_results(lua_State *L, int idx, sp_task *t);
void sp_task_push_error(lua_State *L, int idx, sp_task *t);
void sp_task_push_traceback(lua_State *L, int idx, sp_task *t);
/* Gives a ready task that never ran its coroutine, from the pool; the
** task stays queued if this raises.  [-0, +0, m] */
void sp_task_start(lua_State *L, sp_runtime *rt, sp_task *t);
/* Keeps what a finished slice left on the coroutine (results, or
** traceback and error) in the handle, and gives the coroutine back to the
** pool.  Never raises.  [-0, +0, -] */
void sp_task_keep_end(lua_State *L, sp_runtime *rt, sp_task *t, int nres);
const char *sp_status_name(int state);

/* wait.c: the await protocol */
sp_task *sp_await_check(lua_State *L, const char *name);
void sp_check_cancel(lua_State *L, sp_task *t);
/* Would an await of t raise a cancellation now (an abort outside any
** shield, or an expired timeout opened at the current shield depth)? */
int sp_cancel_pending(sp_task *t);
void sp_resumed(lua_State *L, sp_task *t);
int sp_await_yield(lua_State *L, sp_task *t, lua_KFunction k, lua_KContext ctx);
int sp_await_block(lua_State *L, sp_task *t, const sp_waitops *ops, void *obj,
                   lua_KFunction k, lua_KContext ctx);
int sp_await_fast(lua_State *L, sp_task *t, lua_KFunction k, lua_KContext ctx);
/* Parks t: it waits for obj as with sp_await_block, but without its
** coroutine.  Only the task's own function may park it, and it must then
** return at once with one result: the function to call when the task is
** woken, with the task's arguments again (user values 2..nuv).  The slice
** ends with the coroutine back in the pool (sp_task_park_end); a wake,
** abort included, starts the function in a coroutine from the pool.  What
** the function keeps across a park lives in its arguments, not on its
** stack (http_server.c: an idle keep-alive connection holds no coroutine). */
void sp_await_park(sp_task *t, const sp_waitops *ops, void *obj);
void sp_task_park_end(lua_State *L, sp_runtime *rt, sp_task *t, int nres);
double sp_check_seconds(lua_State *L, int arg);
void sp_push_cancel_error(lua_State *L);
int sp_msgh(lua_State *L);
void sp_take_traceback(lua_State *co, int idx);
void sp_forget_traceback(lua_State *L, lua_State *co); /* [-0, +0, m] */
void sp_stashed_traceback(lua_State *L, int erridx);   /* [-0, +1, m] */
void sp_reraise_traceback(lua_State *L, int erridx, const char *what);
void sp_weak_keys(lua_State *L, const void *key); /* [-0, +0, m] */
void sp_set_hooks(sp_runtime *rt, lua_State *co);
void sp_hook_cancel(lua_State *co);

/* host.c: next_step and await */
void sp_host_step_begins(sp_runtime *rt);

/* cancel.c: timeout and shield */
void sp_tscope_fire(sp_runtime *rt, sp_tscope *sc);

/* Every library part, each adding its functions to the module table at -1
** (module.c opens them in order, as Lua's linit.c does).  [-0, +0, m] */
int sp_wait_open(lua_State *L);     /* is_cancelled, is_timeout */
int sp_task_open(lua_State *L);     /* spawn, yield, sleep, handles ... */
int sp_cancel_open(lua_State *L);   /* timeout, shield */
int sp_runtime_open(lua_State *L);  /* run, runtime, stats */
int sp_host_open(lua_State *L);     /* next_step, await */
int sp_blocking_open(lua_State *L); /* blocking */
int sp_sync_open(lua_State *L);     /* channel, semaphore, mutex, event */
int sp_scope_open(lua_State *L);    /* scope, _watch */
int sp_dump_open(lua_State *L);     /* dump, _watchdog, the Lua parts */
int sp_fs_open(lua_State *L);       /* fs */
int sp_process_open(lua_State *L);  /* process */
int sp_signal_open(lua_State *L);   /* signal */
int sp_net_open(lua_State *L);      /* net: streams, tcp, unix, dns, udp */
int sp_http_open(lua_State *L);     /* _http_request: spindle.http's client */
int sp_http_server_open(lua_State *L); /* _http_head, _http_chunked */

/* dump.c: pushes the text of spindle.dump() for rt.  [-0, +1, m] */
void sp_dump_push(lua_State *L, sp_runtime *rt);

/* The class helper: every userdata class of the library is made with
** sp_newclass and its self checked with sp_checkclass (methods) or
** sp_testclass (__gc, which must ignore anything foreign).
** sp_newclass creates the metatable `name` with __name, __index = a table
** of `methods` (each with the module box as upvalue 1) and the
** metamethods `meta` (likewise).  Leaves it on the stack.  [-0, +1, m] */
void sp_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                 const luaL_Reg *meta);
void *sp_checkclass(lua_State *L, int idx, const char *name); /* [-0,+0,v] */
void *sp_testclass(lua_State *L, int idx, const char *name);  /* [-0,+0,-] */

/* The one close pattern: a class whose userdata starts with a pointer to
** its C object (NULL once closed) gets close(), __close and __gc from
** sp_setcloser (after sp_newclass): each calls close(obj) once and clears
** the pointer; __gc ignores anything not of the class.  close runs no Lua.
** [-0, +0, m] */
typedef struct sp_closer {
  const char *name; /* the class (metatable name) */
  void (*close)(void *obj);
} sp_closer;
void sp_setcloser(lua_State *L, const sp_closer *c);

/* Checks that the options table at arg (nil or none: nothing to check)
** has only string keys listed in known (NULL-terminated): a misspelt
** option raises "bad argument #arg to 'f' (unknown option 'timout')".
** [-0, +0, v] */
void sp_check_options(lua_State *L, int arg, const char *const known[]);

#define sp_container_of(p, type, field)                                        \
  ((type *)((char *)(p)-offsetof(type, field)))

#endif
