/*
** bench/common/bench.c -- the shared scaffolding of the C echo servers and
** load clients (bench/common/bench.h says what each part does).
*/
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- servers ------------------------------------------------------------- */

/* The part of a send the kernel did not take at once. */
typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} bench_wreq;

static void conn_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)size;
  buf->base = ((bench_conn *)h)->buf;
  buf->len = BENCH_CHUNK;
}

static void conn_written(uv_write_t *req, int status) {
  bench_conn *c = (bench_conn *)req->handle;
  free(req);
  if (status == 0 && !c->reading && c->tcp.write_queue_size < BENCH_HIGH / 4 &&
      !uv_is_closing((uv_handle_t *)c)) {
    c->reading = 1;
    uv_read_start((uv_stream_t *)c, conn_alloc, c->on_read);
  }
}

int bench_conn_accept(bench_conn *c, uv_stream_t *srv, uv_read_cb on_read) {
  uv_tcp_init(srv->loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t *)c) != 0) return -1;
  uv_tcp_nodelay(&c->tcp, 1);
  c->on_read = on_read;
  c->reading = 1;
  uv_read_start((uv_stream_t *)c, conn_alloc, on_read);
  return 0;
}

int bench_conn_send(bench_conn *c, const char *p, size_t n) {
  uv_stream_t *s = (uv_stream_t *)c;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = uv_try_write(s, &b, 1);
  bench_wreq *w;
  if (r == (int)n) return 0;
  if (r < 0 && r != UV_EAGAIN) return -1;
  if (r < 0) r = 0;
  w = malloc(sizeof *w + (n - (size_t)r));
  if (w == NULL) return -1;
  w->buf = uv_buf_init((char *)(w + 1), (unsigned)(n - (size_t)r));
  memcpy(w->buf.base, p + r, n - (size_t)r);
  if (uv_write(&w->req, s, &w->buf, 1, conn_written) != 0) {
    free(w);
    return -1;
  }
  return 0;
}

void bench_conn_throttle(bench_conn *c) {
  if (c->tcp.write_queue_size > BENCH_HIGH) { /* the peer is not reading */
    uv_read_stop((uv_stream_t *)c);
    c->reading = 0;
  }
}

int bench_serve(uv_loop_t *loop, int port, uv_connection_cb on_conn) {
  uv_tcp_t srv;
  struct sockaddr_in addr;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &srv);
  if (uv_tcp_bind(&srv, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&srv, 1024, on_conn) != 0) {
    fprintf(stderr, "cannot listen\n");
    return 1;
  }
  uv_tcp_getsockname(&srv, (struct sockaddr *)&ss, &len);
  printf("port %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

/* ---- clients ------------------------------------------------------------- */

double bench_cpu_seconds(int pid) {
  char path[64], buf[1024];
  unsigned long ut, st;
  FILE *f;
  char *p;
  if (pid <= 0) return 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if ((f = fopen(path, "r")) == NULL) return 0;
  if (fgets(buf, sizeof buf, f) == NULL) buf[0] = 0;
  fclose(f);
  p = strrchr(buf, ')'); /* the name may contain spaces */
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

void bench_lat_add(bench_lat *l, uint64_t ns) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 1 << 16;
    l->us = realloc(l->us, l->cap * sizeof *l->us);
    if (l->us == NULL) abort();
  }
  l->us[l->n++] = (uint32_t)(ns / 1000);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

void bench_lat_sort(bench_lat *l) {
  if (l->n) qsort(l->us, l->n, sizeof *l->us, cmp_u32);
}

uint32_t bench_lat_pct(const bench_lat *l, int pct) {
  return l->n ? l->us[l->n * (size_t)pct / 100] : 0;
}
