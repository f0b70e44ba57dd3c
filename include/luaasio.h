/*
 * luaasio.h - the flat C ABI of libluaasio.
 *
 * Everything between the LUAASIO_CDEF markers is plain C that LuaJIT's
 * ffi.cdef parses as is. The library embeds that text at build time and hands
 * it out through luaasio_cdef(), so lua/asio.lua never keeps a second copy.
 *
 * Conventions:
 *  - Objects (connections, servers, resolve requests) are named by int32
 *    handles > 0. A stale or unknown handle is rejected with LUAASIO_EBADF;
 *    it never touches freed memory.
 *  - Functions return >= 0 on success and a negative LUAASIO_E* code on
 *    failure. luaasio_strerror() turns a code into a stable lowercase string.
 *  - Asynchronous operations take a `slot` chosen by the caller. Their
 *    outcome arrives later as a luaasio_event {slot, result} from
 *    luaasio_poll(). C never calls back into Lua.
 *  - Reads and writes are synchronous and non-blocking: they move what the
 *    kernel has or accepts now and return LUAASIO_EAGAIN otherwise; the
 *    caller then arms luaasio_conn_wait() and yields.
 *  - No function lets a C++ exception escape.
 */
#ifndef LUAASIO_H
#define LUAASIO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LUAASIO_CDEF_BEGIN */
enum {
  LUAASIO_ABI_VERSION = 1,

  LUAASIO_OK = 0,
  LUAASIO_EAGAIN = -1,
  LUAASIO_EOF = -2,
  LUAASIO_ECLOSED = -3,
  LUAASIO_EBADF = -4,
  LUAASIO_EINVAL = -5,
  LUAASIO_ETIMEDOUT = -6,
  LUAASIO_ECONNREFUSED = -7,
  LUAASIO_ECONNRESET = -8,
  LUAASIO_ECONNABORTED = -9,
  LUAASIO_EPIPE = -10,
  LUAASIO_EADDRINUSE = -11,
  LUAASIO_EADDRNOTAVAIL = -12,
  LUAASIO_EACCES = -13,
  LUAASIO_ENETUNREACH = -14,
  LUAASIO_EHOSTUNREACH = -15,
  LUAASIO_ENOTRESOLVED = -16,
  LUAASIO_EBADADDR = -17,
  LUAASIO_ENOTSUP = -18,
  LUAASIO_ENOENT = -19,
  LUAASIO_EMFILE = -20,
  LUAASIO_ENOMEM = -21,
  LUAASIO_ENOTCONN = -22,
  LUAASIO_ENOORIGDST = -23,
  LUAASIO_ESYSTEM = -24,
  /* threads, channels and shared dictionaries: -50 .. -59 */
  /* TLS (libluaasio_tls, include/luaasio_tls.h) */
  LUAASIO_ETLS = -30,       /* "tls handshake failed" */
  LUAASIO_ECERT = -31,      /* "certificate verify failed" */
  LUAASIO_ENOTLS = -32,     /* "tls not available" */
  LUAASIO_ETLSPROTO = -33,  /* "tls error": a bad record after the handshake */
  LUAASIO_ESTOPPED = -50,  /* the loop was asked to stop by its owner thread */
  LUAASIO_ETOOBIG = -51,   /* the value does not fit the buffer; *needed tells */
  LUAASIO_ENOLUA = -52,    /* the host process exports no Lua C API */
  LUAASIO_ENOSPACE = -53,  /* a shared dictionary cannot hold the entry */
  LUAASIO_ENOTNUM = -54,   /* incr on a value that is not a number */
  LUAASIO_EEXIST = -55,    /* add of a key that exists */
  LUAASIO_ECODE_MIN = -59,

  LUAASIO_WAIT_READ = 0,
  LUAASIO_WAIT_WRITE = 1,

  LUAASIO_SHUT_RD = 0,
  LUAASIO_SHUT_WR = 1,
  LUAASIO_SHUT_RDWR = 2,

  LUAASIO_OPT_NODELAY = 1,
  LUAASIO_OPT_KEEPALIVE = 2,
  LUAASIO_OPT_SNDBUF = 3,
  LUAASIO_OPT_RCVBUF = 4,
  LUAASIO_OPT_LINGER = 5,

