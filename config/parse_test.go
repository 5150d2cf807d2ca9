package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/splice"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{Listen: netip.MustParseAddrPort("[::]:8080"), Target: netip.MustParseAddrPort("127.0.0.1:80")}
	if len(c.Inbound) != 1 || c.Inbound[0] != want {
		t.Errorf("Inbound = %v, want [%v]", c.Inbound, want)
	}
	if c.AdminListen != "[::]:9464" || fmt.Sprint(c.ProxyListen) != "[127.0.0.1:1080 [::1]:1080]" || !c.ProxyListenDefault || c.Engine != EngineAuto {
		t.Errorf("listen defaults: admin %q proxy %v (default %v) engine %q", c.AdminListen, c.ProxyListen, c.ProxyListenDefault, c.Engine)
	}
	if c.DrainTimeout != 25*time.Second || c.HandshakeTimeout != 10*time.Second || c.IdleTimeout != 0 {
		t.Errorf("timeouts: drain %v handshake %v idle %v", c.DrainTimeout, c.HandshakeTimeout, c.IdleTimeout)
	}
	if !c.MaxConnsDerived || c.MaxConns < 16 {
		t.Errorf("MaxConns = %d derived=%v", c.MaxConns, c.MaxConnsDerived)
	}
	if c.NAT64Mode != "auto" || c.HEAttemptDelay != 250*time.Millisecond || c.HEResolutionDelay != 50*time.Millisecond ||
		c.HEFirstFamilyCount != 1 || c.HEMaxConcurrent != 4 || c.DialTimeout != 10*time.Second {
		t.Errorf("outbound defaults wrong: %+v", c)
	}
}

func TestParseMapping(t *testing.T) {
	tests := []struct {
		in, listen, target string
		err                string
	}{
		{in: "8080=127.0.0.1:80", listen: "[::]:8080", target: "127.0.0.1:80"},
		{in: "8080=80", listen: "[::]:8080", target: "127.0.0.1:80"},
		{in: "[2001:db8::5]:8080=127.0.0.1:81", listen: "[2001:db8::5]:8080", target: "127.0.0.1:81"},
		{in: "443=[::1]:8443", listen: "[::]:443", target: "[::1]:8443"},
		{in: "8080", err: "want LISTEN=TARGET"},
		{in: "x=80", err: "listen side"},
		{in: "8080=", err: "target side"},
		{in: "0=80", err: "listen side"},
		{in: "70000=80", err: "listen side"},
		{in: "127.0.0.1:8080=80", err: "want an IPv6 address"},
		{in: "8080=0.0.0.0:80", err: "unspecified"},
		{in: "8080=127.0.0.1:0", err: "port 0"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMapping(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Listen.String() != tt.listen || m.Target.String() != tt.target {
				t.Errorf("got %v, want %s=%s", m, tt.listen, tt.target)
			}
		})
	}
}

func TestParseErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "nope"},
		{[]string{"--inbound", "bad"}, "--inbound"},
		{[]string{"--inbound", "8080=80", "--inbound", "8080=81"}, "given twice"},
		{[]string{"--engine", "fast"}, "--engine"},
		{[]string{"--max-conns", "0"}, "--max-conns"},
		{[]string{"--max-conns", "many"}, "--max-conns"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout"},
		{[]string{"--handshake-timeout", "0"}, "--handshake-timeout"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--proxy-listen", "localhost"}, "--proxy-listen"},
		{[]string{"--proxy-listen", "127.0.0.1:1080,"}, "--proxy-listen"},
		{[]string{"--proxy-listen", "127.0.0.1:1080,off"}, "cannot be combined"},
		{[]string{"--proxy-listen", "127.0.0.1:1080,[::ffff:127.0.0.1]:1080"}, "given twice"},
		{[]string{"--proxy-listen", "[fe80::1%eth0]:1080"}, "--proxy-listen"},
		{[]string{"--proxy-handshakes", "epoll"}, "want gnet or relay"},
		{[]string{"--engine", "goroutine", "--proxy-handshakes", "relay"}, "needs the splice engine"},
		{[]string{"--nat64-prefix", "64:ff9b::/95"}, "--nat64-prefix"},
		{[]string{"--nat64-prefix", "2001:db8::ff00:0:0:0/96"}, "u octet"},
		{[]string{"--nat64-prefix", "192.0.2.0/24"}, "not an IPv6 prefix"},
		{[]string{"--he-first-family-count", "0"}, "--he-first-family-count"},
		{[]string{"--he-max-concurrent", "0"}, "--he-max-concurrent"},
		{[]string{"--admin-listen", "nonsense"}, "--admin-listen"},
		{[]string{"stray"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := Parse(tt.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
}

// TestNAT64PrefixFlag holds --nat64-prefix to the rule the data path applies: every prefix the
// flag accepts is one nat64.Prefixes keeps (none dropped silently at start), every one it refuses
// nat64.ValidPrefix refuses too, and the messages stay what users have seen.
func TestNAT64PrefixFlag(t *testing.T) {
	const pre = `config: invalid value %q for --nat64-prefix (NAT464_NAT64_PREFIX): `
	tests := []struct {
		value string
		mode  string
		want  []string // the prefixes in use, in order
		err   string   // the whole message, %q is the value
	}{
		{value: "auto", mode: nat64.ModeAuto},
		{value: "none", mode: nat64.ModeNone},
		{value: "64:ff9b::/96", mode: nat64.ModeStatic, want: []string{"64:ff9b::/96"}},     // the WKP
		{value: "64:ff9b:1::/48", mode: nat64.ModeStatic, want: []string{"64:ff9b:1::/48"}}, // RFC 8215 local use
		{value: "2001:db8::/32", mode: nat64.ModeStatic, want: []string{"2001:db8::/32"}},   // shortest length
		{value: "2001:db8:100::/40", mode: nat64.ModeStatic, want: []string{"2001:db8:100::/40"}},
		{value: "2001:db8:0:100::/56", mode: nat64.ModeStatic, want: []string{"2001:db8:0:100::/56"}},
		{value: "2001:db8:1:2::/64", mode: nat64.ModeStatic, want: []string{"2001:db8:1:2::/64"}},
		// Bits 64-71 lie past a /64: masked off, not a u octet.
		{value: "2001:db8:1:2:ff00::/64", mode: nat64.ModeStatic, want: []string{"2001:db8:1:2::/64"}},
		// Bits 72-95 of a /96 are prefix bits like any other.
		{value: "2001:db8::1:0:0:0/96", mode: nat64.ModeStatic, want: []string{"2001:db8:0:0:1::/96"}},
		// Host bits are masked.
		{value: "64:ff9b::c000:201/96", mode: nat64.ModeStatic, want: []string{"64:ff9b::/96"}},
		{value: " 2001:db8:64::/96 , 64:ff9b::/96", mode: nat64.ModeStatic, want: []string{"2001:db8:64::/96", "64:ff9b::/96"}},
		// Given twice: accepted, used once.
		{value: "64:ff9b::/96,64:ff9b::1/96", mode: nat64.ModeStatic, want: []string{"64:ff9b::/96"}},
		{value: "64:ff9b::/95", err: pre + `64:ff9b::/95: length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 §2.2)`},
		{value: "64:ff9b::/128", err: pre + `64:ff9b::/128: length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 §2.2)`},
		{value: "::/0", err: pre + `::/0: length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 §2.2)`},
		{value: "2001:db8::/72", err: pre + `2001:db8::/72: length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 §2.2)`},
		{value: "2001:db8::ff00:0:0:0/96", err: pre + `2001:db8:0:0:ff00::/96: bits 64-71 (the u octet) must be zero (RFC 6052 §2.2)`},
		{value: "2001:db8::100:0:0:0/96", err: pre + `2001:db8:0:0:100::/96: bits 64-71 (the u octet) must be zero (RFC 6052 §2.2)`},
		{value: "64:ff9b::/96,2001:db8::ff00:0:0:0/96", err: pre + `2001:db8:0:0:ff00::/96: bits 64-71 (the u octet) must be zero (RFC 6052 §2.2)`},
		{value: "192.0.2.0/24", err: pre + `192.0.2.0/24: not an IPv6 prefix`},
		{value: "::ffff:0:0/96", err: pre + `::ffff:0.0.0.0/96: not an IPv6 prefix`},
		{value: "fe80::%eth0/64", err: pre + `want auto, none or IPv6 prefixes: netip.ParsePrefix("fe80::%eth0/64"): IPv6 zones cannot be present in a prefix`},
		{value: "64:ff9b::/96,", err: pre + `want auto, none or IPv6 prefixes: netip.ParsePrefix(""): no '/'`},
		{value: "static", err: pre + `want auto, none or IPv6 prefixes: netip.ParsePrefix("static"): no '/'`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Parse([]string{"--nat64-prefix", tt.value}, env(nil), io.Discard)
			if tt.err != "" {
				if want := strings.Replace(tt.err, "%q", strconv.Quote(tt.value), 1); err == nil || err.Error() != want {
					t.Fatalf("err = %v,\nwant %s", err, want)
				}
				for _, item := range strings.Split(tt.value, ",") {
					p, perr := netip.ParsePrefix(strings.TrimSpace(item))
					if perr == nil && nat64.ValidPrefix(p) != nil && !errors.Is(err, nat64.ErrBadPrefix) {
						t.Errorf("refused by nat64's rule, but err %v does not wrap nat64.ErrBadPrefix", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NAT64Mode != tt.mode {
				t.Errorf("mode %q, want %q", c.NAT64Mode, tt.mode)
			}
			for _, p := range c.NAT64Prefixes {
				if err := nat64.ValidPrefix(p); err != nil {
					t.Errorf("the flag accepted %s, which nat64 refuses: %v", p, err)
				}
			}
			// What the data path does with the flag's result (main passes both fields as is).
			ps := &nat64.Prefixes{Mode: c.NAT64Mode, Configured: c.NAT64Prefixes}
			var got []string
			for _, p := range ps.Current() {
				got = append(got, p.String())
			}
			if tt.mode == nat64.ModeStatic && (!slices.Equal(got, tt.want) || ps.Source() != nat64.SourceConfigured) {
				t.Errorf("in use: %v (%s), want %v (%s)", got, ps.Source(), tt.want, nat64.SourceConfigured)
			}
		})
	}
}

func TestParseProxyListen(t *testing.T) {
	tests := []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "[127.0.0.1:1080 [::1]:1080]"},
		{[]string{"--proxy-listen", "[::1]:1081"}, "", "[[::1]:1081]"},
		{[]string{"--proxy-listen", "127.0.0.1:1080, [::1]:1080"}, "", "[127.0.0.1:1080 [::1]:1080]"},
		{[]string{"--proxy-listen", "127.0.0.1:1", "--proxy-listen", "[::1]:2"}, "", "[[::1]:2]"}, // the last wins
		{[]string{"--proxy-listen", "127.0.0.1:1", "--proxy-listen", "off"}, "", "[]"},
		{nil, "[::1]:3,127.0.0.1:3", "[[::1]:3 127.0.0.1:3]"},
		{[]string{"--proxy-listen", "127.0.0.1:4"}, "[::1]:3", "[127.0.0.1:4]"}, // the flag wins
		{[]string{"--proxy-listen", "off"}, "", "[]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+" env="+tt.env, func(t *testing.T) {
			c, err := Parse(tt.args, env(map[string]string{"NAT464_PROXY_LISTEN": tt.env}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(c.ProxyListen); got != tt.want {
				t.Errorf("ProxyListen = %s, want %s", got, tt.want)
			}
			if c.ProxyListenDefault != (tt.args == nil && tt.env == "") {
				t.Errorf("ProxyListenDefault = %v", c.ProxyListenDefault)
			}
		})
	}
}

func TestParseEnvTwins(t *testing.T) {
	c, err := Parse([]string{"--engine", "goroutine"}, env(map[string]string{
		"NAT464_INBOUND":           "8080=80, [2001:db8::1]:9090=127.0.0.1:90",
		"NAT464_ENGINE":            "splice", // the flag wins
		"NAT464_MAX_CONNS":         "100",
		"NAT464_PROXY_LISTEN":      "off",
		"NAT464_NAT64_PREFIX":      "2001:db8:64::/96,64:ff9b::/96",
		"NAT464_HE_ATTEMPT_DELAY":  "100ms",
		"NAT464_NAT64_STRICT":      "true",
		"NAT464_DRAIN_TIMEOUT":     "5s",
		"NAT464_HANDSHAKE_TIMEOUT": "3s",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Inbound) != 2 || c.Inbound[1].Listen.String() != "[2001:db8::1]:9090" {
		t.Errorf("Inbound = %v", c.Inbound)
	}
	if c.Engine != EngineGoroutine || c.MaxConns != 100 || c.MaxConnsDerived || c.ProxyListen != nil {
		t.Errorf("engine %q max %d derived %v proxy %v", c.Engine, c.MaxConns, c.MaxConnsDerived, c.ProxyListen)
	}
	if c.NAT64Mode != "static" || len(c.NAT64Prefixes) != 2 || !c.NAT64Strict || c.HEAttemptDelay != 100*time.Millisecond {
		t.Errorf("nat64 %q %v strict %v delay %v", c.NAT64Mode, c.NAT64Prefixes, c.NAT64Strict, c.HEAttemptDelay)
	}
	if _, err := Parse(nil, env(map[string]string{"NAT464_IDLE_TIMEOUT": "soon"}), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "NAT464_IDLE_TIMEOUT") {
		t.Errorf("bad env value: err = %v, want it to name NAT464_IDLE_TIMEOUT", err)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("he-first-family-count"); got != "NAT464_HE_FIRST_FAMILY_COUNT" {
		t.Errorf("EnvName = %q", got)
	}
}

// TestEngineAuto: --engine auto means what splice.ResolveEngine says, the engine main builds, so
// the derived --max-conns counts the fds of the engine that actually runs.
func TestEngineAuto(t *testing.T) {
	for _, v := range []string{"auto", "splice", "goroutine"} {
		c, err := Parse([]string{"--engine", v}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := Engine(splice.ResolveEngine(v))
		if got := c.ResolvedEngine(); got != want {
			t.Errorf("--engine %s resolves to %q, splice.ResolveEngine says %q", v, got, want)
		}
		if c.Engine != Engine(v) {
			t.Errorf("--engine %s: Engine = %q, want the value as given", v, c.Engine)
		}
		if c.MaxConns != DefaultMaxConns(want) {
			t.Errorf("--engine %s: derived --max-conns %d, want %d (the %s engine's)", v, c.MaxConns, DefaultMaxConns(want), want)
		}
	}
}

func TestMaxConnsFor(t *testing.T) {
	if got := maxConnsFor(20000, EngineSplice); got != (20000-fdReserve-2*splice.DefaultMaxPipes)/2 {
		t.Errorf("maxConnsFor(20000, splice) = %d", got)
	}
	if got := maxConnsFor(20000, EngineGoroutine); got != (20000-fdReserve)/6 {
		t.Errorf("maxConnsFor(20000, goroutine) = %d", got)
	}
	if got := maxConnsFor(10, EngineSplice); got != 16 {
		t.Errorf("maxConnsFor(10) = %d, want the floor 16", got)
	}
}

func FuzzParseMapping(f *testing.F) {
	for _, s := range []string{"8080=127.0.0.1:80", "8080=80", "[2001:db8::5]:8080=1.2.3.4:5", "=", "[::]:0=[::]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMapping(s)
		if err != nil {
			return
		}
		if !m.Listen.Addr().Is6() || m.Listen.Port() == 0 || m.Target.Port() == 0 {
			t.Fatalf("accepted %q as %v", s, m)
		}
		again, err := ParseMapping(m.String())
		if err != nil || again != m {
			t.Fatalf("round trip of %q: %v, %v", m.String(), again, err)
		}
	})
}

// TestEgressPolicyFlag: --egress-policy and its twin NAT464_EGRESS_POLICY; the flag wins.
func TestEgressPolicyFlag(t *testing.T) {
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil || c.EgressPolicy != "" {
		t.Fatalf("default: %q %v", c.EgressPolicy, err)
	}
	c, err = Parse(nil, env(map[string]string{"NAT464_EGRESS_POLICY": "/etc/nat464/policy"}), io.Discard)
	if err != nil || c.EgressPolicy != "/etc/nat464/policy" {
		t.Errorf("twin: %q %v", c.EgressPolicy, err)
	}
	c, err = Parse([]string{"--egress-policy", "/p"}, env(map[string]string{"NAT464_EGRESS_POLICY": "/q"}), io.Discard)
	if err != nil || c.EgressPolicy != "/p" {
		t.Errorf("flag over twin: %q %v", c.EgressPolicy, err)
	}
}
