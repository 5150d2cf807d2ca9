//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Inbound is a listening port the splice engine serves itself: every loop accepts on its own
// SO_REUSEPORT socket and relays each connection to Target on the same loop, so a connection
// never changes thread between accept and relay (no fd duplication, no wake-up of another
// thread). This is the inbound fast path; proxy ports, whose handshakes need parsing, stay with
// the front end.
type Inbound struct {
	// Listen is bound on every loop; an IPv6 address is bound with IPV6_V6ONLY.
	Listen netip.AddrPort
	// Target is connected (non-blocking) for every accepted connection.
	Target netip.AddrPort
	// ConnectTimeout bounds the connect to Target; if zero, 10s.
	ConnectTimeout time.Duration
	// Front admits each accepted connection and hears of accept failures; required.
	Front Admitter
	// Handshake makes the port a proxy port: every connection begins with a handshake that
	// the loop feeds to the Handshaker Front.Admit returns, bounded by HandshakeTimeout (if
	// zero, 10s) and MaxHandshakeBytes (if zero, 16 KiB); Target is unused.
	Handshake         bool
	HandshakeTimeout  time.Duration
	MaxHandshakeBytes int
	// Peer, if set, is asked for each admitted connection (not for a Handshake port), on the
	// loop, with the client's address and the address it connected to: it returns bytes to
	// write to Target before any relayed byte (a PROXY protocol header, say) and the address to
	// bind the connect to (invalid: the kernel's choice). Without Peer nothing about the
	// connection is asked of the kernel: the client's address costs nothing extra (accept4
	// returns it), the local one a getsockname when Listen is a wildcard and PeerLocal is set.
	Peer      func(client, local netip.AddrPort) (toUpstream []byte, source netip.Addr)
	PeerLocal bool
}

// Admitter is the front end of an Inbound port.
type Admitter interface {
	// Admit is asked for each accepted connection, on the loop that accepted it. It returns
	// the connection's Owner, or nil to refuse it (the connection is closed at once). An
	// admitted flow is connecting: its Owner hears Connected, then Ended.
	Admit() Owner
	// AcceptFailed is told of accept failures that are not transient; on fd exhaustion
	// (EMFILE, ENFILE) the listener pauses for acceptPause before it tries again.
	AcceptFailed(error)
}

// acceptBatch bounds the accepts of one readiness event, so that one busy listener does not
// starve the loop's flows; the listener is level-triggered and reports again.
const acceptBatch = 64

// acceptPause is how long a listener rests after the process ran out of fds.
const acceptPause = 100 * time.Millisecond

type listener struct {
	fd       int
	bound    netip.AddrPort // the address as bound (port 0 resolved)
	in       *Inbound
	target   string
	paused   bool
	resumeAt time.Time
}

// ServeInbound binds in.Listen once per loop and starts accepting. It returns the bound address
// (with the port the kernel chose when in.Listen's port is 0).
func (e *SpliceEngine) ServeInbound(in Inbound) (net.Addr, error) {
	e.mu.Lock()
	running := e.state == stateRunning
	e.mu.Unlock()
	if !running {
		return nil, ErrClosed
	}
	ap := in.Listen
	var fds []int
	for range e.loops {
		fd, bound, err := listenReusePort(ap)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("splice: listen on %s: %w", in.Listen, err)
		}
		ap = bound // the other loops bind the port the first one got
		fds = append(fds, fd)
	}
	for i, l := range e.loops {
		l.post(task{kind: taskListen, ln: &listener{fd: fds[i], bound: ap, in: &in, target: in.Target.String()}})
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// StopInbound closes every inbound listener; established flows go on.
func (e *SpliceEngine) StopInbound() {
	for _, l := range e.loops {
		l.post(task{kind: taskUnlisten})
	}
}

// Ping returns once every loop has run a task, or ctx's error.
func (e *SpliceEngine) Ping(ctx context.Context) error {
	for _, l := range e.loops {
		done := make(chan struct{})
		l.post(task{kind: taskPing, done: done})
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("splice: relay loop unresponsive: %w", ctx.Err())
		}
	}
	return nil
}

func listenReusePort(ap netip.AddrPort) (int, netip.AddrPort, error) {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if ap.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, ap, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, ap, os.NewSyscallError(op, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setsockopt", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	// Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt per
	// listener instead of one per connection.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return fail("listen", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).WithZone(ap.Addr().Zone()), uint16(a.Port))
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	}
	return fd, ap, nil
}

// listen registers ln (level-triggered: a batch cut short is reported again).
func (l *eloop) listen(ln *listener) {
	e := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &e); err != nil {
		unix.Close(ln.fd)
		l.e.opts.logf("splice: epoll_ctl listener: %v", err)
		return
	}
	l.listeners[int32(ln.fd)] = ln
}

