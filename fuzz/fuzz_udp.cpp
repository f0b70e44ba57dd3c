// fuzz_udp: the datagram and address paths of the ABI (luaasio_udp_*).
//
// Each input is a list of operations, an opcode byte and a few argument
// bytes, some followed by a NUL-terminated string:
//   0 open     family            6 connect  handle, target, [text]
//   1 bind     handle, port, text 7 wait     handle, dir, then a short poll
//   2 sendto   handle, len, target, [text]     8 close  handle
//   3 recv     handle, cap, with-from         9 address handle, cap
//   4 setoption handle, option, value        10 sockaddr bytes (16/28/128)
//   5 group    handle, join, text, text
// Handles are picked among every handle of this input (live or closed) or
// made up; the model knows which are live, so anything else must give
// LUAASIO_EBADF. Safety: an address the harness parses as valid (with the
// same Boost call) is replaced by loopback: binds take 127.0.0.1 or ::1 port
// 0, sends and connects go to one of this input's own sockets or to a
// bound, non-reading loopback port, groups are joined on the loopback
// interface. Only strings that must be rejected reach the library as given.
// The guard in common.cpp aborts on any send, bind or connect elsewhere.
// Checks: every result is >= 0 or a known code; a received datagram is the
// harness's pattern (every byte the datagram's length mod 256, so an
// untruncated one must have that length) from a loopback sender; buffers
// are exact-size heap blocks (ASan catches a write past `cap`); events name
// only armed slots; the loop is empty once everything is closed.
#include "common.hpp"

#include <boost/asio/ip/address.hpp>

#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace ip = boost::asio::ip;
constexpr int kMaxOps = 32;

struct sock {
  int32_t h;
  bool live = true;
  int family = 0; // 4 or 6 once created
  int port = 0;   // bound loopback port, 0 if none
};

struct model {
  luaasio_loop *l = luaasio_loop_new();
  std::vector<sock> socks;
  ~model() { luaasio_loop_free(l); }

  sock *pick(fz::reader &in, int32_t &h) {
    uint8_t b = in.u8();
    if (socks.empty() || (b & 0xc0) == 0xc0) {
      static const int32_t odd[] = {0, -1, 1, 2, INT_MAX, INT_MIN, 1 << 20, (1 << 20) + 1};
      h = odd[b % 8];
      for (auto &s : socks)
        if (s.h == h)
          return &s;
      return nullptr;
    }
    sock &s = socks[b % socks.size()];
    h = s.h;
    return &s;
  }
};

bool parse_ip(const std::string &t, ip::address &out) {
  boost::system::error_code ec;
  out = ip::make_address(t.c_str(), ec);
  return !ec;
}

void check(int rc, const char *what) { FZ_CHECK(fz::valid_code(rc), "%s returned %d", what, rc); }

// A destination: one of our bound sockets, a closed port, or raw text.
struct target {
  std::string ip;
  int port;
  bool raw;
};

target pick_target(model &m, fz::reader &in) {
  uint8_t b = in.u8();
  uint16_t p = in.u16();
  switch (b % 4) {
  case 0:
    for (auto &s : m.socks)
      if (s.live && s.port && (p-- % 2 == 0))
        return {s.family == 6 ? "::1" : "127.0.0.1", s.port, false};
    return {"127.0.0.1", fz::closed_port_v4(), false};
  case 1:
    return {"127.0.0.1", fz::closed_port_v4(), false};
  case 2:
    if (fz::closed_port_v6())
      return {"::1", fz::closed_port_v6(), false};
    return {"127.0.0.1", fz::closed_port_v4(), false};
  default: {
    static const int odd[] = {0, -1, 65536, INT_MAX, INT_MIN, 53, 1, 65535};
    std::string text = in.cstr();
    ip::address a;
    if (parse_ip(text, a)) // a real address: never contacted
      return {a.is_v4() ? "127.0.0.1" : "::1", a.is_v4() ? fz::closed_port_v4() : fz::closed_port_v6(), false};
    return {text, odd[p % 8], true};
  }
  }
}

