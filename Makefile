# spindle — front doors. The build itself is CMake (CMakeLists.txt); this
# file only strings the steps together.
#
#   make demo    install missing Debian packages, build, run examples/demo.lua
#   make test    install missing Debian packages, build, run scripts/test.sh
#                (C tests, specs, examples, rockspec, ASan+UBSan, valgrind)
#   make deps    apt-get install whatever of DEB_PACKAGES is missing
#   make build   configure + build into build/ (BUILD_TYPE=RelWithDebInfo)
#   make asan    the same with -DSPINDLE_SANITIZE=ON into build-asan/
#   make bench   deps + build + the benchmarks in bench/ (not part of CI);
#                BENCH_ARGS=--quick for a smoke run
#   make format  clang-format -i on csrc/ and spec/capi/ (if installed)
#   make clean   remove the build trees

SHELL := /bin/bash
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
MAKEFLAGS += --no-print-directory

DEB_PACKAGES := lua5.4 liblua5.4-dev libuv1-dev lua-busted luarocks cmake \
                pkg-config gcc libc6-dev make valgrind lua-luv lua-cqueues \
                lua-socket libcurl4-openssl-dev python3 openssl nginx-light \
                lua-http

.PHONY: all deps build asan demo test bench format clean

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

bench:
	@$(MAKE) deps
	@$(MAKE) build
	@if [ -f bench/run.lua ]; then \
	  LUA_CPATH='./build/?.so;;' LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' \
	    lua5.4 bench/run.lua $(BENCH_ARGS); \
	elif [ -x bench/run ]; then \
	  bench/run $(BENCH_ARGS); \
	else \
	  echo "make bench: no bench/run.lua or bench/run yet"; \
	fi

format:
	@command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 1; }
	clang-format -i $(wildcard csrc/*.c csrc/*.h spec/capi/*.c spec/capi/*.h)

clean:
	rm -rf build build-asan build.luarocks
