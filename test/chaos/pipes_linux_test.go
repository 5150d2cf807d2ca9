//go:build chaos && linux

package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/splice"
)

// poolSize is the splice engine's pipe pool (splice.DefaultMaxPipes, which the binary uses);
// no flag sets it, so the test puts 1x, 2x and 4x this many flows in flight.
const poolSize = splice.DefaultMaxPipes

// rssCap bounds the sidecar's resident memory under any item: payload stays in the kernel
// (pipes, socket buffers), so the process itself should need a few tens of MiB.
const rssCap = 256 << 10 // KiB

// The kinds of flow held in flight against the pool.
const (
	slowReader  = iota // 64 MiB down, read 4 KiB every 10 ms, then a hang-up with bytes unread
	slowWriter         // 256 KiB up written 4 KiB every 10 ms, 64 KiB down: must end whole
	bulk               // 1 MiB each way at full speed: must end whole
	earlyHangUp        // 64 MiB up at full speed, cut after the hold with bytes in flight
	pressureKinds
)

var kindNames = [pressureKinds]string{"slow reader", "slow writer", "bulk", "early hang-up"}

// pressureFlow is flow i of a level: its kind, what it asks for, its pacing, and how long it
// is held before a hang-up (zero: it runs to its end).
func pressureFlow(i int, r *rand.Rand, hold time.Duration) (kind int, f flow, up, down pace, cut time.Duration) {
	kind = i % pressureKinds
	f.seed = r.Uint64()
	switch kind {
	case slowReader:
		f.down, down, cut = 64<<20, pace{chunk: 4 << 10, pause: 10 * time.Millisecond}, hold
	case slowWriter:
		f.up, f.down, up = 256<<10, 64<<10, pace{chunk: 4 << 10, pause: 10 * time.Millisecond}
	case bulk:
		f.up, f.down = 1<<20, 1<<20
	case earlyHangUp:
		f.up, cut = 64<<20, hold/2+time.Duration(r.Int64N(int64(hold/2)))
	}
	return
}

// TestPipePoolOverload: 256, 512 and 1,024 flows in flight through the inbound mapping (1x, 2x
// and 4x the pipe pool), a quarter each of slow readers, slow writers, bulk flows and early
// hang-ups with bytes in flight. The sidecar must not crash, its memory stays bounded, every
// flow that runs to its end is whole or reset (never corrupt or cut short with a FIN), the
// bytes a hung-up flow read were right, and afterwards no flow, pipe or fd is left over.
//
// Before the pipe-pool fix, the splice engine crashed here with a nil pointer in
// splice.(*eloop).post via pipePool.discard: a pipe left with bytes in it by an inbound flow
// was discarded through the flow's loop pointer, which inbound flows did not set.
func TestPipePoolOverload(t *testing.T) {
	const hold = 4 * time.Second
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := newFixture(t, eng, nil, "--proxy-listen", "off")
			base := f.s.settle(2*time.Second, func(u usage) bool { return u.goroutines > 0 })
			for _, n := range []int{poolSize, 2 * poolSize, 4 * poolSize} {
				t.Run(fmt.Sprintf("%d-in-flight", n), func(t *testing.T) {
					pressure(t, f, eng, n, hold, base)
				})
				if !f.s.Alive() {
					break
				}
			}
		})
	}
}

