//go:build linux

package splice

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// scriptRacer is a Racer that tries targets in order: the first at once, each next one after
// delay or at once when the previous failed; the first connect wins. With held set, it starts
// nothing until the test calls release (an answer arriving from another goroutine).
type scriptRacer struct {
	targets []netip.AddrPort
	delay   time.Duration

	mu       sync.Mutex
	held     bool
	wake     func()
	next     int // targets started
	last     time.Time
	pending  int
	errs     []error
	finished []int // attempt ids, in the order they were reported
	won      int
	canceled []error
	done     bool
}

func (r *scriptRacer) Start(wake func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wake = wake
}

func (r *scriptRacer) release() {
	r.mu.Lock()
	r.held = false
	wake := r.wake
	r.mu.Unlock()
	wake()
}

func (r *scriptRacer) Next(now time.Time) ([]netip.AddrPort, time.Time, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		return nil, time.Time{}, false, nil
	}
	if r.next == len(r.targets) {
		if r.pending == 0 {
			r.done = true
			return nil, time.Time{}, true, errors.Join(r.errs...)
		}
		return nil, time.Time{}, false, nil
	}
	if r.pending > 0 && now.Before(r.last.Add(r.delay)) {
		return nil, r.last.Add(r.delay), false, nil
	}
	r.last = now
	r.pending++
	r.next++
	return r.targets[r.next-1 : r.next], now.Add(r.delay), false, nil
}

func (r *scriptRacer) Finished(id int, err error, _ time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	r.finished = append(r.finished, id)
	if err != nil {
		r.errs = append(r.errs, err)
		r.last = time.Time{} // a failure lets the next start at once
		return false
	}
	r.won = id
	return true
}

func (r *scriptRacer) Cancel(err error, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.canceled = append(r.canceled, err)
	return err
}

// racingFlow is a Flow whose client is a fresh accepted connection and whose upstream r races for.
func (rg *rig) racingFlow(r Racer) (Flow, *net.TCPConn) {
	rg.t.Helper()
	cl, side := rg.client()
	rg.t.Cleanup(func() { cl.Close() })
	fd, err := DetachFD(side)
	if err != nil {
		rg.t.Fatal(err)
	}
	return Flow{ClientFD: fd, UpstreamFD: -1, Racer: r, ToClient: []byte("OK|")}, cl
}

