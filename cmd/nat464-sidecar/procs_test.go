package main

import (
	"regexp"
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

// TestGOMAXPROCSInBinary: the real binary gives each splice loop a P on top of the runtime's
// choice, and an operator's GOMAXPROCS wins (and sizes the loops).
func TestGOMAXPROCSInBinary(t *testing.T) {
	requireLinux(t)
	t.Setenv("GOMAXPROCS", "") // the runtime's own choice, whatever this shell says
	started := regexp.MustCompile(`cpus=(\d+) relay_loops=(\d+) proxy_loops=(\d+) gomaxprocs=(\d+)`)
	plan := func(s *proc) (cpus, relay, proxy, procs int) {
		t.Helper()
		s.WaitLog(5*time.Second, "gomaxprocs=")
		m := started.FindStringSubmatch(s.Logs.String())
		if m == nil {
			t.Fatalf("no loop plan in the started line:\n%s", s.Logs)
		}
		n := make([]int, 4)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+1])
		}
		return n[0], n[1], n[2], n[3]
	}
	args := func() []string {
		return []string{"--inbound", strconv.Itoa(freePort(t)) + "=127.0.0.1:9", "--proxy-listen", "127.0.0.1:" + strconv.Itoa(freePort(t))}
	}

	s := startSidecar(t, args()...)
	cpus, relay, proxy, procs := plan(s)
	if relay != min(cpus, 4) || proxy != min(cpus, 8) || procs != cpus+relay {
		t.Errorf("cpus %d: relay loops %d, proxy loops %d, GOMAXPROCS %d; want %d, %d, %d",
			cpus, relay, proxy, procs, min(cpus, 4), min(cpus, 8), cpus+min(cpus, 4))
	}
	if got := s.metric("go_sched_gomaxprocs_threads", ""); got != float64(procs) {
		t.Errorf("go_sched_gomaxprocs_threads = %v, want %d", got, procs)
	}

	t.Setenv("GOMAXPROCS", "3")
	s = startSidecar(t, args()...)
	if cpus, relay, _, procs := plan(s); cpus != 3 || relay != 3 || procs != 3 {
		t.Errorf("with GOMAXPROCS=3: cpus %d, relay loops %d, GOMAXPROCS %d; want 3, 3, 3", cpus, relay, procs)
	}
}
