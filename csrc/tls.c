/*
** tls.c -- spindle.tls on OpenSSL 3: contexts (tls.context), the TLS
** engine under a stream, tls.connect, tls.wrap, s:handshake(),
** s:tls_info(), and the server side of net.listen(..., {tls = ctx}).
**
** The engine.  A TLS stream is an ordinary stream (stream.c) with s->tls
** set.  OpenSSL talks to a BIO of ours over two memory buffers:
**
**   socket --read_cb--> cin --SSL_read--> rbuf (the stream's plaintext)
**   write(data) --SSL_write--> out --uv_try_write / uv_write--> socket
**
** so OpenSSL never touches the socket and every byte is where the stream
** can bound it.  cin holds at most CIN_CAP bytes of ciphertext; the socket
** is read while a reader waits or the handshake runs, and is left alone
** once the plaintext buffer is at its bound (s->rlimit, the same rule as a
** plain stream) and a whole record is waiting in cin.  SSL_read decrypts
** into rbuf only up to s->rlimit, so the bound counts plaintext.  A write
** encrypts at most OUT_HIGH bytes ahead of what the kernel took, and the
** rest of the plaintext waits in the caller's (anchored) strings: a peer
** that never reads stalls the writer, not the runtime's memory.  Output
** that the peer causes (alerts, handshake messages) stops the reading of
** the socket once OUT_LIMIT bytes of it are unsent.
**
** advance() is the one step of the engine: it runs after ciphertext
** arrived, after the kernel took ciphertext, and when a task starts an
** operation.  It moves the handshake on, decrypts, encrypts, flushes and
** wakes whoever can go on.  No Lua runs in it.
**
** Handshake states (x->hs):
**
**   NONE --first read, write, s:handshake(), connect, wrap--> RUNNING
**   RUNNING --SSL_do_handshake done--> DONE
**   RUNNING --SSL error, socket error, EOF--> FAILED
**
** A failure is sticky (x->fatal) and shows on every later read and write
** as nil, <reason>, "ETLS" (s->rerr = s->werr = SP_ETLS) -- or the socket's
** own code when the socket failed first.  The handshake is its own await
** (dump: "tls handshake 127.0.0.1:4433"); reads and writes that arrive
** before it ended simply wait for it as part of their own await.
**
** Ownership.  sp_tls belongs to its stream and is freed in the stream's
** close callback, so the runtime's close frees it with the stream.  A
** context (sp_tlsctx) is reference-counted: its Lua object, each listener
** and each TLS stream hold one; SSL_CTX and the client session cache go
** with the last.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define SP_TLSCTX_MT "spindle.tls.context"

/* The largest TLS record on the wire: header + 2^14 + 2048 (TLS 1.2). */
#define TLS_RECORD (5 + 16384 + 2048)
#define CIN_CAP (2 * TLS_RECORD + 4096) /* ciphertext read ahead */
#define PLAIN_CHUNK 16384               /* plaintext per SSL_write */
#define TLS_PLAIN_MAX 16384 /* plaintext of one record: per SSL_read */
#define OUT_HIGH 65536      /* encrypt ahead of the kernel at most this */
#define OUT_LIMIT 262144    /* unsent output at which reading stops */
#define OUT_KEEP 262144     /* larger idle output buffers are freed */
#define CACHE_MAX 64        /* client sessions kept per context */

enum { HS_NONE, HS_RUNNING, HS_DONE, HS_FAILED };

typedef struct cache_ent {
  char *key;
  SSL_SESSION *sess;
} cache_ent;

struct sp_tlsctx {
  SSL_CTX *ctx;
  BIO_METHOD *bio; /* the BIO over a stream's buffers, for its SSLs */
  int refs;
  int server;
  unsigned char *alpn; /* server: protocols in preference order (wire) */
  unsigned alpn_len;
  cache_ent cache[CACHE_MAX]; /* client sessions, oldest first */
  int ncache;
};

typedef struct ctx_box {
  sp_tlsctx *c; /* NULL until built */
} ctx_box;

struct sp_tls {
  SSL *ssl;
  sp_tlsctx *ctx;
  /* ciphertext in: [cin_off, cin_off + cin_len) of cin */
  char *cin;
  size_t cin_cap, cin_off, cin_len;
  /* ciphertext out: out fills while fly is being written */
  char *out, *fly;
  size_t out_len, out_cap, fly_cap; /* fly is written by a uv_write_t from
                                     ** sp_stream_wreq while flying */
  /* the plaintext of the pending write: pieces pb[pi..pn), at poff */
  uv_buf_t *pb;
  int pn, pcap, pi;
  size_t poff;
  sp_task *hs_waiter;
  uv_timer_t *timer; /* connect/wrap timeout, malloc'ed */
  char *key;         /* client session cache key */
  int in_err;        /* the socket's read error */
  int sock_err;      /* the socket's write error */
  unsigned char hs;  /* HS_* */
  unsigned in_eof : 1, flying : 1, writing : 1, shut_sent : 1, close_notify : 1,
      hs_own : 1, timedout : 1, server : 1, fatal : 1;
  char err[200]; /* why, for ETLS */
};

static void advance(sp_stream *s);

/* ---- the BIO over cin and out ----------------------------------------- */

static int bio_read(BIO *b, char *buf, int len) {
  sp_tls *x = (sp_tls *)BIO_get_data(b);
  size_t n;
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (x->cin_len == 0) {
    if (x->in_eof || x->in_err) return 0; /* end of the stream */
    BIO_set_retry_read(b);
    return -1;
  }
  n = x->cin_len < (size_t)len ? x->cin_len : (size_t)len;
  memcpy(buf, x->cin + x->cin_off, n);
  x->cin_off += n;
  x->cin_len -= n;
  if (x->cin_len == 0) x->cin_off = 0;
  return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len) {
  sp_tls *x = (sp_tls *)BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (x->out_len + (size_t)len > x->out_cap) {
    size_t cap = x->out_cap ? x->out_cap * 2 : 16384;
    char *p;
    if (cap < x->out_len + (size_t)len) cap = x->out_len + (size_t)len;
    p = realloc(x->out, cap);
    if (p == NULL) return -1; /* SSL fails: out of memory */
    x->out = p;
    x->out_cap = cap;
  }
  memcpy(x->out + x->out_len, buf, (size_t)len);
  x->out_len += (size_t)len;
  return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  sp_tls *x = (sp_tls *)BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return x ? (long)x->cin_len : 0;
    case BIO_CTRL_WPENDING: return x ? (long)x->out_len : 0;
    case BIO_CTRL_EOF: return x && x->cin_len == 0 && (x->in_eof || x->in_err);
    default: return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* One method per context, freed with it (every SSL made from the context
** holds a reference to it): no process-wide state, nothing left behind
** when spindle.so is unloaded.  The type is a plain source/sink: OpenSSL's
** BIO_get_new_index hands out a few hundred indices per process. */
static BIO_METHOD *bio_method_new(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "spindle");
  if (m == NULL) return NULL;
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  return m;
}

