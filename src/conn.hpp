// Connections: a stream socket handed to Lua, with its readiness waits.
#pragma once

#include "reactor_wait.hpp"

namespace luaasio {

struct conn final : object, std::enable_shared_from_this<conn> {
  static constexpr kind_t static_kind = conn_kind;
  explicit conn(loop &l);
  void close_all() noexcept override;
  void start_wait(int dir);
#if LUAASIO_DIRECT_READ_WAIT
  // Queues read_wait on the epoll registration; only right after a read
  // found the socket empty (see reactor_wait.hpp).
  void queue_read_wait();
#endif

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
  bool tcp = false; // a TCP socket (not Unix); fits the padding here
  int32_t connect_slot = -1;
  // loop::runs when the last read returned EAGAIN (0: it did not)
  uint32_t eagain_at = 0;
  bool nodelay_pending = false; // TCP_NODELAY still to be set (see prepare_socket)
  bool wrote = false;
  bool rdhup_tried = false; // EPOLLRDHUP was asked for (see watch_peer_close in conn.cpp)
  bool rdhup = false;       // and is on: a short read may queue the read wait
  // The server that accepted it, while that counts its open connections.
  std::shared_ptr<struct server> accepted_by;
};

// Readies a connected or accepted socket of the given address family for
// Lua (non-blocking, TCP_NODELAY before the second write).
void prepare_socket(conn &c, int family);

} // namespace luaasio
