//go:build linux

package splice

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Task kinds posted to a loop.
const (
	taskAdd      = iota // start relaying fl
	taskCut             // end every flow abortively with err
	taskStop            // end every flow with ErrClosed and leave run
	taskListen          // start accepting on ln
	taskUnlisten        // close every listener
	taskPing            // close done (liveness)
	taskRace            // the Racer of fl asked to be run (Racer.Start's wake)
)

type task struct {
	kind int
	fl   *flow
	err  error
	ln   *listener
	done chan struct{}
}

// eloop is one epoll loop. Everything reachable from flows is owned by the loop's goroutine;
// other goroutines talk to it only through post.
type eloop struct {
	e    *SpliceEngine
	epfd int
	evfd int

	mu       sync.Mutex
	tasks    []task
	signaled atomic.Bool

	flows     map[*flow]struct{}
	byFD      map[int32]*flow
	listeners map[int32]*listener // inbound listeners served by this loop (ServeInbound)
	paused    int                 // listeners resting after fd exhaustion
	ready     []*flow             // flows that yielded with work left
	bufs      [][]byte            // idle copy buffers (see getBuf)
	timers    timers              // race wake-ups (see race_linux.go)
	now       time.Time
	lastSweep time.Time
	yielded   time.Time // last runtime.Gosched
	calls     atomic.Uint64
}

// yieldEvery is how often a busy loop passes through the Go scheduler. A goroutine that the
// runtime sees running for 10ms (a loop that only makes system calls keeps its P and never
// reschedules) is preempted with a signal and its P taken back, which also resets the runtime's
// monitor to polling every 20us: 4.5% of the sidecar's CPU at high connection rates.
const yieldEvery = 5 * time.Millisecond

func newLoop(e *SpliceEngine) (*eloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &eloop{
		e: e, epfd: epfd, evfd: evfd,
		flows:     make(map[*flow]struct{}),
		byFD:      make(map[int32]*flow),
		listeners: make(map[int32]*listener),
	}, nil
}

func (l *eloop) closeFDs() {
	unix.Close(l.evfd)
	unix.Close(l.epfd)
}

// post queues t for the loop and wakes it through the eventfd (once per batch of posts).
func (l *eloop) post(t task) {
	l.mu.Lock()
	l.tasks = append(l.tasks, t)
	l.mu.Unlock()
	if !l.signaled.Swap(true) {
		var one = [8]byte{1}
		unix.Write(l.evfd, one[:]) // cannot block: the counter is far from overflow
	}
}

func (l *eloop) takeTasks() []task {
	var buf [8]byte
	unix.Read(l.evfd, buf[:])
	// Cleared before the queue is taken: a post racing with us either lands in this batch or
	// signals again.
	l.signaled.Store(false)
	l.mu.Lock()
	ts := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	return ts
}

func (l *eloop) run() {
	defer l.e.wg.Done()
	events := make([]unix.EpollEvent, 256)
	tick := l.e.tick()
	l.now = time.Now()
	l.lastSweep = l.now
	for {
		timeout := -1
		if len(l.ready) > 0 {
			timeout = 0
		} else if len(l.flows) > 0 || l.paused > 0 {
			timeout = int(max(tick-l.now.Sub(l.lastSweep), time.Millisecond) / time.Millisecond)
		}
		timeout = l.timerWait(timeout)
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Not expected with valid fds; end everything rather than spin.
			l.e.opts.logf("splice: epoll_wait: %v", err)
			l.cutAll(os.NewSyscallError("epoll_wait", err))
		}
		l.now = time.Now()
		for i := 0; i < n; i++ {
			ev := events[i]
			if int(ev.Fd) == l.evfd {
				if l.runTasks() {
					return
				}
				continue
			}
			if ln := l.listeners[ev.Fd]; ln != nil {
				l.accept(ln)
				continue
			}
			if fl := l.byFD[ev.Fd]; fl != nil {
				l.event(fl, ev.Fd, ev.Events)
			}
		}
		l.runTimers()
		l.runReady()
		if l.now.Sub(l.yielded) >= yieldEvery {
			runtime.Gosched()
			l.yielded = l.now
		}
		if l.now.Sub(l.lastSweep) >= tick {
			l.sweep()
			l.resume()
			l.lastSweep = l.now
		}
	}
}

// runTasks runs the posted tasks; it reports whether the loop must stop.
func (l *eloop) runTasks() (stop bool) {
	for _, t := range l.takeTasks() {
		switch t.kind {
		case taskAdd:
			l.add(t.fl)
		case taskCut:
			l.cutAll(t.err)
		case taskStop:
			stop = true
		case taskListen:
			l.listen(t.ln)
		case taskUnlisten:
			l.unlisten()
		case taskPing:
			close(t.done)
		case taskRace:
			l.raceTick(t.fl)
		}
	}
	if stop {
		l.unlisten()
		l.cutAll(ErrClosed)
	}
	return stop
}

// leftovers settles tasks posted after the loop stopped (called by Close after the loop exited).
func (l *eloop) leftovers() {
	l.now = time.Now()
	l.runTasks()
	l.unlisten()
	l.cutAll(ErrClosed)
}

func (l *eloop) cutAll(err error) {
	for fl := range l.flows {
		if errors.Is(err, ErrDrainCut) {
			l.e.cut.Add(1)
		}
		l.finish(fl, err, true)
	}
}

// copyBufSize is the buffer a direction copies through when the pipe pool is exhausted: small,
// since a loop may lend one to each of thousands of directions, and only while bytes are in
// flight; 16 KiB is four pages per read(2)/write(2) pair.
const copyBufSize = 16 << 10

// maxIdleBufs bounds the copy buffers a loop keeps for reuse; the rest go to the GC.
const maxIdleBufs = 64

// getBuf lends an empty copy buffer to a direction.
func (l *eloop) getBuf() []byte {
	l.e.copyBufs.Add(1)
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs[n-1] = nil
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, copyBufSize)
}

// putBuf takes a copy buffer back; what it still holds is dropped.
func (l *eloop) putBuf(b []byte) {
	l.e.copyBufs.Add(-1)
	if len(l.bufs) < maxIdleBufs {
		l.bufs = append(l.bufs, b)
	}
}

// runReady continues flows that yielded after their per-turn budget.
func (l *eloop) runReady() {
	ready := l.ready
	l.ready = nil
	for i, fl := range ready {
		ready[i] = nil
		fl.queued = false
		l.process(fl)
	}
}

func (l *eloop) requeue(fl *flow) {
	if !fl.queued {
		fl.queued = true
		l.ready = append(l.ready, fl)
	}
}

// sweep ends flows whose connect took too long or that moved no byte for the idle timeout.
func (l *eloop) sweep() {
	idle := l.e.opts.idleTimeout()
	for fl := range l.flows {
		switch {
		case fl.hand != nil:
			if l.now.After(fl.hand.deadline) {
				l.cutHandshake(fl, ErrHandshakeTimeout)
			}
		case fl.connecting:
			if l.now.After(fl.connectDeadline) {
				l.failConnect(fl, unix.ETIMEDOUT)
			}
		case idle > 0 && l.now.Sub(fl.last) >= idle:
			l.finish(fl, ErrIdleTimeout, true)
		}
	}
}
