/*
** io.h -- private declarations of the I/O layer (docs/io.md, fs.md,
** process.md): the buffered stream (stream.c) shared by TCP, Unix sockets
** and process pipes; listeners and connects (tcp.c, pipe.c); addresses
** (addr.c); name resolution (dns.c); UDP (udp.c); files (fs.c); processes
** (process.c); signals (signal.c).
**
** Ownership.  Every libuv handle, request or descriptor these files make
** is an sp_ionode: an entry in its runtime's list of owned things (see
** sp_own in internal.h) plus the runtime it belongs to.  The node is
** linked when the object is made and unlinked at the one place its memory
** is released (a close callback, the last callback of a request, a
** __gc); its close function, called once when the runtime closes, closes
** or detaches the object and runs no Lua.
**
** Results.  I/O failures are `nil, message, code` from sp_io_fail (one
** function, the same words for every subsystem); a closed object gives
** `nil, "closed", code`.
*/
#ifndef SP_IO_H
#define SP_IO_H

#include <sys/types.h>
#include <sys/socket.h>

#include "internal.h"

/* ---- owned I/O objects -------------------------------------------------- */

typedef struct sp_ionode {
  sp_owned own;
  sp_runtime *rt;
} sp_ionode;

/* Links n into rt's owned list; close runs when the runtime closes. */
void sp_io_track(sp_ionode *n, sp_runtime *rt, void (*close)(sp_owned *));
void sp_io_untrack(sp_ionode *n); /* idempotent */
#define sp_io_tracked(n) ((n)->own.next != NULL)

/* ---- results and arguments (addr.c) ------------------------------------- */

/* Pushes nil, message, code for a libuv error; returns 3.  "eof" for
** UV_EOF, "timeout" for UV_ETIMEDOUT, else libuv's words.  [-0, +3, m] */
int sp_io_fail(lua_State *L, int err);
/* The same with a fixed message and code.  [-0, +3, m] */
int sp_io_fail_msg(lua_State *L, const char *msg, const char *code);
/* nil, "closed", code.  [-0, +3, m] */
int sp_io_closed(lua_State *L, const char *code);
/* The runtime of the running code, or a "<name>: not inside a runtime"
** error.  [-0, +0, v] */
sp_runtime *sp_io_runtime(lua_State *L, const char *name);
/* A string argument without embedded zeros (a path).  [-0, +0, v] */
const char *sp_io_checkpath(lua_State *L, int arg);
/* A port argument, 0..65535.  [-0, +0, v] */
int sp_io_checkport(lua_State *L, int arg);
/* A write to a peer that has gone must return EPIPE, not kill the process:
** SIGPIPE is ignored once, unless the host installed a handler. */
void sp_io_ignore_sigpipe(void);

/* ---- addresses (addr.c) ------------------------------------------------ */

/* A numeric IPv4 or IPv6 address into ss: 0, or -1 if host is a name. */
int sp_addr_parse(const char *host, int port, struct sockaddr_storage *ss);
/* Sets the port of an IPv4 or IPv6 address. */
void sp_addr_set_port(struct sockaddr_storage *ss, int port);
/* Pushes host, port of a socket address.  Returns 2, or 0 (nothing
** pushed) for an unknown family.  [-0, +2, m] */
int sp_push_sockaddr(lua_State *L, const struct sockaddr *sa);
/* "host:port" ("[v6]:port") of a socket address into buf.  No Lua. */
void sp_format_sockaddr(const struct sockaddr *sa, char *buf, size_t size);

/* ---- name resolution (dns.c): the one getaddrinfo path ------------------ */

/* A uv_getaddrinfo request a task waits on (resolve, listen, connect,
** udp).  While pending it counts in rt->inflight (a virtual clock does not
** jump past it).  The waiting task can be detached (abort, or the runtime
** closes); the callback, which always comes, then frees it. */
typedef struct sp_gai sp_gai;
struct sp_gai {
  sp_ionode node;
  uv_getaddrinfo_t req;
  sp_task *task;              /* woken when done; NULL once detached */
  void (*done_cb)(sp_gai *g); /* instead of waking a task (connect) */
  void *data;                 /* for done_cb */
  struct addrinfo *res;
  int status;
  int done;
  char name[64]; /* for spindle.dump() */
};

/* A new request for name (port may be NULL; socktype SOCK_STREAM or
** SOCK_DGRAM), started at once.  NULL with *err set on failure.  The
** caller either waits on it (g->task, sp_gai_wait) or sets done_cb. */
sp_gai *sp_gai_start(sp_runtime *rt, const char *name, const char *port,
                     int socktype, int *err);
