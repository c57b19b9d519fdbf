/*
** bench/tls/server.c -- the reference TLS echo server: plain C on libuv with
** OpenSSL driven through memory BIOs, the way spindle drives it on top of
** its libuv streams.  The limit of that design: one loop, one thread.
**
**   ./server CERT KEY [port]     prints "port N" on stdout, echoes forever
**
** Per connection: a 64 KiB ciphertext read buffer.  What libuv reads goes
** into the read BIO; SSL_read drains it (the handshake runs inside the
** first SSL_read) into a 64 KiB plaintext buffer, which goes back with one
** SSL_write per 64 KiB.  The write BIO is then drained into a buffer and
** sent with uv_try_write; what the kernel does not take is queued with
** uv_write.  Reading pauses while more than 1 MiB of ciphertext is queued
** (the flow control of bench/echo/server.c, both in bench/common/bench.c).
** A close_notify from the client is answered with one, then the connection
** is closed.
**
** OpenSSL is left at its defaults (TLS 1.3, the server sends two session
** tickets after each full handshake) except for a TLS 1.2 minimum.
*/
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../common/bench.h"

#define CHUNK BENCH_CHUNK
#define OUT (2 * CHUNK) /* 64 KiB of plaintext and its record overhead */

/* A connection: its TLS state over a bench_conn (the TCP connection, its
** own ciphertext read buffer and the flow control). */
typedef struct {
  bench_conn io; /* first */
  SSL *ssl;
  BIO *rbio; /* network -> OpenSSL */
  BIO *wbio; /* OpenSSL -> network */
} conn_t;

static SSL_CTX *ctx;
static char plain[CHUNK]; /* one thread: one plaintext buffer for all */
static char out[OUT];     /* and one for ciphertext on its way out */

static void on_close(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  SSL_free(c->ssl); /* frees both BIOs */
  free(c);
}

static void conn_close(conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)c)) uv_close((uv_handle_t *)c, on_close);
}

/* Sends everything OpenSSL has written.  Returns 0, or -1 when the
** connection is broken. */
static int flush(conn_t *c) {
  size_t pending;
  while ((pending = BIO_ctrl_pending(c->wbio)) > 0) {
    int n = BIO_read(c->wbio, out, pending < OUT ? (int)pending : OUT);
    if (bench_conn_send(&c->io, out, (size_t)n) != 0) return -1;
  }
  return 0;
}

/* Ciphertext in; plaintext echoed; ciphertext out. */
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s;
  size_t len = 0;
  int r, err = SSL_ERROR_WANT_READ;
  if (n < 0) { /* EOF or a reset, with or without close_notify */
    conn_close(c);
    return;
  }
  if (n == 0) return;
  if (BIO_write(c->rbio, buf->base, (int)n) != (int)n) {
    conn_close(c);
    return;
  }
  for (;;) {
    r = SSL_read(c->ssl, plain + len, (int)(CHUNK - len));
    if (r <= 0) {
      err = SSL_get_error(c->ssl, r);
      break;
    }
    len += (size_t)r;
    if (len == CHUNK) {
      if (SSL_write(c->ssl, plain, (int)len) != (int)len) {
        err = SSL_ERROR_SSL;
        break;
      }
      len = 0;
    }
  }
  if (len > 0 && SSL_write(c->ssl, plain, (int)len) != (int)len)
    err = SSL_ERROR_SSL;
  if (err == SSL_ERROR_ZERO_RETURN) /* close_notify: answer it, then close */
    SSL_shutdown(c->ssl);
  if (flush(c) != 0 || err != SSL_ERROR_WANT_READ) {
    ERR_clear_error();
    conn_close(c);
    return;
  }
  bench_conn_throttle(&c->io);
}

static void on_conn(uv_stream_t *srv, int status) {
  conn_t *c;
  if (status < 0) return;
  c = malloc(sizeof *c);
  if (c == NULL) return;
  c->ssl = SSL_new(ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  BIO_set_mem_eof_return(c->rbio, -1); /* empty means "wait", not EOF */
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_accept_state(c->ssl);
  if (bench_conn_accept(&c->io, srv, read_cb) != 0) conn_close(c);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: server CERT KEY [port]\n");
    return 2;
  }
  ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  return bench_serve(uv_default_loop(), argc > 3 ? atoi(argv[3]) : 0, on_conn);
}
