package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

// silentServer is what the real resolver reports for a family no nameserver answered.
func silentServer(family int, tries int) resolver.Answer {
	qtype := map[int]string{6: "AAAA", 4: "A"}[family]
	return resolver.Answer{Family: family, Err: &resolver.NoAnswerError{Name: "example.test.", Types: []string{qtype},
		Servers: []string{"192.0.2.53:53 (udp)"}, Tries: tries, PerTry: time.Second, Waited: 3 * time.Second}}
}

// TestResolutionCause: when no address ever arrived, the race's error is the resolver's, not
// "no connection within Timeout"; it fails as soon as the resolver does, and counts as dns.
func TestResolutionCause(t *testing.T) {
	cases := []struct {
		name     string
		answers  []timedAnswer
		closeAt  time.Duration
		onCancel []resolver.Answer
		elapsed  time.Duration
		want     string // the error's text after "dial tcp: eyeballs: resolve example.test: "
		deadline bool   // wraps context.DeadlineExceeded
		nodata   bool   // wraps resolver.ErrNoData
	}{
		{
			name:    "nameserver silent, the resolver gives up first",
			answers: []timedAnswer{{2 * time.Second, silentServer(6, 2)}, {2 * time.Second, silentServer(4, 2)}},
			elapsed: 2 * time.Second,
			want:    "resolver: no answer from 192.0.2.53:53 (udp) for example.test. AAAA/A within 2s (2 tries of 1s)",
		},
		{
			name:     "the race's deadline first, the resolver answers the cancelled lookup",
			closeAt:  time.Hour,
			onCancel: []resolver.Answer{silentServer(6, 0), silentServer(4, 0)},
			elapsed:  3 * time.Second, deadline: true,
			want: "resolver: no answer from 192.0.2.53:53 (udp) for example.test. AAAA/A within 3s (the lookup's deadline)",
		},
		{
			name:    "the resolver ends the cancelled lookup without a word",
			closeAt: time.Hour, elapsed: 3 * time.Second, deadline: true,
			want: "eyeballs: example.test: no answer from the resolver within 3s: context deadline exceeded",
		},
		{
			name:     "AAAA has no records, A never answered",
			answers:  []timedAnswer{{0, resolver.Answer{Family: 6, Err: fmt.Errorf("%w: example.test. AAAA", resolver.ErrNoData)}}},
			closeAt:  time.Hour,
			onCancel: []resolver.Answer{silentServer(4, 0)},
			elapsed:  3 * time.Second, deadline: true, nodata: true,
			want: resolver.ErrNoData.Error() + ": example.test. AAAA; " +
				"resolver: no answer from 192.0.2.53:53 (udp) for example.test. A within 3s (the lookup's deadline)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := NewMetrics(prometheus.NewRegistry())
				fr := &fakeResolver{answers: map[string][]timedAnswer{"example.test": tc.answers}, closeAt: tc.closeAt,
					onCancel: tc.onCancel}
				d := &Dialer{Resolver: fr, Timeout: 3 * time.Second, Metrics: m,
					HasIPv4Route: func() bool { return true }, DialAttempt: newFakeNet(nil).dial}
				start := time.Now()
				_, err := d.DialContext(t.Context(), "example.test", 443)
				if el := time.Since(start); el != tc.elapsed {
					t.Errorf("failed after %v, want %v", el, tc.elapsed)
				}
				if want := "dial tcp: eyeballs: resolve example.test: " + tc.want; err == nil || err.Error() != want {
					t.Errorf("err\n got %v\nwant %s", err, want)
				}
				var oe *net.OpError
				var ne net.Error
				if !errors.As(err, &oe) || !errors.Is(err, resolver.ErrTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("err %v: want a timeout *net.OpError wrapping resolver.ErrTimeout", err)
				}
				if got := errors.Is(err, context.DeadlineExceeded); got != tc.deadline {
					t.Errorf("wraps context.DeadlineExceeded: %v, want %v", got, tc.deadline)
				}
				if got := errors.Is(err, resolver.ErrNoData); got != tc.nodata {
					t.Errorf("wraps resolver.ErrNoData: %v, want %v", got, tc.nodata)
				}
				if strings.Contains(err.Error(), "no connection within") {
					t.Errorf("err %q blames the connect", err)
				}
				if got := testutil.ToFloat64(m.failures.WithLabelValues(ReasonDNS)); got != 1 {
					t.Errorf("race_failures_total{dns} = %v, want 1", got)
				}
				synctest.Wait()
			})
		})
	}
}