/* ---- contexts --------------------------------------------------------- */

void sp_tlsctx_ref(sp_tlsctx *c) { c->refs++; }

void sp_tlsctx_unref(sp_tlsctx *c) {
  int i;
  if (c == NULL || --c->refs > 0) return;
  for (i = 0; i < c->ncache; i++) {
    free(c->cache[i].key);
    SSL_SESSION_free(c->cache[i].sess);
  }
  SSL_CTX_free(c->ctx);
  if (c->bio != NULL) BIO_meth_free(c->bio);
  free(c->alpn);
  free(c);
}

/* Takes the session cached under key (the caller owns it), or NULL. */
static SSL_SESSION *cache_take(sp_tlsctx *c, const char *key) {
  int i;
  for (i = 0; i < c->ncache; i++)
    if (strcmp(c->cache[i].key, key) == 0) {
      SSL_SESSION *sess = c->cache[i].sess;
      free(c->cache[i].key);
      memmove(c->cache + i, c->cache + i + 1,
              sizeof *c->cache * (size_t)(c->ncache - i - 1));
      c->ncache--;
      return sess;
    }
  return NULL;
}

/* Keeps sess (owned) under key, replacing an older one; the oldest entry
** goes when the cache is full. */
static void cache_put(sp_tlsctx *c, const char *key, SSL_SESSION *sess) {
  char *k = malloc(strlen(key) + 1);
  SSL_SESSION *old = cache_take(c, key);
  if (old != NULL) SSL_SESSION_free(old);
  if (k == NULL) {
    SSL_SESSION_free(sess);
    return;
  }
  strcpy(k, key);
  if (c->ncache == CACHE_MAX) {
    free(c->cache[0].key);
    SSL_SESSION_free(c->cache[0].sess);
    memmove(c->cache, c->cache + 1, sizeof *c->cache * (CACHE_MAX - 1));
    c->ncache--;
  }
  c->cache[c->ncache].key = k;
  c->cache[c->ncache].sess = sess;
  c->ncache++;
}

/* A new session ticket or session for a client connection. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  sp_tls *x = (sp_tls *)SSL_get_app_data(ssl);
  if (x == NULL || x->key == NULL || !SSL_SESSION_is_resumable(sess)) return 0;
  cache_put(x->ctx, x->key, sess);
  return 1; /* we keep the reference */
}

/* Server ALPN: the first of our protocols that the client offers. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  sp_tlsctx *c = (sp_tlsctx *)arg;
  (void)ssl;
  if (c->alpn != NULL &&
      SSL_select_next_proto((unsigned char **)out, outlen, c->alpn, c->alpn_len,
                            in, inlen) == OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN */
}

/* OpenSSL's reason for the last error in its queue, in words. */
static const char *ssl_reason(char *buf, size_t size) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (r != NULL) return r;
  if (e == 0) return "unknown error";
  ERR_error_string_n(e, buf, size);
  return buf;
}

/* Raises "<fname>: cannot load <what> '<path>': <reason>".  [-0, +0, v] */
static void load_error(lua_State *L, const char *fname, const char *what,
                       const char *path) {
  char buf[256];
  const char *why = ssl_reason(buf, sizeof buf);
  lua_pushfstring(L, "%s: cannot load %s '%s': %s", fname, what, path, why);
  ERR_clear_error();
  lua_error(L);
}

/* Raises unless path names a readable file (or directory if dir_ok).  Gives
** the system's reason instead of OpenSSL's "system lib". */
static void check_path(lua_State *L, const char *fname, const char *what,
                       const char *path, int dir_ok) {
  struct stat st;
  FILE *f;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    if (dir_ok) return;
    luaL_error(L, "%s: cannot load %s '%s': is a directory", fname, what, path);
  }
  f = fopen(path, "rb");
  if (f == NULL)
    luaL_error(L, "%s: cannot load %s '%s': %s", fname, what, path,
               strerror(errno));
  fclose(f);
}

/* The option `key` of the table at arg: a string or nil.  [-0, +0, v] */
static const char *opt_string(lua_State *L, int arg, const char *key) {
  const char *v = NULL;
  if (lua_isnoneornil(L, arg)) return NULL;
  if (lua_getfield(L, arg, key) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "option '%s' must be a string", key));
    v = lua_tostring(L, -1); /* kept alive by the options table */
  }
  lua_pop(L, 1);
  return v;
}

/* The boolean option `key`, or def when absent.  [-0, +0, v] */
static int opt_bool(lua_State *L, int arg, const char *key, int def) {
  int v = def;
  if (lua_isnoneornil(L, arg)) return def;
  if (lua_getfield(L, arg, key) != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "option '%s' must be a boolean", key));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* Raises for a key of the options table at arg that is not in allowed.
** [-0, +0, v] */
static void check_keys(lua_State *L, int arg, const char *const *allowed) {
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i, ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (i = 0; allowed[i] != NULL && !ok; i++)
        ok = strcmp(lua_tostring(L, -1), allowed[i]) == 0;
    if (!ok)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "unknown option '%s'",
                                    luaL_tolstring(L, -1, NULL)));
  }
}

