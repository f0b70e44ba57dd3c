// Relays: both directions between two connections forwarded in C++. Each
// direction is a small state machine driven by readiness waits: move what
// the kernel has, wait when it has nothing. On Linux, between two TCP
// sockets, the bytes go through a pipe with splice(2) and never reach user
// space; elsewhere they pass through a buffer that exists only while it
// holds bytes not yet written.
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
constexpr size_t chunk = 65536;
// Steps a direction takes in a row before it lets the loop run others.
constexpr int step_budget = 16;

bool is_tcp(conn &c) {
  error_code ec;
  auto ep = c.sock.local_endpoint(ec);
  if (ec)
    return false;
  int f = ep.data()->sa_family;
  return f == AF_INET || f == AF_INET6;
}
} // namespace

relay::relay(loop &l, std::shared_ptr<conn> a, std::shared_ptr<conn> b, double idle_sec,
             bool use_splice)
    : object(relay_kind), owner(l), timer(l.ctx) {
  side[0] = std::move(a);
  side[1] = std::move(b);
  dirs[0].from = 0;
  dirs[1].from = 1;
  if (idle_sec > 0) {
    has_idle = true;
    idle = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(std::min(idle_sec, 86400.0 * 365)));
  }
#if defined(__linux__)
  if (use_splice && is_tcp(*side[0]) && is_tcp(*side[1]))
    for (auto &d : dirs)
      d.splice = pipe2(d.pipe, O_NONBLOCK | O_CLOEXEC) == 0;
#else
  (void)use_splice;
  (void)&is_tcp;
#endif
}

relay::~relay() {
#if defined(__linux__)
  for (auto &d : dirs)
    for (int &fd : d.pipe)
      if (fd >= 0) {
        ::close(fd);
        fd = -1;
      }
#endif
}

void relay::close_all() noexcept {
  // The relay's own handle was closed (asio.kill of the waiting thread):
  // stop forwarding, leave both connections open. Handlers in flight see
  // `open == false` and do nothing more.
  error_code ec;
  cancel_timer();
  for (auto &s : side)
    s->sock.cancel(ec);
}

void relay::cancel_timer() noexcept {
  try {
    timer.cancel();
  } catch (...) {
    // The wait then expires on its own and finds the relay done.
  }
}

void relay::start(int32_t s) {
  slot = s;
  last_activity = std::chrono::steady_clock::now();
  error_code ec;
  // A relay forwards what arrives at once; Nagle would only hold back the
  // small writes of interactive protocols.
  for (auto &c : side)
    if (c->nodelay_pending) {
      c->nodelay_pending = false;
      c->sock.set_option(asio::ip::tcp::no_delay(true), ec);
    }
  if (has_idle)
    arm_timer();
  step(0);
  step(1);
}

void relay::arm_timer() {
  timer.expires_at(last_activity + idle);
  timer.async_wait([self = shared_from_this()](const error_code &ec) {
    if (ec || !self->open || self->done)
      return;
    if (std::chrono::steady_clock::now() - self->last_activity >= self->idle)
      self->fail_all(LUAASIO_ETIMEDOUT);
    else
      self->arm_timer();
  });
}

void relay::wait(int d, int s, int dir) {
  dirs[d].waiting = true;
  auto type = dir == LUAASIO_WAIT_READ ? stream::socket::wait_read : stream::socket::wait_write;
  side[s]->sock.async_wait(type, [self = shared_from_this(), d](const error_code &ec) {
    self->dirs[d].waiting = false;
    if (!self->open || self->dirs[d].end != 1)
      return;
    // A socket closed by Lua ends the wait with operation_aborted, or on
    // Windows with other codes: either way the relay ends as 'closed'.
    if (ec)
      self->ended(d, ec == asio::error::operation_aborted || !self->side[0]->sock.is_open() ||
                             !self->side[1]->sock.is_open()
                         ? LUAASIO_ECLOSED
                         : map_error(ec));
    else
      self->step(d);
  });
}

