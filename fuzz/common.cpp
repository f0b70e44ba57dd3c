// Shared helpers and the network guard of the LuaAsio fuzz targets.
//
// The guard: this file defines bind() and connect(). The targets link the
// library's sources statically, so Boost.Asio's calls to ::bind/::connect land
// here instead of in libc. Only loopback (127.0.0.1, ::1; bind only to port 0)
// and Unix paths inside this process's temp dir are let through, by the raw
// system call; anything else aborts the run with a report. The harnesses
// already rewrite or filter every address before calling the library, so the
// guard firing means the library acted on an address the harness believed it
// would reject: a finding in itself, and never a packet to the outside.
// (glibc's own resolver uses internal symbols that bypass this guard, which is
// why fuzz_address only resolves numeric literals and a vetted "localhost".)
#include "common.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fz {

static std::string g_tmpdir;
static int g_closed_v4 = 0, g_closed_v6 = 0;
static int g_closed_fd4 = -1, g_closed_fd6 = -1;
static bool g_verbose = false;

static void cleanup();

void fail(const char *file, int line, const char *cond, const char *fmt, ...) {
  std::fprintf(stderr, "\n==fuzz invariant failed== %s:%d: %s\n  ", file, line, cond);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  cleanup(); // abort() skips atexit
  std::abort();
}

static void cleanup() {
  if (g_tmpdir.empty())
    return;
  if (DIR *d = opendir(g_tmpdir.c_str())) {
    while (dirent *e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0)
        continue;
      unlink((g_tmpdir + "/" + e->d_name).c_str());
    }
    closedir(d);
  }
  rmdir(g_tmpdir.c_str());
}

static int bind_closed(int family, int &fd) {
  fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (family == AF_INET) {
    auto *in = reinterpret_cast<sockaddr_in *>(&ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *in;
  } else {
    auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    len = sizeof *in6;
  }
  if (bind(fd, reinterpret_cast<sockaddr *>(&ss), len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0) {
    close(fd);
    fd = -1;
    return 0;
  }
  return family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port)
                           : ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

void init() {
  if (!g_tmpdir.empty())
    return;
  char tmpl[] = "/tmp/lafz-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("fuzz: mkdtemp");
    std::abort();
  }
  g_tmpdir = tmpl;
  std::atexit(cleanup);
  g_closed_v4 = bind_closed(AF_INET, g_closed_fd4);
  g_closed_v6 = bind_closed(AF_INET6, g_closed_fd6);
  if (!g_closed_v4) {
    std::fprintf(stderr, "fuzz: cannot bind 127.0.0.1:0\n");
    std::abort();
  }
  const char *v = std::getenv("FUZZ_VERBOSE");
  g_verbose = v && *v && *v != '0';
}

const std::string &tmpdir() { return g_tmpdir; }
int closed_port_v4() { return g_closed_v4; }
int closed_port_v6() { return g_closed_v6; }
bool verbose() { return g_verbose; }

bool valid_code(int rc) {
  if (rc >= 0)
    return true;
  return rc >= LUAASIO_ECODE_MIN && std::strcmp(luaasio_strerror(rc), "unknown error") != 0;
}

// --- the guard -------------------------------------------------------------

static std::string describe(const sockaddr *sa, socklen_t len) {
  char text[INET6_ADDRSTRLEN + 16] = "?";
  if (!sa || len < sizeof(sa_family_t))
    return "(null)";
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto *in = reinterpret_cast<const sockaddr_in *>(sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  if (sa->sa_family == AF_UNIX) {
    auto *un = reinterpret_cast<const sockaddr_un *>(sa);
    size_t max = len - offsetof(sockaddr_un, sun_path);
    return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, max));
  }
  return "family " + std::to_string(sa->sa_family);
}

static bool allowed(const sockaddr *sa, socklen_t len, bool binding) {
  if (!sa || len < sizeof(sa_family_t))
    return false;
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto *in = reinterpret_cast<const sockaddr_in *>(sa);
    return in->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && (!binding || in->sin_port == 0);
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
    // 127.0.0.1 as seen by a dual-stack socket counts as loopback too.
    static const unsigned char mapped_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    bool lo = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
              std::memcmp(&in6->sin6_addr, mapped_lo, 16) == 0;
    return lo && (!binding || in6->sin6_port == 0);
  }
  if (sa->sa_family == AF_UNIX && !g_tmpdir.empty()) {
    auto *un = reinterpret_cast<const sockaddr_un *>(sa);
    size_t max = len - offsetof(sockaddr_un, sun_path);
    std::string path(un->sun_path, strnlen(un->sun_path, max));
    std::string prefix = g_tmpdir + "/";
    if (path.compare(0, prefix.size(), prefix) != 0)
      return false;
    // One plain file name directly inside the temp dir.
    std::string rest = path.substr(prefix.size());
    return !rest.empty() && rest != "." && rest != ".." && rest.find('/') == std::string::npos;
  }
  return false;
}

} // namespace fz

extern "C" int connect(int fd, const sockaddr *sa, socklen_t len) {
  if (!fz::allowed(sa, len, false))
    fz::fail(__FILE__, __LINE__, "guard", "library tried to connect to %s",
             fz::describe(sa, len).c_str());
  return static_cast<int>(syscall(SYS_connect, fd, sa, len));
}

extern "C" int bind(int fd, const sockaddr *sa, socklen_t len) {
  if (!fz::allowed(sa, len, true))
    fz::fail(__FILE__, __LINE__, "guard", "library tried to bind to %s",
             fz::describe(sa, len).c_str());
  return static_cast<int>(syscall(SYS_bind, fd, sa, len));
}

// Datagrams: a destination, when given, must be loopback (any port).
extern "C" ssize_t sendto(int fd, const void *buf, size_t n, int flags, const sockaddr *sa,
                          socklen_t len) {
  if (sa && !fz::allowed(sa, len, false))
    fz::fail(__FILE__, __LINE__, "guard", "library tried to send to %s",
             fz::describe(sa, len).c_str());
  return static_cast<ssize_t>(syscall(SYS_sendto, fd, buf, n, flags, sa, len));
}

extern "C" ssize_t sendmsg(int fd, const msghdr *m, int flags) {
  if (m && m->msg_name &&
      !fz::allowed(static_cast<const sockaddr *>(m->msg_name), m->msg_namelen, false))
    fz::fail(__FILE__, __LINE__, "guard", "library tried to send to %s",
             fz::describe(static_cast<const sockaddr *>(m->msg_name), m->msg_namelen).c_str());
  return static_cast<ssize_t>(syscall(SYS_sendmsg, fd, m, flags));
}
