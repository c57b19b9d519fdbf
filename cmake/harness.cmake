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
