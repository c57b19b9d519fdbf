/*
** spec/capi/check.h -- the checks of the C tests in spec/capi/: each
** prints "ok - <description>" or "not ok (file:line) - <description>",
** flushed at once (a test may crash or fork right after); main() prints
** "N passed, M failed" from the two counters and exits 0 only if nothing
** failed.
*/
#ifndef SP_CAPI_CHECK_H
#define SP_CAPI_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
      printf("ok - ");                                                         \
    } else {                                                                   \
      failed++;                                                                \
      printf("not ok (%s:%d) - ", __FILE__, __LINE__);                         \
    }                                                                          \
    printf(__VA_ARGS__);                                                       \
    printf("\n");                                                              \
    fflush(stdout);                                                            \
  } while (0)

#endif
