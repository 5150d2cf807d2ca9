package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/resolver"
)

// t0 is when every machine test's race starts.
var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// event is one thing that happens to a race at t0+at: an Answer, AnswersDone, Finished, Cancel,
// or a call of Next whose Step must read want (see fmtStep).
type event struct {
	at   time.Duration
	do   func(t *testing.T, r *Race, now time.Time)
	want string
}

func next(at time.Duration, want string) event { return event{at: at, want: want} }

func answer(at time.Duration, a resolver.Answer) event {
	return event{at: at, do: func(_ *testing.T, r *Race, now time.Time) { r.Answer(a, now) }}
}

func closed(at time.Duration) event {
	return event{at: at, do: func(_ *testing.T, r *Race, now time.Time) { r.AnswersDone(now) }}
}

// finished reports attempt id's outcome; wantWon is what Finished must return.
func finished(at time.Duration, id int, err error, wantWon bool) event {
	return event{at: at, do: func(t *testing.T, r *Race, now time.Time) {
		if won := r.Finished(id, err, now); won != wantWon {
			t.Errorf("+%v Finished(%d, %v) = %v, want %v", at, id, err, won, wantWon)
		}
	}}
}

// fmtStep renders a Step as "start ID network target", "wake +offset", "done" or "won".
func fmtStep(s Step) string {
	var parts []string
	for _, a := range s.Start {
		parts = append(parts, fmt.Sprintf("start %d %s %s", a.ID, a.Network, a.Target))
	}
	if !s.Wake.IsZero() {
		parts = append(parts, "wake "+s.Wake.Sub(t0).String())
	}
	switch {
	case s.Done && s.Err == nil:
		parts = append(parts, "won")
	case s.Done:
		parts = append(parts, "done")
	}
	return strings.Join(parts, "; ")
}

func at(d time.Duration) time.Time { return t0.Add(d) }

var refused, unreachable = syscall.ECONNREFUSED, syscall.EHOSTUNREACH

type machineCase struct {
	name   string
	host   string // if empty, example.test
	setup  func(*Dialer)
	events []event
	check  func(t *testing.T, err error) // the error of the last Done step; nil when won
}

