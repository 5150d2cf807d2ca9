package udp

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exposes the Stats of every relay given it (Config.Metrics) as Prometheus collectors in
// namespace nat464, subsystem udp. Values are read when the registry is scraped, so the
// datagram path pays only for its atomic counters. A closed relay's counts stay in the totals.
//
// Every method on a nil *Metrics is a no-op.
type Metrics struct {
	mu     sync.Mutex
	relays map[*Relay]struct{}
	gone   Stats // counters of closed relays
}

// NewMetrics creates the collectors and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{relays: map[*Relay]struct{}{}}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

var (
	descActive = prometheus.NewDesc("nat464_udp_sessions_active", "UDP sessions alive (each holds one upstream socket).", nil, nil)
	descTotal  = prometheus.NewDesc("nat464_udp_sessions_total", "UDP sessions started.", nil, nil)
	descDg     = prometheus.NewDesc("nat464_udp_datagrams_total", "Datagrams relayed; direction in is client to target, out is target to client.", []string{"direction"}, nil)
	descBytes  = prometheus.NewDesc("nat464_udp_bytes_total", "UDP payload bytes relayed, by direction (in: client to target).", []string{"direction"}, nil)
	descDrops  = prometheus.NewDesc("nat464_udp_drops_total", "Datagrams dropped, by reason.", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descTotal, descDg, descBytes, descDrops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.Sum()
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.Active))
	ch <- prometheus.MustNewConstMetric(descTotal, prometheus.CounterValue, float64(s.SessionsTotal))
	ch <- prometheus.MustNewConstMetric(descDg, prometheus.CounterValue, float64(s.DatagramsIn), "in")
	ch <- prometheus.MustNewConstMetric(descDg, prometheus.CounterValue, float64(s.DatagramsOut), "out")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesIn), "in")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesOut), "out")
	for i, name := range DropReasons {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(s.Drops[i]), name)
	}
}

// Sum adds up the counters of every relay counted so far.
func (m *Metrics) Sum() Stats {
	if m == nil {
		return Stats{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.gone
	for r := range m.relays {
		s.add(r.Stats())
	}
	return s
}

func (m *Metrics) attach(r *Relay) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.relays[r] = struct{}{}
	m.mu.Unlock()
}

func (m *Metrics) detach(r *Relay) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.relays[r]; ok {
		delete(m.relays, r)
		s := r.Stats()
		s.Active = 0
		m.gone.add(s)
	}
}
