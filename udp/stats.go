package udp

import "sync/atomic"

// Drop reasons, the values of the reason label of nat464_udp_drops_total.
const (
	DropMaxSessions = iota // a new client found the session bound (or the shared slots) full
	DropDraining           // a new client arrived after Shutdown began
	DropTruncated          // a datagram arrived flagged MSG_TRUNC (bigger than MaxDatagram)
	DropUnreachable        // the target answered ICMP port unreachable (ECONNREFUSED)
	DropTooBig             // the datagram does not fit the other side's family (EMSGSIZE: an IPv6 client's 65,527 B to an IPv4 target)
	DropSendError          // sending to the target or back to the client failed otherwise (buffer full, ...)
	DropSocketError        // a session's upstream socket could not be opened (fd limit, ...)
	DropResolve            // Config.Resolve failed: the name has no usable address, or the policy refused it
	DropPending            // a session still resolving its target had no room left for the datagram
	numDrops
)

// DropReasons names the drop reasons, indexed by the Drop constants.
var DropReasons = [numDrops]string{"max_sessions", "draining", "truncated", "unreachable", "too_big", "send_error", "socket_error", "resolve", "pending"}

// Stats are a relay's counters. In is client to target, Out target to client.
type Stats struct {
	Active        int
	SessionsTotal uint64
	DatagramsIn   uint64
	DatagramsOut  uint64
	BytesIn       uint64
	BytesOut      uint64
	Drops         [numDrops]uint64
}

type stats struct {
	active        atomic.Int64
	sessionsTotal atomic.Uint64
	dgIn, dgOut   atomic.Uint64
	bIn, bOut     atomic.Uint64
	drops         [numDrops]atomic.Uint64
}

func (s *stats) drop(reason int) { s.drops[reason].Add(1) }

func (s *stats) in(n int) {
	s.dgIn.Add(1)
	s.bIn.Add(uint64(n))
}

func (s *stats) out(n int) {
	s.dgOut.Add(1)
	s.bOut.Add(uint64(n))
}

func (s *stats) snapshot() Stats {
	st := Stats{
		Active: int(s.active.Load()), SessionsTotal: s.sessionsTotal.Load(),
		DatagramsIn: s.dgIn.Load(), DatagramsOut: s.dgOut.Load(), BytesIn: s.bIn.Load(), BytesOut: s.bOut.Load(),
	}
	for i := range st.Drops {
		st.Drops[i] = s.drops[i].Load()
	}
	return st
}

// add sums o into st (the metrics add up every relay).
func (st *Stats) add(o Stats) {
	st.Active += o.Active
	st.SessionsTotal += o.SessionsTotal
	st.DatagramsIn += o.DatagramsIn
	st.DatagramsOut += o.DatagramsOut
	st.BytesIn += o.BytesIn
	st.BytesOut += o.BytesOut
	for i := range st.Drops {
		st.Drops[i] += o.Drops[i]
	}
}
