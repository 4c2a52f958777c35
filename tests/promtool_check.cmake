# Runs PROGRAM, saves what it prints to OUTPUT, and has `PROMTOOL check
# metrics` read it: fails on any problem promtool reports (errors and lint).
execute_process(COMMAND ${PROGRAM} RESULT_VARIABLE rc OUTPUT_FILE ${OUTPUT} ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}\n${err}")
endif()
file(SIZE ${OUTPUT} size)
if(size EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} printed no metrics")
endif()
execute_process(COMMAND ${PROMTOOL} check metrics INPUT_FILE ${OUTPUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE problems)
if(NOT rc EQUAL 0 OR NOT "${out}${problems}" STREQUAL "")
  message(FATAL_ERROR "promtool check metrics (exit ${rc}) on ${OUTPUT}:\n${out}${problems}")
endif()
message("promtool check metrics: no problems in ${size} bytes (${OUTPUT})")
