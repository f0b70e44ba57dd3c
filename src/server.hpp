// Listening sockets and their accept loop.
#pragma once

#include "conn.hpp"

namespace luaasio {

// At most this many connections are accepted by one server per poll; the
// rest wait in the kernel's queue until Lua has seen these.
constexpr size_t server_accept_budget = 64;

struct server final : object, std::enable_shared_from_this<server> {
  static constexpr kind_t static_kind = server_kind;
  explicit server(loop &l);
  void close_all() noexcept override;
  // Starts the next accept; on failure (out of memory) retries later.
  // Never throws.
  void accept_next() noexcept;
  void retry_later() noexcept;
  // Hands the accepted connection in `pending` to Lua; false when out of
  // memory (it stays in `pending`).
  bool deliver_pending() noexcept;
  // After one accepted connection: accept the next one now, later in this
  // poll's budget, or not while max_connections are open.
  void after_accept() noexcept;
  // An accepted connection counted against max_connections closed.
  void conn_closed() noexcept;

  loop &owner;
  std::string unix_path; // removed again on close, if still ours
  // The socket file as bind() made it: only that file is removed on close
  // (fstat() of a socket describes the socket, never the file).
  uint64_t unix_dev = 0, unix_ino = 0;
  asio::basic_socket_acceptor<stream> acceptor;
  asio::steady_timer backoff;
  int32_t slot = -1;
  int family = 0;
  std::shared_ptr<conn> pending;
  uint32_t budget_run = 0;    // loop::runs that accepted_in_run counts for
  size_t accepted_in_run = 0;
  bool deferred = false;      // in loop::deferred, to re-arm at the next poll
  bool stalled = false;       // could not even arm its retry timer
  int max_conns = 0;          // 0: no limit
  int open_conns = 0;         // accepted and still open (counted with a limit)
  bool paused = false;        // at max_conns: not accepting
  bool counted_closed = false; // loop::open_servers already lowered
  // The accept in flight: `accepting` is set when it starts and cleared
  // when its handler runs; `ticket` dies with the handler. If an exception
  // inside Boost's accept completion destroys the handler without running
  // it, accepting is still set while the ticket has died:
  // recover_lost_accepts() then starts a new accept.
  bool accepting = false;
  std::weak_ptr<void> ticket;
};

// Re-arms the servers that used up their budget (or stalled) in the last
// poll; called by luaasio_poll before it runs handlers.
void rearm_deferred(loop &l) noexcept;

// After an exception escaped the io_context: restarts accepts whose
// handler was destroyed without running.
void recover_lost_accepts(loop &l) noexcept;

} // namespace luaasio
