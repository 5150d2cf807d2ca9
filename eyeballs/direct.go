package eyeballs

import (
	"net"
	"net/netip"
	"time"
)

// Direct is the connect plan for a host that needs no race: an IP literal has exactly one
// candidate, so a caller with its own connect path (the splice engine's non-blocking connect
// on its event loop) can make the one attempt itself, without the goroutines and netpoller
// round trips of DialContext.
//
// ok is false when host is not an IP literal (a name: use DialContext) or is a scoped IPv6
// literal. Otherwise target is where DialContext would connect: native IPv6, IPv4 natively
// when it has a route (always for loopback), or the address synthesized with the current NAT64
// prefix; err is non-nil (a *net.OpError, counted as a failure) when policy or a missing prefix
// rules the literal out. On success the caller must call done exactly once with the connect's
// outcome, so that the attempt and its result are counted as DialContext would count them.
func (d *Dialer) Direct(host string, port uint16) (target netip.AddrPort, done func(error), ok bool, err error) {
	lit, ok := parseLiteral(host)
	if !ok || lit.Zone() != "" {
		return netip.AddrPort{}, nil, false, nil
	}
	r := &Race{d: d, host: host, port: port}
	r.sorter.v4route = d.hasIPv4Route(time.Now())
	c, _ := r.candidate(lit)
	network, target, path, err := r.target(c)
	if err != nil {
		err = opError(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.addr, port)), err)
		d.Metrics.failed(reason(err))
		return netip.AddrPort{}, nil, true, err
	}
	d.Metrics.attempt(c.family(), path == PathNAT64)
	start := time.Now()
	return target, func(err error) {
		if err != nil {
			d.Metrics.failed(reason(err))
			return
		}
		d.Metrics.won(c.family(), path, time.Since(start))
	}, true, nil
}
