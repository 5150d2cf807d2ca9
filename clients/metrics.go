package clients

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the tables' assignments and overflows, by range. A nil *Metrics counts nothing.
type Metrics struct {
	assignedNow *prometheus.GaugeVec
	overflows   *prometheus.CounterVec
}

// NewMetrics registers the collectors on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "inbound_source"
	m := &Metrics{
		assignedNow: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "clients",
			Help: "Client addresses holding a loopback source address (--inbound-source), by range."}, []string{"range"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "overflows_total",
			Help: "Inbound connections of new clients that found the source range's table full and connected from 127.0.0.1, by range."}, []string{"range"}),
	}
	if reg != nil {
		reg.MustRegister(m.assignedNow, m.overflows)
	}
	return m
}

// Init makes a table's series exist at zero before its first client.
func (m *Metrics) Init(r netip.Prefix) {
	if m == nil {
		return
	}
	m.assignedNow.WithLabelValues(r.Masked().String())
	m.overflows.WithLabelValues(r.Masked().String())
}

func (m *Metrics) assigned(r netip.Prefix, n int) {
	if m != nil {
		m.assignedNow.WithLabelValues(r.Masked().String()).Set(float64(n))
	}
}

func (m *Metrics) overflowed(r netip.Prefix) {
	if m != nil {
		m.overflows.WithLabelValues(r.Masked().String()).Inc()
	}
}
