/*
** tcp.c -- TCP (and, through the same code, Unix socket) listeners and
** connects: spindle.net.listen, srv:accept, spindle.net.connect.
**
** Listeners.  libuv's uv_listen accepts by itself and, out of
** descriptors, quietly accepts and closes pending connections (its
** "EMFILE trick"), so a server could never tell.  A listener here binds
** with libuv, then calls listen(2) and accept(2) itself on a uv_poll_t:
** accept() tries accept(2) at once, waits for readability only on EAGAIN,
** and returns EMFILE (ENFILE ...) to the caller.  Nothing is polled while
** no task accepts, so an exhausted process cannot spin; the next accept
** after such an error first waits ACCEPT_BACKOFF_MS, so a naive
** `while true do srv:accept() end` loop does not spin either, and pending
** connections stay in the kernel's backlog until descriptors are free.
**
** Connects.  One request (net_connect) per connect call: resolve the name
** (uv_getaddrinfo, skipped for numeric addresses), then try each address
** in turn until one connects; an optional uv_timer_t bounds the whole.
** The request is reference-counted by everything that may still call
** back (resolver, connect request, timer, waiting task) and freed by the
** last; an abort or timeout detaches the task and closes what is pending.
*/
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "tls.h"

#define SP_LISTENER_MT "spindle.listener"
#define ACCEPT_BACKOFF_MS 50

/* Completions that needed no wait still pass through the fairness
** budget; their results are already on the stack. */
static int pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  return (int)ctx;
}

#define parse_numeric sp_addr_parse

/* The keys of the options tables (sp_check_options: others raise). */
static const char *const connect_options[] = {"timeout", "local_host",
                                              "local_port", NULL};
static const char *const listen_options[] = {"backlog", "reuseaddr", "tls",
                                             NULL};
#define check_port sp_io_checkport

/* opts.timeout in seconds, > 0; 0 when absent (no limit).  opts is at arg
** (may be nil). */
double sp_opt_timeout(lua_State *L, int arg) {
  double secs = 0;
  if (lua_isnoneornil(L, arg)) return 0;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (lua_getfield(L, arg, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, arg, "option 'timeout' must be a number");
    secs = lua_tonumber(L, -1);
    if (!(secs > 0) || secs > SP_MAX_SECONDS)
      luaL_argerror(L, arg,
                    "option 'timeout' must be a positive number of seconds "
                    "(at most 1e9)");
  }
  lua_pop(L, 1);
  return secs;
}

/* ---- listeners --------------------------------------------------------- */

typedef struct sp_listener sp_listener;

typedef struct sp_lbox {
  struct sp_listener *l; /* NULL once closed */
} sp_lbox;

struct sp_listener {
  sp_ionode node;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_os_fd_t fd;
  char *path; /* Unix: the socket file, removed on close */
  sp_lbox *box;
  sp_tlsctx *tls; /* {tls = ctx}: accepted streams are TLS servers */
  sp_task *acceptor;
  int perr;          /* poll error, sticky */
  uint64_t retry_at; /* uv_hrtime before which accept waits (EMFILE) */
  int nopen;         /* libuv handles still to close */
  unsigned is_pipe : 1, closing : 1, has_poll : 1, has_timer : 1;
};

static void listener_closed(uv_handle_t *h) {
  sp_listener *l = (sp_listener *)h->data;
  if (--l->nopen == 0) {
    sp_io_untrack(&l->node);
    if (l->tls != NULL) sp_tlsctx_unref(l->tls);
    free(l->path);
    free(l);
  }
}

static void listener_close(sp_listener *l) {
  sp_task *t;
  if (l == NULL || l->closing) return;
  l->closing = 1;
  if (l->box != NULL) {
    l->box->l = NULL;
    l->box = NULL;
  }
  t = l->acceptor;
  l->acceptor = NULL;
  if (t != NULL && t->state == SP_T_WAITING) {
    sp_wake(t, SP_WAKE_OK); /* it finds the box closed */
  }
  if (l->path != NULL) unlink(l->path);
  if (l->has_poll) uv_close((uv_handle_t *)&l->poll, listener_closed);
  if (l->has_timer) uv_close((uv_handle_t *)&l->timer, listener_closed);
  uv_close((uv_handle_t *)&l->u, listener_closed);
}

