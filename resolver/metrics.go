package resolver

import (
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the resolver's Prometheus collectors (namespace nat464, subsystem resolver).
// Every method is a no-op on a nil *Metrics. Counters move per query or per lookup.
type Metrics struct {
	Queries        *prometheus.CounterVec
	TCPFallbacks   prometheus.Counter
	LookupDuration prometheus.Histogram
	CacheHits      prometheus.Counter
	CacheMisses    prometheus.Counter
	Coalesced      prometheus.Counter
	InFlight       prometheus.Gauge
	InFlightWaits  prometheus.Counter
	IgnoredReplies prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (if reg is not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "nat464", "resolver"
	m := &Metrics{
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "queries_total",
			Help: "DNS queries sent upstream, by query type and outcome (an rcode name, truncated, timeout or error).",
		}, []string{"type", "rcode"}),
		TCPFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "tcp_fallbacks_total",
			Help: "Queries retried over TCP because the UDP reply was truncated.",
		}),
		LookupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "lookup_duration_seconds",
			Help:    "Time from Lookup until both address families were answered.",
			Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		CacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_hits_total",
			Help: "Name and type lookups answered from the cache (positive or negative).",
		}),
		CacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_misses_total",
			Help: "Name and type lookups not answered from the cache.",
		}),
		Coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "coalesced_total",
			Help: "Cache misses that joined a query already in flight instead of sending one.",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "queries_in_flight",
			Help: "Upstream queries currently in flight.",
		}),
		InFlightWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "inflight_waits_total",
			Help: "Queries that had to wait because MaxInFlight queries were already running.",
		}),
		IgnoredReplies: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "ignored_replies_total",
			Help: "UDP datagrams dropped because they did not answer the query sent (another ID, question or QR bit, or not DNS): forgeries, late replies, noise.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Queries, m.TCPFallbacks, m.LookupDuration, m.CacheHits,
			m.CacheMisses, m.Coalesced, m.InFlight, m.InFlightWaits, m.IgnoredReplies)
	}
	return m
}

func (m *Metrics) query(qtype uint16, outcome string) {
	if m != nil {
		m.Queries.WithLabelValues(dns.TypeToString[qtype], outcome).Inc()
	}
}

func (m *Metrics) tcpFallback() {
	if m != nil {
		m.TCPFallbacks.Inc()
	}
}

func (m *Metrics) lookupDone(d time.Duration) {
	if m != nil {
		m.LookupDuration.Observe(d.Seconds())
	}
}

func (m *Metrics) cacheHit() {
	if m != nil {
		m.CacheHits.Inc()
	}
}

func (m *Metrics) cacheMiss(coalesced bool) {
	if m == nil {
		return
	}
	m.CacheMisses.Inc()
	if coalesced {
		m.Coalesced.Inc()
	}
}

func (m *Metrics) inFlight(delta float64) {
	if m != nil {
		m.InFlight.Add(delta)
	}
}

func (m *Metrics) inFlightWait() {
	if m != nil {
		m.InFlightWaits.Inc()
	}
}

func (m *Metrics) ignoredReply() {
	if m != nil {
		m.IgnoredReplies.Inc()
	}
}