func pressure(t *testing.T, f *fixture, eng string, n int, hold time.Duration, base usage) {
	sm := f.s.sampleEvery(250 * time.Millisecond)
	var tallies [pressureKinds]tally
	var wg sync.WaitGroup
	r := rand.New(rand.NewPCG(uint64(n), 0x9195))
	start := time.Now()
	for i := range n {
		kind, fl, up, down, cut := pressureFlow(i, r, hold)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := f.inbound()()
			if err != nil {
				tallies[kind].add(fl, 0, err)
				return
			}
			timeout := 60 * time.Second
			if cut > 0 {
				timeout = cut
			}
			got, err := fl.run(c, timeout, up, down)
			if cut > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				tallies[kind].addAs(hungUp, fl, got, err) // the bytes read so far were checked
				return
			}
			tallies[kind].add(fl, got, err)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	peak, _ := sm.end()
	f.s.mustBeAlive(t, fmt.Sprintf("with %d flows in flight", n))
	for k := range tallies {
		tl := &tallies[k]
		t.Logf("%s, %d in flight, %s: %s", eng, n, kindNames[k], tl)
		for _, s := range tl.samples {
			t.Log("  ", s)
		}
		if bad := tl.count(corrupt) + tl.count(truncated) + tl.count(failed); bad != 0 {
			t.Errorf("%s: %d flows neither whole nor reset", kindNames[k], bad)
		}
	}
	if peak.rssKiB > rssCap {
		t.Errorf("sidecar RSS peaked at %d KiB, over the %d KiB cap", peak.rssKiB, rssCap)
	}
	// A flow ends when both its peers are done, and an early hang-up's client closes with a FIN
	// while megabytes it was sent are still queued in its kernel: under this test's memory
	// pressure the host's BBR drains those at 100-150 KB/s, so a few flows outlive the clients
	// by 8 to 20 s (seen in a CI run; every such flow was traced to a peer socket still sending,
	// none to the engine). A leaked flow never ends, so 45 s still tells one apart.
	active := f.s.settleMetric(45*time.Second, "nat464_loop_flows_active", 0)
	inUse := f.s.settleMetric(5*time.Second, "nat464_splice_pipes_in_use", 0)
	after := f.s.backToBaseline(t, 10*time.Second, base, 2*2*poolSize, 4)
	t.Logf("%s, %d in flight: %v; sidecar peak %s; after: %s, flows active %v, pipes in use %v",
		eng, n, took.Round(time.Millisecond), peak, after, active, inUse)
	if active != 0 {
		t.Errorf("%v flows still active after every client left", active)
	}
	if inUse != 0 {
		t.Errorf("%v pipes still lent after every client left", inUse)
	}
	report(t, fmt.Sprintf("%d flows in flight (%dx the pipe pool), %s", n, n/poolSize, eng), peak,
		okOr(t, "no crash; every flow whole, reset or hung up intact"))
}

// settleMetric polls a metric until it equals want or d passes, returning the last value
// (-1 when /metrics did not answer).
func (s *sidecar) settleMetric(d time.Duration, name string, want float64) float64 {
	deadline := time.Now().Add(d)
	for {
		v, ok := s.metric(name, "")
		if !ok {
			v = -1
		}
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlowReadersHangUp is the pipe-pool crash as it was first reported: an app sending 64 MiB
// on every connection, 300 clients on [::1] each reading 4 KiB every 10 ms for 6 s, then all
// hanging up at once with bytes in flight. The sidecar must stay up and serve a whole flow
// afterwards.
func TestSlowReadersHangUp(t *testing.T) {
	const clients, hold = 300, 6 * time.Second
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := newFixture(t, eng, nil, "--proxy-listen", "off")
			sm := f.s.sampleEvery(250 * time.Millisecond)
			var tl tally
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					fl := flow{down: 64 << 20, seed: uint64(i)}
					c, err := f.inbound()()
					if err != nil {
						tl.add(fl, 0, err)
						return
					}
					got, err := fl.run(c, hold, pace{}, pace{chunk: 4 << 10, pause: 10 * time.Millisecond})
					if errors.Is(err, os.ErrDeadlineExceeded) {
						tl.addAs(hungUp, fl, got, err)
						return
					}
					tl.add(fl, got, err)
				}()
			}
			wg.Wait()
			time.Sleep(500 * time.Millisecond) // the hang-ups reach the loops
			peak, _ := sm.end()
			f.s.mustBeAlive(t, "after 300 slow readers hung up")
			t.Logf("%s: %d slow readers for %v: %s; sidecar peak %s", eng, clients, hold, &tl, peak)
			if n := tl.count(hungUp); n != clients {
				t.Errorf("%d of %d slow readers read intact bytes until they hung up", n, clients)
			}
			c, err := f.inbound()()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (flow{up: 1 << 20, down: 1 << 20, seed: 7}).run(c, 10*time.Second, pace{}, pace{}); err != nil {
				t.Errorf("a flow after the hang-ups: %v", err)
			}
			report(t, "300 slow readers hang up with 64 MiB pending, "+eng, peak, okOr(t, "no crash; served afterwards"))
		})
	}
}
