/*
** udp.c -- spindle.net.udp(): datagram sockets (uv_udp_t).
**
** Receiving: recv_from() waits in a FIFO of readers; the socket reads
** (uv_udp_recv_start) only while that FIFO is not empty, so datagrams
** nobody asked for stay in the kernel's socket buffer -- the runtime never
** queues any (bounded memory whatever a peer sends).  Each datagram goes
** to the first waiting reader, truncated to the max it asked for.
**
** Sending: send_to() tries uv_udp_try_send first; when the kernel queue is
** full it falls back to uv_udp_send and waits for the completion.  An
** aborted sender detaches: the datagram may still be sent.
**
** Addresses: numeric IPv4 or IPv6 ("localhost" and "*" too) are used at
** once; other names are resolved on the thread pool first (the first
** address wins), which makes bind an await in that case.
**
** Memory: the userdata holds a pointer to a malloc'd udp_obj, which
** libuv may touch until the close callback frees it.  close(), __close,
** __gc and runtime close share udp_close; closing wakes readers and
** pending senders with nil, "closed", "ECANCELED".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define UDP_MT "spindle.net.udp"
#define UDP_BUF 65536

typedef struct udp_obj {
  sp_ionode node; /* owned until the close callback */
  uv_udp_t h;
  sp_runtime *rt;
  struct udp_obj **ud; /* the userdata's pointer, NULL once collected */
  sp_wlist readers;    /* t->w.obj = the reader's udp_rd */
  int receiving;
  char buf[UDP_BUF];
} udp_obj;

/* A waiting reader's result, a userdata on the reader's own stack. */
typedef struct udp_rd {
  udp_obj *u;
  size_t max;
  char *data; /* malloc'd copy, freed by the continuation */
  size_t len;
  int err; /* < 0: error; UV_ECANCELED: closed */
  struct sockaddr_storage addr;
} udp_rd;

typedef struct udp_sreq {
  uv_udp_send_t req;
  sp_task *task; /* NULL once abandoned */
  int status;
  int done;
  char data[1];
} udp_sreq;

/* ---- addresses --------------------------------------------------------- */

static int parse_addr(lua_State *L, int hidx, int pidx,
                      struct sockaddr_storage *ss) {
  const char *host = luaL_checkstring(L, hidx);
  lua_Integer port = luaL_checkinteger(L, pidx);
  luaL_argcheck(L, port >= 0 && port <= 65535, pidx, "port out of range");
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  else if (strcmp(host, "*") == 0)
    host = "0.0.0.0";
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL; /* a name: resolve it */
}

#define set_port sp_addr_set_port

/* Pushes host, port.  [-0, +2, m] */
static int push_addr(lua_State *L, const struct sockaddr *sa) {
  char ip[64] = "";
  int port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

/* ---- resolving names ---------------------------------------------------- */

/* Starts resolving the name at hidx for t (the library's one getaddrinfo
** path, dns.c), which then waits with continuation k; a failure to start
** returns nil, msg, code at once.  The first address returned is used. */
static int resolve_then(lua_State *L, sp_task *t, int hidx, lua_KFunction k) {
  int r;
  sp_gai *g = sp_gai_start(t->rt, lua_tostring(L, hidx), NULL, SOCK_DGRAM, &r);
  if (g == NULL) return sp_io_fail(L, r);
  g->task = t;
  return sp_await_block(L, t, &sp_gai_wait, g, k, (lua_KContext)t);
}

/* In a continuation: the finished request's address (port pidx applied)
** or its error; frees it. */
static int resolved(lua_State *L, sp_task *t, int pidx,
                    struct sockaddr_storage *ss) {
  sp_gai *g = (sp_gai *)t->w.obj;
  int st = g->status;
  if (st == 0) {
    struct addrinfo *ai;
    st = UV_EAI_NONAME;
    for (ai = g->res; ai != NULL; ai = ai->ai_next)
      if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
        memset(ss, 0, sizeof *ss);
        memcpy(ss, ai->ai_addr, ai->ai_addrlen);
        set_port(ss, (int)lua_tointeger(L, pidx));
        st = 0;
        break;
      }
  }
  sp_gai_free(g);
  return st;
}

/* ---- close ------------------------------------------------------------- */

