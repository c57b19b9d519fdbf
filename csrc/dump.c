/*
** dump.c -- observability and test support:
**   - spindle.dump() / rt:dump(): a line per live task -- id, name, status,
**     age, what it awaits (one describer per SP_W_* kind, registered by the
**     file that owns the wait) and where (the innermost Lua frame of its
**     coroutine, or where its function is defined if it never ran);
**   - the `spindle` command's dump on SIGQUIT, printed from the scheduler;
**   - spindle._watchdog(seconds): the wall-clock deadline of spindle.test;
**   - the Lua parts (lua/spindle/ files: spindle.test, join_all, race),
**     loaded on first use through the module table's __index, from
**     package.path or else from the copy embedded in the library.
**
** A dump line:
**   task 7 (worker)  waiting  age 12.5 s  channel recv  at app.lua:31
** Tasks that are not waiting show "-" as what they await.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_embedded.h"
#include "sync.h"

/* ---- describers --------------------------------------------------------- */

static sp_describe_fn describers[256];

void sp_describe_register(int wkind, sp_describe_fn fn) {
  if (wkind > 0 && wkind < 256) describers[wkind] = fn;
}

static double secs_left(sp_runtime *rt, uint64_t deadline) {
  uint64_t now = sp_now(rt);
  return deadline > now ? (double)(deadline - now) / 1e9 : 0.0;
}

static void describe_core(sp_task *t, char *buf, size_t size) {
  switch (t->wkind) {
    case SP_W_SLEEP:
      snprintf(buf, size, "sleep %.1f s left",
               secs_left(t->rt, t->u.timer.deadline));
      break;
    case SP_W_JOIN:
      snprintf(buf, size, "join task %lld",
               (long long)((sp_task *)t->u.w.obj)->id);
      break;
    case SP_W_FOREVER: snprintf(buf, size, "wait forever"); break;
    default: snprintf(buf, size, "waiting"); break;
  }
}

/* What t awaits, with the nearest armed spindle.timeout if any. */
static void describe(sp_task *t, char *buf, size_t size) {
  sp_describe_fn fn = describers[t->wkind];
  sp_tscope *sc;
  size_t n;
  if (t->state != SP_T_WAITING) {
    snprintf(buf, size, "-");
    return;
  }
  if (fn == NULL) fn = describe_core;
  buf[0] = '\0';
  fn(t, buf, size);
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->timer.index >= 0) {
      n = strlen(buf);
      if (n < size)
        snprintf(buf + n, size - n, " (timeout in %.1f s)",
                 secs_left(t->rt, sc->timer.deadline));
      break;
    }
}

