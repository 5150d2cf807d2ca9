package loop

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// The real outbound stack behind the proxy: a SOCKS5 CONNECT by name reaches a server through
// the name's AAAA ([::1]) answered by dnstest, and an IPv4 literal (127.0.0.1) is connected
// natively, not synthesized.
func TestProxyThroughResolverAndEyeballs(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			dns := dnstest.Start(t)
			dns.AddAAAA("v6.test", time.Minute, "::1")
			res, err := resolver.New(resolver.Config{Servers: []netip.AddrPort{dns.Addr()}, HostsFile: "-"})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			reg := prometheus.NewRegistry()
			em := eyeballs.NewMetrics(reg)
			prefixes := &nat64.Prefixes{Mode: nat64.ModeStatic, Configured: []netip.Prefix{nat64.WKP}}
			d := &eyeballs.Dialer{Resolver: res, NAT64: prefixes, Metrics: em}
			v6port := testnet.Echo(t, "tcp6", "[::1]:0").Port()
			v4 := echoServer(t)
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = d })

			// By name: domain ATYP, resolved by the sidecar to [::1].
			c := dialProxy(t, fx.proxy)
			req := append([]byte{5, 1, 0, 5, 1, 0, 3, byte(len("v6.test"))}, "v6.test"...)
			req = binary.BigEndian.AppendUint16(req, v6port)
			roundTripSOCKS(t, c, req)
			if n := dns.Count("v6.test.", 28, "udp"); n != 1 {
				t.Errorf("AAAA queries for v6.test = %d, want 1", n)
			}

			// An IPv4 literal: loopback is always dialed natively.
			c = dialProxy(t, fx.proxy)
			ap := netip.MustParseAddrPort(v4)
			a4 := ap.Addr().As4()
			req = append([]byte{5, 1, 0, 5, 1, 0, 1}, a4[:]...)
			req = binary.BigEndian.AppendUint16(req, ap.Port())
			roundTripSOCKS(t, c, req)
			if got := gathered(t, reg, "nat464_eyeballs_synthesized_connects_total", ""); got != 0 {
				t.Errorf("synthesized connects = %v, want 0 (loopback is native)", got)
			}
			if got := gathered(t, reg, "nat464_eyeballs_winners_total", "native"); got != 2 {
				t.Errorf("native winners = %v, want 2", got)
			}
		})
	}
}

func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// roundTripSOCKS sends a greeting+request, expects success, then checks an echo through it.
func roundTripSOCKS(t *testing.T, c net.Conn, req []byte) {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	rep := make([]byte, 12)
	if _, err := io.ReadFull(c, rep); err != nil || rep[1] != 0 || rep[3] != 0 {
		t.Fatalf("socks5 replies %x: %v", rep, err)
	}
	c.Write([]byte("through"))
	got := make([]byte, 7)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "through" {
		t.Fatalf("echo through the proxy: %q %v", got, err)
	}
}

// gathered sums the samples of a metric family whose label values include label (any if "").
func gathered(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				match = match || lp.GetValue() == label
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
