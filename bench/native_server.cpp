// native_server - single-threaded Boost.Asio servers: the ceiling LuaAsio is measured against.
//
//   native_server echo     [--port P] [--buf 65536]   echo whatever arrives
//   native_server pingpong [--port P]                 read 5 bytes, reply them + "-pong", close
//   native_server forward  [--port P] --target HOST:PORT [--buf 65536] [--splice 1] [--pipe 0]
//                                                     relay both ways, passing half-closes on;
//                                                     with --splice 1 through a pipe per
//                                                     direction with splice(2), zero copy;
//                                                     --pipe N (N > 0) sets the pipes' size
//                                                     (F_SETPIPE_SZ) and splices up to N bytes
//
// Listens on 127.0.0.1 (port 0 picks a free one) and prints "PORT <n>" once listening.
// Each echo connection owns a --buf byte buffer (64 KiB by default; a forward
// tunnel owns two). They are left uninitialised so that, as with any lazily
// faulted heap memory, only the pages that data has passed through count in RSS.

#include <boost/asio.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

class EchoSession : public std::enable_shared_from_this<EchoSession> {
public:
  EchoSession(tcp::socket sock, std::size_t size) : sock_(std::move(sock)), buf_(new char[size]), size_(size) {}
  void start() { read(); }

private:
  // EOF or an error simply ends the chain; the last handler drops the session and closes the socket.
  void read() {
    sock_.async_read_some(asio::buffer(buf_.get(), size_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec) return;
      asio::async_write(self->sock_, asio::buffer(self->buf_.get(), n), [self](error_code ec, std::size_t) {
        if (!ec) self->read();
      });
    });
  }

  tcp::socket sock_;
  std::unique_ptr<char[]> buf_;
  std::size_t size_;
};

class PingSession : public std::enable_shared_from_this<PingSession> {
public:
  explicit PingSession(tcp::socket sock) : sock_(std::move(sock)) {}

  void start() {
    asio::async_read(sock_, asio::buffer(buf_, 5), [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec) return;
      std::copy_n("-pong", 5, self->buf_.begin() + 5);
      asio::async_write(self->sock_, asio::buffer(self->buf_), [self](error_code, std::size_t) {
        error_code ignored;
        self->sock_.close(ignored);
      });
    });
  }

private:
  tcp::socket sock_;
  std::array<char, 10> buf_;
};

// Relays between an accepted connection and a new one to the target. Each
// direction is an independent read/write chain; EOF on one side becomes a
// shutdown(send) on the other, so a half-closed stream drains in the other
// direction. The tunnel dies with the last pending handler.
class Tunnel : public std::enable_shared_from_this<Tunnel> {
public:
  Tunnel(tcp::socket down, std::size_t size)
      : down_(std::move(down)), up_(down_.get_executor()), size_(size),
        bufs_{std::unique_ptr<char[]>(new char[size]), std::unique_ptr<char[]>(new char[size])} {}

  void start(const tcp::endpoint &target) {
    up_.async_connect(target, [self = shared_from_this()](error_code ec) {
      if (ec) return self->abort();
      self->pump(self->down_, self->up_, self->bufs_[0]);
      self->pump(self->up_, self->down_, self->bufs_[1]);
    });
  }

private:
  void pump(tcp::socket &from, tcp::socket &to, std::unique_ptr<char[]> &buf) {
    from.async_read_some(asio::buffer(buf.get(), size_), [self = shared_from_this(), &from, &to, &buf](error_code ec, std::size_t n) {
      if (ec == asio::error::eof) {
        to.shutdown(tcp::socket::shutdown_send, ec);
        return;
      }
      if (ec) return self->abort();
      asio::async_write(to, asio::buffer(buf.get(), n), [self, &from, &to, &buf](error_code ec, std::size_t) {
        if (ec) return self->abort();
        self->pump(from, to, buf);
      });
    });
  }

  // Closing both sockets cancels whatever the other direction has pending.
  void abort() {
    error_code ignored;
    down_.close(ignored);
    up_.close(ignored);
  }

  tcp::socket down_, up_;
  std::size_t size_;
  std::array<std::unique_ptr<char[]>, 2> bufs_;
};

// The same relay without copying: each direction splices socket -> pipe ->
// socket, waiting for readiness with async_wait when the kernel has nothing.
// SIGPIPE is ignored process-wide (this program runs nothing else).
class SpliceTunnel : public std::enable_shared_from_this<SpliceTunnel> {
public:
  SpliceTunnel(tcp::socket down, std::size_t pipe_size)
      : down_(std::move(down)), up_(down_.get_executor()), pipe_size_(pipe_size) {}
  ~SpliceTunnel() {
    for (auto &d : dirs_)
      for (int fd : d.pipe)
        if (fd >= 0) ::close(fd);
  }

