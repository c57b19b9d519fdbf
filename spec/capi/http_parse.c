/*
** spec/capi/http_parse.c -- the HTTP/1.1 request parser and chunked decoder
** of csrc/http_parse.c: every request form, split invariance (every byte
** boundary, and one byte at a time from buffers that move), and the
** request-smuggling and malformed cases with the status each must get
** (docs/http-parsing.md).
**
** Each check prints "ok" or "not ok" with a description; the last line is
** "N passed, M failed" and the exit status is 0 only if nothing failed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http_parse.h"
#include "http_parse_driver.h"

#define MAX_HEADERS 16
#define MAX_HEAD 1024

/* ---- request heads ----------------------------------------------------- */

static parsed whole;

/* Parses s[0..n) in one call into `whole`, then checks that every way of
** splitting it gives the same result: each boundary k (prefix, then all),
** and one byte more per call.  Returns 1 when all agreed. */
static int parse_split(const char *s, size_t n, uint32_t max_headers,
                       uint32_t max_head) {
  static parsed p;
  parsed_start(&whole, max_headers, max_head);
  parsed_feed(&whole, s, n);
  for (size_t k = 1; k < n; k++) {
    parsed_start(&p, max_headers, max_head);
    int rc = parsed_feed(&p, s, k);
    if (rc == SP_HTTP_ERR) {
      if (!parsed_same(&p, &whole)) return 0;
      continue;
    }
    parsed_feed(&p, s, n);
    if (!parsed_same(&p, &whole)) return 0;
  }
  parsed_start(&p, max_headers, max_head);
  parsed_trickle(&p, s, n, 1);
  if (n > 0 && !parsed_same(&p, &whole)) return 0;
  /* Calls after the end give the same answer again. */
  if (whole.rc != SP_HTTP_AGAIN) {
    p = whole;
    parsed_feed(&p, s, n);
    if (!parsed_same(&p, &whole)) return 0;
  }
  return 1;
}

static int span_is(const char *buf, sp_http_span s, const char *want) {
  return s.len == strlen(want) && memcmp(buf + s.off, want, s.len) == 0;
}

#define LIT(s) s, sizeof(s) - 1

/* Parses a literal that must be accepted; returns its request. */
static const sp_http_request *ok_req(const char *what, const char *s,
                                     size_t n) {
  int split = parse_split(s, n, MAX_HEADERS, MAX_HEAD);
  CHECK(whole.rc == SP_HTTP_OK, "%s: accepted (%d %s)", what, whole.r.status,
        whole.rc == SP_HTTP_ERR ? whole.r.reason : "");
  CHECK(split, "%s: the same split at every byte", what);
  return &whole.r;
}

