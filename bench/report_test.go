package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// fixture is a fixed run: direct, the splice sidecar in both families, one
// peer each, and one contender with errors.
func fixture() *Results {
	cdf := []CDFPoint{{Nanos: 50e3, Fraction: 0.5}, {Nanos: 100e3, Fraction: 1}}
	rate := func(cps, p50, cpu float64) []Run {
		return []Run{
			{Seconds: 10, CPUSeconds: cpu, Conns: uint64(cps * 10), ConnsPerSec: cps * 0.9, P50us: p50, P99us: 2 * p50, P999us: 3 * p50, CPUusConn: cpu / cps / 10 * 1e6, CDF: cdf},
			{Seconds: 10, CPUSeconds: cpu, Conns: uint64(cps * 10), ConnsPerSec: cps * 1.1, P50us: p50, P99us: 2 * p50, P999us: 3 * p50, CPUusConn: cpu / cps / 10 * 1e6, CDF: cdf},
		}
	}
	bulk := func(g, cpuGB float64) []Run {
		return []Run{{Seconds: 10, UpGbps: g, DownGbps: g, GB: 2 * g * 10 / 8, CPUSeconds: 1, CPUsGB: cpuGB}}
	}
	idle := func(rss, fds float64) []Run {
		return []Run{{Flows: 9000, Established: 9000, CPUSeconds: -1, RSSKiBPerFlow: rss, PSSKiBPerFlow: rss, FDsPerFlow: fds}}
	}
	noCPU := func(rs []Run) []Run {
		for i := range rs {
			rs[i].CPUSeconds = -1
			rs[i].CPUusConn = 0
			rs[i].CPUsGB = 0
		}
		return rs
	}
	r := &Results{
		Machine: Machine{CPUModel: "Test CPU", Cores: 2, Kernel: "6.1.0", GoVersion: "go1.26.8",
			Date: time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC), Versions: map[string]string{"haproxy": "HAProxy version 2.6"}},
		Plan:    plans["full"],
		Skipped: map[string]string{"danted": "not installed"},
		Contenders: []*ContenderResult{
			{Name: "direct", Family: FamilyDirect, Tests: map[string][]Run{
				TestRate: noCPU(rate(10000, 100, 0)), TestLatency: noCPU(rate(5000, 50, 0)), TestBulk: noCPU(bulk(20, 0))}},
			{Name: "sidecar-splice-inbound", Family: FamilyInbound, Sidecar: true, Tests: map[string][]Run{
				TestRate: rate(7000, 150, 2), TestLatency: rate(3000, 70, 1), TestBulk: bulk(15, 0.1), TestIdle: idle(2.5, 2)}},
			{Name: "haproxy", Family: FamilyInbound, Peer: true, Tests: map[string][]Run{
				TestRate: rate(5000, 200, 3), TestLatency: rate(2000, 90, 1), TestBulk: bulk(12, 0.2), TestIdle: idle(3.1, 2)}},
			{Name: "sidecar-splice-socks5", Family: FamilySOCKS, Sidecar: true, Tests: map[string][]Run{
				TestRate: rate(4000, 300, 2), TestLatency: rate(2000, 150, 1), TestBulk: bulk(8, 0.3)}},
			{Name: "socat", Family: FamilyInbound, Peer: true, NoIdle: "forks a process per connection", Tests: map[string][]Run{
				TestRate: rate(1000, 900, 5)}},
			{Name: "microsocks", Family: FamilySOCKS, Peer: true, Tests: map[string][]Run{
				TestRate: rate(3000, 400, 3), TestLatency: rate(1000, 200, 1), TestBulk: bulk(4, 1), TestIdle: idle(12, 2)}},
		},
		Profiles: []*ProfileResult{{Contender: "sidecar-splice-inbound", Seconds: 5, TotalMs: 1000, Conns: 1234,
			TopFlat: []ProfileRow{{Func: "syscall.Syscall6", FlatMs: 400, FlatPct: 40, CumMs: 400, CumPct: 40}},
			TopCum:  []ProfileRow{{Func: "main.relay", FlatMs: 0, FlatPct: 0, CumMs: 900, CumPct: 90}}}},
	}
	r.Contenders[5].Tests[TestBulk][0].Errors = 3
	r.Contenders[5].Tests[TestBulk][0].ErrorSample = "bench: bulk stream: connection reset | by peer"
	return r
}

