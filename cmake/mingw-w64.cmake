# CMake toolchain file for cross-compiling luaasio.dll for 64-bit Windows
# with MinGW-w64 on Linux (Debian: g++-mingw-w64-x86-64-posix):
#
#   cmake -S . -B build-win64 -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake \
#         -DLUAASIO_STATIC_RUNTIME=ON
#
# LUAASIO_CROSS (or the environment variable CROSS) is the prefix, default
# x86_64-w64-mingw32- (i686-w64-mingw32- for 32-bit). The "-posix" flavour
# of the compiler is preferred when installed. With LUAASIO_STATIC_RUNTIME
# the DLL links libstdc++, libgcc and winpthread statically and needs only
# Windows' own DLLs.

if(NOT LUAASIO_CROSS)
  if(DEFINED ENV{CROSS} AND NOT "$ENV{CROSS}" STREQUAL "")
    set(LUAASIO_CROSS "$ENV{CROSS}")
  else()
    set(LUAASIO_CROSS "x86_64-w64-mingw32-")
  endif()
endif()
set(LUAASIO_CROSS "${LUAASIO_CROSS}" CACHE STRING "Cross toolchain prefix" FORCE)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LUAASIO_CROSS)

set(CMAKE_SYSTEM_NAME Windows)
get_filename_component(_luaasio_triplet "${LUAASIO_CROSS}" NAME)
string(REGEX REPLACE "-$" "" _luaasio_triplet "${_luaasio_triplet}")
string(REGEX MATCH "^[^-]+" CMAKE_SYSTEM_PROCESSOR "${_luaasio_triplet}")

find_program(_luaasio_cxx_posix "${LUAASIO_CROSS}g++-posix")
if(DEFINED ENV{CXX} AND NOT "$ENV{CXX}" STREQUAL "")
  set(CMAKE_CXX_COMPILER "$ENV{CXX}")
elseif(_luaasio_cxx_posix)
  set(CMAKE_CXX_COMPILER "${_luaasio_cxx_posix}")
else()
  set(CMAKE_CXX_COMPILER "${LUAASIO_CROSS}g++")
endif()
set(CMAKE_C_COMPILER "${LUAASIO_CROSS}gcc")
set(CMAKE_RC_COMPILER "${LUAASIO_CROSS}windres")
set(CMAKE_STRIP "${LUAASIO_CROSS}strip" CACHE FILEPATH "strip" FORCE)

if(IS_DIRECTORY "/usr/${_luaasio_triplet}")
  list(APPEND CMAKE_FIND_ROOT_PATH "/usr/${_luaasio_triplet}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
