//go:build chaos && linux

package chaos

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// usage is one sample of the sidecar's resources.
type usage struct {
	fds        int
	rssKiB     int
	goroutines int // 0 when /metrics did not answer
	pooledFDs  int // the fds of idle pipes the pool keeps (two per pipe): bounded, not a leak
}

// heldFDs are the fds that must return to the baseline: all but the pool's idle pipes, which
// one flow more or less through the warm-up can leave behind or not.
func (u usage) heldFDs() int { return u.fds - u.pooledFDs }

func (u usage) String() string {
	return fmt.Sprintf("fds %d, RSS %.1f MiB, goroutines %d", u.fds, float64(u.rssKiB)/1024, u.goroutines)
}

// max is the component-wise maximum.
func (u usage) max(v usage) usage {
	return usage{fds: max(u.fds, v.fds), rssKiB: max(u.rssKiB, v.rssKiB), goroutines: max(u.goroutines, v.goroutines)}
}

// fds counts the process's open file descriptors (-1 once it has gone).
func (s *sidecar) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// rssKiB reads VmRSS from /proc/PID/status.
func (s *sidecar) rssKiB() int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// metric returns the sum of the samples of a metric family whose labels contain sel, and
// whether /metrics answered.
func (s *sidecar) metric(name, sel string) (float64, bool) {
	code, body := s.Get("/metrics")
	if code != http.StatusOK {
		return 0, false
	}
	return testnet.SumMetric(body, name, sel), true
}

// goroutines reads go_goroutines from /metrics (0 when it did not answer).
func (s *sidecar) goroutines() int {
	v, _ := s.metric("go_goroutines", "")
	return int(v)
}

// sample reads all three figures now.
func (s *sidecar) sample() usage {
	pooled, _ := s.metric("nat464_splice_pipes_pooled", "")
	return usage{fds: s.fds(), rssKiB: s.rssKiB(), goroutines: s.goroutines(), pooledFDs: 2 * int(pooled)}
}

// sampler records the peak of the sidecar's resources every interval until stopped.
type sampler struct {
	mu   sync.Mutex
	peak usage
	all  []usage
	stop chan struct{}
	done chan struct{}
}

func (s *sidecar) sampleEvery(d time.Duration) *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			u := s.sample()
			sm.mu.Lock()
			sm.peak = sm.peak.max(u)
			sm.all = append(sm.all, u)
			sm.mu.Unlock()
			select {
			case <-sm.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return sm
}

// end stops the sampler and returns the peak and every sample.
func (sm *sampler) end() (usage, []usage) {
	close(sm.stop)
	<-sm.done
	return sm.peak, sm.all
}

// settle polls the sidecar until f(sample) holds or d passes, returning the last sample.
func (s *sidecar) settle(d time.Duration, ok func(usage) bool) usage {
	deadline := time.Now().Add(d)
	for {
		u := s.sample()
		if ok(u) || time.Now().After(deadline) {
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backToBaseline waits for fds and goroutines to return to base (plus slack goroutines for
// the scrape itself) and fails the test if they do not within d.
func (s *sidecar) backToBaseline(t *testing.T, d time.Duration, base usage, fdSlack, gSlack int) usage {
	t.Helper()
	u := s.settle(d, func(u usage) bool {
		return u.heldFDs() <= base.heldFDs()+fdSlack && u.goroutines > 0 && u.goroutines <= base.goroutines+gSlack
	})
	if u.heldFDs() > base.heldFDs()+fdSlack {
		t.Errorf("fds did not return to the baseline: %d (%d of idle pipes), baseline %d (%d)", u.fds, u.pooledFDs, base.fds, base.pooledFDs)
	}
	if u.goroutines == 0 || u.goroutines > base.goroutines+gSlack {
		t.Errorf("goroutines did not return to the baseline: %d, baseline %d", u.goroutines, base.goroutines)
	}
	return u
}

// figures collects what the suite prints in its closing table (docs/operations.md).
var figures struct {
	mu   sync.Mutex
	rows []string
}

// report logs one check's figures and keeps them for the summary TestMain prints.
func report(t *testing.T, scenario string, peak usage, outcome string) {
	t.Helper()
	row := fmt.Sprintf("| %s | %d | %.0f MiB | %d | %s |", scenario, peak.fds, float64(peak.rssKiB)/1024, peak.goroutines, outcome)
	t.Logf("figures: %s", row)
	figures.mu.Lock()
	figures.rows = append(figures.rows, row)
	figures.mu.Unlock()
}
