// Package loop is the sidecar's front end: it owns the listeners (inbound mappings and the
// outbound proxy port), accepts connections, runs proxy handshakes, and hands every established
// pair of sockets to a splice.Engine. It never copies a TCP flow's payload after a handshake;
// the datagrams of SOCKS5 UDP associations are the exception: it relays those itself, on
// goroutines (associate.go), as a splice engine has no datagram path.
//
// Two front ends implement Frontend with the same behaviour: a gnet event loop (Linux, paired
// with the splice engine) and a portable one built on net.Listener and goroutines.
package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/forward"
	"github.com/nat464/nat464-sidecar/splice"
)

// Frontend accepts connections and feeds flows to a relay engine.
type Frontend interface {
	// Start binds every listener and starts accepting. It returns once all listeners are bound,
	// or the first bind error (naming the address) after releasing whatever was bound.
	Start() error
	// Listeners reports the bound addresses (inbound first, in config order, then the proxy).
	Listeners() []net.Addr
	// Ping returns nil when the accept/handshake machinery is responsive.
	Ping(ctx context.Context) error
	// ServeEgress listens on every Config.EgressPorts port at egress address a (transparent
	// egress) and relays each connection to name, resolved and raced as a proxy request for
	// name would be. A port another socket holds is reported through Config.EgressHooks and
	// skipped; other failures are returned. After Shutdown it returns ErrShutdown.
	ServeEgress(a netip.Addr, name string) error
	// Shutdown stops accepting, closes connections still in their handshake, and waits (bounded
	// by ctx) for dials in flight to be handed to the engine or abandoned. It does not touch flows
	// already relayed: drain those with the engine.
	Shutdown(ctx context.Context) error
}

// Dialer connects to the destination a proxy client asked for. The Happy Eyeballs dialer in
// package eyeballs implements it; errors are classified with errors.Is (see ReplyFor).
type Dialer interface {
	DialContext(ctx context.Context, host string, port uint16) (net.Conn, error)
}

// Config is what a front end needs. Zero values get the defaults their comments name.
type Config struct {
	Inbound []config.Mapping
	// ProxyListen are the outbound proxy's addresses; empty disables the proxy.
	ProxyListen []netip.AddrPort
	// ProxyListenLenient skips, with a warning, a proxy address the host cannot bind for want
	// of its address family (EADDRNOTAVAIL, EAFNOSUPPORT: no ::1 where IPv6 is disabled), as
	// long as one is left. Meant for the default addresses, which nobody asked for by name.
	ProxyListenLenient bool
	// HandshakeTimeout bounds a proxy handshake from accept to a complete request; if zero, 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakeBytes caps what a client may send before its request is complete; if zero,
	// 16 KiB.
	MaxHandshakeBytes int
	// DialTimeout bounds a proxy dial when the Dialer has no bound of its own, and an inbound
	// connect; if zero, 10s.
	DialTimeout time.Duration
	// Limit caps concurrent flows; required.
	Limit *Limiter
	// Engine relays established flows; required.
	Engine splice.Engine
	// EventLoops is the number of gnet event loops serving the proxy port (gnet front end); if
	// zero, DefaultEventLoops.
	EventLoops int
	// Dialer serves proxy requests; if nil, a plain net.Dialer (no NAT64, no Happy Eyeballs).
	Dialer Dialer
	// Race, if not nil, makes the race for a proxy request's name (gnet front end): the splice
	// engine runs it on the loop that will relay the flow, with no dial goroutine
	// (eyeballs.Dialer.LoopRace). If nil, names are dialed with Dialer on a goroutine.
	Race func(host string, port uint16) splice.Racer
	// ProxyOnLoops serves the proxy port on the splice engine's relay loops instead of gnet's
	// (gnet front end only): accept, handshake, connect or race, and relay on one thread, as
	// for inbound. Experimental, for the measurement in bench/results/ANALYSIS.md: the design
	// card gives the proxy handshakes to gnet. It needs Race and a DirectDialer.
	ProxyOnLoops bool
	// Own, if not nil, receives the front end's listeners as bound when Start returns. The
	// caller makes the Dialer consult it (the egress policy's self rule, policy.Engine.Self =
	// Own.Check, or eyeballs.Dialer.Approve = Own.Check), so that a request for one of them is
	// refused before any connect; refusals wrapping ErrSelf are counted as RejectSelf and
	// logged at WARN.
	Own *OwnSockets
	// Sources are the --inbound-source tables by range; every Inbound mapping with a Source
	// needs its range here.
	Sources map[netip.Prefix]SourcePicker
	// EgressPorts are the TCP ports served at each egress address (ServeEgress); EgressHooks
	// hears how that goes.
	EgressPorts []uint16
	EgressHooks EgressHooks
	// IdleTimeout, if positive, ends a forwarded plain-HTTP exchange when no body byte moved
	// for it (the engine applies it to relayed flows).
	IdleTimeout time.Duration
	// ForwardResponseTimeout bounds the wait for an origin's response header to a forwarded
	// plain-HTTP request; if zero, 60s.
	ForwardResponseTimeout time.Duration
	// ForwardMetrics counts the plain-HTTP forwarder's requests; may be nil.
	ForwardMetrics *forward.Metrics
	// Auth, if non-nil and holding credentials, makes the proxy require them.
	Auth *Auth
	Log  *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
}

