# mk/harness.mk -- make targets of the reliability harness (issue 9),
# included by the Makefile.  Each public target here only adds a
# prerequisite (`fuzz: fuzz-harness`), so other files may give the same
# targets recipes or prerequisites of their own.
#
#   make fuzz          builds the libFuzzer binaries with clang into
#                      build-fuzz/ and runs each for FUZZ_SECONDS (default
#                      60) on a scratch copy of its corpus (fuzz/corpus/<name>
#                      is not modified); findings go to build-fuzz/findings/
#   make fuzz-corpus   the same, then merges what was found into
#                      fuzz/corpus/<name> (minimized; keep each under ~200
#                      files: commit what it adds)
#   make check-deep    every deep form: the allocation-failure sweep over
#                      every N (build/ and, one child per run with leak
#                      checks, build-asan/), the syscall-fault specs with
#                      SPINDLE_DEEP=1 (more seeds, 4x the load), the fuzzers

FUZZ_SECONDS ?= 60
HARNESS_FUZZERS := stream sched timer
FUZZ_BUILD := build-fuzz

.PHONY: fuzz fuzz-harness fuzz-corpus check-deep check-deep-harness \
        harness-build harness-asan

fuzz: fuzz-harness
check-deep: check-deep-harness

fuzz-harness:
	@command -v clang >/dev/null || { echo "make fuzz: clang is needed"; exit 1; }
	@CC=clang $(CMAKE) -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSPINDLE_FUZZ=ON -DSPINDLE_BUILD_CLI=OFF >/dev/null
	@$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(HARNESS_FUZZERS))
	@mkdir -p $(FUZZ_BUILD)/findings
	@set -e; for f in $(HARNESS_FUZZERS); do \
	  rm -rf $(FUZZ_BUILD)/work-$$f; mkdir -p $(FUZZ_BUILD)/work-$$f; \
	  cp fuzz/corpus/$$f/* $(FUZZ_BUILD)/work-$$f/ 2>/dev/null || true; \
	  echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
	  ./$(FUZZ_BUILD)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=1024 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/findings/$$f- \
	    $(FUZZ_BUILD)/work-$$f 2>&1 | \
	    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|fuzz:|timer_fuzz:|artifact)' ; \
	  test "$${PIPESTATUS[0]}" = 0 || { echo "fuzz_$$f found something: see $(FUZZ_BUILD)/findings/"; exit 1; }; \
	done

fuzz-corpus: fuzz-harness
	@set -e; for f in $(HARNESS_FUZZERS); do \
	  rm -rf $(FUZZ_BUILD)/min-$$f; mkdir -p $(FUZZ_BUILD)/min-$$f; \
	  ./$(FUZZ_BUILD)/fuzz_$$f -merge=1 -use_counters=0 $(FUZZ_BUILD)/min-$$f fuzz/corpus/$$f \
	    $(FUZZ_BUILD)/work-$$f 2>&1 | tail -n 1; \
	  rm -rf fuzz/corpus/$$f; mv $(FUZZ_BUILD)/min-$$f fuzz/corpus/$$f; \
	  echo "fuzz/corpus/$$f: $$(ls fuzz/corpus/$$f | wc -l) files"; \
	done

check-deep-harness:
	@$(MAKE) build
	@$(MAKE) asan
	./build/capi_allocfail --deep
	SPINDLE_TEST_ENV=asan ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	  ./build-asan/capi_allocfail --deep --fork
	SPINDLE_DEEP=1 busted --lua=lua5.4 spec/91-faults_spec.lua
	@$(MAKE) fuzz-harness
