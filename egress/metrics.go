package egress

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the DNS server's questions and the egress table. A nil *Metrics counts nothing.
type Metrics struct {
	queries   *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	listeners *prometheus.GaugeVec
}

// NewMetrics registers the collectors on reg; addresses reports the names with an address
// (Table.Len), sampled at each scrape.
func NewMetrics(reg prometheus.Registerer, addresses func() int) *Metrics {
	const ns = "nat464"
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dns",
			Name: "queries_total", Help: "Questions the pod's DNS server answered, by type and answer (egress, ptr, forwarded, nxdomain, nodata, servfail, formerr, notimp, overload)."},
			[]string{"type", "answer"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "egress",
			Name: "port_conflicts_total", Help: "Egress listeners that could not be bound because another socket (the app's) holds the port, by port and protocol."},
			[]string{"port", "protocol"}),
		listeners: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "egress",
			Name: "listeners", Help: "Egress listeners open (one per egress address, port and protocol)."}, []string{"protocol"}),
	}
	m.listeners.WithLabelValues("tcp")
	m.listeners.WithLabelValues("udp")
	reg.MustRegister(m.queries, m.conflicts, m.listeners,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: "egress",
			Name: "addresses", Help: "Names that hold an egress address (hosts-file names included)."},
			func() float64 { return float64(addresses()) }))
	return m
}

func (m *Metrics) query(qtype, answer string) {
	if m != nil {
		m.queries.WithLabelValues(qtype, answer).Inc()
	}
}

// PortConflict counts a TCP egress listener the port's other holder kept from binding.
func (m *Metrics) PortConflict(port uint16) { m.conflict(port, "tcp") }

// UDPPortConflict counts a UDP egress listener the port's other holder kept from binding.
func (m *Metrics) UDPPortConflict(port uint16) { m.conflict(port, "udp") }

func (m *Metrics) conflict(port uint16, protocol string) {
	if m != nil {
		m.conflicts.WithLabelValues(strconv.Itoa(int(port)), protocol).Inc()
	}
}

// Listeners adds d to the open TCP egress listeners.
func (m *Metrics) Listeners(d int) { m.listenersAdd("tcp", d) }

// UDPListeners adds d to the open UDP egress listeners.
func (m *Metrics) UDPListeners(d int) { m.listenersAdd("udp", d) }

func (m *Metrics) listenersAdd(protocol string, d int) {
	if m != nil {
		m.listeners.WithLabelValues(protocol).Add(float64(d))
	}
}

// throttle lets a repeated warning through at most once a second.
type throttle struct{ last atomic.Int64 }

func (t *throttle) allow() bool {
	now := time.Now().UnixNano()
	last := t.last.Load()
	return now-last >= int64(time.Second) && t.last.CompareAndSwap(last, now)
}

var exhaustedWarnings throttle
