package resolver

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

func TestCacheHitAndExpiry(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.srv.AddAAAA("web.example", 30*time.Second, "2001:db8::1")
	e.srv.AddA("web.example", 60*time.Second, "192.0.2.1")

	v6, v4 := lookup(t, e.res, "web.example.")
	if v6.TTL != 30*time.Second || v4.TTL != 60*time.Second {
		t.Errorf("TTLs %v %v, want 30s 60s", v6.TTL, v4.TTL)
	}
	e.clock.Advance(10 * time.Second)
	v6, _ = lookup(t, e.res, "web.example.")
	if v6.TTL != 20*time.Second || !slices.Equal(v6.Addrs, addrs("2001:db8::1")) {
		t.Errorf("cached AAAA %+v, want 20s left", v6)
	}
	if n := e.srv.Count("web.example", 0, ""); n != 2 {
		t.Fatalf("cache hit sent queries: %d in total, want 2", n)
	}
	e.clock.Advance(21 * time.Second) // AAAA expired, A still fresh
	lookup(t, e.res, "web.example.")
	if a, b := e.srv.Count("web.example", dns.TypeAAAA, ""), e.srv.Count("web.example", dns.TypeA, ""); a != 2 || b != 1 {
		t.Errorf("after AAAA expiry: %d AAAA and %d A queries, want 2 and 1", a, b)
	}
}

func TestTTLClamps(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.MinTTL, c.MaxTTL = 10*time.Second, time.Minute })
	e.srv.AddAAAA("short.example", 0, "2001:db8::1")
	e.srv.AddAAAA("long.example", 48*time.Hour, "2001:db8::2")
	if v6, _ := lookup(t, e.res, "short.example."); v6.TTL != 10*time.Second {
		t.Errorf("TTL 0 clamped to %v, want 10s", v6.TTL)
	}
	if v6, _ := lookup(t, e.res, "long.example."); v6.TTL != time.Minute {
		t.Errorf("TTL 48h clamped to %v, want 1m", v6.TTL)
	}
}

