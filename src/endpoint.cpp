// Address conversions, including the portable sockaddr decoder behind
// asio.connect(sockaddr_string).
#include "endpoint.hpp"

#include <cstring>

#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
#include <sys/un.h>
#endif

namespace luaasio {

int unix_endpoint(const char *path, stream::endpoint &out) {
#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
  size_t len = std::strlen(path);
  if (len == 0 || len >= sizeof(sockaddr_un::sun_path))
    return LUAASIO_EBADADDR;
  out = stream::endpoint(asio::local::stream_protocol::endpoint(path));
  return LUAASIO_OK;
#else
  (void)path;
  (void)out;
  return LUAASIO_ENOTSUP;
#endif
}

static asio::ip::tcp::endpoint to_tcp(const stream::endpoint &ep) {
  asio::ip::tcp::endpoint t;
  std::memcpy(t.data(), ep.data(), ep.size());
  t.resize(ep.size());
  return t;
}

static int copy_text(const std::string &s, char *buf, int cap) {
  if (s.size() + 1 > size_t(cap))
    return LUAASIO_EINVAL;
  std::memcpy(buf, s.c_str(), s.size() + 1);
  return static_cast<int>(s.size());
}

int endpoint_text(const stream::endpoint &ep, char *buf, int cap, int *port) {
  int family = ep.data()->sa_family;
  if (family == AF_INET || family == AF_INET6) {
    auto t = to_tcp(ep);
    *port = t.port();
    return copy_text(t.address().to_string(), buf, cap);
  }
#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
  if (family == AF_UNIX) {
    *port = 0;
    const auto *un = reinterpret_cast<const sockaddr_un *>(ep.data());
    size_t max = ep.size() > offsetof(sockaddr_un, sun_path)
                     ? ep.size() - offsetof(sockaddr_un, sun_path)
                     : 0;
    return copy_text(std::string(un->sun_path, strnlen(un->sun_path, max)), buf, cap);
  }
#endif
  return LUAASIO_ENOTSUP;
}

static bool ip_of(const sockaddr *sa, asio::ip::address_v6 &addr, unsigned &port) {
  if (sa->sa_family == AF_INET) {
    const auto *in = reinterpret_cast<const sockaddr_in *>(sa);
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), &in->sin_addr, 4);
    addr = asio::ip::make_address_v6(asio::ip::v4_mapped, asio::ip::address_v4(b));
    port = ntohs(in->sin_port);
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &in6->sin6_addr, 16);
    addr = asio::ip::address_v6(b);
    port = ntohs(in6->sin6_port);
    return true;
  }
  return false;
}

bool same_address(const sockaddr *a, const sockaddr *b) {
  asio::ip::address_v6 x, y;
  unsigned px, py;
  return ip_of(a, x, px) && ip_of(b, y, py) && x == y && px == py;
}

// The family field is two bytes in the host's order on Linux and Windows, or
// a length byte followed by a family byte on the BSDs. AF_INET is 2
// everywhere; AF_INET6 is 10 on Linux, 23 on Windows, 24/28/30 on the BSDs.
static int family_of(unsigned first, unsigned second, bool &big_endian) {
  if (first == 16 && second == 2)
    return 4;
  if (first == 28 && (second == 24 || second == 28 || second == 30))
    return 6;
  auto classify = [](unsigned f) { return f == 2 ? 4 : (f == 10 || f == 23) ? 6 : 0; };
  big_endian = false;
  if (int f = classify(first | second << 8))
    return f;
  big_endian = true;
  return classify(first << 8 | second);
}

int parse_sockaddr(const unsigned char *d, int len, asio::ip::address &addr, int &port) {
  if (len != LUAASIO_SOCKADDR_SIZE && len != 16 && len != 28)
    return LUAASIO_EBADADDR;
  bool big_endian = false;
  int family = family_of(d[0], d[1], big_endian);
  if (family == 0 || (family == 6 && len < 28))
    return LUAASIO_EBADADDR;
  port = d[2] << 8 | d[3];
  if (port == 0)
    return LUAASIO_EBADADDR;
  if (family == 4) {
    addr = asio::ip::address_v4({d[4], d[5], d[6], d[7]});
    return 4;
  }
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), d + 8, 16);
  const unsigned char *s = d + 24;
  unsigned long scope = big_endian
                            ? (unsigned long)s[0] << 24 | s[1] << 16 | s[2] << 8 | s[3]
                            : (unsigned long)s[3] << 24 | s[2] << 16 | s[1] << 8 | s[0];
  asio::ip::address_v6 v6(b);
  // Only a link-local address needs its interface index to be reachable.
  if (v6.is_link_local())
    v6.scope_id(scope);
  if (v6.is_v4_mapped()) {
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, v6);
    return 4;
  }
  addr = v6;
  return 6;
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int luaasio_sockaddr_parse(const char *data, int len, char *ip, int ipcap,
                                          int *port) {
  if (!data || !ip || ipcap <= 0 || !port || len < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  asio::ip::address addr;
  int p = 0;
  int family = parse_sockaddr(reinterpret_cast<const unsigned char *>(data), len, addr, p);
  if (family < 0)
    return family;
  int rc = copy_text(addr.to_string(), ip, ipcap);
  if (rc < 0)
    return rc;
  *port = p;
  return family;
  LUAASIO_CATCH
}
