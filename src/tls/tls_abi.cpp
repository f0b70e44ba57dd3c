// The C ABI of libluaasio_tls over whichever backend was compiled in. No C++
// exception leaves these functions: each catches everything and returns a
// code (and a message where the ABI has room for one).
#include "backend.hpp"

#include <cstring>
#include <new>
#include <sys/stat.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <cerrno>
#include <sys/socket.h>
#endif

#if defined(_WIN32)
#define LUAASIO_TLS_EXPORT extern "C" __declspec(dllexport)
#else
#define LUAASIO_TLS_EXPORT extern "C" __attribute__((visibility("default")))
#endif

namespace B = tlsb;

struct luaasio_tls_ctx {
  B::context *impl;
};

struct luaasio_tls {
  B::session *impl;
};

namespace tlsb {

bool is_ip_literal(const char *name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

bool is_directory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR;
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG;
}

std::string default_ca_file() {
  // Debian and OpenWrt (ca-bundle), then the Red Hat and Alpine layouts.
  static const char *const files[] = {
      "/etc/ssl/certs/ca-certificates.crt",
      "/etc/pki/tls/certs/ca-bundle.crt",
      "/etc/ssl/cert.pem",
  };
  for (const char *f : files)
    if (is_file(f))
      return f;
  return std::string();
}

std::string default_ca_dir() {
  return is_directory("/etc/ssl/certs") ? "/etc/ssl/certs" : std::string();
}

static long io_error() {
#ifdef _WIN32
  int e = WSAGetLastError();
  if (e == WSAEWOULDBLOCK || e == WSAEINTR)
    return IO_AGAIN;
  if (e == WSAECONNRESET || e == WSAECONNABORTED)
    return IO_RESET;
  if (e == WSAESHUTDOWN)
    return IO_PIPE;
#else
  int e = errno;
  if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
    return IO_AGAIN;
  if (e == ECONNRESET || e == ECONNABORTED)
    return IO_RESET;
  if (e == EPIPE)
    return IO_PIPE;
#endif
  return IO_ERROR;
}

long sock_send(std::intptr_t fd, const char *data, std::size_t len) {
#ifdef _WIN32
  int n = ::send(static_cast<SOCKET>(fd), data, len > 0x40000000 ? 0x40000000 : int(len), 0);
#else
  ssize_t n = ::send(static_cast<int>(fd), data, len, MSG_NOSIGNAL);
#endif
  return n >= 0 ? long(n) : io_error();
}

long sock_recv(std::intptr_t fd, char *buf, std::size_t cap) {
#ifdef _WIN32
  int n = ::recv(static_cast<SOCKET>(fd), buf, cap > 0x40000000 ? 0x40000000 : int(cap), 0);
#else
  ssize_t n = ::recv(static_cast<int>(fd), buf, cap, 0);
#endif
  return n >= 0 ? long(n) : io_error();
}

int io_code(long io) {
  switch (io) {
  case IO_AGAIN: return LUAASIO_TLS_EAGAIN;
  case IO_RESET: return LUAASIO_TLS_ECONNRESET;
  case IO_PIPE: return LUAASIO_TLS_EPIPE;
  default: return LUAASIO_TLS_ESYSTEM;
  }
}

} // namespace tlsb

