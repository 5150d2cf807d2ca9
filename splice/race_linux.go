//go:build linux

package splice

import (
	"container/heap"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// race is the part of a flow whose upstream is still being raced for (Flow.Racer): the
// attempts in flight, each a non-blocking connect registered in the loop's epoll set like a
// flow's upstream, and the Racer's next wake-up.
type race struct {
	racer    Racer
	attempts []attempt
	nextID   int
	wakeAt   time.Time // when the Racer wants Next again, while timerAt >= 0
	timerAt  int       // index in the loop's timers, -1 when none (set by newFlow)
}

type attempt struct {
	fd, id int
}

// startRace runs a racing flow's first step, right after its client was registered.
func (l *eloop) startRace(fl *flow) {
	fl.racer.Start(func() { l.post(task{kind: taskRace, fl: fl}) })
	l.raceStep(fl)
}

// raceStep asks the Racer what to do and does it: start connects, arm the timer, or end the
// flow when the race is lost. A connect that fails at once is reported and the Racer asked again.
func (l *eloop) raceStep(fl *flow) {
	for fl.racer != nil {
		start, wake, done, err := fl.racer.Next(l.now)
		if done {
			l.closeAttempts(fl)
			l.setWake(fl, time.Time{})
			fl.racer = nil
			l.endConnect(fl, err)
			return
		}
		failed := false
		for _, ap := range start {
			id := fl.nextID
			fl.nextID++
			fd, err := l.connectAttempt(fl, ap)
			if err != nil {
				fl.racer.Finished(id, err, l.now)
				failed = true
				continue
			}
			fl.attempts = append(fl.attempts, attempt{fd: fd, id: id})
		}
		l.setWake(fl, wake)
		if !failed {
			return
		}
	}
}

// connectAttempt starts one connect and registers it with the flow.
func (l *eloop) connectAttempt(fl *flow, ap netip.AddrPort) (int, error) {
	fd, err := connectNonblock(ap)
	if err != nil {
		return -1, err
	}
	e := unix.EpollEvent{Events: evBase | evOut, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &e); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("epoll_ctl", err)
	}
	l.byFD[int32(fd)] = fl
	return fd, nil
}

// attemptEvent handles readiness of one attempt: connected (writable, no error) or failed.
func (l *eloop) attemptEvent(fl *flow, fd int, ev uint32) {
	k := -1
	for i, a := range fl.attempts {
		if a.fd == fd {
			k = i
			break
		}
	}
	if k < 0 {
		return
	}
	var err error
	switch {
	case ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0:
		v, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case gerr != nil:
			err = os.NewSyscallError("getsockopt", gerr)
		case v != 0:
			err = os.NewSyscallError("connect", unix.Errno(v))
		default:
			err = os.NewSyscallError("connect", unix.ECONNRESET)
		}
	case ev&unix.EPOLLOUT == 0:
		return // not decided yet
	}
	a := fl.attempts[k]
	won := fl.racer.Finished(a.id, err, l.now)
	if err != nil || !won {
		l.dropAttempt(fl, k)
		if err != nil {
			l.raceStep(fl)
		}
		return
	}
	// The winner becomes the flow's upstream: it is already in the epoll set, pointing at fl.
	fl.attempts = append(fl.attempts[:k], fl.attempts[k+1:]...)
	l.closeAttempts(fl)
	l.setWake(fl, time.Time{})
	fl.racer = nil
	fl.fd[sideUpstream] = fd
	fl.writable[sideUpstream] = true
	l.process(fl) // checkConnect: Owner.Connected(nil), then the bytes to send first
}

// dropAttempt closes attempt k of fl.
func (l *eloop) dropAttempt(fl *flow, k int) {
	fd := fl.attempts[k].fd
	delete(l.byFD, int32(fd))
	unix.Close(fd)
	fl.attempts = append(fl.attempts[:k], fl.attempts[k+1:]...)
}

func (l *eloop) closeAttempts(fl *flow) {
	for len(fl.attempts) > 0 {
		l.dropAttempt(fl, len(fl.attempts)-1)
	}
}

// endRace stops a race the flow gave up on (reason) and returns the Racer's account of it.
func (l *eloop) endRace(fl *flow, reason error) error {
	r := fl.racer
	l.closeAttempts(fl)
	l.setWake(fl, time.Time{})
	fl.racer = nil
	return r.Cancel(reason, l.now)
}

// raceTick runs the Racer of a flow whose wake-up came (timer or wake function).
func (l *eloop) raceTick(fl *flow) {
	if fl.dead || fl.racer == nil {
		return
	}
	l.raceStep(fl)
}

// setWake arms fl's timer for at, or disarms it when at is zero. A flow has at most one entry,
// removed as soon as its race ends, so the heap never outgrows the races in flight.
func (l *eloop) setWake(fl *flow, at time.Time) {
	switch {
	case at.IsZero() && fl.timerAt >= 0:
		heap.Remove(&l.timers, fl.timerAt)
	case at.IsZero():
	case fl.timerAt >= 0:
		fl.wakeAt = at
		heap.Fix(&l.timers, fl.timerAt)
	default:
		fl.wakeAt = at
		heap.Push(&l.timers, fl)
	}
}

// runTimers runs the races whose wake-up time has come.
func (l *eloop) runTimers() {
	for len(l.timers) > 0 && !l.timers[0].wakeAt.After(l.now) {
		fl := l.timers[0]
		heap.Pop(&l.timers)
		l.raceTick(fl)
	}
}

// timerWait bounds epoll_wait by the next race wake-up; ms is the bound the loop had (-1: none).
func (l *eloop) timerWait(ms int) int {
	if len(l.timers) == 0 {
		return ms
	}
	d := l.timers[0].wakeAt.Sub(l.now)
	w := max(int((d+time.Millisecond-1)/time.Millisecond), 0) // rounded up: never wake early
	if ms < 0 || w < ms {
		return w
	}
	return ms
}

// timers is a min-heap of racing flows by wake-up time; each knows its index (timerAt).
type timers []*flow

func (h timers) Len() int           { return len(h) }
func (h timers) Less(i, j int) bool { return h[i].wakeAt.Before(h[j].wakeAt) }
func (h timers) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timerAt, h[j].timerAt = i, j
}
func (h *timers) Push(x any) {
	fl := x.(*flow)
	fl.timerAt = len(*h)
	*h = append(*h, fl)
}
func (h *timers) Pop() any {
	old := *h
	fl := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	fl.timerAt = -1
	return fl
}
