// Relays: two connections forwarded to each other inside the library, both
// directions at once, with no Lua on the data path.
#pragma once

#include "conn.hpp"

#include <chrono>

namespace luaasio {

struct relay final : object, std::enable_shared_from_this<relay> {
  static constexpr kind_t static_kind = relay_kind;
  relay(loop &l, std::shared_ptr<conn> a, std::shared_ptr<conn> b, double idle, bool use_splice);
  ~relay() override;
  void close_all() noexcept override;

  void start(int32_t slot);

  // One direction: bytes read from side[from] are written to side[1 - from].
  struct direction {
    int from = 0;
    int end = 1;          // 1 while running, else LUAASIO_EOF or an error
    uint64_t bytes = 0;
    bool waiting = false; // a readiness wait or a posted step is in flight
    // Buffered path: bytes read but not yet written, [off, len) of buf. The
    // buffer exists only while it holds such bytes.
    std::unique_ptr<char[]> buf;
    size_t off = 0, len = 0;
    // Splice path (Linux). A direction holds a pipe only while bytes sit
    // in it or while it takes its steps; an empty one goes back to the
    // thread's spare pipes (see relay.cpp), so idle relays hold none.
    bool splice = false;
    struct pipe_fds {
      int rd = -1, wr = -1;
      size_t size = 0;  // its capacity: how much one splice may move
      bool big = false; // enlarged with F_SETPIPE_SZ, counted in the budget
    } pipe;
    size_t in_pipe = 0;
    bool backlog = false; // the last splice from the socket filled its request
  };

  void step(int d);
  bool step_buffered(int d, int &wait_side, int &wait_dir);
  bool step_splice(int d, int &wait_side, int &wait_dir);
  void wait(int d, int side, int dir);
  void ended(int d, int code);
  void fail_all(int code);
  void arm_timer();
  void cancel_timer() noexcept;
  void finish();
  void put_pipes() noexcept;

  loop &owner;
  std::shared_ptr<conn> side[2];
  direction dirs[2];
  asio::steady_timer timer;
  std::chrono::steady_clock::duration idle{};
  bool has_idle = false;
  std::chrono::steady_clock::time_point last_activity;
  int32_t slot = -1;
  bool done = false;
  bool counted = false; // counted among the thread's running relays
};

} // namespace luaasio
