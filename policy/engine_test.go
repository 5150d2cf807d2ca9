package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// desynth is a WKP NAT64 for the tests.
func desynth(a netip.Addr) (netip.Addr, bool) {
	if !nat64Prefix.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

func synth(v4 string) string {
	b := netip.MustParseAddr(v4).As4()
	p := nat64Prefix.Addr().As16()
	copy(p[12:], b[:])
	return netip.AddrFrom16(p).String()
}

func mustEngine(t testing.TB, file string, self func(netip.AddrPort) error) *Engine {
	t.Helper()
	p, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Self: self, Desynthesize: desynth}
	e.Set(p)
	return e
}

// ruleOf returns the deciding rule of a refusal, "" for nil.
func ruleOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var de *DeniedError
	if !errors.As(err, &de) || !errors.Is(err, ErrDenied) {
		t.Fatalf("err %v is not a *DeniedError wrapping ErrDenied", err)
	}
	return de.Rule
}

// TestMatchNames: exact and wildcard names, case, trailing dots, ports, first match, default.
func TestMatchNames(t *testing.T) {
	e := mustEngine(t, `
allow api.example.com
deny  *.example.com 22
allow *.example.com 443,8000-8100
deny  *.evil.example
allow *.ok.evil.example
default deny
`, nil)
	for _, tc := range []struct {
		host string
		port uint16
		deny string // the refusing rule, "" for allowed
	}{
		{"api.example.com", 22, ""},   // exact, every port, first match
		{"API.Example.COM.", 80, ""},  // case and trailing dot
		{"www.example.com", 443, ""},  // wildcard
		{"a.b.example.com", 8050, ""}, // wildcard at any depth, range
		{"www.example.com", 22, "deny *.example.com 22"},
		{"www.example.com", 80, "default deny"}, // no rule for port 80
		{"example.com", 443, "default deny"},    // *.example.com does not match example.com
		{"badexample.com", 443, "default deny"}, // suffix without the dot
		{"x.evil.example", 443, "deny *.evil.example"},
		{"x.ok.evil.example", 443, "deny *.evil.example"}, // the first match wins
		{"other.example", 80, "default deny"},
	} {
		if got := ruleOf(t, e.CheckName(tc.host, tc.port)); got != tc.deny {
			t.Errorf("CheckName(%s, %d): denied by %q, want %q", tc.host, tc.port, got, tc.deny)
		}
	}
	if err := (&Engine{}).CheckName("anything.example", 1); err != nil {
		t.Errorf("no policy: %v", err)
	}
}

// TestMatchAddrs: CIDRs of both families, ports, NAT64-synthesized addresses as their IPv4,
// IPv4-mapped as IPv4, the built-in link-local rules and what overrides them, the default
// for literals, and the addresses of an allowed name.
func TestMatchAddrs(t *testing.T) {
	e := mustEngine(t, `
deny  198.51.100.0/24
allow 203.0.113.0/24 80,443
deny  2001:db8:bad::/48
allow 2001:db8::/32 80,443,8000-8100
allow 169.254.10.0/24 80
allow 0.0.0.0/0 8080
default deny
`, nil)
	for _, tc := range []struct {
		name, dest string
		deny       string
	}{
		{"", "198.51.100.7:443", "deny 198.51.100.0/24"},
		{"", "203.0.113.5:443", ""},
		{"", "203.0.113.5:22", "default deny"},
		{"", "[2001:db8::1]:8080", ""},
		{"", "[2001:db8::1]:22", "default deny"},
		{"", "[2001:db8:bad::1]:443", "deny 2001:db8:bad::/48"},
		{"", "[::ffff:198.51.100.7]:443", "deny 198.51.100.0/24"},           // mapped is IPv4
		{"", "[" + synth("198.51.100.7") + "]:443", "deny 198.51.100.0/24"}, // NAT64 as its IPv4
		{"", "[" + synth("203.0.113.9") + "]:80", ""},                       // allowed IPv4
		{"", "[" + synth("203.0.113.9") + "]:22", "default deny"},
		{"", "169.254.169.254:80", RuleLinkLocal4},                    // built-in
		{"", "169.254.169.254:8080", RuleLinkLocal4},                  // 0.0.0.0/0 does not open it
		{"", "[" + synth("169.254.169.254") + "]:80", RuleLinkLocal4}, // nor through NAT64
		{"", "169.254.10.1:80", ""},                                   // an allow inside overrides
		{"", "169.254.10.1:81", RuleLinkLocal4},
		{"", "[fe80::1]:80", RuleLinkLocal6},
		{"", "192.0.2.1:8080", ""},
		{"x.example", "192.0.2.1:80", ""},                         // a name's address, no rule: allowed
		{"x.example", "198.51.100.7:443", "deny 198.51.100.0/24"}, // a name cannot resolve around a deny
		{"x.example", "[" + synth("198.51.100.7") + "]:443", "deny 198.51.100.0/24"},
		{"x.example", "169.254.169.254:80", RuleLinkLocal4},
	} {
		if got := ruleOf(t, e.CheckAddr(tc.name, netip.MustParseAddrPort(tc.dest), netip.Addr{})); got != tc.deny {
			t.Errorf("CheckAddr(%q, %s): denied by %q, want %q", tc.name, tc.dest, got, tc.deny)
		}
	}
	// The built-in rules hold without a policy; an override needs an allow inside the range.
	var none Engine
	for dest, want := range map[string]string{"169.254.169.254:80": RuleLinkLocal4, "[fe80::a]:80": RuleLinkLocal6,
		"192.0.2.1:80": "", "[2001:db8::1]:443": ""} {
		if got := ruleOf(t, none.CheckAddr("", netip.MustParseAddrPort(dest), netip.Addr{})); got != want {
			t.Errorf("no policy, %s: %q, want %q", dest, got, want)
		}
	}
	open := mustEngine(t, "allow 169.254.0.0/16\nallow fe80::/10 80", nil)
	for dest, want := range map[string]string{"169.254.169.254:80": "", "[fe80::a]:80": "", "[fe80::a]:81": RuleLinkLocal6} {
		if got := ruleOf(t, open.CheckAddr("", netip.MustParseAddrPort(dest), netip.Addr{})); got != want {
			t.Errorf("overridden, %s: %q, want %q", dest, got, want)
		}
	}
}

