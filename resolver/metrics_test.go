package resolver

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	leakCheck(t)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	e := newEnv(t, func(c *Config) { c.Metrics = m })
	e.srv.AddAAAA("m.example", time.Minute, "2001:db8::1")
	e.srv.Set("t.example", 0, dnstest.Behavior{Truncate: true})
	lookup(t, e.res, "m.example.")
	lookup(t, e.res, "m.example.")
	lookup(t, e.res, "t.example.")

	checks := []struct {
		name string
		c    prometheus.Counter
		want float64
	}{
		{"AAAA NOERROR", m.Queries.WithLabelValues("AAAA", "NOERROR"), 1},
		{"A NOERROR (NODATA)", m.Queries.WithLabelValues("A", "NOERROR"), 1},
		{"A truncated over udp", m.Queries.WithLabelValues("A", "truncated"), 1},
		{"A NXDOMAIN over tcp", m.Queries.WithLabelValues("A", "NXDOMAIN"), 1},
		{"tcp fallbacks", m.TCPFallbacks, 2},
		{"cache hits", m.CacheHits, 2},
		{"cache misses", m.CacheMisses, 4},
	}
	for _, c := range checks {
		if got := counter(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetHelp() == "" || !strings.HasPrefix(mf.GetName(), "nat464_resolver_") {
			t.Errorf("metric %s: help %q", mf.GetName(), mf.GetHelp())
		}
	}
	if len(mfs) != 9 {
		t.Errorf("gathered %d metric families, want 9", len(mfs))
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.query(dns.TypeA, "timeout")
	m.tcpFallback()
	m.lookupDone(time.Second)
	m.cacheHit()
	m.cacheMiss(true)
	m.inFlight(1)
	m.inFlightWait()
}
