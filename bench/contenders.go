package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Families of contenders.
const (
	FamilyDirect  = "direct"
	FamilyInbound = "inbound"
	FamilySOCKS   = "socks5"
)

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
	start  func(ctx context.Context, e *runEnv, c *Contender) (*Instance, error)
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
	app         string // the app's 127.0.0.1:port
	dir         string // scratch directory for config files
	sidecar     string
	sidecarArgs []string
	maxFlows    int
	pprof       bool // start the sidecar with --pprof
}

// contenders returns every contender, in report order. Peers whose binary
// is missing are returned with an empty Bin and skipped by the driver.
func contenders(sidecar string) []*Contender {
	cs := []*Contender{{Name: "direct", Family: FamilyDirect, NoIdle: "no proxy", start: startDirect}}
	for _, fam := range []string{FamilyInbound, FamilySOCKS} {
		for _, eng := range []string{"splice", "goroutine"} {
			cs = append(cs, &Contender{
				Name: "sidecar-" + eng + "-" + fam, Family: fam, Sidecar: true,
				Bin: sidecar, start: startSidecar(eng),
			})
		}
		if fam == FamilyInbound {
			cs = append(cs,
				&Contender{Name: "haproxy", Family: fam, Peer: true, Bin: lookBin("haproxy"), start: startHAProxy},
				&Contender{Name: "6tunnel", Family: fam, Peer: true, Bin: lookBin("6tunnel"),
					NoIdle: "forks a process per connection", start: start6tunnel},
				&Contender{Name: "socat", Family: fam, Peer: true, Bin: lookBin("socat"),
					NoIdle: "forks a process per connection", start: startSocat},
			)
		} else {
			cs = append(cs,
				&Contender{Name: "danted", Family: fam, Peer: true, Bin: lookBin("danted"),
					NoIdle: "pre-forked process pool", start: startDanted},
				&Contender{Name: "microsocks", Family: fam, Peer: true, Bin: lookBin("microsocks"), start: startMicrosocks},
			)
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
// 127.0.0.1:P for SOCKS5.
func listenPair(fam string) (host string, port int, err error) {
	if fam == FamilySOCKS {
		port, err = freePort("tcp4", "127.0.0.1")
		return "127.0.0.1", port, err
	}
	port, err = freePort("tcp6", "::")
	return "::1", port, err
}

func targetFor(fam, host string, port int, app string) Target {
	t := Target{Addr: net.JoinHostPort(host, strconv.Itoa(port))}
	if fam == FamilySOCKS {
		t.Dest = app
	}
	return t
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
		resolv := filepath.Join(e.dir, "resolv.conf")
		hosts := filepath.Join(e.dir, "hosts")
		os.WriteFile(resolv, []byte("nameserver ::1\n"), 0o644)
		os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644)
		argv := []string{c.Bin,
			"--inbound", fmt.Sprintf("%d=%s", inPort, e.app),
			"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", proxyPort),
			"--admin-listen", fmt.Sprintf("[::1]:%d", adminPort),
			"--engine", engine,
			"--max-conns", strconv.Itoa(e.maxFlows + 500),
			"--log-level", "warn",
			"--nat64-prefix", "none",
			"--resolv-conf", resolv,
			"--hosts-file", hosts,
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
		if c.Family == FamilySOCKS {
			t = targetFor(FamilySOCKS, "127.0.0.1", proxyPort, e.app)
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
