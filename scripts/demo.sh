#!/usr/bin/env bash
# make demo, both halves of the sidecar on loopback, without the lab:
#  inbound:  an IPv4-only app on 127.0.0.1, the sidecar in front of it, the page fetched over
#            IPv6 ([::1]) through the sidecar;
#  outbound: an IPv6-only server on [::1], reached by NAME (demo.example, from a hosts file
#            given to the sidecar) by an IPv4-only client through the proxy on 127.0.0.1.
# It stays on loopback: the name comes from the hosts file, --nat64-prefix none skips the RFC 7050
# DNS query, and --resolv-conf names only 127.0.0.1. Everything it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/nat464-sidecar}
APP=bin/demoapp
APP_PORT=${APP_PORT:-18080}
PORT=${PORT:-18081}
V6_PORT=${V6_PORT:-18082}
PROXY=${PROXY:-11080}
ADMIN=${ADMIN:-19464}
go build -o "$APP" ./test/demoapp
hosts=$(mktemp) resolv=$(mktemp)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -f "$hosts" "$resolv"
}
trap cleanup EXIT
echo "::1 demo.example" >"$hosts"
echo "nameserver 127.0.0.1" >"$resolv"

"$APP" serve "127.0.0.1:$APP_PORT" & pids+=($!)
"$APP" serve6 "[::1]:$V6_PORT" & pids+=($!)
"$BIN" --inbound "$PORT=127.0.0.1:$APP_PORT" --admin-listen "[::1]:$ADMIN" --proxy-listen "127.0.0.1:$PROXY" \
	--hosts-file "$hosts" --resolv-conf "$resolv" --nat64-prefix none --log-format text & pids+=($!)

for _ in $(seq 1 50); do
	if "$APP" fetch "http://[::1]:$ADMIN/readyz" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
echo "== inbound: the app over IPv6 without the sidecar ([::1]:$APP_PORT):"
"$APP" fetch "http://[::1]:$APP_PORT/" 2>&1 || echo "(unreachable, as expected: the app is IPv4-only)"
echo "== inbound: the app over IPv6 through the sidecar ([::1]:$PORT):"
"$APP" fetch "http://[::1]:$PORT/"

url="http://demo.example:$V6_PORT/"
proxy="socks5h://127.0.0.1:$PROXY"
echo "== outbound: an IPv6-only server by name, through the proxy on 127.0.0.1:$PROXY"
echo "   (the client speaks IPv4 to the proxy only; the sidecar resolves demo.example to ::1):"
if command -v curl >/dev/null; then
	echo "\$ curl -sS -x $proxy $url"
	curl -sS --max-time 5 -x "$proxy" "$url"
else
	"$APP" fetch "$url" "$proxy"
fi
