/*
** internal.h -- private structures and sp_ prototypes shared by the C files.
**
** Ownership in one paragraph: a runtime (struct sp_runtime) is a full
** userdata; it owns a uv_loop_t (or borrows the host's), one uv_timer_t that
** stands for the whole timer heap, the ready queue and the list of live
** tasks.  A task (struct sp_task) is a full userdata -- it *is* the join
** handle -- whose first user value is its coroutine.  Unfinished tasks are
** anchored in the runtime's anchors table (one slot each, one release site:
** sched_finish); finished tasks live as long as their handles.  libuv
** callbacks never run Lua: they record results and call sp_wake().
*/
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

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

/* Metatable names (also the __name shown by luaL_typeerror). */
#define SP_TASK_MT "spindle.task"
#define SP_TASK_GC_MT "spindle.task*"  /* failed, not yet observed */
#define SP_RT_MT "spindle.runtime"
#define SP_TIMEOUT_MT "spindle.timeout"
#define SP_CANCEL_MT "spindle.cancelled"

/* Largest accepted duration in seconds (about 31 years). */
#define SP_MAX_SECONDS 1e9

/* After this many awaits in a row that completed without waiting, an await
** yields anyway (api.md section 6, I/O fairness). */
#define SP_FAST_BUDGET 128

/* ---- per-Lua-state box: which runtime is running now ------------------ */

typedef struct sp_box {
  sp_runtime *cur;      /* the runtime inside run/step in this Lua state */
  const void *task_mt;  /* the handle metatables, to recognise handles */
  const void *task_gc_mt; /* without a lookup by name */
} sp_box;

/* Every C function of the module has upvalue 1 = the box userdata. */
#define sp_box_of(L) ((sp_box *)lua_touserdata((L), lua_upvalueindex(1)))
sp_box *sp_box_get(lua_State *L); /* from the registry; [-0, +0, m] */
/* luaL_setfuncs into the table at -1 with the box as upvalue 1. */
void sp_setfuncs(lua_State *L, const luaL_Reg *fns); /* [-0, +0, m] */

/* ---- timers (timer.c) -------------------------------------------------- */

enum { SP_TM_SLEEP = 1, SP_TM_TIMEOUT = 2 };

typedef struct sp_timer {
  uint64_t deadline; /* ns on the runtime clock */
  uint64_t seq;      /* insertion order, breaks ties FIFO */
  int index;         /* slot in the heap, -1 while not armed */
  int kind;          /* SP_TM_* : who owns this entry */
} sp_timer;

/* A heap slot keeps its deadline next to the pointer: sifting compares
** deadlines without touching the (scattered) timer records. */
typedef struct sp_heapent {
  uint64_t deadline;
  sp_timer *tm;
} sp_heapent;

void sp_timer_add(sp_runtime *rt, sp_timer *tm, uint64_t deadline);
void sp_timer_remove(sp_runtime *rt, sp_timer *tm);
sp_timer *sp_timer_min(sp_runtime *rt);
void sp_timer_reserve(lua_State *L, sp_runtime *rt); /* [-0, +0, m] */
int sp_timers_fire(sp_runtime *rt); /* fires due timers; count fired */
uint64_t sp_now(sp_runtime *rt);    /* ns; fresh clock or virtual */

/* ---- waits ------------------------------------------------------------ */

/* What a waiting task waits for (for dump and for undo on abort). */
enum {
  SP_W_NONE = 0,
  SP_W_SLEEP,
  SP_W_JOIN,
  SP_W_FOREVER, /* sleep(inf)-like waits that only abort ends */
  SP_W_OTHER,
  SP_W_CHAN_RECV, /* sync.c: u.w.obj is the channel */
  SP_W_CHAN_SEND,
  SP_W_SEM,       /* semaphore acquire */
  SP_W_MUTEX,     /* mutex lock */
  SP_W_EVENT,     /* event wait */
  SP_W_SCOPE,     /* scope.c: waiting for a scope's children */
  SP_W_NEXT_STEP, /* host.c: spindle.next_step() */
  SP_W_AWAIT,     /* host.c: spindle.await(fn, ...) */
  SP_W_BLOCKING   /* blocking.c: spindle.blocking(fn, ...) */
};

