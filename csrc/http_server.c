/*
** http_server.c -- the C half of spindle.http's server (docs/http.md, The
** server): the per-request work of a connection.  Lua keeps the policy
** that is not per request (lua/spindle/http_server.lua: options, the
** acceptor, connection tasks, graceful close); everything a request costs
** is here.
**
**   spindle._http_conf(opts, handler, report) -> conf, run
**       opts: max_header, max_body, header_timeout, idle_timeout (checked
**       by the Lua side).  report(err, traceback, req) reports a failed
**       handler.  conf:close() marks the server closing and ends the
**       connections that wait for a request; conf:tasks() lists the tasks
**       of the connections being served; conf:conn(permit, stream) makes
**       a connection (the acceptor, for each stream it accepts).
**   run(conn)               the task of one connection ("a connection's
**       task" below): requests read, handled and answered in order.  Its
**       steps are the methods of the internal class spindle.http.conn:
**       conn:next()      -> req, res  the next request (awaits), or nil:
**                           the connection is over (peer gone, idle,
**                           closing, or a malformed request already
**                           answered with 400/408/413/431/501/505);
**                           run's own call may instead park the task
**                           (below) and return false
**       conn:finish(res, ok, ...)     after the handler's protected call:
**                           answers (returned values, or 500), reports a
**                           failure, re-raises a cancellation.  -> true
**                           (serve the next request), "skip" (the body
**                           was not read), or false (close)
**
** Requests are read in place: a C reader (SP_STREAM_R_FN) that the read
** callback asks whether the head is there, so a connection task is
** resumed once per request, not per packet.  A head that came whole is
** parsed once, by the task, in the server's scratch state; one that comes
** in pieces is parsed as it comes (http_parse.c is incremental) in a
** state the connection holds only until the head is complete.  The
** deadlines are one heap timer per connection: idle_timeout until the
** first byte of a request, then header_timeout from that byte (absolute:
** a trickle does not extend it).
**
** A request (spindle.http.request) is one userdata: the head's bytes,
** the parser's spans into them and the body's state; its fields are made
** when first asked for (__index), and fields a handler sets are kept in a
** table of its own.  A response (spindle.http.response) writes its head
** with one buffer; a handler's returned status, headers and body go out in
** one write.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_parse.h"
#include "io.h"
#include "tls.h"

#define CONF_MT "spindle.http.conf"
#define CONN_MT "spindle.http.conn"
#define REQ_MT "spindle.http.request"
#define RES_MT "spindle.http.response"
#define MAX_HEADERS 100
#define SKIP_MAX 65536 /* an unread body up to this is skipped, not fatal */
#define READ_MAX 65536

typedef struct hconn hconn;

/* A link of a circular list of connections; `next == NULL` while not in
** one.  A connection is in two: its server's idle list and its list of
** every connection (sp_container_of finds the connection). */
typedef struct hlink {
  struct hlink *next, *prev;
} hlink;

/* Every function here has the module box as upvalue 1 and the four
** metatables as upvalues 2..5: checking a self is a pointer comparison
** (luaL_checkudata looks the name up in the registry every time). */
enum { UP_CONF = 2, UP_CONN, UP_REQ, UP_RES };

static void *check_up(lua_State *L, int idx, int up, const char *name) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(up));
    lua_pop(L, 1);
    if (same) return p;
  }
  return luaL_checkudata(L, idx, name); /* raises */
}

static void set_mt(lua_State *L, int up) {
  lua_pushvalue(L, lua_upvalueindex(up));
  lua_setmetatable(L, -2);
}

typedef struct hconf {
  uint64_t max_body;
  uint32_t max_header;
  uint64_t header_ns, idle_ns;
  int closing;
  hlink *idle; /* connections waiting for a request (hconn.il) */
  hlink *all;  /* every connection served by run() (hconn.al) */
  int nwarm;   /* connections waiting for a request with their coroutine */
  /* Where response heads are made.  One per server: a head is made and
  ** handed to the stream (written, or copied into a Lua string) before
  ** the task can yield, so connections never share it at once. */
  char *wbuf;
  size_t wlen, wcap;
  time_t date_t;
  char date[40]; /* "date: <IMF-fixdate>\r\n" of date_t */
  size_t date_len;
  /* Where heads that came whole are parsed: the parse, the copy into the
  ** request and the consumption happen without a yield between. */
  sp_http_request r;
  sp_http_header hdr[MAX_HEADERS];
} hconf;

/* The parser's state for a head that came in pieces: made when a head
** is found incomplete, freed once it is complete (or broken). */
typedef struct hpart {
  sp_http_request r;
  sp_http_header hdr[MAX_HEADERS];
} hpart;

/* Connection user values. */
enum {
  CU_STREAM = 1,
  CU_CONF,
  CU_PEER,
  CU_CUR,    /* the request being served */
  CU_PERMIT, /* the max_connections permit, or nil */
  CU_N = CU_PERMIT
};

typedef struct hreq hreq;

struct hconn {
  hconf *conf;
  sp_sbox *box;
  sp_task *task; /* waiting in next() */
  hlink il, al;  /* in conf->idle, conf->all */
  sp_task *own;  /* the task that serves it (run), or NULL */
  sp_timer timer;
  sp_runtime *rt;
  hreq *cur;   /* the request being served, or NULL */
  hpart *part; /* a head begun and not complete, or NULL */
  unsigned head : 1, timed_out : 1, woken : 1, oom : 1;
  unsigned started : 1; /* run has begun serving it */
  unsigned parked : 1;  /* its task waits without a coroutine */
  unsigned warm : 1;    /* it waits with its coroutine (conf->nwarm) */
};

/* Request user values. */
enum { RU_EXTRA = 1, RU_CONN, RU_N = RU_CONN };

struct hreq {
  hconn *conn; /* NULL once the exchange is over */
  sp_http_span method, target, path, query;
  uint32_t nheaders, head_len;
  int64_t length; /* Content-Length, -1 when none */
  uint64_t left;  /* Content-Length bytes not read yet */
  uint64_t seen;  /* chunked: body bytes decoded so far */
  uint64_t max_body;
  sp_http_chunked cd;
  uint16_t flags;
  uint8_t version, form;
  unsigned done : 1, continued : 1, has_pending : 1;
  sp_http_header *headers; /* after the struct, then the head's bytes */
  char *bytes;
};

/* Response user values. */
enum { SU_REQ = 1, SU_CONN, SU_N = SU_CONN };

typedef struct hres {
  hconn *conn; /* NULL once the exchange is over */
  hreq *req;
  int status;
  unsigned started : 1, finished : 1, chunked : 1, nobody : 1, close : 1,
      broken : 1;
} hres;

static const char *reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return NULL;
  }
}

/* The date header line, made once a second.  Wall-clock time, also under
** a virtual clock (it is what the peer reads). */
static const char *date_line(hconf *cf, size_t *len) {
  time_t t = time(NULL);
  if (t != cf->date_t || cf->date_len == 0) {
    struct tm tm;
    gmtime_r(&t, &tm);
    cf->date_len = strftime(cf->date, sizeof cf->date,
                            "date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cf->date_t = t;
  }
  *len = cf->date_len;
  return cf->date;
}

/* ---- body errors -------------------------------------------------------- */

/* A body that breaks a limit or its framing, or a response the peer did
** not take, raises a BodyError inside the handler: a table {status, why
** [, code]} with this metatable.  The server answers with the status (0:
** nothing to answer, the connection is gone). */
static const char body_error_key = 'b';

static int body_error_tostring(lua_State *L) {
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "why");
  lua_pushfstring(L, "http: %s %s", lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}

static int body_error(lua_State *L, int status, const char *why,
                      const char *code) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, why);
  lua_setfield(L, -2, "why");
  if (code != NULL) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &body_error_key);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

static int is_body_error(lua_State *L, int idx) {
  int yes;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &body_error_key);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

static int is_cancel(lua_State *L, int idx) {
  return luaL_testudata(L, idx, SP_CANCEL_MT) != NULL ||
         luaL_testudata(L, idx, SP_TIMEOUT_MT) != NULL;
}

/* ---- the server's configuration ------------------------------------------ */

static void ring_link(hlink **head, hlink *l) {
  hlink *h = *head;
  if (h == NULL) {
    l->next = l->prev = l;
    *head = l;
  } else { /* before the head: the tail of the circle */
    l->next = h;
    l->prev = h->prev;
    h->prev->next = l;
    h->prev = l;
  }
}

static void ring_unlink(hlink **head, hlink *l) {
  if (l->next == NULL) return;
  if (l->next == l)
    *head = NULL;
  else {
    l->next->prev = l->prev;
    l->prev->next = l->next;
    if (*head == l) *head = l->next;
  }
  l->next = l->prev = NULL;
}

