package loop

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/internal/testnet"
	"github.com/nat464/nat464-sidecar/policy"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/socks"
	"github.com/nat464/nat464-sidecar/socks/sockstest"
	"github.com/nat464/nat464-sidecar/splice"
)

// reset empties the budget (tests that count log lines).
func (b *logBudget) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.second, b.used, b.skipped = 0, 0, 0
}

func testEngine(t *testing.T, file string, own *OwnSockets) *policy.Engine {
	t.Helper()
	p, err := policy.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	e := &policy.Engine{Self: own.Check, Metrics: policy.NewMetrics(prometheus.NewRegistry())}
	e.Set(p)
	return e
}

// plainGet is a plain-HTTP proxy request (absolute form) for http://host:port/.
func plainGet(host string, port uint16) []byte {
	hp := net.JoinHostPort(host, fmt.Sprint(port))
	return []byte("GET http://" + hp + "/ HTTP/1.1\r\nHost: " + hp + "\r\n\r\n")
}

// TestPolicyReplies: on every pairing, a destination the egress policy refuses (a denied
// name, a name whose only address lies in a denied range, a denied literal, the cloud
// metadata address, the proxy's own port) is answered in the client's protocol: SOCKS5 02,
// SOCKS4 91, HTTP CONNECT 403 and plain HTTP 403 with the rule in the body; nothing is
// connected; rejects_total{policy} (self: {self}) counts it and an INFO line names the
// protocol, destination and rule. An allowed name still works.
func TestPolicyReplies(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{})
			st.dns.AddA("sneaky.test", time.Minute, "198.51.100.7")
			st.dns.AddA("www.evil.test", time.Minute, "127.0.0.1")
			st.dns.AddA("ok.test", time.Minute, "127.0.0.1")
			echo := netip.MustParseAddrPort(echoServer(t))
			own := &OwnSockets{}
			st.dialer.Policy = testEngine(t, "deny *.evil.test\ndeny 198.51.100.0/24 # documentation\n", own)
			st.dialer.HasIPv4Route = func() bool { return false } // as in an IPv6-only pod
			fx := start(t, eng, nil, func(c *Config) {
				c.Dialer, c.Own, c.Log = st.dialer, own, st.logger()
				if eng == "splice" {
					d := st.dialer
					c.Race = func(host string, port uint16) splice.Racer { return d.LoopRace(host, port) }
				}
			})
			proxy := netip.MustParseAddrPort(fx.proxy).Port()
			dests := []struct {
				host string
				port uint16
				rule string
			}{
				{"www.evil.test", 443, `"deny *.evil.test" (line 1)`},
				{"sneaky.test", 443, `"deny 198.51.100.0/24" (line 2)`},
				{"198.51.100.7", 80, `"deny 198.51.100.0/24" (line 2)`},
				{"169.254.169.254", 80, `"deny 169.254.0.0/16 (built-in)"`},
				{"127.0.0.1", proxy, `"deny self (built-in)"`},
			}
			for _, d := range dests {
				self := d.port == proxy
				for _, p := range []struct {
					name string
					req  []byte
					want func(t *testing.T, got []byte)
				}{
					{"socks5", sockstest.Connect5(d.host, d.port), exact(socks5NotAllowed)},
					{"socks4a", socks4To(d.host, d.port), exact(socks4Rejected)},
					{"http-connect", httpTo(d.host, d.port), forbiddenNaming(d.rule)},
					{"http-forward", plainGet(d.host, d.port), forbiddenNaming(d.rule)},
				} {
					t.Run(p.name+" "+d.host, func(t *testing.T) {
						policyLog.reset()
						p.want(t, exchange(t, fx.proxy, p.req))
						logs := st.logs.String()
						if !self && !strings.Contains(logs, `level=INFO msg="egress policy denied" protocol=`) {
							t.Errorf("no INFO line for the refusal:\n%s", logs)
						}
					})
				}
			}
			waitIdleSlots(t, fx)
			if n := st.attempts.Load(); n != 0 {
				t.Errorf("%d connection attempts, want none: a refused destination is never connected", n)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectPolicy)); got != 16 {
				t.Errorf("rejects_total{policy} = %v, want 16", got)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectSelf)); got != 4 {
				t.Errorf("rejects_total{self} = %v, want 4", got)
			}
			logs := st.logs.String()
			for _, want := range []string{
				`protocol=socks5 dest=www.evil.test:443 rule="deny *.evil.test" line=1`,
				`protocol=socks4 dest=sneaky.test:443 rule="deny 198.51.100.0/24" line=2 denied=`,
				`protocol=http dest=169.254.169.254:80 rule="deny 169.254.0.0/16 (built-in)"`,
				`protocol=http-forward dest=198.51.100.7:80 rule="deny 198.51.100.0/24" line=2`,
			} {
				if !strings.Contains(logs, want) {
					t.Errorf("no log line with %s:\n%s", want, logs)
				}
			}
			c := dialProxy(t, fx.proxy)
			roundTripSOCKS(t, c, sockstest.Connect5("ok.test", echo.Port()))
		})
	}
}