/* Pushes opts.alpn of the table at arg in the wire format (length-prefixed
** names), or nil.  [-0, +1, v] */
static void push_alpn(lua_State *L, int arg) {
  char wire[1024];
  size_t used = 0;
  lua_Integer i, n;
  int tab;
  if (lua_isnoneornil(L, arg) || lua_getfield(L, arg, "alpn") == LUA_TNIL) {
    if (!lua_isnoneornil(L, arg)) lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  tab = lua_gettop(L);
  if (!lua_istable(L, tab))
    luaL_argerror(L, arg, "option 'alpn' must be an array of strings");
  n = (lua_Integer)luaL_len(L, tab);
  if (n < 1) luaL_argerror(L, arg, "option 'alpn' must not be empty");
  for (i = 1; i <= n; i++) {
    size_t len = 0;
    const char *p = NULL;
    if (lua_geti(L, tab, i) == LUA_TSTRING) p = lua_tolstring(L, -1, &len);
    if (p == NULL || len < 1 || len > 255)
      luaL_argerror(L, arg, "option 'alpn' must hold names of 1 to 255 bytes");
    if (used + 1 + len > sizeof wire)
      luaL_argerror(L, arg, "option 'alpn' is too long");
    wire[used++] = (char)len;
    memcpy(wire + used, p, len);
    used += len;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushlstring(L, wire, used);
}

static const char *const ctx_keys[] = {"server", "cert", "key",         "ca",
                                       "verify", "alpn", "min_version", NULL};

static int ctx_gc(lua_State *L) {
  ctx_box *box = (ctx_box *)sp_testclass(L, 1, SP_TLSCTX_MT);
  if (box != NULL && box->c != NULL) {
    sp_tlsctx_unref(box->c);
    box->c = NULL;
  }
  return 0;
}

static int ctx_tostring(lua_State *L) {
  ctx_box *box = (ctx_box *)sp_checkclass(L, 1, SP_TLSCTX_MT);
  lua_pushfstring(L, "spindle.tls.context (%s: %p)",
                  box->c && box->c->server ? "server" : "client",
                  (void *)box->c);
  return 1;
}

/* Builds a context from the options table at arg (nil: client defaults)
** and pushes it.  server < 0: opts.server decides.  Raises for bad options
** and for files that cannot be loaded, naming the file.  [-0, +1, v] */
static sp_tlsctx *ctx_build(lua_State *L, int arg, const char *fname,
                            int server) {
  ctx_box *box;
  sp_tlsctx *c;
  SSL_CTX *ctx;
  const char *cert, *key, *ca, *minv;
  int verify, minver = TLS1_2_VERSION;
  arg = lua_absindex(L, arg);
  if (server < 0) server = opt_bool(L, arg, "server", 0);
  cert = opt_string(L, arg, "cert");
  key = opt_string(L, arg, "key");
  ca = opt_string(L, arg, "ca");
  minv = opt_string(L, arg, "min_version");
  verify = opt_bool(L, arg, "verify", !server);
  if (minv != NULL) {
    if (strcmp(minv, "1.3") == 0)
      minver = TLS1_3_VERSION;
    else if (strcmp(minv, "1.2") != 0)
      luaL_argerror(L, arg, "option 'min_version' must be \"1.2\" or \"1.3\"");
  }
  if (server && (cert == NULL || key == NULL))
    luaL_argerror(L, arg, "a server context needs 'cert' and 'key'");
  if ((cert == NULL) != (key == NULL))
    luaL_argerror(L, arg, "'cert' and 'key' go together");
  push_alpn(L, arg); /* for the server's select callback */
  box = (ctx_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->c = NULL;
  luaL_setmetatable(L, SP_TLSCTX_MT);
  c = (sp_tlsctx *)calloc(1, sizeof *c);
  if (c == NULL) luaL_error(L, "not enough memory");
  c->refs = 1;
  c->server = server;
  box->c = c; /* from here on, __gc frees whatever was built */
  c->ctx = ctx = SSL_CTX_new(TLS_method());
  if (ctx == NULL) load_error(L, fname, "OpenSSL", "context");
  c->bio = bio_method_new();
  if (c->bio == NULL) load_error(L, fname, "OpenSSL", "context");
  SSL_CTX_set_min_proto_version(ctx, minver);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_COMPRESSION);
  /* A server sends the chain its certificate file holds, as it is:
  ** without NO_AUTO_CHAIN OpenSSL would build the chain again from the
  ** trust store at every handshake (a directory scan of the system store
  ** per connection -- bench/tls/README). */
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            (server ? SSL_MODE_NO_AUTO_CHAIN : 0));
  if (cert != NULL) {
    check_path(L, fname, "certificate", cert, 0);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
      load_error(L, fname, "certificate", cert);
    check_path(L, fname, "key", key, 0);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
      load_error(L, fname, "key", key);
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      luaL_error(L, "%s: key '%s' does not match certificate '%s'", fname, key,
                 cert);
    }
  }
  if (ca != NULL) {
    struct stat st;
    int dir;
    check_path(L, fname, "CA", ca, 1);
    dir = stat(ca, &st) == 0 && S_ISDIR(st.st_mode);
    if (SSL_CTX_load_verify_locations(ctx, dir ? NULL : ca, dir ? ca : NULL) !=
        1)
      load_error(L, fname, "CA", ca);
    if (server && !dir) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
      if (names != NULL) SSL_CTX_set_client_CA_list(ctx, names);
    }
  } else if ((!server || verify) && SSL_CTX_set_default_verify_paths(ctx) != 1)
    ERR_clear_error(); /* no system store: verification will say so; a
                       ** server that verifies nobody needs none */
  if (!verify)
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  else
    SSL_CTX_set_verify(ctx,
                       server
                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                           : SSL_VERIFY_PEER,
                       NULL);
  if (!lua_isnil(L, -2)) {
    size_t len;
    const char *w = lua_tolstring(L, -2, &len);
    if (server) {
      c->alpn = (unsigned char *)malloc(len);
      if (c->alpn == NULL) luaL_error(L, "not enough memory");
      memcpy(c->alpn, w, len);
      c->alpn_len = (unsigned)len;
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select, c);
    } else if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)w,
                                       (unsigned)len) != 0)
      luaL_error(L, "not enough memory");
  }
  if (server) {
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"spindle", 7);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
  }
  lua_remove(L, -2); /* the alpn string */
  return c;
}

/* tls.context(opts) */
static int l_context(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  check_keys(L, 1, ctx_keys);
  lua_settop(L, 1);
  ctx_build(L, 1, "context", -1);
  return 1;
}

static sp_tlsctx *ctx_test(lua_State *L, int idx) {
  ctx_box *box = (ctx_box *)sp_testclass(L, idx, SP_TLSCTX_MT);
  return box ? box->c : NULL;
}

static char default_ctx_key; /* registry: the shared client context */

/* Pushes the context for a connection: opts.context, or one built from
** the context options in opts, or the shared default client context.
** server: which kind it must be.  [-0, +1, v] */
static sp_tlsctx *push_ctx(lua_State *L, int arg, const char *fname,
                           int server) {
  static const char *const inline_keys[] = {"cert",   "key",         "ca",
                                            "verify", "min_version", NULL};
  sp_tlsctx *c;
  int i;
  if (!lua_isnoneornil(L, arg) && lua_getfield(L, arg, "context") != LUA_TNIL) {
    c = ctx_test(L, -1);
    if (c == NULL)
      luaL_argerror(L, arg, "option 'context' must be a tls.context");
    if (c->server != server)
      luaL_argerror(L, arg,
                    server ? "option 'context' must be a server context"
                           : "option 'context' must be a client context");
    return c;
  }
  if (!lua_isnoneornil(L, arg)) lua_pop(L, 1);
  for (i = 0; !lua_isnoneornil(L, arg) && inline_keys[i] != NULL; i++) {
    int present = lua_getfield(L, arg, inline_keys[i]) != LUA_TNIL;
    lua_pop(L, 1);
    if (present) return ctx_build(L, arg, fname, server);
  }
  if (server)
    luaL_argerror(L, arg,
                  "a server needs option 'context' (or 'cert' "
                  "and 'key')");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &default_ctx_key) != LUA_TNIL)
    return ctx_test(L, -1);
  lua_pop(L, 1);
  lua_pushnil(L); /* no options: the defaults */
  c = ctx_build(L, -1, fname, 0);
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &default_ctx_key);
  return c;
}