static void idle_link(hconn *c) { ring_link(&c->conf->idle, &c->il); }
static void idle_unlink(hconn *c) { ring_unlink(&c->conf->idle, &c->il); }

static double opt_number(lua_State *L, int t, const char *k, double def) {
  double v;
  lua_getfield(L, t, k);
  v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int conn_msgh(lua_State *L);
static int conn_run(lua_State *L);

/* The run closure's upvalues after the usual five (box, metatables). */
enum { UR_CONF = 6, UR_HANDLER, UR_MSGH, UR_NEXT, UR_FINISH, UR_N = UR_FINISH };

/* Conf user values. */
enum { FU_HANDLER = 1, FU_REPORT, FU_TB, FU_RUN, FU_N = FU_RUN };

/* spindle._http_conf(opts, handler, report) -> conf, run */
static int l_conf(lua_State *L) {
  hconf *cf;
  double mh, mb, ht, it;
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  mh = opt_number(L, 1, "max_header", 16384);
  mb = opt_number(L, 1, "max_body", 1048576);
  ht = opt_number(L, 1, "header_timeout", 10);
  it = opt_number(L, 1, "idle_timeout", 60);
  luaL_argcheck(L, mh >= 64 && mh <= 0x7fffffff, 1, "max_header out of range");
  luaL_argcheck(L, mb >= 0 && mb <= 1e15, 1, "max_body out of range");
  luaL_argcheck(L, ht > 0 && ht <= 1e9, 1, "header_timeout out of range");
  luaL_argcheck(L, it > 0 && it <= 1e9, 1, "idle_timeout out of range");
  lua_settop(L, 3);
  cf = lua_newuserdatauv(L, sizeof *cf, FU_N); /* 4 */
  memset(cf, 0, sizeof *cf);
  cf->max_header = (uint32_t)mh;
  cf->max_body = (uint64_t)mb;
  cf->header_ns = (uint64_t)(ht * 1e9);
  cf->idle_ns = (uint64_t)(it * 1e9);
  cf->date_t = (time_t)-1;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 4, FU_HANDLER);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 4, FU_REPORT);
  set_mt(L, UP_CONF);
  for (i = 1; i < UR_CONF; i++) lua_pushvalue(L, lua_upvalueindex(i));
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  lua_pushcclosure(L, conn_msgh, 1);
  lua_getfield(L, lua_upvalueindex(UP_CONN), "__index");
  lua_getfield(L, -1, "next");
  lua_getfield(L, -2, "finish");
  lua_remove(L, -3);
  lua_pushcclosure(L, conn_run, UR_N);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 4, FU_RUN); /* what a parked task calls again */
  return 2;
}

static void conn_disarm(hconn *c);

static int conf_gc(lua_State *L) {
  hconf *cf = (hconf *)sp_testclass(L, 1, CONF_MT);
  if (cf != NULL) {
    free(cf->wbuf);
    cf->wbuf = NULL;
    cf->wlen = cf->wcap = 0;
  }
  return 0;
}

/* conf:close(): no new requests; connections waiting for one end now. */
static int conf_close(lua_State *L) {
  hconf *cf = (hconf *)check_up(L, 1, UP_CONF, CONF_MT);
  cf->closing = 1;
  while (cf->idle != NULL) {
    hconn *c = sp_container_of(cf->idle, hconn, il);
    sp_task *t = c->task;
    conn_disarm(c);
    c->woken = 1;
    if (t != NULL && t->state == SP_T_WAITING) sp_wake(t, SP_WAKE_OK);
  }
  return 0;
}

/* ---- connections: waiting for a request ----------------------------------- */

static hconn *check_conn(lua_State *L) {
  return (hconn *)check_up(L, 1, UP_CONN, CONN_MT);
}

/* Takes the connection out of every wait structure: the stream's reader
** slot, the timer heap, the server's idle list.  No Lua. */
static void conn_disarm(hconn *c) {
  sp_stream *s = c->box->s;
  if (c->warm) {
    c->warm = 0;
    c->conf->nwarm--;
  }
  if (s != NULL && c->task != NULL && s->reader == c->task) s->reader = NULL;
  if (c->rt != NULL) sp_timer_remove(c->rt, &c->timer);
  idle_unlink(c);
  c->task = NULL;
}

static void conn_fire(sp_runtime *rt, sp_timer *tm) {
  hconn *c = sp_container_of(tm, hconn, timer);
  sp_task *t = c->task;
  (void)rt;
  c->timed_out = 1;
  conn_disarm(c);
  if (t != NULL && t->state == SP_T_WAITING) sp_wake(t, SP_WAKE_OK);
}

/* Parses what the buffer holds: in the connection's partial state when
** a head came in pieces, else from its start in the server's scratch
** state (a head that came whole, the usual case, costs the connection no
** parser memory).  *rp: the state used.  No Lua. */
static int parse_head(hconn *c, sp_stream *s, sp_http_request **rp) {
  sp_http_request *r;
  if (c->part != NULL)
    r = &c->part->r;
  else {
    r = &c->conf->r;
    sp_http_request_init(r, c->conf->hdr, MAX_HEADERS, c->conf->max_header);
  }
  *rp = r;
  return sp_http_parse_request(r, sp_stream_rdata(s), s->rlen);
}

/* Keeps the state of the head begun in r (the scratch) in the connection:
** 0, or -1 when out of memory. */
static int part_keep(hconn *c, const sp_http_request *r) {
  hpart *p = c->part;
  if (p == NULL && (p = (hpart *)malloc(sizeof *p)) == NULL) return -1;
  if (r != &p->r) {
    p->r = *r;
    p->r.headers = p->hdr;
    memcpy(p->hdr, r->headers, r->nheaders * sizeof *p->hdr);
  }
  c->part = p;
  return 0;
}

static void part_free(hconn *c) {
  free(c->part);
  c->part = NULL;
}

/* Is there a CRLF CRLF in p[0..n)? */
static int has_blank_line(const char *p, size_t n) {
  const char *e = p + n, *q = p;
  while (e - q >= 4 && (q = memchr(q, '\r', (size_t)(e - q - 3))) != NULL) {
    if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n') return 1;
    q++;
  }
  return 0;
}

/* The read callback's question: is the head complete (or broken, or the
** stream ended)?  A buffer with a blank line in it wakes the task, which
** parses; else the head is parsed as it comes, in the connection's
** partial state, and its first byte starts the head deadline. */
static int head_ready(sp_stream *s, void *data) {
  hconn *c = (hconn *)data;
  sp_http_request *r;
  int st;
  if (s->eof || s->rerr) return 1;
  if (s->rlen == 0) return 0;
  if (c->part == NULL && has_blank_line(sp_stream_rdata(s), s->rlen))
    return 1; /* most heads come whole */
  st = parse_head(c, s, &r);
  if (st != SP_HTTP_AGAIN) return 1;
  if (c->part == NULL && part_keep(c, r)) {
    c->oom = 1;
    return 1;
  }
  if (!c->head) {
    c->head = 1;
    idle_unlink(c);
    if (c->rt != NULL) {
      sp_timer_remove(c->rt, &c->timer); /* frees the slot add takes */
      sp_timer_add(c->rt, &c->timer, sp_now(c->rt) + c->conf->header_ns);
    }
  }
  return 0;
}

static void conn_undo(sp_task *t) { conn_disarm((hconn *)t->w.obj); }

static void conn_describe(sp_task *t, char *buf, size_t size) {
  hconn *c = (hconn *)t->w.obj;
  snprintf(buf, size, "http %s",
           c->head ? "read request head" : "wait for request");
}

static const sp_waitops conn_wait_ops = {"http wait for request", conn_undo,
                                         conn_describe};

static int next_k(lua_State *L, int status, lua_KContext ctx);

/* The results of an await that completed at once are on the stack: pass
** them on (after the fairness yield of sp_await_fast, if it came). */
static int pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  return (int)ctx;
}

/* Answers a malformed request or a timeout and ends the connection.  The
** write's result does not matter (the connection closes).  [-0,+1,e] */
static int answer_and_end(lua_State *L, int status);

static void push_peer(lua_State *L, hconn *c) {
  if (lua_getiuservalue(L, 1, CU_PEER) != LUA_TNIL) return;
  lua_pop(L, 1);
  {
    sp_stream *s = c->box->s;
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    char buf[128];
    buf[0] = '\0';
    if (s != NULL && s->h->type == UV_TCP &&
        uv_tcp_getpeername((uv_tcp_t *)s->h, (struct sockaddr *)&ss, &len) == 0)
      sp_format_sockaddr((struct sockaddr *)&ss, buf, sizeof buf);
    else if (s != NULL && s->h->type == UV_NAMED_PIPE) {
      size_t n = sizeof buf;
      if (uv_pipe_getpeername((uv_pipe_t *)s->h, buf, &n) != 0 || n == 0)
        snprintf(buf, sizeof buf, "%s", "unix");
      else
        buf[n < sizeof buf ? n : sizeof buf - 1] = '\0';
    }
    if (buf[0] == '\0') snprintf(buf, sizeof buf, "?");
    lua_pushstring(L, buf);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, CU_PEER);
  }
}

