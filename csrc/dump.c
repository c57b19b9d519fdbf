/*
** dump.c -- observability and test support:
**   - spindle.dump() / rt:dump(): a line per live task -- id, name, status,
**     age, what it awaits (read from the task's wait record: its name, or
**     its describe function) and where (the innermost Lua frame of its
**     coroutine, or where its function is defined if it never ran);
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
#include "internal.h"

/* ---- what a task awaits -------------------------------------------------- */

static double secs_left(sp_runtime *rt, uint64_t deadline) {
  uint64_t now = sp_now(rt);
  return deadline > now ? (double)(deadline - now) / 1e9 : 0.0;
}

/* What t awaits -- its wait record's description, or its name -- with the
** nearest armed spindle.timeout if any. */
static void describe(sp_task *t, char *buf, size_t size) {
  const sp_waitops *ops = t->wait;
  sp_tscope *sc;
  size_t n;
  if (t->state != SP_T_WAITING) {
    snprintf(buf, size, "-");
    return;
  }
  buf[0] = '\0';
  if (ops == NULL)
    snprintf(buf, size, "waiting");
  else if (ops->describe != NULL)
    ops->describe(t, buf, size);
  else
    snprintf(buf, size, "%s", ops->name);
  for (sc = t->scopes; sc != NULL; sc = sc->outer)
    if (sc->timer.index >= 0) {
      n = strlen(buf);
      if (n < size)
        snprintf(buf + n, size - n, " (timeout in %.1f s)",
                 secs_left(t->rt, sp_timer_deadline(t->rt, &sc->timer)));
      break;
    }
}

/* source:line of the innermost Lua frame of t, or of its function if it
** never ran (the function waits in the handle at idx).  [-0, +0, m] */
static void where(lua_State *L, int idx, sp_task *t, char *buf, size_t size) {
  lua_State *co = t->co;
  lua_Debug ar;
  int level, i;
  for (level = 0; co != NULL && lua_getstack(co, level, &ar); level++) {
    if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
      snprintf(buf, size, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
  if (co == NULL && t->state == SP_T_NEW) { /* fn and its arguments */
    for (i = 1; i <= t->nuv; i++) {
      if (lua_getiuservalue(L, idx, i) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        continue;
      }
      if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0) {
        snprintf(buf, size, "%s:%d", ar.short_src, ar.linedefined);
        return;
      }
    }
  }
  snprintf(buf, size, "?");
}

/* ms since the runtime started, on its clock, as t->born counts them. */
static uint32_t clock_ms(sp_runtime *rt) {
  int64_t ms = rt->virtual_clock ? (int64_t)(rt->vnow / 1000000)
                                 : (int64_t)(uv_hrtime() / 1000000) -
                                       (int64_t)(rt->t0 / 1000000);
  return ms > 0 ? (uint32_t)ms : 0;
}

/* Pushes the line of the task whose handle is at idx.  [-0, +1, m] */
static void push_line(lua_State *L, int idx, sp_task *t) {
  char what[160], at[160], line[400];
  uint32_t now = clock_ms(t->rt);
  uint32_t age = now > t->born ? now - t->born : 0;
  describe(t, what, sizeof what);
  where(L, idx, t, at, sizeof at);
  if (sp_push_name(L, idx) == LUA_TSTRING)
    lua_pushfstring(L, "task %I (%s)", (lua_Integer)t->id, lua_tostring(L, -1));
  else
    lua_pushfstring(L, "task %I", (lua_Integer)t->id);
  lua_remove(L, -2);
  snprintf(line, sizeof line, "  %s  age %.1f s  %s  at %s\n",
           sp_status_name(t->state), (double)age / 1000.0, what, at);
  lua_pushstring(L, line);
  lua_concat(L, 2);
}

/* The lines are collected in a table first and joined at the end: a
** luaL_Buffer may keep its storage on the stack, so nothing may be
** inserted or removed below it while it is in use.  [-0, +1, m] */
void sp_dump_push(lua_State *L, sp_runtime *rt) {
  luaL_Buffer b;
  int i, n = sp_push_live(L, rt), list = lua_gettop(L);
  lua_createtable(L, n, 0); /* list + 1: the lines */
  for (i = 1; i <= n; i++) {
    sp_task *t;
    lua_rawgeti(L, list, i);
    t = (sp_task *)lua_touserdata(L, -1);
    push_line(L, list + 2, t);
    lua_rawseti(L, list + 1, i);
    lua_pop(L, 1);
  }
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list + 1, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, list);
  lua_settop(L, list);
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

/* ---- the wall-clock watchdog of spindle.test ---------------------------- */

/* spindle._watchdog(seconds) -> w: aborts the calling task once `seconds`
** of wall-clock time have passed, whatever the runtime's clock.  A libuv
** timer (real time) that stays referenced, so a virtual-clock runtime
** polls it too; w:fired(), w:close() (also __close and __gc).  Close it
** before the task ends: a runtime closes only its own handles. */
#define WATCHDOG_MT "spindle.watchdog"

typedef struct wd_timer wd_timer;

typedef struct sp_watchdog {
  wd_timer *timer; /* NULL once closed */
  sp_task *task;   /* user value 1 keeps its handle alive */
  int fired;
} sp_watchdog;

/* The libuv part, malloc'd and owned by the runtime: freed in its close
** callback, whichever closes first (w:close(), __gc, the runtime). */
struct wd_timer {
  sp_owned own;
  uv_timer_t h;
  sp_watchdog *w; /* NULL once the Lua object let go */
};

static void wd_closed(uv_handle_t *h) {
  wd_timer *wt = (wd_timer *)h->data;
  sp_disown(&wt->own);
  free(wt);
}

static void wd_close(wd_timer *wt) {
  if (wt->w != NULL) {
    wt->w->timer = NULL;
    wt->w = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&wt->h))
    uv_close((uv_handle_t *)&wt->h, wd_closed);
}

