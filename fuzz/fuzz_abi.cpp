// fuzz_abi: random sequences of ABI calls on one loop, checked against a model.
//
// Each input is a list of operations, an opcode byte followed by a few argument
// bytes (missing bytes read as 0, at most kMaxOps operations per input):
//   0 server open  fam, flags, backlog      9 address   handle, which, cap
//   1 connect      target, extra            10 orig dst  handle
//   2 poll         max, timeout             11 close     handle
//   3 read         handle, cap              12 count
//   4 write        handle, len, copy        13 server port handle
//   5 wait         handle, dir, sync        14 resolve   name, family
//   6 unwait       handle, dir              15 results   handle, cap
//   7 shutdown     handle, how              16 null/invalid arguments  which
//   8 setoption    handle, option, value    17 drain (poll until empty)
//                                           18 churn     cycles (open+close)
// Handles are picked from every handle seen in this input (live or closed),
// from live ones, as mutations of them (other generation, index, sign), or
// made up; the model knows which are live, so every call on anything else
// must return LUAASIO_EBADF (or LUAASIO_EINVAL when another argument is bad).
//
// The model also checks:
//  - every return value is >= 0 or a known LUAASIO_E* code, and no call but
//    luaasio_poll blocks the thread (each takes < 1 s);
//  - events: each slot is one the harness armed; no event for a slot after its
//    object was closed or its wait unwaited (the library withdraws queued
//    events then), nor for the old slot of a re-armed wait unless the event
//    queue may have held it (the last poll returned `max` events); one-shot
//    slots (connect, wait, resolve) report once; accepts give new handles;
//    connect results fit the target (refused for a closed port, ENOENT for a
//    missing Unix path, success/refused for a live server);
//  - luaasio_loop_count() equals the live objects whenever the queue is empty;
//  - data: every connection writes one fixed byte pattern from stream offset 0,
//    so every byte read must be the pattern at the reader's offset;
//  - TCP pairs are matched by port: a read gives EOF only after the peer shut
//    down or closed (or this side shut down reading); a read wait with unread
//    data, and a write wait on a fresh connected socket, must fire in time;
//  - buffers (read, address, orig dst, results, events) are exact-size heap
//    blocks, so any write past the given capacity is an ASan report.
// Network: servers bind 127.0.0.1:0, [::1]:0 or a path in the private temp
// dir; connects go only to those servers or to a bound, non-listening
// loopback port (the guard in common.cpp aborts on anything else). Polls use
// timeouts of 0..1 ms, so an input runs in milliseconds. The loop is freed at
// the end of every input, after the model has closed everything and checked
// that the loop is empty; LeakSanitizer checks the rest.
//
// A handle value that comes back after 128 reuses of its table index (the
// 7-bit generation wraps) names the new object; that is counted, not flagged.
//
// LUAASIO_FUZZ_SKIP_PRECONNECT_IO=1 makes the harness skip reads and writes on
// a connection whose connect has not been reported yet (see fuzz/README.md:
// in the library as found, such a read can block the thread, or take the
// pending connect error so that a refused connect is reported as success).
#include "common.hpp"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kMaxOps = 160;
constexpr size_t kMaxLive = 40;
constexpr size_t kMaxKnown = 512;
constexpr int kPeriod = 65521; // byte pattern period (prime)

bool skip_preconnect_io = false;
const unsigned char *pattern = nullptr; // 3 * kPeriod bytes, exact-size heap block

unsigned char pat(uint64_t pos) {
  uint64_t i = pos % kPeriod;
  return static_cast<unsigned char>((i * 7 + (i >> 8) * 13 + 0x5a) & 0xff);
}

enum kind_t { K_CONN, K_SERVER, K_RESOLVE };
enum target_t { T_NONE, T_SERVER, T_CLOSED_PORT, T_MISSING_PATH };
enum purpose_t { P_ACCEPT, P_CONNECT, P_WAIT, P_RESOLVE };
enum slot_state { S_ARMED, S_MAYBE, S_DEAD, S_DONE };

struct obj {
  int32_t h = 0;
  kind_t kind = K_CONN;
  bool live = true;
  int family = 4; // 4, 6, or 0 for Unix
  // server
  int port = 0;
  std::string path;
  int32_t slot = -1;
  // connection
  bool from_connect = false;
  bool connect_done = false;
  int connect_result = 0;
  target_t target = T_NONE;
  int target_port = 0;
  int local_port = 0;
  long peer = -1; // index of the other end, when known (TCP)
  uint64_t tx = 0, rx = 0;
  bool shut_rd = false, shut_wr = false, linger0 = false;
  int32_t wait_slot[2] = {-1, -1};
  // resolve
  int results = -100;
};

struct slot_info {
  purpose_t purpose;
  size_t obj;
  int dir;
  slot_state state;
};

struct stats_t {
  unsigned long inputs = 0, ops = 0, events = 0, accepts = 0, connects_ok = 0, reads_data = 0,
                writes_data = 0, badf = 0, reissued = 0, eagain_reads = 0, eof_reads = 0,
                skipped_preconnect = 0, waits_fired = 0, liveness_checks = 0;
  std::map<std::string, unsigned long> codes;
} stats;

void print_stats() {
  if (!fz::verbose())
    return;
  std::fprintf(stderr,
               "fuzz_abi stats: inputs %lu ops %lu events %lu accepts %lu connects_ok %lu "
               "reads_data %lu writes_data %lu badf %lu reissued %lu eagain_reads %lu "
               "eof_reads %lu skipped_preconnect %lu waits_fired %lu liveness %lu\n",
               stats.inputs, stats.ops, stats.events, stats.accepts, stats.connects_ok,
               stats.reads_data, stats.writes_data, stats.badf, stats.reissued,
               stats.eagain_reads, stats.eof_reads, stats.skipped_preconnect, stats.waits_fired,
               stats.liveness_checks);
  for (auto &c : stats.codes)
    std::fprintf(stderr, "  %-40s %lu\n", c.first.c_str(), c.second);
}

