# Builds and runs tests/consumer against the library, in MODE "subdirectory"
# (add_subdirectory of SOURCE_DIR), "installed" (cmake --install into a
# prefix, then find_package) or "readme" (the README's install line, run as
# it is in a copy of the source tree, on a machine that seems to have none of
# the test, example or benchmark dependencies; then find_package).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

set(consumer_args -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/consumer -DCMAKE_CXX_COMPILER=${CXX})
if(MODE STREQUAL "readme")
  # The line after the README's `<!-- install line: tests/consumer -->`
  # marker, inside its ```sh block.
  file(READ ${SOURCE_DIR}/README.md readme)
  if(NOT readme MATCHES "<!-- install line: tests/consumer -->\n```sh\n([^\n]+)\n")
    message(FATAL_ERROR "README.md has no ```sh block after a `<!-- install line: tests/consumer -->` marker")
  endif()
  set(line "${CMAKE_MATCH_1}")
  message("README install line: ${line}")
  foreach(item IN ITEMS CMakeLists.txt README.md LICENSE cmake include tests examples)
    file(COPY ${SOURCE_DIR}/${item} DESTINATION ${WORK_DIR}/source)
  endforeach()
  # Only cmake and a compiler: every optional find_package fails (a toolchain
  # file named by the environment, so the line itself runs unchanged), and
  # DESTDIR keeps the install inside WORK_DIR.
  file(WRITE ${WORK_DIR}/bare-machine.cmake "set(CMAKE_CXX_COMPILER ${CXX})\n")
  foreach(package IN ITEMS Catch2 fmt nlohmann_json benchmark spdlog PkgConfig Python3)
    file(APPEND ${WORK_DIR}/bare-machine.cmake "set(CMAKE_DISABLE_FIND_PACKAGE_${package} ON)\n")
  endforeach()
  execute_process(COMMAND ${CMAKE_COMMAND} -E env CMAKE_TOOLCHAIN_FILE=${WORK_DIR}/bare-machine.cmake DESTDIR=${WORK_DIR}/destdir
                          sh -c "${line}"
                  WORKING_DIRECTORY ${WORK_DIR}/source RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the README's install line failed (${rc}) without the test dependencies")
  endif()
  if(NOT out MATCHES "resilience: tests skipped")
    message(FATAL_ERROR "the configuration did not say that the tests were skipped")
  endif()
  file(GLOB_RECURSE config ${WORK_DIR}/destdir/*/resilienceConfig.cmake)
  if(NOT config)
    message(FATAL_ERROR "no resilienceConfig.cmake under ${WORK_DIR}/destdir")
  endif()
  list(GET config 0 config)
  cmake_path(GET config PARENT_PATH config_dir)
  run(${CMAKE_COMMAND} ${consumer_args} -Dresilience_DIR=${config_dir})
elseif(MODE STREQUAL "installed")
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -DCMAKE_CXX_COMPILER=${CXX}
      -DRESILIENCE_BUILD_TESTS=OFF -DRESILIENCE_BUILD_EXAMPLES=OFF -DRESILIENCE_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib --prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} ${consumer_args} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  run(${CMAKE_COMMAND} ${consumer_args} -DRESILIENCE_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR}/consumer --output-on-failure)
