/*
** fuzz/http_parse_fuzz.c -- libFuzzer harness for csrc/http_parse.c.
**
** Every input is used three ways:
**
**   (a) differential: parsed as a request by our parser and by
**       libhttp-parser 2.9.4 (the reference).  Where both accept the
**       head, method, target, version, header names and values, the
**       content length, chunked, keep-alive and the head's length must
**       agree; where both also accept the body (Content-Length or
**       chunked), the body bytes and where it ends must agree.  Where one
**       rejects, nothing is compared: we are deliberately stricter in
**       many places (docs/http-parsing.md lists them), and the reference
**       rejects some things we accept (methods it does not know, repeated
**       equal Content-Length lines).  The classes where both accept but
**       answer differently by design are excluded explicitly, in
**       excluded() below.
**   (b) split invariance: the head fed in random pieces (each call gets a
**       fresh copy of the bytes so far, as if the buffer were realloc'd),
**       and one byte at a time, must give exactly the result of one call,
**       errors included.
**   (c) chunked decoding: the input as a chunked body (and, when the head
**       says chunked, the bytes after the head), fed in random pieces, must
**       decode exactly as ref_chunked(), a naive whole-buffer recursive
**       descent decoder written from RFC 9112 §7.1: same data, same end,
**       same error status.
**   (d) chunked round trip: the input's bytes framed as a valid chunked
**       request body (random chunk sizes, hex case, leading zeros,
**       extensions, trailers) must decode back to the input, with ours and
**       with libhttp-parser.
**
** A disagreement calls sp_fuzz_fail(): under libFuzzer it prints and
** aborts (a crash with the input saved); in the replay program
** (fuzz/replay.c, a CI test) it counts a failure and continues.
**
** Build with SP_FUZZ_NO_REFERENCE when libhttp-parser is not installed:
** (a) is then left out, and the replay reports that as a failure.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"
#include "http_parse_driver.h"

#ifndef SP_FUZZ_NO_REFERENCE
#include <http_parser.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void sp_fuzz_fail(const char *what);

#ifndef SP_FUZZ_REPLAY
void sp_fuzz_fail(const char *what) {
  fprintf(stderr, "http_parse_fuzz: %s\n", what);
  abort();
}
#endif

#define MAX_HEADERS 64
#define MAX_HEAD 8192

/* ---- a deterministic random stream from the input ---------------------- */

typedef struct rng {
  uint64_t s;
} rng;

static void rng_seed(rng *g, const uint8_t *d, size_t n) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211u;
  g->s = h | 1;
}

static uint64_t rng_next(rng *g) { /* xorshift64* */
  g->s ^= g->s >> 12;
  g->s ^= g->s << 25;
  g->s ^= g->s >> 27;
  return g->s * 2685821657736338717u;
}

static size_t rng_below(rng *g, size_t n) {
  return n ? (size_t)(rng_next(g) % n) : 0;
}

/* ---- our parser (spec/capi/http_parse_driver.h drives it) -------------- */

typedef parsed ours;

static void ours_start(ours *o, uint32_t max_head) {
  parsed_start(o, MAX_HEADERS, max_head);
}

