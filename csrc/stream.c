/*
** stream.c -- the buffered stream shared by TCP, Unix sockets and process
** pipes: reads, writes, shutdown, close.  Every stream is owned by its
** runtime (an sp_ionode) from sp_stream_opened until its close callback.
**
** Memory.  The Lua object is a small box (sp_sbox) pointing at a malloc()ed
** sp_stream that holds the libuv handle; libuv may touch the handle until
** its close callback, so the C part is freed there and the box just
** forgets it (box->s = NULL means "closed").  Continuations therefore
** look the stream up through the box (the method's self, index 1), never
** through a saved pointer.
**
** Reading.  Bytes land in one buffer, read in place in chunks of up to
** SP_STREAM_CHUNK.  The buffer is bounded by rlimit: the largest amount any
** reader needed (n for read(n), max (+ the delimiter) for read_some,
** read_line, read_until, max + 1 for read_all), and at least one chunk.
** Reading is started when a reader must wait and keeps going while the
** buffer has room; when it is full, uv_read_stop, and the kernel's flow
** control holds the peer.  A read never consumes anything until it can
** complete, so an aborted or timed-out reader loses no byte.
**
** A buffer is taken only when bytes arrive and given back the moment it
** is drained, so an idle connection waiting in read_some holds none.
** libuv asks for room (alloc_cb) only once the socket is readable; a read
** that brought nothing, and rconsume emptying the buffer, give it back.
** Its size is the stream's class, rnext: short messages (requests, echo)
** land in a buffer of SP_STREAM_SMALL bytes.  A read that fills the
** buffer moves on to buffers of 4 KiB, doubling up to SP_STREAM_CHUNK as
** reads keep filling them; the class stays for the next buffer and halves
** after SBUF_SHRINK buffers in a row were given back less than a quarter
** used.  A buffer grows past SP_STREAM_CHUNK only for a reader that needs
** more (read(n), read_all), by doubling up to rlimit, and a waiting
** read(n) gets room for n at once (up to SBUF_FIRST_MAX).  Given-back
** buffers of the classes up to SP_STREAM_CHUNK wait in a small per-runtime
** cache (at most SBUF_CACHE bytes per class, SBUF_CACHE_SMALL for the
** first) for the next read of any stream: a request/response connection
** takes and gives back the same block for every message without calling
** malloc, and a burst of large buffers freed together would otherwise
** cost glibc a heap trim and page faults when the next burst takes them.
**
** Writing.  uv_try_write first; what the kernel did not take goes to
** uv_write and the task waits for its callback, so `write` returns once
** the kernel has accepted every byte.  The uv_write_t (or a shutdown's
** uv_shutdown_t; TLS's ciphertext writes too, sp_stream_wreq) is taken
** only then, from the same per-runtime cache (at most SREQ_CACHE kept),
** and given back by its callback, which libuv always calls -- with
** UV_ECANCELED when the stream is closed first, before the close
** callback -- so a stream that is not writing holds none.  A writer
** aborted meanwhile leaves its write to finish in the background (the
** strings stay anchored in the box); the next write or shutdown waits for
** it first, so bytes are never reordered, duplicated or torn, and at most
** one write is pending.
**
** Waiters.  One reader (s->reader; a second one raises "socket busy") and
** any number of writers, served first come first served: one has the
** write side (s->writer), the others wait their turn in s->wq.  A read_cb or write_cb wakes the waiter; abort runs
** the undo, which only clears the slot.  Closing wakes both with
** nil, "closed", "ECANCELED".
**
** TLS.  A TLS stream (s->tls, tls.c) is the same object: the socket is
** read into the TLS engine's ciphertext buffer instead of rbuf, and the
** engine decrypts into rbuf, so every read method, the bound and the
** cancellation rules above apply to plaintext unchanged.  Writes hand the
** plaintext to the engine, which encrypts and sends it in the background
** and reports the end like write_cb.  The `if (s->tls)` branches below are
** the only places where the two differ.
*/
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tls.h"

enum { R_N, R_SOME, R_LINE, R_UNTIL, R_ALL, R_FN = SP_STREAM_R_FN };

/* Sizes: the classes that are cached -- class 0 is SP_STREAM_SMALL, the
** first buffer of a stream; class k >= 1 is SBUF_MIN << (k - 1), the last
** one SP_STREAM_CHUNK. */
#define SBUF_MIN 4096
#define SBUF_NCLASS 6
#define SBUF_CACHE (256 * 1024)      /* bytes kept per class, at most */
#define SBUF_CACHE_SMALL (64 * 1024) /* ... of class 0 */
#define SREQ_CACHE 64                /* write/shutdown requests kept */
/* A stream's class halves after this many buffers in a row were given
** back less than a quarter used (one short read now and then, as at the
** end of every burst of a bulk transfer, does not count). */
#define SBUF_SHRINK 8
/* The most a waiting read(n) gets at once; more by doubling. */
#define SBUF_FIRST_MAX (4 * SP_STREAM_CHUNK)
/* What a writer waits for (the low bits of its continuation context). */
enum { W_OWN = 0, W_PREV = 1, W_SHUT = 2, W_PREV_SHUT = 3 };

static int closed_result(lua_State *L, const char *code) {
  return sp_io_closed(L, code);
}

/* nil, message, code for an error of stream s: a TLS failure says why. */
static int stream_error(lua_State *L, sp_stream *s, int code) {
  if (code == SP_ETLS && s->tls != NULL) return sp_tls_push_error(L, s);
  return sp_io_fail(L, code);
}

/* ---- creation and close ----------------------------------------------- */

sp_stream *sp_stream_alloc(const char *kind) {
  sp_stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->h = (uv_stream_t *)&s->u;
  s->kind = kind;
  s->rlimit = SP_STREAM_CHUNK;
  s->rnext = SP_STREAM_SMALL;
  return s;
}

static void stream_node_close(sp_owned *o) {
  sp_stream_close(sp_container_of(o, sp_stream, node.own));
}

void sp_stream_opened(sp_stream *s, sp_runtime *rt) {
  s->h->data = s;
  sp_io_track(&s->node, rt, stream_node_close);
}

static void stream_closed(uv_handle_t *h) {
  sp_stream *s = (sp_stream *)h->data;
  sp_io_untrack(&s->node);
  if (s->external) free(h);
  if (s->tls != NULL) sp_tls_free(s->tls);
  free(s->rbuf);
  free(s);
}

static void wake_waiter(sp_task *t) {
  if (t != NULL && t->state == SP_T_WAITING) {
    sp_wake(t, SP_WAKE_OK);
  }
}

