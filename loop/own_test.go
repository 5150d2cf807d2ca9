package loop

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/nat464/nat464-sidecar/socks"
)

// ownFixture is a set like a pod's: the proxy on loopback, an inbound wildcard with
// IPV6_V6ONLY, an inbound on one address, an admin wildcard without V6ONLY (net.Listen "tcp"),
// and an IPv4 wildcard. The pod's interfaces hold 10.0.0.5, 2001:db8::10 and fe80::1.
func ownFixture(calls *atomic.Int32) *OwnSockets {
	o := &OwnSockets{LocalAddrs: func() ([]netip.Addr, error) {
		if calls != nil {
			calls.Add(1)
		}
		return []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("2001:db8::10"),
			netip.MustParseAddr("fe80::1"), netip.MustParseAddr("::ffff:10.0.0.6")}, nil
	}}
	o.Add(Listener{Name: "proxy", Addr: netip.MustParseAddrPort("127.0.0.1:1080")},
		Listener{Name: "inbound", Addr: netip.MustParseAddrPort("[::]:8080")},
		Listener{Name: "inbound", Addr: netip.MustParseAddrPort("[2001:db8::10]:8443")})
	o.Add(Listener{Name: "admin", Addr: netip.MustParseAddrPort("[::]:9464"), DualStack: true},
		Listener{Name: "inbound", Addr: netip.MustParseAddrPort("[::ffff:0.0.0.0]:7000")})
	return o
}

func TestOwnSocketsCheck(t *testing.T) {
	cases := []struct {
		dest string
		want string // the listener refused ("" when allowed)
	}{
		// A specific address: that address and port only, in any spelling.
		{"127.0.0.1:1080", "proxy 127.0.0.1:1080"},
		{"[::ffff:127.0.0.1]:1080", "proxy 127.0.0.1:1080"},
		{"0.0.0.0:1080", "proxy 127.0.0.1:1080"}, // connect(2) to 0.0.0.0 reaches 127.0.0.1
		{"[::ffff:0.0.0.0]:1080", "proxy 127.0.0.1:1080"},
		{"127.0.0.2:1080", ""},
		{"[::1]:1080", ""},
		{"10.0.0.5:1080", ""},
		{"127.0.0.1:1081", ""},
		// An IPv6 wildcard with IPV6_V6ONLY: every local IPv6 address, no IPv4 (the app's).
		{"[::1]:8080", "inbound [::]:8080"},
		{"[::]:8080", "inbound [::]:8080"},
		{"[2001:db8::10]:8080", "inbound [::]:8080"},
		{"[fe80::1%eth0]:8080", "inbound [::]:8080"},
		{"127.0.0.1:8080", ""},
		{"[::ffff:127.0.0.1]:8080", ""},
		{"10.0.0.5:8080", ""},
		{"[2001:db8::99]:8080", ""},    // not local
		{"[64:ff9b::7f00:1]:8080", ""}, // NAT64-synthesized: never local
		{"[64:ff9b::a00:5]:8080", ""},  // synthesized from the pod's own IPv4: still not local
		{"[2001:db8::10]:8443", "inbound [2001:db8::10]:8443"},
		{"[::1]:8443", ""},
		// An IPv6 wildcard without V6ONLY: both families.
		{"127.0.0.1:9464", "admin [::]:9464"},
		{"127.3.2.1:9464", "admin [::]:9464"},
		{"10.0.0.5:9464", "admin [::]:9464"},
		{"10.0.0.6:9464", "admin [::]:9464"}, // an interface address listed in mapped form
		{"[::1]:9464", "admin [::]:9464"},
		{"[2001:db8::10]:9464", "admin [::]:9464"},
		{"192.0.2.1:9464", ""},
		// An IPv4 wildcard (given in mapped form): every local IPv4 address, no IPv6.
		{"127.9.9.9:7000", "inbound 0.0.0.0:7000"},
		{"10.0.0.5:7000", "inbound 0.0.0.0:7000"},
		{"[::ffff:10.0.0.5]:7000", "inbound 0.0.0.0:7000"},
		{"[::1]:7000", ""},
		{"192.0.2.1:7000", ""},
	}
	o := ownFixture(nil)
	for _, tc := range cases {
		t.Run(tc.dest, func(t *testing.T) {
			dest := netip.MustParseAddrPort(tc.dest)
			err := o.Check(dest)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var se *selfError
			if !errors.As(err, &se) || se.l.String() != tc.want {
				t.Fatalf("Check = %v, want the %s listener", err, tc.want)
			}
			if !errors.Is(err, ErrSelf) || !errors.Is(err, socks.ErrPolicy) {
				t.Errorf("err %v does not wrap ErrSelf and socks.ErrPolicy", err)
			}
			if ReplyFor(err) != socks.ReplyNotAllowed || SOCKS4ReplyFor(err) != socks.Reply4Rejected ||
				HTTPStatusFor(err) != socks.StatusForbidden {
				t.Errorf("err %v is not answered 02 / 91 / 403", err)
			}
		})
	}
	err := o.Check(netip.MustParseAddrPort("[::1]:8080"))
	if want := "loop: [::1]:8080 is the sidecar's own inbound socket (listening on [::]:8080)"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// The interfaces are listed only when a port matches a wildcard and the address is not
// loopback, and then at most once a second.
func TestOwnSocketsListsInterfacesRarely(t *testing.T) {
	var calls atomic.Int32
	o := ownFixture(&calls)
	for range 100 {
		o.Check(netip.MustParseAddrPort("192.0.2.1:443"))  // no listener on 443
		o.Check(netip.MustParseAddrPort("127.0.0.1:1080")) // a specific address
		o.Check(netip.MustParseAddrPort("[::1]:8080"))     // loopback
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("interfaces listed %d times for checks that need no list", n)
	}
	for range 100 {
		o.Check(netip.MustParseAddrPort("[2001:db8::99]:8080"))
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("interfaces listed %d times within a second, want 1", n)
	}
}

func TestOwnSocketsEmpty(t *testing.T) {
	var nilSet *OwnSockets
	var zero OwnSockets
	for _, o := range []*OwnSockets{nilSet, &zero} {
		if err := o.Check(netip.MustParseAddrPort("127.0.0.1:1080")); err != nil {
			t.Errorf("empty set refuses: %v", err)
		}
	}
	if ls := nilSet.Listeners(); ls != nil {
		t.Errorf("nil set lists %v", ls)
	}
}

// Without the seam, the interfaces are the machine's: its own non-loopback addresses are local.
func TestOwnSocketsRealInterfaces(t *testing.T) {
	var o OwnSockets
	o.Add(Listener{Name: "inbound", Addr: netip.MustParseAddrPort("[::]:8080")},
		Listener{Name: "inbound", Addr: netip.MustParseAddrPort("0.0.0.0:8080")})
	for _, a := range o.readLocal() {
		if err := o.Check(netip.AddrPortFrom(a, 8080)); err == nil {
			t.Errorf("%s:8080 (an interface address) passes", a)
		}
	}
	if err := o.Check(netip.MustParseAddrPort("192.0.2.1:8080")); err != nil {
		t.Errorf("a documentation address is refused: %v", err)
	}
}
