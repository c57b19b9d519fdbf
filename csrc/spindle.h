/*
** spindle.h -- the embedding API of spindle, an async runtime for Lua 5.4
** on libuv.  This is the only installed header.
**
** A host creates a runtime on its lua_State (and optionally on its own
** uv_loop_t), spawns tasks and drives them with spindle_step() once per
** frame or spindle_run() until they are done.  See docs/embedding.md.
*/
#ifndef SPINDLE_H
#define SPINDLE_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPINDLE_VERSION "0.1.0"

/* Error codes, returned negated (-SPINDLE_EINVAL ...) by spindle_spawn,
** spindle_step and spindle_run. */
#define SPINDLE_EINVAL 1  /* NULL runtime or bad arguments */
#define SPINDLE_ECLOSED 2 /* the runtime was closed */
#define SPINDLE_EBUSY 3   /* called from inside a running runtime */
#define SPINDLE_ERUN 4    /* a Lua error escaped (message on L's top) */

typedef struct sp_runtime spindle_rt;

/* Create a runtime on L; loop NULL: the runtime owns a new loop.  Also
** registers the module in package.loaded.spindle.  NULL on failure. */
spindle_rt *spindle_new(lua_State *L, uv_loop_t *loop);

/* fn + nargs arguments on L's top: spawn a task, pop them and push its
** handle.  Returns 0, or a negative error code (nothing pushed, the
** function and arguments popped). */
int spindle_spawn(spindle_rt *rt, int nargs);

/* Run ready tasks and poll I/O without blocking, for at most max_seconds
** plus one task slice.  Returns the number of live tasks, or < 0. */
int spindle_step(spindle_rt *rt, double max_seconds);

/* Run until no task is alive.  Returns 0, or < 0. */
int spindle_run(spindle_rt *rt);

/* Abort every task, unwind it, close every handle the runtime created.
** The runtime's memory belongs to Lua and is freed by the collector. */
void spindle_close(spindle_rt *rt);

int luaopen_spindle(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
