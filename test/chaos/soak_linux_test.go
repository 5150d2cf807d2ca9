//go:build chaos && linux

package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakDuration is CHAOS_SOAK, or 90 seconds: the CI soak (12 samples, thirds of 4). 3 minutes,
// then 2 with the client matrix and UDP added, pushed a warm `make test` past 10 minutes on the
// 2-core VM (10 min 18 s); release checks run CHAOS_SOAK=30m.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("CHAOS_SOAK")
	if v == "" {
		return 90 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 30*time.Second {
		t.Fatalf("CHAOS_SOAK=%q: want a duration of at least 30s", v)
	}
	return d
}

// Hard caps for the soak, whatever its length.
const (
	soakFDCap = 3000
	soakGCap  = 2000
)

// TestSoak: mixed load at a low rate for CHAOS_SOAK on the default engine — checksummed flows
// on every path, stalled handshakes, garbage, slow readers that hang up — with the sidecar's
// fds, RSS and goroutines sampled every 10 s. It fails when a flow is not whole, when a figure
// passes its hard cap, or when the last third's peak exceeds the first third's by more than
// half (plus a little slack): growth without bound.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+time.Minute {
		t.Fatalf("CHAOS_SOAK=%v does not fit in the test timeout (%v left): raise CHAOS_TIMEOUT", d, time.Until(dl).Round(time.Second))
	}
	f := newFixture(t, "auto", nil, "--handshake-timeout", handshakeTimeout.String())
	warmUp(t, f)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	var flows tally
	var stalled, junk, hungUp atomic.Int64
	loop := func(every time.Duration, body func(r *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(every), 1))
			for time.Now().Before(end) {
				body(r)
				time.Sleep(every)
			}
		}()
	}
	paths := []dialer{f.inbound(), f.socksName(), f.socksIP()}
	for w := range 6 {
		loop(10*time.Millisecond, func(r *rand.Rand) {
			fl := randomFlow(r)
			c, err := paths[w%len(paths)]()
			if err == nil {
				var down int64
				down, err = fl.run(c, 60*time.Second, pace{}, pace{})
				flows.add(fl, down, err)
				return
			}
			flows.add(fl, 0, err)
		})
	}
	loop(20*time.Millisecond, func(r *rand.Rand) { // a stalled handshake, left to the timeout
		if c, err := net.Dial("tcp4", f.proxy); err == nil {
			c.Write(partials[r.IntN(len(partials))])
			stalled.Add(1)
			go func() { time.Sleep(handshakeTimeout + time.Second); c.Close() }()
		}
	})
	ports := [][2]string{{"tcp6", f.inAddr()}, {"tcp4", f.proxy}, {"tcp6", f.s.Admin}}
	loop(20*time.Millisecond, func(r *rand.Rand) { // garbage to a random port
		p := ports[r.IntN(len(ports))]
		if c, err := net.Dial(p[0], p[1]); err == nil {
			c.Write(garbage(1+r.IntN(1000), r))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			junk.Add(1)
		}
	})
	loop(100*time.Millisecond, func(r *rand.Rand) { // a slow reader hanging up with bytes in flight
		fl := flow{down: 64 << 20, seed: r.Uint64()}
		c, err := f.inbound()()
		if err != nil {
			flows.add(fl, 0, err)
			return
		}
		got, err := fl.run(c, time.Second, pace{}, pace{chunk: 4 << 10, pause: 10 * time.Millisecond})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			hungUp.Add(1)
			return
		}
		flows.add(fl, got, err)
	})

	sm := f.s.sampleEvery(10 * time.Second)
	wg.Wait()
	f.s.mustBeAlive(t, "during the soak")
	peak, samples := sm.end()
	t.Logf("soak %v: %s; %d stalled handshakes, %d garbage connections, %d slow readers hung up; peak %s",
		d, &flows, stalled.Load(), junk.Load(), hungUp.Load(), peak)
	for i, u := range samples {
		t.Logf("  t=%3ds %s", i*10, u)
	}
	for _, s := range flows.samples {
		t.Log("  ", s)
	}
	// The app's own kernel may answer a connect with a reset. At about 460 connections a second
	// to one app port, the sidecar's ephemeral ports come round while the app's end of an
	// earlier connection from the same port is still in TIME_WAIT, and now and then (1 in
	// about 40,000 flows in three CI runs) that SYN is reset. The sidecar then does what it
	// must, SOCKS5 reply 05 or a reset inbound, and logs the dial error: such a failed flow is
	// excused when the log shows as many resets, at most 1 in 10,000 flows. Every other
	// failure, and any reset, corruption or truncation of an established flow, fails the soak.
	bad := flows.count(reset) + flows.count(corrupt) + flows.count(truncated) + flows.count(failed)
	appResets := int64(strings.Count(f.s.Logs.String(), "connect: connection reset by peer"))
	if excused := min(flows.count(failed), appResets); excused > 0 && excused*10_000 <= flows.count(whole) {
		t.Logf("%d flows failed because the app's kernel reset the sidecar's connect (logged %d times); excused", excused, appResets)
		bad -= excused
	}
	if bad != 0 {
		t.Errorf("%d flows not whole during the soak", bad)
	}
	if peak.fds > soakFDCap || peak.rssKiB > rssCap || peak.goroutines > soakGCap {
		t.Errorf("peak %s passes a hard cap (fds %d, RSS %d MiB, goroutines %d)", peak, soakFDCap, rssCap>>10, soakGCap)
	}
	third := len(samples) / 3
	if third > 0 {
		first, last := usage{}, usage{}
		for _, u := range samples[:third] {
			first = first.max(u)
		}
		for _, u := range samples[len(samples)-third:] {
			last = last.max(u)
		}
		t.Logf("first third's peak %s; last third's peak %s", first, last)
		grew := func(a, b, slack int) bool { return b > a*3/2+slack }
		if grew(first.fds, last.fds, 64) || grew(first.rssKiB, last.rssKiB, 16<<10) || grew(first.goroutines, last.goroutines, 50) {
			t.Errorf("the sidecar grew during the soak: first third's peak %s, last third's %s", first, last)
		}
	}
	report(t, fmt.Sprintf("soak %v, mixed load", d), peak, okOr(t, fmt.Sprintf("%d flows whole; no growth", flows.count(whole))))
}