func TestEvalTargets(t *testing.T) {
	res := fixture()
	got := map[string]TargetResult{}
	for _, tr := range evalTargets(res) {
		if tr.Group == "" {
			got[tr.Contender+"/"+tr.Name] = tr
		}
	}
	tests := []struct {
		key   string
		value float64
		pass  bool
	}{
		{"sidecar-splice-inbound/conn rate vs direct", 0.7, true},
		{"sidecar-splice-inbound/bulk up vs direct", 0.75, true},
		{"sidecar-splice-inbound/p50 latency (1 worker) vs direct", 1.4, true},
		{"sidecar-splice-inbound/idle RSS per flow", 2.5, true},
		{"sidecar-splice-inbound/idle fds per flow (exactly)", 2, true},
		{"sidecar-splice-socks5/conn rate vs direct", 0.4, false},
		{"sidecar-splice-socks5/bulk down vs direct", 0.4, false},
		{"sidecar-splice-socks5/p50 latency (1 worker) vs direct", 3, false},
		{"sidecar-splice-socks5/CPU per GB (bulk)", 0.3, false},
	}
	for _, tt := range tests {
		tr, ok := got[tt.key]
		if !ok {
			t.Errorf("%s: missing", tt.key)
			continue
		}
		if diff := tr.Value - tt.value; diff > 1e-9 || diff < -1e-9 || tr.Pass != tt.pass {
			t.Errorf("%s: value %v pass %v, want %v %v", tt.key, tr.Value, tr.Pass, tt.value, tt.pass)
		}
	}
}