/* Makes the request and the response of the complete head now at the
** front of the buffer, consumes the head, resets the parser.
** [-0, +2, m] */
static int push_exchange(lua_State *L, hconn *c, sp_stream *s,
                         const sp_http_request *r) {
  size_t hsz = (size_t)r->nheaders * sizeof(sp_http_header);
  hreq *q = lua_newuserdatauv(L, sizeof *q + hsz + r->head_len, RU_N);
  hres *p;
  memset(q, 0, sizeof *q);
  q->headers = (sp_http_header *)(void *)(q + 1);
  q->bytes = (char *)q->headers + hsz;
  memcpy(q->headers, r->headers, hsz);
  memcpy(q->bytes, sp_stream_rdata(s), r->head_len);
  q->method = r->method;
  q->target = r->target;
  q->path = r->path;
  q->query = r->query;
  q->nheaders = r->nheaders;
  q->head_len = r->head_len;
  q->flags = r->flags;
  q->version = r->version;
  q->form = r->form;
  q->max_body = c->conf->max_body;
  q->length = (r->flags & SP_HTTP_HAS_LENGTH) ? r->content_length : -1;
  if (r->flags & SP_HTTP_CHUNKED)
    sp_http_chunked_init(&q->cd, SP_HTTP_CHUNK_MAX_EXT,
                         SP_HTTP_CHUNK_MAX_TRAILER);
  else {
    q->left = q->length > 0 ? (uint64_t)q->length : 0;
    q->done = q->left == 0;
  }
  q->conn = c;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, RU_CONN);
  set_mt(L, UP_REQ);
  p = lua_newuserdatauv(L, sizeof *p, SU_N);
  memset(p, 0, sizeof *p);
  p->conn = c;
  p->req = q;
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, SU_REQ);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, SU_CONN);
  set_mt(L, UP_RES);
  sp_stream_rconsume(s, r->head_len);
  part_free(c);
  c->head = 0;
  c->cur = q;
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, 1, CU_CUR);
  return 2;
}

/* One look at the buffer: a request (2 results), an answered error or the
** end (1 result: nil), or -1: wait. */
static int next_try(lua_State *L, hconn *c, sp_stream *s) {
  sp_http_request *r;
  int st;
  if (c->oom) return luaL_error(L, "not enough memory");
  if (s->rlen > 0) {
    st = parse_head(c, s, &r);
    if (st == SP_HTTP_OK) {
      if ((r->flags & SP_HTTP_HAS_LENGTH) &&
          (uint64_t)r->content_length > c->conf->max_body) {
        part_free(c);
        return answer_and_end(L, 413);
      }
      return push_exchange(L, c, s, r);
    }
    if (st == SP_HTTP_ERR) {
      st = r->status;
      part_free(c);
      return answer_and_end(L, st);
    }
    if (part_keep(c, r)) return luaL_error(L, "not enough memory");
  }
  if (s->eof || s->rerr) {
    lua_pushnil(L);
    return 1;
  }
  return -1;
}

/* How many connections of a server wait for a request with their
** coroutine before the others park (sp_await_park): waiting with it costs
** about 1 KiB, parking about 4,000 instructions per request (the task's
** function returns, and its wake starts it again).  So a server's busiest
** connections keep the cheap wait and a crowd of idle ones the small one. */
#define WARM_MAX 128

static int next_wait(lua_State *L, hconn *c, sp_stream *s, sp_task *t,
                     int may_park) {
  sp_runtime *rt = t->rt;
  uint64_t now;
  sp_timer_reserve(L, rt);
  now = sp_now(rt);
  c->rt = rt;
  c->timed_out = 0;
  c->woken = 0;
  if (s->rlen > 0 && !c->head) { /* pipelined: its head has begun */
    c->head = 1;
  }
  sp_timer_add(rt, &c->timer,
               now + (c->head ? c->conf->header_ns : c->conf->idle_ns));
  if (!c->head) idle_link(c);
  c->task = t;
  s->reader = t;
  s->rkind = SP_STREAM_R_FN;
  s->rfn = head_ready;
  s->rfn_data = c;
  if ((size_t)c->conf->max_header + 1 > s->rlimit)
    s->rlimit = (size_t)c->conf->max_header + 1;
  sp_stream_read_start(s);
  if (s->rerr && !s->reading) { /* could not start reading */
    conn_disarm(c);
    lua_pushnil(L);
    return 1;
  }
  if (may_park && c->conf->nwarm >= WARM_MAX && c->own == t &&
      !sp_cancel_pending(t)) {
    /* run's task: it waits without its coroutine (false tells run) */
    sp_await_park(t, &conn_wait_ops, c);
    c->parked = 1;
    lua_pushboolean(L, 0);
    return 1;
  }
  c->warm = 1;
  c->conf->nwarm++;
  return sp_await_block(L, t, &conn_wait_ops, c, next_k, may_park);
}

/* After the wait of next_wait: in its continuation, or in the task's
** function called again after a park (ctx: may it park again). */
static int next_k(lua_State *L, int status, lua_KContext ctx) {
  hconn *c = (hconn *)lua_touserdata(L, 1);
  sp_task *t = c->task;
  sp_stream *s;
  int n;
  (void)status;
  if (t == NULL) t = c->rt->current;
  c->parked = 0;
  conn_disarm(c);
  sp_resumed(L, t); /* raises if aborted */
  s = c->box->s;
  if (s == NULL || c->woken) {
    lua_pushnil(L);
    return 1;
  }
  n = next_try(L, c, s);
  if (n >= 0) return n;
  if (c->timed_out) {
    if (c->head) return answer_and_end(L, 408);
    lua_pushnil(L); /* idle: closed quietly */
    return 1;
  }
  return next_wait(L, c, s, t, (int)ctx);
}

/* conn:next([mode]) -> req, res; or nil: the connection is over.  run
** passes mode 1: its task may park while it waits (then the result is
** false), and mode 2 when it is called again after a park. */
static int conn_next(lua_State *L) {
  hconn *c = check_conn(L);
  sp_stream *s = c->box->s;
  int mode = (int)luaL_optinteger(L, 2, 0);
  sp_task *t;
  int n;
  if (mode == 2 && c->parked && c->own != NULL) { /* woken: no await here */
    sp_runtime *rt = sp_box_get(L)->cur;
    if (rt == NULL || rt->current != c->own)
      return luaL_error(L, "next: not the connection's task");
    lua_settop(L, 1);
    return next_k(L, LUA_OK, 1);
  }
  t = sp_await_check(L, "next");
  lua_settop(L, 1);
  if (c->cur != NULL) { /* the last exchange is over */
    c->cur->conn = NULL;
    c->cur = NULL;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, CU_CUR);
  }
  if (s == NULL || c->conf->closing) {
    lua_pushnil(L);
    return 1;
  }
  if (s->reader != NULL)
    return luaL_error(L, "next: socket busy (another task is reading)");
  c->head = s->rlen > 0;
  n = next_try(L, c, s);
  if (n == 2) return sp_await_fast(L, t, pass_k, 2); /* pipelined */
  if (n >= 0) return n;
  if (s->tls != NULL) { /* decrypt what has arrived, then look again */
    sp_tls_before_read(s);
    n = next_try(L, c, s);
    if (n == 2) return sp_await_fast(L, t, pass_k, 2);
    if (n >= 0) return n;
  }
  return next_wait(L, c, s, t, mode == 1);
}

/* ---- writing ------------------------------------------------------------ */

/* Calls stream:write(...) with the n strings at the top, continuation k
** (ctx passed on).  The connection userdata is at conn_idx.  The write's
** three results (true, or nil, msg, code) are at the top when k runs.
** [-n, +3, e] */
static int write_n(lua_State *L, int conn_idx, int n, lua_KContext ctx,
                   lua_KFunction k) {
  lua_getiuservalue(L, conn_idx, CU_STREAM);
  lua_getfield(L, -1, "write");
  lua_insert(L, -n - 2);
  lua_insert(L, -n - 1);
  lua_callk(L, n + 1, 3, ctx, k);
  return k(L, LUA_OK, ctx);
}