static void test_forms(void) {
  const sp_http_request *r;
  const char *s;

  s = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
  r = ok_req("origin-form GET", s, strlen(s));
  CHECK(span_is(s, r->method, "GET") && span_is(s, r->target, "/") &&
            span_is(s, r->path, "/") && r->query.len == 0 &&
            !(r->flags & SP_HTTP_HAS_QUERY),
        "method, target, path; no query");
  CHECK(r->version == 11 && r->form == SP_HTTP_ORIGIN_FORM &&
            r->head_len == strlen(s) && r->nheaders == 1,
        "version 1.1, origin-form, head_len, one header");
  CHECK(span_is(s, r->host, "example.com") &&
            span_is(s, r->headers[0].name, "Host") &&
            span_is(s, r->headers[0].value, "example.com"),
        "Host span and header spans");
  CHECK(r->flags == (SP_HTTP_KEEP_ALIVE | SP_HTTP_HAS_HOST),
        "HTTP/1.1 is keep-alive by default; no body");

  s = "GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\nHost: h\r\n\r\n";
  r = ok_req("origin-form with query", s, strlen(s));
  CHECK(span_is(s, r->path, "/a/b%20c") && span_is(s, r->query, "x=1&y=%2F") &&
            (r->flags & SP_HTTP_HAS_QUERY),
        "path and query split at the first '?'");

  s = "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n";
  r = ok_req("empty query", s, strlen(s));
  CHECK(span_is(s, r->path, "/p") && r->query.len == 0 &&
            (r->flags & SP_HTTP_HAS_QUERY),
        "an empty query is still a query");

  s = "GET http://example.com:8080/p/q?a=b HTTP/1.1\r\nHost: other\r\n\r\n";
  r = ok_req("absolute-form", s, strlen(s));
  CHECK(r->form == SP_HTTP_ABSOLUTE_FORM && span_is(s, r->scheme, "http") &&
            span_is(s, r->authority, "example.com:8080") &&
            span_is(s, r->path, "/p/q") && span_is(s, r->query, "a=b"),
        "absolute-form split into scheme, authority, path, query");

  s = "POST HTTPS://[::1]:443?x HTTP/1.1\r\nHost: [::1]:443\r\n"
      "Content-Length: 0\r\n\r\n";
  r = ok_req("absolute-form, no path, IPv6", s, strlen(s));
  CHECK(span_is(s, r->scheme, "HTTPS") &&
            span_is(s, r->authority, "[::1]:443") && r->path.len == 0 &&
            span_is(s, r->query, "x"),
        "empty path (means /), query, bracketed IPv6 authority");

  s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
  r = ok_req("authority-form CONNECT", s, strlen(s));
  CHECK(r->form == SP_HTTP_AUTHORITY_FORM &&
            span_is(s, r->authority, "example.com:443"),
        "authority-form authority");

  s = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
  r = ok_req("asterisk-form OPTIONS", s, strlen(s));
  CHECK(r->form == SP_HTTP_ASTERISK_FORM && span_is(s, r->target, "*"),
        "asterisk-form");

  s = "GET / HTTP/1.0\r\n\r\n";
  r = ok_req("HTTP/1.0 without Host", s, strlen(s));
  CHECK(r->version == 10 && r->flags == 0 && r->nheaders == 0,
        "HTTP/1.0 closes by default; Host optional");

  s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
  r = ok_req("HTTP/1.0 keep-alive", s, strlen(s));
  CHECK(r->flags == SP_HTTP_KEEP_ALIVE, "Connection: keep-alive in 1.0");

  s = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
  r = ok_req("HTTP/1.0 keep-alive and close", s, strlen(s));
  CHECK(r->flags == 0, "close wins over keep-alive");

  s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n";
  r = ok_req("HTTP/1.1 Connection: close", s, strlen(s));
  CHECK(!(r->flags & SP_HTTP_KEEP_ALIVE), "close in a token list");

  s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: ,Upgrade,,\r\n"
      "Connection:\r\nUpgrade: websocket\r\n\r\n";
  r = ok_req("Connection: upgrade", s, strlen(s));
  CHECK((r->flags & SP_HTTP_UPGRADE) && (r->flags & SP_HTTP_KEEP_ALIVE) &&
            r->nheaders == 4,
        "upgrade token; empty list elements and values");

  s = "PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
      "Content-Length: 10\r\n\r\n";
  r = ok_req("Expect: 100-continue", s, strlen(s));
  CHECK((r->flags & SP_HTTP_EXPECT_CONTINUE) &&
            (r->flags & SP_HTTP_HAS_LENGTH) && r->content_length == 10,
        "expect-continue flag and Content-Length 10");

  s = "PUT /up HTTP/1.0\r\nExpect: 100-continue, x\r\nContent-Length: "
      "1\r\n\r\n";
  r = ok_req("Expect in HTTP/1.0", s, strlen(s));
  CHECK(!(r->flags & SP_HTTP_EXPECT_CONTINUE), "HTTP/1.0 ignores Expect");

  s = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
  r = ok_req("chunked", s, strlen(s));
  CHECK((r->flags & SP_HTTP_CHUNKED) && !(r->flags & SP_HTTP_HAS_LENGTH),
        "chunked flag (coding names ignore case)");

  s = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n"
      "Transfer-Encoding: , chunked ,\r\n\r\n";
  r = ok_req("chunked over two lines with empty elements", s, strlen(s));
  CHECK(r->flags & SP_HTTP_CHUNKED, "chunked is last");

  s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n"
      "content-length: 0042\r\n\r\n";
  r = ok_req("repeated equal Content-Length", s, strlen(s));
  CHECK(r->content_length == 42, "one length, 42");

  s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
      "9223372036854775807\r\n\r\n";
  r = ok_req("largest Content-Length", s, strlen(s));
  CHECK(r->content_length == INT64_MAX, "INT64_MAX");

  s = "\r\n\r\nGET / HTTP/1.1\r\nHOST: h\r\n\r\n";
  r = ok_req("empty lines before the request line", s, strlen(s));
  CHECK(r->method.off == 4 && r->head_len == strlen(s) &&
            (r->flags & SP_HTTP_HAS_HOST),
        "skipped; header names ignore case");

  s = "GET / HTTP/1.1\r\nHost:\r\nX-A:  a b \t\r\nX-B:\t\r\nX-C: "
      "\xff\x80ok\r\n\r\n";
  r = ok_req("value trimming, empty values, obs-text", s, strlen(s));
  CHECK(r->host.len == 0 && span_is(s, r->headers[1].value, "a b") &&
            r->headers[2].value.len == 0 &&
            span_is(s, r->headers[3].value, "\xff\x80ok"),
        "OWS trimmed, empty Host allowed, obs-text kept");

  s = "get /x HTTP/1.1\r\nHost: a.b-c_d~e%41!$&'()*+,;=:65535\r\n"
      "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n";
  r = ok_req("unusual but valid tokens and host", s, strlen(s));
  CHECK(span_is(s, r->method, "get") && r->nheaders == 2,
        "any token is a method; every tchar in a name");

  s = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
  r = ok_req("pipelined", s, strlen(s));
  CHECK(r->head_len == strlen(s) / 2, "head_len stops at the first request");

  s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  r = ok_req("head followed by a body", s, strlen(s));
  CHECK(r->head_len == strlen(s) - 5, "the body is not part of the head");

  CHECK(sp_http_name_is(s, r->headers[1].name, "content-length") &&
            !sp_http_name_is(s, r->headers[1].name, "content-lengt"),
        "sp_http_name_is ignores case, compares lengths");
}

