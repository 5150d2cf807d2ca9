#!/usr/bin/env bash
# Runs the benchmark driver, when root on Linux inside a network namespace of its own, so that
# the run gets a wide ephemeral port range and TIME_WAIT reuse without touching the host's
# settings, and starts with no TIME_WAIT sockets left over from earlier runs (a rate test closes
# tens of thousands of connections; with the default 28k ports a later contender could find no
# free port). Elsewhere it runs the driver as it is.
#
# In the namespace the peers resolve names as on a user's dual-stack host: `ip netns exec`
# bind-mounts /etc/netns/NAME/* over /etc for what it runs, so this script gives the namespace
# an /etc/hosts with localhost on ::1 first, then 127.0.0.1 (the host's may list only
# 127.0.0.1), and a resolv.conf naming 127.0.0.1, where the driver binds the bench DNS server
# (-dns-listen 127.0.0.1:53). The host's own /etc/hosts and resolv.conf are untouched, and
# /etc/netns/NAME goes with the namespace.
# usage: bench/run.sh MODE OUTDIR SIDECAR [driver flags...]
set -euo pipefail
mode=$1 out=$2 sidecar=$3
shift 3
cd "$(dirname "$0")"
bin=../bin/nat464-bench
if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ] || ! command -v ip >/dev/null; then
	exec "$bin" run -mode "$mode" -sidecar "$sidecar" -out "$out" "$@"
fi
ns=nat464-bench-$$
etc=/etc/netns/$ns
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$etc"; rmdir /etc/netns 2>/dev/null || true' EXIT
mkdir -p "$etc"
{
	echo "::1 localhost ip6-localhost ip6-loopback"
	grep -v '^[[:space:]]*::1[[:space:]]' /etc/hosts || true
} >"$etc/hosts"
echo "nameserver 127.0.0.1" >"$etc/resolv.conf"
ip netns exec "$ns" sh -c '
	ip link set lo up
	sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
	sysctl -qw net.ipv4.tcp_tw_reuse=1
	exec "$0" "$@"' "$bin" run -mode "$mode" -sidecar "$sidecar" -out "$out" -dns-listen 127.0.0.1:53 "$@"
