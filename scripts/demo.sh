#!/usr/bin/env bash
# make demo: an IPv4-only app on 127.0.0.1, the sidecar in front of it on [::], the page fetched
# over IPv6 ([::1]) through the sidecar. Everything it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/nat464-sidecar}
APP=bin/demoapp
APP_PORT=${APP_PORT:-18080}
PORT=${PORT:-18081}
ADMIN=${ADMIN:-19464}
go build -o "$APP" ./test/demoapp
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$APP" serve "127.0.0.1:$APP_PORT" & pids+=($!)
"$BIN" --inbound "$PORT=127.0.0.1:$APP_PORT" --admin-listen "[::1]:$ADMIN" --proxy-listen off \
	--log-format text & pids+=($!)

for _ in $(seq 1 50); do
	if "$APP" fetch "http://[::1]:$ADMIN/readyz" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
echo "== the app over IPv6 without the sidecar ([::1]:$APP_PORT):"
"$APP" fetch "http://[::1]:$APP_PORT/" 2>&1 || echo "(unreachable, as expected: the app is IPv4-only)"
echo "== the app over IPv6 through the sidecar ([::1]:$PORT):"
"$APP" fetch "http://[::1]:$PORT/"
