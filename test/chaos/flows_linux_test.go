//go:build chaos && linux

package chaos

import (
	"testing"
	"time"
)

// flowCount and flowConc are item 1's batch: flows per path and engine, and how many at once.
const (
	flowCount = 10000
	flowConc  = 200
)

// TestChecksummedFlows: 10,000 flows of random sizes (randomFlow: mostly small, a 3% tail of
// 256 KiB-4 MiB, both directions, 30% half-closed) at 200 at a time through each path — the
// inbound mapping, SOCKS5 to a name, SOCKS5 to an IPv4 literal — on each engine: every byte
// checked, no flow lost, corrupted, cut short or reset.
func TestChecksummedFlows(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := newFixture(t, eng, nil)
			for i, p := range []struct {
				name string
				dial dialer
			}{{"inbound", f.inbound()}, {"socks5-name", f.socksName()}, {"socks5-ip", f.socksIP()}} {
				t.Run(p.name, func(t *testing.T) {
					sm := f.s.sampleEvery(200 * time.Millisecond)
					start := time.Now()
					res := runFlows(flowCount, flowConc, uint64(i+1), p.dial)
					took := time.Since(start)
					peak, _ := sm.end()
					f.s.mustBeAlive(t, "during the flows")
					t.Logf("%s %s: %d flows at %d concurrent in %v: %s; sidecar peak %s",
						eng, p.name, flowCount, flowConc, took.Round(time.Millisecond), res, peak)
					for _, s := range res.samples {
						t.Log(s)
					}
					if n := res.count(whole); n != flowCount {
						t.Errorf("%d of %d flows whole", n, flowCount)
					}
					report(t, "10,000 checksummed flows, "+p.name+", "+eng, peak,
						okOr(t, "0 lost, 0 corrupted, 0 reset"))
				})
			}
			if bad := f.app.bad.Load(); bad != 0 {
				t.Errorf("the app received wrong bytes on %d flows", bad)
			}
		})
	}
}

// okOr is the outcome column: the given text when the test has not failed.
func okOr(t *testing.T, ok string) string {
	if t.Failed() {
		return "FAILED"
	}
	return ok
}
