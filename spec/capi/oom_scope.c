/*
** spec/capi/oom_scope.c -- issue 9, defect 7: a memory error inside
** s:spawn must not leave the scope counting a child it never stored.
**
** A Lua state whose allocator fails the Nth allocation (counted from the
** start of the script) runs a scope that spawns many children; N is swept
** over every allocation the script makes.  Each run must end with the
** script's result or a Lua memory error -- never a crash -- and a normal
** script must then run on the same state.  Prints "N passed, M failed".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "spindle.h"

static int passed, failed;

typedef struct budget {
  long left; /* allocations still allowed; < 0: unlimited */
} budget;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  budget *b = (budget *)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (b->left == 0 && nsize > osize) return NULL;
  if (b->left > 0 && nsize > osize) b->left--;
  return realloc(ptr, nsize);
}

static const char *script =
    "local spindle = require 'spindle'\n"
    "return spindle.run(function()\n"
    "  local n = 0\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 40 do\n"
    "      s:spawn(function() spindle.sleep(0); n = n + 1 end)\n"
    "    end\n"
    "  end)\n"
    "  return n\n"
    "end)\n";

/* Runs the script once with `limit` allocations allowed (-1: no limit).
** Returns 1 if it completed, 0 if it failed with a Lua error. */
static int run_once(long limit, int *crash_free) {
  budget b = {-1};
  lua_State *L = lua_newstate(failing_alloc, &b);
  int ok;
  if (L == NULL) return 0;
  luaL_openlibs(L);
  luaL_requiref(L, "spindle", luaopen_spindle, 0);
  lua_pop(L, 1);
  b.left = limit;
  ok = luaL_dostring(L, script) == LUA_OK && lua_tointeger(L, -1) == 40;
  b.left = -1; /* the state must still work */
  lua_settop(L, 0);
  if (luaL_dostring(L, "return require('spindle').run(function() "
                       "require('spindle').sleep(0) return 7 end)") != LUA_OK ||
      lua_tointeger(L, -1) != 7)
    *crash_free = 0;
  lua_close(L);
  return ok;
}

int main(void) {
  long n;
  int usable = 1, completed = 0;
  for (n = 0; n < 20000 && !completed; n++) completed = run_once(n, &usable);
  if (completed) {
    passed++;
    printf("ok - scope spawn survives a memory error at every allocation "
           "(%ld swept)\n",
           n);
  } else {
    failed++;
    printf("not ok - the script never completed within the sweep\n");
  }
  if (usable) {
    passed++;
    printf("ok - the state is usable after every failure\n");
  } else {
    failed++;
    printf("not ok - a state was not usable after a memory error\n");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