func TestRenderReport(t *testing.T) {
	res := fixture()
	res.Targets = evalTargets(res)
	var b bytes.Buffer
	renderReport(&b, res, []string{"conn-rate.svg"})
	out := b.String()
	for _, want := range []string{
		"# nat464-sidecar benchmark (full)",
		"| CPU | Test CPU |",
		"| kernel | 6.1.0 |",
		"| date | 2026-11-25 22:00 UTC |",
		"Skipped: danted (not installed)",
		"| sidecar-splice-inbound | conn rate vs direct | 0.70 x | >= 0.65 x | PASS |",
		"| sidecar-splice-socks5 | conn rate vs direct | 0.40 x | >= 0.50 x | **FAIL** |",
		"| sidecar-splice-inbound | idle fds per flow (exactly) | 2.00 fds | == 2.00 fds | PASS |",
		// 7000 conn/s over reps of 6300 and 7700: spread 20%, 0.70 x direct, 1.40 x haproxy.
		"| sidecar-splice-inbound | 7000 | 20.0% | 0.70 | 1.40 |",
		"| microsocks (peer) | 4.00 | - | 0.20 | 1.00 | 4.00 | - | 0.20 | 1.00 | 1.000 | **3** ⚠ |",
		"Top 1 by flat:\n\n| function | flat ms | flat % | cum ms | cum % |\n|---|---:|---:|---:|---:|\n| `syscall.Syscall6` | 400 | 40.0 | 400 | 40.0 |",
		"Top 1 by cum:\n\n| function | flat ms | flat % | cum ms | cum % |\n|---|---:|---:|---:|---:|\n| `main.relay` | 0 | 0.0 | 900 | 90.0 |",
		"![conn-rate](conn-rate.svg)",
		"Not measured: socat (forks a process per connection).",
		"connection reset / by peer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", out)
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	res := fixture()
	res.Targets = evalTargets(res)
	if err := writeReport(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"report.md", "results.json", "latency-cdf-inbound.svg", "latency-cdf-socks5.svg",
		"conn-rate.svg", "bulk-throughput.svg", "idle-memory.svg"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (size %d)", f, err, sizeOf(st))
		}
	}
	if len(res.Notes) != 0 {
		t.Errorf("notes: %v", res.Notes)
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

func TestTopFunctions(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	read, copyFn, relay, inl := fn(1, "syscall.read"), fn(2, "io.Copy"), fn(3, "main.relay"), fn(4, "main.inlined")
	loc := func(id uint64, fs ...*profile.Function) *profile.Location {
		l := &profile.Location{ID: id}
		for _, f := range fs {
			l.Line = append(l.Line, profile.Line{Function: f})
		}
		return l
	}
	lRead, lCopy, lRelay := loc(1, read), loc(2, copyFn), loc(3, inl, relay)
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lRead, lCopy, lRelay}, Value: []int64{6, 60e6}},
			{Location: []*profile.Location{lCopy, lRelay}, Value: []int64{3, 30e6}},
			{Location: []*profile.Location{lRelay}, Value: []int64{1, 10e6}},
			// recursion: relay twice in one stack counts once in cum
			{Location: []*profile.Location{lRelay, lRelay}, Value: []int64{0, 0}},
		},
	}
	total, byFlat, byCum := topFunctions(p, 3)
	if total != 100 {
		t.Fatalf("total %v ms, want 100", total)
	}
	read60 := ProfileRow{Func: "syscall.read", FlatMs: 60, FlatPct: 60, CumMs: 60, CumPct: 60}
	copy90 := ProfileRow{Func: "io.Copy", FlatMs: 30, FlatPct: 30, CumMs: 90, CumPct: 90}
	inl100 := ProfileRow{Func: "main.inlined", FlatMs: 10, FlatPct: 10, CumMs: 100, CumPct: 100}
	relay100 := ProfileRow{Func: "main.relay", FlatMs: 0, FlatPct: 0, CumMs: 100, CumPct: 100}
	for _, tt := range []struct {
		name      string
		got, want []ProfileRow
	}{
		{"by flat", byFlat, []ProfileRow{read60, copy90, inl100}},
		{"by cum", byCum, []ProfileRow{inl100, relay100, copy90}},
	} {
		if len(tt.got) != len(tt.want) {
			t.Fatalf("%s: got %d rows, want %d: %+v", tt.name, len(tt.got), len(tt.want), tt.got)
		}
		for i := range tt.want {
			if tt.got[i] != tt.want[i] {
				t.Errorf("%s row %d: %+v, want %+v", tt.name, i, tt.got[i], tt.want[i])
			}
		}
	}
}

// fixture12 adds what issue 12's targets read to fixture: the rate32
// test, the splice sidecar with a hosts name over SOCKS5 and HTTP CONNECT,
// its HTTP literal path, and microsocks asking for the same name.
func fixture12() *Results {
	r := fixture()
	r.Plan.Workers32 = 32
	run := func(cps, p50, cpuUs float64) []Run {
		return []Run{{Seconds: 10, CPUSeconds: cpuUs * cps * 10 / 1e6, Conns: uint64(cps * 10), ConnsPerSec: cps, P50us: p50, CPUusConn: cpuUs}}
	}
	conn := func(cps, p50, cpu float64) map[string][]Run {
		return map[string][]Run{TestRate: run(cps, 0, cpu), TestRate32: run(cps*1.1, 0, cpu), TestLatency: run(0, p50, 0)}
	}
	for _, c := range r.Contenders {
		if rs := c.Tests[TestRate]; len(rs) > 0 {
			c.Tests[TestRate32] = rs
		}
	}
	r.Contenders = append(r.Contenders,
		&ContenderResult{Name: "sidecar-splice-socks5-hosts", Family: FamilySOCKSHosts, Sidecar: true, Tests: conn(3800, 300, 100)},
		&ContenderResult{Name: "microsocks-hosts", Family: FamilySOCKSHosts, Peer: true, Tests: conn(2000, 400, 160)},
		&ContenderResult{Name: "sidecar-splice-http", Family: FamilyHTTP, Sidecar: true, Tests: conn(5000, 200, 90)},
		&ContenderResult{Name: "sidecar-splice-http-hosts", Family: FamilyHTTPHosts, Sidecar: true, Tests: conn(4000, 350, 130)},
	)
	return r
}

