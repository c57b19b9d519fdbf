/*
** tls.h -- the TLS engine (tls.c) as seen by the stream layer (stream.c)
** and the listeners (tcp.c).
**
** A TLS stream is an ordinary sp_stream with s->tls set.  OpenSSL never
** touches the socket: it reads ciphertext from, and writes ciphertext to,
** buffers of the stream (a BIO of our own over memory).  stream.c calls
** these hooks where the TLS stream differs from a plain one:
**
**   read_start        uses sp_tls_alloc_cb / sp_tls_read_cb, and reads the
**                     socket only while sp_tls_wants_input() says so
**   before a reader   sp_tls_before_read(): start the handshake if needed
**   waits             and decrypt what is buffered into the plaintext buffer
**   write             sp_tls_write(): encrypt and send in the background
**   shutdown          sp_tls_shutdown(): queue close_notify first
**   close             sp_tls_close(): send close_notify without waiting,
**                     wake a task waiting for the handshake
**   close callback    sp_tls_free()
**
** Everything else (the plaintext buffer, its bound, one reader, queued
** writers, cancellation) is the stream's own machinery, unchanged.
*/
#ifndef SP_TLS_H
#define SP_TLS_H

#include "io.h"

/* The error code of a TLS failure: nil, <OpenSSL's reason>, "ETLS".  Not a
** libuv code (those are small negative errno values and -3000..-3014). */
#define SP_ETLS (-40001)

typedef struct sp_tls sp_tls;
typedef struct sp_tlsctx sp_tlsctx;

/* ---- hooks for stream.c ------------------------------------------------ */

void sp_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void sp_tls_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
/* Should the socket be read now?  No Lua. */
int sp_tls_wants_input(sp_stream *s);
/* Starts the handshake if nobody has, and decrypts buffered records into
** the plaintext buffer (up to s->rlimit).  No Lua. */
void sp_tls_before_read(sp_stream *s);
/* Encrypts and sends the nb plaintext pieces (which stay valid until the
** write completes: stream.c anchors the strings).  Returns 0 when the
** kernel took all of it at once, 1 when the write goes on (s->wpending;
** sp_stream_write_done reports the end), or an error code.  No Lua. */
int sp_tls_write(sp_stream *s, const uv_buf_t *bufs, int nb);
/* Queues close_notify once.  1: wait until it is sent (s->wpending, as a
** write), 0: go on with the TCP shutdown.  No Lua. */
int sp_tls_shutdown(sp_stream *s);
void sp_tls_close(sp_stream *s); /* from sp_stream_close; no Lua */
void sp_tls_free(sp_tls *x);     /* from the close callback */
/* Pushes nil, message, "ETLS".  [-0, +3, m] */
int sp_tls_push_error(lua_State *L, sp_stream *s);
/* 1 while ciphertext is being written through a uv_write_t. */
int sp_tls_flying(sp_stream *s);
/* "handshake" while the handshake runs, else NULL (for dump). */
const char *sp_tls_phase(sp_stream *s);

/* The stream methods s:handshake() and s:tls_info(). */
int sp_tls_m_handshake(lua_State *L);
int sp_tls_m_info(lua_State *L);

/* ---- hooks for tcp.c (listeners with {tls = server_context}) ----------- */

/* The server context in opts.tls of the options table at arg, or NULL.
** Raises if it is something else.  [-0, +0, v] */
sp_tlsctx *sp_tls_opt_server(lua_State *L, int arg);
void sp_tlsctx_ref(sp_tlsctx *c);
void sp_tlsctx_unref(sp_tlsctx *c);
/* Makes an accepted stream a TLS server stream (lazy handshake).  0 or
** UV_ENOMEM.  No Lua. */
int sp_tls_attach_server(sp_stream *s, sp_tlsctx *c);

/* spindle.tls in the module table at -1.  [-0, +0, m] */
int sp_tls_open(lua_State *L);

#endif
