//go:build linux

package splice

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// pipe is a kernel pipe used as the zero-copy buffer of one direction.
type pipe struct {
	r, w int
	size int // capacity the kernel granted
}

func newPipe(size int) (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &pipe{r: fds[0], w: fds[1]}
	// F_SETPIPE_SZ fails past pipe-max-size or pipe-user-pages-soft; keep whatever the kernel
	// gave in that case.
	got, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, size)
	if err != nil {
		got, err = unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			got = 64 << 10
		}
	}
	p.size = got
	return p, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// waiter is a direction queued for a pipe.
type waiter struct {
	fl  *flow
	dir int
}

// pipePool lends pipes to directions while they have bytes in flight. It never holds more than
// max pipes (pooled and lent together). When it is exhausted, directions queue in FIFO order and
// a released pipe goes straight to the first live waiter, on that waiter's loop.
//
// Invariant: every pipe in free is empty (a pipe that may hold bytes is discarded, not put).
// Invariant: waiters is non-empty only while free is empty and total == max.
type pipePool struct {
	mu      sync.Mutex
	free    []*pipe
	total   int
	max     int
	size    int
	waiters []waiter
	closed  bool
	waits   uint64
}

func newPipePool(max, size int) *pipePool { return &pipePool{max: max, size: size} }

// get returns a pipe, or nil (with a nil error) after queueing fl's direction dir for the next
// pipe released, or an error when a pipe cannot be created.
func (pp *pipePool) get(fl *flow, dir int) (*pipe, error) {
	pp.mu.Lock()
	if pp.closed {
		pp.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	if pp.total >= pp.max {
		pp.waits++
		pp.waiters = append(pp.waiters, waiter{fl, dir})
		pp.mu.Unlock()
		return nil, nil
	}
	pp.total++
	pp.mu.Unlock()
	p, err := newPipe(pp.size)
	if err != nil {
		pp.mu.Lock()
		pp.total--
		pp.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// popWaiter returns the first waiter whose flow is still alive. pp.mu must be held.
func (pp *pipePool) popWaiter() (waiter, bool) {
	for len(pp.waiters) > 0 {
		w := pp.waiters[0]
		pp.waiters[0] = waiter{}
		pp.waiters = pp.waiters[1:]
		if len(pp.waiters) == 0 {
			pp.waiters = nil
		}
		if !w.fl.dead.Load() {
			return w, true
		}
	}
	return waiter{}, false
}

// put takes back an empty pipe. The caller guarantees p holds no bytes.
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if pp.closed {
		pp.total--
		pp.mu.Unlock()
		p.close()
		return
	}
	if w, ok := pp.popWaiter(); ok {
		pp.mu.Unlock()
		w.fl.loop.post(task{kind: taskGrant, fl: w.fl, dir: w.dir, pipe: p})
		return
	}
	pp.free = append(pp.free, p)
	pp.mu.Unlock()
}

// discard closes a pipe that may still hold bytes of a dead flow and, if a direction waits, makes
// a fresh pipe for it.
func (pp *pipePool) discard(p *pipe) {
	p.close()
	pp.mu.Lock()
	pp.total--
	if pp.closed {
		pp.mu.Unlock()
		return
	}
	w, ok := pp.popWaiter()
	if !ok {
		pp.mu.Unlock()
		return
	}
	pp.total++
	pp.mu.Unlock()
	np, err := newPipe(pp.size)
	if err != nil {
		// Leave the waiter at the head of the queue for the next pipe released.
		pp.mu.Lock()
		pp.total--
		pp.waiters = append([]waiter{w}, pp.waiters...)
		pp.mu.Unlock()
		return
	}
	w.fl.loop.post(task{kind: taskGrant, fl: w.fl, dir: w.dir, pipe: np})
}

// close frees the pooled pipes; pipes still lent are closed when they come back.
func (pp *pipePool) close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.closed = true
	for _, p := range pp.free {
		p.close()
	}
	pp.total -= len(pp.free)
	pp.free = nil
	pp.waiters = nil
}

// stats fills the pool's part of s.
func (pp *pipePool) stats(s *Stats) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	s.PipesInUse, s.PipesPooled = pp.total-len(pp.free), len(pp.free)
	s.PipeWaiters, s.PipeWaits = len(pp.waiters), pp.waits
}