void op_open(model &m, fz::reader &in) {
  static const int fam[] = {0, 4, 6, 0, 1, -1, 10, INT_MAX};
  int f = fam[in.u8() % 8];
  int32_t h = luaasio_udp_open(m.l, f);
  if (f != 0 && f != 4 && f != 6) {
    FZ_CHECK(h == LUAASIO_EINVAL, "udp_open(%d) = %d", f, h);
    return;
  }
  if (f == 6 && !fz::closed_port_v6())
    FZ_CHECK(h > 0 || fz::valid_code(h), "udp_open(6) = %d", h);
  else
    FZ_CHECK(h > 0, "udp_open(%d) = %d", f, h);
  if (h > 0) {
    sock s;
    s.h = h;
    s.family = f;
    m.socks.push_back(s);
  }
}

void op_bind(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  static const int odd[] = {0, -1, 65536, INT_MAX, INT_MIN, 0, 0, 0};
  int port = odd[in.u8() % 8];
  std::string text = in.cstr();
  ip::address a;
  bool ok = parse_ip(text, a);
  const char *arg = ok ? (a.is_v4() ? "127.0.0.1" : "::1") : text.c_str();
  if (ok && !a.is_v4() && !fz::closed_port_v6())
    return;
  int rc = luaasio_udp_bind(m.l, h, arg, port);
  check(rc, "udp_bind");
  if (!s || !s->live) {
    FZ_CHECK(rc == LUAASIO_EBADF, "bind on a dead handle: %d", rc);
    return;
  }
  if (port != 0) {
    FZ_CHECK(rc == LUAASIO_EBADADDR, "bind to port %d: %d", port, rc);
    return;
  }
  if (!ok) {
    FZ_CHECK(rc == LUAASIO_EBADADDR, "bind to '%s': %d", text.c_str(), rc);
    return;
  }
  if (s->family == 0)
    s->family = a.is_v4() ? 4 : 6;
  if (rc == LUAASIO_OK) {
    char buf[64];
    int p = 0;
    int n = luaasio_udp_address(m.l, h, buf, sizeof buf, &p);
    FZ_CHECK(n > 0 && p > 0, "address after bind: %d", n);
    s->port = p;
  }
}

void op_send(model &m, fz::reader &in, bool connect) {
  int32_t h;
  sock *s = m.pick(in, h);
  static const int lens[] = {0, 1, 64, 1200, 65507, 65508, 70000, -1};
  int len = connect ? 0 : lens[in.u8() % 8];
  target t = pick_target(m, in);
  bool connected_send = !connect && (in.u8() & 1);
  if (!t.raw && t.ip == "::1" && !fz::closed_port_v6())
    return;
  int rc;
  if (connect) {
    rc = luaasio_udp_connect(m.l, h, t.ip.c_str(), t.port);
  } else {
    std::unique_ptr<char[]> data(new char[len > 0 ? len : 1]);
    std::memset(data.get(), len & 0xff, size_t(len > 0 ? len : 1));
    rc = luaasio_udp_send(m.l, h, data.get(), len, connected_send ? nullptr : t.ip.c_str(), t.port);
  }
  check(rc, connect ? "udp_connect" : "udp_send");
  if (len < 0) {
    FZ_CHECK(rc == LUAASIO_EINVAL, "send with len %d: %d", len, rc);
    return;
  }
  if (!s || !s->live) {
    FZ_CHECK(rc == LUAASIO_EBADF, "send on a dead handle: %d", rc);
    return;
  }
  if (t.raw && !connected_send) {
    FZ_CHECK(rc == LUAASIO_EBADADDR, "send to '%s' port %d: %d", t.ip.c_str(), t.port, rc);
    return;
  }
  if (rc >= 0)
    FZ_CHECK(connect ? rc == 0 : rc == len, "sent %d of %d", rc, len);
  if (!connected_send && s->family == 0 && rc != LUAASIO_EBADF)
    s->family = t.ip == "::1" ? 6 : 4;
}

