// The mbedTLS backend, for OpenWrt, which ships mbedTLS. Written to the API
// that mbedTLS 2.28 and 3.x share; the few calls that differ are chosen by
// MBEDTLS_VERSION_MAJOR. TLS 1.3 needs mbedTLS 3 (2.28 speaks TLS 1.2).
#include "backend.hpp"

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#endif

#include <cstdio>
#include <cstring>
#include <vector>

namespace tlsb {

namespace {

[[noreturn]] void fail(int code, const std::string &msg) { throw failure{code, msg}; }

std::string error_text(int ret) {
  char buf[160];
  mbedtls_strerror(ret, buf, sizeof buf);
  return buf;
}

// Socket callbacks: the context pointer is the session's io state.
struct io_state {
  std::intptr_t fd;
  long last = 0;
};

int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  auto *io = static_cast<io_state *>(ctx);
  long n = sock_send(io->fd, reinterpret_cast<const char *>(buf), len);
  if (n >= 0)
    return int(n);
  io->last = n;
  if (n == IO_AGAIN)
    return MBEDTLS_ERR_SSL_WANT_WRITE;
  return n == IO_RESET || n == IO_PIPE ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
}

int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  auto *io = static_cast<io_state *>(ctx);
  long n = sock_recv(io->fd, reinterpret_cast<char *>(buf), len);
  if (n >= 0)
    return int(n);
  io->last = n;
  if (n == IO_AGAIN)
    return MBEDTLS_ERR_SSL_WANT_READ;
  return n == IO_RESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

class mbed_context : public context {
public:
  explicit mbed_context(bool server_side) {
    mbedtls_ssl_config_init(&conf);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&own_cert);
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&key);
#if defined(MBEDTLS_SSL_TICKET_C)
    mbedtls_ssl_ticket_init(&tickets);
#endif
    static const char pers[] = "luaasio tls";
    int ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                    reinterpret_cast<const unsigned char *>(pers), sizeof pers - 1);
    if (ret == 0)
      ret = mbedtls_ssl_config_defaults(&conf, server_side ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                        MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
      release();
      fail(LUAASIO_TLS_ESYSTEM, "cannot set up a TLS context: " + error_text(ret));
    }
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_authmode(&conf, server_side ? MBEDTLS_SSL_VERIFY_NONE : MBEDTLS_SSL_VERIFY_REQUIRED);
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
#if defined(MBEDTLS_SSL_TICKET_C) && defined(MBEDTLS_SSL_SESSION_TICKETS)
    if (server_side &&
        mbedtls_ssl_ticket_setup(&tickets, mbedtls_ctr_drbg_random, &drbg, MBEDTLS_CIPHER_AES_256_GCM,
                                 86400) == 0)
      mbedtls_ssl_conf_session_tickets_cb(&conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                          &tickets);
