package admin

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// DefaultMaxConns bounds the admin server's open connections when Server.MaxConns is zero.
// kubelet's probes, a Prometheus scrape and an operator's curl need a handful; the bound keeps a
// flood on the admin port (which listens on the pod's address) from taking the descriptors the
// flows need.
const DefaultMaxConns = 64

// reserveFDs is how many descriptors the admin listener keeps open on /dev/null, to give back to
// the kernel when accept(2) fails because the process is out of them: a probe is then still
// accepted and answered, and kubelet does not restart a pod whose only trouble is load.
const reserveFDs = 2

// guardedListener caps the connections the admin server holds and keeps descriptors in reserve
// for accepting at the open-file limit. A connection over the cap is accepted and closed at once
// (so the kernel's accept queue never fills with connections nobody serves) and counted.
type guardedListener struct {
	net.Listener
	slots   chan struct{} // one token per open connection
	rejects atomic.Uint64
	onOver  func()

	mu      sync.Mutex
	reserve []*os.File
}

func newGuardedListener(ln net.Listener, maxConns int, onOver func()) *guardedListener {
	l := &guardedListener{Listener: ln, slots: make(chan struct{}, maxConns), onOver: onOver}
	l.refill()
	return l
}

// Accept returns the next connection under the cap. When the process is out of descriptors it
// spends a reserved one and tries again; only with the reserve gone does the error reach the
// HTTP server, which backs off and retries.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if isFDLimit(err) && l.spend() {
				continue
			}
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &guardedConn{Conn: c, l: l}, nil
		default:
			// Counted before the close, so a client that sees the close sees the count.
			l.rejects.Add(1)
			if l.onOver != nil {
				l.onOver()
			}
			c.Close()
		}
	}
}

// Close closes the listener and gives the reserve back.
func (l *guardedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.reserve {
		f.Close()
	}
	l.reserve = nil
	return err
}

// refill opens reserve descriptors up to reserveFDs, as far as the limit allows.
func (l *guardedListener) refill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.reserve) < reserveFDs {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return
		}
		l.reserve = append(l.reserve, f)
	}
}

// spend closes one reserve descriptor; it reports false when there was none.
func (l *guardedListener) spend() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.reserve)
	if n == 0 {
		return false
	}
	l.reserve[n-1].Close()
	l.reserve = l.reserve[:n-1]
	return true
}

// guardedConn gives its slot back, and lets the reserve refill, when it closes.
type guardedConn struct {
	net.Conn
	l    *guardedListener
	once sync.Once
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		<-c.l.slots
		c.l.refill()
	})
	return err
}

func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
