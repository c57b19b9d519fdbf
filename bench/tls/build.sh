#!/bin/sh
# bench/tls/build.sh -- builds the C TLS echo server and the TLS load client
# into build/bench-tls/ (out of the source tree).  Needs libuv and OpenSSL 3
# headers (Debian libuv1-dev, libssl-dev).
set -e
cd "$(dirname "$0")/../.." || exit 2
CC=${CC:-cc}
OUT=build/bench-tls
mkdir -p "$OUT"
FLAGS="-O2 -Wall -Wextra -Werror $(pkg-config --cflags libuv openssl)"
LIBS="$(pkg-config --libs libuv openssl)"
# shellcheck disable=SC2086 # FLAGS and LIBS are word lists
$CC $FLAGS -o "$OUT/server" bench/tls/server.c bench/common/bench.c $LIBS
# shellcheck disable=SC2086
$CC $FLAGS -o "$OUT/client" bench/tls/client.c bench/common/bench.c $LIBS
