// Relays (asio.relay): both directions between two connections forwarded
// inside the library. On Linux, between two TCP sockets, the bytes move
// with splice(2) through a pipe per direction and never enter user space;
// elsewhere each direction is a read-then-write loop on one buffer.
//
// Each direction has at most one operation in flight, and every handler
// holds the relay (which holds both connections), so nothing it uses can go
// away before it has run. A direction that fails (reset, close from Lua,
// idle timeout) cancels everything else, so that the relay always ends; a
// direction that reaches EOF only half-closes the other side.
#include "loop.hpp"
#include "relay.hpp"

#if defined(__linux__)
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace luaasio {

namespace {
constexpr size_t buffer_size = 32 * 1024;  // per direction, buffered mode
constexpr size_t splice_chunk = 64 * 1024;
constexpr int max_rounds = 16;             // splice rounds before giving others a turn
} // namespace

relay::relay(loop &l, std::shared_ptr<conn> a, std::shared_ptr<conn> b, int32_t s, double idle_seconds)
    : object(relay_kind), owner(l), slot(s), timer(l.ctx) {
  side[0] = std::move(a);
  side[1] = std::move(b);
  dirs[0].from = 0;
  dirs[0].to = 1;
  dirs[1].from = 1;
  dirs[1].to = 0;
  if (idle_seconds > 0)
    idle = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(idle_seconds));
  touch();
}

relay::~relay() {
#if defined(__linux__)
  for (auto &d : dirs) {
    if (d.pipe_r >= 0)
      ::close(d.pipe_r);
    if (d.pipe_w >= 0)
      ::close(d.pipe_w);
  }
#endif
}

// Lua closed the relay handle (or the loop is going away): stop. The
// connections stay open; they are Lua's.
void relay::close_all() noexcept {
  error_code ec;
  for (auto &s : side)
    s->sock.cancel(ec);
  timer.cancel();
}

#if defined(__linux__)
// splice(2) into a socket whose peer is gone raises SIGPIPE, and unlike
// send() it has no MSG_NOSIGNAL. The loop's thread blocks SIGPIPE once it
// splices; the signal then stays pending, harmlessly, and the call fails
// with EPIPE instead of ending the process.
static void block_sigpipe() {
  static thread_local bool blocked = false;
  if (blocked)
    return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  blocked = pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}
#endif

void relay::start(bool use_splice) {
#if defined(__linux__)
  if (use_splice)
    block_sigpipe();
  if (use_splice) {
    int fds[2][2];
    if (::pipe2(fds[0], O_NONBLOCK | O_CLOEXEC) == 0) {
      if (::pipe2(fds[1], O_NONBLOCK | O_CLOEXEC) == 0) {
        for (int d = 0; d < 2; ++d) {
          dirs[d].pipe_r = fds[d][0];
          dirs[d].pipe_w = fds[d][1];
        }
        spliced = true;
      } else {
        ::close(fds[0][0]);
        ::close(fds[0][1]);
      }
    }
  }
#else
  (void)use_splice;
#endif
  if (!spliced)
    for (auto &d : dirs)
      d.buf.reset(new char[buffer_size]);
  if (idle.count() > 0)
    arm_timer(idle);
  for (int d = 0; d < 2; ++d) {
    if (spliced)
      splice_pump(d);
    else
      read_some(d);
  }
}

void relay::arm_timer(std::chrono::steady_clock::duration after) {
  timer.expires_after(after);
  timer.async_wait([self = shared_from_this()](const error_code &ec) {
    if (ec || !self->open || (self->dirs[0].end != 1 && self->dirs[1].end != 1))
      return;
    auto quiet = std::chrono::steady_clock::now() - self->last;
    if (quiet < self->idle) {
      self->arm_timer(self->idle - quiet);
      return;
    }
    self->failure = LUAASIO_ETIMEDOUT;
    error_code ignored;
    for (auto &s : self->side)
      s->sock.cancel(ignored);
  });
}

// Direction `d` is over with `code`. EOF half-closes the receiving side; an
// error ends the other direction too.
void relay::ended(int d, int code) {
  direction &dir = dirs[d];
  if (dir.end != 1)
    return;
  if (code == LUAASIO_ECLOSED && failure)
    code = failure;  // cancelled because of the error that ended the relay
  dir.end = code;
  error_code ec;
  if (code == LUAASIO_EOF) {
    side[dir.to]->sock.shutdown(asio::socket_base::shutdown_send, ec);
  } else {
    if (!failure)
      failure = code;
    for (auto &s : side)
      s->sock.cancel(ec);
  }
  if (dirs[0].end != 1 && dirs[1].end != 1) {
    timer.cancel();
    if (open)
      owner.push(slot, LUAASIO_OK, this);
  }
}

