// fuzz_address: the address, port and path parsing paths of the ABI.
//
// The input is a sequence of operations (an opcode byte, a few argument bytes,
// then a NUL-terminated string):
//   0 server  u8 portmode, u16 port, u8 backlog, u8 flags, u8 slotmode, host
//   1 connect u8 portmode, u16 port, ip
//   2 unix server  u8 backlog, u8 connect-after, name
//   3 unix connect name
//   4 resolve u8 family, name
// Safety rules (enforced again by the guard in common.cpp):
//  - a host/ip string is first parsed by the harness with the same Boost call;
//    only strings that must be rejected, and invalid ports, reach the library
//    as given (they fail before any socket is made). A valid address is
//    replaced by 127.0.0.1 or ::1 of its family: servers bind port 0, and
//    connects go to a bound but not listening loopback port (refused at once).
//  - Unix paths are the fuzzed name inside a private temp dir ('/' mapped to
//    '_'); names that cannot be valid paths (empty, >= 108 bytes) are passed
//    raw, since they are rejected before any socket is made.
//  - resolve is only called for numeric literals (getaddrinfo AI_NUMERICHOST
//    accepts them, so the library's lookup never reaches DNS) and for
//    "localhost" when /etc/hosts names it; other names are used only with an
//    invalid family, which is rejected first.
// Each input gets its own loop, freed at the end (LeakSanitizer is on), and
// the loop must be empty again (luaasio_loop_count) once everything is closed.
#include "common.hpp"

#include <boost/asio/ip/address.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace ip = boost::asio::ip;

constexpr int kMaxOps = 24;

bool hosts_v4_localhost = false, hosts_v6_localhost = false;

