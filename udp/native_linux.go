//go:build linux

package udp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is the most datagrams one recvmmsg or sendmmsg call carries. The loop's buffers are
// batch × 64 KiB (2 MiB per relay; fresh pages are touched only as far as datagrams fill them).
const batch = 32

// nEngine is the Linux engine: the listener and every session's upstream socket are
// non-blocking and served by one epoll loop per relay, which owns everything below mu.
// Datagrams move with recvmmsg/sendmmsg, a batch at a time.
type nEngine struct {
	r        *Relay
	lfd      int
	local    netip.AddrPort
	wildcard bool
	target   unix.Sockaddr
	v4Target bool
	epfd     int
	evfd     int
	done     chan struct{}

	calls atomic.Uint64 // epoll_wait, recvmmsg and sendmmsg calls (syscalls, for benchmarks)

	mu     sync.Mutex
	pings  []chan struct{}
	stop   bool
	closed bool

	// Owned by the loop goroutine.
	sessions map[Key]*nSession
	byFD     map[int32]*nSession
	base     time.Time
	now      int64 // nanoseconds since base, read once per turn
	yielded  int64
	buf      []byte
	riov     [batch]unix.Iovec   // each a whole MaxDatagram buffer
	siov     [batch]unix.Iovec   // the received lengths, for sends
	lh       [batch]unix.Mmsghdr // listener receives: names and control messages
	uh       [batch]unix.Mmsghdr // upstream receives: data only
	sh       [batch]unix.Mmsghdr // sends, either way
	names    [batch]unix.RawSockaddrInet6
	oobs     [batch][64]byte
	runFrom  int // first datagram of the pending run to one session
	runOf    *nSession
}

// nSession is one client's session: about 300 bytes with its map entries (TestIdleSessionCost).
type nSession struct {
	key     Key
	fd      int32
	oobLen  uint8
	last    int64                 // loop time of the last datagram either way
	client  unix.RawSockaddrInet6 // the reply's destination, as the kernel gave it
	nameLen uint32
	oob     [40]byte // the reply's IPV6_PKTINFO / IP_PKTINFO (wildcard listeners only)
}

const listenerToken = -1

func newNative(r *Relay) (engine, error) {
	lfd, local, err := listenSocket(r.cfg.Listen)
	if err != nil {
		return nil, err
	}
	target, err := sockaddr(r.cfg.Target)
	if err != nil {
		unix.Close(lfd)
		return nil, err
	}
	n := &nEngine{r: r, lfd: lfd, local: local, wildcard: r.cfg.Listen.Addr().IsUnspecified(),
		target: target, v4Target: r.cfg.Target.Addr().Is4(), done: make(chan struct{}),
		sessions: map[Key]*nSession{}, byFD: map[int32]*nSession{}, base: time.Now(),
		buf: make([]byte, batch*(MaxDatagram+1))}
	if err := n.initPoll(); err != nil {
		unix.Close(lfd)
		return nil, err
	}
	n.initHeaders()
	go n.run()
	return n, nil
}

func (n *nEngine) initPoll() error {
	var err error
	if n.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if n.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(n.epfd)
		return os.NewSyscallError("eventfd", err)
	}
	for _, ev := range []unix.EpollEvent{{Events: unix.EPOLLIN, Fd: int32(n.evfd)}, {Events: unix.EPOLLIN, Fd: listenerToken}} {
		fd := int(ev.Fd)
		if fd == listenerToken {
			fd = n.lfd
		}
		if err := unix.EpollCtl(n.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(n.evfd)
			unix.Close(n.epfd)
			return os.NewSyscallError("epoll_ctl", err)
		}
	}
	return nil
}

func (n *nEngine) initHeaders() {
	for i := range batch {
		n.riov[i] = unix.Iovec{Base: &n.buf[i*(MaxDatagram+1)]}
		n.riov[i].SetLen(MaxDatagram)
		n.lh[i].Hdr.Iov, n.uh[i].Hdr.Iov = &n.riov[i], &n.riov[i]
		n.lh[i].Hdr.Iovlen, n.uh[i].Hdr.Iovlen = 1, 1
		n.lh[i].Hdr.Name = (*byte)(unsafe.Pointer(&n.names[i]))
		n.lh[i].Hdr.Control = &n.oobs[i][0]
		n.sh[i].Hdr.Iov = &n.siov[i]
		n.sh[i].Hdr.Iovlen = 1
	}
}

