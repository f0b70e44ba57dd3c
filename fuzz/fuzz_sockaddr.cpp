// fuzz_sockaddr: luaasio_sockaddr_parse(), the decoder behind
// asio.connect(sockaddr_string), on arbitrary bytes.
//
// The whole input is the sockaddr string. It is decoded as is, and so are its
// 16- and 28-byte prefixes, each from an exact-size heap copy so any read
// past the string is an ASan report. Every result is compared with a
// reference decoder written from the ABI description (family numbering of
// Linux/Windows/BSD in either byte order, port in network order, IPv4-mapped
// IPv6 reported as IPv4, scope kept for link-local addresses only), and the
// text must be exactly what inet_ntop gives for the expected bytes. The
// output buffer is exact-size too, and every capacity around the text length
// is tried: too small must fail with LUAASIO_EINVAL, never write past it.
#include "common.hpp"

#include <arpa/inet.h>
#include <net/if.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct expected {
  int rc = LUAASIO_EBADADDR;
  unsigned char addr[16] = {};
  int port = 0;
  unsigned long scope = 0;
};

expected reference(const unsigned char *d, size_t len) {
  expected e;
  if (len != 16 && len != 28 && len != LUAASIO_SOCKADDR_SIZE)
    return e;
  int family = 0;
  bool bsd = false, be = false;
  if (d[0] == 16 && d[1] == 2) {
    family = 4, bsd = true; // sa_len, AF_INET
  } else if (d[0] == 28 && (d[1] == 24 || d[1] == 28 || d[1] == 30)) {
    family = 6, bsd = true; // sa_len, AF_INET6 of NetBSD/OpenBSD, FreeBSD, macOS
  } else {
    unsigned le = d[0] | d[1] << 8, bef = d[0] << 8 | d[1];
    if (le == 2)
      family = 4;
    else if (le == 10 || le == 23)
      family = 6;
    else if (bef == 2)
      family = 4, be = true;
    else if (bef == 10 || bef == 23)
      family = 6, be = true;
  }
  (void)bsd;
  if (!family || (family == 6 && len < 28))
    return e;
  int port = d[2] << 8 | d[3];
  if (!port)
    return e;
  e.port = port;
  if (family == 4) {
    e.rc = 4;
    std::memcpy(e.addr, d + 4, 4);
    return e;
  }
  const unsigned char *a = d + 8;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, mapped, 12) == 0) {
    e.rc = 4;
    std::memcpy(e.addr, a + 12, 4);
    return e;
  }
  e.rc = 6;
  std::memcpy(e.addr, a, 16);
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
    const unsigned char *s = d + 24;
    e.scope = be ? (unsigned long)s[0] << 24 | (unsigned long)s[1] << 16 |
                       (unsigned long)s[2] << 8 | s[3]
                 : (unsigned long)s[3] << 24 | (unsigned long)s[2] << 16 |
                       (unsigned long)s[1] << 8 | s[0];
  }
  return e;
}

// Calls the decoder with an exact-size output buffer of `cap` bytes.
int parse(const unsigned char *d, size_t len, int cap, std::string &text, int &port) {
  std::unique_ptr<char[]> ip(new char[cap > 0 ? cap : 1]);
  port = -12345;
  int rc = luaasio_sockaddr_parse(reinterpret_cast<const char *>(d), int(len), ip.get(), cap,
                                  &port);
  if (rc == 4 || rc == 6) {
    size_t n = strnlen(ip.get(), size_t(cap));
    FZ_CHECK(n < size_t(cap), "success without a NUL inside ipcap=%d", cap);
    text.assign(ip.get(), n);
  }
  return rc;
}