static void test_incomplete(void) {
  static const char *prefixes[] = {"",
                                   "\r",
                                   "\r\n",
                                   "G",
                                   "GET",
                                   "GET ",
                                   "GET /",
                                   "GET / ",
                                   "GET / HTTP/1",
                                   "GET / HTTP/1.1",
                                   "GET / HTTP/1.1\r",
                                   "GET / HTTP/1.1\r\n",
                                   "GET / HTTP/1.1\r\nHo",
                                   "GET / HTTP/1.1\r\nHost:",
                                   "GET / HTTP/1.1\r\nHost: h\r",
                                   "GET / HTTP/1.1\r\nHost: h\r\n\r"};
  int all = 1;
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
    parsed p;
    parsed_start(&p, MAX_HEADERS, MAX_HEAD);
    if (parsed_feed(&p, prefixes[i], strlen(prefixes[i])) != SP_HTTP_AGAIN) {
      all = 0;
      printf("# not AGAIN: \"%s\"\n", prefixes[i]);
    }
  }
  CHECK(all, "every prefix of a valid head asks for more");
}

/* A request that must be rejected with status and reason. */
typedef struct bad_case {
  const char *what, *in;
  size_t len;
  int status;
  const char *reason;
} bad_case;

#define BAD(what, lit, status, reason)                                         \
  { what, lit, sizeof(lit) - 1, status, reason }
#define H "GET / HTTP/1.1\r\nHost: h\r\n"
#define P "POST / HTTP/1.1\r\nHost: h\r\n"