/* Invariants of an accepted head that hold whatever the input. */
static void ours_check(const ours *o, const uint8_t *d, size_t n) {
  const sp_http_request *r = &o->r;
  if (o->rc == SP_HTTP_ERR) {
    if (r->status != 400 && r->status != 417 && r->status != 431 &&
        r->status != 501 && r->status != 505)
      sp_fuzz_fail("unexpected error status");
    if (!r->reason || !*r->reason) sp_fuzz_fail("error without a reason");
    return;
  }
  if (o->rc != SP_HTTP_OK) return;
  if (r->head_len > n || r->head_len > MAX_HEAD || r->head_len < 4 ||
      memcmp(d + r->head_len - 4, "\r\n\r\n", 4) != 0)
    sp_fuzz_fail("head does not end with CRLF CRLF");
  if (memchr(d, 0, r->head_len)) sp_fuzz_fail("accepted a NUL byte");
  if ((r->flags & SP_HTTP_CHUNKED) && (r->flags & SP_HTTP_HAS_LENGTH))
    sp_fuzz_fail("accepted both chunked and a length");
  if (r->version != 10 && r->version != 11) sp_fuzz_fail("bad version");
  if (r->version == 11 && !(r->flags & SP_HTTP_HAS_HOST))
    sp_fuzz_fail("HTTP/1.1 without Host accepted");
  for (uint32_t i = 0; i < r->nheaders; i++) {
    sp_http_span v = o->h[i].value;
    if (v.off + v.len > r->head_len) sp_fuzz_fail("value outside the head");
    for (uint32_t k = 0; k < v.len; k++) {
      uint8_t c = d[v.off + k];
      if (c == '\r' || c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
        sp_fuzz_fail("control byte in an accepted value");
    }
  }
}

/* (b): random pieces and single bytes give the result of one call. */
static void split_invariance(const uint8_t *d, size_t n, uint32_t max_head,
                             rng *g, const ours *whole) {
  static ours p;
  ours_start(&p, max_head);
  p.rc = sp_http_parse_request(&p.r, (const char *)d, 0);
  size_t have = 0;
  while (have < n && p.rc == SP_HTTP_AGAIN) {
    size_t step = 1 + rng_below(g, rng_next(g) & 1 ? 8 : n - have);
    if (step > n - have) step = n - have;
    have += step;
    parsed_feed(&p, d, have);
  }
  if (!parsed_same(&p, whole)) sp_fuzz_fail("random split changed the result");
  if (n > 2048) return;
  ours_start(&p, max_head);
  parsed_trickle(&p, d, n, 0);
  if (n && !parsed_same(&p, whole))
    sp_fuzz_fail("byte-at-a-time changed the result");
}

/* ---- (c) chunked: ours against a naive reference ----------------------- */

typedef struct body {
  int rc, status; /* SP_HTTP_OK / AGAIN / ERR, and 400 or 431 */
  size_t used;    /* on OK: bytes up to the end of the body */
  size_t len;     /* data bytes decoded (before any error) */
  uint8_t *data;
} body;

static void body_put(body *b, const uint8_t *p, size_t n) {
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

/* The reference: recursive descent over the whole buffer.  Each function
** returns 0 to go on, or sets rc (AGAIN when the input ends, ERR with a
** status when a byte cannot belong) and returns 1. */
typedef struct refp {
  const uint8_t *d;
  size_t n, i;
  size_t ext_seen, tr_seen; /* bytes up to here have been counted */
  uint32_t ext, max_ext, trailer, max_trailer;
  body *out;
} refp;

static int ref_stop(refp *p, int rc, int status) {
  p->out->rc = rc;
  p->out->status = status;
  return 1;
}

static int is_ws(int c) { return c == ' ' || c == '\t'; }
static int is_field(int c) { return (c >= 0x20 && c != 0x7f) || c == '\t'; }

/* The byte at i in a chunk extension, or -1 after stopping.  Each byte but
** the CR is counted the first time it is looked at, before it is judged. */
static int ref_ext_byte(refp *p) {
  if (p->i == p->n) return ref_stop(p, SP_HTTP_AGAIN, 0), -1;
  int c = p->d[p->i];
  if (p->i >= p->ext_seen) {
    p->ext_seen = p->i + 1;
    if (c != '\r' && ++p->ext > p->max_ext)
      return ref_stop(p, SP_HTTP_ERR, 400), -1;
  }
  return c;
}

/* BWS; returns -1 after stopping, else how many bytes it skipped. */
static int ref_ws(refp *p) {
  int c, k = 0;
  while ((c = ref_ext_byte(p)) >= 0 && is_ws(c)) p->i++, k++;
  return c < 0 ? -1 : k;
}

static int ref_token(refp *p) { /* 1*tchar */
  int c, k = 0;
  while ((c = ref_ext_byte(p)) >= 0 && is_tchar(c)) p->i++, k++;
  if (c < 0) return 1;
  return k == 0 ? ref_stop(p, SP_HTTP_ERR, 400) : 0;
}

static int ref_quoted(refp *p) { /* DQUOTE *( qdtext / quoted-pair ) DQUOTE */
  int c;
  for (p->i++;;) {
    if ((c = ref_ext_byte(p)) < 0) return 1;
    p->i++;
    if (c == '"') return 0;
    if (c == '\\') {
      if ((c = ref_ext_byte(p)) < 0) return 1;
      p->i++;
    }
    if (!is_field(c)) return ref_stop(p, SP_HTTP_ERR, 400);
  }
}

/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted ) ] ),
** ended by the CR.  Whitespace is only allowed where the grammar has BWS:
** before ";" and around "=", so never right before the CR. */
static int ref_chunk_ext(refp *p) {
  int c, ws;
  for (;;) {
    if ((ws = ref_ws(p)) < 0 || (c = ref_ext_byte(p)) < 0) return 1;
    if (c == '\r' && ws == 0) return 0;
    if (c != ';') return ref_stop(p, SP_HTTP_ERR, 400);
    p->i++;
    if (ref_ws(p) < 0 || ref_token(p)) return 1; /* the name */
    if ((ws = ref_ws(p)) < 0 || (c = ref_ext_byte(p)) < 0) return 1;
    if (c == '\r' && ws == 0) return 0;
    if (c == ';') continue;
    if (c != '=') return ref_stop(p, SP_HTTP_ERR, 400);
    p->i++;
    if (ref_ws(p) < 0 || (c = ref_ext_byte(p)) < 0) return 1;
    if (c == '"' ? ref_quoted(p) : ref_token(p)) return 1; /* the value */
  }
}

