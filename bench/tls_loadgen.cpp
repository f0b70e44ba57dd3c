// tls_loadgen - single-threaded TLS load generator (Boost.Asio ssl::stream
// over OpenSSL) for the TLS benchmarks (bench/tls.sh).
//
//   tls_loadgen echo      --port P [--conns 50] [--size 1024] [--seconds 5] [--warmup 1]
//   tls_loadgen stream    --port P [--conns 4] [--bytes 256M] [--chunk 64K]
//   tls_loadgen handshake --port P [--conns 20] [--seconds 5] [--warmup 1]
//
// Common: --host 127.0.0.1, --ca FILE (verify the server's certificate
// against it; default: no verification), --pid PID[,PID...] (server
// processes whose utime + stime is sampled at the edges of the measurement
// window), --timeout SEC (hard limit for the whole run).
//
// Every connection is TLS 1.3 with TLS_AES_128_GCM_SHA256 (the only suite
// offered) and a full handshake: no session is ever resumed. The RESULT line
// names the version and cipher the first connection negotiated.
//
// - echo: each connection sends `size` bytes, a different slice of a
//   pseudo-random pattern each time, waits for all of them back, compares,
//   and sends the next. Reports requests/s, p50/p99 latency and server CPU
//   per request.
// - stream: each connection sends `bytes` and reads them back, full duplex,
//   comparing with memcmp. The clock starts once every connection finished
//   its handshake. Reports MB/s (10^6 bytes of payload per second, one
//   direction, all connections) and server CPU seconds per GB (10^9 bytes).
// - handshake: `conns` clients each loop: connect, full handshake, send 32
//   bytes, expect them back, close_notify both ways, close. Reports
//   completed cycles per second and server CPU per cycle.
//
// Prints one line "RESULT mode=... key=value ..." on stdout. Exits 1 on a
// data mismatch or network/TLS error, 2 on usage errors, 3 on timeout.

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using Stream = ssl::stream<tcp::socket>;

namespace {

[[noreturn]] void die(int code, const std::string &msg) {
  std::cerr << "tls_loadgen: " << msg << std::endl;
  std::exit(code);
}

Clock::duration to_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// ---------------------------------------------------------------- options

class Options {
public:
  Options(int argc, char **argv) {
    if (argc < 2) die(2, "usage: tls_loadgen echo|stream|handshake --port P [options]");
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
    switch (*end) {
      case 'K': case 'k': v *= 1024; ++end; break;
      case 'M': case 'm': v *= 1024 * 1024; ++end; break;
      case 'G': case 'g': v *= 1024.0 * 1024 * 1024; ++end; break;
    }
    if (end == s.c_str() || *end) die(2, "bad number for --" + key + ": " + s);
    return v;
  }
  void check_unused() const {
    for (auto &kv : kv_)
      if (std::find(used_.begin(), used_.end(), kv.first) == used_.end())
        die(2, "unknown option --" + kv.first + " for mode " + mode);
  }
  std::string mode;

private:
  std::map<std::string, std::string> kv_;
  std::vector<std::string> used_;
};

double cpu_seconds(const std::vector<int> &pids) {
  static const double tick = double(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) die(1, "cannot read /proc/" + std::to_string(pid) + "/stat");
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

// A pseudo-random byte sequence with an odd period, its head repeated after
// the end so that any span up to max_span is contiguous (as in loadgen.cpp).
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
  const char *at(std::uint64_t off) const { return bytes_.data() + off % kPeriod; }
  static constexpr std::uint64_t kPeriod = (1u << 20) - 3;

private:
  std::vector<char> bytes_;
};

// ---------------------------------------------------------------- run state

struct Run {
  Run(Options &opt)
      : ctx(ssl::context::tls_client),
        target(asio::ip::make_address(opt.str("host", "127.0.0.1")), static_cast<unsigned short>(opt.num("port", 0))),
        watchdog(io) {
    if (target.port() == 0) die(2, "--port is required");
    std::stringstream ss(opt.str("pid", ""));
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) pids.push_back(std::atoi(item.c_str()));
    SSL_CTX *c = ctx.native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    if (SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256") != 1) die(2, "cannot set the TLS 1.3 suite");
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    std::string ca = opt.str("ca", "");
    if (!ca.empty()) {
      ctx.load_verify_file(ca);
      ctx.set_verify_mode(ssl::verify_peer);
    } else {
      ctx.set_verify_mode(ssl::verify_none);
    }
  }

