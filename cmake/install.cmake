# Installs the headers and a CMake package, so that after `cmake --install`
# a consumer's find_package(resilience) gives it resilience::resilience.
include(CMakePackageConfigHelpers)

install(TARGETS resilience EXPORT resilienceTargets)
install(DIRECTORY include/resilience DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT resilienceTargets NAMESPACE resilience:: DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)
if(TARGET resilience_redis)
  # Its own export set: find_package(resilience) gives resilience::redis only
  # where the consumer has hiredis too (resilienceConfig.cmake checks).
  install(TARGETS resilience_redis EXPORT resilienceRedisTargets)
  install(EXPORT resilienceRedisTargets NAMESPACE resilience:: DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)
endif()

configure_package_config_file(cmake/resilienceConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/resilienceConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/resilienceConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/resilience/cmake)

# A pkg-config file, for builds without CMake:
#   g++ $(pkg-config --cflags resilience) app.cpp $(pkg-config --libs resilience)
# Header-only, so it goes where architecture-independent .pc files go.
# Relocatable: the prefix is found from where the file is (${pcfiledir}), so
# the .deb (prefix /usr) and `cmake --install --prefix DIR` both get it right.
file(RELATIVE_PATH pc_up /prefix/${CMAKE_INSTALL_DATADIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" pc_up "${pc_up}")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(pc_includedir "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(pc_includedir "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/resilience.pc.in ${CMAKE_CURRENT_BINARY_DIR}/resilience.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/resilience.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
