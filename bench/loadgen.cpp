// loadgen - single-threaded Boost.Asio load generator for the LuaAsio benchmarks.
//
//   loadgen echo     --port P [--conns 50] [--size 64] [--seconds 5] [--warmup 1]
//   loadgen pingpong --port P [--conns 50] [--seconds 5] [--warmup 1]
//   loadgen stream   --port P [--conns 4] [--bytes 256M] [--chunk 64K]
//   loadgen idle     --port P --pid PID [--conns 10000] [--settle 2]
//
// Common: --host 127.0.0.1, --bind ADDR (local source address, e.g. one that an
// iptables REDIRECT rule matches), --pid PID[,PID...] (server processes whose CPU time
// is sampled at the edges of the measurement window), --timeout SEC (hard
// limit for the whole run, default: generous per mode).
//
// Prints one line "RESULT mode=... key=value ..." on stdout. Exits 1 on a
// data mismatch or network error, 2 on usage errors, 3 on timeout.

#include <boost/asio.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(int code, const std::string &msg) {
  std::cerr << "loadgen: " << msg << std::endl;
  std::exit(code);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// ---------------------------------------------------------------- options

class Options {
public:
  Options(int argc, char **argv) {
    if (argc < 2) die(2, "usage: loadgen echo|pingpong|stream|idle --port P [options]");
    mode = argv[1];
    for (int i = 2; i < argc; i += 2) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0 || i + 1 >= argc) die(2, "bad argument: " + key);
      kv_[key.substr(2)] = argv[i + 1];
    }
  }

  std::string str(const std::string &key, const std::string &def) {
    used_.push_back(key);
    auto it = kv_.find(key);
    return it == kv_.end() ? def : it->second;
  }

  double num(const std::string &key, double def) {
    std::string s = str(key, "");
    if (s.empty()) return def;
    char *end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    switch (*end) { // size suffixes, binary
      case 'K': case 'k': v *= 1024; ++end; break;
      case 'M': case 'm': v *= 1024 * 1024; ++end; break;
      case 'G': case 'g': v *= 1024.0 * 1024 * 1024; ++end; break;
    }
    if (end == s.c_str() || *end) die(2, "bad number for --" + key + ": " + s);
    return v;
  }

  std::vector<int> pids() {
    std::vector<int> out;
    std::stringstream ss(str("pid", ""));
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) out.push_back(std::atoi(item.c_str()));
    return out;
  }

  // Call after all lookups: a misspelt flag must not silently fall back to a default.
  void check_unused() const {
    for (auto &[k, v] : kv_)
      if (std::find(used_.begin(), used_.end(), k) == used_.end())
        die(2, "unknown option --" + k + " for mode " + mode);
  }

  std::string mode;

private:
  std::map<std::string, std::string> kv_;
  std::vector<std::string> used_;
};

// ---------------------------------------------------------------- /proc

// utime + stime of the given processes, in seconds.
double cpu_seconds(const std::vector<int> &pids) {
  static const double tick = double(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) die(1, "cannot read /proc/" + std::to_string(pid) + "/stat");
    // The command name may contain spaces; fields are counted after its ')'.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    }
    total += double(utime + stime) / tick;
  }
  return total;
}

long rss_kb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  die(1, "cannot read VmRSS of pid " + std::to_string(pid));
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// ---------------------------------------------------------------- payload

// A fixed pseudo-random byte sequence with an odd period, stored with its
// head repeated after the end so that any span of up to `max_span` bytes
// starting anywhere in the period is contiguous. Writers send straight out of
// it and readers memcmp against it; because the period is no multiple of any
// chunk size, lost, duplicated or reordered chunks land on different bytes.
class Pattern {
public:
  explicit Pattern(std::size_t max_span) : bytes_(kPeriod + max_span) {
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (auto &b : bytes_) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = char(x >> 32);
    }
    std::copy_n(bytes_.begin(), max_span, bytes_.begin() + kPeriod);
  }
  const char *at(std::uint64_t offset) const { return bytes_.data() + offset % kPeriod; }
  static constexpr std::uint64_t kPeriod = (1u << 20) - 3;

