/*
** io2.h -- private declarations shared by fs.c, udp.c, process.c and
** signal.c: the parts of api.md section 5 outside the stream layer.
**
** Every libuv handle, open file and pending request these files create is
** an sp_io2_obj linked into its runtime's record (sp_io2_rt).  Closing the
** runtime calls sp_io2_close_all(), which asks each object to close or
** detach itself (rtclose) and then runs the loop until every one of them
** has been released (unlinked), so uv_loop_close() finds nothing of ours.
** An object unlinks itself at the one place its memory is released: the
** close callback of its handle, the last callback of its request, or the
** __gc of a plain userdata.  Records are kept in one process-wide list
** (guarded by a mutex: worker threads may own Lua states too), looked up
** only when an object is created.
*/
#ifndef SP_IO2_H
#define SP_IO2_H

#include "internal.h"

typedef struct sp_io2_rt sp_io2_rt;
typedef struct sp_io2_obj sp_io2_obj;

struct sp_io2_obj {
  sp_io2_obj *next, *prev; /* in io->objs; circular with a sentinel */
  sp_io2_rt *io;           /* NULL while not linked */
  void (*rtclose)(sp_io2_obj *o); /* the runtime closes: close or detach */
};

/* What a task waits for (t->wkind), for spindle.dump: private kinds above
** the shared enum in internal.h (net.h uses 200..).  Each file registers
** a describer with sp_describe_register. */
enum {
  SP_W_IO2_FS = 220,  /* u.w.obj: the fs_req (fs.c) */
  SP_W_IO2_FILE,      /* u.w.obj: the fs_req of a file read/write */
  SP_W_IO2_UDP_RECV,  /* u.w.obj: the reader's udp_rd (udp.c) */
  SP_W_IO2_UDP_SEND,  /* u.w.obj: the udp_sreq */
  SP_W_IO2_UDP_NAME,  /* u.w.obj: the udp_gai */
  SP_W_IO2_SIGNAL,    /* u.w.obj: the sig_obj (signal.c) */
  SP_W_IO2_PROC_WAIT, /* u.w.obj: the proc_obj (process.c) */
  SP_W_IO2_PROC_RUN   /* u.w.obj: the proc_obj of a run() */
};

struct sp_io2_rt {
  sp_runtime *rt;
  sp_io2_obj objs; /* sentinel */
  sp_io2_rt *next;
};

/* fs.c: the registry.  sp_io2_get raises a memory error.  [-0, +0, m] */
sp_io2_rt *sp_io2_get(lua_State *L, sp_runtime *rt);
void sp_io2_add(sp_io2_rt *io, sp_io2_obj *o);
void sp_io2_del(sp_io2_obj *o); /* idempotent */
void sp_io2_close_all(sp_runtime *rt); /* runtime.c, from release_c */

/* Pushes nil, message, code for a libuv error; returns 3.  [-0, +3, m] */
int sp_io2_fail(lua_State *L, int err);
/* nil, "closed", "ECANCELED".  [-0, +3, m] */
int sp_io2_closed(lua_State *L);
/* The runtime of the running code, or a "not inside a runtime" error. */
sp_runtime *sp_io2_runtime(lua_State *L, const char *name);
/* A string argument without embedded zeros (a path).  [-0, +0, v] */
const char *sp_io2_checkpath(lua_State *L, int arg);

/* signal.c: signal names ("TERM", "SIGTERM") or numbers.  0: unknown. */
int sp_io2_signum(lua_State *L, int arg); /* [-0, +0, v]: raises if bad */
const char *sp_io2_signame(int signum);   /* "SIGTERM", or NULL */

/* Each adds its functions: fs and process make spindle.fs /
** spindle.process, signal adds spindle.signal, udp adds net.udp to the
** spindle.net table (created when absent).  Module table at -1. */
int sp_fs_open(lua_State *L);
int sp_udp_open(lua_State *L);
int sp_process_open(lua_State *L);
int sp_signal_open(lua_State *L);
/* All four, for luaopen_spindle.  [-0, +0, m] */
int sp_io2_open(lua_State *L);

#endif
