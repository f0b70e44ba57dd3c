// fuzz_tls_server: the server side of libluaasio_tls (include/luaasio_tls.h)
// fed a client's bytes through a socketpair, as a server session would get
// them from a connection.
//
// The input's first byte chooses the setup:
//   bit 0  0: the rest is written at once, then the writing end is shut
//          1: the rest is a list of chunks, each a length byte then that
//             many bytes; after each chunk the session runs until it waits
//             for more, and the writing end is shut after the last one
//   bit 1  a context that asks for a client certificate (verify "2",
//          optional) instead of one that does not
//   bits 2-4  the read buffer's size, 1 << (n + 4) bytes
// The session runs luaasio_tls_handshake, then luaasio_tls_read, until a
// call fails or the stream ends. The server's own output is read from the
// other end and dropped, so it never blocks on a full socket.
//
// The certificate and key are made once at startup with the OpenSSL API
// (ECDSA P-256, self-signed) and written to a private temp dir, as the
// context loads files; the contexts also offer ALPN, so the selection
// callback runs too.
//
// Checks: every result is >= 0 or a code the header lists; a read returns
// at most `cap` bytes into an exact-size heap buffer (ASan catches more);
// luaasio_tls_info never claims more than its cap; once the client's end is
// shut and drained, the session must not keep asking to wait for data that
// can never come (that would spin a light thread for ever); a read after the
// end or an error stays an end or an error.
#include "luaasio_tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

[[noreturn]] __attribute__((format(printf, 3, 4))) void fail(const char *file, int line, const char *fmt, ...) {
  std::fprintf(stderr, "==fuzz invariant failed== %s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::abort();
}
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail(__FILE__, __LINE__, __VA_ARGS__);                                                       \
  } while (0)

bool known(int rc) {
  switch (rc) {
  case LUAASIO_TLS_EAGAIN:
  case LUAASIO_TLS_EOF:
  case LUAASIO_TLS_EINVAL:
  case LUAASIO_TLS_ECONNRESET:
  case LUAASIO_TLS_EPIPE:
  case LUAASIO_TLS_ENOENT:
  case LUAASIO_TLS_ENOMEM:
  case LUAASIO_TLS_ESYSTEM:
  case LUAASIO_TLS_EHANDSHAKE:
  case LUAASIO_TLS_EVERIFY:
  case LUAASIO_TLS_EPROTO:
  case LUAASIO_ETLS_WANT_WRITE:
    return true;
  default:
    return rc >= 0;
  }
}

// ---------------------------------------------------------------- setup

std::string tmpdir;

void remove_tmpdir() {
  if (tmpdir.empty())
    return;
  unlink((tmpdir + "/cert.pem").c_str());
  unlink((tmpdir + "/key.pem").c_str());
  rmdir(tmpdir.c_str());
}

