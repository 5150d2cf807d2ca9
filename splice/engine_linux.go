//go:build linux

package splice

import (
	"cmp"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// SpliceEngine relays flows with splice(2) on a few epoll loops. No goroutine is started per flow:
// a flow lives on one loop, which owns all of its state. An idle flow holds exactly its two
// sockets; a direction borrows a pipe from a shared, bounded pool only while bytes are in flight.
type SpliceEngine struct {
	opts  Options
	loops []*eloop
	pool  *pipePool
	next  atomic.Uint32
	wg    sync.WaitGroup

	lifecycle
	cut      atomic.Int64 // flows cut by Drain
	copyBufs atomic.Int64 // copy buffers lent to directions (see eloop.getBuf)

	closeOnce sync.Once
}

var _ Engine = (*SpliceEngine)(nil)

// NewSplice starts the loops of a splice engine.
func NewSplice(o Options) (*SpliceEngine, error) {
	e := &SpliceEngine{opts: o}
	e.zero = make(chan struct{})
	e.pool = newPipePool(o.maxPipes(), o.pipeSize())
	for i := 0; i < o.loops(); i++ {
		l, err := newLoop(e)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	e.wg.Add(len(e.loops))
	for _, l := range e.loops {
		go l.run()
	}
	o.Metrics.attach(e.Stats)
	return e, nil
}

// Name returns "splice".
func (e *SpliceEngine) Name() string { return "splice" }

// Relay hands f to a loop. Sockets given as net.Conns are detached to raw fds first. On error the
// sockets are closed and f.Owner.Ended is still called (once, before Relay returns, with
// Result.Err set to the error), so an Owner can release per-flow resources in Ended alone.
func (e *SpliceEngine) Relay(f Flow) error {
	if f.Owner == nil {
		closeFlow(&f)
		return ErrNoOwner
	}
	cfd, ufd, err := flowFDs(&f)
	if err != nil {
		return refuse(&f, err)
	}
	fl := newFlow(&f, cfd, ufd)
	e.mu.Lock()
	if e.state != stateRunning {
		e.mu.Unlock()
		unix.Close(cfd)
		unix.Close(ufd)
		return refuse(&f, ErrClosed)
	}
	defer e.mu.Unlock()
	e.active++
	// Posting under e.mu orders every add before Close's stop task.
	e.loops[e.next.Add(1)%uint32(len(e.loops))].post(task{kind: taskAdd, fl: fl})
	return nil
}

// flowFDs returns f's two sockets as non-blocking raw fds, detaching conns. On error every socket
// f carried is closed.
func flowFDs(f *Flow) (cfd, ufd int, err error) {
	cfd, err1 := sideFD(f.Client, f.ClientFD)
	ufd, err2 := -1, error(nil)
	if f.Racer == nil { // a racing flow's upstream is chosen on its loop
		ufd, err2 = sideFD(f.Upstream, f.UpstreamFD)
	}
	if err = cmp.Or(err1, err2); err != nil {
		if cfd >= 0 {
			unix.Close(cfd)
		}
		if ufd >= 0 {
			unix.Close(ufd)
		}
		return -1, -1, err
	}
	return cfd, ufd, nil
}

func sideFD(c net.Conn, fd int) (int, error) {
	if c != nil {
		return DetachFD(c)
	}
	if fd < 0 {
		return -1, ErrNoSocket
	}
	return fd, nil // non-blocking by the Flow contract: no fcntl on the hot path
}

// Stats returns a snapshot of the engine.
func (e *SpliceEngine) Stats() Stats {
	s := Stats{Active: e.Active(), CopyBuffers: int(e.copyBufs.Load())}
	e.pool.stats(&s)
	for _, l := range e.loops {
		s.SpliceCalls += l.calls.Load()
	}
	return s
}

// Drain refuses new flows and waits for the active ones to end until ctx is done; then it cuts
// the rest abortively (Result.Err wraps ErrDrainCut) and returns ctx.Err().
func (e *SpliceEngine) Drain(ctx context.Context) error {
	e.stopAccepting(stateDraining)
	e.StopInbound()
	select {
	case <-e.zero:
		return nil
	case <-ctx.Done():
	}
	for _, l := range e.loops {
		l.post(task{kind: taskCut, err: ErrDrainCut})
	}
	<-e.zero
	if e.cut.Load() > 0 {
		return ctx.Err()
	}
	return nil
}

// Close cuts every flow (Result.Err wraps ErrClosed), stops the loops and releases the epoll
// fds and the pooled pipes. Done has been called for every flow when Close returns.
func (e *SpliceEngine) Close() error {
	e.closeOnce.Do(func() {
		e.stopAccepting(stateClosed)
		for _, l := range e.loops {
			l.post(task{kind: taskStop})
		}
		e.wg.Wait()
		// Loops are gone; grants and cuts posted after their stop are settled here.
		for _, l := range e.loops {
			l.leftovers()
			l.closeFDs()
		}
		e.pool.close()
	})
	return nil
}

// tick is how often a loop sweeps its flows for idle and connect timeouts.
func (e *SpliceEngine) tick() time.Duration {
	idle := e.opts.idleTimeout()
	if idle == 0 {
		return time.Second
	}
	return min(max(idle/4, 5*time.Millisecond), time.Second)
}
