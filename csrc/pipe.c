/*
** pipe.c -- Unix domain sockets: spindle.net.listen_unix(path) and
** spindle.net.connect_unix(path).  They share the listener and connect
** machinery of tcp.c and give the same stream object; peer() and
** local_addr() return the socket path.  A listener removes its socket file
** when it is closed (not when binding failed: the file is someone else's).
*/
#include "io.h"

static int l_listen_unix(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const known[] = {"backlog", NULL};
  int backlog = (sp_check_options(L, 2, known), sp_opt_backlog(L, 2));
  sp_runtime *rt = sp_box_of(L)->cur;
  lua_settop(L, 2);
  if (rt == NULL) luaL_error(L, "listen_unix: not inside a runtime");
  return sp_listen_bind(L, rt, NULL, path, backlog);
}

static int l_connect_unix(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const known[] = {"timeout", NULL};
  double timeout = (sp_check_options(L, 2, known), sp_opt_timeout(L, 2));
  lua_settop(L, 2);
  return sp_connect_start(L, NULL, 0, path, timeout);
}

/* Adds the functions to the net table at -1.  [-0, +0, m] */
int sp_pipe_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"listen_unix", l_listen_unix},
                                 {"connect_unix", l_connect_unix},
                                 {NULL, NULL}};
  sp_setfuncs(L, fns);
  return 0;
}
