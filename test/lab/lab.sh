#!/bin/bash
# lab.sh - an IPv6-only Kubernetes-like pod with NAT64/DNS64, in network namespaces.
#
#   lab.sh up [--mode wkp|nsp]   build the lab (idempotent; switches mode in place if already up)
#   lab.sh down                  remove every namespace, process and file the lab created
#   lab.sh status                show what is up (exit 0 up and healthy, 1 partial, 3 down)
#   lab.sh blackhole ADDR        silently drop forwarded packets to ADDR (IPv6 or IPv4)
#   lab.sh unblackhole ADDR|all  remove that drop rule (or all of them)
#   lab.sh exec HOST CMD...      run CMD in namespace HOST (pod router v4srv v6srv ds client)
#   lab.sh env                   print the lab's names and addresses as KEY=VALUE lines
#
# Linux and root only. Addresses come from documentation ranges only. Topology:
#
#   pod 2001:db8:1::10 (IPv4 on lo only; app on 127.0.0.1:8000)
#    |  eth0 <-> pod0
#   router 2001:db8:1::1 | br0 2001:db8:2::1 198.51.100.1 | nat64 tun (tayga, pool 192.0.2.128/25)
#    |  unbound DNS64 on [2001:db8:1::1]:53, local data only (no recursion)
#   br0: v4srv 198.51.100.10 (IPv4 only)   v6srv 2001:db8:2::20 (IPv6 only)
#        ds 2001:db8:2::40 ::41 ::42 + 198.51.100.40 (dual stack)   client 2001:db8:2::30
#
# Modes: nsp = tayga and DNS64 use the network-specific prefix 2001:db8:64::/96; wkp = DNS64
# synthesizes 64:ff9b::/96 and the router NETMAPs it onto 2001:db8:64::/96 before tayga (tayga
# refuses the WKP with non-global IPv4), so the pod only ever sees 64:ff9b::/96.
#
# Environment: NAT464_LAB_PREFIX (namespace prefix, default n464-), NAT464_LAB_STATE (state dir,
# default /run/nat464-lab), NAT464_LAB_SRV (a prebuilt labsrv binary; otherwise built with go).
set -euo pipefail

P=${NAT464_LAB_PREFIX:-n464-}
STATE=${NAT464_LAB_STATE:-/run/nat464-lab}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HOSTS="router pod v4srv v6srv ds client"
ETC_NETNS=/etc/netns/${P}pod

POD6=2001:db8:1::10
ROUTER6=2001:db8:1::1
BR6=2001:db8:2::1
BR4=198.51.100.1
V4SRV=198.51.100.10
V6SRV=2001:db8:2::20
CLIENT6=2001:db8:2::30
DS6=2001:db8:2::40
DS4=198.51.100.40
TWO6A=2001:db8:2::41
TWO6B=2001:db8:2::42
NSP=2001:db8:64::/96
WKP=64:ff9b::/96
TAYGA4=192.0.2.1
POOL4=192.0.2.128/25
DENIED4=203.0.113.0/24
INSIDE4=203.0.113.10
APP=127.0.0.1:8000
SEARCH="default.svc.cluster.local svc.cluster.local cluster.local"

die() { echo "lab: $*" >&2; exit 1; }
log() { echo "lab: $*" >&2; }
ns() { echo "${P}$1"; }
nx() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }
ns_exists() { [ -e "/run/netns/$(ns "$1")" ]; }
setsys() { nx "$1" sh -c "echo $3 > /proc/sys/$2"; }

# ---------------------------------------------------------------- processes (PID files)

pidfile() { echo "$STATE/pids/$1.pid"; }

# alive NAME: the process recorded for NAME still runs (and is the same executable we started).
alive() {
	local f pid exe
	f=$(pidfile "$1")
	[ -s "$f" ] || return 1
	read -r pid exe <"$f"
	[ -d "/proc/$pid" ] || return 1
	[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]
}