static int ref_crlf(refp *p) {
  for (int k = 0; k < 2; k++) {
    if (p->i == p->n) return ref_stop(p, SP_HTTP_AGAIN, 0);
    if (p->d[p->i] != "\r\n"[k]) return ref_stop(p, SP_HTTP_ERR, 400);
    p->i++;
  }
  return 0;
}

/* The byte at i in the trailer section, or -1 after stopping.  Counted
** (once, before it is judged) unless it is the CR of the final line. */
static int ref_trailer_byte(refp *p, int line_start) {
  if (p->i == p->n) return ref_stop(p, SP_HTTP_AGAIN, 0), -1;
  int c = p->d[p->i];
  if (p->i >= p->tr_seen) {
    p->tr_seen = p->i + 1;
    if (!(line_start && c == '\r') && ++p->trailer > p->max_trailer)
      return ref_stop(p, SP_HTTP_ERR, 431), -1;
  }
  return c;
}

static int ref_trailers(refp *p) {
  for (;;) {
    int c = ref_trailer_byte(p, 1);
    if (c < 0) return 1;
    if (c == '\r') return ref_crlf(p);
    int k = 0;
    while (c >= 0 && is_tchar(c)) {
      p->i++, k++;
      c = ref_trailer_byte(p, 0);
    }
    if (c < 0) return 1;
    if (k == 0 || c != ':') return ref_stop(p, SP_HTTP_ERR, 400);
    p->i++;
    while ((c = ref_trailer_byte(p, 0)) >= 0 && c != '\r') {
      if (!is_field(c)) return ref_stop(p, SP_HTTP_ERR, 400);
      p->i++;
    }
    if (c < 0) return 1;
    p->i++;
    if ((c = ref_trailer_byte(p, 0)) < 0) return 1;
    if (c != '\n') return ref_stop(p, SP_HTTP_ERR, 400);
    p->i++;
  }
}

