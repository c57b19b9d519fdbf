# spindle — front doors. The build itself is CMake (CMakeLists.txt); this
# file only strings the steps together.
#
#   make demo    install missing Debian packages, build, run examples/demo.lua
#   make test    install missing Debian packages, build, run scripts/test.sh
#                (the CTest tests of cmake/tests.cmake: specs, C tests,
#                examples, doc examples -- plain, under ASan+UBSan and under
#                valgrind -- plus the rockspec install and format-check)
#   make deps    apt-get install whatever of DEB_PACKAGES is missing
#   make build   configure + build into build/ (BUILD_TYPE=RelWithDebInfo)
#   make asan    the same with -DSPINDLE_SANITIZE=ON into build-asan/
#   make bench   deps + build + the benchmarks in bench/ (not part of CI):
#                bench/run.lua (with --data, then bench/plot.lua draws
#                build/bench.svg), then bench/tls/run.sh;
#                BENCH_ARGS=--quick for a smoke run of both
#   make fuzz    build the libFuzzer harnesses (fuzz/*_fuzz.c) with clang into
#                build-fuzz/ and run each for FUZZ_SECONDS (default 60) from
#                the committed corpus; new inputs go to build-fuzz/corpus/
#   make fuzz-merge  minimize the committed corpus plus build-fuzz/corpus/
#                into fuzz/corpus/<name>-min/ (what CI replays)
#   make format  clang-format -i on the C sources (FORMAT_FILES)
#   make format-check  the same as a check: fails on any file it would change
#   make clean   remove the build trees
#   make fuzz, make check-deep: the reliability harness (mk/harness.mk)

SHELL := /bin/bash
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
MAKEFLAGS += --no-print-directory

DEB_PACKAGES := lua5.4 liblua5.4-dev libuv1-dev lua-busted luarocks cmake \
                pkg-config gcc libc6-dev make valgrind lua-luv lua-cqueues \
                lua-socket libhttp-parser-dev libssl-dev openssl curl python3 \
                clang-format libcurl4-openssl-dev nginx-light lua-http
# Only `make fuzz` needs these (libFuzzer comes with clang's runtime).
FUZZ_DEB_PACKAGES := clang libclang-rt-14-dev

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst fuzz/%_fuzz.c,%,$(wildcard fuzz/*_fuzz.c))

# Every C source of the project: the library, the C tests, the fuzz
# harnesses, the host example and the C benchmark programs.
FORMAT_FILES = $(wildcard csrc/*.c csrc/*.h spec/capi/*.c spec/capi/*.h \
                          fuzz/*.c fuzz/*.h examples/host/*.c \
                          examples/host/*.h bench/*/*.c bench/*/*.h)

.PHONY: all deps build asan demo test bench fuzz fuzz-build fuzz-merge format \
        format-check clean

all: build

deps:
	@bash scripts/deps.sh $(DEB_PACKAGES)

build:
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

asan:
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
	  -DSPINDLE_SANITIZE=ON >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)

# deps must finish before the build starts, even under make -j.
demo:
	@$(MAKE) deps
	@$(MAKE) build
	./build/spindle examples/demo.lua

test:
	@$(MAKE) deps
	@$(MAKE) build
	@bash scripts/test.sh

# bench/tls: the cqueues + luaossl peer, the certificate tool, OpenSSL headers
DEB_PACKAGES += lua-luaossl openssl libssl-dev gnuplot-nox

bench:
	@$(MAKE) deps
	@$(MAKE) build
	@if [ -f bench/run.lua ]; then \
	  LUA_CPATH='./build/?.so;;' LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' \
	    lua5.4 bench/run.lua --data build/bench.tsv $(BENCH_ARGS) && \
	  lua5.4 bench/plot.lua build/bench.tsv build/bench.svg; \
	elif [ -x bench/run ]; then \
	  bench/run $(BENCH_ARGS); \
	else \
	  echo "make bench: no bench/run.lua or bench/run yet"; \
	fi
	@case " $(BENCH_ARGS) " in *" --quick "*) q=--quick ;; *) q= ;; esac; \
	  sh bench/tls/run.sh $$q

fuzz-build:
	@bash scripts/deps.sh $(DEB_PACKAGES) $(FUZZ_DEB_PACKAGES)
	@$(CMAKE) -S . -B build-fuzz -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPINDLE_FUZZ=ON \
	  -DSPINDLE_BUILD_TESTS=OFF -DSPINDLE_BUILD_CLI=OFF >/dev/null
	@$(CMAKE) --build build-fuzz -j $(JOBS) --target fuzz_targets

# Each harness runs from the committed seeds and minimized corpus (read
# only) and writes what it finds to build-fuzz/corpus/<name>; a crash or a
# disagreement stops the run, with the input in build-fuzz/artifacts/.
fuzz: fuzz-build
	@set -e; mkdir -p build-fuzz/artifacts; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t fuzz/corpus/$$t-min; \
	  echo "==> fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  ./build-fuzz/fuzz_$$t build-fuzz/corpus/$$t fuzz/corpus/$$t \
	    fuzz/corpus/$$t-min -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=build-fuzz/artifacts/$$t- -print_final_stats=1; \
	done

# The seeds are placed in the output first, so only inputs that add
# coverage beyond them are kept; -use_counters=0 keeps one input per edge,
# not per hit count (a corpus CI replays in a second).
fuzz-merge: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  m=build-fuzz/merged-$$t; \
	  rm -rf $$m && mkdir -p $$m build-fuzz/corpus/$$t fuzz/corpus/$$t-min; \
	  cp fuzz/corpus/$$t/* $$m/; \
	  ./build-fuzz/fuzz_$$t -merge=1 -use_counters=0 $$m \
	    fuzz/corpus/$$t-min build-fuzz/corpus/$$t; \
	  (cd fuzz/corpus/$$t && for f in *; do rm -f "../../../$$m/$$f"; done); \
	  rm -rf fuzz/corpus/$$t-min && mv $$m fuzz/corpus/$$t-min; \
	  echo "fuzz/corpus/$$t-min: $$(ls fuzz/corpus/$$t-min | wc -l) files"; \
	done

format:
	@command -v clang-format >/dev/null || { echo "clang-format not installed (make deps)"; exit 1; }
	clang-format -i $(FORMAT_FILES)

format-check:
	@command -v clang-format >/dev/null || { echo "clang-format not installed (make deps)"; exit 1; }
	clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf build build-asan build-fuzz build.luarocks

include mk/harness.mk
include mk/harness2.mk
