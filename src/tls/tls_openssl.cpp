// The OpenSSL backend (OpenSSL 1.1.1 and 3.x). Sessions talk to the socket
// through a small BIO of our own, so that sends never raise SIGPIPE and the
// cause of a failed send or receive is known exactly.
#include "backend.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>

namespace tlsb {

namespace {

std::string last_ssl_error(const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  if (!e)
    return fallback;
  const char *r = ERR_reason_error_string(e);
  return r ? r : fallback;
}

[[noreturn]] void fail(int code, const std::string &msg) { throw failure{code, msg}; }

// The socket BIO: its data pointer is the session, which keeps the result of
// the last send or receive.
struct io_state {
  std::intptr_t fd;
  long last = 0;  // last IO_* failure, 0 if none
};

int bio_write(BIO *b, const char *data, int len) {
  auto *io = static_cast<io_state *>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  long n = sock_send(io->fd, data, size_t(len));
  if (n >= 0)
    return int(n);
  io->last = n;
  if (n == IO_AGAIN)
    BIO_set_retry_write(b);
  return -1;
}

int bio_read(BIO *b, char *buf, int cap) {
  auto *io = static_cast<io_state *>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  long n = sock_recv(io->fd, buf, size_t(cap));
  if (n >= 0)
    return int(n);
  io->last = n;
  if (n == IO_AGAIN)
    BIO_set_retry_read(b);
  return -1;
}

long bio_ctrl(BIO *, int cmd, long, void *) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

// Created on first use, freed when the process exits (the library is
// never unloaded: -z nodelete).
struct method_holder {
  BIO_METHOD *m;
  method_holder() : m(BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luaasio socket")) {
    if (m) {
      BIO_meth_set_write(m, bio_write);
      BIO_meth_set_read(m, bio_read);
      BIO_meth_set_ctrl(m, bio_ctrl);
      BIO_meth_set_create(m, bio_create);
    }
  }
  ~method_holder() { BIO_meth_free(m); }
  method_holder(const method_holder &) = delete;
  method_holder &operator=(const method_holder &) = delete;
};

BIO_METHOD *socket_method() {
  static method_holder holder;
  return holder.m;
}

const char *verify_reason(long v) {
  switch (v) {
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
  case X509_V_ERR_EMAIL_MISMATCH:
    return "hostname mismatch";
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return "expired";
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return "not yet valid";
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    return "self-signed";
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    return "unknown ca";
  case X509_V_ERR_CERT_REVOKED:
    return "revoked";
  case X509_V_ERR_INVALID_PURPOSE:
    return "wrong purpose";
  default:
    return X509_verify_cert_error_string(v);
  }
}

std::string name_text(X509_NAME *n) {
  if (!n)
    return std::string();
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return std::string();
  std::string out;
  if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
    char *p = nullptr;
    long len = BIO_get_mem_data(b, &p);
    if (p && len > 0)
      out.assign(p, size_t(len));
  }
  BIO_free(b);
  return out;
}

int parse_version(const std::string &v) {
  if (v == "1.2")
    return TLS1_2_VERSION;
  if (v == "1.3")
    return TLS1_3_VERSION;
  fail(LUAASIO_TLS_EINVAL, "unknown TLS version '" + v + "' (use '1.2' or '1.3')");
}

class ossl_context : public context {
public:
  explicit ossl_context(bool server_side) {
    ctx = SSL_CTX_new(server_side ? TLS_server_method() : TLS_client_method());
    if (!ctx)
      fail(LUAASIO_TLS_ENOMEM, last_ssl_error("cannot create a TLS context"));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    if (server_side) {
      // Clients may not renegotiate; sessions resume across one context.
      SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
      static const unsigned char sid[] = "luaasio";
      SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
      SSL_CTX_set_alpn_select_cb(ctx, select_alpn, this);
    }
    SSL_CTX_set_verify(ctx, server_side ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  }
  ~ossl_context() override { SSL_CTX_free(ctx); }

  void set(int what, const std::string &v) override {
    ERR_clear_error();
    switch (what) {
    case LUAASIO_TLS_CERT:
      if (SSL_CTX_use_certificate_chain_file(ctx, v.c_str()) != 1)
        fail(LUAASIO_TLS_EINVAL, "cannot load certificate " + v + ": " +
                                     last_ssl_error("bad certificate file"));
      break;
    case LUAASIO_TLS_KEY:
      if (SSL_CTX_use_PrivateKey_file(ctx, v.c_str(), SSL_FILETYPE_PEM) != 1) {
        std::string why = last_ssl_error("bad key file");
        if (why == "key values mismatch")
          fail(LUAASIO_TLS_EINVAL, "key " + v + " does not match the certificate");
        fail(LUAASIO_TLS_EINVAL, "cannot load key " + v + ": " + why);
      }
      if (SSL_CTX_check_private_key(ctx) != 1)
        fail(LUAASIO_TLS_EINVAL, "key " + v + " does not match the certificate");
      break;
    case LUAASIO_TLS_CA: {
      bool dir = is_directory(v);
      if (SSL_CTX_load_verify_locations(ctx, dir ? nullptr : v.c_str(), dir ? v.c_str() : nullptr) != 1)
        fail(LUAASIO_TLS_EINVAL, "cannot load CA " + v + ": " + last_ssl_error("bad CA file"));
      if (server && !dir) {
        // The names a server sends when it asks for a client certificate.
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(v.c_str());
        if (names)
          SSL_CTX_set_client_CA_list(ctx, names);
      }
      break;
    }
    case LUAASIO_TLS_CA_DEFAULT: {
      std::string file = default_ca_file(), dir = default_ca_dir();
      if (SSL_CTX_set_default_verify_paths(ctx) != 1 && file.empty() && dir.empty())
        fail(LUAASIO_TLS_EINVAL, "no system CA store found; pass opts.ca");
      if (!file.empty() || !dir.empty())
        SSL_CTX_load_verify_locations(ctx, file.empty() ? nullptr : file.c_str(),
                                      dir.empty() ? nullptr : dir.c_str());
      ERR_clear_error();
      break;
    }
    case LUAASIO_TLS_VERIFY: {
      int mode = SSL_VERIFY_NONE;
      if (v == "1")
        mode = server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
      else if (v == "2")
        mode = SSL_VERIFY_PEER;
      SSL_CTX_set_verify(ctx, mode, nullptr);
      break;
    }
    case LUAASIO_TLS_ALPN:
      alpn = v;
      if (!server && SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char *>(v.data()),
                                             unsigned(v.size())) != 0)
        fail(LUAASIO_TLS_EINVAL, "bad ALPN list");
      break;
    case LUAASIO_TLS_MIN_VERSION:
      SSL_CTX_set_min_proto_version(ctx, parse_version(v));
      break;
    case LUAASIO_TLS_MAX_VERSION:
      SSL_CTX_set_max_proto_version(ctx, parse_version(v));
      break;
    case LUAASIO_TLS_CIPHERS:
      if (SSL_CTX_set_cipher_list(ctx, v.c_str()) != 1)
        fail(LUAASIO_TLS_EINVAL, "no cipher in '" + v + "' is known");
      break;
    default:
      fail(LUAASIO_TLS_EINVAL, "unknown setting");
    }
  }