  void fail(const std::string &what, const error_code &ec = {}) {
    std::cerr << "tls_loadgen: " << what << (ec ? ": " + ec.message() : "") << std::endl;
    failed = true;
    io.stop();
  }

  void arm_watchdog(double sec) {
    watchdog.expires_after(to_duration(sec));
    watchdog.async_wait([](error_code ec) {
      if (ec) return;
      std::cerr << "tls_loadgen: timed out" << std::endl;
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
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    cpu = cpu_seconds(pids) - cpu0;
  }

  void record(Clock::time_point started) {
    if (!measuring) return;
    ++ops;
    lat_us.push_back(std::uint32_t(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()));
  }
  double pct_us(double p) {
    if (lat_us.empty()) return 0;
    auto nth = lat_us.begin() + std::size_t(p * double(lat_us.size() - 1));
    std::nth_element(lat_us.begin(), nth, lat_us.end());
    return *nth;
  }

  // The negotiated parameters, from the first connection that got there.
  void note(Stream &s) {
    if (!version.empty()) return;
    version = SSL_get_version(s.native_handle());
    cipher = SSL_get_cipher_name(s.native_handle());
  }

  std::string tls_fields() const { return " tls=" + version + " cipher=" + cipher; }

  std::string cpu_fields(double per, const char *unit, double scale = 1e6) const {
    if (pids.empty()) return "";
    std::ostringstream os;
    os << " server_cpu_s=" << cpu << (scale == 1 ? " cpu_s_per_" : " cpu_us_per_") << unit << "=" << (per > 0 ? cpu * scale / per : 0);
    return os.str();
  }

  asio::io_context io{1};
  ssl::context ctx;
  tcp::endpoint target;
  std::vector<int> pids;
  asio::steady_timer watchdog;
  bool measuring = false, stopping = false, failed = false;
  Clock::time_point t0;
  double cpu0 = 0, cpu = 0, elapsed = 0;
  std::uint64_t ops = 0;
  std::vector<std::uint32_t> lat_us;
  int live = 0;
  std::string version, cipher;
};

void schedule_window(Run &run, asio::steady_timer &timer, double warmup, double seconds) {
  timer.expires_after(to_duration(warmup));
  timer.async_wait([&run, &timer, seconds](error_code) {
    run.begin_window();
    timer.expires_after(to_duration(seconds));
    timer.async_wait([&run](error_code) { run.end_window(); });
  });
}

// Connects and runs the client handshake; then calls done().
template <class Self, class Done> void connect_tls(Run &run, std::shared_ptr<Self> self, Stream &s, Done done) {
  s.lowest_layer().async_connect(run.target, [&run, self, &s, done](error_code ec) {
    if (ec) return run.fail("connect", ec);
    s.lowest_layer().set_option(tcp::no_delay(true));
    s.async_handshake(ssl::stream_base::client, [&run, self, &s, done](error_code ec) {
      if (ec) return run.fail("handshake", ec);
      run.note(s);
      done();
    });
  });
}

// ---------------------------------------------------------------- echo

class EchoClient : public std::enable_shared_from_this<EchoClient> {
public:
  EchoClient(Run &run, const Pattern &pat, std::size_t size, unsigned id)
      : run_(run), pat_(pat), s_(run.io, run.ctx), in_(size), off_(id * 104729ull) {}
  void start() {
    ++run_.live;
    auto self = shared_from_this();
    connect_tls(run_, self, s_, [self] { self->send(); });
  }

private:
  void send() {
    if (run_.stopping) return finish();
    off_ += 7919;
    started_ = Clock::now();
    asio::async_write(s_, asio::buffer(pat_.at(off_), in_.size()), [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec) return self->run_.fail("echo write", ec);
      self->receive();
    });
  }
  void receive() {
    asio::async_read(s_, asio::buffer(in_), [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec) return self->run_.fail("echo read", ec);
      if (std::memcmp(self->in_.data(), self->pat_.at(self->off_), self->in_.size()) != 0)
        return self->run_.fail("echo: reply differs from request");
      self->run_.record(self->started_);
      self->send();
    });
  }
  void finish() {
    error_code ignored;
    s_.lowest_layer().close(ignored);
    if (--run_.live == 0) run_.io.stop();
  }

