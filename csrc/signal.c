/*
** signal.c -- spindle.signal(name): a uv_signal_t that counts deliveries;
** signal names shared with process.c.
**
** A signal object installs its handler at once.  Each delivery either
** wakes the first waiting task (FIFO) or is counted, and a later wait()
** takes one counted delivery without waiting.  The handle is referenced
** only while a task waits on it: an unwatched signal never keeps the
** loop alive (so deadlock detection still works).
**
** Memory: the userdata holds a pointer to a malloc'd sig_obj, which libuv
** may touch until the close callback frees it.  close(), __close, __gc
** and runtime close share sig_close; closing wakes the waiters with
** nil, "closed", "ECANCELED".
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- names ------------------------------------------------------------ */

#define SIGN(x)                                                                \
  { #x, "SIG" #x, SIG##x }
static const struct {
  const char *name, *full;
  int num;
} signames[] = {
#ifdef SIGHUP
    SIGN(HUP),
#endif
#ifdef SIGINT
    SIGN(INT),
#endif
#ifdef SIGQUIT
    SIGN(QUIT),
#endif
#ifdef SIGILL
    SIGN(ILL),
#endif
#ifdef SIGTRAP
    SIGN(TRAP),
#endif
#ifdef SIGABRT
    SIGN(ABRT),
#endif
#ifdef SIGBUS
    SIGN(BUS),
#endif
#ifdef SIGFPE
    SIGN(FPE),
#endif
#ifdef SIGKILL
    SIGN(KILL),
#endif
#ifdef SIGUSR1
    SIGN(USR1),
#endif
#ifdef SIGSEGV
    SIGN(SEGV),
#endif
#ifdef SIGUSR2
    SIGN(USR2),
#endif
#ifdef SIGPIPE
    SIGN(PIPE),
#endif
#ifdef SIGALRM
    SIGN(ALRM),
#endif
#ifdef SIGTERM
    SIGN(TERM),
#endif
#ifdef SIGCHLD
    SIGN(CHLD),
#endif
#ifdef SIGCONT
    SIGN(CONT),
#endif
#ifdef SIGSTOP
    SIGN(STOP),
#endif
#ifdef SIGTSTP
    SIGN(TSTP),
#endif
#ifdef SIGTTIN
    SIGN(TTIN),
#endif
#ifdef SIGTTOU
    SIGN(TTOU),
#endif
#ifdef SIGURG
    SIGN(URG),
#endif
#ifdef SIGXCPU
    SIGN(XCPU),
#endif
#ifdef SIGXFSZ
    SIGN(XFSZ),
#endif
#ifdef SIGVTALRM
    SIGN(VTALRM),
#endif
#ifdef SIGPROF
    SIGN(PROF),
#endif
#ifdef SIGWINCH
    SIGN(WINCH),
#endif
#ifdef SIGIO
    SIGN(IO),
#endif
#ifdef SIGSYS
    SIGN(SYS),
#endif
    {NULL, NULL, 0}};

const char *sp_signame(int signum) {
  int i;
  for (i = 0; signames[i].name != NULL; i++)
    if (signames[i].num == signum) return signames[i].full;
  return NULL;
}

/* "TERM", "SIGTERM", "sigterm" or a number 1..64.  [-0, +0, v] */
int sp_signum(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Integer n;
    if (!lua_isinteger(L, arg)) luaL_argerror(L, arg, "signal number expected");
    n = lua_tointeger(L, arg);
    if (n < 1 || n > 64) luaL_argerror(L, arg, "signal number out of range");
    return (int)n;
  } else {
    size_t len, i;
    const char *s = luaL_checklstring(L, arg, &len);
    char up[16];
    if (len >= sizeof up) luaL_argerror(L, arg, "unknown signal name");
    for (i = 0; i <= len; i++)
      up[i] = (char)((s[i] >= 'a' && s[i] <= 'z') ? s[i] - 32 : s[i]);
    s = up;
    if (strncmp(s, "SIG", 3) == 0) s += 3;
    for (i = 0; signames[i].name != NULL; i++)
      if (strcmp(signames[i].name, s) == 0) return signames[i].num;
    return luaL_argerror(L, arg, "unknown signal name");
  }
}

/* ---- signal objects ---------------------------------------------------- */

#define SIG_MT "spindle.signal"

typedef struct sig_obj {
  sp_ionode node; /* owned until the close callback */
  uv_signal_t h;
  sp_runtime *rt;
  struct sig_obj **ud; /* the userdata's pointer, NULL once collected */
  sp_wlist waiters;
  lua_Integer pending; /* deliveries nobody has taken yet */
  int signum;
} sig_obj;

static void sig_closed(uv_handle_t *h) {
  sig_obj *s = (sig_obj *)h->data;
  sp_io_untrack(&s->node);
  free(s);
}