  static int select_alpn(SSL *, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned int inlen, void *arg) {
    auto *self = static_cast<ossl_context *>(arg);
    if (self->alpn.empty())
      return SSL_TLSEXT_ERR_NOACK;
    unsigned char *chosen = nullptr;
    unsigned char chosen_len = 0;
    // The server's order of preference decides.
    if (SSL_select_next_proto(&chosen, &chosen_len,
                              reinterpret_cast<const unsigned char *>(self->alpn.data()),
                              unsigned(self->alpn.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED)
      return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    *outlen = chosen_len;
    return SSL_TLSEXT_ERR_OK;
  }

  SSL_CTX *ctx = nullptr;
  std::string alpn;
};

class ossl_session : public session {
public:
  ossl_session(ossl_context &c, std::intptr_t fd, const char *server_name, const std::string &saved)
      : io{fd} {
    ERR_clear_error();
    ssl = SSL_new(c.ctx);
    if (!ssl)
      fail(LUAASIO_TLS_ENOMEM, last_ssl_error("cannot create a TLS session"));
    BIO *b = socket_method() ? BIO_new(socket_method()) : nullptr;
    if (!b) {
      SSL_free(ssl);
      fail(LUAASIO_TLS_ENOMEM, "cannot create the socket BIO");
    }
    BIO_set_data(b, &io);
    SSL_set_bio(ssl, b, b);
    if (c.server) {
      SSL_set_accept_state(ssl);
      return;
    }
    SSL_set_connect_state(ssl);
    if (server_name) {
      if (is_ip_literal(server_name)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name);
      } else {
        SSL_set_tlsext_host_name(ssl, server_name);
        SSL_set1_host(ssl, server_name);
      }
    }
    if (!saved.empty()) {
      const unsigned char *p = reinterpret_cast<const unsigned char *>(saved.data());
      SSL_SESSION *s = d2i_SSL_SESSION(nullptr, &p, long(saved.size()));
      if (s) {
        SSL_set_session(ssl, s);
        SSL_SESSION_free(s);
      }
      // A session that does not parse is not an error: the handshake is a
      // full one then.
      ERR_clear_error();
    }
  }
  ~ossl_session() override { SSL_free(ssl); }

  // The code for a failed call `r` of SSL_*; `in_handshake` chooses the
  // error for protocol failures.
  int failed(int r, bool in_handshake) {
    int e = SSL_get_error(ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
      return LUAASIO_TLS_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
      return LUAASIO_ETLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
      truncated = false;
      return LUAASIO_TLS_EOF;
    case SSL_ERROR_SYSCALL:
      if (io.last != 0) {
        reason = "socket error";
        return io_code(io.last);
      }
      // The peer closed the stream without close_notify (OpenSSL 1.1).
      return unexpected_eof(in_handshake);
    default: {
      unsigned long err = ERR_peek_last_error();
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
      if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return unexpected_eof(in_handshake);
#endif
      if (io.last != 0 && io.last != IO_AGAIN) {
        reason = "socket error";
        return io_code(io.last);
      }
      long v = SSL_get_verify_result(ssl);
      if (in_handshake && v != X509_V_OK) {
        reason = verify_reason(v);
        return LUAASIO_TLS_EVERIFY;
      }
      reason = last_ssl_error(in_handshake ? "handshake failed" : "bad record");
      // Before the first byte of data, an alert from the peer is its
      // verdict on the handshake (TLS 1.3 clients learn it only here).
      return in_handshake || !got_data ? LUAASIO_TLS_EHANDSHAKE : LUAASIO_TLS_EPROTO;
    }
    }
  }

  int unexpected_eof(bool in_handshake) {
    truncated = true;
    if (in_handshake) {
      reason = "the peer closed the connection during the handshake";
      return LUAASIO_TLS_EHANDSHAKE;
    }
    return LUAASIO_TLS_EOF;
  }

  int handshake() override {
    ERR_clear_error();
    io.last = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1)
      return 0;
    return failed(r, true);
  }

