package udp

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exposes the Stats of every relay given it (Config.Metrics) as Prometheus collectors in
// namespace nat464, subsystem udp, labelled by the relays' kind (inbound, egress). Values are
// read when the registry is scraped, so the datagram path pays only for its atomic counters. A
// closed relay's counts stay in the totals.
//
// Every method on a nil *Metrics is a no-op.
type Metrics struct {
	mu     sync.Mutex
	relays map[*Relay]struct{}
	gone   map[string]Stats // counters of closed relays, by kind
}

// NewMetrics creates the collectors and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{relays: map[*Relay]struct{}{}, gone: map[string]Stats{}}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// kinds are the label values every family exports, whether or not a relay of the kind runs.
var kinds = []string{KindInbound, KindEgress}

var (
	descActive = prometheus.NewDesc("nat464_udp_sessions_active", "UDP sessions alive (each holds one upstream socket).", []string{"kind"}, nil)
	descTotal  = prometheus.NewDesc("nat464_udp_sessions_total", "UDP sessions started.", []string{"kind"}, nil)
	descDg     = prometheus.NewDesc("nat464_udp_datagrams_total", "Datagrams relayed; direction in is client to target, out is target to client.", []string{"kind", "direction"}, nil)
	descBytes  = prometheus.NewDesc("nat464_udp_bytes_total", "UDP payload bytes relayed, by direction (in: client to target).", []string{"kind", "direction"}, nil)
	descDrops  = prometheus.NewDesc("nat464_udp_drops_total", "Datagrams dropped, by reason.", []string{"kind", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descTotal, descDg, descBytes, descDrops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, k := range kinds {
		s := m.Sum(k)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.Active), k)
		ch <- prometheus.MustNewConstMetric(descTotal, prometheus.CounterValue, float64(s.SessionsTotal), k)
		ch <- prometheus.MustNewConstMetric(descDg, prometheus.CounterValue, float64(s.DatagramsIn), k, "in")
		ch <- prometheus.MustNewConstMetric(descDg, prometheus.CounterValue, float64(s.DatagramsOut), k, "out")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesIn), k, "in")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesOut), k, "out")
		for i, name := range DropReasons {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(s.Drops[i]), k, name)
		}
	}
}

// Sum adds up the counters of every relay of kind counted so far ("" for every kind).
func (m *Metrics) Sum(kind string) Stats {
	if m == nil {
		return Stats{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Stats
	for k, g := range m.gone {
		if kind == "" || k == kind {
			s.add(g)
		}
	}
	for r := range m.relays {
		if kind == "" || r.cfg.Kind == kind {
			s.add(r.Stats())
		}
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
		g := m.gone[r.cfg.Kind]
		g.add(s)
		m.gone[r.cfg.Kind] = g
	}
}