void sp_gai_detach(sp_gai *g);       /* cancel; frees itself when done */
void sp_gai_free(sp_gai *g);         /* a done request */
extern const sp_waitops sp_gai_wait; /* "resolve <name>" */

/* ---- streams (stream.c) ------------------------------------------------- */

typedef struct sp_stream sp_stream;

/* Metatable name of stream objects. */
#define SP_STREAM_MT "spindle.stream"

/* Bytes asked of the kernel per read, and the least read-buffer bound. */
#define SP_STREAM_CHUNK 65536
/* The first read buffer of a stream, for short messages (stream.c). */
#define SP_STREAM_SMALL 512

typedef struct sp_sbox {
  sp_stream *s; /* NULL once closed */
} sp_sbox;

struct sp_stream {
  sp_ionode node;
  uv_stream_t *h; /* &u.tcp / &u.pipe, or a wrapped malloc()ed handle */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  sp_sbox *box;       /* the Lua object, NULL when none (yet) */
  struct sp_tls *tls; /* TLS state (tls.c), NULL for a plain stream */
  const char *kind;   /* "tcp", "unix", "pipe" */
  /* read side: bytes [roff, roff + rlen) of rbuf are buffered */
  char *rbuf; /* NULL while nothing is buffered */
  size_t rcap, roff, rlen;
  size_t rnext;  /* size class of the next buffer (stream.c, "Reading") */
  size_t rhigh;  /* the most of rbuf that reads have filled (roff + rlen) */
  unsigned rlow; /* buffers in a row given back less than a quarter used */
  size_t rscan;  /* bytes from roff already searched for the delimiter */
  size_t rlimit; /* buffer bound: the largest need of any reader */
  sp_task *reader;
  int rkind;         /* what the waiting reader wants (R_*) */
  size_t rn, rmax;   /* its count or max */
  const char *delim; /* its delimiter (a string on its stack) */
  size_t dlen;
  /* a C reader (rkind SP_STREAM_R_FN): is the read complete?  Called from
  ** read callbacks with the buffer as it is; runs no Lua. */
  int (*rfn)(sp_stream *s, void *data);
  void *rfn_data;
  int rerr; /* sticky read error (libuv code), 0 if none */
  /* write side */
  sp_task *writer; /* the task whose write has the write side */
  sp_wlist wq;     /* writers waiting for their turn, FIFO */
  /* the uv_write_t or uv_shutdown_t of a pending write or shutdown is
  ** taken when needed and given back by its callback (stream.c) */
  int wstatus, sstatus; /* results of the last write / shutdown */
  int werr;             /* sticky write error */
  unsigned reading : 1, eof : 1, wpending : 1, spending : 1, shut : 1,
      closing : 1, external : 1, reset : 1,
      anchored : 1; /* the box's user value holds a pending write's data */
};

/* A new stream with an embedded handle that the caller initialises
** (uv_tcp_init / uv_pipe_init on s->u) and then tracks with
** sp_stream_opened.  NULL when out of memory.  No Lua. */
sp_stream *sp_stream_alloc(const char *kind);
void sp_stream_opened(sp_stream *s, sp_runtime *rt);
/* Pushes a new Lua object for s (which has none).  On a memory error s is
** closed first.  [-0, +1, m] */
void sp_stream_push(lua_State *L, sp_stream *s);

/* Wraps the initialised, malloc()ed handle h of runtime rt (a child's
** pipe) and pushes the new Lua stream.  kind ("pipe") must be a string
** literal.  From this call on the stream owns the handle: it calls
** uv_close() exactly once (s:close(), __gc, sp_stream_close, runtime
** close) and free()s it in the close callback; if this raises (out of
** memory) the handle has already been closed.  The handle's `data` field
** belongs to the stream.  [-0, +1, m] */
sp_stream *sp_stream_wrap(lua_State *L, sp_runtime *rt, uv_stream_t *h,
                          const char *kind);
/* The open stream at idx, or NULL (not a stream, or closed).  [-0,+0,-] */
sp_stream *sp_stream_test(lua_State *L, int idx);
/* Closes the stream: idempotent, runs no Lua, never raises.  A task
** blocked on it is woken with nil, "closed", "ECANCELED". */
void sp_stream_close(sp_stream *s);