static void udp_closed(uv_handle_t *h) {
  udp_obj *u = (udp_obj *)h->data;
  sp_io_untrack(&u->node);
  free(u);
}

static void wake_reader(udp_obj *u, sp_task *t) {
  sp_wlist_remove(&u->readers, t);
  sp_wake(t, SP_WAKE_OK);
}

static void udp_close(udp_obj *u) {
  sp_task *t;
  if (u->ud != NULL) *u->ud = NULL;
  u->ud = NULL;
  while ((t = u->readers.head) != NULL) {
    ((udp_rd *)t->w.obj)->err = UV_ECANCELED;
    wake_reader(u, t);
  }
  /* pending sends complete with UV_ECANCELED before the close callback */
  uv_close((uv_handle_t *)&u->h, udp_closed);
}

static void udp_rtclose(sp_owned *o) {
  udp_obj *u = sp_container_of(o, udp_obj, node.own);
  if (!uv_is_closing((uv_handle_t *)&u->h)) udp_close(u);
}

static udp_obj *udp_get(lua_State *L) {
  return *(udp_obj **)sp_checkclass(L, 1, UDP_MT);
}

/* The open socket at 1 for an await, checked against the running task. */
static udp_obj *udp_for(lua_State *L, sp_task *t, const char *name) {
  udp_obj *u = udp_get(L);
  if (u != NULL && u->rt != t->rt)
    luaL_error(L, "%s: the socket belongs to another runtime", name);
  return u;
}

/* ---- spindle.net.udp() and the plain methods ---------------------------- */

static int l_udp(lua_State *L) {
  sp_runtime *rt = sp_io_runtime(L, "spindle.net.udp");
  udp_obj **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  udp_obj *u;
  int r;
  *ud = NULL; /* born closed */
  luaL_setmetatable(L, UDP_MT);
  if ((u = calloc(1, sizeof *u)) == NULL)
    return luaL_error(L, "not enough memory");
  if ((r = uv_udp_init(rt->loop, &u->h)) < 0) {
    free(u);
    return sp_io_fail(L, r);
  }
  u->h.data = u;
  u->rt = rt;
  sp_io_track(&u->node, rt, udp_rtclose);
  u->ud = ud;
  *ud = u;
  return 1;
}

static int bind_now(lua_State *L, udp_obj *u, struct sockaddr_storage *ss) {
  int r;
  if (u == NULL) return sp_io_closed(L, "ECANCELED");
  if ((r = uv_udp_bind(&u->h, (struct sockaddr *)ss, 0)) < 0)
    return sp_io_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int bind_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  struct sockaddr_storage ss;
  int r;
  (void)status;
  sp_resumed(L, t);
  if ((r = resolved(L, t, 3, &ss)) < 0) return sp_io_fail(L, r);
  return bind_now(L, udp_get(L), &ss); /* closed meanwhile: "closed" */
}

/* u:bind(host, port): a numeric host binds at once; a name is resolved
** first (an await, so only inside a task). */
static int udp_bind(lua_State *L) {
  udp_obj *u = udp_get(L);
  struct sockaddr_storage ss;
  int r = parse_addr(L, 2, 3, &ss);
  sp_task *t;
  if (u == NULL) return sp_io_closed(L, "ECANCELED");
  if (r == 0) return bind_now(L, u, &ss);
  t = sp_await_check(L, "bind");
  lua_settop(L, 3);
  return resolve_then(L, t, 2, bind_k);
}

static int udp_local_addr(lua_State *L) {
  udp_obj *u = udp_get(L);
  struct sockaddr_storage ss;
  int len = (int)sizeof ss, r;
  if (u == NULL) return sp_io_closed(L, "ECANCELED");
  if ((r = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len)) < 0)
    return sp_io_fail(L, r);
  return push_addr(L, (struct sockaddr *)&ss);
}

static void udp_close_any(void *obj) { udp_close((udp_obj *)obj); }

static const sp_closer udp_closer = {UDP_MT, udp_close_any};

static int udp_tostring(lua_State *L) {
  udp_obj *u = udp_get(L);
  if (u == NULL)
    lua_pushliteral(L, "spindle.net.udp (closed)");
  else
    lua_pushfstring(L, "spindle.net.udp (%p)", (void *)u);
  return 1;
}

