# CPack: `cpack -G DEB` in a build directory makes libresilience-dev_<version>_all.deb,
# the headers, the CMake package and the pkg-config file under /usr.
# The core needs a C++20 compiler and the standard library only; the optional
# headers' libraries are suggested, not required.
set(CPACK_PACKAGE_NAME libresilience-dev)
set(CPACK_PACKAGE_VENDOR "resilience developers")
set(CPACK_PACKAGE_CONTACT "resilience developers <resilience@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_PACKAGE_DESCRIPTION "Retry with backoff and jitter, timeouts, fallbacks, rate limiting, circuit
breakers, bulkheads and tier-based graceful degradation, composed through one
resilient<> wrapper around any callable, with a pluggable clock.")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "")
# logging.hpp uses fmt; the examples and optional bridges use the others.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libfmt-dev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nlohmann-json3-dev, libspdlog-dev, libasio-dev, libcpp-httplib-dev, prometheus-cpp-dev, libhiredis-dev")
set(CPACK_GENERATOR DEB)
include(CPack)
