/*
** examples/host/host.c -- a C program embedding spindle the way a game
** engine does: a 60 fps main loop that gives spindle a 2 ms budget per
** frame with spindle_step(), while a Lua script (game.lua) runs 50 tasks
** doing loopback network I/O and timers.
**
**   build/host_example [examples/host/game.lua]
**
** It prints the distribution of step times and exits 1 if a step took
** longer than the budget plus one task slice (10 ms), or if 10,000 steps
** with nothing to do took more than 20 ms in all.  Step time is measured
** as this thread's CPU time, so that another process taking the CPU away
** (CI machines are shared) is not counted against spindle; wall time is
** printed too, and a step that *blocked* (wall time over budget + 50 ms)
** fails as well.
*/
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "spindle.h"

#define FRAME_NS 16666667ull /* 60 fps */
#define BUDGET 0.002         /* seconds of spindle per frame */
#define SLICE_NS 10000000ull /* what one task slice may add */
#define MAX_FRAMES 1200      /* 20 s: the script ends long before */
#define IDLE_STEPS 10000

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ull),
                        (long)(ns % 1000000000ull)};
  nanosleep(&ts, NULL);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "examples/host/game.lua";
  static uint64_t steps[MAX_FRAMES], walls[MAX_FRAMES];
  lua_State *L = luaL_newstate();
  spindle_rt *rt;
  uint64_t idle0, idle_total, worst, worst_wall;
  int frames = 0, live = 1, failed = 0, i;

  luaL_openlibs(L);
  rt = spindle_new(L, NULL); /* the runtime owns its loop */
  if (rt == NULL) {
    fprintf(stderr, "host: spindle_new failed\n");
    return 1;
  }
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  if (spindle_spawn(rt, 0) != 0) {
    fprintf(stderr, "host: spindle_spawn failed\n");
    return 1;
  }
  lua_setglobal(L, "main_task"); /* keep the handle to check it later */

  /* The game loop: step spindle, then "render" for the rest of the frame. */
  while (live > 0 && frames < MAX_FRAMES) {
    uint64_t t0 = uv_hrtime(), c0 = cpu_ns(), dt;
    live = spindle_step(rt, BUDGET);
    dt = uv_hrtime() - t0;
    walls[frames] = dt;
    if (live < 0) {
      fprintf(stderr, "host: spindle_step failed: %d\n", live);
      return 1;
    }
    steps[frames++] = cpu_ns() - c0;
    if (dt < FRAME_NS) sleep_ns(FRAME_NS - dt);
  }

  lua_getglobal(L, "main_task");
  lua_getfield(L, -1, "status");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  printf("host: game.lua ended %s after %d frames\n", lua_tostring(L, -1),
         frames);
  if (live != 0 || lua_tostring(L, -1)[0] != 'd') {
    fprintf(stderr, "host: the script did not finish cleanly\n");
    failed = 1;
  }
  lua_pop(L, 2);

  qsort(steps, (size_t)frames, sizeof steps[0], cmp_u64);
  qsort(walls, (size_t)frames, sizeof walls[0], cmp_u64);
  worst = steps[frames - 1];
  worst_wall = walls[frames - 1];
  printf("host: step CPU time over %d frames (budget %.1f ms): min %.3f ms, "
         "p50 %.3f, p90 %.3f, p99 %.3f, max %.3f ms\n",
         frames, BUDGET * 1e3, ms(steps[0]), ms(steps[frames / 2]),
         ms(steps[frames * 9 / 10]), ms(steps[frames * 99 / 100]), ms(worst));
  printf("host: step wall time: p50 %.3f ms, p99 %.3f, max %.3f ms\n",
         ms(walls[frames / 2]), ms(walls[frames * 99 / 100]), ms(worst_wall));
  if (worst > (uint64_t)(BUDGET * 1e9) + SLICE_NS) {
    fprintf(stderr, "host: a step took %.3f ms, over budget + one slice\n",
            ms(worst));
    failed = 1;
  }
  if (worst_wall > (uint64_t)(BUDGET * 1e9) + 5 * SLICE_NS) {
    fprintf(stderr, "host: a step blocked for %.3f ms\n", ms(worst_wall));
    failed = 1;
  }

  /* Idle steps: a task sleeps, nothing is ready, nothing to poll. */
  luaL_dostring(L, "local spindle = require 'spindle'\n"
                   "idle = function() spindle.sleep(3600) end");
  lua_getglobal(L, "idle");
  spindle_spawn(rt, 0);
  lua_pop(L, 1);
  spindle_step(rt, 0); /* it starts and goes to sleep */
  idle0 = uv_hrtime();
  for (i = 0; i < IDLE_STEPS; i++) spindle_step(rt, 0);
  idle_total = uv_hrtime() - idle0;
  printf("host: %d idle steps took %.3f ms in all (%.0f ns each)\n", IDLE_STEPS,
         ms(idle_total), (double)idle_total / IDLE_STEPS);
  if (idle_total > 20000000ull) {
    fprintf(stderr, "host: idle steps are too slow\n");
    failed = 1;
  }

  spindle_close(rt); /* aborts the sleeper, closes every handle */
  lua_close(L);
  printf("host: %s\n", failed ? "FAILED" : "ok");
  return failed;
}
