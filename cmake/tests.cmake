# cmake/tests.cmake -- every test of the project as a CTest test. Included
# (last) by CMakeLists.txt when SPINDLE_BUILD_TESTS is on; scripts/test.sh runs
# them by label (see there for the stages and how the results are added
# up). All tests run from the source directory.
#
# A build tree configured without SPINDLE_SANITIZE (build/) registers
#   plain     every spec file (spec/**/*_spec.lua, one test each, busted on
#             this tree's spindle.so), every C test (each capi_* target:
#             spec/capi/*.c, the fuzz corpus replay), every examples/*.lua
#             (run by this tree's `spindle`, with the words of
#             examples/<name>.args as arguments), examples/host and
#             docs/run-examples.lua
#   valgrind  memcheck on every spec file and every C test
# one configured with SPINDLE_SANITIZE=ON (build-asan/) registers
#   asan      every spec file (lua5.4 with gcc's libasan, libubsan and this
#             tree's spindle.so preloaded, leaks checked), every C test,
#             every example and docs/run-examples.lua; foreign programs
#             (curl, nginx, openssl, ...) run through <build>/test-peers/,
#             which drops the preload
#
#   ctest --test-dir build -L plain -j2
#   ctest --test-dir build-asan -L asan -j2
#   ctest --test-dir build -L valgrind -j2
#   ctest --test-dir build -R 'plain:spec/20-net-tcp' --output-on-failure
#
# Test names are <label>:<what>, e.g. plain:spec/01-run, valgrind:capi/basic,
# asan:example/demo. Each test also has a kind label (spec, capi, example,
# docs). Tests fail on a non-zero exit (valgrind's is 99), on a timeout, and
# on any sanitizer report or "busted-ci: " complaint in their output.
# Counts go to <build>/test-results/<label>/<what, / as ->.counts: busted's
# from scripts/busted-ci.lua, the C tests' and the doc examples' from
# cmake/run-counted.cmake.
#
# SPINDLE_TEST_ENV is set to the label, so the specs (spec/helpers: H.ENV,
# H.scale, H.timeout) cut soak loops and stretch wall-clock limits under
# valgrind. The timeouts below are for a plain run and are multiplied by
# SPINDLE_TEST_SLOWDOWN_<label>.

enable_testing()

set(SPINDLE_TEST_SLOWDOWN_plain 1)
set(SPINDLE_TEST_SLOWDOWN_asan 2)
set(SPINDLE_TEST_SLOWDOWN_valgrind 6)
set(_sp_timeout_spec 120)
set(_sp_timeout_capi 120)
set(_sp_timeout_example 120)
set(_sp_timeout_docs 300)

# A missing tool is not a reason to skip a test: it is registered with the
# bare name and fails ("not found"), so `make deps` is the cure.
find_program(SPINDLE_LUA_EXE NAMES lua5.4 lua54)
find_program(SPINDLE_BUSTED_EXE NAMES busted)
find_program(SPINDLE_VALGRIND_EXE NAMES valgrind)
set(_sp_lua lua5.4)
set(_sp_busted busted)
set(_sp_valgrind valgrind)
if(SPINDLE_LUA_EXE)
  set(_sp_lua "${SPINDLE_LUA_EXE}")
endif()
if(SPINDLE_BUSTED_EXE)
  set(_sp_busted "${SPINDLE_BUSTED_EXE}")
endif()
if(SPINDLE_VALGRIND_EXE)
  set(_sp_valgrind "${SPINDLE_VALGRIND_EXE}")
endif()

set(_sp_src "${CMAKE_CURRENT_SOURCE_DIR}")
set(_sp_bin "${CMAKE_CURRENT_BINARY_DIR}")
set(_sp_results "${_sp_bin}/test-results")

# busted under lua5.4 directly (not through its --lua re-exec), so that
# valgrind and LD_PRELOAD see the process that loads spindle.so; stdout
# line-buffered, so a sanitizer ending the process keeps what was printed.
set(_sp_busted_cmd "${_sp_lua}" -e "io.stdout:setvbuf('line')"
    "${_sp_busted}" --ignore-lua -o "${_sp_src}/scripts/busted-ci.lua"
    "--cpath=${_sp_bin}/?.so")

set(_sp_valgrind_cmd "${_sp_valgrind}" -q --error-exitcode=99
    --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=30 --keep-debuginfo=yes)

set(_sp_sanitizer_re
    "ERROR: AddressSanitizer" "ERROR: LeakSanitizer"
    "SUMMARY: AddressSanitizer" "SUMMARY: LeakSanitizer"
    "SUMMARY: UndefinedBehaviorSanitizer" "runtime error: "
    "busted-ci: ")

# halt_on_error + -fno-sanitize-recover: the first report ends the run.
set(_sp_asan_options "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:print_summary=1")
set(_sp_asan_env
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:print_summary=1"
    "LSAN_OPTIONS=print_suppressions=0")

