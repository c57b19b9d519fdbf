/*
** http_client.c -- the HTTP client of spindle.http (docs/http.md):
** libcurl's multi interface driven by the runtime's loop.  The Lua
** module (lua/spindle/http.lua) calls spindle._http_request.
**
** Objects.
**   hclient  one per runtime, made by the first request, owned by the
**            runtime (rt->http): the CURLM, one uv_timer_t for
**            CURLMOPT_TIMERFUNCTION, a bounded pool of easy handles (reset
**            and reused; connections are reused through the multi's
**            connection cache), the list of transfers holding an easy
**            handle and the list of poll handles.
**   hsock    one uv_poll_t per curl socket (CURLMOPT_SOCKETFUNCTION),
**            owned by the runtime; closed on CURL_POLL_REMOVE, before curl
**            closes the descriptor.
**   hxfer    one request: a full userdata, internal (the stack of the
**            requesting task holds it; a streamed response reaches it
**            through a weak-keyed table).  libcurl points at it
**            (CURLOPT_PRIVATE, the callbacks' data) only while it holds an
**            easy handle, and every path that ends that -- completion,
**            res:close(), an interrupted await, __gc, the runtime closing
**            -- goes through xfer_detach, which removes the handle from
**            the multi first: no libcurl callback can reach it afterwards.
**
** libcurl callbacks run no Lua: they fill buffers, set flags and wake the
** waiting task (sp_wake).  Poll and timer callbacks call
** curl_multi_socket_action and then collect finished transfers
** (curl_multi_info_read).  curl is only ever entered from the loop's
** callbacks or from a task (add, pause, remove), never from inside itself.
**
** A transfer's life:
**   made      an easy handle from the pool, options set (x->c != NULL)
**   running   in the multi (in_multi); a body function's chunks are
**             fetched by the task when curl asks (want_chunk; the upload
**             is paused with CURL_READFUNC_PAUSE meanwhile)
**   head      the final response head is in (head_done): a streamed
**             request returns here; its body is buffered up to x->limit,
**             beyond that CURL_WRITEFUNC_PAUSE until a reader drains it
**   done      curl finished it (x->done, x->result); the easy handle is
**             back in the pool
**   closed    ended early: res:close(), interrupted await, __gc, runtime
**             closed (x->closed); its easy handle is back in the pool
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "io.h"

static const char stats_key = 0; /* registry: this state's hstats */

/* Live objects of this Lua state, for spindle._http_stats (specs check
** that every spec gives back what it took). */
typedef struct hstats {
  lua_Integer clients, easy, socks, xfers;
  lua_Integer buffered; /* bytes of body buffers of live transfers */
} hstats;

#ifndef SPINDLE_WITH_CURL

static int l_request(lua_State *L) {
  return luaL_error(L, "spindle.http: built without libcurl");
}

static int l_stats(lua_State *L) {
  lua_createtable(L, 0, 4);
  return 1;
}

int sp_http_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"_http_request", l_request},
                                 {"_http_get", l_request},
                                 {"_http_post", l_request},
                                 {"_http_stats", l_stats},
                                 {NULL, NULL}};
  (void)stats_key;
  sp_setfuncs(L, fns);
  return 0;
}

#else

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>

/* libcurl is loaded on the first request of the process (dlopen), not
** with the module: it and the libraries it pulls in (gnutls, krb5,
** p11-kit ...) cost about 4 MiB of every process's resident memory, used
** or not (bench/http/README.md).  Its entry points are resolved once per
** process into curl_fns, under pthread_once -- with preempt.c's signal
** state, the only file-scope state that changes (docs/design.md); after
** the load it is read only.  The names below stand for those pointers, so
** the rest of the file calls curl_easy_setopt(...) as usual. */
#define CURL_FNS(X)                                                            \
  X(CURLcode, global_init, (long))                                             \
  X(void, global_cleanup, (void))                                              \
  X(curl_version_info_data *, version_info, (CURLversion))                     \
  X(CURL *, easy_init, (void))                                                 \
  X(CURLcode, easy_setopt, (CURL *, CURLoption, ...))                          \
  X(CURLcode, easy_getinfo, (CURL *, CURLINFO, ...))                           \
  X(void, easy_cleanup, (CURL *))                                              \
  X(void, easy_reset, (CURL *))                                                \
  X(CURLcode, easy_pause, (CURL *, int))                                       \
  X(const char *, easy_strerror, (CURLcode))                                   \
  X(CURLM *, multi_init, (void))                                               \
  X(CURLMcode, multi_setopt, (CURLM *, CURLMoption, ...))                      \
  X(CURLMcode, multi_assign, (CURLM *, curl_socket_t, void *))                 \
  X(CURLMcode, multi_socket_action, (CURLM *, curl_socket_t, int, int *))      \
  X(CURLMcode, multi_cleanup, (CURLM *))                                       \
  X(const char *, multi_strerror, (CURLMcode))                                 \
  X(CURLMcode, multi_remove_handle, (CURLM *, CURL *))                         \
  X(CURLMcode, multi_add_handle, (CURLM *, CURL *))                            \
  X(CURLMsg *, multi_info_read, (CURLM *, int *))                              \
  X(struct curl_slist *, slist_append, (struct curl_slist *, const char *))    \
  X(void, slist_free_all, (struct curl_slist *))

typedef struct curl_api {
#define X(ret, name, args) ret(*name) args;
  CURL_FNS(X)
#undef X
  char error[200]; /* why the load failed; "" when it worked */
} curl_api;

static curl_api curl_fns;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_load(void) {
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  const char *err;
  if (h == NULL) h = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    err = dlerror();
    snprintf(curl_fns.error, sizeof curl_fns.error, "%s",
             err ? err : "libcurl.so.4 not found");
    return;
  }
