package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nat464/nat464-sidecar/admin"
	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/forward"
	"github.com/nat464/nat464-sidecar/loop"
	"github.com/nat464/nat464-sidecar/proxyproto"
	"github.com/nat464/nat464-sidecar/splice"
)

// sidecar is the wired process: engine, front end, outbound stack and admin server.
type sidecar struct {
	cfg    *config.Config
	log    *slog.Logger
	engine splice.Engine
	front  loop.Frontend
	admin  *admin.Server
	out    *outbound
	egress *transparent // nil when transparent egress is off
	udp    udpRelays    // the --inbound-udp relays
	srcs   sourceTables // the --inbound-source tables
	auth   *loop.Auth
	policy *egressPolicy
	plan   loopPlan
	procs  int // GOMAXPROCS in force
}

func start(cfg *config.Config, lg *slog.Logger) (_ *sidecar, err error) {
	sc := &sidecar{cfg: cfg, log: lg, auth: &loop.Auth{}}
	defer func() {
		if err != nil {
			sc.stopBackground()
			sc.udp.close()
			sc.egress.udpRelays().close()
			if sc.engine != nil {
				_ = sc.engine.Close()
			}
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "nat464", Name: "build_info",
		Help: "Version and relay engine of the running sidecar (always 1)."}, []string{"version", "engine"})
	reg.MustRegister(buildInfo)

	if err := sc.loadAuth(); err != nil {
		return nil, err
	}
	// The loop counts are fixed before GOMAXPROCS is raised for them.
	engine := string(cfg.ResolvedEngine())
	plan := planLoops(runtimeProcs, engine, len(cfg.ProxyListen) > 0)
	sc.engine, err = splice.NewEngine(engine, splice.Options{Loops: plan.splice,
		IdleTimeout: cfg.IdleTimeout, MaxPipes: splice.DefaultMaxPipes, Metrics: splice.NewMetrics(reg)})
	if err != nil {
		return nil, err
	}
	buildInfo.WithLabelValues(version, sc.engine.Name()).Set(1)
	// The proxy refuses to dial any of the sidecar's own listeners (the egress policy's
	// built-in self rule): the front end adds its own when bound, the admin address follows
	// below.
	own := &loop.OwnSockets{}
	if sc.policy, err = newEgressPolicy(cfg, lg, reg, own); err != nil {
		return nil, err
	}
	if sc.egress, err = newTransparent(cfg, lg, reg); err != nil {
		return nil, err
	}
	var servers []netip.AddrPort
	if sc.egress != nil {
		servers = sc.egress.upstreams
	}
	if sc.out, err = newOutbound(cfg, lg, reg, sc.policy.engine, servers); err != nil {
		return nil, err
	}
	lm := loop.NewMetrics(reg)
	// TCP flows and UDP sessions share the --max-conns slots.
	flows := loop.NewLimiter(cfg.MaxConns)
	sc.srcs = newSourceTables(cfg, lg, reg)
	sc.front, err = loop.New(loop.Config{
		Sources: sc.srcs.byRange,
		Inbound: cfg.Inbound, ProxyListen: cfg.ProxyListen, ProxyListenLenient: cfg.ProxyListenDefault,
		HandshakeTimeout: cfg.HandshakeTimeout,
		DialTimeout:      cfg.DialTimeout, Limit: flows, Engine: sc.engine, EventLoops: plan.gnet,
		Dialer: sc.out.dialer(), Race: sc.out.race, Own: own, Auth: sc.auth, Log: lg, Metrics: lm,
		IdleTimeout: cfg.IdleTimeout, ForwardMetrics: forward.NewMetrics(reg),
		ProxyOnLoops: cfg.ProxyHandshakes == config.ProxyHandshakesRelay,
		EgressPorts:  sc.egress.ports(), EgressHooks: sc.egress.hooks(),
	})
	if err != nil {
		return nil, err
	}
	if err := sc.front.Start(); err != nil {
		return nil, err
	}
	ubase := udpBase(cfg, lg, reg, flows)
	if err := sc.egress.serve(sc.front, sc.out, ubase); err != nil {
		_ = sc.front.Shutdown(context.Background())
		return nil, err
	}
	if sc.udp, err = startUDP(cfg, ubase); err != nil {
		_ = sc.front.Shutdown(context.Background())
		return nil, err
	}
	sc.procs = raiseProcs(plan, os.Getenv)
	sc.plan = plan
	sc.admin = &admin.Server{Addr: cfg.AdminListen, Gatherer: reg, Pprof: cfg.Pprof, Info: sc.info,
		Live: []admin.Check{{Name: "event_loops", Fn: loop.Alive(sc.front)}}, Ready: sc.readyChecks(),
		Rejects: admin.NewRejects(reg), Clients: sc.srcs.handler(),
		Probes: admin.NewProbeMetrics(reg)}
	if cfg.AdminListen != "off" {
		addr, err := sc.admin.Start()
		if err != nil {
			_ = sc.front.Shutdown(context.Background())
			return nil, fmt.Errorf("admin: cannot listen on %s: %w", cfg.AdminListen, err)
		}
		own.Add(adminListener(addr))
		lg.Info("admin listening", "addr", addr.String(), "pprof", cfg.Pprof)
	}
	sc.logStart()
	sc.policy.watch()
	sc.out.awaitStartup(lg)
	sc.admin.SetStarted()
	return sc, nil
}

