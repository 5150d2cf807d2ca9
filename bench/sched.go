package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// SchedResult is what one contender costs per connection in the kernel's
// scheduler and system-call paths under the 32-worker rate test: where
// issue 12 asks the time goes. Counts are per connection completed in the
// measured window.
type SchedResult struct {
	Contender string `json:"contender"`
	Seconds   int    `json:"seconds"`
	Conns     uint64 `json:"conns"`
	Errors    uint64 `json:"errors,omitempty"`
	Threads   int    `json:"threads"` // of the process tree at the end
	// Syscalls are the system calls the contender's threads entered
	// (perf stat, raw_syscalls:sys_enter).
	Syscalls float64 `json:"syscalls_per_conn"`
	// Wakeups are wake-ups of the contender's threads (perf record,
	// sched:sched_wakeup, system-wide): by one of its own threads (for Go,
	// the runtime handing work to another thread: a scheduler handoff), or
	// by anyone else (the client or the app making a socket ready, a timer).
	WokenByOwn    float64 `json:"woken_by_own_per_conn"`
	WokenByOthers float64 `json:"woken_by_others_per_conn"`
	// Switches are context switches of its threads (/proc/PID/task/*/status):
	// voluntary (it blocked) and involuntary (it was preempted).
	Voluntary   float64 `json:"voluntary_switches_per_conn"`
	Involuntary float64 `json:"involuntary_switches_per_conn"`
	CPUus       float64 `json:"cpu_us_per_conn"`
	Error       string  `json:"error,omitempty"`
}

// sched runs the 32-worker rate test against a fresh instance of c and
// counts, over ProfileSeconds in its middle, the contender's system calls,
// the wake-ups of its threads and its context switches. It needs perf (the
// linux-perf package, bench/deps.sh) and root; without them the result says
// why.
func (d *driver) sched(ctx context.Context, c *Contender) {
	sr := &SchedResult{Contender: c.Name, Seconds: d.plan.ProfileSeconds}
	d.res.Sched = append(d.res.Sched, sr)
	perf, err := exec.LookPath("perf")
	if err != nil {
		sr.Error = "perf not installed (make bench-deps)"
		return
	}
	if cr := d.res.contender(c.Name); cr != nil && cr.Failed != "" {
		sr.Error = "not measured: the contender failed its tests"
		return
	}
	inst, err := c.start(ctx, d.env, c)
	if err != nil {
		sr.Error = err.Error()
		return
	}
	defer d.procs.Stop(inst.Proc)
	if inst.Proc == nil {
		sr.Error = "no process to measure"
		return
	}
	pid := inst.Proc.PID()
	secs := d.plan.ProfileSeconds
	dir, err := os.MkdirTemp("", "bench-sched-")
	if err != nil {
		sr.Error = err.Error()
		return
	}
	defer os.RemoveAll(dir)
	var (
		statCmd, recCmd *exec.Cmd
		statOut         bytes.Buffer
		tids            map[string]bool // the contender's threads when the window starts
		cpu             = newCPUMeter(inst)
		started         bool
	)
	w := Window{Warmup: d.plan.Warmup, Duration: time.Duration(secs)*time.Second + d.plan.Warmup}
	w.Mark = func(end bool) {
		cpu.mark(end)
		if end {
			return
		}
		tids = map[string]bool{}
		for _, id := range taskIDs(pid) {
			tids[id] = true
		}
		dur := strconv.Itoa(secs)
		// -p attaches to the threads that exist now: after the warm-up under load, a Go
		// process has made all it will.
		statCmd = exec.CommandContext(ctx, perf, "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
			"-p", treePIDs(pid), "--", "sleep", dur)
		statCmd.Stderr = &statOut
		recCmd = exec.CommandContext(ctx, perf, "record", "-q", "-a",
			"-e", "sched:sched_wakeup,sched:sched_switch,sched:sched_process_fork",
			"-o", filepath.Join(dir, "sched.data"), "--", "sleep", dur)
		if statCmd.Start() == nil && recCmd.Start() == nil {
			started = true
		}
	}
	r := Rate(ctx, RateConfig{Target: inst.Target, Workers: d.plan.Workers32, Window: w})
	sr.Conns, sr.Errors = r.Conns, r.Errors
	if !started {
		sr.Error = "perf did not start (root is needed for system-wide tracepoints)"
		return
	}
	serr, rerr := statCmd.Wait(), recCmd.Wait()
	if serr != nil || rerr != nil {
		sr.Error = fmt.Sprintf("perf: stat %v, record %v: %s", serr, rerr, oneLine(statOut.String()))
		return
	}
	// The perf window is ProfileSeconds; the connections are counted over the rate window,
	// which is a warm-up longer: scale the counts to it.
	conns := float64(r.Conns) * float64(secs) / r.Seconds
	if conns <= 0 {
		sr.Error = "no connection completed"
		return
	}
	sr.Syscalls = perfStatCount(statOut.String(), "raw_syscalls:sys_enter") / conns
	c2, err := schedCounts(ctx, perf, filepath.Join(dir, "sched.data"), tids)
	if err != nil {
		sr.Error = err.Error()
		return
	}
	sr.Threads = c2.threads
	sr.WokenByOwn, sr.WokenByOthers = float64(c2.byOwn)/conns, float64(c2.byOthers)/conns
	sr.Voluntary, sr.Involuntary = float64(c2.voluntary)/conns, float64(c2.involuntary)/conns
	if s := cpu.seconds(); s >= 0 {
		sr.CPUus = s * 1e6 / float64(r.Conns)
	}
	d.logf("%s sched: %.1f syscalls, %.2f+%.2f wake-ups (own+others), %.2f voluntary switches per connection",
		c.Name, sr.Syscalls, sr.WokenByOwn, sr.WokenByOthers, sr.Voluntary)
}