#define X(ret, name, args)                                                     \
  if ((*(void **)&curl_fns.name = dlsym(h, "curl_" #name)) == NULL) {          \
    snprintf(curl_fns.error, sizeof curl_fns.error,                            \
             "libcurl has no curl_" #name);                                    \
    return;                                                                    \
  }
  CURL_FNS(X)
#undef X
}

#undef curl_global_init
#define curl_global_init (curl_fns.global_init)
#undef curl_global_cleanup
#define curl_global_cleanup (curl_fns.global_cleanup)
#undef curl_version_info
#define curl_version_info (curl_fns.version_info)
#undef curl_easy_init
#define curl_easy_init (curl_fns.easy_init)
#undef curl_easy_setopt
#define curl_easy_setopt (curl_fns.easy_setopt)
#undef curl_easy_getinfo
#define curl_easy_getinfo (curl_fns.easy_getinfo)
#undef curl_easy_cleanup
#define curl_easy_cleanup (curl_fns.easy_cleanup)
#undef curl_easy_reset
#define curl_easy_reset (curl_fns.easy_reset)
#undef curl_easy_pause
#define curl_easy_pause (curl_fns.easy_pause)
#undef curl_easy_strerror
#define curl_easy_strerror (curl_fns.easy_strerror)
#undef curl_multi_init
#define curl_multi_init (curl_fns.multi_init)
#undef curl_multi_setopt
#define curl_multi_setopt (curl_fns.multi_setopt)
#undef curl_multi_assign
#define curl_multi_assign (curl_fns.multi_assign)
#undef curl_multi_socket_action
#define curl_multi_socket_action (curl_fns.multi_socket_action)
#undef curl_multi_cleanup
#define curl_multi_cleanup (curl_fns.multi_cleanup)
#undef curl_multi_strerror
#define curl_multi_strerror (curl_fns.multi_strerror)
#undef curl_multi_remove_handle
#define curl_multi_remove_handle (curl_fns.multi_remove_handle)
#undef curl_multi_add_handle
#define curl_multi_add_handle (curl_fns.multi_add_handle)
#undef curl_multi_info_read
#define curl_multi_info_read (curl_fns.multi_info_read)
#undef curl_slist_append
#define curl_slist_append (curl_fns.slist_append)
#undef curl_slist_free_all
#define curl_slist_free_all (curl_fns.slist_free_all)

#define XFER_MT "spindle.http.transfer"
#define RESPONSE_MT "spindle.http.client_response"

static const char xfers_key = 0; /* registry: weak-keyed {[res] = xfer} */

enum {
  HTTP_POOL = 64,                     /* easy handles kept per runtime */
  HTTP_MAX_HEAD = 256 * 1024,         /* bytes of one response head */
  HTTP_STREAM_LIMIT = SP_STREAM_CHUNK /* body buffered before a read */
};
#define HTTP_MAX_BODY ((lua_Integer)64 * 1024 * 1024)

/* What a waiting task waits for. */
enum { W_REQUEST, W_READ };
/* What a reader wants. */
enum { R_SOME, R_ALL, R_LINE };

/* Stack slots of a request (l_request and its continuations). */
enum {
  S_OPTS = 1,
  S_NAME,
  S_URLARG,
  S_BODYARG, /* the arguments */
  S_URL,
  S_METHOD,
  S_BODY,
  S_HEADERS,
  S_TLS, /* the options read */
  S_XFER /* the transfer (to-be-closed) */
};

typedef struct hclient hclient;
typedef struct hsock hsock;
typedef struct hxfer hxfer;

struct hclient {
  sp_ionode node;
  CURLM *multi;
  uv_timer_t timer;
  hstats *stats;
  CURL *pool[HTTP_POOL];
  int npool;
  hxfer *xfers; /* holding an easy handle (doubly linked) */
  hsock *socks; /* poll handles not yet closing */
  int closing;
  int h2c_fresh;     /* libcurl < 8.0 cannot reuse a prior-knowledge HTTP/2
                 ** connection (curl/curl#10634): one connection each */
  int no_proxy;      /* no proxy variable in the environment (seen when the
                 ** client was made): libcurl need not look each time */
  int running, peak; /* transfers in the multi now, and at most */
};

struct hsock {
  sp_ionode node;
  uv_poll_t poll;
  hclient *c; /* NULL once closing */
  hsock *next, *prev;
  curl_socket_t fd;
};

struct hxfer {
  hclient *c; /* set while it holds an easy handle */
  hstats *stats;
  CURL *easy;
  hxfer *next, *prev; /* in c->xfers */
  sp_runtime *rt;
  sp_task *task; /* the waiting task, or NULL */
  int wkind;     /* W_* */
  int rkind;     /* R_* of the waiting reader */
  size_t rmax;   /* its max */
  struct curl_slist *hdrs;
  /* upload from a function: the current chunk (a string anchored in user
  ** value 2) */
  const char *chunk;
  size_t clen, coff;
  int nchunks;
  /* response head: "name\0value\0" pairs of the current response */
  char *hbuf;
  size_t hlen, hcap;
  int status;
  char version[4];
  char *url;           /* effective URL, malloc()ed */
  lua_Integer clength; /* content-length of the head, -1 if none */
  /* body: bytes [boff, boff + blen) of buf */
  char *buf;
  size_t boff, blen, bcap;
  size_t limit; /* streamed: what is buffered before pausing */
  size_t max_body;
  long follow;
  CURLcode result;
  long oserr;
  unsigned in_multi : 1, body_fn : 1, upload_eof : 1, want_chunk : 1,
      send_paused : 1, recv_paused : 1, stream : 1, nobody : 1, head_done : 1,
      saw_location : 1, done : 1, closed : 1, handed : 1, counted : 1,
      too_large : 1, head_large : 1, nomem : 1;
  unsigned dirty : 1; /* options beyond the per-request set: reset it */
  char errbuf[CURL_ERROR_SIZE];
  /* method and URL for spindle.dump(): strings anchored in user values 3
  ** and 4 */
  const char *method, *url0;
};

/* ---- small helpers ------------------------------------------------------ */

static void xfer_wake(hxfer *x) {
  sp_task *t = x->task;
  if (t == NULL) return;
  x->task = NULL;
  if (x->counted) {
    x->rt->inflight--;
    x->counted = 0;
  }
  if (t->state == SP_T_WAITING) sp_wake(t, SP_WAKE_OK);
}

static void easy_defaults(hclient *c, CURL *e);

/* Back to the pool: a handle that used only the per-request options
** (easy_request) keeps its settings; any other is reset.  Pointers into
** the transfer are cleared either way. */
static void client_release_easy(hclient *c, CURL *e, int dirty) {
  if (c->npool < HTTP_POOL && !c->closing) {
    if (dirty) {
      curl_easy_reset(e);
      easy_defaults(c, e);
    } else {
      curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    }
    c->pool[c->npool++] = e;
  } else {
    curl_easy_cleanup(e);
    c->stats->easy--;
  }
}

/* Gives the easy handle back: out of the multi first (libcurl calls
** nothing of x afterwards), then reset into the pool. */
static void xfer_detach(hxfer *x) {
  hclient *c = x->c;
  if (c == NULL) return;
  if (x->in_multi) {
    curl_multi_remove_handle(c->multi, x->easy);
    x->in_multi = 0;
    c->running--;
  }
  if (x->prev != NULL)
    x->prev->next = x->next;
  else
    c->xfers = x->next;
  if (x->next != NULL) x->next->prev = x->prev;
  x->next = x->prev = NULL;
  client_release_easy(c, x->easy, x->dirty);
  x->easy = NULL;
  x->c = NULL;
  curl_slist_free_all(x->hdrs); /* after the reset: curl used it */
  x->hdrs = NULL;
  c->stats->xfers--;
}

static void xfer_free_bufs(hxfer *x) {
  if (x->stats != NULL) x->stats->buffered -= (lua_Integer)x->bcap;
  free(x->buf);
  free(x->hbuf);
  free(x->url);
  x->buf = x->hbuf = x->url = NULL;
  x->blen = x->boff = x->bcap = x->hlen = x->hcap = 0;
}

/* Ends the transfer early (idempotent); a waiting task is woken and finds
** it closed. */
static void xfer_close(hxfer *x) {
  xfer_detach(x);
  if (!x->closed) {
    x->closed = 1;
    xfer_free_bufs(x);
  }
  xfer_wake(x);
}

/* A failure found outside libcurl's own completion (a pause that failed).
*/
static void xfer_fail(hxfer *x, CURLcode rc) {
  if (x->done || x->closed) return;
  x->result = rc;
  x->done = 1;
  xfer_detach(x);
  xfer_wake(x);
}

static void xfer_unpause(hxfer *x, int send) {
  CURLcode rc;
  if (send)
    x->send_paused = 0;
  else
    x->recv_paused = 0;
  if (x->easy == NULL) return;
  /* may deliver kept data at once (write_cb), which may pause again */
  rc = curl_easy_pause(x->easy, (x->send_paused ? CURLPAUSE_SEND : 0) |
                                    (x->recv_paused ? CURLPAUSE_RECV : 0));
  if (rc != CURLE_OK) xfer_fail(x, rc);
}

/* Makes room for n more bytes after the buffered ones.  0 or -1. */
static int buf_reserve(hxfer *x, size_t n) {
  size_t cap;
  char *p;
  if (x->boff + x->blen + n <= x->bcap) return 0;
  if (x->boff > 0) { /* move the unread bytes to the front */
    memmove(x->buf, x->buf + x->boff, x->blen);
    x->boff = 0;
    if (x->blen + n <= x->bcap) return 0;
  }
  cap = x->bcap < 16384 ? 16384 : x->bcap;
  while (cap < x->blen + n) cap *= 2;
  p = realloc(x->buf, cap);
  if (p == NULL) return -1;
  x->stats->buffered += (lua_Integer)(cap - x->bcap);
  x->buf = p;
  x->bcap = cap;
  return 0;
}

/* ---- libcurl callbacks (no Lua) ------------------------------------------ */

/* Appends to the head buffer.  0 or -1. */
static int head_add(hxfer *x, const char *p, size_t n) {
  if (x->hlen + n > x->hcap) {
    size_t cap = x->hcap ? x->hcap : 1024;
    char *q;
    while (cap < x->hlen + n) cap *= 2;
    if ((q = realloc(x->hbuf, cap)) == NULL) return -1;
    x->hbuf = q;
    x->hcap = cap;
  }
  memcpy(x->hbuf + x->hlen, p, n);
  x->hlen += n;
  return 0;
}

static int is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* "HTTP/1.1 200 OK": version and status. */
static void head_status(hxfer *x, const char *p, size_t n) {
  size_t i = 5, v = 0;
  x->hlen = 0;
  x->saw_location = 0;
  x->clength = -1;
  x->status = 0;
  while (i < n && !is_ows(p[i]) && v < sizeof x->version - 1)
    x->version[v++] = p[i++];
  x->version[v] = '\0';
  if (strcmp(x->version, "2.0") == 0) x->version[1] = '\0';
  while (i < n && is_ows(p[i])) i++;
  if (i + 3 <= n && p[i] >= '0' && p[i] <= '9' && p[i + 1] >= '0' &&
      p[i + 1] <= '9' && p[i + 2] >= '0' && p[i + 2] <= '9')
    x->status = (p[i] - '0') * 100 + (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
}

/* The final head is complete. */
static int head_complete(hxfer *x) {
  char *u = NULL;
  x->head_done = 1;
  /* without redirects the URL is the request's (x->url0) */
  if (x->follow > 0 &&
      curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u) == CURLE_OK &&
      u != NULL) {
    free(x->url);
    x->url = strdup(u);
    if (x->url == NULL) {
      x->nomem = 1;
      return -1;
    }
  }
  if (!x->stream && !x->nobody && x->clength >= 0) {
    if ((lua_Unsigned)x->clength > x->max_body) {
      x->too_large = 1;
      return -1;
    }
    if (x->clength > 0 && buf_reserve(x, (size_t)x->clength) != 0) {
      x->nomem = 1;
      return -1;
    }
  }
  if (x->task != NULL && x->wkind == W_REQUEST && x->stream &&
      (!x->body_fn || x->upload_eof))
    xfer_wake(x);
  return 0;
}

/* Whether the header line p (len bytes) is "<name>:" (any case). */
static int head_is(const char *p, size_t len, const char *name, size_t n) {
  return len > n && p[n] == ':' && strncasecmp(p, name, n) == 0;
}

/* Each header line of the current response is kept as it came, without
** its CRLF, each followed by "\n" (push_headers splits them when the
** headers are first read); only what decides the transfer's course is
** looked at here. */
static size_t header_cb(char *p, size_t size, size_t n, void *ud) {
  hxfer *x = (hxfer *)ud;
  size_t len = size * n, end = len;
  if (x->head_done) return len; /* trailers */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    head_status(x, p, len);
    return len;
  }
  while (end > 0 && (p[end - 1] == '\n' || p[end - 1] == '\r')) end--;
  if (end == 0) {                         /* the blank line: end of this head */
    if (x->status / 100 == 1) return len; /* 100 Continue and the like */
    if (x->follow > 0 && x->status / 100 == 3 && x->saw_location)
      return len; /* curl follows it (or fails: too many redirects) */
    return head_complete(x) == 0 ? len : 0;
  }
  if (x->follow > 0 && head_is(p, end, "location", 8)) {
    size_t i = 9;
    while (i < end && is_ows(p[i])) i++;
    if (i < end) x->saw_location = 1;
  } else if (head_is(p, end, "content-length", 14)) {
    lua_Integer cl = 0;
    size_t i = 15, j;
    while (i < end && is_ows(p[i])) i++;
    for (j = i; j < end && p[j] >= '0' && p[j] <= '9' && cl < (1LL << 50); j++)
      cl = cl * 10 + (p[j] - '0');
    x->clength = j > i ? cl : -1;
  }
  if (memchr(p, '\0', end) != NULL) return len; /* no place in a header */
  if (head_add(x, p, end) || head_add(x, "\n", 1)) {
    x->nomem = 1;
    return 0;
  }
  if (x->hlen > HTTP_MAX_HEAD) {
    x->head_large = 1;
    return 0;
  }
  return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
  hxfer *x = (hxfer *)ud;
  size_t len = size * n;
  if (!x->head_done && head_complete(x) != 0) return 0;
  if (x->stream) {
    /* Full: wait for a reader.  A chunk is taken while there is room for
    ** one byte, so the buffer can pass the limit (by less than a chunk,
    ** CURL_MAX_WRITE_SIZE): a reader whose max is the limit learns that
    ** there is more. */
    if (x->blen >= x->limit) {
      x->recv_paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
  } else if (x->blen + len > x->max_body) {
    x->too_large = 1;
    return 0;
  }
  if (buf_reserve(x, len) != 0) {
    x->nomem = 1;
    return 0;
  }
  memcpy(x->buf + x->boff + x->blen, p, len);
  x->blen += len;
  if (x->task != NULL && x->wkind == W_READ) xfer_wake(x);
  return len;
}

static size_t read_cb(char *p, size_t size, size_t n, void *ud) {
  hxfer *x = (hxfer *)ud;
  size_t len = size * n, k;
  if (x->coff < x->clen) {
    k = x->clen - x->coff < len ? x->clen - x->coff : len;
    memcpy(p, x->chunk + x->coff, k);
    x->coff += k;
    return k;
  }
  if (x->upload_eof) return 0;
  x->want_chunk = 1; /* the task fetches the next one */
  x->send_paused = 1;
  if (x->task != NULL && x->wkind == W_REQUEST) xfer_wake(x);
  return CURL_READFUNC_PAUSE;
}

/* curl wants to send the body again (a reused connection had died, a 307):
** possible while the first chunk is still all there is. */
static int seek_cb(void *ud, curl_off_t offset, int origin) {
  hxfer *x = (hxfer *)ud;
  if (offset == 0 && origin == SEEK_SET && x->nchunks <= 1 &&
      x->chunk != NULL) {
    x->coff = 0;
    return CURL_SEEKFUNC_OK;
  }
  return CURL_SEEKFUNC_CANTSEEK;
}

static void client_check_done(hclient *c) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    hxfer *x;
    char *v = NULL, *priv = NULL;
    long ver = 0;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    if ((x = (hxfer *)priv) == NULL) continue;
    x->result = m->data.result;
    x->done = 1;
    if (x->result != CURLE_OK)
      curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &x->oserr);
    else {
      if (x->url == NULL && x->follow > 0 &&
          curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &v) == CURLE_OK &&
          v != NULL && (x->url = strdup(v)) == NULL)
        x->nomem = 1;
      if (x->version[0] == '\0' &&
          curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver) == CURLE_OK)
        snprintf(x->version, sizeof x->version, "%s",
                 ver == CURL_HTTP_VERSION_1_0   ? "1.0"
                 : ver == CURL_HTTP_VERSION_2_0 ? "2"
                 : ver == CURL_HTTP_VERSION_3   ? "3"
                                                : "1.1");
      x->head_done = 1;
    }
    xfer_detach(x); /* m is invalid from here on */
    xfer_wake(x);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  hsock *s = (hsock *)h->data;
  hclient *c = s->c;
  int flags = 0, running;
  if (c == NULL) return;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  /* s may be closed in there (CURL_POLL_REMOVE): not touched after */
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
  client_check_done(c);
}