static void listener_node_close(sp_owned *o) {
  listener_close(sp_container_of(o, sp_listener, node.own));
}

static int lbox_new(lua_State *L) {
  sp_lbox *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->l = NULL;
  luaL_setmetatable(L, SP_LISTENER_MT);
  return 1;
}

/* Binds a new listener to sa (TCP) or path (Unix) and pushes it, or
** nil, msg, code.  Returns the number of results.  [-0, +(1|3), m] */
int sp_listen_bind(lua_State *L, sp_runtime *rt, const struct sockaddr *sa,
                   const char *path, int backlog) {
  sp_lbox *box;
  sp_listener *l;
  int r;
  lbox_new(L);
  box = (sp_lbox *)lua_touserdata(L, -1);
  l = calloc(1, sizeof *l);
  if (l == NULL) luaL_error(L, "not enough memory");
  if (path != NULL) {
    l->path = malloc(strlen(path) + 1);
    if (l->path == NULL) {
      free(l);
      return luaL_error(L, "not enough memory");
    }
    strcpy(l->path, path);
    l->is_pipe = 1;
    r = uv_pipe_init(rt->loop, &l->u.pipe, 0);
  } else
    r = uv_tcp_init_ex(rt->loop, &l->u.tcp, sa->sa_family);
  if (r < 0) {
    free(l->path);
    free(l);
    lua_pop(L, 1);
    return sp_io_fail(L, r);
  }
  l->u.tcp.data = l;
  l->nopen = 1;
  l->box = box;
  box->l = l;

  sp_io_track(&l->node, rt, listener_node_close);
  if (path != NULL)
    r = uv_pipe_bind(&l->u.pipe, path);
  else
    r = uv_tcp_bind(&l->u.tcp, sa, 0);
  if (r < 0) {
    char *p = l->path;
    l->path = NULL; /* not ours: do not remove someone else's file */
    free(p);
    goto fail;
  }
  if (path == NULL) { /* libuv defers EADDRINUSE from bind(2) to listen */
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    r = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
    if (r == 0 && ((struct sockaddr_in *)&ss)->sin_port == 0)
      r = UV_EADDRINUSE; /* not bound: bind(2) failed */
    if (r < 0) goto fail;
  }
  r = uv_fileno((uv_handle_t *)&l->u, &l->fd);
  if (r < 0) goto fail;
  if (listen(l->fd, backlog) < 0) {
    r = uv_translate_sys_error(errno);
    goto fail;
  }
  r = uv_poll_init_socket(rt->loop, &l->poll, l->fd);
  if (r < 0) goto fail;
  l->poll.data = l;
  l->has_poll = 1;
  l->nopen++;
  r = uv_timer_init(rt->loop, &l->timer);
  if (r < 0) goto fail;
  l->timer.data = l;
  l->has_timer = 1;
  l->nopen++;
  return 1;
fail:
  listener_close(l);
  lua_pop(L, 1);
  return sp_io_fail(L, r);
}

static sp_lbox *check_lbox(lua_State *L) {
  return (sp_lbox *)sp_checkclass(L, 1, SP_LISTENER_MT);
}

static void accept_undo(sp_task *t) {
  sp_listener *l = (sp_listener *)t->w.obj;
  if (l->acceptor == t) l->acceptor = NULL;
  uv_poll_stop(&l->poll);
  uv_timer_stop(&l->timer);
}

/* spindle.dump(): "tcp accept 127.0.0.1:4000", "unix accept /tmp/s". */
static void describe_accept(sp_task *t, char *buf, size_t size) {
  sp_listener *l = (sp_listener *)t->w.obj;
  char addr[128] = "";
  if (l->is_pipe)
    snprintf(addr, sizeof addr, "%s", l->path ? l->path : "");
  else {
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len) == 0)
      sp_format_sockaddr((struct sockaddr *)&ss, addr, sizeof addr);
  }
  snprintf(buf, size, "%s accept %s", l->is_pipe ? "unix" : "tcp", addr);
}

static const sp_waitops accept_wait = {"accept", accept_undo, describe_accept};