func exact(want []byte) func(t *testing.T, got []byte) {
	return func(t *testing.T, got []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("reply %q, want %q", got, want)
		}
	}
}

// forbiddenNaming expects a 403 whose body names rule.
func forbiddenNaming(rule string) func(t *testing.T, got []byte) {
	return func(t *testing.T, got []byte) {
		t.Helper()
		head, body, _ := bytes.Cut(got, []byte("\r\n\r\n"))
		if !bytes.HasPrefix(head, []byte("HTTP/1.1 403 Forbidden\r\n")) || !bytes.Contains(body, []byte("denied by rule "+rule)) {
			t.Errorf("reply %q, want 403 naming the rule %s", got, rule)
		}
	}
}

// TestPolicyEgressReset: an egress address whose name the policy denies resets the app's
// connection at once (no reply exists to say why), with nothing connected, logged with the
// rule.
func TestPolicyEgressReset(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo, conns := countingListener(t, "tcp6", "[::1]:0")
			logs := &testnet.Output{}
			var d *eyeballs.Dialer
			ef := startEgress(t, eng, []uint16{echo.Port()}, func(c *Config) {
				d = c.Dialer.(*eyeballs.Dialer)
				d.Policy = testEngine(t, "deny echo.test", nil)
				c.Log = slog.New(slog.NewTextHandler(logs, nil))
			})
			a := netip.MustParseAddr("127.100.31.9")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatal(err)
			}
			policyLog.reset()
			start := time.Now()
			c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(a, echo.Port()).String(), 5*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read on a denied egress connection: %v, want a reset", err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("the reset took %v; a denied name fails at once", el)
			}
			waitFor(t, func() bool { return ef.limit.Active() == 0 })
			if n := conns.Load(); n != 0 {
				t.Errorf("the denied name's server saw %d connections", n)
			}
			if want := `msg="egress policy denied" protocol=egress dest=echo.test:`; !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, logs)
			}
		})
	}
}

// TestPolicyAssociate: datagrams for a denied name, a name in a denied range or the metadata
// address are dropped (udp_associate_drops_total{policy}); the rest go through.
func TestPolicyAssociate(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			d := datagramStack(t)
			d.Policy = testEngine(t, "deny v6.test\ndeny ::1/128 "+fmt.Sprint(echo4.Port()), nil)
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = d })
			a := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			drops := fx.metrics.assoc.drops.WithLabelValues(DropPolicy)
			for i, dst := range []socks.Addr{
				{Host: "v6.test", Port: echo4.Port()},
				{IP: netip.IPv6Loopback(), Port: echo4.Port()},
				{IP: netip.MustParseAddr("169.254.169.254"), Port: 53},
			} {
				a.send(t, datagram(t, 0, dst, "denied"))
				waitCount(t, drops, float64(i+1))
			}
			a.echo(t, socks.Addr{Host: "v4.test", Port: echo4.Port()}, "allowed", echo4)
			a.ctl.Close()
			waitIdle(t, fx.limit)
		})
	}
}

// TestLogBudget: at most policyLogRate lines a second; the next line says how many were
// skipped.
func TestLogBudget(t *testing.T) {
	var b logBudget
	t0 := time.Unix(1000, 0)
	for i := range policyLogRate {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("line %d refused", i)
		}
	}
	for range 5 {
		if ok, _ := b.take(t0.Add(500 * time.Millisecond)); ok {
			t.Fatal("a line past the budget was let through")
		}
	}
	if ok, skipped := b.take(t0.Add(time.Second)); !ok || skipped != 5 {
		t.Errorf("next second: ok %v skipped %d, want true 5", ok, skipped)
	}
}
