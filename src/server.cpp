// Listening sockets and the accept loop.
#include "loop.hpp"
#include "server.hpp"
#include "endpoint.hpp"

#include <chrono>

#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace luaasio {

server::server(loop &l)
    : object(server_kind), owner(l), acceptor(l.ctx), backoff(l.ctx) {}

void server::close_all() noexcept {
  error_code ec;
  if (!counted_closed) {
    counted_closed = true;
    --owner.open_servers;
  }
#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
  // Remove the socket file this server created, unless it was replaced.
  if (!unix_path.empty()) {
    struct stat st;
    if (stat(unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        uint64_t(st.st_dev) == unix_dev && uint64_t(st.st_ino) == unix_ino)
      ::unlink(unix_path.c_str());
  }
#endif
  acceptor.close(ec);
  backoff.cancel();
  // `pending` stays: the cancelled accept still refers to its socket until
  // its handler has run, and that handler owns this server.
}

static bool out_of_resources(const error_code &ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_memory ||
         ec == asio::error::no_buffer_space ||
         ec == boost::system::errc::too_many_files_open_in_system;
}

void server::retry_later() noexcept {
  try {
    backoff.expires_after(std::chrono::milliseconds(100));
    backoff.async_wait([self = shared_from_this()](const error_code &) {
      if (self->open)
        self->accept_next();
    });
  } catch (...) {
    // Not even the timer: the next poll tries again.
    stalled = true;
    if (!deferred && owner.deferred.size() < owner.deferred.capacity()) {
      deferred = true;
      owner.deferred.push_back(shared_from_this());
    }
  }
}

bool server::deliver_pending() noexcept {
  try {
    std::shared_ptr<conn> c = pending;
    int32_t h = owner.add(pending); // may throw: `pending` still holds it then
    pending.reset();
    if (h > 0) {
      if (max_conns > 0) {
        c->accepted_by = shared_from_this();
        ++open_conns;
      }
      owner.push(slot, h, this);
    }
    return true;
  } catch (...) {
    return false;
  }
}

void server::accept_next() noexcept {
  if (!open || paused)
    return;
  if (pending && pending->sock.is_open()) {
    // A connection accepted while memory ran out, not yet handed over.
    if (!deliver_pending()) {
      retry_later();
      return;
    }
  }
  try {
    pending = std::make_shared<conn>(owner);
    auto t = std::make_shared<char>(0);
    ticket = t;
    acceptor.async_accept(pending->sock, [self = shared_from_this(), t](const error_code &ec) {
      self->accepting = false;
      if (!self->open)
        return;
      if (ec) {
        // Out of descriptors the listen queue stays readable; accepting
        // again at once would spin. Retry later, serving what is open.
        if (out_of_resources(ec))
          self->retry_later();
        else
          self->accept_next();
        return;
      }
      prepare_socket(*self->pending, self->family);
      if (!self->deliver_pending()) {
        // Out of memory: the accepted socket stays in `pending` and is
        // delivered when accepting resumes, after a pause.
        self->retry_later();
        return;
      }
      self->after_accept();
    });
    accepting = true;
  } catch (...) {
    retry_later();
  }
}

void recover_lost_accepts(loop &l) noexcept {
  for (auto &e : l.table) {
    if (!e.obj || e.obj->kind != object::server_kind)
      continue;
    auto *s = static_cast<server *>(e.obj.get());
    if (s->open && s->accepting && s->ticket.expired()) {
      // Its accept's handler is gone: the socket it was accepting into may
      // hold a connection or nothing; either way it is not ours to deliver.
      s->accepting = false;
      s->pending.reset();
      s->accept_next();
    }
  }
}

void server::after_accept() noexcept {
  if (max_conns > 0 && open_conns >= max_conns) {
    paused = true;
    return;
  }
  if (budget_run != owner.runs) {
    budget_run = owner.runs;
    accepted_in_run = 0;
  }
  if (++accepted_in_run < server_accept_budget) {
    accept_next();
  } else if (!deferred) {
    // Capacity for one entry per open server is reserved at open.
    deferred = true;
    owner.deferred.push_back(shared_from_this());
  }
}

void server::conn_closed() noexcept {
  --open_conns;
  if (paused && open && (max_conns <= 0 || open_conns < max_conns)) {
    paused = false;
    accept_next();
  }
}

void rearm_deferred(loop &l) noexcept {
  for (size_t i = 0; i < l.deferred.size(); ++i) {
    auto *s = static_cast<server *>(l.deferred[i].get());
    s->deferred = false;
    s->stalled = false;
    if (s->open && !s->paused)
      s->accept_next();
  }
  l.deferred.clear(); // keeps the capacity
}

static int listen_on(server &s, const stream::endpoint &ep, int backlog, int flags,
                     bool ip) {
  error_code ec;
  s.acceptor.open(ep.protocol(), ec);
  if (ec)
    return map_error(ec);
#if !defined(_WIN32)
  // On Windows SO_REUSEADDR would let another process steal the port.
  if (ip)
    s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
#endif
  if (flags & LUAASIO_SERVER_REUSEPORT) {
#if defined(SO_REUSEPORT)
    s.acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true),
                          ec);
    if (ec)
      return map_error(ec);
#else
    return LUAASIO_ENOTSUP;
#endif
  }
  if (ip && ep.data()->sa_family == AF_INET6) {
    s.acceptor.set_option(asio::ip::v6_only((flags & LUAASIO_SERVER_V6ONLY) != 0), ec);
    if (ec)
      return map_error(ec);
  }
  s.acceptor.bind(ep, ec);
  if (!ec)
    s.acceptor.listen(backlog > 0 ? backlog : asio::socket_base::max_listen_connections, ec);
  return map_error(ec);
}