static void put_error(char *err, int errcap, const std::string &msg) {
  if (!err || errcap <= 0)
    return;
  size_t n = msg.size() < size_t(errcap - 1) ? msg.size() : size_t(errcap - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = 0;
}

#define TLS_CATCH(fallback)                                                                  \
  catch (const B::failure &f) {                                                              \
    put_error(err, errcap, f.message);                                                       \
    return fallback;                                                                         \
  }                                                                                          \
  catch (const std::bad_alloc &) {                                                           \
    put_error(err, errcap, "out of memory");                                                 \
    return fallback;                                                                         \
  }                                                                                          \
  catch (...) {                                                                              \
    put_error(err, errcap, "internal error");                                                \
    return fallback;                                                                         \
  }

// Session calls have no message buffer: the message goes to the session's
// reason, which luaasio_tls_info(LUAASIO_TLS_INFO_REASON) returns.
#define SESSION_CALL(expr)                                                                   \
  if (!t || !t->impl)                                                                        \
    return LUAASIO_TLS_EINVAL;                                                               \
  try {                                                                                      \
    return expr;                                                                             \
  } catch (const B::failure &f) {                                                            \
    t->impl->reason = f.message;                                                             \
    return f.code;                                                                           \
  } catch (const std::bad_alloc &) {                                                         \
    return LUAASIO_TLS_ENOMEM;                                                               \
  } catch (...) {                                                                            \
    return LUAASIO_TLS_ESYSTEM;                                                              \
  }

LUAASIO_TLS_EXPORT const char *luaasio_tls_backend(void) { return B::name(); }

LUAASIO_TLS_EXPORT int luaasio_tls_abi_version(void) { return 1; }

LUAASIO_TLS_EXPORT const char *luaasio_tls_cdef(void) {
  return
#include "luaasio_tls_cdef.inc"
      ;
}

LUAASIO_TLS_EXPORT luaasio_tls_ctx *luaasio_tls_ctx_new(int server, char *err, int errcap) {
  try {
    auto *c = new luaasio_tls_ctx{nullptr};
    try {
      c->impl = B::new_context(server != 0);
      c->impl->server = server != 0;
    } catch (...) {
      delete c;
      throw;
    }
    return c;
  }
  TLS_CATCH(nullptr)
}

LUAASIO_TLS_EXPORT int luaasio_tls_ctx_set(luaasio_tls_ctx *ctx, int what, const char *value,
                                           int len, char *err, int errcap) {
  if (!ctx || !ctx->impl || len < 0 || (len > 0 && !value)) {
    put_error(err, errcap, "invalid argument");
    return LUAASIO_TLS_EINVAL;
  }
  try {
    ctx->impl->set(what, std::string(value ? value : "", size_t(len)));
    return 0;
  } catch (const B::failure &f) {
    put_error(err, errcap, f.message);
    return f.code;
  } catch (const std::bad_alloc &) {
    put_error(err, errcap, "out of memory");
    return LUAASIO_TLS_ENOMEM;
  } catch (...) {
    put_error(err, errcap, "internal error");
    return LUAASIO_TLS_ESYSTEM;
  }
}

LUAASIO_TLS_EXPORT void luaasio_tls_ctx_free(luaasio_tls_ctx *ctx) {
  if (!ctx)
    return;
  delete ctx->impl;
  delete ctx;
}

LUAASIO_TLS_EXPORT luaasio_tls *luaasio_tls_new(luaasio_tls_ctx *ctx, int64_t fd,
                                                const char *server_name, const char *session,
                                                int session_len, char *err, int errcap) {
  if (!ctx || !ctx->impl || fd < 0 || session_len < 0 || (session_len > 0 && !session)) {
    put_error(err, errcap, "invalid argument");
    return nullptr;
  }
  try {
    auto *t = new luaasio_tls{nullptr};
    try {
      std::string saved(session ? session : "", size_t(session_len));
      t->impl = B::new_session(*ctx->impl, static_cast<std::intptr_t>(fd),
                               server_name && *server_name ? server_name : nullptr, saved);
    } catch (...) {
      delete t;
      throw;
    }
    return t;
  }
  TLS_CATCH(nullptr)
}

LUAASIO_TLS_EXPORT void luaasio_tls_free(luaasio_tls *t) {
  if (!t)
    return;
  delete t->impl;
  delete t;
}

LUAASIO_TLS_EXPORT int luaasio_tls_handshake(luaasio_tls *t) { SESSION_CALL(t->impl->handshake()) }

LUAASIO_TLS_EXPORT int luaasio_tls_read(luaasio_tls *t, char *buf, int cap) {
  if (!buf || cap <= 0)
    return LUAASIO_TLS_EINVAL;
  SESSION_CALL(t->impl->read(buf, cap))
}

LUAASIO_TLS_EXPORT int luaasio_tls_write(luaasio_tls *t, const char *data, int offset, int len) {
  if (!data || offset < 0 || len < 0)
    return LUAASIO_TLS_EINVAL;
  if (len == 0)
    return 0;
  SESSION_CALL(t->impl->write(data + offset, len))
}

LUAASIO_TLS_EXPORT int luaasio_tls_shutdown(luaasio_tls *t) { SESSION_CALL(t->impl->shutdown()) }

static int copy_out(const std::string &s, char *buf, int cap) {
  if (!buf || cap <= 0)
    return 0;
  size_t n = s.size() < size_t(cap) ? s.size() : size_t(cap);
  std::memcpy(buf, s.data(), n);
  return static_cast<int>(n);
}

LUAASIO_TLS_EXPORT int luaasio_tls_info(luaasio_tls *t, int what, char *buf, int cap) {
  if (!t || !t->impl)
    return 0;
  try {
    if (what == LUAASIO_TLS_INFO_REASON)
      return copy_out(t->impl->reason, buf, cap);
    return copy_out(t->impl->info(what), buf, cap);
  } catch (...) {
    return 0;
  }
}

LUAASIO_TLS_EXPORT int luaasio_tls_session(luaasio_tls *t, char *buf, int cap) {
  SESSION_CALL(([&]() -> int {
    std::string s = t->impl->save_session();
    if (s.empty())
      return LUAASIO_TLS_ENOENT;
    if (!buf || s.size() > size_t(cap))
      return -static_cast<int>(s.size()) - 1000;
    std::memcpy(buf, s.data(), s.size());
    return static_cast<int>(s.size());
  })())
}

LUAASIO_TLS_EXPORT int luaasio_tls_resumed(luaasio_tls *t) {
  SESSION_CALL(t->impl->resumed() ? 1 : 0)
}

LUAASIO_TLS_EXPORT int luaasio_tls_truncated(luaasio_tls *t) {
  SESSION_CALL(t->impl->truncated ? 1 : 0)
}

LUAASIO_TLS_EXPORT int luaasio_tls_pending(luaasio_tls *t) { SESSION_CALL(t->impl->pending()) }