# start NAME HOST LOG CMD...: run CMD detached in namespace HOST and record its PID.
start() {
	local name=$1 host=$2 logf=$3 pid exe
	shift 3
	alive "$name" && return 0
	mkdir -p "$STATE/pids"
	setsid ip netns exec "$(ns "$host")" "$@" </dev/null >"$logf" 2>&1 9<&- &
	pid=$!
	exe=$(readlink -f "$(command -v "$1")")
	# setsid and ip exec into CMD without forking; wait until the PID shows CMD's executable.
	for _ in $(seq 50); do
		[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] && break
		[ -d "/proc/$pid" ] || break
		sleep 0.05
	done
	[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || { cat "$logf" >&2; die "$name did not start"; }
	echo "$pid $exe" >"$(pidfile "$name")"
}

# stop NAME...: SIGTERM the recorded processes together, SIGKILL what is left after 0.5 s (tayga
# and unbound take 1-2 s to notice SIGTERM and keep no state the lab needs), forget them.
stop() {
	local n f pid exe gone pids=""
	for n in "$@"; do
		f=$(pidfile "$n")
		[ -f "$f" ] || continue
		if alive "$n"; then
			read -r pid exe <"$f"
			kill -TERM "$pid" 2>/dev/null || true
			pids="$pids $pid"
		fi
		rm -f "$f"
	done
	[ -n "$pids" ] || return 0
	for _ in $(seq 10); do
		gone=1
		for pid in $pids; do [ -d "/proc/$pid" ] && gone=0; done
		[ "$gone" = 1 ] && return 0
		sleep 0.05
	done
	for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
	for _ in $(seq 20); do
		gone=1
		for pid in $pids; do [ -d "/proc/$pid" ] && gone=0; done
		[ "$gone" = 1 ] && return 0
		sleep 0.05
	done
}

# ---------------------------------------------------------------- configuration files

write_resolv() {
	cat <<EOF
# nat464 lab: the pod's resolv.conf (Kubernetes ClusterFirst shape)
search $SEARCH
nameserver $ROUTER6
options ndots:5
EOF
}

# write_hosts: the pod's /etc/hosts as kubelet writes it (hostNetwork false, no hostAliases).
write_hosts() {
	printf '# Kubernetes-managed hosts file.\n'
	printf '127.0.0.1\tlocalhost\n'
	printf '::1\tlocalhost ip6-localhost ip6-loopback\n'
	printf 'fe00::0\tip6-localnet\n'
	printf 'fe00::0\tip6-mcastprefix\n'
	printf 'fe00::1\tip6-allnodes\n'
	printf 'fe00::2\tip6-allrouters\n'
	printf '%s\tnat464-lab-pod\n' "$POD6"
}

write_tayga_conf() {
	cat <<EOF
tun-device nat64
ipv4-addr $TAYGA4
prefix $NSP
dynamic-pool $POOL4
data-dir $STATE/tayga
EOF
}

write_unbound_conf() {
	local prefix=$1
	cat <<EOF
server:
	interface: $ROUTER6
	port: 53
	do-ip4: yes
	do-ip6: yes
	do-udp: yes
	do-tcp: yes
	access-control: ::/0 allow
	access-control: 0.0.0.0/0 allow
	username: ""
	chroot: ""
	directory: "$STATE"
	pidfile: "$STATE/unbound.pid"
	use-syslog: no
	logfile: ""
	verbosity: 1
	num-threads: 1
	so-reuseport: no
	module-config: "dns64 iterator"
	dns64-prefix: $prefix
	rrset-roundrobin: no
	minimal-responses: yes
	do-not-query-localhost: yes
	qname-minimisation: no
	cache-max-negative-ttl: 5
	auto-trust-anchor-file: ""
	trust-anchor-file: ""
remote-control:
	control-enable: no
# The whole namespace tree is one local zone served to the iterator (RFC 8806 style), so there is
# never recursion to the internet and the dns64 module sees (and synthesizes) every answer.
auth-zone:
	name: "."
	zonefile: "$STATE/lab.zone"
	for-downstream: no
	for-upstream: yes
	fallback-enabled: no
EOF
}

write_zone() {
	cat <<EOF
\$TTL 30
.                   IN SOA  ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 5
.                   IN NS   ns.lab.example.
ns.lab.example.     IN AAAA $ROUTER6
; RFC 7050 / RFC 8880: only A records; DNS64 synthesizes the AAAA the sidecar discovers PREF64 from
ipv4only.arpa.      IN A    192.0.0.170
ipv4only.arpa.      IN A    192.0.0.171
v4only.example.     IN A    $V4SRV
v6only.example.     IN AAAA $V6SRV
dual.example.       IN AAAA $DS6
dual.example.       IN A    $DS4
two6.example.       IN AAAA $TWO6A
two6.example.       IN AAAA $TWO6B
pod.example.        IN AAAA $POD6
; An ordinary-looking name whose only address lies in $DENIED4 (nothing there): the egress policy
; test denies that range, and the name must not get around it.
inside.example.     IN A    $INSIDE4
web.default.svc.cluster.local.    IN AAAA $V6SRV
legacy.default.svc.cluster.local. IN A    $V4SRV
; An answer too large for one UDP reply (EDNS 1232): a resolver must retry it over TCP.
$(big_txt)
EOF
}

# big_txt prints big.example's TXT records: 24 strings of 200 bytes, about 5 KB in all.
big_txt() {
	local i pad
	pad=$(printf '%0197d' 0)
	for i in $(seq -w 1 24); do
		printf 'big.example.        IN TXT  "%s-%s"\n' "$i" "$pad"
	done
}

# ---------------------------------------------------------------- up

need_tools() {
	local t
	for t in ip ip6tables iptables tayga unbound curl dig setsid; do
		command -v "$t" >/dev/null || die "$t not found (run test/lab/deps.sh)"
	done
	if [ ! -c /dev/net/tun ]; then
		mkdir -p /dev/net
		mknod /dev/net/tun c 10 200
		chmod 0666 /dev/net/tun
	fi
}

labsrv_bin() {
	if [ -n "${NAT464_LAB_SRV:-}" ]; then
		cp "$NAT464_LAB_SRV" "$STATE/labsrv"
	else
		local go=go
		command -v go >/dev/null || go=/usr/local/go/bin/go
		(cd "$REPO" && CGO_ENABLED=0 "$go" build -o "$STATE/labsrv" ./test/lab/labsrv)
	fi
	chmod 0755 "$STATE/labsrv"
	# A fresh test CA per lab, and one certificate for every lab name and address.
	"$STATE/labsrv" -mkcert "$STATE/tls" -names "$(tls_names)"
	chmod 0755 "$STATE/tls"
}

tls_names() {
	local n out="" svc
	for n in v4only.example v6only.example dual.example two6.example pod.example; do out="$out$n,"; done
	for svc in web legacy; do
		for n in "$svc" "$svc.default" "$svc.default.svc" "$svc.default.svc.cluster.local"; do out="$out$n,"; done
	done
	echo "$out$V4SRV,$V6SRV,$DS6,$DS4,$TWO6A,$TWO6B,$POD6,127.0.0.1,::1,localhost"
}

make_ns() {
	local h=$1
	ip netns add "$(ns "$h")"
	nx "$h" ip link set lo up
	setsys "$h" net/ipv6/conf/all/accept_dad 0
	setsys "$h" net/ipv6/conf/default/accept_dad 0
	setsys "$h" net/ipv6/conf/all/accept_ra 0
	setsys "$h" net/ipv6/conf/default/accept_ra 0
}

# attach HOST: a veth from the router's bridge into HOST (eth0 there).
attach() {
	local h=$1
	ip -n "$(ns router)" link add "${h}0" type veth peer name eth0 netns "$(ns "$h")"
	ip -n "$(ns router)" link set "${h}0" master br0 up
}

build_net() {
	local h
	for h in $HOSTS; do make_ns "$h"; done
	local R
	R=$(ns router)
	setsys router net/ipv4/ip_forward 1
	setsys router net/ipv6/conf/all/forwarding 1

	ip -n "$R" link add pod0 type veth peer name eth0 netns "$(ns pod)"
	ip -n "$R" addr add "$ROUTER6/64" dev pod0 nodad
	ip -n "$R" link set pod0 up
	ip -n "$(ns pod)" addr add "$POD6/64" dev eth0 nodad
	ip -n "$(ns pod)" link set eth0 up
	ip -n "$(ns pod)" -6 route add default via "$ROUTER6"

	ip -n "$R" link add br0 type bridge
	ip -n "$R" addr add "$BR6/64" dev br0 nodad
	ip -n "$R" addr add "$BR4/24" dev br0
	ip -n "$R" link set br0 up
	for h in v4srv v6srv ds client; do attach "$h"; done

	setsys v4srv net/ipv6/conf/eth0/disable_ipv6 1
	ip -n "$(ns v4srv)" addr add "$V4SRV/24" dev eth0
	ip -n "$(ns v4srv)" link set eth0 up
	ip -n "$(ns v4srv)" route add default via "$BR4"

	ip -n "$(ns v6srv)" addr add "$V6SRV/64" dev eth0 nodad
	ip -n "$(ns v6srv)" link set eth0 up
	ip -n "$(ns v6srv)" -6 route add default via "$BR6"

	ip -n "$(ns ds)" addr add "$DS4/24" dev eth0
	for a in $DS6 $TWO6A $TWO6B; do ip -n "$(ns ds)" addr add "$a/64" dev eth0 nodad; done
	ip -n "$(ns ds)" link set eth0 up
	ip -n "$(ns ds)" route add default via "$BR4"
	ip -n "$(ns ds)" -6 route add default via "$BR6"

	ip -n "$(ns client)" addr add "$CLIENT6/64" dev eth0 nodad
	ip -n "$(ns client)" link set eth0 up
	ip -n "$(ns client)" -6 route add default via "$BR6"

	# NAT64: tayga's TUN lives in the router namespace.
	mkdir -p "$STATE/tayga"
	write_tayga_conf >"$STATE/tayga.conf"
	nx router tayga --mktun -c "$STATE/tayga.conf" >/dev/null
	ip -n "$R" link set nat64 up
	ip -n "$R" route add 192.0.2.0/24 dev nat64
	ip -n "$R" -6 route add "$NSP" dev nat64

	# The pod's resolv.conf and hosts: ip netns exec bind-mounts each file of /etc/netns/<ns>.
	mkdir -p "$ETC_NETNS"
	write_resolv >"$ETC_NETNS/resolv.conf"
	write_resolv >"$STATE/resolv.conf"
	write_hosts >"$ETC_NETNS/hosts"
	chmod 0644 "$ETC_NETNS/resolv.conf" "$STATE/resolv.conf" "$ETC_NETNS/hosts"
	write_zone >"$STATE/lab.zone"
}

# router_up MODE: (re)start tayga and unbound for MODE, with the WKP NETMAP in wkp mode.
router_up() {
	local mode=$1 prefix=$NSP
	[ "$mode" = wkp ] && prefix=$WKP
	stop unbound tayga
	nx router ip6tables -t nat -F PREROUTING
	nx router ip6tables -t raw -F PREROUTING
	if [ "$mode" = wkp ]; then
		nx router ip6tables -t nat -A PREROUTING -d "$WKP" -j NETMAP --to "$NSP"
		# The pod must only ever see the WKP: the internal NSP is not reachable from it directly.
		nx router ip6tables -t raw -A PREROUTING -i pod0 -d "$NSP" -j DROP
	fi
	rm -rf "$STATE/tayga" && mkdir -p "$STATE/tayga"
	write_unbound_conf "$prefix" >"$STATE/unbound.conf"
	unbound-checkconf "$STATE/unbound.conf" >/dev/null || die "unbound.conf rejected"
	start tayga router "$STATE/tayga.log" tayga --nodetach -c "$STATE/tayga.conf"
	start unbound router "$STATE/unbound.log" unbound -d -c "$STATE/unbound.conf"
	echo "$mode" >"$STATE/mode"
}

servers_up() {
	local S=$STATE/labsrv T="-tls-dir $STATE/tls -tls-listen"
	# shellcheck disable=SC2086 # $T is two flags and a flag name
	start v4srv v4srv "$STATE/v4srv.log" "$S" -name v4srv -listen "$V4SRV:80" $T "$V4SRV:443" \
		-udp-listen "$V4SRV:7"
	# shellcheck disable=SC2086
	start v6srv v6srv "$STATE/v6srv.log" "$S" -name v6srv -listen "[$V6SRV]:80" $T "[$V6SRV]:443" \
		-udp-listen "[$V6SRV]:7"
	# shellcheck disable=SC2086
	start ds ds "$STATE/ds.log" "$S" -name ds -listen "$DS4:80,[$DS6]:80,[$TWO6A]:80,[$TWO6B]:80" \
		$T "$DS4:443,[$DS6]:443"
	start app pod "$STATE/app.log" "$S" -name app -listen "$APP"
}

# wait_ready: bounded polling of DNS64, NAT64 and every server.
wait_ready() {
	local mode=$1 prefix=2001:db8:64:: i out
	[ "$mode" = wkp ] && prefix=64:ff9b::
	for i in $(seq 100); do
		out=$(nx pod dig +short +time=1 +tries=1 AAAA ipv4only.arpa "@$ROUTER6" 2>/dev/null || true)
		case "$out" in *"${prefix}c000:aa"*) break ;; esac
		[ "$i" = 100 ] && die "DNS64 not answering ipv4only.arpa with ${prefix}/96 (got: $out)"
		sleep 0.1
	done
	for url in "http://[${prefix}$V4SRV]/" "http://[$V6SRV]/" "http://[$DS6]/"; do
		nx pod curl -fsS --retry 30 --retry-delay 0 --retry-max-time 15 --retry-connrefused \
			--max-time 3 -o /dev/null "$url" || die "pod cannot reach $url"
	done
	nx pod curl -fsS --retry 30 --retry-delay 0 --retry-max-time 15 --retry-connrefused --max-time 3 \
		--cacert "$STATE/tls/ca.pem" -o /dev/null "https://[$V6SRV]/" || die "no HTTPS on [$V6SRV]:443"
	nx pod curl -fsS --retry 30 --retry-connrefused --retry-max-time 15 --max-time 3 -o /dev/null "http://$APP/" ||
		die "app not serving on $APP"
}

