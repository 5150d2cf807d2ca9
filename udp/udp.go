// Package udp relays UDP: a Relay listens on one address (LISTEN of an --inbound-udp mapping, or
// an egress address and port) and forwards every client's datagrams to a target through a
// session, an upstream socket connected to the target that belongs to that client address and
// port and the local address the client sent to. An inbound relay has one fixed TARGET; an
// egress relay looks its target up for every new session (Config.Resolve). Replies go back from that exact local address and port (IPV6_PKTINFO /
// IP_PKTINFO), datagram for datagram: nothing is merged, split or silently truncated.
//
// In scope: the listening socket, sessions and their idle expiry, the session bound (shared with
// the TCP flow slots through a Limiter), drain, drop accounting and the Prometheus metrics. The
// Linux engine runs non-blocking sockets on one epoll loop per relay with recvmmsg/sendmmsg; the
// goroutine engine (any OS, and every relay with Resolve) runs one goroutine per listener and
// per session on the Go netpoller.
//
// Not in scope: SOCKS5 UDP ASSOCIATE (package loop), name resolution and NAT64 (Resolve is the
// caller's), and flag or environment parsing (config does that).
package udp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Relay kinds, the values of the kind label of the nat464_udp_ metrics.
const (
	KindInbound = "inbound"
	KindEgress  = "egress"
)

// Defaults for the zero Config.
const (
	DefaultIdleTimeout = 60 * time.Second
	DefaultMaxSessions = 1024
)

// MaxDatagram is the largest UDP payload a relay accepts without truncation: buffers are this
// big, so any datagram the kernel can deliver fits, and MSG_TRUNC only ever flags a bug.
const MaxDatagram = 65535

// listenerBuffer is asked for as the listener's SO_RCVBUF and SO_SNDBUF: the listener carries
// every client's datagrams. The kernel caps it at net.core.rmem_max / wmem_max (no privilege
// raises that), so it only helps where those allow.
const listenerBuffer = 4 << 20

var (
	// ErrClosed is returned by methods called on a closed relay.
	ErrClosed = errors.New("udp: relay closed")
	// ErrEngine is returned for an engine this OS does not have.
	ErrEngine = errors.New("udp: unknown engine")
)

// Limiter is a pool of slots shared with other flows (*loop.Limiter implements it): a session
// takes one when it starts and gives it back when it ends.
type Limiter interface {
	Acquire() bool
	Release()
}

// Config describes one relay. Listen and Target are required; every other field is optional.
type Config struct {
	// Listen is the local address. An IPv6 address is bound with IPV6_V6ONLY, so the app's IPv4
	// socket may hold the same port; an IPv4 address is allowed too. Port 0 picks one (see Addr).
	Listen netip.AddrPort
	// Target is where every session's upstream socket is connected, unless Resolve is set.
	Target netip.AddrPort
	// Resolve, if set, picks each new session's target instead of Target (an egress address
	// stands for a name, whose address may change). Datagrams that arrive while it runs wait
	// in the session (at most pendingMax of them, pendingBytes in all; more are dropped as
	// pending), in order. A failure drops them as resolve and holds the session, dropping,
	// until failHold passes; the client's next datagram then tries again. A relay with
	// Resolve runs on the goroutine engine: such relays come by the thousand (one per egress
	// name and port) and share the Go netpoller instead of an epoll loop and 2 MiB of
	// buffers each.
	Resolve func(ctx context.Context) (netip.AddrPort, error)
	// Kind labels the relay's metrics: "inbound" if empty, or "egress".
	Kind string
	// IdleTimeout ends a session that saw no datagram either way for this long; if zero,
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxSessions bounds this relay's sessions; if zero, DefaultMaxSessions.
	MaxSessions int
	// Limit, if set, is asked for a slot for every new session as well.
	Limit Limiter
	// Engine is "goroutine" for the portable engine; "", "auto" and "splice" mean the epoll
	// engine on Linux and the goroutine engine elsewhere (like the TCP engines' names).
	Engine string
	// Metrics, if set, counts this relay in the Prometheus collectors.
	Metrics *Metrics
	// Log, if set, receives rare events (a failed session socket); never one line per datagram.
	Log *slog.Logger
}

