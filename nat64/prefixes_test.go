package nat64

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// reply is one scripted answer of fakeQuerier; block waits for the query context instead.
type reply struct {
	addrs []netip.Addr
	ttl   time.Duration
	err   error
	block bool
}

// fakeQuerier answers from a script (the last reply repeats) and records when it was asked.
type fakeQuerier struct {
	mu     sync.Mutex
	start  time.Time
	script []reply
	calls  []time.Duration
}

func (q *fakeQuerier) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	q.mu.Lock()
	if name != WellKnownName {
		q.mu.Unlock()
		return nil, 0, fmt.Errorf("unexpected name %q", name)
	}
	q.calls = append(q.calls, time.Since(q.start))
	r := q.script[min(len(q.calls)-1, len(q.script)-1)]
	q.mu.Unlock()
	if r.block {
		<-ctx.Done()
		return nil, 0, ctx.Err()
	}
	return r.addrs, r.ttl, r.err
}

func (q *fakeQuerier) times() []time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.calls)
}

var errNoData = errors.New("test: no data")

type change struct {
	prefixes []netip.Prefix
	source   string
}

// runFor runs p for d of virtual time and returns the OnChange calls.
func runFor(t *testing.T, p *Prefixes, d time.Duration) []change {
	var mu sync.Mutex
	var changes []change
	p.OnChange = func(ps []netip.Prefix, src string) {
		mu.Lock()
		changes = append(changes, change{ps, src})
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(d)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return changes
}

func TestDiscovery(t *testing.T) {
	nsp64 := wkaPair(t, "2001:db8:1:2::/64")
	nsp96 := wkaPair(t, "2001:db8:64::/96")
	tests := []struct {
		name   string
		script []reply
		run    time.Duration
		calls  []time.Duration
		want   []netip.Prefix
		source string
		result string
	}{
		{"wkp, refresh 10s before TTL", []reply{{addrs: addrs("64:ff9b::c000:aa", "64:ff9b::c000:ab"), ttl: 300 * time.Second}},
			600 * time.Second, []time.Duration{0, 290 * time.Second, 580 * time.Second},
			prefixes("64:ff9b::/96"), SourceDiscovered, ResultOK},
		{"nsp /64", []reply{{addrs: nsp64, ttl: 3600 * time.Second}}, time.Minute, []time.Duration{0},
			prefixes("2001:db8:1:2::/64"), SourceDiscovered, ResultOK},
		{"nsp /96, short TTL floored", []reply{{addrs: nsp96, ttl: 5 * time.Second}}, 25 * time.Second,
			[]time.Duration{0, 10 * time.Second, 20 * time.Second}, prefixes("2001:db8:64::/96"), SourceDiscovered, ResultOK},
		{"two prefixes in order", []reply{{addrs: append(slices.Clone(nsp96), nsp64...), ttl: time.Hour}}, time.Second,
			[]time.Duration{0}, prefixes("2001:db8:64::/96", "2001:db8:1:2::/64"), SourceDiscovered, ResultOK},
		{"prefix containing c000:aa", []reply{{addrs: wkaPair(t, "2001:db8:c000:aa::/64"), ttl: time.Hour}}, time.Second,
			[]time.Duration{0}, prefixes("2001:db8:c000:aa::/64"), SourceDiscovered, ResultOK},
		{"no DNS64: NODATA held for its TTL", []reply{{err: errNoData, ttl: 60 * time.Second}}, 150 * time.Second,
			[]time.Duration{0, 60 * time.Second, 120 * time.Second}, prefixes("64:ff9b::/96"), SourceWellKnown, ResultNegative},
		{"answer without well-known address", []reply{{addrs: addrs("2001:db8::1"), ttl: 100 * time.Second}}, time.Second,
			[]time.Duration{0}, prefixes("64:ff9b::/96"), SourceWellKnown, ResultNoWKA},
		{"timeout: retried after RetryInterval", []reply{{block: true}}, 80 * time.Second,
			[]time.Duration{0, 35 * time.Second, 70 * time.Second}, prefixes("64:ff9b::/96"), SourceWellKnown, ResultTimeout},
		{"negative after discovery: back to WKP", []reply{{addrs: nsp64, ttl: 20 * time.Second}, {err: errNoData, ttl: time.Hour}},
			15 * time.Second, []time.Duration{0, 10 * time.Second}, prefixes("64:ff9b::/96"), SourceWellKnown, ResultNegative},
		{"timeout after discovery keeps the prefix", []reply{{addrs: nsp64, ttl: 20 * time.Second}, {block: true}},
			20 * time.Second, []time.Duration{0, 10 * time.Second}, prefixes("2001:db8:1:2::/64"), SourceDiscovered, ResultTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				q := &fakeQuerier{start: time.Now(), script: tc.script}
				p := &Prefixes{Querier: q, Metrics: NewMetrics(reg)}
				changes := runFor(t, p, tc.run)
				if got := q.times(); !slices.Equal(got, tc.calls) {
					t.Errorf("queries at %v, want %v", got, tc.calls)
				}
				if got, src := p.Current(), p.Source(); !slices.Equal(got, tc.want) || src != tc.source {
					t.Errorf("state %v %q, want %v %q", got, src, tc.want, tc.source)
				}
				if len(changes) == 0 || !slices.Equal(changes[len(changes)-1].prefixes, tc.want) {
					t.Errorf("OnChange calls %v", changes)
				}
				if n := value(t, p.Metrics.discovery.WithLabelValues(tc.result)); n < 1 {
					t.Errorf("discovery_total{result=%q} = %v", tc.result, n)
				}
				if n := value(t, p.Metrics.prefixInfo.WithLabelValues(tc.want[0].String(), tc.source)); n != 1 {
					t.Errorf("prefix_info = %v", n)
				}
			})
		})
	}
}

