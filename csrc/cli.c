/*
** cli.c -- the `spindle` command: runs a Lua script as the main task.
**
**   spindle [options] [script [args...]]   (see usage() below)
**
** The script, -e code, -l modules and the -i prompt all run inside the
** main task, so awaits work at top level and at the prompt.
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
          "usage: %s [options] [script [args...]]\n"
          "  script         a Lua file run as the main task; - reads stdin\n"
          "  -e CODE [args] run CODE instead of a script; what follows are "
          "its arguments\n"
          "  -l NAME        require NAME into the global NAME (-l g=mod: "
          "into g)\n"
          "  -i             an interactive prompt after the script; awaits "
          "work there\n"
          "  --preempt N    make a task yield after N VM instructions\n"
          "  --warn-blocking S\n"
          "                 report a task that runs S seconds without "
          "awaiting\n"
          "  --virtual      the virtual clock (time jumps to the next timer)\n"
          "  -v, --version  print the version\n"
          "  -h, --help     print this\n"
          "  --             stop handling options\n",
          progname);
}

static void print_version(void) {
  printf("spindle %s (%s, libuv %s)\n", SPINDLE_VERSION, LUA_RELEASE,
         uv_version_string());
}

/* arg table as lua5.4 makes it: arg[0] = script, negative indices = the
** command and its options, arg[1..] = the script's arguments.  Pushes
** those arguments too and returns how many.  [-0, +n, m] */
static int push_args(lua_State *L, char **argv, int argc, int script) {
  int i, n = script < argc ? argc - script - 1 : 0;
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

/* The main task: -l modules, -e code, the script, then the prompt.
** Arguments: libs (array of "name" / "g=name"), code (function or nil),
** script (function or nil), interactive, then the script's arguments. */
static const char main_lua[] =
    "local libs, code, script, interactive = ...\n"
    "for _, l in ipairs(libs) do\n"
    "  local g, m = l:match('^([^=]+)=(.+)$')\n"
    "  _G[g or l] = require(m or l)\n"
    "end\n"
    "if code then code(select(5, ...)) end\n"
    "if script then script(select(5, ...)) end\n"
    "if not interactive then return end\n"
    "local spindle = require 'spindle'\n"
    "local function show(ok, ...)\n"
    "  if not ok then io.stderr:write(tostring((...)), '\\n')\n"
    "  elseif select('#', ...) > 0 then print(...) end\n"
    "end\n"
    "while true do\n"
    "  io.stdout:write('> '); io.stdout:flush()\n"
    "  local line = spindle.blocking('io.read', 'l') -- the loop runs on\n"
    "  if line == nil then io.stdout:write('\\n') break end\n"
    "  local chunk, err = load('return ' .. line, '=stdin')\n"
    "  if not chunk then chunk, err = load(line, '=stdin') end\n"
    "  if chunk then show(xpcall(chunk, debug.traceback))\n"
    "  else io.stderr:write(err, '\\n') end\n"
    "end\n";

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
  int h = lua_gettop(L);           /* the main task's handle */
  sp_task_push_traceback(L, h, t); /* traceback or nil */
  sp_task_push_error(L, h, t);
  if (lua_type(L, -2) == LUA_TSTRING)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -2));
  else if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  else
    fprintf(stderr, "%s: (error object is a %s value)\n", progname,
            luaL_typename(L, -1));
  fflush(stderr);
}

/* A number option's value, or exits through usage. */
static int number_arg(lua_State *L, char **argv, int argc, int *i,
                      lua_Number *out) {
  int isnum;
  if (*i + 1 >= argc) return 0;
  lua_pushstring(L, argv[++*i]);
  *out = lua_tonumberx(L, -1, &isnum);
  lua_pop(L, 1);
  return isnum;
}