  LUAASIO_SERVER_REUSEPORT = 1,
  LUAASIO_SERVER_V6ONLY = 2,

  LUAASIO_FAMILY_ANY = 0,
  LUAASIO_FAMILY_INET = 4,
  LUAASIO_FAMILY_INET6 = 6,

  LUAASIO_SOCKADDR_SIZE = 128,

  LUAASIO_SHDICT_NIL = 0,
  LUAASIO_SHDICT_BOOLEAN = 1,
  LUAASIO_SHDICT_NUMBER = 2,
  LUAASIO_SHDICT_STRING = 3,
  LUAASIO_SHDICT_ADD = 16,      /* set only if the key is absent */
  LUAASIO_SHDICT_REPLACE = 32   /* set only if the key is present */
};

typedef struct luaasio_loop luaasio_loop;

/* One completed asynchronous operation. `result` is >= 0 on success (for an
 * accept: the new connection's handle; for a resolve: the number of
 * addresses) or a LUAASIO_E* code. */
typedef struct luaasio_event {
  int32_t slot;
  int32_t result;
} luaasio_event;

int luaasio_abi_version(void);
int luaasio_event_size(void);
const char *luaasio_strerror(int code);
double luaasio_now(void);
/* Seconds since 1970 (the wall clock, which may jump), for ngx.now(): read
 * here because struct timeval's layout differs between C libraries (64-bit
 * time_t on 32-bit musl 1.2). */
double luaasio_wall_time(void);

luaasio_loop *luaasio_loop_new(void);
void luaasio_loop_free(luaasio_loop *loop);
/* Runs the loop until at least one event is ready or `timeout` seconds pass
 * (timeout < 0: no limit, 0: only what is ready now). Fills at most `max`
 * events and returns their number; the rest wait for the next call. */
int luaasio_poll(luaasio_loop *loop, luaasio_event *events, int max, double timeout);
/* Live objects of the loop (connections, servers, requests). */
int luaasio_loop_count(luaasio_loop *loop);

/* Closes any object and frees its handle. Pending operations are cancelled
 * and report nothing; the object itself is released once they have run. */
int luaasio_close(luaasio_loop *loop, int32_t handle);

/* Servers. `host` is an IP literal; `flags` is a LUAASIO_SERVER_* mask.
 * Every accepted connection is reported as an event on `slot` whose result
 * is the new handle. */
int32_t luaasio_server_open(luaasio_loop *loop, int32_t slot, const char *host,
                            int port, int backlog, int flags);
int32_t luaasio_server_open_unix(luaasio_loop *loop, int32_t slot,
                                 const char *path, int backlog);
int luaasio_server_port(luaasio_loop *loop, int32_t server);
/* At most `max` accepted connections of this server open at once (0: no
 * limit): at the limit it stops accepting, and resumes when one closes. */
int luaasio_server_set_max(luaasio_loop *loop, int32_t server, int max);

/* Connects to an IP literal; the event on `slot` reports the outcome. The
 * handle is valid at once (close it to abandon the attempt). */
int32_t luaasio_connect(luaasio_loop *loop, int32_t slot, const char *ip, int port);
int32_t luaasio_connect_unix(luaasio_loop *loop, int32_t slot, const char *path);

/* Reads up to `cap` bytes that have already arrived: > 0 bytes, or
 * LUAASIO_EAGAIN, LUAASIO_EOF, or another error. Where the read wait is
 * cheap after EAGAIN, a TCP read of fewer than `cap` bytes that left the
 * socket empty also starts the read wait (see
 * luaasio_conn_read_wait_queued), so the next read can wait at once. */
int luaasio_conn_read(luaasio_loop *loop, int32_t conn, char *buf, int cap);
/* Sends from data[offset .. offset+len): bytes taken by the kernel (> 0),
 * or LUAASIO_EAGAIN, or an error. `data` is read only during the call. */
int luaasio_conn_write(luaasio_loop *loop, int32_t conn, const char *data,
                       int offset, int len);
/* Reports an event on `slot` once the connection may be read (dir
 * LUAASIO_WAIT_READ) or written (LUAASIO_WAIT_WRITE). At most one wait per
 * direction is in flight; arming again re-targets it. */