var machineCases = []machineCase{
	{
		name: "literal: one attempt at once, no lookup",
		host: "[" + v6a + "]",
		events: []event{
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 10s"),
			finished(ms(7), 0, nil, true),
			next(ms(7), "won"),
		},
	},
	{
		name: "AAAA then A: IPv6 at once, IPv4 one attempt delay later",
		events: []event{
			answer(0, aaaa(v6a)),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 10s"),
			answer(ms(5), a4(v4a)),
			next(ms(5), "wake 250ms"),
			closed(ms(6)),
			next(ms(6), "wake 250ms"),
			next(ms(250), "start 1 tcp4 198.51.100.10:443; wake 10s"),
			finished(ms(260), 1, nil, true),
		},
	},
	{
		name: "A first waits the resolution delay, then starts",
		events: []event{
			answer(0, a4(v4a)),
			next(0, "wake 50ms"),
			next(ms(49), "wake 50ms"),
			next(ms(50), "start 0 tcp4 198.51.100.10:443; wake 10s"),
			finished(ms(51), 0, nil, true),
		},
	},
	{
		name: "AAAA during the resolution delay goes first",
		events: []event{
			answer(0, a4(v4a)),
			next(0, "wake 50ms"),
			answer(ms(20), aaaa(v6a)),
			next(ms(20), "start 0 tcp6 [2001:db8::a]:443; wake 270ms"),
			next(ms(270), "start 1 tcp4 198.51.100.10:443; wake 10s"),
			finished(ms(271), 1, nil, true),
		},
	},
	{
		name: "negative AAAA ends the resolution delay",
		events: []event{
			answer(0, a4(v4a)),
			next(0, "wake 50ms"),
			answer(ms(20), resolver.Answer{Family: 6, Err: resolver.ErrNoData}),
			next(ms(20), "start 0 tcp4 198.51.100.10:443; wake 10s"),
			finished(ms(25), 0, nil, true),
		},
	},
	{
		name: "history prefers IPv4: AAAA first waits for A",
		setup: func(d *Dialer) {
			d.remember("example.test", netip.MustParseAddr(v4b), ms(3), t0.Add(-time.Minute))
		},
		events: []event{
			answer(0, aaaa(v6a)),
			next(0, "wake 50ms"),
			answer(ms(10), a4(v4a, v4b)),
			next(ms(10), "start 0 tcp4 198.51.100.11:443; wake 260ms"),
			next(ms(260), "start 1 tcp6 [2001:db8::a]:443; wake 510ms"),
			finished(ms(300), 0, nil, true),
		},
	},
	{
		name: "attempt delay of 250ms between starts while the first is pending",
		events: []event{
			answer(0, aaaa(v6a, v6b)),
			answer(0, a4(v4a)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 250ms"),
			next(ms(100), "wake 250ms"), // woken early: nothing is due
			next(ms(250), "start 1 tcp4 198.51.100.10:443; wake 500ms"),
			next(ms(500), "start 2 tcp6 [2001:db8::b]:443; wake 10s"),
			finished(ms(600), 0, nil, true),
			next(ms(600), "won"),
		},
	},
	{
		name:  "AttemptDelay is clamped to 2s",
		setup: func(d *Dialer) { d.AttemptDelay = time.Minute },
		events: []event{
			answer(0, aaaa(v6a)),
			answer(0, a4(v4a)),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 2s"),
			next(2*time.Second, "start 1 tcp4 198.51.100.10:443; wake 10s"),
			finished(2*time.Second, 1, nil, true),
		},
	},
	{
		name: "a failure starts the next at once, but not within 10ms of the last start",
		events: []event{
			answer(0, aaaa(v6a, v6b)),
			answer(0, a4(v4a)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 250ms"),
			finished(ms(3), 0, refused, false),
			next(ms(3), "wake 10ms"),
			next(ms(10), "start 1 tcp4 198.51.100.10:443; wake 260ms"),
			finished(ms(100), 1, unreachable, false),
			next(ms(100), "start 2 tcp6 [2001:db8::b]:443; wake 10s"),
			finished(ms(130), 2, nil, true),
		},
	},
	{
		name:  "MaxConcurrent caps the attempts in flight; a failure frees a slot",
		setup: func(d *Dialer) { d.MaxConcurrent = 2 },
		events: []event{
			answer(0, aaaa(v6a, v6b)),
			answer(0, a4(v4a, v4b)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 250ms"),
			next(ms(250), "start 1 tcp4 198.51.100.10:443; wake 10s"), // two in flight: only the deadline
			next(ms(500), "wake 10s"),
			finished(ms(600), 0, refused, false),
			next(ms(600), "start 2 tcp6 [2001:db8::b]:443; wake 10s"),
			finished(ms(700), 2, nil, true),
		},
	},
	{
		name: "late answer merged into the untried tail",
		events: []event{
			answer(0, a4(v4a, v4b)),
			next(0, "wake 50ms"),
			next(ms(50), "start 0 tcp4 198.51.100.10:443; wake 300ms"),
			answer(ms(100), aaaa(v6a)),
			next(ms(100), "wake 300ms"),
			next(ms(300), "start 1 tcp6 [2001:db8::a]:443; wake 550ms"),
			next(ms(550), "start 2 tcp4 198.51.100.11:443; wake 10s"),
			finished(ms(551), 2, nil, true),
		},
	},
	{
		name: "every attempt fails: done with the most informative error",
		events: []event{
			answer(0, aaaa(v6a)),
			answer(0, a4(v4a)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 250ms"),
			finished(ms(20), 0, unreachable, false),
			next(ms(20), "start 1 tcp4 198.51.100.10:443; wake 10s"),
			finished(ms(40), 1, refused, false),
			next(ms(40), "done"),
		},
		check: func(t *testing.T, err error) {
			var oe *net.OpError
			if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &oe) || oe.Addr.String() != v4a+":443" {
				t.Errorf("err = %v, want the refusal from %s", err, v4a)
			}
		},
	},
	{
		name: "a candidate synthesis rules out is skipped and its error kept",
		setup: func(d *Dialer) {
			d.HasIPv4Route = func() bool { return false }
			d.NAT64 = fakeNAT64{none: true}
		},
		events: []event{
			answer(0, a4(v4a)),
			answer(0, aaaa(v6a)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 250ms"),
			next(ms(250), "wake 10s"), // v4a's turn: skipped, no route and no prefix
			finished(ms(300), 0, syscall.ETIMEDOUT, false),
			next(ms(300), "done"),
		},
		check: errIs(syscall.ENETUNREACH), // network unreachable ranks above a plain timeout
	},
	{
		name:  "deadline: done with an error that is a DeadlineExceeded; later events ignored",
		setup: func(d *Dialer) { d.Timeout = time.Second },
		events: []event{
			answer(0, aaaa(v6a)),
			closed(0),
			next(0, "start 0 tcp6 [2001:db8::a]:443; wake 1s"),
			next(time.Second, "done"),
			finished(time.Second+ms(1), 0, nil, false),
			answer(time.Second+ms(2), a4(v4a)),
			next(time.Second+ms(3), "done"),
		},
		check: isTimeoutErr,
	},
	{
		name:  "no address, resolver silent at the deadline: a grace, then its answer is the cause",
		setup: func(d *Dialer) { d.Timeout = time.Second },
		events: []event{
			next(0, "wake 1s"),
			next(time.Second, "wake 1.1s"),
			answer(time.Second+ms(1), silentServer(6, 0)),
			answer(time.Second+ms(1), silentServer(4, 0)),
			next(time.Second+ms(1), "wake 1.1s"),
			closed(time.Second + ms(1)),
			next(time.Second+ms(1), "done"),
		},
		check: func(t *testing.T, err error) {
			var nae *resolver.NoAnswerError
			if !errors.As(err, &nae) || !errors.Is(err, errDNS) || strings.Contains(err.Error(), "no connection within") {
				t.Errorf("err = %v, want the resolver's NoAnswerError", err)
			}
		},
	},
	{
		name:  "no address, resolver still silent when the grace ends",
		setup: func(d *Dialer) { d.Timeout = time.Second },
		events: []event{
			answer(ms(10), resolver.Answer{Family: 6, Err: resolver.ErrNoData}),
			next(ms(10), "wake 1s"),
			next(time.Second, "wake 1.1s"),
			next(time.Second+ms(100), "done"),
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, resolver.ErrNoData) || !errors.Is(err, resolver.ErrTimeout) ||
				!errors.Is(err, context.DeadlineExceeded) ||
				!strings.Contains(err.Error(), "no answer from the resolver within 1s") {
				t.Errorf("err = %v, want AAAA's no-data and the resolver's silence", err)
			}
		},
	},
	{
		name: "NXDOMAIN for both families: done at the stream's end",
		events: []event{
			answer(0, resolver.Answer{Family: 6, Err: resolver.ErrNXDomain}),
			answer(0, resolver.Answer{Family: 4, Err: resolver.ErrNXDomain}),
			next(0, "wake 10s"),
			closed(ms(1)),
			next(ms(1), "done"),
		},
		check: errIs(resolver.ErrNXDomain),
	},
	{
		name:   "a name without a Resolver is over at once",
		setup:  func(d *Dialer) { d.Resolver = nil },
		events: []event{next(0, "done")},
		check:  errIs(ErrNoResolver),
	},
}

func TestRaceMachine(t *testing.T) {
	for _, tc := range machineCases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			d := &Dialer{Resolver: &fakeResolver{}, NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return true },
				Metrics: m}
			if tc.setup != nil {
				tc.setup(d)
			}
			host := tc.host
			if host == "" {
				host = "example.test"
			}
			r := d.NewRace(host, 443, t0)
			if want := d.Resolver != nil && !strings.Contains(host, ":"); r.NeedsLookup() != want {
				t.Errorf("NeedsLookup = %v, want %v", r.NeedsLookup(), want)
			}
			var last Step
			starts := 0
			for _, ev := range tc.events {
				if ev.do != nil {
					ev.do(t, r, at(ev.at))
					continue
				}
				last = r.Next(at(ev.at))
				starts += len(last.Start)
				if got := fmtStep(last); got != ev.want {
					t.Errorf("+%v Next = %q, want %q", ev.at, got, ev.want)
				}
			}
			won := sumCounters(m.winners)
			switch {
			case tc.check != nil:
				if !last.Done || last.Err == nil {
					t.Fatalf("last step %q, want a failed race", fmtStep(last))
				}
				tc.check(t, last.Err)
				if f := sumCounters(m.failures); f != 1 || won != 0 {
					t.Errorf("failures %v, winners %v; want 1 and 0", f, won)
				}
			default:
				if f := sumCounters(m.failures); f != 0 || won != 1 {
					t.Errorf("failures %v, winners %v; want 0 and 1", f, won)
				}
			}
			if a := sumCounters(m.attempts); a != float64(starts) {
				t.Errorf("attempts_total %v, want %d (one per started attempt)", a, starts)
			}
		})
	}
}

