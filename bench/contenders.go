package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Families of contenders: how the client reaches the app.
const (
	FamilyDirect  = "direct"
	FamilyInbound = "inbound"
	// FamilySOCKS asks a SOCKS5 proxy for the app's IPv4 literal.
	FamilySOCKS = "socks5"
	// FamilySOCKSHosts asks it for hostsName, which the proxy finds in a
	// hosts file.
	FamilySOCKSHosts = "socks5-hosts"
	// FamilySOCKSDNS asks it for benchName, which only the bench DNS
	// server answers.
	FamilySOCKSDNS = "socks5-dns"
	// FamilyHTTP asks an HTTP CONNECT proxy for the app's IPv4 literal.
	FamilyHTTP = "http"
	// FamilyHTTPHosts asks it for hostsName.
	FamilyHTTPHosts = "http-hosts"
	// FamilyEgress is transparent egress: no proxy protocol at all, the
	// client connects to egressAddr on the app's port, which the sidecar's
	// hosts file gives to benchName (a static egress name); the sidecar
	// resolves benchName through the bench DNS server and relays.
	FamilyEgress = "egress"
)

// egressAddr is the egress address of the egress family (--egress-range's
// default is 127.100.0.0/16).
const egressAddr = "127.100.0.1"

// hostsName is the name of the hosts-file tests: every hosts file has it,
// so the peers resolve it through the system's /etc/hosts as they are. The
// sidecar's hosts file lists ::1 first, then 127.0.0.1, as Debian's
// /etc/hosts does; bench/run.sh gives the peers the same view.
const hostsName = "localhost"

// route is how a client of a proxy family asks for the app.
type route struct {
	http bool   // HTTP CONNECT, else SOCKS5
	name string // the host name asked for; empty: the app's IPv4 literal
	// connOnly runs the connection tests only (rate, rate32, latency): past
	// its handshake the flow is the relay the literal family's bulk, idle
	// and client-close tests already measure.
	connOnly bool
	// dns marks the family whose name only the bench DNS server knows.
	dns bool
	// egress marks the transparent-egress family: no proxy, the sidecar
	// only (no peer does this without privileges).
	egress bool
	title  string
}

var routes = map[string]route{
	FamilyInbound:    {title: "Inbound (IPv6 -> 127.0.0.1)"},
	FamilySOCKS:      {title: "SOCKS5, IPv4 literal"},
	FamilySOCKSHosts: {name: hostsName, connOnly: true, title: "SOCKS5, host name from the hosts file (" + hostsName + ")"},
	FamilySOCKSDNS:   {name: benchName, connOnly: true, dns: true, title: fmt.Sprintf("SOCKS5, host name from DNS (%s, TTL %d s)", benchName, int(dnsTTL.Seconds()))},
	FamilyHTTP:       {http: true, connOnly: true, title: "HTTP CONNECT, IPv4 literal"},
	FamilyHTTPHosts:  {http: true, name: hostsName, connOnly: true, title: "HTTP CONNECT, host name from the hosts file (" + hostsName + ")"},
	FamilyEgress: {name: benchName, connOnly: true, egress: true,
		title: fmt.Sprintf("Transparent egress, no proxy: the client connects to %s, the sidecar relays to %s (from DNS, TTL %d s)", egressAddr, benchName, int(dnsTTL.Seconds()))},
}

// families lists the proxy families in report order.
var families = []string{FamilyInbound, FamilySOCKS, FamilySOCKSHosts, FamilySOCKSDNS, FamilyHTTP, FamilyHTTPHosts, FamilyEgress}

// connOnly reports whether a family runs the connection tests only.
func connOnly(fam string) bool { return routes[fam].connOnly }

// Contender is one way of reaching the app: directly, through the sidecar,
// or through a peer proxy.
type Contender struct {
	Name   string
	Family string
	// Peer marks third-party proxies (the "best peer" ratios use them).
	Peer bool
	// Sidecar marks the product (targets apply to it).
	Sidecar bool
	// Bin is the executable; empty for direct.
	Bin string
	// NoIdle, if set, says why the idle test is skipped for this contender.
	NoIdle string
	// SystemDNS marks a peer that resolves names through the system's
	// resolv.conf: in the DNS family it runs only where that reaches the
	// bench DNS server.
	SystemDNS bool
	start     func(ctx context.Context, e *runEnv, c *Contender) (*Instance, error)
}

// Instance is a running contender.
type Instance struct {
	Target Target
	Proc   *Proc  // nil for direct
	Admin  string // sidecar admin base URL
}