static void sock_closed(uv_handle_t *h) {
  hsock *s = (hsock *)h->data;
  sp_io_untrack(&s->node);
  free(s);
}

/* Stops watching: unlinked from the client, the handle closed (its fd may
** be closed by curl right after). */
static void sock_close(hsock *s) {
  hclient *c = s->c;
  if (c == NULL) return;
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    c->socks = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  s->c = NULL;
  c->stats->socks--;
  uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* The runtime closes: curl must forget it too. */
static void sock_owned_close(sp_owned *o) {
  hsock *s = sp_container_of(o, hsock, node.own);
  if (s->c == NULL) return;
  curl_multi_assign(s->c->multi, s->fd, NULL);
  sock_close(s);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp) {
  hclient *c = (hclient *)ud;
  hsock *s = (hsock *)sockp;
  int events = 0;
  (void)e;
  if (c->closing) return 0;
  if (what == CURL_POLL_REMOVE) {
    if (s != NULL) sock_close(s);
    return 0;
  }
  if (s == NULL) {
    if ((s = calloc(1, sizeof *s)) == NULL) return -1;
    if (uv_poll_init_socket(c->node.rt->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    s->fd = fd;
    s->c = c;
    s->next = c->socks;
    if (c->socks != NULL) c->socks->prev = s;
    c->socks = s;
    c->stats->socks++;
    sp_io_track(&s->node, c->node.rt, sock_owned_close);
    curl_multi_assign(c->multi, fd, s);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, poll_cb);
  return 0;
}

static void timer_fire(uv_timer_t *h) {
  hclient *c = (hclient *)h->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  client_check_done(c);
}

static int timer_cb(CURLM *m, long ms, void *ud) {
  hclient *c = (hclient *)ud;
  (void)m;
  if (c->closing) return 0;
  if (ms < 0)
    uv_timer_stop(&c->timer);
  else {
    uv_update_time(c->timer.loop); /* the loop's time may be stale */
    uv_timer_start(&c->timer, timer_fire, (uint64_t)ms, 0);
  }
  return 0;
}

/* ---- the client of a runtime ----------------------------------------------- */

static void client_closed(uv_handle_t *h) {
  hclient *c = (hclient *)h->data;
  sp_io_untrack(&c->node);
  c->stats->clients--;
  free(c);
  curl_global_cleanup();
}

/* The runtime closes (its tasks have unwound): every transfer still
** holding a handle is detached (a streamed response kept in a variable
** reads "closed" afterwards), curl forgets the sockets, the multi goes. */
static void client_owned_close(sp_owned *o) {
  hclient *c = sp_container_of(o, hclient, node.own);
  int i;
  c->closing = 1;
  while (c->xfers != NULL) {
    hxfer *x = c->xfers;
    if (x->task != NULL) { /* cannot happen: tasks have unwound */
      x->task->wait = NULL;
      x->task = NULL;
    }
    if (x->counted) {
      x->rt->inflight--;
      x->counted = 0;
    }
    xfer_close(x);
  }
  while (c->socks != NULL) {
    curl_multi_assign(c->multi, c->socks->fd, NULL);
    sock_close(c->socks);
  }
  curl_multi_cleanup(c->multi); /* closes the cached connections */
  c->multi = NULL;
  for (i = 0; i < c->npool; i++) {
    curl_easy_cleanup(c->pool[i]);
    c->stats->easy--;
  }
  c->npool = 0;
  c->node.rt->http = NULL;
  uv_close((uv_handle_t *)&c->timer, client_closed);
}

/* This state's counters.  [-0, +0, -] */
static hstats *stats_get(lua_State *L) {
  hstats *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &stats_key);
  st = (hstats *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return st;
}

/* The runtime's client, made on first use.  [-0, +0, e] */
static hclient *client_get(lua_State *L, sp_runtime *rt) {
  hclient *c = (hclient *)rt->http;
  if (c != NULL) return c;
  pthread_once(&curl_once, curl_load);
  if (curl_fns.error[0] != '\0')
    luaL_error(L, "spindle.http: cannot load libcurl (%s)", curl_fns.error);
  if ((c = calloc(1, sizeof *c)) == NULL) luaL_error(L, "not enough memory");
  c->stats = stats_get(L);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    free(c);
    luaL_error(L, "spindle.http: cannot initialise libcurl");
  }
  if ((c->multi = curl_multi_init()) == NULL) {
    free(c);
    curl_global_cleanup();
    luaL_error(L, "not enough memory");
  }
  if (uv_timer_init(rt->loop, &c->timer) != 0) {
    curl_multi_cleanup(c->multi);
    free(c);
    curl_global_cleanup();
    luaL_error(L, "spindle.http: cannot create a timer");
  }
  c->timer.data = c;
  c->h2c_fresh = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  {
    /* the variables libcurl reads for http and https (not HTTP_PROXY) */
    static const char *const vars[] = {"http_proxy",  "https_proxy",
                                       "HTTPS_PROXY", "all_proxy",
                                       "ALL_PROXY",   NULL};
    int i;
    c->no_proxy = 1;
    for (i = 0; vars[i] != NULL; i++)
      if (getenv(vars[i]) != NULL) c->no_proxy = 0;
  }
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 16L);
  sp_io_track(&c->node, rt, client_owned_close);
  sp_io_ignore_sigpipe();
  c->stats->clients++;
  rt->http = c;
  return c;
}

/* ---- the transfer object ------------------------------------------------- */

static int xfer_gc(lua_State *L) {
  hxfer *x = (hxfer *)sp_testclass(L, 1, XFER_MT);
  if (x != NULL) {
    xfer_close(x);
    xfer_free_bufs(x);
  }
  return 0;
}

/* The to-be-closed slot of a request: an error, an interrupted wait or a
** buffered response ends the transfer; a streamed one is handed on. */
static int xfer_tbc(lua_State *L) {
  hxfer *x = (hxfer *)sp_testclass(L, 1, XFER_MT);
  if (x != NULL && !x->handed) xfer_close(x);
  return 0;
}

static void xfer_undo(sp_task *t) {
  hxfer *x = (hxfer *)t->w.obj;
  if (x->task == t) {
    x->task = NULL;
    if (x->counted) {
      x->rt->inflight--;
      x->counted = 0;
    }
  }
  xfer_close(x); /* removed from the multi at once */
}

static void describe_xfer(sp_task *t, char *buf, size_t size) {
  hxfer *x = (hxfer *)t->w.obj;
  snprintf(buf, size, "http %s%s %s", x->wkind == W_READ ? "read " : "",
           x->method, x->url0);
}

static const sp_waitops request_wait = {"http", xfer_undo, describe_xfer};
static const sp_waitops body_wait = {"http read", xfer_undo, describe_xfer};

/* Waits for the transfer; k resumes.  A waiting task holds the virtual
** clock still (the transfer completes in real time).  [-0, +0, y] */
static int xfer_wait(lua_State *L, hxfer *x, sp_task *t, int kind,
                     lua_KFunction k) {
  x->task = t;
  x->wkind = kind;
  if (!x->counted) {
    x->rt->inflight++;
    x->counted = 1;
  }
  return sp_await_block(L, t, kind == W_READ ? &body_wait : &request_wait, x, k,
                        (lua_KContext)t);
}

/* ---- results ------------------------------------------------------------ */

/* nil, message, code of a failed transfer.  [-0, +3, m] */
static int push_error(lua_State *L, hxfer *x) {
  const char *msg = x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result);
  int uverr = x->oserr > 0 ? uv_translate_sys_error((int)x->oserr) : 0;
  if (x->too_large) return sp_io_fail_msg(L, "body too large", "EMSGSIZE");
  if (x->head_large)
    return sp_io_fail_msg(L, "response head too large", "EMSGSIZE");
  if (x->nomem || x->result == CURLE_OUT_OF_MEMORY)
    return sp_io_fail_msg(L, "not enough memory", "ENOMEM");
  switch (x->result) {
    case CURLE_OPERATION_TIMEDOUT: return sp_io_fail(L, UV_ETIMEDOUT);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return sp_io_fail_msg(L, msg, "EAI_NONAME");
    case CURLE_COULDNT_CONNECT:
      return uverr < 0 ? sp_io_fail(L, uverr)
                       : sp_io_fail_msg(L, msg, "ECONNREFUSED");
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      if (uverr < 0) return sp_io_fail_msg(L, msg, uv_err_name(uverr));
      return sp_io_fail_msg(L, msg, "EHTTP");
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED: return sp_io_fail_msg(L, msg, "ETLS");
    default: return sp_io_fail_msg(L, msg, "EHTTP");
  }
}