/* opts.tls of a listener's options.  [-0, +0, v] */
sp_tlsctx *sp_tls_opt_server(lua_State *L, int arg) {
  sp_tlsctx *c;
  if (lua_isnoneornil(L, arg) || !lua_istable(L, arg)) return NULL;
  if (lua_getfield(L, arg, "tls") == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  c = ctx_test(L, -1);
  lua_pop(L, 1); /* the options table keeps it alive */
  if (c == NULL || !c->server)
    luaL_argerror(L, arg, "option 'tls' must be a server tls.context");
  return c;
}

/* ---- the engine ------------------------------------------------------- */

static void timer_freed(uv_handle_t *h) { free(h); }

static void timer_close(sp_tls *x) {
  if (x->timer != NULL) {
    uv_close((uv_handle_t *)x->timer, timer_freed);
    x->timer = NULL;
  }
}

/* The socket failed (code): nothing more can be sent; a handshake still
** running has failed. */
static void socket_fail(sp_stream *s, int code) {
  sp_tls *x = s->tls;
  if (x->sock_err == 0) x->sock_err = code;
  x->out_len = 0;
  if (s->werr == 0) s->werr = code;
  if (x->hs == HS_RUNNING || x->hs == HS_NONE) {
    x->hs = HS_FAILED;
    x->fatal = 1;
    if (s->rerr == 0) s->rerr = code;
  }
}

static void tls_write_cb(uv_write_t *req, int status) {
  sp_stream *s = (sp_stream *)req->handle->data;
  sp_tls *x = s->tls;
  sp_stream_wreq_free(s, req);
  x->flying = 0;
  if (s->closing) return;
  if (status < 0) socket_fail(s, status);
  advance(s);
}

/* Hands the ciphertext in out to the kernel: at once if it takes it, else
** through uv_write (out and fly swap, so out can fill meanwhile). */
static void tls_flush(sp_stream *s) {
  sp_tls *x = s->tls;
  uv_write_t *req;
  uv_buf_t b;
  size_t done;
  char *p;
  int r;
  if (x->flying || x->out_len == 0 || s->closing) return;
  if (x->sock_err) {
    x->out_len = 0;
    return;
  }
  b = uv_buf_init(x->out, (unsigned)x->out_len);
  r = uv_try_write(s->h, &b, 1);
  if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
  if (r < 0) {
    socket_fail(s, r);
    return;
  }
  done = (size_t)r;
  if (done == x->out_len) {
    x->out_len = 0;
    if (x->out_cap > OUT_KEEP) { /* a burst is over: give it back */
      free(x->out);
      x->out = NULL;
      x->out_cap = 0;
    }
    return;
  }
  if ((req = sp_stream_wreq(s)) == NULL) { /* the rest cannot go */
    socket_fail(s, UV_ENOMEM);
    return;
  }
  p = x->fly; /* swap the buffers */
  x->fly = x->out;
  x->out = p;
  done = x->fly_cap;
  x->fly_cap = x->out_cap;
  x->out_cap = done;
  done = (size_t)r;
  b = uv_buf_init(x->fly + done, (unsigned)(x->out_len - done));
  x->out_len = 0;
  r = uv_write(req, s->h, &b, 1, tls_write_cb);
  if (r < 0) {
    sp_stream_wreq_free(s, req);
    socket_fail(s, r);
    return;
  }
  x->flying = 1;
}

/* A TLS failure: remember why, in words, and make it sticky.  e is
** SSL_get_error's verdict.  The alert OpenSSL queued is still sent. */
static void tls_fail(sp_stream *s, int e) {
  sp_tls *x = s->tls;
  unsigned long code = ERR_peek_error();
  int lib = ERR_GET_LIB(code), reason = ERR_GET_REASON(code);
  int err = SP_ETLS;
  long vr = SSL_get_verify_result(x->ssl);
  if (x->fatal) return;
  if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      vr != X509_V_OK) {
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH)
      snprintf(x->err, sizeof x->err, "host name mismatch");
    else
      snprintf(x->err, sizeof x->err, "certificate verify failed: %s",
               X509_verify_cert_error_string(vr));
  } else if (code != 0) {
    char buf[160];
    unsigned long last = ERR_peek_last_error();
    const char *r = ERR_reason_error_string(code);
    if (r == NULL && last != code) r = ERR_reason_error_string(last);
    if (r == NULL) {
      ERR_error_string_n(code, buf, sizeof buf);
      r = buf;
    }
    snprintf(x->err, sizeof x->err, "%s", r);
  } else if (x->in_err) {
    err = x->in_err; /* the socket failed: report it as such */
  } else if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
    snprintf(x->err, sizeof x->err,
             x->hs == HS_DONE ? "connection closed"
                              : "connection closed during handshake");
  } else {
    snprintf(x->err, sizeof x->err, "TLS error %d", e);
  }
  ERR_clear_error();
  x->fatal = 1;
  if (x->hs != HS_DONE) x->hs = HS_FAILED;
  if (s->rerr == 0) s->rerr = err;
  if (s->werr == 0) s->werr = err;
  tls_flush(s); /* the alert */
}

static void hs_step(sp_stream *s) {
  sp_tls *x = s->tls;
  int r, e;
  ERR_clear_error();
  r = SSL_do_handshake(x->ssl);
  if (r == 1) {
    x->hs = HS_DONE;
    timer_close(x);
    return;
  }
  e = SSL_get_error(x->ssl, r);
  if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
      !(x->cin_len == 0 && (x->in_eof || x->in_err)))
    return;
  tls_fail(s, e);
}

/* Decrypts what cin holds into the plaintext buffer, up to its bound. */
static void pump(sp_stream *s) {
  sp_tls *x = s->tls;
  while (!s->eof && !s->rerr && s->rlen < s->rlimit) {
    size_t len;
    char *p = sp_stream_rreserve(s, TLS_PLAIN_MAX, &len);
    int n, e;
    if (p == NULL) {
      s->rerr = UV_ENOMEM;
      break;
    }
    if (len > INT_MAX) len = INT_MAX;
    ERR_clear_error();
    n = SSL_read(x->ssl, p, (int)len);
    if (n > 0) {
      sp_stream_rgot(s, (size_t)n);
      continue;
    }
    e = SSL_get_error(x->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) the TCP end of
      ** file without one: eof either way, like a plain stream; a reset
      ** stays a reset */
      ERR_clear_error();
      if (x->in_err && !x->close_notify)
        s->rerr = x->in_err;
      else
        s->eof = 1;
      break;
    }
    tls_fail(s, e);
    break;
  }
  sp_stream_rtrim(s); /* a buffer that got no plaintext goes back */
}

