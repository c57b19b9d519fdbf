/*
** socket.c -- the two things lua/spindle/socket.lua (spindle.socket, the
** LuaSocket bridge) cannot do in Lua: read the wall clock with sub-second
** resolution (socket.gettime) and the host name (socket.dns.gethostname).
** They are spindle.net._gettime and spindle.net._gethostname; neither
** awaits, so both work outside tasks, as LuaSocket's do.
*/
#include "io.h"

/* spindle.net._gettime() -> UNIX time in seconds, microsecond resolution
** (gettimeofday, as LuaSocket's timeout_gettime). */
static int l_gettime(lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) {
    lua_pushnumber(L, (lua_Number)time(NULL));
    return 1;
  }
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}

/* spindle.net._gethostname() -> name, or nil, msg, code */
static int l_gethostname(lua_State *L) {
  char buf[UV_MAXHOSTNAMESIZE];
  size_t len = sizeof buf;
  int r = uv_os_gethostname(buf, &len);
  if (r < 0) return sp_io_fail(L, r);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* Adds the functions to the net table at -1.  [-0, +0, m] */
int sp_socket_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"_gettime", l_gettime}, {"_gethostname", l_gethostname}, {NULL, NULL}};
  sp_setfuncs(L, fns);
  return 0;
}