/* Writes the connection's output buffer: at once when the kernel takes it
** all (no Lua string, no call), else through write_n.  [-0, +3, e] */
static int wb_write(lua_State *L, hconn *c, int conn_idx, lua_KContext ctx,
                    lua_KFunction k) {
  sp_stream *s = c->box->s;
  size_t done = 0;
  if (s != NULL &&
      sp_stream_try_write(s, c->conf->wbuf, c->conf->wlen, &done)) {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    return k(L, LUA_OK, ctx);
  }
  lua_pushlstring(L, c->conf->wbuf + done, c->conf->wlen - done);
  return write_n(L, conn_idx, 1, ctx, k);
}

/* The output buffer: grows (rarely) out of line, appends inline. */
static int wb_grow(hconf *cf, size_t n) {
  size_t cap = cf->wcap ? cf->wcap : 512;
  char *b;
  while (cap < cf->wlen + n) cap *= 2;
  if ((b = realloc(cf->wbuf, cap)) == NULL) return -1;
  cf->wbuf = b;
  cf->wcap = cap;
  return 0;
}

/* Appends p[0..n) to the server's output buffer: 0, or -1 when out of
** memory. */
static inline int wb_add(hconn *c, const char *p, size_t n) {
  hconf *cf = c->conf;
  if (cf->wlen + n > cf->wcap && wb_grow(cf, n)) return -1;
  memcpy(cf->wbuf + cf->wlen, p, n);
  cf->wlen += n;
  return 0;
}

#define wb_lit(c, s) wb_add((c), "" s, sizeof(s) - 1)

/* Adds the decimal digits of v. */
static int wb_num(hconn *c, uint64_t v) {
  char d[24];
  int i = (int)sizeof d;
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return wb_add(c, d + i, sizeof d - (size_t)i);
}

static int end_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_pushnil(L);
  return 1;
}

/* A plain answer made by the server (400, 408, 413, 431, 500 ...) in the
** output buffer.  -1 when out of memory. */
static int plain(hconn *c, int status) {
  const char *why = reason(status);
  char line[160];
  size_t dlen;
  const char *date = date_line(c->conf, &dlen);
  int n;
  if (why == NULL) why = "Error";
  n = snprintf(line, sizeof line,
               "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\n"
               "content-length: %d\r\n",
               status, why, (int)strlen(why) + 1);
  c->conf->wlen = 0;
  if (wb_add(c, line, (size_t)n) || wb_add(c, date, dlen) ||
      wb_lit(c, "connection: close\r\n\r\n") || wb_add(c, why, strlen(why)) ||
      wb_lit(c, "\n"))
    return -1;
  return 0;
}

/* Answers with status and ends the connection: conn:next() returns nil
** after the write (whose result does not matter).  Connection at 1. */
static int answer_and_end(lua_State *L, int status) {
  hconn *c = (hconn *)lua_touserdata(L, 1);
  if (c->box->s == NULL) {
    lua_pushnil(L);
    return 1;
  }
  if (plain(c, status)) return luaL_error(L, "not enough memory");
  return wb_write(L, c, 1, 0, end_k);
}

/* ---- the response head -------------------------------------------------- */

static int lower_is(const char *s, size_t n, const char *lower) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
    if (lower[i] == '\0' || ch != (unsigned char)lower[i]) return 0;
  }
  return lower[n] == '\0';
}

static int has_close(const char *v, size_t n) {
  size_t i;
  for (i = 0; i + 5 <= n; i++)
    if (lower_is(v + i, 5, "close")) return 1;
  return 0;
}

/* A header line takes no CR, LF or NUL. */
static int bad_field(const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') return 1;
  return 0;
}

enum { H_LEN = 1, H_TE = 2, H_DATE = 4 };

static const char *const NOMEM = "not enough memory";

/* Adds "name: value\r\n" for the value at the top (a string, or anything
** tostring takes; popped).  NULL or an error message.  [-1, +0, m] */
static const char *add_field(lua_State *L, hconn *c, const char *k, size_t kn) {
  size_t vn;
  const char *v = luaL_tolstring(L, -1, &vn);
  const char *err = NULL;
  if (bad_field(v, vn))
    err = "http: header value with CR, LF or NUL";
  else if (wb_add(c, k, kn) || wb_lit(c, ": ") || wb_add(c, v, vn) ||
           wb_lit(c, "\r\n"))
    err = NOMEM;
  lua_pop(L, 2);
  return err;
}

/* Makes the head of res in the connection's output buffer: status line,
** the handler's headers (the table at hidx, 0: none) and what the server
** adds.  body_len < 0: not known (streaming: chunked, or the end of the
** connection for HTTP/1.0).  NULL, or an error message.  [-0, +0, m] */
static const char *build_head(lua_State *L, hres *p, lua_Integer status,
                              int hidx, lua_Integer body_len) {
  hreq *q = p->req;
  hconn *c = p->conn;
  hconf *cf = c->conf;
  const char *why;
  char line[16];
  int seen = 0;
  if (status < 100 || status > 999) return "http: bad status";
  why = reason((int)status);
  if (why == NULL) why = "Unknown";
  memcpy(line, "HTTP/1.1 ", 9);
  line[9] = (char)('0' + status / 100);
  line[10] = (char)('0' + status / 10 % 10);
  line[11] = (char)('0' + status % 10);
  line[12] = ' ';
  c->conf->wlen = 0;
  if (wb_add(c, line, 13) || wb_add(c, why, strlen(why)) || wb_lit(c, "\r\n"))
    return NOMEM;
  if (hidx != 0) {
    lua_pushnil(L);
    while (lua_next(L, hidx) != 0) { /* key, value */
      size_t kn;
      const char *k, *err = NULL;
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 2);
        return "http: header names must be strings";
      }
      k = lua_tolstring(L, -2, &kn);
      if (bad_field(k, kn)) {
        lua_pop(L, 2);
        return "http: header value with CR, LF or NUL";
      }
      switch (kn) {
        case 4:
          if (lower_is(k, kn, "date")) seen |= H_DATE;
          break;
        case 10:
          if (lower_is(k, kn, "connection") && lua_type(L, -1) == LUA_TSTRING) {
            size_t vn;
            const char *v = lua_tolstring(L, -1, &vn);
            if (has_close(v, vn)) p->close = 1;
          }
          break;
        case 14:
          if (lower_is(k, kn, "content-length")) seen |= H_LEN;
          break;
        case 17:
          if (lower_is(k, kn, "transfer-encoding")) seen |= H_TE;
          break;
        default: break;
      }
      if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer i, len = (lua_Integer)lua_rawlen(L, -1);
        for (i = 1; i <= len && err == NULL; i++) {
          lua_rawgeti(L, -1, i);
          err = add_field(L, c, k, kn); /* pops the element */
        }
      } else {
        lua_pushvalue(L, -1);
        err = add_field(L, c, k, kn); /* pops the copy */
      }
      lua_pop(L, 1); /* the value: the key stays for lua_next */
      if (err != NULL) {
        lua_pop(L, 1);
        return err;
      }
    }
  }
  if (!(seen & H_DATE)) {
    size_t dlen;
    const char *date = date_line(cf, &dlen);
    if (wb_add(c, date, dlen)) return NOMEM;
  }
  p->chunked = 0;
  if (!(seen & (H_LEN | H_TE)) &&
      !(status < 200 || status == 204 || status == 304)) {
    if (body_len >= 0) {
      if (wb_lit(c, "content-length: ") || wb_num(c, (uint64_t)body_len) ||
          wb_lit(c, "\r\n"))
        return NOMEM;
    } else if (q->version == 11) {
      if (wb_lit(c, "transfer-encoding: chunked\r\n")) return NOMEM;
      p->chunked = 1;
    } else
      p->close = 1; /* HTTP/1.0: the body ends with the connection */
  }
  if (cf->closing || !(q->flags & SP_HTTP_KEEP_ALIVE)) p->close = 1;
  if (p->close) {
    if (wb_lit(c, "connection: close\r\n")) return NOMEM;
  } else if (q->version == 10) {
    if (wb_lit(c, "connection: keep-alive\r\n")) return NOMEM;
  }
  if (wb_lit(c, "\r\n")) return NOMEM;
  p->started = 1;
  p->status = (int)status;
  if (q->method.len == 4 && memcmp(q->bytes + q->method.off, "HEAD", 4) == 0)
    p->nobody = 1;
  return NULL;
}

/* ---- responses ---------------------------------------------------------- */

static hres *check_res(lua_State *L, const char *name) {
  hres *p = (hres *)check_up(L, 1, UP_RES, RES_MT);
  if (p->conn == NULL)
    luaL_error(L, "%s: the response is over (its handler returned)", name);
  return p;
}

