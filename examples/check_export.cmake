# Trains with the experts split over ranks, exports the whole model's weights, and checks that
# one process started from the file writes the same greedy sample:
#   LAUNCH TRAIN --expert-parallel --steps STEPS --export FILE
#   TRAIN --init FILE --steps 0
# Arguments (-D): TRAIN (the program), STEPS, WORK_DIR, LAUNCH (;-list: mpiexec -n 2).
cmake_minimum_required(VERSION 3.16)
set(weights "${WORK_DIR}/train_tiny_lm_export.safetensors")
file(MAKE_DIRECTORY "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/train_runs.cmake")

matching_line(split "greedy sample: [^\n]*" ${LAUNCH} ${TRAIN} --expert-parallel --steps ${STEPS} --export "${weights}")
matching_line(single "greedy sample: [^\n]*" ${TRAIN} --init "${weights}" --steps 0)
message(STATUS "expert-parallel: ${split}\none process:     ${single}")
if(split STREQUAL "" OR NOT split STREQUAL single)
  message(FATAL_ERROR "the exported weights sample differently:\n  '${split}'\n  '${single}'")
endif()
