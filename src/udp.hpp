// Datagram sockets (asio.udp): one object per socket, in the loop's handle
// table like connections and servers.
#pragma once

#include "loop.hpp"

namespace luaasio {

struct udp final : object, std::enable_shared_from_this<udp> {
  static constexpr kind_t static_kind = udp_kind;
  explicit udp(loop &l);
  void close_all() noexcept override;

  // Creates the socket (IPv6 if `v6`), non-blocking and dual-stack
  // for IPv6, and applies the options set so far.
  int open_socket(bool v6);
  // Applies a LUAASIO_UDP_* option to the open socket.
  int apply(int option, int value);
  // The endpoint for ip:port in this socket's family, opening the socket
  // with the address's family if it is not open yet.
  int endpoint_for(const char *ip, int port, asio::ip::udp::endpoint &out);
  void start_wait(int dir);
  void on_wait(int dir);

  static constexpr int max_option = LUAASIO_UDP_TRANSPARENT;

  loop &owner;
  asio::ip::udp::socket sock;
  int32_t wait_slot[2] = {-1, -1};
  bool waiting[2] = {false, false};
  bool v6 = false;
  bool transparent = false;
  bool connected = false; // a peer is set: send needs no address
  // Options set before the socket existed, applied by open().
  int option_value[max_option + 1] = {};
  uint32_t option_set = 0;
  // The address of the last destination text parsed by a send, reused while
  // the text repeats (an echo or a forwarder answers the same few hosts).
  std::string last_ip;
  bool last_valid = false;
  asio::ip::udp::endpoint last_ep;
  // The last IPv4 sender's address and its text (see sender_text).
  uint32_t last_sender = 0;
  int last_sender_len = 0;
  char last_sender_text[16] = {};
};

} // namespace luaasio
