package main

import (
	"encoding/json"
	"math"
	"os"
	"time"
)

// Test ids, in report order.
const (
	TestRate    = "rate"    // N workers, the app closes first
	TestRate32  = "rate32"  // as rate, with Plan.Workers32 workers
	TestRateCC  = "rate-cc" // N workers, the client closes first
	TestLatency = "latency" // 1 worker, the app closes first
	TestBulk    = "bulk"
	TestIdle    = "idle"
)

// Plan is the shape of one driver run.
type Plan struct {
	Mode            string        `json:"mode"`
	Warmup          time.Duration `json:"warmup_ns"`
	Duration        time.Duration `json:"duration_ns"`
	ShortDuration   time.Duration `json:"short_duration_ns"` // latency and rate-cc
	Workers         int           `json:"workers"`
	Workers32       int           `json:"workers_rate32"` // of the rate32 test
	Streams         int           `json:"streams_per_direction"`
	IdleFlows       int           `json:"idle_flows"`
	Reps            int           `json:"reps"`
	IdleReps        int           `json:"idle_reps"`
	ProfileSeconds  int           `json:"profile_seconds"`
	ProfileContends []string      `json:"profile_contenders"`
	// SchedContends are measured for system calls, wake-ups and context
	// switches per connection (sched.go), ProfileSeconds each.
	SchedContends []string `json:"sched_contenders"`
	// NameEngines are the sidecar engines run in the families past the
	// inbound and literal SOCKS5 ones (names, HTTP CONNECT).
	NameEngines []string `json:"name_engines"`
}

// plans are the built-in run shapes. Quick is a sanity check (short
// windows, the splice engine only past the literal families); full is the
// measurement. Their durations on two cores with every peer installed are
// in README.md.
var plans = map[string]Plan{
	"quick": {
		Mode: "quick", Warmup: 250 * time.Millisecond, Duration: 1500 * time.Millisecond,
		ShortDuration: 700 * time.Millisecond, Workers: 16, Workers32: 32, Streams: 2,
		IdleFlows: 1000, Reps: 1, IdleReps: 1, ProfileSeconds: 2,
		ProfileContends: []string{"sidecar-splice-inbound", "sidecar-splice-socks5"},
		NameEngines:     []string{"splice"},
		SchedContends: []string{"sidecar-splice-inbound", "haproxy", "sidecar-splice-socks5", "sidecar-splice-socks5-hosts",
			"sidecar-relay-socks5-hosts", "microsocks-hosts", "go-socks5-min-hosts"},
	},
	"full": {
		Mode: "full", Warmup: time.Second, Duration: 6 * time.Second,
		ShortDuration: 3 * time.Second, Workers: 16, Workers32: 32, Streams: 2,
		IdleFlows: 9000, Reps: 2, IdleReps: 2, ProfileSeconds: 5,
		ProfileContends: []string{"sidecar-splice-inbound", "sidecar-splice-socks5"},
		NameEngines:     []string{"splice", "goroutine"},
		SchedContends: []string{"sidecar-splice-inbound", "haproxy", "sidecar-splice-socks5", "sidecar-splice-socks5-hosts",
			"sidecar-relay-socks5-hosts", "microsocks-hosts", "go-socks5-min-hosts"},
	},
}

// Results is everything one driver run measured; results.json holds it.
type Results struct {
	Machine    Machine            `json:"machine"`
	Plan       Plan               `json:"plan"`
	Started    time.Time          `json:"started"`
	Finished   time.Time          `json:"finished"`
	Contenders []*ContenderResult `json:"contenders"`
	Skipped    map[string]string  `json:"skipped,omitempty"`
	Profiles   []*ProfileResult   `json:"profiles,omitempty"`
	Sched      []*SchedResult     `json:"sched,omitempty"`
	Targets    []TargetResult     `json:"targets"`
	Notes      []string           `json:"notes,omitempty"`
}

// ContenderResult holds every run of every test of one contender.
type ContenderResult struct {
	Name    string           `json:"name"`
	Family  string           `json:"family"`
	Peer    bool             `json:"peer,omitempty"`
	Sidecar bool             `json:"sidecar,omitempty"`
	Failed  string           `json:"failed,omitempty"`  // why it stopped being run
	NoIdle  string           `json:"no_idle,omitempty"` // why the idle test does not apply
	Tests   map[string][]Run `json:"tests"`
}

// Run is one measurement. Fields that do not apply to a test are zero;
// CPU fields are -1 when there is no proxy process (direct).
type Run struct {
	Seconds     float64 `json:"seconds"`
	Errors      uint64  `json:"errors"`
	ErrorSample string  `json:"error_sample,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds"`

	Conns       uint64     `json:"conns,omitempty"`
	ConnsPerSec float64    `json:"conns_per_sec,omitempty"`
	P50us       float64    `json:"p50_us,omitempty"`
	P99us       float64    `json:"p99_us,omitempty"`
	P999us      float64    `json:"p999_us,omitempty"`
	CPUusConn   float64    `json:"cpu_us_per_conn,omitempty"`
	CDF         []CDFPoint `json:"cdf,omitempty"`

	UpGbps   float64 `json:"up_gbps,omitempty"`
	DownGbps float64 `json:"down_gbps,omitempty"`
	GB       float64 `json:"gb,omitempty"`
	CPUsGB   float64 `json:"cpu_s_per_gb,omitempty"`

	Flows         int     `json:"flows,omitempty"`
	Established   int     `json:"established,omitempty"`
	RSSKiBPerFlow float64 `json:"rss_kib_per_flow,omitempty"`
	PSSKiBPerFlow float64 `json:"pss_kib_per_flow,omitempty"`
	FDsPerFlow    float64 `json:"fds_per_flow,omitempty"`
}

// TargetResult is one pass/fail line of the report.
type TargetResult struct {
	Name      string  `json:"name"`
	Contender string  `json:"contender"`
	Value     float64 `json:"value"`
	Op        string  `json:"op"` // how Value must compare to Limit: >=, <=, < or ==
	Limit     float64 `json:"limit"`
	Unit      string  `json:"unit"`
	Pass      bool    `json:"pass"`
	NoData    bool    `json:"no_data,omitempty"` // a side of the comparison did not run (Value is 0)
	Note      string  `json:"note,omitempty"`
	// Group is the set of targets it belongs to (the issue that set them).
	Group string `json:"group,omitempty"`
}

// contender returns the result of a contender by name, or nil.
func (r *Results) contender(name string) *ContenderResult {
	for _, c := range r.Contenders {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// stat is the mean and spread of one metric over the runs of a test.
type stat struct {
	Mean   float64
	Spread float64 // (max-min)/mean, 0 for one run
	N      int
	Errors uint64
}

// statOf aggregates metric over runs; it is NaN-safe (N==0 means no data).
func statOf(runs []Run, metric func(Run) float64) stat {
	var s stat
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range runs {
		v := metric(r)
		s.Errors += r.Errors
		if math.IsNaN(v) {
			continue
		}
		s.Mean += v
		s.N++
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if s.N == 0 {
		s.Mean = math.NaN()
		return s
	}
	s.Mean /= float64(s.N)
	if s.N > 1 && s.Mean != 0 {
		s.Spread = (hi - lo) / math.Abs(s.Mean)
	}
	return s
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ProcSample is one reading of a process tree.
type ProcSample struct {
	RSSKiB     int64   // sum of VmRSS
	PSSKiB     int64   // sum of Pss from smaps_rollup
	FDs        int     // open file descriptors
	CPUSeconds float64 // user+system, including reaped children
	Procs      int     // processes in the tree
}
