/*
** bench/tls/client.c -- the one TLS load client that drives every TLS echo
** server (C libuv + OpenSSL, spindle, cqueues + luaossl), so they are
** measured alike.
**
**   ./client hs PORT CONNS SECONDS [SERVER_PID] [--resume]
**       CONNS clients, each in a loop for SECONDS: connect, full TLS
**       handshake, one 64-byte echo, close_notify, close.  Handshakes/s.
**       --resume offers the session ticket of the slot's previous
**       connection (TLS 1.3 resumption); without it every handshake is full.
**   ./client echo PORT CONNS SIZE SECONDS [SERVER_PID]
**       CONNS connections, handshaken before the clock starts; each sends
**       a SIZE-byte message and waits for its whole echo before the next.
**   ./client bulk PORT MIB [SERVER_PID]
**       one connection; MIB MiB written while the echo is read back (at most
**       1 MiB in flight).  MB/s each way.
**
** Prints one line: RESULT key=value ... -- rates, p50/p99 latency in
** microseconds (a whole connection in hs mode, a round trip in echo mode),
** the negotiated protocol, cipher and key-exchange group, and with
** SERVER_PID the server's CPU time (user + system, from /proc/PID/stat) per
** handshake, per round trip or per MB echoed.  Exit status 1 when any
** connection failed or an echo came back wrong.
**
** The client itself is kept cheap so that the server is what is measured:
** libuv uv_poll on non-blocking sockets, OpenSSL reading and writing the
** sockets directly (socket BIOs, read-ahead on), no certificate checks
** (the server's CertificateVerify signature is still checked: TLS 1.3
** requires it).
*/
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../common/bench.h"

enum { M_HS, M_ECHO, M_BULK };
enum { S_CONNECT, S_HANDSHAKE, S_PARKED, S_WRITE, S_READ, S_BULK };

#define RBUF 65536
#define BULK_CHUNK 65536
#define BULK_WINDOW (1 << 20)

typedef struct {
  uv_poll_t poll;
  int fd, state, events;
  SSL *ssl;
  SSL_SESSION *session; /* --resume: the ticket to offer next time */
  size_t got;           /* bytes of the current echo received */
  uint64_t t0;          /* start of this connection (hs) or round trip */
  uint64_t wpending;    /* bulk: length of an SSL_write to be retried */
} conn_t;

static uv_loop_t *loop;
static SSL_CTX *cctx;
static struct sockaddr_in addr;
static int mode, resume, nconns, live, parked, errors;
static conn_t *conns;
static uint64_t t_end, count, resumed;
static char *msg, rbuf[RBUF];
static size_t msg_size;
static char proto[32], cipher[64], group[32];

/* bulk */
static char *bpattern;
static uint64_t btotal, bsent, bgot, bt0, bt1;

/* ---- CPU time and latency (the server's: bench/common/bench.c) --------- */

/* This process's CPU time: a client near 100 % of its core means the run
** measured the client, not the server. */
static double self_cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static bench_lat lat; /* latency samples */

/* ---- connections --------------------------------------------------------- */

static void poll_cb(uv_poll_t *h, int status, int events);
static void conn_start(conn_t *c);

static void set_events(conn_t *c, int ev) {
  if (c->events == ev) return;
  c->events = ev;
  if (ev)
    uv_poll_start(&c->poll, ev, poll_cb);
  else
    uv_poll_stop(&c->poll);
}

static void closed_cb(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  close(c->fd);
  SSL_free(c->ssl);
  c->ssl = NULL;
  if (mode == M_HS && uv_hrtime() < t_end)
    conn_start(c);
  else
    live--;
}

static void conn_close(conn_t *c) {
  c->events = 0;
  uv_close((uv_handle_t *)&c->poll, closed_cb);
}