private:
  std::vector<char> bytes_;
};

// ---------------------------------------------------------------- shared run state

// Measurement window and latency samples shared by the sessions of one run.
struct Run {
  Run(asio::io_context &io, Options &opt)
      : io(io), target(asio::ip::make_address(opt.str("host", "127.0.0.1")),
                       static_cast<unsigned short>(opt.num("port", 0))),
        pids(opt.pids()), watchdog(io) {
    if (target.port() == 0) die(2, "--port is required");
    if (auto b = opt.str("bind", ""); !b.empty()) source = tcp::endpoint(asio::ip::make_address(b), 0);
  }

  template <class Handler> void connect(tcp::socket &sock, Handler &&handler) {
    if (source) {
      sock.open(target.protocol());
      sock.bind(*source);
    }
    sock.async_connect(target, std::forward<Handler>(handler));
  }

  // Fail the whole run: the numbers of a run that saw an error are meaningless.
  void fail(const std::string &what, const error_code &ec = {}) {
    std::cerr << "loadgen: " << what << (ec ? ": " + ec.message() : "") << std::endl;
    failed = true;
    io.stop();
  }

  void arm_watchdog(double sec) {
    watchdog.expires_after(to_duration(sec));
    watchdog.async_wait([this](error_code ec) {
      if (ec) return;
      std::cerr << "loadgen: timed out" << std::endl;
      std::exit(3);
    });
  }

  void begin_window() {
    measuring = true;
    cpu0 = cpu_seconds(pids);
    t0 = Clock::now();
  }
  void end_window() {
    measuring = false;
    stopping = true;
    elapsed = seconds_since(t0);
    cpu = cpu_seconds(pids) - cpu0;
  }

  void record(Clock::time_point started) {
    if (!measuring) return;
    ++ops;
    latencies_us.push_back(std::uint32_t(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()));
  }

  double percentile_us(double p) {
    if (latencies_us.empty()) return 0;
    auto nth = latencies_us.begin() + std::size_t(p * double(latencies_us.size() - 1));
    std::nth_element(latencies_us.begin(), nth, latencies_us.end());
    return *nth;
  }

  // The part of the RESULT line about server CPU, present when --pid was given.
  std::string cpu_fields(double per, const char *unit) const {
    if (pids.empty()) return "";
    std::ostringstream os;
    os << " server_cpu_s=" << cpu << " cpu_us_per_" << unit << "=" << (per > 0 ? cpu * 1e6 / per : 0);
    return os.str();
  }

  asio::io_context &io;
  tcp::endpoint target;
  std::optional<tcp::endpoint> source;
  std::vector<int> pids;
  asio::steady_timer watchdog;
  bool measuring = false, stopping = false, failed = false;
  Clock::time_point t0;
  double cpu0 = 0, cpu = 0, elapsed = 0;
  std::uint64_t ops = 0;
  std::vector<std::uint32_t> latencies_us;
  int live = 0; // sessions still running
};

// Warmup, then a timed window, then let every session finish its request.
void schedule_window(Run &run, asio::steady_timer &timer, double warmup, double seconds) {
  timer.expires_after(to_duration(warmup));
  timer.async_wait([&run, &timer, seconds](error_code) {
    run.begin_window();
    timer.expires_after(to_duration(seconds));
    timer.async_wait([&run](error_code) { run.end_window(); });
  });
}

// ---------------------------------------------------------------- echo

class EchoClient : public std::enable_shared_from_this<EchoClient> {
public:
  EchoClient(Run &run, const Pattern &pat, std::size_t size, unsigned id)
      : run_(run), pat_(pat), sock_(run.io), in_(size), offset_(id * 104729ull) {}