static void wd_owned_close(sp_owned *o) {
  wd_close(sp_container_of(o, wd_timer, own));
}

static void watchdog_cb(uv_timer_t *h) {
  sp_watchdog *w = ((wd_timer *)h->data)->w;
  sp_task *t;
  if (w == NULL) return;
  w->fired = 1;
  t = w->task;
  if (!sp_task_finished(t) && t->state != SP_T_NEW && t->rt != NULL &&
      !t->rt->closing)
    sp_task_abort(t->rt->L, t); /* C only for a started task */
}

static int watchdog_close(lua_State *L) {
  sp_watchdog *w = (sp_watchdog *)sp_checkclass(L, 1, WATCHDOG_MT);
  if (w->timer != NULL) wd_close(w->timer);
  return 0;
}

static int watchdog_gc(lua_State *L) {
  sp_watchdog *w = (sp_watchdog *)sp_testclass(L, 1, WATCHDOG_MT);
  if (w != NULL && w->timer != NULL) wd_close(w->timer);
  return 0;
}

static int watchdog_fired(lua_State *L) {
  sp_watchdog *w = (sp_watchdog *)sp_checkclass(L, 1, WATCHDOG_MT);
  lua_pushboolean(L, w->fired);
  return 1;
}

static int l_watchdog(lua_State *L) {
  double secs = sp_check_seconds(L, 1);
  sp_runtime *rt = sp_box_of(L)->cur;
  sp_task *t = rt ? rt->current : NULL;
  sp_watchdog *w;
  wd_timer *wt;
  int r;
  if (t == NULL) luaL_error(L, "spindle._watchdog: not inside a task");
  w = lua_newuserdatauv(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  luaL_setmetatable(L, WATCHDOG_MT);
  sp_push_task(L, t);
  lua_setiuservalue(L, -2, 1);
  w->task = t;
  wt = malloc(sizeof *wt);
  if (wt == NULL) luaL_error(L, "not enough memory");
  if ((r = uv_timer_init(rt->loop, &wt->h)) != 0) {
    free(wt);
    luaL_error(L, "spindle._watchdog: %s", uv_strerror(r));
  }
  wt->h.data = wt;
  wt->w = w;
  w->timer = wt;
  sp_own(rt, &wt->own, wd_owned_close);
  uv_update_time(rt->loop);
  uv_timer_start(&wt->h, watchdog_cb, (uint64_t)(secs * 1000 + 0.5), 0);
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
            {"http", "spindle.http", NULL},
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

/* A package.searchers entry, after the file searchers: "spindle.x"
** modules of lua/spindle/ from the copy embedded in the library, so a C
** host or the command finds them without LUA_PATH (a file on the path, an
** installed copy, still wins).  [-1, +(1|2), m] */
static int embedded_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int i;
  for (i = 0; sp_embedded_lua[i].name != NULL; i++)
    if (strcmp(sp_embedded_lua[i].name, name) == 0) {
      lua_pushfstring(L, "=[spindle] %s", name);
      if (luaL_loadbuffer(L, (const char *)sp_embedded_lua[i].src,
                          sp_embedded_lua[i].len,
                          lua_tostring(L, -1)) != LUA_OK)
        return lua_error(L);
      lua_pushliteral(L, ":embedded:");
      return 2;
    }
  lua_pushfstring(L, "\n\tno embedded module '%s'", name);
  return 1;
}

/* Appends embedded_searcher to package.searchers, once per state. */
static void add_searcher(lua_State *L) {
  static const char searcher_key = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &searcher_key) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  int top = lua_gettop(L);
  if (lua_getglobal(L, "package") == LUA_TTABLE &&
      lua_getfield(L, -1, "searchers") == LUA_TTABLE) {
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pushboolean(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &searcher_key);
  }
  lua_settop(L, top);
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
  static const luaL_Reg fns[] = {{"dump", l_dump},
                                 {"_watchdog", l_watchdog},
                                 {"_aborting", l_aborting},
                                 {NULL, NULL}};
  static const luaL_Reg wd_methods[] = {
      {"close", watchdog_close}, {"fired", watchdog_fired}, {NULL, NULL}};
  static const luaL_Reg wd_meta[] = {
      {"__close", watchdog_close}, {"__gc", watchdog_gc}, {NULL, NULL}};
  sp_newclass(L, WATCHDOG_MT, wd_methods, wd_meta);
  lua_pop(L, 1);
  luaL_getmetatable(L, SP_RT_MT); /* rt:dump() */
  if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    lua_pushcfunction(L, rt_dump);
    lua_setfield(L, -2, "dump");
  }
  lua_pop(L, 2);
  sp_setfuncs(L, fns);
  if (lua_getmetatable(L, -1) == 0) lua_newtable(L);
  add_searcher(L);
  lua_pushcfunction(L, module_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 0;
}
