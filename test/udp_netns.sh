#!/bin/sh
# Network namespace plumbing for the datagram tests (test/udp_netns.lua).
#
#   udp_netns.sh probe             exit 0 if namespaces work here (prints why not)
#   udp_netns.sh probe-tproxy      exit 0 if iptables TPROXY works in a namespace
#   udp_netns.sh lo TAG            one host, TAG-lo, with only a loopback
#                                  interface (multicast on, 239.0.0.0/8 routed there)
#   udp_netns.sh up TAG            the client/router/destination hosts of
#                                  test/netns.sh (its topology and addresses)
#   udp_netns.sh tproxy TAG 4|6 DPORT PORT
#                                  in TAG-rtr: UDP from the LAN to DPORT goes
#                                  to the transparent socket on PORT (TPROXY,
#                                  fwmark 1, local route table 100); nothing
#                                  from the LAN is forwarded
#   udp_netns.sh down TAG          stop what runs inside, delete the hosts
set -u
PATH=$PATH:/usr/sbin:/sbin
here=$(dirname "$0")

die() { echo "udp_netns.sh: $*" >&2; exit 1; }
run() { "$@" || die "failed: $*"; }

cmd_probe() {
	[ "$(id -u)" = 0 ] || { echo "not root"; exit 1; }
	command -v ip >/dev/null 2>&1 || { echo "iproute2 (ip) not installed"; exit 1; }
	p="luprobe$$"
	if ! err=$(ip netns add "$p" 2>&1); then
		echo "ip netns add failed: $err"; exit 1
	fi
	ip netns del "$p"
	echo ok
}

cmd_probe_tproxy() {
	cmd_probe >/dev/null || { cmd_probe; exit 1; }
	command -v iptables >/dev/null 2>&1 || { echo "iptables not installed"; exit 1; }
	p="luprobe$$"
	ip netns add "$p" || exit 1
	if ! err=$(ip netns exec "$p" iptables -t mangle -A PREROUTING -p udp --dport 9 \
		-j TPROXY --on-port 9 --tproxy-mark 0x1/0x1 2>&1); then
		ip netns del "$p"
		echo "iptables TPROXY unusable (kernel without xt_TPROXY?): $err"; exit 1
	fi
	ip netns del "$p"
	echo ok
}

cmd_lo() {
	n="$1-lo"
	[ -e "/run/netns/$n" ] && cmd_down "$1"
	run ip netns add "$n"
	run ip -n "$n" link set lo up
	run ip -n "$n" link set lo multicast on
	run ip -n "$n" route add 239.0.0.0/8 dev lo
}

cmd_tproxy() {
	t=$1 fam=$2 dport=$3 port=$4
	case $fam in
		4) ipt=iptables ip="ip -4" any=0.0.0.0/0 ;;
		6) ipt=ip6tables ip="ip -6" any=::/0 ;;
		*) die "family must be 4 or 6" ;;
	esac
	r="$t-rtr"
	ip netns exec "$r" $ipt -t mangle -A PREROUTING -i lan0 -p udp --dport "$dport" \
		-j TPROXY --on-port "$port" --tproxy-mark 0x1/0x1 || die "$ipt TPROXY rule rejected"
	run ip netns exec "$r" $ip rule add fwmark 0x1/0x1 lookup 100
	run ip netns exec "$r" $ip route add local "$any" dev lo table 100
	run ip netns exec "$r" $ipt -A FORWARD -i lan0 -j DROP
}

cmd_down() {
	n="$1-lo"
	if [ -e "/run/netns/$n" ]; then
		pids=$(ip netns pids "$n" 2>/dev/null)
		[ -n "$pids" ] && kill $pids 2>/dev/null && sleep 0.2
		pids=$(ip netns pids "$n" 2>/dev/null)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns del "$n" 2>/dev/null
	fi
	sh "$here/netns.sh" down "$1"
}

[ $# -ge 1 ] || die "usage: udp_netns.sh probe | probe-tproxy | lo TAG | up TAG | tproxy TAG 4|6 DPORT PORT | down TAG"
c=$1; shift
case $c in
	probe) cmd_probe ;;
	probe-tproxy) cmd_probe_tproxy ;;
	lo) [ $# -eq 1 ] || die "usage: udp_netns.sh lo TAG"; cmd_lo "$1" ;;
	up) [ $# -eq 1 ] || die "usage: udp_netns.sh up TAG"; sh "$here/netns.sh" up "$1" ;;
	tproxy) [ $# -eq 4 ] || die "usage: udp_netns.sh tproxy TAG 4|6 DPORT PORT"; cmd_tproxy "$@" ;;
	down) [ $# -eq 1 ] || die "usage: udp_netns.sh down TAG"; cmd_down "$1" ;;
	*) die "unknown command $c" ;;
esac
