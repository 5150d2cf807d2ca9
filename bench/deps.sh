#!/bin/sh
# deps.sh installs the peer proxies the benchmark driver compares the sidecar
# against (Debian package names checked with apt-cache):
#   haproxy       inbound, TCP mode with splice
#   6tunnel       inbound, IPv6 -> IPv4 port forwarder
#   socat         inbound, generic relay
#   dante-server  SOCKS5 (binary: danted)
#   microsocks    SOCKS5
#   tinyproxy     HTTP CONNECT
#   linux-perf    not a peer: perf counts system calls and wake-ups per connection (sched.go)
# The driver skips any peer whose binary is missing, so partial installs are fine.
# The packages' own services are never started by the driver; Debian may start
# danted/haproxy/tinyproxy on install, so they are stopped and disabled here.
set -eu

pkgs="haproxy 6tunnel socat dante-server microsocks tinyproxy linux-perf"

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# policy-rc.d keeps the packages' init scripts from starting services on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# dante-server's postinst may fail to start danted without a valid
# configuration; that is not an install failure for our purposes.
$SUDO apt-get install -y --no-install-recommends $pkgs || true

missing=""
for b in haproxy 6tunnel socat danted microsocks tinyproxy perf; do
	if ! command -v "$b" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$b" ] && [ ! -x "/usr/bin/$b" ]; then
		missing="$missing $b"
	fi
done
if [ -n "$missing" ]; then
	echo "deps.sh: missing after install:$missing" >&2
	exit 1
fi
echo "deps.sh: all peers installed"
