package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/google/pprof/profile"
)

// ProfileResult is the sidecar's CPU profile under the rate test, reduced
// to its top functions.
type ProfileResult struct {
	Contender string       `json:"contender"`
	Seconds   int          `json:"seconds"`
	TotalMs   float64      `json:"total_ms"`
	Conns     uint64       `json:"conns"`
	Errors    uint64       `json:"errors,omitempty"`
	TopFlat   []ProfileRow `json:"top_flat"`
	TopCum    []ProfileRow `json:"top_cum"`
	Error     string       `json:"error,omitempty"`
}

// ProfileRow is one function: flat is time in the function itself, cum
// includes its callees. Percentages are of all samples.
type ProfileRow struct {
	Func    string  `json:"func"`
	FlatMs  float64 `json:"flat_ms"`
	FlatPct float64 `json:"flat_pct"`
	CumMs   float64 `json:"cum_ms"`
	CumPct  float64 `json:"cum_pct"`
}

// profileTop is how many functions the report lists.
const profileTop = 20

// profile runs the rate test against a fresh instance started with --pprof
// and fetches a CPU profile of the middle of the run.
func (d *driver) profile(ctx context.Context, c *Contender) {
	pr := &ProfileResult{Contender: c.Name, Seconds: d.plan.ProfileSeconds}
	d.res.Profiles = append(d.res.Profiles, pr)
	if cr := d.res.contender(c.Name); cr != nil && cr.Failed != "" {
		pr.Error = "not profiled: the contender failed its tests"
		return
	}
	env := *d.env
	env.pprof = true
	inst, err := c.start(ctx, &env, c)
	if err != nil {
		pr.Error = err.Error()
		return
	}
	defer d.procs.Stop(inst.Proc)
	secs := time.Duration(d.plan.ProfileSeconds) * time.Second
	w := Window{Warmup: d.plan.Warmup, Duration: secs + d.plan.Warmup}
	type fetched struct {
		p   *profile.Profile
		err error
	}
	got := make(chan fetched, 1)
	fired := false // Mark runs on this goroutine, inside Rate
	w.Mark = func(end bool) {
		if end {
			return
		}
		fired = true
		go func() {
			p, err := fetchProfile(ctx, inst.Admin, d.plan.ProfileSeconds)
			got <- fetched{p, err}
		}()
	}
	r := Rate(ctx, RateConfig{Target: inst.Target, Workers: d.plan.Workers, Window: w})
	pr.Conns, pr.Errors = r.Conns, r.Errors
	if !fired {
		pr.Error = "the run ended before the profile started"
		return
	}
	f := <-got
	if f.err != nil {
		pr.Error = f.err.Error()
		return
	}
	pr.TotalMs, pr.TopFlat, pr.TopCum = topFunctions(f.p, profileTop)
	d.logf("%s profile: %.0f ms of samples", c.Name, pr.TotalMs)
}

func fetchProfile(ctx context.Context, admin string, seconds int) (*profile.Profile, error) {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, seconds)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+10)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("bench: fetch profile: %s: %s", resp.Status, b)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("bench: parse profile: %w", err)
	}
	return p, nil
}

// topFunctions sums the CPU time per function: flat for the innermost frame
// of each sample (inlined frames count as their own functions), cum once per
// function per sample. It returns the total in ms and the top n functions
// by flat and by cum.
func topFunctions(p *profile.Profile, n int) (total float64, byFlat, byCum []ProfileRow) {
	idx := valueIndex(p)
	toMs := valueToMs(p, idx)
	flat := map[string]int64{}
	cum := map[string]int64{}
	var sum int64
	for _, s := range p.Sample {
		v := s.Value[idx]
		sum += v
		seen := map[string]bool{}
		leaf := true
		for _, loc := range s.Location {
			for _, ln := range loc.Line {
				name := "?"
				if ln.Function != nil {
					name = ln.Function.Name
				}
				if leaf {
					flat[name] += v
					leaf = false
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	total = toMs(sum)
	rows := make([]ProfileRow, 0, len(cum))
	for name, c := range cum {
		r := ProfileRow{Func: name, FlatMs: toMs(flat[name]), CumMs: toMs(c)}
		if total > 0 {
			r.FlatPct = r.FlatMs / total * 100
			r.CumPct = r.CumMs / total * 100
		}
		rows = append(rows, r)
	}
	byFlat = topBy(rows, n, func(r ProfileRow) float64 { return r.FlatMs }, func(r ProfileRow) float64 { return r.CumMs })
	byCum = topBy(rows, n, func(r ProfileRow) float64 { return r.CumMs }, func(r ProfileRow) float64 { return r.FlatMs })
	return total, byFlat, byCum
}

// topBy returns the n rows with the largest key, ties broken by the second
// key, then by name.
func topBy(rows []ProfileRow, n int, key, tie func(ProfileRow) float64) []ProfileRow {
	out := append([]ProfileRow(nil), rows...)
	sort.Slice(out, func(i, j int) bool {
		if a, b := key(out[i]), key(out[j]); a != b {
			return a > b
		}
		if a, b := tie(out[i]), tie(out[j]); a != b {
			return a > b
		}
		return out[i].Func < out[j].Func
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// valueIndex picks the cpu/nanoseconds sample value, else the last one.
func valueIndex(p *profile.Profile) int {
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			return i
		}
	}
	return len(p.SampleType) - 1
}

func valueToMs(p *profile.Profile, idx int) func(int64) float64 {
	scale := 1.0
	if idx >= 0 && idx < len(p.SampleType) {
		switch p.SampleType[idx].Unit {
		case "nanoseconds":
			scale = 1e-6
		case "microseconds":
			scale = 1e-3
		case "milliseconds":
			scale = 1
		}
	}
	return func(v int64) float64 { return float64(v) * scale }
}