static void ref_chunked(const uint8_t *d, size_t n, uint32_t max_ext,
                        uint32_t max_trailer, body *out) {
  refp p = {d, n, 0, 0, 0, 0, max_ext, 0, max_trailer, out};
  out->len = 0;
  for (;;) {
    /* chunk-size: 1 to 16 HEXDIG, at most INT64_MAX */
    uint64_t size = 0;
    int digits = 0;
    for (;; p.i++, digits++) {
      if (p.i == n) {
        ref_stop(&p, SP_HTTP_AGAIN, 0);
        return;
      }
      int c = d[p.i], v;
      if (c >= '0' && c <= '9')
        v = c - '0';
      else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
      else
        break;
      if (digits == 16 || size > (uint64_t)(INT64_MAX - v) / 16) {
        ref_stop(&p, SP_HTTP_ERR, 400);
        return;
      }
      size = size * 16 + (uint64_t)v;
    }
    if (digits == 0) {
      ref_stop(&p, SP_HTTP_ERR, 400);
      return;
    }
    if (ref_chunk_ext(&p) || ref_crlf(&p)) return;
    if (size == 0) break;
    size_t avail = n - p.i;
    if (avail < size) {
      body_put(out, d + p.i, avail);
      ref_stop(&p, SP_HTTP_AGAIN, 0);
      return;
    }
    body_put(out, d + p.i, (size_t)size);
    p.i += (size_t)size;
    if (ref_crlf(&p)) return;
  }
  if (ref_trailers(&p)) return;
  out->rc = SP_HTTP_OK;
  out->used = p.i;
}

/* Ours, fed in random pieces; the unconsumed tail is kept and handed
** again with the next piece, from a fresh copy. */
static void our_chunked(const uint8_t *d, size_t n, uint32_t max_ext,
                        uint32_t max_trailer, rng *g, body *out) {
  sp_http_chunked c;
  sp_http_chunked_init(&c, max_ext, max_trailer);
  size_t base = 0, have = 0;
  out->len = 0;
  out->rc = SP_HTTP_AGAIN;
  while (have < n) {
    size_t step = 1 + rng_below(g, rng_next(g) & 1 ? 6 : n - have);
    have += step > n - have ? n - have : step;
    for (;;) {
      size_t used, off, len;
      char *copy = dup_bytes(d + base, have - base);
      int rc = sp_http_chunked_parse(&c, copy, have - base, &used, &off, &len);
      if (used > have - base) sp_fuzz_fail("chunked: used past the input");
      if (rc == SP_HTTP_DATA) {
        if (len == 0 || off + len != used)
          sp_fuzz_fail("chunked: bad data span");
        body_put(out, (const uint8_t *)copy + off, len);
      }
      free(copy);
      base += used;
      out->rc = rc;
      if (rc == SP_HTTP_ERR) {
        out->status = c.status;
        if (c.status != 400 && c.status != 431)
          sp_fuzz_fail("chunked: unexpected status");
        return;
      }
      if (rc == SP_HTTP_OK) {
        out->used = base;
        return;
      }
      if (rc == SP_HTTP_AGAIN) {
        if (base != have) sp_fuzz_fail("chunked: AGAIN left bytes");
        break;
      }
    }
  }
}

static void chunked_differential(const uint8_t *d, size_t n, rng *g) {
  static const uint32_t limits[] = {0, 3, 16, 200, SP_HTTP_CHUNK_MAX_EXT};
  uint32_t max_ext = limits[rng_below(g, 5)];
  uint32_t max_trailer = limits[rng_below(g, 5)];
  body a = {0}, b = {0};
  a.data = malloc(n + 1);
  b.data = malloc(n + 1);
  if (!a.data || !b.data) abort();
  our_chunked(d, n, max_ext, max_trailer, g, &a);
  ref_chunked(d, n, max_ext, max_trailer, &b);
  if (a.rc != b.rc)
    sp_fuzz_fail("chunked: result differs from the reference");
  else if (a.rc == SP_HTTP_ERR && a.status != b.status)
    sp_fuzz_fail("chunked: error status differs from the reference");
  else if (a.rc == SP_HTTP_OK && a.used != b.used)
    sp_fuzz_fail("chunked: body end differs from the reference");
  else if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
    sp_fuzz_fail("chunked: data differs from the reference");
  free(a.data);
  free(b.data);
}

/* ---- (a) against libhttp-parser ---------------------------------------- */

#ifndef SP_FUZZ_NO_REFERENCE