void note(const char *op, int rc) {
  if (!fz::verbose())
    return;
  stats.codes[std::string(op) + " " + (rc >= 0 ? "ok" : luaasio_strerror(rc))]++;
}

// Runs one ABI call that must not block (everything but luaasio_poll) and
// fails if it took longer than a second: the calls are documented as
// non-blocking, and a blocked call only returns here because libFuzzer's
// periodic SIGALRM interrupts it (the result is then LUAASIO_ESYSTEM).
template <class F> int timed(const char *what, F f) {
  double t0 = luaasio_now();
  int rc = f();
  double ms = (luaasio_now() - t0) * 1000;
  FZ_CHECK(ms < 1000, "%s blocked the thread for %.0f ms (returned %d, %s)", what, ms, rc,
           rc < 0 ? luaasio_strerror(rc) : "ok");
  return rc;
}
#define TIMED(what, call) timed(what, [&] { return (call); })

struct harness {
  luaasio_loop *l;
  fz::reader in;
  std::vector<obj> objs;
  std::unordered_map<int32_t, size_t> live; // handle -> objs index
  std::vector<int32_t> known;               // every handle seen, in order
  std::unordered_map<int32_t, slot_info> slots;
  std::vector<std::string> paths; // Unix socket files to remove
  int32_t next_slot = 1;
  bool queue_maybe_nonempty = false;
  int path_seq = 0;

  harness(const uint8_t *d, size_t n) : l(luaasio_loop_new()), in(d, n) {
    FZ_CHECK(l, "loop_new");
  }

  // --- model helpers -------------------------------------------------------

  void check_code(const char *what, int rc) {
    FZ_CHECK(fz::valid_code(rc), "%s returned %d", what, rc);
    note(what, rc);
  }

  size_t add_obj(int32_t h, kind_t k, bool remember = true) {
    FZ_CHECK(h > 0, "new handle %d", h);
    FZ_CHECK(!live.count(h), "handle %d handed out while still live", h);
    for (int32_t old : known)
      if (old == h) {
        stats.reissued++; // generation wrapped: allowed, the old object is gone
        break;
      }
    obj o;
    o.h = h;
    o.kind = k;
    objs.push_back(o);
    live[h] = objs.size() - 1;
    if (remember && known.size() < kMaxKnown)
      known.push_back(h);
    return objs.size() - 1;
  }

  int32_t new_slot(purpose_t p, size_t o, int dir) {
    int32_t s = next_slot++;
    slots[s] = {p, o, dir, S_ARMED};
    return s;
  }

  // Close and unwait withdraw events already queued (loop::purge), so their
  // slots are dead at once (`withdrawn`). A wait armed again with another slot
  // only re-targets the wait in flight: an event of the old slot that is
  // already queued may still be delivered.
  void cancel_slot(int32_t s, bool withdrawn) {
    auto it = slots.find(s);
    if (it != slots.end() && it->second.state == S_ARMED)
      it->second.state = queue_maybe_nonempty && !withdrawn ? S_MAYBE : S_DEAD;
  }

  obj *lookup(int32_t h, kind_t k) {
    auto it = live.find(h);
    if (it == live.end() || objs[it->second].kind != k)
      return nullptr;
    return &objs[it->second];
  }

  int32_t pick_handle() {
    int32_t h = pick_handle_raw();
    // An accepted connection still in the event queue is live in the library
    // but unknown here; a made-up handle must not name it, so while the
    // queue may hold events only handles that cannot exist are made up.
    if (queue_maybe_nonempty && h > 0 && !live.count(h))
      return 0x00ffffff;
    return h;
  }

  int32_t pick_handle_raw() {
    uint8_t b = in.u8();
    static const int32_t made_up[] = {0,          -1,         1,          2,
                                      INT32_MIN,  INT32_MAX,  0x00ffffff, 0x01000001,
                                      0x7f000001, 0x00000100, 0x02000002, -0x7fffff00};
    if (known.empty() || b >= 0xe0)
      return made_up[b % 12];
    if (b < 0x80)
      return known[b % known.size()];
    if (b < 0xc0 && !live.empty()) {
      auto it = live.begin();
      std::advance(it, b % live.size());
      return it->first;
    }
    int32_t h = known[b % known.size()];
    switch (b % 4) {
    case 0: return h ^ (1 << (24 + (b >> 2) % 7)); // another generation
    case 1: return h + 1;                         // the next index
    case 2: return int32_t(uint32_t(h) | 0x80000000u);
    default: return int32_t(uint32_t(h) & 0x00ffffff); // generation 0
    }
  }

  // A call on a handle that is not live (or of another kind) must fail with
  // EBADF, or EINVAL when `args_ok` is false.
  void expect_rejected(const char *what, int rc, bool args_ok) {
    check_code(what, rc);
    if (args_ok)
      FZ_CHECK(rc == LUAASIO_EBADF, "%s on a dead/foreign handle gave %d", what, rc);
    else
      FZ_CHECK(rc == LUAASIO_EBADF || rc == LUAASIO_EINVAL, "%s (bad args) gave %d", what, rc);
    stats.badf++;
  }

  bool connected(const obj &c) const {
    return !c.from_connect || (c.connect_done && c.connect_result == 0);
  }

  // --- events ----------------------------------------------------------------

