/*
** cli.c -- the `spindle` command: runs a Lua script as the main task.
**
**   spindle script.lua [args...]   run a script (awaits work at top level)
**   spindle -e CODE [args...]      run CODE
**   spindle -v                     print the version
**
** Exit status: 0 on success; 1 if the main task fails (the error and its
** traceback go to stderr); 130 after SIGINT, which aborts the main task so
** that its <close> handlers run.  A second SIGINT exits at once.  SIGQUIT
** prints spindle.dump() on stderr and the script goes on.
*/
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "internal.h"

static const char *progname = "spindle";

static void usage(void) {
  fprintf(stderr,
          "usage: %s script.lua [args...]\n"
          "       %s -e CODE [args...]\n"
          "       %s -v\n",
          progname, progname, progname);
}

static void print_version(void) {
  printf("spindle %s (%s, libuv %s)\n", SPINDLE_VERSION, LUA_RELEASE,
         uv_version_string());
}

/* arg table as lua5.4 makes it: arg[0] = script, arg[-1] = the command,
** arg[1..] = the script's arguments.  Pushes those arguments too and
** returns how many.  [-0, +n, m] */
static int push_args(lua_State *L, char **argv, int argc, int script) {
  int i, n = argc - script - 1;
  lua_createtable(L, n, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
  luaL_checkstack(L, n, "too many arguments");
  for (i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
  return n;
}

static void sigint_cb(uv_signal_t *h, int signum) {
  sp_runtime *rt = (sp_runtime *)h->data;
  (void)signum;
  if (rt->sigint_seen) _exit(130); /* second SIGINT: stop now */
  rt->sigint_seen = 1;
  rt->sigint = 1;
  uv_stop(h->loop);
}

/* Writes "spindle: <error>" with the traceback, if any, to stderr. */
static void report_main(lua_State *L, sp_task *t) {
  lua_State *co = t->co;
  lua_pushvalue(co, 1); /* traceback or nil */
  lua_pushvalue(co, 2); /* error */
  lua_xmove(co, L, 2);
  if (lua_type(L, -2) == LUA_TSTRING)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -2));
  else if (luaL_callmeta(L, -1, "__tostring") &&
           lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  else
    fprintf(stderr, "%s: (error object is a %s value)\n", progname,
            luaL_typename(L, -1));
  fflush(stderr);
}

static int cli_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = 1, nargs, status, code = 0;
  sp_runtime *rt;
  sp_task *t;
  uv_signal_t sig;
  lua_settop(L, 0);
  luaL_openlibs(L);
  if (argc < 2) {
    usage();
    lua_pushinteger(L, 1);
    return 1;
  }
  if (strcmp(argv[1], "-v") == 0) {
    print_version();
    lua_pushinteger(L, 0);
    return 1;
  }
  luaL_requiref(L, "spindle", luaopen_spindle, 0);
  lua_pop(L, 1);
  if (strcmp(argv[1], "-e") == 0) {
    if (argc < 3) {
      usage();
      lua_pushinteger(L, 1);
      return 1;
    }
    script = 2;
    status = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
  } else {
    status = luaL_loadfile(L, argv[1]);
  }
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pushinteger(L, 1);
    return 1;
  }
  nargs = push_args(L, argv, argc, script);
  rt = sp_runtime_new(L, 0, NULL);
  lua_insert(L, 1); /* [rt, chunk, args...] */
  uv_signal_init(rt->loop, &sig);
  sig.data = rt;
  uv_signal_start(&sig, sigint_cb, SIGINT);
  uv_unref((uv_handle_t *)&sig); /* SIGINT alone keeps nothing alive */
  rt->sigint_handle = &sig;
  sp_dump_on_sigquit(L, rt); /* SIGQUIT prints spindle.dump(), goes on */
  sp_run_main(L, rt, nargs);
  t = (sp_task *)lua_touserdata(L, -1);
  if (rt->sigint_seen)
    code = 130;
  else if (t->state == SP_T_FAILED) {
    report_main(L, t);
    code = 1;
  } else if (t->state == SP_T_CANCELLED) {
    fprintf(stderr, "%s: %s\n", progname,
            rt->deadlocked ? "deadlock: every task is waiting and no timer "
                             "or I/O can wake them"
                           : "main task cancelled");
    code = 1;
  }
  sp_runtime_close(L, rt);
  lua_pushinteger(L, code);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int code;
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create the Lua state\n", progname);
    return 1;
  }
  lua_pushcfunction(L, cli_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname,
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error)");
    code = 1;
  } else
    code = (int)lua_tointeger(L, -1);
  lua_close(L);
  fflush(stdout);
  return code;
}
