// Allocation failure, one allocation at a time: for n = 1, 2, ... the n-th
// allocation after the start of a scenario throws std::bad_alloc, and the
// scenario must still end well. Built with the library's sources and
// ASan+UBSan by test/failalloc.sh.
//
// The scenario opens a loop and a server, connects to it, resolves a name,
// exchanges a byte and closes everything. Whatever failed, these must hold:
//  - no crash, no sanitizer report, no leak (LeakSanitizer at exit);
//  - an operation whose start succeeded reports its completion (a lost
//    completion would leave a light thread parked for ever);
//  - a server that was opened accepts the connection that reached it, even
//    if accepting failed once (the accept loop must re-arm); only a failure
//    inside Boost.Asio's own accept completion may drop that connection,
//    and then the server must accept the next one;
//  - after closing everything the loop has no live object.
#include "luaasio.h"

#include <atomic>
#include <climits>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <new>

namespace {
std::atomic<long> countdown{0}; // > 0: allocations left before one fails
std::atomic<bool> failed{false};

void *allocate(std::size_t n) {
  if (countdown.load() > 0 && countdown.fetch_sub(1) == 1) {
    failed = true;
    throw std::bad_alloc();
  }
  void *p = std::malloc(n ? n : 1);
  if (!p)
    throw std::bad_alloc();
  return p;
}
} // namespace

void *operator new(std::size_t n) { return allocate(n); }
void *operator new[](std::size_t n) { return allocate(n); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void *operator new[](std::size_t n, const std::nothrow_t &t) noexcept {
  return operator new(n, t);
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }

namespace {

constexpr int32_t connect_slot = 1, resolve_slot = 2, server_slot = 1 << 30;
int problems = 0;

void problem(int n, const char *what) {
  std::fprintf(stderr, "failalloc: allocation %d failing: %s\n", n, what);
  ++problems;
}

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Returns false once the failure point lies past the whole scenario.
bool scenario(int n) {
  failed = false;
  countdown = n;
  luaasio_loop *l = luaasio_loop_new();
  if (!l) {
    countdown = 0;
    return true;
  }
  int32_t srv = luaasio_server_open(l, server_slot, "127.0.0.1", 0, 16, 0);
  int port = srv > 0 ? luaasio_server_port(l, srv) : -1;
  int32_t c = port > 0 ? luaasio_connect(l, connect_slot, "127.0.0.1", port) : -1;
  int32_t r = luaasio_resolve(l, resolve_slot, "localhost", LUAASIO_FAMILY_INET);
  constexpr int none = -1000000; // no event yet
  int connect_result = none, resolve_result = none;
  int32_t accepted = -1;
  bool c_dropped = false;
  luaasio_event ev[16];
  double deadline = now() + 5;
  auto pending = [&] {
    return (c > 0 && connect_result == none) || (r > 0 && resolve_result == none) ||
           (c > 0 && connect_result == 0 && accepted < 0);
  };
  while (pending() && now() < deadline) {
    int k = luaasio_poll(l, ev, 16, 0.05);
    for (int i = 0; i < k; ++i) {
      if (ev[i].slot == connect_slot)
        connect_result = ev[i].result;
      else if (ev[i].slot == resolve_slot)
        resolve_result = ev[i].result;
      else if (ev[i].slot == server_slot && ev[i].result > 0 && accepted < 0)
        accepted = ev[i].result;
      else if (ev[i].slot == server_slot && ev[i].result > 0)
        luaasio_close(l, ev[i].result);
    }
  }
  if (c > 0 && connect_result == none)
    problem(n, "a started connect never reported");
  if (r > 0 && resolve_result == none)
    problem(n, "a started lookup never reported");
  if (c > 0 && connect_result == 0 && accepted < 0) {
    // The allocation failed inside Boost.Asio's own accept completion,
    // which drops that connection before any handler of ours runs. The
    // server must go on accepting: a second client must get through.
    int32_t c2 = luaasio_connect(l, 4, "127.0.0.1", port);
    double until = now() + 5;
    while (c2 > 0 && accepted < 0 && now() < until) {
      int k = luaasio_poll(l, ev, 16, 0.05);
      for (int i = 0; i < k; ++i)
        if (ev[i].slot == server_slot && ev[i].result > 0 && accepted < 0)
          accepted = ev[i].result;
        else if (ev[i].slot == server_slot && ev[i].result > 0)
          luaasio_close(l, ev[i].result);
    }
    if (accepted < 0)
      problem(n, "the server stopped accepting");
    if (c2 > 0)
      luaasio_close(l, c2);
    c_dropped = true;
  }
  if (c > 0 && connect_result == 0 && accepted > 0 && !c_dropped) {
    // One byte each way through waits, as a light thread would.
    if (luaasio_conn_write(l, c, "x", 0, 1) == 1) {
      char b;
      int got = LUAASIO_EAGAIN;
      while (got == LUAASIO_EAGAIN && now() < deadline) {
        got = luaasio_conn_read(l, accepted, &b, 1);
        if (got == LUAASIO_EAGAIN && luaasio_conn_wait(l, accepted, LUAASIO_WAIT_READ, 3) == 0) {
          bool woke = false;
          while (!woke && now() < deadline) {
            int k = luaasio_poll(l, ev, 16, 0.05);
            for (int i = 0; i < k; ++i)
              woke = woke || ev[i].slot == 3;
          }
          if (!woke)
            problem(n, "a started read wait never reported");
        } else if (got == LUAASIO_EAGAIN) {
          break; // starting the wait failed, as reported
        }
      }
    }
  }
  for (int32_t h : {c, r, accepted, srv})
    if (h > 0)
      luaasio_close(l, h);
  if (luaasio_loop_count(l) != 0)
    problem(n, "objects left in the loop after closing everything");
  luaasio_loop_free(l);
  bool reached = failed;
  countdown = 0;
  return reached;
}

} // namespace

int main(int argc, char **argv) {
  int limit = argc > 1 ? std::atoi(argv[1]) : 100000;
  int n = 1;
  for (; n <= limit; ++n)
    if (!scenario(n))
      break;
  std::printf("failalloc: the scenario makes %d allocations; each one failed in turn, %d problems\n",
              n - 1, problems);
  return problems ? 1 : 0;
}
