// udp_native_server - a single-threaded Boost.Asio UDP echo server: the
// ceiling the LuaAsio UDP echo (bench/lua/udp_echo_server.lua) is measured
// against. Receives with async_receive_from into one 64 KiB buffer and
// answers each datagram with async_send_to, as Boost.Asio's own example.
//
//   udp_native_server [PORT]     (0 or none: pick a free one)
//
// Binds 127.0.0.1 and prints "PORT <n>".
#include <boost/asio.hpp>

#include <cstdlib>
#include <iostream>

namespace asio = boost::asio;
using asio::ip::udp;
using boost::system::error_code;

namespace {

class Echo {
public:
  Echo(asio::io_context &ctx, unsigned short port)
      : sock_(ctx, udp::endpoint(asio::ip::make_address("127.0.0.1"), port)) {}
  unsigned short port() const { return sock_.local_endpoint().port(); }
  void receive() {
    sock_.async_receive_from(asio::buffer(buf_, sizeof buf_), peer_, [this](error_code ec, std::size_t n) {
      if (ec) return receive();
      sock_.async_send_to(asio::buffer(buf_, n), peer_, [this](error_code, std::size_t) { receive(); });
    });
  }

private:
  udp::socket sock_;
  udp::endpoint peer_;
  char buf_[65536];
};

} // namespace

int main(int argc, char **argv) {
  asio::io_context ctx(1);
  Echo echo(ctx, static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 0));
  std::cout << "PORT " << echo.port() << std::endl;
  echo.receive();
  ctx.run();
}
