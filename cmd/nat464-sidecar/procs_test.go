package main

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestPlanLoops(t *testing.T) {
	cases := []struct {
		cpus   int
		engine string
		proxy  bool
		want   loopPlan
		procs  int
	}{
		{1, "splice", true, loopPlan{1, 1, 1}, 2},
		{2, "splice", true, loopPlan{2, 2, 2}, 4},
		{2, "splice", false, loopPlan{2, 2, 0}, 4},
		{64, "splice", true, loopPlan{64, 4, 8}, 68},
		{2, "goroutine", true, loopPlan{2, 0, 0}, 2},
	}
	for _, tc := range cases {
		got := planLoops(tc.cpus, tc.engine, tc.proxy)
		if got != tc.want || got.procs() != tc.procs {
			t.Errorf("planLoops(%d, %s, proxy %v) = %+v (procs %d), want %+v (procs %d)",
				tc.cpus, tc.engine, tc.proxy, got, got.procs(), tc.want, tc.procs)
		}
	}
}

func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	noEnv := func(string) string { return "" }
	if got := raiseProcs(loopPlan{cpus: before, splice: 2, gnet: 1}, noEnv); got != before+2 || runtime.GOMAXPROCS(0) != before+2 {
		t.Errorf("raised to %d (runtime %d), want %d", got, runtime.GOMAXPROCS(0), before+2)
	}
	runtime.GOMAXPROCS(before)
	env := func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}
	if got := raiseProcs(loopPlan{cpus: before, splice: 2}, env); got != before || runtime.GOMAXPROCS(0) != before {
		t.Errorf("with GOMAXPROCS set: %d (runtime %d), want it left at %d", got, runtime.GOMAXPROCS(0), before)
	}
	if got := raiseProcs(loopPlan{cpus: before}, noEnv); got != before {
		t.Errorf("no event loops: %d, want %d", got, before)
	}
}

// TestGOMAXPROCSInBinary: the real binary gives each splice loop a P, and an operator's
// GOMAXPROCS wins.
func TestGOMAXPROCSInBinary(t *testing.T) {
	requireLinux(t)
	cpus := runtime.GOMAXPROCS(0)
	want := cpus + min(cpus, 4) // one P per splice loop
	s := startSidecar(t, "--inbound", strconv.Itoa(freePort(t))+"=127.0.0.1:9", "--proxy-listen", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	s.waitLog(5*time.Second, "gomaxprocs="+strconv.Itoa(want))
	if got := s.metric("go_sched_gomaxprocs_threads", ""); got != float64(want) {
		t.Errorf("go_sched_gomaxprocs_threads = %v, want %d", got, want)
	}

	t.Setenv("GOMAXPROCS", "3")
	s = startSidecar(t, "--inbound", strconv.Itoa(freePort(t))+"=127.0.0.1:9", "--proxy-listen", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	s.waitLog(5*time.Second, "gomaxprocs=3")
}
