# Settings for the project's own tests, examples and benchmarks (never for consumers):
# warnings are errors with g++ and clang++, and optional sanitizers.
add_library(resilience_project_options INTERFACE)
target_compile_options(resilience_project_options INTERFACE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(resilience_project_options INTERFACE resilience::resilience)

if(RESILIENCE_SANITIZE)
  set(_san -fsanitize=${RESILIENCE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_compile_options(resilience_project_options INTERFACE ${_san})
  target_link_options(resilience_project_options INTERFACE ${_san})
endif()
