/*
** http_server.c -- the C half of spindle.http's server (docs/http.md,
** lua/spindle/http_server.lua): request heads and chunked bodies are
** parsed here, by the strict parser of http_parse.c, not in Lua.
**
**   spindle._http_head(max_header, max_headers) -> hp
**     hp:feed(bytes) -> nil                 need more
**                    -> req, rest           a head; rest: the bytes after it
**                    -> false, status, why  malformed (400, 431, 501, 505)
**     The object keeps the bytes of an incomplete head (at most
**     max_header) and is ready for the next head after a result.
**   spindle._http_chunked(max_body) -> cd
**     cd:feed(bytes) -> data, done, rest    data: decoded bytes ("" if
**                                           none); done: the body ended;
**                                           rest: bytes after it
**                    -> false, status, why
**   spindle._http_fail(err, traceback)     raises err in the calling task
**                                           with traceback as its report's
**
** A request table: method, target, path (percent-decoded, without the
** query), query (raw, or nil), version ("1.0" | "1.1"), headers (lower-case
** names; repeated fields joined with ", "), _fields (name, value, name,
** value ... in order: lua/spindle/http_server.lua makes req.header_list
** from it when asked), and for the server: keep_alive, chunked, length
** (or nil), expect_continue, head_bytes.
*/
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"
#include "internal.h"

#define HEAD_MT "spindle.http.head"
#define CHUNKED_MT "spindle.http.chunked"
#define MAX_HEADERS_LIMIT 1024

typedef struct head_parser {
  sp_http_request r;
  char *buf; /* the head so far */
  size_t len, cap;
  uint32_t max_header, max_headers;
  sp_http_header *headers; /* max_headers entries, after the struct */
} head_parser;

static head_parser *check_head(lua_State *L) {
  return (head_parser *)sp_checkclass(L, 1, HEAD_MT);
}

static int head_gc(lua_State *L) {
  head_parser *hp = (head_parser *)sp_testclass(L, 1, HEAD_MT);
  if (hp != NULL) {
    free(hp->buf);
    hp->buf = NULL;
    hp->len = hp->cap = 0;
  }
  return 0;
}

static void head_reset(head_parser *hp) {
  hp->len = 0;
  sp_http_request_init(&hp->r, hp->headers, hp->max_headers, hp->max_header);
}

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
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    p[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  lua_pushlstring(L, p, n);
  if (p != tmp) lua_remove(L, -2);
}

#define SPAN(b, sp) ((b) + (sp).off), ((size_t)(sp).len)

/* Pushes the request table of a complete head in hp->buf.  [-0, +1, m] */
static void push_request(lua_State *L, head_parser *hp) {
  sp_http_request *r = &hp->r;
  const char *b = hp->buf;
  uint32_t i;
  lua_createtable(L, 0, 12);
  lua_pushlstring(L, SPAN(b, r->method));
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, SPAN(b, r->target));
  lua_setfield(L, -2, "target");
  if (r->form == SP_HTTP_ORIGIN_FORM || r->form == SP_HTTP_ABSOLUTE_FORM) {
    if (r->path.len == 0)
      lua_pushliteral(L, "/");
    else
      push_decoded(L, SPAN(b, r->path));
  } else
    lua_pushlstring(L, SPAN(b, r->target)); /* "*" or authority */
  lua_setfield(L, -2, "path");
  if (r->flags & SP_HTTP_HAS_QUERY) {
    lua_pushlstring(L, SPAN(b, r->query));
    lua_setfield(L, -2, "query");
  }
  lua_pushstring(L, r->version == 10 ? "1.0" : "1.1");
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, (int)r->nheaders);     /* headers */
  lua_createtable(L, (int)r->nheaders * 2, 0); /* names and values */
  for (i = 0; i < r->nheaders; i++) {
    sp_http_header *h = &r->headers[i];
    push_lower(L, SPAN(b, h->name));            /* name */
    lua_pushlstring(L, SPAN(b, h->value));      /* name, value */
    lua_pushvalue(L, -2);                       /* flat: the Lua side makes */
    lua_rawseti(L, -4, (lua_Integer)i * 2 + 1); /* header_list from it */
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, (lua_Integer)i * 2 + 2);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -5) == LUA_TSTRING) { /* repeated: join with ", " */
      lua_pushliteral(L, ", ");
      lua_pushvalue(L, -3);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
    }
    lua_remove(L, -2); /* name, joined */
    lua_rawset(L, -4);
  }
  lua_setfield(L, -3, "_fields");
  lua_setfield(L, -2, "headers");
  lua_pushboolean(L, (r->flags & SP_HTTP_KEEP_ALIVE) != 0);
  lua_setfield(L, -2, "keep_alive");
  if (r->flags & SP_HTTP_CHUNKED) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "chunked");
  }
  if (r->flags & SP_HTTP_HAS_LENGTH) {
    lua_pushinteger(L, (lua_Integer)r->content_length);
    lua_setfield(L, -2, "length");
  }
  if (r->flags & SP_HTTP_EXPECT_CONTINUE) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "expect_continue");
  }
  lua_pushinteger(L, (lua_Integer)r->head_len);
  lua_setfield(L, -2, "head_bytes");
}

