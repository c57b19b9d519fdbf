/*
** bench/echo/client.c -- the one load client that drives every echo server
** (C libuv, spindle, luv, cqueues ...), so they are measured alike.
**
**   ./client echo PORT CONNS SIZE SECONDS [SERVER_PID]
**       CONNS connections, each sending a SIZE-byte message and waiting
**       for its whole echo before sending the next, for SECONDS.
**   ./client bulk PORT MIB [SERVER_PID]
**       one connection; MIB MiB written as fast as the server echoes them
**       back (reads and writes overlap, at most 1 MiB in flight).
**
** Prints one line: RESULT key=value ...  -- round trips/s, p50/p99
** latency in microseconds, and with SERVER_PID the server's CPU time
** (user + system, from /proc/PID/stat) per round trip; bulk: MB/s.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../common/bench.h"

static uv_loop_t *loop;
static int port, server_pid;
static uint64_t t_end;
static int done_conns, nconns;
static bench_lat lat; /* latency samples (bench/common/bench.c) */

/* ---- echo mode ----------------------------------------------------------- */

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  char *msg, *rbuf;
  size_t size, got;
  uint64_t t0;
} conn_t;

static size_t msg_size;

static void send_msg(conn_t *c);

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  conn_t *c = (conn_t *)h;
  (void)sz;
  buf->base = c->rbuf;
  buf->len = 65536;
}

static void closed_cb(uv_handle_t *h) { (void)h; }

static void finish(conn_t *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, closed_cb);
  done_conns++;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  (void)buf;
  if (n < 0) {
    fprintf(stderr, "read: %s\n", uv_strerror((int)n));
    finish(c);
    return;
  }
  c->got += (size_t)n;
  if (c->got < c->size) return;
  if (c->got > c->size) {
    fprintf(stderr, "protocol error: more bytes than sent\n");
    exit(1);
  }
  {
    uint64_t now = uv_hrtime();
    bench_lat_add(&lat, now - c->t0);
    if (now >= t_end)
      finish(c);
    else
      send_msg(c);
  }
}

static void write_cb(uv_write_t *req, int status) {
  (void)req;
  if (status < 0) fprintf(stderr, "write: %s\n", uv_strerror(status));
}

static void send_msg(conn_t *c) {
  uv_buf_t b = uv_buf_init(c->msg, (unsigned)c->size);
  c->got = 0;
  c->t0 = uv_hrtime();
  if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) == (int)c->size) return;
  uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
}

static int connected;
static conn_t *conns;

static void connect_cb(uv_connect_t *req, int status) {
  conn_t *c = (conn_t *)req->data;
  if (status < 0) {
    fprintf(stderr, "connect: %s\n", uv_strerror(status));
    exit(1);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (++connected == nconns) { /* everyone is in: start the clock */
    int i;
    t_end = uv_hrtime() + t_end;
    for (i = 0; i < nconns; i++) send_msg(&conns[i]);
  }
}

static int run_echo(int n, size_t size, double secs) {
  struct sockaddr_in addr;
  double cpu0, cpu1, wall;
  uint64_t t0;
  int i;
  nconns = n;
  msg_size = size;
  t_end = (uint64_t)(secs * 1e9); /* made absolute once all connected */
  conns = calloc((size_t)n, sizeof *conns);
  uv_ip4_addr("127.0.0.1", port, &addr);
  for (i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    c->size = size;
    c->msg = malloc(size);
    memset(c->msg, 'a' + i % 26, size);
    c->rbuf = malloc(65536);
    uv_tcp_init(loop, &c->tcp);
    c->creq.data = c;
    uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&addr, connect_cb);
  }
  while (connected < n) uv_run(loop, UV_RUN_ONCE);
  cpu0 = bench_cpu_seconds(server_pid);
  t0 = uv_hrtime();
  uv_run(loop, UV_RUN_DEFAULT);
  wall = (double)(uv_hrtime() - t0) / 1e9;
  cpu1 = bench_cpu_seconds(server_pid);
  bench_lat_sort(&lat);
  printf("RESULT mode=echo conns=%d size=%zu secs=%.3f round_trips=%zu "
         "rt_per_s=%.0f p50_us=%u p99_us=%u",
         n, size, wall, lat.n, (double)lat.n / wall, bench_lat_pct(&lat, 50),
         bench_lat_pct(&lat, 99));
  if (server_pid > 0)
    printf(" server_cpu_s=%.3f server_us_per_rt=%.3f", cpu1 - cpu0,
           lat.n ? (cpu1 - cpu0) * 1e6 / (double)lat.n : 0);
  printf("\n");
  return done_conns == n ? 0 : 1;
}