  void start(const tcp::endpoint &target) {
    up_.async_connect(target, [self = shared_from_this()](error_code ec) {
      if (ec) return self->abort();
      for (auto &d : self->dirs_)
        if (pipe2(d.pipe, O_NONBLOCK | O_CLOEXEC) != 0 ||
            (self->pipe_size_ > 0 && fcntl(d.pipe[1], F_SETPIPE_SZ, int(self->pipe_size_)) < 0))
          return self->abort();
      self->down_.non_blocking(true, ec);
      self->up_.non_blocking(true, ec);
      self->dirs_[0].from = &self->down_;
      self->dirs_[0].to = &self->up_;
      self->dirs_[1].from = &self->up_;
      self->dirs_[1].to = &self->down_;
      self->step(0);
      self->step(1);
    });
  }

private:
  struct Dir {
    tcp::socket *from = nullptr, *to = nullptr;
    int pipe[2] = {-1, -1};
    size_t in_pipe = 0;
  };

  void step(int i) {
    Dir &d = dirs_[i];
    for (;;) {
      if (d.in_pipe > 0) {
        ssize_t n = splice(d.pipe[0], nullptr, d.to->native_handle(), nullptr, d.in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EAGAIN) return wait(i, *d.to, tcp::socket::wait_write);
        if (n < 0) return abort();
        d.in_pipe -= size_t(n);
        continue;
      }
      ssize_t n = splice(d.from->native_handle(), nullptr, d.pipe[1], nullptr, pipe_size_ > 0 ? pipe_size_ : 65536,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EAGAIN) return wait(i, *d.from, tcp::socket::wait_read);
      if (n < 0) return abort();
      if (n == 0) {
        error_code ignored;
        d.to->shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      d.in_pipe = size_t(n);
    }
  }

  void wait(int i, tcp::socket &s, tcp::socket::wait_type type) {
    s.async_wait(type, [self = shared_from_this(), i](error_code ec) {
      if (ec) return self->abort();
      self->step(i);
    });
  }

  void abort() {
    error_code ignored;
    down_.close(ignored);
    up_.close(ignored);
  }

  tcp::socket down_, up_;
  std::size_t pipe_size_;
  std::array<Dir, 2> dirs_;
};

tcp::endpoint parse_endpoint(const std::string &s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT, got " + s);
  return {asio::ip::make_address(s.substr(0, colon)), static_cast<unsigned short>(std::stoi(s.substr(colon + 1)))};
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || (argc % 2) != 0) {
    std::cerr << "usage: native_server echo|pingpong|forward [--port P] [--buf N] [--target HOST:PORT]\n";
    return 2;
  }
  std::string mode = argv[1], target_arg;
  unsigned short port = 0;
  std::size_t buf = 64 * 1024;
  bool use_splice = false;
  std::size_t pipe_size = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i], val = argv[i + 1];
    if (key == "--port") port = static_cast<unsigned short>(std::stoi(val));
    else if (key == "--buf") buf = std::stoul(val);
    else if (key == "--target") target_arg = val;
    else if (key == "--splice") use_splice = val == "1";
    else if (key == "--pipe") pipe_size = std::stoul(val);
    else { std::cerr << "native_server: unknown option " << key << "\n"; return 2; }
  }
  if (mode != "echo" && mode != "pingpong" && mode != "forward") {
    std::cerr << "native_server: unknown mode " << mode << "\n";
    return 2;
  }
  if ((mode == "forward") != !target_arg.empty()) {
    std::cerr << "native_server: --target is required for forward and only for forward\n";
    return 2;
  }

  // The idle benchmark holds 10,000 connections.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  if (use_splice) signal(SIGPIPE, SIG_IGN);

  try {
    asio::io_context io(1);
    tcp::endpoint target = mode == "forward" ? parse_endpoint(target_arg) : tcp::endpoint{};
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
    std::cout << "PORT " << acceptor.local_endpoint().port() << std::endl;

    asio::steady_timer backoff(io);
    std::function<void()> accept = [&] {
      acceptor.async_accept([&](error_code ec, tcp::socket sock) {
        if (ec) {
          // Out of descriptors the listen queue stays readable: retrying at once would spin.
          std::cerr << "native_server: accept: " << ec.message() << std::endl;
          backoff.expires_after(std::chrono::milliseconds(100));
          backoff.async_wait([&](error_code) { accept(); });
          return;
        }
        if (mode == "echo") {
          std::make_shared<EchoSession>(std::move(sock), buf)->start();
        } else if (mode == "pingpong") {
          std::make_shared<PingSession>(std::move(sock))->start();
        } else if (use_splice) {
          std::make_shared<SpliceTunnel>(std::move(sock), pipe_size)->start(target);
        } else {
          std::make_shared<Tunnel>(std::move(sock), buf)->start(target);
        }
        accept();
      });
    };
    accept();
    io.run();
  } catch (const std::exception &e) {
    std::cerr << "native_server: " << e.what() << std::endl;
    return 1;
  }
}
