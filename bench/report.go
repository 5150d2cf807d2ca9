package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// col is one metric column of a results table. With ratio set, the table
// also shows the spread over reps and the ratios to direct and to the best
// peer of the same family.
type col struct {
	head   string
	m      func(Run) float64
	prec   int
	higher bool // higher is better (for "best peer")
	ratio  bool
	// noDirect hides the ratio to direct (the idle test has no direct).
	noDirect bool
}

// table is one results table: a test over the contenders of a family.
type table struct {
	title string
	test  string
	cols  []col
}

func familyTables(p Plan) []table {
	lat := []col{
		{head: "p50 us", m: mP50, prec: 1},
		{head: "p99 us", m: func(r Run) float64 { return r.P99us }, prec: 1},
		{head: "p99.9 us", m: func(r Run) float64 { return r.P999us }, prec: 1},
	}
	rateCols := append([]col{{head: "conn/s", m: mRate, higher: true, ratio: true}}, lat...)
	rateCols = append(rateCols, col{head: "CPU us/conn", m: mCPUConn, prec: 1})
	latCols := append([]col{{head: "p50 us", m: mP50, prec: 1, ratio: true}}, lat[1:]...)
	return []table{
		{fmt.Sprintf("Connection rate, %d workers, app closes first", p.Workers), TestRate, rateCols},
		{fmt.Sprintf("Connection rate, %d workers, app closes first", p.Workers32), TestRate32, rateCols},
		{fmt.Sprintf("Connection rate, %d workers, client closes first", p.Workers), TestRateCC, rateCols},
		{"Latency, 1 worker (connect + 64 B echo)", TestLatency, latCols},
		{fmt.Sprintf("Bulk, %d streams each direction", p.Streams), TestBulk, []col{
			{head: "up Gbit/s", m: mUp, prec: 2, higher: true, ratio: true},
			{head: "down Gbit/s", m: mDown, prec: 2, higher: true, ratio: true},
			{head: "CPU s/GB", m: mCPUGB, prec: 3},
		}},
	}
}

var idleTable = table{"Idle flows", TestIdle, []col{
	{head: "RSS KiB/flow", m: mRSS, prec: 2, ratio: true, noDirect: true},
	{head: "PSS KiB/flow", m: mPSS, prec: 2},
	{head: "fds/flow", m: mFDs, prec: 2},
}}

// writeReport writes report.md, results.json and the plots into dir.
func writeReport(dir string, res *Results) error {
	if err := writeJSON(filepath.Join(dir, "results.json"), res); err != nil {
		return err
	}
	plots, err := writePlots(dir, res)
	if err != nil {
		res.Notes = append(res.Notes, "plots failed: "+err.Error())
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return err
	}
	renderReport(f, res, plots)
	return f.Close()
}

