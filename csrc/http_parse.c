/*
** http_parse.c -- the HTTP/1.1 request-head parser and chunked body decoder
** behind the server (see http_parse.h for the calling convention and
** docs/http-parsing.md for every rule and its RFC 9112 section).
**
** Design.  One pass over the bytes, in order, with tight loops over byte
** classes (a 256-entry table) inside each state.  Every check is made at
** the byte that decides it, so the first offending byte determines the
** error however the input was split across calls: feeding the head in one
** buffer or a byte at a time gives the same result (the fuzzer checks it).
** When the bytes run out the state and position are saved and the next
** call resumes there, so a peer trickling bytes costs O(bytes), never
** O(bytes^2).  Nothing is looked at past max_head: a head that is not
** complete within it is 431 at once.
**
** Request head states (r->state), RFC 9112 §2.1, §3, §5:
**
**   START    skip CRLF pairs before the request line (§2.2)
**            CR LF -> START; tchar -> METHOD; else 400
**   METHOD   tchar* SP -> TARGET (an empty method is 400)
**   TARGET   (VCHAR but '#')* SP -> VERSION (empty, CR: 400)
**   VERSION  exactly "HTTP/" DIGIT "." DIGIT CR LF, byte by byte; then
**            the request line is judged (505 for versions other than 1.0
**            and 1.1, the target's form against the method) -> LINE
**   LINE     start of a field line: CR LF -> head done (DONE after the
**            final checks); SP/HTAB -> 400 (obs-fold, §5.2); tchar -> NAME
**   NAME     tchar* ':' -> VALUE (SP/HTAB before ':' is 400, §5.1)
**   VALUE    (VCHAR / obs-text / SP / HTAB)* CR LF -> the field is
**            recorded and judged (Host, Content-Length, Transfer-Encoding,
**            Connection, Expect) -> LINE
**   DONE, ERROR  final: later calls return the same result
**
** A CR must be followed by LF (a bare CR is 400); a LF without CR is 400;
** NUL and other control bytes are 400 wherever they appear.
**
** Chunked body states (c->state), RFC 9112 §7.1:
**
**   SIZE0   HEXDIG -> SIZE; else 400
**   SIZE    HEXDIG (at most 16, value <= INT64_MAX); ';' -> EXT_NAME0;
**           SP/HTAB -> EXT_SEMI; CR -> SIZE_LF
**   EXT_SEMI    (BWS before ';') SP/HTAB; ';' -> EXT_NAME0
**   EXT_NAME0   (BWS after ';') SP/HTAB; tchar -> EXT_NAME
**   EXT_NAME    tchar; SP/HTAB -> EXT_EQ; '=' -> EXT_VAL0; ';' -> EXT_NAME0;
**               CR -> SIZE_LF
**   EXT_EQ      SP/HTAB; '=' -> EXT_VAL0; ';' -> EXT_NAME0
**   EXT_VAL0    SP/HTAB; tchar -> EXT_TOKEN; '"' -> EXT_QUOTED
**   EXT_TOKEN   tchar; SP/HTAB -> EXT_SEMI; ';' -> EXT_NAME0; CR -> SIZE_LF
**   EXT_QUOTED  qdtext; '\' -> EXT_QPAIR; '"' -> EXT_AFTERQ
**   EXT_QPAIR   HTAB / SP / VCHAR / obs-text -> EXT_QUOTED
**   EXT_AFTERQ  SP/HTAB -> EXT_SEMI; ';' -> EXT_NAME0; CR -> SIZE_LF
**   SIZE_LF LF -> DATA (size > 0) or TRAILER (size 0)
**   DATA    the chunk's bytes, reported as one span per call -> DATA_CR
**   DATA_CR CR -> DATA_LF;  DATA_LF  LF -> SIZE0
**   TRAILER start of a trailer line: CR -> END_LF; tchar -> TNAME;
**           SP/HTAB (obs-fold) and anything else 400
**   TNAME   tchar; ':' -> TVALUE
**   TVALUE  field bytes; CR -> TLF;  TLF  LF -> TRAILER
**   END_LF  LF -> DONE
**
** Extension bytes count against max_ext over the whole body (400), trailer
** bytes against max_trailer (431): a peer cannot make a small body cost
** unbounded parsing.
*/
#include "http_parse.h"

#include <string.h>

/* ---- byte classes ------------------------------------------------------ */

