// Datagram sockets: open on first use, non-blocking receive and send, readiness
// waits, options, multicast groups, and on Linux the original destination of
// transparently redirected datagrams (TPROXY).
#include "udp.hpp"
#include "endpoint.hpp"

#include <cerrno>
#include <cstring>

#if defined(_WIN32)
#include <mstcpip.h>
#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif
#else
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

namespace luaasio {

using udp_proto = asio::ip::udp;

#if defined(__linux__)
// Values from <linux/in.h> and <linux/in6.h>, which the C library's headers
// do not all have.
constexpr int ip_transparent = 19, ip_recvorigdstaddr = 20;
constexpr int ipv6_recvorigdstaddr = 74, ipv6_transparent = 75;
#endif

udp::udp(loop &l) : object(udp_kind), owner(l), sock(l.ctx) {}

void udp::close_all() noexcept {
  error_code ec;
  sock.close(ec);
}

void udp::on_wait(int dir) {
  waiting[dir] = false;
  int32_t slot = wait_slot[dir];
  if (!open || slot < 0)
    return;
  wait_slot[dir] = -1;
  owner.push(slot, LUAASIO_OK, this, dir);
}

void udp::start_wait(int dir) {
  waiting[dir] = true;
  auto type = dir == LUAASIO_WAIT_READ ? udp_proto::socket::wait_read
                                       : udp_proto::socket::wait_write;
  sock.async_wait(type, [self = shared_from_this(), dir](const error_code &) {
    self->on_wait(dir);
  });
}

static int set_int(udp_proto::socket &s, int level, int name, int value) {
  int rc = ::setsockopt(s.native_handle(), level, name,
                        reinterpret_cast<const char *>(&value), sizeof value);
  if (rc == 0)
    return LUAASIO_OK;
#if defined(_WIN32)
  return map_error(error_code(WSAGetLastError(), asio::error::get_system_category()));
#else
  return map_error(error_code(errno, asio::error::get_system_category()));
#endif
}

// Buffer sizes: as root on Linux the FORCE forms go beyond
// net.core.{r,w}mem_max, which is small on routers; otherwise the kernel
// caps the size quietly, as everywhere.
static int set_buffer(udp_proto::socket &s, bool receive, int value) {
#if defined(__linux__)
  const int force = receive ? 33 : 32; // SO_RCVBUFFORCE, SO_SNDBUFFORCE
  if (set_int(s, SOL_SOCKET, force, value) == LUAASIO_OK)
    return LUAASIO_OK;
#endif
  return set_int(s, SOL_SOCKET, receive ? SO_RCVBUF : SO_SNDBUF, value);
}

int udp::apply(int option, int value) {
  error_code ec;
  switch (option) {
  case LUAASIO_UDP_BROADCAST:
    sock.set_option(asio::socket_base::broadcast(value != 0), ec);
    break;
  case LUAASIO_UDP_REUSEADDR:
    sock.set_option(asio::socket_base::reuse_address(value != 0), ec);
    break;
  case LUAASIO_UDP_REUSEPORT:
#if defined(SO_REUSEPORT)
    return set_int(sock, SOL_SOCKET, SO_REUSEPORT, value != 0);
#else
    return LUAASIO_ENOTSUP;
#endif
  case LUAASIO_UDP_SNDBUF: return set_buffer(sock, false, value);
  case LUAASIO_UDP_RCVBUF: return set_buffer(sock, true, value);
  case LUAASIO_UDP_TTL:
    sock.set_option(asio::ip::unicast::hops(value), ec);
    break;
  case LUAASIO_UDP_MULTICAST_TTL:
    sock.set_option(asio::ip::multicast::hops(value), ec);
    break;
  case LUAASIO_UDP_MULTICAST_LOOP:
    sock.set_option(asio::ip::multicast::enable_loopback(value != 0), ec);
    break;
  case LUAASIO_UDP_IPV6_ONLY:
    if (!v6)
      return value ? LUAASIO_ENOTSUP : LUAASIO_OK;
    sock.set_option(asio::ip::v6_only(value != 0), ec);
    break;
  case LUAASIO_UDP_TRANSPARENT: {
#if defined(__linux__)
    int rc;
    if (v6) {
      rc = set_int(sock, IPPROTO_IPV6, ipv6_transparent, value != 0);
      if (rc == LUAASIO_OK)
        rc = set_int(sock, IPPROTO_IPV6, ipv6_recvorigdstaddr, value != 0);
      // IPv4 datagrams reaching a dual-stack socket carry the IPv4 form.
      if (rc == LUAASIO_OK)
        set_int(sock, IPPROTO_IP, ip_recvorigdstaddr, value != 0);
    } else {
      rc = set_int(sock, IPPROTO_IP, ip_transparent, value != 0);
      if (rc == LUAASIO_OK)
        rc = set_int(sock, IPPROTO_IP, ip_recvorigdstaddr, value != 0);
    }
    if (rc == LUAASIO_OK)
      transparent = value != 0;
    return rc;
#else
    return LUAASIO_ENOTSUP;
#endif
  }
  default:
    return LUAASIO_EINVAL;
  }
  return map_error(ec);
}

int udp::open_socket(bool want_v6) {
  error_code ec;
  sock.open(want_v6 ? udp_proto::v6() : udp_proto::v4(), ec);
  if (ec)
    return map_error(ec);
  v6 = want_v6;
  sock.non_blocking(true, ec);
  if (!ec && v6)
    sock.set_option(asio::ip::v6_only(false), ec); // dual-stack, also on Windows
  ec.clear();
#if defined(_WIN32)
  // Windows reports an ICMP port unreachable, caused by an earlier send to
  // anyone, as a reset on the next receive of an unconnected socket.
  BOOL off = FALSE;
  DWORD bytes = 0;
  WSAIoctl(sock.native_handle(), SIO_UDP_CONNRESET, &off, sizeof off, nullptr, 0, &bytes,
           nullptr, nullptr);
#endif
  for (int o = 1; o <= max_option; ++o) {
    if (!(option_set & (1u << o)))
      continue;
    int rc = apply(o, option_value[o]);
    if (rc < 0) {
      sock.close(ec);
      return rc;
    }
  }
  return LUAASIO_OK;
}

int udp::endpoint_for(const char *ip, int port, udp_proto::endpoint &out) {
  error_code ec;
  auto addr = asio::ip::make_address(ip, ec);
  if (ec)
    return LUAASIO_EBADADDR;
  if (!sock.is_open()) {
    int rc = open_socket(addr.is_v6());
    if (rc < 0)
      return rc;
  }
  if (v6 && addr.is_v4()) {
    addr = asio::ip::make_address_v6(asio::ip::v4_mapped, addr.to_v4());
  } else if (!v6 && addr.is_v6()) {
    if (!addr.to_v6().is_v4_mapped())
      return LUAASIO_ENOTSUP;
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  }
  out = udp_proto::endpoint(addr, uint16_t(port));
  return LUAASIO_OK;
}

// The sender's address as text into `from`. The text of the last IPv4
// sender is kept: a server mostly hears from a few hosts, and formatting an
// address costs more than the rest of this function.
static int sender_text(udp &u, const sockaddr *sa, luaasio_udp_from *from) {
  if (sa->sa_family == AF_INET) {
    const auto *in = reinterpret_cast<const sockaddr_in *>(sa);
    from->port = ntohs(in->sin_port);
#if !defined(_WIN32)
    if (u.last_sender_len == 0 || std::memcmp(&u.last_sender, &in->sin_addr, 4) != 0) {
      if (!inet_ntop(AF_INET, &in->sin_addr, u.last_sender_text, sizeof u.last_sender_text))
        return LUAASIO_ESYSTEM;
      std::memcpy(&u.last_sender, &in->sin_addr, 4);
      u.last_sender_len = int(std::strlen(u.last_sender_text));
    }
    std::memcpy(from->ip, u.last_sender_text, size_t(u.last_sender_len) + 1);
    from->iplen = u.last_sender_len;
    return LUAASIO_OK;
#endif
  }
  udp_proto::endpoint ep;
  size_t len = sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
    return LUAASIO_ENOTSUP;
  std::memcpy(ep.data(), sa, len);
  std::string text = ep.address().to_string();
  if (text.size() + 1 > sizeof from->ip)
    return LUAASIO_ESYSTEM;
  std::memcpy(from->ip, text.c_str(), text.size() + 1);
  from->iplen = int(text.size());
  from->port = ep.port();
  return LUAASIO_OK;
}

static int recv_one(udp &u, char *buf, int cap, luaasio_udp_from *from) {
  sockaddr_storage ss;
  int fd = int(u.sock.native_handle());
  bool truncated = false;
  int n;
#if defined(_WIN32)
  int slen = sizeof ss;
  n = ::recvfrom(u.sock.native_handle(), buf, cap, 0, reinterpret_cast<sockaddr *>(&ss),
                 &slen);
  if (n < 0) {
    int err = WSAGetLastError();
    // Windows reports an ICMP port unreachable as a reset.
    if (err == WSAECONNRESET)
      return LUAASIO_ECONNREFUSED;
    if (err != WSAEMSGSIZE)
      return map_error(error_code(err, asio::error::get_system_category()));
    n = cap;
    truncated = true;
  }
  (void)fd;
#else
  iovec iov;
  iov.iov_base = buf;
  iov.iov_len = size_t(cap);
  alignas(cmsghdr) char control[128];
  msghdr m;
  std::memset(&m, 0, sizeof m);
  m.msg_name = &ss;
  m.msg_namelen = sizeof ss;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (u.transparent && from) {
    m.msg_control = control;
    m.msg_controllen = sizeof control;
  }
  ssize_t got;
  do
    got = ::recvmsg(fd, &m, 0);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    return map_error(error_code(errno, asio::error::get_system_category()));
  n = int(got);
  truncated = (m.msg_flags & MSG_TRUNC) != 0;
#endif
  if (!from)
    return truncated ? LUAASIO_ETRUNCATED : n;
  from->flags = truncated ? LUAASIO_UDP_FLAG_TRUNCATED : 0;
#if defined(__linux__)
  if (u.transparent) {
    for (cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      size_t len = 0;
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == ip_recvorigdstaddr)
        len = sizeof(sockaddr_in);
      else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == ipv6_recvorigdstaddr)
        len = sizeof(sockaddr_in6);
      if (len && c->cmsg_len >= CMSG_LEN(len)) {
        static_assert(sizeof(sockaddr_storage) == LUAASIO_SOCKADDR_SIZE, "sockaddr size");
        std::memset(from->origdst, 0, sizeof from->origdst);
        std::memcpy(from->origdst, CMSG_DATA(c), len);
        from->flags |= LUAASIO_UDP_FLAG_ORIGDST;
      }
    }
  }