static void accept_wake(sp_listener *l) {
  sp_task *t = l->acceptor;
  if (t != NULL && t->state == SP_T_WAITING) {
    sp_wake(t, SP_WAKE_OK);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  sp_listener *l = (sp_listener *)h->data;
  (void)events;
  uv_poll_stop(h); /* one shot: the acceptor calls accept(2) itself */
  if (status < 0) l->perr = status;
  accept_wake(l);
}

static void backoff_cb(uv_timer_t *h) { accept_wake((sp_listener *)h->data); }

/* accept(2) without blocking.  A descriptor, or a negative libuv error. */
static int sys_accept(int fd) {
  for (;;) {
    int c;
#if defined(__linux__)
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    c = accept(fd, NULL, NULL);
    if (c >= 0) {
      fcntl(c, F_SETFD, FD_CLOEXEC);
      fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    }
#endif
    if (c >= 0) return c;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    return uv_translate_sys_error(errno);
  }
}

/* Wraps an accepted descriptor as a stream and pushes it (or an error).
** [-0, +(1|3), m] */
static int push_accepted(lua_State *L, sp_listener *l, int fd) {
  sp_runtime *rt = l->node.rt;
  sp_stream *s = sp_stream_alloc(l->is_pipe ? "unix" : "tcp");
  int r;
  if (s == NULL) {
    close(fd);
    return sp_io_fail(L, UV_ENOMEM);
  }
  r = l->is_pipe ? uv_pipe_init(rt->loop, &s->u.pipe, 0)
                 : uv_tcp_init(rt->loop, &s->u.tcp);
  if (r < 0) {
    close(fd);
    free(s);
    return sp_io_fail(L, r);
  }
  r = l->is_pipe ? uv_pipe_open(&s->u.pipe, fd) : uv_tcp_open(&s->u.tcp, fd);
  sp_stream_opened(s, rt);
  if (r < 0) {
    close(fd);
    sp_stream_close(s);
    return sp_io_fail(L, r);
  }
  if (l->tls != NULL && (r = sp_tls_attach_server(s, l->tls)) < 0) {
    sp_stream_close(s);
    return sp_io_fail(L, r);
  }
  sp_stream_push(L, s);
  return 1;
}

static int accept_k(lua_State *L, int status, lua_KContext ctx);

/* Tries to accept; waits if nothing is pending.  fast: first attempt. */
static int accept_try(lua_State *L, sp_listener *l, sp_task *t, int fast) {
  uint64_t now = uv_hrtime();
  int fd, n;
  if (l->perr) return sp_io_fail(L, l->perr);
  if (l->retry_at > now) { /* just ran out of descriptors: back off */
    uv_timer_start(&l->timer, backoff_cb,
                   (l->retry_at - now + 999999) / 1000000, 0);
    l->retry_at = 0;
    goto wait;
  }
  fd = sys_accept((int)l->fd);
  if (fd >= 0) {
    n = push_accepted(L, l, fd);
    return fast ? sp_await_fast(L, t, pass_k, n) : n;
  }
  if (fd != UV_EAGAIN) {
    if (fd == UV_EMFILE || fd == UV_ENFILE || fd == UV_ENOBUFS ||
        fd == UV_ENOMEM)
      l->retry_at = now + (uint64_t)ACCEPT_BACKOFF_MS * 1000000;
    n = sp_io_fail(L, fd);
    return fast ? sp_await_fast(L, t, pass_k, n) : n;
  }
  if ((n = uv_poll_start(&l->poll, UV_READABLE, poll_cb)) < 0)
    return sp_io_fail(L, n);
wait:
  l->acceptor = t;
  return sp_await_block(L, t, &accept_wait, l, accept_k, (lua_KContext)t);
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  sp_lbox *box = (sp_lbox *)lua_touserdata(L, 1);
  sp_listener *l;
  (void)status;
  sp_resumed(L, t);
  l = box->l;
  if (l == NULL) return sp_io_fail_msg(L, "closed", "ECANCELED");
  if (l->acceptor == t) l->acceptor = NULL;
  return accept_try(L, l, t, 0);
}

static int lst_accept(lua_State *L) {
  sp_lbox *box = check_lbox(L);
  sp_listener *l = box->l;
  sp_task *t = sp_await_check(L, "accept");
  lua_settop(L, 1);
  if (l == NULL) return sp_io_fail_msg(L, "closed", "EBADF");
  if (l->node.rt != t->rt)
    luaL_error(L, "accept: the listener belongs to another runtime");
  if (l->acceptor != NULL)
    luaL_error(L, "accept: socket busy (another task is accepting on this "
                  "listener)");
  return accept_try(L, l, t, 1);
}

static int lst_local_addr(lua_State *L) {
  sp_lbox *box = check_lbox(L);
  sp_listener *l = box->l;
  struct sockaddr_storage ss;
  int len = (int)sizeof ss, r;
  if (l == NULL) return sp_io_fail_msg(L, "closed", "EBADF");
  if (l->is_pipe) {
    lua_pushstring(L, l->path ? l->path : "");
    return 1;
  }
  r = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return sp_io_fail(L, r);
  if (sp_push_sockaddr(L, (struct sockaddr *)&ss) == 0)
    return sp_io_fail(L, UV_EAFNOSUPPORT);
  return 2;
}

static int lst_close(lua_State *L) {
  sp_lbox *box = check_lbox(L);
  listener_close(box->l);
  lua_pushboolean(L, 1);
  return 1;
}

static int lst_gc(lua_State *L) {
  sp_lbox *box = (sp_lbox *)sp_testclass(L, 1, SP_LISTENER_MT);
  if (box != NULL && box->l != NULL) {
    box->l->box = NULL;
    listener_close(box->l);
    box->l = NULL;
  }
  return 0;
}

static int lst_tostring(lua_State *L) {
  sp_lbox *box = check_lbox(L);
  if (box->l == NULL)
    lua_pushliteral(L, "spindle.listener (closed)");
  else
    lua_pushfstring(L, "spindle.listener (%s%s: %p)",
                    box->l->tls ? "tls over " : "",
                    box->l->is_pipe ? "unix" : "tcp", (void *)box->l);
  return 1;
}

/* opts.backlog (default 511).  [-0, +0, v] */
int sp_opt_backlog(lua_State *L, int arg) {
  int backlog = 511;
  if (lua_isnoneornil(L, arg)) return backlog;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (lua_getfield(L, arg, "backlog") != LUA_TNIL) {
    lua_Integer b;
    if (!lua_isinteger(L, -1))
      luaL_argerror(L, arg, "option 'backlog' must be an integer");
    b = lua_tointeger(L, -1);
    if (b < 1 || b > 65535)
      luaL_argerror(L, arg, "option 'backlog' must be 1..65535");
    backlog = (int)b;
  }
  lua_pop(L, 1);
  return backlog;
}

/* ---- spindle.net.listen(host, port, [opts]) --------------------------- */

/* A listener just pushed (n == 1) gets the server context tc, if any. */
static int listener_tls(lua_State *L, int n, sp_tlsctx *tc) {
  if (n == 1 && tc != NULL) {
    sp_lbox *box = (sp_lbox *)lua_touserdata(L, -1);
    box->l->tls = tc;
    sp_tlsctx_ref(tc);
  }
  return n;
}

/* Stack: [host, port, opts, g]; ctx: the task. */
static int listen_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  sp_gai *g;
  struct addrinfo *ai;
  sp_tlsctx *tc;
  int n = 0, backlog;
  (void)status;
  sp_resumed(L, t);
  g = (sp_gai *)lua_touserdata(L, 4);
  lua_pushnil(L);
  lua_replace(L, 4);
  if (g->status < 0) {
    n = g->status;
    sp_gai_free(g);
    return sp_io_fail(L, n);
  }
  backlog = sp_opt_backlog(L, 3);
  tc = sp_tls_opt_server(L, 3);
  for (ai = g->res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    n = sp_listen_bind(L, t->rt, ai->ai_addr, NULL, backlog);
    if (n == 1) break;
    if (ai->ai_next != NULL) lua_pop(L, 3);
  }
  sp_gai_free(g);
  if (n == 0) return sp_io_fail(L, UV_EAI_NONAME);
  return listener_tls(L, n, tc);
}

