package eyeballs

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/resolver"
)

// readyResolver answers at once, as the resolver does from the hosts file or its cache: the
// stream is full and closed when Lookup returns.
type readyResolver struct{ answers []resolver.Answer }

func (r readyResolver) Lookup(context.Context, string) <-chan resolver.Answer {
	ch := make(chan resolver.Answer, len(r.answers))
	for _, a := range r.answers {
		ch <- a
	}
	close(ch)
	return ch
}

// watchedResolver records each lookup's context and when its stream closed.
type watchedResolver struct {
	Resolver
	mu     sync.Mutex
	ctx    context.Context
	closed chan struct{}
}

func (w *watchedResolver) Lookup(ctx context.Context, host string) <-chan resolver.Answer {
	w.mu.Lock()
	w.ctx, w.closed = ctx, make(chan struct{})
	closed := w.closed
	w.mu.Unlock()
	in := w.Resolver.Lookup(ctx, host)
	out := make(chan resolver.Answer)
	go func() {
		defer close(closed)
		defer close(out)
		for a := range in {
			out <- a
		}
	}()
	return out
}

// loopDriver plays the splice loop for a LoopRace: it calls Next at each wake-up (the Racer's
// timer or its wake function) until attempts start or the race is over.
type loopDriver struct {
	t     *testing.T
	l     *LoopRace
	wakes chan struct{}
}

func startLoopRace(t *testing.T, d *Dialer, host string, wake func()) *loopDriver {
	ld := &loopDriver{t: t, l: d.LoopRace(host, 443), wakes: make(chan struct{}, 16)}
	if wake == nil {
		wake = func() { ld.wakes <- struct{}{} }
	}
	ld.l.Start(wake)
	return ld
}

// run steps the race until it starts an attempt or ends, within limit.
func (ld *loopDriver) run(limit time.Duration) (start []netip.AddrPort, done bool, err error) {
	ld.t.Helper()
	giveUp := time.After(limit)
	for {
		start, wake, done, err := ld.l.Next(time.Now())
		if done || len(start) > 0 {
			return append([]netip.AddrPort(nil), start...), done, err
		}
		var timer <-chan time.Time
		if !wake.IsZero() {
			timer = time.After(time.Until(wake))
		}
		select {
		case <-ld.wakes:
		case <-timer:
		case <-giveUp:
			ld.t.Fatalf("race neither started nor ended within %v", limit)
		}
	}
}

// An answer the resolver has at once is raced on the loop: no goroutine, no wake.
func TestLoopRaceReadyAnswer(t *testing.T) {
	d := &Dialer{Resolver: readyResolver{[]resolver.Answer{aaaa(v6a), a4(v4a)}}, NAT64: fakeNAT64{},
		HasIPv4Route: func() bool { return false }}
	ld := startLoopRace(t, d, "app.test", func() { t.Error("wake called for an answer that was ready") })
	if ld.l.cancel != nil {
		t.Error("a lookup goroutine runs for an answer that was ready")
	}
	start, done, err := ld.run(time.Second)
	if done || len(start) != 1 || start[0] != netip.MustParseAddrPort("[2001:db8::a]:443") {
		t.Fatalf("Next = %v done=%v err=%v, want the AAAA first", start, done, err)
	}
	if !ld.l.Finished(0, nil, time.Now()) {
		t.Error("the first attempt's success did not win")
	}
}

// Answers that come later wake the loop; a win cancels the lookup, whose goroutine then reads the
// stream to its end and exits (goleak checks at TestMain).
func TestLoopRaceLateAnswer(t *testing.T) {
	w := &watchedResolver{Resolver: &fakeResolver{
		answers: map[string][]timedAnswer{"app.test": {{20 * time.Millisecond, aaaa(v6a)}}},
		closeAt: time.Hour, onCancel: []resolver.Answer{a4()},
	}}
	d := &Dialer{Resolver: w, NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return false }}
	ld := startLoopRace(t, d, "app.test", nil)
	start, done, err := ld.run(2 * time.Second)
	if done || len(start) != 1 || start[0].Addr() != netip.MustParseAddr(v6a) {
		t.Fatalf("Next = %v done=%v err=%v, want the late AAAA", start, done, err)
	}
	if !ld.l.Finished(0, nil, time.Now()) {
		t.Fatal("the attempt's success did not win")
	}
	waitClosed(t, w)
	if err := w.ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("the lookup's context after a win: %v, want canceled", err)
	}
}

// Cancel (client gone, drain) ends the race with the caller's reason and the lookup with it.
func TestLoopRaceCancel(t *testing.T) {
	w := &watchedResolver{Resolver: &fakeResolver{closeAt: time.Hour}}
	d := &Dialer{Resolver: w, HasIPv4Route: func() bool { return false }}
	ld := startLoopRace(t, d, "app.test", nil)
	if _, wake, done, _ := ld.l.Next(time.Now()); done || wake.IsZero() {
		t.Fatalf("Next before any answer: done=%v wake=%v, want a wake-up", done, wake)
	}
	err := ld.l.Cancel(context.Canceled, time.Now())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Cancel = %v, want context.Canceled", err)
	}
	waitClosed(t, w)
	if _, _, done, again := ld.l.Next(time.Now()); !done || again != err {
		t.Errorf("Next after Cancel: done=%v err=%v, want Cancel's error", done, again)
	}
}

// A resolver that never answers: the lookup's context ends with the race's deadline, and the
// race fails with what the resolver said then (its servers), not with a bare timeout.
func TestLoopRaceSilentResolver(t *testing.T) {
	silent := &resolver.NoAnswerError{Name: "app.test.", Types: []string{"AAAA"}, Servers: []string{"[2001:db8::53]:53"}}
	w := &watchedResolver{Resolver: &fakeResolver{closeAt: time.Hour,
		onCancel: []resolver.Answer{{Family: 6, Err: silent}, {Family: 4, Err: silent}}}}
	d := &Dialer{Resolver: w, Timeout: 200 * time.Millisecond, HasIPv4Route: func() bool { return false }}
	ld := startLoopRace(t, d, "app.test", nil)
	_, done, err := ld.run(5 * time.Second)
	if !done || err == nil {
		t.Fatalf("done=%v err=%v, want a failed race", done, err)
	}
	var nae *resolver.NoAnswerError
	if !errors.As(err, &nae) || !strings.Contains(err.Error(), "2001:db8::53") {
		t.Errorf("err = %v, want the resolver's NoAnswerError naming its server", err)
	}
	waitClosed(t, w)
	if !errors.Is(w.ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("the lookup's context: %v, want its deadline passed", w.ctx.Err())
	}
}

func waitClosed(t *testing.T, w *watchedResolver) {
	t.Helper()
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the lookup's stream did not close")
	}
}
