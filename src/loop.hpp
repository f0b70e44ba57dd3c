// Internal types shared by the translation units of libluaasio.
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

// Waiting for a socket to become readable: Boost.Asio's async_wait always
// re-registers the descriptor with epoll (an epoll_ctl per wait), while its
// own read operations are queued on the edge-triggered registration for
// free. On epoll, with the reactor interface of Boost 1.74 to 1.81, a read
// wait is therefore queued as a reactor operation of our own.
#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IOCP) && \
    !defined(BOOST_ASIO_DISABLE_EPOLL) && BOOST_VERSION >= 107400 && BOOST_VERSION < 108200
#define LUAASIO_DIRECT_READ_WAIT 1
#else
#define LUAASIO_DIRECT_READ_WAIT 0
#endif

// A connection's socket, with access to its reactor registration.
class conn_socket : public stream::socket {
public:
  using base = stream::socket;
  using base::base;
#if LUAASIO_DIRECT_READ_WAIT
  asio::detail::reactor::per_descriptor_data &reactor_data() {
    return impl_.get_implementation().reactor_data_;
  }
#endif
};

struct conn;

#if LUAASIO_DIRECT_READ_WAIT
// Completes at the first readiness event after it was queued, so it is only
// used right after a read returned EAGAIN with no poll since (no readiness
// event can have been consumed in between); otherwise async_wait is used.
// The reactor
// calls perform() once at once when queueing (a speculative attempt, which
// it always makes for these sockets: nothing on them ever reports a read
// as exhausted) and again on every readiness event. The caller has just
// seen EAGAIN, so the first call only lets the operation be queued.
struct read_wait_op : asio::detail::reactor_op {
  read_wait_op();
  static status perform(asio::detail::reactor_op *base);
  static void complete(void *owner, asio::detail::operation *base, const error_code &,
                       std::size_t);
  std::shared_ptr<conn> holder; // keeps the connection alive while queued
  bool armed = false;
};
#endif

struct object {
  enum kind_t : uint8_t { conn_kind, server_kind, resolve_kind, thread_kind, udp_kind };

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

  void on_wait(int dir);

  loop &owner;
  conn_socket sock;
#if LUAASIO_DIRECT_READ_WAIT
  read_wait_op read_wait;
#endif
  int32_t wait_slot[2] = {-1, -1};
  bool waiting[2] = {false, false};
  // Until the connect completes the socket is still blocking, and a read
  // could also consume the error the connect is to report: reads and writes
  // answer "would block" meanwhile.
  bool connecting = false;
  int32_t connect_slot = -1;
  // loop::runs when the last read returned EAGAIN (0: it did not)
  uint32_t eagain_at = 0;
  bool nodelay_pending = false; // TCP_NODELAY still to be set (see prepare_socket)
  bool wrote = false;
};

// Readies a connected or accepted socket of the given address family for
// Lua (non-blocking, TCP_NODELAY before the second write).
void prepare_socket(conn &c, int family);

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

struct loop_link;

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
  uint32_t runs = 1; // counts the times luaasio_poll ran the io_context

  struct entry {
    std::shared_ptr<object> obj;
    uint32_t generation = 0;
  };
  std::vector<entry> table;
  std::vector<uint32_t> free_indexes;
  // Read by other threads (luaasio_thread_load), written only by this one.
  std::atomic<int> live{0};

  // How other threads reach this loop (channels, worker completions).
  std::shared_ptr<loop_link> link;
  // Set by another thread to make the next luaasio_poll return
  // LUAASIO_ESTOPPED (a worker asked to stop).
  std::atomic<bool> stop_requested{false};
};

} // namespace luaasio

struct luaasio_loop : luaasio::loop {};
