/*
** http_parse.h -- a strict, incremental, zero-copy HTTP/1.1 request parser
** and chunked body decoder (pure C11: no Lua, no libuv).
**
** Request heads.  sp_http_request_init() sets the limits; then
** sp_http_parse_request() is called with the bytes received so far, again
** and again as the buffer grows, until it returns SP_HTTP_OK or
** SP_HTTP_ERR.  The buffer may move between calls (realloc), but the bytes
** already passed must not change.  Each call costs O(new bytes): the parser
** remembers its state and how far it got.  Results are spans (offset,
** length) into the caller's buffer; nothing is copied or allocated.
**
** Chunked bodies.  sp_http_chunked_init(), then sp_http_chunked_parse()
** over the bytes after the head.  It consumes framing and reports each run
** of body data as a span of the buffer given, so the caller copies the data
** once, where it wants it, or not at all.
**
** Errors carry an HTTP status (400, 417, 431, 501, 505) and a short reason;
** the rules, and the RFC 9112 sections behind them, are in
** docs/http-parsing.md.
*/
#ifndef SP_HTTP_PARSE_H
#define SP_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Results of both parsers. */
enum {
  SP_HTTP_OK = 0,    /* the head (or the chunked body) is complete */
  SP_HTTP_AGAIN = 1, /* need more bytes */
  SP_HTTP_DATA = 2,  /* chunked only: a span of body data is reported */
  SP_HTTP_ERR = -1   /* malformed: see status and reason */
};

/* A run of bytes in the caller's buffer. */
typedef struct sp_http_span {
  uint32_t off, len;
} sp_http_span;

typedef struct sp_http_header {
  sp_http_span name, value; /* value without leading/trailing SP or HTAB */
} sp_http_header;

/* Forms of the request-target (RFC 9112 §3.2). */
enum {
  SP_HTTP_ORIGIN_FORM = 0,    /* /path?query */
  SP_HTTP_ABSOLUTE_FORM = 1,  /* http://authority/path?query */
  SP_HTTP_AUTHORITY_FORM = 2, /* host:port, CONNECT only */
  SP_HTTP_ASTERISK_FORM = 3   /* *, OPTIONS only */
};

/* Facts derived from the head (sp_http_request.flags). */
enum {
  SP_HTTP_KEEP_ALIVE = 1 << 0, /* the connection may serve another request */
  SP_HTTP_CHUNKED = 1 << 1,    /* Transfer-Encoding: chunked body */
  SP_HTTP_HAS_LENGTH = 1 << 2, /* Content-Length given (content_length) */
  SP_HTTP_EXPECT_CONTINUE = 1 << 3, /* HTTP/1.1 Expect: 100-continue */
  SP_HTTP_HAS_HOST = 1 << 4,        /* one Host line (host span) */
  SP_HTTP_HAS_QUERY = 1 << 5, /* the target has a "?" (query may be empty) */
  SP_HTTP_UPGRADE = 1 << 6    /* Connection lists "upgrade" */
};

typedef struct sp_http_request {
  /* Limits, set by sp_http_request_init. */
  sp_http_header *headers; /* caller's array of max_headers entries */
  uint32_t max_headers;    /* more header lines: 431 */
  uint32_t max_head;       /* bytes of request line + headers: over, 431 */

  /* Results, valid after SP_HTTP_OK. Spans are offsets into the buffer. */
  sp_http_span method, target;    /* as sent */
  sp_http_span scheme, authority; /* absolute- and authority-form */
  sp_http_span path, query;       /* origin- and absolute-form; an empty
                                     path in absolute-form means "/" */
  sp_http_span host;              /* the Host value, when HAS_HOST */
  uint32_t nheaders;              /* entries used in headers[] */
  uint32_t head_len;              /* bytes of the head, final CRLF included */
  int64_t content_length;         /* 0 unless HAS_LENGTH */
  uint8_t version;                /* 10 or 11 */
  uint8_t form;                   /* SP_HTTP_*_FORM */
  uint16_t flags;                 /* SP_HTTP_KEEP_ALIVE ... */

  /* Error, valid after SP_HTTP_ERR. */
  int status;         /* 400, 417, 431, 501 or 505 */
  const char *reason; /* a short static string, e.g. "bare LF" */

  /* Private: where the parser is (see http_parse.c). */
  uint32_t pos;   /* next byte to look at */
  uint32_t line;  /* start of the current line */
  uint32_t mark;  /* request line: end of method; header: the colon */
  uint32_t mark2; /* request line: end of target */
  uint8_t state;
  uint8_t te;     /* Transfer-Encoding state bits */
  uint8_t conn;   /* Connection tokens seen */
  uint8_t expect; /* Expect members seen */
} sp_http_request;

/* Prepares r for a new request. headers[max_headers] receives the header
** lines; max_head bounds the head (at most UINT32_MAX - 1). */
void sp_http_request_init(sp_http_request *r, sp_http_header *headers,
                          uint32_t max_headers, uint32_t max_head);

/* Parses buf[0..len), the bytes received so far (more than before, same
** prefix). SP_HTTP_OK: the head is r->head_len bytes and the results are
** set; SP_HTTP_AGAIN: call again with more; SP_HTTP_ERR: r->status and
** r->reason.  After OK or ERR further calls return the same. */
int sp_http_parse_request(sp_http_request *r, const char *buf, size_t len);

/* 1 when span s of buf equals lower (a lower-case name), ignoring case. */
int sp_http_name_is(const char *buf, sp_http_span s, const char *lower);

/* ---- chunked bodies (RFC 9112 §7.1) ---------------------------------- */

typedef struct sp_http_chunked {
  uint64_t remaining;     /* data bytes left in the current chunk */
  uint32_t ext_bytes;     /* chunk-extension bytes so far (whole body) */
  uint32_t max_ext;       /* over: 400 */
  uint32_t trailer_bytes; /* trailer section bytes so far */
  uint32_t max_trailer;   /* over: 431 */
  uint8_t state;
  uint8_t digits; /* hex digits of the current chunk-size */
  int status;     /* after SP_HTTP_ERR: 400 or 431 */
  const char *reason;
} sp_http_chunked;

/* Default limits: extension bytes over the whole body, trailer bytes. */
#define SP_HTTP_CHUNK_MAX_EXT 4096
#define SP_HTTP_CHUNK_MAX_TRAILER 8192
/* Most hex digits in a chunk-size (leading zeros count). */
#define SP_HTTP_CHUNK_MAX_DIGITS 16

void sp_http_chunked_init(sp_http_chunked *c, uint32_t max_ext,
                          uint32_t max_trailer);

/* Decodes from buf[0..len), the bytes after what earlier calls consumed.
** *used is set to the bytes consumed (the caller drops them).
**   SP_HTTP_DATA   body data is buf[*data_off .. *data_off + *data_len),
**                  and *used == *data_off + *data_len
**   SP_HTTP_AGAIN  every byte was consumed; call again with more
**   SP_HTTP_OK     the body ended (last chunk, trailers, final CRLF) after
**                  *used bytes; what follows is the next request
**   SP_HTTP_ERR    c->status and c->reason
** Trailer fields are checked strictly and then discarded. */
int sp_http_chunked_parse(sp_http_chunked *c, const char *buf, size_t len,
                          size_t *used, size_t *data_off, size_t *data_len);

#endif
