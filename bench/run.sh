#!/usr/bin/env bash
# Runs the benchmark driver, when root on Linux inside a network namespace of its own, so that
# the run gets a wide ephemeral port range and TIME_WAIT reuse without touching the host's
# settings, and starts with no TIME_WAIT sockets left over from earlier runs (a rate test closes
# tens of thousands of connections; with the default 28k ports a later contender could find no
# free port). Elsewhere it runs the driver as it is.
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
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" sh -c '
	ip link set lo up
	sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
	sysctl -qw net.ipv4.tcp_tw_reuse=1
	exec "$0" "$@"' "$bin" run -mode "$mode" -sidecar "$sidecar" -out "$out" "$@"