typedef struct theirs {
  char url[MAX_HEAD];
  size_t url_len;
  struct {
    size_t name_off, name_len, value_off, value_len;
  } h[MAX_HEADERS + 1];
  int nh, in_value, head_done, msg_done, overflow;
  char text[MAX_HEAD * 2]; /* header names and values */
  size_t text_len;
  uint8_t *body;
  size_t body_len;
  int keep_alive, chunked;
  uint64_t content_length;
} theirs;

static int append(theirs *t, const char *a, size_t n) {
  if (t->text_len + n > sizeof t->text) return t->overflow = 1;
  memcpy(t->text + t->text_len, a, n);
  t->text_len += n;
  return 0;
}

static int on_url(http_parser *p, const char *a, size_t n) {
  theirs *t = p->data;
  if (t->url_len + n > sizeof t->url) return t->overflow = 1;
  memcpy(t->url + t->url_len, a, n);
  t->url_len += n;
  return 0;
}

static int on_field(http_parser *p, const char *a, size_t n) {
  theirs *t = p->data;
  if (t->in_value || t->nh == 0) {
    if (t->nh == MAX_HEADERS + 1) return t->overflow = 1;
    t->nh++;
    t->h[t->nh - 1].name_off = t->text_len;
    t->h[t->nh - 1].name_len = 0;
    t->h[t->nh - 1].value_len = 0;
    t->in_value = 0;
  }
  t->h[t->nh - 1].name_len += n;
  return append(t, a, n);
}

static int on_value(http_parser *p, const char *a, size_t n) {
  theirs *t = p->data;
  if (!t->in_value) {
    t->in_value = 1;
    t->h[t->nh - 1].value_off = t->text_len;
  }
  t->h[t->nh - 1].value_len += n;
  return append(t, a, n);
}

static int on_headers_complete(http_parser *p) {
  theirs *t = p->data;
  t->head_done = 1;
  t->keep_alive = http_should_keep_alive(p);
  t->chunked = !!(p->flags & F_CHUNKED);
  t->content_length = p->content_length;
  http_parser_pause(p, 1);
  return 0;
}

static int on_body(http_parser *p, const char *a, size_t n) {
  theirs *t = p->data;
  memcpy(t->body + t->body_len, a, n);
  t->body_len += n;
  return 0;
}

static int on_message_complete(http_parser *p) {
  theirs *t = p->data;
  t->msg_done = 1;
  http_parser_pause(p, 1);
  return 0;
}

static int eq_fold(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
  }
  return 1;
}

/* Does some field named name (lower case) hold the token tok? */
static int has_token(const ours *o, const uint8_t *d, const char *name,
                     const char *tok) {
  size_t tn = strlen(tok);
  for (uint32_t i = 0; i < o->r.nheaders; i++) {
    if (!sp_http_name_is((const char *)d, o->h[i].name, name)) continue;
    const char *v = (const char *)d + o->h[i].value.off;
    size_t vn = o->h[i].value.len;
    for (size_t k = 0; k + tn <= vn; k++)
      if (eq_fold(v + k, tok, tn)) return 1;
  }
  return 0;
}

/* Classes of input both parsers accept but answer differently, by design.
** Each is named for the comparison it excuses. */
static int empty_element(const ours *o, const uint8_t *d, const char *name) {
  for (uint32_t i = 0; i < o->r.nheaders; i++) {
    if (!sp_http_name_is((const char *)d, o->h[i].name, name)) continue;
    const uint8_t *v = d + o->h[i].value.off;
    size_t vn = o->h[i].value.len, k = 0;
    for (int seen = 0;; k++) { /* seen: a non-OWS byte since the last ',' */
      if (k == vn || v[k] == ',') {
        if (!seen) return 1;
        if (k == vn) break;
        seen = 0;
      } else if (!is_ws(v[k])) {
        seen = 1;
      }
    }
  }
  return 0;
}

