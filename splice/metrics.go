package splice

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exposes an engine's Stats as Prometheus collectors. The values are read from the engine
// when the registry is scraped, so the relay's hot path pays nothing for them. Per-flow counts,
// bytes and durations come from Result (see Flow.Done) and are counted by the caller.
//
// Every method on a nil *Metrics is a no-op.
type Metrics struct {
	FlowsActive   prometheus.GaugeFunc
	PipesInUse    prometheus.GaugeFunc
	PipesPooled   prometheus.GaugeFunc
	CopyBuffers   prometheus.GaugeFunc
	SpliceCalls   prometheus.CounterFunc
	PoolExhausted prometheus.CounterFunc

	src atomic.Pointer[func() Stats]
}

// NewMetrics creates the collectors and registers them with reg (if non-nil). Give the result to
// an engine through Options.Metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	gauge := func(name, help string, pick func(Stats) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "nat464", Subsystem: "splice", Name: name, Help: help,
		}, func() float64 { return pick(m.stats()) })
	}
	m.FlowsActive = gauge("flows_active", "Flows being relayed.",
		func(s Stats) float64 { return float64(s.Active) })
	m.PipesInUse = gauge("pipes_in_use", "Pipes lent to a direction with bytes in flight.",
		func(s Stats) float64 { return float64(s.PipesInUse) })
	m.PipesPooled = gauge("pipes_pooled", "Idle pipes kept in the pool.",
		func(s Stats) float64 { return float64(s.PipesPooled) })
	m.CopyBuffers = gauge("copy_buffers_in_use", "Directions copying through a 16 KiB buffer because every pipe was lent.",
		func(s Stats) float64 { return float64(s.CopyBuffers) })
	counter := func(name, help string, pick func(Stats) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "nat464", Subsystem: "splice", Name: name, Help: help,
		}, func() float64 { return float64(pick(m.stats())) })
	}
	m.SpliceCalls = counter("calls_total", "Successful splice(2) calls.",
		func(s Stats) uint64 { return s.SpliceCalls })
	m.PoolExhausted = counter("pool_exhausted_total", "Times a direction found every pipe lent and copied instead.",
		func(s Stats) uint64 { return s.PoolExhausted })
	if reg != nil {
		reg.MustRegister(m.FlowsActive, m.PipesInUse, m.PipesPooled, m.CopyBuffers, m.SpliceCalls, m.PoolExhausted)
	}
	return m
}

// attach makes m read from src; the last engine attached wins.
func (m *Metrics) attach(src func() Stats) {
	if m == nil {
		return
	}
	m.src.Store(&src)
}

func (m *Metrics) stats() Stats {
	if m == nil {
		return Stats{}
	}
	if p := m.src.Load(); p != nil {
		return (*p)()
	}
	return Stats{}
}
