// Connections: connect, non-blocking read/write, readiness waits, options.
#include "loop.hpp"
#include "conn.hpp"
#include "server.hpp"
#include "endpoint.hpp"

#include <cerrno>
#include <cstring>

#if defined(__linux__)
#include <netinet/in.h>
#include <sys/socket.h>
#endif
#if LUAASIO_DIRECT_READ_WAIT
#include <sys/epoll.h>
#endif

namespace luaasio {

#if defined(__linux__)
// An errno from recv() or send() as a LUAASIO_* code.
static int sys_error(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK)
    return LUAASIO_EAGAIN;
  return map_error(error_code(err, asio::error::get_system_category()));
}
#endif

conn::conn(loop &l) : object(conn_kind), owner(l), sock(l.ctx) {}

void conn::close_all() noexcept {
  error_code ec;
  if (accepted_by) {
    std::shared_ptr<server> s = std::move(accepted_by);
    s->conn_closed();
  }
  sock.close(ec);
}

void conn::on_wait(int dir) {
  waiting[dir] = false;
  int32_t slot = wait_slot[dir];
  if (!open || slot < 0)
    return;
  wait_slot[dir] = -1;
  // Any error shows up again in the read or write that follows.
  owner.push(slot, LUAASIO_OK, this, dir);
}

#if LUAASIO_DIRECT_READ_WAIT
read_wait_op::read_wait_op() : reactor_op(error_code(), &perform, &complete) {}

asio::detail::reactor_op::status read_wait_op::perform(asio::detail::reactor_op *base) {
  auto *op = static_cast<read_wait_op *>(base);
  if (!op->armed) {
    op->armed = true;
    return not_done;
  }
  return done;
}

void read_wait_op::complete(void *owner, asio::detail::operation *base, const error_code &,
                            std::size_t) {
  auto *op = static_cast<read_wait_op *>(base);
  // The operation lives inside the connection: take the reference first,
  // and touch nothing of `op` once the connection may be gone.
  std::shared_ptr<conn> c = std::move(op->holder);
  if (owner && c)
    c->on_wait(LUAASIO_WAIT_READ);
}
#endif

#if LUAASIO_DIRECT_READ_WAIT
// The loop's epoll reactor, looked up once (use_service() takes a lock).
static asio::detail::reactor &reactor_of(loop &l) {
  if (!l.reactor)
    l.reactor = &asio::use_service<asio::detail::reactor>(l.ctx);
  return *static_cast<asio::detail::reactor *>(l.reactor);
}

void conn::queue_read_wait() {
  read_wait.holder = shared_from_this();
  read_wait.armed = false;
  read_wait.ec_ = error_code();
  reactor_of(owner).start_op(asio::detail::reactor::read_op, sock.native_handle(),
                             sock.reactor_data(), &read_wait, false, true);
  waiting[LUAASIO_WAIT_READ] = true;
}
#endif

void conn::start_wait(int dir) {
  // waiting[dir] is set only once the wait is really queued: if starting it
  // throws, the next luaasio_conn_wait starts one again.
#if LUAASIO_DIRECT_READ_WAIT
  if (dir == LUAASIO_WAIT_READ && eagain_at == owner.runs) {
    queue_read_wait();
    return;
  }
#endif
  auto type = dir == LUAASIO_WAIT_READ ? stream::socket::wait_read : stream::socket::wait_write;
  sock.async_wait(type, [self = shared_from_this(), dir](const error_code &) {
    self->on_wait(dir);
  });
  waiting[dir] = true;
}

// Sockets handed to Lua are non-blocking, so reads and writes return
// would_block instead of parking the thread. TCP ones send small writes at
// once (no Nagle delay): TCP_NODELAY is set before the second write, since
// Nagle cannot hold back a connection's first one, and many short
// connections never write twice. The family comes from the endpoint the
// caller already has: asking the socket would cost a system call.
void prepare_socket(conn &c, int family) {
  error_code ec;
  c.sock.non_blocking(true, ec);
  c.tcp = family == AF_INET || family == AF_INET6;
  c.nodelay_pending = c.tcp;
}

