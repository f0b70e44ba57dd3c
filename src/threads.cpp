// Worker threads, each running a Lua state of its own, and moving sockets
// between loops. The Lua C API is looked up in the host process at run
// time, so the library links no Lua: a host that never starts a worker
// needs none of it.
#include "threads.hpp"
#include "conn.hpp"
#include "endpoint.hpp"

#include <cstring>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace luaasio {

namespace {

// The part of the Lua 5.1 C API a worker needs; lua_State stays opaque.
struct lua_api {
  void *(*newstate)();
  void (*openlibs)(void *);
  int (*loadbuffer)(void *, const char *, size_t, const char *);
  void (*pushlstring)(void *, const char *, size_t);
  int (*pcall)(void *, int, int, int);
  const char *(*tolstring)(void *, int, size_t *);
  void (*close)(void *);
  bool ok = false;
};

void *find_symbol(const char *name) {
#if defined(_WIN32)
  // LuaJIT's Windows builds keep the API in lua51.dll; a static host
  // exports it from the executable itself.
  HMODULE dll = GetModuleHandleA("lua51.dll");
  void *p = dll ? reinterpret_cast<void *>(GetProcAddress(dll, name)) : nullptr;
  if (!p)
    p = reinterpret_cast<void *>(GetProcAddress(GetModuleHandleA(nullptr), name));
  return p;
#else
  return dlsym(RTLD_DEFAULT, name);
#endif
}

template <class F> bool bind(F &f, const char *name) {
  f = reinterpret_cast<F>(find_symbol(name));
  return f != nullptr;
}

const lua_api &api() {
  // Looked up once; function-local statics are initialised thread-safely.
  static const lua_api a = [] {
    lua_api r{};
    r.ok = bind(r.newstate, "luaL_newstate") && bind(r.openlibs, "luaL_openlibs") &&
           bind(r.loadbuffer, "luaL_loadbuffer") && bind(r.pushlstring, "lua_pushlstring") &&
           bind(r.pcall, "lua_pcall") && bind(r.tolstring, "lua_tolstring") &&
           bind(r.close, "lua_close");
    return r;
  }();
  return a;
}

// The worker running on this thread, if any: a loop made here is its own.
thread_local worker_shared *this_worker = nullptr;

// Stops the worker's loop, if it has one yet; a loop made later sees `stop`.
void request_stop(worker_shared &w) noexcept {
  std::lock_guard<std::mutex> g(w.m);
  w.stop = true;
  if (w.own_loop) {
    w.own_loop->stop_requested.store(true, std::memory_order_relaxed);
    try {
      // Wakes a poll that waits with nothing to do.
      asio::post(w.own_loop->ctx, [] {});
    } catch (...) {
    }
  }
}

// The thread body. `result` starts with 'O' (the boot chunk returned a
// string: its bytes follow) or 'E' (an error message follows).
void worker_main(std::shared_ptr<worker_shared> w) {
  this_worker = w.get();
  running_workers.fetch_add(1);
  std::string result;
  try {
    const lua_api &a = api();
    void *L = a.newstate();
    if (!L) {
      result = "Ecannot create a Lua state (out of memory)";
    } else {
      a.openlibs(L);
      if (a.loadbuffer(L, w->boot.data(), w->boot.size(), "=asio.thread") != 0) {
        result = "E";
      } else {
        a.pushlstring(L, w->arg.data(), w->arg.size());
        result = a.pcall(L, 1, 1, 0) == 0 ? "O" : "E";
      }
      size_t n = 0;
      const char *s = a.tolstring(L, -1, &n);
      if (s)
        result.append(s, n);
      else if (result == "E")
        result += "(error object is not a string)";
      // Closing the state runs its finalizers, which free its loop.
      a.close(L);
    }
  } catch (...) {
    result = "Eout of memory in the worker thread";
  }
  this_worker = nullptr;
  {
    std::lock_guard<std::mutex> g(w->m);
    w->result = std::move(result);
    if (w->parent)
      wake_loop(*w->parent, w->slot);
  }
  running_workers.fetch_sub(1);
}

} // namespace

std::atomic<int> running_workers{0};

bool wake_loop(loop_link &link, int32_t slot) noexcept {
  std::lock_guard<std::mutex> g(link.m);
  loop *l = link.target;
  if (!l)
    return false;
  try {
    asio::post(l->ctx, [l, slot] { l->push(slot, LUAASIO_OK, nullptr); });
    return true;
  } catch (...) {
    return false;
  }
}

void worker_loop_created(loop *l) noexcept {
  worker_shared *w = this_worker;
  if (!w)
    return;
  std::lock_guard<std::mutex> g(w->m);
  if (w->own_loop)
    return; // a second loop in the same state: the first one answers stops
  w->own_loop = l;
  if (w->stop)
    l->stop_requested.store(true, std::memory_order_relaxed);
}

void worker_loop_freed(loop *l) noexcept {
  worker_shared *w = this_worker;
  if (!w)
    return;
  std::lock_guard<std::mutex> g(w->m);
  if (w->own_loop == l)
    w->own_loop = nullptr;
}