// Buffered path. Returns true to go on, false when it waits or ended.
bool relay::step_buffered(int d, int &wait_side, int &wait_dir) {
  direction &x = dirs[d];
  conn &src = *side[x.from];
  conn &dst = *side[1 - x.from];
  error_code ec;
  if (x.off < x.len) {
    size_t n = dst.sock.write_some(asio::buffer(x.buf.get() + x.off, x.len - x.off), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again || (!ec && n == 0)) {
      wait_side = 1 - x.from;
      wait_dir = LUAASIO_WAIT_WRITE;
      return false;
    }
    if (ec) {
      ended(d, map_error(ec));
      return false;
    }
    x.off += n;
    x.bytes += n;
    last_activity = std::chrono::steady_clock::now();
    return true;
  }
  if (!x.buf)
    x.buf.reset(new char[chunk]);
  size_t n = src.sock.read_some(asio::buffer(x.buf.get(), chunk), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    x.buf.reset(); // an idle direction holds no buffer
    x.off = x.len = 0;
    wait_side = x.from;
    wait_dir = LUAASIO_WAIT_READ;
    return false;
  }
  if (ec == asio::error::eof || (!ec && n == 0)) {
    x.buf.reset();
    ended(d, LUAASIO_EOF);
    return false;
  }
  if (ec) {
    ended(d, map_error(ec));
    return false;
  }
  x.off = 0;
  x.len = n;
  last_activity = std::chrono::steady_clock::now();
  return true;
}