/* Pushes headers and header_list from a head: the header lines as they
** came, each ended by "\n".  Names are lower-cased, values trimmed; a
** line that starts with a space or tab continues the last value (obs-fold,
** joined with one space); a line without a colon is not a header.
** [-0, +2, m] */
static void push_headers(lua_State *L, const char *p, size_t len) {
  const char *end = p + len;
  luaL_Buffer b;
  int n = 0;
  lua_newtable(L); /* headers */
  lua_newtable(L); /* header_list */
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
    const char *next;
    size_t i, nlen;
    if (eol == NULL) eol = end;
    next = eol + 1;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (colon == NULL || colon == p) {
      p = next;
      continue;
    }
    nlen = (size_t)(colon - p);
    /* the value, with its continuation lines */
    luaL_buffinit(L, &b);
    for (v = colon + 1;;) {
      while (v < eol && is_ows(*v)) v++;
      ve = eol;
      while (ve > v && is_ows(ve[-1])) ve--;
      if (ve > v && luaL_bufflen(&b) > 0) luaL_addchar(&b, ' ');
      luaL_addlstring(&b, v, (size_t)(ve - v));
      if (next >= end || !is_ows(*next)) break;
      v = next; /* obs-fold */
      eol = memchr(v, '\n', (size_t)(end - v));
      if (eol == NULL) eol = end;
      next = eol + 1;
    }
    luaL_pushresult(&b); /* [headers, list, value] */
    {
      char lower[64], *name = nlen <= sizeof lower ? lower : NULL;
      if (name == NULL) name = lua_newuserdatauv(L, nlen, 0);
      for (i = 0; i < nlen; i++)
        name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
      lua_pushlstring(L, name, nlen);
      if (name != lower) lua_remove(L, -2);
    } /* [headers, list, value, name] */
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -4, ++n); /* list[n] = {name, value} */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -5) == LUA_TSTRING) { /* repeated: join */
      lua_pushliteral(L, ", ");
      lua_pushvalue(L, -4);
      lua_concat(L, 3);
      lua_replace(L, -3);
    } else
      lua_pop(L, 1);
    lua_insert(L, -2); /* [headers, list, name, value] */
    lua_rawset(L, -4);
    p = next;
  }
}

