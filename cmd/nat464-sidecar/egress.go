package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/egress"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/udp"
)

// transparent is transparent egress: the name/address table, the pod's DNS server (with
// --dns-listen) and, through the front end, a listener per egress address and port.
type transparent struct {
	cfg       *config.Config
	lg        *slog.Logger
	table     *egress.Table
	metrics   *egress.Metrics
	upstreams []netip.AddrPort // nil without the DNS server
	dns       *egress.Server
	dnsAddr   netip.AddrPort
	udp       *egressUDP // nil without --egress-udp-ports
}

// newTransparent loads the table (state file and hosts-file names) and works out the upstream
// resolvers; nil when transparent egress is off.
func newTransparent(cfg *config.Config, lg *slog.Logger, reg prometheus.Registerer) (*transparent, error) {
	if !cfg.EgressOn() {
		return nil, nil
	}
	t := &transparent{cfg: cfg, lg: lg}
	if cfg.DNSListen.IsValid() {
		var servers []netip.AddrPort
		if len(cfg.DNSUpstream) == 0 {
			rc, err := resolver.LoadResolvConf(cfg.ResolvConf)
			if err != nil {
				return nil, fmt.Errorf("dns-listen: reading %s for the upstream resolvers: %w", cfg.ResolvConf, err)
			}
			servers = rc.Servers
		}
		ups, err := cfg.Upstreams(servers)
		if err != nil {
			return nil, err
		}
		t.upstreams = ups
	}
	table, warnings, err := egress.NewTable(egress.TableConfig{Range: cfg.EgressRange, MaxNames: cfg.EgressMaxNames,
		StatePath: cfg.EgressState, Static: cfg.EgressStatic})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		lg.Warn("egress table: " + w)
	}
	t.table = table
	t.metrics = egress.NewMetrics(reg, table.Len)
	return t, nil
}

// hooks is what the front end reports about egress listeners.
func (t *transparent) hooks() loop.EgressHooks {
	if t == nil {
		return loop.EgressHooks{}
	}
	return loop.EgressHooks{Listeners: t.metrics.Listeners, Conflict: t.metrics.PortConflict}
}

func (t *transparent) ports() []uint16 {
	if t == nil {
		return nil
	}
	return t.cfg.EgressPorts
}

// serve opens the listeners of every name the table holds (state file, hosts file), then
// starts the DNS server, whose fresh addresses are listened on before they are answered. UDP
// relays (--egress-udp-ports) share ubase's bound, metrics and log with inbound UDP.
func (t *transparent) serve(front loop.Frontend, out *outbound, ubase udp.Config) error {
	if t == nil {
		return nil
	}
	if len(t.cfg.EgressUDPPorts) > 0 {
		t.udp = &egressUDP{ports: t.cfg.EgressUDPPorts, plan: out.dial, base: ubase, metrics: t.metrics, lg: t.lg}
	}
	listen := func(a netip.Addr, name string) {
		if err := front.ServeEgress(a, name); err != nil {
			t.lg.Error("egress listeners failed", "addr", a.String(), "name", name, "err", err)
		}
		if err := t.udp.serve(a, name); err != nil {
			t.lg.Error("egress udp listeners failed", "addr", a.String(), "name", name, "err", err)
		}
	}
	entries := t.table.Entries()
	for _, e := range entries {
		listen(e.Addr, e.Name)
	}
	if !t.cfg.DNSListen.IsValid() {
		t.lg.Info("transparent egress: hosts-file names only", "names", len(entries), "range", t.cfg.EgressRange.String(),
			"ports", fmt.Sprint(t.cfg.EgressPorts), "udp_ports", fmt.Sprint(t.cfg.EgressUDPPorts))
		return nil
	}
	srv, err := egress.NewServer(egress.ServerConfig{Table: t.table, Resolver: out.res, Upstreams: t.upstreams,
		Reach4: out.prefixes.HasPrefix, Bind: listen, Metrics: t.metrics, Log: t.lg})
	if err != nil {
		return err
	}
	addr, err := srv.Listen(t.cfg.DNSListen)
	if err != nil {
		return fmt.Errorf("dns-listen %s: %w", t.cfg.DNSListen, err)
	}
	t.dns, t.dnsAddr = srv, addr
	t.lg.Info("dns server listening", "listen", addr.String(), "upstreams", fmt.Sprint(t.upstreams),
		"egress_range", t.cfg.EgressRange.String(), "egress_ports", fmt.Sprint(t.cfg.EgressPorts),
		"egress_udp_ports", fmt.Sprint(t.cfg.EgressUDPPorts),
		"names", len(entries), "state", t.cfg.EgressState)
	return nil
}

// udpSide is the UDP relays' set, nil without --egress-udp-ports.
func (t *transparent) udpSide() *egressUDP {
	if t == nil {
		return nil
	}
	return t.udp
}

// udpRelays are the UDP relays open now.
func (t *transparent) udpRelays() udpRelays { return t.udpSide().all() }

// stopUDP opens no UDP relay from now on (the DNS server answers on while flows drain) and
// returns those to drain.
func (t *transparent) stopUDP() udpRelays { return t.udpSide().stop() }

func (t *transparent) readyChecks() []admin.Check {
	if t == nil || t.dns == nil {
		return nil
	}
	return []admin.Check{{Name: "dns_server", Fn: t.dns.Ready}}
}

func (t *transparent) info() map[string]any {
	if t == nil {
		return nil
	}
	info := map[string]any{"egress_range": t.cfg.EgressRange.String(), "egress_addresses": t.table.Len()}
	if t.dns != nil {
		info["dns_listen"] = t.dnsAddr.String()
		info["dns_upstreams"] = fmt.Sprint(t.upstreams)
	}
	return info
}

// stop ends the DNS server (after the drain: the app may resolve while its flows finish).
func (t *transparent) stop(ctx context.Context) {
	if t != nil && t.dns != nil {
		_ = t.dns.Shutdown(ctx)
	}
}
