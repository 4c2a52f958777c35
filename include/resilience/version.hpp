// resilience/version.hpp: the library's version, for code that must check it
// at compile time. CMake's project version is read from this file, so the two
// cannot disagree.
//
//   #if RESILIENCE_VERSION_NUMBER < 100
//   #error "needs resilience 0.1 or later"
//   #endif
#pragma once

#define RESILIENCE_VERSION_MAJOR 0  ///< incompatible API changes (0: the API may still change)
#define RESILIENCE_VERSION_MINOR 1  ///< added features
#define RESILIENCE_VERSION_PATCH 0  ///< fixes

/// The version as one comparable number: major * 10000 + minor * 100 + patch.
#define RESILIENCE_VERSION_NUMBER \
  (RESILIENCE_VERSION_MAJOR * 10000 + RESILIENCE_VERSION_MINOR * 100 + RESILIENCE_VERSION_PATCH)

#define RESILIENCE_DETAIL_STRINGIFY2(x) #x
#define RESILIENCE_DETAIL_STRINGIFY(x) RESILIENCE_DETAIL_STRINGIFY2(x)
/// The version as a string literal: "0.1.0".
#define RESILIENCE_VERSION_STRING                       \
  RESILIENCE_DETAIL_STRINGIFY(RESILIENCE_VERSION_MAJOR) \
  "." RESILIENCE_DETAIL_STRINGIFY(RESILIENCE_VERSION_MINOR) "." RESILIENCE_DETAIL_STRINGIFY(RESILIENCE_VERSION_PATCH)
