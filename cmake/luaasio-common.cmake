# Shared by the library build (CMakeLists.txt) and the fuzz build
# (fuzz/CMakeLists.txt). LUAASIO_ROOT is the repository root.

# Boost: header-only, 1.74 or later.
set(BOOST_INCLUDE "" CACHE PATH "Folder holding the boost/ headers (default: search)")
find_path(LUAASIO_BOOST_DIR boost/asio.hpp HINTS ${BOOST_INCLUDE} ENV BOOST_INCLUDE)
if(NOT LUAASIO_BOOST_DIR)
  message(FATAL_ERROR "Boost headers not found: install libboost-dev or set -DBOOST_INCLUDE=<dir>")
endif()

# The ABI text for ffi.cdef is cut from the header, so there is one source:
# generated/luaasio_cdef.inc, included by src/cdef.cpp.
function(luaasio_generate_cdef out_dir)
  set(header ${LUAASIO_ROOT}/include/luaasio.h)
  file(READ ${header} text)
  string(FIND "${text}" "/* LUAASIO_CDEF_BEGIN */" cdef_begin)
  string(FIND "${text}" "/* LUAASIO_CDEF_END */" cdef_end)
  if(cdef_begin LESS 0 OR cdef_end LESS cdef_begin)
    message(FATAL_ERROR "include/luaasio.h lacks the LUAASIO_CDEF markers")
  endif()
  math(EXPR cdef_begin "${cdef_begin} + 24")
  math(EXPR cdef_len "${cdef_end} - ${cdef_begin}")
  string(SUBSTRING "${text}" ${cdef_begin} ${cdef_len} LUAASIO_CDEF)
  configure_file(${LUAASIO_ROOT}/src/luaasio_cdef.inc.in ${out_dir}/luaasio_cdef.inc @ONLY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${header})
endfunction()

# The same for another header: the text between /* NAME_BEGIN */ and
# /* NAME_END */ of `header`, as a raw string literal in `out_file`.
function(luaasio_generate_cdef_file header name out_file)
  file(READ ${header} text)
  string(FIND "${text}" "/* ${name}_BEGIN */" cdef_begin)
  string(FIND "${text}" "/* ${name}_END */" cdef_end)
  if(cdef_begin LESS 0 OR cdef_end LESS cdef_begin)
    message(FATAL_ERROR "${header} lacks the ${name} markers")
  endif()
  string(LENGTH "/* ${name}_BEGIN */" marker_len)
  math(EXPR cdef_begin "${cdef_begin} + ${marker_len}")
  math(EXPR cdef_len "${cdef_end} - ${cdef_begin}")
  string(SUBSTRING "${text}" ${cdef_begin} ${cdef_len} cdef)
  file(WRITE ${out_file}.tmp "R\"LUAASIO_CDEF(${cdef})LUAASIO_CDEF\"\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${out_file}.tmp ${out_file})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${header})
endfunction()
