//go:build linux

package splice

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// roundsPerTurn bounds the drain/pump rounds one direction does before letting the loop serve
// other flows (a round moves at most one pipe's worth).
const roundsPerTurn = 8

// Epoll interest: edge-triggered reads always; EPOLLOUT only while a write is pending.
const (
	evBase = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	evOut  = unix.EPOLLOUT
)

// direction is one half of a flow: bytes from fd[src] to fd[dst].
//
// Invariant: between turns of the loop, pipe != nil only while inPipe > 0, and buf != nil only
// while bufOff < bufEnd: an empty pipe goes back to the pool, an empty buffer to the loop.
// Invariant: at most one of pipe and buf is set.
// Invariant: src is only drained into an empty pipe or buffer, so EAGAIN from a drain means src
// has nothing to read, never that the pipe is full.
type direction struct {
	src, dst int
	pre      []byte // written to dst before any relayed byte
	countPre bool   // pre counts in n (ToUpstream does, ToClient does not)
	pipe     *pipe
	inPipe   int    // bytes in pipe, not yet written to dst
	buf      []byte // copy buffer, used instead of a pipe when the pool had none
	bufOff   int    // buf[bufOff:bufEnd] is read from src, not yet written to dst
	bufEnd   int
	n        int64 // bytes written to dst
	done     bool  // src hit EOF, everything was written and dst was shut for writing
}

// flow is the loop-owned state of one relayed connection pair.
type flow struct {
	fd  [2]int
	dir [2]direction

	readable [2]bool // edge-triggered readiness, cleared on EAGAIN
	writable [2]bool // cleared on EAGAIN, set by EPOLLOUT
	errSeen  [2]bool // EPOLLERR not yet looked at

	hand            *handshake // while the client is in a proxy handshake (Inbound.Handshake)
	connecting      bool
	connectDeadline time.Time
	connectErr      error
	race            // while racer != nil: the upstream is being raced for

	target      string
	owner       Owner
	start, last time.Time
	queued      bool // in loop.ready
	dead        bool
}

func newFlow(f *Flow, cfd, ufd int) *flow {
	fl := &flow{
		fd:         [2]int{cfd, ufd},
		writable:   [2]bool{true, !f.UpstreamConnecting && f.Racer == nil},
		connecting: f.UpstreamConnecting || f.Racer != nil,
		race:       race{racer: f.Racer, timerAt: -1},
		target:     f.Target,
		owner:      f.Owner,
	}
	fl.dir[dirUp] = direction{src: sideClient, dst: sideUpstream, pre: f.ToUpstream, countPre: true}
	fl.dir[dirDown] = direction{src: sideUpstream, dst: sideClient, pre: f.ToClient}
	if fl.connecting {
		fl.connectDeadline = time.Now().Add(f.connectTimeout())
		if f.Racer != nil {
			fl.connectDeadline = fl.connectDeadline.Add(RaceGrace)
		}
	}
	return fl
}

// add registers a new flow's sockets. Readiness that already exists is reported by epoll at once.
func (l *eloop) add(fl *flow) {
	fl.start, fl.last = l.now, l.now
	l.flows[fl] = struct{}{}
	for _, fd := range fl.fd {
		if fd < 0 {
			continue // the upstream of a racing flow, not chosen yet
		}
		// Both sides are watched for EPOLLOUT from the start, edge-triggered: the edge comes
		// when a connect completes and, later, only after a write hit EAGAIN and space freed up,
		// so no EPOLL_CTL_MOD is ever needed and no wake-up is wasted.
		ev := uint32(evBase | evOut)
		e := unix.EpollEvent{Events: ev, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &e); err != nil {
			l.finish(fl, os.NewSyscallError("epoll_ctl", err), true)
			return
		}
		l.byFD[int32(fd)] = fl
	}
	if fl.racer != nil {
		l.startRace(fl)
		return
	}
	// Bytes to send first (a proxy reply, optimistic data) go out now: their peers may be
	// waiting for them before sending anything, so no readiness event would ever come.
	if len(fl.dir[dirUp].pre) > 0 || len(fl.dir[dirDown].pre) > 0 {
		l.process(fl)
	}
}

func (l *eloop) event(fl *flow, fd int32, ev uint32) {
	if fl.hand != nil {
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.handshakeStep(fl)
		}
		return
	}
	if fl.racer != nil && int(fd) != fl.fd[sideClient] {
		l.attemptEvent(fl, int(fd), ev)
		return
	}
	s := sideClient
	if int(fd) == fl.fd[sideUpstream] {
		s = sideUpstream
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		fl.readable[s] = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		fl.writable[s] = true
	}
	if ev&unix.EPOLLERR != 0 || (fl.connecting && s == sideUpstream && ev&unix.EPOLLHUP != 0) {
		fl.errSeen[s] = true
	}
	l.process(fl)
}