  int read(char *buf, int cap) override {
    if (deferred)
      return deferred;
    int n = 0;
    // Read-ahead pulls all the socket has into OpenSSL's buffer; keep
    // decrypting while it holds more, but do not go back to the socket once
    // something was read (that would cost a failed receive).
    while (n < cap) {
      ERR_clear_error();
      io.last = 0;
      int r = SSL_read(ssl, buf + n, cap - n);
      if (r > 0) {
        n += r;
        got_data = true;
        if (!SSL_has_pending(ssl))
          break;
        continue;
      }
      int code = failed(r, !SSL_is_init_finished(ssl));
      if (n == 0)
        return code;
      if (code != LUAASIO_TLS_EAGAIN && code != LUAASIO_ETLS_WANT_WRITE)
        deferred = code;  // reported by the next read
      break;
    }
    return n;
  }

  int write(const char *data, int len) override {
    int n = 0;
    while (n < len) {
      ERR_clear_error();
      io.last = 0;
      int r = SSL_write(ssl, data + n, len - n);
      if (r > 0) {
        n += r;
        continue;
      }
      int code = failed(r, !SSL_is_init_finished(ssl));
      if (n == 0)
        return code == LUAASIO_TLS_EOF ? LUAASIO_TLS_EPIPE : code;
      break;
    }
    return n;
  }

  int shutdown() override {
    ERR_clear_error();
    io.last = 0;
    if (!SSL_is_init_finished(ssl))
      return 0;
    int r = SSL_shutdown(ssl);
    if (r >= 0)
      return 0;
    int code = failed(r, false);
    return code == LUAASIO_TLS_EAGAIN ? 0 : code;
  }

  std::string info(int what) override {
    switch (what) {
    case LUAASIO_TLS_INFO_VERSION:
      return SSL_get_version(ssl);
    case LUAASIO_TLS_INFO_CIPHER: {
      const char *c = SSL_get_cipher_name(ssl);
      return c && std::strcmp(c, "(NONE)") != 0 ? c : "";
    }
    case LUAASIO_TLS_INFO_SUBJECT:
    case LUAASIO_TLS_INFO_ISSUER: {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
      X509 *peer = SSL_get1_peer_certificate(ssl);
#else
      X509 *peer = SSL_get_peer_certificate(ssl);
#endif
      if (!peer)
        return std::string();
      std::string s = name_text(what == LUAASIO_TLS_INFO_SUBJECT ? X509_get_subject_name(peer)
                                                                 : X509_get_issuer_name(peer));
      X509_free(peer);
      return s;
    }
    case LUAASIO_TLS_INFO_ALPN: {
      const unsigned char *p = nullptr;
      unsigned int len = 0;
      SSL_get0_alpn_selected(ssl, &p, &len);
      return p ? std::string(reinterpret_cast<const char *>(p), len) : std::string();
    }
    default:
      return std::string();
    }
  }

  std::string save_session() override {
    SSL_SESSION *s = SSL_get1_session(ssl);
    if (!s)
      return std::string();
    std::string out;
    if (SSL_SESSION_is_resumable(s)) {
      int len = i2d_SSL_SESSION(s, nullptr);
      if (len > 0) {
        out.resize(size_t(len));
        unsigned char *p = reinterpret_cast<unsigned char *>(&out[0]);
        if (i2d_SSL_SESSION(s, &p) != len)
          out.clear();
      }
    }
    SSL_SESSION_free(s);
    return out;
  }

  bool resumed() override { return SSL_session_reused(ssl) == 1; }
  int pending() override { return SSL_pending(ssl); }

  io_state io;
  SSL *ssl = nullptr;
  int deferred = 0;
  bool got_data = false;
};

} // namespace

const char *name() { return OpenSSL_version(OPENSSL_VERSION); }

context *new_context(bool server) { return new ossl_context(server); }

session *new_session(context &ctx, std::intptr_t fd, const char *server_name,
                     const std::string &saved) {
  return new ossl_session(static_cast<ossl_context &>(ctx), fd, server_name, saved);
}

} // namespace tlsb