#endif
  int rc = sender_text(u, reinterpret_cast<const sockaddr *>(&ss), from);
  return rc < 0 ? rc : n;
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_udp_open(luaasio_loop *l, int family) {
  if (!l || (family != LUAASIO_FAMILY_ANY && family != LUAASIO_FAMILY_INET &&
             family != LUAASIO_FAMILY_INET6))
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto u = std::make_shared<udp>(*l);
  if (family != LUAASIO_FAMILY_ANY) {
    int rc = u->open_socket(family == LUAASIO_FAMILY_INET6);
    if (rc < 0)
      return rc;
  }
  return l->add(u);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_bind(luaasio_loop *l, int32_t h, const char *ip, int port) {
  if (!l || !ip)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  if (port < 0 || port > 65535)
    return LUAASIO_EBADADDR;
  LUAASIO_TRY
  udp_proto::endpoint ep;
  int rc = u->endpoint_for(ip, port, ep);
  if (rc < 0)
    return rc;
  error_code ec;
  u->sock.bind(ep, ec);
  return map_error(ec);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_connect(luaasio_loop *l, int32_t h, const char *ip, int port) {
  if (!l || !ip)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  if (port <= 0 || port > 65535)
    return LUAASIO_EBADADDR;
  LUAASIO_TRY
  udp_proto::endpoint ep;
  int rc = u->endpoint_for(ip, port, ep);
  if (rc < 0)
    return rc;
  error_code ec;
  u->sock.connect(ep, ec);
  if (!ec)
    u->connected = true;
  return map_error(ec);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_recv(luaasio_loop *l, int32_t h, char *buf, int cap,
                                    luaasio_udp_from *from) {
  if (!l || !buf || cap <= 0)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  if (!u->sock.is_open())
    return LUAASIO_ENOTBOUND;
  LUAASIO_TRY
  return recv_one(*u, buf, cap, from);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_send(luaasio_loop *l, int32_t h, const char *data, int len,
                                    const char *ip, int port) {
  if (!l || (!data && len != 0) || len < 0)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  static const char empty = 0;
  if (!data)
    data = &empty;
  LUAASIO_TRY
  error_code ec;
  size_t n;
  if (!ip) {
    // Checked here: the systems disagree on the error (EDESTADDRREQ, WSAENOTCONN).
    if (!u->connected)
      return LUAASIO_ENOTCONN;
    n = u->sock.send(asio::buffer(data, size_t(len)), 0, ec);
  } else {
    if (port <= 0 || port > 65535)
      return LUAASIO_EBADADDR;
    if (!u->last_valid || u->last_ip != ip) {
      int rc = u->endpoint_for(ip, port, u->last_ep);
      if (rc < 0) {
        u->last_valid = false;
        return rc;
      }
      u->last_ip = ip;
      u->last_valid = true;
    }
    u->last_ep.port(uint16_t(port));
    n = u->sock.send_to(asio::buffer(data, size_t(len)), u->last_ep, 0, ec);
  }
  if (ec)
    return map_error(ec);
  return static_cast<int>(n);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_wait(luaasio_loop *l, int32_t h, int dir, int32_t slot) {
  if (!l || (dir != LUAASIO_WAIT_READ && dir != LUAASIO_WAIT_WRITE) || slot < 0)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  if (!u->sock.is_open())
    return LUAASIO_ENOTBOUND;
  LUAASIO_TRY
  u->wait_slot[dir] = slot;
  if (!u->waiting[dir])
    u->start_wait(dir);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_unwait(luaasio_loop *l, int32_t h, int dir) {
  if (!l || (dir != LUAASIO_WAIT_READ && dir != LUAASIO_WAIT_WRITE))
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  u->wait_slot[dir] = -1;
  LUAASIO_TRY
  l->purge(u, dir);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_setoption(luaasio_loop *l, int32_t h, int option, int value) {
  if (!l || option < 1 || option > udp::max_option)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  bool size = option == LUAASIO_UDP_SNDBUF || option == LUAASIO_UDP_RCVBUF;
  bool hops = option == LUAASIO_UDP_TTL || option == LUAASIO_UDP_MULTICAST_TTL;
  if ((size && value <= 0) || (hops && (value < 0 || value > 255)) ||
      (!size && !hops && value != 0 && value != 1))
    return LUAASIO_EINVAL;
#if !defined(__linux__)
  if (option == LUAASIO_UDP_TRANSPARENT)
    return LUAASIO_ENOTSUP;
#endif
  LUAASIO_TRY
  if (!u->sock.is_open()) {
    u->option_value[option] = value;
    u->option_set |= 1u << option;
    return LUAASIO_OK;
  }
  return u->apply(option, value);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_group(luaasio_loop *l, int32_t h, int join, const char *group,
                                     const char *iface) {
  if (!l || !group)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  LUAASIO_TRY
  error_code ec;
  auto addr = asio::ip::make_address(group, ec);
  if (ec || !addr.is_multicast())
    return LUAASIO_EBADADDR;
  if (!u->sock.is_open()) {
    int rc = u->open_socket(addr.is_v6());
    if (rc < 0)
      return rc;
  }
  bool have_iface = iface && *iface;
  if (addr.is_v4()) {
    if (u->v6)
      return LUAASIO_ENOTSUP;
    asio::ip::address_v4 via = asio::ip::address_v4::any();
    if (have_iface) {
      via = asio::ip::make_address_v4(iface, ec);
      if (ec)
        return LUAASIO_EBADADDR;
    }
    if (join)
      u->sock.set_option(asio::ip::multicast::join_group(addr.to_v4(), via), ec);
    else
      u->sock.set_option(asio::ip::multicast::leave_group(addr.to_v4(), via), ec);
  } else {
    if (!u->v6)
      return LUAASIO_ENOTSUP;
    unsigned long index = 0;
    if (have_iface) {
      char *end = nullptr;
      index = std::strtoul(iface, &end, 10);
      if (*end != '\0') {
#if defined(_WIN32)
        return LUAASIO_EBADADDR;
#else
        index = if_nametoindex(iface);
        if (index == 0)
          return LUAASIO_EBADADDR;
#endif
      }
    }
    if (join)
      u->sock.set_option(asio::ip::multicast::join_group(addr.to_v6(), index), ec);
    else
      u->sock.set_option(asio::ip::multicast::leave_group(addr.to_v6(), index), ec);
  }
  return map_error(ec);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_udp_address(luaasio_loop *l, int32_t h, char *buf, int cap,
                                       int *port) {
  if (!l || !buf || cap <= 0 || !port)
    return LUAASIO_EINVAL;
  udp *u = l->get<udp>(h);
  if (!u)
    return LUAASIO_EBADF;
  if (!u->sock.is_open())
    return LUAASIO_ENOTBOUND;
  LUAASIO_TRY
  error_code ec;
  udp_proto::endpoint ep = u->sock.local_endpoint(ec);
  if (ec)
    return map_error(ec);
  return endpoint_text(stream::endpoint(ep), buf, cap, port);
  LUAASIO_CATCH
}