enum {
  C_TCHAR = 1,   /* token (RFC 9110 §5.6.2) */
  C_FIELD = 2,   /* field-value byte: VCHAR, obs-text, SP, HTAB */
  C_TARGET = 4,  /* request-target byte: VCHAR but '#' */
  C_HEX = 8,     /* HEXDIG */
  C_QDTEXT = 16, /* quoted-string text: field bytes but '"' and '\' */
  C_REG = 32     /* reg-name byte: unreserved, sub-delims (RFC 3986) */
};

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_HEXL(c)                                                             \
  (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_TCHAR(c)                                                            \
  (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' ||     \
   (c) == '%' || (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' ||      \
   (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' || (c) == '`' ||       \
   (c) == '|' || (c) == '~')
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7e)
#define IS_FIELD(c) (IS_VCHAR(c) || (c) >= 0x80 || (c) == ' ' || (c) == '\t')
#define IS_SUBDELIM(c)                                                         \
  ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' ||      \
   (c) == ')' || (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' ||       \
   (c) == '=')
#define IS_REG(c)                                                              \
  (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' ||     \
   (c) == '~' || IS_SUBDELIM(c))

#define CLS(c)                                                                 \
  ((IS_TCHAR(c) ? C_TCHAR : 0) | (IS_FIELD(c) ? C_FIELD : 0) |                 \
   (IS_VCHAR(c) && (c) != '#' ? C_TARGET : 0) | (IS_HEXL(c) ? C_HEX : 0) |     \
   (IS_FIELD(c) && (c) != '"' && (c) != '\\' ? C_QDTEXT : 0) |                 \
   (IS_REG(c) ? C_REG : 0))
#define R4(c) CLS(c), CLS((c) + 1), CLS((c) + 2), CLS((c) + 3)
#define R16(c) R4(c), R4((c) + 4), R4((c) + 8), R4((c) + 12)
#define R64(c) R16(c), R16((c) + 16), R16((c) + 32), R16((c) + 48)

static const unsigned char cls[256] = {R64(0), R64(64), R64(128), R64(192)};

#define TCHAR(c) (cls[(c)] & C_TCHAR)
#define OWS(c) ((c) == ' ' || (c) == '\t')

/* What is wrong with byte c where it does not belong. */
static const char *bad_byte(unsigned char c, const char *otherwise) {
  if (c == '\n') return "bare LF";
  if (c == 0) return "NUL byte";
  if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) return "control byte";
  return otherwise;
}

static int hexval(unsigned char c) {
  return IS_DIGIT(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Unaligned loads; compilers turn these memcpy calls into one move. */
static uint64_t load64(const unsigned char *p) {
  uint64_t x;
  memcpy(&x, p, 8);
  return x;
}

static uint32_t load32(const unsigned char *p) {
  uint32_t x;
  memcpy(&x, p, 4);
  return x;
}

/* Word-at-a-time tests (no byte order assumed): does any byte of x lie
** below n (n <= 128), or equal v? */
/* clang-format off */
#define ONES 0x0101010101010101u
#define HIGH 0x8080808080808080u
#define ANY_BELOW(x, n) (((x) - ONES * (n)) & ~(x) & HIGH)
#define ANY_EQ(x, v) ANY_BELOW((x) ^ (ONES * (v)), 1)
/* clang-format on */

/* Skips the bytes of class k from i; stops at end or at the first byte
** outside k.  Four table lookups per step where four bytes remain. */
static size_t skip_class(const unsigned char *b, size_t i, size_t end,
                         unsigned char k) {
  while (end - i >= 4 &&
         (cls[b[i]] & cls[b[i + 1]] & cls[b[i + 2]] & cls[b[i + 3]] & k))
    i += 4;
  while (i < end && (cls[b[i]] & k)) i++;
  return i;
}

/* skip_class for field values, eight bytes a step: VCHAR, SP and obs-text
** pass the word test; HTAB and anything else is left to the table. */
static size_t skip_field(const unsigned char *b, size_t i, size_t end) {
  while (i < end) {
    if (end - i >= 8) {
      uint64_t x = load64(b + i);
      if (!(ANY_BELOW(x, 0x20) | ANY_EQ(x, 0x7f))) {
        i += 8;
        continue;
      }
    }
    size_t stop = end - i >= 8 ? i + 8 : end;
    while (i < stop && (cls[b[i]] & C_FIELD)) i++;
    if (i < stop) break;
  }
  return i;
}

/* The same for request-targets: VCHAR but '#'. */
static size_t skip_target(const unsigned char *b, size_t i, size_t end) {
  while (i < end) {
    if (end - i >= 8) {
      uint64_t x = load64(b + i);
      if (!(ANY_BELOW(x, 0x21) | (x & HIGH) | ANY_EQ(x, 0x7f) |
            ANY_EQ(x, '#'))) {
        i += 8;
        continue;
      }
    }
    size_t stop = end - i >= 8 ? i + 8 : end;
    while (i < stop && (cls[b[i]] & C_TARGET)) i++;
    if (i < stop) break;
  }
  return i;
}

/* s[0..n) equals lower (n >= 4), ASCII case folded by `| 0x20`.  That maps only
** control bytes (and the letter's capital) onto the letters, digits and
** "-:/" of our constants, and the bytes compared here never hold a control
** byte but HTAB, whose image ')' is in none of them. */
static int fold_eq(const unsigned char *s, const char *lower, size_t n) {
  const uint64_t f8 = 0x2020202020202020u;
  const unsigned char *l = (const unsigned char *)lower;
  if (n >= 8) { /* 8 bytes at a time, the last word overlapping */
    for (size_t i = 0; i + 8 < n; i += 8)
      if ((load64(s + i) | f8) != load64(l + i)) return 0;
    return (load64(s + n - 8) | f8) == load64(l + n - 8);
  }
  /* 4 <= n < 8: every name compared here has at least 4 bytes */
  return (load32(s) | (uint32_t)f8) == load32(l) &&
         (load32(s + n - 4) | (uint32_t)f8) == load32(l + n - 4);
}

int sp_http_name_is(const char *buf, sp_http_span s, const char *lower) {
  size_t n = strlen(lower);
  if (s.len != n) return 0;
  const unsigned char *p = (const unsigned char *)buf + s.off;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = p[i];
    if (c >= 'A' && c <= 'Z') c |= 0x20;
    if (c != (unsigned char)lower[i]) return 0;
  }
  return 1;
}

/* ---- request head ------------------------------------------------------ */

enum {
  S_START,
  S_METHOD,
  S_TARGET,
  S_VERSION,
  S_LINE,
  S_NAME,
  S_VALUE,
  S_DONE,
  S_ERROR
};

/* r->te */
enum { TE_PRESENT = 1, TE_CHUNKED = 2, TE_OTHER = 4 };
/* r->conn */
enum { CONN_CLOSE = 1, CONN_KEEP_ALIVE = 2, CONN_UPGRADE = 4 };
/* r->expect */
enum { EXP_CONTINUE = 1, EXP_OTHER = 2 };

void sp_http_request_init(sp_http_request *r, sp_http_header *headers,
                          uint32_t max_headers, uint32_t max_head) {
  memset(r, 0, sizeof *r);
  r->headers = headers;
  r->max_headers = headers ? max_headers : 0;
  r->max_head = max_head < UINT32_MAX ? max_head : UINT32_MAX - 1;
  r->state = S_START;
}

static int fail(sp_http_request *r, int status, const char *reason) {
  r->state = S_ERROR;
  r->status = status;
  r->reason = reason;
  return SP_HTTP_ERR;
}

static sp_http_span span(size_t from, size_t to) {
  sp_http_span s = {(uint32_t)from, (uint32_t)(to - from)};
  return s;
}

/* authority = host [":" port] (RFC 3986 §3.2), no userinfo.  host is a
** reg-name (unreserved, sub-delims, pct-encoded) or an IP literal in
** brackets; port is at most 5 digits and <= 65535.  need_port: the port
** must be there (CONNECT). */
static int authority_ok(const unsigned char *s, size_t n, int need_port) {
  size_t i = 0;
  if (n > 0 && s[0] == '[') {
    for (i = 1; i < n && s[i] != ']'; i++)
      if (!(cls[s[i]] & C_HEX) && s[i] != ':' && s[i] != '.') return 0;
    if (i >= n || i < 3) return 0; /* no "]" or "[]" / "[x]" */
    i++;
  } else {
    for (;;) {
      i = skip_class(s, i, n, C_REG);
      if (i == n || s[i] == ':') break;
      if (s[i] != '%' || i + 2 >= n || !(cls[s[i + 1]] & C_HEX) ||
          !(cls[s[i + 2]] & C_HEX))
        return 0;
      i += 3;
    }
    if (i == 0) return 0; /* empty host */
  }
  if (i == n) return !need_port;
  if (s[i] != ':') return 0;
  size_t digits = n - i - 1;
  if (digits > 5 || (need_port && digits == 0)) return 0;
  unsigned long port = 0;
  for (i++; i < n; i++) {
    if (!IS_DIGIT(s[i])) return 0;
    port = port * 10 + (unsigned long)(s[i] - '0');
  }
  return port <= 65535;
}

/* Splits [from, to) into path and query at the first '?'. */
static void split_query(sp_http_request *r, const unsigned char *b, size_t from,
                        size_t to) {
  const unsigned char *q = memchr(b + from, '?', to - from);
  if (q) {
    size_t at = (size_t)(q - b);
    r->path = span(from, at);
    r->query = span(at + 1, to);
    r->flags |= SP_HTTP_HAS_QUERY;
  } else {
    r->path = span(from, to);
    r->query = span(to, to);
  }
}

/* The request line is complete: method [line, mark), target
** [mark + 1, mark2), version digits at mark2 + 6 and mark2 + 8. */
static int request_line(sp_http_request *r, const unsigned char *b) {
  size_t m0 = r->line, m1 = r->mark, t0 = r->mark + 1, t1 = r->mark2;
  unsigned char major = b[t1 + 6], minor = b[t1 + 8];
  if (major != '1' || minor > '1')
    return fail(r, 505, "HTTP version not supported");
  r->version = (uint8_t)(10 + (minor - '0'));
  r->method = span(m0, m1);
  r->target = span(t0, t1);
  const unsigned char *t = b + t0;
  size_t n = t1 - t0;
  int connect = (m1 - m0 == 7 && memcmp(b + m0, "CONNECT", 7) == 0);
  if (connect) { /* authority-form, §3.2.3 */
    if (!authority_ok(t, n, 1)) return fail(r, 400, "CONNECT needs host:port");
    r->form = SP_HTTP_AUTHORITY_FORM;
    r->authority = r->target;
  } else if (t[0] == '/') { /* origin-form, §3.2.1 */
    r->form = SP_HTTP_ORIGIN_FORM;
    split_query(r, b, t0, t1);
  } else if (n == 1 && t[0] == '*') { /* asterisk-form, §3.2.4 */
    if (!(m1 - m0 == 7 && memcmp(b + m0, "OPTIONS", 7) == 0))
      return fail(r, 400, "asterisk-form is only for OPTIONS");
    r->form = SP_HTTP_ASTERISK_FORM;
  } else { /* absolute-form, §3.2.2: http or https URIs only */
    size_t s = 0;
    if (n >= 7 && fold_eq(t, "http://", 7)) {
      s = 4;
    } else if (n >= 8 && fold_eq(t, "https://", 8)) {
      s = 5;
    } else {
      return fail(r, 400, "invalid request-target");
    }
    size_t a0 = s + 3, a1 = a0;
    while (a1 < n && t[a1] != '/' && t[a1] != '?') a1++;
    if (!authority_ok(t + a0, a1 - a0, 0))
      return fail(r, 400, "invalid authority in request-target");
    r->form = SP_HTTP_ABSOLUTE_FORM;
    r->scheme = span(t0, t0 + s);
    r->authority = span(t0 + a0, t0 + a1);
    split_query(r, b, t0 + a1, t1);
  }
  return SP_HTTP_OK;
}

/* Calls fn on each element of the list [from, to) (RFC 9110 §5.6.1):
** elements are separated by commas outside quoted strings, trimmed of
** OWS; empty elements are skipped.  Stops at the first non-OK result. */
typedef int (*list_fn)(sp_http_request *r, const unsigned char *e, size_t n);

static int each_element(sp_http_request *r, const unsigned char *b, size_t from,
                        size_t to, list_fn fn) {
  size_t i = from;
  while (i < to) {
    size_t e0 = i;
    int quoted = 0;
    for (; i < to; i++) {
      unsigned char c = b[i];
      if (quoted) {
        if (c == '\\' && i + 1 < to)
          i++;
        else if (c == '"')
          quoted = 0;
      } else if (c == '"') {
        quoted = 1;
      } else if (c == ',') {
        break;
      }
    }
    size_t e1 = i;
    while (e0 < e1 && OWS(b[e0])) e0++;
    while (e1 > e0 && OWS(b[e1 - 1])) e1--;
    if (e1 > e0) {
      int rc = fn(r, b + e0, e1 - e0);
      if (rc != SP_HTTP_OK) return rc;
    }
    i++; /* past the comma */
  }
  return SP_HTTP_OK;
}

static size_t token_len(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n && TCHAR(s[i])) i++;
  return i;
}

/* parameters = *( OWS ";" OWS [ token "=" ( token / quoted-string ) ] ),
** with BWS around "=" (RFC 9110 §5.6.6). 1 when s[0..n) is exactly that. */
static int params_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && OWS(s[i])) i++;
    if (i == n) return 1;
    if (s[i++] != ';') return 0;
    while (i < n && OWS(s[i])) i++;
    size_t t = token_len(s + i, n - i);
    if (t == 0) return 0;
    i += t;
    while (i < n && OWS(s[i])) i++;
    if (i == n || s[i++] != '=') return 0;
    while (i < n && OWS(s[i])) i++;
    if (i < n && s[i] == '"') {
      for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] == '\\')
          i++;
        else if (!(cls[s[i]] & C_QDTEXT))
          return 0;
      }
      if (i >= n) return 0;
      i++;
    } else {
      t = token_len(s + i, n - i);
      if (t == 0) return 0;
      i += t;
    }
  }
  return 1;
}

/* One transfer-coding of Transfer-Encoding (RFC 9112 §6.1). */
static int te_element(sp_http_request *r, const unsigned char *e, size_t n) {
  if (r->te & TE_CHUNKED)
    return fail(r, 400, "chunked is not the last transfer coding");
  size_t t = token_len(e, n);
  if (t == 0 || !params_ok(e + t, n - t))
    return fail(r, 400, "invalid Transfer-Encoding");
  if (t == 7 && fold_eq(e, "chunked", 7)) {
    if (t != n) return fail(r, 400, "invalid Transfer-Encoding");
    r->te |= TE_CHUNKED;
  } else {
    r->te |= TE_OTHER;
  }
  return SP_HTTP_OK;
}

/* One connection-option of Connection (RFC 9110 §7.6.1). */
static int conn_element(sp_http_request *r, const unsigned char *e, size_t n) {
  if (token_len(e, n) != n) return fail(r, 400, "invalid Connection");
  if (n == 5 && fold_eq(e, "close", 5))
    r->conn |= CONN_CLOSE;
  else if (n == 10 && fold_eq(e, "keep-alive", 10))
    r->conn |= CONN_KEEP_ALIVE;
  else if (n == 7 && fold_eq(e, "upgrade", 7))
    r->conn |= CONN_UPGRADE;
  return SP_HTTP_OK;
}

/* One expectation of Expect (RFC 9110 §10.1.1). */
static int expect_element(sp_http_request *r, const unsigned char *e,
                          size_t n) {
  if (n == 12 && fold_eq(e, "100-continue", 12))
    r->expect |= EXP_CONTINUE;
  else
    r->expect |= EXP_OTHER;
  return SP_HTTP_OK;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6), at most INT64_MAX.  Repeated
** lines must carry the same value. */
static int content_length(sp_http_request *r, const unsigned char *v,
                          size_t n) {
  if (n == 0) return fail(r, 400, "invalid Content-Length");
  int64_t len = 0;
  for (size_t i = 0; i < n; i++) {
    if (!IS_DIGIT(v[i])) return fail(r, 400, "invalid Content-Length");
    int d = v[i] - '0';
    if (len > (INT64_MAX - d) / 10)
      return fail(r, 400, "Content-Length too large");
    len = len * 10 + d;
  }
  if ((r->flags & SP_HTTP_HAS_LENGTH) && r->content_length != len)
    return fail(r, 400, "conflicting Content-Length");
  r->content_length = len;
  r->flags |= SP_HTTP_HAS_LENGTH;
  return SP_HTTP_OK;
}

/* A field line is complete: name [line, mark), value up to the CR at
** cr.  Records it and judges the fields that decide framing. */
static int field_line(sp_http_request *r, const unsigned char *b, size_t cr) {
  size_t n0 = r->line, n1 = r->mark, v0 = r->mark + 1, v1 = cr;
  while (v0 < v1 && OWS(b[v0])) v0++;
  while (v1 > v0 && OWS(b[v1 - 1])) v1--;
  if (r->nheaders == r->max_headers)
    return fail(r, 431, "too many header fields");
  sp_http_header *h = &r->headers[r->nheaders++];
  h->name = span(n0, n1);
  h->value = span(v0, v1);
  const unsigned char *name = b + n0, *v = b + v0;
  size_t vn = v1 - v0;
  switch (n1 - n0) {
    case 4:
      if (!fold_eq(name, "host", 4)) break;
      if (r->flags & SP_HTTP_HAS_HOST) return fail(r, 400, "duplicate Host");
      if (vn > 0 && !authority_ok(v, vn, 0))
        return fail(r, 400, "invalid Host");
      r->flags |= SP_HTTP_HAS_HOST;
      r->host = h->value;
      break;
    case 6:
      if (fold_eq(name, "expect", 6))
        return each_element(r, b, v0, v1, expect_element);
      break;
    case 10:
      if (fold_eq(name, "connection", 10))
        return each_element(r, b, v0, v1, conn_element);
      break;
    case 14:
      if (fold_eq(name, "content-length", 14)) return content_length(r, v, vn);
      break;
    case 17:
      if (!fold_eq(name, "transfer-encoding", 17)) break;
      r->te |= TE_PRESENT;
      return each_element(r, b, v0, v1, te_element);
  }
  return SP_HTTP_OK;
}

/* The empty line ended the head at end: the checks that need every field
** (RFC 9112 §3.2, §6.1, §6.3; RFC 9110 §10.1.1), then the derived flags. */
static int head_done(sp_http_request *r, size_t end) {
  r->head_len = (uint32_t)end;
  if (r->version == 11 && !(r->flags & SP_HTTP_HAS_HOST))
    return fail(r, 400, "missing Host");
  if (r->te) {
    if (r->flags & SP_HTTP_HAS_LENGTH)
      return fail(r, 400, "Content-Length with Transfer-Encoding");
    if (r->version == 10) return fail(r, 400, "Transfer-Encoding in HTTP/1.0");
    if (!(r->te & TE_CHUNKED))
      return fail(r, 400, "chunked is not the last transfer coding");
    if (r->te & TE_OTHER) return fail(r, 501, "unsupported transfer coding");
    r->flags |= SP_HTTP_CHUNKED;
  }
  if (r->version == 11) {
    if (r->expect & EXP_OTHER) return fail(r, 417, "unsupported expectation");
    if (r->expect & EXP_CONTINUE) r->flags |= SP_HTTP_EXPECT_CONTINUE;
    if (!(r->conn & CONN_CLOSE)) r->flags |= SP_HTTP_KEEP_ALIVE;
  } else if ((r->conn & (CONN_CLOSE | CONN_KEEP_ALIVE)) == CONN_KEEP_ALIVE) {
    r->flags |= SP_HTTP_KEEP_ALIVE;
  }
  if (r->conn & CONN_UPGRADE) r->flags |= SP_HTTP_UPGRADE;
  r->state = S_DONE;
  return SP_HTTP_OK;
}

int sp_http_parse_request(sp_http_request *r, const char *buf, size_t len) {
  const unsigned char *b = (const unsigned char *)buf;
  size_t end = len < r->max_head ? len : r->max_head;
  size_t i = r->pos;
  unsigned char c;

  switch (r->state) {
    case S_START: goto start;
    case S_METHOD: goto method;
    case S_TARGET: goto target;
    case S_VERSION: goto version;
    case S_LINE: goto line;
    case S_NAME: goto name;
    case S_VALUE: goto value;
    case S_DONE: return SP_HTTP_OK;
    default: return SP_HTTP_ERR;
  }

start:
  r->state = S_START;
  while (i < end && b[i] == '\r') {
    if (i + 1 >= end) goto again;
    if (b[i + 1] != '\n') return fail(r, 400, "bare CR");
    i += 2;
  }
  if (i >= end) goto again; /* another empty line may come */
  r->line = (uint32_t)i;
  r->state = S_METHOD;
method:
  i = skip_class(b, i, end, C_TCHAR);
  if (i >= end) goto again;
  if (b[i] != ' ' || i == r->line)
    return fail(r, 400, bad_byte(b[i], "invalid request line"));
  r->mark = (uint32_t)i++;
  r->state = S_TARGET;
target:
  i = skip_target(b, i, end);
  if (i >= end) goto again;
  c = b[i];
  if (c != ' ') {
    if (c == '\r') return fail(r, 400, "missing HTTP version");
    if (c == '#') return fail(r, 400, "fragment in request-target");
    return fail(r, 400, bad_byte(c, "invalid byte in request-target"));
  }
  if (i == (size_t)r->mark + 1) return fail(r, 400, "invalid request line");
  r->mark2 = (uint32_t)i++;
  r->state = S_VERSION;
version:
  /* "HTTP/" DIGIT "." DIGIT CR LF: the usual two at once, else one byte at
  ** a time (so a wrong byte is found where it is). */
  if (i == (size_t)r->mark2 + 1 && end - i >= 10 && b[i + 8] == '\r' &&
      b[i + 9] == '\n') {
    uint64_t x = load64(b + i);
    if (x == load64((const unsigned char *)"HTTP/1.1") ||
        x == load64((const unsigned char *)"HTTP/1.0")) {
      i += 9;
      goto version_done;
    }
  }
  for (; i < end; i++) {
    static const char pattern[] = "HTTP/0.0\r\n";
    size_t k = i - r->mark2 - 1;
    c = b[i];
    if (k == 5 || k == 7) {
      if (!IS_DIGIT(c))
        return fail(r, 400, bad_byte(c, "invalid HTTP version"));
    } else if (c != (unsigned char)pattern[k]) {
      if (k == 9) return fail(r, 400, "bare CR");
      return fail(r, 400, bad_byte(c, "invalid HTTP version"));
    }
    if (k == 9) goto version_done;
  }
  goto again;
version_done:
  if (request_line(r, b) != SP_HTTP_OK) return SP_HTTP_ERR;
  i++;

line:
  r->state = S_LINE;
  r->line = (uint32_t)i;
  if (i >= end) goto again;
  c = b[i];
  if (c == '\r') {
    if (i + 1 >= end) goto again;
    if (b[i + 1] != '\n') return fail(r, 400, "bare CR");
    r->pos = (uint32_t)(i + 2);
    return head_done(r, i + 2);
  }
  if (OWS(c))
    return fail(r, 400,
                r->nheaders ? "obsolete line folding"
                            : "whitespace before the first field");
  r->state = S_NAME;
name:
  i = skip_class(b, i, end, C_TCHAR);
  if (i >= end) goto again;
  c = b[i];
  if (c != ':') {
    if (OWS(c)) return fail(r, 400, "whitespace before colon");
    if (c == '\r') return fail(r, 400, "field line without colon");
    return fail(r, 400, bad_byte(c, "invalid field name"));
  }
  if (i == r->line) return fail(r, 400, "empty field name");
  r->mark = (uint32_t)i++;
  r->state = S_VALUE;
value:
  i = skip_field(b, i, end);
  if (i >= end) goto again;
  if (b[i] != '\r') return fail(r, 400, bad_byte(b[i], "invalid field value"));
  if (i + 1 >= end) goto again;
  if (b[i + 1] != '\n') return fail(r, 400, "bare CR");
  if (field_line(r, b, i) != SP_HTTP_OK) return SP_HTTP_ERR;
  i += 2;
  goto line;

again:
  r->pos = (uint32_t)i;
  if (len >= r->max_head) return fail(r, 431, "request head too large");
  return SP_HTTP_AGAIN;
}

/* ---- chunked body ------------------------------------------------------ */

enum {
  K_SIZE0,
  K_SIZE,
  K_EXT_SEMI,
  K_EXT_NAME0,
  K_EXT_NAME,
  K_EXT_EQ,
  K_EXT_VAL0,
  K_EXT_TOKEN,
  K_EXT_QUOTED,
  K_EXT_QPAIR,
  K_EXT_AFTERQ,
  K_SIZE_LF,
  K_DATA,
  K_DATA_CR,
  K_DATA_LF,
  K_TRAILER,
  K_TNAME,
  K_TVALUE,
  K_TLF,
  K_END_LF,
  K_DONE,
  K_ERROR
};

void sp_http_chunked_init(sp_http_chunked *c, uint32_t max_ext,
                          uint32_t max_trailer) {
  memset(c, 0, sizeof *c);
  c->max_ext = max_ext;
  c->max_trailer = max_trailer;
  c->state = K_SIZE0;
}

static int chunk_fail(sp_http_chunked *c, int status, const char *reason) {
  c->state = K_ERROR;
  c->status = status;
  c->reason = reason;
  return SP_HTTP_ERR;
}

int sp_http_chunked_parse(sp_http_chunked *c, const char *buf, size_t len,
                          size_t *used, size_t *data_off, size_t *data_len) {
  const unsigned char *b = (const unsigned char *)buf;
  size_t i = 0;
  *used = 0;
  *data_off = 0;
  *data_len = 0;
  if (c->state == K_DONE) return SP_HTTP_OK;
  if (c->state == K_ERROR) return SP_HTTP_ERR;
  for (; i < len; i++) {
    unsigned char ch = b[i];
    int st = c->state;
    if (st >= K_EXT_SEMI && st <= K_EXT_AFTERQ && ch != '\r' &&
        ++c->ext_bytes > c->max_ext)
      return chunk_fail(c, 400, "chunk extensions too long");
    if (st >= K_TRAILER && st <= K_TLF && !(st == K_TRAILER && ch == '\r') &&
        ++c->trailer_bytes > c->max_trailer)
      return chunk_fail(c, 431, "trailer section too large");
    switch (st) {
      case K_SIZE0:
        if (!(cls[ch] & C_HEX))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk size"));
        c->remaining = (uint64_t)hexval(ch);
        c->digits = 1;
        c->state = K_SIZE;
        break;
      case K_SIZE:
        if (cls[ch] & C_HEX) {
          int d = hexval(ch);
          if (c->digits == SP_HTTP_CHUNK_MAX_DIGITS)
            return chunk_fail(c, 400, "chunk size too long");
          if (c->remaining > ((uint64_t)INT64_MAX - (uint64_t)d) / 16)
            return chunk_fail(c, 400, "chunk size too large");
          c->remaining = c->remaining * 16 + (uint64_t)d;
          c->digits++;
        } else if (ch == ';') {
          if (++c->ext_bytes > c->max_ext)
            return chunk_fail(c, 400, "chunk extensions too long");
          c->state = K_EXT_NAME0;
        } else if (OWS(ch)) {
          if (++c->ext_bytes > c->max_ext)
            return chunk_fail(c, 400, "chunk extensions too long");
          c->state = K_EXT_SEMI;
        } else if (ch == '\r') {
          c->state = K_SIZE_LF;
        } else {
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk size"));
        }
        break;
      case K_EXT_SEMI:
        if (ch == ';')
          c->state = K_EXT_NAME0;
        else if (!OWS(ch))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_NAME0:
        if (TCHAR(ch))
          c->state = K_EXT_NAME;
        else if (!OWS(ch))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_NAME:
        if (TCHAR(ch)) break;
        if (OWS(ch))
          c->state = K_EXT_EQ;
        else if (ch == '=')
          c->state = K_EXT_VAL0;
        else if (ch == ';')
          c->state = K_EXT_NAME0;
        else if (ch == '\r')
          c->state = K_SIZE_LF;
        else
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_EQ:
        if (ch == '=')
          c->state = K_EXT_VAL0;
        else if (ch == ';')
          c->state = K_EXT_NAME0;
        else if (!OWS(ch))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_VAL0:
        if (TCHAR(ch))
          c->state = K_EXT_TOKEN;
        else if (ch == '"')
          c->state = K_EXT_QUOTED;
        else if (!OWS(ch))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_TOKEN:
        if (TCHAR(ch)) break;
        if (OWS(ch))
          c->state = K_EXT_SEMI;
        else if (ch == ';')
          c->state = K_EXT_NAME0;
        else if (ch == '\r')
          c->state = K_SIZE_LF;
        else
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_QUOTED:
        if (ch == '\\')
          c->state = K_EXT_QPAIR;
        else if (ch == '"')
          c->state = K_EXT_AFTERQ;
        else if (!(cls[ch] & C_QDTEXT))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_EXT_QPAIR:
        if (!(cls[ch] & C_FIELD))
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        c->state = K_EXT_QUOTED;
        break;
      case K_EXT_AFTERQ:
        if (OWS(ch))
          c->state = K_EXT_SEMI;
        else if (ch == ';')
          c->state = K_EXT_NAME0;
        else if (ch == '\r')
          c->state = K_SIZE_LF;
        else
          return chunk_fail(c, 400, bad_byte(ch, "invalid chunk extension"));
        break;
      case K_SIZE_LF:
        if (ch != '\n') return chunk_fail(c, 400, "bare CR");
        c->state = c->remaining ? K_DATA : K_TRAILER;
        break;
      case K_DATA: {
        size_t n = len - i;
        if ((uint64_t)n > c->remaining) n = (size_t)c->remaining;
        c->remaining -= n;
        if (c->remaining == 0) c->state = K_DATA_CR;
        *data_off = i;
        *data_len = n;
        *used = i + n;
        return SP_HTTP_DATA;
      }
      case K_DATA_CR:
        if (ch != '\r')
          return chunk_fail(c, 400, "missing CRLF after chunk data");
        c->state = K_DATA_LF;
        break;
      case K_DATA_LF:
        if (ch != '\n') return chunk_fail(c, 400, "bare CR");
        c->state = K_SIZE0;
        break;
      case K_TRAILER:
        if (ch == '\r')
          c->state = K_END_LF;
        else if (TCHAR(ch))
          c->state = K_TNAME;
        else if (OWS(ch))
          return chunk_fail(c, 400, "obsolete line folding");
        else
          return chunk_fail(c, 400, bad_byte(ch, "invalid trailer field"));
        break;
      case K_TNAME:
        if (ch == ':')
          c->state = K_TVALUE;
        else if (OWS(ch))
          return chunk_fail(c, 400, "whitespace before colon");
        else if (!TCHAR(ch))
          return chunk_fail(c, 400, bad_byte(ch, "invalid trailer field"));
        break;
      case K_TVALUE:
        if (ch == '\r')
          c->state = K_TLF;
        else if (!(cls[ch] & C_FIELD))
          return chunk_fail(c, 400, bad_byte(ch, "invalid trailer field"));
        break;
      case K_TLF:
        if (ch != '\n') return chunk_fail(c, 400, "bare CR");
        c->state = K_TRAILER;
        break;
      case K_END_LF:
        if (ch != '\n') return chunk_fail(c, 400, "bare CR");
        c->state = K_DONE;
        *used = i + 1;
        return SP_HTTP_OK;
    }
  }
  *used = len;
  return SP_HTTP_AGAIN;
}
