package loop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/splice"
)

// goroutineFrontend is the portable front end: one accept goroutine per listener, one goroutine
// per connection until its flow is handed to the engine.
type goroutineFrontend struct {
	cfg       Config
	eng       *splice.GoroutineEngine
	listeners []net.Listener
	conns     tracker // accept loops, handshakes and dials
	ctx       context.Context
	cancel    context.CancelFunc
	shutdown  atomic.Bool

	acc    accepter
	egress egressSet
	fwd    *forwarder
	assoc  *associations

	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections not yet handed to the engine
}

func newGoroutine(cfg Config, eng *splice.GoroutineEngine) *goroutineFrontend {
	f := &goroutineFrontend{cfg: cfg, eng: eng, pending: map[net.Conn]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.fwd = newForwarder(&f.cfg)
	f.assoc = newAssociations(&f.cfg)
	f.acc = accepter{cfg: &f.cfg, draining: f.shutdown.Load, wg: &f.conns, track: f.track}
	f.egress = egressSet{acc: f.acc, handle: func(c net.Conn, o *owner, name string, port uint16) {
		defer f.untrack(c)
		egressDial(f.ctx, &f.cfg, f.eng, c, o, name, port)
	}}
	return f
}

// ServeEgress listens on every egress port at a for connections to name.
func (f *goroutineFrontend) ServeEgress(a netip.Addr, name string) error {
	return f.egress.serve(a, name)
}

func (f *goroutineFrontend) Start() error {
	listen := func(ap netip.AddrPort) (net.Listener, error) {
		network := "tcp6" // V6ONLY: shares port numbers with the app's IPv4 sockets
		if ap.Addr().Is4() {
			network = "tcp4"
		}
		ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return nil, fmt.Errorf("loop: cannot listen on %s: %w", ap, err)
		}
		return ln, nil
	}
	for _, m := range f.cfg.Inbound {
		ln, err := listen(m.Listen)
		if err != nil {
			f.closeListeners()
			return err
		}
		f.listeners = append(f.listeners, ln)
	}
	proxies := 0
	for _, ap := range f.cfg.ProxyListen {
		ln, err := listen(ap)
		if err != nil && f.cfg.skipProxy(ap, err) {
			continue
		}
		if err != nil {
			f.closeListeners()
			return err
		}
		f.listeners = append(f.listeners, ln)
		proxies++
	}
	if len(f.cfg.ProxyListen) > 0 && proxies == 0 {
		f.closeListeners()
		return errNoProxyAddr
	}
	peers := make([]peerFunc, len(f.cfg.Inbound))
	for i, m := range f.cfg.Inbound {
		var err error
		if peers[i], _, err = f.cfg.inboundPeer(m); err != nil {
			f.closeListeners()
			return err
		}
	}
	for i, ln := range f.listeners {
		handle, kind := f.proxyConn, kindOutbound
		if i < len(f.cfg.Inbound) {
			m, peer := f.cfg.Inbound[i], peers[i]
			handle = func(c net.Conn, o *owner) { f.inbound(c, o, m, peer) }
			kind = kindInbound
		}
		f.conns.wg.Add(1)
		go f.acc.loop(ln, kind, handle)
	}
	f.cfg.addOwn(f.Listeners())
	return nil
}

func (f *goroutineFrontend) closeListeners() {
	for _, ln := range f.listeners {
		ln.Close()
	}
}

func (f *goroutineFrontend) Listeners() []net.Addr {
	out := make([]net.Addr, len(f.listeners))
	for i, ln := range f.listeners {
		out[i] = ln.Addr()
	}
	return out
}

func (f *goroutineFrontend) track(c net.Conn) {
	f.mu.Lock()
	f.pending[c] = struct{}{}
	f.mu.Unlock()
}

func (f *goroutineFrontend) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.pending, c)
	f.mu.Unlock()
}

func (f *goroutineFrontend) inbound(c net.Conn, o *owner, m config.Mapping, peer peerFunc) {
	defer f.untrack(c)
	o.target = m.Target.String()
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.dialTimeout())
	defer cancel()
	var pre []byte
	var src netip.Addr
	if peer != nil {
		pre, src = peer(addrPort(c.RemoteAddr()), addrPort(c.LocalAddr()))
	}
	up, err := dialInbound(ctx, o.target, src)
	o.Connected(err)
	if err != nil {
		abort(c) // as the splice engine does: the client sees what a closed port would send
		o.close()
		return
	}
	f.untrack(c)
	_ = f.eng.Relay(splice.Flow{ClientFD: -1, UpstreamFD: -1, Client: c, Upstream: up, ToUpstream: pre, Target: o.target, Owner: o})
}