// TestStandsFor: the dialer names the IPv4 a synthesized address stands for; the rules judge
// it even without Desynthesize (another NAT64 prefix than the engine knows).
func TestStandsFor(t *testing.T) {
	p, _ := Parse([]byte("deny 198.51.100.0/24"))
	e := &Engine{}
	e.Set(p)
	dest := netip.MustParseAddrPort("[2001:db8:64::c633:6407]:443")
	if got := ruleOf(t, e.CheckAddr("x.example", dest, netip.MustParseAddr("198.51.100.7"))); got != "deny 198.51.100.0/24" {
		t.Errorf("synthesized, v4 given: %q", got)
	}
	if got := ruleOf(t, e.CheckAddr("", dest, netip.MustParseAddr("169.254.169.254"))); got != RuleLinkLocal4 {
		t.Errorf("synthesized metadata, v4 given: %q", got)
	}
	if err := e.CheckAddr("x.example", dest, netip.Addr{}); err != nil {
		t.Errorf("no v4, no Desynthesize: %v", err)
	}
}

var errSelf = errors.New("test: own socket")

// TestSelfRule: the self rule comes first and no file rule overrides it.
func TestSelfRule(t *testing.T) {
	own := netip.MustParseAddrPort("127.0.0.1:1080")
	self := func(ap netip.AddrPort) error {
		if ap == own {
			return errSelf
		}
		return nil
	}
	e := mustEngine(t, "allow 127.0.0.0/8\nallow 0.0.0.0/0", self)
	err := e.CheckAddr("localhost", own, netip.Addr{})
	if ruleOf(t, err) != RuleSelf || !errors.Is(err, errSelf) {
		t.Errorf("own socket: %v, want the self rule wrapping its reason", err)
	}
	if err := e.CheckAddr("", netip.MustParseAddrPort("127.0.0.1:1081"), netip.Addr{}); err != nil {
		t.Errorf("another port: %v", err)
	}
}

func TestDeniedErrorText(t *testing.T) {
	e := mustEngine(t, "deny *.evil.example\ndeny 198.51.100.0/24\ndefault deny", nil)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{e.CheckName("www.evil.example", 443), `policy: www.evil.example:443 denied by rule "deny *.evil.example" (line 1)`},
		{e.CheckAddr("", netip.MustParseAddrPort("["+synth("198.51.100.7")+"]:80"), netip.Addr{}),
			`policy: [64:ff9b::c633:6407]:80 (NAT64 for 198.51.100.7) denied by rule "deny 198.51.100.0/24" (line 2)`},
		{e.CheckAddr("v4.example", netip.MustParseAddrPort("198.51.100.7:80"), netip.Addr{}),
			`policy: 198.51.100.7:80 (v4.example) denied by rule "deny 198.51.100.0/24" (line 2)`},
		{e.CheckAddr("", netip.MustParseAddrPort("192.0.2.1:80"), netip.Addr{}), `policy: 192.0.2.1:80 denied by rule "default deny" (line 3)`},
		{e.CheckAddr("", netip.MustParseAddrPort("169.254.169.254:80"), netip.Addr{}), `policy: 169.254.169.254:80 denied by rule "deny 169.254.0.0/16 (built-in)"`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("got %v\nwant %s", tc.err, tc.want)
		}
	}
}