void op_recv(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  static const int caps[] = {1, 2, 63, 64, 65, 1200, 65535, 0};
  int cap = caps[in.u8() % 8];
  bool with_from = in.u8() & 1;
  std::unique_ptr<char[]> buf(new char[cap > 0 ? cap : 1]);
  std::unique_ptr<luaasio_udp_from> from(with_from ? new luaasio_udp_from : nullptr);
  int rc = luaasio_udp_recv(m.l, h, buf.get(), cap, from.get());
  check(rc, "udp_recv");
  if (cap <= 0) {
    FZ_CHECK(rc == LUAASIO_EINVAL, "recv with cap %d: %d", cap, rc);
    return;
  }
  if (!s || !s->live) {
    FZ_CHECK(rc == LUAASIO_EBADF, "recv on a dead handle: %d", rc);
    return;
  }
  if (rc < 0)
    return;
  FZ_CHECK(rc <= cap, "recv %d > cap %d", rc, cap);
  for (int i = 1; i < rc; i++)
    FZ_CHECK(buf[i] == buf[0], "datagram bytes differ at %d", i);
  if (from) {
    bool truncated = from->flags & LUAASIO_UDP_FLAG_TRUNCATED;
    if (rc > 0 && !truncated)
      FZ_CHECK((rc & 0xff) == (unsigned char)buf[0], "datagram of %d bytes holds %d", rc,
               (unsigned char)buf[0]);
    FZ_CHECK(from->iplen > 0 && from->iplen < 64 && from->ip[from->iplen] == 0, "ip length %d",
             from->iplen);
    std::string sender(from->ip);
    FZ_CHECK(sender == "127.0.0.1" || sender == "::1" || sender == "::ffff:127.0.0.1",
             "sender %s", sender.c_str());
    FZ_CHECK(from->port > 0 && from->port <= 65535, "sender port %d", from->port);
  }
}

void op_setoption(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  static const int opts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1, INT_MAX, 4, 5};
  static const int vals[] = {0, 1, 2, -1, 255, 256, 4096, INT_MAX, INT_MIN, 65536, 1, 0, 64, 1, 0, 1};
  int o = opts[in.u8() % 16];
  int v = vals[in.u8() % 16];
  int rc = luaasio_udp_setoption(m.l, h, o, v);
  check(rc, "udp_setoption");
  if (o < 1 || o > 10)
    FZ_CHECK(rc == LUAASIO_EINVAL, "option %d: %d", o, rc);
  else if (!s || !s->live)
    FZ_CHECK(rc == LUAASIO_EBADF, "setoption on a dead handle: %d", rc);
}

void op_group(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  int join = in.u8() & 1;
  std::string group = in.cstr();
  std::string iface = in.cstr();
  ip::address a;
  bool multicast = parse_ip(group, a) && a.is_multicast();
  if (multicast) // joined only on the loopback interface
    iface = a.is_v4() ? "127.0.0.1" : "lo";
  if (multicast && !a.is_v4() && !fz::closed_port_v6())
    return;
  int rc = luaasio_udp_group(m.l, h, join, group.c_str(), iface.c_str());
  check(rc, "udp_group");
  if (!s || !s->live)
    FZ_CHECK(rc == LUAASIO_EBADF, "group on a dead handle: %d", rc);
  else if (!multicast)
    FZ_CHECK(rc == LUAASIO_EBADADDR, "group '%s': %d", group.c_str(), rc);
  else if (s->family == 0 && rc != LUAASIO_EBADF)
    s->family = a.is_v4() ? 4 : 6;
}

void op_wait(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  int dir = in.u8() % 3;
  int rc = dir < 2 ? luaasio_udp_wait(m.l, h, dir, 100 + dir) : luaasio_udp_unwait(m.l, h, 0);
  check(rc, "udp_wait");
  if (!s || !s->live)
    FZ_CHECK(rc == LUAASIO_EBADF || rc == LUAASIO_EINVAL, "wait on a dead handle: %d", rc);
  luaasio_event ev[4];
  int n = luaasio_poll(m.l, ev, 4, 0.001);
  FZ_CHECK(n >= 0 && n <= 4, "poll %d", n);
  for (int i = 0; i < n; i++)
    FZ_CHECK((ev[i].slot == 100 || ev[i].slot == 101) && ev[i].result == 0, "event %d/%d",
             ev[i].slot, ev[i].result);
}

