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
** Connections, sending and listening: bench/common/bench.c.
*/
#include <stdlib.h>
#include <uv.h>

#include "../common/bench.h"

static void on_close(uv_handle_t *h) { free(h); }

/* The bytes go straight back. */
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  bench_conn *c = (bench_conn *)s;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (n == 0) return;
  if (bench_conn_send(c, buf->base, (size_t)n) != 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  bench_conn_throttle(c);
}

static void on_conn(uv_stream_t *srv, int status) {
  bench_conn *c;
  if (status < 0) return;
  c = malloc(sizeof *c);
  if (c == NULL) return;
  if (bench_conn_accept(c, srv, read_cb) != 0)
    uv_close((uv_handle_t *)c, on_close);
}

int main(int argc, char **argv) {
  return bench_serve(uv_default_loop(), argc > 1 ? atoi(argv[1]) : 0, on_conn);
}