void sp_stream_wake(sp_task *t) { wake_waiter(t); }

void sp_stream_close(sp_stream *s) {
  if (s == NULL || s->closing) return;
  s->closing = 1;
  if (s->box != NULL) {
    s->box->s = NULL;
    s->box = NULL;
  }
  wake_waiter(s->reader); /* their continuations find box->s == NULL */
  wake_waiter(s->writer);
  s->reader = s->writer = NULL;
  while (s->wq.head != NULL) { /* queued writers: "closed" too */
    sp_task *t = s->wq.head;
    sp_wlist_remove(&s->wq, t);
    sp_wake(t, SP_WAKE_OK);
  }
  if (s->tls != NULL) sp_tls_close(s); /* close_notify, handshake waiter */
  if (s->reset && s->h->type == UV_TCP && !s->spending &&
      uv_tcp_close_reset((uv_tcp_t *)s->h, stream_closed) == 0)
    return;
  uv_close((uv_handle_t *)s->h, stream_closed);
}

uv_stream_t *sp_stream_handle(sp_stream *s) { return s->h; }

sp_stream *sp_stream_test(lua_State *L, int idx) {
  sp_sbox *box = (sp_sbox *)luaL_testudata(L, idx, SP_STREAM_MT);
  return box ? box->s : NULL;
}

/* A full userdata for the box, in protected mode so that a memory error
** can be cleaned up by the caller.  [-0, +1, -] on success. */
static int box_new(lua_State *L) {
  sp_sbox *box = lua_newuserdatauv(L, sizeof *box, 1);
  box->s = NULL;
  luaL_setmetatable(L, SP_STREAM_MT);
  return 1;
}

void sp_stream_push(lua_State *L, sp_stream *s) {
  sp_sbox *box;
  lua_pushcfunction(L, box_new);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    sp_stream_close(s);
    lua_error(L);
  }
  box = (sp_sbox *)lua_touserdata(L, -1);
  box->s = s;
  s->box = box;
}

static void free_handle(uv_handle_t *h) { free(h); }

sp_stream *sp_stream_wrap(lua_State *L, sp_runtime *rt, uv_stream_t *h,
                          const char *kind) {
  sp_stream *s = calloc(1, sizeof *s);
  if (s == NULL) {
    h->data = NULL;
    uv_close((uv_handle_t *)h, free_handle);
    luaL_error(L, "not enough memory");
  }
  s->h = h;
  s->kind = kind;
  s->external = 1;
  s->rlimit = SP_STREAM_CHUNK;
  s->rnext = SP_STREAM_SMALL;
  sp_stream_opened(s, rt);
  sp_stream_push(L, s);
  return s;
}

/* ---- checking arguments ---------------------------------------------- */

/* Every stream method has upvalue 1 = the module box (as every module
** function) and upvalue 2 = the stream metatable, so checking self is a
** pointer comparison -- luaL_checkudata's lookup by name would cost a
** fifth of an echo server's time. */
#define STREAM_MT_UPV lua_upvalueindex(2)

/* The stream box at index 1.  [-0, +0, v] */
static sp_sbox *check_box(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  if (p != NULL && lua_getmetatable(L, 1)) {
    int same = lua_topointer(L, -1) == lua_topointer(L, STREAM_MT_UPV);
    lua_pop(L, 1);
    if (same) return (sp_sbox *)p;
  }
  return (sp_sbox *)luaL_checkudata(L, 1, SP_STREAM_MT); /* raises */
}

/* The task for an await on the stream at 1 (which may be closed). */
static sp_task *stream_task(lua_State *L, sp_stream *s, const char *name) {
  sp_task *t = sp_await_check(L, name);
  if (s != NULL && s->node.rt != t->rt)
    luaL_error(L, "%s: the stream belongs to another runtime", name);
  return t;
}

static size_t check_max(lua_State *L, int arg, size_t def) {
  lua_Integer n;
  if (lua_isnoneornil(L, arg)) return def;
  if (lua_type(L, arg) == LUA_TNUMBER && !lua_isinteger(L, arg)) {
    lua_Number x = lua_tonumber(L, arg);
    if (x == HUGE_VAL) return (size_t)-1 / 4; /* math.huge: no limit */
  }
  n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 1, arg, "positive integer expected");
  if ((lua_Unsigned)n > (size_t)-1 / 4) return (size_t)-1 / 4;
  return (size_t)n;
}

/* ---- the read buffer --------------------------------------------------- */

/* Given-back buffers of each class, for reuse: free lists through each
** buffer's first word; and given-back write and shutdown requests.  Made
** by the first give-back, owned by the runtime (freed when it closes;
** rt->sbufs is NULL again then). */
typedef union sreq {
  uv_write_t w;
  uv_shutdown_t s;
  union sreq *next; /* while in the cache */
} sreq;

typedef struct sbuf_cache {
  sp_ionode node;
  void *head[SBUF_NCLASS];
  unsigned n[SBUF_NCLASS];
  sreq *reqs;
  unsigned nreqs;
} sbuf_cache;

static void sbuf_cache_close(sp_owned *o) {
  sbuf_cache *c = sp_container_of(o, sbuf_cache, node.own);
  int k;
  for (k = 0; k < SBUF_NCLASS; k++)
    while (c->head[k] != NULL) {
      void *b = c->head[k];
      c->head[k] = *(void **)b;
      free(b);
    }
  while (c->reqs != NULL) {
    sreq *r = c->reqs;
    c->reqs = r->next;
    free(r);
  }
  c->node.rt->sbufs = NULL;
  sp_io_untrack(&c->node);
  free(c);
}

/* The size of class k. */
#define SBUF_SIZE(k)                                                           \
  ((k) == 0 ? (size_t)SP_STREAM_SMALL : (size_t)SBUF_MIN << ((k)-1))

/* The class of a buffer of size cap, or -1 if it is not one. */
static int sbuf_class(size_t cap) {
  int k;
  for (k = 0; k < SBUF_NCLASS; k++)
    if (cap == SBUF_SIZE(k)) return k;
  return -1;
}

/* The runtime's cache, made on first use; NULL when out of memory or once
** the runtime is closing. */
static sbuf_cache *sbuf_cache_get(sp_stream *s) {
  sp_runtime *rt = s->node.rt;
  sbuf_cache *c = (sbuf_cache *)rt->sbufs;
  if (c == NULL && !rt->closing && !rt->closed && !s->closing &&
      (c = (sbuf_cache *)calloc(1, sizeof *c)) != NULL) {
    sp_io_track(&c->node, rt, sbuf_cache_close);
    rt->sbufs = c;
  }
  return c;
}

