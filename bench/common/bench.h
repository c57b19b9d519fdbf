/*
** bench/common/bench.h -- the libuv scaffolding the C echo programs of
** bench/echo/ and bench/tls/ share (bench/common/bench.c, compiled into
** each by their build.sh).
**
** Servers: a bench_conn is a TCP connection with its own 64 KiB read
** buffer and the echo servers' flow control -- what uv_try_write does not
** take is copied and queued with uv_write, reading pauses while more than
** BENCH_HIGH bytes are queued and resumes below a quarter of that.
** bench_serve() listens on 127.0.0.1, prints "port N" and runs the loop.
**
** Clients: the server's CPU time from /proc/PID/stat, and latency samples
** with their percentiles.
*/
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define BENCH_CHUNK 65536
#define BENCH_HIGH (1 << 20)

/* ---- servers ------------------------------------------------------------- */

/* A connection; embed it first in a server's own connection record. */
typedef struct bench_conn {
  uv_tcp_t tcp; /* first: the handle is the connection */
  uv_read_cb on_read;
  int reading;
  char buf[BENCH_CHUNK];
} bench_conn;

/* Accepts from srv into c (not yet initialised): Nagle off, reading into
** c->buf with on_read.  Returns 0, or -1 with c's handle initialised, to
** be closed by the caller. */
int bench_conn_accept(bench_conn *c, uv_stream_t *srv, uv_read_cb on_read);

/* Sends p[0..n): uv_try_write first, the rest copied and queued.  Returns
** 0, or -1 when the connection is broken. */
int bench_conn_send(bench_conn *c, const char *p, size_t n);

/* After a read's echo is sent: pauses reading while the peer does not
** read its echo. */
void bench_conn_throttle(bench_conn *c);

/* Listens on 127.0.0.1:port (0: any), prints "port N" on stdout, and runs
** the loop.  Returns main's exit status. */
int bench_serve(uv_loop_t *loop, int port, uv_connection_cb on_conn);

/* ---- clients ------------------------------------------------------------- */

/* The CPU time (user + system) of process pid so far, 0 for pid <= 0. */
double bench_cpu_seconds(int pid);

/* Latency samples, in microseconds. */
typedef struct bench_lat {
  uint32_t *us;
  size_t n, cap;
} bench_lat;

void bench_lat_add(bench_lat *l, uint64_t ns);
void bench_lat_sort(bench_lat *l);
/* After bench_lat_sort: the pct-th percentile (0 without samples). */
uint32_t bench_lat_pct(const bench_lat *l, int pct);

#endif
