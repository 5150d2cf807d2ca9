package config

import (
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/nat464/nat464-sidecar/proxyproto"
)

func TestInboundOptions(t *testing.T) {
	c, err := Parse([]string{"--inbound", "8080=80", "--inbound", "[2001:db8::5]:8080=127.0.0.1:81", "--inbound", "9090=90",
		"--inbound-proxy-protocol", "8080=v1", "--inbound-proxy-protocol", "[2001:db8::5]:8080=v2",
		"--inbound-source", "8080=127.128.0.0/9", "--inbound-source", "[2001:db8::5]:8080=127.128.0.0/9"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := netip.MustParsePrefix("127.128.0.0/9")
	want := []struct {
		v proxyproto.Version
		p netip.Prefix
	}{{proxyproto.V1, r}, {proxyproto.V2, r}, {0, netip.Prefix{}}}
	for i, w := range want {
		if m := c.Inbound[i]; m.ProxyProtocol != w.v || m.Source != w.p {
			t.Errorf("mapping %d: %v %v, want %v %v", i, m.ProxyProtocol, m.Source, w.v, w.p)
		}
	}
}

func TestInboundOptionsEnv(t *testing.T) {
	c, err := Parse(nil, env(map[string]string{
		"NAT464_INBOUND":                "8080=80, 9090=90",
		"NAT464_INBOUND_PROXY_PROTOCOL": "8080=v2, 9090=v1",
		"NAT464_INBOUND_SOURCE":         "9090=127.64.0.0/10",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbound[0].ProxyProtocol != proxyproto.V2 || c.Inbound[1].ProxyProtocol != proxyproto.V1 ||
		c.Inbound[0].Source.IsValid() || c.Inbound[1].Source != netip.MustParsePrefix("127.64.0.0/10") {
		t.Errorf("from the environment: %+v", c.Inbound)
	}
}

func TestInboundOptionErrors(t *testing.T) {
	base := []string{"--inbound", "8080=80", "--inbound", "9090=127.0.0.1:90", "--inbound", "7070=[::1]:70"}
	tests := []struct {
		name string
		args []string
		flag string
		want string
	}{
		{"proxy: no mapping", []string{"--inbound-proxy-protocol", "8081=v1"}, "--inbound-proxy-protocol", "no --inbound mapping listens on [::]:8081"},
		{"proxy: other address", []string{"--inbound-proxy-protocol", "[2001:db8::5]:8080=v1"}, "--inbound-proxy-protocol", "no --inbound mapping"},
		{"proxy: bad version", []string{"--inbound-proxy-protocol", "8080=v3"}, "--inbound-proxy-protocol", "want v1 or v2"},
		{"proxy: no =", []string{"--inbound-proxy-protocol", "8080"}, "--inbound-proxy-protocol", "want LISTEN=VALUE"},
		{"proxy: bad listen", []string{"--inbound-proxy-protocol", "x=v1"}, "--inbound-proxy-protocol", "neither PORT"},
		{"proxy: twice", []string{"--inbound-proxy-protocol", "8080=v1", "--inbound-proxy-protocol", "8080=v2"}, "--inbound-proxy-protocol", "given twice"},
		{"source: no mapping", []string{"--inbound-source", "8081=127.128.0.0/9"}, "--inbound-source", "no --inbound mapping"},
		{"source: not a prefix", []string{"--inbound-source", "8080=127.128.0.1"}, "--inbound-source", "ParsePrefix"},
		{"source: has 127.0.0.1", []string{"--inbound-source", "8080=127.0.0.0/8"}, "--inbound-source", "127.0.0.1"},
		{"source: not loopback", []string{"--inbound-source", "8080=10.0.0.0/8"}, "--inbound-source", "127.0.0.0/8"},
		{"source: IPv6", []string{"--inbound-source", "8080=::1/128"}, "--inbound-source", "IPv4 prefix"},
		{"source: too small", []string{"--inbound-source", "8080=127.1.0.0/31"}, "--inbound-source", "/30"},
		{"source: IPv6 target", []string{"--inbound-source", "7070=127.128.0.0/9"}, "--inbound-source", "not in 127.0.0.0/8"},
		{"source: overlap", []string{"--inbound-source", "8080=127.128.0.0/9", "--inbound-source", "9090=127.129.0.0/16"}, "--inbound-source", "overlaps"},
		{"source: egress range", []string{"--dns-listen", "127.0.0.1:53", "--dns-upstream", "192.0.2.53", "--inbound-source", "8080=127.100.0.0/24"}, "--inbound-source", "--egress-range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(append(append([]string{}, base...), tt.args...), env(nil), io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.flag) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s and say %q", err, tt.flag, tt.want)
			}
		})
	}
	// Two mappings may share one range (one table: a client has one address on both).
	if _, err := Parse(append(base, "--inbound-source", "8080=127.128.0.0/9", "--inbound-source", "9090=127.128.0.0/9"), env(nil), io.Discard); err != nil {
		t.Errorf("shared range: %v", err)
	}
}