  void start() {
    ++run_.live;
    run_.connect(sock_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->run_.fail("echo connect", ec);
      self->sock_.set_option(tcp::no_delay(true));
      self->send();
    });
  }

private:
  void send() {
    if (run_.stopping) return finish();
    // Each request starts elsewhere in the pattern so a stale reply cannot match.
    offset_ += 7919;
    started_ = Clock::now();
    asio::async_write(sock_, asio::buffer(pat_.at(offset_), in_.size()),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (ec) return self->run_.fail("echo write", ec);
                        self->receive();
                      });
  }

  void receive() {
    asio::async_read(sock_, asio::buffer(in_), [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec) return self->run_.fail("echo read", ec);
      if (std::memcmp(self->in_.data(), self->pat_.at(self->offset_), self->in_.size()) != 0)
        return self->run_.fail("echo: reply differs from request");
      self->run_.record(self->started_);
      self->send();
    });
  }

  void finish() {
    error_code ignored;
    sock_.close(ignored);
    if (--run_.live == 0) run_.io.stop();
  }

  Run &run_;
  const Pattern &pat_;
  tcp::socket sock_;
  std::vector<char> in_;
  std::uint64_t offset_;
  Clock::time_point started_;
};

int run_echo(Options &opt) {
  asio::io_context io(1);
  Run run(io, opt);
  int conns = int(opt.num("conns", 50));
  auto size = std::size_t(opt.num("size", 64));
  double seconds = opt.num("seconds", 5), warmup = opt.num("warmup", 1);
  run.arm_watchdog(opt.num("timeout", warmup + seconds + 20));
  opt.check_unused();

  Pattern pat(size);
  for (int i = 0; i < conns; ++i) std::make_shared<EchoClient>(run, pat, size, i)->start();
  asio::steady_timer window(io);
  schedule_window(run, window, warmup, seconds);
  io.run();
  if (run.failed) return 1;

  double rps = double(run.ops) / run.elapsed;
  std::cout << "RESULT mode=echo conns=" << conns << " size=" << size << " seconds=" << run.elapsed
            << " requests=" << run.ops << " rps=" << rps << " p50_us=" << run.percentile_us(0.50)
            << " p99_us=" << run.percentile_us(0.99) << run.cpu_fields(double(run.ops), "req")
            << std::endl;
  return 0;
}

// ---------------------------------------------------------------- pingpong

// One connection per request: connect, send "ping1", expect "ping1-pong" and EOF.
class PingClient : public std::enable_shared_from_this<PingClient> {
public:
  explicit PingClient(Run &run) : run_(run), sock_(run.io) {}

  void start() {
    ++run_.live;
    next();
  }

private:
  void next() {
    if (run_.stopping) {
      if (--run_.live == 0) run_.io.stop();
      return;
    }
    started_ = Clock::now();
    sock_ = tcp::socket(run_.io);
    run_.connect(sock_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->run_.fail("pingpong connect", ec);
      asio::async_write(self->sock_, asio::buffer("ping1", 5),
                        [self](error_code ec, std::size_t) {
                          if (ec) return self->run_.fail("pingpong write", ec);
                          self->receive();
                        });
    });
  }

  void receive() {
    // The buffer has room for more than the expected reply so that excess
    // bytes are caught; only EOF may end the read.
    asio::async_read(sock_, asio::buffer(in_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec != asio::error::eof) return self->run_.fail("pingpong read (no EOF)", ec);
      if (n != 10 || std::memcmp(self->in_, "ping1-pong", 10) != 0)
        return self->run_.fail("pingpong: unexpected reply '" + std::string(self->in_, n) + "'");
      self->sock_.close(ec);
      self->run_.record(self->started_);
      self->next();
    });
  }

  Run &run_;
  tcp::socket sock_;
  char in_[32];
  Clock::time_point started_;
};