// skipProxy reports whether err, from binding proxy address ap, means the host lacks ap's address
// family and ap may be left out (ProxyListenLenient); it logs the skip.
func (c *Config) skipProxy(ap netip.AddrPort, err error) bool {
	if !c.ProxyListenLenient || !(errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
		return false
	}
	c.log().Warn("proxy address left out: this host cannot bind it (no such address family here)", "listen", ap.String(), "err", err)
	return true
}

// errNoProxyAddr is Start's error when every proxy address was skipped.
var errNoProxyAddr = errors.New("loop: no proxy address could be bound")

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return 10 * time.Second
}

func (c *Config) maxHandshakeBytes() int {
	if c.MaxHandshakeBytes > 0 {
		return c.MaxHandshakeBytes
	}
	return 16 << 10
}

func (c *Config) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return 10 * time.Second
}

// DefaultEventLoops is one gnet event loop per CPU the Go runtime may use (GOMAXPROCS, which
// follows a container's CPU limit), up to MaxEventLoops.
func DefaultEventLoops() int { return min(runtime.GOMAXPROCS(0), MaxEventLoops) }

// MaxEventLoops caps DefaultEventLoops.
const MaxEventLoops = 8

func (c *Config) eventLoops() int {
	if c.EventLoops > 0 {
		return c.EventLoops
	}
	return DefaultEventLoops()
}

func (c *Config) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Config) dialer() Dialer {
	if c.Dialer != nil {
		return c.Dialer
	}
	return plainDialer{}
}

// New returns the front end that pairs with the engine: gnet with the splice engine (Linux),
// goroutines with the goroutine engine. The pairing is fixed: the gnet front end hands the
// splice engine raw fds, connecting upstreams and its inbound ports; the goroutine front end
// has net.Conns only.
func New(cfg Config) (Frontend, error) {
	if cfg.Limit == nil {
		return nil, errors.New("loop: Limit is required")
	}
	switch e := cfg.Engine.(type) {
	case *splice.SpliceEngine:
		return newGnet(cfg, e)
	case *splice.GoroutineEngine:
		return newGoroutine(cfg, e), nil
	}
	return nil, fmt.Errorf("loop: no front end for engine %T", cfg.Engine)
}

// plainDialer resolves with the system resolver and dials the first address; a stand-in for
// tests and for runs without the eyeballs dialer.
type plainDialer struct{}

func (plainDialer) DialContext(ctx context.Context, host string, port uint16) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
}

// tracker counts dials and handshakes in flight so Shutdown can wait for them.
type tracker struct {
	wg sync.WaitGroup
}

func (t *tracker) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
