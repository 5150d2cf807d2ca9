package eyeballs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/nat464/nat464-sidecar/resolver"
)

// Datagram plans where the datagrams a relay sends to host:port go (SOCKS5 UDP ASSOCIATE).
// Datagrams cannot be raced: there is no handshake to tell a working address from a dead one.
// So the choice is fixed: an IP literal is its own candidate; a name is looked up (both
// families, within Timeout) and a native IPv6 address (an AAAA answer outside the NAT64
// prefix) is preferred, else an IPv4 one (an A answer, or a DNS64 answer de-synthesized), in
// the resolver's order. The candidate is routed as a TCP connect would be: IPv6 as is, IPv4
// natively when it has a route (always for loopback), else synthesized with the current NAT64
// prefix; then Policy (a name first, before it is looked up) and Approve are asked. The first candidate that passes is the plan; otherwise the
// error of the first one refused, or the resolver's.
//
// to is where to send; from is how to report a datagram coming back from to: the IPv4
// address a synthesized target stands for, else to's own address. Nothing is counted in the
// Dialer's metrics, which are about TCP connects.
func (d *Dialer) Datagram(ctx context.Context, host string, port uint16) (to netip.AddrPort, from netip.Addr, err error) {
	r := &Race{d: d, host: host, port: port}
	r.sorter.v4route = d.hasIPv4Route(time.Now())
	var cands []candidate
	if lit, ok := parseLiteral(host); ok {
		if lit.Zone() != "" {
			return to, from, opError("udp", nil, fmt.Errorf("%w: scoped address %s", ErrNoAddress, host))
		}
		c, _ := r.candidate(lit)
		cands = append(cands, c)
	} else {
		if err := d.denyName(host, port); err != nil {
			return to, from, opError("udp", nil, err)
		}
		if cands, err = d.lookupDatagram(ctx, r, host); err != nil {
			return to, from, err
		}
	}
	var first error
	for _, c := range cands {
		_, ap, _, err := r.target(c)
		if err == nil {
			return ap, c.addr, nil
		}
		if first == nil {
			first = err
		}
	}
	return to, from, opError("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cands[0].addr, port)), first)
}

// lookupDatagram resolves host for Datagram: its candidates, native IPv6 first, never empty.
func (d *Dialer) lookupDatagram(ctx context.Context, r *Race, host string) ([]candidate, error) {
	if d.Resolver == nil {
		return nil, opError("udp", nil, fmt.Errorf("%w: %s", ErrNoResolver, host))
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	var cands []candidate
	var errs []error
	for a := range d.Resolver.Lookup(ctx, host) {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
		for _, ip := range a.Addrs {
			if c, ok := r.candidate(ip); ok && !slices.Contains(cands, c) {
				cands = append(cands, c)
			}
		}
	}
	if len(cands) == 0 {
		if len(errs) == 0 {
			return nil, opError("udp", nil, fmt.Errorf("%w for %s", ErrNoAddress, host))
		}
		return nil, opError("udp", nil, &resolveError{host: host, err: resolver.Join(errs...)})
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return b.family() - a.family() }) // 6 before 4
	return cands, nil
}
