/*
** sync.h -- private declarations of sync.c (channels, semaphores, mutexes,
** events), scope.c (spindle.scope) and dump.c (spindle.dump, the SIGQUIT
** dump, the wall-clock watchdog of spindle.test, the lazily loaded Lua
** parts).
*/
#ifndef SP_SYNC_H
#define SP_SYNC_H

#include "internal.h"

/* Each adds its functions to the module table at -1.  [-0, +0, m] */
int sp_sync_open(lua_State *L);
int sp_scope_open(lua_State *L);
int sp_dump_open(lua_State *L);

/* Everything above, in order: the one call luaopen_spindle makes. */
int sp_sync_all_open(lua_State *L);

/* Pushes the text of spindle.dump() for rt.  [-0, +1, m] */
void sp_dump_push(lua_State *L, sp_runtime *rt);

/* The `spindle` command: print the dump on stderr on every SIGQUIT, from
** the scheduler (not from the signal callback), without stopping.  The
** signal handle is unreferenced and closed with the runtime.  [-0, +0, m] */
void sp_dump_on_sigquit(lua_State *L, sp_runtime *rt);

#endif