// TestRaceMachineCancel: Cancel ends the race with DialContext's error for that context, counts
// it once, and leaves nothing to do; Cancel after a win changes nothing.
func TestRaceMachineCancel(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	d := &Dialer{Resolver: &fakeResolver{}, HasIPv4Route: func() bool { return true }, Metrics: m}
	r := d.NewRace("example.test", 443, t0)
	r.Answer(aaaa(v6a), t0)
	if got := fmtStep(r.Next(t0)); got != "start 0 tcp6 [2001:db8::a]:443; wake 10s" {
		t.Fatalf("Next = %q", got)
	}
	err := r.Cancel(context.Canceled, at(ms(100)))
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "deadline") {
		t.Errorf("Cancel = %v, want context.Canceled", err)
	}
	if again := r.Cancel(context.Canceled, at(ms(101))); again != err {
		t.Errorf("second Cancel = %v, want the first's %v", again, err)
	}
	if st := r.Next(at(ms(102))); !st.Done || st.Err != err || st.Start != nil || !st.Wake.IsZero() {
		t.Errorf("Next after Cancel = %+v", st)
	}
	if r.Finished(0, nil, at(ms(103))) {
		t.Error("Finished after Cancel won")
	}
	if got := sumCounters(m.failures); got != 1 {
		t.Errorf("failures %v, want 1", got)
	}

	r = d.NewRace("example.test", 443, t0)
	r.Answer(aaaa(v6a), t0)
	r.Next(t0)
	if err := r.Cancel(context.DeadlineExceeded, at(ms(5))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Cancel(DeadlineExceeded) = %v, want the race's timeout", err)
	}

	r = d.NewRace(v6a, 443, t0)
	r.Next(t0)
	r.Finished(0, nil, at(ms(1)))
	if err := r.Cancel(context.Canceled, at(ms(2))); err != nil {
		t.Errorf("Cancel after a win = %v, want nil", err)
	}
	if got, won := sumCounters(m.failures), sumCounters(m.winners); got != 2 || won != 1 {
		t.Errorf("failures %v, winners %v; want 2 and 1", got, won)
	}
}

