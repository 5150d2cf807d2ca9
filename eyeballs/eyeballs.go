// Package eyeballs is the outbound dialer: Happy Eyeballs (RFC 8305 and the HEv3 draft) over the
// addresses a resolver streams per family, for a pod whose only network may be IPv6.
//
// It builds candidates (native IPv6, IPv4 from A answers or literals, and DNS64 answers
// de-synthesized back to IPv4), sorts them (RFC 6724, simplified, plus per-destination history),
// interleaves the families, and races staggered TCP connection attempts: the first completed
// handshake wins and every other connection is closed. IPv4 candidates are connected natively
// when the pod has an IPv4 route (and always for 127.0.0.0/8), otherwise through an address
// synthesized with the current NAT64 prefix at connect time.
//
// The race is a state machine, Race: it is told the answers, the attempts' outcomes and the
// time, and says which attempts to start and when to look again; it has no goroutines, timers
// or sockets of its own. Dialer.DialContext is its goroutine driver (a goroutine per attempt,
// a timer, the resolver's channel); the splice event loop is to be the other, making the
// attempts as non-blocking connects on the loop that relays the flow. Direct plans the one
// connect of an IP literal for such a caller.
//
// It does not parse DNS (see package resolver) or compute prefixes (see package nat64).
package eyeballs

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nat464/nat464-sidecar/resolver"
)

// Resolver streams the answers for host: at most one resolver.Answer per family, then the
// channel closes. The resolver package's *Resolver satisfies it.
type Resolver interface {
	Lookup(ctx context.Context, host string) <-chan resolver.Answer
}

// NAT64 maps IPv4 addresses into the NAT64 prefix in use and back. *nat64.Prefixes satisfies it.
type NAT64 interface {
	// Synthesize returns the IPv6 address for v4; the error wraps nat64.ErrPolicy or
	// nat64.ErrNoPrefix.
	Synthesize(v4 netip.Addr) (netip.Addr, error)
	// Desynthesize returns the IPv4 address embedded in v6 when v6 lies in a known prefix.
	Desynthesize(v6 netip.Addr) (v4 netip.Addr, ok bool)
	// HasPrefix reports whether any prefix is in use.
	HasPrefix() bool
}

// Policy is an egress policy. It must be safe for concurrent use and fast: it is asked on the
// event loops.
type Policy interface {
	// CheckName decides a request for the name host on port, before it is looked up.
	CheckName(host string, port uint16) error
	// CheckAddr decides an address about to be connected to, or datagrams sent to: dest is
	// the address as dialed (after NAT64 synthesis), or, when there is no route to the
	// candidate (a NAT64 policy refusal, no prefix), the candidate itself, so that the policy
	// names its own rule for it. v4 is the IPv4 address a synthesized dest stands for (invalid
	// otherwise): the address rules judge that. name is the host name the request was for, ""
	// when it was for an IP literal.
	CheckAddr(name string, dest netip.AddrPort, v4 netip.Addr) error
}

// Defaults and bounds of the Dialer's settings (RFC 8305 §8).
const (
	DefaultResolutionDelay = 50 * time.Millisecond
	DefaultAttemptDelay    = 250 * time.Millisecond
	MinAttemptDelay        = 10 * time.Millisecond
	MaxAttemptDelay        = 2 * time.Second
	DefaultMaxConcurrent   = 4
	DefaultTimeout         = 10 * time.Second
	DefaultHistorySize     = 1024
	DefaultHistoryTTL      = 10 * time.Minute
	DefaultRouteProbe      = 30 * time.Second
)