// unlisten closes every listener of the loop (close also removes it from epoll) and ends the
// handshakes in progress on its proxy ports with a FIN, as the gnet front end's Shutdown does:
// no request can start once the listeners are gone.
func (l *eloop) unlisten() {
	for fd, ln := range l.listeners {
		unix.Close(ln.fd)
		delete(l.listeners, fd)
	}
	l.paused = 0
	for fl := range l.flows {
		if fl.hand != nil {
			l.finish(fl, nil, false)
		}
	}
}

// accept takes up to acceptBatch connections from ln and starts their flows on this loop.
func (l *eloop) accept(ln *listener) {
	for range acceptBatch {
		var nfd int
		var peer netip.AddrPort
		var err error
		if ln.in.Peer != nil {
			nfd, peer, err = accept4Peer(ln.fd)
		} else {
			nfd, err = accept4(ln.fd)
		}
		switch {
		case err == nil:
			l.admit(ln, nfd, peer)
			continue
		case errors.Is(err, unix.EAGAIN):
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			continue
		case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
			// Out of descriptors or memory: rest, or the level-triggered listener would spin.
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
			ln.paused, ln.resumeAt = true, l.now.Add(acceptPause)
			l.paused++
			l.acceptError(ln, err)
		default:
			l.acceptError(ln, err)
		}
		return
	}
}

// accept4 takes one connection, non-blocking and close-on-exec, without asking for the peer's
// address: unix.Accept4 would decode it and, for IPv4, spend a getsockopt(SO_PROTOCOL) per
// connection on it.
func accept4(fd int) (int, error) {
	nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0,
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

// accept4Peer is accept4 that also returns the client's address, which the kernel writes in the
// same call.
func accept4Peer(fd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(nfd), rawAddrPort(&rsa), nil
}

// rawAddrPort decodes an AF_INET6 or AF_INET socket address (invalid for anything else).
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// localAddr is the address connection fd reached: the listener's own unless that is a
// wildcard (or the caller does not need it), else getsockname's answer.
func localAddr(ln *listener, fd int) netip.AddrPort {
	if !ln.in.PeerLocal || !ln.bound.Addr().IsUnspecified() {
		return ln.bound
	}
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	if _, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n))); errno != 0 {
		return netip.AddrPort{}
	}
	return rawAddrPort(&rsa)
}

func (l *eloop) acceptError(ln *listener, err error) {
	ln.in.Front.AcceptFailed(os.NewSyscallError("accept4", err))
}

// resume re-registers listeners whose pause is over.
func (l *eloop) resume() {
	for _, ln := range l.listeners {
		if ln.paused && !l.now.Before(ln.resumeAt) {
			ln.paused = false
			l.paused--
			l.listen(ln)
		}
	}
}

// admit starts the flow of one accepted connection: a non-blocking connect to the target, and
// the pair added to this loop at once. peer is the client's address when in.Peer wants it.
func (l *eloop) admit(ln *listener, cfd int, peer netip.AddrPort) {
	in := ln.in
	o := in.Front.Admit()
	if o == nil {
		unix.Close(cfd)
		return
	}
	if in.Handshake {
		l.admitHandshake(in, o, cfd)
		return
	}
	f := Flow{ClientFD: cfd, UpstreamConnecting: true, ConnectTimeout: in.ConnectTimeout,
		Target: ln.target, Owner: o}
	var src netip.Addr
	if in.Peer != nil {
		f.ToUpstream, src = in.Peer(peer, localAddr(ln, cfd))
	}
	ufd, err := connectFrom(in.Target, src)
	if err != nil {
		// As when the connect fails later (failConnect): the Owner's reply and a FIN, or a reset.
		err = &net.OpError{Op: "dial", Net: "tcp", Addr: targetAddr(ln.target), Err: err}
		if reply := o.Connected(err); len(reply) > 0 {
			_, _ = unix.Write(cfd, reply)
		} else {
			unix.SetsockoptLinger(cfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
		unix.Close(cfd)
		now := time.Now()
		o.Ended(Result{Start: now, End: now, ConnectErr: err})
		return
	}
	l.start(&f, newFlow(&f, cfd, ufd))
}

// start counts a flow the loop accepted itself as active and adds it, or, once the engine is
// closing, closes its sockets and refuses it to its Owner.
func (l *eloop) start(f *Flow, fl *flow) {
	e := l.e
	e.mu.Lock()
	if e.state != stateRunning {
		e.mu.Unlock()
		for _, fd := range fl.fd {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		refuse(f, ErrClosed)
		return
	}
	e.active++
	e.mu.Unlock()
	l.add(fl) // its readiness (bytes already there) is reported at once
}