static int32_t open_server(loop *l, int32_t slot, const stream::endpoint &ep, int backlog,
                           int flags, bool ip) {
  auto s = std::make_shared<server>(*l);
  s->slot = slot;
  s->family = ep.data()->sa_family;
  int rc = listen_on(*s, ep, backlog, flags, ip);
  if (rc < 0)
    return rc;
  l->deferred.reserve(l->deferred.size() + l->open_servers + 2);
  ++l->open_servers;
  int32_t h = l->add(s);
  if (h < 0) {
    --l->open_servers;
    return h;
  }
  s->accept_next();
  return h;
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_server_open(luaasio_loop *l, int32_t slot, const char *host,
                                           int port, int backlog, int flags) {
  if (!l || !host || port < 0 || port > 65535 || slot < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return LUAASIO_EBADADDR;
  stream::endpoint ep(asio::ip::tcp::endpoint(addr, uint16_t(port)));
  return open_server(l, slot, ep, backlog, flags, true);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int32_t luaasio_server_open_unix(luaasio_loop *l, int32_t slot,
                                                const char *path, int backlog) {
  if (!l || !path || slot < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  stream::endpoint ep;
  int rc = unix_endpoint(path, ep);
  if (rc < 0)
    return rc;
  int32_t h = open_server(l, slot, ep, backlog, 0, false);
#if defined(BOOST_ASIO_HAS_LOCAL_SOCKETS)
  if (h > 0) {
    // Right after bind(): the file there now is the one this server made.
    server *s = l->get<server>(h);
    struct stat st;
    if (stat(path, &st) == 0) {
      s->unix_dev = uint64_t(st.st_dev);
      s->unix_ino = uint64_t(st.st_ino);
      s->unix_path = path;
    }
  }
#endif
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_server_set_max(luaasio_loop *l, int32_t h, int max) {
  if (!l || max < 0)
    return LUAASIO_EINVAL;
  server *s = l->get<server>(h);
  if (!s)
    return LUAASIO_EBADF;
  s->max_conns = max;
  if (s->paused && (max == 0 || s->open_conns < max)) {
    s->paused = false;
    s->accept_next();
  }
  return LUAASIO_OK;
}

LUAASIO_EXPORT int luaasio_server_port(luaasio_loop *l, int32_t h) {
  if (!l)
    return LUAASIO_EINVAL;
  server *s = l->get<server>(h);
  if (!s)
    return LUAASIO_EBADF;
  LUAASIO_TRY
  error_code ec;
  stream::endpoint ep = s->acceptor.local_endpoint(ec);
  if (ec)
    return map_error(ec);
  char text[128];
  int port = 0;
  int rc = endpoint_text(ep, text, sizeof text, &port);
  return rc < 0 ? rc : port;
  LUAASIO_CATCH
}