static int32_t start_connect(loop *l, int32_t slot, const stream::endpoint &ep) {
  auto c = std::make_shared<conn>(*l);
  int32_t h = l->add(c);
  if (h < 0)
    return h;
  c->connect_slot = slot;
  c->connecting = true;
  int family = ep.data()->sa_family;
  // Nothing may throw between add() and the start of the connect without
  // giving the handle back.
  struct release_on_throw {
    loop *l;
    int32_t h;
    bool armed = true;
    ~release_on_throw() {
      if (armed)
        l->release(h);
    }
  } guard{l, h};
  c->sock.async_connect(ep, [c, family](const error_code &ec) {
    c->connecting = false;
    if (!c->open)
      return;
    if (!ec)
      prepare_socket(*c, family);
    int code = map_error(ec);
    // Boost reports Linux's EAGAIN from connect() as ENOBUFS. For TCP it
    // means no local port is free; for a Unix socket, a full listen queue.
    if (ec == asio::error::no_buffer_space)
      code = family == AF_INET || family == AF_INET6 ? LUAASIO_EADDRNOTAVAIL
                                                     : LUAASIO_ECONNREFUSED;
    c->owner.push(c->connect_slot, code, c.get());
  });
  guard.armed = false;
  return h;
}

#if LUAASIO_DIRECT_READ_WAIT
// A TCP read that leaves the socket empty lets the read wait Lua arms next
// be queued at once, in the same call: the next read then waits instead of
// spending a recv on EAGAIN, as a read after EAGAIN does (invariant 3 in
// reactor_wait.hpp).
//
// A non-blocking TCP recv returns fewer bytes than asked for only when it
// emptied the receive queue, or when it stopped early: at the peer's FIN,
// at an error (a reset), or at urgent data. Each of those three has already
// been announced in a readiness report if it came before the report that
// woke this reader, and the reactor keeps the events of the last report it
// took for the socket: EPOLLRDHUP (FIN), EPOLLERR or EPOLLHUP (reset),
// EPOLLPRI (urgent data), and every later report carries them too. What
// arrives after that report makes a new one, which the queued wait gets.
// So a short read whose socket's last report has none of them emptied the
// socket, and nothing is owed to a wait queued now.
//
// Boost registers sockets without EPOLLRDHUP, so a connection asks for it
// (one epoll_ctl) on its first short read; from its next read on, short
// reads queue the wait. Re-arming the registration also reports again
// whatever is pending at that moment, so a FIN taken before is not missed.
//
// The registration's mask and the epoll descriptor are private members of
// the reactor, named here through explicit instantiation, where access is
// not checked; the mask is updated with the registration, so that Boost's
// own later epoll_ctl (adding EPOLLOUT) keeps EPOLLRDHUP.
template <class Tag, typename Tag::type Member> struct reactor_member {
  friend typename Tag::type member(Tag) { return Member; }
};
struct epoll_fd_tag {
  using type = int asio::detail::epoll_reactor::*;
  friend type member(epoll_fd_tag);
};
struct registered_events_tag {
  using type = uint32_t asio::detail::epoll_reactor::descriptor_state::*;
  friend type member(registered_events_tag);
};
template struct reactor_member<epoll_fd_tag, &asio::detail::epoll_reactor::epoll_fd_>;
template struct reactor_member<registered_events_tag,
                               &asio::detail::epoll_reactor::descriptor_state::registered_events_>;

static_assert(std::is_base_of<asio::detail::scheduler_operation,
                              asio::detail::epoll_reactor::descriptor_state>::value,
              "epoll_reactor::descriptor_state changed: build with LUAASIO_PORTABLE_WAIT");

// The events of the last readiness report the reactor took from epoll for
// a descriptor: the reactor keeps them in the descriptor's operation base.
struct last_report : asio::detail::scheduler_operation {
  static unsigned events(asio::detail::epoll_reactor::per_descriptor_data d) {
    // A C-style cast reaches the private base; the member pointer, formed
    // in a derived class, the protected member.
    auto *op = (const asio::detail::scheduler_operation *)d;
    return op->*(&last_report::task_result_);
  }
};

static void watch_peer_close(conn &c) {
  c.rdhup_tried = true;
  auto reg = c.sock.reactor_data();
  if (!reg)
    return;
  uint32_t &registered = reg->*member(registered_events_tag{});
  if (registered == 0) // not registered with epoll
    return;
  int epoll_fd;
  try {
    epoll_fd = reactor_of(c.owner).*member(epoll_fd_tag{});
  } catch (...) {
    return;
  }
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = reg;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.sock.native_handle(), &ev) == 0) {
    registered = ev.events;
    c.rdhup = true;
  }
}