healthy() {
	local h n
	[ -f "$STATE/mode" ] || return 1
	for h in $HOSTS; do ns_exists "$h" || return 1; done
	for n in tayga unbound v4srv v6srv ds app; do alive "$n" || return 1; done
}

cmd_up() {
	local mode=wkp
	while [ $# -gt 0 ]; do
		case $1 in
		--mode) mode=${2:-}; shift 2 || die "--mode wants wkp or nsp" ;;
		--mode=*) mode=${1#--mode=}; shift ;;
		*) die "up: unknown argument $1" ;;
		esac
	done
	case $mode in wkp | nsp) ;; *) die "--mode wants wkp or nsp, not $mode" ;; esac
	need_tools
	if healthy; then
		if [ "$(cat "$STATE/mode")" = "$mode" ]; then
			log "up already ($mode)"
			return 0
		fi
		log "switching to $mode"
		router_up "$mode"
		wait_ready "$mode"
		return 0
	fi
	cmd_down quiet
	log "building ($mode)"
	mkdir -p "$STATE/pids"
	labsrv_bin
	build_net
	router_up "$mode"
	servers_up
	wait_ready "$mode"
	log "up ($mode): pod $POD6, DNS64 [$ROUTER6]:53, app $APP"
}

# ---------------------------------------------------------------- down / status / faults