static void conn_fail(conn_t *c, const char *what) {
  unsigned long e = ERR_get_error();
  if (errors++ < 5)
    fprintf(stderr, "client: %s: %s\n", what,
            e ? ERR_reason_error_string(e) : strerror(errno));
  ERR_clear_error();
  conn_close(c);
}

/* After an SSL call returned r <= 0: wait for what OpenSSL wants, or fail.
** Returns 0 (waiting) or -1 (failed, closed). */
static int want(conn_t *c, int r, const char *what) {
  int err = SSL_get_error(c->ssl, r);
  if (err == SSL_ERROR_WANT_READ) {
    set_events(c, UV_READABLE);
    return 0;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    set_events(c, UV_WRITABLE);
    return 0;
  }
  conn_fail(c, what);
  return -1;
}

static void note_params(SSL *ssl) {
  if (proto[0]) return;
  snprintf(proto, sizeof proto, "%s", SSL_get_version(ssl));
  snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(ssl));
  {
    int nid = SSL_get_negotiated_group(ssl);
    const char *g = nid > 0 ? OBJ_nid2sn(nid) : NULL;
    snprintf(group, sizeof group, "%s", g ? g : "?");
  }
}

static void start_clock(void);

/* The connection's state machine; runs until it has to wait. */
static void drive(conn_t *c) {
  int r;
  for (;;) switch (c->state) {
      case S_CONNECT: {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e != 0) {
          errno = e;
          conn_fail(c, "connect");
          return;
        }
        c->state = S_HANDSHAKE;
        break;
      }
      case S_HANDSHAKE:
        if ((r = SSL_do_handshake(c->ssl)) != 1) {
          want(c, r, "handshake");
          return;
        }
        note_params(c->ssl);
        if (SSL_session_reused(c->ssl)) resumed++;
        if (mode == M_HS) {
          c->state = S_WRITE;
        } else if (mode == M_ECHO) { /* wait for the others, then the clock */
          c->state = S_PARKED;
          set_events(c, 0);
          if (++parked == nconns) start_clock();
          return;
        } else {
          c->state = S_BULK;
          bt0 = uv_hrtime();
        }
        break;
      case S_PARKED: return;
      case S_WRITE:
        if (mode == M_ECHO) c->t0 = uv_hrtime();
        if ((r = SSL_write(c->ssl, msg, (int)msg_size)) <= 0) {
          want(c, r, "write");
          return;
        }
        c->got = 0;
        c->state = S_READ;
        set_events(c, UV_READABLE); /* the echo cannot be there yet */
        return;
      case S_READ: {
        uint64_t now;
        while (c->got < msg_size) {
          if ((r = SSL_read(c->ssl, rbuf, RBUF)) <= 0) {
            want(c, r, "read");
            return;
          }
          if (c->got + (size_t)r > msg_size ||
              memcmp(rbuf, msg + c->got, (size_t)r) != 0) {
            conn_fail(c, "wrong echo");
            return;
          }
          c->got += (size_t)r;
        }
        now = uv_hrtime();
        bench_lat_add(&lat, now - c->t0);
        count++;
        if (mode == M_HS) {
          if (resume) {
            SSL_SESSION_free(c->session);
            c->session = SSL_get1_session(c->ssl);
          }
          SSL_shutdown(c->ssl); /* sends close_notify; does not wait */
          conn_close(c);
          return;
        }
        if (now >= t_end) {
          SSL_shutdown(c->ssl);
          conn_close(c);
          return;
        }
        c->state = S_WRITE;
        break;
      }
      case S_BULK: {
        int ev = UV_READABLE;
        for (;;) { /* everything readable */
          if ((r = SSL_read(c->ssl, rbuf, RBUF)) <= 0) {
            if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
              conn_fail(c, "read");
              return;
            }
            break;
          }
          {
            size_t off = (size_t)(bgot % BULK_CHUNK), n = (size_t)r, i = 0;
            while (i < n) { /* the stream is the pattern, repeated */
              size_t k = n - i < BULK_CHUNK - off ? n - i : BULK_CHUNK - off;
              if (memcmp(rbuf + i, bpattern + off, k) != 0) {
                conn_fail(c, "wrong bulk data");
                return;
              }
              i += k;
              off = 0;
            }
          }
          bgot += (uint64_t)r;
          if (bgot > btotal) {
            conn_fail(c, "more bytes than sent");
            return;
          }
          if (bgot == btotal) {
            bt1 = uv_hrtime();
            count = bgot;
            SSL_shutdown(c->ssl);
            conn_close(c);
            return;
          }
        }
        while (bsent < btotal && bsent - bgot < BULK_WINDOW) {
          uint64_t n = c->wpending;
          if (n == 0)
            n = btotal - bsent < BULK_CHUNK ? btotal - bsent : BULK_CHUNK;
          if ((r = SSL_write(c->ssl, bpattern, (int)n)) <= 0) {
            int err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE) {
              c->wpending = n; /* retried with the same arguments */
              ev |= UV_WRITABLE;
              break;
            }
            if (err != SSL_ERROR_WANT_READ) {
              conn_fail(c, "write");
              return;
            }
            c->wpending = n;
            break;
          }
          c->wpending = 0;
          bsent += n;
        }
        set_events(c, ev);
        return;
      }
    }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  conn_t *c = (conn_t *)h;
  (void)events;
  if (status < 0) {
    errno = -status;
    conn_fail(c, "poll");
    return;
  }
  drive(c);
}