// After a TCP read that came back short: ask for EPOLLRDHUP the first time,
// and from then on queue the read wait if the socket was emptied.
static void after_short_read(conn &c) {
  if (!c.rdhup) {
    if (!c.rdhup_tried)
      watch_peer_close(c);
    return;
  }
  if (c.waiting[LUAASIO_WAIT_READ])
    return;
  if (last_report::events(c.sock.reactor_data()) & (EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI))
    return;
  // If queueing throws, Lua's wait starts one with async_wait.
  try {
    c.queue_read_wait();
  } catch (...) {
  }
}
#endif

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_connect(luaasio_loop *l, int32_t slot, const char *ip,
                                       int port) {
  if (!l || !ip || slot < 0)
    return LUAASIO_EINVAL;
  if (port <= 0 || port > 65535)
    return LUAASIO_EBADADDR;
  LUAASIO_TRY
  error_code ec;
  auto addr = asio::ip::make_address(ip, ec);
  if (ec)
    return LUAASIO_EBADADDR;
  return start_connect(l, slot, stream::endpoint(asio::ip::tcp::endpoint(addr, uint16_t(port))));
  LUAASIO_CATCH
}

LUAASIO_EXPORT int32_t luaasio_connect_unix(luaasio_loop *l, int32_t slot, const char *path) {
  if (!l || !path || slot < 0)
    return LUAASIO_EINVAL;
#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
  LUAASIO_TRY
  stream::endpoint ep;
  int rc = unix_endpoint(path, ep);
  if (rc < 0)
    return rc;
  return start_connect(l, slot, ep);
  LUAASIO_CATCH
#else
  (void)slot;
  return LUAASIO_ENOTSUP;
#endif
}

LUAASIO_EXPORT int luaasio_conn_read(luaasio_loop *l, int32_t h, char *buf, int cap) {
  if (!l || !buf || cap <= 0)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  if (c->connecting)
    return LUAASIO_EAGAIN;
#if defined(__linux__)
  // recv() itself: the socket is non-blocking, and Boost's read_some adds
  // only error-code bookkeeping around the same call.
  ssize_t n = ::recv(c->sock.native_handle(), buf, size_t(cap), 0);
  int rc = n > 0 ? static_cast<int>(n) : n == 0 ? LUAASIO_EOF : sys_error(errno);
#if LUAASIO_DIRECT_READ_WAIT
  if (rc > 0 && rc < cap && c->tcp)
    after_short_read(*c);
#endif
#else
  error_code ec;
  size_t n = c->sock.read_some(asio::buffer(buf, size_t(cap)), ec);
  int rc = ec ? map_error(ec) : static_cast<int>(n);
#endif
  c->eagain_at = rc == LUAASIO_EAGAIN ? l->runs : 0;
  return rc;
}

LUAASIO_EXPORT int luaasio_conn_write(luaasio_loop *l, int32_t h, const char *data,
                                      int offset, int len) {
  if (!l || !data || offset < 0 || len < 0)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  if (len == 0)
    return 0;
  if (c->connecting)
    return LUAASIO_EAGAIN;
  error_code ec;
  if (c->nodelay_pending && c->wrote) {
    c->nodelay_pending = false;
    c->sock.set_option(asio::ip::tcp::no_delay(true), ec);
  }
#if defined(__linux__)
  ssize_t n = ::send(c->sock.native_handle(), data + offset, size_t(len), MSG_NOSIGNAL);
  if (n < 0)
    return sys_error(errno);
  c->wrote = c->wrote || n > 0;
#else
  size_t n = c->sock.write_some(asio::buffer(data + offset, size_t(len)), ec);
  c->wrote = c->wrote || n > 0;
  if (ec)
    return map_error(ec);
#endif
  return n ? static_cast<int>(n) : LUAASIO_EAGAIN;
}

