package nat64

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts synthesis, refusals and discovery rounds. A nil *Metrics counts nothing.
type Metrics struct {
	prefixInfo  *prometheus.GaugeVec
	synthesized prometheus.Counter
	denied      prometheus.Counter
	discovery   *prometheus.CounterVec
}

// Discovery results, the values of the discovery_total "result" label.
const (
	ResultOK       = "ok"
	ResultNoWKA    = "no_wka"
	ResultNegative = "negative" // NXDOMAIN or NODATA
	ResultTimeout  = "timeout"
	ResultError    = "error"
)

// NewMetrics registers the nat64 collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "nat64"
	m := &Metrics{
		prefixInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "prefix_info", Help: "NAT64 prefixes in use (value 1), by prefix and how it was found."},
			[]string{"prefix", "source"}),
		synthesized: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "synthesized_total", Help: "IPv6 addresses synthesized from IPv4 (RFC 6052)."}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "policy_denied_total", Help: "IPv4 destinations refused by the synthesis policy."}),
		discovery: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "discovery_total", Help: "RFC 7050 prefix discovery rounds, by result."},
			[]string{"result"}),
	}
	reg.MustRegister(m.prefixInfo, m.synthesized, m.denied, m.discovery)
	return m
}

func (m *Metrics) setPrefixes(ps []netip.Prefix, source string) {
	if m == nil {
		return
	}
	m.prefixInfo.Reset()
	for _, p := range ps {
		m.prefixInfo.WithLabelValues(p.String(), source).Set(1)
	}
}

func (m *Metrics) synthesizedOne() {
	if m != nil {
		m.synthesized.Inc()
	}
}

func (m *Metrics) deniedOne() {
	if m != nil {
		m.denied.Inc()
	}
}

func (m *Metrics) discoveryRound(result string) {
	if m != nil {
		m.discovery.WithLabelValues(result).Inc()
	}
}