/* Encrypts the pending write, at most OUT_HIGH ahead of the kernel, and
** reports its end once the kernel took every byte of it. */
/* Skips the plaintext pieces already written; 1 if some is left. */
static int plain_left(sp_tls *x) {
  while (x->pi < x->pn && x->poff == x->pb[x->pi].len) {
    x->pi++;
    x->poff = 0;
  }
  return x->pi < x->pn;
}

/* Encrypts the pending write, at most OUT_HIGH ahead of the kernel, and
** reports its end once the kernel took every byte of it. */
static void drive_write(sp_stream *s) {
  sp_tls *x = s->tls;
  int stalled = 0;
  if (!x->writing) return;
  for (;;) { /* encrypt a batch, flush it; again while the kernel takes it */
    while (!s->werr && x->hs == HS_DONE && x->out_len < OUT_HIGH &&
           plain_left(x)) {
      uv_buf_t *b = &x->pb[x->pi];
      size_t left = b->len - x->poff;
      int n, e;
      if (left > PLAIN_CHUNK) left = PLAIN_CHUNK;
      ERR_clear_error();
      n = SSL_write(x->ssl, b->base + x->poff, (int)left);
      if (n > 0) {
        x->poff += (size_t)n;
        continue;
      }
      e = SSL_get_error(x->ssl, n);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) tls_fail(s, e);
      stalled = 1;
      break;
    }
    tls_flush(s);
    if (stalled || x->flying || x->out_len > 0 || s->werr || x->hs != HS_DONE ||
        !plain_left(x))
      break;
  }
  if (s->werr || x->hs == HS_FAILED ||
      (!plain_left(x) && x->out_len == 0 && !x->flying)) {
    x->writing = 0;
    x->pn = 0;
    sp_stream_write_done(s, s->werr ? s->werr : (x->fatal ? SP_ETLS : 0));
  }
}

int sp_tls_wants_input(sp_stream *s) {
  sp_tls *x = s->tls;
  if (x->in_eof || x->in_err || x->fatal || s->closing) return 0;
  if (x->cin_len >= CIN_CAP || x->out_len >= OUT_LIMIT) return 0;
  if (x->hs == HS_RUNNING) return 1;
  if (x->hs != HS_DONE || s->eof || s->rerr) return 0;
  if (s->rlen >= s->rlimit && x->cin_len >= TLS_RECORD) return 0;
  return s->reader != NULL || s->reading;
}

static void wake_hs(sp_tls *x) {
  sp_task *t = x->hs_waiter;
  if (t != NULL && (x->hs == HS_DONE || x->hs == HS_FAILED || x->timedout)) {
    x->hs_waiter = NULL;
    sp_stream_wake(t);
  }
}

static void advance(sp_stream *s) {
  sp_tls *x = s->tls;
  if (x->hs == HS_RUNNING && !x->fatal) hs_step(s);
  if (x->hs == HS_DONE) pump(s);
  drive_write(s);
  tls_flush(s);
  wake_hs(x);
  sp_stream_wake_reader(s);
  if (s->closing) return;
  if (sp_tls_wants_input(s))
    sp_stream_read_start(s);
  else
    sp_stream_read_stop(s);
  if (!s->reading && x->cin_len == 0 && x->cin != NULL) { /* idle */
    free(x->cin);
    x->cin = NULL;
    x->cin_cap = x->cin_off = 0;
  }
}

void sp_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sp_tls *x = ((sp_stream *)h->data)->tls;
  (void)suggested;
  if (x->cin == NULL) {
    x->cin = (char *)malloc(CIN_CAP);
    if (x->cin == NULL) {
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
      return;
    }
    x->cin_cap = CIN_CAP;
    x->cin_off = 0;
  }
  if (x->cin_off > 0) {
    memmove(x->cin, x->cin + x->cin_off, x->cin_len);
    x->cin_off = 0;
  }
  *buf = uv_buf_init(x->cin + x->cin_len, (unsigned)(x->cin_cap - x->cin_len));
}

void sp_tls_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  sp_stream *s = (sp_stream *)h->data;
  sp_tls *x = s->tls;
  (void)buf;
  if (nread > 0)
    x->cin_len += (size_t)nread;
  else if (nread == UV_EOF) {
    x->in_err = sp_stream_eof_error(h);
    x->in_eof = x->in_err == 0;
  } else if (nread == UV_ENOBUFS && x->cin != NULL && x->cin_len > 0) {
    /* cin is full: advance() stops reading */
  } else if (nread < 0)
    x->in_err = (int)nread;
  advance(s);
}

void sp_tls_before_read(sp_stream *s) {
  sp_tls *x = s->tls;
  if (x->hs == HS_NONE) x->hs = HS_RUNNING;
  advance(s);
}

int sp_tls_write(sp_stream *s, const uv_buf_t *bufs, int nb) {
  sp_tls *x = s->tls;
  if (x->fatal) return s->werr ? s->werr : SP_ETLS;
  if (nb > x->pcap) {
    uv_buf_t *p = (uv_buf_t *)realloc(x->pb, sizeof *p * (size_t)nb);
    if (p == NULL) return UV_ENOMEM;
    x->pb = p;
    x->pcap = nb;
  }
  memcpy(x->pb, bufs, sizeof *bufs * (size_t)nb);
  x->pn = nb;
  x->pi = 0;
  x->poff = 0;
  x->writing = 1;
  s->wpending = 1;
  if (x->hs == HS_NONE) x->hs = HS_RUNNING; /* a lazy server handshake */
  advance(s);
  if (x->writing) return 1;
  return s->wstatus < 0 ? s->wstatus : 0;
}

int sp_tls_shutdown(sp_stream *s) {
  sp_tls *x = s->tls;
  if (!x->shut_sent) {
    x->shut_sent = 1;
    if (x->hs == HS_DONE && !x->fatal) {
      ERR_clear_error();
      SSL_shutdown(x->ssl); /* queues close_notify */
      ERR_clear_error();
    }
    tls_flush(s);
  }
  if (x->out_len == 0 && !x->flying) return 0;
  x->pn = x->pi = 0; /* a write of no plaintext: ends once all is sent */
  x->writing = 1;
  s->wpending = 1;
  return 1;
}

void sp_tls_close(sp_stream *s) {
  sp_tls *x = s->tls;
  sp_task *t = x->hs_waiter;
  x->hs_waiter = NULL;
  sp_stream_wake(t); /* it finds the stream closed */
  timer_close(x);
  if (x->hs == HS_DONE && !x->fatal && !x->shut_sent && !s->reset &&
      !x->flying && !x->sock_err) {
    uv_buf_t b;
    x->shut_sent = 1;
    ERR_clear_error();
    SSL_shutdown(x->ssl); /* close_notify; the peer's is not waited for */
    ERR_clear_error();
    b = uv_buf_init(x->out, (unsigned)x->out_len);
    if (x->out_len > 0) uv_try_write(s->h, &b, 1);
  }
  x->out_len = 0;
  x->writing = 0;
}

