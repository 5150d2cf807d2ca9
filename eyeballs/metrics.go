package eyeballs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts attempts, winners and failed races. A nil *Metrics counts nothing.
type Metrics struct {
	attempts    *prometheus.CounterVec
	winners     *prometheus.CounterVec
	synthesized prometheus.Counter
	duration    prometheus.Histogram
	failures    *prometheus.CounterVec
}

// NewMetrics registers the eyeballs collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "eyeballs"
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "attempts_total", Help: "Connection attempts started, by destination family (ipv4 includes NAT64)."},
			[]string{"family"}),
		winners: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "winners_total", Help: "Races won, by destination family and path (native or nat64)."},
			[]string{"family", "path"}),
		synthesized: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "synthesized_connects_total", Help: "Connection attempts to an address synthesized with the NAT64 prefix."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "connect_duration_seconds", Help: "Time from the start of a won race (DNS included) to the winning handshake.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "race_failures_total", Help: "Races that ended without a connection, by reason."},
			[]string{"reason"}),
	}
	reg.MustRegister(m.attempts, m.winners, m.synthesized, m.duration, m.failures)
	return m
}

func familyLabel(fam int) string {
	if fam == 4 {
		return "ipv4"
	}
	return "ipv6"
}

func (m *Metrics) attempt(fam int, synthesized bool) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(familyLabel(fam)).Inc()
	if synthesized {
		m.synthesized.Inc()
	}
}

func (m *Metrics) won(fam int, path string, d time.Duration) {
	if m == nil {
		return
	}
	m.winners.WithLabelValues(familyLabel(fam), path).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) failed(reason string) {
	if m != nil {
		m.failures.WithLabelValues(reason).Inc()
	}
}