/* The stream write's results at the top: true (popped), or raise the
** BodyError that unwinds the handler (status 0: nothing to answer). */
static void res_wrote(lua_State *L, hres *p) {
  if (lua_toboolean(L, -3)) {
    lua_pop(L, 3);
    return;
  }
  p->broken = 1;
  body_error(L, 0, lua_tostring(L, -2), lua_tostring(L, -1));
}

static int res_true_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  res_wrote(L, (hres *)lua_touserdata(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

/* Sends [the head in the output buffer] [chunk at cidx] [the last-chunk]
** as one write; the connection userdata goes to the top first.  Pushes
** the pieces and calls write.  Results: true (raises on failure). */
static int res_send(lua_State *L, hres *p, int head, int cidx, int last) {
  int n = 0, conn_idx;
  size_t len = 0;
  lua_getiuservalue(L, 1, SU_CONN);
  conn_idx = lua_gettop(L);
  if (head) {
    lua_pushlstring(L, p->conn->conf->wbuf, p->conn->conf->wlen);
    n++;
  }
  if (cidx != 0) lua_tolstring(L, cidx, &len);
  if (cidx != 0 && len > 0 && !p->nobody) {
    if (p->chunked) {
      {
        char hex[24];
        int k = snprintf(hex, sizeof hex, "%zx\r\n", len);
        lua_pushlstring(L, hex, (size_t)k);
      }
      lua_pushvalue(L, cidx);
      lua_pushliteral(L, "\r\n");
      n += 3;
    } else {
      lua_pushvalue(L, cidx);
      n++;
    }
  }
  if (last && p->chunked && !p->nobody) {
    lua_pushliteral(L, "0\r\n\r\n");
    n++;
  }
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return write_n(L, conn_idx, n, 0, res_true_k);
}

/* res:write_head(status, [headers]) */
static int res_write_head(lua_State *L) {
  hres *p = check_res(L, "write_head");
  lua_Integer status = luaL_checkinteger(L, 2);
  const char *err;
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  if (p->started) return luaL_error(L, "write_head: the head was already sent");
  lua_settop(L, 3);
  err = build_head(L, p, status, lua_isnil(L, 3) ? 0 : 3, -1);
  if (err != NULL) return luaL_error(L, "write_head: %s", err);
  return res_send(L, p, 1, 0, 0);
}

/* res:write(chunk) */
static int res_write(lua_State *L) {
  hres *p = check_res(L, "write");
  int head = 0;
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  if (p->finished) return luaL_error(L, "write: the response was finished");
  if (!p->started) {
    const char *err = build_head(L, p, 200, 0, -1);
    if (err != NULL) return luaL_error(L, "write: %s", err);
    head = 1;
  }
  return res_send(L, p, head, 2, 0);
}

/* res:finish([chunk]) */
static int res_finish(lua_State *L) {
  hres *p = (hres *)check_up(L, 1, UP_RES, RES_MT);
  int head = 0;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  if (p->finished || p->conn == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!p->started) {
    const char *err = build_head(L, p, 200, 0, -1);
    if (err != NULL) return luaL_error(L, "finish: %s", err);
    head = 1;
  }
  p->finished = 1;
  return res_send(L, p, head, lua_isnil(L, 2) ? 0 : 2, 1);
}

/* ---- requests ----------------------------------------------------------- */

static hreq *check_req(lua_State *L) {
  return (hreq *)check_up(L, 1, UP_REQ, REQ_MT);
}

#define QSPAN(q, sp) ((q)->bytes + (sp).off), ((size_t)(sp).len)

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Pushes s[0..n) with %XX sequences decoded (others kept).  [-0,+1,m] */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  size_t i = 0;
  if (memchr(s, '%', n) == NULL) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_buffinit(L, &b);
  while (i < n) {
    int h, l;
    if (s[i] == '%' && i + 2 < n &&
        (h = hexval((unsigned char)s[i + 1])) >= 0 &&
        (l = hexval((unsigned char)s[i + 2])) >= 0) {
      luaL_addchar(&b, (char)(h * 16 + l));
      i += 3;
    } else
      luaL_addchar(&b, s[i++]);
  }
  luaL_pushresult(&b);
}

/* Pushes the lower-cased span.  [-0, +1, m] */
static void push_lower(lua_State *L, const char *s, size_t n) {
  char tmp[128];
  char *p = n <= sizeof tmp ? tmp : (char *)lua_newuserdatauv(L, n, 0);
  size_t i;
  tmp[0] = '\0';
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    p[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  lua_pushlstring(L, p, n);
  if (p != tmp) lua_remove(L, -2);
}

/* The table of extra fields of the request at 1 (made when create).
** Pushes it, or nothing and returns 0.  [-0, +(0|1), m] */
static int push_extra(lua_State *L, int create) {
  if (lua_getiuservalue(L, 1, RU_EXTRA) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (!create) return 0;
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, RU_EXTRA);
  return 1;
}

/* Computes a derived field (headers, header_list, path), keeps it in the
** extra table.  [-0, +1, m] */
static void push_derived(lua_State *L, hreq *q, const char *k) {
  uint32_t i;
  push_extra(L, 1);  /* extra */
  if (k[0] == 'p') { /* path */
    if (q->form == SP_HTTP_ORIGIN_FORM || q->form == SP_HTTP_ABSOLUTE_FORM) {
      if (q->path.len == 0)
        lua_pushliteral(L, "/");
      else
        push_decoded(L, QSPAN(q, q->path));
    } else
      lua_pushlstring(L, QSPAN(q, q->target)); /* "*" or authority */
  } else if (k[6] == '_') {                    /* header_list */
    lua_createtable(L, (int)q->nheaders, 0);
    for (i = 0; i < q->nheaders; i++) {
      lua_createtable(L, 2, 0);
      push_lower(L, QSPAN(q, q->headers[i].name));
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, QSPAN(q, q->headers[i].value));
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  } else { /* headers: repeated fields joined with ", " */
    lua_createtable(L, 0, (int)q->nheaders);
    for (i = 0; i < q->nheaders; i++) {
      push_lower(L, QSPAN(q, q->headers[i].name));
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, QSPAN(q, q->headers[i].value));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, QSPAN(q, q->headers[i].value));
      }
      lua_rawset(L, -3);
    }
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, k);
  lua_remove(L, -2);
}

