/*
** addr.c -- what every I/O file shares: the owned-object node, socket
** addresses, the one error-result function, argument checks.
*/
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "io.h"

/* ---- owned I/O objects -------------------------------------------------- */

void sp_io_track(sp_ionode *n, sp_runtime *rt, void (*close)(sp_owned *)) {
  n->rt = rt;
  sp_own(rt, &n->own, close);
}

void sp_io_untrack(sp_ionode *n) { sp_disown(&n->own); }

/* ---- results ------------------------------------------------------------ */

int sp_io_fail(lua_State *L, int err) {
  lua_pushnil(L);
  if (err == UV_EOF)
    lua_pushliteral(L, "eof");
  else if (err == UV_ETIMEDOUT)
    lua_pushliteral(L, "timeout");
  else
    lua_pushstring(L, uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

int sp_io_fail_msg(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

int sp_io_closed(lua_State *L, const char *code) {
  return sp_io_fail_msg(L, "closed", code);
}

/* ---- arguments ---------------------------------------------------------- */

sp_runtime *sp_io_runtime(lua_State *L, const char *name) {
  sp_runtime *rt = sp_box_of(L)->cur;
  if (rt == NULL || rt->closed || rt->closing)
    luaL_error(L, "%s: not inside a runtime", name);
  return rt;
}

const char *sp_io_checkpath(lua_State *L, int arg) {
  size_t len;
  const char *s = luaL_checklstring(L, arg, &len);
  if (strlen(s) != len) luaL_argerror(L, arg, "path contains a zero byte");
  return s;
}

int sp_io_checkport(lua_State *L, int arg) {
  lua_Integer p = luaL_checkinteger(L, arg);
  luaL_argcheck(L, p >= 0 && p <= 65535, arg, "port must be 0..65535");
  return (int)p;
}

void sp_io_ignore_sigpipe(void) {
#ifdef SIGPIPE
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
#endif
}

/* ---- addresses ---------------------------------------------------------- */

int sp_addr_parse(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return -1;
}

void sp_addr_set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)port);
}

void sp_format_sockaddr(const struct sockaddr *sa, char *buf, size_t size) {
  char ip[64];
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, ip, sizeof ip);
    snprintf(buf, size, "%s:%d", ip, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, ip, sizeof ip);
    snprintf(buf, size, "[%s]:%d", ip, ntohs(in6->sin6_port));
  } else if (size > 0)
    buf[0] = '\0';
}

int sp_push_sockaddr(lua_State *L, const struct sockaddr *sa) {
  char buf[64];
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(in->sin_port));
    return 2;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(in6->sin6_port));
    return 2;
  }
  return 0;
}
