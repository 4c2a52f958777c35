# Settings for the project's own tests, examples and benchmarks (never for
# consumers): optional sanitizers everywhere, and warnings as errors with g++
# and clang++ for our own code.
add_library(resilience_sanitizers INTERFACE)
if(RESILIENCE_SANITIZE)
  set(_san -fsanitize=${RESILIENCE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_compile_options(resilience_sanitizers INTERFACE ${_san})
  target_link_options(resilience_sanitizers INTERFACE ${_san})
endif()

add_library(resilience_project_options INTERFACE)
target_compile_options(resilience_project_options INTERFACE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(resilience_project_options INTERFACE resilience::resilience resilience_sanitizers)
