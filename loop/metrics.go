package loop

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/splice"
)

// Metrics counts flows, bytes, handshakes and rejects. A nil *Metrics counts nothing.
type Metrics struct {
	flowsTotal   *prometheus.CounterVec
	flowsActive  *prometheus.GaugeVec
	bytesTotal   *prometheus.CounterVec
	flowDuration *prometheus.HistogramVec
	connectFails *prometheus.CounterVec
	handshakes   *prometheus.CounterVec
	rejects      *prometheus.CounterVec
	assoc        *assocMetrics // SOCKS5 UDP ASSOCIATE (udpmetrics.go)
	byKind       sync.Map      // seriesKey -> *flowSeries
}

// Reject reasons, the values of the rejects_total "reason" label.
const (
	RejectMaxConns         = "max_conns"
	RejectHandshakeTimeout = "handshake_timeout"
	RejectHandshakeBytes   = "handshake_too_large"
	RejectAuth             = "auth"
	RejectPolicy           = "policy"
	RejectSelf             = "self" // the destination was one of the sidecar's own sockets
	RejectProtocol         = "protocol"
	RejectDraining         = "draining"
)

// NewMetrics registers the loop's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "loop"
	m := &Metrics{
		flowsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "flows_total", Help: "Flows relayed (their upstream connected), by kind (inbound, outbound, egress, forward, udp_associate) and engine."},
			[]string{"kind", "engine"}),
		flowsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "flows_active", Help: "Flows being relayed now, by kind and engine."},
			[]string{"kind", "engine"}),
		bytesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_total", Help: "Bytes relayed by finished flows, by kind and direction (up = client to upstream)."},
			[]string{"kind", "direction"}),
		flowDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "flow_duration_seconds", Help: "Lifetime of finished flows, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"kind"}),
		connectFails: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upstream_connect_failures_total", Help: "Flows whose upstream connect failed before any byte was relayed, by kind (inbound: the app; egress: the name behind an egress address)."},
			[]string{"kind"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handshakes_total", Help: "Proxy handshakes finished, by protocol and reply code."},
			[]string{"protocol", "reply"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejects_total", Help: "Connections refused or cut before relaying, by reason."},
			[]string{"reason"}),
	}
	reg.MustRegister(m.flowsTotal, m.flowsActive, m.bytesTotal, m.flowDuration, m.connectFails, m.handshakes, m.rejects)
	m.assoc = newAssocMetrics(reg)
	// Every reject reason is exported from the start, at 0, so alerts can rate() it.
	for _, r := range []string{RejectMaxConns, RejectHandshakeTimeout, RejectHandshakeBytes, RejectAuth,
		RejectPolicy, RejectSelf, RejectProtocol, RejectDraining} {
		m.rejects.WithLabelValues(r)
	}
	return m
}

// flowSeries are the series of one kind and engine, looked up once: a label lookup hashes and
// validates its values, which at tens of thousands of flows a second showed in the profile.
type flowSeries struct {
	total    prometheus.Counter
	active   prometheus.Gauge
	up, down prometheus.Counter
	duration prometheus.Observer
}

type seriesKey struct{ kind, engine string }

func (m *Metrics) series(kind, engine string) *flowSeries {
	k := seriesKey{kind, engine}
	if s, ok := m.byKind.Load(k); ok {
		return s.(*flowSeries)
	}
	s, _ := m.byKind.LoadOrStore(k, &flowSeries{
		total:    m.flowsTotal.WithLabelValues(kind, engine),
		active:   m.flowsActive.WithLabelValues(kind, engine),
		up:       m.bytesTotal.WithLabelValues(kind, "up"),
		down:     m.bytesTotal.WithLabelValues(kind, "down"),
		duration: m.flowDuration.WithLabelValues(kind),
	})
	return s.(*flowSeries)
}

func (m *Metrics) flowStarted(kind, engine string) {
	if m == nil {
		return
	}
	s := m.series(kind, engine)
	s.total.Inc()
	s.active.Inc()
}

func (m *Metrics) flowEnded(kind, engine string, r splice.Result) {
	if m == nil {
		return
	}
	s := m.series(kind, engine)
	s.active.Dec()
	s.up.Add(float64(r.Up))
	s.down.Add(float64(r.Down))
	s.duration.Observe(r.End.Sub(r.Start).Seconds())
}

func (m *Metrics) handshake(protocol, reply string) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(protocol, reply).Inc()
}

func (m *Metrics) reject(reason string) {
	if m == nil {
		return
	}
	m.rejects.WithLabelValues(reason).Inc()
}

func (m *Metrics) connectFailed(kind string) {
	if m == nil {
		return
	}
	m.connectFails.WithLabelValues(kind).Inc()
}
