# mk/harness.mk -- make targets of the reliability harness (issue 9),
# included at the end of the Makefile.  The fuzzers of fuzz/ are built and
# run by the Makefile's own `make fuzz` / `make fuzz-merge` (every
# fuzz/*_fuzz.c; cmake/harness.cmake adds ours to fuzz_targets).  Public
# targets here only add a prerequisite (`check-deep: check-deep-harness`),
# so other files may give the same target recipes of their own.
#
#   make check-deep    every deep form: the allocation-failure sweep over
#                      every N (build/ and, one child per run with a leak
#                      check, build-asan/), the syscall-fault specs with
#                      SPINDLE_DEEP=1 (more seeds, 4x the load), and
#                      `make fuzz` (every fuzzer for FUZZ_SECONDS)

.PHONY: check-deep check-deep-harness

check-deep: check-deep-harness

check-deep-harness:
	@$(MAKE) build
	@$(MAKE) asan
	./build/capi_allocfail --deep
	SPINDLE_TEST_ENV=asan ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	  ./build-asan/capi_allocfail --deep --fork
	SPINDLE_DEEP=1 busted --lua=lua5.4 spec/91-faults_spec.lua
	@$(MAKE) fuzz
