//go:build linux

package udp

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The control message the relay builds for a reply names the local address (and the
// interface only for a link-local one), in the form pktDst recognises.
func TestPktinfoRoundTrip(t *testing.T) {
	for _, a := range []string{"::1", "2001:db8::5", "fe80::1", "127.0.0.2", "192.0.2.1"} {
		local := netip.MustParseAddr(a)
		b := make([]byte, replyCmsgSize)
		n := putReplyCmsg(b, local, 7)
		got, ifi, ok := pktDst(b[:n])
		if !ok {
			t.Errorf("%s: not recognised", a)
			continue
		}
		if local.Is4() {
			// A reply's IP_PKTINFO carries the source in ipi_spec_dst (a receive's destination
			// is ipi_addr, which a reply leaves zero).
			var pi unix.Inet4Pktinfo
			copy((*[unix.SizeofInet4Pktinfo]byte)(unsafe.Pointer(&pi))[:], b[unix.CmsgLen(0):])
			got, ifi = netip.AddrFrom4(pi.Spec_dst), uint32(pi.Ifindex)
		}
		wantIfi := uint32(0)
		if local.IsLinkLocalUnicast() {
			wantIfi = 7
		}
		if got != local || ifi != wantIfi {
			t.Errorf("%s: built %s on interface %d, want interface %d", a, got, ifi, wantIfi)
		}
	}
}

// Whatever the control buffer holds, pktDst never panics or reads past it.
func FuzzPktDst(f *testing.F) {
	b := make([]byte, replyCmsgSize)
	f.Add(b[:putReplyCmsg(b, netip.MustParseAddr("::1"), 0)])
	f.Add(b[:putReplyCmsg(b, netip.MustParseAddr("127.0.0.1"), 1)])
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Fuzz(func(t *testing.T, oob []byte) {
		pktDst(oob)
	})
}
