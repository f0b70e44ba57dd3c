#!/bin/sh
# Network namespace plumbing for the transparent proxy test (test/proxy_netns.lua).
#
#   netns.sh probe                      exit 0 if namespaces + iptables nat work here
#   netns.sh up TAG                     build the four hosts below
#   netns.sh redirect TAG 4|6 DPORT TO  REDIRECT client TCP to DPORT into the router's port TO
#   netns.sh down TAG                   kill what runs inside the hosts, delete them (idempotent)
#
# Hosts are namespaces named TAG-cli, TAG-rtr, TAG-srv, TAG-dst:
#
#   cli 10.201.1.2 ---- 10.201.1.1 rtr 10.201.2.1 ---- 10.201.2.2 srv
#       fd00:201:1::2   fd00:201:1::1  fd00:201:2::1   fd00:201:2::2
#                                      10.201.3.1  ---- 10.201.3.2 dst
#                                      fd00:201:3::1    fd00:201:3::2
#
# cli, srv and dst route everything through rtr, which forwards. Addresses exist
# only inside these namespaces, so parallel runs with distinct TAGs do not clash.
set -u
# ip and iptables live in sbin, which a non-login PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

die() { echo "netns.sh: $*" >&2; exit 1; }
run() { "$@" || die "failed: $*"; }

# /proc/sys/net shows the namespace of the process that opens it; writing
# there directly spares a dependency on procps' sysctl.
sysctl_ns() { # NS KEY VALUE
	ip netns exec "$1" sh -c "echo $3 > /proc/sys/$2"
}

ns_names() { echo "$1-cli $1-rtr $1-srv $1-dst"; }

# veth pair created directly inside the two namespaces: no name ever appears in
# the root namespace, where concurrent runs would collide.
link() { # TAG NS_A IF_A NS_B IF_B
	run ip link add "$3" netns "$1-$2" type veth peer name "$5" netns "$1-$4"
	run ip -n "$1-$2" link set "$3" up
	run ip -n "$1-$4" link set "$5" up
}

addr() { # NS IF N HOST
	run ip -n "$1" addr add "10.201.$3.$4/24" dev "$2"
	[ -d /proc/sys/net/ipv6 ] || return 0
	run ip -n "$1" -6 addr add "fd00:201:$3::$4/64" dev "$2" nodad
}

via() { # NS N
	run ip -n "$1" route add default via "10.201.$2.1"
	[ -d /proc/sys/net/ipv6 ] || return 0
	run ip -n "$1" -6 route add default via "fd00:201:$2::1"
}

cmd_probe() {
	[ "$(id -u)" = 0 ] || { echo "not root"; exit 1; }
	command -v ip >/dev/null 2>&1 || { echo "iproute2 (ip) not installed"; exit 1; }
	command -v iptables >/dev/null 2>&1 || { echo "iptables not installed"; exit 1; }
	p="laprobe$$"
	if ! err=$(ip netns add "$p" 2>&1); then
		echo "ip netns add failed: $err"; exit 1
	fi
	if ! err=$(ip netns exec "$p" iptables -t nat -L -n 2>&1); then
		ip netns del "$p"
		echo "iptables -t nat unusable in a namespace: $err"; exit 1
	fi
	ip netns del "$p"
	echo ok
}

cmd_up() {
	t=$1
	# Leftovers of a killed run whose pid has come round again.
	cmd_down "$t"
	for n in $(ns_names "$t"); do
		run ip netns add "$n"
		# Links made after this skip duplicate address detection, link-local
		# ones included: IPv6 is usable at once instead of a second or two later.
		sysctl_ns "$n" net/ipv6/conf/default/accept_dad 0 2>/dev/null
		run ip -n "$n" link set lo up
	done
	link "$t" cli eth0 rtr lan0
	link "$t" rtr wan0 srv eth0
	link "$t" rtr wan1 dst eth0
	addr "$t-cli" eth0 1 2
	addr "$t-rtr" lan0 1 1
	addr "$t-rtr" wan0 2 1
	addr "$t-srv" eth0 2 2
	addr "$t-rtr" wan1 3 1
	addr "$t-dst" eth0 3 2
	via "$t-cli" 1
	via "$t-srv" 2
	via "$t-dst" 3
	run sysctl_ns "$t-rtr" net/ipv4/ip_forward 1
	[ -d /proc/sys/net/ipv6 ] || return 0
	run sysctl_ns "$t-rtr" net/ipv6/conf/all/forwarding 1
}

cmd_redirect() {
	t=$1 fam=$2 dport=$3 to=$4
	case $fam in 4) ipt=iptables ;; 6) ipt=ip6tables ;; *) die "family must be 4 or 6" ;; esac
	command -v $ipt >/dev/null 2>&1 || die "$ipt not installed"
	# Only traffic arriving from the LAN side is redirected: the proxy server's
	# own connections to the destination also cross this router and must pass.
	ip netns exec "$t-rtr" $ipt -t nat -A PREROUTING -i lan0 -p tcp --dport "$dport" \
		-j REDIRECT --to-ports "$to" || die "$ipt nat REDIRECT rule rejected"
	# Nothing from the client may be forwarded, so the destination is reachable
	# only through the proxy pair.
	ip netns exec "$t-rtr" $ipt -A FORWARD -i lan0 -j DROP || die "$ipt FORWARD rule rejected"
}

cmd_down() {
	t=$1
	for n in $(ns_names "$t"); do
		[ -e "/run/netns/$n" ] || continue
		pids=$(ip netns pids "$n" 2>/dev/null)
		[ -n "$pids" ] && kill $pids 2>/dev/null
	done
	# Give them a moment to exit on TERM, then insist.
	i=0
	while [ $i -lt 20 ]; do
		left=
		for n in $(ns_names "$t"); do
			[ -e "/run/netns/$n" ] && left="$left$(ip netns pids "$n" 2>/dev/null)"
		done
		[ -z "$left" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	for n in $(ns_names "$t"); do
		[ -e "/run/netns/$n" ] || continue
		pids=$(ip netns pids "$n" 2>/dev/null)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	return 0
}

[ $# -ge 1 ] || die "usage: netns.sh probe | up TAG | redirect TAG 4|6 DPORT TO | down TAG"
c=$1; shift
case $c in
	probe) cmd_probe ;;
	up) [ $# -eq 1 ] || die "usage: netns.sh up TAG"; cmd_up "$1" ;;
	redirect) [ $# -eq 4 ] || die "usage: netns.sh redirect TAG 4|6 DPORT TO"; cmd_redirect "$@" ;;
	down) [ $# -eq 1 ] || die "usage: netns.sh down TAG"; cmd_down "$1" ;;
	*) die "unknown command $c" ;;
esac
