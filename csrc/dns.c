/*
** dns.c -- asynchronous name resolution: the one getaddrinfo path of the
** library (spindle.net.resolve, listen, connect and UDP all use it) and
** spindle.net.resolve itself.
**
** A request (sp_gai) runs on libuv's thread pool and is owned by its
** runtime until its callback; while it is pending the runtime counts it in
** rt->inflight, so a virtual clock does not jump past real work.  Either a
** task waits on it (woken by the callback) or a C owner gets done_cb (a
** connect).  An abort, or the runtime closing, detaches it: the callback,
** which always comes, then frees it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sp_gai *g = sp_container_of(req, sp_gai, req);
  g->node.rt->inflight--;
  sp_io_untrack(&g->node);
  g->status = status;
  g->res = res;
  g->done = 1;
  if (g->task != NULL) {
    if (g->task->state == SP_T_WAITING) sp_wake(g->task, SP_WAKE_OK);
  } else if (g->done_cb != NULL) {
    g->done_cb(g);
    sp_gai_free(g);
  } else /* detached: nobody will look */
    sp_gai_free(g);
}

/* The runtime closes: detach (the callback frees it).  The owner of a
** done_cb request detaches it through its own close. */
static void gai_close(sp_owned *o) {
  sp_gai *g = sp_container_of(o, sp_gai, node.own);
  if (g->done_cb == NULL) {
    g->task = NULL;
    uv_cancel((uv_req_t *)&g->req);
  }
}

sp_gai *sp_gai_start(sp_runtime *rt, const char *name, const char *port,
                     int socktype, int *err) {
  struct addrinfo hints;
  sp_gai *g = calloc(1, sizeof *g);
  int r;
  if (g == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  snprintf(g->name, sizeof g->name, "%s", name);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  r = uv_getaddrinfo(rt->loop, &g->req, gai_cb, name, port, &hints);
  if (r < 0) {
    free(g);
    *err = r;
    return NULL;
  }
  rt->inflight++;
  sp_io_track(&g->node, rt, gai_close);
  return g;
}

void sp_gai_detach(sp_gai *g) {
  g->task = NULL;
  g->done_cb = NULL;
  if (g->done)
    sp_gai_free(g);
  else
    uv_cancel((uv_req_t *)&g->req);
}

void sp_gai_free(sp_gai *g) {
  if (g->res != NULL) uv_freeaddrinfo(g->res);
  free(g);
}

static void gai_undo(sp_task *t) { sp_gai_detach((sp_gai *)t->w.obj); }

static void describe_gai(sp_task *t, char *buf, size_t size) {
  snprintf(buf, size, "resolve %s", ((sp_gai *)t->w.obj)->name);
}

const sp_waitops sp_gai_wait = {"resolve", gai_undo, describe_gai};

/* ---- spindle.net.resolve(name) ----------------------------------------- */

/* Pushes the array of addresses of g->res.  [-0, +1, m] */
static void push_addrs(lua_State *L, struct addrinfo *res) {
  struct addrinfo *ai;
  int n = 0;
  lua_newtable(L);
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    char buf[64];
    int i, dup = 0;
    if (ai->ai_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)ai->ai_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, buf, sizeof buf);
    else
      continue;
    for (i = 1; i <= n && !dup; i++) { /* one entry per address */
      lua_rawgeti(L, -1, i);
      lua_getfield(L, -1, "address");
      dup = strcmp(lua_tostring(L, -1), buf) == 0;
      lua_pop(L, 2);
    }
    if (dup) continue;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "address");
    lua_pushstring(L, ai->ai_family == AF_INET ? "inet" : "inet6");
    lua_setfield(L, -2, "family");
    lua_rawseti(L, -2, ++n);
  }
}

/* The finished request as a light userdata at 1: its results (run under
** pcall, so that the request is freed whatever happens). */
static int resolve_results(lua_State *L) {
  sp_gai *g = (sp_gai *)lua_touserdata(L, 1);
  if (g->status < 0) return sp_io_fail(L, g->status);
  push_addrs(L, g->res);
  return 1;
}

/* [name, g] on the stack; ctx: the task. */
static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  sp_gai *g;
  int r;
  (void)status;
  sp_resumed(L, (sp_task *)ctx); /* aborted: the undo detached g */
  g = (sp_gai *)lua_touserdata(L, 2);
  lua_settop(L, 1);
  lua_pushcfunction(L, resolve_results);
  lua_pushlightuserdata(L, g);
  r = lua_pcall(L, 1, LUA_MULTRET, 0);
  sp_gai_free(g);
  if (r != LUA_OK) lua_error(L);
  return lua_gettop(L) - 1;
}

static int l_resolve(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  sp_task *t = sp_await_check(L, "resolve");
  sp_gai *g;
  int err;
  lua_settop(L, 1);
  g = sp_gai_start(t->rt, name, NULL, SOCK_STREAM, &err);
  if (g == NULL) return sp_io_fail(L, err);
  g->task = t;
  lua_pushlightuserdata(L, g);
  return sp_await_block(L, t, &sp_gai_wait, g, resolve_k, (lua_KContext)t);
}

/* Adds resolve to the net table at -1.  [-0, +0, m] */
int sp_dns_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"resolve", l_resolve}, {NULL, NULL}};
  sp_setfuncs(L, fns);
  return 0;
}