cmd_down() {
	local h n pid
	stop app v4srv v6srv ds unbound tayga
	# Anything else still running in a lab namespace (a sidecar or client a test left) is ours too.
	for h in $HOSTS; do
		ns_exists "$h" || continue
		for pid in $(ip netns pids "$(ns "$h")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	done
	for h in $HOSTS; do
		ns_exists "$h" && ip netns del "$(ns "$h")"
	done
	rm -rf "$STATE" "$ETC_NETNS"
	rmdir /etc/netns 2>/dev/null || true
	[ "${1:-}" = quiet ] || log "down"
}

cmd_status() {
	local h n up=0 total=0
	for h in $HOSTS; do
		total=$((total + 1))
		if ns_exists "$h"; then up=$((up + 1)); echo "netns $(ns "$h") present"; else echo "netns $(ns "$h") missing"; fi
	done
	for n in tayga unbound v4srv v6srv ds app; do
		total=$((total + 1))
		if alive "$n"; then up=$((up + 1)); echo "$n running (pid $(cut -d' ' -f1 <"$(pidfile "$n")"))"; else echo "$n not running"; fi
	done
	[ -f "$STATE/mode" ] && echo "mode $(cat "$STATE/mode")"
	if ns_exists router; then
		echo "blackholes:"
		nx router ip6tables -S FORWARD | grep -- '-j DROP' || true
		nx router iptables -S FORWARD | grep -- '-j DROP' || true
	fi
	[ "$up" = 0 ] && [ ! -e "$STATE" ] && return 3
	[ "$up" = "$total" ] && [ -f "$STATE/mode" ] && return 0
	return 1
}

# fw ADDR: the iptables command for ADDR's family.
fw() { case $1 in *:*) echo ip6tables ;; *) echo iptables ;; esac; }