  void on_event(const luaasio_event &ev) {
    stats.events++;
    auto it = slots.find(ev.slot);
    FZ_CHECK(it != slots.end(), "event for slot %d that was never armed (result %d)", ev.slot,
             ev.result);
    slot_info &s = it->second;
    FZ_CHECK(s.state != S_DEAD, "event on slot %d (purpose %d) after it was cancelled",
             ev.slot, s.purpose);
    FZ_CHECK(s.state != S_DONE, "second event on one-shot slot %d (purpose %d)", ev.slot,
             s.purpose);
    FZ_CHECK(fz::valid_code(ev.result), "event result %d", ev.result);
    switch (s.purpose) {
    case P_ACCEPT: {
      FZ_CHECK(ev.result > 0, "accept event result %d", ev.result);
      stats.accepts++;
      int family = objs[s.obj].family;
      size_t i = add_obj(ev.result, K_CONN);
      objs[i].family = family;
      pair_accepted(i, s.obj);
      break;
    }
    case P_CONNECT: {
      obj &c = objs[s.obj];
      FZ_CHECK(ev.result <= 0, "connect event result %d", ev.result);
      s.state = S_DONE;
      c.connect_done = true;
      c.connect_result = ev.result;
      if (ev.result == 0)
        stats.connects_ok++;
      note("connect-event", ev.result);
      switch (c.target) {
      case T_CLOSED_PORT:
        FZ_CHECK(ev.result == LUAASIO_ECONNREFUSED, "connect to a closed port gave %d (%s)",
                 ev.result, luaasio_strerror(ev.result));
        break;
      case T_MISSING_PATH:
        FZ_CHECK(ev.result == LUAASIO_ENOENT, "connect to a missing path gave %d (%s)",
                 ev.result, luaasio_strerror(ev.result));
        break;
      case T_SERVER:
        // Refused/reset if the server closed meanwhile; a full Unix backlog
        // makes Linux return EAGAIN, which Boost reports as ENOBUFS.
        FZ_CHECK(ev.result == 0 || ev.result == LUAASIO_ECONNREFUSED ||
                     ev.result == LUAASIO_ECONNRESET || ev.result == LUAASIO_ETIMEDOUT ||
                     (c.family == 0 && ev.result == LUAASIO_ENOMEM),
                 "connect to a listening server gave %d (%s)", ev.result,
                 luaasio_strerror(ev.result));
        if (ev.result == 0 && c.family != 0) {
          // Connected: the peer is the server (unless reset since).
          int port = address_port(c.h, 1);
          FZ_CHECK(port == c.target_port || port < 0, "connected to port %d, not %d", port,
                   c.target_port);
        }
        break;
      case T_NONE: break;
      }
      break;
    }
    case P_WAIT: {
      FZ_CHECK(ev.result == LUAASIO_OK, "wait event result %d", ev.result);
      s.state = S_DONE;
      obj &c = objs[s.obj];
      if (c.wait_slot[s.dir] == ev.slot)
        c.wait_slot[s.dir] = -1;
      stats.waits_fired++;
      break;
    }
    case P_RESOLVE: {
      FZ_CHECK(ev.result > 0 || ev.result == LUAASIO_ENOTRESOLVED,
               "resolve event result %d (%s)", ev.result, luaasio_strerror(ev.result));
      s.state = S_DONE;
      objs[s.obj].results = ev.result;
      break;
    }
    }
  }

  // Polls once; returns the number of events (or the error code).
  int poll(int max, double timeout) {
    if (max <= 0) {
      luaasio_event dummy;
      int rc = luaasio_poll(l, &dummy, max, timeout);
      FZ_CHECK(rc == LUAASIO_EINVAL, "poll with max %d gave %d", max, rc);
      return rc;
    }
    std::unique_ptr<luaasio_event[]> ev(new luaasio_event[size_t(max)]);
    int n = luaasio_poll(l, ev.get(), max, timeout);
    check_code("poll", n);
    FZ_CHECK(n >= 0 && n <= max, "poll returned %d for max %d", n, max);
    queue_maybe_nonempty = n == max;
    for (int i = 0; i < n; i++)
      on_event(ev[size_t(i)]);
    return n;
  }

  void drain() {
    for (int i = 0; i < 16; i++)
      if (poll(64, 0) < 64)
        break;
    if (!queue_maybe_nonempty)
      check_count();
  }

  void check_count() {
    int n = luaasio_loop_count(l);
    if (queue_maybe_nonempty)
      FZ_CHECK(n >= int(live.size()), "loop count %d < %zu live", n, live.size());
    else
      FZ_CHECK(n == int(live.size()), "loop count %d, model has %zu live", n, live.size());
  }

  // --- TCP pairing ---------------------------------------------------------

  int address_port(int32_t h, int which) {
    char buf[128];
    int port = -1;
    int rc = luaasio_conn_address(l, h, which, buf, sizeof buf, &port);
    return rc >= 0 ? port : -1;
  }

  void pair_accepted(size_t acc, size_t server) {
    if (objs[server].family == 0)
      return;
    int remote = address_port(objs[acc].h, 1);
    if (remote <= 0)
      return;
    for (size_t i = 0; i < objs.size(); i++) {
      obj &c = objs[i];
      if (c.kind == K_CONN && c.from_connect && c.peer < 0 && c.target == T_SERVER &&
          c.local_port == remote && c.target_port == objs[server].port &&
          c.family == objs[server].family) {
        c.peer = long(acc);
        objs[acc].peer = long(i);
        return;
      }
    }
  }

  // True when a read on `c` may legitimately report end of stream.
  bool eof_allowed(const obj &c) const {
    if (c.shut_rd || c.peer < 0)
      return true;
    const obj &p = objs[size_t(c.peer)];
    return !p.live || p.shut_wr;
  }

  // --- operations --------------------------------------------------------------

