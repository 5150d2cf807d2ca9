package eyeballs

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

// TestDatagram: the fixed choice for datagrams is a native AAAA, else the IPv4 address routed
// as a connect would be (native with a route or for loopback, else synthesized), with Approve
// asked; replies from a synthesized target are reported as the IPv4 address it stands for.
func TestDatagram(t *testing.T) {
	res := &fakeResolver{answers: map[string][]timedAnswer{
		"both.test":   {{ans: a4("192.0.2.1")}, {ans: aaaa("2001:db8::1")}},
		"v4.test":     {{ans: a4("192.0.2.1")}, {ans: resolver.Answer{Family: 6, Err: resolver.ErrNoData}}},
		"dns64.test":  {{ans: aaaa("64:ff9b::c000:202")}},
		"local.test":  {{ans: a4("127.0.0.1")}},
		"gone.test":   {{ans: resolver.Answer{Family: 6, Err: resolver.ErrNXDomain}}, {ans: resolver.Answer{Family: 4, Err: resolver.ErrNXDomain}}},
		"denied.test": {{ans: aaaa("2001:db8::bad", "2001:db8::2")}},
	}}
	deny := netip.MustParseAddr("2001:db8::bad")
	cases := []struct {
		host     string
		v4route  bool
		nat      NAT64
		to, from string
		wantErr  error
	}{
		{host: "both.test", to: "[2001:db8::1]:53", from: "2001:db8::1"},
		{host: "v4.test", to: "[64:ff9b::c000:201]:53", from: "192.0.2.1"},
		{host: "v4.test", v4route: true, to: "192.0.2.1:53", from: "192.0.2.1"},
		{host: "dns64.test", to: "[64:ff9b::c000:202]:53", from: "192.0.2.2"},
		{host: "local.test", to: "127.0.0.1:53", from: "127.0.0.1"},
		{host: "192.0.2.9", to: "[64:ff9b::c000:209]:53", from: "192.0.2.9"},
		{host: "127.0.0.1", to: "127.0.0.1:53", from: "127.0.0.1"},
		{host: "2001:db8::7", to: "[2001:db8::7]:53", from: "2001:db8::7"},
		{host: "denied.test", to: "[2001:db8::2]:53", from: "2001:db8::2"},
		{host: "2001:db8::bad", wantErr: ErrNotAllowed},
		{host: "v4.test", nat: fakeNAT64{none: true}, wantErr: syscall.ENETUNREACH},
		{host: "10.1.2.3", nat: &nat64.Prefixes{Policy: nat64.Policy{Strict: true}}, wantErr: nat64.ErrPolicy},
		{host: "gone.test", wantErr: resolver.ErrNXDomain},
		{host: "fe80::1%eth0", wantErr: ErrNoAddress},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s route=%v", tc.host, tc.v4route), func(t *testing.T) {
			nat := tc.nat
			if nat == nil {
				nat = fakeNAT64{}
			}
			d := &Dialer{Resolver: res, NAT64: nat, HasIPv4Route: func() bool { return tc.v4route },
				Approve: func(ap netip.AddrPort) error {
					if ap.Addr() == deny {
						return errors.New("denied")
					}
					return nil
				}}
			to, from, err := d.Datagram(t.Context(), tc.host, 53)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || to.String() != tc.to || from.String() != tc.from {
				t.Fatalf("Datagram = %v from %v, %v; want %s from %s", to, from, err, tc.to, tc.from)
			}
		})
	}
	if _, _, err := (&Dialer{}).Datagram(t.Context(), "name.test", 53); !errors.Is(err, ErrNoResolver) {
		t.Errorf("no resolver: %v", err)
	}
}