static int l_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  int backlog = (sp_check_options(L, 3, listen_options), sp_opt_backlog(L, 3));
  sp_tlsctx *tc = sp_tls_opt_server(L, 3);
  sp_runtime *rt = sp_box_of(L)->cur;
  struct sockaddr_storage ss;
  sp_task *t;
  sp_gai *g;
  char pbuf[16];
  int r;
  lua_settop(L, 3);
  if (rt == NULL) luaL_error(L, "listen: not inside a runtime");
  if (parse_numeric(host, port, &ss) == 0)
    return listener_tls(
        L, sp_listen_bind(L, rt, (struct sockaddr *)&ss, NULL, backlog), tc);
  t = sp_await_check(L, "listen");
  snprintf(pbuf, sizeof pbuf, "%d", port);
  g = sp_gai_start(t->rt, host, pbuf, SOCK_STREAM, &r);
  if (g == NULL) return sp_io_fail(L, r);
  g->task = t;
  lua_pushlightuserdata(L, g);
  return sp_await_block(L, t, &sp_gai_wait, g, listen_k, (lua_KContext)t);
}

/* ---- connect ------------------------------------------------------------ */

typedef struct net_connect {
  sp_ionode node;
  sp_task *task; /* NULL once detached */
  int refs;      /* task + pending resolver, connect and timer */
  sp_gai *gai;   /* the name being resolved, while resolving */
  struct addrinfo *ai, *cur;
  uv_timer_t timer;
  uv_connect_t creq;
  sp_stream *s;  /* the stream being connected, then the result */
  char *path;    /* Unix socket path */
  char what[96]; /* "127.0.0.1:80" or the path, for spindle.dump() */
  struct sockaddr_storage local; /* opts.local_host/local_port */
  int status, last_err;
  unsigned done : 1, resolving : 1, has_timer : 1, has_local : 1;
} net_connect;

