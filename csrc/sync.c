/*
** sync.c -- channels, semaphores, mutexes and events (docs/sync.md).
**
** Every primitive keeps its waiters in sp_wlists threaded through the
** waiting tasks themselves (t->w), so a wait allocates nothing, and every
** list is FIFO: first come, first served.
**
** Hand-off.  Nothing is ever "woken to retry": whoever makes progress
** possible completes the waiter's operation on its behalf, then wakes it
** with SP_WAKE_OK.
**   - send to a waiting receiver: the value is pushed onto the receiver's
**     own (suspended) stack, where its continuation finds it;
**   - recv from a full channel: the first waiting sender's value (still on
**     its stack, argument 2) moves into the queue and `true` is pushed on
**     the sender's stack;
**   - release of a permit or lock to a waiter: the permit userdata the
**     waiter made before waiting (its stack slot 2) is marked held.
** So a waiter that is still in its list has not been served, and one that
** was removed and woken OK has been served completely.  Abort runs the
** wait's undo (removal from the list) only while the task is WAITING; a
** task that was served and is READY when the abort comes keeps what it was
** given: its await returns normally (the value, `true`, the permit) and
** the cancellation is raised at its next await (docs/cancellation.md#aborting-a-task,
** ready or running tasks).  Therefore a value is never both delivered and reported
** unsent, and a permit or lock is never lost: a permit handed to a task
** reaches its code, and `local p <close> = sem:acquire()` releases it as
** the cancellation unwinds.
**
** Channel storage: a ring buffer in a Lua table (the channel's user value
** 1), grown by doubling up to the capacity and shrunk when mostly empty;
** no C allocation per item.
*/
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CHAN_MT "spindle.channel"
#define SEM_MT "spindle.semaphore"
#define MUTEX_MT "spindle.mutex"
#define EVENT_MT "spindle.event"
#define PERMIT_MT "spindle.permit"
#define GUARD_MT "spindle.guard"

/* Removes the first waiter of l and wakes it as served.  C only. */
static sp_task *serve_first(sp_wlist *l) {
  sp_task *w = l->head;
  sp_wlist_remove(l, w);
  sp_wake(w, SP_WAKE_OK);
  return w;
}

/* ====================================================================== */
/* channels                                                               */
/* ====================================================================== */

typedef struct sp_chan {
  sp_wlist recvq;   /* receivers waiting: only while the queue is empty */
  sp_wlist sendq;   /* senders waiting: only while the queue is full */
  lua_Integer cap;  /* capacity; -1: unbounded */
  lua_Integer head; /* ring index (0-based) of the oldest value */
  lua_Integer count;
  lua_Integer size; /* ring slots: keys 1..size of the table */
  int closed;
} sp_chan;

#define chan_full(c) ((c)->cap >= 0 && (c)->count >= (c)->cap)

static sp_chan *check_chan(lua_State *L, int idx) {
  return (sp_chan *)sp_checkclass(L, idx, CHAN_MT);
}