void sp_tls_free(sp_tls *x) {
  SSL_free(x->ssl); /* and the BIO */
  sp_tlsctx_unref(x->ctx);
  free(x->cin);
  free(x->out);
  free(x->fly);
  free(x->pb);
  free(x->key);
  free(x);
}

int sp_tls_push_error(lua_State *L, sp_stream *s) {
  sp_tls *x = s->tls;
  lua_pushnil(L);
  lua_pushstring(L, x != NULL && x->err[0] ? x->err : "tls failure");
  lua_pushliteral(L, "ETLS");
  return 3;
}

int sp_tls_flying(sp_stream *s) { return s->tls->flying; }

const char *sp_tls_phase(sp_stream *s) {
  return s->tls->hs == HS_RUNNING ? "handshake" : NULL;
}

/* Notes the peer's close_notify (for tls_info().close_notify). */
static void info_cb(const SSL *ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT &&
      (ret & 0xff) == SSL_AD_CLOSE_NOTIFY) {
    sp_tls *x = (sp_tls *)SSL_get_app_data(ssl);
    if (x != NULL) x->close_notify = 1;
  }
}

/* Makes s a TLS stream of context c.  NULL when out of memory. */
static sp_tls *tls_new(sp_stream *s, sp_tlsctx *c, int server) {
  sp_tls *x;
  BIO *bio;
  x = (sp_tls *)calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->ssl = SSL_new(c->ctx);
  bio = BIO_new(c->bio);
  if (x->ssl == NULL || bio == NULL) {
    SSL_free(x->ssl);
    BIO_free(bio);
    free(x);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_data(bio, x);
  SSL_set_bio(x->ssl, bio, bio);
  SSL_set_app_data(x->ssl, x);
  SSL_set_info_callback(x->ssl, info_cb);
  if (server)
    SSL_set_accept_state(x->ssl);
  else
    SSL_set_connect_state(x->ssl);
  x->ctx = c;
  sp_tlsctx_ref(c);
  x->server = server;
  s->tls = x;
  return x;
}

int sp_tls_attach_server(sp_stream *s, sp_tlsctx *c) {
  return tls_new(s, c, 1) != NULL ? 0 : UV_ENOMEM;
}

/* Client settings: SNI and the name verified (servername, may be NULL),
** ALPN (wire format, may be NULL), and a cached session for key.  0 or
** UV_ENOMEM. */
static int client_setup(sp_tls *x, const char *servername, const char *alpn,
                        size_t alpn_len, const char *key) {
  SSL_SESSION *sess;
  if (servername != NULL && servername[0] != '\0') {
    unsigned char addr[16];
    if (uv_inet_pton(AF_INET, servername, addr) == 0 ||
        uv_inet_pton(AF_INET6, servername, addr) == 0) {
      /* an address: no SNI (RFC 6066), the certificate's IP is checked */
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(x->ssl), servername) !=
          1)
        return UV_ENOMEM;
    } else if (SSL_set_tlsext_host_name(x->ssl, servername) != 1 ||
               SSL_set1_host(x->ssl, servername) != 1)
      return UV_ENOMEM;
  }
  if (alpn != NULL && SSL_set_alpn_protos(x->ssl, (const unsigned char *)alpn,
                                          (unsigned)alpn_len) != 0)
    return UV_ENOMEM;
  x->key = (char *)malloc(strlen(key) + 1);
  if (x->key == NULL) return UV_ENOMEM;
  strcpy(x->key, key);
  sess = cache_take(x->ctx, key);
  if (sess != NULL) {
    SSL_set_session(x->ssl, sess);
    SSL_SESSION_free(sess);
  }
  ERR_clear_error();
  return 0;
}

static void timer_cb(uv_timer_t *h) {
  sp_stream *s = (sp_stream *)h->data;
  sp_tls *x = s->tls;
  x->timedout = 1;
  timer_close(x);
  wake_hs(x);
}

/* Bounds the handshake to secs (for connect and wrap).  0 or an error. */
static int timer_start(sp_stream *s, double secs) {
  sp_tls *x = s->tls;
  uv_timer_t *tm = (uv_timer_t *)malloc(sizeof *tm);
  if (tm == NULL) return UV_ENOMEM;
  uv_timer_init(s->h->loop, tm);
  tm->data = s;
  x->timer = tm;
  uv_timer_start(tm, timer_cb, (uint64_t)(secs * 1000 + 0.999), 0);
  return 0;
}

/* ---- the handshake await ------------------------------------------------ */

static int hs_k(lua_State *L, int status, lua_KContext ctx);
static void describe_hs(sp_task *t, char *buf, size_t size);
static void hs_undo(sp_task *t);

static const sp_waitops hs_wait_ops = {"tls handshake", hs_undo, describe_hs};

static void hs_undo(sp_task *t) {
  sp_stream *s = (sp_stream *)t->w.obj;
  sp_tls *x = s->tls;
  if (x->hs_waiter == t) x->hs_waiter = NULL;
  if (x->hs_own) sp_stream_close(s); /* connect/wrap: nobody else has it */
}

/* The end of a handshake await; the stream's box is on top.  own: the
** call made the stream (connect, wrap), which it returns, or closes on
** failure; else s:handshake(), which returns true.  [-0, +(1|3), m] */
static int hs_result(lua_State *L, sp_stream *s, int own) {
  sp_tls *x = s->tls;
  int code = 0, n;
  if (x->hs != HS_DONE)
    code = x->timedout ? UV_ETIMEDOUT : (s->rerr ? s->rerr : SP_ETLS);
  if (code == 0) {
    timer_close(x);
    if (!own) lua_pushboolean(L, 1);
    return 1;
  }
  n = code == SP_ETLS ? sp_tls_push_error(L, s) : sp_io_fail(L, code);
  if (own) sp_stream_close(s);
  return n;
}

static int hs_wait(lua_State *L, sp_stream *s, sp_task *t, int own) {
  sp_tls *x = s->tls;
  if (x->hs == HS_NONE) x->hs = HS_RUNNING;
  advance(s);
  if (x->hs == HS_RUNNING && !x->timedout) {
    x->hs_waiter = t;
    x->hs_own = own;
    return sp_await_block(L, t, &hs_wait_ops, s, hs_k, (lua_KContext)t | own);
  }
  return hs_result(L, s, own);
}

