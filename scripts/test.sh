#!/usr/bin/env bash
# The CI test run (`make test`, `.ci/run`). Run from anywhere. The tests are
# CTest tests (cmake/tests.cmake); this script only runs the stages, in
# order, each timed, and adds up the results:
#
#   build     cmake configure + build of build/ (no-op when make built it)
#   plain     ctest -L plain in build/: every spec file, C test, example,
#             examples/host and docs/run-examples.lua
#   rockspec  `luarocks make` of rockspec/spindle-scm-1.rockspec from a copy
#             of the tree (no build dirs) into a temp tree, with proxies
#             pointed at a dead port (offline), then require of every
#             installed module with only the luarocks paths, and
#             `spindle -v` from the tree's bin
#   asan      configure + build of build-asan/ (Debug, SPINDLE_SANITIZE=ON),
#             then ctest -L asan there: the spec files, C tests, examples
#             and doc examples under ASan + UBSan (leaks checked)
#   valgrind  ctest -L valgrind in build/: memcheck on every spec file and
#             every C test
#   format    make format-check (clang-format --dry-run -Werror on the C
#             sources)
#
# Counting. The last line printed is `spec: N passed, M failed`.
#   N = C test passes + busted successes of the plain stage. The asan and
#       valgrind stages repeat these tests and do not add to N.
#   M = every failure anywhere: busted failures + errors + pending (pending
#       counts as failed: no silent skips) and C test and doc example
#       failures of every stage, as recorded by the tests themselves in
#       <build>/test-results/<label>/*.counts; plus one for every failed
#       CTest test that recorded no failure itself (a sanitizer report, a
#       valgrind error, a timeout, a crash, a failed example); plus one for
#       every test that should have recorded counts and did not, every file
#       clang-format would change, and every other failed check (the build,
#       the rockspec install or load, a missing tool).
# The script stops at the first stage that fails (the summary is still
# printed); KEEP_GOING=1 runs every stage anyway. Exit status 0 only when
# M is 0.
#
# Knobs: JOBS (parallel build jobs and ctest -j; default nproc),
# KEEP_GOING=1, SKIP_STAGES="asan valgrind" (a skipped stage counts as one
# failure, so CI cannot pass with it), CTEST_ARGS (extra ctest arguments,
# e.g. "-R net"; the counts then cover only what ran). Per-test timeouts
# are in cmake/tests.cmake. Logs: build/test-logs/: ctest-<label>.out (what
# was printed), ctest-<label>.log (every test's full output), cmake, build
# and rockspec logs, format.log.

set -euo pipefail
shopt -s nullglob

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
KEEP_GOING=${KEEP_GOING:-0}
SKIP_STAGES=${SKIP_STAGES:-}
read -r -a CTEST_EXTRA <<<"${CTEST_ARGS:-}"
LOGDIR=$ROOT/build/test-logs
LUA=lua5.4

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
# (unless KEEP_GOING=1). Stage functions report failures with fail_check
# (or add to FAIL) and return non-zero; they do not rely on `set -e`, which
# bash turns off inside a function called from `||`.
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

# --- ctest stages ------------------------------------------------------------

# counts_of FILE: prints "passed failed" from a test's counts file:
#   busted S F E P <files>   -> S, F+E+P
#   capi|docs P F            -> P, F
counts_of() {
  awk '$1 == "busted" { print $2, $3 + $4 + $5; exit }
       $1 == "capi" || $1 == "docs" { print $2, $3; exit }' "$1"
}

