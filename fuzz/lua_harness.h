/*
** fuzz/lua_harness.h -- shared by the fuzzers that drive spindle from Lua:
** one Lua state per process with spindle loaded, a Lua file of the fuzzer
** (fuzz/<name>.lua, path fixed at build time) returning a table whose
** case(data) runs one input.  A Lua error from case() is a finding,
** reported with sp_fuzz_fail.
*/
#ifndef FUZZ_LUA_HARNESS_H
#define FUZZ_LUA_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "spindle.h"

/* A finding: under libFuzzer print and abort (a crash, the input saved);
** in the replay program (fuzz/replay.c, SP_FUZZ_REPLAY) count a failed
** file and go on. */
void sp_fuzz_fail(const char *what);
#ifndef SP_FUZZ_REPLAY
void sp_fuzz_fail(const char *what) {
  fprintf(stderr, "fuzz: %s\n", what);
  abort();
}
#endif

static lua_State *fuzz_L;
static int fuzz_case_ref = LUA_NOREF;

static void fuzz_lua_init(const char *file) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "spindle", luaopen_spindle, 0);
  lua_pop(L, 1);
  if (luaL_dofile(L, file) != LUA_OK || !lua_istable(L, -1)) {
    fprintf(stderr, "fuzz: cannot load %s: %s\n", file, lua_tostring(L, -1));
    abort();
  }
  lua_getfield(L, -1, "case");
  fuzz_case_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  fuzz_L = L;
}

/* At exit: close the state, so that leak checkers see nothing held. */
__attribute__((destructor)) static void fuzz_lua_close(void) {
  if (fuzz_L != NULL) lua_close(fuzz_L);
  fuzz_L = NULL;
}

static void fuzz_lua_case(const uint8_t *data, size_t size) {
  static unsigned long runs;
  lua_State *L = fuzz_L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_case_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    sp_fuzz_fail(luaL_tolstring(L, -1, NULL));
    lua_settop(L, 0);
  }
  if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
}

#endif
