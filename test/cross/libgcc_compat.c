/*
 * LuaJIT's ARM backend calls libgcc's names for the 64-bit integer <->
 * floating point conversions (__fixdfdi, __floatdidf, ...). zig's
 * compiler-rt has only the ARM EABI names (__aeabi_d2lz, ...) on ARM, so a
 * LuaJIT built with zig for ARM (test/musl.sh) gets these: clang compiles
 * each cast below into the matching __aeabi_* call. ARM only: elsewhere
 * the casts would call the functions being defined.
 */
#if !defined(__arm__)
#error "libgcc_compat.c is for ARM"
#endif
long long __fixdfdi(double a) { return (long long)a; }
long long __fixsfdi(float a) { return (long long)a; }
unsigned long long __fixunsdfdi(double a) { return (unsigned long long)a; }
unsigned long long __fixunssfdi(float a) { return (unsigned long long)a; }
double __floatdidf(long long a) { return (double)a; }
float __floatdisf(long long a) { return (float)a; }
double __floatundidf(unsigned long long a) { return (double)a; }
float __floatundisf(unsigned long long a) { return (float)a; }
