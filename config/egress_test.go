package config

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEgressDefaults(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644)
	c, err := Parse([]string{"--hosts-file", hosts}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DNSListen.IsValid() || c.EgressOn() || c.EgressRange != netip.MustParsePrefix("127.100.0.0/16") ||
		!slices.Equal(c.EgressPorts, []uint16{80, 443}) || c.EgressMaxNames != 1024 || c.EgressState != "" {
		t.Errorf("egress defaults: %+v", c)
	}
	off := c.MaxConns
	c, err = Parse([]string{"--hosts-file", hosts, "--dns-listen", "127.0.0.1:53"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.EgressOn() || c.EgressListenerFDs() != 2048 {
		t.Errorf("with --dns-listen: on=%v listener fds %d, want 1024 names x 2 ports", c.EgressOn(), c.EgressListenerFDs())
	}
	if off-c.MaxConns != 1024 {
		t.Errorf("derived --max-conns %d without and %d with the DNS server; want the 2048 listener fds kept back (1024 flows)", off, c.MaxConns)
	}
}

func TestEgressFlags(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("127.100.0.5 db.internal db\n127.200.0.1 elsewhere\n"), 0o644)
	c, err := Parse([]string{"--hosts-file", hosts, "--dns-listen", "127.0.0.1:5353", "--dns-upstream", "10.96.0.10, [fd00::10]:5353,192.0.2.53:53",
		"--egress-ports", "5432,6379-6381,80", "--egress-state", "/state/egress.json", "--egress-max-names", "10",
		"--egress-udp-ports", "8125,514"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:53"), netip.MustParseAddrPort("[fd00::10]:5353"), netip.MustParseAddrPort("192.0.2.53:53")}
	if !slices.Equal(c.DNSUpstream, want) {
		t.Errorf("DNSUpstream %v, want %v", c.DNSUpstream, want)
	}
	if !slices.Equal(c.EgressPorts, []uint16{5432, 6379, 6380, 6381, 80}) || c.EgressState != "/state/egress.json" {
		t.Errorf("ports %v state %q", c.EgressPorts, c.EgressState)
	}
	if !slices.Equal(c.EgressUDPPorts, []uint16{8125, 514}) {
		t.Errorf("udp ports %v", c.EgressUDPPorts)
	}
	if len(c.EgressStatic) != 1 || c.EgressListenerFDs() != (10+1)*(5+2) {
		t.Errorf("static names %v, listener fds %d", c.EgressStatic, c.EgressListenerFDs())
	}
	// The environment twins.
	c, err = Parse([]string{"--hosts-file", "-"}, env(map[string]string{"NAT464_DNS_LISTEN": "127.0.0.1:53", "NAT464_EGRESS_PORTS": "25",
		"NAT464_EGRESS_RANGE": "127.64.0.0/10", "NAT464_EGRESS_UDP_PORTS": "443"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DNSListen != netip.MustParseAddrPort("127.0.0.1:53") || !slices.Equal(c.EgressPorts, []uint16{25}) || c.EgressRange.String() != "127.64.0.0/10" ||
		!slices.Equal(c.EgressUDPPorts, []uint16{443}) {
		t.Errorf("from the environment: %v %v %v %v", c.DNSListen, c.EgressPorts, c.EgressRange, c.EgressUDPPorts)
	}
	// Hosts-file names in the range turn egress on without the DNS server.
	c, err = Parse([]string{"--hosts-file", hosts}, env(nil), io.Discard)
	if err != nil || !c.EgressOn() || c.DNSListen.IsValid() {
		t.Errorf("static mode: %v on=%v", err, c != nil && c.EgressOn())
	}
}

func TestEgressFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--dns-listen", "53"}, "--dns-listen"},
		{[]string{"--dns-listen", "127.0.0.1:0"}, "--dns-listen"},
		{[]string{"--dns-upstream", "kube-dns"}, "--dns-upstream"},
		{[]string{"--dns-upstream", "0.0.0.0:53"}, "--dns-upstream"},
		{[]string{"--dns-listen", "127.0.0.1:53", "--dns-upstream", "127.0.0.1"}, "the sidecar's own DNS server"},
		{[]string{"--dns-listen", "0.0.0.0:53", "--dns-upstream", "127.0.0.53:53"}, "the sidecar's own DNS server"},
		{[]string{"--egress-range", "127.0.0.0/8"}, "must not contain 127.0.0.1"},
		{[]string{"--egress-range", "10.0.0.0/16"}, "inside 127.0.0.0/8"},
		{[]string{"--egress-range", "127.100.0.0"}, "--egress-range"},
		{[]string{"--egress-ports", "80,80"}, "given twice"},
		{[]string{"--egress-ports", "0"}, "--egress-ports"},
		{[]string{"--egress-ports", "90-80"}, "--egress-ports"},
		{[]string{"--egress-ports", "1000-1100"}, "more than 64"},
		{[]string{"--egress-ports", ""}, "--egress-ports"},
		{[]string{"--egress-max-names", "0"}, "--egress-max-names"},
		{[]string{"--egress-udp-ports", "53,53"}, "--egress-udp-ports"},
		{[]string{"--egress-udp-ports", "udp"}, "--egress-udp-ports"},
		{[]string{"--egress-udp-ports", "1-65"}, "more than 64"},
	} {
		_, err := Parse(append([]string{"--hosts-file", "-"}, tc.args...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.flag)
		}
	}
}

// TestUpstreams: the pod's resolv.conf names the sidecar; what is left are the upstreams, and
// nothing left is an error that says what to set.
func TestUpstreams(t *testing.T) {
	c, err := Parse([]string{"--hosts-file", "-", "--dns-listen", "127.0.0.1:53"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rc := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("[fd00::10]:53"), netip.MustParseAddrPort("127.0.0.1:5353")}
	got, err := c.Upstreams(rc)
	if err != nil || !slices.Equal(got, rc[1:]) {
		t.Errorf("Upstreams = %v %v, want %v", got, err, rc[1:])
	}
	_, err = c.Upstreams(rc[:1])
	if err == nil || !strings.Contains(err.Error(), "--dns-upstream") || !strings.Contains(err.Error(), "NAT464_DNS_UPSTREAM") {
		t.Errorf("only the sidecar itself: %v, want an error naming --dns-upstream", err)
	}
	c.DNSListen = netip.MustParseAddrPort("0.0.0.0:53")
	if _, err := c.Upstreams([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53")}); err == nil {
		t.Error("a wildcard listener serves every loopback address")
	}
	c.DNSUpstream = []netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:53")}
	if got, err := c.Upstreams(rc[:1]); err != nil || len(got) != 1 {
		t.Errorf("--dns-upstream wins: %v %v", got, err)
	}
}