void scan_hosts() {
  std::ifstream f("/etc/hosts");
  std::string line;
  while (std::getline(f, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream ss(line);
    std::string addr, name;
    if (!(ss >> addr))
      continue;
    while (ss >> name) {
      if (name != "localhost")
        continue;
      if (addr == "127.0.0.1")
        hosts_v4_localhost = true;
      if (addr == "::1")
        hosts_v6_localhost = true;
    }
  }
}

struct loop_holder {
  luaasio_loop *l = luaasio_loop_new();
  ~loop_holder() { luaasio_loop_free(l); }
};

// Polls (at most ~`ms` milliseconds, 1 ms at a time) until an event for
// `slot` arrives; other events are collected in `others`.
bool wait_event(luaasio_loop *l, int32_t slot, int &result, int ms,
                std::vector<luaasio_event> *others = nullptr) {
  for (int i = 0; i < ms; i++) {
    luaasio_event ev[8];
    int n = luaasio_poll(l, ev, 8, 0.001);
    FZ_CHECK(n >= 0 && n <= 8, "poll returned %d", n);
    bool found = false;
    for (int k = 0; k < n; k++) {
      FZ_CHECK(fz::valid_code(ev[k].result), "event slot %d result %d", ev[k].slot,
               ev[k].result);
      if (ev[k].slot == slot && !found) {
        result = ev[k].result;
        found = true;
      } else if (others) {
        others->push_back(ev[k]);
      } else {
        FZ_CHECK(false, "unexpected event slot %d result %d", ev[k].slot, ev[k].result);
      }
    }
    if (found)
      return true;
  }
  return false;
}

int pick_port(fz::reader &in, bool &valid) {
  uint8_t mode = in.u8();
  uint16_t raw = in.u16();
  static const int odd[] = {0, -1, 65536, 65537, INT_MAX, INT_MIN, -65535, 100000};
  int port = (mode & 3) == 3 ? odd[raw % 8] : raw;
  valid = port >= 1 && port <= 65535;
  return port;
}

// The harness's own parse: the same Boost function the library calls.
bool parse_ip(const std::string &s, ip::address &out) {
  boost::system::error_code ec;
  out = ip::make_address(s.c_str(), ec);
  return !ec;
}

void check_server_text(luaasio_loop *l, int32_t server, bool unix_socket) {
  int port = luaasio_server_port(l, server);
  if (unix_socket)
    FZ_CHECK(port == 0, "unix server port %d", port);
  else
    FZ_CHECK(port >= 1 && port <= 65535, "server port %d", port);
}

// Connects to our own listener and checks both ends; the pair is closed.
void connect_pair(luaasio_loop *l, int32_t server, int32_t server_slot, const char *ip,
                  const char *path) {
  int port = luaasio_server_port(l, server);
  int32_t c = path ? luaasio_connect_unix(l, 900, path) : luaasio_connect(l, 900, ip, port);
  FZ_CHECK(c > 0, "connect to own server: %d", c);
  std::vector<luaasio_event> others;
  int result = 1;
  bool got = wait_event(l, 900, result, 500, &others);
  if (got)
    FZ_CHECK(result == 0, "connect to own listener gave %d (%s)", result,
             luaasio_strerror(result));
  int32_t accepted = 0;
  for (auto &e : others) {
    FZ_CHECK(e.slot == server_slot && e.result > 0, "odd event %d/%d", e.slot, e.result);
    accepted = e.result;
  }
  if (!accepted) {
    int r = 0;
    if (wait_event(l, server_slot, r, 200))
      accepted = r;
  }
  if (accepted) {
    FZ_CHECK(accepted > 0 && accepted != c && accepted != server, "accepted handle %d", accepted);
    char buf[128];
    int p = -1;
    int n = luaasio_conn_address(l, accepted, 0, buf, sizeof buf, &p);
    FZ_CHECK(n >= 0, "address of accepted conn: %d", n);
    if (!path)
      FZ_CHECK(p == port && std::string(buf) == ip, "accepted local %s:%d, want %s:%d", buf,
               p, ip, port);
    FZ_CHECK(luaasio_close(l, accepted) == LUAASIO_OK, "close accepted");
  }
  FZ_CHECK(luaasio_close(l, c) == LUAASIO_OK, "close conn");
  FZ_CHECK(luaasio_close(l, c) == LUAASIO_EBADF, "double close");
}

void op_server(luaasio_loop *l, fz::reader &in) {
  bool port_ok;
  int port = pick_port(in, port_ok);
  uint8_t b = in.u8();
  static const int backlogs[] = {0, -1, 1, 2, 5, 128, 4096, INT_MAX};
  int backlog = backlogs[b % 8];
  int flags = in.u8();
  flags = (flags & 0x80) ? (flags | ~0x7f) : (flags & 7);
  uint8_t slotmode = in.u8();
  int32_t slot = (slotmode & 0xf) == 0xf ? -1 - (slotmode >> 4) : 1;
  std::string host = in.cstr();

  ip::address addr;
  bool host_ok = parse_ip(host, addr);
  if (slot < 0 || !port_ok) {
    // EINVAL comes before anything else when the port is out of range or the
    // slot negative; the string is passed as is. Port 0 is valid (ephemeral)
    // but then the host would be used: rewrite it like a valid one.
    if (!(port == 0 && slot >= 0)) {
      int32_t rc = luaasio_server_open(l, slot, host.c_str(), port, backlog, flags);
      FZ_CHECK(rc == LUAASIO_EINVAL, "server_open('%s', %d, slot %d) = %d", host.c_str(),
               port, slot, rc);
      return;
    }
  }
  if (!host_ok) {
    int32_t rc = luaasio_server_open(l, slot, host.c_str(), port_ok ? port : 0, backlog, flags);
    FZ_CHECK(rc == LUAASIO_EBADADDR, "server_open('%s') = %d, want bad address", host.c_str(),
             rc);
    return;
  }
  const char *lo = addr.is_v4() ? "127.0.0.1" : "::1";
  if (!addr.is_v4() && !fz::closed_port_v6())
    return; // no IPv6 loopback here
  int32_t s = luaasio_server_open(l, slot, lo, 0, backlog, flags);
  FZ_CHECK(s > 0, "server_open(%s, 0, flags %d, backlog %d) = %d (%s)", lo, flags, backlog, s,
           luaasio_strerror(s));
  FZ_CHECK(luaasio_loop_count(l) == 1, "loop count %d", luaasio_loop_count(l));
  check_server_text(l, s, false);
  if (host.size() & 1)
    connect_pair(l, s, slot, lo, nullptr);
  FZ_CHECK(luaasio_close(l, s) == LUAASIO_OK, "close server");
  FZ_CHECK(luaasio_server_port(l, s) == LUAASIO_EBADF, "port of closed server");
}

void op_connect(luaasio_loop *l, fz::reader &in) {
  bool port_ok;
  int port = pick_port(in, port_ok);
  std::string text = in.cstr();
  ip::address addr;
  bool ip_ok = parse_ip(text, addr);
  if (!port_ok) {
    int32_t rc = luaasio_connect(l, 7, text.c_str(), port);
    FZ_CHECK(rc == LUAASIO_EBADADDR, "connect('%s', %d) = %d", text.c_str(), port, rc);
    return;
  }
  if (!ip_ok) {
    int32_t rc = luaasio_connect(l, 7, text.c_str(), port);
    FZ_CHECK(rc == LUAASIO_EBADADDR, "connect('%s') = %d, want bad address", text.c_str(), rc);
    return;
  }
  // A real address: never contacted. Loopback of its family, closed port.
  bool v4 = addr.is_v4();
  if (!v4 && !fz::closed_port_v6())
    return;
  int32_t c = luaasio_connect(l, 7, v4 ? "127.0.0.1" : "::1",
                              v4 ? fz::closed_port_v4() : fz::closed_port_v6());
  FZ_CHECK(c > 0, "connect to closed port: %d", c);
  int result;
  if (wait_event(l, 7, result, 200))
    FZ_CHECK(result == LUAASIO_ECONNREFUSED, "connect to a closed port gave %d (%s)", result,
             luaasio_strerror(result));
  char buf[64];
  int p;
  int rc = luaasio_conn_address(l, c, 1, buf, sizeof buf, &p);
  FZ_CHECK(rc < 0 && fz::valid_code(rc), "remote address of a refused conn: %d", rc);
  FZ_CHECK(luaasio_close(l, c) == LUAASIO_OK, "close");
}

// Maps a fuzzed name to a path inside the temp dir, or returns it raw when
// the library must reject it before touching the file system.
std::string unix_path(const std::string &name, bool &raw) {
  const size_t max = sizeof(sockaddr_un::sun_path);
  raw = name.empty() || name.size() >= max;
  if (raw)
    return name;
  std::string n = name;
  std::replace(n.begin(), n.end(), '/', '_');
  if (n == "." || n == "..")
    n = "_" + n;
  return fz::tmpdir() + "/" + n;
}

void op_unix_server(luaasio_loop *l, fz::reader &in) {
  uint8_t b = in.u8();
  static const int backlogs[] = {0, -1, 1, 2, 5, 128, 4096, INT_MAX};
  int backlog = backlogs[b % 8];
  bool connect_after = in.u8() & 1;
  bool raw;
  std::string path = unix_path(in.cstr(), raw);
  int32_t s = luaasio_server_open_unix(l, 3, path.c_str(), backlog);
  if (raw || path.size() >= sizeof(sockaddr_un::sun_path)) {
    FZ_CHECK(s == LUAASIO_EBADADDR, "server_open_unix(%zu bytes) = %d", path.size(), s);
    return;
  }
  FZ_CHECK(s > 0, "server_open_unix('%s') = %d (%s)", path.c_str(), s, luaasio_strerror(s));
  check_server_text(l, s, true);
  if (connect_after)
    connect_pair(l, s, 3, nullptr, path.c_str());
  FZ_CHECK(luaasio_close(l, s) == LUAASIO_OK, "close unix server");
  unlink(path.c_str());
}

void op_unix_connect(luaasio_loop *l, fz::reader &in) {
  bool raw;
  std::string path = unix_path(in.cstr(), raw);
  struct stat st;
  bool exists = !raw && lstat(path.c_str(), &st) == 0;
  int32_t c = luaasio_connect_unix(l, 8, path.c_str());
  if (raw || path.size() >= sizeof(sockaddr_un::sun_path)) {
    FZ_CHECK(c == LUAASIO_EBADADDR, "connect_unix(%zu bytes) = %d", path.size(), c);
    return;
  }
  FZ_CHECK(c > 0, "connect_unix = %d", c);
  int result;
  if (wait_event(l, 8, result, 200) && !exists)
    FZ_CHECK(result == LUAASIO_ENOENT, "connect_unix to a missing path gave %d (%s)", result,
             luaasio_strerror(result));
  FZ_CHECK(luaasio_close(l, c) == LUAASIO_OK, "close");
}

// The address texts getaddrinfo gives for a numeric name, scope removed.
std::set<std::string> reference_lookup(const std::string &name, int family) {
  std::set<std::string> out;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0)
    return out;
  for (addrinfo *a = res; a; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void *src = a->ai_family == AF_INET
                          ? static_cast<const void *>(&reinterpret_cast<sockaddr_in *>(a->ai_addr)->sin_addr)
                          : static_cast<const void *>(&reinterpret_cast<sockaddr_in6 *>(a->ai_addr)->sin6_addr);
    if (inet_ntop(a->ai_family, src, text, sizeof text))
      out.insert(text);
  }
  freeaddrinfo(res);
  return out;
}

