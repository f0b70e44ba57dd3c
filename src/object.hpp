// What every translation unit of libluaasio shares: the export and
// exception macros, the error mapping, and the base of the objects that
// handles name (connections, servers, resolve requests, threads, ...).
#pragma once

#include "luaasio.h"

#include <boost/asio.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(_WIN32)
#define LUAASIO_EXPORT extern "C" __declspec(dllexport)
#else
#define LUAASIO_EXPORT extern "C" __attribute__((visibility("default")))
#endif

// Every exported function that may allocate or call into Boost wraps its
// body in these: no C++ exception may cross into LuaJIT.
#define LUAASIO_TRY try {
#define LUAASIO_CATCH                                                                    \
  }                                                                                      \
  catch (const std::bad_alloc &) {                                                       \
    return LUAASIO_ENOMEM;                                                               \
  }                                                                                      \
  catch (...) {                                                                          \
    return LUAASIO_ESYSTEM;                                                              \
  }

namespace luaasio {

namespace asio = boost::asio;
using boost::system::error_code;
using stream = asio::generic::stream_protocol;

// Maps a system error to a stable LUAASIO_E* code (never 0 for a set error).
int map_error(const error_code &ec) noexcept;

struct loop;

struct object {
  enum kind_t : uint8_t { conn_kind, server_kind, resolve_kind, thread_kind, udp_kind, relay_kind };

  explicit object(kind_t k) : kind(k) {}
  virtual ~object() = default;
  // Stops all pending work. Handlers still queued keep the object alive
  // through their shared_ptr and see `open == false`.
  virtual void close_all() noexcept = 0;

  kind_t kind;
  bool open = true;
};

} // namespace luaasio
