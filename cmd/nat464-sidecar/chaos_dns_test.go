//go:build chaos

package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"github.com/nat464/nat464-sidecar/socks"
	"github.com/nat464/nat464-sidecar/socks/sockstest"
)

// chaosBound is how long one SOCKS5 request may take against a broken DNS server: the
// resolv.conf below allows one try of 1s per question (UDP, then TCP when truncated: 2s),
// Happy Eyeballs needs well under a second for what follows, and the rest is slack. The
// dial timeout (10s) is far above it, so a request that only ends there fails the bound.
const chaosBound = 5 * time.Second

// TestChaosDNS runs the real sidecar against a hostile DNS server, one process and one
// SOCKS5 request per misbehaviour, and asserts the reply code, that the reply comes within
// chaosBound, that the process stays live and that its file descriptors and goroutines go
// back to their baseline. The figures are logged: mode, reply, elapsed.
func TestChaosDNS(t *testing.T) {
	requireLinux(t)
	app := httpApp(t, "127.0.0.1:0", "hello\n")
	appPort := netip.MustParseAddrPort(app).Port()
	loop4 := netip.MustParseAddr("127.0.0.1")
	loop6 := netip.MustParseAddr("::ffff:127.0.0.1") // one candidate, the app, for both families
	tests := []struct {
		name string
		cfg  dnstest.HostileConfig
		port uint16 // if zero, the app's
		want socks.Reply
	}{
		{"answer", dnstest.HostileConfig{Mode: dnstest.Answer, TTL: 300}, 0, socks.ReplySucceeded},
		{"silent", dnstest.HostileConfig{Mode: dnstest.Silent}, 0, socks.ReplyHostUnreachable},
		{"servfail", dnstest.HostileConfig{Mode: dnstest.ServFail}, 0, socks.ReplyHostUnreachable},
		{"wrong-id", dnstest.HostileConfig{Mode: dnstest.WrongID}, 0, socks.ReplyHostUnreachable},
		{"wrong-id-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongID, ThenAnswer: true}, 0, socks.ReplySucceeded},
		{"wrong-name", dnstest.HostileConfig{Mode: dnstest.WrongName}, 0, socks.ReplyHostUnreachable},
		{"wrong-name-then-answer", dnstest.HostileConfig{Mode: dnstest.WrongName, ThenAnswer: true}, 0, socks.ReplySucceeded},
		{"wrong-type", dnstest.HostileConfig{Mode: dnstest.WrongType}, 0, socks.ReplyHostUnreachable},
		{"wrong-class", dnstest.HostileConfig{Mode: dnstest.WrongClass}, 0, socks.ReplyHostUnreachable},
		{"not-response", dnstest.HostileConfig{Mode: dnstest.NotResponse}, 0, socks.ReplyHostUnreachable},
		{"garbage", dnstest.HostileConfig{Mode: dnstest.Garbage, Seed: 1}, 0, socks.ReplyHostUnreachable},
		{"garbage-then-answer", dnstest.HostileConfig{Mode: dnstest.Garbage, Seed: 2, ThenAnswer: true}, 0, socks.ReplySucceeded},
		{"garbage-body", dnstest.HostileConfig{Mode: dnstest.GarbageBody, Seed: 3}, 0, socks.ReplyHostUnreachable},
		{"truncated", dnstest.HostileConfig{Mode: dnstest.Truncated, TTL: 60}, 0, socks.ReplySucceeded},
		{"cut-mid-record", dnstest.HostileConfig{Mode: dnstest.CutMidRecord}, 0, socks.ReplyHostUnreachable},
		{"cut-mid-record-tc", dnstest.HostileConfig{Mode: dnstest.CutMidRecordTC, TTL: 60}, 0, socks.ReplySucceeded},
		{"pointer-self", dnstest.HostileConfig{Mode: dnstest.PointerSelf}, 0, socks.ReplyHostUnreachable},
		{"pointer-pair", dnstest.HostileConfig{Mode: dnstest.PointerPair}, 0, socks.ReplyHostUnreachable},
		{"cname-loop", dnstest.HostileConfig{Mode: dnstest.CNAMELoop, TTL: 60}, 0, socks.ReplyHostUnreachable},
		{"cname-chain-8", dnstest.HostileConfig{Mode: dnstest.CNAMEChain, ChainLength: 8, TTL: 60}, 0, socks.ReplySucceeded},
		{"cname-chain-1000", dnstest.HostileConfig{Mode: dnstest.CNAMEChain, ChainLength: 1000, TTL: 60}, 0, socks.ReplyHostUnreachable},
		{"cname-endless", dnstest.HostileConfig{Mode: dnstest.CNAMEEndless, TTL: 60}, 0, socks.ReplyHostUnreachable},
		// Thousands of addresses, none listening: 32 per family are raced and refused (about
		// 0.7s). Were all 6,400 raced, 10ms apart at best, only the 10s dial timeout would
		// end the race (measured without the resolver's cap: 05 after 10.0s).
		{"huge", dnstest.HostileConfig{Mode: dnstest.Huge, TTL: 60, V4: netip.MustParseAddr("127.0.0.2"),
			V6: netip.MustParseAddr("::ffff:127.1.0.1")}, closedPort(t), socks.ReplyConnectionRefused},
		{"huge-claim", dnstest.HostileConfig{Mode: dnstest.HugeClaim, TTL: 60, V4: netip.MustParseAddr("127.0.0.2"),
			V6: netip.MustParseAddr("::ffff:127.1.0.1")}, closedPort(t), socks.ReplyConnectionRefused},
		{"ttl-0", dnstest.HostileConfig{Mode: dnstest.Answer, TTL: 0}, 0, socks.ReplySucceeded},
		{"ttl-2p31", dnstest.HostileConfig{Mode: dnstest.Answer, TTL: math.MaxInt32 + 1}, 0, socks.ReplySucceeded},
		{"ttl-2p32-1", dnstest.HostileConfig{Mode: dnstest.Answer, TTL: math.MaxUint32}, 0, socks.ReplySucceeded},
		{"tcp-silent", dnstest.HostileConfig{Mode: dnstest.TCPSilent}, 0, socks.ReplyHostUnreachable},
		{"tcp-stall", dnstest.HostileConfig{Mode: dnstest.TCPStall}, 0, socks.ReplyHostUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if !cfg.V4.IsValid() {
				cfg.V4, cfg.V6 = loop4, loop6
			}
			port := tc.port
			if port == 0 {
				port = appPort
			}
			h := dnstest.StartHostile(t, cfg)
			s, proxyAddr := startChaosSidecar(t, h.Addr())
			baseFDs, baseG := warmUp(t, s, proxyAddr, appPort)

			rep, elapsed := chaosRequest(t, proxyAddr, "chaos-"+tc.name+".example.", port)
			t.Logf("%-24s reply %02x (%v) in %v; %d udp, %d tcp questions", tc.name, byte(rep), rep,
				elapsed.Round(time.Millisecond), h.Queries("udp"), h.Queries("tcp"))
			if rep != tc.want {
				t.Errorf("reply %02x (%v), want %02x (%v)", byte(rep), rep, byte(tc.want), tc.want)
			}
			if elapsed > chaosBound {
				t.Errorf("reply after %v, bound %v", elapsed, chaosBound)
			}
			if code, body := s.Get("/livez"); code != http.StatusOK {
				t.Errorf("/livez = %d %s", code, body)
			}
			// The resolver's queries may outlive the request by LateReplyWindow (1s).
			if fds := settle(5*time.Second, baseFDs, s.fds); fds > baseFDs {
				t.Errorf("file descriptors: %d after the request, baseline %d", fds, baseFDs)
			}
			g := settle(5*time.Second, baseG+2, func() int { return int(s.metric("go_goroutines", "")) })
			if g > baseG+2 {
				t.Errorf("goroutines: %d after the request, baseline %d", g, baseG)
			}
		})
	}
}

