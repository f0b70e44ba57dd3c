// Name resolution through the system resolver (so /etc/hosts is honoured),
// on a pool of at most `max_threads` threads shared by every loop of the
// process. Lookups run concurrently, so one slow name delays no other.
// getaddrinfo() cannot be interrupted: a lookup abandoned by its timeout or
// its loop keeps its thread until the system gives up, its result is
// dropped, and nothing waits for it, not even the loop's destruction.
#include "loop.hpp"
#include "resolve.hpp"
#include "threads.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

#if defined(_WIN32)
#include <windows.h>
#include <ws2tcpip.h>
#else
#include <netdb.h>
#include <sys/socket.h>
#endif

namespace luaasio {

resolve_request::resolve_request(loop &l) : object(resolve_kind), owner(l) {}

namespace {

struct job {
  std::string host;
  int family;
  std::shared_ptr<loop_link> link;
  std::weak_ptr<resolve_request> request;
};

// Made on first use and never destroyed: detached threads may still be in
// getaddrinfo() when the process exits. For the same reason the library
// is never unmapped while loaded once (-z nodelete; pinned on Windows).
struct pool {
  static constexpr int max_threads = 8;
  std::mutex m;
  std::condition_variable cv;
  std::deque<job> jobs;
  int threads = 0;
  int idle = 0;
};

pool &the_pool() {
  static pool *p = new pool();
  return *p;
}

void lookup(job &j, std::vector<std::string> &out, int &code) {
  addrinfo hints{};
  hints.ai_family = j.family == LUAASIO_FAMILY_INET    ? AF_INET
                    : j.family == LUAASIO_FAMILY_INET6 ? AF_INET6
                                                       : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // No AI_ADDRCONFIG: a host without IPv6 routes must still resolve
  // "localhost" to ::1 when asked for IPv6.
  addrinfo *res = nullptr;
  int rc = getaddrinfo(j.host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    code = rc == EAI_MEMORY ? LUAASIO_ENOMEM : LUAASIO_ENOTRESOLVED;
    return;
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo *)> owner(res, freeaddrinfo);
  for (addrinfo *a = res; a; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = "";
    const void *addr = nullptr;
    if (a->ai_family == AF_INET)
      addr = &reinterpret_cast<sockaddr_in *>(a->ai_addr)->sin_addr;
    else if (a->ai_family == AF_INET6)
      addr = &reinterpret_cast<sockaddr_in6 *>(a->ai_addr)->sin6_addr;
    if (!addr || !inet_ntop(a->ai_family, const_cast<void *>(addr), text, sizeof text))
      continue;
    if (std::find(out.begin(), out.end(), text) == out.end())
      out.emplace_back(text);
  }
  code = out.empty() ? LUAASIO_ENOTRESOLVED : static_cast<int>(out.size());
}

// Hands the result to the request's loop, if both still exist.
void deliver(job &j, std::vector<std::string> addresses, int code) {
  std::lock_guard<std::mutex> g(j.link->m);
  loop *l = j.link->target;
  if (!l)
    return;
  // Copies of the request: if posting throws, a retry still names it.
  asio::post(l->ctx, [req = j.request, addresses = std::move(addresses), code]() mutable {
    std::shared_ptr<resolve_request> r = req.lock();
    if (!r || !r->open)
      return;
    r->addresses = std::move(addresses); // a move: nothing to allocate, nothing to throw
    r->owner.push(r->slot, code, r.get());
  });
}

// A lookup thread ends once it has had nothing to do for a moment, so an
// idle program keeps none (and a sanitizer or leak checker at exit finds
// none either); a burst of lookups reuses the threads it started.
void worker() {
  pool &p = the_pool();
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> g(p.m);
      ++p.idle;
      bool got = p.cv.wait_for(g, std::chrono::milliseconds(200), [&] { return !p.jobs.empty(); });
      --p.idle;
      if (!got) {
        --p.threads;
        return;
      }
      j = std::move(p.jobs.front());
      p.jobs.pop_front();
    }
    try {
      std::vector<std::string> addresses;
      int code = LUAASIO_ENOTRESOLVED;
      lookup(j, addresses, code);
      deliver(j, std::move(addresses), code);
    } catch (...) {
      try {
        deliver(j, {}, LUAASIO_ENOMEM);
      } catch (...) {
      }
    }
  }
}

void pin_library() {
#if defined(_WIN32)
  static bool pinned = [] {
    HMODULE self;
    GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                       reinterpret_cast<LPCSTR>(&pin_library), &self);
    return true;
  }();
  (void)pinned;
#endif
}

void submit(job j) {
  pin_library();
  pool &p = the_pool();
  std::lock_guard<std::mutex> g(p.m);
  p.jobs.push_back(std::move(j));
  if (p.idle < int(p.jobs.size()) && p.threads < pool::max_threads) {
    try {
      std::thread(worker).detach();
      ++p.threads;
    } catch (...) {
      if (p.threads == 0) {
        p.jobs.pop_back();
        throw;
      }
      // The threads there are will get to it.
    }
  }
  p.cv.notify_one();
}

} // namespace

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_resolve(luaasio_loop *l, int32_t slot, const char *host,
                                       int family) {
  if (!l || !host || slot < 0)
    return LUAASIO_EINVAL;
  if (family != LUAASIO_FAMILY_ANY && family != LUAASIO_FAMILY_INET &&
      family != LUAASIO_FAMILY_INET6)
    return LUAASIO_EINVAL;
  if (*host == '\0')
    return LUAASIO_ENOTRESOLVED;
  LUAASIO_TRY
  auto r = std::make_shared<resolve_request>(*l);
  r->slot = slot;
  job j{host, family, l->link, r};
  int32_t h = l->add(r);
  if (h < 0)
    return h;
  try {
    submit(std::move(j));
  } catch (...) {
    l->release(h);
    throw;
  }
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_resolve_results(luaasio_loop *l, int32_t h, char *buf, int cap) {
  if (!l || !buf || cap < 0)
    return LUAASIO_EINVAL;
  resolve_request *r = l->get<resolve_request>(h);
  if (!r)
    return LUAASIO_EBADF;
  int used = 0;
  for (const auto &a : r->addresses) {
    if (used + int(a.size()) + 1 > cap)
      break;
    std::memcpy(buf + used, a.c_str(), a.size() + 1);
    used += int(a.size()) + 1;
  }
  return used;
}
