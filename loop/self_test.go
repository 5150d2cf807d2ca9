package loop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"github.com/nat464/nat464-sidecar/socks/sockstest"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// Exact failure replies: the method selection, then the REP; SOCKS4's CD; HTTP's response.
var (
	socks5NotAllowed    = []byte{5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}
	socks5HostUnreach   = []byte{5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0}
	socks4Rejected      = []byte{0, 91, 0, 0, 0, 0, 0, 0}
	httpGatewayTimedOut = []byte("HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nGateway Timeout\n")
	httpForbidden       = []byte("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nConnection: close\r\n\r\nForbidden\n")
)

// socks4To is a SOCKS4 CONNECT to an IPv4 literal, or SOCKS4a to a name.
func socks4To(host string, port uint16) []byte {
	req := binary.BigEndian.AppendUint16([]byte{4, 1}, port)
	if a, err := netip.ParseAddr(host); err == nil {
		b := a.As4()
		return append(append(req, b[:]...), 0)
	}
	return append(append(append(req, 0, 0, 0, 1, 0), host...), 0)
}

func httpTo(host string, port uint16) []byte {
	hp := net.JoinHostPort(host, fmt.Sprint(port))
	return []byte("CONNECT " + hp + " HTTP/1.1\r\nHost: " + hp + "\r\n\r\n")
}

// exchange sends req on a new proxy connection and returns everything until the proxy closes.
func exchange(t *testing.T, proxy string, req []byte) []byte {
	t.Helper()
	c := dialProxy(t, proxy)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply: %v (got %q)", err, got)
	}
	return got
}

// countingListener accepts and closes connections on addr, counting them.
func countingListener(t *testing.T, network, addr string) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return netip.MustParseAddrPort(ln.Addr().String()), &n
}

// outboundStack is the real dialing stack behind the proxy, with a dnstest server, counting
// connection attempts, and the proxy's log.
type outboundStack struct {
	dns      *dnstest.Server
	res      *resolver.Resolver
	dialer   *eyeballs.Dialer
	reg      *prometheus.Registry
	attempts atomic.Int32
	logs     *testnet.Output
}

func newOutboundStack(t *testing.T, rcfg resolver.Config) *outboundStack {
	t.Helper()
	s := &outboundStack{dns: dnstest.Start(t), reg: prometheus.NewRegistry(), logs: &testnet.Output{}}
	rcfg.Servers, rcfg.HostsFile, rcfg.Search = []netip.AddrPort{s.dns.Addr()}, "-", []string{}
	res, err := resolver.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	s.res = res
	s.dialer = &eyeballs.Dialer{Resolver: res, Metrics: eyeballs.NewMetrics(s.reg),
		NAT64: &nat64.Prefixes{Mode: nat64.ModeStatic, Configured: []netip.Prefix{nat64.WKP}},
		DialAttempt: func(ctx context.Context, network string, ap netip.AddrPort) (net.Conn, error) {
			s.attempts.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, ap.String())
		}}
	return s
}

func (s *outboundStack) logger() *slog.Logger { return slog.New(slog.NewTextHandler(s.logs, nil)) }

