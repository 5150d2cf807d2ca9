package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/policy"
)

// egressPolicy is the policy engine every outbound path asks (through the dialer) and the
// reloads of --egress-policy: on SIGHUP and when the file changes (polled). A broken file keeps
// the rules in force.
type egressPolicy struct {
	path   string
	log    *slog.Logger
	engine *policy.Engine
	mu     sync.Mutex // one reload at a time, so the last file read is the one in force
	cancel context.CancelFunc
	done   chan struct{}
}

// newEgressPolicy builds the engine with its built-in rules (own: the sidecar's listeners) and
// loads the file, if any: a broken file stops start-up.
func newEgressPolicy(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer, own *loop.OwnSockets) (*egressPolicy, error) {
	ep := &egressPolicy{path: cfg.EgressPolicy, log: lg,
		engine: &policy.Engine{Self: own.Check, Metrics: policy.NewMetrics(reg)}}
	ep.engine.Set(nil)
	if ep.path == "" {
		return ep, nil
	}
	if err := ep.load("start"); err != nil {
		return nil, err
	}
	return ep, nil
}

// load reads the file and puts it in force; why says what asked.
func (ep *egressPolicy) load(why string) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	p, err := policy.Load(ep.path)
	ep.engine.Metrics.Reloaded(err)
	if err != nil {
		return err
	}
	ep.engine.Set(p)
	ep.log.Info("egress policy loaded", "file", ep.path, "rules", p.Rules(), "default", p.Default.String(), "trigger", why)
	return nil
}

// reload re-reads the file; why says what asked (SIGHUP, a change seen).
func (ep *egressPolicy) reload(why string) {
	if ep == nil || ep.path == "" {
		return
	}
	if err := ep.load(why); err != nil {
		ep.log.Error("egress policy reload failed; keeping the previous rules", "trigger", why, "err", err)
	}
}

// watch re-reads the file whenever it changes, until stop.
func (ep *egressPolicy) watch() {
	if ep.path == "" {
		return
	}
	w := policy.NewWatcher(ep.path)
	var ctx context.Context
	ctx, ep.cancel = context.WithCancel(context.Background())
	ep.done = make(chan struct{})
	go func() {
		defer close(ep.done)
		w.Run(ctx, policy.DefaultWatchInterval, func() { ep.reload("file changed") })
	}()
}

func (ep *egressPolicy) stop() {
	if ep != nil && ep.cancel != nil {
		ep.cancel()
		<-ep.done
	}
}