static void op_unref(net_connect *op) {
  if (--op->refs > 0) return;
  sp_io_untrack(&op->node);
  if (op->ai != NULL) uv_freeaddrinfo(op->ai);
  free(op->path);
  free(op);
}

static void op_timer_closed(uv_handle_t *h) {
  op_unref((net_connect *)h->data);
}

/* Stops everything still pending; the callbacks drop their references. */
static void op_stop(net_connect *op) {
  if (op->has_timer) {
    op->has_timer = 0;
    uv_close((uv_handle_t *)&op->timer, op_timer_closed);
  }
  if (op->resolving) { /* the caller holds another reference */
    op->resolving = 0;
    sp_gai_detach(op->gai);
    op->gai = NULL;
    op->refs--;
  }
  if (op->status != 0 && op->s != NULL) {
    sp_stream_close(op->s); /* its connect_cb comes with ECANCELED */
    op->s = NULL;
  }
}

static void op_finish(net_connect *op, int status) {
  sp_task *t = op->task;
  if (op->done) return;
  op->done = 1;
  op->status = status;
  op_stop(op);
  if (t != NULL && t->state == SP_T_WAITING) {
    sp_wake(t, SP_WAKE_OK);
  }
}

static void connect_cb(uv_connect_t *req, int status);

/* Starts connecting to one address (sa) or path.  0 or a libuv error. */
static int op_attempt(net_connect *op, const struct sockaddr *sa) {
  sp_runtime *rt = op->node.rt;
  sp_stream *s = sp_stream_alloc(op->path ? "unix" : "tcp");
  int r;
  if (s == NULL) return UV_ENOMEM;
  if (op->path != NULL)
    r = uv_pipe_init(rt->loop, &s->u.pipe, 0);
  else
    r = uv_tcp_init(rt->loop, &s->u.tcp);
  if (r < 0) {
    free(s);
    return r;
  }
  sp_stream_opened(s, rt);
  if (op->has_local &&
      (r = uv_tcp_bind(&s->u.tcp, (struct sockaddr *)&op->local, 0)) < 0) {
    sp_stream_close(s);
    return r;
  }
  if (op->path != NULL) {
    uv_pipe_connect(&op->creq, &s->u.pipe, op->path, connect_cb);
    r = 0;
  } else
    r = uv_tcp_connect(&op->creq, &s->u.tcp, sa, connect_cb);
  if (r < 0) {
    sp_stream_close(s);
    return r;
  }
  op->s = s;
  op->refs++;
  return 0;
}