bool is_numeric(const std::string &name) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0)
    return false;
  freeaddrinfo(res);
  return true;
}

void op_resolve(luaasio_loop *l, fz::reader &in) {
  uint8_t f = in.u8();
  static const int odd[] = {1, 2, 3, 5, 7, -1, INT_MAX, INT_MIN, 10, 23};
  int family = (f & 3) == 3 ? odd[(f >> 2) % 10] : (f & 3) == 0 ? 0 : (f & 3) == 1 ? 4 : 6;
  std::string name = in.cstr();
  bool family_ok = family == 0 || family == 4 || family == 6;
  if (!family_ok) {
    int32_t rc = luaasio_resolve(l, 5, name.c_str(), family);
    FZ_CHECK(rc == LUAASIO_EINVAL, "resolve with family %d = %d", family, rc);
    return;
  }
  if (name.empty()) {
    int32_t rc = luaasio_resolve(l, 5, "", family);
    FZ_CHECK(rc == LUAASIO_ENOTRESOLVED, "resolve('') = %d", rc);
    return;
  }
  bool numeric = is_numeric(name);
  bool local = name == "localhost" && (family == 4   ? hosts_v4_localhost
                                       : family == 6 ? hosts_v6_localhost
                                                     : hosts_v4_localhost || hosts_v6_localhost);
  if (!numeric && !local)
    return; // could reach DNS
  int32_t r = luaasio_resolve(l, 5, name.c_str(), family);
  FZ_CHECK(r > 0, "resolve('%s') = %d", name.c_str(), r);
  int n;
  if (!wait_event(l, 5, n, 2000)) {
    FZ_CHECK(luaasio_close(l, r) == LUAASIO_OK, "close request");
    return;
  }
  FZ_CHECK(n > 0 || n == LUAASIO_ENOTRESOLVED, "resolve('%s', %d) event %d", name.c_str(),
           family, n);
  std::set<std::string> want;
  if (numeric)
    want = reference_lookup(name, family);
  if (numeric)
    FZ_CHECK(n > 0 ? size_t(n) == want.size() : want.empty(),
             "resolve('%s', %d): %d addresses, getaddrinfo has %zu", name.c_str(), family, n,
             want.size());
  if (n > 0) {
    // Results with an exact-size buffer, then every smaller capacity.
    std::unique_ptr<char[]> big(new char[4096]);
    int used = luaasio_resolve_results(l, r, big.get(), 4096);
    FZ_CHECK(used > 0 && used <= 4096 && big[used - 1] == '\0', "results used %d", used);
    std::vector<std::string> got;
    for (int i = 0; i < used; i += int(std::strlen(big.get() + i)) + 1)
      got.push_back(big.get() + i);
    FZ_CHECK(int(got.size()) == n, "%zu results, event said %d", got.size(), n);
    for (auto &a : got) {
      ip::address parsed;
      FZ_CHECK(parse_ip(a, parsed), "result '%s' does not parse", a.c_str());
      FZ_CHECK(family != 4 || parsed.is_v4(), "'%s' for family 4", a.c_str());
      FZ_CHECK(family != 6 || parsed.is_v6(), "'%s' for family 6", a.c_str());
      if (numeric)
        FZ_CHECK(want.count(a.substr(0, a.find('%'))), "'%s' not from getaddrinfo", a.c_str());
    }
    for (int cap = 0; cap < used; cap++) {
      std::unique_ptr<char[]> small(new char[cap ? cap : 1]);
      int u = luaasio_resolve_results(l, r, small.get(), cap);
      FZ_CHECK(u >= 0 && u <= cap, "cap %d used %d", cap, u);
      FZ_CHECK(std::memcmp(small.get(), big.get(), size_t(u)) == 0 && (u == 0 || small[u - 1] == 0),
               "cap %d: partial results differ", cap);
    }
  }
  FZ_CHECK(luaasio_resolve_results(l, r, nullptr, 10) == LUAASIO_EINVAL, "NULL buffer");
  FZ_CHECK(luaasio_close(l, r) == LUAASIO_OK, "close request");
  char b[8];
  FZ_CHECK(luaasio_resolve_results(l, r, b, sizeof b) == LUAASIO_EBADF, "closed request");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fz::init();
  scan_hosts();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz::reader in(data, size);
  loop_holder h;
  FZ_CHECK(h.l, "loop_new");
  for (int i = 0; i < kMaxOps && !in.empty(); i++) {
    switch (in.u8() % 5) {
    case 0: op_server(h.l, in); break;
    case 1: op_connect(h.l, in); break;
    case 2: op_unix_server(h.l, in); break;
    case 3: op_unix_connect(h.l, in); break;
    case 4: op_resolve(h.l, in); break;
    }
    FZ_CHECK(luaasio_loop_count(h.l) == 0, "loop count %d after op", luaasio_loop_count(h.l));
  }
  return 0;
}