#endif
  }

  void release() {
#if defined(MBEDTLS_SSL_TICKET_C)
    mbedtls_ssl_ticket_free(&tickets);
#endif
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&own_cert);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    mbedtls_ssl_config_free(&conf);
  }

  ~mbed_context() override { release(); }

  void set(int what, const std::string &v) override {
    int ret = 0;
    switch (what) {
    case LUAASIO_TLS_CERT:
      ret = mbedtls_x509_crt_parse_file(&own_cert, v.c_str());
      if (ret != 0)
        fail(LUAASIO_TLS_EINVAL, "cannot load certificate " + v + ": " + error_text(ret));
      have_cert = true;
      break;
    case LUAASIO_TLS_KEY:
#if MBEDTLS_VERSION_MAJOR >= 3
      ret = mbedtls_pk_parse_keyfile(&key, v.c_str(), nullptr, mbedtls_ctr_drbg_random, &drbg);
#else
      ret = mbedtls_pk_parse_keyfile(&key, v.c_str(), nullptr);
#endif
      if (ret != 0)
        fail(LUAASIO_TLS_EINVAL, "cannot load key " + v + ": " + error_text(ret));
      if (!have_cert)
        fail(LUAASIO_TLS_EINVAL, "key " + v + " given before its certificate");
#if MBEDTLS_VERSION_MAJOR >= 3
      ret = mbedtls_pk_check_pair(&own_cert.pk, &key, mbedtls_ctr_drbg_random, &drbg);
#else
      ret = mbedtls_pk_check_pair(&own_cert.pk, &key);
#endif
      if (ret == 0)
        ret = mbedtls_ssl_conf_own_cert(&conf, &own_cert, &key);
      if (ret != 0)
        fail(LUAASIO_TLS_EINVAL, "key " + v + " does not match the certificate: " + error_text(ret));
      break;
    case LUAASIO_TLS_CA:
      ret = is_directory(v) ? mbedtls_x509_crt_parse_path(&ca, v.c_str())
                            : mbedtls_x509_crt_parse_file(&ca, v.c_str());
      // parse_path and parse_file return how many certificates failed to
      // parse (> 0): fine, as long as some did.
      if (ret < 0 || ca.version == 0)
        fail(LUAASIO_TLS_EINVAL, "cannot load CA " + v + ": " +
                                     (ret < 0 ? error_text(ret) : std::string("no certificate in it")));
      mbedtls_ssl_conf_ca_chain(&conf, &ca, nullptr);
      break;
    case LUAASIO_TLS_CA_DEFAULT: {
      std::string file = default_ca_file(), dir = default_ca_dir();
      if (!file.empty())
        ret = mbedtls_x509_crt_parse_file(&ca, file.c_str());
      if (ca.version == 0 && !dir.empty())
        ret = mbedtls_x509_crt_parse_path(&ca, dir.c_str());
      if (ca.version == 0)
        fail(LUAASIO_TLS_EINVAL, "no system CA store found; pass opts.ca");
      mbedtls_ssl_conf_ca_chain(&conf, &ca, nullptr);
      break;
    }
    case LUAASIO_TLS_VERIFY:
      verify_required = v == "1";
      mbedtls_ssl_conf_authmode(&conf, v == "1"   ? MBEDTLS_SSL_VERIFY_REQUIRED
                                       : v == "2" ? MBEDTLS_SSL_VERIFY_OPTIONAL
                                                  : MBEDTLS_SSL_VERIFY_NONE);
      break;
    case LUAASIO_TLS_ALPN: {
      alpn_names.clear();
      for (size_t i = 0; i < v.size();) {
        size_t n = static_cast<unsigned char>(v[i]);
        if (n == 0 || i + 1 + n > v.size())
          fail(LUAASIO_TLS_EINVAL, "bad ALPN list");
        alpn_names.push_back(v.substr(i + 1, n));
        i += 1 + n;
      }
      alpn_list.clear();
      for (auto &s : alpn_names)
        alpn_list.push_back(s.c_str());
      alpn_list.push_back(nullptr);
      ret = mbedtls_ssl_conf_alpn_protocols(&conf, alpn_list.data());
      if (ret != 0)
        fail(LUAASIO_TLS_EINVAL, "bad ALPN list: " + error_text(ret));
      break;
    }
    case LUAASIO_TLS_MIN_VERSION:
    case LUAASIO_TLS_MAX_VERSION: {
      bool min = what == LUAASIO_TLS_MIN_VERSION;
      if (v != "1.2" && v != "1.3")
        fail(LUAASIO_TLS_EINVAL, "unknown TLS version '" + v + "' (use '1.2' or '1.3')");
#if MBEDTLS_VERSION_MAJOR >= 3
      auto ver = v == "1.2" ? MBEDTLS_SSL_VERSION_TLS1_2 : MBEDTLS_SSL_VERSION_TLS1_3;
      if (min)
        mbedtls_ssl_conf_min_tls_version(&conf, ver);
      else
        mbedtls_ssl_conf_max_tls_version(&conf, ver);
#else
      if (v == "1.3") {
        if (min)
          fail(LUAASIO_TLS_EINVAL, "TLS 1.3 needs mbedTLS 3 (this is " + std::string(name()) + ")");
        break;  // 1.2 is the most there is anyway
      }
      if (min)
        mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
      else
        mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
      break;
    }
    case LUAASIO_TLS_CIPHERS:
      fail(LUAASIO_TLS_EINVAL, "ciphers is an OpenSSL setting; mbedTLS uses its defaults");
    default:
      fail(LUAASIO_TLS_EINVAL, "unknown setting");
    }
  }

  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt own_cert, ca;
  mbedtls_pk_context key;