// proxyConn runs one proxy handshake with a read deadline, then dials and hands off.
func (f *goroutineFrontend) proxyConn(c net.Conn, o *owner) {
	defer f.untrack(c)
	s := newSession(&f.cfg, o)
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.handshakeTimeout()))
	buf := make([]byte, 0, 512)
	var req *request
	for req == nil {
		if len(buf) == cap(buf) {
			if len(buf) >= f.cfg.maxHandshakeBytes() {
				s.fail(RejectHandshakeBytes)
				break
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.fail(RejectHandshakeTimeout)
			}
			break
		}
		used, out, r, ferr := s.feed(buf)
		buf = buf[:copy(buf, buf[used:])]
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				break
			}
		}
		if ferr != nil {
			break
		}
		req = r
	}
	if req == nil {
		c.Close()
		o.close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.forward { // plain HTTP: the forwarder serves the connection from here
		f.untrack(c)
		f.fwd.serve(c, buf, o)
		return
	}
	if req.associate { // SOCKS5 UDP ASSOCIATE: the association lives as long as c
		f.untrack(c)
		f.assoc.serve(c, buf, o, req)
		return
	}
	o.request(req)
	up, early, gone, err := dialWatching(f.ctx, &f.cfg, c, buf, req.host(), req.dest.Port)
	if gone { // the client reset: as on the splice loop, no reply and the connect given up
		abort(c)
		o.close()
		return
	}
	if reply := o.Connected(err); err != nil {
		_, _ = c.Write(reply)
		c.Close()
		o.close()
		return
	}
	f.untrack(c)
	_ = f.eng.Relay(splice.Flow{ClientFD: -1, UpstreamFD: -1, Client: c, Upstream: up,
		ToClient: req.successReply(), ToUpstream: early, Target: o.target, Owner: o})
}

// dialWatching dials host:port within the dial timeout while it watches the client c
// (watchClient): it returns the upstream, the client's early bytes (after early, which were
// read before), and gone when the client reset, in which case the dial was given up.
func dialWatching(ctx context.Context, cfg *Config, c net.Conn, early []byte, host string, port uint16) (up net.Conn, rest []byte, gone bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	w := watchClient(c, early, cancel)
	dctx, dcancel := context.WithTimeout(ctx, cfg.dialTimeout())
	up, err = cfg.dialer().DialContext(dctx, host, port)
	dcancel()
	cancel()
	rest, gone = w.stop()
	if gone && up != nil {
		up.Close()
		up = nil
	}
	return up, rest, gone, err
}

// clientWatch reads a proxy client while its dial runs, as the splice loop watches the client
// of a connect in progress: a reset cancels the dial, and bytes the client sends early (up to
// maxEarly) are kept for the upstream. An EOF is kept too: reading again returns it again.
type clientWatch struct {
	c     net.Conn
	early []byte
	gone  bool
	done  chan struct{}
}

// maxEarly bounds the bytes a client may send before its reply; past it the watch stops reading
// and TCP holds the rest back.
const maxEarly = 64 << 10

func watchClient(c net.Conn, early []byte, cancel context.CancelFunc) *clientWatch {
	w := &clientWatch{c: c, early: append(make([]byte, 0, max(len(early), 512)), early...), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for len(w.early) < maxEarly {
			if len(w.early) == cap(w.early) {
				w.early = append(w.early, 0)[:len(w.early)]
			}
			n, err := c.Read(w.early[len(w.early):min(cap(w.early), maxEarly)])
			w.early = w.early[:len(w.early)+n]
			if err == nil {
				continue
			}
			var ne net.Error
			if !errors.Is(err, io.EOF) && !(errors.As(err, &ne) && ne.Timeout()) {
				w.gone = true // reset, or closed under us
				cancel()
			}
			return
		}
	}()
	return w
}

// stop ends the watch and returns the early bytes, and whether the client is gone.
func (w *clientWatch) stop() (early []byte, gone bool) {
	_ = w.c.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	_ = w.c.SetReadDeadline(time.Time{})
	return w.early, w.gone
}

// abort closes c so that its peer gets an RST.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func (f *goroutineFrontend) Ping(context.Context) error { return nil }

// Shutdown closes the listeners and every connection still in its handshake, then waits for
// dials in flight, cancelling them if ctx ends first.
func (f *goroutineFrontend) Shutdown(ctx context.Context) error {
	if f.shutdown.Swap(true) {
		return nil
	}
	f.closeListeners()
	f.egress.close()
	f.mu.Lock()
	for c := range f.pending {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadDeadline(time.Unix(1, 0)) // unblocks handshakes; dials keep their conn
		}
	}
	f.mu.Unlock()
	fwdErr := errors.Join(f.fwd.shutdown(ctx), f.assoc.shutdown(ctx))
	err := f.conns.wait(ctx)
	if err != nil {
		f.cancel()
		_ = f.conns.wait(context.Background())
	}
	f.cancel()
	return errors.Join(fwdErr, err)
}