func (n *nEngine) addr() netip.AddrPort { return n.local }

func (n *nEngine) active() int { return int(n.r.st.active.Load()) }

func (n *nEngine) drain() {}

// ping asks the loop to answer, proving it turns.
func (n *nEngine) ping(ctx context.Context) error {
	ch := make(chan struct{})
	n.mu.Lock()
	if n.closed || n.stop {
		n.mu.Unlock()
		return ErrClosed
	}
	n.pings = append(n.pings, ch)
	n.mu.Unlock()
	n.wake()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *nEngine) close() error {
	n.mu.Lock()
	if n.stop {
		n.mu.Unlock()
		return ErrClosed
	}
	n.stop = true
	n.mu.Unlock()
	n.wake()
	<-n.done
	return nil
}

func (n *nEngine) wake() {
	one := [8]byte{1}
	unix.Write(n.evfd, one[:])
}

// tasks answers pings; it reports whether the loop must stop.
func (n *nEngine) tasks() bool {
	var b [8]byte
	unix.Read(n.evfd, b[:])
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.pings {
		close(ch)
	}
	n.pings = nil
	if n.stop {
		n.closed = true
	}
	return n.stop
}

func (n *nEngine) run() {
	defer n.shut()
	events := make([]unix.EpollEvent, 128)
	sweep := n.r.cfg.sweepEvery()
	idle := int64(n.r.cfg.idleTimeout())
	lastSweep := int64(0)
	for {
		timeout := -1
		if len(n.sessions) > 0 {
			timeout = int(max(time.Duration(lastSweep+int64(sweep)-n.now), time.Millisecond) / time.Millisecond)
		}
		k, err := unix.EpollWait(n.epfd, events, timeout)
		n.calls.Add(1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			n.r.logf("udp: epoll_wait failed; relay stopped", "err", err)
			return
		}
		n.now = int64(time.Since(n.base))
		for _, ev := range events[:max(k, 0)] {
			switch {
			case ev.Fd == int32(n.evfd):
				if n.tasks() {
					return
				}
			case ev.Fd == listenerToken:
				n.fromClients()
			default:
				if s := n.byFD[ev.Fd]; s != nil {
					n.fromTarget(s)
				}
			}
		}
		if n.now-lastSweep >= int64(sweep) {
			n.expire(idle)
			lastSweep = n.now
		}
		if n.now-n.yielded >= int64(5*time.Millisecond) {
			// A loop that only makes system calls keeps its P; let the scheduler in (see
			// splice's yieldEvery).
			runtime.Gosched()
			n.yielded = n.now
		}
	}
}

// shut closes every session and the loop's fds once run returns.
func (n *nEngine) shut() {
	for _, s := range n.sessions {
		n.end(s)
	}
	unix.Close(n.lfd)
	unix.Close(n.epfd)
	n.mu.Lock()
	n.closed = true
	for _, ch := range n.pings {
		close(ch)
	}
	n.pings = nil
	n.mu.Unlock()
	unix.Close(n.evfd)
	close(n.done)
}

func (n *nEngine) expire(idle int64) {
	for _, s := range n.sessions {
		if n.now-s.last >= idle {
			n.end(s)
		}
	}
}

func (n *nEngine) end(s *nSession) {
	unix.Close(int(s.fd)) // also leaves the epoll set
	delete(n.sessions, s.key)
	delete(n.byFD, s.fd)
	n.r.st.active.Add(-1)
	n.r.release()
}

// syscalls reports the system calls r's loop made, if it runs the epoll engine.
func syscalls(r *Relay) uint64 {
	if n, ok := r.eng.(*nEngine); ok {
		return n.calls.Load()
	}
	return 0
}