/* Tries the remaining resolved addresses in turn. */
static void op_next(net_connect *op) {
  while (op->cur != NULL) {
    struct addrinfo *ai = op->cur;
    int r;
    op->cur = ai->ai_next;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (op->has_local && ai->ai_family != op->local.ss_family) {
      if (op->last_err == 0) op->last_err = UV_EAFNOSUPPORT;
      continue;
    }
    r = op_attempt(op, ai->ai_addr);
    if (r == 0) return;
    op->last_err = r;
  }
  op_finish(op, op->last_err ? op->last_err : UV_EAI_NONAME);
}

static void connect_cb(uv_connect_t *req, int status) {
  net_connect *op = sp_container_of(req, net_connect, creq);
  if (!op->done) {
    if (status == 0)
      op_finish(op, 0);
    else if (status == UV_ECANCELED || op->path != NULL) {
      op->last_err = status;
      op_finish(op, status);
    } else {
      op->last_err = status;
      sp_stream_close(op->s);
      op->s = NULL;
      op_next(op);
    }
  }
  op_unref(op);
}

static void op_gai_done(sp_gai *g) {
  net_connect *op = (net_connect *)g->data;
  op->resolving = 0;
  op->gai = NULL;
  if (!op->done) {
    if (g->status < 0)
      op_finish(op, g->status);
    else {
      op->ai = op->cur = g->res;
      g->res = NULL; /* ours now */
      op_next(op);
    }
  }
  op_unref(op);
}

static void op_timer_cb(uv_timer_t *h) {
  op_finish((net_connect *)h->data, UV_ETIMEDOUT);
}

/* Abort or timeout of the waiting task. */
static void connect_undo(sp_task *t) {
  net_connect *op = (net_connect *)t->w.obj;
  op->task = NULL;
  if (!op->done) {
    op->done = 1;
    op->status = UV_ECANCELED;
  }
  op_stop(op);
  op_unref(op);
}

/* Closing the runtime: detach everything. */
static void connect_node_close(sp_owned *o) {
  net_connect *op = sp_container_of(o, net_connect, node.own);
  if (op->task != NULL) {
    op->task->wait = NULL;
    op->task = NULL;
    op->refs--; /* the task never resumes into this request */
  }
  if (!op->done) {
    op->done = 1;
    op->status = UV_ECANCELED;
  }
  op->refs++; /* op_stop must not free it under our feet */
  op_stop(op);
  op_unref(op);
}

static void describe_connect(sp_task *t, char *buf, size_t size) {
  net_connect *op = (net_connect *)t->w.obj;
  snprintf(buf, size, "%s connect %s", op->path ? "unix" : "tcp", op->what);
}

static const sp_waitops connect_wait = {"connect", connect_undo,
                                        describe_connect};