// Dialer races connections to a host. Its zero value is usable (it then needs a Resolver only
// for names, not for literals); set the fields before the first dial and do not copy it after.
// It is safe for concurrent use.
type Dialer struct {
	// Resolver looks up names. If nil, only IP literals can be dialed.
	Resolver Resolver
	// NAT64 synthesizes and recognises IPv4-embedded IPv6. If nil, there is no NAT64: IPv4
	// destinations need an IPv4 route and AAAA answers are all taken as native.
	NAT64 NAT64
	// FirstFamilyCount is how many addresses of the first family are tried before the other
	// family (RFC 8305 §4). If zero, 1.
	FirstFamilyCount int
	// ResolutionDelay is how long a positive A answer waits for the AAAA answer. If zero, 50ms;
	// if negative, no wait.
	ResolutionDelay time.Duration
	// AttemptDelay separates the starts of two attempts while the first is still running. If
	// zero, 250ms; clamped to [10ms, 2s]. A failed attempt lets the next start at once, but never
	// within 10ms of the previous start.
	AttemptDelay time.Duration
	// MaxConcurrent caps the attempts in flight. If zero or negative, 4.
	MaxConcurrent int
	// Timeout bounds a whole race, DNS included. If zero or negative, 10s.
	Timeout time.Duration
	// HistorySize caps the per-destination history. If zero, 1024; if negative, no history.
	HistorySize int
	// HistoryTTL is how long a winner is remembered. If zero, 10 minutes. An entry is not
	// extended by wins it caused, so that different clients converge. While a host's winner is
	// an IPv4 address, it is tried first and IPv4 is the preferred family: its A answer is
	// awaited for ResolutionDelay the way the AAAA answer normally is (HEv3 §4.2).
	HistoryTTL time.Duration
	// HasIPv4Route reports whether IPv4 destinations other than 127.0.0.0/8 can be reached
	// natively (test seam). If nil, a UDP connect(2) to 192.0.2.1:9 (no packet is sent) probes
	// for a route, at most once per RouteProbeInterval.
	HasIPv4Route func() bool
	// RouteProbeInterval is how long the default route probe's result is reused. If zero, 30s.
	RouteProbeInterval time.Duration
	// Approve, if not nil, is asked about every address before it is connected: each race
	// candidate and each Direct plan, as the address:port the connect goes to (after NAT64
	// synthesis). A non-nil error refuses that address, which is skipped like one the NAT64
	// policy refuses; a race with nothing else to try fails with an error wrapping
	// ErrNotAllowed and Approve's error (which should wrap a sentinel its caller classifies:
	// the proxy's refusals wrap socks.ErrPolicy). It must be safe for concurrent use and fast.
	Approve func(netip.AddrPort) error
	// Policy, if not nil, is the egress policy (*policy.Engine): asked about every request for
	// a name before it is looked up (Race, LoopRace, DialContext, Datagram) and about every
	// address before it is connected or planned, before Approve. A refused name fails the
	// request at once; a refused address is skipped like one Approve refuses. Both errors
	// wrap ErrNotAllowed and the policy's error, and count as a policy failure.
	Policy Policy
	// DialAttempt makes one connection attempt (test seam); network is "tcp4" or "tcp6". If nil,
	// a net.Dialer bound to the attempt's ctx.
	DialAttempt func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
	// Metrics may be nil.
	Metrics *Metrics
	// Logf receives debug lines about attempts. If nil, nothing is logged.
	Logf func(format string, args ...any)

	routeMu sync.Mutex
	routeAt time.Time
	routeOK bool

	histMu sync.Mutex
	hist   map[string]historyEntry
}

func (d *Dialer) firstFamilyCount() int {
	if d.FirstFamilyCount > 0 {
		return d.FirstFamilyCount
	}
	return 1
}

func (d *Dialer) resolutionDelay() time.Duration {
	switch {
	case d.ResolutionDelay < 0:
		return 0
	case d.ResolutionDelay == 0:
		return DefaultResolutionDelay
	}
	return d.ResolutionDelay
}

func (d *Dialer) attemptDelay() time.Duration {
	if d.AttemptDelay == 0 {
		return DefaultAttemptDelay
	}
	return min(max(d.AttemptDelay, MinAttemptDelay), MaxAttemptDelay)
}

func (d *Dialer) maxConcurrent() int {
	if d.MaxConcurrent > 0 {
		return d.MaxConcurrent
	}
	return DefaultMaxConcurrent
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultTimeout
}

func (d *Dialer) historySize() int {
	if d.HistorySize == 0 {
		return DefaultHistorySize
	}
	return max(d.HistorySize, 0)
}

func (d *Dialer) historyTTL() time.Duration {
	if d.HistoryTTL > 0 {
		return d.HistoryTTL
	}
	return DefaultHistoryTTL
}

func (d *Dialer) routeProbeInterval() time.Duration {
	if d.RouteProbeInterval > 0 {
		return d.RouteProbeInterval
	}
	return DefaultRouteProbe
}

func (d *Dialer) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}

func (d *Dialer) dialAttempt(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	if d.DialAttempt != nil {
		return d.DialAttempt(ctx, network, addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr.String())
}

// probeAddr is a documentation address: connect(2) on a UDP socket only picks a route and a
// source address, it sends nothing.
var probeAddr = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}

// hasIPv4Route reports whether non-loopback IPv4 destinations are reachable natively; now
// decides whether the last probe is still fresh.
func (d *Dialer) hasIPv4Route(now time.Time) bool {
	if d.HasIPv4Route != nil {
		return d.HasIPv4Route()
	}
	d.routeMu.Lock()
	defer d.routeMu.Unlock()
	if !d.routeAt.IsZero() && now.Sub(d.routeAt) < d.routeProbeInterval() {
		return d.routeOK
	}
	d.routeOK, d.routeAt = probeIPv4Route(), now
	return d.routeOK
}

// probeIPv4Route asks the kernel for a route to a global IPv4 address from a non-loopback
// source: in an IPv6-only pod connect(2) fails with ENETUNREACH.
func probeIPv4Route() bool {
	c, err := net.DialUDP("udp4", nil, probeAddr)
	if err != nil {
		return false
	}
	defer c.Close()
	la, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && !la.IP.IsLoopback() && !la.IP.IsUnspecified()
}
