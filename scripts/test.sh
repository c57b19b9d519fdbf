#!/usr/bin/env bash
# The CI test run (`make test`, `.ci/run`). Run from anywhere; works in the
# repository root. Stages, in order, each timed:
#
#   build     cmake configure + build of build/ (no-op when make built it)
#   capi      every build/capi_* (each prints "N passed, M failed")
#   specs     busted on spec/ against build/spindle.so (lua5.4)
#   examples  every examples/*.lua with build/spindle; examples/<name>.args
#             holds extra arguments (whitespace-separated words, no quoting);
#             subdirectories are not run; each must exit 0 within 120 s.
#             Then docs/run-examples.lua (the examples in README.md and
#             docs/*.md), which ends with "N passed, M failed"
#   rockspec  `luarocks make` of rockspec/spindle-scm-1.rockspec from a copy
#             of the tree (no build dirs) into a temp tree, with proxies
#             pointed at a dead port (offline), then require of every
#             installed module with only the luarocks paths, and
#             `spindle -v` from the tree's bin
#   asan      build-asan/ (Debug, -DSPINDLE_SANITIZE=ON): the specs with
#             lua5.4 + LD_PRELOAD of gcc's libasan and libubsan and
#             ASAN_OPTIONS=detect_leaks=1 (lua5.4 + busted + the Debian C
#             modules busted loads run leak-free, so leaks are checked too);
#             the capi tests and the examples built with the sanitizers,
#             and docs/run-examples.lua against build-asan/
#   valgrind  memcheck (--leak-check=full --errors-for-leak-kinds=definite,
#             exit 99 on error) on every build/capi_* and on busted running
#             the core specs: spec/0*_spec.lua and spec/1*_spec.lua
#
# Counting. The last line printed is `spec: N passed, M failed`.
#   N = C test passes (build/, printed by each program) + busted successes
#       of the `specs` stage. The sanitizer and valgrind stages repeat these
#       tests and do not add to N.
#   M = C test failures + busted failures + errors + pending of the `specs`
#       stage (pending counts as failed: no silent skips), plus busted
#       failures + errors + pending of the asan and valgrind runs, plus one
#       for every other failed check: a program that exits non-zero or
#       prints no summary line, a sanitizer report, a valgrind error, a
#       failed example, a failed rockspec install or load. The failures
#       docs/run-examples.lua reports go into M; its passes are not in N.
# The script stops at the first stage that fails (the summary is still
# printed); KEEP_GOING=1 runs every stage anyway. Exit status 0 only when
# M is 0.
#
# Environment seen by the specs: SPINDLE_TEST_ENV is "plain", "asan" or
# "valgrind", so a spec may scale an iteration count or relax an RSS or
# timing bound under a sanitizer (it must still run: pending is a failure).
#
# Knobs: JOBS (parallel build jobs), KEEP_GOING=1, SKIP_STAGES="asan
# valgrind" (a skipped stage counts as one failure, so CI cannot pass with
# it), CC (compiler whose libasan is preloaded), BUSTED_TIMEOUT (seconds for
# the main busted run, default 300; the asan and valgrind runs get twice
# that; a timeout names the test that hung). Logs: build/test-logs/.

set -euo pipefail
shopt -s nullglob

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
KEEP_GOING=${KEEP_GOING:-0}
SKIP_STAGES=${SKIP_STAGES:-}
BUSTED_TIMEOUT=${BUSTED_TIMEOUT:-300}
LOGDIR=$ROOT/build/test-logs
LUA=lua5.4
BUSTED=$(command -v busted || true)
VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full
  --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --num-callers=30 --keep-debuginfo=yes)
SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error: '

PASS=0
FAIL=0
FAILED_CHECKS=()
STAGE_LINES=()
TMPDIRS=()

mkdir -p "$LOGDIR"

# --- bookkeeping -------------------------------------------------------------

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

fail_check() {
  FAIL=$((FAIL + 1))
  FAILED_CHECKS+=("$1")
  echo "FAILED: $1"
}