/* A new TCP connection and TLS session in slot c. */
static void conn_start(conn_t *c) {
  int one = 1;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    perror("socket");
    exit(1);
  }
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->ssl = SSL_new(cctx);
  if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
    fprintf(stderr, "client: SSL_new failed\n");
    exit(1);
  }
  SSL_set_connect_state(c->ssl);
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  if (c->session) SSL_set_session(c->ssl, c->session);
  c->events = 0;
  c->got = 0;
  c->wpending = 0;
  c->t0 = uv_hrtime();
  c->state = S_CONNECT;
  uv_poll_init(loop, &c->poll, c->fd);
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 &&
      errno != EINPROGRESS) {
    conn_fail(c, "connect");
    return;
  }
  set_events(c, UV_WRITABLE);
}

/* ---- the modes ----------------------------------------------------------- */

static double secs_arg;
static int server_pid;
static double cpu0, self0;
static uint64_t wall0;

static void start_clock(void) {
  int i;
  cpu0 = bench_cpu_seconds(server_pid);
  self0 = self_cpu_seconds();
  wall0 = uv_hrtime();
  t_end = wall0 + (uint64_t)(secs_arg * 1e9);
  for (i = 0; i < nconns; i++) {
    conns[i].state = S_WRITE;
    drive(&conns[i]);
  }
}

static void print_common(double cpu, double wall) {
  printf(" proto=%s cipher=%s group=%s errors=%d client_cpu_pct=%.0f",
         proto[0] ? proto : "?", cipher[0] ? cipher : "?",
         group[0] ? group : "?", errors,
         (self_cpu_seconds() - self0) / wall * 100);
  if (server_pid > 0) printf(" server_cpu_s=%.3f", cpu);
}

