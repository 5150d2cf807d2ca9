package udp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// gEngine is the portable engine: one goroutine reads the listener, one per session reads its
// upstream socket. Every reader, the listener's included, borrows a MaxDatagram buffer from a
// pool only while a datagram is in hand (readUp, readFrom), so an idle session costs mostly its
// goroutine's stack: 7.3 KiB measured (TestIdleSessionCost; 129 KiB with a buffer per reader;
// the epoll engine's 0.3 KiB), and an idle listener its stack alone (TestIdleListenerCost).
type gEngine struct {
	r        *Relay
	conn     *net.UDPConn
	raw      syscall.RawConn
	local    netip.AddrPort
	wildcard bool
	v4       bool
	ctx      context.Context // ends when the relay closes: cancels Resolve calls
	cancel   context.CancelFunc

	mu       sync.Mutex
	sessions map[Key]*gSession
	closed   bool
	wg       sync.WaitGroup
}

// Bounds of the datagrams a session holds while Config.Resolve runs, and how long a session
// whose Resolve failed drops its client's datagrams before the next one tries again.
const (
	pendingMax   = 32
	pendingBytes = 64 << 10
	failHold     = time.Second
)

type gSession struct {
	key  Key
	oob  []byte       // the control message that sends a reply from key.Local
	last atomic.Int64 // time of the last datagram either way, UnixNano

	// up is nil until the target is known (at once without Config.Resolve). Until then the
	// listener's datagrams wait in pending; failed means Resolve failed.
	mu      sync.Mutex
	up      *net.UDPConn
	pending [][]byte
	queued  int // bytes in pending
	failed  bool
}

// conn returns the session's upstream socket, or nil while it has none: then p was queued
// (true) or must be dropped (false; reason in drop).
func (s *gSession) conn(p []byte) (up *net.UDPConn, queued bool, drop int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.up != nil:
		return s.up, false, 0
	case s.failed:
		return nil, false, DropResolve
	case len(s.pending) == pendingMax || s.queued+len(p) > pendingBytes:
		return nil, false, DropPending
	}
	s.pending = append(s.pending, bytes.Clone(p))
	s.queued += len(p)
	return nil, true, 0
}

func newGoroutine(r *Relay) (engine, error) {
	la := r.cfg.Listen
	network := "udp6"
	if la.Addr().Is4() {
		network = "udp4"
	}
	// "udp6" sets IPV6_V6ONLY on the socket, as the TCP listeners have it.
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(la))
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(listenerBuffer)
	_ = conn.SetWriteBuffer(listenerBuffer)
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	g := &gEngine{r: r, conn: conn, raw: raw, local: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		wildcard: la.Addr().IsUnspecified(), v4: network == "udp4", sessions: map[Key]*gSession{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.v4 {
		err = ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		err = ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil && g.wildcard {
		g.cancel()
		conn.Close()
		return nil, err
	}
	g.wg.Add(1)
	go g.serve()
	return g, nil
}

func (g *gEngine) addr() netip.AddrPort { return g.local }

func (g *gEngine) ping(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return nil
}

func (g *gEngine) drain() {}

func (g *gEngine) active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

func (g *gEngine) close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.closed = true
	g.cancel() // sessions still resolving, or holding a failure, end
	for _, s := range g.sessions {
		s.mu.Lock()
		if s.up != nil {
			s.up.Close() // its reader ends the session
		}
		s.mu.Unlock()
	}
	g.mu.Unlock()
	err := g.conn.Close()
	g.wg.Wait()
	return err
}

// serve reads the listener until it is closed.
func (g *gEngine) serve() {
	defer g.wg.Done()
	var oob []byte
	if g.wildcard {
		oob = make([]byte, 256)
	}
	st := g.r.st
	for {
		bp, n, oobn, src, trunc, err := readFrom(g.conn, g.raw, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a stray ICMP error reported on the listener; nothing to do
		}
		if trunc {
			bufs.Put(bp)
			st.drop(DropTruncated)
			continue
		}
		key := Key{Client: src, Local: g.local.Addr()}
		var ifindex int
		if g.wildcard {
			key.Local, ifindex = g.dst(oob[:oobn])
		}
		g.toTarget(key, ifindex, (*bp)[:n])
		bufs.Put(bp)
	}
}

// toTarget sends one client datagram on its session, which it finds or starts.
func (g *gEngine) toTarget(key Key, ifindex int, p []byte) {
	st := g.r.st
	s := g.session(key, ifindex)
	if s == nil {
		return
	}
	s.last.Store(time.Now().UnixNano())
	up, queued, drop := s.conn(p)
	switch {
	case queued:
		return
	case up == nil:
		st.drop(drop)
		return
	}
	if _, err := up.Write(p); err != nil {
		st.drop(sendDrop(err))
		return
	}
	st.in(len(p))
}

// dst is the local address a datagram was sent to, from its control message.
func (g *gEngine) dst(oob []byte) (netip.Addr, int) {
	var ip net.IP
	var ifindex int
	if g.v4 {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) == nil {
			ip, ifindex = cm.Dst, cm.IfIndex
		}
	} else {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) == nil {
			ip, ifindex = cm.Dst, cm.IfIndex
		}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return g.local.Addr(), 0
	}
	return a.Unmap(), ifindex
}

