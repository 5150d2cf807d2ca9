package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nat464/nat464-sidecar/internal/testnet"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

// egressEnv is a sidecar as the pod's DNS server: its upstream is a dnstest server whose
// names live on [::1] (an IPv6-only world), and the app is this test, asking A and connecting.
type egressEnv struct {
	up    *dnstest.Server
	echo  netip.AddrPort
	dir   string
	dnsAt string
}

func newEgressEnv(t *testing.T) *egressEnv {
	t.Helper()
	e := &egressEnv{up: dnstest.Start(t), echo: testnet.Echo(t, "tcp6", "[::1]:0"), dir: t.TempDir()}
	e.up.AddAAAA("v6only.example", time.Minute, "::1")
	os.WriteFile(filepath.Join(e.dir, "resolv.conf"), []byte("nameserver 127.0.0.1\nsearch ns.svc.cluster.local\noptions ndots:5\n"), 0o644)
	os.WriteFile(filepath.Join(e.dir, "hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	return e
}

func (e *egressEnv) start(t *testing.T, extra ...string) *proc {
	t.Helper()
	e.dnsAt = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"--inbound", fmt.Sprintf("%d=127.0.0.1:9", freePort(t)), "--proxy-listen", "off",
		"--resolv-conf", filepath.Join(e.dir, "resolv.conf"), "--hosts-file", filepath.Join(e.dir, "hosts"),
		"--nat64-prefix", "64:ff9b::/96", "--dns-listen", e.dnsAt, "--dns-upstream", e.up.Addr().String(),
		"--egress-ports", fmt.Sprint(e.echo.Port())}, extra...)
	return startSidecar(t, args...)
}

func (e *egressEnv) resolveA(t *testing.T, name string) netip.Addr {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, err := dns.Exchange(m, e.dnsAt)
	if err != nil {
		t.Fatalf("A %s: %v", name, err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("A %s: %s %v", name, dns.RcodeToString[r.Rcode], r.Answer)
	}
	a, _ := netip.AddrFromSlice(r.Answer[0].(*dns.A).A)
	return a.Unmap()
}

// echoVia sends 64 KiB to addr and checks that the same bytes come back.
func echoVia(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	payload := make([]byte, 64<<10)
	rand.Read(payload)
	go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo via %s: %d of %d bytes, %v", addr, len(got), len(payload), err)
	}
}

// TestTransparentEgress: an app with no proxy setting resolves a name through the sidecar,
// connects to the answer with IPv4, and reaches the IPv6-only name; the metrics and /readyz
// show it; the table survives a restart with --egress-state.
func TestTransparentEgress(t *testing.T) {
	for _, eng := range []string{"splice", "goroutine"} {
		t.Run(eng, func(t *testing.T) {
			if eng == "splice" {
				requireLinux(t)
			}
			e := newEgressEnv(t)
			state := filepath.Join(e.dir, "egress.json")
			sc := e.start(t, "--engine", eng, "--egress-state", state)
			a := e.resolveA(t, "v6only.example")
			if !netip.MustParsePrefix("127.100.0.0/16").Contains(a) {
				t.Fatalf("A answer %s is not an egress address", a)
			}
			echoVia(t, netip.AddrPortFrom(a, e.echo.Port()))
			if _, body := sc.Get("/readyz"); !strings.Contains(body, `"dns_server":"ok"`) { // (the inbound target is absent)
				t.Errorf("/readyz: %s", body)
			}
			if n := sc.metric("nat464_dns_queries_total", `answer="egress"`); n != 1 {
				t.Errorf("dns_queries_total{answer=egress} = %v", n)
			}
			if n := sc.metric("nat464_egress_addresses", ""); n != 1 {
				t.Errorf("egress_addresses = %v", n)
			}
			if n := sc.metric("nat464_egress_listeners", ""); n != 1 {
				t.Errorf("egress_listeners = %v", n)
			}
			waitUntil(t, func() bool { return sc.metric("nat464_loop_flows_total", `kind="egress"`) == 1 })
			// A port not in --egress-ports is refused.
			other := netip.AddrPortFrom(a, uint16(freePort(t)))
			if _, err := net.DialTimeout("tcp4", other.String(), time.Second); !errorsIsRefused(err) {
				t.Errorf("connect to %s (not an egress port): %v, want refused", other, err)
			}

			// A restart keeps the address: the app, which cached it, connects without asking again.
			sc.Signal(syscall.SIGTERM)
			if code := sc.Wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d after SIGTERM", code)
			}
			e.start(t, "--engine", eng, "--egress-state", state)
			echoVia(t, netip.AddrPortFrom(a, e.echo.Port()))
			if again := e.resolveA(t, "v6only.example"); again != a {
				t.Errorf("after the restart v6only.example is %s, was %s", again, a)
			}
		})
	}
}

// TestTransparentEgressStatic: a hosts-file name in the egress range is served without the DNS
// server, dialed by its DNS addresses.
func TestTransparentEgressStatic(t *testing.T) {
	e := newEgressEnv(t)
	os.WriteFile(filepath.Join(e.dir, "hosts"), []byte("127.0.0.1 localhost\n127.100.9.9 v6only.example\n"), 0o644)
	os.WriteFile(filepath.Join(e.dir, "resolv.conf"), []byte("nameserver "+e.up.Addr().String()+"\n"), 0o644)
	sc := startSidecar(t, "--inbound", fmt.Sprintf("%d=127.0.0.1:9", freePort(t)), "--proxy-listen", "off",
		"--resolv-conf", filepath.Join(e.dir, "resolv.conf"), "--hosts-file", filepath.Join(e.dir, "hosts"),
		"--nat64-prefix", "64:ff9b::/96", "--egress-ports", fmt.Sprint(e.echo.Port()))
	echoVia(t, netip.MustParseAddrPort(fmt.Sprintf("127.100.9.9:%d", e.echo.Port())))
	if n := sc.metric("nat464_egress_addresses", ""); n != 1 {
		t.Errorf("egress_addresses = %v", n)
	}
}

// TestDNSListenWithoutUpstream: a resolv.conf that names only the sidecar itself, and no
// --dns-upstream, stops start-up with exit 2 and a message that says what to set.
func TestDNSListenWithoutUpstream(t *testing.T) {
	dir := t.TempDir()
	at := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+at+"\n"), 0o644)
	sc := launch(t, "--inbound", fmt.Sprintf("%d=127.0.0.1:9", freePort(t)), "--admin-listen", "off", "--proxy-listen", "off",
		"--resolv-conf", filepath.Join(dir, "resolv.conf"), "--hosts-file", "-", "--nat64-prefix", "none", "--dns-listen", at)
	if code := sc.Wait(10 * time.Second); code != exitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, exitUsage, sc.Logs)
	}
	if !strings.Contains(sc.Logs.String(), "--dns-upstream") {
		t.Errorf("the message does not name --dns-upstream:\n%s", sc.Logs)
	}
}

func errorsIsRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "refused")
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
