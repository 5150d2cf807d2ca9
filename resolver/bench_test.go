package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counter reads a counter's value.
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func BenchmarkLookupCacheHit(b *testing.B) {
	e := newEnv(b, nil)
	e.srv.AddAAAA("hot.example", time.Hour, "2001:db8::1")
	e.srv.AddA("hot.example", time.Hour, "192.0.2.1")
	lookup(b, e.res, "hot.example.")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for a := range e.res.Lookup(ctx, "hot.example.") {
			if a.Err != nil {
				b.Fatal(a.Err)
			}
		}
	}
	if n := e.srv.Count("", 0, ""); n != 2 {
		b.Errorf("%d queries, want only the 2 warming ones", n)
	}
}
