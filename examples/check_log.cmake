# Checks train_tiny_lm's --log: a run of STEPS/2 steps with --save and --log, resumed up to STEPS
# with the same --log, and then resumed from the same checkpoint once more (the log's later steps
# are replaced, not repeated), leaves STEPS lines, one JSON object each, for steps 1..STEPS in
# order, each with the loss and every layer's routing (8 experts' loads that add up to the
# batch's pairs, k = 2 for the default Mixtral router: 2 x 16 windows x 64 characters).
# Arguments (-D): TRAIN (the program), STEPS, WORK_DIR.
cmake_minimum_required(VERSION 3.19)  # string(JSON)
math(EXPR half "${STEPS} / 2")
set(log "${WORK_DIR}/train_tiny_lm.log.jsonl")
set(checkpoint "${WORK_DIR}/train_tiny_lm_log.safetensors")
file(MAKE_DIRECTORY "${WORK_DIR}")
file(REMOVE "${log}")

foreach(run "--steps;${half};--save;${checkpoint}" "--steps;${STEPS};--resume;${checkpoint}"
            "--steps;${STEPS};--resume;${checkpoint}")
  execute_process(COMMAND ${TRAIN} ${run} --log "${log}" RESULT_VARIABLE status OUTPUT_QUIET ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "train_tiny_lm ${run} --log failed (${status}): ${errors}")
  endif()
endforeach()

file(STRINGS "${log}" lines)
list(LENGTH lines count)
if(NOT count EQUAL STEPS)
  message(FATAL_ERROR "expected ${STEPS} lines in the log, got ${count}")
endif()
set(expected_step 1)
foreach(line IN LISTS lines)
  string(JSON step GET "${line}" step)
  string(JSON loss GET "${line}" loss)
  string(JSON layers LENGTH "${line}" layers)
  string(JSON experts LENGTH "${line}" layers 0 tokens_per_expert)
  string(JSON routed GET "${line}" layers 1 routed_pairs)
  string(JSON aux GET "${line}" layers 0 losses aux_loss)
  if(NOT step EQUAL expected_step OR NOT layers EQUAL 2 OR NOT experts EQUAL 8 OR NOT routed EQUAL 2048
     OR NOT loss MATCHES "^[0-9]" OR NOT aux MATCHES "^[0-9]")
    message(FATAL_ERROR "unexpected log line ${expected_step}: ${line}")
  endif()
  set(total 0)
  foreach(e RANGE 7)
    string(JSON load GET "${line}" layers 0 tokens_per_expert ${e})
    math(EXPR total "${total} + ${load}")
  endforeach()
  if(NOT total EQUAL 2048)
    message(FATAL_ERROR "layer 0's loads add up to ${total}, not 2048, at step ${step}")
  endif()
  math(EXPR expected_step "${expected_step} + 1")
endforeach()
message(STATUS "${count} log lines, steps 1 to ${STEPS}")
