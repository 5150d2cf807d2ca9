package loop

import "github.com/prometheus/client_golang/prometheus"

// assocMetrics count the datagrams SOCKS5 UDP associations relay and drop. The associations
// themselves are flows of kind udp_associate in flows_total, flows_active and bytes_total
// (payload bytes, without the RFC 1928 header).
type assocMetrics struct {
	datagrams *prometheus.CounterVec
	drops     *prometheus.CounterVec
	up, down  prometheus.Counter // datagrams' series, looked up once: they count every datagram
}

func newAssocMetrics(reg prometheus.Registerer) *assocMetrics {
	const ns, sub = "nat464", "loop"
	m := &assocMetrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "udp_associate_datagrams_total", Help: "Datagrams relayed by SOCKS5 UDP associations, by direction (up = client to destination)."},
			[]string{"direction"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "udp_associate_drops_total", Help: "Datagrams SOCKS5 UDP associations dropped, by reason."},
			[]string{"reason"}),
	}
	reg.MustRegister(m.datagrams, m.drops)
	m.up, m.down = m.datagrams.WithLabelValues("up"), m.datagrams.WithLabelValues("down")
	for _, r := range []string{DropSource, DropFragment, DropMalformed, DropResolve, DropPolicy, DropSelf,
		DropUnsolicited, DropSendFailed} {
		m.drops.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) udpDrop(reason string) {
	if m == nil {
		return
	}
	m.assoc.drops.WithLabelValues(reason).Inc()
}

// udpDatagram counts one datagram relayed up (client to destination) or down.
func (m *Metrics) udpDatagram(up bool) {
	switch {
	case m == nil:
	case up:
		m.assoc.up.Inc()
	default:
		m.assoc.down.Inc()
	}
}
