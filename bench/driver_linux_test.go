package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the driver's children (bench serve,
// dns, socks5min): the driver under test re-executes os.Executable().
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && slices.Contains(childCommands, os.Args[1]) {
		if err := commands[os.Args[1]](os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDriverEndToEnd runs the whole driver with a tiny plan against direct
// (and microsocks when it is installed), then checks the report files and
// that no child is left running.
func TestDriverEndToEnd(t *testing.T) {
	needLinux(t)
	plan := Plan{Mode: "test", Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		ShortDuration: 200 * time.Millisecond, Workers: 2, Workers32: 3, Streams: 1, IdleFlows: 20, Reps: 2, IdleReps: 1}
	out := t.TempDir()
	var logs strings.Builder
	res, err := runDriver(context.Background(), runOptions{
		Plan: plan, Sidecar: "", Out: out, Only: []string{"microsocks"},
		Logf: func(f string, a ...any) { logs.WriteString(strings.TrimSpace(f) + "\n") },
	})
	if err != nil {
		t.Fatalf("runDriver: %v\n%s", err, logs.String())
	}
	direct := res.contender("direct")
	if direct == nil {
		t.Fatal("no direct results")
	}
	for test, reps := range map[string]int{TestRate: 2, TestRate32: 2, TestLatency: 2, TestBulk: 2, TestRateCC: 1} {
		runs := direct.Tests[test]
		if len(runs) != reps {
			t.Errorf("direct %s: %d runs, want %d", test, len(runs), reps)
		}
		for _, r := range runs {
			if r.Errors != 0 || r.CPUSeconds != -1 {
				t.Errorf("direct %s: %d errors (%s), cpu %v (want -1: no proxy)", test, r.Errors, r.ErrorSample, r.CPUSeconds)
			}
		}
	}
	if ms := res.contender("microsocks"); ms != nil {
		idle := ms.Tests[TestIdle]
		if len(idle) != 1 || idle[0].Established != 20 || idle[0].FDsPerFlow < 1 {
			t.Errorf("microsocks idle: %+v", idle)
		}
		if r := ms.Tests[TestRate]; len(r) == 0 || r[0].CPUSeconds < 0 {
			t.Errorf("microsocks rate has no CPU reading: %+v", r)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil || len(back.Contenders) != len(res.Contenders) {
		t.Fatalf("results.json does not round-trip: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !strings.Contains(string(md), "| direct |") {
		t.Fatalf("report.md: %v", err)
	}
	if tree, _ := procTree(os.Getpid()); len(tree) != 1 {
		t.Fatalf("children left running: %v", tree[1:])
	}
}