/* Copies the queue into a fresh table of `size` slots (oldest at 1) and
** makes it the ring.  The old ring table is at tidx.  [-0, +0, m] */
static void ring_resize(lua_State *L, sp_chan *c, int chidx, int tidx,
                        lua_Integer size) {
  lua_Integer i;
  lua_createtable(L, size > 1 << 24 ? 1 << 24 : (int)size, 0);
  for (i = 0; i < c->count; i++) {
    lua_rawgeti(L, tidx, (c->head + i) % c->size + 1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, chidx, 1);
  lua_replace(L, tidx);
  c->head = 0;
  c->size = size;
}

/* Appends the value at vidx (not full: the caller checked).  May raise a
** memory error before anything changed.  [-0, +0, m] */
static void ring_push(lua_State *L, sp_chan *c, int chidx, int vidx) {
  int tidx;
  vidx = lua_absindex(L, vidx);
  lua_getiuservalue(L, chidx, 1);
  tidx = lua_gettop(L);
  if (c->count == c->size) {
    lua_Integer n = c->size < 8 ? 8 : c->size * 2;
    if (c->cap >= 0 && n > c->cap) n = c->cap;
    ring_resize(L, c, chidx, tidx, n);
  }
  lua_pushvalue(L, vidx);
  lua_rawseti(L, tidx, (c->head + c->count) % c->size + 1);
  c->count++;
  lua_pop(L, 1);
}

/* Removes the oldest value and pushes it (count > 0).  [-0, +1, m] */
static void ring_pop(lua_State *L, sp_chan *c, int chidx) {
  int tidx;
  lua_getiuservalue(L, chidx, 1);
  tidx = lua_gettop(L);
  if (c->size > 64 && c->count <= c->size / 4) /* give memory back */
    ring_resize(L, c, chidx, tidx, c->size / 2);
  lua_rawgeti(L, tidx, c->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, tidx, c->head + 1);
  c->head = (c->head + 1) % c->size;
  if (--c->count == 0) c->head = 0;
  lua_remove(L, tidx);
}

/* Gives the value at vidx to the first waiting receiver: onto its stack,
** where recv's continuation finds it.  [-0, +0, m] */
static void hand_to_receiver(lua_State *L, sp_chan *c, int vidx) {
  sp_task *r = c->recvq.head;
  if (!lua_checkstack(r->co, 1)) luaL_error(L, "not enough memory");
  lua_pushvalue(L, vidx);
  lua_xmove(L, r->co, 1);
  serve_first(&c->recvq);
}

/* Takes the first waiting sender's value: pushes it on L and tells the
** sender it was sent.  [-0, +1, m] */
static void take_from_sender(lua_State *L, sp_chan *c) {
  sp_task *s = c->sendq.head;
  if (!lua_checkstack(s->co, 2) || !lua_checkstack(L, 1))
    luaL_error(L, "not enough memory");
  lua_pushvalue(s->co, 2);
  lua_xmove(s->co, L, 1);
  lua_pushboolean(s->co, 1);
  serve_first(&c->sendq);
}

/* After a value left a full queue: the first waiting sender's value takes
** its place.  [-0, +0, m] */
static void refill(lua_State *L, sp_chan *c, int chidx) {
  if (c->sendq.head == NULL) return;
  take_from_sender(L, c);
  ring_push(L, c, chidx, -1); /* room: one value just left */
  lua_pop(L, 1);
}

static void send_undo(sp_task *t) {
  sp_wlist_remove(&((sp_chan *)t->w.obj)->sendq, t);
}

static void recv_undo(sp_task *t) {
  sp_wlist_remove(&((sp_chan *)t->w.obj)->recvq, t);
}

static const sp_waitops send_wait = {"channel send", send_undo, NULL};
static const sp_waitops recv_wait = {"channel recv", recv_undo, NULL};

/* Stack [ch, v] and `true` on top once the value was sent. */
static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  if (lua_gettop(L) >= 3) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 2;
}

static void check_sendable(lua_State *L) {
  luaL_checkany(L, 2);
  if (lua_isnil(L, 2)) luaL_argerror(L, 2, "cannot send nil");
  lua_settop(L, 2);
}

/* ch:send(v) -> true | nil, "closed" */
static int ch_send(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  sp_task *t;
  check_sendable(L);
  t = sp_await_check(L, "send");
  if (!c->closed) {
    if (c->recvq.head != NULL) {
      hand_to_receiver(L, c, 2);
      lua_pushboolean(L, 1);
    } else if (!chan_full(c)) {
      ring_push(L, c, 1, 2);
      lua_pushboolean(L, 1);
    } else {
      sp_wlist_push(&c->sendq, t);
      return sp_await_block(L, t, &send_wait, c, send_k, (lua_KContext)t);
    }
  }
  return sp_await_fast(L, t, send_k, (lua_KContext)t);
}

/* Stack [ch] and the value on top once one was received.  Bit 0 of ctx:
** the iterator form (nil at the end instead of nil, "closed"). */
static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)(ctx & ~(lua_KContext)1));
  if (lua_gettop(L) >= 2) return 1;
  lua_pushnil(L);
  if (ctx & 1) return 1;
  lua_pushliteral(L, "closed");
  return 2;
}

static int recv_common(lua_State *L, int iter) {
  sp_chan *c = check_chan(L, 1);
  sp_task *t;
  lua_KContext ctx;
  lua_settop(L, 1);
  t = sp_await_check(L, iter ? "iter" : "recv");
  ctx = (lua_KContext)t | (lua_KContext)iter;
  if (c->count > 0) {
    ring_pop(L, c, 1);
    refill(L, c, 1);
  } else if (c->sendq.head != NULL) { /* capacity 0: straight from a sender */
    take_from_sender(L, c);
  } else if (!c->closed) {
    sp_wlist_push(&c->recvq, t);
    return sp_await_block(L, t, &recv_wait, c, recv_k, ctx);
  }
  return sp_await_fast(L, t, recv_k, ctx);
}