# regex_hit LOG NAME: ", output matched <regex>" when ctest failed test NAME
# for a FAIL_REGULAR_EXPRESSION match (a sanitizer report...), else nothing.
regex_hit() {
  awk -v t="Test: $2" '
    substr($0, length($0) - length(t) + 1) == t { inb = 1 }
    inb && /Regex=\[/ { sub(/.*Regex=\[/, ""); sub(/\]$/, ""); printf ", output matched \"%s\"", $0; exit }
    inb && / end time: / { exit }' "$1"
}

# ctest_stage LABEL DIR: runs the tests labelled LABEL in build tree DIR and
# adds their results to PASS (plain only: busted and C test passes) and
# FAIL. Returns non-zero when anything failed.
ctest_stage() {
  local label=$1 dir=$2 rc=0 ok=0 results=$2/test-results/$1
  local log=$LOGDIR/ctest-$label.log out=$LOGDIR/ctest-$label.out
  local -A failed_tests=()
  local name what file counts p f kind line

  rm -rf "$results"
  mkdir -p "$results"
  (cd "$dir" && ctest -L "^$label\$" -j "$JOBS" --output-on-failure \
    --no-tests=error "${CTEST_EXTRA[@]}") 2>&1 | tee "$out" ||
    rc=${PIPESTATUS[0]}
  # ctest's own log of every test's full output.
  cp "$dir/Testing/Temporary/LastTest.log" "$log" 2>/dev/null || true

  # "The following tests FAILED:" then lines "<tab> 12 - name (Reason)".
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]+[0-9]+\ -\ (.+)\ \((.+)\)$ ]]; then
      failed_tests[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
    fi
  done < <(sed -n '/^The following tests FAILED:/,$p' "$out")

  while IFS= read -r name; do
    what=${name#*:}
    file=$results/${what//\//-}.counts
    kind=counted
    [[ $what == example/* ]] && kind=none
    counts=""
    [[ -f $file ]] && counts=$(counts_of "$file")
    if [[ -n $counts ]]; then
      read -r p f <<<"$counts"
      if [[ $label == plain && $what != docs ]]; then PASS=$((PASS + p)); fi
      FAIL=$((FAIL + f))
      if ((f > 0)); then # pending does not fail busted's exit status
        FAILED_CHECKS+=("$name: $f failed")
        ok=1
      fi
    else
      f=0
    fi
    if [[ -n ${failed_tests[$name]+x} ]]; then
      ok=1
      if ((f == 0)); then
        local why=${failed_tests[$name]} current=$results/${what//\//-}.current
        if [[ -z $counts && -f $current ]]; then
          why+=" in $(cat "$current")"
        fi
        why+=$(regex_hit "$log" "$name")
        fail_check "$name: $why (see ${log#"$ROOT"/})"
      fi
    elif [[ $kind == counted && -z $counts ]]; then
      ok=1
      fail_check "$name: passed but recorded no counts"
    fi
  done < <(cd "$dir" && ctest -N -L "^$label\$" "${CTEST_EXTRA[@]}" |
    sed -n 's/^ *Test *#[0-9]*: //p')

  if ((rc != 0 && ok == 0)); then
    fail_check "ctest -L $label: exit status $rc"
    ok=1
  fi
  return "$ok"
}

stage_build() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOGDIR/cmake.log" 2>&1 ||
    { cat "$LOGDIR/cmake.log"; return 1; }
  cmake --build build -j "$JOBS" || return 1
}

stage_plain() { ctest_stage plain build; }

stage_asan() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPINDLE_SANITIZE=ON \
    >"$LOGDIR/cmake-asan.log" 2>&1 || {
    cat "$LOGDIR/cmake-asan.log"
    fail_check "asan: cmake configure failed"
    return 1
  }
  if grep -q 'libasan.so/libubsan.so not found' "$LOGDIR/cmake-asan.log"; then
    fail_check "asan: libasan.so/libubsan.so not found via the C compiler"
    return 1
  fi
  cmake --build build-asan -j "$JOBS" >"$LOGDIR/build-asan.log" 2>&1 || {
    cat "$LOGDIR/build-asan.log"
    fail_check "asan: build failed"
    return 1
  }
  ctest_stage asan build-asan
}

stage_valgrind() { ctest_stage valgrind build; }

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
-- The docs and the LuaLS stubs travel with the rock (copy_directories).
local rockdir = io.popen('ls -d "' .. tree .. '"/lib/luarocks/rocks-5.4/spindle/*/ 2>/dev/null'):read("l")
for _, f in ipairs({"docs/README.md", "docs/guide/README.md", "docs/reference.md",
                    "types/spindle.lua"}) do
  assert(rockdir and io.open(rockdir .. f), "rockspec: " .. f .. " not in the installed rock")
end
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

# One failure per file clang-format would change (make format fixes them).
stage_format() {
  local rc=0 files n
  make --no-print-directory format-check >"$LOGDIR/format.log" 2>&1 || rc=$?
  ((rc == 0)) && { echo "format: clean"; return 0; }
  files=$(sed -n 's/^\([^: ]*\.[ch]\):[0-9]*:[0-9]*: error:.*/\1/p' \
    "$LOGDIR/format.log" | sort -u)
  n=$(grep -c . <<<"$files" || true)
  if ((n == 0)); then
    cat "$LOGDIR/format.log"
    fail_check "format: make format-check failed (status $rc)"
    return 1
  fi
  sed -n 's/^\([^: ]*\.[ch]\):[0-9]*:[0-9]*: error:.*/\1/p' \
    "$LOGDIR/format.log" | uniq -c
  echo "format: $(grep -c ': error:' "$LOGDIR/format.log") diagnostics in $n files (see ${LOGDIR#"$ROOT"/}/format.log; make format fixes them)"
  FAIL=$((FAIL + n))
  FAILED_CHECKS+=("format: $n files not clang-formatted: $(tr '\n' ' ' <<<"$files")")
  return 1
}

# --- main --------------------------------------------------------------------

for tool in cmake ctest "$LUA" busted valgrind luarocks clang-format; do
  command -v "$tool" >/dev/null || {
    fail_check "missing tool: $tool (run make deps)"
    exit 1
  }
done

stage build stage_build
stage plain stage_plain
stage rockspec stage_rockspec
stage asan stage_asan
stage valgrind stage_valgrind
stage format stage_format
