/*
** fuzz/sched_fuzz.c -- the scheduler operation-sequence fuzzer: spawn,
** yield, sleep on the virtual clock, abort, join, channels, semaphores,
** mutexes, events, timeout, shield, scope, join_all/race and <close>,
** chosen by the input; invariants checked after each run (every task in
** exactly one terminal state, every __close once, nothing alive).  The
** interpreter and the checks are in fuzz/sched_fuzz.lua.
*/
#include "lua_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fuzz_L == NULL) fuzz_lua_init(FUZZ_DIR "/sched_fuzz.lua");
  fuzz_lua_case(data, size);
  return 0;
}