static int run(int m, int n, double secs) {
  double cpu1, wall;
  int i;
  mode = m;
  nconns = n;
  secs_arg = secs;
  conns = calloc((size_t)n, sizeof *conns);
  if (conns == NULL) abort();
  /* hs and bulk: the clocks start now; echo: once all are handshaken */
  cpu0 = bench_cpu_seconds(server_pid);
  self0 = self_cpu_seconds();
  wall0 = uv_hrtime();
  t_end = wall0 + (uint64_t)(secs * 1e9);
  live = n;
  for (i = 0; i < n; i++) conn_start(&conns[i]);
  uv_run(loop, UV_RUN_DEFAULT);
  cpu1 = bench_cpu_seconds(server_pid) - cpu0;
  if (m == M_BULK) {
    wall = (double)(bt1 - bt0) / 1e9;
    printf("RESULT mode=bulk bytes=%llu secs=%.3f mb_per_s=%.1f",
           (unsigned long long)btotal, wall, (double)count / 1e6 / wall);
    print_common(cpu1, (double)(uv_hrtime() - wall0) / 1e9);
    if (server_pid > 0)
      printf(" server_us_per_mb=%.1f",
             count ? cpu1 * 1e6 / ((double)count / 1e6) : 0);
    printf("\n");
    return errors || count != btotal;
  }
  wall = (double)(uv_hrtime() - wall0) / 1e9;
  bench_lat_sort(&lat);
  if (m == M_HS)
    printf("RESULT mode=hs conns=%d secs=%.3f handshakes=%llu hs_per_s=%.0f "
           "resumed=%llu",
           n, wall, (unsigned long long)count, (double)count / wall,
           (unsigned long long)resumed);
  else
    printf("RESULT mode=echo conns=%d size=%zu secs=%.3f round_trips=%llu "
           "rt_per_s=%.0f",
           n, msg_size, wall, (unsigned long long)count, (double)count / wall);
  printf(" p50_us=%u p99_us=%u", bench_lat_pct(&lat, 50),
         bench_lat_pct(&lat, 99));
  print_common(cpu1, wall);
  if (server_pid > 0)
    printf(" %s=%.2f", m == M_HS ? "server_us_per_hs" : "server_us_per_rt",
           count ? cpu1 * 1e6 / (double)count : 0);
  printf("\n");
  for (i = 0; i < n; i++) SSL_SESSION_free(conns[i].session);
  return errors != 0 || count == 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: client hs PORT CONNS SECONDS [SERVER_PID] [--resume]\n"
          "       client echo PORT CONNS SIZE SECONDS [SERVER_PID]\n"
          "       client bulk PORT MIB [SERVER_PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  char *pos[8];
  int npos = 0, i, rc;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--resume") == 0)
      resume = 1;
    else if (npos < 8)
      pos[npos++] = argv[i];
  }
  if (npos < 3) usage();
  loop = uv_default_loop();
  cctx = SSL_CTX_new(TLS_client_method());
  if (cctx == NULL) return 1;
  SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_read_ahead(cctx, 1);
  SSL_CTX_set_default_read_buffer_len(cctx, RBUF);
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
  uv_ip4_addr("127.0.0.1", atoi(pos[1]), &addr);
  msg_size = 64;
  if (strcmp(pos[0], "hs") == 0 && npos >= 4) {
    server_pid = npos > 4 ? atoi(pos[4]) : 0;
    msg = malloc(msg_size);
    memset(msg, 'h', msg_size);
    rc = run(M_HS, atoi(pos[2]), atof(pos[3]));
  } else if (strcmp(pos[0], "echo") == 0 && npos >= 5) {
    msg_size = (size_t)atoi(pos[3]);
    server_pid = npos > 5 ? atoi(pos[5]) : 0;
    if (msg_size == 0) usage();
    msg = malloc(msg_size);
    for (i = 0; i < (int)msg_size; i++) msg[i] = (char)('a' + i % 26);
    rc = run(M_ECHO, atoi(pos[2]), atof(pos[4]));
  } else if (strcmp(pos[0], "bulk") == 0) {
    server_pid = npos > 3 ? atoi(pos[3]) : 0;
    btotal = (uint64_t)(atof(pos[2]) * 1048576);
    bpattern = malloc(BULK_CHUNK);
    for (i = 0; i < BULK_CHUNK; i++) bpattern[i] = (char)(i * 7 % 251);
    if (btotal == 0) usage();
    rc = run(M_BULK, 1, 0);
  } else {
    usage();
    rc = 2;
  }
  SSL_CTX_free(cctx);
  return rc;
}