static int hs_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)(ctx & ~(lua_KContext)1);
  int own = (int)(ctx & 1);
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, -1);
  sp_stream *s;
  (void)status;
  sp_resumed(L, t); /* aborted: the undo ran (and closed an own stream) */
  s = box->s;
  if (s == NULL) return sp_io_closed(L, "ECANCELED");
  if (s->tls->hs_waiter == t) s->tls->hs_waiter = NULL;
  return hs_wait(L, s, t, own);
}

/* The stream box at 1, open and in the current task's runtime. */
static sp_stream *check_stream(lua_State *L, sp_task *t) {
  sp_sbox *box = (sp_sbox *)sp_checkclass(L, 1, SP_STREAM_MT);
  if (box->s != NULL && box->s->node.rt != t->rt)
    luaL_error(L, "the stream belongs to another runtime");
  return box->s;
}

/* s:handshake() */
int sp_tls_m_handshake(lua_State *L) {
  sp_stream *s;
  sp_task *t;
  sp_checkclass(L, 1, SP_STREAM_MT);
  t = sp_await_check(L, "handshake");
  s = check_stream(L, t);
  lua_settop(L, 1);
  if (s == NULL) return sp_io_closed(L, "EBADF");
  if (s->tls == NULL) luaL_error(L, "handshake: not a TLS stream");
  if (s->tls->hs_waiter != NULL)
    luaL_error(L, "handshake: socket busy (another task is waiting for "
                  "this handshake)");
  if (s->tls->hs == HS_DONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return hs_wait(L, s, t, 0);
}

/* ---- tls_info ------------------------------------------------------------ */

/* Pushes an X509 name as RFC 2253 text.  [-0, +1, m] */
static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long len;
  if (b == NULL || X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
    BIO_free(b);
    ERR_clear_error();
    lua_pushliteral(L, "");
    return;
  }
  len = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)len);
  BIO_free(b);
}

/* An ASN1 time as seconds since 1970 (UTC).  [-0, +1, -] */
static void push_time(lua_State *L, const ASN1_TIME *tm) {
  struct tm t;
  memset(&t, 0, sizeof t);
  if (tm != NULL && ASN1_TIME_to_tm(tm, &t) == 1)
    lua_pushinteger(L, (lua_Integer)timegm(&t));
  else
    lua_pushnil(L);
}

/* Pushes the certificate's summary table.  [-0, +1, m] */
static void push_cert(lua_State *L, X509 *cert) {
  GENERAL_NAMES *names;
  int i, n = 0;
  lua_createtable(L, 0, 5);
  push_name(L, X509_get_subject_name(cert));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(cert));
  lua_setfield(L, -2, "issuer");
  push_time(L, X509_get0_notBefore(cert));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(cert));
  lua_setfield(L, -2, "not_after");
  lua_newtable(L);
  names =
      (GENERAL_NAMES *)X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
      ASN1_IA5STRING *v = g->d.ia5;
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(v),
                      (size_t)ASN1_STRING_length(v));
    } else if (g->type == GEN_IPADD) {
      char ip[64];
      int len = ASN1_STRING_length(g->d.ip);
      const unsigned char *d = ASN1_STRING_get0_data(g->d.ip);
      if ((len != 4 && len != 16) ||
          uv_inet_ntop(len == 4 ? AF_INET : AF_INET6, d, ip, sizeof ip) != 0)
        continue;
      lua_pushstring(L, ip);
    } else
      continue;
    lua_rawseti(L, -2, ++n);
  }
  GENERAL_NAMES_free(names);
  ERR_clear_error();
  lua_setfield(L, -2, "san");
}

/* s:tls_info() */
int sp_tls_m_info(lua_State *L) {
  sp_sbox *box = (sp_sbox *)sp_checkclass(L, 1, SP_STREAM_MT);
  sp_stream *s = box->s;
  sp_tls *x;
  const unsigned char *alpn;
  unsigned alen;
  const char *sn;
  X509 *peer;
  if (s == NULL) return sp_io_closed(L, "EBADF");
  x = s->tls;
  if (x == NULL || x->hs != HS_DONE) { /* plain, or no handshake yet */
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 8);
  lua_pushstring(L, SSL_get_version(x->ssl));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, SSL_get_cipher_name(x->ssl));
  lua_setfield(L, -2, "cipher");
  SSL_get0_alpn_selected(x->ssl, &alpn, &alen);
  if (alen > 0) {
    lua_pushlstring(L, (const char *)alpn, alen);
    lua_setfield(L, -2, "alpn");
  }
  sn = SSL_get_servername(x->ssl, TLSEXT_NAMETYPE_host_name);
  if (sn != NULL) {
    lua_pushstring(L, sn);
    lua_setfield(L, -2, "servername");
  }
  lua_pushboolean(L, SSL_session_reused(x->ssl));
  lua_setfield(L, -2, "resumed");
  lua_pushboolean(L, x->close_notify);
  lua_setfield(L, -2, "close_notify");
  peer = SSL_get0_peer_certificate(x->ssl);
  if (peer != NULL) {
    push_cert(L, peer);
    lua_setfield(L, -2, "peer_certificate");
  }
  return 1;
}

/* ---- tls.connect and tls.wrap -------------------------------------------- */

static const char *const connect_keys[] = {
    "timeout", "context", "servername", "alpn",        "cert",
    "key",     "ca",      "verify",     "min_version", NULL};
static const char *const wrap_keys[] = {
    "server", "timeout", "context", "servername",  "alpn", "cert",
    "key",    "ca",      "verify",  "min_version", NULL};