/* ch:recv() -> v | nil, "closed" */
static int ch_recv(lua_State *L) { return recv_common(L, 0); }

static int ch_iter_next(lua_State *L) { return recv_common(L, 1); }

/* for v in ch:iter() do ... end */
static int ch_iter(lua_State *L) {
  check_chan(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2)); /* ch_iter_next, made once */
  lua_pushvalue(L, 1);
  return 2;
}

/* ch:try_send(v) -> true | nil, "full" | nil, "closed" */
static int ch_try_send(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  check_sendable(L);
  if (c->closed) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (c->recvq.head != NULL)
    hand_to_receiver(L, c, 2);
  else if (!chan_full(c))
    ring_push(L, c, 1, 2);
  else {
    lua_pushnil(L);
    lua_pushliteral(L, "full");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:try_recv() -> v | nil, "empty" | nil, "closed" */
static int ch_try_recv(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  lua_settop(L, 1);
  if (c->count > 0) {
    ring_pop(L, c, 1);
    refill(L, c, 1);
    return 1;
  }
  if (c->sendq.head != NULL) {
    take_from_sender(L, c);
    return 1;
  }
  lua_pushnil(L);
  if (c->closed)
    lua_pushliteral(L, "closed");
  else
    lua_pushliteral(L, "empty");
  return 2;
}

/* ch:close(): idempotent.  Waiting receivers get nil, "closed" (the queue
** is empty while any waits); waiting senders get nil, "closed" and keep
** their values; queued values can still be received. */
static int ch_close(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  if (c->closed) return 0;
  c->closed = 1;
  while (c->recvq.head != NULL) serve_first(&c->recvq);
  while (c->sendq.head != NULL) serve_first(&c->sendq);
  return 0;
}

static int ch_is_closed(lua_State *L) {
  lua_pushboolean(L, check_chan(L, 1)->closed);
  return 1;
}

static int ch_capacity(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  if (c->cap < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, c->cap);
  return 1;
}

static int ch_len(lua_State *L) {
  lua_pushinteger(L, check_chan(L, 1)->count);
  return 1;
}

static int ch_tostring(lua_State *L) {
  sp_chan *c = check_chan(L, 1);
  if (c->cap < 0)
    lua_pushfstring(L, "spindle.channel (%I queued, unbounded%s)", c->count,
                    c->closed ? ", closed" : "");
  else
    lua_pushfstring(L, "spindle.channel (%I queued, capacity %I%s)", c->count,
                    c->cap, c->closed ? ", closed" : "");
  return 1;
}

/* spindle.channel([capacity]) */
static int l_channel(lua_State *L) {
  lua_Integer cap = -1;
  sp_chan *c;
  if (!lua_isnoneornil(L, 1)) {
    cap = luaL_checkinteger(L, 1);
    luaL_argcheck(L, cap >= 0, 1, "capacity must be >= 0 (nil: unbounded)");
  }
  c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->cap = cap;
  lua_newtable(L); /* the ring grows on the first send */
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, CHAN_MT);
  return 1;
}

/* ====================================================================== */
/* semaphores and mutexes                                                 */
/* ====================================================================== */

typedef struct sp_sem {
  sp_wlist waiters;
  lua_Integer avail; /* free permits; > 0 only while nobody waits */
  int mutex;
} sp_sem;

enum { P_PENDING = 0, P_HELD, P_RELEASED };

typedef struct sp_permit {
  sp_sem *sem; /* the semaphore is also user value 1, kept alive */
  int state;
} sp_permit;

static void sem_undo(sp_task *t) {
  sp_wlist_remove(&((sp_sem *)t->w.obj)->waiters, t);
}

static const sp_waitops sem_wait_ops = {"semaphore acquire", sem_undo, NULL};
static const sp_waitops mutex_wait = {"mutex lock", sem_undo, NULL};

/* One permit comes back: straight to the first waiter if any.  C only. */
static void sem_release(sp_sem *s) {
  if (s->waiters.head != NULL) {
    sp_permit *p = (sp_permit *)lua_touserdata(s->waiters.head->co, 2);
    p->state = P_HELD;
    serve_first(&s->waiters);
  } else
    s->avail++;
}

/* Pushes a new permit (state pending) for the semaphore at 1. */
static sp_permit *new_permit(lua_State *L, sp_sem *s) {
  sp_permit *p = lua_newuserdatauv(L, sizeof *p, 1);
  p->sem = s;
  p->state = P_PENDING;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, s->mutex ? GUARD_MT : PERMIT_MT);
  return p;
}

