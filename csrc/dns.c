/*
** dns.c -- asynchronous name resolution: spindle.net.resolve and the
** uv_getaddrinfo request that listen() waits on.
**
** A request (sp_gai) runs on libuv's thread pool; while it is pending the
** runtime counts it in rt->inflight, so a virtual clock does not jump past
** real work.  The waiting task can be aborted: the undo detaches it and
** asks libuv to cancel, and the callback, which always comes, frees the
** request.  Closing the runtime orphans pending requests the same way.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

static void gai_node_close(sp_nethandle *n) {
  sp_gai *g = sp_container_of(n, sp_gai, node);
  if (!g->done && !g->orphan) {
    g->orphan = 1;
    n->rt->inflight--;
    g->task = NULL;
    uv_cancel((uv_req_t *)&g->req);
  }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sp_gai *g = sp_container_of(req, sp_gai, req);
  if (!g->orphan) g->node.rt->inflight--;
  sp_net_untrack(&g->node);
  g->status = status;
  g->res = res;
  g->done = 1;
  if (g->task == NULL) { /* detached: nobody will look */
    sp_gai_free(g);
    return;
  }
  if (g->task->state == SP_T_WAITING) {
    g->task->undo = NULL;
    sp_wake(g->task, SP_WAKE_OK);
  }
}

int sp_gai_start(sp_runtime *rt, sp_gai *g, const char *name,
                 const char *port) {
  struct addrinfo hints;
  int r;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r = uv_getaddrinfo(rt->loop, &g->req, gai_cb, name, port, &hints);
  if (r < 0) return r;
  rt->inflight++;
  sp_net_track(&g->node, rt, gai_node_close);
  return 0;
}

void sp_gai_detach(sp_gai *g) {
  g->task = NULL;
  if (g->done)
    sp_gai_free(g);
  else
    uv_cancel((uv_req_t *)&g->req);
}

void sp_gai_free(sp_gai *g) {
  if (g->res != NULL) uv_freeaddrinfo(g->res);
  free(g);
}

/* ---- spindle.net.resolve(name) ----------------------------------------- */

static void resolve_undo(sp_task *t) {
  sp_gai_detach((sp_gai *)t->u.w.obj);
}

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

/* The finished request as a light userdata at the top: frees it whatever
** happens to the results (a memory error included). */
static int resolve_results(lua_State *L) {
  sp_gai *g = (sp_gai *)lua_touserdata(L, 1);
  if (g->status < 0) return sp_net_error(L, g->status);
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
  int r;
  lua_settop(L, 1);
  g = calloc(1, sizeof *g);
  if (g == NULL) luaL_error(L, "not enough memory");
  g->task = t;
  snprintf(g->name, sizeof g->name, "%s", name);
  r = sp_gai_start(t->rt, g, name, NULL);
  if (r < 0) {
    free(g);
    return sp_net_error(L, r);
  }
  t->wkind = SP_W_NET_RESOLVE;
  t->undo = resolve_undo;
  t->u.w.obj = g;
  t->state = SP_T_WAITING;
  lua_pushlightuserdata(L, g);
  return sp_await_yield(L, t, resolve_k, (lua_KContext)t);
}

/* Adds resolve to the net table at -1.  [-0, +0, m] */
int sp_dns_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"resolve", l_resolve}, {NULL, NULL}};
  sp_setfuncs(L, fns);
  return 0;
}
