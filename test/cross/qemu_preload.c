/*
 * Preloaded (through /etc/ld.so.preload in qemu's -L root, see
 * test/cross.sh) into every program of the guest architecture when the test
 * suite runs under qemu-user. It works around three defects of qemu-user 7.2
 * (Debian 12); the first two break Debian's LuaJIT even without LuaAsio:
 *
 * 1. mremap(): qemu corrupts a 32-bit guest's memory when a mapping is
 *    shrunk. LuaJIT's allocator does that when it trims its heap, so a plain
 *    Lua script that allocates and frees a few hundred MB crashes under
 *    qemu-arm and qemu-mipsel. Failing every mremap() with ENOMEM makes
 *    LuaJIT take its fallbacks (munmap the tail; allocate, copy and free).
 *
 * 2. MIPS floating-point mode: qemu starts o32 "FPXX" programs with FR=1.
 *    LuaJIT's MIPS32 interpreter is marked FPXX but builds doubles from
 *    register pairs, which only works with FR=0, so math.floor(2.5) gives
 *    2.5 and 7 % 3 gives 0. The routers LuaJIT runs on (24Kc/74Kc cores,
 *    FPU or kernel FPU emulation) use FR=0; switch to it before main().
 *
 * 3. getsockopt(SO_ERROR) hands the guest the host's errno number
 *    unconverted (fixed in qemu 8). MIPS numbers socket errors differently
 *    from x86_64 (ECONNREFUSED is 146, not 111), so a refused asynchronous
 *    connect would read as an unknown error. Convert the host's numbers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...) {
  (void)old_address;
  (void)old_size;
  (void)new_size;
  (void)flags;
  errno = ENOMEM;
  return (void *)-1;
}

#if defined(__mips__)
#include <sys/prctl.h>
#ifndef PR_SET_FP_MODE
#define PR_SET_FP_MODE 45
#endif

#if !defined(__mips64)
__attribute__((constructor)) static void use_fr0(void) { prctl(PR_SET_FP_MODE, 0, 0, 0, 0); }
#endif

/* The host's (x86_64, asm-generic) number -> this machine's constant. */
static int from_host_errno(int e) {
  switch (e) {
  case 90: return EMSGSIZE;
  case 95: return EOPNOTSUPP;
  case 97: return EAFNOSUPPORT;
  case 98: return EADDRINUSE;
  case 99: return EADDRNOTAVAIL;
  case 100: return ENETDOWN;
  case 101: return ENETUNREACH;
  case 102: return ENETRESET;
  case 103: return ECONNABORTED;
  case 104: return ECONNRESET;
  case 105: return ENOBUFS;
  case 106: return EISCONN;
  case 107: return ENOTCONN;
  case 108: return ESHUTDOWN;
  case 110: return ETIMEDOUT;
  case 111: return ECONNREFUSED;
  case 112: return EHOSTDOWN;
  case 113: return EHOSTUNREACH;
  case 114: return EALREADY;
  case 115: return EINPROGRESS;
  default: return e; /* below 90 the numbers agree */
  }
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
  static int (*real)(int, int, int, void *, socklen_t *);
  if (!real)
    real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
  int rc = real(fd, level, name, value, len);
  if (rc == 0 && level == SOL_SOCKET && name == SO_ERROR && value && len &&
      *len >= sizeof(int))
    *(int *)value = from_host_errno(*(int *)value);
  return rc;
}
#endif
