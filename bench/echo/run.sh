#!/bin/sh
# bench/echo/run.sh -- echo and bulk benchmarks: one C load client against
# the C libuv server, spindle, luv and cqueues.  Not part of CI.
#
#   sh bench/echo/run.sh [SECONDS] [MIB]     (defaults: 5 s, 1024 MiB)
#
# Echo: 100 connections x 64-byte messages for SECONDS -- round trips/s,
# p50/p99 latency, server CPU us per round trip.  Bulk: MIB MiB through one
# connection -- MB/s.  Servers that cannot start (luv or cqueues missing)
# are skipped with a note.
set -u
cd "$(dirname "$0")/../.."
SECS=${1:-5}
MIB=${2:-1024}
sh bench/echo/build.sh
export LUA_CPATH="./build/?.so;${LUA_CPATH:-;}"
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;${LUA_PATH:-;}"

start() { # start NAME CMD...: runs the server, sets PID and PORT
  name=$1; shift
  out=$(mktemp)
  "$@" >"$out" 2>/dev/null &
  PID=$!
  PORT=
  for _ in $(seq 50); do
    PORT=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$out")
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  rm -f "$out"
  [ -n "$PORT" ]
}

printf '| server | round trips/s | p50 us | p99 us | server CPU us/rt | bulk MB/s |\n'
printf '|---|---|---|---|---|---|\n'
for s in c spindle luv cqueues; do
  case $s in
    c) cmd="build/bench-echo/server" ;;
    spindle) cmd="./build/spindle bench/echo/spindle_server.lua" ;;
    luv) cmd="lua5.4 bench/echo/luv_server.lua" ;;
    cqueues) cmd="lua5.4 bench/echo/cqueues_server.lua" ;;
  esac
  # shellcheck disable=SC2086
  if ! start $s $cmd; then
    printf '| %s | (did not start) | | | | |\n' "$s"
    kill "$PID" 2>/dev/null
    continue
  fi
  e=$(build/bench-echo/client echo "$PORT" 100 64 "$SECS" "$PID")
  b=$(build/bench-echo/client bulk "$PORT" "$MIB" "$PID")
  kill "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
  printf '| %s | %s | %s | %s | %s | %s |\n' "$s" "$(get "$e" rt_per_s)" \
    "$(get "$e" p50_us)" "$(get "$e" p99_us)" "$(get "$e" server_us_per_rt)" \
    "$(get "$b" mb_per_s)"
done
