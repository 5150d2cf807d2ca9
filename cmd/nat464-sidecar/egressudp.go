package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"

	"github.com/nat464/nat464-sidecar/egress"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/udp"
)

// planner picks where a session's datagrams to host:port go: eyeballs.Dialer.Datagram (a native
// AAAA first, else the IPv4 address routed or synthesized; the self and policy checks applied).
type planner interface {
	Datagram(ctx context.Context, host string, port uint16) (to netip.AddrPort, from netip.Addr, err error)
}

// egressUDP is transparent egress's UDP side (--egress-udp-ports): one relay per egress address
// and UDP port, bound to that address only, whose sessions are sent to the name behind the
// address at the port the app used. Replies come back from the egress address and port.
type egressUDP struct {
	ports   []uint16
	plan    planner
	base    udp.Config // IdleTimeout, MaxSessions, Limit, Metrics, Log for every relay
	metrics *egress.Metrics
	lg      *slog.Logger

	mu     sync.Mutex
	closed bool
	relays []*udp.Relay
	held   map[uint16]bool // ports another socket held when tried: never bound again
}

// serve opens a relay at a for every UDP port; like the TCP listeners, a port another socket
// holds (the app on 0.0.0.0:P) is warned about, counted once and left alone for good.
func (e *egressUDP) serve(a netip.Addr, name string) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return udp.ErrClosed
	}
	var errs []error
	opened := 0
	for _, port := range e.ports {
		if e.held[port] {
			continue
		}
		cfg := e.base
		cfg.Listen = netip.AddrPortFrom(a.Unmap(), port)
		cfg.Kind = udp.KindEgress
		cfg.Resolve = func(ctx context.Context) (netip.AddrPort, error) {
			to, _, err := e.plan.Datagram(ctx, name, port)
			loop.LogDenied(e.lg, "egress-udp", net.JoinHostPort(name, strconv.Itoa(int(port))), err)
			return to, err
		}
		r, err := udp.Listen(cfg)
		if errors.Is(err, syscall.EADDRINUSE) {
			if e.held == nil {
				e.held = map[uint16]bool{}
			}
			e.held[port] = true
			e.metrics.UDPPortConflict(port)
			e.lg.Warn("egress udp port is held by another socket (the app bound to 0.0.0.0?): datagrams to egress addresses on it reach that socket, not the sidecar, and the sidecar leaves the port alone from now on",
				"port", port, "addr", a.String(), "name", name, "err", err)
			continue
		}
		if errors.Is(err, syscall.EACCES) && port < 1024 {
			err = fmt.Errorf("%w: %w", loop.ErrLowPort, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("egress udp listener %s for %s: %w", cfg.Listen, name, err))
			continue
		}
		e.relays = append(e.relays, r)
		opened++
	}
	e.metrics.UDPListeners(opened)
	return errors.Join(errs...)
}

// all returns the relays open now.
func (e *egressUDP) all() udpRelays {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append(udpRelays(nil), e.relays...)
}

// stop refuses new egress addresses from now on (drain) and returns the relays to drain.
func (e *egressUDP) stop() udpRelays {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return append(udpRelays(nil), e.relays...)
}
