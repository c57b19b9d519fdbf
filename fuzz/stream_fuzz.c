/*
** fuzz/stream_fuzz.c -- stream framing against a naive model: read,
** read_some, read_line, read_until, read_all, lines and aborted reads over
** a Unix socket whose peer writes fuzz-chosen chunks (fuzz/stream_fuzz.lua
** has the model and the input layout).
*/
#include "lua_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fuzz_L == NULL) fuzz_lua_init(FUZZ_DIR "/stream_fuzz.lua");
  fuzz_lua_case(data, size);
  return 0;
}
