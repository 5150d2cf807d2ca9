package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/policy"
	"github.com/nat464/nat464-sidecar/resolver"
)

// countingResolver counts lookups.
type countingResolver struct {
	Resolver
	n atomic.Int32
}

func (c *countingResolver) Lookup(ctx context.Context, host string) <-chan resolver.Answer {
	c.n.Add(1)
	return c.Resolver.Lookup(ctx, host)
}

func testPolicy(t *testing.T, file string) *policy.Engine {
	t.Helper()
	p, err := policy.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	e := &policy.Engine{Desynthesize: fakeNAT64{}.Desynthesize}
	e.Set(p)
	return e
}

// TestPolicy: a denied name is refused before any lookup, on every driver; a name whose
// addresses a CIDR rule denies cannot reach them (a denied address is skipped like an
// unreachable one); NAT64 answers and synthesized literals are judged as their IPv4; a
// link-local literal is refused by the built-in rule, not by NAT64's own policy; Datagram
// obeys the same rules.
func TestPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		fn := newFakeNet(map[string]outcome{v6a: {delay: ms(1)}, "64:ff9b::c000:201": {delay: ms(1)}})
		res := &countingResolver{Resolver: &fakeResolver{answers: map[string][]timedAnswer{
			"sneaky.test": {{0, a4(v4a)}, {0, aaaa()}},                    // inside the denied range
			"dns64.test":  {{0, aaaa("64:ff9b::c633:640a")}, {0, a4()}},   // 198.51.100.10 via DNS64
			"mixed.test":  {{0, aaaa("2001:db8:bad::1", v6a)}, {0, a4()}}, // the first is denied
			"meta.test":   {{0, aaaa("64:ff9b::a9fe:a9fe")}, {0, a4()}},   // 169.254.169.254 via DNS64
		}}}
		d := &Dialer{Resolver: res, NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return false },
			DialAttempt: fn.dial, Metrics: m,
			Policy: testPolicy(t, "deny *.evil.test\ndeny 198.51.100.0/24\ndeny 2001:db8:bad::/48")}
		wantDenied := func(what string, err error, rule string) {
			t.Helper()
			var de *policy.DeniedError
			if !errors.Is(err, ErrNotAllowed) || !errors.As(err, &de) || de.Rule != rule {
				t.Errorf("%s: err %v, want ErrNotAllowed and the rule %q", what, err, rule)
			}
		}
		_, err := d.DialContext(t.Context(), "www.evil.test", 443)
		wantDenied("denied name", err, "deny *.evil.test")
		lr := d.LoopRace("www.EVIL.test.", 443)
		lr.Start(func() {})
		if _, _, done, err := lr.Next(time.Now()); !done {
			t.Error("LoopRace of a denied name is not over at once")
		} else {
			wantDenied("LoopRace", err, "deny *.evil.test")
		}
		if n := res.n.Load(); n != 0 {
			t.Errorf("%d lookups for denied names, want 0", n)
		}
		_, err = d.DialContext(t.Context(), "sneaky.test", 443)
		wantDenied("a name resolving into a denied range", err, "deny 198.51.100.0/24")
		_, err = d.DialContext(t.Context(), "dns64.test", 443)
		wantDenied("a DNS64 answer inside the denied range", err, "deny 198.51.100.0/24")
		_, err = d.DialContext(t.Context(), "meta.test", 80)
		wantDenied("a DNS64 answer for metadata", err, policy.RuleLinkLocal4)
		c, err := d.DialContext(t.Context(), "mixed.test", 443)
		if err != nil || c.RemoteAddr().String() != "["+v6a+"]:443" {
			t.Errorf("mixed.test: %v %v, want the allowed %s", c, err, v6a)
		}
		_, _, ok, err := d.Direct("169.254.169.254", 80)
		if !ok {
			t.Fatal("Direct: not a literal?")
		}
		wantDenied("metadata literal", err, policy.RuleLinkLocal4)
		_, _, _, err = d.Direct("64:ff9b::c633:640a", 80)
		wantDenied("synthesized literal", err, "deny 198.51.100.0/24")
		if target, done, _, err := d.Direct("192.0.2.1", 443); err != nil || target.String() != "[64:ff9b::c000:201]:443" {
			t.Errorf("Direct(192.0.2.1) = %v %v", target, err)
		} else {
			done(nil)
		}
		var got []string
		for _, a := range fn.starts() {
			got = append(got, fmt.Sprintf("%s %s", a.network, a.addr))
		}
		if !slices.Equal(got, []string{"tcp6 " + v6a}) {
			t.Errorf("attempts %q, want only %s: no denied address is ever connected", got, v6a)
		}
		if got := testutil.ToFloat64(m.failures.WithLabelValues(ReasonPolicy)); got != 7 {
			t.Errorf("race_failures_total{policy} = %v, want 7", got)
		}
		// Datagrams: the same rules.
		_, _, err = d.Datagram(t.Context(), "x.evil.test", 53)
		wantDenied("datagram to a denied name", err, "deny *.evil.test")
		_, _, err = d.Datagram(t.Context(), "sneaky.test", 53)
		wantDenied("datagram to a name in a denied range", err, "deny 198.51.100.0/24")
		_, _, err = d.Datagram(t.Context(), "169.254.169.254", 53)
		wantDenied("datagram to metadata", err, policy.RuleLinkLocal4)
		if to, _, err := d.Datagram(t.Context(), "mixed.test", 53); err != nil || to.Addr().String() != v6a {
			t.Errorf("datagram to mixed.test: %v %v, want %s", to, err, v6a)
		}
		synctest.Wait()
	})
}
