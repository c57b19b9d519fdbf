# cmake/fuzz.cmake -- fuzz harnesses, their corpus replay, and the parser
# benchmark (included at the end of CMakeLists.txt).
#
#   capi_fuzz_http_parse  (SPINDLE_BUILD_TESTS) fuzz/http_parse_fuzz.c run by
#                         fuzz/replay.c, built with the normal compiler, over
#                         fuzz/corpus/http_parse (seeds) and
#                         fuzz/corpus/http_parse-min (minimized from runs).
#                         Named capi_* so cmake/tests.cmake registers it like
#                         every C test (plain, ASan+UBSan, valgrind).
#   fuzz_http_parse       (SPINDLE_FUZZ=ON, clang) the libFuzzer binary; built
#                         and run by `make fuzz`
#   http_parse_bench      (SPINDLE_BUILD_TESTS) bench/http/parse_bench.c: ns
#                         per request head, ours against libhttp-parser
#
# Both fuzz targets include spec/capi/http_parse_driver.h (the request
# driver the C test shares).
#
# libhttp-parser (Debian libhttp-parser-dev) is the differential reference.
# Without it the replay is still built, and says so as a failed check.

option(SPINDLE_FUZZ "Build the libFuzzer harnesses (clang; make fuzz)" OFF)

find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h)
find_library(HTTP_PARSER_LIBRARY http_parser)
if(HTTP_PARSER_INCLUDE_DIR AND HTTP_PARSER_LIBRARY)
  set(SPINDLE_HAVE_HTTP_PARSER ON)
else()
  set(SPINDLE_HAVE_HTTP_PARSER OFF)
endif()
if(NOT SPINDLE_HAVE_HTTP_PARSER AND (SPINDLE_BUILD_TESTS OR SPINDLE_FUZZ))
  message(WARNING "libhttp-parser not found (Debian libhttp-parser-dev): "
                  "the HTTP fuzz replay runs without its reference and fails")
endif()

set(_sp_fuzz_dir "${CMAKE_CURRENT_SOURCE_DIR}/fuzz")
set(_sp_http_parse_c "${CMAKE_CURRENT_SOURCE_DIR}/csrc/http_parse.c")

# spindle_fuzz_reference(target): links libhttp-parser or marks its absence.
function(spindle_fuzz_reference target)
  if(SPINDLE_HAVE_HTTP_PARSER)
    target_include_directories(${target} SYSTEM PRIVATE
                               "${HTTP_PARSER_INCLUDE_DIR}")
    target_link_libraries(${target} PRIVATE "${HTTP_PARSER_LIBRARY}")
  else()
    target_compile_definitions(${target} PRIVATE SP_FUZZ_NO_REFERENCE)
  endif()
endfunction()

if(SPINDLE_BUILD_TESTS)
  add_executable(capi_fuzz_http_parse "${_sp_fuzz_dir}/http_parse_fuzz.c"
                 "${_sp_fuzz_dir}/replay.c" "${_sp_http_parse_c}")
  target_include_directories(capi_fuzz_http_parse PRIVATE
                             "${CMAKE_CURRENT_SOURCE_DIR}/csrc"
                             "${CMAKE_CURRENT_SOURCE_DIR}/spec/capi")
  # '|' separates the directories (';' would split the definition).
  target_compile_definitions(capi_fuzz_http_parse PRIVATE SP_FUZZ_REPLAY
    "SP_FUZZ_CORPUS=\"${_sp_fuzz_dir}/corpus/http_parse|${_sp_fuzz_dir}/corpus/http_parse-min\"")
  target_link_libraries(capi_fuzz_http_parse PRIVATE spindle_flags)
  spindle_fuzz_reference(capi_fuzz_http_parse)
endif()

if(SPINDLE_HAVE_HTTP_PARSER AND SPINDLE_BUILD_TESTS)
  add_executable(http_parse_bench
    "${CMAKE_CURRENT_SOURCE_DIR}/bench/http/parse_bench.c" "${_sp_http_parse_c}")
  target_include_directories(http_parse_bench PRIVATE
                             "${CMAKE_CURRENT_SOURCE_DIR}/csrc")
  target_link_libraries(http_parse_bench PRIVATE spindle_flags)
  spindle_fuzz_reference(http_parse_bench)
endif()

if(SPINDLE_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SPINDLE_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  if(NOT SPINDLE_HAVE_HTTP_PARSER)
    message(FATAL_ERROR "SPINDLE_FUZZ needs libhttp-parser (the reference)")
  endif()
  set(_sp_fuzz_flags -fsanitize=fuzzer,address,undefined
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_executable(fuzz_http_parse "${_sp_fuzz_dir}/http_parse_fuzz.c"
                 "${_sp_http_parse_c}")
  target_include_directories(fuzz_http_parse PRIVATE
                             "${CMAKE_CURRENT_SOURCE_DIR}/csrc"
                             "${CMAKE_CURRENT_SOURCE_DIR}/spec/capi")
  target_compile_options(fuzz_http_parse PRIVATE ${_sp_fuzz_flags} -Wall
                         -Wextra -Werror)
  target_link_options(fuzz_http_parse PRIVATE ${_sp_fuzz_flags})
  spindle_fuzz_reference(fuzz_http_parse)
  add_custom_target(fuzz_targets DEPENDS fuzz_http_parse)
endif()