static void sig_close(sig_obj *s) {
  sp_task *t;
  if (s->ud != NULL) *s->ud = NULL;
  s->ud = NULL;
  while ((t = s->waiters.head) != NULL) {
    sp_wlist_remove(&s->waiters, t);
    t->w.obj = NULL; /* the continuation reports "closed" */
    sp_wake(t, SP_WAKE_OK);
  }
  uv_close((uv_handle_t *)&s->h, sig_closed);
}

static void sig_rtclose(sp_owned *o) {
  sig_obj *s = sp_container_of(o, sig_obj, node.own);
  if (!uv_is_closing((uv_handle_t *)&s->h)) sig_close(s);
}

static void sig_cb(uv_signal_t *h, int signum) {
  sig_obj *s = (sig_obj *)h->data;
  sp_task *t = s->waiters.head;
  (void)signum;
  if (t == NULL) {
    s->pending++;
    return;
  }
  sp_wlist_remove(&s->waiters, t);
  sp_wake(t, SP_WAKE_OK);
  if (s->waiters.head == NULL) uv_unref((uv_handle_t *)h);
}

static sig_obj *sig_get(lua_State *L) {
  return *(sig_obj **)sp_checkclass(L, 1, SIG_MT);
}

/* spindle.signal(name) */
static int l_signal(lua_State *L) {
  int signum = sp_signum(L, 1);
  sp_runtime *rt = sp_io_runtime(L, "spindle.signal");
  sig_obj **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  sig_obj *s;
  int r;
  *ud = NULL; /* born closed */
  luaL_setmetatable(L, SIG_MT);
  if ((s = calloc(1, sizeof *s)) == NULL)
    return luaL_error(L, "not enough memory");
  s->rt = rt;
  s->signum = signum;
  if ((r = uv_signal_init(rt->loop, &s->h)) < 0) {
    free(s);
    return sp_io_fail(L, r);
  }
  s->h.data = s;
  sp_io_track(&s->node, rt, sig_rtclose);
  s->ud = ud;
  *ud = s;
  if ((r = uv_signal_start(&s->h, sig_cb, signum)) < 0) {
    sig_close(s);
    return sp_io_fail(L, r);
  }
  uv_unref((uv_handle_t *)&s->h);
  return 1;
}

static void sig_undo(sp_task *t) {
  sig_obj *s = (sig_obj *)t->w.obj;
  sp_wlist_remove(&s->waiters, t);
  if (s->waiters.head == NULL) uv_unref((uv_handle_t *)&s->h);
}

static void sig_describe(sp_task *t, char *buf, size_t size);

static const sp_waitops sig_wait_ops = {"signal", sig_undo, sig_describe};

static int sig_wait_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  (void)status;
  sp_resumed(L, t);
  if (t->w.obj == NULL) return sp_io_closed(L, "ECANCELED");
  lua_pushboolean(L, 1);
  return 1;
}

static int sig_wait(lua_State *L) {
  sig_obj *s = sig_get(L);
  sp_task *t = sp_await_check(L, "wait");
  if (s == NULL) return sp_io_closed(L, "ECANCELED");
  if (s->rt != t->rt)
    return luaL_error(L, "wait: the signal belongs to another runtime");
  t->w.obj = s;
  if (s->pending > 0) {
    s->pending--;
    return sp_await_fast(L, t, sig_wait_k, (lua_KContext)t);
  }
  if (s->waiters.head == NULL) uv_ref((uv_handle_t *)&s->h);
  sp_wlist_push(&s->waiters, t);
  return sp_await_block(L, t, &sig_wait_ops, s, sig_wait_k, (lua_KContext)t);
}

static void sig_close_any(void *obj) { sig_close((sig_obj *)obj); }

static const sp_closer sig_closer = {SIG_MT, sig_close_any};

static int sig_tostring(lua_State *L) {
  sig_obj *s = sig_get(L);
  if (s == NULL)
    lua_pushliteral(L, "spindle.signal (closed)");
  else
    lua_pushfstring(L, "spindle.signal (%s)",
                    sp_signame(s->signum) ? sp_signame(s->signum) : "?");
  return 1;
}

/* spindle.dump: "signal SIGUSR1". */
static void sig_describe(sp_task *t, char *buf, size_t size) {
  sig_obj *s = (sig_obj *)t->w.obj;
  const char *name = s ? sp_signame(s->signum) : NULL;
  snprintf(buf, size, "signal %s", name ? name : "?");
}

int sp_signal_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", sig_wait}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"signal", l_signal}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", sig_tostring}, {NULL, NULL}};
  sp_newclass(L, SIG_MT, methods, meta);
  lua_pop(L, 1);
  sp_setcloser(L, &sig_closer);
  sp_setfuncs(L, fns);
  return 0;
}