// startChaosSidecar runs the sidecar with a resolv.conf naming only ns (one 1s try per
// question), an empty hosts file and no NAT64, and returns it with its proxy address.
func startChaosSidecar(t *testing.T, ns netip.AddrPort) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	hosts, resolv := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	conf := fmt.Sprintf("nameserver %s\noptions timeout:1 attempts:1\n", ns) // host:port, a test extension
	if err := os.WriteFile(hosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resolv, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	proxyAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := startSidecar(t, "--proxy-listen", proxyAddr, "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)),
		"--hosts-file", hosts, "--resolv-conf", resolv, "--nat64-prefix", "none")
	return s, proxyAddr
}

// chaosRequest sends one SOCKS5 CONNECT to host:port (127.0.0.1 if host is empty) and
// returns the reply and how long it took to come.
func chaosRequest(t *testing.T, proxyAddr, host string, port uint16) (socks.Reply, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*chaosBound)
	defer cancel()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	var cl sockstest.Client
	dest := socks.Addr{Host: host, Port: port}
	if host == "" {
		dest = socks.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	}
	rep, _, err := cl.SOCKS5(ctx, c, dest)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("SOCKS5 to %s after %v: %v", host, elapsed, err)
	}
	return rep, elapsed
}

// warmUp makes one proxied connection to the app by IP literal (no DNS), so that what the
// first flow allocates for good (the splice pipe pool) is in the baseline, and returns the
// baseline: open fds and goroutines once that connection is gone.
func warmUp(t *testing.T, s *proc, proxyAddr string, appPort uint16) (fds, goroutines int) {
	t.Helper()
	sockets := func() int { n, _ := s.fdKinds(); return n }
	before := sockets()
	rep, _ := chaosRequest(t, proxyAddr, "", appPort)
	if rep != socks.ReplySucceeded {
		t.Fatalf("warm-up CONNECT to 127.0.0.1:%d: reply %v", appPort, rep)
	}
	if n := settle(5*time.Second, before, sockets); n > before {
		t.Fatalf("warm-up: %d sockets open after it ended, %d before", n, before)
	}
	return s.fds(), int(s.metric("go_goroutines", ""))
}

// closedPort is a TCP port on 127.0.0.1 that refuses connections (free a moment ago).
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}