/* opts.servername: a string, or false for none; def when absent.  Pushes
** the result (string or nil).  [-0, +1, v] */
static void push_servername(lua_State *L, int arg, const char *def) {
  int ty =
      lua_isnoneornil(L, arg) ? LUA_TNIL : lua_getfield(L, arg, "servername");
  if (ty == LUA_TNIL) {
    if (!lua_isnoneornil(L, arg)) lua_pop(L, 1);
    if (def != NULL)
      lua_pushstring(L, def);
    else
      lua_pushnil(L);
    return;
  }
  if (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  if (ty != LUA_TSTRING)
    luaL_argerror(L, arg, "option 'servername' must be a string or false");
}

static int is_numeric(const char *host) {
  unsigned char addr[16];
  return uv_inet_pton(AF_INET, host, addr) == 0 ||
         uv_inet_pton(AF_INET6, host, addr) == 0;
}

/* Makes the stream in box at idx a TLS client and starts the handshake
** await.  Stack: the options at arg, servername at sn, alpn at ap.  The
** key names the peer for the session cache.  [-0, +(1|3), e] */
static int client_start(lua_State *L, sp_task *t, int idx, sp_tlsctx *c, int sn,
                        int ap, const char *key, double secs) {
  sp_sbox *box = (sp_sbox *)lua_touserdata(L, idx);
  sp_stream *s = box->s;
  sp_tls *x;
  size_t alen = 0;
  const char *alpn = lua_tolstring(L, ap, &alen);
  int r;
  if (s == NULL) return sp_io_closed(L, "ECANCELED");
  x = tls_new(s, c, 0);
  r = x == NULL ? UV_ENOMEM
                : client_setup(x, lua_tostring(L, sn), alpn, alen, key);
  if (r == 0 && secs > 0) r = timer_start(s, secs);
  if (r < 0) {
    sp_stream_close(s);
    return sp_io_fail(L, r);
  }
  lua_settop(L, idx);
  return hs_wait(L, s, t, 1);
}

/* Stack: host, port, opts, ctx, servername, alpn, start, s | nil, msg,
** code.  ctx: the task. */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  double secs = sp_opt_timeout(L, 3), left = 0;
  char key[600];
  (void)status;
  if (lua_isnil(L, 8)) return 3;
  if (secs > 0) {
    left = secs - ((double)uv_hrtime() - lua_tonumber(L, 7)) / 1e9;
    if (left <= 0) {
      sp_stream_close(sp_stream_test(L, 8));
      return sp_io_fail(L, UV_ETIMEDOUT);
    }
  }
  lua_settop(L, 8);
  snprintf(key, sizeof key, "%s/%s:%d",
           lua_isnil(L, 5) ? "" : lua_tostring(L, 5), lua_tostring(L, 1),
           (int)lua_tointeger(L, 2));
  return client_start(L, t, 8, ctx_test(L, 4), 5, 6, key, left);
}

static int connect_tcp(lua_State *L) {
  return sp_connect_start(L, lua_tostring(L, 1), (int)lua_tointeger(L, 2), NULL,
                          lua_tonumber(L, 3));
}

/* tls.connect(host, port, [opts]) */
static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  double secs;
  sp_task *t;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0..65535");
  check_keys(L, 3, connect_keys);
  secs = sp_opt_timeout(L, 3);
  t = sp_await_check(L, "connect");
  lua_settop(L, 3);
  push_ctx(L, 3, "connect", 0);                          /* 4 */
  push_servername(L, 3, is_numeric(host) ? NULL : host); /* 5 */
  push_alpn(L, 3);                                       /* 6 */
  lua_pushnumber(L, (lua_Number)uv_hrtime());            /* 7 */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, connect_tcp, 1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushnumber(L, secs);
  lua_callk(L, 3, 3, (lua_KContext)t, connect_k);
  return connect_k(L, LUA_OK, (lua_KContext)t);
}

/* The bytes a plain stream read ahead are the start of the handshake;
** its end of file or error too.  0 or UV_ENOMEM. */
static int take_buffered(sp_stream *s) {
  sp_tls *x = s->tls;
  if (s->rlen > 0) {
    size_t cap = s->rlen > CIN_CAP ? s->rlen : CIN_CAP;
    x->cin = (char *)malloc(cap);
    if (x->cin == NULL) return UV_ENOMEM;
    x->cin_cap = cap;
    memcpy(x->cin, s->rbuf + s->roff, s->rlen);
    x->cin_len = s->rlen;
    s->roff = s->rlen = s->rscan = 0;
    sp_stream_rtrim(s);
  }
  if (s->rerr) x->in_err = s->rerr;
  if (s->eof && !s->rerr) x->in_eof = 1;
  s->eof = 0;
  s->rerr = 0;
  sp_stream_read_stop(s); /* restarted with the TLS callbacks */
  return 0;
}

/* tls.wrap(stream, [opts]) */
static int l_wrap(lua_State *L) {
  sp_stream *s;
  sp_tlsctx *c;
  sp_tls *x;
  sp_task *t;
  double secs;
  int server, r;
  sp_checkclass(L, 1, SP_STREAM_MT);
  check_keys(L, 2, wrap_keys);
  server = opt_bool(L, 2, "server", 0);
  secs = sp_opt_timeout(L, 2);
  t = sp_await_check(L, "wrap");
  lua_settop(L, 2);
  c = push_ctx(L, 2, "wrap", server); /* 3 */
  push_servername(L, 2, NULL);        /* 4 */
  push_alpn(L, 2);                    /* 5 */
  if (server && !(lua_isnil(L, 4) && lua_isnil(L, 5)))
    luaL_argerror(L, 2,
                  "options 'servername' and 'alpn' are for clients "
                  "(a server's ALPN comes from its context)");
  s = check_stream(L, t);
  if (s == NULL) return sp_io_closed(L, "EBADF");
  if (s->tls != NULL) luaL_argerror(L, 1, "already a TLS stream");
  if (s->reader != NULL || s->writer != NULL)
    luaL_error(L, "wrap: socket busy (another task is using this stream)");
  x = tls_new(s, c, server);
  r = x == NULL ? UV_ENOMEM : 0;
  if (r == 0 && !server) {
    char key[600], addr[128] = "";
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    size_t alen = 0;
    const char *ap = lua_tolstring(L, 5, &alen);
    if (s->h->type == UV_TCP &&
        uv_tcp_getpeername((uv_tcp_t *)s->h, (struct sockaddr *)&ss, &len) == 0)
      sp_format_sockaddr((struct sockaddr *)&ss, addr, sizeof addr);
    snprintf(key, sizeof key, "%s/%s",
             lua_isnil(L, 4) ? "" : lua_tostring(L, 4), addr);
    r = client_setup(x, lua_tostring(L, 4), ap, alen, key);
  }
  if (r == 0 && secs > 0) r = timer_start(s, secs);
  if (r == 0) r = take_buffered(s);
  if (r < 0) {
    sp_stream_close(s);
    return sp_io_fail(L, r);
  }
  lua_settop(L, 1);
  return hs_wait(L, s, t, 1);
}

/* spindle.dump(): "tls handshake 127.0.0.1:4433".  No Lua. */
static void describe_hs(sp_task *t, char *buf, size_t size) {
  sp_stream *s = (sp_stream *)t->w.obj;
  char addr[128] = "";
  if (s->h->type == UV_TCP) {
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getpeername((uv_tcp_t *)s->h, (struct sockaddr *)&ss, &len) == 0)
      sp_format_sockaddr((struct sockaddr *)&ss, addr, sizeof addr);
  }
  snprintf(buf, size, "tls handshake%s%s", addr[0] ? " " : "", addr);
}

int sp_tls_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"context", l_context},
                                 {"connect", l_connect},
                                 {"wrap", l_wrap},
                                 {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", ctx_gc}, {"__tostring", ctx_tostring}, {NULL, NULL}};
  sp_newclass(L, SP_TLSCTX_MT, NULL, meta);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_newtable(L);
  sp_setfuncs(L, fns);
  lua_setfield(L, -2, "tls");
  return 0;
}