/* dump.c: how spindle.dump() describes what a waiting task awaits.  A
** describer writes a short phrase ("channel recv", "tcp read
** 127.0.0.1:4000") for a task waiting with its SP_W_* kind into buf; it
** runs no Lua and must not fail.  Register one per kind from your
** sp_xxx_open (kinds without one read "waiting"). */
typedef void (*sp_describe_fn)(sp_task *t, char *buf, size_t size);
void sp_describe_register(int wkind, sp_describe_fn fn);

/* Why a task was resumed. */
enum { SP_WAKE_OK = 0, SP_WAKE_INTERRUPT = 1 };

/* A FIFO list of waiting tasks: circular through t->u.w, head only. */
typedef struct sp_wlist {
  sp_task *head;
} sp_wlist;

void sp_wlist_push(sp_wlist *l, sp_task *t);
void sp_wlist_remove(sp_wlist *l, sp_task *t);

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
** coroutine (bench/: RSS per idle task). */
struct sp_task {
  sp_runtime *rt;           /* valid while unfinished or unobserved */
  lua_State *co;            /* the coroutine (user value 1) */
  lua_Integer id;
  sp_task *rnext, *rprev;   /* ready queue */
  sp_tscope *scopes;        /* innermost open spindle.timeout */
  void (*undo)(sp_task *t); /* detach the current wait; C only */
  union {
    sp_timer timer; /* SP_W_SLEEP */
    struct {
      void *obj;            /* the object waited on */
      sp_task *next, *prev; /* links in its sp_wlist */
    } w;            /* every other wait */
  } u;
  sp_wlist joiners;         /* tasks waiting in join/result */
  uint32_t born;            /* ms since the runtime started, for dump */
  int anchor;               /* slot in the anchors table, 0 when none */
  unsigned short fast;      /* awaits completed without waiting, in a row */
  unsigned short shield;    /* depth of spindle.shield calls */
  unsigned short nexpired;  /* expired timeout scopes still open */
  unsigned char state;      /* SP_T_* */
  unsigned char wake;       /* SP_WAKE_* for the pending resume */
  unsigned char wkind;      /* SP_W_*: what the task waits for */
  unsigned char cancel : 1; /* abort requested */
  unsigned char failed : 1; /* body raised (set by task_body_k) */
  unsigned char observed : 1; /* a failure was seen by join/result */
  unsigned char warned : 1;   /* warn_blocking reported */
  unsigned char bare : 1;     /* suspended in a bare coroutine.yield */
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
  int shield;  /* task->shield when it was opened */
  int expired;
  int open;
};

/* ---- the runtime ------------------------------------------------------- */

struct sp_runtime {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  uv_timer_t timer;       /* armed to the earliest deadline while polling */
  sp_box *box;
  lua_State *L;           /* the main thread of the Lua state */
  sp_task *current;       /* the task being resumed */
  sp_task *main;          /* main task of run(main) */
  sp_task *rhead, *rtail; /* ready queue */
  sp_heapent *heap;
  int nheap, heapcap;
  uint64_t tseq;
  uint64_t vnow;          /* virtual clock, ns */
  uint64_t t0;            /* clock at creation, ns */
  sp_wlist next_step;     /* tasks in spindle.next_step() */
  uint64_t slice_start;   /* ns, for warn_blocking */
  lua_Integer nextid;
  int *freeslots;
  int nfree, freecap, nslots;
  int anchors_ref;        /* registry ref: the anchors table */
  int self_ref;           /* registry ref to this userdata until closed */
  int host_owned;         /* made by spindle_new: self_ref kept for good */
  int on_error_ref;       /* registry ref or LUA_NOREF */
  int virtual_clock;
  int use_luv;            /* loop = "luv": luv's default loop */
  int preempt;            /* instructions per slice, 0: off */
  double warn_blocking;   /* seconds, 0: off */
  int own;                /* loop is own_loop */
  int polling;            /* inside uv_run */
  int closing, closed;
  int shutting_down;      /* aborting everything: new tasks start cancelled */
  int inflight;           /* requests that will complete in real time */
  int nblocking;          /* spindle.blocking work items in flight */
  int sigint;             /* CLI: SIGINT seen, abort main once */
  int sigint_seen;
  int deadlock;           /* nothing can wake the waiting tasks */
  int deadlocked;         /* run ended because of a deadlock */
  uv_signal_t *sigint_handle;
  lua_Integer spawned, finished, failed, cancelled, live, nready, polls;
};

