# cmake -DSRC= -DBIN= -DMODE=package|subdir [-DPIKV_PREFIX=] [-DTARGET=pikv::pikv_header_only] -DTORCH_DIR=
#       -DPIKV_SOURCE_DIR= -DGEN=
#       -P build_and_run.cmake
# Configures, builds and runs the consumer project; fails on any step.
file(REMOVE_RECURSE "${BIN}")
if(NOT TARGET)
  set(TARGET pikv::pikv)
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SRC}" -B "${BIN}" -G "${GEN}" -DCMAKE_BUILD_TYPE=Release
                        "-DCMAKE_PREFIX_PATH=${PIKV_PREFIX}" -DTorch_DIR=${TORCH_DIR} -DPIKV_CONSUMER_MODE=${MODE}
                        -DPIKV_SOURCE_DIR=${PIKV_SOURCE_DIR} -DPIKV_CONSUMER_TARGET=${TARGET}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer (${MODE}) failed")
endif()
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${CMAKE_COMMAND} --build "${BIN}" --target consumer RESULT_VARIABLE rc)
string(TIMESTAMP t1 "%s")
math(EXPR seconds "${t1} - ${t0}")
message(STATUS "consumer (${MODE}, ${TARGET}) built in ${seconds} s")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer (${MODE}) failed")
endif()
execute_process(COMMAND "${BIN}/consumer" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer (${MODE}) ran but failed: ${rc}")
endif()
