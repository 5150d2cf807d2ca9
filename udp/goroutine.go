package udp

import (
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
// upstream socket. A session reader borrows a MaxDatagram buffer from a pool only while a
// datagram is in hand (readUp), so an idle session costs mostly its goroutine's stack: 7.3 KiB
// measured (TestIdleSessionCost; 129 KiB with a buffer per reader; the epoll engine's 0.3 KiB).
type gEngine struct {
	r        *Relay
	conn     *net.UDPConn
	local    netip.AddrPort
	wildcard bool
	v4       bool

	mu       sync.Mutex
	sessions map[Key]*gSession
	closed   bool
	wg       sync.WaitGroup
}

type gSession struct {
	key  Key
	up   *net.UDPConn
	oob  []byte       // the control message that sends a reply from key.Local
	last atomic.Int64 // time of the last datagram either way, UnixNano
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
	g := &gEngine{r: r, conn: conn, local: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		wildcard: la.Addr().IsUnspecified(), v4: network == "udp4", sessions: map[Key]*gSession{}}
	if g.v4 {
		err = ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		err = ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil && g.wildcard {
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
	for _, s := range g.sessions {
		s.up.Close() // its reader ends the session
	}
	g.mu.Unlock()
	err := g.conn.Close()
	g.wg.Wait()
	return err
}

// serve reads the listener until it is closed.
func (g *gEngine) serve() {
	defer g.wg.Done()
	buf := make([]byte, MaxDatagram)
	oob := make([]byte, 256)
	st := g.r.st
	for {
		n, oobn, flags, src, err := g.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a stray ICMP error reported on the listener; nothing to do
		}
		if flags&msgTrunc != 0 {
			st.drop(DropTruncated)
			continue
		}
		key := Key{Client: netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), Local: g.local.Addr()}
		var ifindex int
		if g.wildcard {
			key.Local, ifindex = g.dst(oob[:oobn])
		}
		s := g.session(key, ifindex)
		if s == nil {
			continue
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := s.up.Write(buf[:n]); err != nil {
			st.drop(sendDrop(err))
			continue
		}
		st.in(n)
	}
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
	up, err := dialUpstream(g.r.cfg.Target)
	if err != nil {
		g.r.release()
		g.r.st.drop(DropSocketError)
		g.r.logf("udp: cannot open a session socket", "target", g.r.cfg.Target.String(), "err", err)
		return nil
	}
	s := &gSession{key: key, up: up}
	s.last.Store(time.Now().UnixNano())
	if g.wildcard {
		s.oob = replyOOB(key.Local, ifindex)
	}
	g.sessions[key] = s
	g.r.st.active.Add(1)
	g.wg.Add(1)
	go g.relayBack(s)
	return s
}

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
	s.up.Close()
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
