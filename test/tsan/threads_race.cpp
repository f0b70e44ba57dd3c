// Data-race check of the code that threads share: worker start, stop and
// results, channels with waits across loops, shared dictionaries, and a
// loop freed while its worker runs. Built with -fsanitize=thread by
// test/tsan.sh.
//
// No LuaJIT is involved, so nothing uninstrumented can produce false
// reports: this program exports a stand-in for the few Lua C API functions
// that libluaasio looks up at run time, and its "Lua chunk" is C++ that
// drives the library through the same ABI that asio.lua uses.
#include "luaasio.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;
void check(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "threads_race: FAILED: %s\n", what);
    ++failures;
  }
}

// Waits on `loop` until an event for `slot` arrives (or the loop is asked
// to stop); returns false on a stop.
// Events of other slots seen meanwhile, per thread (each thread polls only
// its own loop): the owner checks for worker completions among them.
thread_local std::vector<int32_t> seen_elsewhere;

bool wait_for(luaasio_loop *loop, int32_t slot) {
  luaasio_event ev[16];
  for (int spins = 0; spins < 2000; ++spins) {
    int n = luaasio_poll(loop, ev, 16, 0.01);
    if (n == LUAASIO_ESTOPPED)
      return false;
    bool hit = false;
    for (int i = 0; i < n; ++i) {
      if (ev[i].slot == slot)
        hit = true;
      else
        seen_elsewhere.push_back(ev[i].slot);
    }
    if (hit)
      return true;
  }
  return false;
}

// Receives one message, waiting as a light thread would.
int recv_wait(luaasio_loop *loop, int32_t ch, char *buf, int cap) {
  for (;;) {
    int r = luaasio_channel_recv(loop, ch, 7, buf, cap, nullptr);
    if (r != LUAASIO_EAGAIN)
      return r;
    if (!wait_for(loop, 7))
      return LUAASIO_ESTOPPED;
  }
}

int send_wait(luaasio_loop *loop, int32_t ch, const char *data, int len) {
  for (;;) {
    int r = luaasio_channel_send(loop, ch, data, len, 8);
    if (r != LUAASIO_EAGAIN)
      return r;
    if (!wait_for(loop, 8))
      return LUAASIO_ESTOPPED;
  }
}

struct fake_state {
  std::string chunk, arg, result;
};

// What a worker "chunk" does, by its argument:
//   "echo IN OUT"  forward messages from channel IN to OUT until IN closes
//   "idle"         poll its own loop until asked to stop
std::string run_chunk(const std::string &arg) {
  luaasio_loop *loop = luaasio_loop_new();
  std::string result = "idle stopped";
  int in = 0, out = 0;
  if (std::sscanf(arg.c_str(), "echo %d %d", &in, &out) == 2) {
    char buf[256];
    int n = 0, r;
    while ((r = recv_wait(loop, in, buf, sizeof buf)) >= 0) {
      if (send_wait(loop, out, buf, r) != LUAASIO_OK)
        break;
      ++n;
    }
    result = "echoed " + std::to_string(n);
  } else {
    luaasio_event ev[4];
    while (luaasio_poll(loop, ev, 4, -1) != LUAASIO_ESTOPPED) {
    }
  }
  luaasio_loop_free(loop);
  return result;
}

} // namespace

// The stand-in Lua C API, found by dlsym in this executable (-rdynamic).
extern "C" {
__attribute__((visibility("default"))) void *luaL_newstate() { return new fake_state(); }
__attribute__((visibility("default"))) void luaL_openlibs(void *) {}
__attribute__((visibility("default"))) int luaL_loadbuffer(void *L, const char *b, size_t n,
                                                           const char *) {
  static_cast<fake_state *>(L)->chunk.assign(b, n);
  return 0;
}
__attribute__((visibility("default"))) void lua_pushlstring(void *L, const char *s, size_t n) {
  static_cast<fake_state *>(L)->arg.assign(s, n);
}
__attribute__((visibility("default"))) int lua_pcall(void *L, int, int, int) {
  auto *st = static_cast<fake_state *>(L);
  st->result = run_chunk(st->arg);
  return 0;
}
__attribute__((visibility("default"))) const char *lua_tolstring(void *L, int, size_t *n) {
  auto *st = static_cast<fake_state *>(L);
  *n = st->result.size();
  return st->result.c_str();
}
__attribute__((visibility("default"))) void lua_close(void *L) {
  delete static_cast<fake_state *>(L);
}
}