static int req_index(lua_State *L) {
  hreq *q = check_req(L);
  size_t n;
  const char *k = lua_tolstring(L, 2, &n);
  if (push_extra(L, 0)) { /* fields set by the handler, cached ones */
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_pop(L, 2);
  }
  if (k == NULL || lua_type(L, 2) != LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  switch (n) {
    case 4:
      if (strcmp(k, "path") == 0) {
        push_derived(L, q, k);
        return 1;
      }
      if (strcmp(k, "peer") == 0) {
        lua_getiuservalue(L, 1, RU_CONN);
        lua_replace(L, 1);
        push_peer(L, (hconn *)lua_touserdata(L, 1));
        return 1;
      }
      break;
    case 5:
      if (strcmp(k, "query") == 0) {
        if (q->flags & SP_HTTP_HAS_QUERY)
          lua_pushlstring(L, QSPAN(q, q->query));
        else
          lua_pushnil(L);
        return 1;
      }
      break;
    case 6:
      if (strcmp(k, "method") == 0) {
        lua_pushlstring(L, QSPAN(q, q->method));
        return 1;
      }
      if (strcmp(k, "target") == 0) {
        lua_pushlstring(L, QSPAN(q, q->target));
        return 1;
      }
      if (strcmp(k, "length") == 0) {
        if (q->length >= 0)
          lua_pushinteger(L, (lua_Integer)q->length);
        else
          lua_pushnil(L);
        return 1;
      }
      break;
    case 7:
      if (strcmp(k, "version") == 0) {
        lua_pushstring(L, q->version == 10 ? "1.0" : "1.1");
        return 1;
      }
      if (strcmp(k, "headers") == 0) {
        push_derived(L, q, k);
        return 1;
      }
      if (strcmp(k, "chunked") == 0) {
        lua_pushboolean(L, (q->flags & SP_HTTP_CHUNKED) != 0);
        return 1;
      }
      break;
    case 10:
      if (strcmp(k, "keep_alive") == 0) {
        lua_pushboolean(L, (q->flags & SP_HTTP_KEEP_ALIVE) != 0);
        return 1;
      }
      if (strcmp(k, "head_bytes") == 0) {
        lua_pushinteger(L, (lua_Integer)q->head_len);
        return 1;
      }
      break;
    case 11:
      if (strcmp(k, "header_list") == 0) {
        push_derived(L, q, k);
        return 1;
      }
      break;
    case 15:
      if (strcmp(k, "expect_continue") == 0) {
        lua_pushboolean(L, (q->flags & SP_HTTP_EXPECT_CONTINUE) != 0);
        return 1;
      }
      break;
    default: break;
  }
  /* the methods */
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int req_newindex(lua_State *L) {
  check_req(L);
  lua_settop(L, 3);
  push_extra(L, 1);
  lua_insert(L, 2);
  lua_rawset(L, 2);
  return 0;
}

static int req_read_k(lua_State *L, int status, lua_KContext ctx);

/* Reads from the stream for the request at 1 (max at 2, the connection at
** 3): stream:read_some(n), continuation req_read_k. */
static int req_read(lua_State *L, hreq *q) {
  lua_Integer max = lua_tointeger(L, 2);
  lua_Integer n = READ_MAX;
  if (!(q->flags & SP_HTTP_CHUNKED))
    n = (uint64_t)max < q->left ? max : (lua_Integer)q->left;
  lua_settop(L, 3);
  lua_getiuservalue(L, 3, CU_STREAM);
  lua_getfield(L, -1, "read_some");
  lua_insert(L, -2);
  lua_pushinteger(L, n);
  lua_callk(L, 2, 3, 0, req_read_k);
  return req_read_k(L, LUA_OK, 0);
}

static int eof_result(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "eof");
  lua_pushliteral(L, "EOF");
  return 3;
}

static int req_read_k(lua_State *L, int status, lua_KContext ctx) {
  hreq *q = (hreq *)lua_touserdata(L, 1);
  lua_Integer max = lua_tointeger(L, 2);
  size_t n, pos = 0;
  const char *data;
  luaL_Buffer b;
  (void)status;
  (void)ctx;
  if (lua_type(L, 4) != LUA_TSTRING) return 3; /* nil, msg, code */
  data = lua_tolstring(L, 4, &n);
  if (!(q->flags & SP_HTTP_CHUNKED)) {
    q->left -= n;
    if (q->left == 0) q->done = 1;
    lua_settop(L, 4);
    return 1;
  }
  luaL_buffinit(L, &b); /* at 7 and up */
  while (pos < n && !q->done) {
    size_t used = 0, off = 0, len = 0;
    int st =
        sp_http_chunked_parse(&q->cd, data + pos, n - pos, &used, &off, &len);
    if (st == SP_HTTP_ERR)
      return body_error(L, q->cd.status,
                        q->cd.reason ? q->cd.reason : "bad chunked body", NULL);
    if (st == SP_HTTP_DATA) luaL_addlstring(&b, data + pos + off, len);
    pos += used;
    if (st == SP_HTTP_OK) q->done = 1;
    if (st == SP_HTTP_AGAIN) break;
  }
  luaL_pushresult(&b);
  if (pos < n) { /* after the body: the next request's bytes */
    hconn *c = (hconn *)lua_touserdata(L, 3);
    sp_stream *s = c->box->s;
    if (s != NULL && sp_stream_unread(s, data + pos, n - pos) != 0)
      return luaL_error(L, "not enough memory");
  }
  lua_tolstring(L, -1, &n);
  q->seen += n;
  if (q->seen > q->max_body) return body_error(L, 413, "body too large", NULL);
  if (n == 0) {
    if (q->done) return eof_result(L);
    return req_read(L, q);
  }
  if ((size_t)max < n) { /* keep what the reader did not ask for */
    push_extra(L, 1);
    lua_pushlstring(L, lua_tostring(L, -2) + max, n - (size_t)max);
    lua_setfield(L, -2, "_pending");
    lua_pop(L, 1);
    q->has_pending = 1;
    lua_pushlstring(L, lua_tostring(L, -1), (size_t)max);
  }
  return 1;
}

static int req_continue_k(lua_State *L, int status, lua_KContext ctx) {
  hreq *q = (hreq *)lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  if (!lua_toboolean(L, -3))
    return body_error(L, 0, lua_tostring(L, -2), lua_tostring(L, -1));
  return req_read(L, q);
}

/* req:read_some([max]) */
static int req_read_some(lua_State *L) {
  hreq *q = check_req(L);
  lua_Integer max = 65536;
  hconn *c;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TNUMBER || lua_tonumber(L, 2) < 1)
      return luaL_error(L, "bad argument #1 to 'read_some' (positive number "
                           "expected)");
    max = lua_isinteger(L, 2)
              ? lua_tointeger(L, 2)
              : (lua_tonumber(L, 2) >= 1e15 ? (lua_Integer)1e15
                                            : (lua_Integer)lua_tonumber(L, 2));
  }
  lua_settop(L, 1);
  lua_pushinteger(L, max);
  if (q->has_pending) {
    size_t n;
    const char *p;
    push_extra(L, 1);
    lua_getfield(L, -1, "_pending");
    p = lua_tolstring(L, -1, &n);
    if (n <= (size_t)max) {
      lua_pushnil(L);
      lua_setfield(L, -3, "_pending");
      q->has_pending = 0;
      return 1;
    }
    lua_pushlstring(L, p + max, n - (size_t)max);
    lua_setfield(L, -3, "_pending");
    lua_pushlstring(L, p, (size_t)max);
    return 1;
  }
  if (q->done) return eof_result(L);
  if ((c = q->conn) == NULL || c->box->s == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushliteral(L, "EBADF");
    return 3;
  }
  lua_getiuservalue(L, 1, RU_CONN); /* 3 */
  if ((q->flags & SP_HTTP_EXPECT_CONTINUE) && !q->continued) {
    q->continued = 1;
    lua_pushliteral(L, "HTTP/1.1 100 Continue\r\n\r\n");
    return write_n(L, 3, 1, 0, req_continue_k);
  }
  return req_read(L, q);
}

static int body_k(lua_State *L, int status, lua_KContext ctx);

/* req:body(): the whole body, kept. */
static int req_body(lua_State *L) {
  check_req(L);
  lua_settop(L, 1);
  if (push_extra(L, 0)) {
    if (lua_getfield(L, -1, "_body") == LUA_TSTRING) return 1;
    lua_pop(L, 2);
  }
  lua_newtable(L); /* 2: the parts */
  return body_k(L, LUA_OK, 0);
}

static int body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (ctx != 0) { /* a read came back */
    if (lua_type(L, 3) == LUA_TSTRING) {
      lua_pushvalue(L, 3);
      lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
    } else if (lua_type(L, 5) == LUA_TSTRING &&
               strcmp(lua_tostring(L, 5), "EOF") == 0) {
      lua_settop(L, 2);
      luaL_Buffer b;
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, 2);
      luaL_buffinit(L, &b);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        luaL_addvalue(&b);
      }
      luaL_pushresult(&b);
      push_extra(L, 1);
      lua_pushvalue(L, -2);
      lua_setfield(L, -2, "_body");
      lua_pop(L, 1);
      return 1;
    } else
      return 3; /* nil, msg, code */
  }
  lua_settop(L, 2);
  lua_getfield(L, 1, "read_some");
  lua_pushvalue(L, 1);
  lua_pushinteger(L, READ_MAX);
  lua_callk(L, 2, 3, 1, body_k);
  return body_k(L, LUA_OK, 1);
}

/* ---- connections -------------------------------------------------------- */

/* __gc: the connection leaves the server's list; a partial head's state
** is freed.  The wait structures were left when the task stopped waiting
** (conn_disarm). */
static int conn_gc(lua_State *L) {
  hconn *c = (hconn *)sp_testclass(L, 1, CONN_MT);
  if (c != NULL) {
    ring_unlink(&c->conf->all, &c->al);
    c->own = NULL;
    part_free(c);
  }
  return 0;
}

/* __close, the end of run however it ends: as __gc, then the stream is
** closed and the permit released.  Not when run returns to park its
** task: the connection goes on. */
static int conn_close(lua_State *L) {
  hconn *c = (hconn *)sp_testclass(L, 1, CONN_MT);
  if (c == NULL || c->parked) return 0;
  lua_settop(L, 1);
  conn_gc(L);
  if (lua_getiuservalue(L, 1, CU_STREAM) != LUA_TNIL &&
      luaL_callmeta(L, 2, "__close"))
    lua_pop(L, 1);
  if (lua_getiuservalue(L, 1, CU_PERMIT) != LUA_TNIL &&
      luaL_callmeta(L, 3, "__close"))
    lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, CU_PERMIT); /* released once */
  return 0;
}

/* Is the running task being cancelled (aborted, or inside an expired
** timeout)?  Else a cancellation error that reached conn:finish came out
** of a timeout the handler opened and did not catch: a handler failure
** like any other. */
static int cancelling(lua_State *L) {
  sp_runtime *rt = sp_box_get(L)->cur;
  sp_task *t = rt != NULL ? rt->current : NULL;
  return t == NULL || sp_cancel_pending(t);
}

