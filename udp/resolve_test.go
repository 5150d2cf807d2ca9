package udp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// resolver is a Config.Resolve for tests: it counts its calls, blocks each until release is
// closed (if set), and answers to (or err).
type resolver struct {
	calls   atomic.Int32
	release chan struct{}
	mu      sync.Mutex
	to      netip.AddrPort
	err     error
}

func (f *resolver) set(to netip.AddrPort, err error) {
	f.mu.Lock()
	f.to, f.err = to, err
	f.mu.Unlock()
}

func (f *resolver) resolve(ctx context.Context) (netip.AddrPort, error) {
	f.calls.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return netip.AddrPort{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.to, f.err
}

// Datagrams sent while a session's target is looked up wait, and reach the target in order
// once it is known; the next session looks its target up again. Every relay with Resolve runs
// on the goroutine engine, whatever Engine says.
func TestResolvePending(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			f := &resolver{release: make(chan struct{}), to: e.addr}
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: f.resolve,
				Engine: eng, Kind: KindEgress})
			if _, ok := r.eng.(*gEngine); !ok {
				t.Fatalf("engine %T, want the goroutine engine", r.eng)
			}
			c := client(t, "udp4")
			for i := range 5 {
				if _, err := c.WriteToUDPAddrPort([]byte(fmt.Sprint("p", i)), r.Addr()); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, "a session resolving", func() bool { return r.Active() == 1 && f.calls.Load() == 1 })
			close(f.release)
			for i := range 5 {
				got, from := recv(t, c, 5*time.Second)
				if string(got) != fmt.Sprint("p", i) || from != r.Addr() {
					t.Fatalf("reply %d: %q from %s, want p%d from %s", i, got, from, i, r.Addr())
				}
			}
			if got, _ := exchange(t, c, r.Addr(), []byte("after")); string(got) != "after" {
				t.Fatalf("after: %q", got)
			}
			exchange(t, client(t, "udp4"), r.Addr(), []byte("second client"))
			if n := f.calls.Load(); n != 2 {
				t.Errorf("Resolve called %d times for two sessions", n)
			}
			eventually(t, 5*time.Second, "7 datagrams each way in 2 sessions counted", func() bool { // (a reply is counted after it is sent)
				st := r.Stats()
				return st.DatagramsIn == 7 && st.DatagramsOut == 7 && st.SessionsTotal == 2
			})
		})
	}
}

// A session holds at most pendingMax datagrams while it resolves; the rest are dropped as
// pending, and what was held still arrives, in order.
func TestResolvePendingBound(t *testing.T) {
	checkLeaks(t)
	e := newEcho(t, "127.0.0.1:0")
	f := &resolver{release: make(chan struct{}), to: e.addr}
	r := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: f.resolve})
	c := client(t, "udp4")
	sent := pendingMax + 8
	for i := range sent {
		c.WriteToUDPAddrPort([]byte(fmt.Sprint(i)), r.Addr())
	}
	eventually(t, 5*time.Second, "every datagram read", func() bool {
		return r.Stats().Drops[DropPending] == uint64(sent-pendingMax)
	})
	close(f.release)
	for i := range pendingMax {
		if got, _ := recv(t, c, 5*time.Second); string(got) != fmt.Sprint(i) {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	// The byte bound: two datagrams of 40,000 B do not fit pendingBytes together.
	f2 := &resolver{release: make(chan struct{}), to: e.addr}
	r2 := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: f2.resolve})
	for range 2 {
		if _, err := c.WriteToUDPAddrPort(make([]byte, 40_000), r2.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the second big datagram dropped", func() bool { return r2.Stats().Drops[DropPending] == 1 })
	close(f2.release)
	if got, _ := recv(t, c, 5*time.Second); len(got) != 40_000 {
		t.Fatalf("the datagram that waited: %d B", len(got))
	}
}

// A failed Resolve drops what waited as resolve, drops the client's datagrams for failHold
// (without asking again), then the next datagram asks again and, resolved, gets through. Its
// slot is given back.
func TestResolveFailure(t *testing.T) {
	checkLeaks(t)
	e := newEcho(t, "127.0.0.1:0")
	f := &resolver{err: errors.New("no such name")}
	lim := &slots{max: 10}
	r := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: f.resolve, Limit: lim})
	c := client(t, "udp4")
	c.WriteToUDPAddrPort([]byte("one"), r.Addr())
	eventually(t, 5*time.Second, "the failure counted", func() bool { return r.Stats().Drops[DropResolve] == 1 })
	c.WriteToUDPAddrPort([]byte("two"), r.Addr())
	eventually(t, 5*time.Second, "the held session drops", func() bool { return r.Stats().Drops[DropResolve] == 2 })
	if n := f.calls.Load(); n != 1 {
		t.Errorf("Resolve called %d times while the failure is held", n)
	}
	eventually(t, 5*failHold, "the failed session ends", func() bool { return r.Active() == 0 && lim.inUse() == 0 })
	f.set(e.addr, nil)
	if got, _ := exchange(t, c, r.Addr(), []byte("three")); string(got) != "three" {
		t.Fatalf("after the hold: %q", got)
	}
}

// Closing a relay ends sessions still resolving (their Resolve is cancelled) and sessions
// holding a failure, without leaking a goroutine or an fd.
func TestResolveClose(t *testing.T) {
	checkLeaks(t)
	blocked := &resolver{release: make(chan struct{})}
	r := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: blocked.resolve})
	failing := &resolver{err: errors.New("nxdomain")}
	r2 := startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: failing.resolve})
	c := client(t, "udp4")
	c.WriteToUDPAddrPort([]byte("x"), r.Addr())
	c.WriteToUDPAddrPort([]byte("x"), r2.Addr())
	eventually(t, 5*time.Second, "both sessions started", func() bool {
		return r.Active() == 1 && r2.Stats().Drops[DropResolve] == 1
	})
	done := make(chan struct{})
	go func() { r.Close(); r2.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a session resolved")
	}
}