// TestRaceOnLoop: the splice engine carries out a Racer's plan on the flow's loop: a blackholed
// first target loses to the second at the attempt delay (well under a second), a refused one
// hands over at once, the winner becomes the upstream with the bytes to send first, losers are
// closed; a race that runs out reports its error and the Owner's reply; an answer arriving from
// another goroutine wakes the race; and a flow cut mid-race cancels it. No fd is left behind.
func TestRaceOnLoop(t *testing.T) {
	dead := func() netip.AddrPort {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return netip.MustParseAddrPort(ln.Addr().String())
	}()
	for _, tc := range []struct {
		name    string
		targets func(live, hang netip.AddrPort) []netip.AddrPort
		held    bool
		winner  int // -1: the race is lost
	}{
		{"blackholed then live", func(live, hang netip.AddrPort) []netip.AddrPort { return []netip.AddrPort{hang, live} }, false, 1},
		{"refused then live", func(live, _ netip.AddrPort) []netip.AddrPort { return []netip.AddrPort{dead, live} }, false, 1},
		{"live first", func(live, hang netip.AddrPort) []netip.AddrPort { return []netip.AddrPort{live, hang} }, false, 0},
		{"answer arrives later", func(live, _ netip.AddrPort) []netip.AddrPort { return []netip.AddrPort{live} }, true, 0},
		{"all refused", func(_, _ netip.AddrPort) []netip.AddrPort { return []netip.AddrPort{dead, dead} }, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			hang := testnet.FullListener(t)
			rg := newRig(t)
			live := netip.MustParseAddrPort(rg.serverLn.Addr().String())
			e, err := NewSplice(Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			racer := &scriptRacer{targets: tc.targets(live, hang), delay: 100 * time.Millisecond, held: tc.held}
			res := newResults(1)
			calls := &connectCalls{reply: []byte("FAILED")}
			f, client := rg.racingFlow(racer)
			f.Owner = calls.owner(res)
			start := time.Now()
			if err := e.Relay(f); err != nil {
				t.Fatal(err)
			}
			if tc.held {
				time.Sleep(50 * time.Millisecond)
				racer.release()
			}
			client.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.winner < 0 {
				got, err := io.ReadAll(client)
				if err != nil || string(got) != "FAILED" {
					t.Errorf("client got %q (%v), want the owner's reply then EOF", got, err)
				}
				r := res.wait(t)
				if errs := calls.get(); len(errs) != 1 || !errors.Is(errs[0], syscall.ECONNREFUSED) || !errors.Is(r.ConnectErr, syscall.ECONNREFUSED) {
					t.Errorf("Connected calls %v, ConnectErr %v; want one refusal", errs, r.ConnectErr)
				}
				return
			}
			s, err := rg.serverLn.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			client.Write([]byte("up"))
			client.CloseWrite()
			buf := make([]byte, 5)
			if _, err := io.ReadFull(client, buf[:3]); err != nil || string(buf[:3]) != "OK|" {
				t.Fatalf("client got %q (%v), want the reply first", buf[:3], err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("connected after %v, want well under 1s", took)
			}
			if up, _ := io.ReadAll(s); string(up) != "up" {
				t.Errorf("server got %q", up)
			}
			s.Close()
			if r := res.wait(t); r.Up != 2 || r.ConnectErr != nil {
				t.Errorf("result %+v", r)
			}
			racer.mu.Lock()
			defer racer.mu.Unlock()
			if racer.won != tc.winner {
				t.Errorf("attempt %d won, want %d", racer.won, tc.winner)
			}
			if errs := calls.get(); len(errs) != 1 || errs[0] != nil {
				t.Errorf("Connected calls %v, want one nil", errs)
			}
		})
	}
}

// TestRaceCut: a flow cut while its race runs (engine closed) cancels the race once, closes its
// attempts, and still ends once.
func TestRaceCut(t *testing.T) {
	checkLeaks(t)
	hang := testnet.FullListener(t)
	rg := newRig(t)
	e, err := NewSplice(Options{})
	if err != nil {
		t.Fatal(err)
	}
	racer := &scriptRacer{targets: []netip.AddrPort{hang, hang}, delay: 20 * time.Millisecond}
	res := newResults(1)
	f, client := rg.racingFlow(racer)
	f.Owner = res
	if err := e.Relay(f); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // both attempts in flight
	e.Close()
	if r := res.wait(t); !errors.Is(r.Err, ErrClosed) {
		t.Errorf("result err %v, want ErrClosed", r.Err)
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Errorf("client read %d bytes", n)
	}
	racer.mu.Lock()
	defer racer.mu.Unlock()
	if len(racer.canceled) != 1 || racer.next != 2 {
		t.Errorf("canceled %v after %d attempts; want one cancel after 2", racer.canceled, racer.next)
	}
}

// TestRaceConnectTimeout: a race whose Racer never ends it is cancelled by the backstop,
// ConnectTimeout + RaceGrace, with context.DeadlineExceeded; the Racer names the cause.
func TestRaceConnectTimeout(t *testing.T) {
	checkLeaks(t)
	hang := testnet.FullListener(t)
	rg := newRig(t)
	e, err := NewSplice(Options{}) // the sweep enforces the timeout within its 1s tick
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	racer := &scriptRacer{targets: []netip.AddrPort{hang}, delay: time.Hour}
	res := newResults(1)
	calls := &connectCalls{reply: []byte("TIMEOUT")}
	f, client := rg.racingFlow(racer)
	f.Owner, f.ConnectTimeout = calls.owner(res), 200*time.Millisecond
	if err := e.Relay(f); err != nil {
		t.Fatal(err)
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(client); string(got) != "TIMEOUT" {
		t.Errorf("client got %q", got)
	}
	res.wait(t)
	if errs := calls.get(); len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("Connected calls %v, want one context.DeadlineExceeded", errs)
	}
}