/* ---- recv_from ---------------------------------------------------------- */

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  udp_obj *u = (udp_obj *)h->data;
  (void)hint;
  *buf = uv_buf_init(u->buf, UDP_BUF);
}

static void recv_stop(udp_obj *u) {
  if (u->receiving) uv_udp_recv_stop(&u->h);
  u->receiving = 0;
}

static void udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags) {
  udp_obj *u = (udp_obj *)h->data;
  sp_task *t = u->readers.head;
  (void)buf;
  (void)flags;
  if (nread == 0 && addr == NULL) return; /* nothing more to read now */
  if (t == NULL) return; /* not reached: reading stops with the last reader */
  {
    udp_rd *rd = (udp_rd *)t->w.obj;
    if (nread < 0)
      rd->err = (int)nread;
    else {
      size_t n = (size_t)nread < rd->max ? (size_t)nread : rd->max;
      rd->data = malloc(n ? n : 1);
      if (rd->data == NULL)
        rd->err = UV_ENOMEM;
      else {
        memcpy(rd->data, u->buf, n);
        rd->len = n;
        if (addr->sa_family == AF_INET6)
          memcpy(&rd->addr, addr, sizeof(struct sockaddr_in6));
        else
          memcpy(&rd->addr, addr, sizeof(struct sockaddr_in));
      }
    }
    wake_reader(u, t);
  }
  if (u->readers.head == NULL) recv_stop(u);
}

static void recv_undo(sp_task *t) {
  udp_rd *rd = (udp_rd *)t->w.obj;
  udp_obj *u = rd->u;
  sp_wlist_remove(&u->readers, t);
  if (u->readers.head == NULL) recv_stop(u);
}

static void udp_describe(sp_task *t, char *buf, size_t size);

static const sp_waitops recv_wait = {"udp recv_from", recv_undo, udp_describe};

/* [rd] -> data, host, port.  [-1, +3, m] */
static int push_datagram_p(lua_State *L) {
  udp_rd *rd = (udp_rd *)lua_touserdata(L, 1);
  lua_pushlstring(L, rd->data, rd->len);
  push_addr(L, (struct sockaddr *)&rd->addr);
  return 3;
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  udp_rd *rd;
  (void)status;
  sp_resumed(L, t);
  rd = (udp_rd *)t->w.obj;
  if (rd->err == UV_ECANCELED) return sp_io_closed(L, "ECANCELED");
  if (rd->err < 0) return sp_io_fail(L, rd->err);
  /* protected: the malloc'd datagram must not leak if pushing raises */
  lua_pushcfunction(L, push_datagram_p);
  lua_pushlightuserdata(L, rd);
  status = lua_pcall(L, 1, 3, 0);
  free(rd->data);
  rd->data = NULL;
  if (status != LUA_OK) return lua_error(L);
  return 3;
}

static int udp_recv_from(lua_State *L) {
  lua_Integer max = luaL_optinteger(L, 2, UDP_BUF);
  sp_task *t;
  udp_obj *u;
  udp_rd *rd;
  luaL_argcheck(L, max >= 1 && max <= 0x7fffffff, 2, "max out of range");
  t = sp_await_check(L, "recv_from");
  if ((u = udp_for(L, t, "recv_from")) == NULL)
    return sp_io_closed(L, "ECANCELED");
  rd = lua_newuserdatauv(L, sizeof *rd, 0); /* lives on this stack */
  memset(rd, 0, sizeof *rd);
  rd->u = u;
  rd->max = (size_t)max;
  if (!u->receiving) {
    int r = uv_udp_recv_start(&u->h, udp_alloc, udp_recv_cb);
    if (r < 0) return sp_io_fail(L, r);
    u->receiving = 1;
  }
  sp_wlist_push(&u->readers, t);
  return sp_await_block(L, t, &recv_wait, rd, recv_k, (lua_KContext)t);
}

/* ---- send_to ------------------------------------------------------------ */

static void send_cb(uv_udp_send_t *req, int status) {
  udp_sreq *s = sp_container_of(req, udp_sreq, req);
  sp_task *t = s->task;
  if (t == NULL) {
    free(s);
    return;
  }
  s->status = status;
  s->done = 1;
  sp_wake(t, SP_WAKE_OK); /* the continuation frees s */
}