  Run &run_;
  const Pattern &pat_;
  Stream s_;
  std::vector<char> in_;
  std::uint64_t off_;
  Clock::time_point started_;
};

int run_echo(Options &opt) {
  Run run(opt);
  int conns = int(opt.num("conns", 50));
  auto size = std::size_t(opt.num("size", 1024));
  double seconds = opt.num("seconds", 5), warmup = opt.num("warmup", 1);
  run.arm_watchdog(opt.num("timeout", warmup + seconds + 30));
  opt.check_unused();
  Pattern pat(size);
  for (int i = 0; i < conns; ++i) std::make_shared<EchoClient>(run, pat, size, unsigned(i))->start();
  asio::steady_timer window(run.io);
  schedule_window(run, window, warmup, seconds);
  run.io.run();
  if (run.failed) return 1;
  std::printf("RESULT mode=echo conns=%d size=%zu rps=%.0f p50_us=%.0f p99_us=%.0f%s%s\n", conns, size,
              double(run.ops) / run.elapsed, run.pct_us(0.5), run.pct_us(0.99),
              run.cpu_fields(double(run.ops), "req").c_str(), run.tls_fields().c_str());
  return 0;
}

// ---------------------------------------------------------------- stream

struct StreamShared {
  int up = 0, conns = 0;
  std::uint64_t total = 0;
};

class StreamClient : public std::enable_shared_from_this<StreamClient> {
public:
  StreamClient(Run &run, StreamShared &sh, const Pattern &pat, std::uint64_t bytes, std::size_t chunk, unsigned id)
      : run_(run), sh_(sh), pat_(pat), s_(run.io, run.ctx), bytes_(bytes), chunk_(chunk), in_(chunk),
        base_(id * 7727ull) {}
  void start() {
    ++run_.live;
    auto self = shared_from_this();
    connect_tls(run_, self, s_, [self] {
      // Everyone starts together once all are up: the window holds no handshake.
      if (++self->sh_.up == self->sh_.conns) {
        self->run_.begin_window();
        self->go_all();
      }
    });
  }
  static std::vector<std::shared_ptr<StreamClient>> all;

private:
  void go_all() {
    for (auto &c : all) {
      c->write();
      c->read();
    }
  }
  void write() {
    if (sent_ == bytes_) return;
    std::size_t n = std::size_t(std::min<std::uint64_t>(chunk_, bytes_ - sent_));
    asio::async_write(s_, asio::buffer(pat_.at(base_ + sent_), n), [self = shared_from_this(), n](error_code ec, std::size_t) {
      if (ec) return self->run_.fail("stream write", ec);
      self->sent_ += n;
      self->write();
    });
  }
  void read() {
    std::size_t cap = std::size_t(std::min<std::uint64_t>(chunk_, bytes_ - got_));
    s_.async_read_some(asio::buffer(in_.data(), cap), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec) return self->run_.fail("stream read", ec);
      if (std::memcmp(self->in_.data(), self->pat_.at(self->base_ + self->got_), n) != 0)
        return self->run_.fail("stream: data differs");
      self->got_ += n;
      self->sh_.total += n;
      if (self->got_ < self->bytes_) return self->read();
      self->finish();
    });
  }
  void finish() {
    error_code ignored;
    s_.lowest_layer().close(ignored);
    if (--run_.live == 0) {
      run_.end_window();
      run_.io.stop();
    }
  }

  Run &run_;
  StreamShared &sh_;
  const Pattern &pat_;
  Stream s_;
  std::uint64_t bytes_, sent_ = 0, got_ = 0;
  std::size_t chunk_;
  std::vector<char> in_;
  std::uint64_t base_;
};
std::vector<std::shared_ptr<StreamClient>> StreamClient::all;

