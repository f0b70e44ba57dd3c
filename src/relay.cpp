// Relays: both directions between two connections forwarded in C++. Each
// direction is a small state machine driven by readiness waits: move what
// the kernel has, wait when it has nothing. On Linux, between two TCP
// sockets, the bytes go through a pipe with splice(2) and never reach user
// space; elsewhere they pass through a buffer that exists only while it
// holds bytes not yet written.
//
// Pipes (Linux). A direction takes a pipe from its thread's spares when it
// starts its steps and gives it back as soon as the pipe is empty, so only
// directions with bytes in flight hold one: idle relays cost no
// descriptors beyond their sockets, and the spares are closed when the
// thread's last relay ends. Pipes are enlarged to big_pipe (F_SETPIPE_SZ)
// while the process's enlarged pipes stay within big_pipe_budget: once a
// socket shows a backlog, one splice takes all it has queued (a few hundred
// KiB on a busy stream) instead of 64 KiB, which on the proxy benchmark cut
// the CPU per byte by a fifth to a third when the machine was busy
// (docs/PROXY.md). The budget keeps the bytes pipes can hold in flight
// bounded, and leaves the per-user pipe allowance (fs.pipe-user-pages-soft,
// 64 MiB by default) to everything else.
#include "loop.hpp"
#include "relay.hpp"

#if defined(__linux__)
#include <atomic>
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

#if defined(__linux__)
constexpr size_t big_pipe = 512 * 1024;
constexpr size_t big_pipe_budget = 16 * 1024 * 1024;
constexpr size_t default_pipe = 65536;
// Spare pipes a thread keeps while it runs relays.
constexpr int spares_max = 8;

std::atomic<size_t> big_pipe_bytes{0};

using pipe_fds = relay::direction::pipe_fds;

void close_pipe(pipe_fds &p) noexcept {
  if (p.rd >= 0)
    ::close(p.rd);
  if (p.wr >= 0)
    ::close(p.wr);
  if (p.big)
    big_pipe_bytes.fetch_sub(p.size, std::memory_order_relaxed);
  p = pipe_fds();
}

// The spare pipes of this thread, and how many relays run on it. Relays
// start, step and end on their loop's thread.
struct pipe_spares {
  pipe_fds spare[spares_max];
  int n = 0;
  long relays = 0;
  void trim() noexcept {
    while (n > 0)
      close_pipe(spare[--n]);
  }
  ~pipe_spares() { trim(); }
};
thread_local pipe_spares spares;

bool open_pipe(pipe_fds &p) noexcept {
  if (spares.n > 0) {
    p = spares.spare[--spares.n];
    return true;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return false;
  p.rd = fds[0];
  p.wr = fds[1];
  p.size = default_pipe;
  p.big = false;
  if (big_pipe_bytes.fetch_add(big_pipe, std::memory_order_relaxed) + big_pipe <= big_pipe_budget &&
      fcntl(p.wr, F_SETPIPE_SZ, int(big_pipe)) >= int(big_pipe)) {
    p.size = big_pipe;
    p.big = true;
  } else {
    big_pipe_bytes.fetch_sub(big_pipe, std::memory_order_relaxed);
  }
  return true;
}

// Gives back a pipe that holds no bytes; one with bytes left is closed.
void put_pipe(pipe_fds &p, size_t in_pipe) noexcept {
  if (p.rd < 0)
    return;
  if (in_pipe == 0 && spares.relays > 0 && spares.n < spares_max) {
    spares.spare[spares.n++] = p;
    p = pipe_fds();
  } else {
    close_pipe(p);
  }
}
#endif

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
      d.splice = true;
#else
  (void)use_splice;
  (void)&is_tcp;
#endif
}

relay::~relay() {
#if defined(__linux__)
  // Normally given back by finish() or close_all(), on the loop's thread.
  for (auto &d : dirs)
    close_pipe(d.pipe);
#endif
}

// The relay stops: pipes go back (or are closed when they hold bytes), and
// the thread's spares are closed with its last relay.
void relay::put_pipes() noexcept {
#if defined(__linux__)
  for (auto &d : dirs) {
    put_pipe(d.pipe, d.in_pipe);
    d.in_pipe = 0;
  }
  if (counted) {
    counted = false;
    if (--spares.relays == 0)
      spares.trim();
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
  put_pipes();
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
#if defined(__linux__)
  if (dirs[0].splice || dirs[1].splice) {
    counted = true;
    ++spares.relays;
  }
#endif
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
    ssize_t n = splice_out(x.pipe.rd, dst.sock.native_handle(), x.in_pipe, err);
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
  // 64 KiB at first; after a splice that got all it asked for (the socket
  // has a backlog), as much as the pipe holds. A burst of a few hundred KiB
  // then starts to leave after its first 64 KiB, while a busy stream moves in
  // fewer, larger splices.
  size_t want = x.backlog ? std::max(x.pipe.size, default_pipe) : default_pipe;
  ssize_t n = splice(src.sock.native_handle(), nullptr, x.pipe.wr, nullptr, want,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  err = n < 0 ? errno : 0;
  if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
    put_pipe(x.pipe, 0); // waiting with nothing in flight: no pipe held
    wait_side = x.from;
    wait_dir = LUAASIO_WAIT_READ;
    return false;
  }
  if (n < 0 && (err == EINVAL || err == ENOSYS) && x.bytes == 0) {
    // This kernel or socket cannot splice: go on with the buffered path.
    put_pipe(x.pipe, 0);
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
  x.backlog = size_t(n) == want;
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
    bool spliced = x.splice && x.off == x.len;
#if defined(__linux__)
    // Out of descriptors for a pipe: this turn copies instead.
    if (spliced && x.pipe.rd < 0 && !open_pipe(x.pipe))
      spliced = false;
#endif
    bool more = spliced ? step_splice(d, wait_side, wait_dir)
                        : step_buffered(d, wait_side, wait_dir);
    if (!more) {
      if (wait_side >= 0 && open && x.end == 1)
        wait(d, wait_side, wait_dir);
      return;
    }
  }
  // Used up its turn: the other direction and other connections go first.
#if defined(__linux__)
  if (x.in_pipe == 0)
    put_pipe(x.pipe, 0);
#endif
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
#if defined(__linux__)
  // A pipe with bytes left (a write failed) is closed with them.
  put_pipe(x.pipe, x.in_pipe);
  x.in_pipe = 0;
#endif
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
  put_pipes();
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