# spindle_test(LABEL WHAT KIND [SERIAL] COMMAND cmd... [ENV var=value...]):
# one test named LABEL:WHAT with labels LABEL and KIND, the timeout of KIND
# times the slowdown of LABEL, and the sanitizer check on its output.
function(spindle_test label what kind)
  cmake_parse_arguments(PARSE_ARGV 3 _t "SERIAL" "" "COMMAND;ENV")
  set(_name "${label}:${what}")
  add_test(NAME "${_name}" COMMAND ${_t_COMMAND}
           WORKING_DIRECTORY "${_sp_src}")
  math(EXPR _timeout "${_sp_timeout_${kind}} * ${SPINDLE_TEST_SLOWDOWN_${label}}")
  set_tests_properties("${_name}" PROPERTIES
    LABELS "${label};${kind}"
    TIMEOUT ${_timeout}
    FAIL_REGULAR_EXPRESSION "${_sp_sanitizer_re}"
    ENVIRONMENT "SPINDLE_TEST_ENV=${label};${_t_ENV}")
  if(_t_SERIAL)
    set_tests_properties("${_name}" PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()

# Where LABEL:WHAT keeps its counts and (busted) its running test's name.
macro(spindle_test_files label what)
  string(REPLACE "/" "-" _sp_file "${what}")
  set(_sp_counts "${_sp_results}/${label}/${_sp_file}.counts")
  set(_sp_current "${_sp_results}/${label}/${_sp_file}.current")
  file(MAKE_DIRECTORY "${_sp_results}/${label}")
endmacro()

file(GLOB_RECURSE _sp_specs CONFIGURE_DEPENDS RELATIVE "${_sp_src}"
     "${_sp_src}/spec/*_spec.lua")
list(SORT _sp_specs)
get_property(_sp_targets DIRECTORY "${_sp_src}" PROPERTY BUILDSYSTEM_TARGETS)
set(_sp_capi_targets)
foreach(_sp_target ${_sp_targets})
  if(_sp_target MATCHES "^capi_")
    list(APPEND _sp_capi_targets ${_sp_target})
  endif()
endforeach()
list(SORT _sp_capi_targets)
file(GLOB _sp_examples CONFIGURE_DEPENDS RELATIVE "${_sp_src}"
     "${_sp_src}/examples/*.lua")
list(SORT _sp_examples)

if(SPINDLE_SANITIZE)
  set(_sp_labels asan)
  execute_process(COMMAND "${CMAKE_C_COMPILER}" -print-file-name=libasan.so
                  OUTPUT_VARIABLE _sp_libasan OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND "${CMAKE_C_COMPILER}" -print-file-name=libubsan.so
                  OUTPUT_VARIABLE _sp_libubsan OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT IS_ABSOLUTE "${_sp_libasan}" OR NOT IS_ABSOLUTE "${_sp_libubsan}")
    message(WARNING "libasan.so/libubsan.so not found via ${CMAKE_C_COMPILER}: "
                    "the asan spec tests will fail")
  endif()
  # Peers nobody here wrote (curl, nginx, ...) run without the sanitizer
  # preload the asan tests inherit: it is there for lua5.4 loading
  # spindle.so, and curl, for one, hangs under a preloaded libasan. The
  # asan tests find these wrappers first in PATH.
  set(_sp_peers "${_sp_bin}/test-peers")
  foreach(_sp_peer curl openssl python3 nginx wrk ab)
    find_program(_sp_peer_exe_${_sp_peer} ${_sp_peer})
    if(_sp_peer_exe_${_sp_peer})
      file(WRITE "${_sp_bin}/test-peers.tmp/${_sp_peer}"
           "#!/bin/sh\n# generated by cmake/tests.cmake\nunset LD_PRELOAD\n"
           "exec '${_sp_peer_exe_${_sp_peer}}' \"$@\"\n")
      file(COPY "${_sp_bin}/test-peers.tmp/${_sp_peer}" DESTINATION "${_sp_peers}"
           FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                            GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    endif()
  endforeach()
  list(APPEND _sp_asan_env "PATH=${_sp_peers}:$ENV{PATH}")
  file(WRITE "${_sp_bin}/nodlclose.c"
       "/* generated by cmake/tests.cmake: keeps C modules mapped */\n"
       "int dlclose(void *h) { (void)h; return 0; }\n")
  add_library(sp_nodlclose MODULE "${_sp_bin}/nodlclose.c")
  set_target_properties(sp_nodlclose PROPERTIES OUTPUT_NAME nodlclose
                        PREFIX "lib" LIBRARY_OUTPUT_DIRECTORY "${_sp_bin}")
else()
  set(_sp_labels plain valgrind)
endif()

foreach(_sp_label ${_sp_labels})
  # --- specs: one test per file
  foreach(_sp_spec ${_sp_specs})
    string(REGEX REPLACE "_spec\\.lua$" "" _sp_what "${_sp_spec}")
    spindle_test_files(${_sp_label} "${_sp_what}")
    set(_sp_env "SPINDLE_BUSTED_COUNTS=${_sp_counts}"
        "SPINDLE_BUSTED_CURRENT=${_sp_current}"
        "SPINDLE_EXPECT_SO=${_sp_bin}/spindle.so"
        "SPINDLE_CLI=${_sp_bin}/spindle")
    set(_sp_prefix)
    if(_sp_label STREQUAL "valgrind")
      set(_sp_prefix ${_sp_valgrind_cmd})
    elseif(_sp_label STREQUAL "asan")
      # lua_close dlcloses C modules before LeakSanitizer runs, which would
      # leave leak stacks unsymbolized: a preloaded dlclose that does
      # nothing (libnodlclose.so) keeps them mapped.  (Preloading spindle.so
      # itself would initialise libcurl's dependencies before ASan;
      # p11-kit's constructor then leaves glibc's locale lock broken and the
      # process hangs in exit.)  lua5.4, busted and the Debian C modules
      # busted loads are leak-free, so leaks are checked too.
      list(APPEND _sp_env
           "LD_PRELOAD=${_sp_libasan} ${_sp_libubsan} ${_sp_bin}/libnodlclose.so"
           "${_sp_asan_options}" ${_sp_asan_env})
    endif()
    spindle_test(${_sp_label} "${_sp_what}" spec
      COMMAND ${_sp_prefix} ${_sp_busted_cmd} "${_sp_spec}"
      ENV ${_sp_env})
  endforeach()

  # --- C tests: every capi_<name> target (spec/capi/<name>.c, the fuzz
  # corpus replay of cmake/fuzz.cmake)
  foreach(_sp_target ${_sp_capi_targets})
    string(REGEX REPLACE "^capi_" "" _sp_name "${_sp_target}")
    spindle_test_files(${_sp_label} "capi/${_sp_name}")
    set(_sp_prefix)
    set(_sp_env)
    if(_sp_label STREQUAL "valgrind")
      set(_sp_prefix ${_sp_valgrind_cmd})
    elseif(_sp_label STREQUAL "asan")
      set(_sp_env "${_sp_asan_options}" ${_sp_asan_env})
    endif()
    spindle_test(${_sp_label} "capi/${_sp_name}" capi
      COMMAND "${CMAKE_COMMAND}" -DKIND=capi "-DCOUNTS=${_sp_counts}"
              -P "${_sp_src}/cmake/run-counted.cmake"
              ${_sp_prefix} "$<TARGET_FILE:capi_${_sp_name}>"
      ENV ${_sp_env})
  endforeach()

  if(_sp_label STREQUAL "valgrind")
    continue()
  endif()

  # --- examples: each must exit 0
  foreach(_sp_example ${_sp_examples})
    get_filename_component(_sp_name "${_sp_example}" NAME_WE)
    set(_sp_args)
    if(EXISTS "${_sp_src}/examples/${_sp_name}.args")
      # Whitespace-separated words, no quoting.
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                   "${_sp_src}/examples/${_sp_name}.args")
      file(READ "${_sp_src}/examples/${_sp_name}.args" _sp_args)
      string(STRIP "${_sp_args}" _sp_args)
      string(REGEX REPLACE "[ \t\r\n]+" ";" _sp_args "${_sp_args}")
    endif()
    set(_sp_env)
    if(_sp_label STREQUAL "asan")
      set(_sp_env "${_sp_asan_options}" ${_sp_asan_env})
    endif()
    spindle_test(${_sp_label} "example/${_sp_name}" example
      COMMAND "${_sp_bin}/spindle" "${_sp_example}" ${_sp_args}
      ENV ${_sp_env})
  endforeach()

  # --- examples/host: the C game-loop host fails by itself when a step goes
  # over budget + one task slice or idle steps are slow; it measures time,
  # so it runs alone, and not under the sanitizers.
  if(_sp_label STREQUAL "plain" AND TARGET host_example)
    spindle_test(${_sp_label} "example/host" example SERIAL
      COMMAND "$<TARGET_FILE:host_example>" examples/host/game.lua)
  endif()

  # --- docs/run-examples.lua: the examples in README.md and docs/*.md
  if(EXISTS "${_sp_src}/docs/run-examples.lua")
    spindle_test_files(${_sp_label} "docs")
    set(_sp_prefix)
    set(_sp_env "SPINDLE=${_sp_bin}/spindle" "SPINDLE_CPATH=${_sp_bin}/?.so")
    if(_sp_label STREQUAL "asan")
      # No spindle.so in the preload: most doc examples run the command,
      # which links its own copy. No leak check either: doc examples spawn
      # ordinary programs (sh, tr, sleep) that inherit the preload, and
      # LeakSanitizer would report *their* leaks; spindle's own leaks are
      # checked by the specs. The preload is given to lua5.4 only, not to
      # cmake running the wrapper.
      set(_sp_prefix env "LD_PRELOAD=${_sp_libasan} ${_sp_libubsan}"
          "ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:print_summary=1")
      list(APPEND _sp_env ${_sp_asan_env})
    endif()
    spindle_test(${_sp_label} "docs" docs
      COMMAND "${CMAKE_COMMAND}" -DKIND=docs "-DCOUNTS=${_sp_counts}"
              -P "${_sp_src}/cmake/run-counted.cmake"
              ${_sp_prefix} "${_sp_lua}" docs/run-examples.lua
      ENV ${_sp_env})
  endif()
endforeach()
