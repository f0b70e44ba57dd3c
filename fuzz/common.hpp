// Shared helpers of the LuaAsio fuzz targets: invariant checks, a forward
// byte reader for hand-writable inputs, a private temp dir for Unix socket
// paths, and the network guard (see common.cpp) that makes the targets abort
// instead of ever binding or connecting outside loopback and that temp dir.
#pragma once

#include "luaasio.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace fz {

// Prints "fuzz invariant failed" with the location and message, then aborts,
// which libFuzzer records as a crash with the input that caused it.
[[noreturn]] void fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define FZ_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::fz::fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                \
  } while (0)

// Creates the temp dir and the closed ports once per process; idempotent.
void init();

// "/tmp/lafz-XXXXXX": short, so paths near the 108-byte sun_path limit fit.
const std::string &tmpdir();

// Loopback ports that are bound but not listening: a connect to them is
// refused at once and no other process can take them meanwhile.
int closed_port_v4();
int closed_port_v6();

// A return value the ABI allows: >= 0, or a known LUAASIO_E* code.
bool valid_code(int rc);

// Environment switches, read once.
bool verbose();

// Reads an input front to back; past the end every read yields zeros, so any
// prefix of a valid input is itself a valid input.
struct reader {
  const uint8_t *p;
  size_t n;
  reader(const uint8_t *data, size_t size) : p(data), n(size) {}
  bool empty() const { return n == 0; }
  uint8_t u8() {
    if (!n)
      return 0;
    --n;
    return *p++;
  }
  uint16_t u16() { return uint16_t(u8() | u8() << 8); }
  uint32_t u32() { return uint32_t(u16()) | uint32_t(u16()) << 16; }
  // Bytes up to a NUL byte (consumed) or the end of the input.
  std::string cstr() {
    std::string s;
    while (n) {
      char c = char(u8());
      if (c == '\0')
        break;
      s.push_back(c);
    }
    return s;
  }
};

} // namespace fz
