package eyeballs

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/nat464/nat464-sidecar/resolver"
)

// DialContext connects to host (a name, or an IPv4 or IPv6 literal, brackets allowed) on port
// and returns the first connection whose TCP handshake completes. ctx and Timeout bound the
// whole race. A failed race returns a *net.OpError: the most informative attempt error
// (refused, host unreachable, network unreachable, then timeout), one that satisfies
// errors.Is(err, context.DeadlineExceeded) when time ran out first, one wrapping
// nat64.ErrPolicy (or ErrNotAllowed) when every candidate was refused by policy (or Approve),
// or, when no address ever arrived, the resolver's errors: a resolver still silent at the
// deadline is asked once more, briefly, so that its error, naming what it was waiting for,
// is the cause rather than "no connection within Timeout".
//
// It is the goroutine driver of a Race: one goroutine per attempt, one timer, the resolver's
// channel, all on the caller's goroutine.
func (d *Dialer) DialContext(ctx context.Context, host string, port uint16) (net.Conn, error) {
	r := d.NewRace(host, port, time.Now())
	ctx, cancel := context.WithDeadline(ctx, r.Deadline())
	defer cancel()
	var answers <-chan resolver.Answer
	if r.NeedsLookup() {
		answers = d.Resolver.Lookup(ctx, host)
	}
	return r.dial(ctx, answers)
}

// result is the outcome of one attempt goroutine.
type result struct {
	id   int
	conn net.Conn
	err  error
}

// dial runs r to its end: it starts the attempts Next asks for, each on its own goroutine with
// a context that ends with the race, feeds r the answers, the outcomes and the time, and
// returns the winner. The losers, and the answers still to come, are left to drain.
func (r *Race) dial(ctx context.Context, answers <-chan resolver.Answer) (net.Conn, error) {
	actx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(chan result, r.d.maxConcurrent()) // never more in flight: sends never block
	inflight := 0
	defer func() {
		if inflight > 0 || answers != nil {
			go drain(results, inflight, answers)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	done := ctx.Done()
	for {
		step := r.Next(time.Now())
		for _, a := range step.Start {
			inflight++
			go func() {
				conn, err := r.d.dialAttempt(actx, a.Network, a.Target)
				results <- result{id: a.ID, conn: conn, err: err}
			}()
		}
		if step.Done {
			return nil, step.Err
		}
		timer.Stop()
		var wake <-chan time.Time
		if !step.Wake.IsZero() {
			timer.Reset(time.Until(step.Wake))
			wake = timer.C
		}
		select {
		case a, ok := <-answers:
			if !ok {
				answers = nil
				r.AnswersDone(time.Now())
				continue
			}
			r.Answer(a, time.Now())
		case res := <-results:
			inflight--
			if r.Finished(res.id, res.err, time.Now()) {
				return res.conn, nil
			}
			if res.conn != nil {
				res.conn.Close() // an attempt that failed and still returned a conn
			}
		case <-wake:
		case <-done:
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, r.Cancel(ctx.Err(), time.Now())
			}
			// ctx's deadline came first (the caller's, or Timeout's a hair early): the race
			// ends now, giving a silent resolver its grace.
			r.expire(time.Now())
			done = nil
		}
	}
}

// drain closes the connections of attempts still in flight when the race ended, and empties
// the answer stream so that the resolver never blocks on it.
func drain(results <-chan result, n int, answers <-chan resolver.Answer) {
	for n > 0 || answers != nil {
		select {
		case res := <-results:
			n--
			if res.conn != nil {
				res.conn.Close()
			}
		case _, ok := <-answers:
			if !ok {
				answers = nil
			}
		}
	}
}