// A P-256 key and a self-signed certificate for it, as PEM files.
void make_certificate() {
  char dir[] = "/tmp/latls-XXXXXX";
  CHECK(mkdtemp(dir), "mkdtemp: %s", std::strerror(errno));
  tmpdir = dir;
  std::atexit(remove_tmpdir);

  EVP_PKEY *pkey = nullptr;
  EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
  CHECK(kctx && EVP_PKEY_keygen_init(kctx) == 1 &&
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) == 1 &&
            EVP_PKEY_keygen(kctx, &pkey) == 1,
        "cannot make an EC key");
  EVP_PKEY_CTX_free(kctx);

  X509 *x = X509_new();
  CHECK(x, "X509_new");
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>("fuzz"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  CHECK(X509_sign(x, pkey, EVP_sha256()) > 0, "X509_sign");

  FILE *f = std::fopen((tmpdir + "/cert.pem").c_str(), "w");
  CHECK(f && PEM_write_X509(f, x) == 1, "cannot write the certificate");
  std::fclose(f);
  f = std::fopen((tmpdir + "/key.pem").c_str(), "w");
  CHECK(f && PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1, "cannot write the key");
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

void set(luaasio_tls_ctx *ctx, int what, const std::string &v) {
  char err[256];
  int r = luaasio_tls_ctx_set(ctx, what, v.data(), int(v.size()), err, sizeof err);
  CHECK(r == 0, "luaasio_tls_ctx_set(%d): %d %s", what, r, err);
}

luaasio_tls_ctx *make_context(bool ask_cert) {
  char err[256];
  luaasio_tls_ctx *ctx = luaasio_tls_ctx_new(1, err, sizeof err);
  CHECK(ctx, "luaasio_tls_ctx_new: %s", err);
  set(ctx, LUAASIO_TLS_CERT, tmpdir + "/cert.pem");
  set(ctx, LUAASIO_TLS_KEY, tmpdir + "/key.pem");
  if (ask_cert) {
    set(ctx, LUAASIO_TLS_CA, tmpdir + "/cert.pem");
    set(ctx, LUAASIO_TLS_VERIFY, "2");
  }
  set(ctx, LUAASIO_TLS_ALPN, std::string("\x02h2\x08http/1.1", 12));
  return ctx;
}

struct contexts {
  luaasio_tls_ctx *plain, *ask_cert;
  contexts() {
    make_certificate();
    plain = make_context(false);
    ask_cert = make_context(true);
  }
  ~contexts() {
    luaasio_tls_ctx_free(plain);
    luaasio_tls_ctx_free(ask_cert);
  }
};

// ---------------------------------------------------------------- one input

struct pair {
  int client = -1, server = -1;
  pair() {
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair: %s", std::strerror(errno));
    client = fds[0];
    server = fds[1];
    for (int fd : fds)
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    // Room for every input at once: the client side never waits.
    int size = 1 << 20;
    setsockopt(client, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(server, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  ~pair() {
    close(client);
    close(server);
  }
  // Drops what the server wrote.
  void drain() {
    char buf[4096];
    while (recv(client, buf, sizeof buf, 0) > 0) {
    }
  }
  void send_all(const uint8_t *p, size_t n) {
    while (n) {
      ssize_t w = send(client, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EAGAIN) {
        drain();
        continue;
      }
      CHECK(w > 0, "send to the session: %s", std::strerror(errno));
      p += w;
      n -= size_t(w);
    }
  }
};

struct runner {
  luaasio_tls *t;
  pair &io;
  size_t cap;
  bool handshaken = false, ended = false;

  // Runs the session until it waits for data (true) or ends (false).
  bool step() {
    for (int spins = 0; spins < 10000; ++spins) {
      if (ended)
        return false;
      int r;
      if (!handshaken) {
        r = luaasio_tls_handshake(t);
        CHECK(known(r) && r <= 0, "luaasio_tls_handshake returned %d", r);
        if (r == 0) {
          handshaken = true;
          continue;
        }
      } else {
        std::unique_ptr<char[]> buf(new char[cap]);
        r = luaasio_tls_read(t, buf.get(), int(cap));
        CHECK(known(r) && r <= int(cap), "luaasio_tls_read(cap %zu) returned %d", cap, r);
        CHECK(r != 0, "luaasio_tls_read returned 0 bytes");
        if (r > 0)
          continue;
      }
      if (r == LUAASIO_TLS_EAGAIN)
        return true;
      if (r == LUAASIO_ETLS_WANT_WRITE) {
        io.drain();
        continue;
      }
      ended = true;
      return false;
    }
    fail(__FILE__, __LINE__, "the session made no progress in 10000 calls");
  }
};

void probe_info(luaasio_tls *t) {
  for (int what = 1; what <= 6; ++what) {
    for (int cap : {0, 1, 8, 300}) {
      std::unique_ptr<char[]> buf(new char[size_t(cap) + 1]);
      int n = luaasio_tls_info(t, what, buf.get(), cap);
      CHECK(n >= 0 && n <= cap, "luaasio_tls_info(%d, cap %d) returned %d", what, cap, n);
    }
  }
  int p = luaasio_tls_pending(t);
  CHECK(p >= 0, "luaasio_tls_pending returned %d", p);
  int r = luaasio_tls_resumed(t);
  CHECK(r == 0 || r == 1, "luaasio_tls_resumed returned %d", r);
  char sbuf[64];
  int s = luaasio_tls_session(t, sbuf, sizeof sbuf);
  CHECK(s == LUAASIO_TLS_ENOENT || s <= -1000 || (s >= 0 && s <= int(sizeof sbuf)),
        "luaasio_tls_session returned %d", s);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static contexts ctxs;
  if (size == 0)
    return 0;
  uint8_t mode = data[0];
  ++data;
  --size;
  bool chunked = mode & 1;
  luaasio_tls_ctx *ctx = (mode & 2) ? ctxs.ask_cert : ctxs.plain;
  size_t cap = size_t(1) << (((mode >> 2) & 7) + 4);

  pair io;
  char err[256];
  luaasio_tls *t = luaasio_tls_new(ctx, io.server, nullptr, nullptr, 0, err, sizeof err);
  CHECK(t, "luaasio_tls_new: %s", err);
  runner run{t, io, cap};

  if (chunked) {
    size_t i = 0;
    while (i < size && run.step()) {
      size_t n = std::min<size_t>(data[i], size - i - 1);
      io.send_all(data + i + 1, n);
      i += 1 + n;
      io.drain();
    }
  } else {
    io.send_all(data, size);
  }
  shutdown(io.client, SHUT_WR);

  // Nothing more will come: the session must end instead of waiting.
  for (int round = 0; run.step(); ++round) {
    io.drain();
    CHECK(round < 3, "the session keeps waiting for data after the client's end was shut (%s)",
          run.handshaken ? "reading" : "in the handshake");
  }
  probe_info(t);

  // After the end, a further call ends too.
  if (run.handshaken) {
    char b[16];
    int r = luaasio_tls_read(t, b, sizeof b);
    CHECK(known(r) && r < 0 && r != LUAASIO_TLS_EAGAIN, "luaasio_tls_read after the end returned %d", r);
  } else {
    int r = luaasio_tls_handshake(t);
    CHECK(known(r) && r < 0 && r != LUAASIO_TLS_EAGAIN, "luaasio_tls_handshake after a failure returned %d", r);
  }
  int r = luaasio_tls_shutdown(t);
  CHECK(known(r) && r <= 0, "luaasio_tls_shutdown returned %d", r);
  luaasio_tls_free(t);
  return 0;
}