/* Pushes the response table: status, version, url and (buffered) body.
** headers and header_list are made from the head when first read
** (res_index); the head waits in user value 5 of the transfer (streamed)
** or in the xfers table (buffered).  [-0, +1, m] */
static void push_response(lua_State *L, hxfer *x, int xidx) {
  xidx = lua_absindex(L, xidx);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, x->status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, x->version[0] ? x->version : "1.1");
  lua_setfield(L, -2, "version");
  lua_pushstring(L, x->url != NULL ? x->url : x->url0);
  lua_setfield(L, -2, "url");
  if (!x->stream) {
    lua_pushlstring(L, x->buf != NULL ? x->buf + x->boff : "", x->blen);
    lua_setfield(L, -2, "body");
  }
  luaL_setmetatable(L, RESPONSE_MT);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key);
  lua_pushvalue(L, -2);
  lua_pushlstring(L, x->hbuf != NULL ? x->hbuf : "", x->hlen);
  if (x->stream) { /* xfers[res] = transfer, the head in user value 5 */
    lua_setiuservalue(L, xidx, 5);
    lua_pushvalue(L, xidx);
    x->handed = 1;
  }
  lua_rawset(L, -3);
  lua_pop(L, 1);
  free(x->hbuf);
  x->hbuf = NULL;
  x->hlen = x->hcap = 0;
}

/* __index of responses: the methods, and headers / header_list, made
** on first use.  Upvalue 1: the methods table.  [-0, +1, m] */
static int res_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  int t;
  if (lua_type(L, 2) != LUA_TSTRING ||
      (strcmp(k, "headers") != 0 && strcmp(k, "header_list") != 0)) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  lua_settop(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key); /* 3 */
  lua_pushvalue(L, 1);
  t = lua_rawget(L, 3); /* 4: the head, or the transfer holding it */
  if (t == LUA_TUSERDATA) {
    if (lua_getiuservalue(L, 4, 5) != LUA_TSTRING) return 0;
    lua_pushnil(L);
    lua_setiuservalue(L, 4, 5);
  } else if (t == LUA_TSTRING) {
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    lua_rawset(L, 3);
  } else
    return 0;
  {
    size_t len;
    const char *head = lua_tolstring(L, -1, &len);
    push_headers(L, head, len); /* [.., headers, header_list] */
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "header_list");
  lua_pushvalue(L, -2);
  lua_setfield(L, 1, "headers");
  if (k[6] == '_') return 1; /* header_list */
  lua_pop(L, 1);
  return 1;
}

/* ---- reading a streamed body ---------------------------------------------- */

static void consume(hxfer *x, size_t n) {
  x->boff += n;
  x->blen -= n;
  if (x->blen == 0) x->boff = 0;
}

/* Lets curl deliver again once a reader has drained half the buffer. */
static void maybe_resume(hxfer *x) {
  if (x->recv_paused && x->blen <= x->limit / 2) xfer_unpause(x, 0);
}

/* The end of the body: nil, "eof", "EOF" or the transfer's error. */
static int push_end(lua_State *L, hxfer *x) {
  if (x->result != CURLE_OK || x->too_large || x->nomem || x->head_large)
    return push_error(L, x);
  return sp_io_fail(L, UV_EOF);
}

/* Tries to complete a read now: the number of results pushed, or -1. */
static int xtry(lua_State *L, hxfer *x, int kind, size_t max) {
  const char *d = x->buf != NULL ? x->buf + x->boff : "";
  switch (kind) {
    case R_SOME:
      if (x->blen > 0) {
        size_t k = x->blen < max ? x->blen : max;
        lua_pushlstring(L, d, k);
        consume(x, k);
        return 1;
      }
      return x->done ? push_end(L, x) : -1;
    case R_ALL:
      if (x->blen > max) return sp_io_fail_msg(L, "body too large", "EMSGSIZE");
      if (!x->done) return -1;
      if (x->result != CURLE_OK || x->nomem) {
        push_error(L, x);
        lua_pushlstring(L, d, x->blen); /* partial */
        consume(x, x->blen);
        return 4;
      }
      lua_pushlstring(L, d, x->blen);
      consume(x, x->blen);
      return 1;
    default: { /* R_LINE */
      size_t scan = x->blen < max + 1 ? x->blen : max + 1;
      const char *nl = memchr(d, '\n', scan);
      if (nl != NULL) {
        size_t len = (size_t)(nl - d);
        lua_pushlstring(L, d, len > 0 && d[len - 1] == '\r' ? len - 1 : len);
        consume(x, len + 1);
        return 1;
      }
      if (x->blen > max) return sp_io_fail_msg(L, "line too long", "ELINE");
      if (!x->done) return -1;
      if (x->blen > 0) { /* the last, unterminated line */
        lua_pushlstring(L, d, x->blen);
        consume(x, x->blen);
        return 1;
      }
      return push_end(L, x);
    }
  }
}

/* Argument 1 must be a response.  [-0, +0, v] */
static void check_res(lua_State *L) {
  int ok = lua_getmetatable(L, 1);
  if (ok) {
    luaL_getmetatable(L, RESPONSE_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok) luaL_typeerror(L, 1, RESPONSE_MT);
}

/* The transfer of the streamed response at 1.  [-0, +0, v] */
static hxfer *res_xfer(lua_State *L, const char *name) {
  hxfer *x;
  check_res(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  x = (hxfer *)lua_touserdata(L, -1); /* NULL for a buffered one's head */
  lua_pop(L, 2);
  if (x == NULL)
    luaL_error(L,
               "%s: the body was not streamed (it is res.body; pass "
               "stream = true to read it in parts)",
               name);
  return x;
}

static int pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  return (int)ctx;
}

static int read_wait(lua_State *L, hxfer *x, sp_task *t);

/* Stack: [res, max, xfer]. */
static int read_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  hxfer *x;
  int n;
  (void)status;
  sp_resumed(L, t); /* interrupted: the undo ended the transfer */
  x = (hxfer *)lua_touserdata(L, 3);
  if (x->closed) return sp_io_closed(L, "ECANCELED");
  n = xtry(L, x, x->rkind, x->rmax);
  if (n < 0) return read_wait(L, x, t);
  maybe_resume(x);
  return n;
}

static int read_wait(lua_State *L, hxfer *x, sp_task *t) {
  if (x->recv_paused) { /* curl may hand kept bytes over at once */
    int n;
    xfer_unpause(x, 0);
    if ((n = xtry(L, x, x->rkind, x->rmax)) >= 0) return n;
  }
  return xfer_wait(L, x, t, W_READ, read_k);
}

static size_t check_max(lua_State *L, int arg, size_t def) {
  lua_Integer n;
  if (lua_isnoneornil(L, arg)) return def;
  if (lua_type(L, arg) == LUA_TNUMBER && !lua_isinteger(L, arg) &&
      lua_tonumber(L, arg) == HUGE_VAL)
    return (size_t)-1 / 4; /* math.huge: no limit */
  n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 1, arg, "positive integer expected");
  if ((lua_Unsigned)n > (size_t)-1 / 4) return (size_t)-1 / 4;
  return (size_t)n;
}

/* Stack: [res, max]. */
static int res_read(lua_State *L, const char *name, int kind, size_t max) {
  hxfer *x = res_xfer(L, name);
  sp_task *t = sp_await_check(L, name);
  size_t need;
  int n;
  lua_settop(L, 2);
  if (x->closed) return sp_io_closed(L, "EBADF");
  if (x->task != NULL)
    luaL_error(L, "%s: response busy (another task is reading it)", name);
  n = xtry(L, x, kind, max);
  if (n >= 0) {
    maybe_resume(x);
    return sp_await_fast(L, t, pass_k, n);
  }
  need = kind == R_SOME ? max : max + 1;
  if (need > x->limit) x->limit = need;
  x->rkind = kind;
  x->rmax = max;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key); /* keep x on the stack */
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return read_wait(L, x, t);
}