summary() {
  local rc=$?
  trap - EXIT INT TERM
  local d
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
  # A crash of this script itself must never read as "0 failed".
  if ((rc != 0 && FAIL == 0)); then
    FAILED_CHECKS+=("scripts/test.sh stopped with status $rc")
    FAIL=1
  fi
  echo
  echo "==> stage times"
  local line
  for line in "${STAGE_LINES[@]}"; do echo "  $line"; done
  if ((${#FAILED_CHECKS[@]})); then
    echo "==> failed checks"
    for line in "${FAILED_CHECKS[@]}"; do echo "  $line"; done
  fi
  echo "logs: ${LOGDIR#"$ROOT"/}/"
  echo "spec: $PASS passed, $FAIL failed"
  if ((FAIL != 0)); then exit 1; fi
  exit 0
}
trap summary EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stage NAME FUNCTION: runs FUNCTION, times it, stops the run when it fails
# (unless KEEP_GOING=1). Stage functions report failures with fail_check and
# return non-zero; they do not rely on `set -e`, which bash turns off inside
# a function called from `||`.
stage() {
  local name=$1 fn=$2 t0 rc=0 fails_before=$FAIL
  echo
  echo "==> $name"
  t0=$(now)
  if [[ " $SKIP_STAGES " == *" $name "* ]]; then
    fail_check "$name: skipped by SKIP_STAGES"
    rc=1
  else
    "$fn" || rc=$?
  fi
  if ((rc != 0 && FAIL == fails_before)); then
    fail_check "$name: stage failed (status $rc)"
  fi
  local status=ok
  ((rc == 0)) || status=FAILED
  local line
  line=$(printf '%-9s %7s s  %s' "$name" "$(elapsed "$t0" "$(now)")" "$status")
  STAGE_LINES+=("$line")
  echo "<== $line"
  if ((rc != 0 && KEEP_GOING != 1)); then exit 1; fi
  return 0
}

# run_logged LOG CMD...: runs CMD with stdout+stderr shown and copied to LOG;
# returns CMD's status.
run_logged() {
  local log=$1
  shift
  local rc=0
  "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  return "$rc"
}

has_sanitizer_report() { grep -Eq "$SANITIZER_RE" "$1"; }

# capi_summary LOG: prints "P F" from the last "N passed, M failed" line.
capi_summary() {
  grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1 |
    awk '{ print $1, $3 }'
}

# busted_summary LOG: prints "S F E P" from busted's last summary line.
busted_summary() {
  sed -e 's/\x1b\[[0-9;]*m//g' "$1" |
    grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' |
    tail -n 1 | awk '{ print $1, $4, $7, $10 }'
}

# busted_run LABEL LOG TIMEOUT [ARGS...]: runs busted under lua5.4 (with the
# prefix command in RUN_PREFIX, e.g. valgrind), parses the summary into
# B_S B_F B_E B_P. Returns non-zero when no summary line was printed or the
# run failed. Called directly under lua5.4 (not through busted's --lua
# re-exec) so LD_PRELOAD and valgrind see the process that loads spindle.so.
RUN_PREFIX=()
busted_run() {
  local label=$1 log=$2 secs=$3
  shift 3
  local rc=0 counts
  B_S=0 B_F=0 B_E=0 B_P=0
  rm -f "$log.current"
  # Line-buffered stdout: a sanitizer that ends the process with _exit must
  # not swallow busted's summary line. busted-ci.lua writes the running
  # test's name to $log.current.
  run_logged "$log" timeout --foreground -k 10 "$secs" \
    env "SPINDLE_BUSTED_CURRENT=$log.current" "${RUN_PREFIX[@]}" \
    "$LUA" -e "io.stdout:setvbuf('line')" "$BUSTED" --ignore-lua \
    -o "$ROOT/scripts/busted-ci.lua" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo
    fail_check "$label: timed out after $secs s in $(cat "$log.current" 2>/dev/null || echo '?')"
    return 1
  fi
  counts=$(busted_summary "$log")
  [[ -z "$counts" ]] || read -r B_S B_F B_E B_P <<<"$counts"
  if has_sanitizer_report "$log"; then
    fail_check "$label: sanitizer report (see ${log#"$ROOT"/})"
    return 1
  fi
  if ((rc == 99)) && [[ " ${RUN_PREFIX[*]} " == *" valgrind "* ]]; then
    fail_check "$label: valgrind reported errors (see ${log#"$ROOT"/})"
    return 1
  fi
  if [[ -z "$counts" ]]; then
    fail_check "$label: busted printed no summary (status $rc)"
    return 1
  fi
  if grep -q '^busted-ci: module check failed' "$log"; then
    fail_check "$label: tested the wrong spindle.so ($(grep -m1 '^busted-ci: module check failed' "$log"))"
    return 1
  fi
  if ((rc != 0 && B_F + B_E == 0)); then
    fail_check "$label: busted exited with status $rc"
    return 1
  fi
  return 0
}

# counted_run LABEL LOG TIMEOUT COUNT(yes|no) CMD...: runs a test program
# that ends with "N passed, M failed" (a C test, docs/run-examples.lua),
# prefixed by RUN_PREFIX; with COUNT=yes its passes go into N.
counted_run() {
  local label=$1 log=$2 secs=$3 count=$4 rc=0 p f counts ok=0
  shift 4
  run_logged "$log" timeout --foreground -k 10 "$secs" "${RUN_PREFIX[@]}" \
    "$@" </dev/null || rc=$?
  counts=$(capi_summary "$log")
  if has_sanitizer_report "$log"; then
    # The report ends the process with _exit: the summary may be lost.
    fail_check "$label: sanitizer report (see ${log#"$ROOT"/})"
    ok=1
  elif [[ -z "$counts" ]]; then
    fail_check "$label: no 'N passed, M failed' line (status $rc)"
    ok=1
  else
    read -r p f <<<"$counts"
    [[ $count == yes ]] && PASS=$((PASS + p))
    FAIL=$((FAIL + f))
    if ((f > 0)); then
      FAILED_CHECKS+=("$label: $f failed")
      ok=1
    fi
    if ((rc == 99)); then
      fail_check "$label: valgrind reported errors"
      ok=1
    elif ((rc != 0 && f == 0)); then
      fail_check "$label: exit status $rc"
      ok=1
    fi
  fi
  return "$ok"
}

capi_bins() { # DIR: the C test executables in DIR
  local b
  for b in "$1"/capi_*; do
    [[ -f $b && -x $b ]] && echo "$b"
  done
  return 0
}

spec_files_exist() {
  local f
  for f in spec/*_spec.lua spec/*/*_spec.lua; do return 0; done
  return 1
}

# --- stages ------------------------------------------------------------------

stage_build() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOGDIR/cmake.log" 2>&1 ||
    { cat "$LOGDIR/cmake.log"; return 1; }
  cmake --build build -j "$JOBS" || return 1
}

stage_capi() {
  local bins ok=0 b
  mapfile -t bins < <(capi_bins build)
  if ((${#bins[@]} == 0)); then
    echo "no spec/capi/*.c tests yet"
    return 0
  fi
  RUN_PREFIX=()
  for b in "${bins[@]}"; do
    echo "-- $b"
    counted_run "${b##*/}" "$LOGDIR/${b##*/}.log" 300 yes "$b" || ok=1
  done
  return "$ok"
}

stage_specs() {
  if ! spec_files_exist; then
    echo "no spec/*_spec.lua yet"
    return 0
  fi
  RUN_PREFIX=()
  local ok=0
  SPINDLE_TEST_ENV=plain SPINDLE_EXPECT_SO=$ROOT/build/spindle.so \
    busted_run "busted" "$LOGDIR/busted.log" \
    "$BUSTED_TIMEOUT" || ok=1
  PASS=$((PASS + B_S))
  FAIL=$((FAIL + B_F + B_E + B_P))
  ((B_F + B_E + B_P == 0)) || {
    FAILED_CHECKS+=("busted: $B_F failures, $B_E errors, $B_P pending")
    ok=1
  }
  return "$ok"
}

# run_examples SPINDLE_BIN LABEL: each examples/*.lua must exit 0.
run_examples() {
  local bin=$1 label=$2 ok=0 f name rc args
  local files=(examples/*.lua)
  if ((${#files[@]} == 0)); then
    echo "no examples/*.lua yet"
    return 0
  fi
  for f in "${files[@]}"; do
    name=$(basename "$f" .lua)
    args=()
    if [[ -f examples/$name.args ]]; then
      set -f
      # shellcheck disable=SC2207  # word splitting is the documented format
      args=($(<"examples/$name.args"))
      set +f
    fi
    echo "-- $bin $f${args[*]:+ ${args[*]}}"
    rc=0
    run_logged "$LOGDIR/$label-$name.log" timeout --foreground -k 10 120 "$bin" "$f" \
      "${args[@]}" </dev/null || rc=$?
    if ((rc != 0)); then
      fail_check "$label $f: exit status $rc"
      ok=1
    elif has_sanitizer_report "$LOGDIR/$label-$name.log"; then
      fail_check "$label $f: sanitizer report"
      ok=1
    fi
  done
  return "$ok"
}

# run_doc_examples LABEL: docs/run-examples.lua (the ```lua blocks of
# README.md and docs/*.md marked `-- example:`), when it exists. SPINDLE and
# SPINDLE_CPATH in the environment pick the build it runs against.
run_doc_examples() {
  local label=$1
  if [[ ! -f docs/run-examples.lua ]]; then
    echo "no docs/run-examples.lua yet"
    return 0
  fi
  echo "-- $LUA docs/run-examples.lua"
  counted_run "$label" "$LOGDIR/$label.log" 300 no "$LUA" docs/run-examples.lua
}

# examples/host: the C game-loop host; it fails by itself when a step goes
# over budget + one task slice or idle steps are slow.
run_host_example() {
  local bin=$1 label=$2 rc=0
  [[ -x $bin ]] || return 0
  echo "-- $bin examples/host/game.lua"
  run_logged "$LOGDIR/$label.log" timeout --foreground -k 10 120 "$bin" \
    examples/host/game.lua </dev/null || rc=$?
  if ((rc != 0)); then
    fail_check "$label: exit status $rc"
    return 1
  elif has_sanitizer_report "$LOGDIR/$label.log"; then
    fail_check "$label: sanitizer report"
    return 1
  fi
  return 0
}

stage_examples() {
  local ok=0
  run_examples ./build/spindle example || ok=1
  run_host_example ./build/host_example host-example || ok=1
  RUN_PREFIX=()
  run_doc_examples docs || ok=1
  return "$ok"
}

stage_rockspec() {
  local tmp rc=0
  tmp=$(mktemp -d /tmp/spindle-rock.XXXXXX)
  TMPDIRS+=("$tmp")
  mkdir -p "$tmp/src"
  # A copy of the working tree as a fresh clone would have it: no build dirs.
  tar -C "$ROOT" --exclude='./build*' --exclude=./.git -cf - . |
    tar -C "$tmp/src" -xf - || return 1
  (
    cd "$tmp/src" &&
      http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
        HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
        luarocks --lua-version=5.4 make rockspec/spindle-scm-1.rockspec \
        --tree "$tmp/tree"
  ) >"$LOGDIR/rockspec.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    cat "$LOGDIR/rockspec.log"
    fail_check "rockspec: luarocks make failed (status $rc)"
    return 1
  fi
  tail -n 2 "$LOGDIR/rockspec.log"
  # Load test with nothing but the luarocks paths, outside the repository.
  (
    cd "$tmp" &&
      unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 &&
      eval "$(luarocks --lua-version=5.4 --tree "$tmp/tree" path)" &&
      "$LUA" - "$tmp/tree" <<'EOF'
local tree = ...
local spindle = require "spindle"
local where = package.searchpath("spindle", package.cpath)
assert(where and where:sub(1, #tree) == tree,
       "spindle.so loaded from " .. tostring(where) .. ", not from " .. tree)
assert(type(spindle) == "table", "require 'spindle' returned " .. type(spindle))
local n = 0
local dir = tree .. "/share/lua/5.4/spindle"
local ls = io.popen('cd "' .. dir .. '" 2>/dev/null && find . -name "*.lua" | sort')
for f in ls:lines() do
  local name = "spindle." .. f:gsub("^%./", ""):gsub("%.lua$", "")
                               :gsub("/init$", ""):gsub("/", ".")
  require(name)
  n = n + 1
end
ls:close()
print(("rockspec: spindle.so and %d Lua module(s) load from %s"):format(n, tree))
EOF
  ) || {
    fail_check "rockspec: installed module does not load"
    return 1
  }
  if [[ -x $tmp/tree/bin/spindle ]]; then
    local v
    v=$("$tmp/tree/bin/spindle" -v 2>&1) || {
      fail_check "rockspec: installed 'spindle -v' failed: $v"
      return 1
    }
    echo "rockspec: bin/spindle -v: $v"
  else
    fail_check "rockspec: no bin/spindle installed"
    return 1
  fi
}

sanitizer_runtime() { # NAME: path of gcc's runtime library, or nothing
  local p
  p=$("${CC:-cc}" -print-file-name="$1" 2>/dev/null) || return 0
  [[ $p == /* && -e $p ]] && echo "$p"
  return 0
}

stage_asan() {
  local ok=0 asan ubsan b
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPINDLE_SANITIZE=ON \
    >"$LOGDIR/cmake-asan.log" 2>&1 || {
    cat "$LOGDIR/cmake-asan.log"
    fail_check "asan: cmake configure failed"
    return 1
  }
  cmake --build build-asan -j "$JOBS" >"$LOGDIR/build-asan.log" 2>&1 || {
    cat "$LOGDIR/build-asan.log"
    fail_check "asan: build failed"
    return 1
  }
  asan=$(sanitizer_runtime libasan.so)
  ubsan=$(sanitizer_runtime libubsan.so)
  if [[ -z $asan || -z $ubsan ]]; then
    fail_check "asan: libasan.so/libubsan.so not found via ${CC:-cc}"
    return 1
  fi
  # halt_on_error + -fno-sanitize-recover: the first report ends the run.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:print_summary=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:print_summary=1
  export LSAN_OPTIONS=print_suppressions=0

  if spec_files_exist; then
    echo "-- busted (lua5.4 + LD_PRELOAD=libasan, libubsan) on build-asan/spindle.so"
    # lua_close dlcloses C modules before LeakSanitizer runs, which would
    # leave leak stacks unsymbolized: a preloaded dlclose that does nothing
    # keeps them mapped.  (Preloading spindle.so itself would load libcurl's
    # dependencies before ASan initialises; p11-kit's constructor then
    # leaves glibc's locale lock broken and the process hangs in exit.)
    local nodlclose=$LOGDIR/nodlclose.so
    printf 'int dlclose(void *h) { (void)h; return 0; }\n' |
      "${CC:-cc}" -shared -fPIC -x c -o "$nodlclose" - || {
      fail_check "asan: cannot build $nodlclose"
      return 1
    }
    RUN_PREFIX=(env "LD_PRELOAD=$asan $ubsan $nodlclose"
      SPINDLE_TEST_ENV=asan "SPINDLE_EXPECT_SO=$ROOT/build-asan/spindle.so")
    busted_run "asan busted" "$LOGDIR/busted-asan.log" \
      $((2 * BUSTED_TIMEOUT)) --run=asan || ok=1
    FAIL=$((FAIL + B_F + B_E + B_P))
    if ((B_F + B_E + B_P)); then
      FAILED_CHECKS+=("asan busted: $B_F failures, $B_E errors, $B_P pending")
      ok=1
    fi
  fi

  RUN_PREFIX=(env SPINDLE_TEST_ENV=asan)
  local bins
  mapfile -t bins < <(capi_bins build-asan)
  for b in "${bins[@]}"; do
    echo "-- $b"
    counted_run "asan ${b##*/}" "$LOGDIR/asan-${b##*/}.log" 300 no "$b" ||
      ok=1
  done
  RUN_PREFIX=()
  SPINDLE_TEST_ENV=asan run_examples ./build-asan/spindle asan-example || ok=1
  # No spindle.so in the preload here: most doc examples run the command,
  # which links its own copy (two copies in one process: ODR violation).
  # No leak check either: doc examples spawn ordinary programs (sh, tr,
  # sleep) that inherit the preload, and LeakSanitizer would report *their*
  # leaks; spindle's own leaks are checked by the specs above.
  RUN_PREFIX=(env "LD_PRELOAD=$asan $ubsan"
    "ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:print_summary=1"
    SPINDLE_TEST_ENV=asan SPINDLE=./build-asan/spindle
    "SPINDLE_CPATH=./build-asan/?.so")
  run_doc_examples asan-docs || ok=1
  RUN_PREFIX=()
  unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
  return "$ok"
}

stage_valgrind() {
  local ok=0 b bins files=()
  RUN_PREFIX=(env SPINDLE_TEST_ENV=valgrind
    "SPINDLE_EXPECT_SO=$ROOT/build/spindle.so" "${VALGRIND[@]}")
  mapfile -t bins < <(capi_bins build)
  for b in "${bins[@]}"; do
    echo "-- valgrind $b"
    counted_run "valgrind ${b##*/}" "$LOGDIR/valgrind-${b##*/}.log" 600 no \
      "$b" || ok=1
  done
  files=(spec/0*_spec.lua spec/1*_spec.lua)
  if ((${#files[@]})); then
    echo "-- valgrind busted ${files[*]}"
    local rc=0
    busted_run "valgrind busted" "$LOGDIR/valgrind-busted.log" \
      $((2 * BUSTED_TIMEOUT)) \
      "${files[@]}" || rc=$?
    FAIL=$((FAIL + B_F + B_E + B_P))
    if ((B_F + B_E + B_P)); then
      FAILED_CHECKS+=("valgrind busted: $B_F failures, $B_E errors, $B_P pending")
      ok=1
    fi
    ((rc == 0)) || ok=1
  else
    echo "no spec/0*_spec.lua or spec/1*_spec.lua yet"
  fi
  RUN_PREFIX=()
  return "$ok"
}

# --- main --------------------------------------------------------------------

for tool in cmake "$LUA" valgrind luarocks timeout; do
  command -v "$tool" >/dev/null || {
    fail_check "missing tool: $tool (run make deps)"
    exit 1
  }
done
[[ -n $BUSTED ]] || {
  fail_check "missing tool: busted (run make deps)"
  exit 1
}

stage build stage_build
stage capi stage_capi
stage specs stage_specs
stage examples stage_examples
stage rockspec stage_rockspec
stage asan stage_asan
stage valgrind stage_valgrind