// runEnv is what starting a contender needs.
type runEnv struct {
	procs       *Procs
	app         string // the app's 127.0.0.1:port (it listens on [::1] at the same port too)
	dns         string // the bench DNS server's address (UDP)
	systemDNS   bool   // the system resolver answers benchName (bench/run.sh arranges it)
	self        string // this executable, for the peers it plays itself
	dir         string // scratch directory for config files
	sidecar     string
	sidecarArgs []string
	maxFlows    int
	pprof       bool // start the sidecar with --pprof
}

// peer is a third-party proxy of the SOCKS5 or HTTP families.
type peer struct {
	name, bin string
	http      bool
	noIdle    string
	start     func(ctx context.Context, e *runEnv, c *Contender) (*Instance, error)
}

// engineRelay names the sidecar run with the splice engine and its proxy
// port's handshakes on the relay loops (--proxy-handshakes relay) instead
// of gnet's: the measured cost of the design card's choice, side by side.
const engineRelay = "relay"

// contenders returns every contender, in report order. Peers whose binary
// is missing are returned with an empty Bin and skipped by the driver. The
// sidecar runs with both engines in the inbound and literal SOCKS5 families,
// and with nameEngines in the others.
func contenders(sidecar, self string, nameEngines []string) []*Contender {
	cs := []*Contender{{Name: "direct", Family: FamilyDirect, NoIdle: "no proxy", start: startDirect}}
	sidecars := func(fam string, engines []string) {
		for _, eng := range engines {
			cs = append(cs, &Contender{
				Name: "sidecar-" + eng + "-" + fam, Family: fam, Sidecar: true,
				Bin: sidecar, start: startSidecar(eng),
			})
		}
	}
	sidecars(FamilyInbound, []string{"splice", "goroutine"})
	cs = append(cs,
		&Contender{Name: "haproxy", Family: FamilyInbound, Peer: true, Bin: lookBin("haproxy"), start: startHAProxy},
		&Contender{Name: "6tunnel", Family: FamilyInbound, Peer: true, Bin: lookBin("6tunnel"),
			NoIdle: "forks a process per connection", start: start6tunnel},
		&Contender{Name: "socat", Family: FamilyInbound, Peer: true, Bin: lookBin("socat"),
			NoIdle: "forks a process per connection", start: startSocat},
	)
	peers := []peer{
		{name: "danted", bin: lookBin("danted"), noIdle: "pre-forked process pool", start: startDanted},
		{name: "microsocks", bin: lookBin("microsocks"), start: startMicrosocks},
		{name: "go-socks5-min", bin: self, start: startSOCKS5Min},
		{name: "tinyproxy", bin: lookBin("tinyproxy"), http: true, start: startTinyproxy},
	}
	for _, fam := range families[1:] {
		r := routes[fam]
		if r.egress { // no handshake to run elsewhere, and no peer to compare
			sidecars(fam, nameEngines)
			continue
		}
		engines := nameEngines
		if fam == FamilySOCKS {
			engines = []string{"splice", "goroutine"}
		}
		sidecars(fam, append(engines, engineRelay))
		for _, p := range peers {
			if p.http != r.http {
				continue
			}
			name := p.name
			if r.name != "" {
				name += "-" + fam[strings.IndexByte(fam, '-')+1:]
			}
			cs = append(cs, &Contender{Name: name, Family: fam, Peer: true, Bin: p.bin,
				NoIdle: p.noIdle, SystemDNS: r.dns, start: p.start})
		}
	}
	return cs
}

// lookBin finds a peer's executable in PATH or the sbin directories.
func lookBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func startDirect(_ context.Context, e *runEnv, _ *Contender) (*Instance, error) {
	return &Instance{Target: Target{Addr: e.app}}, nil
}

// listenPair picks the port a contender listens on: [::1]:P for inbound,
// 127.0.0.1:P for the proxies.
func listenPair(fam string) (host string, port int, err error) {
	if fam != FamilyInbound {
		port, err = freePort("tcp4", "127.0.0.1")
		return "127.0.0.1", port, err
	}
	port, err = freePort("tcp6", "::")
	return "::1", port, err
}