static int cli_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc, nargs, status, code = 0, i, interactive = 0;
  int nlibs = 0, opts, eidx = 0;
  const char *ecode = NULL;
  sp_runtime *rt;
  sp_task *t;
  cli_sigs *cs;
  lua_settop(L, 0);
  luaL_openlibs(L);
  /* The collector's mode of the standalone lua5.4 (lua.c's pmain):
  ** generational.  A script behaves here as under lua5.4, and a server's
  ** request-scoped garbage dies young, cheaply (docs/tasks.md, "The command
  ** line"). */
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_newtable(L); /* 1: runtime options */
  lua_newtable(L); /* 2: -l libraries */
  opts = 1;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    lua_Number n;
    if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      print_version();
      lua_pushinteger(L, 0);
      return 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage();
      lua_pushinteger(L, 0);
      return 1;
    } else if (strcmp(a, "-e") == 0 && i + 1 < argc) {
      ecode = argv[++i]; /* instead of a script: what follows are */
      eidx = i;          /* its arguments */
      break;
    } else if (strcmp(a, "-l") == 0 && i + 1 < argc) {
      lua_pushstring(L, argv[++i]);
      lua_rawseti(L, 2, ++nlibs);
    } else if (strcmp(a, "-i") == 0) {
      interactive = 1;
    } else if (strcmp(a, "--virtual") == 0) {
      lua_pushliteral(L, "virtual");
      lua_setfield(L, opts, "clock");
    } else if (strcmp(a, "--preempt") == 0) {
      if (!number_arg(L, argv, argc, &i, &n) || n != (lua_Integer)n) goto bad;
      lua_pushinteger(L, (lua_Integer)n);
      lua_setfield(L, opts, "preempt");
    } else if (strcmp(a, "--warn-blocking") == 0) {
      if (!number_arg(L, argv, argc, &i, &n)) goto bad;
      lua_pushnumber(L, n);
      lua_setfield(L, opts, "warn_blocking");
    } else if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) script = i + 1;
      break;
    } else if (a[0] == '-' && a[1] != '\0') {
      goto bad;
    } else { /* the script ("-": stdin) */
      script = i;
      break;
    }
  }
  if (ecode == NULL && script == argc && !interactive) {
  bad:
    usage();
    lua_pushinteger(L, 1);
    return 1;
  }
  luaL_requiref(L, "spindle", luaopen_spindle, 0);
  lua_pop(L, 1);
  /* [opts, libs] -> [opts, main, libs, code, script, interactive] */
  status = luaL_loadbuffer(L, main_lua, sizeof main_lua - 1, "=[spindle]");
  if (status == LUA_OK) {
    lua_insert(L, 2);
    if (ecode != NULL)
      status = luaL_loadbuffer(L, ecode, strlen(ecode), "=(command line)");
    else
      lua_pushnil(L);
  }
  if (status == LUA_OK) {
    if (script < argc && ecode == NULL)
      status = luaL_loadfile(L, strcmp(argv[script], "-") == 0 ? NULL
                                                               : argv[script]);
    else
      lua_pushnil(L);
  }
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pushinteger(L, 1);
    return 1;
  }
  lua_pushboolean(L, interactive);
  if (script == argc) /* no script: -e CODE takes its place in arg */
    script = eidx > 0 ? eidx : argc - 1;
  nargs = push_args(L, argv, argc, script);
  rt = sp_runtime_new(L, 1, NULL); /* from the options table at 1 */
  lua_replace(L, 1); /* [rt, main, libs, code, script, interactive, args] */
  cs = watch_signals(rt);
  sp_run_main(L, rt, nargs + 4);
  t = (sp_task *)lua_touserdata(L, -1);
  if (cs != NULL && cs->n->sigint_seen) /* freed only by the close below */
    code = 130;
  else if (t->state == SP_T_FAILED) {
    report_main(L, t);
    code = 1;
  } else if (t->state == SP_T_CANCELLED) {
    if (rt->deadlocked) { /* the message names every task and its wait */
      sp_push_deadlock(L, rt);
      fprintf(stderr, "%s: %s", progname,
              lua_tostring(L, -1) + sizeof "spindle.run: " - 1);
      lua_pop(L, 1);
    } else
      fprintf(stderr, "%s: main task cancelled\n", progname);
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