  void op_server_open() {
    uint8_t fam = in.u8(), fl = in.u8(), bl = in.u8();
    static const int backlogs[] = {0, -1, 1, 2, 5, 128, INT_MAX, 3};
    int backlog = backlogs[bl % 8];
    int flags = (fl & 0x80) ? int(0xffffff00u | fl) : (fl & 7);
    if (live.size() >= kMaxLive)
      return;
    int32_t slot = next_slot;
    switch (fam % 6) {
    case 0:
    case 1: {
      const char *host = fam % 6 == 0 ? "127.0.0.1" : "::1";
      if (fam % 6 == 1 && !fz::closed_port_v6())
        return;
      int32_t h = luaasio_server_open(l, slot, host, 0, backlog, flags);
      check_code("server_open", h);
      FZ_CHECK(h > 0, "server_open(%s, 0, backlog %d, flags %d) = %d", host, backlog, flags, h);
      size_t i = add_obj(h, K_SERVER);
      objs[i].family = fam % 6 == 0 ? 4 : 6;
      objs[i].port = luaasio_server_port(l, h);
      FZ_CHECK(objs[i].port > 0 && objs[i].port <= 65535, "server port %d", objs[i].port);
      objs[i].slot = new_slot(P_ACCEPT, i, 0);
      FZ_CHECK(objs[i].slot == slot, "slot bookkeeping");
      break;
    }
    case 2: {
      std::string path = fz::tmpdir() + "/s" + std::to_string(getpid()) + "-" +
                         std::to_string(path_seq++);
      int32_t h = luaasio_server_open_unix(l, slot, path.c_str(), backlog);
      check_code("server_open_unix", h);
      FZ_CHECK(h > 0, "server_open_unix(%s) = %d", path.c_str(), h);
      paths.push_back(path);
      size_t i = add_obj(h, K_SERVER);
      objs[i].family = 0;
      objs[i].path = path;
      FZ_CHECK(luaasio_server_port(l, h) == 0, "unix server port");
      objs[i].slot = new_slot(P_ACCEPT, i, 0);
      break;
    }
    case 3: {
      int32_t h = luaasio_server_open(l, slot, (fl & 1) ? "localhost" : "1.2.3", 0, backlog,
                                      flags);
      FZ_CHECK(h == LUAASIO_EBADADDR, "server_open(bad host) = %d", h);
      break;
    }
    case 4: {
      static const int ports[] = {-1, 65536, INT_MAX, INT_MIN};
      int32_t h = luaasio_server_open(l, slot, "127.0.0.1", ports[fl % 4], backlog, flags);
      FZ_CHECK(h == LUAASIO_EINVAL, "server_open(bad port) = %d", h);
      break;
    }
    case 5: {
      int32_t h = luaasio_server_open(l, -1 - (fl & 3), "127.0.0.1", 0, backlog, flags);
      FZ_CHECK(h == LUAASIO_EINVAL, "server_open(negative slot) = %d", h);
      h = luaasio_server_open_unix(l, -1, "/nonexistent", backlog);
      FZ_CHECK(h == LUAASIO_EINVAL, "server_open_unix(negative slot) = %d", h);
      break;
    }
    }
  }

  void op_connect() {
    uint8_t t = in.u8(), extra = in.u8();
    if (live.size() >= kMaxLive)
      return;
    std::vector<size_t> servers;
    for (size_t i = 0; i < objs.size(); i++)
      if (objs[i].kind == K_SERVER)
        servers.push_back(i);
    size_t choice = t % (servers.size() + 5);
    int32_t slot = next_slot;
    int32_t h;
    obj proto;
    proto.from_connect = true;
    if (choice < servers.size()) {
      obj &s = objs[servers[choice]];
      proto.family = s.family;
      if (s.family == 0) {
        // A closed server's file is removed: that connect gets ENOENT.
        proto.target = s.live ? T_SERVER : T_MISSING_PATH;
        h = luaasio_connect_unix(l, slot, s.path.c_str());
      } else if (s.live) {
        proto.target = T_SERVER;
        proto.target_port = s.port;
        h = luaasio_connect(l, slot, s.family == 4 ? "127.0.0.1" : "::1", s.port);
      } else {
        // Never a dead server's port: another process may own it by now.
        proto.target = T_CLOSED_PORT;
        h = luaasio_connect(l, slot, s.family == 4 ? "127.0.0.1" : "::1",
                            s.family == 4 ? fz::closed_port_v4() : fz::closed_port_v6());
      }
    } else {
      switch (choice - servers.size()) {
      case 0:
        proto.target = T_CLOSED_PORT;
        h = luaasio_connect(l, slot, "127.0.0.1", fz::closed_port_v4());
        break;
      case 1:
        if (!fz::closed_port_v6())
          return;
        proto.target = T_CLOSED_PORT;
        proto.family = 6;
        h = luaasio_connect(l, slot, "::1", fz::closed_port_v6());
        break;
      case 2: {
        proto.target = T_MISSING_PATH;
        proto.family = 0;
        std::string p = fz::tmpdir() + "/missing";
        h = luaasio_connect_unix(l, slot, p.c_str());
        break;
      }
      case 3: {
        static const char *bad[] = {"", "x", "127.0.0.256", "::g", "1.2.3", "[::1]", " 1.2.3.4",
                                    "127.0.0.1:80"};
        h = luaasio_connect(l, slot, bad[extra % 8], 80);
        FZ_CHECK(h == LUAASIO_EBADADDR, "connect('%s') = %d", bad[extra % 8], h);
        return;
      }
      default: {
        static const int ports[] = {0, -1, 65536, INT_MIN};
        h = luaasio_connect(l, slot, "127.0.0.1", ports[extra % 4]);
        FZ_CHECK(h == LUAASIO_EBADADDR, "connect(port %d) = %d", ports[extra % 4], h);
        int32_t u = luaasio_connect_unix(l, slot, "");
        FZ_CHECK(u == LUAASIO_EBADADDR, "connect_unix('') = %d", u);
        std::string longp(108 + extra % 8, 'a');
        u = luaasio_connect_unix(l, slot, longp.c_str());
        FZ_CHECK(u == LUAASIO_EBADADDR, "connect_unix(long) = %d", u);
        return;
      }
      }
    }
    check_code("connect", h);
    FZ_CHECK(h > 0, "connect = %d", h);
    size_t i = add_obj(h, K_CONN);
    proto.h = h;
    objs[i] = proto;
    objs[i].slot = new_slot(P_CONNECT, i, 0);
    FZ_CHECK(objs[i].slot == slot, "slot bookkeeping");
    if (proto.family != 0)
      objs[i].local_port = address_port(h, 0);
  }

