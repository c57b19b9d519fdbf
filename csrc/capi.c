/*
** capi.c -- the embedding API declared in spindle.h.
**
** Every entry point checks its runtime (NULL, closed, already running) and
** runs the Lua side in a protected call, so a host gets an error code and
** never a longjmp through its own frames.  A runtime made by spindle_new is
** kept alive by the registry until lua_close, so calls after
** spindle_close are answered with -SPINDLE_ECLOSED instead of touching
** freed memory.
*/
#include "internal.h"

static int new_p(lua_State *L) {
  uv_loop_t *loop = (uv_loop_t *)lua_touserdata(L, 1);
  sp_runtime *rt;
  luaL_requiref(L, "spindle", luaopen_spindle, 0);
  lua_pop(L, 1);
  rt = sp_runtime_new(L, 0, loop);
  rt->host_owned = 1; /* kept alive for the host until lua_close */
  lua_pushvalue(L, -1);
  rt->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, rt);
  return 1;
}

spindle_rt *spindle_new(lua_State *L, uv_loop_t *loop) {
  spindle_rt *rt = NULL;
  if (L == NULL || !lua_checkstack(L, 4)) return NULL;
  lua_pushcfunction(L, new_p);
  lua_pushlightuserdata(L, loop);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) rt = (spindle_rt *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

static int check(spindle_rt *rt) {
  if (rt == NULL) return -SPINDLE_EINVAL;
  if (rt->closed || rt->closing) return -SPINDLE_ECLOSED;
  if (rt->box->cur != NULL) return -SPINDLE_EBUSY;
  return 0;
}

static int spawn_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  sp_spawn(L, rt, lua_gettop(L) - 2);
  return 1;
}

int spindle_spawn(spindle_rt *rt, int nargs) {
  lua_State *L;
  int r;
  if (rt == NULL || nargs < 0) return -SPINDLE_EINVAL;
  L = rt->L;
  if (rt->closed || rt->closing)
    r = -SPINDLE_ECLOSED;
  else if (lua_gettop(L) < nargs + 1 ||
           lua_type(L, -(nargs + 1)) != LUA_TFUNCTION)
    r = -SPINDLE_EINVAL;
  else if (!lua_checkstack(L, 3))
    r = -SPINDLE_EINVAL;
  else {
    lua_pushcfunction(L, spawn_p);
    lua_insert(L, -(nargs + 2));
    lua_pushlightuserdata(L, rt);
    lua_insert(L, -(nargs + 2));
    if (lua_pcall(L, nargs + 2, 1, 0) == LUA_OK) return 0;
    lua_pop(L, 1);
    return -SPINDLE_ERUN;
  }
  if (lua_gettop(L) >= nargs + 1) lua_pop(L, nargs + 1);
  return r;
}

static int step_p(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  double max = (double)lua_tonumber(L, 2);
  lua_pushinteger(L, sp_capi_step(L, rt, max));
  return 1;
}

int spindle_step(spindle_rt *rt, double max_seconds) {
  lua_State *L;
  int r = check(rt), n;
  if (r != 0) return r;
  if (!(max_seconds >= 0) || max_seconds > SP_MAX_SECONDS)
    return -SPINDLE_EINVAL;
  L = rt->L;
  if (!lua_checkstack(L, 3)) return -SPINDLE_EINVAL;
  lua_pushcfunction(L, step_p);
  lua_pushlightuserdata(L, rt);
  lua_pushnumber(L, max_seconds);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) return -SPINDLE_ERUN;
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

static int run_p(lua_State *L) {
  sp_capi_run_all(L, (sp_runtime *)lua_touserdata(L, 1));
  return 0;
}

int spindle_run(spindle_rt *rt) {
  lua_State *L;
  int r = check(rt);
  if (r != 0) return r;
  L = rt->L;
  if (!lua_checkstack(L, 2)) return -SPINDLE_EINVAL;
  lua_pushcfunction(L, run_p);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) return -SPINDLE_ERUN;
  return 0;
}

static int close_p(lua_State *L) {
  sp_runtime_close(L, (sp_runtime *)lua_touserdata(L, 1));
  return 0;
}

void spindle_close(spindle_rt *rt) {
  lua_State *L;
  if (rt == NULL || rt->closed || rt->closing || rt->box->cur != NULL) return;
  L = rt->L;
  if (!lua_checkstack(L, 2)) return;
  lua_pushcfunction(L, close_p);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}
