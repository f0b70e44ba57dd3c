// Internal types shared by the translation units of libluaasio.
#pragma once

#include "luaasio.h"

#include <boost/asio.hpp>

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
  enum kind_t : uint8_t { conn_kind, server_kind, resolve_kind };

  explicit object(kind_t k) : kind(k) {}
  virtual ~object() = default;
  // Stops all pending work. Handlers still queued keep the object alive
  // through their shared_ptr and see `open == false`.
  virtual void shutdown_all() noexcept = 0;

  kind_t kind;
  bool open = true;
};

struct conn final : object, std::enable_shared_from_this<conn> {
  static constexpr kind_t static_kind = conn_kind;
  explicit conn(loop &l);
  void shutdown_all() noexcept override;
  void start_wait(int dir);

  loop &owner;
  stream::socket sock;
  int32_t wait_slot[2] = {-1, -1};
  bool waiting[2] = {false, false};
  // Until the connect completes the socket is still blocking, and a read
  // could also consume the error the connect is to report: reads and writes
  // answer "would block" meanwhile.
  bool connecting = false;
  int32_t connect_slot = -1;
};

struct server final : object, std::enable_shared_from_this<server> {
  static constexpr kind_t static_kind = server_kind;
  explicit server(loop &l);
  void shutdown_all() noexcept override;
  void accept_next();

  loop &owner;
  std::string unix_path; // removed again on close, if still ours
  asio::basic_socket_acceptor<stream> acceptor;
  asio::steady_timer backoff;
  int32_t slot = -1;
  int family = 0;
  std::shared_ptr<conn> pending;
};

struct resolve_request final : object,
                               std::enable_shared_from_this<resolve_request> {
  static constexpr kind_t static_kind = resolve_kind;
  explicit resolve_request(loop &l);
  void shutdown_all() noexcept override;

  loop &owner;
  asio::ip::tcp::resolver resolver;
  std::vector<std::string> addresses;
  int32_t slot = -1;
};

struct loop {
  loop();
  ~loop();

  // Handles are index | generation << 20 (1M live objects, 2048
  // generations), so a stale handle of a reused index is recognised and
  // rejected until the index has been reused 2048 times.
  int32_t add(std::shared_ptr<object> obj);
  object *find(int32_t handle, object::kind_t kind) const noexcept;
  std::shared_ptr<object> release(int32_t handle) noexcept;

  template <class T> T *get(int32_t handle) const noexcept {
    return static_cast<T *>(find(handle, T::static_kind));
  }

  // Queues an event for Lua. `source` and `dir` (a LUAASIO_WAIT_* value, or
  // -1 for the object's only operation) let purge() withdraw it.
  void push(int32_t slot, int32_t result, const object *source, int dir = -1) {
    events.push_back({{slot, result}, source, dir});
  }
  // Drops the queued events of `source` (of one direction, or all with -1),
  // so that an operation that was closed or detached reports nothing, even
  // when it had already completed. Returns the accepted handles it dropped.
  std::vector<int32_t> purge(const object *source, int dir = -1);

  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> keep_running;
  struct queued {
    luaasio_event ev;
    const object *source;
    int dir;
  };
  std::vector<queued> events;
  size_t events_head = 0;

  struct entry {
    std::shared_ptr<object> obj;
    uint32_t generation = 0;
  };
  std::vector<entry> table;
  std::vector<uint32_t> free_indexes;
  int live = 0;
};

} // namespace luaasio

struct luaasio_loop : luaasio::loop {};