/* A buffer of at least *size bytes (rounded up to a class if one is that
** large; *size is set), from the cache if it has one.  NULL when out of
** memory. */
static char *sbuf_alloc(sp_stream *s, size_t *size) {
  sbuf_cache *c = (sbuf_cache *)s->node.rt->sbufs;
  int k;
  for (k = 0; k < SBUF_NCLASS; k++)
    if (*size <= SBUF_SIZE(k)) break;
  if (k < SBUF_NCLASS) {
    *size = SBUF_SIZE(k);
    if (c != NULL && c->head[k] != NULL) {
      void *b = c->head[k];
      c->head[k] = *(void **)b;
      c->n[k]--;
      return (char *)b;
    }
  }
  return (char *)malloc(*size);
}

/* Gives back a buffer of cap bytes: to the cache while its class has room
** there, else to malloc. */
static void sbuf_free(sp_stream *s, char *b, size_t cap) {
  int k = sbuf_class(cap);
  sbuf_cache *c = k >= 0 ? sbuf_cache_get(s) : NULL;
  if (c != NULL &&
      ((size_t)c->n[k] + 1) * cap <= (k == 0 ? SBUF_CACHE_SMALL : SBUF_CACHE)) {
    *(void **)b = c->head[k];
    c->head[k] = b;
    c->n[k]++;
  } else {
    free(b);
  }
}

/* A request for a write or shutdown of s, from the cache if it has one.
** NULL when out of memory. */
static sreq *sreq_alloc(sp_stream *s) {
  sbuf_cache *c = (sbuf_cache *)s->node.rt->sbufs;
  sreq *r;
  if (c != NULL && (r = c->reqs) != NULL) {
    c->reqs = r->next;
    c->nreqs--;
    return r;
  }
  return (sreq *)malloc(sizeof *r);
}

/* Gives back a request whose callback came. */
static void sreq_free(sp_stream *s, sreq *r) {
  sbuf_cache *c = sbuf_cache_get(s);
  if (c != NULL && c->nreqs < SREQ_CACHE) {
    r->next = c->reqs;
    c->reqs = r;
    c->nreqs++;
  } else {
    free(r);
  }
}

uv_write_t *sp_stream_wreq(sp_stream *s) {
  sreq *r = sreq_alloc(s);
  return r != NULL ? &r->w : NULL;
}

void sp_stream_wreq_free(sp_stream *s, uv_write_t *req) {
  sreq_free(s, (sreq *)req);
}

/* A buffer of at least size bytes for s.  0 or -1 when out of memory. */
static inline int rbuf_get(sp_stream *s, size_t size) {
  sbuf_cache *c = (sbuf_cache *)s->node.rt->sbufs;
  if (size <= SP_STREAM_SMALL && c != NULL && c->head[0] != NULL) {
    s->rbuf = (char *)c->head[0]; /* short messages: the common case */
    c->head[0] = *(void **)s->rbuf;
    c->n[0]--;
    s->rcap = SP_STREAM_SMALL;
    return 0;
  }
  if ((s->rbuf = sbuf_alloc(s, &size)) == NULL) return -1;
  s->rcap = size;
  return 0;
}

/* Moves the buffered bytes to the start of the buffer. */
static void rcompact(sp_stream *s) {
  if (s->roff > 0) {
    memmove(s->rbuf, s->rbuf + s->roff, s->rlen);
    s->roff = 0;
  }
}

/* Moves the bytes of s into a larger buffer of cap bytes (which reads
** fill): the next buffer has the larger class too.  0 or -1 when out of
** memory. */
static int rbuf_grow(sp_stream *s, size_t cap) {
  char *p;
  if (sbuf_class(s->rcap) < 0) { /* past the classes */
    rcompact(s);
    if ((p = (char *)realloc(s->rbuf, cap)) == NULL) return -1;
  } else {
    if ((p = sbuf_alloc(s, &cap)) == NULL) return -1;
    memcpy(p, s->rbuf + s->roff, s->rlen);
    sbuf_free(s, s->rbuf, s->rcap);
    s->roff = 0;
  }
  s->rbuf = p;
  s->rcap = cap;
  s->rhigh = s->rlen;
  s->rnext = cap < SP_STREAM_CHUNK ? cap : SP_STREAM_CHUNK;
  return 0;
}

/* Gives back the drained buffer of s, to the cache or to malloc, and
** learns from how full it got. */
static void rbuf_put(sp_stream *s) {
  if (s->rhigh == 0) {
    /* a read that brought nothing says nothing about sizes */
  } else if (s->rhigh > s->rcap / 4) {
    s->rlow = 0;
  } else if (++s->rlow >= SBUF_SHRINK && s->rnext > SP_STREAM_SMALL) {
    s->rnext = s->rnext > SBUF_MIN ? s->rnext / 2 : SP_STREAM_SMALL;
    s->rlow = 0;
  }
  sbuf_free(s, s->rbuf, s->rcap);
  s->rbuf = NULL;
  s->rcap = s->roff = s->rhigh = 0;
}

void sp_stream_rtrim(sp_stream *s) {
  if (s->rlen == 0 && s->rbuf != NULL) rbuf_put(s);
}

/* Consumes n buffered bytes; a drained buffer is given back.  Only Lua
** calls this, never while libuv holds a pointer into the buffer. */
static inline void rconsume(sp_stream *s, size_t n) {
  s->roff += n;
  s->rlen -= n;
  s->rscan = 0;
  if (s->rlen == 0) {
    sbuf_cache *c = (sbuf_cache *)s->node.rt->sbufs;
    if (s->rcap == SP_STREAM_SMALL && s->rnext == SP_STREAM_SMALL &&
        c != NULL && c->n[0] < SBUF_CACHE_SMALL / SP_STREAM_SMALL) {
      *(void **)s->rbuf = c->head[0]; /* short messages: nothing to learn */
      c->head[0] = s->rbuf;
      c->n[0]++;
      s->rbuf = NULL;
      s->rcap = s->roff = s->rhigh = 0;
    } else {
      s->roff = 0;
      if (s->rbuf != NULL) rbuf_put(s);
    }
  }
}

static const char *rdata(sp_stream *s) {
  return s->rbuf != NULL ? s->rbuf + s->roff : "";
}

const char *sp_stream_rdata(sp_stream *s) { return rdata(s); }

void sp_stream_rconsume(sp_stream *s, size_t n) { rconsume(s, n); }