/* nil, "host:port: message", code -- a failed connect names where it went
** (the code stays libuv's bare name; "timeout" stays a word of its own).
** [-0, +3, m] */
static void connect_fail(lua_State *L, net_connect *op, int status) {
  if (status == UV_ETIMEDOUT) {
    sp_io_fail(L, status);
    return;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", op->what, uv_strerror(status));
  lua_pushstring(L, uv_err_name(status));
}

/* Stack: [..., op]; ctx: the task. */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  net_connect *op;
  sp_stream *s;
  (void)status;
  sp_resumed(L, t); /* aborted: the undo released the request */
  op = (net_connect *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  op->task = NULL;
  s = op->s;
  op->s = NULL;
  status = op->status;
  if (status < 0) {
    if (s != NULL) sp_stream_close(s);
    connect_fail(L, op, status);
    op_unref(op);
    return 3;
  }
  op_unref(op);
  sp_stream_push(L, s);
  return 1;
}

/* Starts a connect to host:port (path NULL) or to a Unix socket path and
** waits for it.  [-0, +(1|3), e] */
int sp_connect_start(lua_State *L, const char *host, int port, const char *path,
                     double timeout) {
  return sp_connect_start_from(L, host, port, path, timeout, NULL);
}

int sp_connect_start_from(lua_State *L, const char *host, int port,
                          const char *path, double timeout,
                          const struct sockaddr *local) {
  sp_task *t = sp_await_check(L, path ? "connect_unix" : "connect");
  sp_runtime *rt = t->rt;
  struct sockaddr_storage ss;
  net_connect *op = calloc(1, sizeof *op);
  int r;
  if (op == NULL) luaL_error(L, "not enough memory");
  if (path != NULL) {
    op->path = malloc(strlen(path) + 1);
    if (op->path == NULL) {
      free(op);
      return luaL_error(L, "not enough memory");
    }
    strcpy(op->path, path);
  }
  op->task = t;
  op->refs = 1;
  if (local != NULL) {
    memcpy(&op->local, local,
           local->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in));
    op->has_local = 1;
  }
  if (path != NULL)
    snprintf(op->what, sizeof op->what, "%s", path);
  else
    snprintf(op->what, sizeof op->what, "%s:%d", host, port);
  sp_io_track(&op->node, rt, connect_node_close);
  r = 0;
  if (timeout > 0 && (r = uv_timer_init(rt->loop, &op->timer)) == 0) {
    op->timer.data = op;
    op->has_timer = 1;
    op->refs++;
    uv_timer_start(&op->timer, op_timer_cb, (uint64_t)(timeout * 1000 + 0.999),
                   0);
  }
  if (r < 0)
    ; /* reported below */
  else if (path != NULL)
    r = op_attempt(op, NULL);
  else if (parse_numeric(host, port, &ss) == 0)
    r = local != NULL && local->sa_family != ss.ss_family
            ? UV_EAFNOSUPPORT
            : op_attempt(op, (struct sockaddr *)&ss);
  else {
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", port);
    op->gai = sp_gai_start(rt, host, pbuf, SOCK_STREAM, &r);
    if (op->gai != NULL) {
      op->gai->done_cb = op_gai_done;
      op->gai->data = op;
      op->resolving = 1;
      op->refs++;
      r = 0;
    }
  }
  if (r < 0) op_finish(op, r);
  if (op->done) { /* failed at once */
    r = op->status;
    op->task = NULL;
    connect_fail(L, op, r);
    op_unref(op);
    return 3;
  }
  lua_pushlightuserdata(L, op);
  return sp_await_block(L, t, &connect_wait, op, connect_k, (lua_KContext)t);
}

/* opts.local_host (a numeric address) and opts.local_port (default 0):
** where a connect binds its socket first.  Returns 1 and fills ss, or 0
** when neither is given.  [-0, +0, v] */
static int opt_local(lua_State *L, int arg, struct sockaddr_storage *ss) {
  const char *host = NULL;
  lua_Integer port = 0;
  if (lua_isnoneornil(L, arg)) return 0;
  if (lua_getfield(L, arg, "local_host") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, arg, "option 'local_host' must be a string");
    host = lua_tostring(L, -1);
  }
  if (lua_getfield(L, arg, "local_port") != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
        lua_tointeger(L, -1) > 65535)
      luaL_argerror(L, arg, "option 'local_port' must be an integer 0..65535");
    port = lua_tointeger(L, -1);
    if (host == NULL)
      luaL_argerror(L, arg, "option 'local_port' needs 'local_host'");
  }
  if (host != NULL && parse_numeric(host, (int)port, ss) != 0)
    luaL_argerror(L, arg,
                  "option 'local_host' must be a numeric IPv4 or IPv6 address");
  lua_pop(L, 2);
  return host != NULL;
}

static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  double timeout;
  sp_check_options(L, 3, connect_options);
  timeout = sp_opt_timeout(L, 3);
  struct sockaddr_storage local;
  int has_local = opt_local(L, 3, &local);
  lua_settop(L, 3);
  return sp_connect_start_from(L, host, port, NULL, timeout,
                               has_local ? (struct sockaddr *)&local : NULL);
}

/* Adds listen and connect to the net table at -1 and creates the listener
** metatable.  [-0, +0, m] */
int sp_tcp_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"accept", lst_accept},
                                     {"local_addr", lst_local_addr},
                                     {"close", lst_close},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"listen", l_listen}, {"connect", l_connect}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", lst_gc},
                                  {"__close", lst_close},
                                  {"__tostring", lst_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, SP_LISTENER_MT, methods, meta);
  lua_pop(L, 1);
  sp_setfuncs(L, fns);
  return 0;
}
