/*
** stream.h -- the buffered stream layer (stream.c) for other C files:
** wrap a libuv stream handle as a spindle Lua stream object.
**
** TCP connections, Unix sockets and process pipes are all the same Lua
** object (metatable "spindle.stream"): read, read_some, read_line,
** read_until, read_all, lines, write, shutdown, close, <close>, __gc ...
** (api.md section 5, docs/io.md).  This header is what another subsystem
** needs to hand its own handles to that layer.
**
** Example -- a child's stdout pipe (process.c):
**
**   uv_pipe_t *p = malloc(sizeof *p);        // must come from malloc()
**   if (p == NULL) luaL_error(L, "not enough memory");
**   uv_pipe_init(rt->loop, p, 0);
**   stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
**   stdio[1].data.stream = (uv_stream_t *)p;
**   ... uv_spawn(...) ...                     // on failure: see below
**   sp_stream_wrap(L, rt, (uv_stream_t *)p, "pipe");  // pushes the stream
**
** Ownership: from the call to sp_stream_wrap on, the stream owns the
** handle.  It calls uv_close() on it exactly once -- when the Lua object is
** closed (s:close(), <close>, __gc), through sp_stream_close(), or when the
** runtime closes -- and free()s it in the close callback.  Never call
** uv_close() on a wrapped handle yourself; use sp_stream_close().  If
** sp_stream_wrap raises (out of memory), the handle has already been closed
** and will be freed: the caller must not touch it again.  It is fine to
** wrap the pipe before uv_spawn and sp_stream_close() it if uv_spawn fails
** (reads on a never-connected pipe simply fail).
**
** The handle's `data` field belongs to the stream after wrapping.
** Wrapping ignores SIGPIPE in the process (once, if it was SIG_DFL), as
** every stream does, so a write to a closed pipe returns EPIPE instead of
** killing the process.
**
** Closing a stream wakes a task blocked on it with nil, "closed",
** "ECANCELED".  Reads at end of file return nil, "eof", "EOF".
*/
#ifndef SP_STREAM_H
#define SP_STREAM_H

#include "internal.h"

typedef struct sp_stream sp_stream;

/* Metatable name of stream objects. */
#define SP_STREAM_MT "spindle.stream"

/* Wraps the initialised, malloc()ed handle h of runtime rt and pushes the
** new Lua stream.  kind names it in tostring(): "pipe", "tcp", "unix".
** kind must be a string literal (it is not copied).  [-0, +1, m] */
sp_stream *sp_stream_wrap(lua_State *L, sp_runtime *rt, uv_stream_t *h,
                          const char *kind);

/* The open stream at idx, or NULL (not a stream, or closed).  [-0, +0, -] */
sp_stream *sp_stream_test(lua_State *L, int idx);

/* The libuv handle of an open stream. */
uv_stream_t *sp_stream_handle(sp_stream *s);

/* Closes the stream: idempotent, runs no Lua, never raises.  A task
** blocked in a read or write on it is woken with nil, "closed",
** "ECANCELED".  The Lua object stays valid and reports "closed". */
void sp_stream_close(sp_stream *s);

#endif