int sp_stream_unread(sp_stream *s, const char *p, size_t n) {
  if (n == 0) return 0;
  if (s->rbuf == NULL) {
    if (rbuf_get(s, n) < 0) return -1;
    s->roff = s->rhigh = 0;
  }
  if (s->roff < n) { /* make room in front */
    if (s->rlen + n <= s->rcap) {
      memmove(s->rbuf + n, s->rbuf + s->roff, s->rlen);
    } else {
      size_t cap = s->rlen + n;
      char *b = sbuf_alloc(s, &cap);
      if (b == NULL) return -1;
      memcpy(b + n, s->rbuf + s->roff, s->rlen);
      sbuf_free(s, s->rbuf, s->rcap);
      s->rbuf = b;
      s->rcap = cap;
    }
    s->roff = n;
  }
  s->roff -= n;
  s->rlen += n;
  s->rscan = 0;
  if (s->roff + s->rlen > s->rhigh) s->rhigh = s->roff + s->rlen;
  memmove(s->rbuf + s->roff, p, n);
  return 0;
}

/* Searches the delimiter in the first `upto` buffered bytes, starting where
** the last search stopped.  Returns its offset or -1. */
static long rfind(sp_stream *s, const char *d, size_t dlen, size_t upto) {
  const char *b = rdata(s);
  size_t i = s->rscan >= dlen ? s->rscan - dlen + 1 : 0;
  if (upto > s->rlen) upto = s->rlen;
  while (upto >= dlen && i <= upto - dlen) {
    const char *p = memchr(b + i, d[0], upto - dlen + 1 - i);
    if (p == NULL) break;
    i = (size_t)(p - b);
    if (memcmp(p, d, dlen) == 0) return (long)i;
    i++;
  }
  s->rscan = upto;
  return -1;
}

/* How many bytes the current request needs buffered to decide. */
static size_t rneed(int kind, size_t n, size_t max, size_t dlen) {
  switch (kind) {
    case R_N: return n;
    case R_SOME: return 1;
    case R_ALL: return max + 1;
    default: return max + dlen;
  }
}

char *sp_stream_rreserve(sp_stream *s, size_t max, size_t *len) {
  size_t room, want;
  if (s->rbuf == NULL) { /* nothing buffered: a new buffer */
    size_t size = s->rnext;
    if (s->reader != NULL && s->rkind == R_N && s->rn > size)
      size = s->rn < SBUF_FIRST_MAX ? s->rn : SBUF_FIRST_MAX;
    if (rbuf_get(s, size) < 0) return NULL;
    s->roff = s->rhigh = 0;
    room = s->rcap;
  } else if ((room = s->rcap - s->roff - s->rlen) < s->rcap / 8) {
    /* little room left at the end */
    if (s->roff >= s->rcap / 2 || (s->roff > 0 && s->rcap >= s->rlimit)) {
      rcompact(s); /* frees at least half, or all there may be */
    } else if (s->rcap < s->rlimit || room == 0) { /* reads fill it: grow */
      size_t cap = s->rcap < SBUF_MIN ? SBUF_MIN : s->rcap * 2;
      if (cap > s->rlimit && s->rlimit > s->rlen) cap = s->rlimit;
      if (cap <= s->rlen) cap = s->rlen + 1;
      if (rbuf_grow(s, cap) < 0) return NULL;
    }
    room = s->rcap - s->roff - s->rlen;
  }
  want = s->rlimit > s->rlen ? s->rlimit - s->rlen : 1;
  if (want > max) want = max;
  if (want > room) want = room;
  *len = want;
  return s->rbuf + s->roff + s->rlen;
}

static inline void rgot(sp_stream *s, size_t n) {
  s->rlen += n;
  if (s->roff + s->rlen > s->rhigh) s->rhigh = s->roff + s->rlen;
}

void sp_stream_rgot(sp_stream *s, size_t n) { rgot(s, n); }

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  size_t len = 0;
  char *p = sp_stream_rreserve((sp_stream *)h->data, SP_STREAM_CHUNK, &len);
  (void)suggested;
  *buf = uv_buf_init(p, p ? (unsigned)len : 0); /* NULL: UV_ENOBUFS */
}

static void read_stop(sp_stream *s) {
  if (s->reading) {
    uv_read_stop(s->h);
    s->reading = 0;
  }
}

void sp_stream_read_stop(sp_stream *s) { read_stop(s); }

/* Could the waiting reader complete now?  Updates the delimiter scan. */
static int reader_ready(sp_stream *s) {
  if (s->eof || s->rerr) return 1;
  switch (s->rkind) {
    case R_N: return s->rlen >= s->rn;
    case R_SOME: return s->rlen > 0;
    case R_ALL: return s->rlen > s->rmax;
    case R_FN: return s->rfn(s, s->rfn_data);
    default:
      return s->rlen >= s->rmax + s->dlen ||
             rfind(s, s->delim, s->dlen, s->rmax + s->dlen) >= 0;
  }
}

