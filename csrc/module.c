/*
** module.c -- luaopen_spindle: the per-state box, metatables and function
** tables.  Nothing else lives here.
*/
#include "internal.h"

static char box_key; /* registry: the sp_box userdata of this Lua state */

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

int luaopen_spindle(lua_State *L) {
  luaL_checkversion(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TNIL) {
    sp_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->cur = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  sp_wait_open(L);
  sp_task_open(L);
  sp_cancel_open(L);
  sp_runtime_open(L);
  sp_host_open(L);
  sp_blocking_open(L);
  sp_sync_all_open(L); /* channel ... event, scope, dump, Lua parts */
  sp_io2_open(L);      /* fs, process, signal, net.udp */
  sp_net_open(L);      /* net: streams, TCP, Unix sockets, DNS */
  lua_pushliteral(L, "spindle " SPINDLE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushliteral(L, SPINDLE_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