/* The message handler of the handler's xpcall: keeps the traceback of a
** failure (not of a cancellation or a BodyError) for the report. */
static int conn_msgh(lua_State *L) {
  lua_settop(L, 1);
  if (is_body_error(L, 1) || (is_cancel(L, 1) && cancelling(L))) return 1;
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  lua_setiuservalue(L, lua_upvalueindex(1), FU_TB); /* the conf */
  lua_settop(L, 1);
  return 1;
}

/* Ends the exchange of res: the response object is dead to the handler
** from now on; the request stays readable until the next conn:next(). */
static int decide(lua_State *L, hconn *c, hres *p) {
  hreq *q = p->req;
  p->conn = NULL;
  if (p->close || p->broken) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!q->done) {
    if ((q->flags & SP_HTTP_EXPECT_CONTINUE) && !q->continued) {
      lua_pushboolean(L, 0); /* the body was never invited: close */
      return 1;
    }
    lua_pushliteral(L, "skip");
    return 1;
  }
  (void)c;
  lua_pushboolean(L, 1);
  return 1;
}

enum { F_SENT = 1, F_PLAIN };

static int finish_k(lua_State *L, int status, lua_KContext ctx) {
  hconn *c = (hconn *)lua_touserdata(L, 1);
  hres *p = (hres *)lua_touserdata(L, 2);
  (void)status;
  if (ctx == F_PLAIN) {
    p->conn = NULL;
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!lua_toboolean(L, -3)) p->broken = 1;
  return decide(L, c, p);
}

/* Reports a failed handler: report(err, traceback, req) from the conf. */
static void report(lua_State *L, hconn *c, int err_idx, int tb_idx) {
  (void)c;
  lua_getiuservalue(L, 1, CU_CONF);
  lua_getiuservalue(L, -1, FU_REPORT);
  lua_remove(L, -2);
  lua_pushvalue(L, err_idx);
  if (tb_idx != 0)
    lua_pushvalue(L, tb_idx);
  else
    luaL_tolstring(L, err_idx, NULL);
  lua_getiuservalue(L, 2, SU_REQ);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* A 500 (when nothing was sent) and the end of the connection. */
static int fail_500(lua_State *L, hconn *c, hres *p) {
  if (p->started || c->box->s == NULL) {
    p->conn = NULL;
    lua_pushboolean(L, 0);
    return 1;
  }
  p->started = 1;
  if (plain(c, 500)) return luaL_error(L, "not enough memory");
  return wb_write(L, c, 1, F_PLAIN, finish_k);
}

/* conn:finish(res, ok, ...) */
static int conn_finish(lua_State *L) {
  hconn *c = check_conn(L);
  hres *p = (hres *)check_up(L, 2, UP_RES, RES_MT);
  hreq *q = p->req;
  int top = lua_gettop(L);
  if (p->conn != c) return luaL_error(L, "finish: not this connection's");
  if (!lua_toboolean(L, 3)) { /* the handler raised: error at 4 */
    lua_settop(L, 4);
    if (is_cancel(L, 4) && cancelling(L)) { /* the connection's own */
      p->conn = NULL;
      return lua_error(L);
    }
    if (is_body_error(L, 4)) {
      lua_Integer st;
      lua_getfield(L, 4, "status");
      st = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (st != 0 && !p->started && c->box->s != NULL) {
        p->started = 1;
        if (plain(c, (int)st)) return luaL_error(L, "not enough memory");
        return wb_write(L, c, 1, F_PLAIN, finish_k);
      }
      p->conn = NULL;
      lua_pushboolean(L, 0);
      return 1;
    }
    lua_getiuservalue(L, 1, CU_CONF); /* 5 */
    lua_getiuservalue(L, 5, FU_TB);   /* 6: what conn_msgh kept, just now */
    lua_pushnil(L);
    lua_setiuservalue(L, 5, FU_TB);
    report(L, c, 4, lua_isnil(L, 6) ? 0 : 6);
    return fail_500(L, c, p);
  }
  if (!p->started) { /* returned status, headers, body at 4, 5, 6 */
    lua_Integer status = 200;
    const char *err = NULL;
    size_t blen = 0;
    const char *body = NULL;
    lua_settop(L, top < 6 ? 6 : top);
    if (!lua_isnil(L, 4)) {
      if (!lua_isinteger(L, 4)) {
        if (lua_type(L, 4) == LUA_TNUMBER &&
            lua_tonumber(L, 4) == (lua_Number)(lua_Integer)lua_tonumber(L, 4))
          status = (lua_Integer)lua_tonumber(L, 4);
        else
          err = "http: bad status";
      } else
        status = lua_tointeger(L, 4);
    }
    if (err == NULL && !lua_isnil(L, 6)) {
      if (lua_type(L, 6) != LUA_TSTRING)
        err = "http: the body must be a string";
      else
        body = lua_tolstring(L, 6, &blen);
    }
    if (err == NULL && !lua_isnil(L, 5) && !lua_istable(L, 5))
      err = "http: headers must be a table";
    if (!q->done && (q->flags & SP_HTTP_EXPECT_CONTINUE) && !q->continued)
      p->close = 1; /* the body was never invited: the connection ends */
    if (err == NULL)
      err =
          build_head(L, p, status, lua_isnil(L, 5) ? 0 : 5, (lua_Integer)blen);
    if (err != NULL) {
      p->started = 0;
      lua_pushstring(L, err);
      report(L, c, lua_gettop(L), 0);
      return fail_500(L, c, p);
    }
    p->finished = 1;
    if (body == NULL || blen == 0 || p->nobody) {
      return wb_write(L, c, 1, F_SENT, finish_k);
    }
    if (blen <= 16384) { /* one string, one write */
      if (wb_add(c, body, blen)) return luaL_error(L, "not enough memory");
      return wb_write(L, c, 1, F_SENT, finish_k);
    }
    lua_pushlstring(L, c->conf->wbuf, c->conf->wlen);
    lua_pushvalue(L, 6);
    return write_n(L, 1, 2, F_SENT, finish_k);
  }
  if (!p->finished) { /* streamed, not finished: the last chunk */
    p->finished = 1;
    lua_settop(L, 2);
    if (p->chunked && !p->nobody && c->box->s != NULL) {
      lua_pushliteral(L, "0\r\n\r\n");
      return write_n(L, 1, 1, F_SENT, finish_k);
    }
  }
  return decide(L, c, p);
}

/* ---- a connection's task ------------------------------------------------- */

/* run(conn): the task of one connection (the acceptor in
** lua/spindle/http_server.lua spawns it): requests read, handled and
** answered one after the other until the connection is over.  It is C,
** not Lua, and keeps nothing on its stack between requests, so that a
** task waiting for its next request needs no coroutine at all: it parks
** (sp_await_park) -- run returns, its coroutine goes back to the pool,
** and when bytes, a timeout, close() or an abort wake the task, run is
** called again with the same connection (c->started) and goes on where
** conn:next() waited.  An idle keep-alive connection is so its stream,
** its connection object and its task's handle: no coroutine, no stack.
** The connection is to-be-closed: however the task ends (but not when it
** parks), the connection leaves the server's list, then the stream is
** closed, then the permit released (conn_close).  Errors
** other than the handler's (which conn:finish answers and reports) end the
** task: a cancellation when it is aborted, else a failure reported as any.
**
** Stack: 1 permit, 2 stream, 3 conn; per request 4 req, 5 res, 6.. the
** call being made (msgh and the handler, then finish and its arguments). */
enum { RUN_NEXT = 1, RUN_HANDLED, RUN_FINISHED, RUN_SKIP };

static int run_k(lua_State *L, int status, lua_KContext ctx);

/* mode: 1, the next request; 2, called again after a park. */
static int run_next(lua_State *L, int mode) {
  lua_settop(L, 3);
  lua_pushvalue(L, lua_upvalueindex(UR_NEXT));
  lua_pushvalue(L, 3);
  lua_pushinteger(L, mode);
  lua_callk(L, 2, 2, RUN_NEXT, run_k);
  return run_k(L, LUA_OK, RUN_NEXT);
}

/* What the handler did not read of the body is read and dropped, up to
** SKIP_MAX bytes (ctx counts them in its high bits); more, or a failure,
** ends the connection. */
static int run_skip(lua_State *L, lua_KContext ctx) {
  lua_settop(L, 5);
  lua_getfield(L, lua_upvalueindex(UP_REQ), "methods");
  lua_getfield(L, -1, "read_some");
  lua_replace(L, -2);
  lua_pushvalue(L, 4);
  lua_pushinteger(L, SKIP_MAX);
  return run_k(L, lua_pcallk(L, 2, 3, 0, ctx, run_k), ctx);
}

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  switch ((int)(ctx & 3)) {
    case RUN_NEXT: /* 4 req, 5 res; 4 nil: the connection is over; 4 false:
                      parked (the function to call again is the result) */
      if (lua_isnil(L, 4)) return 0;
      if (lua_type(L, 4) == LUA_TBOOLEAN) {
        lua_getiuservalue(L, lua_upvalueindex(UR_CONF), FU_RUN);
        return 1;
      }
      lua_pushvalue(L, lua_upvalueindex(UR_MSGH)); /* 6 */
      lua_pushvalue(L, lua_upvalueindex(UR_HANDLER));
      lua_pushvalue(L, 4);
      lua_pushvalue(L, 5);
      status = lua_pcallk(L, 2, LUA_MULTRET, 6, RUN_HANDLED, run_k);
      /* fall through */
    case RUN_HANDLED: /* 7..: the handler's results, or its error */
      lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
      lua_insert(L, 7);
      lua_pushvalue(L, 5);
      lua_insert(L, 7);
      lua_pushvalue(L, 3);
      lua_insert(L, 7);
      lua_pushvalue(L, lua_upvalueindex(UR_FINISH));
      lua_replace(L, 6); /* finish(conn, res, ok, ...) */
      lua_callk(L, lua_gettop(L) - 6, 1, RUN_FINISHED, run_k);
      /* fall through */
    case RUN_FINISHED: /* 6: true, "skip" or false */
      if (lua_type(L, 6) == LUA_TSTRING) return run_skip(L, RUN_SKIP);
      if (!lua_toboolean(L, 6)) return 0;
      return run_next(L, 1);
    default: { /* RUN_SKIP: 6, 7, 8: data, or nil, msg, code */
      size_t n;
      lua_Integer skipped = (lua_Integer)(ctx >> 2);
      if (status != LUA_OK && status != LUA_YIELD) return 0;
      if (lua_tolstring(L, 6, &n) == NULL) {
        const char *code = lua_tostring(L, 8);
        if (code == NULL || strcmp(code, "EOF") != 0) return 0;
        return run_next(L, 1);
      }
      skipped += (lua_Integer)n;
      if (skipped > SKIP_MAX) return 0;
      return run_skip(L, RUN_SKIP | ((lua_KContext)skipped << 2));
    }
  }
}