int luaasio_conn_wait(luaasio_loop *loop, int32_t conn, int dir, int32_t slot);
/* 1 if a read wait is cheapest when armed right after a read returned
 * LUAASIO_EAGAIN (epoll: it then costs no system call); 0 if arming it at
 * once costs no more than that read. Either way the wait is correct. */
int luaasio_read_wait_cheap_after_eagain(void);
/* 1 if a read wait is in flight on the connection (whatever its slot), 0
 * if not: after a read that came back short, the next read may then wait
 * at once, since no readiness report has reached that wait yet. */
int luaasio_conn_read_wait_queued(luaasio_loop *loop, int32_t conn);
/* Detaches the slot from a wait in flight: it will report nothing. */
int luaasio_conn_unwait(luaasio_loop *loop, int32_t conn, int dir);
int luaasio_conn_shutdown(luaasio_loop *loop, int32_t conn, int how);
/* The connection's socket descriptor (a SOCKET on Windows), for a library
 * that works on it directly (libluaasio_tls), or an error. The socket stays
 * the connection's: never close it. */
int64_t luaasio_conn_native(luaasio_loop *loop, int32_t conn);
/* Tells the loop that a read on the descriptor just returned "would block",
 * as luaasio_conn_read does itself: a read wait armed next may then skip
 * its system call (see luaasio_read_wait_cheap_after_eagain). */
int luaasio_conn_read_blocked(luaasio_loop *loop, int32_t conn);
int luaasio_conn_setoption(luaasio_loop *loop, int32_t conn, int option, int value);
/* Writes the local (which = 0) or remote (which = 1) address as text into
 * `buf` (NUL-terminated) and its port into *port; returns the text length. */
int luaasio_conn_address(luaasio_loop *loop, int32_t conn, int which,
                         char *buf, int cap, int *port);
/* Linux: the destination before an iptables REDIRECT, as the 128 bytes of a
 * struct sockaddr_storage in this host's layout. */
int luaasio_conn_original_dst(luaasio_loop *loop, int32_t conn, char *out128);

/* Starts resolving `host`; `family` is a LUAASIO_FAMILY_* value. The event
 * on `slot` carries the number of addresses or an error; fetch them with
 * luaasio_resolve_results() and release the request with luaasio_close(). */
int32_t luaasio_resolve(luaasio_loop *loop, int32_t slot, const char *host, int family);
/* Copies the addresses as NUL-separated text; returns the bytes used. */
int luaasio_resolve_results(luaasio_loop *loop, int32_t request, char *buf, int cap);

/* Decodes a sockaddr string as produced by luaasio_conn_original_dst() on
 * any supported platform (either byte order, Linux, BSD or Windows family
 * numbering). Writes the IP text and port; returns 4 or 6, or an error. */
int luaasio_sockaddr_parse(const char *data, int len, char *ip, int ipcap, int *port);

/* Threads, channels and shared dictionaries (threads.cpp, shared.cpp).
 * Worker threads run Lua states of their own; the Lua C API is found in the
 * host process at run time. Values cross between states only as byte
 * strings copied here. Channels and dictionaries are process-wide and named
 * by ids valid in every thread. */

/* 1 if the host process exports the Lua C API that workers need. */
int luaasio_lua_api(void);
/* Starts an OS thread that makes a new Lua state, loads `boot` (Lua source)
 * and calls it with `arg`. When it returns, the event on `slot` reports the
 * size of its result (a string), to fetch with luaasio_thread_result(). */
int32_t luaasio_thread_start(luaasio_loop *loop, int32_t slot, const char *boot,
                             int bootlen, const char *arg, int arglen);
/* Copies the finished thread's result; returns its length, or
 * LUAASIO_ETOOBIG with *needed set when `cap` is too small. */
int luaasio_thread_result(luaasio_loop *loop, int32_t thread, char *buf, int cap,
                          int *needed);
/* Asks the worker's loop to stop (its poll reports LUAASIO_ESTOPPED). */
int luaasio_thread_stop(luaasio_loop *loop, int32_t thread);
/* Live objects (connections, servers, ...) of the worker's loop right now;
 * 0 before its loop exists and after it is gone. */
int luaasio_thread_load(luaasio_loop *loop, int32_t thread);