void relay::read_some(int d) {
  direction &dir = dirs[d];
  side[dir.from]->sock.async_read_some(
      asio::buffer(dir.buf.get(), buffer_size),
      [self = shared_from_this(), d](const error_code &ec, size_t n) {
        direction &dir = self->dirs[d];
        if (ec) {
          self->ended(d, map_error(ec));
          return;
        }
        if (self->failure) {
          self->ended(d, self->failure);
          return;
        }
        dir.bytes += int64_t(n);
        dir.have = n;
        dir.off = 0;
        self->touch();
        self->write_some(d);
      });
}

void relay::write_some(int d) {
  direction &dir = dirs[d];
  side[dir.to]->sock.async_write_some(
      asio::buffer(dir.buf.get() + dir.off, dir.have),
      [self = shared_from_this(), d](const error_code &ec, size_t n) {
        direction &dir = self->dirs[d];
        if (ec) {
          self->ended(d, map_error(ec));
          return;
        }
        if (self->failure) {
          self->ended(d, self->failure);
          return;
        }
        dir.off += n;
        dir.have -= n;
        self->touch();
        if (dir.have > 0)
          self->write_some(d);
        else
          self->read_some(d);
      });
}

#if defined(__linux__)
static int errno_code(int e) { return map_error(error_code(e, boost::system::system_category())); }
#endif

void relay::splice_pump(int d) {
#if defined(__linux__)
  direction &dir = dirs[d];
  if (failure) {
    ended(d, failure);
    return;
  }
  int from = side[dir.from]->sock.native_handle();
  int to = side[dir.to]->sock.native_handle();
  auto wait = [this, d](int which, stream::socket::wait_type type) {
    side[which]->sock.async_wait(type, [self = shared_from_this(), d](const error_code &ec) {
      if (ec) {
        self->ended(d, map_error(ec));
        return;
      }
      self->splice_pump(d);
    });
  };
  for (int round = 0; round < max_rounds; ++round) {
    if (dir.in_pipe > 0) {
      ssize_t n = ::splice(dir.pipe_r, nullptr, to, nullptr, dir.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        dir.in_pipe -= size_t(n);
        touch();
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wait(dir.to, stream::socket::wait_write);
        return;
      }
      ended(d, n < 0 ? errno_code(errno) : LUAASIO_EPIPE);
      return;
    }
    ssize_t n = ::splice(from, nullptr, dir.pipe_w, nullptr, splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      dir.in_pipe += size_t(n);
      dir.bytes += n;
      touch();
      continue;
    }
    if (n == 0) {
      ended(d, LUAASIO_EOF);
      return;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait(dir.from, stream::socket::wait_read);
      return;
    }
    ended(d, errno_code(errno));
    return;
  }
  // Busy: let the other connections have a turn, then go on.
  asio::post(owner.ctx, [self = shared_from_this(), d] { self->splice_pump(d); });
#else
  (void)d;
#endif
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_relay_start(luaasio_loop *l, int32_t a, int32_t b, int32_t slot,
                                           double idle_timeout, int flags) {
  if (!l || slot < 0 || !(idle_timeout >= 0))
    return LUAASIO_EINVAL;
  conn *ca = l->get<conn>(a);
  conn *cb = l->get<conn>(b);
  if (!ca || !cb)
    return LUAASIO_EBADF;
  if (ca == cb)
    return LUAASIO_EINVAL;
  if (ca->connecting || cb->connecting)
    return LUAASIO_ENOTCONN;
  LUAASIO_TRY
  bool use_splice = false;
#if defined(__linux__)
  if (!(flags & LUAASIO_RELAY_NO_SPLICE)) {
    error_code e1, e2;
    auto fa = ca->sock.local_endpoint(e1).data()->sa_family;
    auto fb = cb->sock.local_endpoint(e2).data()->sa_family;
    auto tcp = [](int f) { return f == AF_INET || f == AF_INET6; };
    use_splice = !e1 && !e2 && tcp(fa) && tcp(fb);
  }
#else
  (void)flags;
#endif
  auto r = std::make_shared<relay>(*l, ca->shared_from_this(), cb->shared_from_this(), slot, idle_timeout);
  int32_t h = l->add(r);
  if (h < 0)
    return h;
  try {
    r->start(use_splice);
  } catch (...) {
    l->release(h);
    r->open = false;
    r->close_all();
    throw;
  }
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_relay_result(luaasio_loop *l, int32_t h, int64_t *bytes, int *ends) {
  if (!l || !bytes || !ends)
    return LUAASIO_EINVAL;
  relay *r = l->get<relay>(h);
  if (!r)
    return LUAASIO_EBADF;
  for (int d = 0; d < 2; ++d) {
    bytes[d] = r->dirs[d].bytes;
    ends[d] = r->dirs[d].end;
  }
  return r->spliced ? 1 : 0;
}
