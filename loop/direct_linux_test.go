//go:build linux

package loop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/nat64"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// directDialer is a DirectDialer whose plan is set by the test: literals are sent to target
// (or refused with err); names go through DialContext, counted.
type directDialer struct {
	target netip.AddrPort
	err    error

	mu       sync.Mutex
	races    int
	outcomes []error
}

func (d *directDialer) DialContext(ctx context.Context, host string, port uint16) (net.Conn, error) {
	d.mu.Lock()
	d.races++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.target.String())
}

func (d *directDialer) Direct(host string, port uint16) (netip.AddrPort, func(error), bool, error) {
	if _, err := netip.ParseAddr(host); err != nil {
		return netip.AddrPort{}, nil, false, nil
	}
	if d.err != nil {
		return netip.AddrPort{}, nil, true, d.err
	}
	return d.target, func(err error) {
		d.mu.Lock()
		d.outcomes = append(d.outcomes, err)
		d.mu.Unlock()
	}, true, nil
}

func (d *directDialer) counts() (races int, outcomes []error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.races, append([]error(nil), d.outcomes...)
}

// TestProxyDirectConnect: with a DirectDialer, the gnet front end leaves the connect of an IP
// literal to the splice engine: the reply comes once that connect is done, the plan's target
// (not the literal) is what gets connected, early bytes follow, failures get their SOCKS reply,
// and names still go through the race.
func TestProxyDirectConnect(t *testing.T) {
	echo := netip.MustParseAddrPort(echoServer(t))
	dead := func() netip.AddrPort {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return netip.MustParseAddrPort(ln.Addr().String())
	}()
	cases := []struct {
		name      string
		host      string
		target    netip.AddrPort
		planErr   error
		reply     byte // SOCKS5 REP
		races     int
		outcome   error // what the plan's done saw; nil also when it was not called
		handshake string
		policy    float64
	}{
		{name: "literal", host: "192.0.2.7", target: echo, reply: 0, handshake: "succeeded"},
		{name: "refused", host: "192.0.2.7", target: dead, reply: 5, outcome: syscall.ECONNREFUSED, handshake: "connection refused"},
		{name: "policy", host: "192.0.2.7", planErr: fmt.Errorf("test: %w", nat64.ErrPolicy), reply: 2,
			handshake: "connection not allowed by ruleset", policy: 1},
		{name: "name", host: "echo.test", target: echo, reply: 0, races: 1, handshake: "succeeded"},
		// A connect still pending when handed over: the engine answers when it times out.
		{name: "timeout", host: "192.0.2.7", target: testnet.FullListener(t), reply: 6, outcome: syscall.ETIMEDOUT,
			handshake: "TTL expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkFDs(t)
			d := &directDialer{target: tc.target, err: tc.planErr}
			fx := start(t, "splice", nil, func(c *Config) { c.Dialer, c.DialTimeout = d, 300*time.Millisecond })
			c := dialProxy(t, fx.proxy)
			if _, err := c.Write(socks5Request(tc.host, 4242, "early|")); err != nil {
				t.Fatal(err)
			}
			rep := make([]byte, 12)
			if _, err := io.ReadFull(c, rep); err != nil {
				t.Fatalf("reply: %v", err)
			}
			if rep[1] != 0 || rep[3] != tc.reply {
				t.Fatalf("replies %x, want method 00 and REP %02x", rep, tc.reply)
			}
			if tc.reply == 0 {
				got := make([]byte, len("early|"))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != "early|" {
					t.Fatalf("echo of the early bytes: %q %v", got, err)
				}
			} else if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after a failure reply: read %d, %v; want EOF", n, err)
			}
			c.Close()
			waitIdle(t, fx.front.(*gnetFrontend).cfg.Limit)
			races, outcomes := d.counts()
			if races != tc.races {
				t.Errorf("DialContext called %d times, want %d", races, tc.races)
			}
			if tc.races == 0 && tc.planErr == nil {
				if len(outcomes) != 1 || !errors.Is(outcomes[0], tc.outcome) {
					t.Errorf("plan outcomes %v, want one: %v", outcomes, tc.outcome)
				}
			}
			if got := testutil.ToFloat64(fx.metrics.handshakes.WithLabelValues("socks5", tc.handshake)); got != 1 {
				t.Errorf("handshakes_total{socks5,%s} = %v, want 1", tc.handshake, got)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectPolicy)); got != tc.policy {
				t.Errorf("rejects_total{policy} = %v, want %v", got, tc.policy)
			}
			wantStarted := 0.0
			if tc.reply == 0 {
				wantStarted = 1
			}
			if got := testutil.ToFloat64(fx.metrics.flowsTotal.WithLabelValues("outbound", "splice")); got != wantStarted {
				t.Errorf("flows_total{outbound} = %v, want %v", got, wantStarted)
			}
			if got := testutil.ToFloat64(fx.metrics.flowsActive.WithLabelValues("outbound", "splice")); got != 0 {
				t.Errorf("flows_active{outbound} = %v after the flow ended, want 0", got)
			}
		})
	}
}

// TestProxyOnLoopsStartsNoGnet: with ProxyOnLoops the relay loops serve the proxy port and
// gnet is not started at all, while the port answers.
func TestProxyOnLoopsStartsNoGnet(t *testing.T) {
	fx := start(t, "splice-loops", nil, nil)
	g := fx.front.(*gnetFrontend)
	if aps := g.addrs(); len(aps) != 0 {
		t.Errorf("gnet serves %v with ProxyOnLoops", aps)
	}
	c := dialOK(t, "tcp", fx.proxy)
	defer c.Close()
	c.Write([]byte{5, 1, 0})
	reply := make([]byte, 2)
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 {
		t.Errorf("method reply %x, %v; want 0500 from the relay loops", reply, err)
	}
}
