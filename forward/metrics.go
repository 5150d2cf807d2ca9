package forward

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a request, the values of the requests_total "outcome" label besides the status
// codes of the proxy's own error answers ("400", "407", "431", "502", "504", ...).
const (
	outcomeForwarded = "forwarded" // the origin's answer was passed on, whatever its status
	outcomeTunnel    = "tunnel"    // CONNECT on a forwarding connection, tunnelled
)

// Metrics counts the forwarder's requests and connections. A nil *Metrics counts nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	active   prometheus.Gauge
}

// NewMetrics registers the forwarder's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "forward"
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Plain-HTTP proxy requests (absolute form) answered, by outcome: forwarded (the origin's answer was passed on), tunnel (CONNECT on a forwarding connection), or the status of the proxy's own error answer."},
			[]string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_active", Help: "Client connections the plain-HTTP forwarder is serving now."}),
	}
	reg.MustRegister(m.requests, m.active)
	for _, o := range []string{outcomeForwarded, outcomeTunnel, "400", "407", "431", "502", "504"} {
		m.requests.WithLabelValues(o)
	}
	return m
}

func (m *Metrics) request(outcome string) {
	if m != nil {
		m.requests.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.active.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.active.Dec()
	}
}