void op_close(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  int rc = luaasio_close(m.l, h);
  if (s && s->live) {
    FZ_CHECK(rc == LUAASIO_OK, "close: %d", rc);
    s->live = false;
  } else {
    FZ_CHECK(rc == LUAASIO_EBADF, "close of a dead handle: %d", rc);
  }
}

void op_address(model &m, fz::reader &in) {
  int32_t h;
  sock *s = m.pick(in, h);
  static const int caps[] = {1, 2, 9, 10, 16, 40, 64, 0};
  int cap = caps[in.u8() % 8];
  std::unique_ptr<char[]> buf(new char[cap > 0 ? cap : 1]);
  int port = -1;
  int rc = luaasio_udp_address(m.l, h, buf.get(), cap, &port);
  check(rc, "udp_address");
  if (cap <= 0)
    FZ_CHECK(rc == LUAASIO_EINVAL, "address with cap 0: %d", rc);
  else if (!s || !s->live)
    FZ_CHECK(rc == LUAASIO_EBADF, "address of a dead handle: %d", rc);
  else if (rc >= 0)
    FZ_CHECK(rc < cap && buf[rc] == 0, "address length %d, cap %d", rc, cap);
}

void op_sockaddr(model &m, fz::reader &in) {
  static const int lens[] = {16, 28, 128, 0, 15, 127, 129, 28};
  int len = lens[in.u8() % 8];
  std::unique_ptr<unsigned char[]> data(new unsigned char[len > 0 ? len : 1]);
  for (int i = 0; i < len; i++)
    data[i] = in.u8();
  char text[64];
  int port = 0;
  int rc = luaasio_sockaddr_parse(reinterpret_cast<char *>(data.get()), len, text, sizeof text, &port);
  check(rc, "sockaddr_parse");
  if (rc < 0)
    return;
  FZ_CHECK(rc == 4 || rc == 6, "family %d", rc);
  ip::address a;
  FZ_CHECK(parse_ip(text, a) && (rc == 4) == a.is_v4(), "parsed text '%s'", text);
  FZ_CHECK(port >= 1 && port <= 65535, "port %d", port);
  // What asio.udp({bind = sockaddr}) does next, on loopback.
  if (rc == 6 && !fz::closed_port_v6())
    return;
  int32_t h = luaasio_udp_open(m.l, 0);
  FZ_CHECK(h > 0, "open %d", h);
  int b = luaasio_udp_bind(m.l, h, rc == 4 ? "127.0.0.1" : "::1", 0);
  FZ_CHECK(b == LUAASIO_OK, "bind %d", b);
  FZ_CHECK(luaasio_close(m.l, h) == LUAASIO_OK, "close");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz::reader in(data, size);
  model m;
  FZ_CHECK(m.l, "loop_new");
  for (int i = 0; i < kMaxOps && !in.empty(); i++) {
    switch (in.u8() % 11) {
    case 0: op_open(m, in); break;
    case 1: op_bind(m, in); break;
    case 2: op_send(m, in, false); break;
    case 3: op_recv(m, in); break;
    case 4: op_setoption(m, in); break;
    case 5: op_group(m, in); break;
    case 6: op_send(m, in, true); break;
    case 7: op_wait(m, in); break;
    case 8: op_close(m, in); break;
    case 9: op_address(m, in); break;
    case 10: op_sockaddr(m, in); break;
    }
  }
  for (auto &s : m.socks)
    if (s.live)
      FZ_CHECK(luaasio_close(m.l, s.h) == LUAASIO_OK, "final close");
  luaasio_event ev[8];
  while (luaasio_poll(m.l, ev, 8, 0) > 0) {
  }
  FZ_CHECK(luaasio_loop_count(m.l) == 0, "loop count %d", luaasio_loop_count(m.l));
  return 0;
}