func TestEvalIssue12(t *testing.T) {
	got := map[string]TargetResult{}
	for _, tr := range evalTargets(fixture12()) {
		if tr.Group == groupIssue12 {
			got[tr.Contender+"/"+tr.Name] = tr
		}
	}
	tests := []struct {
		key   string
		value float64
		pass  bool
	}{
		// literal SOCKS5: reps of 3600 and 4400 conn/s, mean 4000
		{"sidecar-splice-socks5-hosts/conn rate (16 workers) vs own literal path", 0.95, true},
		{"sidecar-splice-socks5-hosts/conn rate (32 workers) vs microsocks", 1.9, true},
		{"sidecar-splice-socks5-hosts/CPU per connection (16 workers) vs microsocks", 0.625, true},
		{"sidecar-splice-socks5-hosts/p50 (1 worker) vs microsocks", 0.75, true},
		{"sidecar-splice-http-hosts/conn rate (32 workers) vs own literal path", 0.8, false},
		{"sidecar-splice-http-hosts/conn rate (16 workers) vs microsocks", 2, true},
		{"sidecar-splice-http-hosts/CPU per connection (32 workers) vs microsocks", 130.0 / 160, false},
		{"sidecar-splice-http-hosts/p50 (1 worker) vs microsocks", 0.875, false},
		// inbound against haproxy: 7000 vs 5000 conn/s, p50 70 vs 90 us
		{"sidecar-splice-inbound/conn rate (16 workers) vs haproxy", 1.4, true},
		{"sidecar-splice-inbound/conn rate (32 workers) vs haproxy", 1.4, true},
		{"sidecar-splice-inbound/p50 (1 worker) vs haproxy", 70.0 / 90, true},
		{"sidecar-splice-inbound/idle RSS per flow", 2.5, false}, // issue 12 holds it to 1 KiB
		{"sidecar-splice-inbound/idle fds per flow (exactly)", 2, true},
		{"sidecar-splice-socks5/bulk up vs direct", 0.4, false},
	}
	for _, tt := range tests {
		tr, ok := got[tt.key]
		if !ok {
			t.Errorf("%s: missing", tt.key)
			continue
		}
		if diff := tr.Value - tt.value; diff > 1e-9 || diff < -1e-9 || tr.Pass != tt.pass {
			t.Errorf("%s: value %v pass %v, want %v %v (%s)", tt.key, tr.Value, tr.Pass, tt.value, tt.pass, tr.Note)
		}
	}
	if _, ok := got["sidecar-goroutine-inbound/conn rate (16 workers) vs haproxy"]; ok {
		t.Error("issue 12's targets are the splice engine's")
	}
	var b bytes.Buffer
	res := fixture12()
	res.Targets = evalTargets(res)
	renderReport(&b, res, nil)
	for _, want := range []string{
		"## Targets, issue 12 (",
		"| sidecar-splice-inbound | p50 (1 worker) vs haproxy | 0.78 x | < 1.00 x | PASS |",
		"## SOCKS5, host name from the hosts file (localhost)",
		"### Connection rate, 32 workers, app closes first",
		"| sidecar-splice-socks5-hosts | 3800 | - | 0.38 | 1.90 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(b.String(), "## SOCKS5, host name from DNS") {
		t.Error("report has a section for a family that did not run")
	}
	if t.Failed() {
		t.Logf("report:\n%s", b.String())
	}
}