/* ---- bulk mode ----------------------------------------------------------- */

#define BULK_CHUNK 65536
#define BULK_INFLIGHT 16

static uv_tcp_t btcp;
static uv_connect_t bcreq;
static char *bsend, *brecv;
static uint64_t btotal, bsent, bgot, bt0, bt1;
static int binflight;
static uv_write_t bw[BULK_INFLIGHT];

static void bulk_pump(void);
static void bulk_write_cb2(uv_write_t *req, int status);

static void bulk_write_cb(uv_write_t *req, int status) {
  (void)req;
  if (status < 0) {
    fprintf(stderr, "write: %s\n", uv_strerror(status));
    exit(1);
  }
  binflight--;
  bulk_pump();
}

static void bulk_pump(void) {
  while (binflight < BULK_INFLIGHT && bsent < btotal) {
    uint64_t n = btotal - bsent < BULK_CHUNK ? btotal - bsent : BULK_CHUNK;
    uv_buf_t b = uv_buf_init(bsend, (unsigned)n);
    int i;
    for (i = 0; i < BULK_INFLIGHT; i++)
      if (bw[i].data == NULL) break;
    bw[i].data = (void *)1;
    binflight++;
    bsent += n;
    uv_write(&bw[i], (uv_stream_t *)&btcp, &b, 1, bulk_write_cb2);
  }
}

static void bulk_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  (void)h;
  (void)sz;
  buf->base = brecv;
  buf->len = 65536;
}

static void bulk_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0) {
    fprintf(stderr, "read: %s\n", uv_strerror((int)n));
    exit(1);
  }
  bgot += (uint64_t)n;
  if (bgot >= btotal) {
    bt1 = uv_hrtime();
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, NULL);
  }
}

/* write_cb frees its slot: mark slots by data */
static void bulk_write_cb2(uv_write_t *req, int status) {
  req->data = NULL;
  bulk_write_cb(req, status);
}

static void bulk_connect(uv_connect_t *req, int status) {
  (void)req;
  if (status < 0) {
    fprintf(stderr, "connect: %s\n", uv_strerror(status));
    exit(1);
  }
  uv_read_start((uv_stream_t *)&btcp, bulk_alloc, bulk_read);
  bt0 = uv_hrtime();
  bulk_pump();
}

static int run_bulk(double mib) {
  struct sockaddr_in addr;
  double cpu0, cpu1, secs;
  btotal = (uint64_t)(mib * 1048576);
  bsend = malloc(BULK_CHUNK);
  memset(bsend, 'b', BULK_CHUNK);
  brecv = malloc(65536);
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &btcp);
  cpu0 = bench_cpu_seconds(server_pid);
  uv_tcp_connect(&bcreq, &btcp, (struct sockaddr *)&addr, bulk_connect);
  uv_run(loop, UV_RUN_DEFAULT);
  cpu1 = bench_cpu_seconds(server_pid);
  secs = (double)(bt1 - bt0) / 1e9;
  printf("RESULT mode=bulk bytes=%llu secs=%.3f mb_per_s=%.1f",
         (unsigned long long)btotal, secs, (double)btotal / 1e6 / secs);
  if (server_pid > 0) printf(" server_cpu_s=%.3f", cpu1 - cpu0);
  printf("\n");
  return bgot == btotal ? 0 : 1;
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  if (argc >= 6 && strcmp(argv[1], "echo") == 0) {
    port = atoi(argv[2]);
    server_pid = argc > 6 ? atoi(argv[6]) : 0;
    return run_echo(atoi(argv[3]), (size_t)atoi(argv[4]), atof(argv[5]));
  }
  if (argc >= 4 && strcmp(argv[1], "bulk") == 0) {
    port = atoi(argv[2]);
    server_pid = argc > 4 ? atoi(argv[4]) : 0;
    return run_bulk(atof(argv[3]));
  }
  fprintf(stderr, "usage: client echo PORT CONNS SIZE SECONDS [SERVER_PID]\n"
                  "       client bulk PORT MIB [SERVER_PID]\n");
  return 2;
}
