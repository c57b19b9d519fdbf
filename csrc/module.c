/*
** module.c -- luaopen_spindle: the per-state box, the list of library
** parts (every *_open, in order, as Lua's linit.c does) and the class
** helper every userdata class is made with.
*/
#include <string.h>

#include "internal.h"

static const char box_key =
    0; /* registry: the sp_box userdata of this Lua state */

/* [-0, +0, m] */
sp_box *sp_box_get(lua_State *L) {
  sp_box *box;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key);
  box = (sp_box *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return box;
}

/* [-0, +0, m] */
void sp_setfuncs(lua_State *L, const luaL_Reg *fns) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key);
  luaL_setfuncs(L, fns, 1);
}

void sp_setfuncs_up(lua_State *L, const luaL_Reg *fns, int nup) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key);
  lua_insert(L, -nup - 1);
  luaL_setfuncs(L, fns, nup + 1);
}

/* ---- the class helper -------------------------------------------------- */

/* [-0, +1, m] */
void sp_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                 const luaL_Reg *meta) {
  luaL_newmetatable(L, name); /* sets __name */
  if (methods != NULL) {
    lua_newtable(L);
    sp_setfuncs(L, methods);
    lua_setfield(L, -2, "__index");
  }
  if (meta != NULL) sp_setfuncs(L, meta);
}

/* [-0, +0, v] */
void *sp_checkclass(lua_State *L, int idx, const char *name) {
  return luaL_checkudata(L, idx, name);
}

/* [-0, +0, -] */
void *sp_testclass(lua_State *L, int idx, const char *name) {
  return luaL_testudata(L, idx, name);
}

/* ---- the one close pattern ---------------------------------------------- */

/* close(), __close and __gc of a class whose userdata's first field points
** at the C object (NULL once closed).  Upvalue 1: the class's sp_closer. */
static int closer_close(lua_State *L) {
  const sp_closer *c =
      (const sp_closer *)lua_touserdata(L, lua_upvalueindex(1));
  void **box = (void **)sp_checkclass(L, 1, c->name);
  void *obj = *box;
  if (obj != NULL) {
    *box = NULL;
    c->close(obj);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int closer_gc(lua_State *L) {
  const sp_closer *c =
      (const sp_closer *)lua_touserdata(L, lua_upvalueindex(1));
  void **box = (void **)sp_testclass(L, 1, c->name);
  if (box != NULL && *box != NULL) {
    void *obj = *box;
    *box = NULL;
    c->close(obj);
  }
  return 0;
}

/* [-0, +0, m] */
void sp_setcloser(lua_State *L, const sp_closer *c) {
  luaL_getmetatable(L, c->name);
  lua_pushlightuserdata(L, (void *)c);
  lua_pushcclosure(L, closer_close, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__close");
  if (lua_getfield(L, -2, "__index") == LUA_TTABLE) {
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "close");
  }
  lua_pop(L, 2);
  lua_pushlightuserdata(L, (void *)c);
  lua_pushcclosure(L, closer_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

/* ---- options tables ----------------------------------------------------- */

/* [-0, +0, v] */
void sp_check_options(lua_State *L, int arg, const char *const known[]) {
  arg = lua_absindex(L, arg);
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i;
    const char *k;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, arg, "option names must be strings");
    k = lua_tostring(L, -1);
    for (i = 0; known[i] != NULL; i++)
      if (strcmp(k, known[i]) == 0) break;
    if (known[i] == NULL)
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", k));
  }
}

/* ---- the library parts -------------------------------------------------- */

static const lua_CFunction parts[] = {
    sp_wait_open,        /* is_cancelled, is_timeout, cancellation errors */
    sp_task_open,        /* spawn, yield, sleep, now, current, tasks */
    sp_cancel_open,      /* timeout, shield */
    sp_runtime_open,     /* run, runtime, stats */
    sp_host_open,        /* next_step, await */
    sp_blocking_open,    /* blocking */
    sp_sync_open,        /* channel, semaphore, mutex, event */
    sp_scope_open,       /* scope, the watch sets of join_all and race */
    sp_dump_open,        /* dump, _watchdog, lazily loaded Lua parts */
    sp_fs_open,          /* fs */
    sp_process_open,     /* process */
    sp_signal_open,      /* signal */
    sp_net_open,         /* net: streams, TCP, Unix sockets, DNS, UDP */
    sp_http_open,        /* the HTTP client under spindle.http */
    sp_http_server_open, /* the server's parsers (spindle.http.serve) */
    NULL};

int luaopen_spindle(lua_State *L) {
  int i;
  luaL_checkversion(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TNIL) {
    sp_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->cur = NULL;
    box->task_mt = box->task_gc_mt = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  for (i = 0; parts[i] != NULL; i++) parts[i](L);
  lua_pushliteral(L, "spindle " SPINDLE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushliteral(L, SPINDLE_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