/* libuv reports a reset that arrives with the last data as EOF: ask the
** socket. */
int sp_stream_eof_error(uv_stream_t *h) {
  if (h->type == UV_TCP) {
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof err;
    if (uv_fileno((uv_handle_t *)h, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
      return uv_translate_sys_error(err);
  }
  return 0;
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  sp_stream *s = (sp_stream *)h->data;
  (void)buf;
  if (nread > 0) {
    rgot(s, (size_t)nread);
    if (s->rlen >= s->rlimit) read_stop(s); /* full: the peer waits */
  } else if (nread == UV_EOF) {
    s->eof = 1;
    read_stop(s);
    s->rerr = sp_stream_eof_error(h);
  } else if (nread < 0) {
    s->rerr = (int)nread;
    read_stop(s);
  }
  if (s->rlen == 0 && s->rbuf != NULL) rbuf_put(s); /* nothing came */
  if (s->reader != NULL && s->reader->state == SP_T_WAITING && reader_ready(s))
    wake_waiter(s->reader);
}

static void read_start(sp_stream *s) {
  int r;
  if (s->reading || s->eof || s->rerr || s->closing) return;
  if (s->tls != NULL) {
    if (!sp_tls_wants_input(s)) return;
    r = uv_read_start(s->h, sp_tls_alloc_cb, sp_tls_read_cb);
  } else {
    if (s->rlen >= s->rlimit) return;
    r = uv_read_start(s->h, alloc_cb, read_cb);
  }
  if (r == 0)
    s->reading = 1;
  else
    s->rerr = r;
}

void sp_stream_read_start(sp_stream *s) { read_start(s); }

void sp_stream_wake_reader(sp_stream *s) {
  if (s->reader != NULL && s->reader->state == SP_T_WAITING && reader_ready(s))
    wake_waiter(s->reader);
}

/* Tries to complete a read from the buffer.  Returns the number of
** results pushed, or -1 if the reader must wait.  [-0, +(0..4), m] */
static int rtry(lua_State *L, sp_stream *s, int kind, size_t n, size_t max,
                const char *d, size_t dlen) {
  switch (kind) {
    case R_N:
      if (s->rlen >= n) {
        lua_pushlstring(L, rdata(s), n);
        rconsume(s, n);
        return 1;
      }
      if (!s->eof && !s->rerr) return -1;
      stream_error(L, s, s->rerr ? s->rerr : UV_EOF);
      lua_pushlstring(L, rdata(s), s->rlen); /* partial */
      rconsume(s, s->rlen);
      return 4;
    case R_SOME:
      if (s->rlen > 0) {
        size_t k = s->rlen < max ? s->rlen : max;
        lua_pushlstring(L, rdata(s), k);
        rconsume(s, k);
        return 1;
      }
      if (!s->eof && !s->rerr) return -1;
      return stream_error(L, s, s->rerr ? s->rerr : UV_EOF);
    case R_ALL:
      if (s->rlen > max) return sp_io_fail_msg(L, "too long", "ENOBUFS");
      if (s->rerr) { /* as read(n): the error, with what came before it */
        stream_error(L, s, s->rerr);
        lua_pushlstring(L, rdata(s), s->rlen);
        rconsume(s, s->rlen);
        return 4;
      }
      if (!s->eof) return -1;
      lua_pushlstring(L, rdata(s), s->rlen);
      rconsume(s, s->rlen);
      return 1;
    default: { /* R_LINE, R_UNTIL */
      long at = rfind(s, d, dlen, max + dlen);
      if (at >= 0) {
        size_t len = (size_t)at;
        if (kind == R_LINE && len > 0 && rdata(s)[len - 1] == '\r') len--;
        lua_pushlstring(L, rdata(s), len);
        rconsume(s, (size_t)at + dlen);
        return 1;
      }
      if (s->rlen >= max + dlen || ((s->eof || s->rerr) && s->rlen > max))
        return sp_io_fail_msg(L, "line too long", "ELINE");
      if (!s->eof && !s->rerr) return -1;
      /* the bytes that came before the end (EOF or an error) first, as
      ** the last line; then the end, every time after */
      if (s->rlen == 0) return stream_error(L, s, s->rerr ? s->rerr : UV_EOF);
      lua_pushlstring(L, rdata(s), s->rlen); /* the last, unterminated */
      rconsume(s, s->rlen);
      return 1;
    }
  }
}

/* ---- read awaits ------------------------------------------------------ */

static void reader_undo(sp_task *t) {
  sp_stream *s = (sp_stream *)t->w.obj;
  if (s->reader == t) s->reader = NULL;
}

static void describe_stream(sp_task *t, char *buf, size_t size);

static const sp_waitops read_wait_ops = {"read", reader_undo, describe_stream};

/* The results of a read that completed at once are already on the stack:
** this continuation only passes them on (after a fairness yield). */
static int pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)L;
  return (int)ctx;
}

static int read_wait(lua_State *L, sp_stream *s, sp_task *t);

/* Continuation of a read that waited.  The request is still in s->r*. */
static int read_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, 1);
  sp_stream *s;
  int n;
  (void)status;
  sp_resumed(L, t); /* raises if aborted: the undo freed the slot */
  s = box->s;
  if (s == NULL) return closed_result(L, "ECANCELED");
  n = rtry(L, s, s->rkind, s->rn, s->rmax, s->delim, s->dlen);
  if (n < 0) return read_wait(L, s, t);
  s->reader = NULL;
  return n;
}

static int read_wait(lua_State *L, sp_stream *s, sp_task *t) {
  s->reader = t;
  read_start(s);
  if (s->rerr && !s->reading) { /* read_start failed: report at once */
    int n = rtry(L, s, s->rkind, s->rn, s->rmax, s->delim, s->dlen);
    if (n >= 0) {
      s->reader = NULL;
      return n;
    }
  }
  return sp_await_block(L, t, &read_wait_ops, s, read_k, (lua_KContext)t);
}

/* The common part of every read method. */
static int read_common(lua_State *L, const char *name, int kind, size_t n,
                       size_t max, const char *d, size_t dlen) {
  sp_sbox *box = check_box(L);
  sp_stream *s = box->s;
  sp_task *t = stream_task(L, s, name);
  size_t need;
  int nres;
  if (s == NULL) return closed_result(L, "EBADF");
  if (s->reader != NULL)
    luaL_error(L, "%s: socket busy (another task is reading this stream)",
               name);
  s->rscan = 0; /* a scan by an abandoned read may have had another delim */
  nres = rtry(L, s, kind, n, max, d, dlen);
  if (nres >= 0) return sp_await_fast(L, t, pass_k, nres);
  need = rneed(kind, n, max, dlen);
  if (need > s->rlimit) s->rlimit = need;
  s->rkind = kind;
  s->rn = n;
  s->rmax = max;
  s->delim = d;
  s->dlen = dlen;
  if (s->tls != NULL) { /* decrypt what has arrived, then try again */
    sp_tls_before_read(s);
    nres = rtry(L, s, kind, n, max, d, dlen);
    if (nres >= 0) return sp_await_fast(L, t, pass_k, nres);
  }
  return read_wait(L, s, t);
}

static int s_read(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "non-negative integer expected");
  lua_settop(L, 2);
  if (n == 0) {
    check_box(L);
    stream_task(L, NULL, "read");
    lua_pushliteral(L, "");
    return 1;
  }
  return read_common(L, "read", R_N, (size_t)n, 0, NULL, 0);
}

static int s_read_some(lua_State *L) {
  size_t max = check_max(L, 2, SP_STREAM_CHUNK);
  lua_settop(L, 2);
  return read_common(L, "read_some", R_SOME, 0, max, NULL, 0);
}

static int s_read_line(lua_State *L) {
  size_t max = check_max(L, 2, SP_STREAM_CHUNK);
  lua_settop(L, 2);
  return read_common(L, "read_line", R_LINE, 0, max, "\n", 1);
}

static int s_read_until(lua_State *L) {
  size_t dlen;
  const char *d = luaL_checklstring(L, 2, &dlen);
  size_t max = check_max(L, 3, SP_STREAM_CHUNK);
  luaL_argcheck(L, dlen > 0, 2, "empty delimiter");
  lua_settop(L, 3);
  return read_common(L, "read_until", R_UNTIL, 0, max, d, dlen);
}