void worker_thread::close_all() noexcept {
  request_stop(*shared);
  // The owner waits for the thread: a worker outlives no loop that owns it.
  if (th.joinable() && th.get_id() != std::this_thread::get_id()) {
    try {
      th.join();
    } catch (...) {
    }
  }
}

worker_thread::~worker_thread() {
  if (th.joinable()) {
    request_stop(*shared);
    try {
      th.join();
    } catch (...) {
      th.detach();
    }
  }
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int luaasio_lua_api(void) {
  try {
    return api().ok ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

LUAASIO_EXPORT int32_t luaasio_thread_start(luaasio_loop *l, int32_t slot, const char *boot,
                                            int bootlen, const char *arg, int arglen) {
  if (!l || !boot || bootlen <= 0 || arglen < 0 || (!arg && arglen > 0) || slot < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  if (!api().ok)
    return LUAASIO_ENOLUA;
  auto w = std::make_shared<worker_shared>();
  w->boot.assign(boot, size_t(bootlen));
  if (arglen > 0)
    w->arg.assign(arg, size_t(arglen));
  w->parent = l->link;
  w->slot = slot;
  auto t = std::make_shared<worker_thread>(w);
  int32_t h = l->add(t);
  if (h < 0)
    return h;
  try {
    t->th = std::thread(worker_main, w);
  } catch (...) {
    l->release(h);
    return LUAASIO_ENOMEM;
  }
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_thread_result(luaasio_loop *l, int32_t h, char *buf, int cap,
                                         int *needed) {
  if (!l || cap < 0 || (!buf && cap > 0))
    return LUAASIO_EINVAL;
  worker_thread *t = l->get<worker_thread>(h);
  if (!t)
    return LUAASIO_EBADF;
  LUAASIO_TRY
  // The completion event is posted after the result is stored; joining
  // also makes the thread's last writes visible here.
  if (t->th.joinable())
    t->th.join();
  std::lock_guard<std::mutex> g(t->shared->m);
  const std::string &r = t->shared->result;
  if (r.size() > size_t(cap)) {
    if (needed)
      *needed = static_cast<int>(r.size());
    return LUAASIO_ETOOBIG;
  }
  if (!r.empty())
    std::memcpy(buf, r.data(), r.size());
  return static_cast<int>(r.size());
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_thread_stop(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  worker_thread *t = l->get<worker_thread>(h);
  if (!t)
    return LUAASIO_EBADF;
  request_stop(*t->shared);
  return LUAASIO_OK;
}

LUAASIO_EXPORT int luaasio_thread_load(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  worker_thread *t = l->get<worker_thread>(h);
  if (!t)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(t->shared->m);
  loop *w = t->shared->own_loop;
  return w ? w->live.load(std::memory_order_relaxed) : 0;
}

LUAASIO_EXPORT int64_t luaasio_conn_detach(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  if (c->connecting)
    return LUAASIO_ENOTCONN;
  LUAASIO_TRY
  int64_t socket_out;
#if defined(_WIN32)
  // A Windows socket stays tied to the completion port it was first used
  // with, and so do its duplicates: it cannot move to another loop.
  return LUAASIO_ENOTSUP;
#else
  // Nothing is pending on a socket handed over from an accept handler;
  // release() cancels whatever else might be, and leaves it open.
  error_code ec;
  int fd = c->sock.release(ec);
  if (ec || fd < 0)
    return map_error(ec);
  socket_out = fd;
#endif
  luaasio_close(l, h);
  return socket_out;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_socket_close(int64_t s) {
  if (s < 0)
    return LUAASIO_EINVAL;
#if defined(_WIN32)
  return closesocket(static_cast<SOCKET>(s)) == 0 ? LUAASIO_OK : LUAASIO_EBADF;
#else
  return ::close(static_cast<int>(s)) == 0 ? LUAASIO_OK : LUAASIO_EBADF;
#endif
}

LUAASIO_EXPORT int32_t luaasio_conn_adopt(luaasio_loop *l, int64_t s, int32_t slot) {
  if (!l || s < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  sockaddr_storage ss{};
#if defined(_WIN32)
  int sl = sizeof ss;
  if (getsockname(static_cast<SOCKET>(s), reinterpret_cast<sockaddr *>(&ss), &sl) != 0)
    return LUAASIO_EBADF;
#else
  socklen_t sl = sizeof ss;
  if (getsockname(static_cast<int>(s), reinterpret_cast<sockaddr *>(&ss), &sl) != 0)
    return LUAASIO_EBADF;
#endif
  int family = ss.ss_family;
  auto c = std::make_shared<conn>(*l);
  int32_t h = l->add(c);
  if (h < 0)
    return h;
  stream proto(family, family == AF_INET || family == AF_INET6 ? int(IPPROTO_TCP) : 0);
  error_code ec;
  c->sock.assign(proto, static_cast<stream::socket::native_handle_type>(s), ec);
  if (ec) {
    // Not taken: the socket stays the caller's.
    l->release(h);
    return map_error(ec);
  }
  prepare_socket(*c, family);
  if (slot >= 0) {
    try {
      l->push(slot, h, nullptr);
    } catch (...) {
      l->release(h); // closes the socket, which was handed over
      throw;
    }
  }
  return h;
  LUAASIO_CATCH
}