/* Takes a connection's socket out of this loop: the handle is closed and
 * the socket returned, for luaasio_conn_adopt() in any loop.
 * LUAASIO_ENOTSUP on Windows, where a socket cannot leave the completion
 * port it was first used with. */
int64_t luaasio_conn_detach(luaasio_loop *loop, int32_t conn);
/* With slot >= 0 the new connection is also reported as an accept event
 * {slot, handle}, as a server of this loop would report it. */
int32_t luaasio_conn_adopt(luaasio_loop *loop, int64_t socket, int32_t slot);
/* Closes a detached socket nobody adopted. */
int luaasio_socket_close(int64_t socket);

/* Channels: FIFO queues of byte strings with a capacity. A send to a full
 * or a receive from an empty channel returns LUAASIO_EAGAIN and reports an
 * event on `slot` when that may have changed. */
int32_t luaasio_channel_new(int capacity);
int luaasio_channel_retain(int32_t ch);
int luaasio_channel_release(int32_t ch);
int luaasio_channel_send(luaasio_loop *loop, int32_t ch, const char *data, int len,
                         int32_t slot);
int luaasio_channel_recv(luaasio_loop *loop, int32_t ch, int32_t slot, char *buf, int cap,
                         int *needed);
/* Forgets the waits this loop registered for `slot`'s light thread (the
 * token's low 22 bits name it), after a timeout. */
int luaasio_channel_unwait(luaasio_loop *loop, int32_t ch, int32_t slot);
int luaasio_channel_close(int32_t ch);
/* Messages queued now. */
int luaasio_channel_count(int32_t ch);

/* Shared dictionaries, bounded by max_bytes with least-recently-used
 * eviction. Opening a name again returns the same dictionary. */
int32_t luaasio_shdict_open(const char *name, double max_bytes);
/* Fetches `key`: out[0] = LUAASIO_SHDICT_* type, out[1] = the number or
 * boolean, out[2] = seconds left to live (0: no expiry). Returns the string
 * length copied (0 for other types), or LUAASIO_ETOOBIG with out[1] the
 * size needed. */
int luaasio_shdict_get(int32_t dict, const char *key, int klen, char *buf, int cap,
                       double *out);
/* how = type | LUAASIO_SHDICT_ADD/REPLACE; ttl <= 0: no expiry. Type NIL
 * deletes. Returns the number of entries evicted to make room. */
int luaasio_shdict_set(int32_t dict, const char *key, int klen, int how, const char *str,
                       int slen, double num, double ttl);
/* Adds `delta`; an absent key starts at `init` when has_init (else
 * LUAASIO_ENOENT). The new value goes to *out. */
int luaasio_shdict_incr(int32_t dict, const char *key, int klen, double delta, double init,
                        int has_init, double ttl, double *out);
/* Keys as NUL-separated text (at most `max`, 0: all); returns bytes used,
 * or LUAASIO_ETOOBIG with *needed set. */
int luaasio_shdict_keys(int32_t dict, char *buf, int cap, int max, int *needed);
/* out[0] = bytes used, out[1] = capacity, out[2] = entries. */
int luaasio_shdict_stats(int32_t dict, double *out);
int luaasio_shdict_flush(int32_t dict);

/* Datagram (UDP) sockets. The socket is created by luaasio_udp_open() with a
 * family, or (family LUAASIO_FAMILY_ANY) by the first bind, connect, sendto
 * or group join, with the family of that address; options set before are
 * kept and applied then. Receiving and sending are synchronous and
 * non-blocking, as for connections; luaasio_udp_wait() arms a readiness
 * wait. A datagram is never split: a send takes it whole or not at all. */
enum {
  LUAASIO_ETRUNCATED = -40,
  LUAASIO_ENOTBOUND = -41,
  LUAASIO_EMSGSIZE = -42,

  LUAASIO_UDP_BROADCAST = 1,
  LUAASIO_UDP_REUSEADDR = 2,
  LUAASIO_UDP_REUSEPORT = 3,
  LUAASIO_UDP_SNDBUF = 4,
  LUAASIO_UDP_RCVBUF = 5,
  LUAASIO_UDP_TTL = 6,
  LUAASIO_UDP_MULTICAST_TTL = 7,
  LUAASIO_UDP_MULTICAST_LOOP = 8,
  LUAASIO_UDP_IPV6_ONLY = 9,
  LUAASIO_UDP_TRANSPARENT = 10,