static void send_undo(sp_task *t) {
  udp_sreq *s = (udp_sreq *)t->w.obj;
  s->task = NULL; /* the datagram may still go out; send_cb frees s */
}

static const sp_waitops send_wait = {"udp send_to", send_undo, NULL};

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  udp_sreq *s;
  int st;
  (void)status;
  sp_resumed(L, t);
  s = (udp_sreq *)t->w.obj;
  st = s->status;
  free(s);
  if (st == UV_ECANCELED) return sp_io_closed(L, "ECANCELED");
  if (st < 0) return sp_io_fail(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

/* The fast path: the kernel took the datagram at once. */
static int sent_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  sp_resumed(L, (sp_task *)ctx);
  lua_pushboolean(L, 1);
  return 1;
}

/* Sends data (argument 2) to ss on u, waiting only if the kernel queue is
** full. */
static int send_now(lua_State *L, sp_task *t, udp_obj *u,
                    struct sockaddr_storage *ss) {
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  udp_sreq *s;
  uv_buf_t b;
  int r;
  if (u == NULL) return sp_io_closed(L, "ECANCELED");
  if (len > 0x7fffffff) return sp_io_fail(L, UV_EMSGSIZE);
  b = uv_buf_init((char *)data, (unsigned int)len);
  r = uv_udp_try_send(&u->h, &b, 1, (struct sockaddr *)ss);
  if (r >= 0) return sp_await_fast(L, t, sent_k, (lua_KContext)t);
  if (r != UV_EAGAIN && r != UV_ENOSYS) return sp_io_fail(L, r);
  if ((s = malloc(sizeof *s + len)) == NULL)
    return luaL_error(L, "not enough memory");
  memcpy(s->data, data, len);
  s->task = t;
  s->status = 0;
  s->done = 0;
  b = uv_buf_init(s->data, (unsigned int)len);
  if ((r = uv_udp_send(&s->req, &u->h, &b, 1, (struct sockaddr *)ss, send_cb)) <
      0) {
    free(s);
    return sp_io_fail(L, r);
  }
  return sp_await_block(L, t, &send_wait, s, send_k, (lua_KContext)t);
}

static int send_resolved_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  struct sockaddr_storage ss;
  int r;
  (void)status;
  sp_resumed(L, t);
  if ((r = resolved(L, t, 4, &ss)) < 0) return sp_io_fail(L, r);
  return send_now(L, t, udp_get(L), &ss); /* closed meanwhile: "closed" */
}

/* u:send_to(data, host, port); a name is resolved first. */
static int udp_send_to(lua_State *L) {
  struct sockaddr_storage ss;
  int r;
  sp_task *t;
  udp_obj *u;
  luaL_checkstring(L, 2);
  r = parse_addr(L, 3, 4, &ss);
  t = sp_await_check(L, "send_to");
  u = udp_for(L, t, "send_to");
  lua_settop(L, 4);
  if (u == NULL) return sp_io_closed(L, "ECANCELED");
  if (r == 0) return send_now(L, t, u, &ss);
  return resolve_then(L, t, 3, send_resolved_k);
}

/* spindle.dump: "udp recv_from 127.0.0.1:5000". */
static void udp_describe(sp_task *t, char *buf, size_t size) {
  {
    udp_rd *rd = (udp_rd *)t->w.obj;
    struct sockaddr_storage ss;
    int len = (int)sizeof ss, port = 0;
    char ip[64] = "?";
    if (uv_udp_getsockname(&rd->u->h, (struct sockaddr *)&ss, &len) == 0) {
      if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      }
    }
    snprintf(buf, size, "udp recv_from %s:%d", ip, port);
  }
}

int sp_udp_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"bind", udp_bind},
                                     {"send_to", udp_send_to},
                                     {"recv_from", udp_recv_from},
                                     {"local_addr", udp_local_addr},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {{"udp", l_udp}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", udp_tostring}, {NULL, NULL}};
  sp_newclass(L, UDP_MT, methods, meta);
  lua_pop(L, 1);
  sp_setcloser(L, &udp_closer);
  sp_setfuncs(L, fns); /* into the net table at -1 */
  return 0;
}
