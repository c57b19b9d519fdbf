#!/bin/sh
# bench/tls/run.sh -- TLS benchmarks: one C load client (bench/tls/client.c)
# against the C libuv + OpenSSL memory-BIO server, cqueues + luaossl and
# spindle.  Prints markdown: the header, one table per mode (medians), ratios
# and PASS/MISS for the targets of issue 10.  Not part of CI.
#
#   sh bench/tls/run.sh [--quick] [--rounds N] [--secs S] [--mib M]
#                       [--hs-conns N] [--servers c,cqueues,spindle]
#                       [--resume] [--no-pin]
#
# Modes: hs (N clients looping connect + full handshake + one 64-byte echo
# + close), echo (100 connections x 64 bytes ping-pong) and bulk (M MiB
# each way through one connection).  Every (round, server, mode) runs a
# fresh server process; the rounds are interleaved and their order rotates.
# Defaults: 5 rounds, 3 s, 512 MiB, 16 handshaking clients; --quick: 1
# round, 1 s, 32 MiB (a smoke run).  --resume: hs clients resume sessions.
# The server runs on core 0 and the client on core 1 (taskset) when there
# are two cores or more, unless --no-pin.  The certificate is a throwaway
# P-256 ECDSA one made here, the same for every server.
#
# Exit status: 1 when a measurement failed (a server that did not start, a
# client error, a wrong echo); a missed target does not fail the run.  A
# build whose spindle has no spindle.tls is reported "not yet measured".
set -u
cd "$(dirname "$0")/../.." || exit 2
ROUNDS=5 SECS=3 MIB=512 HS_CONNS=16 SERVERS="c cqueues spindle" RESUME=
QUICK="" PIN=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ROUNDS=1 SECS=1 MIB=32 ;;
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --mib) MIB=$2; shift ;;
    --hs-conns) HS_CONNS=$2; shift ;;
    --servers) SERVERS=$(echo "$2" | tr ',' ' '); shift ;;
    --resume) RESUME=--resume ;;
    --no-pin) PIN= ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
ECHO_CONNS=100 ECHO_SIZE=64

sh bench/tls/build.sh || exit 1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT INT TERM
export LUA_CPATH="./build/?.so;${LUA_CPATH:-;}"
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;${LUA_PATH:-;}"

# The certificate: P-256 ECDSA (the usual choice for a TLS 1.3 server
# today; an RSA-2048 signature would cost the server ~1 ms per handshake
# and hide everything else), valid for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 || {
  echo "run.sh: openssl req failed" >&2
  exit 1
}

# One copy of the spindle command for the whole run, so a rebuild in the
# middle cannot mix two builds; and does this build have spindle.tls?
# SPINDLE_BIN=path measures another build (a branch, say) instead.
SPINDLE_NOTE=
SPINDLE_BIN=${SPINDLE_BIN:-build/spindle}
if [ -x "$SPINDLE_BIN" ]; then
  cp "$SPINDLE_BIN" "$DIR/spindle"
  if ! "$DIR/spindle" -e 'os.exit(require("spindle").tls and 0 or 3)' \
      >/dev/null 2>&1; then
    SPINDLE_NOTE="spindle.tls is not in this build"
  fi
else
  SPINDLE_NOTE="$SPINDLE_BIN is not built"
fi

if [ -n "$PIN" ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SPIN="taskset -c 0" CPIN="taskset -c 1"
  PINNING="server on core 0, client on core 1 (taskset)"
else
  SPIN="" CPIN="" PINNING="not pinned"
fi

start() { # start CMD...: runs the server, sets PID and PORT
  out="$DIR/server.out"
  : >"$out"
  "$@" >"$out" 2>"$DIR/server.err" &
  PID=$!
  PORT=
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$out")
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}

RES="$DIR/results"
: >"$RES"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores, Linux $(uname -r)"
  echo "openssl=$(openssl version | cut -d' ' -f1-2)"
  echo "libuv=$(pkg-config --modversion libuv)"
  echo "lua=$(lua5.4 -v 2>&1 | cut -d' ' -f1-2)"
  echo "cqueues=$(dpkg-query -W -f '${Version}' lua-cqueues 2>/dev/null || echo '?')"
  echo "luaossl=$(dpkg-query -W -f '${Version}' lua-luaossl 2>/dev/null || echo '?')"
  echo "spindle_note=$SPINDLE_NOTE"
  echo "spindle_bin=$SPINDLE_BIN sha1 $(sha1sum "$DIR/spindle" 2>/dev/null | cut -c1-12)"
  echo "pinning=$PINNING"
  echo "params=rounds=$ROUNDS secs=$SECS mib=$MIB hs_conns=$HS_CONNS echo=${ECHO_CONNS}x${ECHO_SIZE}B${RESUME:+ resume}${QUICK:+ quick}"
  echo "servers=$SERVERS"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$DIR/header"

failed=0
# shellcheck disable=SC2086 # SERVERS is a word list
n_servers=$(echo $SERVERS | wc -w)
for round in $(seq "$ROUNDS"); do
  # rotate the order so no server always runs first (or right after another)
  shift_by=$(( (round - 1) % n_servers ))
  # shellcheck disable=SC2086
  set -- $SERVERS
  i=0
  while [ $i -lt "$shift_by" ]; do s=$1; shift; set -- "$@" "$s"; i=$((i + 1)); done
  for s in "$@"; do
    case $s in
      c) cmd="build/bench-tls/server" ;;
      cqueues) cmd="lua5.4 bench/tls/cqueues_server.lua" ;;
      spindle)
        if [ -n "$SPINDLE_NOTE" ]; then
          echo "server=spindle round=$round skipped=1" >>"$RES"
          continue
        fi
        cmd="$DIR/spindle bench/tls/spindle_server.lua" ;;
      *) echo "run.sh: unknown server $s" >&2; exit 2 ;;
    esac
    for mode in hs echo bulk; do
      echo "[round $round/$ROUNDS] $s $mode" >&2
      # shellcheck disable=SC2086
      if ! start $SPIN $cmd "$DIR/cert.pem" "$DIR/key.pem"; then
        echo "server=$s round=$round mode=$mode error=did-not-start" >>"$RES"
        echo "  $s did not start: $(head -c 300 "$DIR/server.err")" >&2
        kill "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        failed=1
        continue
      fi
      case $mode in
        hs) args="hs $PORT $HS_CONNS $SECS $PID $RESUME" ;;
        echo) args="echo $PORT $ECHO_CONNS $ECHO_SIZE $SECS $PID" ;;
        bulk) args="bulk $PORT $MIB $PID" ;;
      esac
      # shellcheck disable=SC2086
      line=$(timeout 600 $CPIN build/bench-tls/client $args 2>"$DIR/client.err")
      rc=$?
      if ! kill -0 "$PID" 2>/dev/null; then
        echo "  $s died during $mode: $(head -c 300 "$DIR/server.err")" >&2
        rc=1
      fi
      kill "$PID" 2>/dev/null
      wait "$PID" 2>/dev/null
      if [ $rc -ne 0 ] || [ -z "$line" ]; then
        echo "  client failed ($rc): $(head -c 300 "$DIR/client.err")" >&2
        echo "server=$s round=$round mode=$mode error=client-failed" >>"$RES"
        failed=1
        continue
      fi
      echo "server=$s round=$round ${line#RESULT }" >>"$RES"
    done
  done
done
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$DIR/header"
[ -n "${TLS_BENCH_KEEP:-}" ] && cp "$RES" "$TLS_BENCH_KEEP"
lua5.4 bench/tls/report.lua "$DIR/header" "$RES" || failed=1
exit $failed