// targetFor is the client's way to a contender listening on host:port:
// inbound connects to it, a proxy family asks it for the app by its route.
func targetFor(fam, host string, port int, app string) Target {
	t := Target{Addr: net.JoinHostPort(host, strconv.Itoa(port))}
	if fam == FamilyInbound {
		return t
	}
	r := routes[fam]
	if r.egress { // the app's port at the egress address: a plain connect
		_, appPort, _ := net.SplitHostPort(app)
		return Target{Addr: net.JoinHostPort(egressAddr, appPort)}
	}
	t.Dest, t.HTTP = app, r.http
	if r.name != "" {
		_, appPort, _ := net.SplitHostPort(app)
		t.Dest = net.JoinHostPort(r.name, appPort)
	}
	return t
}

// sidecarHosts is the sidecar's hosts file outside the DNS family: the
// hosts name on both loopback addresses, ::1 first.
const sidecarHosts = "::1 " + hostsName + "\n127.0.0.1 " + hostsName + "\n"

// sidecarFiles writes the sidecar's resolv.conf and hosts file for a
// family. In the DNS family the hosts file is empty and resolv.conf names
// the bench DNS server (address:port, which the sidecar's parser takes), so
// every name goes through the resolver and its cache.
func sidecarFiles(e *runEnv, fam string) (resolv, hosts string, err error) {
	rc, hf := "nameserver ::1\n", sidecarHosts
	switch r := routes[fam]; {
	case r.dns:
		rc, hf = "nameserver "+e.dns+"\n", ""
	case r.egress: // a static egress name; the sidecar dials it by its DNS addresses
		rc, hf = "nameserver "+e.dns+"\n", egressAddr+" "+benchName+"\n"
	}
	if resolv, err = writeConf(e, "resolv-"+fam+".conf", rc); err != nil {
		return "", "", err
	}
	hosts, err = writeConf(e, "hosts-"+fam, hf)
	return resolv, hosts, err
}

func startSidecar(engine string) func(context.Context, *runEnv, *Contender) (*Instance, error) {
	return func(ctx context.Context, e *runEnv, c *Contender) (*Instance, error) {
		inPort, err := freePort("tcp6", "::")
		if err != nil {
			return nil, err
		}
		proxyPort, err := freePort("tcp4", "127.0.0.1")
		if err != nil {
			return nil, err
		}
		adminPort, err := freePort("tcp6", "::1")
		if err != nil {
			return nil, err
		}
		resolv, hosts, err := sidecarFiles(e, c.Family)
		if err != nil {
			return nil, err
		}
		eng, handshakes := engine, "gnet"
		if engine == engineRelay {
			eng, handshakes = "splice", "relay"
		}
		argv := []string{c.Bin,
			"--inbound", fmt.Sprintf("%d=%s", inPort, e.app),
			"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", proxyPort),
			"--admin-listen", fmt.Sprintf("[::1]:%d", adminPort),
			"--engine", eng, "--proxy-handshakes", handshakes,
			"--max-conns", strconv.Itoa(e.maxFlows + 500),
			"--log-level", "warn",
			"--nat64-prefix", "none",
			"--resolv-conf", resolv,
			"--hosts-file", hosts,
		}
		if routes[c.Family].egress {
			_, appPort, _ := net.SplitHostPort(e.app)
			argv = append(argv, "--egress-ports", appPort)
		}
		if e.pprof {
			argv = append(argv, "--pprof")
		}
		argv = append(argv, e.sidecarArgs...)
		p, err := e.procs.Start(c.Name, argv, nil)
		if err != nil {
			return nil, err
		}
		admin := fmt.Sprintf("http://[::1]:%d", adminPort)
		if err := waitHTTP(ctx, p, admin+"/readyz"); err != nil {
			e.procs.Stop(p)
			return nil, err
		}
		t := targetFor(FamilyInbound, "::1", inPort, e.app)
		if c.Family != FamilyInbound {
			t = targetFor(c.Family, "127.0.0.1", proxyPort, e.app)
		}
		return &Instance{Target: t, Proc: p, Admin: admin}, nil
	}
}

// startPeer starts argv, waits until the listen port accepts, and returns
// the instance.
func startPeer(ctx context.Context, e *runEnv, c *Contender, host string, port int, argv []string) (*Instance, error) {
	p, err := e.procs.Start(c.Name, argv, nil)
	if err != nil {
		return nil, err
	}
	if err := waitDial(ctx, p, net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
		e.procs.Stop(p)
		return nil, err
	}
	return &Instance{Target: targetFor(c.Family, host, port, e.app), Proc: p}, nil
}

func writeConf(e *runEnv, name, text string) (string, error) {
	p := filepath.Join(e.dir, name)
	return p, os.WriteFile(p, []byte(text), 0o644)
}