  void op_poll() {
    uint8_t m = in.u8(), t = in.u8();
    static const int maxes[] = {1, 2, 3, 8, 64, 1, 0, -1};
    // Mostly no waiting: loopback events are ready at once, and sleeping
    // polls would dominate the run time.
    static const double timeouts[] = {0.0, 1e-4, 0.0, NAN, -0.0, 1e-300, 1e-3, 0.0};
    poll(maxes[m % 8], timeouts[t % 8]);
  }

  void op_read() {
    int32_t h = pick_handle();
    uint8_t c = in.u8();
    static const int caps[] = {1, 2, 3, 16, 100, 1500, 4096, 65536, 200000, 7, 0, -1};
    int cap = caps[c % 12];
    obj *o = lookup(h, K_CONN);
    if (o && skip_preconnect_io && o->from_connect && !o->connect_done) {
      stats.skipped_preconnect++;
      return;
    }
    std::unique_ptr<char[]> buf(new char[cap > 0 ? size_t(cap) : 1]);
    int rc = TIMED("read", luaasio_conn_read(l, h, buf.get(), cap));
    if (!o) {
      expect_rejected("read", rc, cap > 0);
      return;
    }
    check_code("read", rc);
    if (cap <= 0) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "read cap %d gave %d", cap, rc);
      return;
    }
    FZ_CHECK(rc != 0, "read returned 0 (EOF must be LUAASIO_EOF)");
    if (rc > 0) {
      FZ_CHECK(rc <= cap, "read %d > cap %d", rc, cap);
      for (int i = 0; i < rc; i++)
        FZ_CHECK(static_cast<unsigned char>(buf[size_t(i)]) == pat(o->rx + uint64_t(i)),
                 "data corrupted: handle %d byte %llu", h,
                 static_cast<unsigned long long>(o->rx + uint64_t(i)));
      o->rx += uint64_t(rc);
      stats.reads_data++;
    } else if (rc == LUAASIO_EOF) {
      stats.eof_reads++;
      FZ_CHECK(eof_allowed(*o), "EOF on handle %d while the peer is open (rx %llu)", h,
               static_cast<unsigned long long>(o->rx));
    } else if (rc == LUAASIO_EAGAIN) {
      stats.eagain_reads++;
    }
  }

  void op_write() {
    int32_t h = pick_handle();
    uint8_t lb = in.u8(), k = in.u8();
    static const int lens[] = {1, 2, 7, 100, 1000, 4096, 16384, kPeriod, 40000, 3, 0, -1};
    int len = lens[lb % 12];
    obj *o = lookup(h, K_CONN);
    if (o && skip_preconnect_io && o->from_connect && !o->connect_done) {
      stats.skipped_preconnect++;
      return;
    }
    uint64_t tx = o ? o->tx : 0;
    int offset = int(tx % kPeriod) + (k & 1) * kPeriod;
    const char *data = reinterpret_cast<const char *>(pattern);
    bool args_ok = len >= 0;
    if (k & 0x80) { // invalid arguments
      if (k & 0x40)
        data = nullptr;
      else
        offset = -1 - (k & 3);
      args_ok = false;
    }
    int rc = TIMED("write", luaasio_conn_write(l, h, data, offset, len));
    if (!o) {
      expect_rejected("write", rc, args_ok);
      return;
    }
    check_code("write", rc);
    if (!args_ok) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "write with bad args gave %d", rc);
      return;
    }
    if (len == 0) {
      FZ_CHECK(rc == 0, "write of 0 bytes gave %d", rc);
      return;
    }
    FZ_CHECK(rc != 0, "write returned 0 for %d bytes", len);
    if (rc > 0) {
      FZ_CHECK(rc <= len, "wrote %d > %d", rc, len);
      o->tx += uint64_t(rc);
      stats.writes_data++;
    }
  }

  void op_wait() {
    int32_t h = pick_handle();
    uint8_t d = in.u8(), sync = in.u8();
    int dir = d % 4 < 2 ? d % 4 : (d % 4 == 2 ? 2 : -1);
    obj *o = lookup(h, K_CONN);
    bool args_ok = dir == 0 || dir == 1;
    if ((sync & 0xf) == 0xf) { // a negative slot
      int rc = luaasio_conn_wait(l, h, args_ok ? dir : 0, -1 - (sync >> 4));
      FZ_CHECK(rc == LUAASIO_EINVAL, "wait with a negative slot gave %d", rc);
      return;
    }
    int32_t slot = next_slot;
    int rc = luaasio_conn_wait(l, h, dir, slot);
    if (!o) {
      expect_rejected("wait", rc, args_ok);
      return;
    }
    check_code("wait", rc);
    if (!args_ok) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "wait dir %d gave %d", dir, rc);
      return;
    }
    FZ_CHECK(rc == LUAASIO_OK, "wait gave %d", rc);
    size_t idx = live[h];
    if (o->wait_slot[dir] >= 0)
      cancel_slot(o->wait_slot[dir], false); // re-targeted
    int32_t s = new_slot(P_WAIT, idx, dir);
    FZ_CHECK(s == slot, "slot bookkeeping");
    o->wait_slot[dir] = s;
    if (!(sync & 1))
      return;

    // Liveness: readiness that certainly exists must be reported promptly.
    bool must_fire = false;
    if (dir == 1)
      must_fire = connected(*o) && o->tx == 0 && o->family != 0;
    else if (o->peer >= 0) {
      const obj &p = objs[size_t(o->peer)];
      must_fire = p.tx > o->rx || !p.live || p.shut_wr;
    }
    for (int i = 0; i < (must_fire ? 1000 : 2) && slots[s].state == S_ARMED; i++)
      poll(64, must_fire ? 0.001 : 0.0002);
    if (must_fire) {
      stats.liveness_checks++;
      FZ_CHECK(slots[s].state == S_DONE, "%s wait on handle %d never fired",
               dir ? "write" : "read", h);
    }
  }

  void op_unwait() {
    int32_t h = pick_handle();
    uint8_t d = in.u8();
    int dir = d % 4 < 2 ? d % 4 : (d % 4 == 2 ? 2 : -1);
    obj *o = lookup(h, K_CONN);
    bool args_ok = dir == 0 || dir == 1;
    int rc = luaasio_conn_unwait(l, h, dir);
    if (!o) {
      expect_rejected("unwait", rc, args_ok);
      return;
    }
    check_code("unwait", rc);
    if (!args_ok) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "unwait dir %d gave %d", dir, rc);
      return;
    }
    FZ_CHECK(rc == LUAASIO_OK, "unwait gave %d", rc);
    if (o->wait_slot[dir] >= 0)
      cancel_slot(o->wait_slot[dir], true);
    o->wait_slot[dir] = -1;
  }

  void op_shutdown() {
    int32_t h = pick_handle();
    uint8_t b = in.u8();
    static const int hows[] = {0, 1, 2, 3, -1, 0, 1, 2};
    int how = hows[b % 8];
    obj *o = lookup(h, K_CONN);
    int rc = TIMED("shutdown", luaasio_conn_shutdown(l, h, how));
    if (!o) {
      expect_rejected("shutdown", rc, true);
      return;
    }
    check_code("shutdown", rc);
    if (how < 0 || how > 2) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "shutdown how %d gave %d", how, rc);
      return;
    }
    if (rc == LUAASIO_OK) {
      if (how != 1)
        o->shut_rd = true;
      if (how != 0)
        o->shut_wr = true;
    }
  }

  void op_setoption() {
    int32_t h = pick_handle();
    uint8_t ob = in.u8(), vb = in.u8();
    int option = ob % 7; // 0 and 6 are invalid
    static const int flags_v[] = {0, 1, -1, 7};
    static const int buf_v[] = {1, 1024, 4096, 65536, INT_MAX, 0, -1, 100};
    // LINGER only off or 0 (reset on close): a positive linger time makes
    // close() block on Linux while unsent data remains.
    static const int linger_v[] = {-1, 0, -5, INT_MIN};
    int value = option == 3 || option == 4 ? buf_v[vb % 8]
                : option == 5              ? linger_v[vb % 4]
                                           : flags_v[vb % 4];
    obj *o = lookup(h, K_CONN);
    int rc = TIMED("setoption", luaasio_conn_setoption(l, h, option, value));
    if (!o) {
      expect_rejected("setoption", rc, true);
      return;
    }
    check_code("setoption", rc);
    bool bad = option == 0 || option == 6 || ((option == 3 || option == 4) && value <= 0);
    if (bad) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "setoption(%d, %d) gave %d", option, value, rc);
      return;
    }
    if (option == 5 && rc == LUAASIO_OK)
      o->linger0 = value == 0;
  }

  void op_address() {
    int32_t h = pick_handle();
    uint8_t w = in.u8(), c = in.u8();
    static const int which_v[] = {0, 1, 2, -1};
    static const int caps[] = {1, 2, 5, 10, 16, 46, 64, 128, 0, -1};
    int which = which_v[w % 4];
    int cap = caps[c % 10];
    std::unique_ptr<char[]> buf(new char[cap > 0 ? size_t(cap) : 1]);
    int port = -7;
    bool null_port = (w & 0x80) != 0;
    int rc = luaasio_conn_address(l, h, which, buf.get(), cap, null_port ? nullptr : &port);
    obj *o = lookup(h, K_CONN);
    bool args_ok = cap > 0 && !null_port;
    if (!o) {
      expect_rejected("address", rc, args_ok);
      return;
    }
    check_code("address", rc);
    if (!args_ok) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "address with bad args gave %d", rc);
      return;
    }
    if (rc < 0)
      return;
    FZ_CHECK(rc < cap && std::strlen(buf.get()) == size_t(rc), "address length %d cap %d", rc,
             cap);
    if (o->family == 0) {
      FZ_CHECK(port == 0, "unix address port %d", port);
      return;
    }
    FZ_CHECK(port >= 0 && port <= 65535, "port %d", port);
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(buf.get(), ec);
    FZ_CHECK(!ec, "address text '%s' does not parse", buf.get());
    FZ_CHECK(a.is_loopback() || a.is_unspecified(), "address '%s' is not loopback", buf.get());
    // (A TCP socket gives its port up when the connection fails or resets.)
    if (which == 0 && o->local_port > 0)
      FZ_CHECK(port == o->local_port || port == 0, "local port changed: %d -> %d",
               o->local_port, port);
  }

  void op_original_dst() {
    int32_t h = pick_handle();
    bool null_buf = in.u8() & 1;
    std::unique_ptr<char[]> buf(new char[LUAASIO_SOCKADDR_SIZE]);
    int rc = luaasio_conn_original_dst(l, h, null_buf ? nullptr : buf.get());
    obj *o = lookup(h, K_CONN);
    if (!o) {
      expect_rejected("original_dst", rc, !null_buf);
      return;
    }
    check_code("original_dst", rc);
    if (null_buf) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "original_dst(NULL) gave %d", rc);
      return;
    }
    if (rc >= 0) {
      FZ_CHECK(rc == LUAASIO_SOCKADDR_SIZE, "original_dst returned %d", rc);
      char ip[128];
      int port;
      int f = luaasio_sockaddr_parse(buf.get(), rc, ip, sizeof ip, &port);
      FZ_CHECK(f == 4 || f == 6, "original_dst result does not decode: %d", f);
    }
  }

  void close_obj(size_t i) {
    obj &o = objs[i];
    live.erase(o.h);
    o.live = false;
    cancel_slot(o.slot, true);
    if (o.kind == K_CONN)
      for (int d = 0; d < 2; d++)
        if (o.wait_slot[d] >= 0)
          cancel_slot(o.wait_slot[d], true);
    if (o.kind == K_SERVER && !o.path.empty())
      unlink(o.path.c_str()); // the library removes it too
  }

  void op_close() {
    int32_t h = pick_handle();
    auto it = live.find(h);
    int rc = TIMED("close", luaasio_close(l, h));
    if (it == live.end()) {
      FZ_CHECK(rc == LUAASIO_EBADF, "close of a dead handle %d gave %d", h, rc);
      stats.badf++;
      return;
    }
    FZ_CHECK(rc == LUAASIO_OK, "close gave %d", rc);
    close_obj(it->second);
    int again = luaasio_close(l, h);
    FZ_CHECK(again == LUAASIO_EBADF, "second close gave %d", again);
  }

  void op_server_port() {
    int32_t h = pick_handle();
    int rc = luaasio_server_port(l, h);
    obj *o = lookup(h, K_SERVER);
    if (!o) {
      expect_rejected("server_port", rc, true);
      return;
    }
    check_code("server_port", rc);
    FZ_CHECK(rc == (o->family == 0 ? 0 : o->port), "server port %d, was %d", rc, o->port);
  }

  void op_resolve() {
    uint8_t nb = in.u8(), fb = in.u8();
    // Numeric literals only: no DNS.
    static const char *names[] = {"127.0.0.1", "::1", "10.0.0.1", "2001:db8::1",
                                  "::ffff:1.2.3.4", "127.1", "0x7f000001", "fe80::1%1"};
    static const int fams[] = {0, 4, 6, 0, 5, -1};
    const char *name = names[nb % 8];
    int family = fams[fb % 6];
    if (live.size() >= kMaxLive)
      return;
    int32_t slot = next_slot;
    int32_t h = luaasio_resolve(l, slot, name, family);
    check_code("resolve", h);
    if (family != 0 && family != 4 && family != 6) {
      FZ_CHECK(h == LUAASIO_EINVAL, "resolve family %d gave %d", family, h);
      return;
    }
    if (fb & 0x80) {
      int32_t e = luaasio_resolve(l, -1, name, family);
      FZ_CHECK(e == LUAASIO_EINVAL, "resolve with negative slot gave %d", e);
      e = luaasio_resolve(l, slot, "", family);
      FZ_CHECK(e == LUAASIO_ENOTRESOLVED, "resolve('') gave %d", e);
    }
    FZ_CHECK(h > 0, "resolve('%s', %d) = %d", name, family, h);
    size_t i = add_obj(h, K_RESOLVE);
    objs[i].slot = new_slot(P_RESOLVE, i, 0);
  }

  void op_results() {
    int32_t h = pick_handle();
    uint8_t c = in.u8();
    static const int caps[] = {0, 1, 5, 10, 16, 64, 4096, -1};
    int cap = caps[c % 8];
    std::unique_ptr<char[]> buf(new char[cap > 0 ? size_t(cap) : 1]);
    int rc = luaasio_resolve_results(l, h, buf.get(), cap);
    obj *o = lookup(h, K_RESOLVE);
    if (!o) {
      expect_rejected("resolve_results", rc, cap >= 0);
      return;
    }
    check_code("resolve_results", rc);
    if (cap < 0) {
      FZ_CHECK(rc == LUAASIO_EINVAL, "results cap %d gave %d", cap, rc);
      return;
    }
    FZ_CHECK(rc >= 0 && rc <= cap, "results used %d of %d", rc, cap);
    int entries = 0;
    for (int i = 0; i < rc; entries++) {
      size_t n = strnlen(buf.get() + i, size_t(rc - i));
      FZ_CHECK(i + int(n) < rc, "result entry not NUL-terminated");
      boost::system::error_code ec;
      boost::asio::ip::make_address(buf.get() + i, ec);
      FZ_CHECK(!ec, "result '%s' does not parse", buf.get() + i);
      i += int(n) + 1;
    }
    if (o->results > 0)
      FZ_CHECK(entries <= o->results, "%d entries, event said %d", entries, o->results);
    if (o->results > 0 && cap == 4096)
      FZ_CHECK(entries == o->results, "%d entries, event said %d", entries, o->results);
  }

  void op_null_args() {
    uint8_t w = in.u8();
    char buf[16];
    int port;
    luaasio_event ev;
    int32_t h = known.empty() ? 1 : known[w % known.size()];
    int rc = 0;
    switch (w % 20) {
    case 0: rc = luaasio_poll(nullptr, &ev, 1, 0); break;
    case 1: rc = luaasio_poll(l, nullptr, 1, 0); break;
    case 2: rc = luaasio_close(nullptr, h); break;
    case 3: rc = luaasio_server_open(nullptr, 1, "127.0.0.1", 0, 0, 0); break;
    case 4: rc = luaasio_server_open(l, 1, nullptr, 0, 0, 0); break;
    case 5: rc = luaasio_server_open_unix(nullptr, 1, "x", 0); break;
    case 6: rc = luaasio_server_open_unix(l, 1, nullptr, 0); break;
    case 7: rc = luaasio_server_port(nullptr, h); break;
    case 8: rc = luaasio_connect(nullptr, 1, "127.0.0.1", 1); break;
    case 9: rc = luaasio_connect(l, 1, nullptr, 1); break;
    case 10: rc = luaasio_connect_unix(nullptr, 1, "x"); break;
    case 11: rc = luaasio_connect_unix(l, 1, nullptr); break;
    case 12: rc = luaasio_conn_read(nullptr, h, buf, sizeof buf); break;
    case 13: rc = luaasio_conn_write(nullptr, h, buf, 0, 1); break;
    case 14: rc = luaasio_conn_wait(nullptr, h, 0, 1); break;
    case 15: rc = luaasio_conn_shutdown(nullptr, h, 2); break;
    case 16: rc = luaasio_conn_setoption(nullptr, h, 1, 1); break;
    case 17: rc = luaasio_conn_address(nullptr, h, 0, buf, sizeof buf, &port); break;
    case 18: rc = luaasio_resolve(nullptr, 1, "127.0.0.1", 0); break;
    case 19: {
      luaasio_loop_free(nullptr);
      FZ_CHECK(luaasio_loop_count(nullptr) == 0, "count(NULL)");
      FZ_CHECK(luaasio_conn_unwait(nullptr, h, 0) == LUAASIO_EINVAL, "unwait(NULL)");
      FZ_CHECK(luaasio_conn_original_dst(nullptr, h, buf) == LUAASIO_EINVAL, "orig(NULL)");
      FZ_CHECK(luaasio_resolve_results(nullptr, h, buf, 1) == LUAASIO_EINVAL, "results(NULL)");
      FZ_CHECK(luaasio_resolve(l, 1, nullptr, 0) == LUAASIO_EINVAL, "resolve(l, NULL)");
      int code = int(int8_t(w));
      FZ_CHECK(luaasio_strerror(code) != nullptr, "strerror(%d)", code);
      rc = LUAASIO_EINVAL;
      break;
    }
    }
    FZ_CHECK(rc == LUAASIO_EINVAL, "NULL argument case %d gave %d", w % 20, rc);
  }

  // Opens and closes connections (to the closed port) many times, so one
  // table index goes through all 128 generations and old handle values come
  // back; the model treats a reissued value as the new object's.
  int churn_budget = 300;

  void op_churn() {
    int cycles = std::min(1 + in.u8(), churn_budget);
    churn_budget -= cycles;
    for (int i = 0; i < cycles; i++) {
      int32_t h = luaasio_connect(l, next_slot, "127.0.0.1", fz::closed_port_v4());
      FZ_CHECK(h > 0, "churn connect = %d", h);
      size_t o = add_obj(h, K_CONN, i == 0 || i == cycles - 1);
      objs[o].from_connect = true;
      objs[o].target = T_CLOSED_PORT;
      objs[o].slot = new_slot(P_CONNECT, o, 0);
      FZ_CHECK(TIMED("close", luaasio_close(l, h)) == LUAASIO_OK, "churn close");
      close_obj(o);
    }
  }

  void run() {
    for (int i = 0; i < kMaxOps && !in.empty(); i++) {
      stats.ops++;
      switch (in.u8() % 19) {
      case 0: op_server_open(); break;
      case 1: op_connect(); break;
      case 2: op_poll(); break;
      case 3: op_read(); break;
      case 4: op_write(); break;
      case 5: op_wait(); break;
      case 6: op_unwait(); break;
      case 7: op_shutdown(); break;
      case 8: op_setoption(); break;
      case 9: op_address(); break;
      case 10: op_original_dst(); break;
      case 11: op_close(); break;
      case 12: check_count(); break;
      case 13: op_server_port(); break;
      case 14: op_resolve(); break;
      case 15: op_results(); break;
      case 16: op_null_args(); break;
      case 17: drain(); break;
      case 18: op_churn(); break;
      }
    }
    // Teardown: empty the queue, check the count, close everything, make
    // sure nothing reports after the close, then free the loop.
    drain();
    std::vector<size_t> order;
    for (auto &e : live)
      order.push_back(e.second);
    for (size_t i : order) {
      int32_t h = objs[i].h;
      FZ_CHECK(TIMED("close", luaasio_close(l, h)) == LUAASIO_OK, "final close of %d", h);
      close_obj(i);
    }
    if (!queue_maybe_nonempty) {
      poll(64, 0);
      FZ_CHECK(luaasio_loop_count(l) == 0, "loop count %d after closing all",
               luaasio_loop_count(l));
    }
  }

  ~harness() {
    TIMED("loop_free", (luaasio_loop_free(l), 0));
    for (auto &p : paths)
      unlink(p.c_str());
  }
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fz::init();
  const char *s = std::getenv("LUAASIO_FUZZ_SKIP_PRECONNECT_IO");
  skip_preconnect_io = s && *s && *s != '0';
  auto *p = new unsigned char[3 * kPeriod];
  for (int i = 0; i < 3 * kPeriod; i++)
    p[i] = pat(uint64_t(i));
  pattern = p;
  std::atexit(print_stats);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  stats.inputs++;
  harness h(data, size);
  h.run();
  return 0;
}