/* runtime.c */
sp_runtime *sp_runtime_new(lua_State *L, int optidx, uv_loop_t *loop);
sp_runtime *sp_runtime_check(lua_State *L, int idx);
void sp_runtime_close(lua_State *L, sp_runtime *rt);
int sp_drive(lua_State *L, sp_runtime *rt, int mode, double budget);
int sp_run_main(lua_State *L, sp_runtime *rt, int nargs);
void sp_report_unobserved(lua_State *L, sp_runtime *rt);
void sp_shutdown(lua_State *L, sp_runtime *rt);
enum { SP_DRIVE_MAIN, SP_DRIVE_ALL, SP_DRIVE_STEP };
int sp_runtime_open(lua_State *L);

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
void sp_interrupt(sp_task *t);
int sp_push_name(lua_State *L, int idx); /* [-0, +1, -] */
int sp_task_open(lua_State *L);
const char *sp_status_name(int state);

/* wait.c: the await protocol */
sp_task *sp_await_check(lua_State *L, const char *name);
void sp_check_cancel(lua_State *L, sp_task *t);
void sp_resumed(lua_State *L, sp_task *t);
int sp_await_yield(lua_State *L, sp_task *t, lua_KFunction k,
                   lua_KContext ctx);
int sp_await_block(lua_State *L, sp_task *t, int wkind,
                   void (*undo)(sp_task *t), void *obj, lua_KFunction k,
                   lua_KContext ctx);
int sp_await_fast(lua_State *L, sp_task *t, lua_KFunction k,
                  lua_KContext ctx);
double sp_check_seconds(lua_State *L, int arg);
int sp_wait_open(lua_State *L);
void sp_push_cancel_error(lua_State *L);
int sp_msgh(lua_State *L);
void sp_take_traceback(lua_State *co, int idx);
void sp_weak_keys(lua_State *L, const void *key); /* [-0, +0, m] */
void sp_set_hooks(sp_runtime *rt, lua_State *co);
void sp_hook_cancel(lua_State *co);

/* The subsystems luaopen_spindle registers (each adds to the module table
** at -1) and the handles they own, closed with the runtime (release_c). */
int sp_sync_all_open(lua_State *L);  /* sync.c, scope.c, dump.c */
int sp_io2_open(lua_State *L);       /* fs.c, udp.c, process.c, signal.c */
int sp_net_open(lua_State *L);       /* stream.c, tcp.c, pipe.c, dns.c */
void sp_io2_close_all(sp_runtime *rt);
void sp_net_close_all(sp_runtime *rt);
void sp_dump_on_sigquit(lua_State *L, sp_runtime *rt); /* the command */

/* host.c: next_step and await */
void sp_host_step_begins(sp_runtime *rt);
int sp_host_open(lua_State *L);

/* blocking.c */
int sp_blocking_open(lua_State *L);

/* cancel.c: timeout and shield */
void sp_tscope_fire(sp_runtime *rt, sp_tscope *sc);
int sp_cancel_open(lua_State *L);

/* A registry key for the tag that marks the scheduler's own yields. */
extern char sp_yield_tag;

#define sp_container_of(p, type, field)                                     \
  ((type *)((char *)(p) - offsetof(type, field)))

#endif
