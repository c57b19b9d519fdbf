/*
** net.h -- private structures shared by the network files: stream.c (the
** buffered stream object), tcp.c (TCP listeners, connect, addresses),
** pipe.c (Unix sockets) and dns.c (name resolution).
**
** Every libuv handle or request these files create is tracked in a list
** (sp_nethandle) so that closing the runtime can close what Lua did not:
** sp_net_close_all(rt) is called by the runtime before its loop closes.
*/
#ifndef SP_NET_H
#define SP_NET_H

#include "stream.h"

/* Bytes asked of the kernel per read, and the least read-buffer bound. */
#define SP_STREAM_CHUNK 65536

/* What a task waits for, for spindle.dump() (describers registered with
** dump.c).  High numbers, so that they never meet the SP_W_* enum of
** internal.h, which others extend. */
enum {
  SP_W_NET_READ = 200, /* u.w.obj: the sp_stream */
  SP_W_NET_WRITE,      /* u.w.obj: the sp_stream */
  SP_W_NET_ACCEPT,     /* u.w.obj: the listener (tcp.c) */
  SP_W_NET_CONNECT,    /* u.w.obj: the connect request (tcp.c) */
  SP_W_NET_RESOLVE     /* u.w.obj: the sp_gai (dns.c) */
};

/* ---- the per-runtime list of open network objects (stream.c) --------- */

typedef struct sp_nethandle sp_nethandle;
struct sp_nethandle {
  sp_runtime *rt;
  sp_nethandle *next, *prev;
  void (*close)(sp_nethandle *n); /* C only: close at runtime close */
};

void sp_net_track(sp_nethandle *n, sp_runtime *rt,
                  void (*close)(sp_nethandle *));
void sp_net_untrack(sp_nethandle *n);
void sp_net_close_all(sp_runtime *rt);
void sp_net_ignore_sigpipe(void);

/* ---- streams (stream.c) ----------------------------------------------- */

typedef struct sp_sbox {
  sp_stream *s; /* NULL once closed */
} sp_sbox;

struct sp_stream {
  sp_nethandle node;
  uv_stream_t *h; /* &u.tcp / &u.pipe, or a wrapped malloc()ed handle */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  sp_sbox *box;     /* the Lua object, NULL when none (yet) */
  const char *kind; /* "tcp", "unix", "pipe" */
  /* read side: bytes [roff, roff + rlen) of rbuf are buffered */
  char *rbuf;
  size_t rcap, roff, rlen;
  size_t rscan;  /* bytes from roff already searched for the delimiter */
  size_t rlimit; /* buffer bound: the largest need of any reader */
  sp_task *reader;
  int rkind;         /* what the waiting reader wants (R_*) */
  size_t rn, rmax;   /* its count or max */
  const char *delim; /* its delimiter (a string on its stack) */
  size_t dlen;
  int rerr; /* sticky read error (libuv code), 0 if none */
  /* write side */
  sp_task *writer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
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
int sp_stream_open(lua_State *L); /* metatable; [-0, +0, m] */
int sp_net_open(lua_State *L);    /* spindle.net; [-0, +0, m] */

/* Pushes nil, message, code; returns 3.  [-0, +3, -] */
int sp_net_error(lua_State *L, int code);
/* The same with a fixed message.  [-0, +3, -] */
int sp_net_fail(lua_State *L, const char *msg, const char *code);

/* ---- addresses and module parts ---------------------------------------- */

/* Pushes host, port of a socket address.  Returns 2, or 0 (nothing
** pushed) for an unknown family.  [-0, +2, m] */
int sp_push_sockaddr(lua_State *L, const struct sockaddr *sa);
int sp_tcp_open(lua_State *L);  /* listen, connect; [-0, +0, m] */
int sp_pipe_open(lua_State *L); /* listen_unix, connect_unix */
int sp_dns_open(lua_State *L);  /* resolve */
int sp_socket_open(lua_State *L); /* _gettime, _gethostname (socket.c) */
/* "host:port" ("[v6]:port") of a socket address into buf.  No Lua. */
void sp_format_sockaddr(const struct sockaddr *sa, char *buf, size_t size);

/* ---- listeners and connects (tcp.c), also used by pipe.c ---------- */

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
** the current task; timeout in seconds, 0 for none; local (may be NULL):
** the address to bind the TCP socket to first (only addresses of its
** family are tried).  An await: returns through lua_yieldk.
** [-0, +(1|3), e] */
int sp_connect_start(lua_State *L, const char *host, int port,
                     const char *path, double timeout,
                     const struct sockaddr *local);

/* ---- name resolution (dns.c) ----------------------------------------- */

/* A uv_getaddrinfo request that a task waits on (resolve, listen; connect
** has its own, inside its request). */
typedef struct sp_gai {
  sp_nethandle node;
  uv_getaddrinfo_t req;
  sp_task *task; /* NULL once detached */
  struct addrinfo *res;
  int status;
  int done;
  int orphan; /* the runtime closed: do not touch it */
  char name[64]; /* for spindle.dump() */
} sp_gai;

/* Starts resolving name (port may be NULL).  Returns 0 or a libuv error.
** The request is freed by sp_gai_free once done (or by its callback once
** detached). */
int sp_gai_start(sp_runtime *rt, sp_gai *g, const char *name,
                 const char *port);
void sp_gai_detach(sp_gai *g); /* cancel; frees itself when done */
void sp_gai_free(sp_gai *g);

#endif
