# Installs the headers and a CMake package, so that after `cmake --install`
# a consumer's find_package(resilience) gives it resilience::resilience.
include(CMakePackageConfigHelpers)

install(TARGETS resilience EXPORT resilienceTargets)
install(DIRECTORY include/resilience DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT resilienceTargets NAMESPACE resilience:: DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)

configure_package_config_file(cmake/resilienceConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/resilienceConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)
