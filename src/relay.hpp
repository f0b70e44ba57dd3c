// Relays: both directions between two connections forwarded inside the
// library, with no Lua on the data path (asio.relay).
#pragma once

#include "conn.hpp"

#include <chrono>

namespace luaasio {

struct relay final : object, std::enable_shared_from_this<relay> {
  static constexpr kind_t static_kind = relay_kind;
  relay(loop &l, std::shared_ptr<conn> a, std::shared_ptr<conn> b, int32_t slot,
        double idle_seconds);
  ~relay() override;
  void close_all() noexcept override;

  // Starts both directions (and the idle timer); may throw before anything
  // was started.
  void start(bool use_splice);

  struct direction {
    int from = 0, to = 1;     // indexes into side[]
    int64_t bytes = 0;
    int end = 1;              // 1 while running, then a LUAASIO_* code
    std::unique_ptr<char[]> buf;
    size_t have = 0;          // buffered: bytes in buf not yet written
    size_t off = 0;
    int pipe_r = -1, pipe_w = -1;  // splice: the pipe between the sockets
    size_t in_pipe = 0;
  };

  void read_some(int d);
  void write_some(int d);
  void splice_pump(int d);
  void ended(int d, int code);
  void touch() { last = std::chrono::steady_clock::now(); }
  void arm_timer(std::chrono::steady_clock::duration after);

  loop &owner;
  std::shared_ptr<conn> side[2];
  direction dirs[2];
  int32_t slot;
  bool spliced = false;
  int failure = 0;            // the first error that ended a direction
  std::chrono::steady_clock::duration idle{};
  std::chrono::steady_clock::time_point last;
  asio::steady_timer timer;
};

} // namespace luaasio
