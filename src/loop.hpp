// The loop: the handle table, the event queue and the io_context.
#pragma once

#include "object.hpp"

#include <array>
#include <deque>

namespace luaasio {

struct loop_link;

struct loop {
  loop();
  ~loop();

  // Handles are index | generation << 20 (1M live objects, 2048
  // generations), so a stale handle of a reused index is recognised and
  // rejected until the index has been reused 2048 times. Freed indexes are
  // reused first-in first-out, and only once `min_free` of them wait, so an
  // index comes back after at least that many other frees: a stale handle
  // could name a live object only after some two million closes.
  int32_t add(std::shared_ptr<object> obj);
  std::shared_ptr<object> release(int32_t handle) noexcept;
  static constexpr unsigned index_bits = 20;
  static constexpr uint32_t index_mask = (1u << index_bits) - 1;
  static constexpr uint32_t generation_mask = (1u << (31 - index_bits)) - 1;

  // The table index of a live handle, or table.size() when the handle is
  // malformed or stale. A handle is (index + 1) | generation << index_bits,
  // always > 0; an index part of 0 wraps to an index past any table.
  size_t index_of(int32_t handle) const noexcept {
    uint32_t index = (uint32_t(handle) & index_mask) - 1;
    if (handle <= 0 || index >= table.size())
      return table.size();
    const entry &e = table[index];
    if (!e.obj || (e.generation & generation_mask) != uint32_t(handle) >> index_bits)
      return table.size();
    return index;
  }

  // Inline: every read, write and wait looks its connection up.
  object *find(int32_t handle, object::kind_t kind) const noexcept {
    size_t index = index_of(handle);
    if (index == table.size())
      return nullptr;
    object *obj = table[index].obj.get();
    return obj->kind == kind ? obj : nullptr;
  }

  template <class T> T *get(int32_t handle) const noexcept {
    return static_cast<T *>(find(handle, T::static_kind));
  }

  // Queues an event for Lua. `source` and `dir` (a LUAASIO_WAIT_* value, or
  // -1 for the object's only operation) let purge() withdraw it. Never
  // throws: completion handlers call it, and an exception there would lose
  // the completion. luaasio_poll reserves room before it runs handlers; past
  // that, an event that cannot be stored waits in a fixed overflow array.
  void push(int32_t slot, int32_t result, const object *source, int dir = -1) noexcept;
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
  std::array<queued, 64> overflow;
  size_t noverflow = 0;
  // Servers that reached their accept budget for this poll, re-armed at the
  // start of the next one (capacity reserved per open server).
  std::vector<std::shared_ptr<object>> deferred;
  size_t open_servers = 0;
  uint32_t runs = 1; // counts the times luaasio_poll ran the io_context
  // ctx's reactor, once conn.cpp has looked it up: use_service() takes a
  // mutex and compares service names on every call.
  void *reactor = nullptr;

  struct entry {
    std::shared_ptr<object> obj;
    uint32_t generation = 0;
  };
  std::vector<entry> table;
  std::deque<uint32_t> free_indexes;
  static constexpr size_t min_free = 1024;
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