// TestProxyRefusesItself: a request whose destination is one of the sidecar's own listening
// sockets (the proxy port, an inbound wildcard, the admin port), as a literal in any protocol
// or as a name resolving to one, is answered "not allowed" without any connect; counted as
// rejects_total{self}, logged at WARN with the destination. Other destinations still work.
func TestProxyRefusesItself(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{})
			st.dns.AddA("self.test", time.Minute, "127.0.0.1")
			st.dns.AddAAAA("self6.test", time.Minute, "::1")
			app, appConns := countingListener(t, "tcp4", "127.0.0.1:0")
			admin, adminConns := countingListener(t, "tcp", "[::]:0") // dual-stack, as the admin server binds
			echo := netip.MustParseAddrPort(echoServer(t))
			own := &OwnSockets{}
			own.Add(Listener{Name: "admin", Addr: admin, DualStack: true})
			st.dialer.Approve = own.Check
			fx := start(t, eng, []string{app.String()}, func(c *Config) {
				c.Dialer, c.Own, c.Log = st.dialer, own, st.logger()
				c.Inbound[0].Listen = netip.AddrPortFrom(netip.IPv6Unspecified(), testnet.FreePort(t))
			})
			proxy := netip.MustParseAddrPort(fx.proxy).Port()
			inbound := fx.front.Listeners()[0].(*net.TCPAddr).AddrPort().Port()
			if got := len(own.Listeners()); got != 4 {
				t.Fatalf("own sockets %v, want admin, inbound and the proxy on both loopbacks", own.Listeners())
			}
			cases := []struct {
				name string
				req  []byte
				want []byte
				dest string // as logged
			}{
				{"socks5 proxy literal", sockstest.Connect5("127.0.0.1", proxy), socks5NotAllowed, fmt.Sprintf("127.0.0.1:%d", proxy)},
				{"socks5 proxy mapped literal", sockstest.Connect5("::ffff:127.0.0.1", proxy), socks5NotAllowed, ""},
				{"socks5 proxy name", sockstest.Connect5("self.test", proxy), socks5NotAllowed, fmt.Sprintf("self.test:%d", proxy)},
				{"socks5 inbound literal", sockstest.Connect5("::1", inbound), socks5NotAllowed, fmt.Sprintf("[::1]:%d", inbound)},
				{"socks5 inbound unspecified", sockstest.Connect5("::", inbound), socks5NotAllowed, ""},
				{"socks5 inbound name", sockstest.Connect5("self6.test", inbound), socks5NotAllowed, ""},
				{"socks5 admin literal", sockstest.Connect5("127.0.0.1", admin.Port()), socks5NotAllowed, ""},
				{"socks4 proxy", socks4To("127.0.0.1", proxy), socks4Rejected, ""},
				{"socks4a admin name", socks4To("self.test", admin.Port()), socks4Rejected, ""},
				{"http proxy", httpTo("127.0.0.1", proxy), httpForbidden, ""},
				{"http inbound", httpTo("::1", inbound), httpForbidden, ""},
				{"http admin name", httpTo("self6.test", admin.Port()), httpForbidden, ""},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if got := exchange(t, fx.proxy, tc.req); !bytes.Equal(got, tc.want) {
						t.Errorf("reply %q, want %q", got, tc.want)
					}
				})
			}
			waitIdleSlots(t, fx)
			if n := st.attempts.Load() + appConns.Load() + adminConns.Load(); n != 0 {
				t.Errorf("%d connects happened (attempts %d, app %d, admin %d), want none",
					n, st.attempts.Load(), appConns.Load(), adminConns.Load())
			}
			if got := gathered(t, st.reg, "nat464_eyeballs_attempts_total", ""); got != 0 {
				t.Errorf("eyeballs attempts_total = %v, want 0", got)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectSelf)); got != float64(len(cases)) {
				t.Errorf("rejects_total{self} = %v, want %d", got, len(cases))
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectPolicy)); got != 0 {
				t.Errorf("rejects_total{policy} = %v, want 0", got)
			}
			logs := st.logs.String()
			if n := strings.Count(logs, `level=WARN msg="proxy request refused: the destination is the sidecar itself"`); n != len(cases) {
				t.Errorf("%d WARN refusals logged, want %d:\n%s", n, len(cases), logs)
			}
			for _, tc := range cases {
				if tc.dest != "" && !strings.Contains(logs, "dest="+tc.dest+" ") {
					t.Errorf("no log line names dest=%s:\n%s", tc.dest, logs)
				}
			}
			// The same client still reaches everything else.
			c := dialProxy(t, fx.proxy)
			roundTripSOCKS(t, c, sockstest.Connect5(echo.Addr().String(), echo.Port()))
		})
	}
}

// waitIdleSlots waits until every flow slot is back (no connection into the proxy is held),
// failing after a generous bound.
func waitIdleSlots(t *testing.T, fx *fixture) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for fx.limit.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flow slots still taken", fx.limit.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxyDNSTimeout: with the only nameserver silent, a request for a name fails once the
// resolver's own bound (timeout × attempts, 200ms here) has passed, well before the 10s dial
// timeout; the client hears host unreachable (SOCKS5 04, SOCKS4 91, HTTP 504) and the log
// says, at WARN, which server did not answer for which name.
func TestProxyDNSTimeout(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{Timeout: 100 * time.Millisecond, Attempts: 2})
			st.dns.Set("api.test", 0, dnstest.Behavior{Drop: true})
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Log = st.dialer, st.logger() })
			for _, tc := range []struct {
				name string
				req  []byte
				want []byte
			}{
				{"socks5", sockstest.Connect5("api.test", 443), socks5HostUnreach},
				{"socks4a", socks4To("api.test", 443), socks4Rejected},
				{"http", httpTo("api.test", 443), httpGatewayTimedOut},
			} {
				t.Run(tc.name, func(t *testing.T) {
					start := time.Now()
					if got := exchange(t, fx.proxy, tc.req); !bytes.Equal(got, tc.want) {
						t.Errorf("reply %q, want %q", got, tc.want)
					}
					if el := time.Since(start); el > 5*time.Second {
						t.Errorf("answered after %v: the dial timeout (10s), not the resolver's bound, ended it", el)
					}
				})
			}
			logs := st.logs.String()
			want := fmt.Sprintf("no answer from %s (udp) for api.test. ", st.dns.Addr())
			if n := strings.Count(logs, "level=WARN"); n != 3 || strings.Count(logs, want) != 3 ||
				strings.Count(logs, "within 200ms (2 tries of 100ms)") != 3 || strings.Contains(logs, "no connection within") {
				t.Errorf("want 3 WARN lines naming %q and the tries, got:\n%s", want, logs)
			}
			if got := st.attempts.Load(); got != 0 {
				t.Errorf("%d connection attempts, want 0", got)
			}
		})
	}
}