/* Does some field named name hold an HTAB (trimmed whitespace included)? */
static int has_tab(const ours *o, const uint8_t *d, const char *name) {
  for (uint32_t i = 0; i < o->r.nheaders; i++) {
    if (!sp_http_name_is((const char *)d, o->h[i].name, name)) continue;
    for (size_t k = o->h[i].name.off + o->h[i].name.len; d[k] != '\r'; k++)
      if (d[k] == '\t') return 1;
  }
  return 0;
}

static int excluded(const ours *o, const uint8_t *d, const char *what) {
  /* chunked: RFC 9110 §5.6.1.2 has recipients ignore empty list elements
  ** ("chunked," is chunked, ", close" is close); libhttp-parser does not
  ** skip them in Transfer-Encoding (it then rejects the request, whose
  ** framing it does not know) nor at the start of Connection. */
  if (strcmp(what, "chunked") == 0 && empty_element(o, d, "transfer-encoding"))
    return 1;
  if (strcmp(what, "keep-alive") == 0 && empty_element(o, d, "connection"))
    return 1;
  /* chunked, keep-alive: HTAB is whitespace in lists (OWS, RFC 9110
  ** §5.6.3); libhttp-parser ends "chunked" and "close" at SP only. */
  if (strcmp(what, "chunked") == 0 && has_tab(o, d, "transfer-encoding"))
    return 1;
  if (strcmp(what, "keep-alive") == 0 && has_tab(o, d, "connection")) return 1;
  /* keep-alive: RFC 9112 §9.3: "close" in Connection ends the connection
  ** whatever else is listed; libhttp-parser lets "keep-alive" win in
  ** HTTP/1.0 when both are there. */
  if (strcmp(what, "keep-alive") == 0 && o->r.version == 10 &&
      has_token(o, d, "connection", "close") &&
      has_token(o, d, "connection", "keep-alive"))
    return 1;
  return 0;
}