// process advances both directions of fl as far as they go without blocking, then ends the flow
// or updates its epoll interest.
func (l *eloop) process(fl *flow) {
	if fl.dead {
		return
	}
	if fl.connecting && !l.checkConnect(fl) {
		return
	}
	for i := range fl.dir {
		if err := l.step(fl, i); err != nil {
			l.finish(fl, err, true)
			return
		}
	}
	// A socket error that no running direction read (e.g. an RST on a side whose reads are done).
	for s := range fl.errSeen {
		if fl.errSeen[s] {
			fl.errSeen[s] = false
			if err := sockError(fl.fd[s]); err != nil {
				l.finish(fl, err, true)
				return
			}
		}
	}
	if fl.dir[dirUp].done && fl.dir[dirDown].done {
		l.finish(fl, nil, false)
	}
}

// checkConnect reports whether the upstream connect has completed; it ends the flow if it failed.
func (l *eloop) checkConnect(fl *flow) bool {
	if fl.errSeen[sideClient] {
		if err := sockError(fl.fd[sideClient]); err != nil {
			l.finish(fl, err, true)
			return false
		}
	}
	if !fl.writable[sideUpstream] {
		return false
	}
	// Writable with neither EPOLLERR nor EPOLLHUP means connected; only a socket that reported
	// trouble is asked for its error.
	if fl.errSeen[sideUpstream] {
		v, err := unix.GetsockoptInt(fl.fd[sideUpstream], unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && v != 0 {
			err = unix.Errno(v)
		}
		if err != nil {
			l.failConnect(fl, err)
			return false
		}
	}
	fl.connecting = false
	fl.errSeen[sideUpstream] = false
	fl.last = l.now
	fl.owner.Connected(nil)
	return true
}

// failConnect ends a flow whose upstream never connected. The client gets the failure reply
// Owner.Connected gives and a FIN, or a reset when there is none.
func (l *eloop) failConnect(fl *flow, errno error) {
	if fl.racer != nil { // the backstop of a race: the racer says what it was waiting for
		l.endConnect(fl, l.endRace(fl, context.DeadlineExceeded))
		return
	}
	op := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	if sa, err := unix.Getsockname(fl.fd[sideUpstream]); err == nil {
		op.Source = sockaddrAddr(sa)
	}
	if fl.target != "" {
		op.Addr = targetAddr(fl.target)
	}
	l.endConnect(fl, op)
}

// endConnect ends a flow whose upstream connect failed with err, telling its Owner.
func (l *eloop) endConnect(fl *flow, err error) {
	fl.connectErr = err
	if reply := fl.owner.Connected(err); len(reply) > 0 {
		// Best effort: a reply this small fits the send buffer of a socket that carried only
		// a handshake.
		_, _ = unix.Write(fl.fd[sideClient], reply)
		l.finish(fl, nil, false)
		return
	}
	l.finish(fl, nil, true)
}

// targetAddr names a flow's upstream in errors (net.OpError prints Source->Addr).
type targetAddr string

func (a targetAddr) Network() string { return "tcp" }
func (a targetAddr) String() string  { return string(a) }

func sockaddrAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// finish ends fl: both sockets are closed (abortively, with RST, when abort is set), its pipes
// are returned (or closed if they still hold bytes), and the Owner hears Ended.
func (l *eloop) finish(fl *flow, err error, abort bool) {
	fl.dead = true
	if fl.racer != nil {
		l.endRace(fl, cmp.Or(err, ErrClosed))
	}
	for _, fd := range fl.fd {
		if fd < 0 {
			continue
		}
		if l.byFD[int32(fd)] == fl {
			// No EPOLL_CTL_DEL: the engine holds the only reference to the socket (the Flow
			// contract), so close(2) takes it out of the epoll set.
			delete(l.byFD, int32(fd))
		}
		if abort {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
		unix.Close(fd)
	}
	for i := range fl.dir {
		l.release(&fl.dir[i])
	}
	delete(l.flows, fl)
	l.e.flowEnding()
	fl.owner.Ended(Result{
		Up: fl.dir[dirUp].n, Down: fl.dir[dirDown].n,
		Start: fl.start, End: time.Now(),
		ConnectErr: fl.connectErr, Err: err,
	})
	l.e.flowSettled()
}

// release gives d's pipe back (to the pool when empty, closed when it still holds bytes) and its
// copy buffer to the loop (bytes still in it belong to a dead flow).
func (l *eloop) release(d *direction) {
	if d.pipe != nil {
		if d.inPipe > 0 {
			l.e.pool.discard(d.pipe)
		} else {
			l.e.pool.put(d.pipe)
		}
		d.pipe, d.inPipe = nil, 0
	}
	if d.buf != nil {
		l.putBuf(d.buf)
		d.buf, d.bufOff, d.bufEnd = nil, 0, 0
	}
}

// sockError returns the pending error of a socket, if any.
func sockError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if v == 0 {
		return nil
	}
	return ioError("recv", unix.Errno(v))
}

// ioError wraps a failed socket call; a reset also wraps ErrReset.
func ioError(op string, err error) error {
	serr := os.NewSyscallError(op, err)
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return fmt.Errorf("%w: %w", ErrReset, serr)
	}
	return serr
}