cmd_blackhole() {
	local a=${1:-} t
	[ -n "$a" ] || die "blackhole wants an address"
	ns_exists router || die "lab is not up"
	t=$(fw "$a")
	nx router "$t" -C FORWARD -d "$a" -j DROP 2>/dev/null || nx router "$t" -I FORWARD -d "$a" -j DROP
}

cmd_unblackhole() {
	local a=${1:-} t
	[ -n "$a" ] || die "unblackhole wants an address or all"
	ns_exists router || return 0
	if [ "$a" = all ]; then
		nx router ip6tables -F FORWARD
		nx router iptables -F FORWARD
		return 0
	fi
	t=$(fw "$a")
	while nx router "$t" -C FORWARD -d "$a" -j DROP 2>/dev/null; do nx router "$t" -D FORWARD -d "$a" -j DROP; done
}

cmd_env() {
	cat <<EOF
LAB_STATE=$STATE
LAB_MODE=$(cat "$STATE/mode" 2>/dev/null || echo down)
LAB_NS_POD=$(ns pod)
LAB_NS_ROUTER=$(ns router)
LAB_NS_CLIENT=$(ns client)
LAB_NS_V4SRV=$(ns v4srv)
LAB_NS_V6SRV=$(ns v6srv)
LAB_NS_DS=$(ns ds)
LAB_POD6=$POD6
LAB_DNS6=$ROUTER6
LAB_V4SRV=$V4SRV
LAB_V6SRV=$V6SRV
LAB_DS6=$DS6
LAB_DS4=$DS4
LAB_TWO6A=$TWO6A
LAB_TWO6B=$TWO6B
LAB_CLIENT6=$CLIENT6
LAB_POOL4=$POOL4
LAB_DENIED4=$DENIED4
LAB_INSIDE4=$INSIDE4
LAB_NSP=$NSP
LAB_WKP=$WKP
LAB_APP=$APP
LAB_RESOLV_CONF=$STATE/resolv.conf
LAB_SRV=$STATE/labsrv
LAB_CA_PEM=$STATE/tls/ca.pem
LAB_HOSTS=$ETC_NETNS/hosts
EOF
}

main() {
	[ "$(uname -s)" = Linux ] || die "Linux only"
	[ "$(id -u)" = 0 ] || die "root only"
	local cmd=${1:-}
	[ $# -gt 0 ] && shift
	case $cmd in
	exec)
		local h=${1:-}
		[ -n "$h" ] || die "exec wants HOST CMD..."
		shift
		exec ip netns exec "$(ns "$h")" "$@"
		;;
	env) cmd_env; return ;;
	esac
	# One lab command at a time (the lock is this script's own file, so nothing is left behind).
	exec 9<"${BASH_SOURCE[0]}"
	flock 9
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down ;;
	status) cmd_status ;;
	blackhole) cmd_blackhole "$@" ;;
	unblackhole) cmd_unblackhole "$@" ;;
	*) die "usage: lab.sh up [--mode wkp|nsp] | down | status | blackhole ADDR | unblackhole ADDR|all | exec HOST CMD... | env" ;;
	esac
}

main "$@"
