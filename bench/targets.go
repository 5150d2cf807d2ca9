package main

import (
	"fmt"
	"math"
)

// The targets, as ratios to direct measured in the same run.
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

// evalTargets computes pass/fail for every sidecar contender.
func evalTargets(res *Results) []TargetResult {
	direct := res.contender("direct")
	if direct == nil {
		return nil
	}
	var out []TargetResult
	for _, c := range res.Contenders {
		if !c.Sidecar {
			continue
		}
		fam := c.Family
		out = appendRatio(out, c, direct, "conn rate vs direct", TestRate, mRate, targetRate[fam], true)
		up := ratioTarget(c, direct, "bulk up vs direct", TestBulk, mUp, targetBulk[fam], true)
		down := ratioTarget(c, direct, "bulk down vs direct", TestBulk, mDown, targetBulk[fam], true)
		out = append(out, up, down)
		out = appendRatio(out, c, direct, "p50 latency (1 worker) vs direct", TestLatency, mP50, targetLatency[fam], false)
		out = appendAbs(out, c, "CPU per connection (rate)", TestRate, mCPUConn, targetCPUusConn, "us", "")
		out = appendAbs(out, c, "CPU per GB (bulk)", TestBulk, mCPUGB, targetCPUsGB, "s/GB", "")
		if runs := c.Tests[TestIdle]; len(runs) > 0 && c.Name == "sidecar-splice-"+fam {
			note := ""
			if runs[0].Flows != targetIdleFlows {
				note = fmt.Sprintf("measured at %d flows; the target is defined at %d", runs[0].Flows, targetIdleFlows)
			}
			out = appendAbs(out, c, "idle RSS per flow", TestIdle, mRSS, targetIdleRSSKiB, "KiB", note)
			s := statOf(runs, mFDs)
			t := TargetResult{Name: "idle fds per flow (exactly)", Contender: c.Name, Value: s.Mean,
				Limit: targetIdleFDs, Unit: "fds", Note: note}
			t.Pass = math.Abs(s.Mean-targetIdleFDs) < 0.005 && s.Errors == 0
			out = append(out, finish(t, s))
		}
	}
	return out
}

func appendRatio(out []TargetResult, c, direct *ContenderResult, name, test string, m func(Run) float64, limit float64, atLeast bool) []TargetResult {
	return append(out, ratioTarget(c, direct, name, test, m, limit, atLeast))
}

// ratioTarget compares c to direct on one metric: at least limit times
// direct (higher is better), or at most limit times (lower is better).
func ratioTarget(c, direct *ContenderResult, name, test string, m func(Run) float64, limit float64, atLeast bool) TargetResult {
	s, d := statOf(c.Tests[test], m), statOf(direct.Tests[test], m)
	t := TargetResult{Name: name, Contender: c.Name, Limit: limit, Unit: "x"}
	if s.N == 0 || d.N == 0 || d.Mean == 0 {
		t.Note = "no data"
		return t
	}
	t.Value = s.Mean / d.Mean
	if atLeast {
		t.Pass = t.Value >= limit
	} else {
		t.Pass = t.Value <= limit
	}
	if d.Errors > 0 {
		t.Pass = false
		t.Note = "direct had errors"
	}
	return finish(t, s)
}

func appendAbs(out []TargetResult, c *ContenderResult, name, test string, m func(Run) float64, limit float64, unit, note string) []TargetResult {
	s := statOf(c.Tests[test], m)
	t := TargetResult{Name: name, Contender: c.Name, Limit: limit, Unit: unit, Note: note}
	if s.N == 0 {
		t.Note = "no data"
		return append(out, t)
	}
	t.Value = s.Mean
	t.Pass = s.Mean <= limit
	return append(out, finish(t, s))
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
