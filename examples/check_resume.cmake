# Runs train_tiny_lm three times and checks that a resumed run ends as the uninterrupted one:
#   LAUNCH STEPS    the whole run;
#   LAUNCH STEPS/2  with --save, then LAUNCH STEPS with --resume.
# The last "step STEPS" line (loss and routing losses to 6 decimals) must be the same text.
# Arguments (-D): TRAIN (the program), STEPS, WORK_DIR, ARGS (;-list of extra flags), LAUNCH
# (;-list put before the program, such as mpiexec -n 2; may be empty).
cmake_minimum_required(VERSION 3.16)
math(EXPR half "${STEPS} / 2")
set(checkpoint "${WORK_DIR}/train_tiny_lm_resume.safetensors")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(last_step_line steps out)
  execute_process(COMMAND ${LAUNCH} ${TRAIN} --steps ${steps} ${ARGS} ${ARGN}
                  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "train_tiny_lm --steps ${steps} ${ARGN} failed (${status}):\n${output}\n${errors}")
  endif()
  string(REGEX MATCH "step +${steps}  [^\n]*" line "${output}")
  set(${out} "${line}" PARENT_SCOPE)
endfunction()

last_step_line(${STEPS} whole)
last_step_line(${half} first_half --save "${checkpoint}")
last_step_line(${STEPS} resumed --resume "${checkpoint}")
message(STATUS "uninterrupted: ${whole}\nresumed:       ${resumed}")
if(whole STREQUAL "" OR NOT whole STREQUAL resumed)
  message(FATAL_ERROR "the resumed run ends elsewhere:\n  uninterrupted: '${whole}'\n  resumed:       '${resumed}'")
endif()
