package loop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nat464/nat464-sidecar/socks"
	"github.com/nat464/nat464-sidecar/splice"
)

// SOCKS5 UDP ASSOCIATE (RFC 1928 §7). An association is a proxy connection whose request was
// CMD 03: it keeps its flow slot from the request until its TCP control connection closes, and
// owns two UDP sockets meanwhile: the relay, on the loopback address of the control
// connection's family (its address is the reply's BND), which only the client that associated
// may send to; and one unconnected dual-stack upstream socket, from which the payloads go out
// and the answers come back. Three goroutines carry it (the control watcher, one reader per
// socket); associations are bounded by the flow slots.
//
//	client ──UDP hdr+data──> relay ──data──> upstream socket ──> target (planned once per
//	client <──UDP hdr+data── relay <──data── upstream socket <── target  destination)
//
// Datagrams are never queued in user space: each reader holds one datagram at a time, and the
// sockets' kernel buffers hold the rest (and drop past them, which the kernel counts).

// kindAssociate is an association's flow kind.
const kindAssociate = "udp_associate"

// Bounds of one association's state.
const (
	// maxAssocPlans caps the destinations (name or literal, and port) whose plan an
	// association remembers; a new one past it evicts an arbitrary entry.
	maxAssocPlans = 64
	// maxAssocPeers caps the upstream addresses whose answers are relayed back; past it an
	// arbitrary one is forgotten (its answers are then dropped as unsolicited).
	maxAssocPeers = 256
	// planRetry is how long a failed plan (name not found, policy) is remembered before the
	// next datagram for that destination tries again.
	planRetry = 5 * time.Second
	// maxDatagram is the largest UDP payload.
	maxDatagram = 65535
)

// Reasons a datagram is dropped, the values of udp_associate_drops_total's "reason" label.
const (
	DropSource      = "source"      // from anyone but the associated client
	DropFragment    = "fragment"    // FRAG != 0: reassembly is not implemented
	DropMalformed   = "malformed"   // a header that does not parse
	DropResolve     = "resolve"     // the destination name did not resolve
	DropPolicy      = "policy"      // NAT64 policy, no prefix, or a refused address
	DropSelf        = "self"        // the destination is one of the sidecar's own sockets
	DropUnsolicited = "unsolicited" // an answer from an address the client never sent to
	DropSendFailed  = "send_failed" // sendto failed (EMSGSIZE, unreachable, ...)
)

// DatagramPlanner plans where an association sends the datagrams for host:port, without a race;
// eyeballs.Dialer.Datagram is one (a native AAAA, else the IPv4 address, routed or synthesized
// as a connect would be, and Approve asked). from is how answers from to are reported to the
// client. Errors are classified as ReplyFor does.
type DatagramPlanner interface {
	Datagram(ctx context.Context, host string, port uint16) (to netip.AddrPort, from netip.Addr, err error)
}

// planner is the Dialer's DatagramPlanner, or plainDatagrams for a Dialer without one.
func (c *Config) planner() DatagramPlanner {
	if p, ok := c.dialer().(DatagramPlanner); ok {
		return p
	}
	return plainDatagrams{}
}

// plainDatagrams sends to literals as they are and to a name's first address, IPv6 first, as
// the system resolver gives it; a stand-in for tests and for runs without the eyeballs dialer.
type plainDatagrams struct{}

func (plainDatagrams) Datagram(ctx context.Context, host string, port uint16) (netip.AddrPort, netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), port), a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, netip.Addr{}, err
	}
	best := addrs[0].Unmap()
	for _, a := range addrs {
		if a.Is6() && !a.Is4In6() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best, port), best, nil
}

// associations are a front end's live associations: their relay ports (which no association
// may send to) and what Shutdown waits for.
type associations struct {
	cfg *Config
	wg  sync.WaitGroup

	mu       sync.Mutex
	draining bool
	live     map[*association]struct{}
	relays   map[uint16]int // relay ports on loopback -> associations bound there (one per family)
}

func newAssociations(cfg *Config) *associations {
	return &associations{cfg: cfg, live: map[*association]struct{}{}, relays: map[uint16]int{}}
}

// serveFD is serve for a control connection taken from an event loop; the caller did wg.Add.
func (s *associations) serveFD(fd int, early []byte, o *owner, req *request) {
	f := os.NewFile(uintptr(fd), "socks-udp-control")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		s.cfg.log().Error("SOCKS5 UDP control connection lost", "err", fdErr(fmt.Errorf("loop: file conn: %w", err)))
		o.close()
		return
	}
	s.serve(c, early, o, req)
}

