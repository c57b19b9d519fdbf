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

static const char *const progname = "spindle";

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

/* The command's signal watchers: owned by the runtime (closed with it),
** unreferenced (they keep nothing alive).  Their callbacks only set flags;
** the runtime calls cli_after_poll from the scheduler, where the abort and
** the dump run. */
typedef struct cli_sigs {
  sp_owned own;
  uv_signal_t sigint, sigquit;
  sp_runtime *rt;
  struct {
    int sigint, sigint_seen, sigquit;
  } n[1];
  int nopen;
} cli_sigs;

static void sigint_cb(uv_signal_t *h, int signum) {
  cli_sigs *cs = (cli_sigs *)h->data;
  (void)signum;
  if (cs->n->sigint_seen) _exit(130); /* second SIGINT: stop now */
  cs->n->sigint_seen = 1;
  cs->n->sigint = 1;
  uv_stop(h->loop);
}

#ifdef SIGQUIT
static void sigquit_cb(uv_signal_t *h, int signum) {
  cli_sigs *cs = (cli_sigs *)h->data;
  (void)signum;
  cs->n->sigquit = 1;
  uv_stop(h->loop);
}
#endif

static void sigs_closed(uv_handle_t *h) {
  cli_sigs *cs = (cli_sigs *)h->data;
  if (--cs->nopen == 0) {
    sp_disown(&cs->own);
    free(cs);
  }
}

static void sigs_close(sp_owned *o) {
  cli_sigs *cs = sp_container_of(o, cli_sigs, own);
  cs->rt->after_poll = NULL;
  cs->rt->after_poll_data = NULL;
  uv_close((uv_handle_t *)&cs->sigint, sigs_closed);
#ifdef SIGQUIT
  uv_close((uv_handle_t *)&cs->sigquit, sigs_closed);
#endif
}

static int print_dump(lua_State *L) {
  sp_runtime *rt = (sp_runtime *)lua_touserdata(L, 1);
  size_t len;
  const char *s;
  sp_dump_push(L, rt);
  s = lua_tolstring(L, -1, &len);
  fprintf(stderr, "%s: SIGQUIT: %lld live task%s\n", progname,
          (long long)rt->live, rt->live == 1 ? "" : "s");
  fwrite(s, 1, len, stderr);
  fflush(stderr);
  return 0;
}

/* After every poll: SIGINT aborts the main task once; SIGQUIT prints the
** dump and the script goes on.  [-0, +0, m] */
static void cli_after_poll(lua_State *L, sp_runtime *rt) {
  cli_sigs *n = (cli_sigs *)rt->after_poll_data;
  if (n->n->sigint) {
    n->n->sigint = 0;
    if (rt->main != NULL) sp_task_abort(L, rt->main);
  }
  if (n->n->sigquit) {
    n->n->sigquit = 0;
    lua_pushcfunction(L, print_dump);
    lua_pushlightuserdata(L, rt);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
}

/* Installs the watchers on rt; NULL if it could not.  [-0, +0, -] */
static cli_sigs *watch_signals(sp_runtime *rt) {
  cli_sigs *cs = calloc(1, sizeof *cs);
  if (cs == NULL) return NULL; /* no Ctrl-C handling: still runs */
  cs->rt = rt;
  if (uv_signal_init(rt->loop, &cs->sigint) != 0) {
    free(cs);
    return NULL;
  }
  cs->sigint.data = cs;
  cs->nopen = 1;
  sp_own(rt, &cs->own, sigs_close);
  uv_signal_start(&cs->sigint, sigint_cb, SIGINT);
  uv_unref((uv_handle_t *)&cs->sigint); /* SIGINT alone keeps nothing alive */
#ifdef SIGQUIT
  if (uv_signal_init(rt->loop, &cs->sigquit) == 0) {
    cs->sigquit.data = cs;
    cs->nopen++;
    uv_signal_start(&cs->sigquit, sigquit_cb, SIGQUIT);
    uv_unref((uv_handle_t *)&cs->sigquit);
  }
#endif
  rt->after_poll = cli_after_poll;
  rt->after_poll_data = cs;
  return cs;
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
  cli_sigs *cs;
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
  cs = watch_signals(rt);
  sp_run_main(L, rt, nargs);
  t = (sp_task *)lua_touserdata(L, -1);
  if (cs != NULL && cs->n->sigint_seen) /* freed only by the close below */
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
