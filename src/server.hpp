// Listening sockets and their accept loop.
#pragma once

#include "conn.hpp"

namespace luaasio {

struct server final : object, std::enable_shared_from_this<server> {
  static constexpr kind_t static_kind = server_kind;
  explicit server(loop &l);
  void close_all() noexcept override;
  void accept_next();

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
};

} // namespace luaasio