  LUAASIO_UDP_FLAG_TRUNCATED = 1,
  LUAASIO_UDP_FLAG_ORIGDST = 2
};

/* What luaasio_udp_recv() reports about a datagram besides its bytes. */
typedef struct luaasio_udp_from {
  int32_t port;        /* the sender's port */
  int32_t iplen;       /* length of the sender's address text in ip */
  int32_t flags;       /* LUAASIO_UDP_FLAG_* */
  char ip[64];         /* the sender's address, NUL-terminated */
  char origdst[128];   /* with FLAG_ORIGDST: the original destination, as a
                          struct sockaddr_storage (see luaasio_conn_original_dst) */
} luaasio_udp_from;

int32_t luaasio_udp_open(luaasio_loop *loop, int family);
int luaasio_udp_bind(luaasio_loop *loop, int32_t udp, const char *ip, int port);
int luaasio_udp_connect(luaasio_loop *loop, int32_t udp, const char *ip, int port);
/* Takes one datagram that has arrived: its length (0 is a valid empty
 * datagram), at most `cap` bytes of it copied to `buf`, or LUAASIO_EAGAIN or
 * another error. A longer datagram is cut to `cap` bytes and flagged
 * LUAASIO_UDP_FLAG_TRUNCATED in `from`, which may be NULL (then a longer
 * datagram returns LUAASIO_ETRUNCATED). */
int luaasio_udp_recv(luaasio_loop *loop, int32_t udp, char *buf, int cap,
                     luaasio_udp_from *from);
/* Sends data[0 .. len) as one datagram to ip:port, or to the connected peer
 * when ip is NULL: len, or LUAASIO_EAGAIN (no room now), or an error. */
int luaasio_udp_send(luaasio_loop *loop, int32_t udp, const char *data, int len,
                     const char *ip, int port);
int luaasio_udp_wait(luaasio_loop *loop, int32_t udp, int dir, int32_t slot);
int luaasio_udp_unwait(luaasio_loop *loop, int32_t udp, int dir);
/* `option` is a LUAASIO_UDP_* option; booleans are 0 or 1. */
int luaasio_udp_setoption(luaasio_loop *loop, int32_t udp, int option, int value);
/* Joins (join = 1) or leaves a multicast group. `iface`: for IPv4 the
 * address of the interface, for IPv6 its name or index; NULL or "" for the
 * system's choice. */
int luaasio_udp_group(luaasio_loop *loop, int32_t udp, int join, const char *group,
                      const char *iface);
/* The local address as text and its port, as luaasio_conn_address(). */
int luaasio_udp_address(luaasio_loop *loop, int32_t udp, char *buf, int cap, int *port);
/* Relays (relay.cpp): forwards a -> b and b -> a inside the library until
 * both directions have ended. EOF from one side shuts the other side's
 * sending half; any other end (an error, a close, the idle timeout) closes
 * both sockets. The event on `slot` reports the end; the results stay
 * readable until the relay handle is closed with luaasio_close(), which,
 * before the end, stops the relay and leaves both connections open. */
enum {
  LUAASIO_RELAY_NOSPLICE = 1   /* use the buffered path even where splice(2) works */
};
/* idle_timeout: seconds without traffic either way that end it (0: never). */
int32_t luaasio_relay_start(luaasio_loop *loop, int32_t slot, int32_t a, int32_t b,
                            double idle_timeout, int flags);
/* Re-targets the end event to `slot`; 1 if the relay has already ended (no
 * event then), 0 if the event will come. */
int luaasio_relay_wait(luaasio_loop *loop, int32_t relay, int32_t slot);
/* out[0], out[1]: bytes written a -> b and b -> a; out[2], out[3]: how each
 * direction ended (1 while running, LUAASIO_EOF, or an error); out[4]: how
 * many directions use splice. LUAASIO_OK once ended, else LUAASIO_EAGAIN. */
int luaasio_relay_result(luaasio_loop *loop, int32_t relay, double *out);
/* LUAASIO_CDEF_END */

/* The declarations above as text, for ffi.cdef. */
const char *luaasio_cdef(void);

#ifdef __cplusplus
}
#endif

#endif