/* source:line of the innermost Lua frame of t, or of its function if it
** never ran.  [-0, +0, -] */
static void where(sp_task *t, char *buf, size_t size) {
  lua_State *co = t->co;
  lua_Debug ar;
  int level, i, top;
  for (level = 0; lua_getstack(co, level, &ar); level++) {
    if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
      snprintf(buf, size, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
  if (t->state == SP_T_NEW && lua_checkstack(co, 1)) {
    top = lua_gettop(co); /* [task_body, t, fn, args...] */
    for (i = 3; i <= top; i++) {
      if (lua_type(co, i) != LUA_TFUNCTION) continue;
      lua_pushvalue(co, i);
      if (lua_getinfo(co, ">S", &ar) && ar.linedefined > 0) {
        snprintf(buf, size, "%s:%d", ar.short_src, ar.linedefined);
        return;
      }
    }
  }
  snprintf(buf, size, "?");
}

/* ms since the runtime started, on its clock, as t->born counts them. */
static uint32_t clock_ms(sp_runtime *rt) {
  int64_t ms = rt->virtual_clock
                   ? (int64_t)(rt->vnow / 1000000)
                   : (int64_t)(uv_hrtime() / 1000000) -
                         (int64_t)(rt->t0 / 1000000);
  return ms > 0 ? (uint32_t)ms : 0;
}

/* Appends the line of the task whose handle is at idx.  [-0, +0, m] */
static void dump_line(lua_State *L, luaL_Buffer *b, int idx, sp_task *t) {
  char what[160], at[160], line[400];
  uint32_t now = clock_ms(t->rt);
  uint32_t age = now > t->born ? now - t->born : 0;
  describe(t, what, sizeof what);
  where(t, at, sizeof at);
  if (sp_push_name(L, idx) == LUA_TSTRING)
    lua_pushfstring(L, "task %I (%s)", (lua_Integer)t->id,
                    lua_tostring(L, -1));
  else
    lua_pushfstring(L, "task %I", (lua_Integer)t->id);
  lua_remove(L, -2);
  luaL_addvalue(b);
  snprintf(line, sizeof line, "  %s  age %.1f s  %s  at %s\n",
           sp_status_name(t->state), (double)age / 1000.0, what, at);
  luaL_addstring(b, line);
}

/* [-0, +1, m] */
void sp_dump_push(lua_State *L, sp_runtime *rt) {
  luaL_Buffer b;
  int i, n = sp_push_live(L, rt), list = lua_gettop(L);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    sp_task *t;
    lua_rawgeti(L, list, i);
    t = (sp_task *)lua_touserdata(L, -1);
    /* the buffer may sit on the stack: keep the handle below it */
    lua_insert(L, list + 1);
    dump_line(L, &b, list + 1, t);
    lua_remove(L, list + 1);
  }
  luaL_pushresult(&b);
  lua_remove(L, list);
}

static int l_dump(lua_State *L) {
  sp_runtime *rt = sp_box_of(L)->cur;
  if (rt == NULL) luaL_error(L, "spindle.dump: not inside a runtime");
  sp_dump_push(L, rt);
  return 1;
}

static int rt_dump(lua_State *L) {
  sp_runtime *rt = sp_runtime_check(L, 1);
  if (rt->closed) {
    lua_pushliteral(L, "");
    return 1;
  }
  sp_dump_push(L, rt);
  return 1;
}

/* ---- SIGQUIT in the `spindle` command ------------------------------------ */

/* A hidden task: never anchored, never counted as live, so neither
** spindle.tasks(), deadlock detection nor shutdown sees it.  It waits
** forever; the signal callback only wakes it (C only), and the scheduler
** resumes it like any task, so the dump is made and printed from the
** scheduler, between slices, never from inside libuv.  Its body cannot
** raise: the printing runs under lua_pcall. */
typedef struct quit_watch {
  sp_task task;
  uv_signal_t sig;
} quit_watch;

static int quit_print(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  size_t len;
  const char *s;
  sp_dump_push(L, rt);
  s = lua_tolstring(L, -1, &len);
  fprintf(stderr, "spindle: SIGQUIT: %lld live task%s\n",
          (long long)rt->live, rt->live == 1 ? "" : "s");
  fwrite(s, 1, len, stderr);
  fflush(stderr);
  return 0;
}

static int quit_k(lua_State *co, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  (void)status;
  lua_settop(co, 0);
  lua_pushcfunction(co, quit_print);
  lua_pushlightuserdata(co, t->rt);
  if (lua_pcall(co, 1, 0, 0) != LUA_OK) lua_settop(co, 0);
  t->state = SP_T_WAITING;
  t->wkind = SP_W_FOREVER;
  return lua_yieldk(co, 0, ctx, quit_k);
}

static int quit_body(lua_State *co) {
  return quit_k(co, LUA_OK, (lua_KContext)lua_touserdata(
                                co, lua_upvalueindex(1)));
}

static void quit_cb(uv_signal_t *h, int signum) {
  sp_task *t = (sp_task *)h->data;
  (void)signum;
  if (t->state == SP_T_WAITING && !t->rt->closing && !t->rt->closed)
    sp_wake(t, SP_WAKE_OK);
}

/* [-0, +0, m] */
void sp_dump_on_sigquit(lua_State *L, sp_runtime *rt) {
#ifdef SIGQUIT
  quit_watch *q = lua_newuserdatauv(L, sizeof *q, 1);
  lua_State *co;
  memset(q, 0, sizeof *q);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  lua_pushlightuserdata(co, &q->task);
  lua_pushcclosure(co, quit_body, 1);
  q->task.rt = rt;
  q->task.co = co;
  q->task.state = SP_T_WAITING;
  q->task.wkind = SP_W_FOREVER;
  q->task.id = 0;
  luaL_ref(L, LUA_REGISTRYINDEX); /* for the life of the state */
  if (uv_signal_init(rt->loop, &q->sig) != 0) return;
  q->sig.data = &q->task;
  uv_signal_start(&q->sig, quit_cb, SIGQUIT);
  uv_unref((uv_handle_t *)&q->sig); /* closed by the runtime's close */
#else
  (void)L;
  (void)rt;
#endif
}

/* ---- the wall-clock watchdog of spindle.test ---------------------------- */

/* spindle._watchdog(seconds) -> w: aborts the calling task once `seconds`
** of wall-clock time have passed, whatever the runtime's clock.  A libuv
** timer (real time) that stays referenced, so a virtual-clock runtime
** polls it too; w:fired(), w:close() (also __close and __gc).  Close it
** before the task ends: a runtime closes only its own handles. */
#define WATCHDOG_MT "spindle.watchdog"

typedef struct sp_watchdog {
  uv_timer_t *timer; /* malloc'd: freed in the close callback */
  sp_task *task;     /* user value 1 keeps its handle alive */
  int fired;
} sp_watchdog;

static void watchdog_freed(uv_handle_t *h) { free(h); }

static void watchdog_cb(uv_timer_t *h) {
  sp_watchdog *w = (sp_watchdog *)h->data;
  sp_task *t;
  if (w == NULL) return;
  w->fired = 1;
  t = w->task;
  if (!sp_task_finished(t) && t->state != SP_T_NEW && t->rt != NULL &&
      !t->rt->closing)
    sp_task_abort(t->rt->L, t); /* C only for a started task */
}

static int watchdog_close(lua_State *L) {
  sp_watchdog *w = (sp_watchdog *)luaL_checkudata(L, 1, WATCHDOG_MT);
  if (w->timer != NULL) {
    if (!uv_is_closing((uv_handle_t *)w->timer)) {
      w->timer->data = NULL;
      uv_close((uv_handle_t *)w->timer, watchdog_freed);
    }
    w->timer = NULL;
  }
  return 0;
}

static int watchdog_fired(lua_State *L) {
  sp_watchdog *w = (sp_watchdog *)luaL_checkudata(L, 1, WATCHDOG_MT);
  lua_pushboolean(L, w->fired);
  return 1;
}

static int l_watchdog(lua_State *L) {
  double secs = sp_check_seconds(L, 1);
  sp_runtime *rt = sp_box_of(L)->cur;
  sp_task *t = rt ? rt->current : NULL;
  sp_watchdog *w;
  if (t == NULL) luaL_error(L, "spindle._watchdog: not inside a task");
  w = lua_newuserdatauv(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  luaL_setmetatable(L, WATCHDOG_MT);
  sp_push_task(L, t);
  lua_setiuservalue(L, -2, 1);
  w->task = t;
  w->timer = malloc(sizeof *w->timer);
  if (w->timer == NULL) luaL_error(L, "not enough memory");
  uv_timer_init(rt->loop, w->timer);
  w->timer->data = w;
  uv_update_time(rt->loop);
  uv_timer_start(w->timer, watchdog_cb, (uint64_t)(secs * 1000 + 0.5), 0);
  return 1;
}

/* spindle._aborting(h): true if h's abort was requested and it has not
** finished yet (used by spindle.test's leak check). */
static int l_aborting(lua_State *L) {
  sp_task *t = sp_task_check(L, 1);
  lua_pushboolean(L, t->cancel && !sp_task_finished(t));
  return 1;
}

/* ---- the Lua parts, loaded on first use ---------------------------------- */

static const struct {
  const char *key, *module, *field;
} lazy[] = {{"test", "spindle.test", NULL},
            {"join_all", "spindle.structured", "join_all"},
            {"race", "spindle.structured", "race"},
            {"socket", "spindle.socket", NULL},
            {NULL, NULL, NULL}};

/* require(name); when package.path has no such file and nothing is
** preloaded, the embedded copy is put in package.preload first.
** [-0, +1, e] */
static void lazy_require(lua_State *L, const char *name) {
  int i, top = lua_gettop(L);
  lua_getglobal(L, "package");
  if (lua_type(L, -1) == LUA_TTABLE &&
      lua_getfield(L, -1, "preload") == LUA_TTABLE &&
      lua_getfield(L, -1, name) == LUA_TNIL) {
    int found = 0;
    lua_getfield(L, top + 1, "searchpath");
    lua_pushstring(L, name);
    lua_getfield(L, top + 1, "path");
    if (lua_isfunction(L, -3) && lua_isstring(L, -1)) {
      lua_call(L, 2, 1);
      found = !lua_isnil(L, -1);
    }
    lua_settop(L, top + 2);
    for (i = 0; !found && sp_embedded_lua[i].name != NULL; i++)
      if (strcmp(sp_embedded_lua[i].name, name) == 0) {
        lua_pushfstring(L, "=[spindle] %s", name);
        if (luaL_loadbuffer(L, (const char *)sp_embedded_lua[i].src,
                            sp_embedded_lua[i].len,
                            lua_tostring(L, -1)) != LUA_OK)
          lua_error(L);
        lua_setfield(L, top + 2, name);
        break;
      }
  }
  lua_settop(L, top);
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
}

/* __index of the module table: (module, key) */
static int module_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  int i;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  for (i = 0; lazy[i].key != NULL; i++)
    if (strcmp(lazy[i].key, k) == 0) break;
  if (lazy[i].key == NULL) return 0;
  lazy_require(L, lazy[i].module);
  if (lazy[i].field != NULL) {
    if (lua_type(L, -1) != LUA_TTABLE)
      luaL_error(L, "spindle: module %s did not return a table",
                 lazy[i].module);
    lua_getfield(L, -1, lazy[i].field);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

int sp_dump_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"dump", l_dump},
      {"_watchdog", l_watchdog},
      {"_aborting", l_aborting},
      {NULL, NULL}};
  static const luaL_Reg wd_methods[] = {
      {"close", watchdog_close}, {"fired", watchdog_fired}, {NULL, NULL}};
  sp_describe_register(SP_W_SLEEP, describe_core);
  sp_describe_register(SP_W_JOIN, describe_core);
  sp_describe_register(SP_W_FOREVER, describe_core);
  if (luaL_newmetatable(L, WATCHDOG_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, wd_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, watchdog_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, watchdog_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_getmetatable(L, SP_RT_MT); /* rt:dump() */
  if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    lua_pushcfunction(L, rt_dump);
    lua_setfield(L, -2, "dump");
  }
  lua_pop(L, 2);
  sp_setfuncs(L, fns);
  if (lua_getmetatable(L, -1) == 0) lua_newtable(L);
  lua_pushcfunction(L, module_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 0;
}

int sp_sync_all_open(lua_State *L) {
  sp_sync_open(L);
  sp_scope_open(L);
  sp_dump_open(L);
  return 0;
}