#if defined(__linux__)
// splice() into a socket raises SIGPIPE when the peer is gone (it has no
// MSG_NOSIGNAL). While a direction takes its steps the signal is blocked,
// and one that a step raised is taken back before the mask is restored.
namespace {
struct sigpipe_guard {
  sigset_t pipe_set, old;
  bool restore = false;
  bool raised = false; // a splice failed with EPIPE
  explicit sigpipe_guard(bool on) {
    if (!on)
      return;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    restore = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0 && !sigismember(&old, SIGPIPE);
  }
  ~sigpipe_guard() {
    if (!restore)
      return;
    if (raised) {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
};
thread_local sigpipe_guard *current_guard = nullptr;
} // namespace

static ssize_t splice_out(int from, int to, size_t len, int &err) {
  ssize_t n = splice(from, nullptr, to, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  err = n < 0 ? errno : 0;
  if (err == EPIPE && current_guard)
    current_guard->raised = true;
  return n;
}
#endif

bool relay::step_splice(int d, int &wait_side, int &wait_dir) {
#if defined(__linux__)
  direction &x = dirs[d];
  conn &src = *side[x.from];
  conn &dst = *side[1 - x.from];
  if (!src.sock.is_open() || !dst.sock.is_open()) {
    ended(d, LUAASIO_ECLOSED);
    return false;
  }
  int err = 0;
  if (x.in_pipe > 0) {
    ssize_t n = splice_out(x.pipe[0], dst.sock.native_handle(), x.in_pipe, err);
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      wait_side = 1 - x.from;
      wait_dir = LUAASIO_WAIT_WRITE;
      return false;
    }
    if (n < 0) {
      ended(d, map_error(error_code(err, asio::error::get_system_category())));
      return false;
    }
    x.in_pipe -= size_t(n);
    x.bytes += uint64_t(n);
    last_activity = std::chrono::steady_clock::now();
    return true;
  }
  ssize_t n = splice(src.sock.native_handle(), nullptr, x.pipe[1], nullptr, chunk,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  err = n < 0 ? errno : 0;
  if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
    wait_side = x.from;
    wait_dir = LUAASIO_WAIT_READ;
    return false;
  }
  if (n < 0 && (err == EINVAL || err == ENOSYS) && x.bytes == 0) {
    // This kernel or socket cannot splice: go on with the buffered path.
    x.splice = false;
    return true;
  }
  if (n < 0) {
    ended(d, map_error(error_code(err, asio::error::get_system_category())));
    return false;
  }
  if (n == 0) {
    ended(d, LUAASIO_EOF);
    return false;
  }
  x.in_pipe = size_t(n);
  last_activity = std::chrono::steady_clock::now();
  return true;
#else
  (void)d;
  (void)wait_side;
  (void)wait_dir;
  return false;
#endif
}

void relay::step(int d) {
  direction &x = dirs[d];
#if defined(__linux__)
  sigpipe_guard guard(x.splice);
  struct set_guard {
    sigpipe_guard *prev;
    explicit set_guard(sigpipe_guard *g) : prev(current_guard) { current_guard = g; }
    ~set_guard() { current_guard = prev; }
  } set(&guard);
#endif
  for (int i = 0; i < step_budget; ++i) {
    if (!open || x.end != 1)
      return;
    int wait_side = -1, wait_dir = 0;
    bool more = x.splice ? step_splice(d, wait_side, wait_dir)
                         : step_buffered(d, wait_side, wait_dir);
    if (!more) {
      if (wait_side >= 0 && open && x.end == 1)
        wait(d, wait_side, wait_dir);
      return;
    }
  }
  // Used up its turn: the other direction and other connections go first.
  x.waiting = true;
  asio::post(owner.ctx, [self = shared_from_this(), d] {
    self->dirs[d].waiting = false;
    if (self->open && self->dirs[d].end == 1)
      self->step(d);
  });
}

void relay::ended(int d, int code) {
  direction &x = dirs[d];
  if (x.end != 1)
    return;
  x.end = code;
  if (code == LUAASIO_EOF) {
    // Half-close: the other side learns that no more bytes come this way,
    // and the opposite direction goes on.
    error_code ec;
    side[1 - x.from]->sock.shutdown(stream::socket::shutdown_send, ec);
    finish();
    return;
  }
  fail_all(code);
}

// Ends the whole relay: the directions still running end with `code` if it
// is a timeout, else 'closed'; both sockets are closed. A reset is passed
// on: the other peer's connection is reset too.
void relay::fail_all(int code) {
  for (auto &x : dirs)
    if (x.end == 1)
      x.end = code == LUAASIO_ETIMEDOUT ? LUAASIO_ETIMEDOUT : LUAASIO_ECLOSED;
  error_code ec;
  for (auto &c : side) {
    if (code == LUAASIO_ECONNRESET && c->sock.is_open())
      c->sock.set_option(asio::socket_base::linger(true, 0), ec);
    c->sock.close(ec);
  }
  finish();
}

void relay::finish() {
  if (done || dirs[0].end == 1 || dirs[1].end == 1)
    return;
  done = true;
  cancel_timer();
  for (auto &x : dirs) {
    x.buf.reset();
    x.off = x.len = 0;
  }
  if (open && slot >= 0) {
    owner.push(slot, LUAASIO_OK, this);
    slot = -1;
  }
}

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_relay_start(luaasio_loop *l, int32_t slot, int32_t a, int32_t b,
                                           double idle_timeout, int flags) {
  if (!l || slot < 0 || a == b || !(idle_timeout >= 0))
    return LUAASIO_EINVAL;
  conn *ca = l->get<conn>(a);
  conn *cb = l->get<conn>(b);
  if (!ca || !cb)
    return LUAASIO_EBADF;
  if (ca->connecting || cb->connecting || !ca->sock.is_open() || !cb->sock.is_open())
    return LUAASIO_ECLOSED;
  LUAASIO_TRY
  auto r = std::make_shared<relay>(*l, ca->shared_from_this(), cb->shared_from_this(),
                                   idle_timeout, (flags & LUAASIO_RELAY_NOSPLICE) == 0);
  int32_t h = l->add(r);
  if (h < 0)
    return h;
  try {
    r->start(slot);
  } catch (...) {
    std::shared_ptr<object> o = l->release(h);
    r->open = false;
    r->close_all();
    throw;
  }
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_relay_wait(luaasio_loop *l, int32_t h, int32_t slot) {
  if (!l || slot < 0)
    return LUAASIO_EINVAL;
  relay *r = l->get<relay>(h);
  if (!r)
    return LUAASIO_EBADF;
  if (r->done)
    return 1;
  r->slot = slot;
  return 0;
}

LUAASIO_EXPORT int luaasio_relay_result(luaasio_loop *l, int32_t h, double *out) {
  if (!l || !out)
    return LUAASIO_EINVAL;
  relay *r = l->get<relay>(h);
  if (!r)
    return LUAASIO_EBADF;
  out[0] = double(r->dirs[0].bytes);
  out[1] = double(r->dirs[1].bytes);
  out[2] = r->dirs[0].end;
  out[3] = r->dirs[1].end;
  out[4] = (r->dirs[0].splice ? 1 : 0) + (r->dirs[1].splice ? 1 : 0);
  return r->done ? LUAASIO_OK : LUAASIO_EAGAIN;
}