static void differential(const uint8_t *d, size_t n, const ours *o) {
  static theirs t;
  static http_parser_settings s;
  s.on_url = on_url;
  s.on_header_field = on_field;
  s.on_header_value = on_value;
  s.on_headers_complete = on_headers_complete;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  memset(&t, 0, offsetof(theirs, text));
  t.text_len = 0;
  uint8_t *bodybuf = malloc(n + 1);
  if (!bodybuf) abort();
  t.body = bodybuf;
  t.body_len = 0;

  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = &t;
  size_t head = http_parser_execute(&p, &s, (const char *)d, n);
  int paused = HTTP_PARSER_ERRNO(&p) == HPE_PAUSED;
  if (!t.head_done || !paused || t.overflow || o->rc != SP_HTTP_OK) {
    free(bodybuf);
    return; /* one of us rejects (or the head is incomplete) */
  }
  const sp_http_request *r = &o->r;
  const char *b = (const char *)d;

  const char *m = http_method_str((enum http_method)p.method);
  if (strlen(m) != r->method.len || memcmp(m, b + r->method.off, r->method.len))
    sp_fuzz_fail("differential: method");
  if (t.url_len != r->target.len ||
      memcmp(t.url, b + r->target.off, t.url_len) != 0)
    sp_fuzz_fail("differential: target");
  if (p.http_major != 1 || p.http_minor != r->version - 10)
    sp_fuzz_fail("differential: version");
  if (head + 1 != r->head_len) sp_fuzz_fail("differential: head length");
  if ((size_t)t.nh != r->nheaders) {
    sp_fuzz_fail("differential: number of header fields");
  } else {
    for (int i = 0; i < t.nh; i++) {
      sp_http_span nm = o->h[i].name, v = o->h[i].value;
      size_t tv = t.h[i].value_len;
      /* libhttp-parser keeps trailing whitespace; RFC 9112 §5 strips it. */
      while (tv > 0 && is_ws(t.text[t.h[i].value_off + tv - 1])) tv--;
      if (t.h[i].name_len != nm.len ||
          memcmp(t.text + t.h[i].name_off, b + nm.off, nm.len) != 0)
        sp_fuzz_fail("differential: header name");
      if (tv != v.len || memcmp(t.text + t.h[i].value_off, b + v.off, tv) != 0)
        sp_fuzz_fail("differential: header value");
    }
  }
  if (t.chunked != !!(r->flags & SP_HTTP_CHUNKED)) {
    if (!excluded(o, d, "chunked")) sp_fuzz_fail("differential: chunked");
    free(bodybuf);
    return;
  }
  int has_len = t.content_length != UINT64_MAX && !t.chunked;
  if (has_len != !!(r->flags & SP_HTTP_HAS_LENGTH) ||
      (has_len && t.content_length != (uint64_t)r->content_length))
    sp_fuzz_fail("differential: content-length");
  if (t.keep_alive != !!(r->flags & SP_HTTP_KEEP_ALIVE) &&
      !excluded(o, d, "keep-alive"))
    sp_fuzz_fail("differential: keep-alive");

  /* The body, when both parse all of it. */
  if (p.upgrade || !(r->flags & (SP_HTTP_CHUNKED | SP_HTTP_HAS_LENGTH))) {
    free(bodybuf);
    return;
  }
  /* Paused in on_headers_complete, it has not consumed the final LF: it
  ** resumes there, and its count then includes the body's last byte. */
  http_parser_pause(&p, 0);
  size_t rest = n - r->head_len;
  size_t used = http_parser_execute(&p, &s, b + head, n - head);
  int their_ok = t.msg_done && HTTP_PARSER_ERRNO(&p) == HPE_PAUSED;
  size_t their_end = used - 1; /* body bytes, after our head_len */
  if (r->flags & SP_HTTP_CHUNKED) {
    body mine = {0};
    mine.data = malloc(rest + 1);
    if (!mine.data) abort();
    rng g = {0x9e3779b97f4a7c15u};
    our_chunked(d + r->head_len, rest, SP_HTTP_CHUNK_MAX_EXT,
                SP_HTTP_CHUNK_MAX_TRAILER, &g, &mine);
    if (their_ok && mine.rc == SP_HTTP_OK &&
        (mine.used != their_end || mine.len != t.body_len ||
         memcmp(mine.data, t.body, t.body_len) != 0))
      sp_fuzz_fail("differential: chunked body");
    free(mine.data);
  } else if (their_ok && (uint64_t)rest >= (uint64_t)r->content_length) {
    size_t cl = (size_t)r->content_length;
    if (t.body_len != cl || memcmp(t.body, b + r->head_len, cl) != 0 ||
        their_end != cl)
      sp_fuzz_fail("differential: Content-Length body");
  }
  free(bodybuf);
}

/* libhttp-parser over a whole request: its body, when it completes. */
typedef struct hp_body {
  uint8_t *data;
  size_t len, cap;
  int done;
} hp_body;

static int hpb_body(http_parser *p, const char *a, size_t n) {
  hp_body *h = p->data;
  if (n > h->cap - h->len) return 1; /* more than was sent: an error */
  memcpy(h->data + h->len, a, n);
  h->len += n;
  return 0;
}

static int hpb_done(http_parser *p) {
  ((hp_body *)p->data)->done = 1;
  return 0;
}

static int their_body(const uint8_t *m, size_t n, hp_body *h) {
  static http_parser_settings s;
  s.on_body = hpb_body;
  s.on_message_complete = hpb_done;
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = h;
  size_t used = http_parser_execute(&p, &s, (const char *)m, n);
  return h->done && used == n && HTTP_PARSER_ERRNO(&p) == HPE_OK;
}

#endif /* SP_FUZZ_NO_REFERENCE */

/* ---- (d) chunked round trip -------------------------------------------- */