static int s_read_all(lua_State *L) {
  size_t max = check_max(L, 2, (size_t)-1 / 4);
  lua_settop(L, 2);
  return read_common(L, "read_all", R_ALL, 0, max, NULL, 0);
}

/* for line in s:lines([max]): read_line until it returns nil.  The reason
** (eof or an error) is what the next read_line returns. */
static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(3)); /* the stream */
  lua_pushvalue(L, lua_upvalueindex(4)); /* max */
  return read_common(L, "lines", R_LINE, 0, check_max(L, 2, SP_STREAM_CHUNK),
                     "\n", 1);
}

static int s_lines(lua_State *L) {
  check_box(L);
  check_max(L, 2, SP_STREAM_CHUNK);
  lua_settop(L, 2);
  /* upvalues 1 and 2 as for every stream method: box and metatable */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, STREAM_MT_UPV);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, lines_iter, 4);
  return 1;
}

/* ---- writes ----------------------------------------------------------- */

/* Concurrent writers are served in order: one write (or shutdown) has the
** write side at a time; the others wait in s->wq.  When the write side is
** given up, the first one waiting gets it -- reserved in s->writer before
** it runs, so a writer arriving meanwhile queues behind it. */
static void write_handoff(sp_stream *s) {
  sp_task *w = s->wq.head;
  if (s->writer != NULL || w == NULL) return;
  sp_wlist_remove(&s->wq, w);
  s->writer = w;
  sp_wake(w, SP_WAKE_OK);
}

/* t is done with the write side (its write returned, or it was aborted). */
static void write_release(sp_stream *s, sp_task *t) {
  if (s->writer == t) s->writer = NULL;
  write_handoff(s);
}

static void writer_undo(sp_task *t) {
  /* the write goes on in the background; the next writer waits for it */
  write_release((sp_stream *)t->w.obj, t);
}

static const sp_waitops write_wait_ops = {"write", writer_undo,
                                          describe_stream};

static void queued_undo(sp_task *t) {
  sp_stream *s = (sp_stream *)t->w.obj;
  sp_wlist_remove(&s->wq, t);
}

static const sp_waitops queued_wait_ops = {"write queued", queued_undo,
                                           describe_stream};

void sp_stream_write_done(sp_stream *s, int status) {
  s->wpending = 0;
  s->wstatus = status;
  if (status < 0 && status != UV_ECANCELED) s->werr = status;
  wake_waiter(s->writer);
}

static void write_cb(uv_write_t *req, int status) {
  sp_stream *s = (sp_stream *)req->handle->data;
  sreq_free(s, (sreq *)req);
  sp_stream_write_done(s, status);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  sp_stream *s = (sp_stream *)req->handle->data;
  sreq_free(s, (sreq *)req);
  s->spending = 0;
  s->sstatus = status;
  wake_waiter(s->writer);
}

static int write_start(lua_State *L, sp_stream *s, sp_task *t, int fast);

static int write_k(lua_State *L, int status, lua_KContext ctx);

static int wait_writer(lua_State *L, sp_stream *s, sp_task *t, int what) {
  s->writer = t;
  return sp_await_block(L, t, &write_wait_ops, s, write_k,
                        (lua_KContext)t | what);
}

static int shutdown_start(lua_State *L, sp_stream *s, sp_task *t, int fast);

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)(ctx & ~(lua_KContext)3);
  int what = (int)(ctx & 3);
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, 1);
  sp_stream *s;
  (void)status;
  sp_resumed(L, t); /* aborted: the write goes on in the background */
  s = box->s;
  if (s == NULL) return closed_result(L, "ECANCELED");
  if (s->writer == t) s->writer = NULL;
  switch (what) {
    case W_PREV: /* the previous, abandoned write is done: our turn */
      return write_start(L, s, t, 0);
    case W_PREV_SHUT: return shutdown_start(L, s, t, 0);
    case W_SHUT:
      if (s->spending) return wait_writer(L, s, t, W_SHUT);
      write_release(s, t);
      if (s->sstatus < 0) return sp_io_fail(L, s->sstatus);
      lua_pushboolean(L, 1);
      return 1;
    default:
      if (s->wpending) return wait_writer(L, s, t, W_OWN);
      lua_pushnil(L);
      lua_setiuservalue(L, 1, 1); /* release the anchored strings */
      s->anchored = 0;
      write_release(s, t);
      if (s->wstatus < 0) return stream_error(L, s, s->wstatus);
      lua_pushboolean(L, 1);
      return 1;
  }
}

/* A queued writer's turn (bit 0 of ctx: a shutdown). */
static int queued_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)(ctx & ~(lua_KContext)1);
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, 1);
  sp_stream *s;
  (void)status;
  sp_resumed(L, t); /* aborted while queued: the undo took it out */
  s = box->s;
  if (s == NULL) return closed_result(L, "ECANCELED");
  if (ctx & 1) return shutdown_start(L, s, t, 0);
  return write_start(L, s, t, 0);
}

/* Waits for the write side, behind the writers already waiting. */
static int queue_writer(lua_State *L, sp_stream *s, sp_task *t, int shut) {
  sp_wlist_push(&s->wq, t);
  return sp_await_block(L, t, &queued_wait_ops, s, queued_k,
                        (lua_KContext)t | (lua_KContext)shut);
}

#define WRITE_NBUF 16

/* Writes the strings at 2..top.  fast: this is the first attempt (not a
** continuation), so an immediate completion goes through sp_await_fast. */
static int write_start(lua_State *L, sp_stream *s, sp_task *t, int fast) {
  uv_buf_t sbufs[WRITE_NBUF], *bufs = sbufs;
  int top = lua_gettop(L), nb = top - 1, i, r;
  sreq *req;
  size_t total = 0, done;
  if (s->werr) {
    write_release(s, t);
    return stream_error(L, s, s->werr);
  }
  if (s->wpending || s->spending) return wait_writer(L, s, t, W_PREV);
  if (s->anchored) { /* strings of an abandoned write, now done */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    s->anchored = 0;
  }
  if (nb > WRITE_NBUF)
    bufs = (uv_buf_t *)lua_newuserdatauv(L, sizeof *bufs * (size_t)nb, 0);
  for (i = 0; i < nb; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i + 2, &len);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
    total += len;
  }
  if (s->tls != NULL && total > 0) { /* encrypted, sent in the background */
    r = sp_tls_write(s, bufs, nb);
    if (r < 0) {
      write_release(s, t);
      return stream_error(L, s, r);
    }
    if (r > 0) goto pending;
    total = 0;
  }
  r = total == 0 ? 0 : uv_try_write(s->h, bufs, (unsigned)nb);
  if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
    s->werr = r;
    write_release(s, t);
    return sp_io_fail(L, r);
  }
  done = r > 0 ? (size_t)r : 0;
  if (done == total) {
    lua_settop(L, top);
    lua_pushboolean(L, 1);
    write_release(s, t);
    if (fast) return sp_await_fast(L, t, pass_k, 1);
    return 1;
  }
  for (i = 0; i < nb && done >= bufs[i].len; i++) done -= bufs[i].len;
  bufs[i].base += done;
  bufs[i].len -= (unsigned)done;
  if ((req = sreq_alloc(s)) == NULL) {
    /* nothing written: the stream is as it was; else it is broken */
    if (r > 0) s->werr = UV_ENOMEM;
    write_release(s, t);
    return sp_io_fail(L, UV_ENOMEM);
  }
  r = uv_write(&req->w, s->h, bufs + i, (unsigned)(nb - i), write_cb);
  if (r < 0) {
    free(req);
    s->werr = r;
    write_release(s, t);
    return sp_io_fail(L, r);
  }
  s->wpending = 1;
