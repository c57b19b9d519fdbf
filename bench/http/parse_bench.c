/*
** bench/http/parse_bench.c -- nanoseconds per request head: csrc/http_parse.c
** against libhttp-parser 2.9.4 (Debian libhttp-parser-dev).
**
**   cmake --build build --target http_parse_bench && ./build/http_parse_bench
**   ./build/http_parse_bench 9     (rounds; default 7)
**   bench/http/parse_icount.sh     (instructions per head, under callgrind:
**                                   stable on a busy machine)
**
** Both parsers do the work a server needs from a head: method, target,
** version, every header as (name, value) spans, the framing facts.  Ours
** records spans into a header array; libhttp-parser's callbacks record the
** same spans (its header values keep trailing whitespace; the requests here
** have none).  Each round times a batch sized to ~50 ms per parser and
** request; the table shows the median of the rounds, parsers interleaved.
** Numbers on a shared machine move by tens of percent: compare the ratio
** column, and run it twice.
*/
#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_parse.h"

static const struct {
  const char *name, *text;
} requests[] = {
    {"wrk hello", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
    {"curl GET", "GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\n"
                 "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"},
    {"POST + length",
     "POST /api/items?id=42 HTTP/1.1\r\nHost: localhost:8080\r\n"
     "Content-Type: application/json\r\nContent-Length: 27\r\n"
     "Connection: keep-alive\r\n\r\n"},
    {"browser (10 h)",
     "GET /static/css/site.css?v=1712 HTTP/1.1\r\nHost: www.example.org\r\n"
     "Connection: keep-alive\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
     "Accept: text/css,*/*;q=0.1\r\nSec-Fetch-Site: same-origin\r\n"
     "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: style\r\n"
     "Referer: https://www.example.org/articles/2024/parsing.html\r\n"
     "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
     "Cookie: session=5f2b9c0e7d1a4e3f; theme=dark; consent=1\r\n\r\n"},
};
#define NREQ (sizeof requests / sizeof *requests)

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint64_t sink;

/* ---- ours -------------------------------------------------------------- */

static void run_ours(const char *buf, size_t len, long iters) {
  sp_http_header h[64];
  sp_http_request r;
  uint64_t acc = 0;
  for (long i = 0; i < iters; i++) {
    sp_http_request_init(&r, h, 64, 16384);
    if (sp_http_parse_request(&r, buf, len) != SP_HTTP_OK) abort();
    acc += r.nheaders + r.head_len + (uint64_t)r.flags;
  }
  sink += acc;
}

/* ---- libhttp-parser ---------------------------------------------------- */

typedef struct hp_state {
  const char *base;
  sp_http_span url;
  sp_http_header h[64];
  unsigned nh;
  int in_value, done;
} hp_state;

static int hp_url(http_parser *p, const char *at, size_t n) {
  hp_state *s = p->data;
  s->url.off = (uint32_t)(at - s->base);
  s->url.len = (uint32_t)n;
  return 0;
}

static int hp_field(http_parser *p, const char *at, size_t n) {
  hp_state *s = p->data;
  if (s->nh == 64) return 1;
  s->h[s->nh].name.off = (uint32_t)(at - s->base);
  s->h[s->nh].name.len = (uint32_t)n;
  return 0;
}

static int hp_value(http_parser *p, const char *at, size_t n) {
  hp_state *s = p->data;
  s->h[s->nh].value.off = (uint32_t)(at - s->base);
  s->h[s->nh].value.len = (uint32_t)n;
  s->nh++;
  return 0;
}

static int hp_done(http_parser *p) {
  hp_state *s = p->data;
  s->done = 1 + http_should_keep_alive(p);
  return 1; /* the head only: do not parse a body */
}

static http_parser_settings hp_settings = {
    .on_url = hp_url,
    .on_header_field = hp_field,
    .on_header_value = hp_value,
    .on_headers_complete = hp_done,
};

static void run_hp(const char *buf, size_t len, long iters) {
  hp_state s;
  http_parser p;
  uint64_t acc = 0;
  for (long i = 0; i < iters; i++) {
    s.base = buf;
    s.nh = 0;
    s.done = 0;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &s;
    http_parser_execute(&p, &hp_settings, buf, len);
    if (!s.done) abort();
    acc += s.nh + (uint64_t)p.content_length;
  }
  sink += acc;
}

/* ---- driver ------------------------------------------------------------ */

typedef void (*runner)(const char *, size_t, long);

/* Iterations that take about 50 ms. */
static long calibrate(runner run, const char *buf, size_t len) {
  long iters = 1000;
  for (;;) {
    double t0 = now_ns();
    run(buf, len, iters);
    double dt = now_ns() - t0;
    if (dt > 20e6) return (long)((double)iters * 50e6 / dt) + 1;
    iters *= 4;
  }
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "count") == 0) {
    /* For instruction counts under callgrind: one parser, one request,
    ** a fixed number of iterations, no timing. */
    size_t q = (size_t)atoi(argv[3]);
    long iters = atol(argv[4]);
    if (q >= NREQ || iters < 0) return 2;
    const char *buf = requests[q].text;
    (strcmp(argv[2], "ours") == 0 ? run_ours : run_hp)(buf, strlen(buf), iters);
    return 0;
  }
  int rounds = argc > 1 ? atoi(argv[1]) : 7;
  if (rounds < 1 || rounds > 99) rounds = 7;
  printf("ns per request head, median of %d rounds (http-parser %lu.%lu.%lu)\n",
         rounds, (http_parser_version() >> 16) & 255,
         (http_parser_version() >> 8) & 255, http_parser_version() & 255);
  printf("%-16s %6s %12s %14s %8s\n", "request", "bytes", "spindle ns",
         "http-parser ns", "ratio");
  for (size_t q = 0; q < NREQ; q++) {
    const char *buf = requests[q].text;
    size_t len = strlen(buf);
    long it_ours = calibrate(run_ours, buf, len);
    long it_hp = calibrate(run_hp, buf, len);
    double ours[99], hp[99];
    for (int r = 0; r < rounds; r++) {
      double t0 = now_ns();
      run_ours(buf, len, it_ours);
      double t1 = now_ns();
      run_hp(buf, len, it_hp);
      double t2 = now_ns();
      ours[r] = (t1 - t0) / (double)it_ours;
      hp[r] = (t2 - t1) / (double)it_hp;
    }
    qsort(ours, (size_t)rounds, sizeof *ours, by_value);
    qsort(hp, (size_t)rounds, sizeof *hp, by_value);
    double a = ours[rounds / 2], b = hp[rounds / 2];
    printf("%-16s %6zu %12.1f %14.1f %7.2fx\n", requests[q].name, len, a, b,
           a / b);
  }
  return 0;
}
