package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/policy"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/splice"
)

// startupDiscovery bounds how long start-up waits for the first RFC 7050 answer before it
// goes on with the Well-Known Prefix (discovery keeps running and may still find a prefix).
const startupDiscovery = 5 * time.Second

// outbound is the proxy's dialing stack: resolver, NAT64 prefixes and the Happy Eyeballs dialer.
// It is built even with the proxy off, so that /readyz reports the same facts either way.
type outbound struct {
	res      *resolver.Resolver
	prefixes *nat64.Prefixes
	dial     *eyeballs.Dialer
	cancel   context.CancelFunc
	done     chan struct{}
}

// newOutbound builds the stack; pol (the egress policy, with the self rule) vets every name
// before its lookup and every address the dialer is about to connect; it learns the NAT64
// prefixes here, to judge a synthesized literal as its IPv4.
// With transparent egress on, servers replace resolv.conf's nameservers (the pod's resolv.conf
// names the sidecar itself) and the hosts file's egress addresses are skipped (a static egress
// name is dialed by its DNS addresses).
func newOutbound(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer, pol *policy.Engine,
	servers []netip.AddrPort) (*outbound, error) {
	rcfg := resolver.Config{ResolvConf: cfg.ResolvConf, HostsFile: cfg.HostsFile, Servers: servers,
		Metrics: resolver.NewMetrics(reg)}
	if cfg.EgressOn() {
		rcfg.HostsSkip = []netip.Prefix{cfg.EgressRange}
	}
	res, err := resolver.New(rcfg)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	if rc := res.ResolvConf(); rc.Missing {
		lg.Warn("resolv.conf not found: using [::1]:53 and 127.0.0.1:53", "path", cfg.ResolvConf)
	}
	o := &outbound{res: res, done: make(chan struct{})}
	o.prefixes = &nat64.Prefixes{
		Mode: cfg.NAT64Mode, Configured: cfg.NAT64Prefixes, Policy: nat64.Policy{Strict: cfg.NAT64Strict},
		Querier: res, Metrics: nat64.NewMetrics(reg),
		OnChange: func(ps []netip.Prefix, source string) {
			lg.Info("nat64 prefix in use", "prefixes", fmt.Sprint(ps), "source", source)
		},
	}
	resDelay := cfg.HEResolutionDelay
	if resDelay == 0 {
		resDelay = -1 // the flag's 0 means "do not wait"; the Dialer's zero value means its default
	}
	o.dial = &eyeballs.Dialer{
		Resolver: res, NAT64: o.prefixes, FirstFamilyCount: cfg.HEFirstFamilyCount,
		ResolutionDelay: resDelay, AttemptDelay: cfg.HEAttemptDelay,
		MaxConcurrent: cfg.HEMaxConcurrent, Timeout: cfg.DialTimeout, Policy: pol, Metrics: eyeballs.NewMetrics(reg),
	}
	pol.Desynthesize = o.prefixes.Desynthesize
	var ctx context.Context
	ctx, o.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(o.done)
		if err := o.prefixes.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			lg.Error("nat64 prefix discovery stopped", "err", err)
		}
	}()
	return o, nil
}

func (o *outbound) dialer() loop.Dialer { return o.dial }

// race is the front end's Config.Race: the dialer's race for a name, run on a splice loop.
func (o *outbound) race(host string, port uint16) splice.Racer { return o.dial.LoopRace(host, port) }

// awaitStartup waits, bounded, for the NAT64 prefix to be known, so /startupz means "the proxy
// can synthesize".
func (o *outbound) awaitStartup(lg *slog.Logger) {
	select {
	case <-o.prefixes.Ready():
	case <-time.After(startupDiscovery):
		lg.Warn("nat64 prefix discovery still pending; starting with what is known", "source", o.prefixes.Source())
	}
}

func (o *outbound) readyChecks() []admin.Check {
	return []admin.Check{{Name: "nat64_prefix", Fn: func(context.Context) error {
		select {
		case <-o.prefixes.Ready():
			return nil
		default:
			return errors.New("nat64 prefix discovery pending")
		}
	}}}
}

func (o *outbound) info() map[string]any {
	ps := o.prefixes.Current()
	strs := make([]string, len(ps))
	for i, p := range ps {
		strs[i] = p.String()
	}
	return map[string]any{"nat64_prefixes": strs, "nat64_source": o.prefixes.Source()}
}

func (o *outbound) close() {
	o.cancel()
	<-o.done
	o.res.Close()
}