// An address that did arrive but never connected is still a connect timeout.
func TestConnectTimeoutStillBlamesTheConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &Dialer{Resolver: &fakeResolver{answers: map[string][]timedAnswer{"h": {{0, aaaa(v6a)}}},
			onCancel: []resolver.Answer{silentServer(4, 0)}, closeAt: time.Hour},
			Timeout: time.Second, HasIPv4Route: func() bool { return true }, DialAttempt: newFakeNet(nil).dial}
		_, err := d.DialContext(t.Context(), "h", 443)
		if err == nil || !strings.Contains(err.Error(), "no connection within 1s") || errors.Is(err, resolver.ErrTimeout) {
			t.Errorf("err = %v, want the connect's timeout", err)
		}
		synctest.Wait()
	})
}

var errTestSelf = errors.New("test: that is me")

// TestApprove: a refused candidate is skipped without a connect, the next is tried; a race
// with every candidate refused fails with ErrNotAllowed and Approve's error, counted as
// policy; Direct refuses the same way, and both see the address after NAT64 synthesis.
func TestApprove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		fn := newFakeNet(map[string]outcome{v4a: {delay: ms(1)}, "64:ff9b::c000:201": {delay: ms(1)}})
		var asked []netip.AddrPort
		d := &Dialer{
			Resolver: &fakeResolver{answers: map[string][]timedAnswer{
				"mixed": {{0, aaaa(v6a)}, {0, a4(v4a)}},
				"me":    {{0, aaaa(v6a, v6b)}},
			}},
			NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return true }, DialAttempt: fn.dial, Metrics: m,
			Approve: func(ap netip.AddrPort) error {
				asked = append(asked, ap)
				if ap.Addr().Is6() && !nat64.WKP.Contains(ap.Addr()) {
					return fmt.Errorf("%w: %s", errTestSelf, ap)
				}
				return nil
			},
		}
		c, err := d.DialContext(t.Context(), "mixed", 443)
		if err != nil || c.RemoteAddr().String() != v4a+":443" {
			t.Fatalf("mixed: %v %v, want %s", c, err, v4a)
		}
		if got := fmtStarts(fn.starts()); !slices.Equal(got, []string{"0s tcp4 " + v4a}) {
			t.Errorf("attempts %q, want only the approved %s", got, v4a)
		}
		_, err = d.DialContext(t.Context(), "me", 443)
		var oe *net.OpError
		if !errors.Is(err, ErrNotAllowed) || !errors.Is(err, errTestSelf) || !errors.As(err, &oe) {
			t.Errorf("every candidate refused: err %v, want a *net.OpError wrapping ErrNotAllowed and Approve's error", err)
		}
		_, _, ok, err := d.Direct(v6a, 443)
		if !ok || !errors.Is(err, ErrNotAllowed) || !errors.Is(err, errTestSelf) {
			t.Errorf("Direct(%s): ok %v, err %v; want a refusal", v6a, ok, err)
		}
		d.HasIPv4Route = func() bool { return false }
		if target, done, ok, err := d.Direct("192.0.2.1", 443); !ok || err != nil || target.String() != "[64:ff9b::c000:201]:443" {
			t.Errorf("Direct(192.0.2.1) = %v, %v, %v; want the synthesized address approved", target, ok, err)
		} else {
			done(nil)
		}
		want := []string{"[2001:db8::a]:443", "198.51.100.10:443", "[2001:db8::a]:443", "[2001:db8::b]:443",
			"[2001:db8::a]:443", "[64:ff9b::c000:201]:443"}
		if got := fmt.Sprint(asked); got != fmt.Sprint(want) {
			t.Errorf("Approve asked %v, want %v", got, want)
		}
		if got := testutil.ToFloat64(m.failures.WithLabelValues(ReasonPolicy)); got != 2 {
			t.Errorf("race_failures_total{policy} = %v, want 2 (the race and Direct)", got)
		}
		if got := sumCounters(m.attempts); got != 2 {
			t.Errorf("attempts_total = %v, want 2 (no refused address is attempted)", got)
		}
		synctest.Wait()
	})
}
