package splice

import (
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsNilSafe(t *testing.T) {
	var m *Metrics
	m.attach(func() Stats { return Stats{Active: 1} })
	if got := m.stats(); got != (Stats{}) {
		t.Errorf("nil Metrics stats = %+v", got)
	}
}

func TestMetricsReadEngine(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			e := eng.new(t, Options{Metrics: m})
			r := newRig(t)
			res := newResults(1)
			f, c := r.flow(eng.fds)
			defer c.close()
			f.Owner = res
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(m.FlowsActive); got != 1 {
				t.Errorf("flows_active = %v, want 1", got)
			}
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 6 {
				t.Errorf("gathered %d series, %v", n, err)
			}
			c.client.CloseWrite()
			c.server.CloseWrite()
			res.wait(t)
			if got := testutil.ToFloat64(m.FlowsActive); got != 0 {
				t.Errorf("flows_active = %v after the flow, want 0", got)
			}
		})
	}
}

// BenchmarkRelaySetup measures one flow's life: set up (two connection pairs, fd handoff), one
// small echo through the engine, teardown, Done.
func BenchmarkRelaySetup(b *testing.B) {
	for _, eng := range engines(b) {
		b.Run(eng.name, func(b *testing.B) {
			r := newRig(b)
			res := newResults(1)
			e := eng.new(b, Options{})
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				f, c := r.flow(eng.fds)
				f.Owner = res
				if err := e.Relay(f); err != nil {
					b.Fatal(err)
				}
				c.client.Write([]byte{'x'})
				if _, err := io.ReadFull(c.server, buf); err != nil {
					b.Fatal(err)
				}
				c.server.Write(buf)
				if _, err := io.ReadFull(c.client, buf); err != nil {
					b.Fatal(err)
				}
				c.close()
				res.wait(b)
			}
		})
	}
}
