# The optional TLS library, libluaasio_tls: its own shared library, so that
# the core links no TLS library and needs none on the device. It needs no
# Boost either: it works on the descriptors the core owns.
#
#   -DLUAASIO_TLS=auto     OpenSSL if its development files are found (default)
#   -DLUAASIO_TLS=openssl  OpenSSL 1.1.1 or 3.x, required
#   -DLUAASIO_TLS=mbedtls  mbedTLS 2.28 or 3.x, required
#   -DLUAASIO_TLS=OFF      none: asio.lua then reports 'tls not available'
set(LUAASIO_TLS "auto" CACHE STRING "TLS backend: auto, openssl, mbedtls or OFF")
set_property(CACHE LUAASIO_TLS PROPERTY STRINGS auto openssl mbedtls OFF)

set(luaasio_tls_backend "")
if(LUAASIO_TLS STREQUAL "auto" AND CMAKE_CROSSCOMPILING)
  # The host's OpenSSL is not the target's: cross builds get TLS only when
  # asked for, with the target's library (build_arm.sh -DLUAASIO_TLS=mbedtls
  # -DMBEDTLS_INCLUDE_DIR=... -DMBEDTLS_LIBRARY=... ; see test/tls-cross.sh).
  message(STATUS "LuaAsio TLS: cross build, no TLS unless -DLUAASIO_TLS=openssl|mbedtls")
elseif(LUAASIO_TLS STREQUAL "auto")
  find_package(OpenSSL 1.1.1 QUIET)
  if(OPENSSL_FOUND)
    set(luaasio_tls_backend openssl)
  else()
    message(STATUS "LuaAsio TLS: OpenSSL not found, building without TLS")
  endif()
elseif(LUAASIO_TLS STREQUAL "openssl")
  find_package(OpenSSL 1.1.1 REQUIRED)
  set(luaasio_tls_backend openssl)
elseif(LUAASIO_TLS STREQUAL "mbedtls")
  find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h)
  find_library(MBEDTLS_LIBRARY mbedtls)
  find_library(MBEDX509_LIBRARY mbedx509)
  find_library(MBEDCRYPTO_LIBRARY mbedcrypto)
  if(NOT MBEDTLS_INCLUDE_DIR OR NOT MBEDTLS_LIBRARY OR NOT MBEDX509_LIBRARY OR NOT MBEDCRYPTO_LIBRARY)
    message(FATAL_ERROR "mbedTLS not found: install libmbedtls-dev or set MBEDTLS_INCLUDE_DIR and MBEDTLS_LIBRARY, MBEDX509_LIBRARY, MBEDCRYPTO_LIBRARY")
  endif()
  set(luaasio_tls_backend mbedtls)
elseif(NOT LUAASIO_TLS STREQUAL "OFF" AND NOT LUAASIO_TLS STREQUAL "off")
  message(FATAL_ERROR "LUAASIO_TLS must be auto, openssl, mbedtls or OFF (got '${LUAASIO_TLS}')")
endif()

if(luaasio_tls_backend)
  message(STATUS "LuaAsio TLS: building libluaasio_tls with ${luaasio_tls_backend}")
  luaasio_generate_cdef_file(${LUAASIO_ROOT}/include/luaasio_tls.h LUAASIO_TLS_CDEF
    ${CMAKE_CURRENT_BINARY_DIR}/generated/luaasio_tls_cdef.inc)
  add_library(luaasio_tls SHARED src/tls/tls_abi.cpp src/tls/tls_${luaasio_tls_backend}.cpp)
  target_include_directories(luaasio_tls PRIVATE include ${CMAKE_CURRENT_BINARY_DIR}/generated)
  set_target_properties(luaasio_tls PROPERTIES CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON PREFIX "lib")
  if(luaasio_tls_backend STREQUAL openssl)
    target_link_libraries(luaasio_tls PRIVATE OpenSSL::SSL OpenSSL::Crypto)
  else()
    target_include_directories(luaasio_tls SYSTEM PRIVATE ${MBEDTLS_INCLUDE_DIR})
    target_link_libraries(luaasio_tls PRIVATE ${MBEDTLS_LIBRARY} ${MBEDX509_LIBRARY} ${MBEDCRYPTO_LIBRARY})
  endif()
  if(WIN32)
    set_target_properties(luaasio_tls PROPERTIES PREFIX "")
    target_compile_definitions(luaasio_tls PRIVATE _WIN32_WINNT=0x0601 WIN32_LEAN_AND_MEAN NOMINMAX)
    target_link_libraries(luaasio_tls PRIVATE ws2_32)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(luaasio_tls PRIVATE -Wall -Wextra -ffunction-sections -fdata-sections)
    if(NOT APPLE AND NOT WIN32)
      target_link_options(luaasio_tls PRIVATE -Wl,--gc-sections
        -Wl,--version-script=${LUAASIO_ROOT}/src/tls/luaasio_tls.map -Wl,-z,defs
        # Session finalizers may run after LuaJIT dropped the library when
        # a Lua state closes: never unmap its code.
        -Wl,-z,nodelete)
    endif()
    if(LUAASIO_STATIC_RUNTIME)
      target_link_options(luaasio_tls PRIVATE -static-libstdc++ -static-libgcc)
    endif()
    if(LUAASIO_SANITIZE)
      target_compile_options(luaasio_tls PRIVATE -fsanitize=${LUAASIO_SANITIZE}
        -fno-omit-frame-pointer -fno-sanitize-recover=all)
      target_link_options(luaasio_tls PRIVATE -fsanitize=${LUAASIO_SANITIZE})
    endif()
  endif()
  install(TARGETS luaasio_tls
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES include/luaasio_tls.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()