func TestDiscoveryReadyAndTimeoutSeam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQuerier{start: time.Now(), script: []reply{{block: true}}}
		var waits []time.Duration
		p := &Prefixes{Querier: q, QueryTimeout: 2 * time.Second, RetryInterval: time.Minute,
			Wait: func(ctx context.Context, d time.Duration) error {
				waits = append(waits, d)
				return errors.New("stop")
			}}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- p.Run(t.Context()) }()
		<-p.Ready()
		if el := time.Since(start); el != 2*time.Second {
			t.Errorf("ready after %v, want the 2s query timeout", el)
		}
		if err := <-done; err == nil || err.Error() != "stop" {
			t.Errorf("Run = %v", err)
		}
		if !slices.Equal(waits, []time.Duration{time.Minute}) || p.Source() != SourceWellKnown {
			t.Errorf("waits %v source %q", waits, p.Source())
		}
	})
}

func TestModes(t *testing.T) {
	nsp := netip.MustParsePrefix("2001:db8:64::/96")
	tests := []struct {
		name   string
		p      *Prefixes
		want   []netip.Prefix
		source string
		synth  string // "" when Synthesize must fail with ErrNoPrefix
	}{
		{"zero value", &Prefixes{}, []netip.Prefix{WKP}, SourceWellKnown, "64:ff9b::c633:6407"},
		{"static", &Prefixes{Mode: ModeStatic, Configured: []netip.Prefix{nsp, WKP, nsp, netip.MustParsePrefix("2001:db8::/33")}},
			[]netip.Prefix{nsp, WKP}, SourceConfigured, "2001:db8:64::c633:6407"},
		{"static without prefixes", &Prefixes{Mode: ModeStatic}, nil, SourceNone, ""},
		{"none", &Prefixes{Mode: ModeNone}, nil, SourceNone, ""},
	}
	v4 := netip.MustParseAddr("198.51.100.7")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []change
			tc.p.OnChange = func(ps []netip.Prefix, src string) { got = append(got, change{ps, src}) }
			if err := tc.p.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			<-tc.p.Ready()
			if len(got) != 1 || !slices.Equal(got[0].prefixes, tc.want) || got[0].source != tc.source {
				t.Errorf("OnChange %v", got)
			}
			if !slices.Equal(tc.p.Current(), tc.want) || tc.p.Source() != tc.source || tc.p.HasPrefix() != (tc.want != nil) {
				t.Errorf("state %v %q", tc.p.Current(), tc.p.Source())
			}
			a, err := tc.p.Synthesize(v4)
			if tc.synth == "" {
				if !errors.Is(err, ErrNoPrefix) {
					t.Errorf("Synthesize = %s %v, want ErrNoPrefix", a, err)
				}
				return
			}
			if err != nil || a != netip.MustParseAddr(tc.synth) {
				t.Errorf("Synthesize = %s %v, want %s", a, err, tc.synth)
			}
			for _, pre := range tc.want {
				s, _ := Compose(pre, v4)
				if back, ok := tc.p.Desynthesize(s); !ok || back != v4 {
					t.Errorf("Desynthesize(%s) = %s %v", s, back, ok)
				}
			}
			if _, ok := tc.p.Desynthesize(netip.MustParseAddr("2001:db9::1")); ok {
				t.Error("Desynthesize of a native address succeeded")
			}
		})
	}
}

func TestSynthesizePolicy(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &Prefixes{Policy: Policy{Strict: true}, Metrics: NewMetrics(reg)}
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "224.0.0.1"} {
		if _, err := p.Synthesize(netip.MustParseAddr(s)); !errors.Is(err, ErrPolicy) {
			t.Errorf("Synthesize(%s) = %v, want ErrPolicy", s, err)
		}
	}
	if _, err := p.Synthesize(netip.MustParseAddr("8.8.8.8")); err != nil {
		t.Fatal(err)
	}
	if d, s := value(t, p.Metrics.denied), value(t, p.Metrics.synthesized); d != 3 || s != 1 {
		t.Errorf("denied %v synthesized %v", d, s)
	}
	var nilMetrics *Metrics
	nilMetrics.deniedOne()
	nilMetrics.synthesizedOne()
	nilMetrics.discoveryRound(ResultOK)
	nilMetrics.setPrefixes([]netip.Prefix{WKP}, SourceWellKnown)
}

func TestConcurrentUse(t *testing.T) {
	q := &fakeQuerier{start: time.Now(), script: []reply{{addrs: wkaPair(t, "2001:db8:1::/48"), ttl: time.Hour}}}
	p := &Prefixes{Querier: q}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				a, err := p.Synthesize(netip.MustParseAddr("192.0.2.1"))
				if err == nil {
					p.Desynthesize(a)
				}
				p.Current()
				p.Source()
			}
		})
	}
	wg.Wait()
	<-p.Ready()
	cancel()
	<-done
	if p.Source() != SourceDiscovered {
		t.Errorf("source %q", p.Source())
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", m.Desc())
	return 0
}
