#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes, the release pinned in apiserver/go.mod) and etcd
# (go.etcd.io/etcd/server/v3, pinned in etcd/go.mod) for the deploy module's admission tests,
# into a cache directory that outlives the checkout, and prints that directory. Binaries
# already there are kept: a cold build takes minutes (docs/design.md, section 5), a warm one
# nothing.
#
#   deploy/k8s/build.sh        build what is missing, print the directory
#   deploy/k8s/build.sh -n     print the directory; exit 1 if a binary is missing
#
# NAT464_K8S_CACHE overrides the cache root (default /var/cache/nat464-k8s, or
# ~/.cache/nat464-k8s when /var/cache is not writable).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version() { # version MODULE GO.MOD: the required version, in a require line or block
	awk -v m="$1" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$2"
}
kver=$(version k8s.io/kubernetes "$here/apiserver/go.mod")
ever=$(version go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")
[ -n "$kver" ] && [ -n "$ever" ] || { echo "build.sh: no kubernetes or etcd version in $here/*/go.mod" >&2; exit 1; }
root=${NAT464_K8S_CACHE:-/var/cache/nat464-k8s}
if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
	root=${HOME:-/tmp}/.cache/nat464-k8s
fi
dir=$root/kubernetes-$kver-etcd-$ever
if [ "${1:-}" = -n ]; then
	[ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ] || exit 1
	echo "$dir"
	exit 0
fi
mkdir -p "$dir"
build() { # build NAME MODULE-DIR PACKAGE
	[ -x "$dir/$1" ] && return 0
	local start=$SECONDS
	(cd "$here/$2" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/$1.tmp" "$3")
	mv "$dir/$1.tmp" "$dir/$1"
	echo "built $1 in $((SECONDS - start)) s" >&2
}
build etcd etcd .
build kube-apiserver apiserver k8s.io/kubernetes/cmd/kube-apiserver
echo "$dir"
