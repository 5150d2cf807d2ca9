package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// loadFlags are the flags every load command shares.
type loadFlags struct {
	target, socks, http *string
	warmup, dur         *time.Duration
}

func addLoadFlags(fs *flag.FlagSet) loadFlags {
	return loadFlags{
		target: fs.String("target", "", "address to connect to (the app or an inbound mapping)"),
		socks:  fs.String("socks", "", "SOCKS5 proxy; -target is then the host:port to ask it for (a literal or a name)"),
		http:   fs.String("http", "", "HTTP CONNECT proxy; -target is then the host:port to ask it for"),
		warmup: fs.Duration("warmup", time.Second, "warm-up, not measured"),
		dur:    fs.Duration("duration", 10*time.Second, "measured duration"),
	}
}

func (l loadFlags) targetAndWindow() (Target, Window, error) {
	if *l.target == "" {
		return Target{}, Window{}, fmt.Errorf("bench: -target is required")
	}
	t := Target{Addr: *l.target}
	switch {
	case *l.socks != "" && *l.http != "":
		return Target{}, Window{}, fmt.Errorf("bench: -socks and -http exclude each other")
	case *l.socks != "":
		t = Target{Addr: *l.socks, Dest: *l.target}
	case *l.http != "":
		t = Target{Addr: *l.http, Dest: *l.target, HTTP: true}
	}
	return t, Window{Warmup: *l.warmup, Duration: *l.dur}, nil
}

func sigContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// withCPU adds the CPU of -pid (if set) to a run.
func withCPU(pid int, w *Window) *cpuMeter {
	if pid <= 0 || !procSupported {
		return &cpuMeter{}
	}
	m := &cpuMeter{pid: pid, ok: true}
	w.Mark = m.mark
	return m
}

func cmdRate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ExitOnError)
	lf := addLoadFlags(fs)
	workers := fs.Int("workers", 16, "concurrent clients")
	cc := fs.Bool("client-close", false, "the client closes first (default: the app does)")
	pid := fs.Int("pid", 0, "proxy PID to measure CPU of")
	fs.Parse(args)
	t, w, err := lf.targetAndWindow()
	if err != nil {
		return err
	}
	ctx, stop := sigContext()
	defer stop()
	m := withCPU(*pid, &w)
	r := Rate(ctx, RateConfig{Target: t, Workers: *workers, ClientClose: *cc, Window: w})
	h := &r.Hist
	fmt.Printf("conns %d in %.1fs = %.0f conn/s; latency p50 %v p99 %v p99.9 %v max %v; errors %d %s\n",
		r.Conns, r.Seconds, float64(r.Conns)/r.Seconds, h.Quantile(0.5), h.Quantile(0.99), h.Quantile(0.999), h.Max(), r.Errors, r.ErrorSample)
	if cpu := m.seconds(); cpu >= 0 && r.Conns > 0 {
		fmt.Printf("proxy CPU %.2fs = %.1f us/conn\n", cpu, cpu/float64(r.Conns)*1e6)
	}
	return nil
}

func cmdBulk(args []string) error {
	fs := flag.NewFlagSet("bulk", flag.ExitOnError)
	lf := addLoadFlags(fs)
	streams := fs.Int("streams", 2, "streams in each direction")
	pid := fs.Int("pid", 0, "proxy PID to measure CPU of")
	fs.Parse(args)
	t, w, err := lf.targetAndWindow()
	if err != nil {
		return err
	}
	ctx, stop := sigContext()
	defer stop()
	m := withCPU(*pid, &w)
	r := Bulk(ctx, BulkConfig{Target: t, Streams: *streams, Window: w})
	gb := float64(r.UpBytes+r.DownBytes) / 1e9
	fmt.Printf("up %.2f Gbit/s, down %.2f Gbit/s; errors %d %s\n",
		float64(r.UpBytes)*8/r.Seconds/1e9, float64(r.DownBytes)*8/r.Seconds/1e9, r.Errors, r.ErrorSample)
	if cpu := m.seconds(); cpu >= 0 && gb > 0 {
		fmt.Printf("proxy CPU %.2fs = %.3f s/GB\n", cpu, cpu/gb)
	}
	return nil
}

func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	lf := addLoadFlags(fs)
	flows := fs.Int("flows", 1000, "idle flows to hold")
	pid := fs.Int("pid", 0, "proxy PID to measure (required)")
	fs.Parse(args)
	t, _, err := lf.targetAndWindow()
	if err != nil {
		return err
	}
	if *pid <= 0 {
		return fmt.Errorf("bench: -pid is required")
	}
	ctx, stop := sigContext()
	defer stop()
	d := &driver{plan: Plan{IdleFlows: *flows}}
	r := d.idle(ctx, &Instance{Target: t, Proc: &Proc{pid: *pid}})
	fmt.Println(summary(TestIdle, r))
	return nil
}