static int res_read_some(lua_State *L) {
  return res_read(L, "read_some", R_SOME, check_max(L, 2, SP_STREAM_CHUNK));
}

static int res_read_all(lua_State *L) {
  hxfer *x = res_xfer(L, "read_all");
  return res_read(L, "read_all", R_ALL, check_max(L, 2, x->max_body));
}

/* for line in res:lines([max]) */
static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2)); /* res */
  lua_pushvalue(L, lua_upvalueindex(3)); /* max */
  return res_read(L, "lines", R_LINE, check_max(L, 2, SP_STREAM_CHUNK));
}

static int res_lines(lua_State *L) {
  res_xfer(L, "lines");
  check_max(L, 2, SP_STREAM_CHUNK);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the box, as for every function */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, lines_iter, 3);
  return 1;
}

/* res:close(): ends the transfer (idempotent; also __close).  A buffered
** response has nothing to close. */
static int res_close(lua_State *L) {
  hxfer *x;
  check_res(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  x = (hxfer *)sp_testclass(L, -1, XFER_MT);
  if (x != NULL) xfer_close(x);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- options --------------------------------------------------------------- */

typedef struct hopts {
  const char *fname; /* "spindle.http.get" */
  const char *url, *method;
  double timeout, connect_timeout;
  lua_Integer follow, max_body;
  int stream, verify, version;
  const char *ca;
  int ca_dir;
} hopts;

static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_token(const char *s, size_t len) {
  size_t i;
  if (len == 0) return 0;
  for (i = 0; i < len; i++)
    if (!is_tchar((unsigned char)s[i])) return 0;
  return 1;
}

static double opt_seconds(lua_State *L, const hopts *o, const char *k) {
  lua_Number s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
  if (!(s >= 0) || s > SP_MAX_SECONDS)
    luaL_error(L, "%s: option '%s' must be a non-negative number of seconds",
               o->fname, k);
  return (double)s;
}

static lua_Integer opt_count(lua_State *L, const hopts *o, const char *k) {
  lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  if (n < 0)
    luaL_error(L, "%s: option '%s' must be a non-negative integer", o->fname,
               k);
  return n;
}

/* opts.tls = {ca = path, verify = bool}.  [-0, +0, v] */
static void opt_tls(lua_State *L, hopts *o, int idx) {
  struct stat st;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: option 'tls' must be a table", o->fname);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(k, "ca") == 0) {
      size_t len;
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: option 'tls.ca' must be a path", o->fname);
      o->ca = lua_tolstring(L, -1, &len);
      if (strlen(o->ca) != len || stat(o->ca, &st) != 0)
        luaL_error(L, "%s: tls.ca: cannot open '%s'", o->fname, o->ca);
      o->ca_dir = S_ISDIR(st.st_mode);
    } else if (strcmp(k, "verify") == 0) {
      if (lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "%s: option 'tls.verify' must be a boolean", o->fname);
      o->verify = lua_toboolean(L, -1);
    } else
      luaL_error(L, "%s: unknown option 'tls.%s'", o->fname, k);
    lua_pop(L, 1); /* the ca string stays anchored by the table */
  }
}

/* Reads and checks opts (a table at S_OPTS or nil) into o and the slots
** S_URL .. S_TLS.  Allocates nothing outside Lua.  [-0, +0, v] */
static void parse_opts(lua_State *L, hopts *o, int shorthand) {
  if (lua_isnil(L, S_OPTS)) return;
  lua_pushnil(L);
  while (lua_next(L, S_OPTS)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int t = lua_type(L, -1);
    if (k == NULL) luaL_error(L, "%s: option names must be strings", o->fname);
    if (strcmp(k, "url") == 0 || strcmp(k, "body") == 0) {
      int body = k[0] == 'b';
      if (!body && shorthand != 'r')
        luaL_error(L,
                   "%s: option 'url' is not allowed (the URL is "
                   "argument #1)",
                   o->fname);
      if (body && shorthand == 'p')
        luaL_error(L,
                   "%s: option 'body' is not allowed (the body is "
                   "argument #2)",
                   o->fname);
      if (!body && t != LUA_TSTRING)
        luaL_error(L, "%s: option 'url' must be a string", o->fname);
      if (body && t != LUA_TSTRING && t != LUA_TFUNCTION)
        luaL_error(L, "%s: option 'body' must be a string or a function",
                   o->fname);
      lua_pushvalue(L, -1);
      lua_replace(L, body ? S_BODY : S_URL);
    } else if (strcmp(k, "method") == 0) {
      size_t len;
      const char *m = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (m == NULL || !is_token(m, len))
        luaL_error(L,
                   "%s: option 'method' must be a method name like "
                   "\"GET\"",
                   o->fname);
      lua_pushvalue(L, -1);
      lua_replace(L, S_METHOD);
    } else if (strcmp(k, "headers") == 0) {
      if (t != LUA_TTABLE)
        luaL_error(L, "%s: option 'headers' must be a table", o->fname);
      lua_pushvalue(L, -1);
      lua_replace(L, S_HEADERS);
    } else if (strcmp(k, "tls") == 0) {
      lua_pushvalue(L, -1);
      lua_replace(L, S_TLS);
    } else if (strcmp(k, "timeout") == 0)
      o->timeout = opt_seconds(L, o, k);
    else if (strcmp(k, "connect_timeout") == 0)
      o->connect_timeout = opt_seconds(L, o, k);
    else if (strcmp(k, "follow") == 0)
      o->follow = opt_count(L, o, k);
    else if (strcmp(k, "max_body") == 0)
      o->max_body = opt_count(L, o, k);
    else if (strcmp(k, "stream") == 0) {
      if (t != LUA_TBOOLEAN)
        luaL_error(L, "%s: option 'stream' must be a boolean", o->fname);
      o->stream = lua_toboolean(L, -1);
    } else if (strcmp(k, "version") == 0) {
      const char *v = t == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(v, "1.1") == 0)
        o->version = 11;
      else if (strcmp(v, "2") == 0)
        o->version = 20;
      else
        luaL_error(L, "%s: option 'version' must be \"1.1\" or \"2\"",
                   o->fname);
    } else
      luaL_error(L, "%s: unknown option '%s'", o->fname, k);
    lua_pop(L, 1);
  }
  if (!lua_isnil(L, S_TLS)) opt_tls(L, o, S_TLS);
}

/* Appends "name: value" (the value on top) to x->hdrs.  [-0, +0, v] */
static void add_header(lua_State *L, hxfer *x, const hopts *o,
                       const char *name) {
  size_t vlen;
  const char *v;
  struct curl_slist *l;
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "%s: header '%s' must be a string or an array of strings",
               o->fname, name);
  v = lua_tolstring(L, -1, &vlen);
  if (memchr(v, '\r', vlen) || memchr(v, '\n', vlen) || strlen(v) != vlen)
    luaL_error(L, "%s: header '%s' contains a line break or a zero byte",
               o->fname, name);
  if (vlen == 0) /* "Name;" sends an empty header ("Name:" removes one) */
    lua_pushfstring(L, "%s;", name);
  else
    lua_pushfstring(L, "%s: %s", name, v);
  l = curl_slist_append(x->hdrs, lua_tostring(L, -1));
  if (l == NULL) luaL_error(L, "not enough memory");
  x->hdrs = l;
  lua_pop(L, 1);
}

static void add_line(lua_State *L, hxfer *x, const char *line) {
  struct curl_slist *l = curl_slist_append(x->hdrs, line);
  if (l == NULL) luaL_error(L, "not enough memory");
  x->hdrs = l;
}

