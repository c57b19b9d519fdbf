/*
** compat.h -- shims over Lua 5.4.x differences.
*/
#ifndef SP_COMPAT_H
#define SP_COMPAT_H

#include <lua.h>

/* lua_closethread appeared in 5.4.6; before it lua_resetthread. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define sp_closethread(co, from) lua_closethread((co), (from))
#else
#define sp_closethread(co, from) ((void)(from), lua_resetthread(co))
#endif

#endif