// renderReport writes the Markdown report. plots are file names relative
// to the report.
func renderReport(w io.Writer, res *Results, plots []string) {
	p := res.Plan
	fmt.Fprintf(w, "# nat464-sidecar benchmark (%s)\n\n", p.Mode)
	m := res.Machine
	fmt.Fprintf(w, "| machine | |\n|---|---|\n| CPU | %s |\n| cores | %d |\n| kernel | %s |\n| Go | %s |\n| date | %s |\n",
		m.CPUModel, m.Cores, m.Kernel, m.GoVersion, m.Date.Format("2006-01-02 15:04 UTC"))
	if m.Sidecar != "" {
		fmt.Fprintf(w, "| sidecar | `%s` %s |\n", m.Sidecar, m.Commit)
	}
	names := sortedKeys(m.Versions)
	for _, k := range names {
		fmt.Fprintf(w, "| %s | %s |\n", k, m.Versions[k])
	}
	fmt.Fprintf(w, "\nEach test: %s warm-up (not measured), then %s (latency and client-close rate: %s); %d rep(s), a fresh process per contender per rep; spread = (max-min)/mean over reps. "+
		"Idle: %d flows. Everything on loopback; the app is `bench serve` on 127.0.0.1 and [::1], one port. Inbound: IPv6 client to [::1]:P, proxy to 127.0.0.1. "+
		"Proxies: client to 127.0.0.1:P, SOCKS5 or HTTP CONNECT to the app's IPv4 literal, or to a name: `%s` from a hosts file (the sidecar's lists ::1 first, then 127.0.0.1; peers read the system's /etc/hosts), "+
		"or `%s` from the bench DNS server (A 127.0.0.1, AAAA ::1, TTL %d s; the sidecar with an empty hosts file and a resolv.conf naming that server, peers through the system's resolv.conf). "+
		"The name and HTTP CONNECT families run the connection tests only (past the handshake the relay is the literal family's); sidecar engines there: %s. "+
		"Direct (client straight to the app) is the physical limit. CPU is the proxy's process tree (utime+stime, 10 ms ticks); "+
		"on loopback the sender's system call also runs the receiver's TCP input, so it includes kernel work for the client and app sides of the proxy's sockets.\n\n",
		p.Warmup, p.Duration, p.ShortDuration, p.Reps, p.IdleFlows, hostsName, benchName, int(dnsTTL.Seconds()), strings.Join(p.NameEngines, ", "))
	for _, n := range res.Notes {
		fmt.Fprintf(w, "> **Note:** %s\n\n", n)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "Skipped: ")
		for i, k := range sortedKeys(res.Skipped) {
			if i > 0 {
				fmt.Fprint(w, "; ")
			}
			fmt.Fprintf(w, "%s (%s)", k, res.Skipped[k])
		}
		fmt.Fprint(w, "\n\n")
	}
	for _, c := range res.Contenders {
		if c.Failed != "" {
			fmt.Fprintf(w, "> **%s failed:** %s\n\n", c.Name, oneLine(c.Failed))
		}
	}
	renderTargets(w, res.Targets)
	for _, fam := range families {
		if !hasFamily(res, fam) {
			continue
		}
		fmt.Fprintf(w, "## %s\n\n", routes[fam].title)
		for _, t := range familyTables(p) {
			renderTable(w, res, t, fam)
		}
	}
	fmt.Fprintf(w, "## Idle flows (%d)\n\n", p.IdleFlows)
	renderTable(w, res, idleTable, "")
	var notIdle []string
	for _, c := range res.Contenders {
		if c.NoIdle != "" && c.Family != FamilyDirect && !connOnly(c.Family) {
			notIdle = append(notIdle, c.Name+" ("+c.NoIdle+")")
		}
	}
	if len(notIdle) > 0 {
		fmt.Fprintf(w, "Not measured: %s.\n\n", strings.Join(notIdle, ", "))
	}
	if len(plots) > 0 {
		fmt.Fprint(w, "## Plots\n\n")
		for _, pl := range plots {
			fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(pl, filepath.Ext(pl)), pl)
		}
	}
	for _, pr := range res.Profiles {
		renderProfile(w, pr)
	}
	renderSched(w, res.Sched)
	renderErrors(w, res)
}

// targetGroups are the target sets in report order: the harness's first
// ones (no group), then issue 12's.
var targetGroups = []string{"", groupIssue12}

func renderTargets(w io.Writer, ts []TargetResult) {
	if len(ts) == 0 {
		fmt.Fprint(w, "## Targets\n\nNo sidecar results: targets not evaluated.\n\n")
		return
	}
	for _, g := range targetGroups {
		var in []TargetResult
		pass := 0
		for _, t := range ts {
			if t.Group == g {
				in = append(in, t)
				if t.Pass {
					pass++
				}
			}
		}
		if len(in) == 0 {
			continue
		}
		title := "Targets"
		if g != "" {
			title += ", " + g
		}
		fmt.Fprintf(w, "## %s (%d of %d pass)\n\n", title, pass, len(in))
		if intro := groupIntro[g]; intro != "" {
			fmt.Fprintf(w, "%s\n\n", intro)
		}
		fmt.Fprint(w, "| contender | target | value | limit | result | note |\n|---|---|---:|---:|---|---|\n")
		for _, t := range in {
			verdict := "**FAIL**"
			if t.Pass {
				verdict = "PASS"
			}
			value := fnum(t.Value, 2) + " " + t.Unit
			if t.NoData {
				value = "-"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s %s %s | %s | %s |\n",
				t.Contender, t.Name, value, t.Op, fnum(t.Limit, 2), t.Unit, verdict, t.Note)
		}
		fmt.Fprintln(w)
	}
}

