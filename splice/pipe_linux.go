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

// pipePool lends pipes to directions while they have bytes in flight. It never holds more than
// max pipes (pooled and lent together). When it is exhausted, get returns nil and the direction
// relays through a copy buffer instead (see copyBuf): nothing ever waits for a pipe, so a flow's
// progress never depends on another flow's reader, and no pipe is handed from one loop to another.
//
// Invariant: every pipe in free is empty (a pipe that may hold bytes is discarded, not put).
// Invariant: total = lent + len(free) <= max.
type pipePool struct {
	mu        sync.Mutex
	free      []*pipe
	total     int
	max       int
	size      int
	closed    bool
	exhausted uint64 // gets that found no pipe
}

func newPipePool(max, size int) *pipePool { return &pipePool{max: max, size: size} }

// get returns an empty pipe, or nil (with a nil error) when all max pipes are lent, or an error
// when the pool is closed or a pipe cannot be created.
func (pp *pipePool) get() (*pipe, error) {
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
		pp.exhausted++
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

// put takes back an empty pipe. The caller guarantees p holds no bytes.
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if pp.closed {
		pp.total--
		pp.mu.Unlock()
		p.close()
		return
	}
	pp.free = append(pp.free, p)
	pp.mu.Unlock()
}

// discard closes a pipe that may still hold bytes of a dead flow; its slot in the pool frees.
func (pp *pipePool) discard(p *pipe) {
	p.close()
	pp.mu.Lock()
	pp.total--
	pp.mu.Unlock()
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
}

// stats fills the pool's part of s.
func (pp *pipePool) stats(s *Stats) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	s.PipesInUse, s.PipesPooled = pp.total-len(pp.free), len(pp.free)
	s.PoolExhausted = pp.exhausted
}
