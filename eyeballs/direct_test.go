package eyeballs

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/nat464/nat464-sidecar/nat64"
)

// TestDirectAgreesWithRace: for every literal, Direct plans the very address DialContext's one
// attempt connects to, or fails the same way, and counts the attempt as the race would.
func TestDirectAgreesWithRace(t *testing.T) {
	cases := []struct {
		name    string
		host    string
		v4route bool
		nat     NAT64
		wantErr error // also what DialContext's error must wrap
	}{
		{name: "IPv4 with a route is native", host: "192.0.2.1", v4route: true, nat: fakeNAT64{}},
		{name: "IPv4 without a route is synthesized", host: "192.0.2.1", nat: fakeNAT64{}},
		{name: "loopback is native without a route", host: "127.0.0.1", nat: fakeNAT64{}},
		{name: "IPv6", host: "2001:db8::5", nat: fakeNAT64{}},
		{name: "bracketed IPv6", host: "[2001:db8::5]", nat: fakeNAT64{}},
		{name: "synthesized literal is de-synthesized, then native", host: "64:ff9b::c000:201", v4route: true, nat: fakeNAT64{}},
		{name: "no route and no prefix", host: "192.0.2.1", nat: fakeNAT64{none: true}, wantErr: syscall.ENETUNREACH},
		{name: "policy", host: "10.1.2.3", nat: &nat64.Prefixes{Policy: nat64.Policy{Strict: true}}, wantErr: nat64.ErrPolicy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				m := NewMetrics(reg)
				fn := newFakeNet(map[string]outcome{
					"192.0.2.1": {}, "64:ff9b::c000:201": {}, "127.0.0.1": {}, "2001:db8::5": {}})
				d := &Dialer{NAT64: tc.nat, HasIPv4Route: func() bool { return tc.v4route }, DialAttempt: fn.dial, Metrics: m}
				target, done, ok, err := d.Direct(tc.host, 443)
				if !ok {
					t.Fatalf("Direct(%q) is not ok", tc.host)
				}
				_, raceErr := d.DialContext(t.Context(), tc.host, 443)
				synctest.Wait()
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) || !errors.Is(raceErr, tc.wantErr) {
						t.Fatalf("Direct err %v, race err %v; want both to wrap %v", err, raceErr, tc.wantErr)
					}
					if got := sumCounters(m.failures); got != 2 {
						t.Errorf("failures counted %v, want 2 (one each)", got)
					}
					return
				}
				if err != nil || raceErr != nil {
					t.Fatalf("Direct err %v, race err %v", err, raceErr)
				}
				starts := fn.starts()
				if len(starts) != 1 || netip.AddrPortFrom(starts[0].addr, 443) != target {
					t.Fatalf("Direct planned %s, the race attempted %v", target, starts)
				}
				done(nil)
				if got := sumCounters(m.attempts); got != 2 {
					t.Errorf("attempts counted %v, want 2 (one each)", got)
				}
				if got := sumCounters(m.winners); got != 2 {
					t.Errorf("winners counted %v, want 2 (one each)", got)
				}
				_, done, _, _ = d.Direct(tc.host, 443)
				done(syscall.ECONNREFUSED)
				if got := testutil.ToFloat64(m.failures.WithLabelValues(ReasonRefused)); got != 1 {
					t.Errorf("refused failures %v, want 1", got)
				}
			})
		})
	}
}

// sumCounters adds up every series of a counter vector.
func sumCounters(v *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { v.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err == nil {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// TestDirectLeavesNamesToTheRace: names and scoped literals are not planned.
func TestDirectLeavesNamesToTheRace(t *testing.T) {
	d := &Dialer{NAT64: fakeNAT64{}}
	for _, host := range []string{"example.test", "fe80::1%eth0", "[fe80::1%lo]", ""} {
		if _, _, ok, err := d.Direct(host, 443); ok || err != nil {
			t.Errorf("Direct(%q) = ok %v, err %v; want not ok", host, ok, err)
		}
	}
}