// hasFamily reports whether any contender of fam has results.
func hasFamily(res *Results, fam string) bool {
	for _, c := range res.Contenders {
		if c.Family == fam && len(c.Tests) > 0 {
			return true
		}
	}
	return false
}

// rowsFor returns direct and the contenders of a family (all non-direct
// contenders when fam is empty) that have runs of the test.
func rowsFor(res *Results, test, fam string) []*ContenderResult {
	var rows []*ContenderResult
	for _, c := range res.Contenders {
		if len(c.Tests[test]) == 0 {
			continue
		}
		if c.Family == FamilyDirect || fam == "" || c.Family == fam {
			rows = append(rows, c)
		}
	}
	return rows
}

func renderTable(w io.Writer, res *Results, t table, fam string) {
	rows := rowsFor(res, t.test, fam)
	if !slices.ContainsFunc(rows, func(c *ContenderResult) bool { return c.Family != FamilyDirect }) {
		return // direct alone: the family does not run this test
	}
	fmt.Fprintf(w, "### %s\n\n| contender |", t.title)
	align := "|---|"
	for _, c := range t.cols {
		fmt.Fprintf(w, " %s |", c.head)
		align += "---:|"
		if c.ratio {
			fmt.Fprint(w, " spread |")
			align += "---:|"
			if !c.noDirect {
				fmt.Fprint(w, " x direct |")
				align += "---:|"
			}
			fmt.Fprint(w, " x best peer |")
			align += "---:|"
		}
	}
	fmt.Fprintf(w, " errors |\n%s---:|\n", align)
	direct := res.contender("direct")
	for _, r := range rows {
		runs := r.Tests[t.test]
		name := r.Name
		if r.Peer {
			name += " (peer)"
		}
		fmt.Fprintf(w, "| %s |", name)
		var errs uint64
		for _, c := range t.cols {
			s := statOf(runs, c.m)
			errs = s.Errors
			fmt.Fprintf(w, " %s |", fnum(s.Mean, c.prec))
			if !c.ratio {
				continue
			}
			fmt.Fprintf(w, " %s |", pct(s))
			if !c.noDirect {
				fmt.Fprintf(w, " %s |", ratioTo(s, direct, t.test, c))
			}
			fmt.Fprintf(w, " %s |", ratioTo(s, bestPeer(res, t.test, r.Family, fam, c), t.test, c))
		}
		if errs > 0 {
			fmt.Fprintf(w, " **%d** ⚠ |\n", errs)
		} else {
			fmt.Fprint(w, " 0 |\n")
		}
	}
	fmt.Fprintln(w)
}

// bestPeer returns the peer of the family with the best mean on c.
func bestPeer(res *Results, test, rowFam, tableFam string, c col) *ContenderResult {
	fam := tableFam
	if fam == "" {
		fam = rowFam
	}
	var best *ContenderResult
	bv := math.NaN()
	for _, p := range res.Contenders {
		if !p.Peer || p.Family != fam {
			continue
		}
		s := statOf(p.Tests[test], c.m)
		if s.N == 0 || math.IsNaN(s.Mean) {
			continue
		}
		if best == nil || (c.higher && s.Mean > bv) || (!c.higher && s.Mean < bv) {
			best, bv = p, s.Mean
		}
	}
	return best
}