func TestNegativeCache(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.srv.SetNegativeTTL(30 * time.Second)
	e.srv.AddA("v4only.example", time.Minute, "192.0.2.1")
	e.srv.Set("nosoa.example", 0, dnstest.Behavior{NoSOA: true})

	for range 2 {
		v6, _ := lookup(t, e.res, "gone.example.")
		if !errors.Is(v6.Err, ErrNXDomain) {
			t.Fatalf("gone: %v", v6.Err)
		}
		v6, _ = lookup(t, e.res, "v4only.example.")
		if !errors.Is(v6.Err, ErrNoData) {
			t.Fatalf("v4only: %v", v6.Err)
		}
		lookup(t, e.res, "nosoa.example.")
	}
	if n := e.srv.Count("gone.example", dns.TypeAAAA, ""); n != 1 {
		t.Errorf("NXDOMAIN not cached: %d AAAA queries", n)
	}
	if n := e.srv.Count("v4only.example", dns.TypeAAAA, ""); n != 1 {
		t.Errorf("NODATA not cached: %d AAAA queries", n)
	}
	if n := e.srv.Count("nosoa.example", dns.TypeAAAA, ""); n != 2 {
		t.Errorf("negative answer without SOA cached (RFC 2308 §5): %d AAAA queries", n)
	}
	e.clock.Advance(31 * time.Second)
	lookup(t, e.res, "gone.example.")
	if n := e.srv.Count("gone.example", dns.TypeAAAA, ""); n != 2 {
		t.Errorf("negative entry outlived its SOA TTL: %d AAAA queries", n)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	leakCheck(t)
	m := NewMetrics(nil)
	e := newEnv(t, func(c *Config) { c.Metrics = m })
	e.srv.AddAAAA("busy.example", time.Minute, "2001:db8::1")
	e.srv.AddA("busy.example", time.Minute, "192.0.2.1")
	hold := make(chan struct{})
	e.srv.Set("busy.example", 0, dnstest.Behavior{Hold: hold})

	const n = 100
	chans := make([]<-chan Answer, n)
	for i := range chans {
		chans[i] = e.res.Lookup(context.Background(), "busy.example.")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.WaitFor(ctx, "busy.example", 0, 2); err != nil {
		t.Fatal(err)
	}
	close(hold)
	for _, ch := range chans {
		as := collect(t, ch)
		if byFamily(as, 6).Err != nil || byFamily(as, 4).Err != nil {
			t.Fatalf("answers %+v", as)
		}
	}
	if a, b := e.srv.Count("busy.example", dns.TypeAAAA, ""), e.srv.Count("busy.example", dns.TypeA, ""); a != 1 || b != 1 {
		t.Errorf("%d AAAA and %d A queries, want exactly 1 and 1", a, b)
	}
	if started := counter(m.CacheMisses) - counter(m.Coalesced); started != 2 {
		t.Errorf("%v upstream calls started, want 2", started)
	}
}

func TestLateReplyFillsCache(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.LateReplyWindow = 5 * time.Second })
	e.srv.AddAAAA("late.example", time.Minute, "2001:db8::1")
	e.srv.AddA("late.example", time.Minute, "192.0.2.1")
	hold := make(chan struct{})
	e.srv.Set("late.example", 0, dnstest.Behavior{Hold: hold})

	ctx, cancel := context.WithCancel(context.Background())
	ch := e.res.Lookup(ctx, "late.example.")
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := e.srv.WaitFor(wctx, "late.example", 0, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	for _, a := range collect(t, ch) {
		if !errors.Is(a.Err, context.Canceled) {
			t.Errorf("cancelled lookup answered %+v", a)
		}
	}
	close(hold)
	v6, v4 := lookup(t, e.res, "late.example.")
	if v6.Err != nil || v4.Err != nil {
		t.Fatalf("after the late reply: %+v %+v", v6, v4)
	}
	lookup(t, e.res, "late.example.")
	if n := e.srv.Count("late.example", 0, ""); n != 2 {
		t.Errorf("%d queries, want the 2 first ones to fill the cache", n)
	}
}

func TestMaxInFlight(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.MaxInFlight = 1 })
	e.srv.AddAAAA("one.example", time.Minute, "2001:db8::1")
	e.srv.AddA("one.example", time.Minute, "192.0.2.1")
	hold := make(chan struct{})
	e.srv.Set("one.example", 0, dnstest.Behavior{Hold: hold})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	as := collect(t, e.res.Lookup(ctx, "one.example."))
	queued := 0
	for _, a := range as {
		if !errors.Is(a.Err, ErrTimeout) || !errors.Is(a.Err, context.DeadlineExceeded) {
			t.Errorf("answer %+v, want the context deadline wrapped in ErrTimeout", a)
		}
		if errors.Is(a.Err, ErrQueued) {
			queued++
			if !strings.Contains(a.Err.Error(), "(1 in flight)") {
				t.Errorf("the queued query's error %q does not name the bound", a.Err)
			}
		}
	}
	if queued != 1 { // one family's query was sent and held, the other never left the queue
		t.Errorf("%d answers say their query was never sent, want 1: %+v", queued, as)
	}
	if n := e.srv.Count("one.example", 0, ""); n != 1 {
		t.Errorf("%d queries in flight with MaxInFlight 1", n)
	}
	close(hold)
	v6, v4 := lookup(t, e.res, "one.example.")
	if v6.Err != nil || v4.Err != nil {
		t.Errorf("after release: %+v %+v", v6, v4)
	}
}

func TestCachedSearchWalk(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.Search, c.Ndots = k8sSearch, 5 })
	e.srv.AddAAAA("db.svc.cluster.local", time.Minute, "2001:db8::db")
	first6, first4 := lookup(t, e.res, "db")
	sent := e.srv.Count("", 0, "")
	for range 3 {
		v6, v4 := lookup(t, e.res, "db")
		if !reflect.DeepEqual([]Answer{v6, v4}, []Answer{first6, first4}) {
			t.Errorf("cached answers %+v %+v differ from %+v %+v", v6, v4, first6, first4)
		}
	}
	if first6.Name != "db.svc.cluster.local." || sent != 4 || e.srv.Count("", 0, "") != sent {
		t.Errorf("name %q, %d queries first, %d after cached lookups", first6.Name, sent, e.srv.Count("", 0, ""))
	}
}
