# cmake/harness.cmake -- the reliability harness (issue 9), included by
# CMakeLists.txt after the C tests are defined.
#
#   capi_allocfail   spec/capi/allocfail.c: spindle's own malloc, calloc
#                    and realloc are wrapped (-Wl,--wrap) so the test's
#                    failing allocator sees them too
if(TARGET capi_allocfail AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  target_link_options(capi_allocfail PRIVATE
    "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc")
  target_compile_definitions(capi_allocfail PRIVATE ALLOCFAIL_WRAP=1)
endif()

#   faultinject      tools/faultinject/faultinject.c -> libfaultinject.so,
#                    the LD_PRELOAD shim of spec/9x-faults_spec.lua.  Never
#                    built with the sanitizers: it is preloaded into plain
#                    lua5.4 too, and libasan must come first in a preload.
add_library(faultinject SHARED
            "${CMAKE_CURRENT_SOURCE_DIR}/tools/faultinject/faultinject.c")
target_compile_options(faultinject PRIVATE -Wall -Wextra
                       $<$<BOOL:${SPINDLE_WERROR}>:-Werror>)
target_link_libraries(faultinject PRIVATE ${CMAKE_DL_LIBS} pthread)
set_target_properties(faultinject PROPERTIES C_VISIBILITY_PRESET default)

#   fuzzers          fuzz/<name>_fuzz.c for each name in SPINDLE_FUZZERS
#                    (the ones that drive spindle itself; cmake/fuzz.cmake
#                    has the HTTP parser's): capi_fuzz_<name> replays
#                    fuzz/corpus/<name> (seeds) and fuzz/corpus/<name>-min
#                    (minimized finds) with fuzz/replay.c and the normal
#                    compiler (a capi_ test: CI runs it in every stage);
#                    with -DSPINDLE_FUZZ=ON (clang; `make fuzz`) fuzz_<name>
#                    is the libFuzzer binary, part of fuzz_targets, and the
#                    library gets coverage instrumentation.
set(SPINDLE_FUZZERS stream sched timer)
if(SPINDLE_FUZZ)
  set(_sp_fuzz_san -fsanitize=address,undefined -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
  target_compile_options(spindle_objs PRIVATE -fsanitize=fuzzer-no-link
                         ${_sp_fuzz_san})
  if(NOT TARGET fuzz_targets)
    add_custom_target(fuzz_targets)
  endif()
endif()
foreach(_sp_fz ${SPINDLE_FUZZERS})
  set(_sp_src "${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${_sp_fz}_fuzz.c")
  set(_sp_corpus "${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${_sp_fz}")
  set(_sp_defs "FUZZ_DIR=\"${CMAKE_CURRENT_SOURCE_DIR}/fuzz\"")
  if(SPINDLE_BUILD_TESTS AND NOT SPINDLE_FUZZ)
    spindle_host_executable(capi_fuzz_${_sp_fz} "${_sp_src}"
                            "${CMAKE_CURRENT_SOURCE_DIR}/fuzz/replay.c")
    # '|' separates the directories (';' would split the definition)
    target_compile_definitions(capi_fuzz_${_sp_fz} PRIVATE ${_sp_defs}
      SP_FUZZ_REPLAY "SP_FUZZ_CORPUS=\"${_sp_corpus}|${_sp_corpus}-min\"")
    target_include_directories(capi_fuzz_${_sp_fz} PRIVATE
                               "${CMAKE_CURRENT_SOURCE_DIR}/fuzz")
  endif()
  if(SPINDLE_FUZZ)
    spindle_host_executable(fuzz_${_sp_fz} "${_sp_src}")
    target_compile_definitions(fuzz_${_sp_fz} PRIVATE ${_sp_defs})
    target_include_directories(fuzz_${_sp_fz} PRIVATE
                               "${CMAKE_CURRENT_SOURCE_DIR}/fuzz")
    target_compile_options(fuzz_${_sp_fz} PRIVATE -fsanitize=fuzzer
                           ${_sp_fuzz_san})
    target_link_options(fuzz_${_sp_fz} PRIVATE -fsanitize=fuzzer
                        ${_sp_fuzz_san})
    add_dependencies(fuzz_targets fuzz_${_sp_fz})
  endif()
endforeach()
