#!/bin/sh
# bench/echo/build.sh -- builds the C echo server and the load client into
# build/bench-echo/ (out of the source tree).
set -e
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
OUT=build/bench-echo
mkdir -p "$OUT"
FLAGS="-O2 -Wall -Wextra $(pkg-config --cflags libuv)"
LIBS="$(pkg-config --libs libuv)"
$CC $FLAGS -o "$OUT/server" bench/echo/server.c bench/common/bench.c $LIBS
$CC $FLAGS -o "$OUT/client" bench/echo/client.c bench/common/bench.c $LIBS