int run_stream(Options &opt) {
  Run run(opt);
  StreamShared sh;
  sh.conns = int(opt.num("conns", 4));
  auto bytes = std::uint64_t(opt.num("bytes", 256.0 * 1024 * 1024));
  auto chunk = std::size_t(opt.num("chunk", 64 * 1024));
  run.arm_watchdog(opt.num("timeout", 120));
  opt.check_unused();
  Pattern pat(chunk);
  for (int i = 0; i < sh.conns; ++i)
    StreamClient::all.push_back(std::make_shared<StreamClient>(run, sh, pat, bytes, chunk, unsigned(i)));
  for (auto &c : StreamClient::all) c->start();
  run.io.run();
  StreamClient::all.clear();
  if (run.failed) return 1;
  double mb = double(sh.total) / 1e6;
  std::printf("RESULT mode=stream conns=%d bytes=%llu mb_s=%.1f seconds=%.3f%s%s\n", sh.conns,
              (unsigned long long)bytes, mb / run.elapsed, run.elapsed, run.cpu_fields(mb / 1e3, "gb", 1).c_str(),
              run.tls_fields().c_str());
  return 0;
}

// ---------------------------------------------------------------- handshake

class HandshakeClient : public std::enable_shared_from_this<HandshakeClient> {
public:
  HandshakeClient(Run &run, const Pattern &pat, unsigned id) : run_(run), pat_(pat), off_(id * 15485863ull) {}
  void start() {
    ++run_.live;
    cycle();
  }

private:
  void cycle() {
    if (run_.stopping) {
      if (--run_.live == 0) run_.io.stop();
      return;
    }
    s_ = std::make_unique<Stream>(run_.io, run_.ctx);
    started_ = Clock::now();
    off_ += 31;
    auto self = shared_from_this();
    connect_tls(run_, self, *s_, [self] {
      asio::async_write(*self->s_, asio::buffer(self->pat_.at(self->off_), sizeof self->in_),
                        [self](error_code ec, std::size_t) {
                          if (ec) return self->run_.fail("handshake write", ec);
                          asio::async_read(*self->s_, asio::buffer(self->in_), [self](error_code ec, std::size_t) {
                            if (ec) return self->run_.fail("handshake read", ec);
                            if (std::memcmp(self->in_, self->pat_.at(self->off_), sizeof self->in_) != 0)
                              return self->run_.fail("handshake: reply differs");
                            self->close();
                          });
                        });
    });
  }
  // close_notify, then the server's close_notify (or its EOF), then close.
  void close() {
    s_->async_shutdown([self = shared_from_this()](error_code) {
      error_code ignored;
      self->s_->lowest_layer().close(ignored);
      self->run_.record(self->started_);
      self->cycle();
    });
  }

  Run &run_;
  const Pattern &pat_;
  std::unique_ptr<Stream> s_;
  char in_[32];
  std::uint64_t off_;
  Clock::time_point started_;
};

int run_handshake(Options &opt) {
  Run run(opt);
  int conns = int(opt.num("conns", 20));
  double seconds = opt.num("seconds", 5), warmup = opt.num("warmup", 1);
  run.arm_watchdog(opt.num("timeout", warmup + seconds + 30));
  opt.check_unused();
  Pattern pat(64);
  for (int i = 0; i < conns; ++i) std::make_shared<HandshakeClient>(run, pat, unsigned(i))->start();
  asio::steady_timer window(run.io);
  schedule_window(run, window, warmup, seconds);
  run.io.run();
  if (run.failed) return 1;
  std::printf("RESULT mode=handshake conns=%d hps=%.0f p50_us=%.0f p99_us=%.0f%s%s\n", conns,
              double(run.ops) / run.elapsed, run.pct_us(0.5), run.pct_us(0.99),
              run.cpu_fields(double(run.ops), "conn").c_str(), run.tls_fields().c_str());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  Options opt(argc, argv);
  try {
    if (opt.mode == "echo") return run_echo(opt);
    if (opt.mode == "stream") return run_stream(opt);
    if (opt.mode == "handshake") return run_handshake(opt);
  } catch (const std::exception &e) {
    die(1, e.what());
  }
  die(2, "unknown mode " + opt.mode);
}
