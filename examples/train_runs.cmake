# For the check_*.cmake scripts: runs a command (ARGN) and sets `out` to the first line of its
# output that matches `pattern`; a failing command fails the check.
function(matching_line out pattern)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${ARGN} failed (${status}):\n${output}\n${errors}")
  endif()
  string(REGEX MATCH "${pattern}" line "${output}")
  set(${out} "${line}" PARENT_SCOPE)
endfunction()
