/*
 * LuaAsio TLS: the optional library libluaasio_tls (luaasio_tls.dll on
 * Windows), built with one backend, OpenSSL or mbedTLS, chosen at build time
 * (-DLUAASIO_TLS=openssl|mbedtls). lua/asio/tls.lua loads it on first use;
 * the core library neither links it nor any TLS library.
 *
 * Everything between the LUAASIO_TLS_CDEF markers is plain C for ffi.cdef.
 *
 * The model is the core's: try now, else wait for readiness. A session
 * works directly on a connected, non-blocking socket descriptor that the
 * core owns (luaasio_conn_native); it never closes it. Every call is
 * non-blocking and returns at once:
 *   >= 0                    done (bytes for read and write)
 *   LUAASIO_EAGAIN          wait until the socket is readable, then call again
 *   LUAASIO_ETLS_WANT_WRITE wait until the socket is writable, then call again
 *   another LUAASIO_E* code an error (see luaasio.h for the numbers)
 * After EAGAIN or LUAASIO_ETLS_WANT_WRITE from a write, the next write must
 * pass the same bytes again (the record may already be half sent).
 *
 * The descriptor must stay open while the session is used; free the session
 * before or after closing the descriptor, but call nothing else on it after.
 * A session is used by one thread at a time; contexts are not shared
 * between threads.
 */
#ifndef LUAASIO_TLS_H
#define LUAASIO_TLS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LUAASIO_TLS_CDEF_BEGIN */
typedef struct luaasio_tls_ctx luaasio_tls_ctx;
typedef struct luaasio_tls luaasio_tls;

enum {
  /* Codes shared with the core library (include/luaasio.h). */
  LUAASIO_TLS_EAGAIN = -1,
  LUAASIO_TLS_EOF = -2,
  LUAASIO_TLS_EINVAL = -5,
  LUAASIO_TLS_ECONNRESET = -8,
  LUAASIO_TLS_EPIPE = -10,
  LUAASIO_TLS_ENOENT = -19,
  LUAASIO_TLS_ENOMEM = -21,
  LUAASIO_TLS_ESYSTEM = -24,
  LUAASIO_TLS_EHANDSHAKE = -30,  /* "tls handshake failed" */
  LUAASIO_TLS_EVERIFY = -31,     /* "certificate verify failed" */
  LUAASIO_TLS_EPROTO = -33,      /* "tls error": a record after the handshake */
  LUAASIO_ETLS_WANT_WRITE = -34  /* wait for writable (never shown to users) */
};

/* What luaasio_tls_ctx_set sets. */
enum {
  LUAASIO_TLS_CERT = 1,        /* certificate chain file (PEM) */
  LUAASIO_TLS_KEY = 2,         /* private key file (PEM) */
  LUAASIO_TLS_CA = 3,          /* CA file or folder of PEM files */
  LUAASIO_TLS_CA_DEFAULT = 4,  /* the system's CA store (value ignored) */
  LUAASIO_TLS_VERIFY = 5,      /* "0" none, "1" required, "2" optional (server) */
  LUAASIO_TLS_ALPN = 6,        /* protocols, each one length byte then the name */
  LUAASIO_TLS_MIN_VERSION = 7, /* "1.2" or "1.3" */
  LUAASIO_TLS_MAX_VERSION = 8,
  LUAASIO_TLS_CIPHERS = 9      /* backend-specific cipher list (OpenSSL only) */
};

/* What luaasio_tls_info returns. */
enum {
  LUAASIO_TLS_INFO_VERSION = 1,   /* "TLSv1.2", "TLSv1.3" */
  LUAASIO_TLS_INFO_CIPHER = 2,
  LUAASIO_TLS_INFO_SUBJECT = 3,   /* the peer certificate's subject, or nothing */
  LUAASIO_TLS_INFO_ALPN = 4,      /* the protocol agreed on, or nothing */
  LUAASIO_TLS_INFO_REASON = 5,    /* why the last call failed: a verify reason
                                     ("hostname mismatch", "expired",
                                     "self-signed", "unknown ca", ...) or the
                                     backend's message */
  LUAASIO_TLS_INFO_ISSUER = 6     /* the peer certificate's issuer */
};

/* The backend's name and version, e.g. "OpenSSL 3.0.19". */
const char *luaasio_tls_backend(void);
int luaasio_tls_abi_version(void);
const char *luaasio_tls_cdef(void);

/* A context holds configuration shared by many sessions (certificates, CA
 * store, ALPN list, session cache). NULL on failure, with the reason in
 * err (at most errcap bytes, NUL-terminated). */
luaasio_tls_ctx *luaasio_tls_ctx_new(int server, char *err, int errcap);
/* 0, or an error code with the reason in err. */
int luaasio_tls_ctx_set(luaasio_tls_ctx *ctx, int what, const char *value, int len,
                        char *err, int errcap);
void luaasio_tls_ctx_free(luaasio_tls_ctx *ctx);

/* A session on descriptor fd. server_name (client side, may be NULL) is
 * sent as SNI when it is a name and checked against the peer's certificate
 * (names and IP addresses). session/session_len (may be NULL/0) is a saved
 * session to resume. NULL on failure, with the reason in err. */
luaasio_tls *luaasio_tls_new(luaasio_tls_ctx *ctx, int64_t fd, const char *server_name,
                             const char *session, int session_len, char *err, int errcap);
void luaasio_tls_free(luaasio_tls *t);

int luaasio_tls_handshake(luaasio_tls *t);
/* Reads up to cap bytes of plaintext. LUAASIO_TLS_EOF at the end: when the
 * peer sent close_notify, luaasio_tls_truncated() is then 0, otherwise 1. */
int luaasio_tls_read(luaasio_tls *t, char *buf, int cap);
/* Writes data[offset .. offset+len). Bytes taken, or a code. */
int luaasio_tls_write(luaasio_tls *t, const char *data, int offset, int len);
/* Sends close_notify: 0 once sent. */
int luaasio_tls_shutdown(luaasio_tls *t);
/* Length copied to buf (truncated to cap), or 0 when there is nothing. */
int luaasio_tls_info(luaasio_tls *t, int what, char *buf, int cap);
/* The session for later resumption, serialized: its length, or
 * LUAASIO_TLS_ENOENT when there is none yet, or -needed - 1000 when cap is
 * too small. */
int luaasio_tls_session(luaasio_tls *t, char *buf, int cap);
int luaasio_tls_resumed(luaasio_tls *t);
int luaasio_tls_truncated(luaasio_tls *t);
/* Bytes of plaintext already decrypted and waiting (no socket read needed). */
int luaasio_tls_pending(luaasio_tls *t);
/* LUAASIO_TLS_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif
