package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/splice"
)

// gnetFrontend accepts on gnet event loops (one listener per loop through SO_REUSEPORT). An
// inbound connection leaves gnet in OnOpen: its fd is duplicated, a non-blocking connect to the
// app starts, and both fds go to the splice engine. A proxy connection stays on its loop until
// its handshake is complete, then leaves the same way with any bytes that followed the request.
type gnetFrontend struct {
	gnet.BuiltinEventEngine
	cfg   Config
	proxy netip.AddrPort // zero when the proxy is off

	eng     gnet.Engine
	booted  chan struct{}
	stopped chan error
	bound   []net.Addr

	loops sync.Map // *eventLoop key -> gnet.EventLoop, learned from connections, for Ping

	mu      sync.Mutex
	pending map[gnet.Conn]time.Time // proxy conns in handshake -> deadline

	exited   atomic.Bool // gnet.Rotate returned
	dials    tracker
	ctx      context.Context // cancelled when Shutdown gives up on dials
	cancel   context.CancelFunc
	shutdown atomic.Bool
}

func newGnet(cfg Config) (Frontend, error) {
	f := &gnetFrontend{cfg: cfg, booted: make(chan struct{}), stopped: make(chan error, 1),
		pending: map[gnet.Conn]time.Time{}}
	if cfg.ProxyListen != "" {
		ap, err := netip.ParseAddrPort(cfg.ProxyListen)
		if err != nil {
			return nil, fmt.Errorf("loop: proxy address %q: %w", cfg.ProxyListen, err)
		}
		f.proxy = ap
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

func gnetAddr(ap netip.AddrPort) string {
	if ap.Addr().Is4() {
		return "tcp4://" + ap.String()
	}
	return "tcp6://" + ap.String()
}

func (f *gnetFrontend) addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, m := range f.cfg.Inbound {
		out = append(out, m.Listen)
	}
	if f.proxy.IsValid() {
		out = append(out, f.proxy)
	}
	return out
}

// Start binds by probing each address first with the standard library (so a port in use is
// reported with its address, as gnet's own error does not name it), then runs gnet.
func (f *gnetFrontend) Start() error {
	aps := f.addrs()
	if len(aps) == 0 {
		return errors.New("loop: nothing to listen on")
	}
	var addrs []string
	for _, ap := range aps {
		if err := probeBind(ap); err != nil {
			return err
		}
		addrs = append(addrs, gnetAddr(ap))
		f.bound = append(f.bound, net.TCPAddrFromAddrPort(ap))
	}
	loops := runtime.NumCPU()
	if loops > 8 {
		loops = 8
	}
	go func() {
		err := gnet.Rotate(f, addrs,
			gnet.WithNumEventLoop(loops), gnet.WithReusePort(true), gnet.WithReuseAddr(true),
			gnet.WithTicker(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{f.cfg.log()}))
		f.exited.Store(true)
		if err != nil && !f.shutdown.Load() {
			f.cfg.log().Error("event loops stopped", "err", err)
		}
		f.stopped <- err
	}()
	select {
	case <-f.booted:
		return nil
	case err := <-f.stopped:
		return fmt.Errorf("loop: listen on %v: %w", aps, err)
	}
}

// probeBind reports a port that cannot be bound, naming it. SO_REUSEPORT sockets of the same
// user would not conflict with gnet's, so the probe binds without it.
func probeBind(ap netip.AddrPort) error {
	network := "tcp6"
	if ap.Addr().Is4() {
		network = "tcp4"
	}
	ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("loop: cannot listen on %s: %w", ap, err)
	}
	return ln.Close()
}

func (f *gnetFrontend) Listeners() []net.Addr { return f.bound }

func (f *gnetFrontend) OnBoot(eng gnet.Engine) gnet.Action {
	f.eng = eng
	close(f.booted)
	return gnet.None
}

func (f *gnetFrontend) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	f.loops.LoadOrStore(c.EventLoop(), struct{}{})
	if f.shutdown.Load() {
		f.cfg.Metrics.reject(RejectDraining)
		return nil, gnet.Close
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	if local == nil {
		return nil, gnet.Close
	}
	lap := local.AddrPort()
	lap = netip.AddrPortFrom(lap.Addr().Unmap(), lap.Port())
	if !f.cfg.Limit.Acquire() {
		f.cfg.Metrics.reject(RejectMaxConns)
		warnFull(f.cfg.log(), f.cfg.Limit)
		return nil, gnet.Close
	}
	if f.proxy.IsValid() && listenMatches(f.proxy, lap) {
		s := newSession(&f.cfg)
		c.SetContext(s)
		f.mu.Lock()
		f.pending[c] = time.Now().Add(f.cfg.handshakeTimeout())
		f.mu.Unlock()
		return nil, gnet.None
	}
	m, ok := matchMapping(f.cfg.Inbound, lap)
	if !ok {
		f.cfg.Limit.Release()
		return nil, gnet.Close
	}
	f.inbound(c, m)
	return nil, gnet.Close
}

