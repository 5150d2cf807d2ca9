package eyeballs

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/nat464/nat464-sidecar/resolver"
)

// LoopRace is a Race driven by an event loop that makes the connects itself (the splice
// engine's Racer): it adds the name's lookup to the state machine. An answer the resolver has at
// once (hosts file, cache) is taken on the loop, with no goroutine; otherwise one goroutine
// waits for the answers and wakes the loop for each. Its methods other than the wake function
// run on the loop, one at a time; it satisfies splice.Racer.
type LoopRace struct {
	d    *Dialer
	host string
	port uint16
	race *Race

	cancel context.CancelFunc // the lookup's, while its goroutine may still send
	start  []netip.AddrPort   // Next's result, reused

	mu     sync.Mutex
	queued []resolver.Answer // answers that came after Start, not yet given to race
	closed bool              // the lookup's stream ended after Start
}

// LoopRace prepares the race for host and port; it starts when the loop calls Start.
func (d *Dialer) LoopRace(host string, port uint16) *LoopRace {
	return &LoopRace{d: d, host: host, port: port}
}

// Start begins the race and the lookup, whose context ends with the race's deadline, so that a
// silent resolver says why within the race's grace. wake is called from the lookup's goroutine,
// when one is needed, after each answer and when the stream ends.
func (l *LoopRace) Start(wake func()) {
	now := time.Now()
	l.race = l.d.NewRace(l.host, l.port, now)
	if !l.race.NeedsLookup() {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), l.race.Deadline())
	answers := l.d.Resolver.Lookup(ctx, l.host)
	if l.takeReady(answers, now) {
		cancel() // the stream is closed: the lookup is over
		return
	}
	l.cancel = cancel
	go l.forward(answers, wake)
}

// takeReady gives the race the answers already in the stream and reports whether it is closed:
// a hosts-file or cache answer is complete when Lookup returns.
func (l *LoopRace) takeReady(answers <-chan resolver.Answer, now time.Time) bool {
	for {
		select {
		case a, ok := <-answers:
			if !ok {
				l.race.AnswersDone(now)
				return true
			}
			l.race.Answer(a, now)
		default:
			return false
		}
	}
}

// forward queues the lookup's answers for the loop and wakes it for each and for the end. It
// reads the stream to its end, so the resolver never blocks on it, even after the race is over.
func (l *LoopRace) forward(answers <-chan resolver.Answer, wake func()) {
	for a := range answers {
		l.mu.Lock()
		l.queued = append(l.queued, a)
		l.mu.Unlock()
		wake()
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	wake()
}

// feed gives the race what the lookup's goroutine queued.
func (l *LoopRace) feed(now time.Time) {
	if l.cancel == nil {
		return // no lookup running: nothing can be queued, or the race is over
	}
	l.mu.Lock()
	queued, closed := l.queued, l.closed
	l.queued = nil
	l.mu.Unlock()
	for _, a := range queued {
		l.race.Answer(a, now)
	}
	if closed {
		l.race.AnswersDone(now)
		l.stopLookup()
	}
}

// stopLookup cancels a lookup still running; its goroutine then reads the stream to its end and
// exits.
func (l *LoopRace) stopLookup() {
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
}

// Next is Race.Next with the lookup's answers fed in first.
func (l *LoopRace) Next(now time.Time) (start []netip.AddrPort, wake time.Time, done bool, err error) {
	l.feed(now)
	st := l.race.Next(now)
	if st.Done {
		l.stopLookup()
		return nil, time.Time{}, true, st.Err
	}
	l.start = l.start[:0]
	for _, a := range st.Start {
		l.start = append(l.start, a.Target)
	}
	return l.start, st.Wake, false, nil
}

// Finished is Race.Finished; a win ends the lookup.
func (l *LoopRace) Finished(id int, err error, now time.Time) bool {
	won := l.race.Finished(id, err, now)
	if won {
		l.stopLookup()
	}
	return won
}

// Cancel is Race.Cancel; it ends the lookup.
func (l *LoopRace) Cancel(err error, now time.Time) error {
	l.stopLookup()
	return l.race.Cancel(err, now)
}