// serve runs the association req asked for on its control connection c until c closes, and
// settles the owner. early are bytes the client sent after the request (ignored, as everything
// on the control connection is).
func (s *associations) serve(c net.Conn, _ []byte, o *owner, req *request) {
	o.kind = kindAssociate
	o.request(req)
	a, err := s.open(c, req)
	if reply := o.Connected(err); err != nil {
		_, _ = c.Write(reply)
		c.Close()
		o.close()
		return
	}
	o.target = a.relay.LocalAddr().String()
	start := time.Now()
	if _, err := c.Write(socks.AppendReply(nil, socks.ReplySucceeded, a.relayAddr)); err != nil {
		a.close()
		a.set.remove(a)
		o.Ended(splice.Result{Start: start, End: time.Now(), Err: err})
		return
	}
	err = a.run()
	o.Ended(splice.Result{Up: a.up.Load(), Down: a.down.Load(), Start: start, End: time.Now(), Err: err})
}

// open binds an association's sockets, or fails with the reason (draining, or a bind error).
//
// An association holds three fds (control, relay, upstream) where a flow slot budgets two (the
// derived --max-conns), so it takes a second slot for its UDP sockets, given back by remove.
func (s *associations) open(c net.Conn, req *request) (a *association, err error) {
	if !s.cfg.Limit.Acquire() {
		s.cfg.Metrics.reject(RejectMaxConns)
		warnFull(s.cfg.log(), s.cfg.Limit)
		return nil, errAssociationSlot
	}
	defer func() {
		if err != nil {
			s.cfg.Limit.Release()
		}
	}()
	local := addrPortOf(c.LocalAddr())
	relayIP := netip.IPv6Loopback()
	if local.Addr().Unmap().Is4() {
		relayIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	relay, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(relayIP, 0)))
	if err != nil {
		return nil, fmt.Errorf("loop: udp relay: %w", err)
	}
	up, err := net.ListenUDP("udp", &net.UDPAddr{}) // dual-stack where the host has IPv6
	if err != nil {
		relay.Close()
		return nil, fmt.Errorf("loop: udp upstream socket: %w", err)
	}
	a = &association{set: s, cfg: s.cfg, ctl: c, relay: relay, upstream: up,
		relayAddr: relay.LocalAddr().(*net.UDPAddr).AddrPort(),
		plans:     map[socks.Addr]plan{}, peers: map[netip.AddrPort]netip.Addr{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.expectClient(req.dest, addrPortOf(c.RemoteAddr()))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		a.close()
		return nil, errors.New("loop: draining")
	}
	s.live[a] = struct{}{}
	s.relays[a.relayAddr.Port()]++
	s.wg.Add(1)
	return a, nil
}

// errAssociationSlot refuses an association when no second flow slot is left (REP 01).
var errAssociationSlot = errors.New("loop: max-conns reached: no flow slot for the association's UDP sockets")

func (s *associations) remove(a *association) {
	s.cfg.Limit.Release()
	s.mu.Lock()
	delete(s.live, a)
	if s.relays[a.relayAddr.Port()]--; s.relays[a.relayAddr.Port()] <= 0 {
		delete(s.relays, a.relayAddr.Port())
	}
	s.mu.Unlock()
	s.wg.Done()
}

// isRelay reports whether to would reach an association's relay socket.
func (s *associations) isRelay(to netip.AddrPort) bool {
	if a := connectAddr(to.Addr()); !a.IsLoopback() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relays[to.Port()] > 0
}

// shutdown refuses new associations and waits for the live ones to end with their control
// connections; when ctx ends first, it ends them.
func (s *associations) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for a := range s.live {
		abort(a.ctl)
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// plan is where an association sends one destination's datagrams, or why it does not.
type plan struct {
	to   netip.AddrPort
	from netip.Addr // how answers from to are reported
	err  error
	at   time.Time
}

// association is one UDP ASSOCIATE, from its reply to the close of its control connection.
type association struct {
	set       *associations
	cfg       *Config
	ctl       net.Conn
	relay     *net.UDPConn // the client's side, on loopback
	upstream  *net.UDPConn // unconnected, dual-stack
	relayAddr netip.AddrPort
	ctx       context.Context // cancelled by close: a name lookup in progress gives up
	cancel    context.CancelFunc

	// The client: wantIP is fixed at the request; wantPort is the request's DST.PORT, or 0 until
	// the first datagram from wantIP fixes it (client is then set, and read by both readers).
	wantIP   netip.Addr
	wantPort uint16
	client   atomic.Pointer[netip.AddrPort]

	plans map[socks.Addr]plan // the client reader's only

	mu    sync.Mutex
	peers map[netip.AddrPort]netip.Addr // upstream addresses sent to -> as reported to the client

	up, down atomic.Int64 // payload bytes relayed each way
}

// expectClient fixes who may send: the request's DST.ADDR when it names one, else the control
// connection's peer; the request's DST.PORT when not 0, else the first datagram's (RFC 1928 §6).
func (a *association) expectClient(dst socks.Addr, peer netip.AddrPort) {
	a.wantIP = peer.Addr().Unmap()
	if dst.IP.IsValid() && !dst.IP.IsUnspecified() {
		a.wantIP = dst.IP.Unmap()
	}
	a.wantPort = dst.Port
	if a.wantPort != 0 {
		ap := netip.AddrPortFrom(a.wantIP, a.wantPort)
		a.client.Store(&ap)
	}
}

// accepts reports whether a datagram from src comes from the client, fixing its port from the
// first one when the request left it open.
func (a *association) accepts(src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if c := a.client.Load(); c != nil {
		return *c == src
	}
	if src.Addr() != a.wantIP {
		return false
	}
	a.client.Store(&src) // only the client reader stores, so no race between two first datagrams
	return true
}

// run relays until the control connection closes (or is aborted by shutdown), then closes the
// sockets and waits for the readers.
func (a *association) run() error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.fromClient() }()
	go func() { defer wg.Done(); a.fromUpstream() }()
	_, err := io.Copy(io.Discard, a.ctl) // nothing is expected on the control connection
	a.close()
	wg.Wait()
	a.set.remove(a)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (a *association) close() {
	a.cancel()
	a.ctl.Close()
	a.relay.Close()
	a.upstream.Close()
}