LUAASIO_EXPORT int luaasio_conn_wait(luaasio_loop *l, int32_t h, int dir, int32_t slot) {
  if (!l || (dir != LUAASIO_WAIT_READ && dir != LUAASIO_WAIT_WRITE) || slot < 0)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  LUAASIO_TRY
  c->wait_slot[dir] = slot;
  if (!c->waiting[dir])
    c->start_wait(dir);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_read_wait_cheap_after_eagain(void) { return LUAASIO_DIRECT_READ_WAIT; }

LUAASIO_EXPORT int luaasio_conn_read_wait_queued(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  return c->waiting[LUAASIO_WAIT_READ] ? 1 : 0;
}

LUAASIO_EXPORT int luaasio_conn_unwait(luaasio_loop *l, int32_t h, int dir) {
  if (!l || (dir != LUAASIO_WAIT_READ && dir != LUAASIO_WAIT_WRITE))
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  c->wait_slot[dir] = -1;
  LUAASIO_TRY
  l->purge(c, dir);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int64_t luaasio_conn_native(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  if (c->connecting || !c->sock.is_open())
    return LUAASIO_ENOTCONN;
  return static_cast<int64_t>(c->sock.native_handle());
}

LUAASIO_EXPORT int luaasio_conn_read_blocked(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  c->eagain_at = l->runs;
  return LUAASIO_OK;
}

LUAASIO_EXPORT int luaasio_conn_shutdown(luaasio_loop *l, int32_t h, int how) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  stream::socket::shutdown_type type;
  switch (how) {
  case LUAASIO_SHUT_RD: type = stream::socket::shutdown_receive; break;
  case LUAASIO_SHUT_WR: type = stream::socket::shutdown_send; break;
  case LUAASIO_SHUT_RDWR: type = stream::socket::shutdown_both; break;
  default: return LUAASIO_EINVAL;
  }
  error_code ec;
  c->sock.shutdown(type, ec);
  return map_error(ec);
}

LUAASIO_EXPORT int luaasio_conn_setoption(luaasio_loop *l, int32_t h, int option, int value) {
  if (!l)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  error_code ec;
  switch (option) {
  case LUAASIO_OPT_NODELAY:
    c->nodelay_pending = false;
    c->sock.set_option(asio::ip::tcp::no_delay(value != 0), ec);
    break;
  case LUAASIO_OPT_KEEPALIVE:
    c->sock.set_option(asio::socket_base::keep_alive(value != 0), ec);
    break;
  case LUAASIO_OPT_SNDBUF:
    if (value <= 0)
      return LUAASIO_EINVAL;
    c->sock.set_option(asio::socket_base::send_buffer_size(value), ec);
    break;
  case LUAASIO_OPT_RCVBUF:
    if (value <= 0)
      return LUAASIO_EINVAL;
    c->sock.set_option(asio::socket_base::receive_buffer_size(value), ec);
    break;
  case LUAASIO_OPT_LINGER:
    // A positive linger time makes close() block until the data is sent,
    // which would stall the whole loop: only 0 (close with a reset) and off
    // (the kernel finishes sending in the background) are offered.
    if (value > 0)
      return LUAASIO_ENOTSUP;
    c->sock.set_option(asio::socket_base::linger(value == 0, 0), ec);
    break;
  default:
    return LUAASIO_EINVAL;
  }
  return map_error(ec);
}

LUAASIO_EXPORT int luaasio_conn_address(luaasio_loop *l, int32_t h, int which, char *buf,
                                        int cap, int *port) {
  if (!l || !buf || cap <= 0 || !port)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
  LUAASIO_TRY
  error_code ec;
  stream::endpoint ep = which == 0 ? c->sock.local_endpoint(ec) : c->sock.remote_endpoint(ec);
  if (ec)
    return map_error(ec);
  return endpoint_text(ep, buf, cap, port);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_conn_original_dst(luaasio_loop *l, int32_t h, char *out) {
  if (!l || !out)
    return LUAASIO_EINVAL;
  conn *c = l->get<conn>(h);
  if (!c)
    return LUAASIO_EBADF;
#if defined(__linux__)
  // Values from <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
  // which are not installed everywhere the library is built.
  const int so_original_dst = 80, ip6t_so_original_dst = 80;
  error_code ec;
  stream::endpoint local = c->sock.local_endpoint(ec);
  if (ec)
    return map_error(ec);
  const sockaddr *la = local.data();
  bool v6 = la->sa_family == AF_INET6;
  if (!v6 && la->sa_family != AF_INET)
    return LUAASIO_ENOTSUP;
  // An IPv4 client of a dual-stack listener is tracked by the IPv4 table.
  if (v6 && IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6 *>(la)->sin6_addr))
    v6 = false;
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof ss;
  int fd = c->sock.native_handle();
  int rc = v6 ? getsockopt(fd, IPPROTO_IPV6, ip6t_so_original_dst, &ss, &len)
              : getsockopt(fd, IPPROTO_IP, so_original_dst, &ss, &len);
  if (rc != 0)
    return LUAASIO_ENOORIGDST;
  // Without a REDIRECT the conntrack entry names this socket's own address.
  if (same_address(reinterpret_cast<const sockaddr *>(&ss), la))
    return LUAASIO_ENOORIGDST;
  static_assert(sizeof ss == LUAASIO_SOCKADDR_SIZE, "sockaddr_storage size");
  std::memcpy(out, &ss, sizeof ss);
  return LUAASIO_SOCKADDR_SIZE;
#else
  return LUAASIO_ENOTSUP;
#endif
}
