package admin

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ProbeMetrics exports readiness as the probes see it: the last /readyz answer, how often it
// changed, and whether the server is draining. A nil *ProbeMetrics records nothing.
type ProbeMetrics struct {
	ready    prometheus.Gauge
	changes  prometheus.Counter
	draining prometheus.Gauge

	mu    sync.Mutex
	known bool // a /readyz answer was given
	last  bool // that answer was 200
}

// NewProbeMetrics registers the readiness collectors on reg (if non-nil).
func NewProbeMetrics(reg prometheus.Registerer) *ProbeMetrics {
	const ns, sub = "nat464", "admin"
	m := &ProbeMetrics{
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "ready",
			Help: "1 if the last /readyz answer was 200, 0 if it was 503 or none was given yet."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ready_changes_total",
			Help: "Times a /readyz answer differed from the one before it (200 to 503 or back)."}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "draining",
			Help: "1 from SIGTERM on: /readyz fails and the sidecar drains its flows."}),
	}
	if reg != nil {
		reg.MustRegister(m.ready, m.changes, m.draining)
	}
	return m
}

// answered records one /readyz answer.
func (m *ProbeMetrics) answered(ok bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.known && m.last != ok {
		m.changes.Inc()
	}
	m.known, m.last = true, ok
	if ok {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
}

func (m *ProbeMetrics) setDraining() {
	if m != nil {
		m.draining.Set(1)
	}
}
