// Worker threads with Lua states of their own, and what lets loops of
// different threads reach each other (see docs/ARCHITECTURE.md, "Threads").
#pragma once

#include "loop.hpp"

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace luaasio {

// How another thread reaches a loop: it posts to the loop's io_context
// (which is thread-safe) while the loop exists. The loop clears `target`
// under the mutex before it is destroyed.
struct loop_link {
  std::mutex m;
  loop *target = nullptr;
};

// Queues an event {slot, 0} for the loop behind `link`, from any thread.
// Returns false when that loop is gone or the event could not be queued.
bool wake_loop(loop_link &link, int32_t slot) noexcept;

// What a worker thread and its owner share.
struct worker_shared {
  std::mutex m;
  loop *own_loop = nullptr; // the worker state's loop, while it exists
  bool stop = false;        // asked to stop: its loop's poll reports ESTOPPED
  std::string boot, arg, result;
  std::shared_ptr<loop_link> parent;
  int32_t slot = -1;
};

struct worker_thread final : object {
  static constexpr kind_t static_kind = thread_kind;
  explicit worker_thread(std::shared_ptr<worker_shared> s)
      : object(thread_kind), shared(std::move(s)) {}
  ~worker_thread() override;
  void close_all() noexcept override;

  std::shared_ptr<worker_shared> shared;
  std::thread th;
  bool finished = false; // its completion event was delivered
};

// Worker threads running now, in the whole process.
extern std::atomic<int> running_workers;

// Called by luaasio_loop_new/free: a loop made on a worker thread belongs
// to that worker, which can then ask it to stop.
void worker_loop_created(loop *l) noexcept;
void worker_loop_freed(loop *l) noexcept;

} // namespace luaasio
