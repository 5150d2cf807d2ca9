//go:build linux

package splice

import (
	"cmp"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of a handshake on the loop when Inbound leaves them zero.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultHandshakeBytes   = 16 << 10
	handshakeBufStart       = 512
)

// handshake is the state of a flow whose client is still in its proxy handshake: no upstream
// yet, the client's bytes gathered in buf until the Handshaker has a request.
type handshake struct {
	hs       Handshaker
	buf      []byte
	max      int
	deadline time.Time
	connect  time.Duration // the upstream's connect timeout, once the request is in
}

// admitHandshake starts the flow of a connection accepted on a proxy port: only the client is
// registered, and its bytes go to the Handshaker (handshakeStep) until it names the upstream.
func (l *eloop) admitHandshake(in *Inbound, o Owner, cfd int) {
	hs, ok := o.(Handshaker)
	if !ok { // a front end bug: the port was served as a proxy port with a plain Admitter
		unix.Close(cfd)
		now := time.Now()
		o.Ended(Result{Start: now, End: now, Err: errors.New("splice: proxy port admitted a non-Handshaker")})
		return
	}
	f := Flow{ClientFD: cfd, UpstreamFD: -1, ConnectTimeout: in.ConnectTimeout, Owner: o}
	fl := newFlow(&f, cfd, -1)
	fl.writable[sideUpstream] = false
	fl.hand = &handshake{hs: hs, max: cmp.Or(in.MaxHandshakeBytes, defaultHandshakeBytes),
		deadline: l.now.Add(cmp.Or(in.HandshakeTimeout, defaultHandshakeTimeout)), connect: f.connectTimeout()}
	l.start(&f, fl) // the client only
}

// handshakeStep reads what the client sent and feeds it to the Handshaker; on a complete
// request the flow turns into a connecting (literal) or racing (name) flow, with the bytes
// after the request as its first upstream bytes.
func (l *eloop) handshakeStep(fl *flow) {
	h := fl.hand
	fd := fl.fd[sideClient]
	for {
		if len(h.buf) == cap(h.buf) {
			if len(h.buf) >= h.max {
				l.cutHandshake(fl, ErrHandshakeTooLarge)
				return
			}
			nb := make([]byte, len(h.buf), min(max(2*cap(h.buf), handshakeBufStart), h.max))
			copy(nb, h.buf)
			h.buf = nb
		}
		n, err := unix.Read(fd, h.buf[len(h.buf):cap(h.buf)])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err != nil || n == 0 { // gone mid-handshake: as gnet's OnClose, nothing is counted
			l.finish(fl, ioErrorOrNil("read", err), err != nil)
			return
		}
		h.buf = h.buf[:len(h.buf)+n]
		used, out, up, ferr := h.hs.Feed(h.buf)
		h.buf = h.buf[:copy(h.buf, h.buf[used:])]
		if len(out) > 0 {
			// Handshake answers are a few bytes on a socket that has sent nothing else.
			_, _ = unix.Write(fd, out)
		}
		if ferr != nil {
			l.finish(fl, nil, false)
			return
		}
		if up != nil && up.Handoff != nil {
			l.handOff(fl, up.Handoff)
			return
		}
		if up != nil {
			l.handshakeDone(fl, up)
			return
		}
	}
}

func ioErrorOrNil(op string, err error) error {
	if err == nil {
		return nil
	}
	return ioError(op, err)
}

// cutHandshake ends a handshake the loop stopped (deadline, size): the Handshaker counts it,
// the client gets a FIN.
func (l *eloop) cutHandshake(fl *flow, err error) {
	fl.hand.hs.Cut(err)
	l.finish(fl, nil, false)
}

// handOff gives a handshaking client's socket away (Upstream.Handoff) with the bytes not yet
// consumed: the flow leaves the loop and the engine's count, its owner is not ended (the
// receiver settles it), and the fd is taken out of epoll, not closed.
func (l *eloop) handOff(fl *flow, give func(int, []byte)) {
	fd := fl.fd[sideClient]
	buf := fl.hand.buf
	fl.hand, fl.dead = nil, true
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	delete(l.byFD, int32(fd))
	delete(l.flows, fl)
	l.e.flowEnding()
	l.e.flowSettled()
	go give(fd, buf)
}

// handshakeDone starts the upstream of a complete request.
func (l *eloop) handshakeDone(fl *flow, up *Upstream) {
	h := fl.hand
	fl.hand = nil
	if len(h.buf) > 0 {
		fl.dir[dirUp].pre = h.buf // the bytes after the request
	}
	fl.dir[dirDown].pre = up.ToClient
	fl.readable[sideClient] = true // more may wait in the socket: the relay reads it
	fl.connecting = true
	fl.connectDeadline = l.now.Add(h.connect)
	if up.Racer != nil {
		fl.racer = up.Racer
		fl.connectDeadline = fl.connectDeadline.Add(RaceGrace)
		l.startRace(fl)
		return
	}
	fl.target = up.Target.String()
	ufd, pending, err := Connect(up.Target)
	if err != nil {
		l.endConnect(fl, err)
		return
	}
	fl.fd[sideUpstream] = ufd
	e := unix.EpollEvent{Events: evBase | evOut, Fd: int32(ufd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ufd, &e); err != nil {
		l.finish(fl, ioError("epoll_ctl", err), true)
		return
	}
	l.byFD[int32(ufd)] = fl
	if !pending { // connected already (loopback): the reply goes out now
		fl.writable[sideUpstream] = true
		l.process(fl)
	}
}
