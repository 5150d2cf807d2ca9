package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	// The report renders a table only where a contender runs beside direct.
	if _, err := exec.LookPath("microsocks"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but microsocks is missing (.ci/run installs it): the report check needs a contender beside direct")
		}
		t.Skip("microsocks not installed (apt-get install microsocks, or make bench-deps)")
	}
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

// sidecarBin builds the sidecar from the repository once per test binary.
var sidecarBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nat464-bench-sidecar-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nat464-sidecar")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nat464-sidecar")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the sidecar: %v\n%s", err, out)
	}
	return bin, nil
})

// needSidecar returns the sidecar binary, or skips the test when it cannot
// be built here (and fails it under CI=true).
func needSidecar(t *testing.T) string {
	t.Helper()
	bin, err := sidecarBin()
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(err)
	}
	t.Skip(err)
	return ""
}

// TestDriverNewPaths runs the driver with a tiny plan over the sidecar in
// every family past the literal ones (names from the hosts file and from
// the bench DNS server, HTTP CONNECT with a literal and a name) and its
// literal SOCKS5 path, with go-socks5-min and, when installed, microsocks
// and tinyproxy asking for the same name. Each must complete connections
// without errors in the connection tests and run nothing else; the report
// must show each family and issue 12's targets.
func TestDriverNewPaths(t *testing.T) {
	needLinux(t)
	sc := needSidecar(t)
	plan := Plan{Mode: "test", Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		ShortDuration: 200 * time.Millisecond, Workers: 2, Workers32: 3, Streams: 1, IdleFlows: 10,
		Reps: 1, IdleReps: 1, NameEngines: []string{"splice"}}
	newFams := []string{FamilySOCKSHosts, FamilySOCKSDNS, FamilyHTTP, FamilyHTTPHosts}
	only := []string{"sidecar-splice-socks5", "go-socks5-min-hosts", "microsocks-hosts", "tinyproxy-hosts"}
	for _, f := range newFams {
		only = append(only, "sidecar-splice-"+f)
	}
	out := t.TempDir()
	var logs strings.Builder
	res, err := runDriver(context.Background(), runOptions{
		Plan: plan, Sidecar: sc, Out: out, Only: only,
		Logf: func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) },
	})
	if err != nil {
		t.Fatalf("runDriver: %v\n%s", err, logs.String())
	}
	ran := []string{"sidecar-splice-socks5", "go-socks5-min-hosts"}
	for _, f := range newFams {
		ran = append(ran, "sidecar-splice-"+f)
	}
	for _, p := range []string{"microsocks-hosts", "tinyproxy-hosts"} {
		if res.Skipped[p] == "" {
			ran = append(ran, p)
		}
	}
	for _, name := range ran {
		c := res.contender(name)
		if c == nil {
			t.Errorf("%s: no results (skipped: %q)", name, res.Skipped[name])
			continue
		}
		if c.Failed != "" {
			t.Errorf("%s failed: %s", name, c.Failed)
		}
		for _, test := range []string{TestRate, TestRate32, TestLatency} {
			runs := c.Tests[test]
			if len(runs) != 1 || runs[0].Errors != 0 || runs[0].Conns == 0 || runs[0].CPUSeconds < 0 {
				t.Errorf("%s %s: %+v", name, test, runs)
			}
		}
		if connOnly(c.Family) && (len(c.Tests[TestBulk]) > 0 || len(c.Tests[TestIdle]) > 0 || len(c.Tests[TestRateCC]) > 0) {
			t.Errorf("%s (family %s) ran more than the connection tests: %v", name, c.Family, sortedKeys(c.Tests))
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range newFams {
		if want := "## " + routes[f].title; !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, want := range []string{"## Targets, issue 12", "| sidecar-splice-socks5-dns | conn rate (3 workers) vs own literal path |",
		"### Connection rate, 3 workers, app closes first"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("driver log:\n%s", logs.String())
	}
	if tree, _ := procTree(os.Getpid()); len(tree) != 1 {
		t.Fatalf("children left running: %v", tree[1:])
	}
}