// fromClient reads the client's datagrams and sends their payloads to their destinations.
func (a *association) fromClient() {
	m := a.cfg.Metrics
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient error (ICMP reflected on some kernels); keep serving
		}
		if !a.accepts(src) {
			m.udpDrop(DropSource)
			continue
		}
		h, off, err := socks.ParseUDPHeader(buf[:n])
		switch {
		case err != nil:
			m.udpDrop(DropMalformed)
			continue
		case h.Frag != 0:
			m.udpDrop(DropFragment)
			continue
		}
		p := a.plan(h.Dest)
		if p.err == nil && a.set.isRelay(p.to) {
			p.err = fmt.Errorf("%w (%w): %s is a UDP relay", ErrSelf, socks.ErrPolicy, p.to)
		}
		if p.err != nil {
			m.udpDrop(dropReason(p.err))
			continue
		}
		a.remember(p.to, p.from)
		if _, err := a.upstream.WriteToUDPAddrPort(buf[off:n], p.to); err != nil {
			m.udpDrop(DropSendFailed)
			continue
		}
		a.up.Add(int64(n - off))
		m.udpDatagram(true)
	}
}

// plan returns the plan for dst, making it on the first datagram (and again after planRetry
// when it failed).
func (a *association) plan(dst socks.Addr) plan {
	if p, ok := a.plans[dst]; ok && (p.err == nil || time.Since(p.at) < planRetry) {
		return p
	}
	if len(a.plans) >= maxAssocPlans {
		for k := range a.plans { // an arbitrary one: map order
			delete(a.plans, k)
			break
		}
	}
	host := dst.Host
	if !dst.IsName() {
		host = dst.IP.String()
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.dialTimeout())
	to, from, err := a.cfg.planner().Datagram(ctx, host, dst.Port)
	cancel()
	p := plan{to: netip.AddrPortFrom(to.Addr().Unmap(), to.Port()), from: from, err: err, at: time.Now()}
	if de, ok := denied(err); ok {
		logDenied(a.cfg.log(), "socks5-udp", dst.String(), de)
	} else if err != nil {
		a.cfg.log().Log(context.Background(), dialLevel(err), "SOCKS5 UDP destination refused", "dest", dst.String(),
			"err", err, "self", errors.Is(err, ErrSelf))
	}
	a.plans[dst] = p
	return p
}

// remember lets answers from to through, reported as from.
func (a *association) remember(to netip.AddrPort, from netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.peers[to]; !ok && len(a.peers) >= maxAssocPeers {
		for k := range a.peers {
			delete(a.peers, k)
			break
		}
	}
	a.peers[to] = from
}

// fromUpstream relays answers to the client, each behind the header that names its source.
// The payload is read after room for the longest IP header, which is then written just
// before it, so a datagram is never copied.
func (a *association) fromUpstream() {
	m := a.cfg.Metrics
	const room = 3 + 1 + 16 + 2
	buf := make([]byte, room+maxDatagram)
	for {
		n, src, err := a.upstream.ReadFromUDPAddrPort(buf[room:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		a.mu.Lock()
		from, ok := a.peers[src]
		a.mu.Unlock()
		client := a.client.Load()
		if !ok || client == nil {
			m.udpDrop(DropUnsolicited)
			continue
		}
		var hdr [room]byte
		h, _ := socks.AppendUDPHeader(hdr[:0], socks.UDPHeader{Dest: socks.Addr{IP: from, Port: src.Port()}})
		start := room - len(h)
		copy(buf[start:], h)
		if _, err := a.relay.WriteToUDPAddrPort(buf[start:room+n], *client); err != nil {
			m.udpDrop(DropSendFailed)
			continue
		}
		a.down.Add(int64(n))
		m.udpDatagram(false)
	}
}

// dropReason names why a plan failed.
func dropReason(err error) string {
	switch {
	case errors.Is(err, ErrSelf):
		return DropSelf
	case ReplyFor(err) == socks.ReplyHostUnreachable:
		return DropResolve
	}
	return DropPolicy
}

// addrPortOf is a TCP or UDP address as a netip.AddrPort (invalid for anything else).
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