/* A connection of the conf at cf_idx for the stream at s_idx.
** [-0, +1, m] */
static hconn *new_conn(lua_State *L, int cf_idx, int s_idx) {
  hconf *cf = (hconf *)lua_touserdata(L, cf_idx);
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, s_idx);
  hconn *c = lua_newuserdatauv(L, sizeof *c, CU_N);
  memset(c, 0, sizeof *c);
  c->conf = cf;
  c->box = box;
  sp_timer_init(&c->timer, conn_fire);
  set_mt(L, UP_CONN);
  lua_pushvalue(L, s_idx);
  lua_setiuservalue(L, -2, CU_STREAM);
  lua_pushvalue(L, cf_idx);
  lua_setiuservalue(L, -2, CU_CONF);
  return c;
}

static int conn_run(lua_State *L) {
  sp_runtime *rt = sp_box_get(L)->cur;
  hconn *c = (hconn *)check_up(L, 1, UP_CONN, CONN_MT);
  int again = c->started;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, CU_PERMIT);
  lua_getiuservalue(L, 1, CU_STREAM);
  lua_rotate(L, 1, -1); /* 1 permit, 2 stream, 3 conn */
  if (!again) {
    if (c->own != NULL || c->parked)
      return luaL_error(L, "http: a connection served twice");
    c->started = 1;
    c->own = rt != NULL ? rt->current : NULL;
    ring_link(&c->conf->all, &c->al);
  }
  lua_toclose(L, 3);
  return run_next(L, again ? 2 : 1);
}

/* conf:conn(permit, stream) -> the connection run serves (the acceptor's
** task makes it, so that a connection and its stream and permit are one
** object from the start). */
static int conf_conn(lua_State *L) {
  check_up(L, 1, UP_CONF, CONF_MT);
  luaL_checkudata(L, 3, SP_STREAM_MT);
  new_conn(L, 1, 3);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, CU_PERMIT);
  return 1;
}

/* spindle._http_conn(conf, stream) -> a connection that no task serves
** (the bad-input sweep's instance of spindle.http.conn). */
static int l_conn(lua_State *L) {
  check_up(L, 1, UP_CONF, CONF_MT);
  luaL_checkudata(L, 2, SP_STREAM_MT);
  new_conn(L, 1, 2);
  return 1;
}

/* conf:tasks() -> the tasks of the connections being served, a list */
static int conf_tasks(lua_State *L) {
  hconf *cf = (hconf *)check_up(L, 1, UP_CONF, CONF_MT);
  hlink *l = cf->all;
  lua_Integer n = 0;
  lua_newtable(L);
  if (l != NULL) do {
      hconn *c = sp_container_of(l, hconn, al);
      if (c->own != NULL) {
        sp_push_task(L, c->own);
        lua_rawseti(L, -2, ++n);
      }
      l = l->next;
    } while (l != cf->all);
  return 1;
}

/* ---- the module part ---------------------------------------------------- */

/* spindle._http_fail(err, traceback): raises err; the report of the task
** shows traceback (where a handler failed) instead of this call. */
static int l_fail(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  sp_reraise_traceback(L, 1, "(reported by spindle.http)");
  lua_settop(L, 1);
  return lua_error(L);
}

int sp_http_server_open(lua_State *L) {
  static const luaL_Reg conf_methods[] = {{"close", conf_close},
                                          {"tasks", conf_tasks},
                                          {"conn", conf_conn},
                                          {NULL, NULL}};
  static const luaL_Reg conn_methods[] = {
      {"next", conn_next}, {"finish", conn_finish}, {NULL, NULL}};
  static const luaL_Reg conn_meta[] = {
      {"__gc", conn_gc}, {"__close", conn_close}, {NULL, NULL}};
  static const luaL_Reg conf_meta[] = {{"__gc", conf_gc}, {NULL, NULL}};
  static const luaL_Reg req_methods[] = {
      {"read_some", req_read_some}, {"body", req_body}, {NULL, NULL}};
  static const luaL_Reg req_meta[] = {
      {"__index", req_index}, {"__newindex", req_newindex}, {NULL, NULL}};
  static const luaL_Reg res_methods[] = {{"write_head", res_write_head},
                                         {"write", res_write},
                                         {"finish", res_finish},
                                         {NULL, NULL}};
  static const luaL_Reg fns[] = {{"_http_conf", l_conf},
                                 {"_http_conn", l_conn},
                                 {"_http_fail", l_fail},
                                 {NULL, NULL}};
  int base, i;
  luaL_newmetatable(L, CONF_MT); /* base: the module table's top + 1 */
  base = lua_gettop(L);
  luaL_newmetatable(L, CONN_MT);
  luaL_newmetatable(L, REQ_MT);
  luaL_newmetatable(L, RES_MT);
#define PUSH_MTS()                                                             \
  for (i = 0; i < 4; i++) lua_pushvalue(L, base + i)
  lua_newtable(L);
  PUSH_MTS();
  sp_setfuncs_up(L, conf_methods, 4);
  lua_setfield(L, base, "__index");
  lua_pushvalue(L, base);
  PUSH_MTS();
  sp_setfuncs_up(L, conf_meta, 4);
  lua_pop(L, 1);
  lua_newtable(L);
  PUSH_MTS();
  sp_setfuncs_up(L, conn_methods, 4);
  lua_setfield(L, base + 1, "__index");
  lua_pushvalue(L, base + 1);
  PUSH_MTS();
  sp_setfuncs_up(L, conn_meta, 4);
  lua_pop(L, 1);
  lua_pushvalue(L, base + 2); /* requests: __index and __newindex */
  PUSH_MTS();
  sp_setfuncs_up(L, req_meta, 4);
  lua_pop(L, 1);
  lua_newtable(L);
  PUSH_MTS();
  sp_setfuncs_up(L, req_methods, 4);
  lua_setfield(L, base + 2, "methods");
  lua_newtable(L);
  PUSH_MTS();
  sp_setfuncs_up(L, res_methods, 4);
  lua_setfield(L, base + 3, "__index");
  lua_pushvalue(L, base - 1); /* the module table */
  PUSH_MTS();
  sp_setfuncs_up(L, fns, 4);
#undef PUSH_MTS
  lua_settop(L, base - 1);
  lua_createtable(L, 0, 2); /* BodyError's metatable */
  lua_pushcfunction(L, body_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "spindle.http.body_error");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &body_error_key);
  return 0;
}
