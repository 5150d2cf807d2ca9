//go:build !linux

package udp

import (
	"net/netip"
	"testing"
)

// startSocat: the socat contender runs on Linux only.
func startSocat(*testing.B, netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