static const bad_case bad_cases[] = {
    /* request smuggling: framing */
    BAD("Content-Length with Transfer-Encoding",
        P "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "Content-Length with Transfer-Encoding"),
    BAD("Transfer-Encoding with Content-Length",
        P "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
        "Content-Length with Transfer-Encoding"),
    BAD("differing Content-Length",
        P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
        "conflicting Content-Length"),
    BAD("Content-Length list", P "Content-Length: 5, 5\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("signed Content-Length +", P "Content-Length: +5\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("signed Content-Length -", P "Content-Length: -5\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("hex Content-Length", P "Content-Length: 0x10\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("Content-Length 1e3", P "Content-Length: 1e3\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("Content-Length with inner space", P "Content-Length: 1 2\r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("empty Content-Length", P "Content-Length: \r\n\r\n", 400,
        "invalid Content-Length"),
    BAD("Content-Length over INT64_MAX",
        P "Content-Length: 9223372036854775808\r\n\r\n", 400,
        "Content-Length too large"),
    BAD("Content-Length of 30 digits",
        P "Content-Length: 100000000000000000000000000000\r\n\r\n", 400,
        "Content-Length too large"),
    BAD("chunked not last", P "Transfer-Encoding: chunked, gzip\r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("chunked twice", P "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("chunked then another line",
        P "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("gzip only", P "Transfer-Encoding: gzip\r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("identity", P "Transfer-Encoding: identity\r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("empty Transfer-Encoding", P "Transfer-Encoding: \r\n\r\n", 400,
        "chunked is not the last transfer coding"),
    BAD("gzip then chunked", P "Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
        "unsupported transfer coding"),
    BAD("chunked with parameters", P "Transfer-Encoding: chunked;x=1\r\n\r\n",
        400, "invalid Transfer-Encoding"),
    BAD("quoted chunked", P "Transfer-Encoding: \"chunked\"\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    BAD("chunked with junk", P "Transfer-Encoding: chunked x\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    BAD("Transfer-Encoding in HTTP/1.0",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "Transfer-Encoding in HTTP/1.0"),
    /* line structure */
    BAD("obs-fold", H "X-A: a\r\n b\r\n\r\n", 400, "obsolete line folding"),
    BAD("obs-fold with HTAB", H "X-A: a\r\n\tb\r\n\r\n", 400,
        "obsolete line folding"),
    BAD("whitespace after the request line",
        "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400,
        "whitespace before the first field"),
    BAD("bare LF ending the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n",
        400, "bare LF"),
    BAD("bare LF ending a field", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400,
        "bare LF"),
    BAD("bare LF ending the head", H "\n", 400, "bare LF"),
    BAD("bare LF before the request line", "\nGET / HTTP/1.1\r\n", 400,
        "bare LF"),
    BAD("bare LF in the target", "GET /\n HTTP/1.1\r\n", 400, "bare LF"),
    BAD("bare CR in a value", H "X-A: a\rb\r\n\r\n", 400, "bare CR"),
    BAD("bare CR ending the request line", "GET / HTTP/1.1\rHost: h\r\n\r\n",
        400, "bare CR"),
    BAD("bare CR before the request line", "\rGET / HTTP/1.1\r\n", 400,
        "bare CR"),
    BAD("CR CR LF ending the head", H "\r\r\n", 400, "bare CR"),
    BAD("NUL in a value", H "X-A: a\0b\r\n\r\n", 400, "NUL byte"),
    BAD("NUL in a name", H "X\0A: b\r\n\r\n", 400, "NUL byte"),
    BAD("NUL in the target", "GET /\0 HTTP/1.1\r\n", 400, "NUL byte"),
    BAD("NUL in the method", "G\0T / HTTP/1.1\r\n", 400, "NUL byte"),
    BAD("control byte in a value",
        H "X-A: a\x01"
          "b\r\n\r\n",
        400, "control byte"),
    BAD("ESC in a value", H "X-A: \x1b[0m\r\n\r\n", 400, "control byte"),
    BAD("DEL in a value", H "X-A: a\x7f\r\n\r\n", 400, "control byte"),
    BAD("vertical tab in a value", H "X-A: a\vb\r\n\r\n", 400, "control byte"),
    BAD("form feed in the target", "GET /\f HTTP/1.1\r\n", 400, "control byte"),
    BAD("TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400,
        "control byte"),
    BAD("space before colon", H "Content-Length : 5\r\n\r\n", 400,
        "whitespace before colon"),
    BAD("tab before colon", H "Transfer-Encoding\t: chunked\r\n\r\n", 400,
        "whitespace before colon"),
    BAD("space inside a name", H "X A: b\r\n\r\n", 400,
        "whitespace before colon"),
    BAD("invalid name byte", H "X(A): b\r\n\r\n", 400, "invalid field name"),
    BAD("obs-text in a name", H "X\xe9: b\r\n\r\n", 400, "invalid field name"),
    BAD("empty name", H ": b\r\n\r\n", 400, "empty field name"),
    BAD("line without colon", H "X-A\r\n\r\n", 400, "field line without colon"),
    /* request line */
    BAD("invalid method byte", "G(T / HTTP/1.1\r\n", 400,
        "invalid request line"),
    BAD("empty method", " / HTTP/1.1\r\n", 400, "invalid request line"),
    BAD("two spaces after method", "GET  / HTTP/1.1\r\n", 400,
        "invalid request line"),
    BAD("tab as separator", "GET\t/ HTTP/1.1\r\n", 400, "invalid request line"),
    BAD("two spaces before version", "GET /  HTTP/1.1\r\n", 400,
        "invalid HTTP version"),
    BAD("fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "fragment in request-target"),
    BAD("obs-text in target", "GET /\xc3\xa9 HTTP/1.1\r\n", 400,
        "invalid byte in request-target"),
    BAD("relative target", "GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "invalid request-target"),
    BAD("other scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "invalid request-target"),
    BAD("userinfo in absolute-form",
        "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "invalid authority in request-target"),
    BAD("empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "invalid authority in request-target"),
    BAD("bad port in absolute-form",
        "GET http://h:99999/ HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "invalid authority in request-target"),
    BAD("asterisk-form with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "asterisk-form is only for OPTIONS"),
    BAD("CONNECT with origin-form", "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
        400, "CONNECT needs host:port"),
    BAD("CONNECT without port", "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400,
        "CONNECT needs host:port"),
    BAD("HTTP/0.9 request line", "GET /\r\n\r\n", 400, "missing HTTP version"),
    BAD("method alone", "GET\r\n\r\n", 400, "invalid request line"),
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505,
        "HTTP version not supported"),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505,
        "HTTP version not supported"),
    BAD("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505,
        "HTTP version not supported"),
    BAD("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505,
        "HTTP version not supported"),
    BAD("lower-case http", "GET / http/1.1\r\n", 400, "invalid HTTP version"),
    BAD("HTTP/1.10", "GET / HTTP/1.10\r\n", 400, "invalid HTTP version"),
    BAD("HTTP/11", "GET / HTTP/11\r\n", 400, "invalid HTTP version"),
    BAD("HTTP/1.x", "GET / HTTP/1.x\r\n", 400, "invalid HTTP version"),
    BAD("space after version", "GET / HTTP/1.1 \r\n", 400,
        "invalid HTTP version"),
    /* Host */
    BAD("missing Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
    BAD("duplicate Host", H "Host: h\r\n\r\n", 400, "duplicate Host"),
    BAD("duplicate Host in HTTP/1.0",
        "GET / HTTP/1.0\r\nhost: a\r\nHOST: a\r\n\r\n", 400, "duplicate Host"),
    BAD("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400,
        "invalid Host"),
    BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400,
        "invalid Host"),
    BAD("Host with a bad port", "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", 400,
        "invalid Host"),
    BAD("Host with a path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400,
        "invalid Host"),
    BAD("Host with bad percent", "GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n", 400,
        "invalid Host"),
    BAD("Host empty IPv6", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400,
        "invalid Host"),
    /* other fields */
    BAD("unknown expectation", H "Expect: 100-continue, fly\r\n\r\n", 417,
        "unsupported expectation"),
    BAD("Connection with parameters", H "Connection: close;x\r\n\r\n", 400,
        "invalid Connection"),
};

static void test_bad(void) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
    const bad_case *c = &bad_cases[i];
    int split = parse_split(c->in, c->len, MAX_HEADERS, MAX_HEAD);
    const sp_http_request *r = &whole.r;
    CHECK(whole.rc == SP_HTTP_ERR && r->status == c->status &&
              strcmp(r->reason, c->reason) == 0,
          "%s: %d %s (got %d %s)", c->what, c->status, c->reason,
          whole.rc == SP_HTTP_ERR ? r->status : 0,
          whole.rc == SP_HTTP_ERR ? r->reason : "accepted or incomplete");
    CHECK(split, "%s: the same split at every byte", c->what);
  }
}

/* Errors are found at the offending byte, before the head is complete. */
static void test_early(void) {
  static const char *early[] = {"\x16\x03",
                                "GET /\x01",
                                "GET / HTTP/1.1\r\nX: \0",
                                "GET / HTTP/1.1\r\nX : ",
                                "GET / HTTP/1.1\r\nX: a\r\n b",
                                "GET / HTTP/2.0\r\n",
                                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
                                "POST / HTTP/1.1\r\nContent-Length: -1\r\n"};
  int all = 1;
  for (size_t i = 0; i < sizeof early / sizeof *early; i++) {
    parsed p;
    parsed_start(&p, MAX_HEADERS, MAX_HEAD);
    if (parsed_feed(&p, early[i], strlen(early[i]) + (i == 2)) != SP_HTTP_ERR) {
      all = 0;
      printf("# not rejected early: case %zu\n", i);
    }
  }
  CHECK(all, "malformed input is rejected at once, without the whole head");
}

static void test_limits(void) {
  char buf[4096];
  parsed p;
  size_t n;

  /* The head is exactly max_head bytes: accepted; one byte less: 431. */
  n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
  while (n < 200 - 4) buf[n++] = 'a';
  memcpy(buf + n, "\r\n\r\n", 4);
  n += 4;
  parsed_start(&p, MAX_HEADERS, 200);
  CHECK(parsed_feed(&p, buf, n) == SP_HTTP_OK && p.r.head_len == 200,
        "a head of exactly max_head bytes is accepted");
  CHECK(parse_split(buf, n, MAX_HEADERS, 199) && whole.rc == SP_HTTP_ERR &&
            whole.r.status == 431 &&
            strcmp(whole.r.reason, "request head too large") == 0,
        "one byte over max_head: 431, however split");
  parsed_start(&p, MAX_HEADERS, 199);
  CHECK(parsed_feed(&p, buf, 199) == SP_HTTP_ERR && p.r.status == 431,
        "431 as soon as max_head bytes arrived without the end");
  parsed_start(&p, MAX_HEADERS, 199);
  CHECK(parsed_feed(&p, buf, 198) == SP_HTTP_AGAIN,
        "one byte fewer asks for more");

  /* A request line longer than the limit, never ended. */
  memcpy(buf, "GET /", 5);
  memset(buf + 5, 'x', sizeof buf - 5);
  parsed_start(&p, MAX_HEADERS, 1024);
  CHECK(parsed_feed(&p, buf, sizeof buf) == SP_HTTP_ERR && p.r.status == 431,
        "an endless request line: 431");

  /* CRLF before the request line counts towards the limit. */
  for (size_t i = 0; i < 600; i += 2) memcpy(buf + i, "\r\n", 2);
  parsed_start(&p, MAX_HEADERS, 512);
  CHECK(parsed_feed(&p, buf, 600) == SP_HTTP_ERR && p.r.status == 431,
        "a flood of empty lines: 431");

  /* max_headers fields are accepted; one more is 431 at once. */
  n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 1; i < 4; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: %d\r\n", i, i);
  memcpy(buf + n, "\r\n", 2);
  CHECK(parse_split(buf, n + 2, 4, MAX_HEAD) && whole.rc == SP_HTTP_OK &&
            whole.r.nheaders == 4,
        "exactly max_headers fields");
  n += (size_t)snprintf(buf + n, sizeof buf - n, "X-4: 4\r\n");
  parsed_start(&p, 4, MAX_HEAD);
  CHECK(parsed_feed(&p, buf, n) == SP_HTTP_ERR && p.r.status == 431 &&
            strcmp(p.r.reason, "too many header fields") == 0,
        "one field more: 431 before the head ends");
  parsed_start(&p, 0, MAX_HEAD);
  CHECK(parsed_feed(&p, LIT("GET / HTTP/1.0\r\nX: y\r\n")) == SP_HTTP_ERR &&
            p.r.status == 431,
        "no header array: any field is 431");

  /* A trickling peer: one byte per call over a long head stays linear
  ** (each call looks only at the new byte; this would take seconds if
  ** each call rescanned the line). */
  static char big[1 << 20];
  size_t pre =
      (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
  n = pre;
  while (n < sizeof big - 4) big[n++] = 'v';
  memcpy(big + n, "\r\n\r\n", 4);
  n += 4;
  parsed_start(&p, MAX_HEADERS, (uint32_t)sizeof big);
  int rc = parsed_trickle(&p, big, n, 0);
  CHECK(rc == SP_HTTP_OK && p.r.head_len == n &&
            p.r.headers[1].value.len == n - 4 - pre,
        "a 1 MiB head fed one byte per call");
}

/* Every byte value at every position of an 8-byte word, in each part of
** the head, against the RFC's character classes (the parser skips runs of
** valid bytes a word at a time; this pins the word tests to the table). */
static int accepts(const char *pre, int c, size_t at, const char *post) {
  char buf[256];
  size_t n = strlen(pre);
  memcpy(buf, pre, n);
  for (size_t k = 0; k < 19; k++) buf[n + k] = k == at ? (char)c : 'a';
  memcpy(buf + n + 19, post, strlen(post));
  n += 19 + strlen(post);
  parsed p;
  parsed_start(&p, MAX_HEADERS, MAX_HEAD);
  return parsed_feed(&p, buf, n) == SP_HTTP_OK;
}

static void test_byte_classes(void) {
  int field = 1, target = 1, name = 1, method = 1, host = 1;
  for (int c = 0; c < 256; c++) {
    int f = c == '\t' || (c >= 0x20 && c != 0x7f);
    int t = c > 0x20 && c < 0x7f && c != '#';
    int reg = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || (c && strchr("-._~!$&'()*+,;=", c));
    for (size_t at = 1; at < 17; at++) {
      field &=
          accepts("GET / HTTP/1.1\r\nHost: h\r\nX: ", c, at, "\r\n\r\n") == f;
      target &= accepts("GET /", c, at, " HTTP/1.1\r\nHost: h\r\n\r\n") == t;
      name &= accepts("GET / HTTP/1.1\r\nHost: h\r\nX", c, at, ": v\r\n\r\n") ==
              (is_tchar(c) || c == ':');
      method &=
          accepts("", c, at, " / HTTP/1.1\r\nHost: h\r\n\r\n") == is_tchar(c);
      host &= accepts("GET / HTTP/1.1\r\nHost: ", c, at, "\r\n\r\n") ==
              (reg || c == '%'); /* "%aa" is pct-encoded */
    }
    if (!field || !target || !name || !method || !host) {
      printf("# byte 0x%02x misjudged\n", c);
      break;
    }
  }
  CHECK(field, "field values: exactly HTAB, SP, VCHAR, obs-text");
  CHECK(target, "request-target: exactly VCHAR but '#'");
  CHECK(name, "field names: exactly tchar (up to the first colon)");
  CHECK(method, "methods: exactly tchar");
  CHECK(host, "Host: exactly unreserved, sub-delims and pct-encoded");
}

/* ---- chunked bodies ---------------------------------------------------- */

typedef struct decoded {
  int rc, status;
  const char *reason;
  size_t used; /* bytes of the input consumed */
  size_t out_len;
  char out[4096];
} decoded;

/* Decodes in[0..n) fed in pieces ending at the cut points cuts[0..ncuts)
** (then n): the caller's buffer keeps what was not consumed, and each
** call sees it plus the new bytes, from a fresh allocation. */
static void chunked_run(decoded *d, const char *in, size_t n,
                        const size_t *cuts, size_t ncuts, uint32_t max_ext,
                        uint32_t max_trailer) {
  sp_http_chunked c;
  sp_http_chunked_init(&c, max_ext, max_trailer);
  memset(d, 0, sizeof *d);
  size_t have = 0, base = 0; /* in[base..have) not consumed yet */
  for (size_t ci = 0; ci <= ncuts; ci++) {
    have = ci < ncuts ? cuts[ci] : n;
    for (;;) {
      size_t used, off, len;
      char *copy = dup_bytes(in + base, have - base);
      int rc = sp_http_chunked_parse(&c, copy, have - base, &used, &off, &len);
      if (rc == SP_HTTP_DATA) {
        if (d->out_len + len <= sizeof d->out)
          memcpy(d->out + d->out_len, copy + off, len);
        d->out_len += len;
      }
      free(copy);
      base += used;
      d->rc = rc;
      if (rc == SP_HTTP_ERR) {
        d->status = c.status;
        d->reason = c.reason;
        d->used = base;
        return;
      }
      if (rc == SP_HTTP_OK) {
        d->used = base;
        return;
      }
      if (rc == SP_HTTP_AGAIN) break;
    }
  }
  d->used = base;
}

static int decoded_same(const decoded *a, const decoded *b) {
  if (a->rc != b->rc) return 0;
  if (a->rc == SP_HTTP_ERR)
    return a->status == b->status && strcmp(a->reason, b->reason) == 0;
  return a->used == b->used && a->out_len == b->out_len &&
         memcmp(a->out, b->out, a->out_len) == 0;
}

static decoded chunk_whole;

/* Decodes in one piece into chunk_whole; 1 when every single cut, and one
** byte at a time, give the same. */
static int chunked_split(const char *in, size_t n, uint32_t max_ext,
                         uint32_t max_trailer) {
  static decoded d;
  static size_t cuts[2048];
  chunked_run(&chunk_whole, in, n, NULL, 0, max_ext, max_trailer);
  for (size_t k = 1; k < n; k++) {
    chunked_run(&d, in, n, &k, 1, max_ext, max_trailer);
    if (!decoded_same(&d, &chunk_whole)) return 0;
  }
  if (n > sizeof cuts / sizeof *cuts) return 1;
  for (size_t k = 1; k < n; k++) cuts[k - 1] = k;
  chunked_run(&d, in, n, cuts, n ? n - 1 : 0, max_ext, max_trailer);
  return decoded_same(&d, &chunk_whole);
}

/* A chunked body that must decode to body, using used bytes (ALL: all). */
typedef struct chunk_ok_case {
  const char *what, *in;
  size_t len;
  const char *body;
  size_t used;
} chunk_ok_case;

#define ALL ((size_t)-1)
#define COK(what, lit, body, used)                                             \
  { what, lit, sizeof(lit) - 1, body, used }

static const chunk_ok_case chunk_ok_cases[] = {
    COK("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", 15),
    COK("two chunks, hex sizes",
        "a\r\n0123456789\r\n1B\r\n"
        "abcdefghijklmnopqrstuvwxyz!\r\n"
        "0\r\n\r\n",
        "0123456789abcdefghijklmnopqrstuvwxyz!", ALL),
    COK("leading zeros", "0003\r\nabc\r\n000\r\n\r\n", "abc", 18),
    COK("empty body", "0\r\n\r\n", "", 5),
    COK("data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 14),
    COK("extensions",
        "3;a=b ; c = \"q \\\" \\\\ \"\t;d\r\nxyz\r\n0;last\r\n\r\n", "xyz",
        ALL),
    COK("trailers", "2\r\nhi\r\n0\r\nX-Sum: 1 2\r\nX-E:\r\n\r\n", "hi", ALL),
    COK("the next request follows", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
        "x", 11),
};

/* A chunked body that must be rejected with status and reason, under the
** limits max_ext and max_trailer. */
typedef struct chunk_bad_case {
  const char *what, *in;
  size_t len;
  int status;
  const char *reason;
  uint32_t max_ext, max_trailer;
} chunk_bad_case;

#define CBAD_LIM(what, lit, status, reason, max_ext, max_trailer)              \
  { what, lit, sizeof(lit) - 1, status, reason, max_ext, max_trailer }
#define CBAD(what, lit, status, reason)                                        \
  CBAD_LIM(what, lit, status, reason, SP_HTTP_CHUNK_MAX_EXT,                   \
           SP_HTTP_CHUNK_MAX_TRAILER)

static const chunk_bad_case chunk_bad_cases[] = {
    CBAD("negative size", "-5\r\nhello\r\n0\r\n\r\n", 400,
         "invalid chunk size"),
    CBAD("plus sign", "+5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    CBAD("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    CBAD("non-hex size", "g\r\n", 400, "invalid chunk size"),
    CBAD("empty size", "\r\nhello\r\n", 400, "invalid chunk size"),
    CBAD("space before the size", " 5\r\nhello\r\n", 400, "invalid chunk size"),
    CBAD("space after the size", "5 \r\nhello\r\n", 400,
         "invalid chunk extension"),
    CBAD("17 digits", "00000000000000005\r\nhello\r\n", 400,
         "chunk size too long"),
    CBAD("over INT64_MAX", "8000000000000000\r\n", 400, "chunk size too large"),
    CBAD("huge", "ffffffffffffffffff\r\n", 400, "chunk size too large"),
    CBAD("data without CRLF", "5\r\nhelloX\r\n0\r\n\r\n", 400,
         "missing CRLF after chunk data"),
    CBAD("data longer than the size", "3\r\nhello\r\n0\r\n\r\n", 400,
         "missing CRLF after chunk data"),
    CBAD("data with bare LF after", "5\r\nhello\n0\r\n\r\n", 400,
         "missing CRLF after chunk data"),
    CBAD("data with bare CR after", "5\r\nhello\r0\r\n\r\n", 400, "bare CR"),
    CBAD("size line with bare LF", "5\nhello\r\n0\r\n\r\n", 400, "bare LF"),
    CBAD("size line with bare CR", "5\rhello\r\n0\r\n\r\n", 400, "bare CR"),
    CBAD("NUL in the size", "5\0\r\nhello\r\n", 400, "NUL byte"),
    CBAD("NUL in an extension", "5;a\0\r\nhello\r\n", 400, "NUL byte"),
    CBAD("bare LF in an extension", "5;a\nb\r\nhello\r\n", 400, "bare LF"),
    CBAD("control byte in a quoted extension", "5;a=\"\x01\"\r\nhello\r\n", 400,
         "control byte"),
    CBAD("extension without a name", "5;=x\r\nhello\r\n", 400,
         "invalid chunk extension"),
    CBAD("extension with an empty value", "5;a=\r\nhello\r\n", 400,
         "invalid chunk extension"),
    CBAD("unterminated quoted extension", "5;a=\"x\r\nhello\r\n", 400,
         "invalid chunk extension"),
    CBAD("trailing space in an extension", "5;a \r\nhello\r\n", 400,
         "invalid chunk extension"),
    CBAD_LIM("extensions over max_ext", "1;aaaa=bbbb\r\nx\r\n1;cd\r\ny\r\n",
             400, "chunk extensions too long", 12, SP_HTTP_CHUNK_MAX_TRAILER),
    CBAD("obs-fold in trailers", "0\r\nX: a\r\n b\r\n\r\n", 400,
         "obsolete line folding"),
    CBAD("space before colon in trailers", "0\r\nX : a\r\n\r\n", 400,
         "whitespace before colon"),
    CBAD("NUL in a trailer", "0\r\nX: a\0\r\n\r\n", 400, "NUL byte"),
    CBAD("trailer without colon", "0\r\nX\r\n\r\n", 400,
         "invalid trailer field"),
    CBAD("bare LF ending trailers", "0\r\n\n", 400, "bare LF"),
    CBAD("bare LF ending a trailer", "0\r\nX: a\n\r\n", 400, "bare LF"),
    CBAD("bare CR ending the body", "0\r\n\rX", 400, "bare CR"),
    CBAD_LIM("trailers over max_trailer", "0\r\nX-Long: 0123456789\r\n\r\n",
             431, "trailer section too large", SP_HTTP_CHUNK_MAX_EXT, 10),
};

static void test_chunked(void) {
  for (size_t i = 0; i < sizeof chunk_ok_cases / sizeof *chunk_ok_cases; i++) {
    const chunk_ok_case *c = &chunk_ok_cases[i];
    int split = chunked_split(c->in, c->len, SP_HTTP_CHUNK_MAX_EXT,
                              SP_HTTP_CHUNK_MAX_TRAILER);
    const decoded *d = &chunk_whole;
    size_t used = c->used == ALL ? c->len : c->used;
    CHECK(d->rc == SP_HTTP_OK && d->used == used &&
              d->out_len == strlen(c->body) &&
              memcmp(d->out, c->body, d->out_len) == 0,
          "chunked %s: the body, %zu bytes used (got rc %d, %s)", c->what, used,
          d->rc, d->rc == SP_HTTP_ERR ? d->reason : "");
    CHECK(split, "chunked %s: the same split at every byte", c->what);
  }
  for (size_t i = 0; i < sizeof chunk_bad_cases / sizeof *chunk_bad_cases;
       i++) {
    const chunk_bad_case *c = &chunk_bad_cases[i];
    int split = chunked_split(c->in, c->len, c->max_ext, c->max_trailer);
    const decoded *d = &chunk_whole;
    CHECK(d->rc == SP_HTTP_ERR && d->status == c->status &&
              strcmp(d->reason, c->reason) == 0,
          "chunked %s: %d %s (got rc %d %s)", c->what, c->status, c->reason,
          d->rc, d->rc == SP_HTTP_ERR ? d->reason : "");
    CHECK(split, "chunked %s: the same split at every byte", c->what);
  }

  decoded d;
  size_t cut = 3;
  chunked_run(&d, LIT("7fffffffffffffff\r\nabc"), &cut, 1,
              SP_HTTP_CHUNK_MAX_EXT, SP_HTTP_CHUNK_MAX_TRAILER);
  CHECK(d.rc == SP_HTTP_AGAIN && d.out_len == 3 && d.used == 21,
        "INT64_MAX chunk size: data reported as it comes");
  chunked_run(&d, LIT("5\r\nhel"), NULL, 0, SP_HTTP_CHUNK_MAX_EXT,
              SP_HTTP_CHUNK_MAX_TRAILER);
  CHECK(d.rc == SP_HTTP_AGAIN && d.out_len == 3 && d.used == 6,
        "a truncated body asks for more");

  /* Once done or failed, the decoder says so again and consumes nothing. */
  sp_http_chunked c;
  size_t used, off, len;
  sp_http_chunked_init(&c, 0, 0);
  int rc1 = sp_http_chunked_parse(&c, LIT("0\r\n\r\n"), &used, &off, &len);
  int rc2 = sp_http_chunked_parse(&c, LIT("0\r\n\r\n"), &used, &off, &len);
  CHECK(rc1 == SP_HTTP_OK && rc2 == SP_HTTP_OK && used == 0,
        "done is final (limits of 0 allow a bare last chunk)");
  sp_http_chunked_init(&c, 0, 0);
  rc1 = sp_http_chunked_parse(&c, LIT("1;x\r\n"), &used, &off, &len);
  rc2 = sp_http_chunked_parse(&c, LIT("1\r\n"), &used, &off, &len);
  CHECK(rc1 == SP_HTTP_ERR && rc2 == SP_HTTP_ERR && c.status == 400,
        "an error is final");
}

int main(void) {
  test_forms();
  test_incomplete();
  test_bad();
  test_early();
  test_limits();
  test_byte_classes();
  test_chunked();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