// adminListener describes the admin server's socket: net.Listen("tcp") binds a wildcard
// without IPV6_V6ONLY, so [::]:9464 also takes IPv4.
func adminListener(a net.Addr) loop.Listener {
	ap := a.(*net.TCPAddr).AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return loop.Listener{Name: "admin", Addr: ap, DualStack: ap.Addr() == netip.IPv6Unspecified()}
}

func (sc *sidecar) logStart() {
	cfg, lg := sc.cfg, sc.log
	ls := sc.front.Listeners()
	for i, m := range cfg.Inbound {
		attrs := []any{"listen", ls[i].String(), "target", m.Target.String()}
		if m.ProxyProtocol != 0 {
			attrs = append(attrs, "proxy_protocol", m.ProxyProtocol.String())
		}
		if m.Source.IsValid() {
			attrs = append(attrs, "source_range", m.Source.String())
		}
		lg.Info("inbound listening", attrs...)
	}
	sc.srcs.logStart(lg)
	sc.udp.logStart(lg)
	for _, a := range ls[len(cfg.Inbound):] {
		lg.Info("proxy listening", "listen", a.String(), "protocols", "socks5,socks4a,http-connect,http-forward",
			"auth", cfg.ProxyAuthFile != "", "handshakes", cfg.ProxyHandshakes)
	}
	how := "flag"
	if cfg.MaxConnsDerived {
		how = "derived from RLIMIT_NOFILE"
	}
	lg.Info("started", "version", version, "engine", sc.engine.Name(), "max_conns", cfg.MaxConns,
		"max_conns_from", how, "udp_max_sessions", cfg.UDPMaxSessions, "udp_idle_timeout", cfg.UDPIdleTimeout.String(), "idle_timeout", cfg.IdleTimeout.String(), "drain_timeout", cfg.DrainTimeout.String(),
		"cpus", sc.plan.cpus, "relay_loops", sc.plan.splice, "proxy_loops", sc.plan.gnet, "gomaxprocs", sc.procs)
}

// readyChecks: every inbound target accepts TCP, the front end and the UDP relays respond, and
// the outbound stack (resolver and NAT64 prefix) is ready.
func (sc *sidecar) readyChecks() []admin.Check {
	checks := []admin.Check{{Name: "listeners", Fn: sc.front.Ping}}
	for _, m := range sc.cfg.Inbound {
		// An app that reads PROXY protocol gets the header of a health check (v2 LOCAL).
		hello := proxyproto.AppendLocal(nil, m.ProxyProtocol)
		checks = append(checks, admin.TCPCheckHello("inbound "+m.String(), m.Target.String(), hello))
	}
	checks = append(checks, udpReadyCheck(sc.udp, sc.egress.udpSide())...)
	checks = append(checks, sc.egress.readyChecks()...)
	return append(checks, sc.out.readyChecks()...)
}

func (sc *sidecar) info() map[string]any {
	info := map[string]any{"version": version, "engine": sc.engine.Name()}
	for k, v := range sc.out.info() {
		info[k] = v
	}
	for k, v := range sc.egress.info() {
		info[k] = v
	}
	return info
}

func (sc *sidecar) stopBackground() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sc.egress.stop(ctx)
	sc.policy.stop()
	if sc.out != nil {
		sc.out.close()
	}
}

// loadAuth (re)reads --proxy-auth-file.
func (sc *sidecar) loadAuth() error {
	if sc.cfg.ProxyAuthFile == "" {
		return nil
	}
	creds, err := config.LoadAuthFile(sc.cfg.ProxyAuthFile)
	if err != nil {
		return err
	}
	sc.auth.Set(creds)
	return nil
}

// reload handles SIGHUP: the auth file and the egress policy are read again; a bad file keeps
// what was in force.
func (sc *sidecar) reload() {
	sc.policy.reload("SIGHUP")
	if err := sc.loadAuth(); err != nil {
		sc.log.Error("reload failed; keeping the previous credentials", "err", err)
		return
	}
	sc.log.Info("reloaded", "proxy_auth_file", sc.cfg.ProxyAuthFile)
}
