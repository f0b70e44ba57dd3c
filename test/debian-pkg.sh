#!/bin/sh
# Fetches Debian packages of another architecture (or source packages)
# through a private apt configuration under build/apt/, without touching the
# host's apt or dpkg state: no dpkg --add-architecture, no install.
#
#   test/debian-pkg.sh ARCH update             refresh the package lists for ARCH
#   test/debian-pkg.sh ARCH has PKG            exit 0 if ARCH has a PKG package
#   test/debian-pkg.sh ARCH version PKG        print the candidate version
#   test/debian-pkg.sh ARCH extract DIR PKG..  download PKGs and unpack them into DIR
#   test/debian-pkg.sh source fetch DIR PKG    download and unpack a source package
#
# ARCH is a Debian architecture (armhf, arm64, mipsel, s390x, ...). The suite
# is the host's (from /etc/os-release, default bookworm), from DEBIAN_MIRROR
# (default http://deb.debian.org/debian), suite and suite-updates; set
# DEBIAN_SECURITY_MIRROR (e.g. http://deb.debian.org/debian-security) to add
# the security suite. The lists are refreshed automatically when they are
# missing or older than a day.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)

[ $# -ge 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
arch=$1 cmd=$2
shift 2

suite=bookworm
if [ -r /etc/os-release ]; then
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

dir=$here/build/apt/$arch
mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/parts" "$dir/prefs"
: >"$dir/status"

if [ "$arch" = source ]; then
  type=deb-src opts="signed-by=$keyring"
  apt_arch=$(dpkg --print-architecture)
else
  type=deb opts="arch=$arch signed-by=$keyring"
  apt_arch=$arch
fi
cat >"$dir/sources.list" <<EOF
$type [$opts] $mirror $suite main
$type [$opts] $mirror $suite-updates main
EOF
if [ -n "$security" ]; then
  echo "$type [$opts] $security $suite-security main" >>"$dir/sources.list"
fi

# Everything apt reads or writes is redirected into $dir; the empty status
# file means "nothing installed", so the host's packages play no part.
cat >"$dir/apt.conf" <<EOF
APT::Architecture "$apt_arch";
APT::Architectures { "$apt_arch"; };
APT::Sandbox::User "root";
APT::Get::List-Cleanup "false";
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Dir::State "$dir";
Dir::State::lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir";
Dir::Cache::archives "$dir/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::sourcelist "$dir/sources.list";
Dir::Etc::sourceparts "$dir/parts";
Dir::Etc::preferences "$dir/prefs/none";
Dir::Etc::preferencesparts "$dir/prefs";
EOF
[ "$(id -u)" = 0 ] || echo 'APT::Sandbox::User "";' >>"$dir/apt.conf"

papt() { apt-get -c "$dir/apt.conf" -q "$@"; }
pcache() { apt-cache -c "$dir/apt.conf" "$@"; }

refresh() {
  papt update >"$dir/update.log" 2>&1 || {
    cat "$dir/update.log" >&2
    echo "debian-pkg.sh: apt-get update for $arch failed" >&2
    exit 1
  }
  touch "$dir/updated"
}
ensure_lists() {
  if [ ! -f "$dir/updated" ] || [ -n "$(find "$dir/updated" -mmin +1440)" ]; then
    refresh
  fi
}

case $cmd in
update)
  refresh
  ;;
has)
  ensure_lists
  v=$(pcache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  [ -n "$v" ] && [ "$v" != "(none)" ]
  ;;
version)
  ensure_lists
  pcache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p'
  ;;
extract)
  out=$1
  shift
  ensure_lists
  mkdir -p "$out"
  work=$dir/debs
  rm -rf "$work"
  mkdir -p "$work"
  (cd "$work" && papt download "$@" >/dev/null)
  for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$out"
    echo "debian-pkg.sh: unpacked $(basename "$deb") into $out"
  done
  ;;
fetch)
  [ "$arch" = source ] || { echo "debian-pkg.sh: fetch is for ARCH 'source'" >&2; exit 2; }
  out=$1 pkg=$2
  ensure_lists
  mkdir -p "$out"
  # apt-get source unpacks with dpkg-source (package dpkg-dev).
  (cd "$out" && papt source "$pkg" >"$dir/source.log" 2>&1) || {
    cat "$dir/source.log" >&2
    exit 1
  }
  ;;
*)
  echo "debian-pkg.sh: unknown command $cmd" >&2
  exit 2
  ;;
esac
