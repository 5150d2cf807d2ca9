package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/splice"
)

// kindEgress is a connection the app made to an egress address (transparent egress): it is
// relayed to the name behind the address, as a proxy request for that name would be.
const kindEgress = "egress"

// EgressHooks tell the caller about the egress listeners; every field may be nil.
type EgressHooks struct {
	// Listeners hears of listeners opened (+n) and closed (-n).
	Listeners func(delta int)
	// Conflict hears of an egress port another socket holds (the app listening on 0.0.0.0:P).
	Conflict func(port uint16)
}

// ErrShutdown is returned by ServeEgress once the front end is shutting down.
var ErrShutdown = errors.New("loop: front end is shutting down")

// accepter runs accept loops over net.Listeners: the goroutine front end's ports and, on both
// front ends, the egress listeners.
type accepter struct {
	cfg      *Config
	draining func() bool
	wg       *tracker
	track    func(net.Conn) // may be nil
}

// loop accepts on ln until it is closed; each connection that admit lets in goes to handle on
// its own goroutine. Accept errors (EMFILE and friends) are logged and backed off, 5 ms
// doubling to 1 s, while the flows already relayed keep being served. The caller has added
// this loop to wg.
func (a accepter) loop(ln net.Listener, kind string, handle func(net.Conn, *owner)) {
	defer a.wg.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			a.cfg.log().Error("accept failed", "listen", ln.Addr(), "err", fdErr(err), "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		o := admit(a.cfg, kind, a.draining())
		if o == nil {
			c.Close()
			continue
		}
		if a.track != nil {
			a.track(c)
		}
		a.wg.wg.Add(1)
		go func() {
			defer a.wg.wg.Done()
			handle(c, o)
		}()
	}
}

// egressSet is a front end's egress listeners: one per egress address and egress port, bound
// to that address only, so that the app's own listeners on 127.0.0.1 are never in the way. (A
// listener of the app on 0.0.0.0:P holds P on every loopback address: the egress listener is
// not bound, the conflict is logged and counted once, and the port is left to the app.)
type egressSet struct {
	acc    accepter
	handle func(c net.Conn, o *owner, name string, port uint16)

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	held   map[uint16]bool // ports another socket held when we tried: never bound again
}

// serve binds every egress port at a and relays what they accept to name. A port another
// socket holds is reported (EgressHooks.Conflict and a warning, once) and skipped from then on;
// any other failure is returned, naming the address, after the other ports were tried.
func (e *egressSet) serve(a netip.Addr, name string) error {
	cfg := e.acc.cfg
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrShutdown
	}
	var errs []error
	opened := 0
	for _, port := range cfg.EgressPorts {
		if e.held[port] {
			continue // the app listens on it: leave it alone for good (see conflict)
		}
		ap := netip.AddrPortFrom(a.Unmap(), port)
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		if errors.Is(err, syscall.EADDRINUSE) {
			e.conflict(ap, name, err)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("loop: egress listener %s for %s: %w", ap, name, bindErr(fdErr(err), port)))
			continue
		}
		e.lns = append(e.lns, ln)
		opened++
		target := net.JoinHostPort(name, strconv.Itoa(int(port)))
		e.acc.wg.wg.Add(1)
		go e.acc.loop(ln, kindEgress, func(c net.Conn, o *owner) {
			o.target = target
			e.handle(c, o, name, port)
		})
	}
	if opened > 0 && cfg.EgressHooks.Listeners != nil {
		cfg.EgressHooks.Listeners(opened)
	}
	return errors.Join(errs...)
}

// conflict records a port another socket holds on every loopback address (the app on 0.0.0.0:P):
// it is warned about and counted once, and never bound again at any egress address, so that the
// app can bind it again after a restart (a listener of ours on 127.100.x.y:P would make the
// app's 0.0.0.0:P bind fail).
func (e *egressSet) conflict(ap netip.AddrPort, name string, err error) {
	cfg := e.acc.cfg
	if cfg.EgressHooks.Conflict != nil {
		cfg.EgressHooks.Conflict(ap.Port())
	}
	if e.held == nil {
		e.held = map[uint16]bool{}
	}
	e.held[ap.Port()] = true
	cfg.log().Warn("egress port is held by another socket (the app listening on 0.0.0.0?): connections to egress addresses on it reach that socket, not the sidecar, and the sidecar leaves the port alone from now on",
		"port", ap.Port(), "addr", ap.Addr().String(), "name", name, "err", err)
}

// close stops every egress listener; connections already accepted go on.
func (e *egressSet) close() {
	e.mu.Lock()
	lns := e.lns
	e.lns, e.closed = nil, true
	e.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	if len(lns) > 0 && e.acc.cfg.EgressHooks.Listeners != nil {
		e.acc.cfg.EgressHooks.Listeners(-len(lns))
	}
}

// egressFailed logs, at most once a second, an egress connection whose name could not be
// reached; the app's connection is reset.
func (o *owner) egressFailed(err error) {
	if de, ok := denied(err); ok {
		logDenied(o.cfg.log(), kindEgress, o.target, de)
		return
	}
	if egressWarnings.allow() {
		host, port, _ := net.SplitHostPort(o.target)
		o.cfg.log().Warn("egress connect failed: the app's connection is reset", "name", host, "port", port, "err", fdErr(err))
	}
}

// egressDial serves an egress connection with a dial on this goroutine (the goroutine front end,
// and the gnet one without Config.Race): Happy Eyeballs through Config.Dialer while the app's
// connection is watched, then the pair goes to the engine. A failure resets the app's
// connection, as a closed port would.
func egressDial(ctx context.Context, cfg *Config, eng splice.Engine, c net.Conn, o *owner, name string, port uint16) {
	up, early, gone, err := dialWatching(ctx, cfg, c, nil, name, port)
	if gone { // the app reset: nothing to tell it
		abort(c)
		o.close()
		return
	}
	o.Connected(err)
	if err != nil {
		abort(c)
		o.close()
		return
	}
	_ = eng.Relay(splice.Flow{ClientFD: -1, UpstreamFD: -1, Client: c, Upstream: up, ToUpstream: early,
		Target: o.target, Owner: o})
}

// ErrLowPort wraps EACCES from binding a port below the namespace's unprivileged port start.
var ErrLowPort = errors.New("loop: binding a port below 1024 needs the pod sysctl net.ipv4.ip_unprivileged_port_start at or below it (docs/operations.md, \"Transparent egress\")")

func bindErr(err error, port uint16) error {
	if errors.Is(err, syscall.EACCES) && port < 1024 {
		return fmt.Errorf("%w: %w", ErrLowPort, err)
	}
	return err
}