// inbound hands an accepted connection and a connecting socket to the app to the engine.
func (f *gnetFrontend) inbound(c gnet.Conn, m config.Mapping) {
	release := f.cfg.Limit.Release
	cfd, err := c.Dup()
	if err != nil {
		release()
		f.cfg.log().Error("dup of accepted connection failed", "listen", m.Listen, "err", fdErr(err))
		return
	}
	ufd, err := connectNonblock(m.Target)
	if err != nil {
		release()
		writeAndClose(cfd, nil)
		f.cfg.Metrics.connectFailed("inbound")
		f.cfg.log().Warn("connect to app failed", "target", m.Target, "err", fdErr(err))
		return
	}
	f.cfg.Metrics.flowStarted("inbound", f.cfg.Engine.Name())
	target := m.Target.String()
	_ = f.cfg.Engine.Relay(splice.Flow{
		ClientFD: cfd, UpstreamFD: ufd, UpstreamConnecting: true, ConnectTimeout: f.cfg.dialTimeout(),
		Kind: "inbound", Target: target, Done: flowDone(&f.cfg, "inbound", target, release),
	})
}

func (f *gnetFrontend) OnTraffic(c gnet.Conn) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok {
		return gnet.Close
	}
	buf, _ := c.Peek(-1)
	n, out, req, err := s.feed(buf)
	if n > 0 {
		_, _ = c.Discard(n)
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	if err != nil {
		return gnet.Close // OnClose releases the slot; gnet flushes out before closing
	}
	if req == nil {
		if c.InboundBuffered() > f.cfg.maxHandshakeBytes() {
			s.fail(RejectHandshakeBytes)
			return gnet.Close
		}
		return gnet.None
	}
	fd, derr := c.Dup()
	if derr != nil {
		f.cfg.log().Error("dup of proxy connection failed", "err", fdErr(derr))
		return gnet.Close
	}
	var early []byte
	if rest := c.InboundBuffered(); rest > 0 {
		b, _ := c.Next(rest)
		early = append([]byte(nil), b...)
	}
	s.handedOff = true
	f.forget(c)
	f.dials.wg.Add(1)
	go func() {
		defer f.dials.wg.Done()
		f.dialAndRelay(fd, req, early)
	}()
	return gnet.Close
}

// dialAndRelay runs off the event loop: it dials the destination, then gives the pair to the
// engine with the success reply and the client's early bytes, or answers the failure and closes.
func (f *gnetFrontend) dialAndRelay(fd int, req *request, early []byte) {
	up, err := dial(f.ctx, &f.cfg, req)
	if err != nil {
		writeAndClose(fd, req.failureReply(err))
		f.cfg.Limit.Release()
		return
	}
	f.cfg.Metrics.flowStarted("outbound", f.cfg.Engine.Name())
	target := req.String()
	_ = f.cfg.Engine.Relay(splice.Flow{
		ClientFD: fd, UpstreamFD: -1, Upstream: up, ToClient: req.successReply(), ToUpstream: early,
		Kind: "outbound", Target: target, Done: flowDone(&f.cfg, "outbound", target, f.cfg.Limit.Release),
	})
}

func (f *gnetFrontend) OnClose(c gnet.Conn, _ error) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok || s.handedOff {
		return gnet.None
	}
	f.forget(c)
	f.cfg.Limit.Release()
	return gnet.None
}

func (f *gnetFrontend) forget(c gnet.Conn) {
	f.mu.Lock()
	delete(f.pending, c)
	f.mu.Unlock()
}

// OnTick closes handshakes past their deadline. gnet has no per-connection deadlines.
func (f *gnetFrontend) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	var expired []gnet.Conn
	f.mu.Lock()
	for c, dl := range f.pending {
		if now.After(dl) {
			expired = append(expired, c)
			delete(f.pending, c)
		}
	}
	f.mu.Unlock()
	for _, c := range expired {
		if s, ok := c.Context().(*session); ok {
			s.fail(RejectHandshakeTimeout)
		}
		_ = c.Close() // asynchronous: runs on the conn's loop, then OnClose
	}
	return 250 * time.Millisecond, gnet.None
}

func (f *gnetFrontend) Ping(ctx context.Context) error {
	if f.exited.Load() && !f.shutdown.Load() {
		return errors.New("loop: event loops have stopped")
	}
	var errs []error
	f.loops.Range(func(k, _ any) bool {
		el := k.(gnet.EventLoop)
		done := make(chan struct{})
		if err := el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error { close(done); return nil })); err != nil {
			errs = append(errs, err)
			return true
		}
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("loop: event loop unresponsive: %w", ctx.Err()))
			return false
		}
		return true
	})
	return errors.Join(errs...)
}

func (f *gnetFrontend) Shutdown(ctx context.Context) error {
	if f.shutdown.Swap(true) {
		return nil
	}
	var stopErr error
	select {
	case <-f.booted:
		stopErr = f.eng.Stop(ctx)
		<-f.stopped
	default:
	}
	err := f.dials.wait(ctx)
	if err != nil {
		f.cancel()
		_ = f.dials.wait(context.Background()) // dials return promptly once cancelled
	}
	f.cancel()
	return errors.Join(stopErr, err)
}