// session finds key's session or starts one; nil means the datagram is dropped (counted).
func (g *gEngine) session(key Key, ifindex int) *gSession {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.sessions[key]; s != nil {
		return s
	}
	if g.closed || !g.r.admit(len(g.sessions)) {
		return nil
	}
	s := &gSession{key: key}
	if g.r.cfg.Resolve == nil {
		up, err := dialUpstream(g.r.cfg.Target)
		if err != nil {
			g.r.release()
			g.r.st.drop(DropSocketError)
			g.r.logf("udp: cannot open a session socket", "target", g.r.cfg.Target.String(), "err", err)
			return nil
		}
		s.up = up
	}
	s.last.Store(time.Now().UnixNano())
	if g.wildcard {
		s.oob = replyOOB(key.Local, ifindex)
	}
	g.sessions[key] = s
	g.r.st.active.Add(1)
	g.wg.Add(1)
	if s.up == nil {
		go g.resolve(s)
	} else {
		go g.relayBack(s)
	}
	return s
}

// resolve finds s's target with Config.Resolve, connects its socket, sends what waited, and
// relays replies; a failure drops what waited and holds the session for failHold.
func (g *gEngine) resolve(s *gSession) {
	ctx, cancel := context.WithTimeout(g.ctx, resolveTimeout)
	to, err := g.r.cfg.Resolve(ctx)
	cancel()
	var up *net.UDPConn
	reason := DropResolve
	if err == nil {
		if up, err = dialUpstream(to); err != nil {
			reason = DropSocketError
		}
	}
	st := g.r.st
	s.mu.Lock()
	if err != nil {
		s.failed = true
		for range s.pending {
			st.drop(reason)
		}
		s.pending, s.queued = nil, 0
		s.mu.Unlock()
		if g.ctx.Err() == nil {
			g.r.logf("udp: no target for a session", "listen", g.local.String(), "client", s.key.Client.String(), "err", err)
		}
		defer g.wg.Done()
		defer g.end(s)
		t := time.NewTimer(failHold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-g.ctx.Done():
		}
		return
	}
	// Sent while holding s.mu, so a datagram the listener reads meanwhile queues behind these.
	for _, p := range s.pending {
		if _, werr := up.Write(p); werr != nil {
			st.drop(sendDrop(werr))
			continue
		}
		st.in(len(p))
	}
	s.pending, s.queued = nil, 0
	s.up = up
	closed := g.ctx.Err() != nil // close may have run before up was set: it could not close it
	s.mu.Unlock()
	if closed {
		up.Close()
	}
	g.relayBack(s)
}

// resolveTimeout bounds one Config.Resolve call (the resolver's own timeouts are shorter).
const resolveTimeout = 10 * time.Second

func dialUpstream(target netip.AddrPort) (*net.UDPConn, error) {
	network := "udp6"
	if target.Addr().Is4() {
		network = "udp4"
	}
	return net.DialUDP(network, nil, net.UDPAddrFromAddrPort(target))
}

// replyOOB is the control message that makes a reply leave from local. The interface is named
// only for a link-local address, where the address alone is ambiguous.
func replyOOB(local netip.Addr, ifindex int) []byte {
	if !local.IsLinkLocalUnicast() {
		ifindex = 0
	}
	if local.Is4() {
		return (&ipv4.ControlMessage{Src: local.AsSlice(), IfIndex: ifindex}).Marshal()
	}
	return (&ipv6.ControlMessage{Src: local.AsSlice(), IfIndex: ifindex}).Marshal()
}

// relayBack carries s's replies to its client until s idles out or the relay closes.
func (g *gEngine) relayBack(s *gSession) {
	defer g.wg.Done()
	defer g.end(s)
	idle := g.r.cfg.idleTimeout()
	st := g.r.st
	raw, err := s.up.SyscallConn()
	if err != nil {
		return
	}
	for {
		_ = s.up.SetReadDeadline(time.Unix(0, s.last.Load()).Add(idle))
		bp, n, trunc, err := readUp(s.up, raw)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, s.last.Load())) >= idle {
				return
			}
			continue
		case errors.Is(err, syscall.ECONNREFUSED):
			st.drop(DropUnreachable)
			continue
		case err != nil:
			return
		case trunc:
			bufs.Put(bp)
			st.drop(DropTruncated)
			continue
		}
		s.last.Store(time.Now().UnixNano())
		_, _, err = g.conn.WriteMsgUDPAddrPort((*bp)[:n], s.oob, s.key.Client)
		bufs.Put(bp)
		if err != nil {
			st.drop(sendDrop(err))
			continue
		}
		st.out(n)
	}
}

// bufs holds MaxDatagram buffers for the goroutine engine's session readers.
var bufs = sync.Pool{New: func() any { b := make([]byte, MaxDatagram); return &b }}

func (g *gEngine) end(s *gSession) {
	g.mu.Lock()
	if g.sessions[s.key] == s {
		delete(g.sessions, s.key)
	}
	g.mu.Unlock()
	s.mu.Lock()
	if s.up != nil {
		s.up.Close()
	}
	s.mu.Unlock()
	g.r.st.active.Add(-1)
	g.r.release()
}

// sendDrop classifies a failed send to the target.
func sendDrop(err error) int {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return DropUnreachable
	case errors.Is(err, syscall.EMSGSIZE):
		return DropTooBig
	}
	return DropSendError
}