/* The input's bytes become the data of a valid chunked request body, cut
** into chunks with sizes in either case and with leading zeros, chunk
** extensions and trailers, all drawn from the input's random stream.  Our
** decoder (in random pieces) and libhttp-parser must both accept it and
** give back exactly the input.  Random inputs are rarely valid bodies;
** this makes every input one. */
static void chunked_roundtrip(const uint8_t *d, size_t n, rng *g) {
  static const char *exts[] = {"",         ";a",          ";a=b", " ;a=\"x y\"",
                               ";a = b;c", ";n=\"q\\\"\""};
  static const char *trailers[] = {"", "X-T: 1\r\n", "X-A: a\tb \r\nX-B:\r\n"};
  static const char head[] = "POST /rt HTTP/1.1\r\nHost: h\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n";
  size_t hl = sizeof head - 1, cap = hl + 48 * (n + 2);
  char *m = malloc(cap);
  if (!m) abort();
  memcpy(m, head, hl);
  size_t len = hl, pos = 0;
  for (;;) {
    size_t k = 0;
    if (pos < n) {
      k = 1 + rng_below(g, rng_next(g) & 1 ? 16 : n - pos);
      if (k > n - pos) k = n - pos;
    }
    char hex[20];
    int nd = snprintf(hex, sizeof hex, rng_next(g) & 1 ? "%zx" : "%zX", k);
    int zeros = (rng_next(g) & 3) == 0 ? (int)rng_below(g, 17 - (size_t)nd) : 0;
    memset(m + len, '0', (size_t)zeros);
    len += (size_t)zeros;
    len += (size_t)snprintf(m + len, cap - len, "%s%s\r\n", hex,
                            exts[rng_below(g, 6)]);
    if (k == 0) break;
    memcpy(m + len, d + pos, k);
    len += k;
    pos += k;
    memcpy(m + len, "\r\n", 2);
    len += 2;
  }
  len +=
      (size_t)snprintf(m + len, cap - len, "%s\r\n", trailers[rng_below(g, 3)]);

  static ours o;
  ours_start(&o, MAX_HEAD);
  o.rc = sp_http_parse_request(&o.r, m, len);
  if (o.rc != SP_HTTP_OK || !(o.r.flags & SP_HTTP_CHUNKED) ||
      o.r.head_len != hl)
    sp_fuzz_fail("round trip: head not accepted as chunked");
  body mine = {0};
  mine.data = malloc(n + 1);
  if (!mine.data) abort();
  our_chunked((const uint8_t *)m + hl, len - hl, SP_HTTP_CHUNK_MAX_EXT,
              SP_HTTP_CHUNK_MAX_TRAILER, g, &mine);
  if (mine.rc != SP_HTTP_OK || mine.used != len - hl || mine.len != n ||
      (n && memcmp(mine.data, d, n) != 0))
    sp_fuzz_fail("round trip: our decoder did not give the input back");
#ifndef SP_FUZZ_NO_REFERENCE
  hp_body theirs = {mine.data, 0, n + 1, 0}; /* reuse the buffer */
  if (!their_body((const uint8_t *)m, len, &theirs) || theirs.len != n ||
      (n && memcmp(theirs.data, d, n) != 0))
    sp_fuzz_fail("round trip: libhttp-parser did not give the input back");
#endif
  free(mine.data);
  free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ours whole;
  rng g;
  rng_seed(&g, data, size);

  /* (b) with a limit that is sometimes inside the input. */
  uint32_t max_head = MAX_HEAD;
  if (size > 0 && (rng_next(&g) & 3) == 0)
    max_head = (uint32_t)(1 + rng_below(&g, size));
  ours_start(&whole, max_head);
  whole.rc = sp_http_parse_request(&whole.r, (const char *)data, size);
  ours_check(&whole, data, size);
  split_invariance(data, size, max_head, &g, &whole);

  if (max_head != MAX_HEAD) {
    ours_start(&whole, MAX_HEAD);
    whole.rc = sp_http_parse_request(&whole.r, (const char *)data, size);
    ours_check(&whole, data, size);
  }
#ifndef SP_FUZZ_NO_REFERENCE
  differential(data, size, &whole); /* (a) */
#endif

  chunked_differential(data, size, &g); /* (c) */
  if (whole.rc == SP_HTTP_OK && (whole.r.flags & SP_HTTP_CHUNKED))
    chunked_differential(data + whole.r.head_len, size - whole.r.head_len, &g);
  chunked_roundtrip(data, size, &g); /* (d) */
  return 0;
}