pending: /* anchor the strings until the write completes */
  if (nb == 1) {
    lua_pushvalue(L, 2);
  } else {
    lua_createtable(L, nb, 0);
    for (i = 0; i < nb; i++) {
      lua_pushvalue(L, i + 2);
      lua_rawseti(L, -2, i + 1);
    }
  }
  lua_setiuservalue(L, 1, 1);
  s->anchored = 1;
  lua_settop(L, top);
  return wait_writer(L, s, t, W_OWN);
}

int sp_stream_try_write(sp_stream *s, const char *p, size_t n, size_t *done) {
  uv_buf_t b;
  int r;
  *done = 0;
  if (s->writer != NULL || s->wq.head != NULL || s->wpending || s->spending ||
      s->werr || s->tls != NULL || s->anchored || s->closing)
    return 0;
  b = uv_buf_init((char *)p, (unsigned)n);
  r = uv_try_write(s->h, &b, 1);
  if (r < 0) {
    if (r != UV_EAGAIN && r != UV_ENOSYS) s->werr = r; /* write reports it */
    return 0;
  }
  *done = (size_t)r;
  return (size_t)r == n;
}

static int s_write(lua_State *L) {
  sp_sbox *box = check_box(L);
  int top = lua_gettop(L), i;
  sp_stream *s;
  sp_task *t;
  for (i = 2; i <= top; i++)
    if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER)
      luaL_typeerror(L, i, "string");
  for (i = 2; i <= top; i++) lua_tolstring(L, i, NULL); /* numbers */
  s = box->s;
  t = stream_task(L, s, "write");
  if (s == NULL) return closed_result(L, "EBADF");
  if (s->writer != NULL || s->wq.head != NULL)
    return queue_writer(L, s, t, 0); /* FIFO behind the others */
  return write_start(L, s, t, 1);
}

static int shutdown_start(lua_State *L, sp_stream *s, sp_task *t, int fast) {
  sreq *req;
  int r;
  if (s->shut) {
    write_release(s, t);
    lua_pushboolean(L, 1);
    return fast ? sp_await_fast(L, t, pass_k, 1) : 1;
  }
  if (s->wpending) return wait_writer(L, s, t, W_PREV_SHUT);
  if (s->tls != NULL && sp_tls_shutdown(s)) /* close_notify goes first */
    return wait_writer(L, s, t, W_PREV_SHUT);
  if ((req = sreq_alloc(s)) == NULL) {
    write_release(s, t);
    return sp_io_fail(L, UV_ENOMEM);
  }
  r = uv_shutdown(&req->s, s->h, shutdown_cb);
  if (r < 0) {
    free(req);
    write_release(s, t);
    return sp_io_fail(L, r);
  }
  s->shut = 1;
  s->spending = 1;
  return wait_writer(L, s, t, W_SHUT);
}

static int s_shutdown(lua_State *L) {
  sp_sbox *box = check_box(L);
  sp_stream *s = box->s;
  sp_task *t = stream_task(L, s, "shutdown");
  lua_settop(L, 1);
  if (s == NULL) return closed_result(L, "EBADF");
  if (s->writer != NULL || s->wq.head != NULL)
    return queue_writer(L, s, t, 1); /* after the writes before it */
  return shutdown_start(L, s, t, 1);
}

/* ---- close and the other methods ------------------------------------- */

static int s_close(lua_State *L) {
  sp_sbox *box = check_box(L);
  sp_stream_close(box->s);
  lua_pushboolean(L, 1);
  return 1;
}