// TestMetrics: one series per rule in force, counted per decision; a swap drops the series
// of rules that are gone.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := &Engine{Metrics: NewMetrics(reg)}
	p, _ := Parse([]byte("deny *.evil.example\nallow 192.0.2.0/24\ndefault deny"))
	e.Set(p)
	_ = e.CheckName("a.evil.example", 80)
	_ = e.CheckName("b.evil.example", 80)
	_ = e.CheckName("good.example", 80)
	_ = e.CheckAddr("", netip.MustParseAddrPort("192.0.2.1:80"), netip.Addr{})
	_ = e.CheckAddr("", netip.MustParseAddrPort("169.254.169.254:80"), netip.Addr{})
	_ = e.CheckAddr("good.example", netip.MustParseAddrPort("198.51.100.1:80"), netip.Addr{}) // a name's address, no rule: not counted
	for _, tc := range []struct {
		rule, action string
		want         float64
	}{
		{"deny *.evil.example", "deny", 2},
		{"allow 192.0.2.0/24", "allow", 1},
		{"default deny", "deny", 1},
		{RuleLinkLocal4, "deny", 1},
		{RuleSelf, "deny", 0},
	} {
		if got := testutil.ToFloat64(e.Metrics.decisions.WithLabelValues(tc.rule, tc.action)); got != tc.want {
			t.Errorf("decisions{%s,%s} = %v, want %v", tc.rule, tc.action, got, tc.want)
		}
	}
	q, _ := Parse([]byte("allow 192.0.2.0/24"))
	e.Set(q)
	// Left: the three built-ins, the kept rule and the new default.
	if n := testutil.CollectAndCount(e.Metrics.decisions); n != 5 {
		t.Errorf("%d series after the swap, want 5", n)
	}
	if got := testutil.ToFloat64(e.Metrics.decisions.WithLabelValues("allow 192.0.2.0/24", "allow")); got != 1 {
		t.Errorf("a kept rule's count = %v, want 1 (kept across the swap)", got)
	}
}

// TestHotSwap: checks running while policies are swapped see one policy or the other, never a
// torn one (run with -race).
func TestHotSwap(t *testing.T) {
	allow, _ := Parse([]byte("allow *.example.com\nallow 192.0.2.0/24\ndefault deny"))
	deny, _ := Parse([]byte("deny *.example.com\ndeny 192.0.2.0/24\ndefault allow"))
	e := &Engine{Metrics: NewMetrics(prometheus.NewRegistry())}
	e.Set(allow)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := e.CheckName("a.example.com", 443)
				a := e.CheckAddr("", netip.MustParseAddrPort("192.0.2.1:443"), netip.Addr{})
				if n != nil && ruleOf(t, n) != "deny *.example.com" || a != nil && ruleOf(t, a) != "deny 192.0.2.0/24" {
					t.Errorf("torn decision: %v / %v", n, a)
					return
				}
			}
		})
	}
	for i := range 2000 {
		if i%2 == 0 {
			e.Set(deny)
		} else {
			e.Set(allow)
		}
	}
	close(stop)
	wg.Wait()
	if e.Policy() != allow {
		t.Error("the last Set is not in force")
	}
}

func TestNilEngine(t *testing.T) {
	var e *Engine
	if e.CheckName("x", 1) != nil || e.CheckAddr("", netip.MustParseAddrPort("169.254.169.254:80"), netip.Addr{}) != nil || e.Policy() != nil {
		t.Error("a nil Engine must allow everything")
	}
}

// BenchmarkCheck measures a connect's policy cost with a 100-rule file: the name check and
// the address check of one request, the deciding rule at the end of each list (worst case).
func BenchmarkCheck(b *testing.B) {
	var f strings.Builder
	for i := range 50 {
		fmt.Fprintf(&f, "deny *.blocked%d.example 443\n", i)
		fmt.Fprintf(&f, "deny 2001:db8:%x::/48 443\n", i)
	}
	f.WriteString("default allow\n")
	e := mustEngine(b, f.String(), nil)
	e.Metrics = NewMetrics(prometheus.NewRegistry())
	e.Set(e.Policy())
	dest := netip.MustParseAddrPort("[" + synth("203.0.113.9") + "]:443")
	b.ReportAllocs()
	for b.Loop() {
		if e.CheckName("api.service.example.com", 443) != nil || e.CheckAddr("api.service.example.com", dest, netip.Addr{}) != nil {
			b.Fatal("denied")
		}
	}
}

// BenchmarkCheckNoPolicy is the cost with no policy file: the built-in rules only.
func BenchmarkCheckNoPolicy(b *testing.B) {
	e := &Engine{Desynthesize: desynth, Metrics: NewMetrics(prometheus.NewRegistry())}
	dest := netip.MustParseAddrPort("[" + synth("203.0.113.9") + "]:443")
	b.ReportAllocs()
	for b.Loop() {
		if e.CheckName("api.service.example.com", 443) != nil || e.CheckAddr("api.service.example.com", dest, netip.Addr{}) != nil {
			b.Fatal("denied")
		}
	}
}

func TestAllocs(t *testing.T) {
	e := mustEngine(t, example, nil)
	dest := netip.MustParseAddrPort("[2001:db8::1]:443")
	if n := testing.AllocsPerRun(100, func() {
		_ = e.CheckName("www.example.com", 443)
		_ = e.CheckAddr("www.example.com", dest, netip.Addr{})
	}); n != 0 {
		t.Errorf("%v allocations per allowed request, want 0", n)
	}
	_ = strings.ToLower
}