func (c *Config) idleTimeout() time.Duration {
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

func (c *Config) maxSessions() int {
	if c.MaxSessions <= 0 {
		return DefaultMaxSessions
	}
	return c.MaxSessions
}

// sweepEvery is how often idle sessions are looked for: a session ends between one and
// 1.25 idle timeouts (at most 1s late) after its last datagram.
func (c *Config) sweepEvery() time.Duration {
	return min(max(c.idleTimeout()/4, 5*time.Millisecond), time.Second)
}

// Key names a session: the client's address and port, and the local address it sent to.
type Key struct {
	Client netip.AddrPort
	Local  netip.Addr
}

// engine is what a relay runs on.
type engine interface {
	addr() netip.AddrPort
	ping(ctx context.Context) error
	// drain makes the engine refuse new sessions; closed reports when none are left.
	drain()
	active() int
	close() error
}

// Relay is one running LISTEN=TARGET mapping.
type Relay struct {
	cfg     Config
	st      *stats
	eng     engine
	once    sync.Once
	cerr    error
	drain   atomic.Bool
	lastLog atomic.Int64 // UnixNano of the last warning (logf)
}

// Listen binds cfg.Listen and starts relaying.
func Listen(cfg Config) (*Relay, error) {
	if !cfg.Listen.IsValid() || (!cfg.Target.IsValid() && cfg.Resolve == nil) {
		return nil, errors.New("udp: listen and target addresses are required")
	}
	if cfg.Kind == "" {
		cfg.Kind = KindInbound
	}
	if cfg.Resolve != nil {
		cfg.Engine = "goroutine"
	}
	cfg.Listen = netip.AddrPortFrom(cfg.Listen.Addr().Unmap(), cfg.Listen.Port())
	cfg.Target = netip.AddrPortFrom(cfg.Target.Addr().Unmap(), cfg.Target.Port())
	r := &Relay{cfg: cfg, st: &stats{}}
	var err error
	switch cfg.Engine {
	case "goroutine":
		r.eng, err = newGoroutine(r)
	case "", "auto", "splice":
		r.eng, err = newNative(r)
	default:
		return nil, ErrEngine
	}
	if err != nil {
		return nil, err
	}
	cfg.Metrics.attach(r)
	return r, nil
}

// Addr is the bound address (with the port picked when Listen had port 0).
func (r *Relay) Addr() netip.AddrPort { return r.eng.addr() }

// Target is the address sessions are connected to (invalid for a relay with Resolve).
func (r *Relay) Target() netip.AddrPort { return r.cfg.Target }

// Active reports the sessions alive.
func (r *Relay) Active() int { return r.eng.active() }

// Stats returns the relay's counters so far.
func (r *Relay) Stats() Stats { return r.st.snapshot() }

// Ping reports whether the relay serves: its loop answers (epoll) or its listener is open.
func (r *Relay) Ping(ctx context.Context) error { return r.eng.ping(ctx) }

// Shutdown stops new sessions (their datagrams are dropped as "draining"), lets the existing
// ones run until they idle out or ctx ends, then closes the relay. It returns ctx's error if
// sessions were still alive when it ended.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.drain.Store(true)
	r.eng.drain()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var err error
	for r.eng.active() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
	}
	if cerr := r.Close(); err == nil && !errors.Is(cerr, ErrClosed) {
		err = cerr
	}
	return err
}

// Close ends every session and closes the listener at once.
func (r *Relay) Close() error {
	r.once.Do(func() {
		r.cerr = r.eng.close()
		r.cfg.Metrics.detach(r)
	})
	return r.cerr
}

// admit decides whether a new client may have a session; on true the caller owns a slot of
// cfg.Limit (if any) and must give it back through release. n is the relay's live sessions.
func (r *Relay) admit(n int) bool {
	switch {
	case r.drain.Load():
		r.st.drop(DropDraining)
		return false
	case n >= r.cfg.maxSessions():
		r.st.drop(DropMaxSessions)
		return false
	case r.cfg.Limit != nil && !r.cfg.Limit.Acquire():
		r.st.drop(DropMaxSessions)
		return false
	}
	r.st.sessionsTotal.Add(1)
	return true
}

func (r *Relay) release() {
	if r.cfg.Limit != nil {
		r.cfg.Limit.Release()
	}
}

// logf warns at most once a second: a failure that repeats per datagram (the open-file limit
// reached for every new client) must not flood the log; the drops are counted anyway.
func (r *Relay) logf(msg string, args ...any) {
	if r.cfg.Log == nil {
		return
	}
	now, last := time.Now().UnixNano(), r.lastLog.Load()
	if now-last < int64(time.Second) || !r.lastLog.CompareAndSwap(last, now) {
		return
	}
	r.cfg.Log.Warn(msg, args...)
}
