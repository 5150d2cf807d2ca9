package main

import (
	"fmt"
	"math"
)

// The issue's targets, as ratios to direct measured in the same run.
var (
	targetRate    = map[string]float64{FamilyInbound: 0.65, FamilySOCKS: 0.5}
	targetBulk    = map[string]float64{FamilyInbound: 0.5, FamilySOCKS: 0.5}
	targetLatency = map[string]float64{FamilyInbound: 1.6, FamilySOCKS: 2.5}
)

const (
	targetIdleFlows  = 9000
	targetIdleRSSKiB = 3
	targetIdleFDs    = 2
	targetCPUusConn  = 35
	targetCPUsGB     = 0.18
)

// Metrics shared by the tables, the targets and the plots.
func mRate(r Run) float64    { return r.ConnsPerSec }
func mP50(r Run) float64     { return r.P50us }
func mUp(r Run) float64      { return r.UpGbps }
func mDown(r Run) float64    { return r.DownGbps }
func mRSS(r Run) float64     { return r.RSSKiBPerFlow }
func mPSS(r Run) float64     { return r.PSSKiBPerFlow }
func mFDs(r Run) float64     { return r.FDsPerFlow }
func mCPUConn(r Run) float64 { return cpuOr(r, r.CPUusConn) }
func mCPUGB(r Run) float64   { return cpuOr(r, r.CPUsGB) }

func cpuOr(r Run, v float64) float64 {
	if r.CPUSeconds < 0 {
		return math.NaN()
	}
	return v
}

// evalTargets computes pass/fail for every sidecar contender: the
// harness's first targets (ratios to direct and absolute costs, in the
// inbound and literal SOCKS5 families), then issue 12's.
func evalTargets(res *Results) []TargetResult {
	direct := res.contender("direct")
	if direct == nil {
		return nil
	}
	var out []TargetResult
	for _, c := range res.Contenders {
		if !c.Sidecar || (c.Family != FamilyInbound && c.Family != FamilySOCKS) {
			continue
		}
		fam := c.Family
		out = append(out,
			ratioTarget(c, direct, "conn rate vs direct", TestRate, mRate, ">=", targetRate[fam]),
			ratioTarget(c, direct, "bulk up vs direct", TestBulk, mUp, ">=", targetBulk[fam]),
			ratioTarget(c, direct, "bulk down vs direct", TestBulk, mDown, ">=", targetBulk[fam]),
			ratioTarget(c, direct, "p50 latency (1 worker) vs direct", TestLatency, mP50, "<=", targetLatency[fam]),
			absTarget(c, "CPU per connection (rate)", TestRate, mCPUConn, targetCPUusConn, "us", ""),
			absTarget(c, "CPU per GB (bulk)", TestBulk, mCPUGB, targetCPUsGB, "s/GB", ""),
		)
		if c.Name == "sidecar-splice-"+fam {
			out = append(out, idleTargets(c, targetIdleRSSKiB)...)
		}
	}
	return append(out, evalIssue12(res)...)
}

// idleTargets are the idle RSS per flow (at most rss KiB) and fds per flow
// (exactly 2) of c, if it ran the idle test.
func idleTargets(c *ContenderResult, rss float64) []TargetResult {
	runs := c.Tests[TestIdle]
	if len(runs) == 0 {
		return nil
	}
	note := ""
	if runs[0].Flows != targetIdleFlows {
		note = fmt.Sprintf("measured at %d flows; the target is defined at %d", runs[0].Flows, targetIdleFlows)
	}
	s := statOf(runs, mFDs)
	fds := TargetResult{Name: "idle fds per flow (exactly)", Contender: c.Name, Value: s.Mean,
		Op: "==", Limit: targetIdleFDs, Unit: "fds", Note: note}
	fds.Pass = math.Abs(s.Mean-targetIdleFDs) < 0.005 && s.Errors == 0
	return []TargetResult{absTarget(c, "idle RSS per flow", TestIdle, mRSS, rss, "KiB", note), finish(fds, s)}
}

// ratioTarget compares c to ref on one metric of one test: the ratio of
// their means must be op (>=, <= or <) limit. It fails when either side
// has no data or errors.
func ratioTarget(c, ref *ContenderResult, name, test string, m func(Run) float64, op string, limit float64) TargetResult {
	t := TargetResult{Name: name, Contender: c.Name, Op: op, Limit: limit, Unit: "x"}
	if ref == nil {
		t.Note, t.NoData = "no data (the reference did not run)", true
		return t
	}
	s, r := statOf(c.Tests[test], m), statOf(ref.Tests[test], m)
	if s.N == 0 || r.N == 0 || r.Mean == 0 || math.IsNaN(r.Mean) {
		t.Note, t.NoData = "no data", true
		return t
	}
	t.Value = s.Mean / r.Mean
	t.Pass = compare(t.Value, op, limit)
	if r.Errors > 0 {
		t.Pass = false
		t.Note = ref.Name + " had errors"
	}
	return finish(t, s)
}

func compare(v float64, op string, limit float64) bool {
	switch op {
	case ">=":
		return v >= limit
	case "<=":
		return v <= limit
	case "<":
		return v < limit
	}
	return v == limit
}

// absTarget holds c's mean on a metric to at most limit.
func absTarget(c *ContenderResult, name, test string, m func(Run) float64, limit float64, unit, note string) TargetResult {
	s := statOf(c.Tests[test], m)
	t := TargetResult{Name: name, Contender: c.Name, Op: "<=", Limit: limit, Unit: unit, Note: note}
	if s.N == 0 {
		t.Note, t.NoData = "no data", true
		return t
	}
	t.Value = s.Mean
	t.Pass = s.Mean <= limit
	return finish(t, s)
}

// finish fails a target whose contender had errors in that test.
func finish(t TargetResult, s stat) TargetResult {
	if s.Errors > 0 {
		t.Pass = false
		if t.Note != "" {
			t.Note += "; "
		}
		t.Note += fmt.Sprintf("%d errors", s.Errors)
	}
	return t
}
