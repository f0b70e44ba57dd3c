// The loop: handle table, event queue and luaasio_poll().
#include "loop.hpp"
#include "threads.hpp"
#include "server.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace luaasio {

// Only this loop's thread ever touches its sockets; other threads reach it
// by posting to the io_context, whose queue stays locked. So the reactor's
// per-socket mutexes are left out: they cost a lock and an unlock each time
// a wait is queued and each time a readiness event is handled.
loop::loop()
    : ctx(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO), keep_running(asio::make_work_guard(ctx)), link(std::make_shared<loop_link>()) {
  link->target = this;
}

loop::~loop() {
  {
    // No other thread posts to this loop from now on.
    std::lock_guard<std::mutex> g(link->m);
    link->target = nullptr;
  }
  for (auto &e : table)
    if (e.obj) {
      e.obj->open = false;
      e.obj->close_all();
    }
  // Objects still referenced by queued handlers die when ctx destroys those
  // handlers, which happens after this body (ctx is the first member).
  table.clear();
}

int32_t loop::add(std::shared_ptr<object> obj) {
  uint32_t index;
  if (free_indexes.size() >= min_free || (!free_indexes.empty() && table.size() >= index_mask)) {
    index = free_indexes.front();
    free_indexes.pop_front();
  } else {
    if (table.size() >= index_mask)
      return LUAASIO_EMFILE;
    table.emplace_back();
    index = static_cast<uint32_t>(table.size() - 1);
  }
  entry &e = table[index];
  e.obj = std::move(obj);
  live.store(live.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Index 0 is never used, so a handle is always > 0.
  return static_cast<int32_t>((index + 1) | ((e.generation & generation_mask) << index_bits));
}

std::shared_ptr<object> loop::release(int32_t handle) noexcept {
  size_t index = index_of(handle);
  if (index == table.size())
    return nullptr;
  entry &e = table[index];
  std::shared_ptr<object> obj = std::move(e.obj);
  e.generation++;
  live.store(live.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  try {
    free_indexes.push_back(static_cast<uint32_t>(index));
  } catch (...) {
    // The index is lost for reuse; the handle is still invalidated.
  }
  return obj;
}

void loop::push(int32_t slot, int32_t result, const object *source, int dir) noexcept {
  queued q{{slot, result}, source, dir};
  if (events.size() < events.capacity()) {
    events.push_back(q); // no allocation: cannot throw
    return;
  }
  try {
    events.push_back(q);
  } catch (...) {
    if (noverflow < overflow.size())
      overflow[noverflow++] = q;
    // else: 64 events already wait for memory; this one is lost, as only an
    // allocation failure during an allocation failure can cause.
  }
}

std::vector<int32_t> loop::purge(const object *source, int dir) {
  std::vector<int32_t> dropped;
  size_t keep = events_head;
  for (size_t i = events_head; i < events.size(); ++i) {
    const queued &q = events[i];
    if (q.source == source && (dir < 0 || q.dir == dir)) {
      if (source->kind == object::server_kind && q.ev.result > 0)
        dropped.push_back(q.ev.result);
      continue;
    }
    events[keep++] = q;
  }
  events.resize(keep);
  size_t okeep = 0;
  for (size_t i = 0; i < noverflow; ++i) {
    if (overflow[i].source == source && (dir < 0 || overflow[i].dir == dir)) {
      if (source->kind == object::server_kind && overflow[i].ev.result > 0)
        dropped.push_back(overflow[i].ev.result);
      continue;
    }
    overflow[okeep++] = overflow[i];
  }
  noverflow = okeep;
  return dropped;
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int luaasio_abi_version(void) { return LUAASIO_ABI_VERSION; }

LUAASIO_EXPORT int luaasio_event_size(void) { return sizeof(luaasio_event); }

LUAASIO_EXPORT double luaasio_now(void) {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

LUAASIO_EXPORT double luaasio_wall_time(void) {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

LUAASIO_EXPORT luaasio_loop *luaasio_loop_new(void) {
  try {
    auto *l = new luaasio_loop();
    worker_loop_created(l);
    return l;
  } catch (...) {
    return nullptr;
  }
}

LUAASIO_EXPORT void luaasio_loop_free(luaasio_loop *l) {
  if (l)
    worker_loop_freed(l);
  try {
    delete l;
  } catch (...) {
  }
}

LUAASIO_EXPORT int luaasio_loop_count(luaasio_loop *l) { return l ? l->live.load(std::memory_order_relaxed) : 0; }

LUAASIO_EXPORT int luaasio_poll(luaasio_loop *l, luaasio_event *out, int max,
                                double timeout) {
  if (!l || !out || max <= 0)
    return LUAASIO_EINVAL;
  if (l->stop_requested.load(std::memory_order_relaxed))
    return LUAASIO_ESTOPPED;
  try {
    if (l->events_head == l->events.size()) {
      l->events.clear();
      l->events_head = 0;
      // Room for every event this poll can produce without allocating in a
      // handler: a few per live object (two waits and a connect or lookup)
      // and the accept budget of each server. If that fails, nothing has run.
      l->events.reserve(size_t(l->live.load(std::memory_order_relaxed)) * 3 + 256 +
                        l->deferred.capacity() * server_accept_budget);
      for (size_t i = 0; i < l->noverflow; ++i)
        l->events.push_back(l->overflow[i]);
      l->noverflow = 0;
      rearm_deferred(*l);
      if (l->ctx.stopped())
        l->ctx.restart();
      if (++l->runs == 0)
        l->runs = 1;
      // A stop request from another thread posts a handler that wakes
      // run_one; the flag is what ends the wait.
      auto idle = [l] {
        return l->events.empty() && !l->stop_requested.load(std::memory_order_relaxed);
      };
      if (timeout < 0) {
        while (idle() && l->ctx.run_one() > 0) {
        }
      } else if (timeout > 0) {
        using namespace std::chrono;
        auto wait = duration_cast<steady_clock::duration>(
            duration<double>(std::min(timeout, 86400.0 * 365)));
        auto deadline = steady_clock::now() + wait;
        while (idle() && l->ctx.run_one_until(deadline) > 0) {
        }
      }
      // Collect everything else that is ready, so one call returns a batch.
      l->ctx.poll();
    }
    size_t n = std::min(static_cast<size_t>(max), l->events.size() - l->events_head);
    for (size_t i = 0; i < n; ++i)
      out[i] = l->events[l->events_head + i].ev;
    l->events_head += n;
    return static_cast<int>(n);
  } catch (const std::bad_alloc &) {
    recover_lost_accepts(*l);
    return LUAASIO_ENOMEM;
  } catch (...) {
    recover_lost_accepts(*l);
    return LUAASIO_ESYSTEM;
  }
}

LUAASIO_EXPORT int luaasio_close(luaasio_loop *l, int32_t handle) {
  if (!l)
    return LUAASIO_EINVAL;
  std::shared_ptr<object> obj = l->release(handle);
  if (!obj)
    return LUAASIO_EBADF;
  obj->open = false;
  obj->close_all();
  LUAASIO_TRY
  // Connections accepted but not yet delivered die with their server.
  for (int32_t h : l->purge(obj.get()))
    luaasio_close(l, h);
  return LUAASIO_OK;
  LUAASIO_CATCH
}