static sp_sem *check_sem(lua_State *L, int mutex) {
  return (sp_sem *)sp_checkclass(L, 1, mutex ? MUTEX_MT : SEM_MT);
}

/* Stack [sem, permit]: the permit is held unless the wait raised. */
static int acquire_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  lua_settop(L, 2);
  return 1;
}

static int acquire_common(lua_State *L, int mutex) {
  sp_sem *s = check_sem(L, mutex);
  sp_task *t;
  sp_permit *p;
  lua_settop(L, 1);
  t = sp_await_check(L, mutex ? "lock" : "acquire");
  p = new_permit(L, s); /* made before waiting: serving it cannot fail */
  if (s->avail > 0) {
    s->avail--;
    p->state = P_HELD;
    return sp_await_fast(L, t, acquire_k, (lua_KContext)t);
  }
  sp_wlist_push(&s->waiters, t);
  return sp_await_block(L, t, mutex ? &mutex_wait : &sem_wait_ops, s, acquire_k,
                        (lua_KContext)t);
}

static int try_acquire_common(lua_State *L, int mutex) {
  sp_sem *s = check_sem(L, mutex);
  lua_settop(L, 1);
  if (s->avail > 0) {
    sp_permit *p = new_permit(L, s);
    s->avail--;
    p->state = P_HELD;
  } else
    lua_pushnil(L);
  return 1;
}

/* sem:acquire() -> permit; m:lock() -> guard */
static int sem_acquire(lua_State *L) { return acquire_common(L, 0); }
static int mutex_lock(lua_State *L) { return acquire_common(L, 1); }
/* sem:try_acquire() -> permit | nil; m:try_lock() -> guard | nil */
static int sem_try_acquire(lua_State *L) { return try_acquire_common(L, 0); }
static int mutex_try_lock(lua_State *L) { return try_acquire_common(L, 1); }

static int sem_available(lua_State *L) {
  lua_pushinteger(L, check_sem(L, 0)->avail);
  return 1;
}

static int mutex_is_locked(lua_State *L) {
  lua_pushboolean(L, check_sem(L, 1)->avail == 0);
  return 1;
}

static int sem_tostring(lua_State *L) {
  sp_sem *s = (sp_sem *)sp_testclass(L, 1, SEM_MT);
  if (s == NULL) s = (sp_sem *)sp_checkclass(L, 1, MUTEX_MT);
  if (s->mutex)
    lua_pushfstring(L, "spindle.mutex (%s)", s->avail ? "unlocked" : "locked");
  else
    lua_pushfstring(L, "spindle.semaphore (%I available)", s->avail);
  return 1;
}

/* spindle.semaphore(n) */
static int l_semaphore(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  sp_sem *s;
  luaL_argcheck(L, n >= 0, 1, "number of permits must be >= 0");
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->avail = n;
  luaL_setmetatable(L, SEM_MT);
  return 1;
}

/* spindle.mutex() */
static int l_mutex(lua_State *L) {
  sp_sem *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->avail = 1;
  s->mutex = 1;
  luaL_setmetatable(L, MUTEX_MT);
  return 1;
}

static sp_permit *check_permit(lua_State *L) {
  sp_permit *p = (sp_permit *)sp_testclass(L, 1, PERMIT_MT);
  if (p == NULL) p = (sp_permit *)sp_checkclass(L, 1, GUARD_MT);
  return p;
}

/* permit:release(), guard:unlock(), and __close of both: idempotent. */
static int permit_release(lua_State *L) {
  sp_permit *p = check_permit(L);
  if (p->state == P_HELD) {
    p->state = P_RELEASED;
    sem_release(p->sem);
  }
  return 0;
}

static int permit_tostring(lua_State *L) {
  sp_permit *p = check_permit(L);
  static const char *const states[] = {"pending", "held", "released"};
  lua_pushfstring(L, "spindle.%s (%s)", p->sem->mutex ? "guard" : "permit",
                  states[p->state]);
  return 1;
}

/* ====================================================================== */
/* events                                                                 */
/* ====================================================================== */

typedef struct sp_event {
  sp_wlist waiters;
  int set;
} sp_event;

static sp_event *check_event(lua_State *L) {
  return (sp_event *)sp_checkclass(L, 1, EVENT_MT);
}

static void event_undo(sp_task *t) {
  sp_wlist_remove(&((sp_event *)t->w.obj)->waiters, t);
}

static const sp_waitops event_wait_ops = {"event wait", event_undo, NULL};

static int event_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  lua_pushboolean(L, 1);
  return 1;
}

