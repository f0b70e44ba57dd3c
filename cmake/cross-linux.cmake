# CMake toolchain file for cross-compiling libluaasio for another Linux
# machine with a GNU toolchain named by its prefix:
#
#   cmake -S . -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/cross-linux.cmake \
#         -DLUAASIO_CROSS=arm-linux-gnueabihf-
#
# LUAASIO_CROSS (or the environment variable CROSS) is the prefix, possibly
# with a directory: arm-linux-gnueabihf-, aarch64-linux-gnu-, mipsel-linux-gnu-,
# or an OpenWrt SDK's .../staging_dir/toolchain-*/bin/mipsel-openwrt-linux-musl-.
# The environment variables CXX and STRIP override the compiler and strip.
# build_arm.sh drives this file.

if(NOT LUAASIO_CROSS)
  if(DEFINED ENV{CROSS} AND NOT "$ENV{CROSS}" STREQUAL "")
    set(LUAASIO_CROSS "$ENV{CROSS}")
  else()
    set(LUAASIO_CROSS "arm-linux-gnueabihf-")
  endif()
endif()
set(LUAASIO_CROSS "${LUAASIO_CROSS}" CACHE STRING "Cross toolchain prefix" FORCE)
# try_compile projects (find_package(Threads)) read this file again.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LUAASIO_CROSS)

set(CMAKE_SYSTEM_NAME Linux)
get_filename_component(_luaasio_triplet "${LUAASIO_CROSS}" NAME)
string(REGEX REPLACE "-$" "" _luaasio_triplet "${_luaasio_triplet}")
string(REGEX MATCH "^[^-]+" CMAKE_SYSTEM_PROCESSOR "${_luaasio_triplet}")

if(DEFINED ENV{CXX} AND NOT "$ENV{CXX}" STREQUAL "")
  set(CMAKE_CXX_COMPILER "$ENV{CXX}")
else()
  set(CMAKE_CXX_COMPILER "${LUAASIO_CROSS}g++")
endif()
set(CMAKE_C_COMPILER "${LUAASIO_CROSS}gcc")
if(DEFINED ENV{STRIP} AND NOT "$ENV{STRIP}" STREQUAL "")
  set(CMAKE_STRIP "$ENV{STRIP}" CACHE FILEPATH "strip" FORCE)
else()
  set(CMAKE_STRIP "${LUAASIO_CROSS}strip" CACHE FILEPATH "strip" FORCE)
endif()

# Debian's cross toolchains keep the target's libraries in /usr/<triplet>.
# Libraries and packages come only from there; headers may also come from
# the host (Boost is header-only; CMakeLists.txt exposes only its boost/
# directory to the cross compiler, never the host's libc headers).
if(IS_DIRECTORY "/usr/${_luaasio_triplet}")
  list(APPEND CMAKE_FIND_ROOT_PATH "/usr/${_luaasio_triplet}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)

# GCC notes on ARM that a parameter passing ABI changed in GCC 7.1; nothing
# here is linked against code built by older compilers.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
  set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
endif()