/* hp:feed(bytes) */
static int head_feed(lua_State *L) {
  head_parser *hp = check_head(L);
  size_t n, take, prev = hp->len;
  const char *data = luaL_checklstring(L, 2, &n);
  int st;
  if (n == 0) return 0;
  /* keep at most max_header + 1 bytes: the parser needs no more to decide
  ** (a head that does not end within max_header is 431) */
  take = hp->max_header + (size_t)1 - prev;
  if (take > n) take = n;
  if (prev + take > hp->cap) {
    size_t cap = hp->cap ? hp->cap : 1024;
    char *p;
    while (cap < prev + take) cap *= 2;
    if ((p = realloc(hp->buf, cap)) == NULL)
      return luaL_error(L, "not enough memory");
    hp->buf = p;
    hp->cap = cap;
  }
  memcpy(hp->buf + prev, data, take);
  hp->len = prev + take;
  st = sp_http_parse_request(&hp->r, hp->buf, hp->len);
  if (st == SP_HTTP_AGAIN) return 0;
  if (st == SP_HTTP_ERR) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, hp->r.status);
    lua_pushstring(L, hp->r.reason ? hp->r.reason : "bad request");
    head_reset(hp);
    return 3;
  }
  push_request(L, hp);
  /* the head ended inside this feed (else an earlier feed completed it):
  ** the rest is the part of data after it */
  lua_pushlstring(L, data + (hp->r.head_len - prev),
                  n - (hp->r.head_len - prev));
  head_reset(hp);
  return 2;
}

static int l_head(lua_State *L) {
  lua_Integer max_header = luaL_checkinteger(L, 1);
  lua_Integer max_headers = luaL_optinteger(L, 2, 100);
  head_parser *hp;
  luaL_argcheck(L, max_header >= 64 && max_header <= 0x7fffffff, 1,
                "out of range");
  luaL_argcheck(L, max_headers >= 1 && max_headers <= MAX_HEADERS_LIMIT, 2,
                "out of range");
  hp = lua_newuserdatauv(
      L, sizeof *hp + (size_t)max_headers * sizeof(sp_http_header), 0);
  memset(hp, 0, sizeof *hp);
  hp->headers = (sp_http_header *)(void *)(hp + 1);
  hp->max_header = (uint32_t)max_header;
  hp->max_headers = (uint32_t)max_headers;
  luaL_setmetatable(L, HEAD_MT);
  head_reset(hp);
  return 1;
}

/* ---- chunked bodies ------------------------------------------------------ */

typedef struct chunked {
  sp_http_chunked c;
  int done;
} chunked;

/* cd:feed(bytes) */
static int chunked_feed(lua_State *L) {
  chunked *cd = (chunked *)sp_checkclass(L, 1, CHUNKED_MT);
  size_t n, pos = 0;
  const char *data = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  if (cd->done) {
    lua_pushliteral(L, "");
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 2);
    return 3;
  }
  luaL_buffinit(L, &b);
  while (pos < n) {
    size_t used = 0, off = 0, len = 0;
    int st =
        sp_http_chunked_parse(&cd->c, data + pos, n - pos, &used, &off, &len);
    if (st == SP_HTTP_ERR) {
      lua_pushboolean(L, 0);
      lua_pushinteger(L, cd->c.status);
      lua_pushstring(L, cd->c.reason ? cd->c.reason : "bad chunked body");
      return 3;
    }
    if (st == SP_HTTP_DATA) luaL_addlstring(&b, data + pos + off, len);
    pos += used;
    if (st == SP_HTTP_OK) {
      cd->done = 1;
      break;
    }
    if (st == SP_HTTP_AGAIN) break;
  }
  luaL_pushresult(&b);
  lua_pushboolean(L, cd->done);
  lua_pushlstring(L, data + pos, n - pos);
  return 3;
}

static int l_chunked(lua_State *L) {
  chunked *cd = lua_newuserdatauv(L, sizeof *cd, 0);
  memset(cd, 0, sizeof *cd);
  sp_http_chunked_init(&cd->c, SP_HTTP_CHUNK_MAX_EXT,
                       SP_HTTP_CHUNK_MAX_TRAILER);
  luaL_setmetatable(L, CHUNKED_MT);
  return 1;
}

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
  static const luaL_Reg head_methods[] = {{"feed", head_feed}, {NULL, NULL}};
  static const luaL_Reg head_meta[] = {{"__gc", head_gc}, {NULL, NULL}};
  static const luaL_Reg chunked_methods[] = {{"feed", chunked_feed},
                                             {NULL, NULL}};
  static const luaL_Reg fns[] = {{"_http_head", l_head},
                                 {"_http_chunked", l_chunked},
                                 {"_http_fail", l_fail},
                                 {NULL, NULL}};
  sp_newclass(L, HEAD_MT, head_methods, head_meta);
  sp_newclass(L, CHUNKED_MT, chunked_methods, NULL);
  lua_pop(L, 2);
  sp_setfuncs(L, fns);
  return 0;
}