// TestRaceMachineIgnoresStrayEvents: unknown and repeated attempt IDs, and answers after the
// stream closed, change nothing.
func TestRaceMachineIgnoresStrayEvents(t *testing.T) {
	d := &Dialer{Resolver: &fakeResolver{}, HasIPv4Route: func() bool { return true }}
	r := d.NewRace("example.test", 443, t0)
	r.Answer(aaaa(v6a, v6b), t0)
	r.AnswersDone(t0)
	r.Answer(a4(v4a), t0)
	r.Next(t0)
	for _, id := range []int{-1, 1, 7} {
		if r.Finished(id, nil, at(ms(1))) {
			t.Errorf("Finished(%d) won", id)
		}
	}
	r.Finished(0, refused, at(ms(2)))
	r.Finished(0, refused, at(ms(3)))
	if got := fmtStep(r.Next(at(ms(10)))); got != "start 1 tcp6 [2001:db8::b]:443; wake 10s" {
		t.Errorf("Next = %q, want v6b and no IPv4 (its answer came after the end)", got)
	}
	if len(r.errs) != 1 {
		t.Errorf("%d errors kept, want 1", len(r.errs))
	}
}

// FuzzParseLiteral: parseLiteral's shortcut for names agrees with netip.ParseAddr.
func FuzzParseLiteral(f *testing.F) {
	for _, s := range []string{"example.test", "192.0.2.1", "[2001:db8::1]", "fe80::1%eth0", "1.2.3", "::ffff:1.2.3.4", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got, ok := parseLiteral(host)
		want, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if ok != (err == nil) || got != want {
			t.Fatalf("parseLiteral(%q) = %v, %v; ParseAddr = %v, %v", host, got, ok, want, err)
		}
	})
}

// cachedRace is the race of a name whose answers are cached: both families at once, one
// attempt, a win.
func cachedRace(d *Dialer, six, four resolver.Answer) bool {
	r := d.NewRace("example.test", 443, t0)
	r.Answer(six, t0)
	r.Answer(four, t0)
	r.AnswersDone(t0)
	st := r.Next(t0)
	return len(st.Start) == 1 && r.Finished(st.Start[0].ID, nil, t0.Add(time.Millisecond))
}

// TestRaceMachineAllocs holds a cached name's race to one allocation: the Race.
func TestRaceMachineAllocs(t *testing.T) {
	d := &Dialer{Resolver: &fakeResolver{}, NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return true },
		Metrics: NewMetrics(prometheus.NewRegistry())}
	six, four := aaaa(v6a, v6b), a4(v4a, v4b)
	if !cachedRace(d, six, four) {
		t.Fatal("the cached race did not win")
	}
	if n := testing.AllocsPerRun(100, func() { cachedRace(d, six, four) }); n > 1 {
		t.Errorf("%v allocations per race, want 1", n)
	}
}

// BenchmarkRaceMachine is a cached name's race (see cachedRace), without metrics.
func BenchmarkRaceMachine(b *testing.B) {
	d := &Dialer{Resolver: &fakeResolver{}, NAT64: fakeNAT64{}, HasIPv4Route: func() bool { return true }}
	six, four := aaaa(v6a), a4(v4a)
	b.ReportAllocs()
	for b.Loop() {
		if !cachedRace(d, six, four) {
			b.Fatal("the cached race did not win")
		}
	}
}