static std::string result_of(luaasio_loop *loop, int32_t th) {
  char buf[256];
  int n = luaasio_thread_result(loop, th, buf, sizeof buf, nullptr);
  return n >= 0 ? std::string(buf, size_t(n)) : "error";
}

int main() {
  check(luaasio_lua_api() == 1, "the stand-in Lua API is found");
  luaasio_loop *loop = luaasio_loop_new();
  const char *boot = "chunk";

  // 1. Two workers echo 20,000 messages through small channels, so that
  //    senders and receivers on three threads keep waiting for each other.
  int32_t in = luaasio_channel_new(4), out = luaasio_channel_new(4);
  std::string arg = "echo " + std::to_string(in) + " " + std::to_string(out);
  int32_t w1 = luaasio_thread_start(loop, 101, boot, 5, arg.data(), int(arg.size()));
  int32_t w2 = luaasio_thread_start(loop, 102, boot, 5, arg.data(), int(arg.size()));
  check(w1 > 0 && w2 > 0, "workers start");
  const int total = 20000;
  std::thread feeder([&] {
    luaasio_loop *l = luaasio_loop_new();
    for (int i = 0; i < total; ++i) {
      std::string m = std::to_string(i);
      send_wait(l, in, m.data(), int(m.size()));
    }
    luaasio_channel_close(in);
    luaasio_loop_free(l);
  });
  long long sum = 0;
  char buf[64];
  for (int i = 0; i < total; ++i) {
    int r = recv_wait(loop, out, buf, sizeof buf - 1);
    if (r < 0)
      break;
    buf[r] = 0;
    sum += std::atoll(buf);
  }
  feeder.join();
  check(sum == (long long)total * (total - 1) / 2, "every message echoed once");
  int done = 0;
  for (int32_t s : seen_elsewhere)
    if (s == 101 || s == 102)
      ++done;
  luaasio_event ev[8];
  for (int spins = 0; done < 2 && spins < 1000; ++spins) {
    int n = luaasio_poll(loop, ev, 8, 0.01);
    for (int i = 0; i < n; ++i)
      if (ev[i].slot == 101 || ev[i].slot == 102)
        ++done;
  }
  check(done == 2, "both workers finished");
  std::string r1 = result_of(loop, w1), r2 = result_of(loop, w2);
  check(r1.rfind("Oechoed ", 0) == 0 && r2.rfind("Oechoed ", 0) == 0, "worker results");
  luaasio_close(loop, w1);
  luaasio_close(loop, w2);
  luaasio_channel_close(out);
  luaasio_channel_release(in);
  luaasio_channel_release(out);

  // 2. Shared dictionary increments from four threads.
  int32_t d = luaasio_shdict_open("race", 1 << 20);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([d] {
      double v;
      for (int i = 0; i < 5000; ++i) {
        luaasio_shdict_incr(d, "n", 1, 1, 0, 1, 0, &v);
        std::string k = "k" + std::to_string(i % 100);
        luaasio_shdict_set(d, k.data(), int(k.size()), LUAASIO_SHDICT_STRING, "value", 5, 0, 0);
      }
    });
  for (auto &t : ts)
    t.join();
  double out3[3];
  luaasio_shdict_get(d, "n", 1, nullptr, 0, out3);
  check(out3[1] == 20000, "increments from four threads");

  // 3. A worker asked to stop ends, and its owner sees the event.
  int32_t idle = luaasio_thread_start(loop, 103, boot, 5, "idle", 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  luaasio_thread_stop(loop, idle);
  check(wait_for(loop, 103), "stopped worker reports");
  check(result_of(loop, idle) == "Oidle stopped", "stopped worker result");
  luaasio_close(loop, idle);

  // 4. Freeing a loop whose worker still runs stops and joins it.
  luaasio_thread_start(loop, 104, boot, 5, "idle", 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  luaasio_loop_free(loop);

  if (failures) return 1;
  std::puts("threads_race: ok");
  return 0;
}