/* ev:wait() -> true */
static int event_wait(lua_State *L) {
  sp_event *e = check_event(L);
  sp_task *t;
  lua_settop(L, 1);
  t = sp_await_check(L, "wait");
  if (e->set) return sp_await_fast(L, t, event_wait_k, (lua_KContext)t);
  sp_wlist_push(&e->waiters, t);
  return sp_await_block(L, t, &event_wait_ops, e, event_wait_k,
                        (lua_KContext)t);
}

/* ev:set(): releases every waiter, in the order they came. */
static int event_set(lua_State *L) {
  sp_event *e = check_event(L);
  e->set = 1;
  while (e->waiters.head != NULL) serve_first(&e->waiters);
  return 0;
}

static int event_clear(lua_State *L) {
  check_event(L)->set = 0;
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->set);
  return 1;
}

static int event_tostring(lua_State *L) {
  lua_pushfstring(L, "spindle.event (%s)",
                  check_event(L)->set ? "set" : "clear");
  return 1;
}

/* spindle.event() */
static int l_event(lua_State *L) {
  sp_event *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, EVENT_MT);
  return 1;
}

/* ====================================================================== */
/* describers and registration                                            */
/* ====================================================================== */

/* A class of this file: the metatable, then popped.  [-0, +0, m] */
static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      const luaL_Reg *meta) {
  sp_newclass(L, mt, methods, meta);
  lua_pop(L, 1);
}

int sp_sync_open(lua_State *L) {
  static const luaL_Reg chan_methods[] = {
      {"send", ch_send},         {"recv", ch_recv},
      {"try_send", ch_try_send}, {"try_recv", ch_try_recv},
      {"close", ch_close},       {"is_closed", ch_is_closed},
      {"capacity", ch_capacity}, {NULL, NULL}};
  static const luaL_Reg chan_meta[] = {{"__len", ch_len},
                                       {"__tostring", ch_tostring},
                                       {"__close", ch_close},
                                       {NULL, NULL}};
  static const luaL_Reg sem_methods[] = {{"acquire", sem_acquire},
                                         {"try_acquire", sem_try_acquire},
                                         {"available", sem_available},
                                         {NULL, NULL}};
  static const luaL_Reg mutex_methods[] = {{"lock", mutex_lock},
                                           {"try_lock", mutex_try_lock},
                                           {"is_locked", mutex_is_locked},
                                           {NULL, NULL}};
  static const luaL_Reg sem_meta[] = {{"__tostring", sem_tostring},
                                      {NULL, NULL}};
  static const luaL_Reg permit_methods[] = {{"release", permit_release},
                                            {NULL, NULL}};
  static const luaL_Reg guard_methods[] = {
      {"release", permit_release}, {"unlock", permit_release}, {NULL, NULL}};
  static const luaL_Reg permit_meta[] = {{"__close", permit_release},
                                         {"__tostring", permit_tostring},
                                         {NULL, NULL}};
  static const luaL_Reg event_methods[] = {{"wait", event_wait},
                                           {"set", event_set},
                                           {"clear", event_clear},
                                           {"is_set", event_is_set},
                                           {NULL, NULL}};
  static const luaL_Reg event_meta[] = {{"__tostring", event_tostring},
                                        {NULL, NULL}};
  static const luaL_Reg fns[] = {{"channel", l_channel},
                                 {"semaphore", l_semaphore},
                                 {"mutex", l_mutex},
                                 {"event", l_event},
                                 {NULL, NULL}};
  new_class(L, CHAN_MT, chan_methods, chan_meta);
  /* ch:iter() returns one shared iterator: ch_iter's upvalues are the box
  ** (taken from a method made by sp_setfuncs) and ch_iter_next. */
  luaL_getmetatable(L, CHAN_MT);
  lua_getfield(L, -1, "__index");
  lua_getfield(L, -1, "send");
  lua_getupvalue(L, -1, 1);
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, ch_iter_next, 1);
  lua_pushcclosure(L, ch_iter, 2);
  lua_setfield(L, -2, "iter");
  lua_pop(L, 2);
  new_class(L, SEM_MT, sem_methods, sem_meta);
  new_class(L, MUTEX_MT, mutex_methods, sem_meta);
  new_class(L, PERMIT_MT, permit_methods, permit_meta);
  new_class(L, GUARD_MT, guard_methods, permit_meta);
  new_class(L, EVENT_MT, event_methods, event_meta);
  sp_setfuncs(L, fns);
  return 0;
}
