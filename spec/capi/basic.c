/*
** spec/capi/basic.c -- the embedding API of spindle.h from a C host.
**
** Each check prints "ok" or "not ok" with a description; the last line is
** "N passed, M failed" and the exit status is 0 only if nothing failed.
*/
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "spindle.h"

static int passed, failed;

#define CHECK(cond, what)                                                      \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
      printf("ok - %s\n", what);                                               \
    } else {                                                                   \
      failed++;                                                                \
      printf("not ok - %s (%s:%d)\n", what, __FILE__, __LINE__);               \
    }                                                                          \
  } while (0)

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

/* Runs a chunk that leaves a function on L's top. */
static void push_chunk(lua_State *L, const char *src) {
  if (luaL_loadstring(L, src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "chunk failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

static void test_own_loop(void) {
  lua_State *L = new_state();
  spindle_rt *rt = spindle_new(L, NULL);
  int top = lua_gettop(L), n, steps = 0;
  CHECK(rt != NULL, "spindle_new on an own loop");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "spindle");
  CHECK(lua_istable(L, -1), "spindle_new registers package.loaded.spindle");
  lua_pop(L, 3);
  push_chunk(L, "local spindle = require 'spindle'\n"
                "return function(a, b)\n"
                "  spindle.sleep(0.01)\n"
                "  result = a + b\n"
                "  return result\n"
                "end");
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  CHECK(spindle_spawn(rt, 2) == 0, "spindle_spawn returns 0");
  CHECK(lua_gettop(L) == top + 1, "spindle_spawn pushes one handle");
  lua_pop(L, 1);
  do {
    n = spindle_step(rt, 0.001);
    steps++;
  } while (n > 0 && steps < 100000);
  CHECK(n == 0, "spindle_step drives the task to its end");
  lua_getglobal(L, "result");
  CHECK(lua_tointeger(L, -1) == 3, "the task ran with its arguments");
  lua_pop(L, 1);
  CHECK(lua_gettop(L) == top, "stepping leaves the stack balanced");
  spindle_close(rt);
  CHECK(spindle_step(rt, 0) == -SPINDLE_ECLOSED,
        "spindle_step after close is -SPINDLE_ECLOSED");
  CHECK(spindle_run(rt) == -SPINDLE_ECLOSED,
        "spindle_run after close is -SPINDLE_ECLOSED");
  lua_pushnil(L);
  CHECK(spindle_spawn(rt, 0) == -SPINDLE_ECLOSED,
        "spindle_spawn after close is -SPINDLE_ECLOSED");
  CHECK(lua_gettop(L) == top, "a failed spawn pops its arguments");
  spindle_close(rt); /* twice: no effect */
  lua_close(L);
}

static void test_host_loop(void) {
  uv_loop_t loop;
  lua_State *L = new_state();
  spindle_rt *rt;
  uv_loop_init(&loop);
  rt = spindle_new(L, &loop);
  CHECK(rt != NULL, "spindle_new on the host's loop");
  push_chunk(L, "local spindle = require 'spindle'\n"
                "return function()\n"
                "  for i = 1, 3 do spindle.sleep(0.001) end\n"
                "  done = true\n"
                "end");
  CHECK(spindle_spawn(rt, 0) == 0, "spawn on the host's loop");
  lua_pop(L, 1);
  CHECK(spindle_run(rt) == 0, "spindle_run returns 0 when no task is alive");
  lua_getglobal(L, "done");
  CHECK(lua_toboolean(L, -1), "spindle_run ran the task to its end");
  lua_pop(L, 1);
  spindle_close(rt);
  CHECK(uv_loop_close(&loop) == 0,
        "after spindle_close the host's loop closes with 0");
  lua_close(L);
}

static void test_misuse(void) {
  lua_State *L = new_state();
  spindle_rt *rt;
  int top;
  CHECK(spindle_new(NULL, NULL) == NULL, "spindle_new(NULL) is NULL");
  CHECK(spindle_spawn(NULL, 0) == -SPINDLE_EINVAL, "spawn(NULL)");
  CHECK(spindle_step(NULL, 0) == -SPINDLE_EINVAL, "step(NULL)");
  CHECK(spindle_run(NULL) == -SPINDLE_EINVAL, "run(NULL)");
  spindle_close(NULL);
  CHECK(1, "close(NULL) is harmless");
  rt = spindle_new(L, NULL);
  top = lua_gettop(L);
  lua_pushinteger(L, 42);
  CHECK(spindle_spawn(rt, 0) == -SPINDLE_EINVAL,
        "spawn of a non-function is -SPINDLE_EINVAL");
  CHECK(lua_gettop(L) == top, "... and pops it");
  CHECK(spindle_spawn(rt, -1) == -SPINDLE_EINVAL, "negative nargs");
  CHECK(spindle_step(rt, -1) == -SPINDLE_EINVAL, "negative step budget");
  CHECK(spindle_step(rt, 0.0 / 0.0) == -SPINDLE_EINVAL, "NaN step budget");
  /* a task whose body calls spindle_step on its own runtime */
  push_chunk(L, "local spindle = require 'spindle'\n"
                "return function() spindle.sleep(0) end");
  CHECK(spindle_spawn(rt, 0) == 0, "spawn before lua_close");
  lua_pop(L, 1);
  CHECK(spindle_step(rt, 0) >= 0, "a step runs");
  lua_close(L); /* the runtime is still open: lua_close closes it */
  CHECK(1, "lua_close with a runtime still open");
}

static spindle_rt *busy_rt;

/* Called from inside a task: the runtime is running. */
static int step_from_task(lua_State *L) {
  lua_pushinteger(L, spindle_step(busy_rt, 0));
  lua_pushinteger(L, spindle_run(busy_rt));
  return 2;
}

static void test_busy(void) {
  lua_State *L = new_state();
  busy_rt = spindle_new(L, NULL);
  lua_pushcfunction(L, step_from_task);
  lua_setglobal(L, "step_from_task");
  push_chunk(L, "return function() inner_step, inner_run = step_from_task() "
                "end");
  CHECK(spindle_spawn(busy_rt, 0) == 0, "spawn a task that steps");
  lua_pop(L, 1);
  CHECK(spindle_run(busy_rt) == 0, "run it");
  lua_getglobal(L, "inner_step");
  CHECK(lua_tointeger(L, -1) == -SPINDLE_EBUSY,
        "spindle_step from inside a task is -SPINDLE_EBUSY");
  lua_getglobal(L, "inner_run");
  CHECK(lua_tointeger(L, -1) == -SPINDLE_EBUSY,
        "spindle_run from inside a task is -SPINDLE_EBUSY");
  lua_pop(L, 2);
  spindle_close(busy_rt);
  lua_close(L);
}

static void test_two_states(void) {
  lua_State *A = new_state(), *B = new_state();
  spindle_rt *ra = spindle_new(A, NULL), *rb = spindle_new(B, NULL);
  const char *src =
      "local spindle = require 'spindle'\n"
      "return function() for i = 1, 5 do spindle.sleep(0.001) end "
      "n = (n or 0) + 1 end";
  int na = 1, nb = 1, i;
  push_chunk(A, src);
  spindle_spawn(ra, 0);
  lua_pop(A, 1);
  push_chunk(B, src);
  spindle_spawn(rb, 0);
  lua_pop(B, 1);
  for (i = 0; i < 100000 && (na > 0 || nb > 0); i++) {
    na = spindle_step(ra, 0);
    nb = spindle_step(rb, 0);
  }
  CHECK(na == 0 && nb == 0, "two runtimes in two states stepped alternately");
  spindle_close(rb); /* closed in the other order than created */
  spindle_close(ra);
  lua_close(B);
  lua_close(A);
  CHECK(1, "closed in either order");
}

int main(void) {
  test_own_loop();
  test_host_loop();
  test_misuse();
  test_busy();
  test_two_states();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
