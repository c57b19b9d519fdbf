# Runs a test program that ends its output with "N passed, M failed" (the C
# tests in spec/capi, docs/run-examples.lua) and records those counts for
# scripts/test.sh:
#
#   cmake -DKIND=capi|docs -DCOUNTS=<file> -P run-counted.cmake <cmd> [arg...]
#
# The program's stdout and stderr are shown as they come (CTest keeps them),
# stdin is /dev/null. <file> gets one line "<KIND> <passed> <failed>" from
# the last such line of the output. The script fails (and so the CTest test)
# when the program exits non-zero or prints no such line (then no file is
# written); scripts/test.sh counts a failed test whose file shows no failure
# as one failure.

set(_cmd)
set(_seen_p FALSE)
set(_seen_script FALSE)
math(EXPR _last "${CMAKE_ARGC} - 1")
foreach(_i RANGE 1 ${_last})
  set(_a "${CMAKE_ARGV${_i}}")
  if(_seen_script)
    list(APPEND _cmd "${_a}")
  elseif(_seen_p)
    set(_seen_script TRUE)
  elseif(_a STREQUAL "-P")
    set(_seen_p TRUE)
  endif()
endforeach()
if(NOT _cmd OR NOT KIND OR NOT COUNTS)
  message(FATAL_ERROR "usage: cmake -DKIND=k -DCOUNTS=file -P run-counted.cmake cmd [arg...]")
endif()

file(REMOVE "${COUNTS}")
execute_process(COMMAND ${_cmd}
                INPUT_FILE /dev/null
                OUTPUT_VARIABLE _out ERROR_VARIABLE _out
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE
                RESULT_VARIABLE _rc)

string(REGEX MATCHALL "(^|\n)[0-9]+ passed, [0-9]+ failed(\r?\n|$)" _lines "${_out}")
if(NOT _lines)
  message(FATAL_ERROR "run-counted: no 'N passed, M failed' line (status ${_rc})")
endif()
list(GET _lines -1 _line)
string(REGEX MATCH "([0-9]+) passed, ([0-9]+) failed" _ "${_line}")
file(WRITE "${COUNTS}" "${KIND} ${CMAKE_MATCH_1} ${CMAKE_MATCH_2}\n")
if(NOT _rc STREQUAL "0")
  if(_rc STREQUAL "99")
    set(_rc "99 (valgrind reported errors)")
  endif()
  message(FATAL_ERROR "run-counted: exit status ${_rc}")
endif()