func ratioTo(s stat, ref *ContenderResult, test string, c col) string {
	if ref == nil || s.N == 0 {
		return "-"
	}
	r := statOf(ref.Tests[test], c.m)
	if r.N == 0 || r.Mean == 0 || math.IsNaN(r.Mean) || math.IsNaN(s.Mean) {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.Mean/r.Mean)
}

func pct(s stat) string {
	if s.N < 2 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", s.Spread*100)
}

// fnum formats a number with prec decimals, large numbers without, and NaN
// as "-".
func fnum(v float64, prec int) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func renderProfile(w io.Writer, pr *ProfileResult) {
	fmt.Fprintf(w, "## CPU profile: %s under the rate test\n\n", pr.Contender)
	if pr.Error != "" {
		fmt.Fprintf(w, "Profile failed: %s\n\n", oneLine(pr.Error))
		return
	}
	fmt.Fprintf(w, "%d s profile, %.0f ms of CPU samples, %d connections in the measured window.", pr.Seconds, pr.TotalMs, pr.Conns)
	if pr.Errors > 0 {
		fmt.Fprintf(w, " **The rate run had %d errors.**", pr.Errors)
	}
	fmt.Fprintln(w)
	for _, tb := range []struct {
		by   string
		rows []ProfileRow
	}{{"flat", pr.TopFlat}, {"cum", pr.TopCum}} {
		if len(tb.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nTop %d by %s:\n\n| function | flat ms | flat %% | cum ms | cum %% |\n|---|---:|---:|---:|---:|\n", len(tb.rows), tb.by)
		for _, r := range tb.rows {
			fmt.Fprintf(w, "| `%s` | %.0f | %.1f | %.0f | %.1f |\n", r.Func, r.FlatMs, r.FlatPct, r.CumMs, r.CumPct)
		}
	}
	fmt.Fprintln(w)
}

// renderSched tabulates sched.go's counts, one row per contender.
func renderSched(w io.Writer, rs []*SchedResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprint(w, "## Where the time goes: the kernel's view per connection (32 workers)\n\n"+
		"Per connection completed, over a window in the middle of a 32-worker rate run on a fresh instance: "+
		"system calls its threads entered, wake-ups of its threads by one of its own (for Go, the runtime "+
		"handing work to another thread) and by anyone else (the client or the app making a socket ready), "+
		"context switches (voluntary: it blocked; involuntary: preempted) and CPU. perf makes every "+
		"contender slower alike; the counts per connection are what to compare.\n\n"+
		"| contender | syscalls | woken by own | woken by others | voluntary | involuntary | CPU us | threads (incl. forked) | conns |\n"+
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var failed []string
	for _, r := range rs {
		if r.Error != "" {
			failed = append(failed, r.Contender+": "+oneLine(r.Error))
			continue
		}
		fmt.Fprintf(w, "| %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.0f | %d | %d |\n", r.Contender, r.Syscalls,
			r.WokenByOwn, r.WokenByOthers, r.Voluntary, r.Involuntary, r.CPUus, r.Threads, r.Conns)
	}
	fmt.Fprintln(w)
	if len(failed) > 0 {
		fmt.Fprintf(w, "Not measured: %s.\n\n", strings.Join(failed, "; "))
	}
}

func renderErrors(w io.Writer, res *Results) {
	var lines []string
	for _, c := range res.Contenders {
		for _, test := range []string{TestRate, TestRate32, TestRateCC, TestLatency, TestBulk, TestIdle} {
			for i, r := range c.Tests[test] {
				if r.Errors > 0 {
					lines = append(lines, fmt.Sprintf("| %s | %s | %d | %d | %s |", c.Name, test, i+1, r.Errors, oneLine(r.ErrorSample)))
				}
			}
		}
	}
	if len(lines) == 0 {
		fmt.Fprint(w, "## Errors\n\nNone.\n")
		return
	}
	fmt.Fprint(w, "## Errors\n\nA contender with errors is flagged in its tables and fails its targets.\n\n| contender | test | rep | errors | first error |\n|---|---|---:|---:|---|\n")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