/* Every header of the table at S_HEADERS into x->hdrs.  [-0, +0, v] */
static void set_headers(lua_State *L, hxfer *x, const hopts *o, int *has_expect,
                        int *has_ctype) {
  lua_pushnil(L);
  while (lua_next(L, S_HEADERS)) {
    size_t nlen;
    const char *name =
        lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nlen) : NULL;
    if (name == NULL || !is_token(name, nlen))
      luaL_error(L, "%s: header names must be tokens like \"Accept\"",
                 o->fname);
    if (nlen == 6 && strncasecmp(name, "expect", 6) == 0) *has_expect = 1;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
      *has_ctype = 1;
    if (lua_type(L, -1) == LUA_TTABLE) { /* repeated */
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        add_header(L, x, o, name);
        lua_pop(L, 1);
      }
    } else
      add_header(L, x, o, name);
    lua_pop(L, 1);
  }
}

static void setopt_fail(lua_State *L, const hopts *o, CURLcode rc) {
  if (rc == CURLE_OUT_OF_MEMORY) luaL_error(L, "not enough memory");
  luaL_error(L, "%s: %s", o->fname, curl_easy_strerror(rc));
}

#define SETOPT(e, opt, val)                                                    \
  do {                                                                         \
    CURLcode rc_ = curl_easy_setopt((e), (opt), (val));                        \
    if (rc_ != CURLE_OK) setopt_fail(L, o, rc_);                               \
  } while (0)

static long ms_of(double s) {
  double ms = ceil(s * 1000.0);
  return ms < 1 ? 1 : ms > 2e9 ? 2000000000L : (long)ms;
}

/* The options every handle of the pool has (set once, again after a
** reset).  No Lua. */
static void easy_defaults(hclient *c, CURL *e) {
  if (c->no_proxy) { /* spares libcurl five getenv() per request */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  }
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "spindle/" SPINDLE_VERSION);
}

/* Sets the options of the easy handle of x.  The ones below "per
** request" are set every time (a pooled handle keeps the last request's);
** any other marks the handle dirty: it is reset before it is pooled
** again.  [-0, +0, v] */
static void configure(lua_State *L, hxfer *x, const hopts *o) {
  CURL *e = x->easy;
  int has_expect = 0, has_ctype = 0, post = !lua_isnil(L, S_BODY);
  const char *m = o->method;
  /* per request */
  SETOPT(e, CURLOPT_URL, o->url);
  SETOPT(e, CURLOPT_PRIVATE, (char *)x);
  SETOPT(e, CURLOPT_ERRORBUFFER, x->errbuf);
  SETOPT(e, CURLOPT_HEADERDATA, x);
  SETOPT(e, CURLOPT_WRITEDATA, x);
  SETOPT(e, CURLOPT_FOLLOWLOCATION, o->follow > 0 ? 1L : 0L);
  SETOPT(e, CURLOPT_MAXREDIRS,
         (long)(o->follow > 1000000 ? 1000000 : o->follow));
  SETOPT(e, CURLOPT_TIMEOUT_MS, o->timeout > 0 ? ms_of(o->timeout) : 0L);
  SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS,
         o->connect_timeout > 0 ? ms_of(o->connect_timeout) : 0L);
  /* Requests at once to an HTTPS peer wait for the first connection's
  ** ALPN: HTTP/2 shares it, HTTP/1.1 opens more.  (Not for cleartext
  ** HTTP/1.1: there it would queue them all on one connection.) */
  SETOPT(e, CURLOPT_PIPEWAIT,
         o->version == 20 || strncasecmp(o->url, "https:", 6) == 0 ? 1L : 0L);
  if (!lua_isnil(L, S_HEADERS)) set_headers(L, x, o, &has_expect, &has_ctype);
  /* No 100-continue round trip and no made-up content type (curl's
  ** application/x-www-form-urlencoded) unless asked for: "Name:" removes
  ** a header curl would add. */
  if (post && !has_expect) add_line(L, x, "Expect:");
  if (post && !has_ctype) add_line(L, x, "Content-Type:");
  SETOPT(e, CURLOPT_HTTPHEADER, x->hdrs);
  /* the rest: the handle is reset before it is pooled again */
  if (strcmp(m, "HEAD") == 0 && post)
    luaL_error(L, "%s: a HEAD request cannot have a body", o->fname);
  x->dirty = post || strcmp(m, "GET") != 0 || o->ca != NULL || !o->verify ||
             o->version != 0;
  if (post) {
    SETOPT(e, CURLOPT_POST, 1L);
    if (x->body_fn) {
      SETOPT(e, CURLOPT_READFUNCTION, read_cb);
      SETOPT(e, CURLOPT_READDATA, x);
      SETOPT(e, CURLOPT_SEEKFUNCTION, seek_cb);
      SETOPT(e, CURLOPT_SEEKDATA, x);
      SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    } else { /* the string stays anchored in the transfer's user value */
      size_t len;
      const char *b = lua_tolstring(L, S_BODY, &len);
      SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
      SETOPT(e, CURLOPT_POSTFIELDS, b);
    }
  }
  if (strcmp(m, "HEAD") == 0) {
    SETOPT(e, CURLOPT_NOBODY, 1L);
    x->nobody = 1;
  } else if (strcmp(m, post ? "POST" : "GET") != 0)
    SETOPT(e, CURLOPT_CUSTOMREQUEST, m);
  if (o->ca != NULL)
    SETOPT(e, o->ca_dir ? CURLOPT_CAPATH : CURLOPT_CAINFO, o->ca);
  if (!o->verify) {
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (o->version == 11)
    SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  else if (o->version == 20) {
    SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    if (x->c->h2c_fresh && strncasecmp(o->url, "http:", 5) == 0) {
      SETOPT(e, CURLOPT_FRESH_CONNECT, 1L);
      SETOPT(e, CURLOPT_FORBID_REUSE, 1L);
    }
  }
}

/* ---- the request ----------------------------------------------------------- */

static int request_step(lua_State *L, hxfer *x, sp_task *t);

static int request_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  (void)status;
  sp_resumed(L, t); /* interrupted: the undo ended the transfer */
  return request_step(L, (hxfer *)lua_touserdata(L, S_XFER), t);
}

static void xfer_start(lua_State *L, hxfer *x) {
  hclient *c = x->c;
  CURLMcode mc = curl_multi_add_handle(c->multi, x->easy);
  if (mc != CURLM_OK)
    luaL_error(L, "spindle.http: %s", curl_multi_strerror(mc));
  x->in_multi = 1;
  if (++c->running > c->peak) {
    /* The connection cache keeps twice as many idle connections as
    ** transfers ever ran at once (16 to 1024).  libcurl's own default
    ** follows the transfers in the multi *now*: when a burst of them
    ** completes together, it would close most of their connections. */
    c->peak = c->running;
    if (c->peak * 2 > 16 && c->peak <= 512)
      curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->peak * 2);
  }
}

/* The body function returned (its result on top). */
static int chunk_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  hxfer *x = (hxfer *)lua_touserdata(L, S_XFER);
  int ty = lua_type(L, -1);
  (void)status;
  sp_check_cancel(L, t); /* a cancellation it swallowed still counts */
  if (ty == LUA_TNIL) {
    x->upload_eof = 1;
    x->want_chunk = 0;
  } else if (ty == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, S_XFER, 2); /* anchored while curl reads it */
    x->chunk = lua_tolstring(L, -1, &x->clen);
    x->coff = 0;
    x->nchunks++;
    x->want_chunk = x->clen == 0; /* "" is skipped: ask again */
  } else
    luaL_error(L,
               "spindle.http.%s: the body function returned a %s (a "
               "string or nil expected)",
               lua_tostring(L, S_NAME), luaL_typename(L, -1));
  lua_settop(L, S_XFER);
  if (!x->closed && !x->done) {
    if (!x->in_multi)
      xfer_start(L, x);
    else if (x->send_paused && !x->want_chunk)
      xfer_unpause(x, 1);
  }
  return request_step(L, x, t);
}

static int request_step(lua_State *L, hxfer *x, sp_task *t) {
  lua_settop(L, S_XFER);
  if (x->closed) return sp_io_closed(L, "ECANCELED");
  if (x->done) {
    /* a streamed response whose head came in is returned: its reads
    ** return the bytes that arrived, then the error */
    if ((x->result != CURLE_OK || x->too_large || x->nomem || x->head_large) &&
        !(x->stream && x->head_done))
      return push_error(L, x);
    push_response(L, x, S_XFER);
    return 1;
  }
  if (x->want_chunk) {
    x->want_chunk = 0;
    lua_pushvalue(L, S_BODY);
    lua_callk(L, 0, 1, (lua_KContext)t, chunk_k);
    return chunk_k(L, LUA_OK, (lua_KContext)t);
  }
  if (x->stream && x->head_done && (!x->body_fn || x->upload_eof)) {
    push_response(L, x, S_XFER);
    return 1;
  }
  return xfer_wait(L, x, t, W_REQUEST, request_k);
}

