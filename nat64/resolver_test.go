package nat64_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

// errStop ends Run after its first round.
var errStop = errors.New("test: stop")

// TestDiscoveryThroughResolver runs RFC 7050 discovery through the real resolver against the
// in-process DNS server, and checks the prefix, the source and the refresh wait it derives from
// the TTL on the wire.
func TestDiscoveryThroughResolver(t *testing.T) {
	nsp := netip.MustParsePrefix("2001:db8:64:ff9b::/64")
	wka0, _ := nat64.Compose(nsp, netip.MustParseAddr("192.0.0.170"))
	wka1, _ := nat64.Compose(nsp, netip.MustParseAddr("192.0.0.171"))
	tests := []struct {
		name   string
		zone   func(*dnstest.Server)
		want   []netip.Prefix
		source string
		wait   time.Duration
	}{
		{"nsp /64", func(s *dnstest.Server) {
			s.AddAAAA("ipv4only.arpa", 600*time.Second, wka0.String(), wka1.String())
		}, []netip.Prefix{nsp}, nat64.SourceDiscovered, 590 * time.Second},
		{"no DNS64 (NODATA)", func(s *dnstest.Server) {
			s.AddA("ipv4only.arpa", 600*time.Second, "192.0.0.170", "192.0.0.171")
			s.SetNegativeTTL(120 * time.Second)
		}, []netip.Prefix{nat64.WKP}, nat64.SourceWellKnown, 120 * time.Second},
		{"NXDOMAIN", func(s *dnstest.Server) { s.SetNegativeTTL(30 * time.Second) },
			[]netip.Prefix{nat64.WKP}, nat64.SourceWellKnown, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnstest.Start(t)
			tc.zone(srv)
			rc := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(rc, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := resolver.New(resolver.Config{ResolvConf: rc, HostsFile: "-",
				Servers: []netip.AddrPort{srv.Addr()}, Timeout: 2 * time.Second, Attempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var waits []time.Duration
			p := &nat64.Prefixes{Querier: res, Wait: func(ctx context.Context, d time.Duration) error {
				waits = append(waits, d)
				return errStop
			}}
			if err := p.Run(t.Context()); !errors.Is(err, errStop) {
				t.Fatalf("Run = %v", err)
			}
			if got := p.Current(); !slices.Equal(got, tc.want) || p.Source() != tc.source {
				t.Errorf("state %v %q, want %v %q", got, p.Source(), tc.want, tc.source)
			}
			// The cache may have aged the TTL by a second between the reply and the read.
			if len(waits) != 1 || waits[0] > tc.wait || waits[0] < tc.wait-time.Second {
				t.Errorf("waits %v, want about %v", waits, tc.wait)
			}
		})
	}
}