#if defined(MBEDTLS_SSL_TICKET_C)
  mbedtls_ssl_ticket_context tickets;
#endif
  bool have_cert = false;
  bool verify_required = true;
  std::vector<std::string> alpn_names;
  std::vector<const char *> alpn_list;
};

const char *verify_reason(uint32_t flags, bool self_signed) {
  if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
    return "hostname mismatch";
  if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
    return "expired";
  if (flags & MBEDTLS_X509_BADCERT_FUTURE)
    return "not yet valid";
  if (flags & MBEDTLS_X509_BADCERT_REVOKED)
    return "revoked";
  if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
    if (self_signed)
      return "self-signed";
    return "unknown ca";
  }
  if (flags & MBEDTLS_X509_BADCERT_MISSING)
    return "no certificate";
  return "certificate not accepted";
}

// Whether the certificate lists `ip` (4 or 16 bytes) as an iPAddress
// subjectAltName. mbedTLS 2.28 does not check IP addresses itself (it keeps
// only dNSName entries), so the extension is read from the DER here.
bool cert_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t iplen) {
  static const unsigned char oid[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
  const unsigned char *p = crt->raw.p, *end = crt->raw.p + crt->raw.len;
  for (; p + sizeof oid <= end; ++p) {
    if (std::memcmp(p, oid, sizeof oid) != 0)
      continue;
    unsigned char *q = const_cast<unsigned char *>(p + sizeof oid);
    size_t len;
    if (q < end && *q == MBEDTLS_ASN1_BOOLEAN) {  // critical flag
      if (mbedtls_asn1_get_tag(&q, end, &len, MBEDTLS_ASN1_BOOLEAN) != 0)
        return false;
      q += len;
    }
    if (mbedtls_asn1_get_tag(&q, end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
      return false;
    const unsigned char *oend = q + len;
    if (mbedtls_asn1_get_tag(&q, oend, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
      return false;
    const unsigned char *send = q + len;
    while (q < send) {
      unsigned char tag = *q++;
      if (mbedtls_asn1_get_len(&q, send, &len) != 0)
        return false;
      if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && len == iplen && std::memcmp(q, ip, iplen) == 0)
        return true;
      q += len;
    }
    return false;
  }
  return false;
}

class mbed_session : public session {
public:
  mbed_session(mbed_context &c, std::intptr_t fd, const char *server_name, const std::string &saved)
      : ctx(c), io{fd} {
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_session_init(&resume);
    int ret = mbedtls_ssl_setup(&ssl, &c.conf);
    if (ret != 0) {
      mbedtls_ssl_free(&ssl);
      fail(LUAASIO_TLS_ENOMEM, "cannot create a TLS session: " + error_text(ret));
    }
    mbedtls_ssl_set_bio(&ssl, &io, bio_send, bio_recv, nullptr);
    mbedtls_ssl_set_verify(&ssl, on_verify, this);
    if (server_name) {
      if (is_ip_literal(server_name)) {
        // Checked after the handshake (see cert_has_ip); no SNI for addresses.
        ip_len = inet_pton(AF_INET, server_name, ip) == 1 ? 4 : 16;
        if (ip_len == 16)
          inet_pton(AF_INET6, server_name, ip);
      } else {
        ret = mbedtls_ssl_set_hostname(&ssl, server_name);
        if (ret != 0) {
          mbedtls_ssl_free(&ssl);
          fail(LUAASIO_TLS_EINVAL, "bad server name: " + error_text(ret));
        }
      }
    }
    if (!saved.empty() &&
        mbedtls_ssl_session_load(&resume, reinterpret_cast<const unsigned char *>(saved.data()),
                                 saved.size()) == 0 &&
        mbedtls_ssl_set_session(&ssl, &resume) == 0)
      offered = true;
  }
  ~mbed_session() override {
    mbedtls_ssl_session_free(&resume);
    mbedtls_ssl_free(&ssl);
  }

  // Notes whether the peer's own certificate is self-signed: once the
  // handshake failed, mbedTLS no longer shows the certificate.
  static int on_verify(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *) {
    if (depth == 0) {
      auto *self = static_cast<mbed_session *>(p);
      self->leaf_self_signed = crt->issuer_raw.len == crt->subject_raw.len &&
                               std::memcmp(crt->issuer_raw.p, crt->subject_raw.p, crt->issuer_raw.len) == 0;
    }
    return 0;
  }

  int io_failure(int ret) {
    if (io.last != 0 && io.last != IO_AGAIN) {
      reason = "socket error";
      return io_code(io.last);
    }
    reason = error_text(ret);
    return 0;
  }

  int handshake() override {
    io.last = 0;
    int ret = mbedtls_ssl_handshake(&ssl);
    if (ret == 0) {
      done = true;
      if (ip_len && mbedtls_ssl_get_verify_result(&ssl) == 0 &&
          ctx.verify_required) {
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
        if (!peer || !cert_has_ip(peer, ip, ip_len)) {
          reason = "hostname mismatch";
          return LUAASIO_TLS_EVERIFY;
        }
      }
      return 0;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ)
      return LUAASIO_TLS_EAGAIN;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
      return LUAASIO_ETLS_WANT_WRITE;
    if (int code = io_failure(ret))
      return code;
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
      reason = verify_reason(mbedtls_ssl_get_verify_result(&ssl), leaf_self_signed);
      return LUAASIO_TLS_EVERIFY;
    }
    if (ret == MBEDTLS_ERR_SSL_CONN_EOF) {
      truncated = true;
      reason = "the peer closed the connection during the handshake";
    }
    return LUAASIO_TLS_EHANDSHAKE;
  }

  int read_one(char *buf, int cap) {
    while (true) {
      io.last = 0;
      int ret = mbedtls_ssl_read(&ssl, reinterpret_cast<unsigned char *>(buf), size_t(cap));
      if (ret > 0) {
        got_data = true;
        return ret;
      }
      switch (ret) {
      case MBEDTLS_ERR_SSL_WANT_READ:
        return LUAASIO_TLS_EAGAIN;
      case MBEDTLS_ERR_SSL_WANT_WRITE:
        return LUAASIO_ETLS_WANT_WRITE;
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
      case MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET:
        continue;
#endif
      case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        truncated = false;
        return LUAASIO_TLS_EOF;
      case 0:
      case MBEDTLS_ERR_SSL_CONN_EOF:
        truncated = true;
        return LUAASIO_TLS_EOF;
      default:
        if (int code = io_failure(ret))
          return code;
        return got_data || done ? LUAASIO_TLS_EPROTO : LUAASIO_TLS_EHANDSHAKE;
      }
    }
  }

  int read(char *buf, int cap) override {
    if (deferred)
      return deferred;
    int n = 0;
    while (n < cap) {
      int r = read_one(buf + n, cap - n);
      if (r > 0) {
        n += r;
        if (mbedtls_ssl_get_bytes_avail(&ssl) == 0 && !mbedtls_ssl_check_pending(&ssl))
          break;
        continue;
      }
      if (n == 0)
        return r;
      if (r != LUAASIO_TLS_EAGAIN && r != LUAASIO_ETLS_WANT_WRITE)
        deferred = r;
      break;
    }
    return n;
  }

  int write(const char *data, int len) override {
    int n = 0;
    while (n < len) {
      io.last = 0;
      int ret = mbedtls_ssl_write(&ssl, reinterpret_cast<const unsigned char *>(data + n), size_t(len - n));
      if (ret > 0) {
        n += ret;
        continue;
      }
      int code;
      if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        code = LUAASIO_ETLS_WANT_WRITE;
      else if (ret == MBEDTLS_ERR_SSL_WANT_READ)
        code = LUAASIO_TLS_EAGAIN;
      else if (!(code = io_failure(ret)))
        code = LUAASIO_TLS_EPROTO;
      // After "want write" the record is taken and half sent: the next call
      // passes the same bytes and gets it counted then.
      return n > 0 ? n : code;
    }
    return n;
  }

  int shutdown() override {
    if (!done)
      return 0;
    io.last = 0;
    int ret = mbedtls_ssl_close_notify(&ssl);
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_WANT_READ)
      return 0;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
      return LUAASIO_ETLS_WANT_WRITE;
    if (int code = io_failure(ret))
      return code;
    return LUAASIO_TLS_EPROTO;
  }

  std::string info(int what) override {
    switch (what) {
    case LUAASIO_TLS_INFO_VERSION:
      return done ? mbedtls_ssl_get_version(&ssl) : "";
    case LUAASIO_TLS_INFO_CIPHER:
      return done ? mbedtls_ssl_get_ciphersuite(&ssl) : "";
    case LUAASIO_TLS_INFO_SUBJECT:
    case LUAASIO_TLS_INFO_ISSUER: {
      const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
      if (!peer)
        return std::string();
      char buf[512];
      int n = mbedtls_x509_dn_gets(buf, sizeof buf,
                                   what == LUAASIO_TLS_INFO_SUBJECT ? &peer->subject : &peer->issuer);
      return n > 0 ? std::string(buf, size_t(n)) : std::string();
    }
    case LUAASIO_TLS_INFO_ALPN: {
      const char *p = mbedtls_ssl_get_alpn_protocol(&ssl);
      return p ? p : "";
    }
    default:
      return std::string();
    }
  }

  std::string save_session() override {
    if (!done)
      return std::string();
    mbedtls_ssl_session s;
    mbedtls_ssl_session_init(&s);
    std::string out;
    if (mbedtls_ssl_get_session(&ssl, &s) == 0) {
      size_t len = 0;
      mbedtls_ssl_session_save(&s, nullptr, 0, &len);
      if (len > 0) {
        out.resize(len);
        if (mbedtls_ssl_session_save(&s, reinterpret_cast<unsigned char *>(&out[0]), len, &len) != 0)
          out.clear();
        else
          out.resize(len);
      }
    }
    mbedtls_ssl_session_free(&s);
    return out;
  }

  bool resumed() override {
#if MBEDTLS_VERSION_MAJOR < 3
    // A resumed TLS 1.2 session keeps the master secret it was saved with;
    // a full handshake makes a new one.
    const mbedtls_ssl_session *cur = ssl.session;
    return offered && done && cur && std::memcmp(cur->master, resume.master, sizeof cur->master) == 0;
#else
    return false;
#endif
  }

  int pending() override { return int(mbedtls_ssl_get_bytes_avail(&ssl)); }

  mbed_context &ctx;
  io_state io;
  mbedtls_ssl_context ssl;
  mbedtls_ssl_session resume;
  unsigned char ip[16] = {};
  size_t ip_len = 0;
  bool offered = false, done = false, got_data = false, leaf_self_signed = false;
  int deferred = 0;
};

} // namespace

const char *name() {
  static char buf[64];
  static bool once = [] {
    char v[32];
    mbedtls_version_get_string(v);
    std::snprintf(buf, sizeof buf, "mbed TLS %s", v);
    return true;
  }();
  (void)once;
  return buf;
}

context *new_context(bool server) { return new mbed_context(server); }

session *new_session(context &ctx, std::intptr_t fd, const char *server_name,
                     const std::string &saved) {
  return new mbed_session(static_cast<mbed_context &>(ctx), fd, server_name, saved);
}

} // namespace tlsb