int run_pingpong(Options &opt) {
  asio::io_context io(1);
  Run run(io, opt);
  int conns = int(opt.num("conns", 50));
  double seconds = opt.num("seconds", 5), warmup = opt.num("warmup", 1);
  run.arm_watchdog(opt.num("timeout", warmup + seconds + 20));
  opt.check_unused();

  for (int i = 0; i < conns; ++i) std::make_shared<PingClient>(run)->start();
  asio::steady_timer window(io);
  schedule_window(run, window, warmup, seconds);
  io.run();
  if (run.failed) return 1;

  std::cout << "RESULT mode=pingpong conns=" << conns << " seconds=" << run.elapsed
            << " connections=" << run.ops << " cps=" << double(run.ops) / run.elapsed
            << " p50_us=" << run.percentile_us(0.50) << " p99_us=" << run.percentile_us(0.99)
            << run.cpu_fields(double(run.ops), "conn") << std::endl;
  return 0;
}

// ---------------------------------------------------------------- stream

// Sends `total` bytes of the pattern and reads them back at the same time.
class StreamClient : public std::enable_shared_from_this<StreamClient> {
public:
  StreamClient(Run &run, const Pattern &pat, std::uint64_t total, std::size_t chunk, unsigned id,
               std::function<void()> on_connected)
      : run_(run), pat_(pat), sock_(run.io), total_(total), chunk_(chunk), in_(chunk),
        base_(id * 2654435761ull), on_connected_(std::move(on_connected)) {}

  void connect() {
    ++run_.live;
    run_.connect(sock_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->run_.fail("stream connect", ec);
      self->on_connected_();
    });
  }

  void start() {
    write();
    read();
  }

private:
  void write() {
    if (sent_ == total_) {
      // Half-close so that the server (or proxy chain) sees the end of the stream.
      error_code ec;
      sock_.shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    auto n = std::size_t(std::min<std::uint64_t>(chunk_, total_ - sent_));
    asio::async_write(sock_, asio::buffer(pat_.at(base_ + sent_), n),
                      [self = shared_from_this()](error_code ec, std::size_t n) {
                        if (ec) return self->run_.fail("stream write", ec);
                        self->sent_ += n;
                        self->write();
                      });
  }

  void read() {
    sock_.async_read_some(asio::buffer(in_), [self = shared_from_this()](error_code ec, std::size_t n) {
      auto &s = *self;
      if (ec) return s.run_.fail("stream read after " + std::to_string(s.received_) + " bytes", ec);
      if (s.received_ + n > s.total_) return s.run_.fail("stream: more bytes came back than were sent");
      if (std::memcmp(s.in_.data(), s.pat_.at(s.base_ + s.received_), n) != 0)
        return s.run_.fail("stream: data mismatch near offset " + std::to_string(s.received_));
      s.received_ += n;
      if (s.received_ < s.total_) return s.read();
      s.sock_.close(ec);
      if (--s.run_.live == 0) s.run_.io.stop();
    });
  }

  Run &run_;
  const Pattern &pat_;
  tcp::socket sock_;
  std::uint64_t total_, sent_ = 0, received_ = 0;
  std::size_t chunk_;
  std::vector<char> in_;
  std::uint64_t base_;
  std::function<void()> on_connected_;
};

int run_stream(Options &opt) {
  asio::io_context io(1);
  Run run(io, opt);
  int conns = int(opt.num("conns", 4));
  auto total = std::uint64_t(opt.num("bytes", 256.0 * 1024 * 1024));
  auto chunk = std::size_t(opt.num("chunk", 64 * 1024));
  run.arm_watchdog(opt.num("timeout", 300));
  opt.check_unused();

  Pattern pat(chunk);
  std::vector<std::shared_ptr<StreamClient>> clients;
  int connected = 0;
  // The clock starts once every connection is up, so that the window covers only transfer.
  auto on_connected = [&] {
    if (++connected < conns) return;
    run.begin_window();
    for (auto &c : clients) c->start();
    clients.clear();
  };
  for (int i = 0; i < conns; ++i)
    clients.push_back(std::make_shared<StreamClient>(run, pat, total, chunk, i, on_connected));
  for (auto &c : std::vector(clients)) c->connect();
  io.run();
  if (run.failed) return 1;
  run.end_window();

  double mb = double(total) * conns / 1e6;
  std::cout << "RESULT mode=stream conns=" << conns << " bytes=" << total << " seconds=" << run.elapsed
            << " mb_s=" << mb / run.elapsed << run.cpu_fields(mb, "mb") << std::endl;
  return 0;
}

