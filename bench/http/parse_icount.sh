#!/usr/bin/env bash
# Instructions per request head for both parsers of bench/http/parse_bench.c,
# counted by callgrind (stable where wall-clock numbers are not): each
# parser and request run N and 2N times; the difference over N is the cost
# of one head, start-up excluded. Needs valgrind and build/http_parse_bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=./build/http_parse_bench
n=${N:-2000}
names=("wrk hello" "curl GET" "POST + length" "browser (10 h)")
ir() { # parser request iterations
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" count "$1" "$2" "$3" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
printf '%-16s %14s %18s %8s\n' request "spindle instr" "http-parser instr" ratio
for q in 0 1 2 3; do
  a=$(( ($(ir ours $q $((2 * n))) - $(ir ours $q $n)) / n ))
  b=$(( ($(ir hp $q $((2 * n))) - $(ir hp $q $n)) / n ))
  printf '%-16s %14d %18d %7.2fx\n' "${names[$q]}" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
