/*
** spec/capi/http_parse_driver.h -- driving csrc/http_parse.c's request
** parser the way a connection does: a request head handed to
** sp_http_parse_request() in growing pieces, each from a fresh copy, and
** the public results of two runs compared.  Shared by the C test
** (spec/capi/http_parse.c) and the fuzz harness (fuzz/http_parse_fuzz.c,
** built both with libFuzzer and as the capi_fuzz_http_parse replay).
**
** Everything here is static inline: each includer uses what it needs.
*/
#ifndef SP_HTTP_PARSE_DRIVER_H
#define SP_HTTP_PARSE_DRIVER_H

#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

/* The header array of a parsed: max_headers may be anything up to this. */
#define PARSED_HEADERS 64

/* One run of the parser: its last answer, the request and its headers. */
typedef struct parsed {
  int rc;
  sp_http_request r;
  sp_http_header h[PARSED_HEADERS];
} parsed;

/* A copy of s[0..n) in a fresh allocation of exactly n bytes, so ASan and
** valgrind see any read past the bytes given, and the buffer moves between
** calls as a realloc'd one would. */
static inline char *dup_bytes(const void *s, size_t n) {
  char *p = malloc(n ? n : 1);
  if (!p) abort();
  if (n) memcpy(p, s, n);
  return p;
}

static inline void parsed_start(parsed *p, uint32_t max_headers,
                                uint32_t max_head) {
  if (max_headers > PARSED_HEADERS) abort();
  memset(p, 0, sizeof *p);
  sp_http_request_init(&p->r, p->h, max_headers, max_head);
}

/* Hands the parser s[0..n) (the bytes so far) from a fresh copy. */
static inline int parsed_feed(parsed *p, const void *s, size_t n) {
  char *copy = dup_bytes(s, n);
  p->rc = sp_http_parse_request(&p->r, copy, n);
  free(copy);
  return p->rc;
}

/* One byte more per call until the parser answers more than AGAIN; each
** call from a fresh copy when fresh, else from s itself. */
static inline int parsed_trickle(parsed *p, const void *s, size_t n,
                                 int fresh) {
  for (size_t k = 1; k <= n; k++) {
    if (fresh)
      parsed_feed(p, s, k);
    else
      p->rc = sp_http_parse_request(&p->r, s, k);
    if (p->rc != SP_HTTP_AGAIN) break;
  }
  return p->rc;
}

static inline int parsed_span_eq(sp_http_span a, sp_http_span b) {
  return a.off == b.off && a.len == b.len;
}

/* The public results of a and b are the same. */
static inline int parsed_same(const parsed *a, const parsed *b) {
  const sp_http_request *x = &a->r, *y = &b->r;
  if (a->rc != b->rc) return 0;
  if (a->rc == SP_HTTP_ERR)
    return x->status == y->status && strcmp(x->reason, y->reason) == 0;
  if (a->rc != SP_HTTP_OK) return 1;
  if (!parsed_span_eq(x->method, y->method) ||
      !parsed_span_eq(x->target, y->target) ||
      !parsed_span_eq(x->scheme, y->scheme) ||
      !parsed_span_eq(x->authority, y->authority) ||
      !parsed_span_eq(x->path, y->path) ||
      !parsed_span_eq(x->query, y->query) ||
      !parsed_span_eq(x->host, y->host) || x->nheaders != y->nheaders ||
      x->head_len != y->head_len || x->content_length != y->content_length ||
      x->version != y->version || x->form != y->form || x->flags != y->flags)
    return 0;
  for (uint32_t i = 0; i < x->nheaders; i++)
    if (!parsed_span_eq(a->h[i].name, b->h[i].name) ||
        !parsed_span_eq(a->h[i].value, b->h[i].value))
      return 0;
  return 1;
}

/* RFC 9110 tchar, written from the grammar (the reference the parser's
** tables are checked against). */
static inline int is_tchar(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

#endif