/* Closes with a TCP reset (SO_LINGER 0) instead of an orderly close: the
** peer's reads fail with ECONNRESET.  For tests and for dropping abusive
** peers; other streams close normally. */
static int s_close_reset(lua_State *L) {
  sp_sbox *box = check_box(L);
  if (box->s != NULL) {
    box->s->reset = 1;
    sp_stream_close(box->s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int s_gc(lua_State *L) {
  sp_sbox *box = (sp_sbox *)sp_testclass(L, 1, SP_STREAM_MT);
  if (box != NULL && box->s != NULL) {
    box->s->box = NULL;
    sp_stream_close(box->s);
    box->s = NULL;
  }
  return 0;
}

static int addr_common(lua_State *L, int peer) {
  sp_sbox *box = check_box(L);
  sp_stream *s = box->s;
  if (s == NULL) return closed_result(L, "EBADF");
  if (s->h->type == UV_TCP) {
    struct sockaddr_storage ss;
    int len = (int)sizeof ss, r;
    r = peer
            ? uv_tcp_getpeername((uv_tcp_t *)s->h, (struct sockaddr *)&ss, &len)
            : uv_tcp_getsockname((uv_tcp_t *)s->h, (struct sockaddr *)&ss,
                                 &len);
    if (r < 0) return sp_io_fail(L, r);
    if (sp_push_sockaddr(L, (struct sockaddr *)&ss) == 0)
      return sp_io_fail(L, UV_EAFNOSUPPORT);
    return 2;
  }
  if (s->h->type == UV_NAMED_PIPE && strcmp(s->kind, "unix") == 0) {
    char buf[1024];
    size_t len = sizeof buf;
    int r = peer ? uv_pipe_getpeername((uv_pipe_t *)s->h, buf, &len)
                 : uv_pipe_getsockname((uv_pipe_t *)s->h, buf, &len);
    if (r < 0) return sp_io_fail(L, r);
    lua_pushlstring(L, buf, len);
    return 1;
  }
  return sp_io_fail(L, UV_ENOTSOCK);
}

static int s_peer(lua_State *L) { return addr_common(L, 1); }
static int s_local_addr(lua_State *L) { return addr_common(L, 0); }

static int s_set_nodelay(lua_State *L) {
  sp_sbox *box = check_box(L);
  int on = lua_toboolean(L, 2), r;
  luaL_checkany(L, 2);
  if (box->s == NULL) return closed_result(L, "EBADF");
  if (box->s->h->type != UV_TCP) return sp_io_fail(L, UV_ENOTSUP);
  r = uv_tcp_nodelay((uv_tcp_t *)box->s->h, on);
  if (r < 0) return sp_io_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_set_keepalive(lua_State *L) {
  sp_sbox *box = check_box(L);
  int on = lua_toboolean(L, 2), r;
  lua_Integer delay = 60;
  luaL_checkany(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    lua_Number d = luaL_checknumber(L, 3);
    luaL_argcheck(L, d >= 1 && d <= 1e6, 3,
                  "delay must be from 1 to 1e6 seconds");
    delay = (lua_Integer)d;
  }
  if (box->s == NULL) return closed_result(L, "EBADF");
  if (box->s->h->type != UV_TCP) return sp_io_fail(L, UV_ENOTSUP);
  r = uv_tcp_keepalive((uv_tcp_t *)box->s->h, on, (unsigned)delay);
  if (r < 0) return sp_io_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_tostring(lua_State *L) {
  sp_sbox *box = check_box(L);
  if (box->s == NULL)
    lua_pushliteral(L, "spindle.stream (closed)");
  else
    lua_pushfstring(L, "spindle.stream (%s%s: %p)",
                    box->s->tls ? "tls over " : "", box->s->kind,
                    (void *)box->s);
  return 1;
}

/* Creates the stream metatable.  [-0, +0, m] */
int sp_stream_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"read", s_read},
                                     {"read_some", s_read_some},
                                     {"read_line", s_read_line},
                                     {"read_until", s_read_until},
                                     {"read_all", s_read_all},
                                     {"lines", s_lines},
                                     {"write", s_write},
                                     {"shutdown", s_shutdown},
                                     {"close", s_close},
                                     {"close_reset", s_close_reset},
                                     {"peer", s_peer},
                                     {"local_addr", s_local_addr},
                                     {"set_nodelay", s_set_nodelay},
                                     {"set_keepalive", s_set_keepalive},
                                     {"handshake", sp_tls_m_handshake},
                                     {"tls_info", sp_tls_m_info},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", s_gc},
                                  {"__close", s_close},
                                  {"__tostring", s_tostring},
                                  {NULL, NULL}};
  static const luaL_Reg one[] = {{"f", s_close}, {NULL, NULL}};
  sp_newclass(L, SP_STREAM_MT, NULL, meta); /* [mt] */
  /* the methods get upvalue 2 = the metatable (see check_box) */
  lua_newtable(L); /* methods */
  lua_newtable(L); /* fetch the module box: upvalue 1 of sp_setfuncs */
  sp_setfuncs(L, one);
  lua_getfield(L, -1, "f");
  lua_getupvalue(L, -1, 1);
  lua_replace(L, -3); /* [mt, methods, box, f] */
  lua_pop(L, 1);
  lua_pushvalue(L, -3); /* the metatable */
  luaL_setfuncs(L, methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 0;
}

/* spindle.dump(): "tcp read 127.0.0.1:4000", "unix write /tmp/s",
** "pipe read".  Runs no Lua. */
static void describe_stream(sp_task *t, char *buf, size_t size) {
  sp_stream *s = (sp_stream *)t->w.obj;
  const char *op = t->wait->name;
  const char *phase = s->tls != NULL ? sp_tls_phase(s) : NULL;
  char addr[128];
  addr[0] = '\0';
  if (s->h->type == UV_TCP) {
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getpeername((uv_tcp_t *)s->h, (struct sockaddr *)&ss, &len) == 0)
      sp_format_sockaddr((struct sockaddr *)&ss, addr, sizeof addr);
  } else if (strcmp(s->kind, "unix") == 0) {
    size_t len = sizeof addr - 1;
    if (uv_pipe_getpeername((uv_pipe_t *)s->h, addr, &len) == 0)
      addr[len] = '\0';
    else
      addr[0] = '\0';
  }
  snprintf(buf, size, "%s %s%s%s", s->tls != NULL ? "tls" : s->kind,
           phase != NULL ? phase : op, addr[0] ? " " : "", addr);
}

/* spindle.net._buffers() -> {buffered, requests, cached, cached_requests}
** of the running runtime: bytes of the read buffers its streams hold,
** write and shutdown requests they hold, and what the cache keeps (bytes
** of buffers, requests).  For specs (spec/20-net-buffers_spec.lua). */
static int l_buffers(lua_State *L) {
  sp_runtime *rt = sp_io_runtime(L, "spindle.net._buffers");
  sbuf_cache *c = (sbuf_cache *)rt->sbufs;
  lua_Integer buffered = 0, reqs = 0, cached = 0, creqs = 0;
  sp_owned *o;
  int k;
  for (o = rt->owned.next; o != &rt->owned; o = o->next) {
    sp_stream *s;
    if (o->close != stream_node_close) continue;
    s = sp_container_of(o, sp_stream, node.own);
    if (s->rbuf != NULL) buffered += (lua_Integer)s->rcap;
    if (s->tls != NULL)
      reqs += sp_tls_flying(s) + s->spending;
    else
      reqs += s->wpending + s->spending;
  }
  if (c != NULL) {
    for (k = 0; k < SBUF_NCLASS; k++)
      cached += (lua_Integer)c->n[k] * (lua_Integer)SBUF_SIZE(k);
    creqs = c->nreqs;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, buffered);
  lua_setfield(L, -2, "buffered");
  lua_pushinteger(L, reqs);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, cached);
  lua_setfield(L, -2, "cached");
  lua_pushinteger(L, creqs);
  lua_setfield(L, -2, "cached_requests");
  return 1;
}

/* Creates the stream and listener metatables and sets spindle.net in the
** module table at -1.  Called from luaopen_spindle.  [-0, +0, m] */
int sp_net_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"_buffers", l_buffers}, {NULL, NULL}};
  sp_io_ignore_sigpipe();
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "net");
  sp_stream_open(L);
  sp_tcp_open(L);
  sp_pipe_open(L);
  sp_dns_open(L);
  sp_udp_open(L);
  sp_socket_open(L);
  sp_setfuncs(L, fns);
  lua_pop(L, 1);
  sp_tls_open(L); /* spindle.tls */
  return 0;
}
