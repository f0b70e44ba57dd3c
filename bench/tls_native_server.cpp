// tls_native_server - a single-threaded Boost.Asio TLS echo server: the
// ceiling the LuaAsio TLS server (bench/lua/tls_echo_server.lua) is measured
// against.
//
//   tls_native_server --cert CERT.pem --key KEY.pem [--port P] [--buf 65536] [--nodelay 1]
//
// Listens on 127.0.0.1 (port 0 picks a free one) and prints "PORT <n>" once
// listening. Each connection is a boost::asio::ssl::stream: the handshake,
// then async_read_some -> async_write of whatever arrived until EOF or an
// error, then a close_notify. The context is set up as LuaAsio's server
// context is (TLS 1.2 minimum, no compression, no renegotiation, the
// server's cipher preference, the default session cache and tickets), so
// both sides negotiate the same thing with the same client. With --nodelay 1
// every accepted socket gets TCP_NODELAY before the handshake.
//
// Build: g++ -std=c++17 -O2 -pthread tls_native_server.cpp -lssl -lcrypto

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

[[noreturn]] void die(const std::string &msg) {
  std::cerr << "tls_native_server: " << msg << std::endl;
  std::exit(2);
}

class Session : public std::enable_shared_from_this<Session> {
public:
  Session(tcp::socket sock, ssl::context &ctx, std::size_t size)
      : stream_(std::move(sock), ctx), buf_(new char[size]), size_(size) {}

  void start() {
    stream_.async_handshake(ssl::stream_base::server, [self = shared_from_this()](error_code ec) {
      if (!ec) self->read();
    });
  }

private:
  void read() {
    stream_.async_read_some(asio::buffer(buf_.get(), size_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec) {
        // The peer's close_notify: answer it; anything else just ends.
        if (ec == asio::error::eof || ec == ssl::error::stream_truncated)
          self->stream_.async_shutdown([self](error_code) {});
        return;
      }
      asio::async_write(self->stream_, asio::buffer(self->buf_.get(), n), [self](error_code ec, std::size_t) {
        if (!ec) self->read();
      });
    });
  }

  ssl::stream<tcp::socket> stream_;
  std::unique_ptr<char[]> buf_;
  std::size_t size_;
};

class Server {
public:
  Server(asio::io_context &io, ssl::context &ctx, unsigned short port, std::size_t buf, bool nodelay)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)), ctx_(ctx), buf_(buf),
        nodelay_(nodelay) {
    accept();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }

private:
  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket sock) {
      if (!ec) {
        if (nodelay_) sock.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(sock), ctx_, buf_)->start();
      }
      accept();
    });
  }

  tcp::acceptor acceptor_;
  ssl::context &ctx_;
  std::size_t buf_;
  bool nodelay_;
};

} // namespace

int main(int argc, char **argv) {
  std::string cert, key;
  unsigned short port = 0;
  std::size_t buf = 65536;
  bool nodelay = false;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    if (i + 1 >= argc) die("missing value for " + k);
    std::string v = argv[i + 1];
    if (k == "--cert") cert = v;
    else if (k == "--key") key = v;
    else if (k == "--port") port = static_cast<unsigned short>(std::atoi(v.c_str()));
    else if (k == "--buf") buf = std::size_t(std::atol(v.c_str()));
    else if (k == "--nodelay") nodelay = v == "1";
    else die("unknown option " + k);
  }
  if (cert.empty() || key.empty()) die("usage: tls_native_server --cert CERT --key KEY [--port P] [--buf N]");

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  ssl::context ctx(ssl::context::tls_server);
  SSL_CTX *c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  static const unsigned char sid[] = "tls_native_server";
  SSL_CTX_set_session_id_context(c, sid, sizeof sid - 1);
  try {
    ctx.use_certificate_chain_file(cert);
    ctx.use_private_key_file(key, ssl::context::pem);
  } catch (const std::exception &e) {
    die(std::string("cannot load the certificate or key: ") + e.what());
  }

  asio::io_context io(1);
  Server server(io, ctx, port, buf, nodelay);
  std::cout << "PORT " << server.port() << std::endl;
  io.run();
}
