/*
** bench/echo/server.c -- the reference: a plain C libuv echo server, the
** limit of spindle's design (one loop, one thread, libuv streams).
**
**   ./server [port]        prints "port N" on stdout, echoes forever
**
** Each connection reads into its own 64 KiB buffer; the bytes go back with
** uv_try_write, and what the kernel does not take is copied and queued with
** uv_write.  When a peer does not read its echo, reading pauses while more
** than 1 MiB is queued (the same flow control spindle's streams have).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CHUNK 65536
#define HIGH (1 << 20)

/* A connection: its own read buffer, reused for every read. */
typedef struct {
  uv_tcp_t tcp;
  char buf[CHUNK];
  int reading;
} conn_t;

/* The part of an echo the kernel did not take at once. */
typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} wreq_t;

static void on_close(uv_handle_t *h) { free(h); }

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)size;
  buf->base = ((conn_t *)h)->buf;
  buf->len = CHUNK;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = (conn_t *)req->handle;
  free(w);
  if (status == 0 && !c->reading && c->tcp.write_queue_size < HIGH / 4 &&
      !uv_is_closing((uv_handle_t *)c)) {
    c->reading = 1;
    uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
  }
}

/* uv_try_write first; the rest is copied and queued with uv_write. */
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  uv_buf_t b;
  int r;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (n == 0) return;
  b = uv_buf_init(buf->base, (unsigned)n);
  r = uv_try_write(s, &b, 1);
  if (r == n) return;
  if (r < 0 && r != UV_EAGAIN) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (r < 0) r = 0;
  {
    wreq_t *w = malloc(sizeof *w + (size_t)(n - r));
    w->buf = uv_buf_init((char *)(w + 1), (unsigned)(n - r));
    memcpy(w->buf.base, buf->base + r, (size_t)(n - r));
    if (uv_write(&w->req, s, &w->buf, 1, write_cb) != 0) {
      free(w);
      uv_close((uv_handle_t *)s, on_close);
      return;
    }
  }
  if (s->write_queue_size > HIGH) { /* the peer is not reading */
    uv_read_stop(s);
    c->reading = 0;
  }
}

static void on_conn(uv_stream_t *srv, int status) {
  conn_t *c;
  if (status < 0) return;
  c = malloc(sizeof *c);
  uv_tcp_init(srv->loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t *)c) != 0) {
    uv_close((uv_handle_t *)c, on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->reading = 1;
  uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t srv;
  struct sockaddr_in addr;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr);
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