// treePIDs is pid and its descendants, comma-separated, for perf -p.
func treePIDs(pid int) string {
	pids, err := procTree(pid)
	if err != nil {
		return strconv.Itoa(pid)
	}
	out := make([]string, len(pids))
	for i, p := range pids {
		out[i] = strconv.Itoa(p)
	}
	return strings.Join(out, ",")
}

// taskIDs lists the threads of pid and of its descendants.
func taskIDs(pid int) []string {
	pids, err := procTree(pid)
	if err != nil {
		pids = []int{pid}
	}
	var out []string
	for _, p := range pids {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		if err != nil {
			continue
		}
		for _, e := range ents {
			out = append(out, e.Name())
		}
	}
	return out
}

// perfStatCount reads one event's count from perf stat -x , output.
func perfStatCount(out, event string) float64 {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, ",")
		if len(f) >= 3 && f[2] == event {
			v, _ := strconv.ParseFloat(f[0], 64)
			return v
		}
	}
	return 0
}

// Lines of perf script -F comm,pid,tid,event,trace: "comm PID/TID event: fields". A comm may
// hold spaces, so the fields are found by name.
var (
	eventLine = regexp.MustCompile(`\s(\d+)/(\d+)\s+sched:(sched_wakeup|sched_switch|sched_process_fork):\s(.*)$`)
	wokenPID  = regexp.MustCompile(`\spid=(\d+)\s+prio=`)
	forked    = regexp.MustCompile(`\spid=(\d+)\s+child_comm=.*\schild_pid=(\d+)`)
	switched  = regexp.MustCompile(`prev_pid=(\d+)\s+prev_prio=\d+\s+prev_state=(\S+)\s+==>`)
)

type schedTally struct {
	threads                int
	byOwn, byOthers        int64 // wake-ups of the contender's threads, by waker
	voluntary, involuntary int64 // its threads switched out: blocked, or preempted (state R)
}

// schedCounts reads a perf record file of sched_wakeup, sched_switch and sched_process_fork
// events in time order. The contender's threads are tids plus every thread or process one of
// them forks during the window: a thread-per-connection server's threads live shorter than
// any /proc listing.
func schedCounts(ctx context.Context, perf, file string, tids map[string]bool) (schedTally, error) {
	var t schedTally
	cmd := exec.CommandContext(ctx, perf, "script", "-i", file, "-F", "comm,pid,tid,event,trace")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return t, err
	}
	if err := cmd.Start(); err != nil {
		return t, fmt.Errorf("perf script: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.add(sc.Text(), tids)
	}
	if err := cmd.Wait(); err != nil {
		return t, fmt.Errorf("perf script: %w", err)
	}
	t.threads = len(tids)
	return t, nil
}

// add counts one perf script line; a fork by one of tids adds the child to tids.
func (t *schedTally) add(line string, tids map[string]bool) {
	m := eventLine.FindStringSubmatch(line)
	if m == nil {
		return
	}
	cur, fields := m[2], m[4]
	switch m[3] {
	case "sched_process_fork":
		if f := forked.FindStringSubmatch(fields); f != nil && (tids[f[1]] || tids[cur]) {
			tids[f[2]] = true
		}
	case "sched_wakeup":
		w := wokenPID.FindStringSubmatch(fields)
		if w == nil || !tids[w[1]] {
			return
		}
		if tids[cur] {
			t.byOwn++
		} else {
			t.byOthers++
		}
	case "sched_switch":
		sw := switched.FindStringSubmatch(fields)
		if sw == nil || !tids[sw[1]] {
			return
		}
		if strings.HasPrefix(sw[2], "R") {
			t.involuntary++
		} else {
			t.voluntary++
		}
	}
}