/* The request of stack [opts, name, url, body]: name is "request", "get"
** or "post"; url and body are the shorthands' arguments. */
static int request_common(lua_State *L) {
  hopts o;
  const char *name = lua_tostring(L, S_NAME);
  int kind = name[0]; /* 'r', 'g', 'p' */
  const char *fname = kind == 'r'   ? "spindle.http.request"
                      : kind == 'g' ? "spindle.http.get"
                                    : "spindle.http.post";
  sp_task *t;
  hxfer *x;
  hclient *c;
  memset(&o, 0, sizeof o);
  o.fname = fname;
  o.verify = 1;
  o.max_body = HTTP_MAX_BODY;
  for (int i = S_URL; i <= S_TLS; i++) lua_pushnil(L);
  if (kind == 'r') {
    if (lua_type(L, S_OPTS) != LUA_TTABLE)
      return luaL_error(L,
                        "bad argument #1 to 'request' (table expected, "
                        "got %s)",
                        luaL_typename(L, S_OPTS));
  } else {
    int oarg = kind == 'p' ? 3 : 2;
    if (lua_type(L, S_URLARG) != LUA_TSTRING)
      return luaL_error(L,
                        "bad argument #1 to '%s' (string expected, got "
                        "%s)",
                        name, luaL_typename(L, S_URLARG));
    if (kind == 'p' && lua_type(L, S_BODYARG) != LUA_TSTRING &&
        lua_type(L, S_BODYARG) != LUA_TFUNCTION)
      return luaL_error(L,
                        "bad argument #2 to 'post' (string or function "
                        "expected, got %s)",
                        luaL_typename(L, S_BODYARG));
    if (!lua_isnil(L, S_OPTS) && lua_type(L, S_OPTS) != LUA_TTABLE)
      return luaL_error(L,
                        "bad argument #%d to '%s' (table expected, got "
                        "%s)",
                        oarg, name, luaL_typename(L, S_OPTS));
    lua_pushvalue(L, S_URLARG);
    lua_replace(L, S_URL);
    if (kind == 'p') {
      lua_pushvalue(L, S_BODYARG);
      lua_replace(L, S_BODY);
    }
  }
  parse_opts(L, &o, kind);
  if (lua_isnil(L, S_URL))
    return luaL_error(L, "%s: option 'url' is required", fname);
  o.url = lua_tostring(L, S_URL);
  if (strlen(o.url) != lua_rawlen(L, S_URL))
    return luaL_error(L, "%s: the URL contains a zero byte", fname);
  if (lua_isnil(L, S_METHOD))
    lua_pushstring(L, kind == 'g'            ? "GET"
                      : kind == 'p'          ? "POST"
                      : lua_isnil(L, S_BODY) ? "GET"
                                             : "POST");
  else
    lua_pushvalue(L, S_METHOD);
  lua_replace(L, S_METHOD);
  o.method = lua_tostring(L, S_METHOD);
  t = sp_await_check(L, fname);
  c = client_get(L, t->rt);
  /* the transfer, born detached; a to-be-closed slot ends it on any error
  ** or interruption */
  x = (hxfer *)lua_newuserdatauv(L, sizeof *x, 5);
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, XFER_MT);
  lua_toclose(L, S_XFER);
  lua_pushvalue(L, S_BODY);
  lua_setiuservalue(L, S_XFER, 1);
  lua_pushvalue(L, S_METHOD);
  lua_setiuservalue(L, S_XFER, 3);
  lua_pushvalue(L, S_URL);
  lua_setiuservalue(L, S_XFER, 4);
  x->method = o.method; /* anchored by user values 3 and 4 */
  x->url0 = o.url;
  x->rt = t->rt;
  x->stats = c->stats;
  x->clength = -1;
  x->stream = o.stream;
  x->limit = HTTP_STREAM_LIMIT;
  x->max_body = (size_t)o.max_body;
  x->follow = (long)o.follow;
  x->body_fn = lua_type(L, S_BODY) == LUA_TFUNCTION;
  if (c->npool > 0)
    x->easy = c->pool[--c->npool];
  else if ((x->easy = curl_easy_init()) == NULL)
    return luaL_error(L, "not enough memory");
  else {
    c->stats->easy++;
    easy_defaults(c, x->easy);
  }
  x->c = c;
  x->next = c->xfers;
  if (c->xfers != NULL) c->xfers->prev = x;
  c->xfers = x;
  c->stats->xfers++;
  configure(L, x, &o);
  if (x->body_fn)
    x->want_chunk = 1; /* the first chunk before the request starts */
  else
    xfer_start(L, x);
  return request_step(L, x, t);
}

/* spindle._http_request(opts) */
static int l_request(lua_State *L) {
  int none = lua_isnone(L, 1);
  lua_settop(L, S_BODYARG);
  lua_pushliteral(L, "request");
  lua_replace(L, S_NAME);
  if (none) /* "got no value", as luaL_checktype says */
    return luaL_error(L, "bad argument #1 to 'request' (table expected, got "
                         "no value)");
  return request_common(L);
}

/* spindle._http_get(url, [opts]): [opts, "get", url, nil] */
static int l_get(lua_State *L) {
  int none = lua_isnone(L, 1);
  lua_settop(L, S_BODYARG);
  lua_copy(L, 1, 3);
  lua_copy(L, 2, 1);
  lua_pushliteral(L, "get");
  lua_replace(L, S_NAME);
  if (none)
    return luaL_error(L, "bad argument #1 to 'get' (string expected, got no "
                         "value)");
  return request_common(L);
}

/* spindle._http_post(url, body, [opts]): [opts, "post", url, body] */
static int l_post(lua_State *L) {
  int nargs = lua_gettop(L);
  lua_settop(L, S_BODYARG);
  lua_copy(L, 2, 4);
  lua_copy(L, 1, 2);
  lua_copy(L, 3, 1);
  lua_copy(L, 2, 3);
  lua_pushliteral(L, "post");
  lua_replace(L, S_NAME);
  if (nargs < 2)
    return luaL_error(L,
                      "bad argument #%d to 'post' (%s expected, got no "
                      "value)",
                      nargs + 1, nargs == 0 ? "string" : "string or function");
  return request_common(L);
}

/* spindle._http_stats() -> {clients, easy, socks, transfers, buffered} of
** this Lua state: runtimes with a client, easy handles (pooled or in use),
** poll handles, transfers holding an easy handle, bytes of body buffers. */
static int l_stats(lua_State *L) {
  hstats *st = stats_get(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, st->clients);
  lua_setfield(L, -2, "clients");
  lua_pushinteger(L, st->easy);
  lua_setfield(L, -2, "easy");
  lua_pushinteger(L, st->socks);
  lua_setfield(L, -2, "socks");
  lua_pushinteger(L, st->xfers);
  lua_setfield(L, -2, "transfers");
  lua_pushinteger(L, st->buffered);
  lua_setfield(L, -2, "buffered");
  return 1;
}

int sp_http_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"_http_request", l_request},
                                 {"_http_get", l_get},
                                 {"_http_post", l_post},
                                 {"_http_stats", l_stats},
                                 {NULL, NULL}};
  static const luaL_Reg xmeta[] = {
      {"__gc", xfer_gc}, {"__close", xfer_tbc}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"read_some", res_read_some},
                                     {"read_all", res_read_all},
                                     {"lines", res_lines},
                                     {"close", res_close},
                                     {NULL, NULL}};
  static const luaL_Reg rmeta[] = {{"__close", res_close}, {NULL, NULL}};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &stats_key) == LUA_TNIL) {
    hstats *st = (hstats *)lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &stats_key);
  }
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &xfers_key) == LUA_TNIL) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &xfers_key);
  }
  lua_pop(L, 1);
  sp_newclass(L, XFER_MT, NULL, xmeta);
  lua_pop(L, 1);
  sp_newclass(L, RESPONSE_MT, methods, rmeta);
  lua_getfield(L, -1, "__index"); /* the methods table */
  lua_pushcclosure(L, res_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  sp_setfuncs(L, fns);
  return 0;
}

#endif
