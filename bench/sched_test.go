package main

import (
	"testing"
)

func TestPerfStatCount(t *testing.T) {
	out := "# started on ...\n\n123456,,raw_syscalls:sys_enter,408053708,100.00,,\n99,,sched:sched_wakeup,408054405,100.00,,\n"
	if got := perfStatCount(out, "raw_syscalls:sys_enter"); got != 123456 {
		t.Errorf("syscalls = %v, want 123456", got)
	}
	if got := perfStatCount(out, "context-switches"); got != 0 {
		t.Errorf("a missing event = %v, want 0", got)
	}
}

// TestSchedTally: wake-ups and switches of the contender's threads are counted by who woke
// them and how they left the CPU, a thread it forks in the window joins it, and other
// processes' events (also with spaces in their comm) are not counted.
func TestSchedTally(t *testing.T) {
	tids := map[string]bool{"100": true, "101": true}
	lines := []string{
		"  nat464-sidecar 100/101 sched:sched_wakeup: comm=nat464-sidecar pid=100 prio=120 target_cpu=001",     // own
		"         swapper     0/0     sched:sched_wakeup: comm=nat464-sidecar pid=101 prio=120 target_cpu=000", // others
		" kworker/u4:2 ev 311/311 sched:sched_wakeup: comm=my app pid=4242 prio=120 target_cpu=000",            // not ours
		"  microsocks 100/100 sched:sched_process_fork: comm=microsocks pid=100 child_comm=microsocks child_pid=102",
		"  client 7/7 sched:sched_wakeup: comm=microsocks pid=102 prio=120 target_cpu=000", // others, of the child
		"  x 100/101 sched:sched_switch: prev_comm=x prev_pid=101 prev_prio=120 prev_state=S ==> next_comm=y next_pid=0 next_prio=120",
		"  x 100/102 sched:sched_switch: prev_comm=x prev_pid=102 prev_prio=120 prev_state=R+ ==> next_comm=y next_pid=0 next_prio=120",
		"  y 9/9 sched:sched_switch: prev_comm=y prev_pid=9 prev_prio=120 prev_state=S ==> next_comm=x next_pid=101 next_prio=120",
	}
	var tl schedTally
	for _, l := range lines {
		tl.add(l, tids)
	}
	want := schedTally{byOwn: 1, byOthers: 2, voluntary: 1, involuntary: 1}
	if tl != want {
		t.Errorf("tally = %+v, want %+v", tl, want)
	}
	if !tids["102"] {
		t.Error("the forked thread 102 was not added")
	}
}
