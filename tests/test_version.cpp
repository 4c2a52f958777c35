// resilience/version.hpp: the macros agree with each other and with the
// version CMake read for the project (passed in as RESILIENCE_PROJECT_VERSION).
#include <resilience/version.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("the version string is MAJOR.MINOR.PATCH and matches the CMake project version") {
  const std::string parts = std::to_string(RESILIENCE_VERSION_MAJOR) + "." + std::to_string(RESILIENCE_VERSION_MINOR) +
                            "." + std::to_string(RESILIENCE_VERSION_PATCH);
  CHECK(std::string{RESILIENCE_VERSION_STRING} == parts);
  CHECK(std::string{RESILIENCE_VERSION_STRING} == RESILIENCE_PROJECT_VERSION);
}

TEST_CASE("the version number orders versions") {
  STATIC_REQUIRE(RESILIENCE_VERSION_NUMBER ==
                 RESILIENCE_VERSION_MAJOR * 10000 + RESILIENCE_VERSION_MINOR * 100 + RESILIENCE_VERSION_PATCH);
  STATIC_REQUIRE(RESILIENCE_VERSION_MINOR < 100);
  STATIC_REQUIRE(RESILIENCE_VERSION_PATCH < 100);
}
