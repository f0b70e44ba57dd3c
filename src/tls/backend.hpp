// The interface both TLS backends implement (tls_openssl.cpp,
// tls_mbedtls.cpp); tls_abi.cpp turns it into the C ABI of
// include/luaasio_tls.h. Exactly one backend is compiled in.
#ifndef LUAASIO_TLS_BACKEND_HPP
#define LUAASIO_TLS_BACKEND_HPP

#include "luaasio_tls.h"

#include <cstdint>
#include <string>

namespace tlsb {

// Thrown by constructors and setters with a message for the user; tls_abi
// catches it (and everything else) before the C ABI.
struct failure {
  int code;
  std::string message;
};

class context {
public:
  virtual ~context() = default;
  virtual void set(int what, const std::string &value) = 0;
  bool server = false;
};

class session {
public:
  virtual ~session() = default;
  virtual int handshake() = 0;
  virtual int read(char *buf, int cap) = 0;
  virtual int write(const char *data, int len) = 0;
  virtual int shutdown() = 0;
  virtual std::string info(int what) = 0;
  // Empty when there is no session to save yet.
  virtual std::string save_session() = 0;
  virtual bool resumed() = 0;
  virtual int pending() = 0;
  bool truncated = false;
  std::string reason;  // why the last call failed
};

const char *name();
context *new_context(bool server);
session *new_session(context &ctx, std::intptr_t fd, const char *server_name,
                     const std::string &saved);

// Helpers shared by the backends (tls_abi.cpp).
bool is_ip_literal(const char *name);
// The Debian/OpenWrt system store, or empty if none is found.
std::string default_ca_file();
std::string default_ca_dir();
bool is_directory(const std::string &path);

// Non-blocking socket I/O that never raises SIGPIPE. Bytes (0 from recv at
// the end of the stream), or one of these.
enum { IO_AGAIN = -1, IO_RESET = -2, IO_PIPE = -3, IO_ERROR = -4 };
long sock_send(std::intptr_t fd, const char *data, std::size_t len);
long sock_recv(std::intptr_t fd, char *buf, std::size_t cap);
// The code for a failed IO_* result.
int io_code(long io);

} // namespace tlsb

#endif