/* For the TLS engine (tls.c): the parts of the read and write machinery
** that it drives.  No Lua. */
/* Room for up to min(rlimit - rlen, max) more plaintext bytes at
** rbuf + roff + rlen (max <= SP_STREAM_CHUNK), at least one: *len is set;
** NULL when out of memory.  The buffer is made or grown as needed; the
** caller reports what it wrote with sp_stream_rgot, or calls
** sp_stream_rtrim when it wrote nothing. */
char *sp_stream_rreserve(sp_stream *s, size_t max, size_t *len);
/* n bytes were written at the room sp_stream_rreserve gave. */
void sp_stream_rgot(sp_stream *s, size_t n);
/* Gives the buffer back if it holds no bytes. */
void sp_stream_rtrim(sp_stream *s);
void sp_stream_read_start(sp_stream *s);
void sp_stream_read_stop(sp_stream *s);
/* The reader kind of a C reader: s->rfn(s, s->rfn_data) decides when
** the waiting task is woken (csrc/http_server.c). */
#define SP_STREAM_R_FN 5
/* The buffered bytes (s->rlen of them), and consuming them.  No Lua. */
const char *sp_stream_rdata(sp_stream *s);
void sp_stream_rconsume(sp_stream *s, size_t n);
/* Puts n bytes back in front of the buffered ones: 0, or -1 when out of
** memory. */
int sp_stream_unread(sp_stream *s, const char *p, size_t n);
/* Writes p[0..n) now if the stream can take all of it without waiting
** (no write in progress or queued, not TLS): 1 when every byte went;
** else 0 with *done bytes written (maybe 0), and the caller writes the
** rest with the stream's write method (which reports any error).  No Lua. */
int sp_stream_try_write(sp_stream *s, const char *p, size_t n, size_t *done);
/* A uv_write_t for a write on s that the kernel could not take at once,
** from the runtime's cache (stream.c); NULL when out of memory.  Its
** callback gives it back with sp_stream_wreq_free (libuv calls it, with
** UV_ECANCELED, even when the stream is closed first).  No Lua. */
uv_write_t *sp_stream_wreq(sp_stream *s);
void sp_stream_wreq_free(sp_stream *s, uv_write_t *req);
/* Wakes the waiting reader if its read can complete now. */
void sp_stream_wake_reader(sp_stream *s);
/* The pending write ended with status (0 or an error): wake the writer. */
void sp_stream_write_done(sp_stream *s, int status);
/* Wakes a task waiting at an await on a stream (no-op for NULL). */
void sp_stream_wake(sp_task *t);
/* At end of file on a TCP socket: the reset that came with it, or 0. */
int sp_stream_eof_error(uv_stream_t *h);

/* ---- listeners and connects (tcp.c), also used by pipe.c -------------- */

/* Binds a new listener to sa (TCP) or to the Unix socket path, listens
** and pushes it; or pushes nil, msg, code.  Returns the number of results.
** [-0, +(1|3), m] */
int sp_listen_bind(lua_State *L, sp_runtime *rt, const struct sockaddr *sa,
                   const char *path, int backlog);
/* opts.backlog of the options table at arg (default 511).  [-0, +0, v] */
int sp_opt_backlog(lua_State *L, int arg);
/* opts.timeout in seconds, 0 when absent.  [-0, +0, v] */
double sp_opt_timeout(lua_State *L, int arg);
/* Connects to host:port (path NULL) or the Unix socket path, waiting in
** the current task; timeout in seconds, 0 for none.  An await: returns
** through lua_yieldk.  [-0, +(1|3), e] */
int sp_connect_start(lua_State *L, const char *host, int port, const char *path,
                     double timeout);
/* The same from a local address: local (may be NULL) is where the TCP
** socket is bound first; only addresses of its family are tried.
** [-0, +(1|3), e] */
int sp_connect_start_from(lua_State *L, const char *host, int port,
                          const char *path, double timeout,
                          const struct sockaddr *local);

/* ---- signals (signal.c) ---------------------------------------------- */

/* Signal names ("TERM", "SIGTERM") or numbers at arg; raises if unknown.
** [-0, +0, v] */
int sp_signum(lua_State *L, int arg);
const char *sp_signame(int signum); /* "SIGTERM", or NULL */

/* ---- the parts of spindle.net (net table at -1).  [-0, +0, m] -------- */

int sp_stream_open(lua_State *L); /* the stream class */
int sp_tcp_open(lua_State *L);    /* listen, connect; the listener class */
int sp_pipe_open(lua_State *L);   /* listen_unix, connect_unix */
int sp_dns_open(lua_State *L);    /* resolve */
int sp_udp_open(lua_State *L);    /* udp */
int sp_socket_open(lua_State *L); /* _gettime, _gethostname (socket.c) */

#endif
