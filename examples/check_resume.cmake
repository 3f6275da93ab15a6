# Runs train_tiny_lm three times and checks that a resumed run ends as the uninterrupted one:
#   LAUNCH STEPS    the whole run;
#   LAUNCH STEPS/2  with --save, then LAUNCH STEPS with --resume.
# The last "step STEPS" line (loss and routing losses to 6 decimals), the routing lines printed
# under it (each layer's load, experts per token, and ReMoE's L1 coefficient) and the closing table
# of what each expert reads must be the same text.
# Arguments (-D): TRAIN (the program), STEPS, WORK_DIR, ARGS (;-list of extra flags), LAUNCH
# (;-list put before the program, such as mpiexec -n 2; may be empty).
cmake_minimum_required(VERSION 3.16)
math(EXPR half "${STEPS} / 2")
set(checkpoint "${WORK_DIR}/train_tiny_lm_resume.safetensors")
file(MAKE_DIRECTORY "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/train_runs.cmake")

set(train ${LAUNCH} ${TRAIN} ${ARGS})
set(report "step +${STEPS}  [^\n]*(\n [^\n]*)*\n\nwhat each expert reads[^\n]*(\n  [^\n]*)*")
matching_line(whole "${report}" ${train} --steps ${STEPS})
matching_line(first_half "step +${half}  [^\n]*" ${train} --steps ${half} --save "${checkpoint}")
matching_line(resumed "${report}" ${train} --steps ${STEPS} --resume "${checkpoint}")
message(STATUS "uninterrupted: ${whole}\nresumed:       ${resumed}")
if(whole STREQUAL "" OR NOT whole STREQUAL resumed)
  message(FATAL_ERROR "the resumed run ends elsewhere:\n  uninterrupted: '${whole}'\n  resumed:       '${resumed}'")
endif()