// ---------------------------------------------------------------- idle

// Opens a connection, proves the server serves it with a one-byte echo, then
// holds it without any pending operation.
class IdleClient : public std::enable_shared_from_this<IdleClient> {
public:
  IdleClient(Run &run, std::function<void(bool)> done) : run_(run), sock_(run.io), done_(std::move(done)) {}

  void start() {
    run_.connect(sock_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->run_.fail("idle connect", ec);
      asio::async_write(self->sock_, asio::buffer("i", 1), [self](error_code ec, std::size_t) {
        if (ec) return self->run_.fail("idle write", ec);
        asio::async_read(self->sock_, asio::buffer(&self->byte_, 1), [self](error_code ec, std::size_t) {
          if (ec) return self->run_.fail("idle read", ec);
          if (self->byte_ != 'i') return self->run_.fail("idle: wrong echo");
          self->done_(true);
        });
      });
    });
  }

  tcp::socket &socket() { return sock_; }

private:
  Run &run_;
  tcp::socket sock_;
  char byte_ = 0;
  std::function<void(bool)> done_;
};

int run_idle(Options &opt) {
  raise_fd_limit();
  asio::io_context io(1);
  Run run(io, opt);
  int conns = int(opt.num("conns", 10000));
  // Bounded so that the listen backlog never overflows (a dropped SYN costs a 1 s retransmit).
  int max_inflight = int(opt.num("inflight", 200));
  double settle = opt.num("settle", 2);
  run.arm_watchdog(opt.num("timeout", 120));
  opt.check_unused();
  if (run.pids.size() != 1) die(2, "idle needs exactly one --pid");
  int pid = run.pids.front();

  long base_kb = rss_kb(pid);
  std::vector<std::shared_ptr<IdleClient>> held;
  held.reserve(std::size_t(conns));
  int started = 0, ready = 0;
  asio::steady_timer settle_timer(io);
  long held_kb = 0;
  auto t0 = Clock::now();
  double connect_s = 0;

  std::function<void()> launch;
  auto on_ready = [&](bool) {
    ++ready;
    if (started < conns) return launch();
    if (ready < conns) return;
    connect_s = seconds_since(t0);
    settle_timer.expires_after(to_duration(settle));
    settle_timer.async_wait([&](error_code) {
      held_kb = rss_kb(pid);
      run.watchdog.cancel();
      io.stop();
    });
  };
  launch = [&] {
    held.push_back(std::make_shared<IdleClient>(run, on_ready));
    ++started;
    held.back()->start();
  };
  for (int i = 0; i < std::min(conns, max_inflight); ++i) launch();
  io.run();
  if (run.failed) return 1;

  std::cout << "RESULT mode=idle conns=" << conns << " connect_s=" << connect_s
            << " rss_base_kb=" << base_kb << " rss_kb=" << held_kb
            << " bytes_per_conn=" << double(held_kb - base_kb) * 1024 / conns << std::endl;
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options opt(argc, argv);
  try {
    if (opt.mode == "echo") return run_echo(opt);
    if (opt.mode == "pingpong") return run_pingpong(opt);
    if (opt.mode == "stream") return run_stream(opt);
    if (opt.mode == "idle") return run_idle(opt);
  } catch (const std::exception &e) {
    die(1, e.what());
  }
  die(2, "unknown mode " + opt.mode);
}
