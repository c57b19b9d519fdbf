/*
** cancel.c -- spindle.timeout and spindle.shield.
**
** A timeout is a scope on the task: a full userdata (which is also the
** error value it raises) linked into t->scopes, with a heap timer.  When
** the timer fires the scope is marked expired; if the task is waiting at
** an await that the scope may interrupt (not behind a shield opened after
** the scope), the wait is undone and the task resumed to raise.  Expiry is
** level-triggered: every await inside the scope raises again until the
** scope's function returns.  With nested scopes the outermost expired one
** is raised, so an inner timeout passes an outer deadline on instead of
** catching it.
**
** A shield raises t->shield: an abort is then only recorded, and delivered
** at the first await after the shield's function returns.
*/
#include "internal.h"

void sp_tscope_fire(sp_runtime *rt, sp_tscope *sc) {
  sp_task *t = sc->task;
  (void)rt;
  sc->expired = 1;
  if (t->state == SP_T_WAITING && sc->shield >= t->shield) sp_interrupt(t);
}

static void timeout_fire(sp_runtime *rt, sp_timer *tm) {
  sp_tscope_fire(rt, sp_container_of(tm, sp_tscope, timer));
}

/* The task running this C function, checked for spindle.timeout/shield. */
static sp_task *scoped_task(lua_State *L, const char *name) {
  sp_runtime *rt = sp_box_of(L)->cur;
  sp_task *t = rt ? rt->current : NULL;
  if (t == NULL) luaL_error(L, "%s: not inside a task", name);
  if (t->co != L)
    luaL_error(L, "%s: cannot be used inside a nested coroutine", name);
  return t;
}

static int timeout_k(lua_State *L, int status, lua_KContext ctx) {
  sp_tscope *sc = (sp_tscope *)ctx;
  sp_task *t = sc->task;
  sp_timer_remove(t->rt, &sc->timer);
  t->scopes = sc->outer;
  sc->open = 0;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, sc);
  if (status != LUA_OK && status != LUA_YIELD) lua_error(L);
  return lua_gettop(L) - 2;
}

/* spindle.timeout(seconds, fn, ...) */
static int l_timeout(lua_State *L) {
  double secs = sp_check_seconds(L, 1);
  sp_task *t;
  sp_tscope *sc;
  int nargs;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  t = scoped_task(L, "spindle.timeout");
  nargs = lua_gettop(L) - 2;
  sp_timer_reserve(L, t->rt);
  sc = lua_newuserdatauv(L, sizeof *sc, 0);
  sp_timer_init(&sc->timer, timeout_fire);
  sc->task = t;
  sc->shield = t->shield;
  sc->expired = 0;
  sc->open = 0;
  sc->outer = NULL;
  sc->on_abort = NULL;
  luaL_setmetatable(L, SP_TIMEOUT_MT);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, sc);
  lua_replace(L, 1); /* [scope, fn, args...] */
  lua_pushcfunction(L, sp_msgh);
  lua_insert(L, 2); /* [scope, msgh, fn, args...] */
  sc->outer = t->scopes;
  t->scopes = sc;
  sc->open = 1;
  sp_timer_add(t->rt, &sc->timer, sp_now(t->rt) + (uint64_t)(secs * 1e9 + 0.5));
  return timeout_k(
      L, lua_pcallk(L, nargs, LUA_MULTRET, 2, (lua_KContext)sc, timeout_k),
      (lua_KContext)sc);
}

static int timeout_tostring(lua_State *L) {
  lua_pushliteral(L, "timeout");
  return 1;
}

static int shield_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  t->shield--;
  if (status != LUA_OK && status != LUA_YIELD) lua_error(L);
  return lua_gettop(L) - 1;
}

/* spindle.shield(fn, ...) */
static int l_shield(lua_State *L) {
  sp_task *t;
  int nargs;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  t = scoped_task(L, "spindle.shield");
  nargs = lua_gettop(L) - 1;
  lua_pushcfunction(L, sp_msgh);
  lua_insert(L, 1); /* [msgh, fn, args...] */
  t->shield++;
  return shield_k(
      L, lua_pcallk(L, nargs, LUA_MULTRET, 1, (lua_KContext)t, shield_k),
      (lua_KContext)t);
}

/* Adds the functions to the module table at -1.  [-0, +0, m] */
int sp_cancel_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"timeout", l_timeout}, {"shield", l_shield}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", timeout_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, SP_TIMEOUT_MT, NULL, meta);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  sp_setfuncs(L, fns);
  return 0;
}
