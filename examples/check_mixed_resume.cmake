# Expert-parallel rank files from two steps of a run, resumed together, must be refused on every
# rank with an Error (ranks resuming from different steps would stop meeting each other's
# collectives and hang the job). Arguments (-D): TRAIN, WORK_DIR, LAUNCH (;-list: mpiexec -n 2).
cmake_minimum_required(VERSION 3.16)
include("${CMAKE_CURRENT_LIST_DIR}/train_runs.cmake")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(train ${LAUNCH} ${TRAIN} --expert-parallel --sample-length 1)
matching_line(unused "step" ${train} --steps 2 --save "${WORK_DIR}/early")
matching_line(unused "step" ${train} --steps 4 --save "${WORK_DIR}/late")
configure_file("${WORK_DIR}/late.rank0" "${WORK_DIR}/mixed.rank0" COPYONLY)
configure_file("${WORK_DIR}/early.rank1" "${WORK_DIR}/mixed.rank1" COPYONLY)
execute_process(COMMAND ${train} --steps 6 --resume "${WORK_DIR}/mixed" TIMEOUT 60
                RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE errors)
if(status EQUAL 0 OR NOT errors MATCHES "rank 1 has another checkpoint step than rank 0")
  message(FATAL_ERROR "mixed rank files were not refused (status ${status}):\n${output}\n${errors}")
endif()
message(STATUS "refused: rank 1 has another checkpoint step than rank 0")