void check_one(const unsigned char *d, size_t len) {
  expected e = reference(d, len);
  std::string text;
  int port;
  int rc = parse(d, len, 128, text, port);
  FZ_CHECK(rc == 4 || rc == 6 || (rc < 0 && fz::valid_code(rc)), "rc=%d", rc);
  FZ_CHECK(rc == e.rc, "len=%zu: decoder returned %d, reference %d", len, rc, e.rc);
  if (rc < 0) {
    FZ_CHECK(port == -12345, "port written on failure (%d)", port);
    return;
  }
  FZ_CHECK(port == e.port && port >= 1 && port <= 65535, "port %d, expected %d", port, e.port);

  // The text is inet_ntop's form of the expected address, plus "%scope" for
  // a link-local address with a non-zero scope.
  char want[INET6_ADDRSTRLEN];
  FZ_CHECK(inet_ntop(rc == 4 ? AF_INET : AF_INET6, e.addr, want, sizeof want),
           "inet_ntop failed");
  size_t pct = text.find('%');
  std::string addr = text.substr(0, pct);
  FZ_CHECK(addr == want, "text '%s', expected address '%s'", text.c_str(), want);
  unsigned char back[16];
  FZ_CHECK(inet_pton(rc == 4 ? AF_INET : AF_INET6, addr.c_str(), back) == 1,
           "'%s' does not re-parse", addr.c_str());
  if (e.scope == 0) {
    FZ_CHECK(pct == std::string::npos, "unexpected scope in '%s'", text.c_str());
  } else {
    FZ_CHECK(pct != std::string::npos && pct + 1 < text.size(), "scope %lu missing in '%s'",
             e.scope, text.c_str());
    std::string s = text.substr(pct + 1);
    if (s.find_first_not_of("0123456789") == std::string::npos)
      FZ_CHECK(std::strtoul(s.c_str(), nullptr, 10) == e.scope, "scope '%s', expected %lu",
               s.c_str(), e.scope);
    else
      FZ_CHECK(if_nametoindex(s.c_str()) == e.scope, "scope name '%s' is not index %lu",
               s.c_str(), e.scope);
  }

  // Every capacity up to the text length is too small; the exact fit works.
  int need = int(text.size()) + 1;
  for (int cap = 1; cap <= need; cap++) {
    std::string t2;
    int p2;
    int rc2 = parse(d, len, cap, t2, p2);
    if (cap < need) {
      FZ_CHECK(rc2 == LUAASIO_EINVAL, "ipcap=%d < %d gave %d", cap, need, rc2);
      FZ_CHECK(p2 == -12345, "port written when ipcap too small");
    } else {
      FZ_CHECK(rc2 == rc && t2 == text && p2 == port, "exact ipcap=%d differs", cap);
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // Exact-size heap copies: the fuzzer's own buffer may have slack.
  std::unique_ptr<unsigned char[]> all(new unsigned char[size ? size : 1]);
  if (size)
    std::memcpy(all.get(), data, size);
  check_one(all.get(), size);
  for (size_t len : {size_t(16), size_t(28)}) {
    if (size <= len)
      continue;
    std::unique_ptr<unsigned char[]> pre(new unsigned char[len]);
    std::memcpy(pre.get(), data, len);
    check_one(pre.get(), len);
  }

  // Argument checks: nothing is read or written.
  char ip[64];
  int port = 0;
  const char *d = reinterpret_cast<const char *>(all.get());
  FZ_CHECK(luaasio_sockaddr_parse(nullptr, int(size), ip, sizeof ip, &port) == LUAASIO_EINVAL,
           "NULL data");
  FZ_CHECK(luaasio_sockaddr_parse(d, -1, ip, sizeof ip, &port) == LUAASIO_EINVAL, "len -1");
  FZ_CHECK(luaasio_sockaddr_parse(d, int(size), nullptr, 64, &port) == LUAASIO_EINVAL,
           "NULL ip");
  FZ_CHECK(luaasio_sockaddr_parse(d, int(size), ip, 0, &port) == LUAASIO_EINVAL, "ipcap 0");
  FZ_CHECK(luaasio_sockaddr_parse(d, int(size), ip, -1, &port) == LUAASIO_EINVAL, "ipcap -1");
  FZ_CHECK(luaasio_sockaddr_parse(d, int(size), ip, sizeof ip, nullptr) == LUAASIO_EINVAL,
           "NULL port");
  return 0;
}
