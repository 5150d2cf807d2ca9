package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// driver runs the plan over the contenders and collects the results.
type driver struct {
	plan  Plan
	env   *runEnv
	res   *Results
	logf  func(format string, args ...any)
	cs    []*Contender
	procs *Procs
}

// runOptions configure one driver run.
type runOptions struct {
	Plan        Plan
	Sidecar     string   // sidecar binary; missing or empty skips the sidecar
	SidecarArgs []string // extra sidecar flags
	Out         string   // report directory
	Only        []string // if set, only these contenders (and direct)
	// DNSListen is the bench DNS server's UDP address; if empty,
	// 127.0.0.1:0. bench/run.sh sets 127.0.0.1:53, which its network
	// namespace's resolv.conf names, so the peers reach it too.
	DNSListen string
	Logf      func(format string, args ...any)
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	mode := fs.String("mode", "quick", "quick (~2 min) or full (~12 min)")
	sidecar := fs.String("sidecar", "../bin/nat464-sidecar", "sidecar binary; missing means the sidecar is skipped")
	sidecarArgs := fs.String("sidecar-args", "", "extra sidecar flags, space separated")
	out := fs.String("out", "", "report directory; if empty, results/<mode>")
	only := fs.String("only", "", "comma-separated contender names to run (direct is always run)")
	flows := fs.Int("idle-flows", 0, "override the plan's idle flow count")
	dnsListen := fs.String("dns-listen", "127.0.0.1:0", "UDP address of the bench DNS server (bench/run.sh: 127.0.0.1:53)")
	fs.Parse(args)
	plan, ok := plans[*mode]
	if !ok {
		return fmt.Errorf("bench: unknown mode %q", *mode)
	}
	if *flows > 0 {
		plan.IdleFlows = *flows
	}
	o := runOptions{Plan: plan, Sidecar: *sidecar, SidecarArgs: strings.Fields(*sidecarArgs), Out: *out,
		DNSListen: *dnsListen, Logf: log.New(os.Stderr, "bench: ", log.Ltime).Printf}
	if o.Out == "" {
		o.Out = filepath.Join("results", plan.Mode)
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := runDriver(ctx, o)
	return err
}

// runDriver runs the plan over every available contender, writes the
// report and stops every process it started, whatever happens.
func runDriver(ctx context.Context, o runOptions) (*Results, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "nat464-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	procs := &Procs{}
	defer procs.StopAll()

	d := &driver{
		plan:  o.Plan,
		procs: procs,
		logf:  o.Logf,
		res:   &Results{Plan: o.Plan, Started: time.Now().UTC(), Skipped: map[string]string{}},
	}
	sc := o.Sidecar
	if abs, err := filepath.Abs(sc); err == nil && sc != "" {
		sc = abs
	}
	if st, err := os.Stat(sc); err != nil || st.IsDir() {
		sc = ""
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	_, app, err := procs.startReady(ctx, "serve", []string{self, "serve", "-dual"})
	if err != nil {
		return nil, err
	}
	_, dns, err := procs.startReady(ctx, "dns", []string{self, "dns", "-listen", cmp.Or(o.DNSListen, "127.0.0.1:0")})
	if err != nil {
		return nil, err
	}
	d.env = &runEnv{procs: procs, app: app, dns: dns, systemDNS: namesOnly(readFile(systemResolvConf), dns), self: self,
		dir: tmp, sidecar: sc, sidecarArgs: o.SidecarArgs, maxFlows: o.Plan.IdleFlows}
	for _, c := range contenders(sc, self, o.Plan.NameEngines) {
		if c.Family == FamilyDirect {
			d.cs = append(d.cs, c)
			continue
		}
		if len(o.Only) > 0 && !slices.Contains(o.Only, c.Name) {
			continue
		}
		if why := d.unavailable(c, o.Sidecar); why != "" {
			d.res.Skipped[c.Name] = why
			continue
		}
		d.cs = append(d.cs, c)
	}
	d.res.Machine = machineFacts(sc, d.cs)
	d.logf("mode %s, app at %s (and [::1]), DNS at %s (system resolver reaches it: %v), %d contenders, estimated %s",
		o.Plan.Mode, app, dns, d.env.systemDNS, len(d.cs), d.estimate())

	d.run(ctx)
	d.res.Finished = time.Now().UTC()
	d.res.Targets = evalTargets(d.res)
	if ctx.Err() != nil {
		d.res.Notes = append(d.res.Notes, "run interrupted: results are partial")
	}
	if err := writeReport(o.Out, d.res); err != nil {
		return d.res, err
	}
	d.logf("report in %s (took %s)", o.Out, d.res.Finished.Sub(d.res.Started).Round(time.Second))
	return d.res, ctx.Err()
}

// unavailable says why a contender cannot run here, or "".
func (d *driver) unavailable(c *Contender, sidecarFlag string) string {
	switch {
	case c.Bin == "" && c.Sidecar:
		return "sidecar binary not found at " + sidecarFlag
	case c.Bin == "":
		return "not installed (make bench-deps)"
	case c.SystemDNS && !d.env.systemDNS:
		return systemResolvConf + " does not name the bench DNS server on port 53 (bench/run.sh arranges it when run as root)"
	}
	return ""
}

// systemResolvConf is the resolv.conf the peers' resolvers read.
const systemResolvConf = "/etc/resolv.conf"

// namesOnly reports whether resolv.conf text sends every query to the DNS
// server at addr: its nameserver lines name addr's IP and nothing else, and
// addr is on port 53 (system resolvers take no port). It is read rather
// than probed, so that no query leaves loopback to find out.
func namesOnly(resolvConf, addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() != 53 {
		return false
	}
	n := 0
	for _, l := range strings.Split(resolvConf, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err != nil || a.Unmap() != ap.Addr().Unmap() {
			return false
		}
		n++
	}
	return n > 0
}

// estimate is the planned wall time, ignoring start-up.
func (d *driver) estimate() time.Duration {
	p := d.plan
	long := p.Warmup + p.Duration
	short := p.Warmup + p.ShortDuration
	conn := time.Duration(p.Reps) * (2*long + short)
	per := conn + time.Duration(p.Reps)*long + short
	idle := time.Duration(p.IdleReps) * (idleSettle + time.Duration(p.IdleFlows)*time.Millisecond/4)
	prof := time.Duration(len(p.ProfileContends)+len(p.SchedContends)) * (time.Duration(p.ProfileSeconds)*time.Second + 2*p.Warmup)
	var total time.Duration
	for _, c := range d.cs {
		if connOnly(c.Family) {
			total += conn
			continue
		}
		total += per
		if c.NoIdle == "" {
			total += idle
		}
	}
	return total + prof
}

// run executes every repetition: each rep runs every contender once, with a
// fresh process, so drift over the run hits all contenders alike.
func (d *driver) run(ctx context.Context) {
	for _, c := range d.cs {
		d.res.Contenders = append(d.res.Contenders, &ContenderResult{
			Name: c.Name, Family: c.Family, Peer: c.Peer, Sidecar: c.Sidecar, NoIdle: c.NoIdle, Tests: map[string][]Run{},
		})
	}
	for rep := 1; rep <= d.plan.Reps && ctx.Err() == nil; rep++ {
		for i, c := range d.cs {
			if ctx.Err() != nil {
				return
			}
			cr := d.res.Contenders[i]
			if cr.Failed != "" {
				continue // broken in an earlier rep: do not wait out its timeouts again
			}
			if err := d.runContender(ctx, c, cr, rep); err != nil {
				d.logf("%s: %v", c.Name, err)
				if cr.Failed == "" {
					cr.Failed = err.Error()
				}
			}
		}
	}
	for _, name := range d.plan.ProfileContends {
		for _, c := range d.cs {
			if c.Name == name && ctx.Err() == nil {
				d.profile(ctx, c)
			}
		}
	}
	for _, name := range d.plan.SchedContends {
		for _, c := range d.cs {
			if c.Name == name && ctx.Err() == nil {
				d.sched(ctx, c)
			}
		}
	}
}

// runContender starts c, runs this rep's tests and stops it.
func (d *driver) runContender(ctx context.Context, c *Contender, cr *ContenderResult, rep int) error {
	inst, err := c.start(ctx, d.env, c)
	if err != nil {
		return err
	}
	defer func() {
		if inst.Proc != nil {
			d.procs.Stop(inst.Proc)
		}
	}()
	p := d.plan
	long := Window{Warmup: p.Warmup, Duration: p.Duration}
	short := Window{Warmup: p.Warmup, Duration: p.ShortDuration}
	conn := connOnly(c.Family)
	tests := []struct {
		id   string
		skip bool
		run  func() Run
	}{
		// Idle first, on the fresh process: later tests churn the heap,
		// and the allocator returning that memory mid-measurement would
		// make the per-flow numbers drift (even below zero).
		{TestIdle, conn || c.NoIdle != "" || rep > p.IdleReps, func() Run { return d.idle(ctx, inst) }},
		{TestRate, false, func() Run { return d.rate(ctx, inst, p.Workers, false, long) }},
		{TestRate32, p.Workers32 <= 0, func() Run { return d.rate(ctx, inst, p.Workers32, false, long) }},
		{TestLatency, false, func() Run { return d.rate(ctx, inst, 1, false, short) }},
		{TestRateCC, conn || rep > 1, func() Run { return d.rate(ctx, inst, p.Workers, true, short) }},
		{TestBulk, conn, func() Run { return d.bulk(ctx, inst, long) }},
	}
	for _, t := range tests {
		if t.skip || ctx.Err() != nil {
			continue
		}
		r := t.run()
		cr.Tests[t.id] = append(cr.Tests[t.id], r)
		d.logf("%s rep %d %s: %s", c.Name, rep, t.id, summary(t.id, r))
		if inst.Proc != nil && inst.Proc.Exited() {
			return fmt.Errorf("%w during %s: %s", errExited, t.id, inst.Proc.Log())
		}
		if t.id == TestRate && r.Conns == 0 && r.Errors > 0 {
			// Nothing got through: every further test would only wait
			// out its timeouts. The errors are already on record.
			return fmt.Errorf("%w: no connection completed in the rate test (%s); other tests of rep %d skipped",
				errBroken, r.ErrorSample, rep)
		}
	}
	return nil
}

// cpuMeter samples the proxy's CPU time at the window marks.
type cpuMeter struct {
	pid    int
	t0, t1 float64
	ok     bool
}

func newCPUMeter(inst *Instance) *cpuMeter {
	if inst.Proc == nil || !procSupported {
		return &cpuMeter{}
	}
	return &cpuMeter{pid: inst.Proc.PID(), ok: true}
}

func (m *cpuMeter) mark(end bool) {
	if !m.ok {
		return
	}
	s, err := sampleTree(m.pid)
	if err != nil {
		m.ok = false
		return
	}
	if end {
		m.t1 = s.CPUSeconds
	} else {
		m.t0 = s.CPUSeconds
	}
}

// seconds is the CPU time used inside the window, or -1 if unknown.
func (m *cpuMeter) seconds() float64 {
	if !m.ok {
		return -1
	}
	return m.t1 - m.t0
}

func (d *driver) rate(ctx context.Context, inst *Instance, workers int, clientClose bool, w Window) Run {
	m := newCPUMeter(inst)
	w.Mark = m.mark
	r := Rate(ctx, RateConfig{Target: inst.Target, Workers: workers, ClientClose: clientClose, Window: w})
	run := Run{
		Seconds: r.Seconds, Errors: r.Errors, ErrorSample: r.ErrorSample, CPUSeconds: m.seconds(),
		Conns: r.Conns, ConnsPerSec: float64(r.Conns) / r.Seconds,
		P50us:  us(r.Hist.Quantile(0.5)),
		P99us:  us(r.Hist.Quantile(0.99)),
		P999us: us(r.Hist.Quantile(0.999)),
		CDF:    r.Hist.CDF(cdfPoints),
	}
	if run.CPUSeconds >= 0 && r.Conns > 0 {
		run.CPUusConn = run.CPUSeconds / float64(r.Conns) * 1e6
	}
	return run
}

func (d *driver) bulk(ctx context.Context, inst *Instance, w Window) Run {
	m := newCPUMeter(inst)
	w.Mark = m.mark
	r := Bulk(ctx, BulkConfig{Target: inst.Target, Streams: d.plan.Streams, Window: w})
	run := Run{
		Seconds: r.Seconds, Errors: r.Errors, ErrorSample: r.ErrorSample, CPUSeconds: m.seconds(),
		UpGbps:   float64(r.UpBytes) * 8 / r.Seconds / 1e9,
		DownGbps: float64(r.DownBytes) * 8 / r.Seconds / 1e9,
		GB:       float64(r.UpBytes+r.DownBytes) / 1e9,
	}
	if run.CPUSeconds >= 0 && run.GB > 0 {
		run.CPUsGB = run.CPUSeconds / run.GB
	}
	return run
}

// cdfPoints is how many points of each latency distribution results.json
// keeps (enough for the plots).
const cdfPoints = 80

// idleSettle lets the proxy finish its bookkeeping before the memory reading.
const idleSettle = time.Second

func (d *driver) idle(ctx context.Context, inst *Instance) Run {
	run := Run{Flows: d.plan.IdleFlows, CPUSeconds: -1}
	pid := inst.Proc.PID()
	before, err := sampleTree(pid)
	if err != nil {
		run.Errors, run.ErrorSample = 1, err.Error()
		return run
	}
	var after ProcSample
	var afterErr error
	r := Idle(ctx, IdleConfig{Target: inst.Target, Flows: d.plan.IdleFlows, Hold: func(int) {
		select {
		case <-ctx.Done():
		case <-time.After(idleSettle):
		}
		after, afterErr = sampleTree(pid)
	}})
	run.Established, run.Errors, run.ErrorSample = r.Established, r.Errors, r.ErrorSample
	if afterErr != nil {
		run.Errors++
		run.ErrorSample = afterErr.Error()
		return run
	}
	if r.Established > 0 {
		k := float64(r.Established)
		run.RSSKiBPerFlow = float64(after.RSSKiB-before.RSSKiB) / k
		run.PSSKiBPerFlow = float64(after.PSSKiB-before.PSSKiB) / k
		run.FDsPerFlow = float64(after.FDs-before.FDs) / k
	}
	if r.Established < d.plan.IdleFlows && run.Errors == 0 {
		run.Errors = uint64(d.plan.IdleFlows - r.Established)
		run.ErrorSample = errNotEstablished.Error()
	}
	return run
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// summary is the one-line progress log of a run.
func summary(test string, r Run) string {
	s := ""
	switch test {
	case TestBulk:
		s = fmt.Sprintf("up %.2f down %.2f Gbit/s, cpu %.3f s/GB", r.UpGbps, r.DownGbps, r.CPUsGB)
	case TestIdle:
		s = fmt.Sprintf("%d/%d flows, rss %.2f KiB pss %.2f KiB fds %.2f per flow",
			r.Established, r.Flows, r.RSSKiBPerFlow, r.PSSKiBPerFlow, r.FDsPerFlow)
	default:
		s = fmt.Sprintf("%.0f conn/s, p50 %.0f p99 %.0f p99.9 %.0f us, cpu %.1f us/conn",
			r.ConnsPerSec, r.P50us, r.P99us, r.P999us, r.CPUusConn)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d ERRORS (%s)", r.Errors, r.ErrorSample)
	}
	return s
}
