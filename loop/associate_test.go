package loop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"github.com/nat464/nat464-sidecar/socks"
)

// udpEcho echoes every datagram to its sender on network at addr until the test ends.
func udpEcho(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], src)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// assocClient is a SOCKS5 client with an association: its control connection, the relay the
// proxy named, and its own UDP socket.
type assocClient struct {
	ctl   net.Conn
	relay netip.AddrPort
	udp   *net.UDPConn
}

var noAuth = []byte{5, 1, 0}

// associate greets (greeting, then creds if not nil), asks for an association declaring dst as
// the client's address, and checks the success reply; the client's socket is bound to local.
func associate(t *testing.T, proxy string, greeting, creds []byte, dst socks.Addr, local string) *assocClient {
	t.Helper()
	ctl := dialProxy(t, proxy)
	req, _ := socks.AppendRequest(nil, socks.Request{Command: socks.CmdUDPAssociate, Dest: dst})
	msg := append(append(append([]byte(nil), greeting...), creds...), req...)
	if _, err := ctl.Write(msg); err != nil {
		t.Fatal(err)
	}
	want := 2
	if creds != nil {
		want += 2
	}
	head := make([]byte, want)
	if _, err := io.ReadFull(ctl, head); err != nil {
		t.Fatalf("greeting answers: %v", err)
	}
	rep := make([]byte, 512)
	n, err := ctl.Read(rep)
	if err != nil {
		t.Fatalf("associate reply: %v", err)
	}
	code, bnd, _, err := socks.ParseReply(rep[:n])
	if err != nil || code != socks.ReplySucceeded {
		t.Fatalf("associate reply %x: %v %v", rep[:n], code, err)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	udp.SetDeadline(time.Now().Add(5 * time.Second))
	return &assocClient{ctl: ctl, relay: bnd.AddrPort(), udp: udp}
}

// datagram is a header for dst with frag, then payload.
func datagram(t *testing.T, frag byte, dst socks.Addr, payload string) []byte {
	t.Helper()
	b, err := socks.AppendUDPHeader(nil, socks.UDPHeader{Frag: frag, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, payload...)
}

func (c *assocClient) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := c.udp.WriteToUDPAddrPort(b, c.relay); err != nil {
		t.Fatal(err)
	}
}

// echo sends payload to dst through the relay and checks the echo and its header's source.
func (c *assocClient) echo(t *testing.T, dst socks.Addr, payload string, from netip.AddrPort) {
	t.Helper()
	c.send(t, datagram(t, 0, dst, payload))
	buf := make([]byte, 70000)
	n, src, err := c.udp.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("echo of %q via %s: %v", payload, dst, err)
	}
	if src != c.relay {
		t.Errorf("answer from %v, want the relay %v", src, c.relay)
	}
	h, off, err := socks.ParseUDPHeader(buf[:n])
	if err != nil || h.Frag != 0 || h.Dest.AddrPort() != from || string(buf[off:n]) != payload {
		t.Fatalf("answer header %+v (%v), payload %d bytes; want from %v and %d bytes", h, err, n-off, from, len(payload))
	}
}

func waitCount(t *testing.T, c prometheus.Collector, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(c) != want {
		if time.Now().After(deadline) {
			t.Fatalf("counter = %v, want %v", testutil.ToFloat64(c), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// datagramStack is the real planning stack: dnstest answers v6.test with [::1] only and
// v4.test with 127.0.0.1 only, NAT64 with the WKP.
func datagramStack(t *testing.T) *eyeballs.Dialer {
	dns := dnstest.Start(t)
	dns.AddAAAA("v6.test", time.Minute, "::1")
	dns.AddA("v4.test", time.Minute, "127.0.0.1")
	res, err := resolver.New(resolver.Config{Servers: []netip.AddrPort{dns.Addr()}, HostsFile: "-", Search: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return &eyeballs.Dialer{Resolver: res, NAT64: &nat64.Prefixes{Mode: nat64.ModeStatic, Configured: []netip.Prefix{nat64.WKP}}}
}

var anyClient = socks.Addr{IP: netip.IPv4Unspecified()}

// TestUDPAssociate: on every pairing, an association relays datagrams to an IPv6-only name, an
// IPv4-only name and an IPv4 literal (loopback, sent natively), and their answers come back
// behind headers naming the source; the relay is on the control connection's loopback family;
// a third party, FRAG != 0 and garbage are dropped and counted; closing the control connection
// ends the association, its sockets and its flow slot.
func TestUDPAssociate(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			d := datagramStack(t)
			echo6 := udpEcho(t, "udp6", "[::1]:0")
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = d })
			drops := fx.metrics.assoc.drops

			c := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			if !c.relay.Addr().Is4() || !c.relay.Addr().IsLoopback() || c.relay.Port() == 0 {
				t.Fatalf("relay %v, want 127.0.0.1:port for a control connection on IPv4", c.relay)
			}
			c.echo(t, socks.Addr{Host: "v6.test", Port: echo6.Port()}, "by name, IPv6 only", echo6)
			c.echo(t, socks.Addr{Host: "v4.test", Port: echo4.Port()}, "by name, IPv4 only", echo4)
			c.echo(t, socks.AddrFromAddrPort(echo4), "to a literal", echo4)
			c.echo(t, socks.AddrFromAddrPort(echo6), string(bytes.Repeat([]byte{7}, 60000)), echo6)

			third, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer third.Close()
			third.WriteToUDPAddrPort(datagram(t, 0, socks.AddrFromAddrPort(echo4), "intruder"), c.relay)
			waitCount(t, drops.WithLabelValues(DropSource), 1)
			c.send(t, datagram(t, 1, socks.AddrFromAddrPort(echo4), "fragment"))
			waitCount(t, drops.WithLabelValues(DropFragment), 1)
			c.send(t, []byte{0, 0, 0, 9})
			waitCount(t, drops.WithLabelValues(DropMalformed), 1)
			c.echo(t, socks.AddrFromAddrPort(echo4), "still works", echo4)

			// On ::1 the relay is on ::1.
			c6 := associate(t, fx.proxy6, noAuth, nil, anyClient, "[::1]:0")
			if c6.relay.Addr() != netip.IPv6Loopback() {
				t.Fatalf("relay %v, want [::1]:port for a control connection on IPv6", c6.relay)
			}
			c6.echo(t, socks.Addr{Host: "v6.test", Port: echo6.Port()}, "over ::1", echo6)
			if got := fx.limit.Active(); got != 4 {
				t.Errorf("%d flow slots taken, want 4 (two per association: it holds three fds)", got)
			}

			c.ctl.Close()
			c6.ctl.Close()
			waitIdle(t, fx.limit)
			// The relay is gone: a connected socket hears ICMP port unreachable.
			probe, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c.relay))
			if err != nil {
				t.Fatal(err)
			}
			defer probe.Close()
			probe.SetDeadline(time.Now().Add(5 * time.Second))
			probe.Write(datagram(t, 0, socks.AddrFromAddrPort(echo4), "late"))
			if _, err := probe.Read(make([]byte, 100)); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("relay after close: %v, want connection refused", err)
			}
			if got := testutil.ToFloat64(fx.metrics.flowsTotal.WithLabelValues(kindAssociate, fx.engine.Name())); got != 2 {
				t.Errorf("flows_total{udp_associate} = %v, want 2", got)
			}
			if got := testutil.ToFloat64(fx.metrics.handshakes.WithLabelValues("socks5", "succeeded")); got != 2 {
				t.Errorf("handshakes_total{succeeded} = %v, want 2", got)
			}
			waitCount(t, fx.metrics.assoc.datagrams.WithLabelValues("down"), 6)
		})
	}
}

// TestUDPAssociateDeclaredClient: a request that names the client's address and port admits
// datagrams from that socket only, not from another port of the same host.
func TestUDPAssociateDeclaredClient(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = datagramStack(t) })
			// Bind first, then declare that socket's address.
			mine, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			declared := mine.LocalAddr().(*net.UDPAddr).AddrPort()
			mine.Close() // reused below by the client's socket
			c := associate(t, fx.proxy, noAuth, nil, socks.AddrFromAddrPort(declared), declared.String())
			other := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			// The other client's socket sends to the first association's relay: dropped.
			other.udp.WriteToUDPAddrPort(datagram(t, 0, socks.AddrFromAddrPort(echo4), "not yours"), c.relay)
			waitCount(t, fx.metrics.assoc.drops.WithLabelValues(DropSource), 1)
			c.echo(t, socks.AddrFromAddrPort(echo4), "declared", echo4)
			other.echo(t, socks.AddrFromAddrPort(echo4), "learned", echo4)
			c.ctl.Close()
			other.ctl.Close()
			waitIdle(t, fx.limit)
		})
	}
}

type oneUser struct{ user, pass string }

func (u oneUser) Check(user, pass string) bool { return user == u.user && pass == u.pass }

// TestUDPAssociateAuth: with credentials configured, UDP ASSOCIATE needs them as CONNECT does.
func TestUDPAssociateAuth(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			auth := &Auth{}
			auth.Set(oneUser{"app", "secret"})
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Auth = datagramStack(t), auth })

			ctl := dialProxy(t, fx.proxy)
			req, _ := socks.AppendRequest(nil, socks.Request{Command: socks.CmdUDPAssociate, Dest: anyClient})
			ctl.Write(append(append([]byte(nil), noAuth...), req...))
			got, _ := io.ReadAll(ctl)
			if !bytes.Equal(got, []byte{5, 0xff}) {
				t.Fatalf("no-auth associate answered %x, want 05ff and close", got)
			}
			creds, _ := socks.AppendUserPass(nil, socks.UserPass{Username: "app", Password: "wrong"})
			ctl = dialProxy(t, fx.proxy)
			ctl.Write(append(append([]byte{5, 1, 2}, creds...), req...))
			got, _ = io.ReadAll(ctl)
			if !bytes.Equal(got, []byte{5, 2, 1, 1}) {
				t.Fatalf("wrong password answered %x, want 0502 0101 and close", got)
			}

			creds, _ = socks.AppendUserPass(nil, socks.UserPass{Username: "app", Password: "secret"})
			c := associate(t, fx.proxy, []byte{5, 1, 2}, creds, anyClient, "127.0.0.1:0")
			c.echo(t, socks.AddrFromAddrPort(echo4), "authenticated", echo4)
			c.ctl.Close()
			waitIdle(t, fx.limit)
		})
	}
}

// TestUDPAssociateRefusesItself: datagrams for the association's own relay, another
// association's relay, or one of the sidecar's listeners (Own, through the dialer's Approve)
// are dropped and counted as self; other destinations still work.
func TestUDPAssociateRefusesItself(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			own := &OwnSockets{}
			d := datagramStack(t)
			d.Approve = own.Check
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Own = d, own })
			proxy := netip.MustParseAddrPort(fx.proxy)
			a := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			b := associate(t, fx.proxy6, noAuth, nil, anyClient, "[::1]:0")
			drops := fx.metrics.assoc.drops.WithLabelValues(DropSelf)
			for i, dst := range []socks.Addr{
				socks.AddrFromAddrPort(a.relay),
				socks.AddrFromAddrPort(b.relay),
				{IP: netip.IPv4Unspecified(), Port: a.relay.Port()},
				socks.AddrFromAddrPort(proxy),
				{Host: "v4.test", Port: proxy.Port()},
			} {
				a.send(t, datagram(t, 0, dst, "loop"))
				waitCount(t, drops, float64(i+1))
			}
			a.echo(t, socks.AddrFromAddrPort(echo4), "elsewhere", echo4)
			waitCount(t, fx.metrics.assoc.datagrams.WithLabelValues("up"), 1) // nothing went to the sidecar itself
			a.ctl.Close()
			b.ctl.Close()
			waitIdle(t, fx.limit)
		})
	}
}

// TestUDPAssociateShutdown: a front end's Shutdown lets an association run until its context
// ends, then ends it and frees its slot.
func TestUDPAssociateShutdown(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo4 := udpEcho(t, "udp4", "127.0.0.1:0")
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = datagramStack(t) })
			c := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			c.echo(t, socks.AddrFromAddrPort(echo4), "before", echo4)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := fx.front.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want the deadline (the association outlived it)", err)
			}
			waitIdle(t, fx.limit)
			if _, err := io.ReadAll(c.ctl); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("control connection after shutdown: %v", err)
			}
		})
	}
}

// TestUDPAssociateFilters: answers come back only from addresses the client sent to (a third
// party that learned the upstream socket's address is dropped as unsolicited), and a name that
// does not resolve drops its datagrams, counted, while the association goes on.
func TestUDPAssociateFilters(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			// An echo that tells the test where the association's upstream socket sends from.
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			senders := make(chan netip.AddrPort, 1)
			go func() {
				buf := make([]byte, 2048)
				for {
					n, src, err := pc.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					select {
					case senders <- src:
					default:
					}
					pc.WriteToUDPAddrPort(buf[:n], src)
				}
			}()
			echo := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = datagramStack(t) })
			drops := fx.metrics.assoc.drops
			c := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			c.echo(t, socks.AddrFromAddrPort(echo), "first", echo)
			upstream := <-senders

			third, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer third.Close()
			third.WriteToUDPAddrPort([]byte("unsolicited"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), upstream.Port()))
			waitCount(t, drops.WithLabelValues(DropUnsolicited), 1)

			c.send(t, datagram(t, 0, socks.Addr{Host: "nx.test", Port: 9}, "nowhere"))
			waitCount(t, drops.WithLabelValues(DropResolve), 1)
			c.send(t, datagram(t, 0, socks.Addr{Host: "nx.test", Port: 9}, "nowhere again")) // the failure is remembered (TestAssociationBounds counts plans)
			waitCount(t, drops.WithLabelValues(DropResolve), 2)
			c.echo(t, socks.AddrFromAddrPort(echo), "second", echo)
			c.ctl.Close()
			waitIdle(t, fx.limit)
		})
	}
}

// countingPlanner plans every destination to 192.0.2.1 and counts the calls.
type countingPlanner struct {
	plainDialer
	mu    sync.Mutex
	calls map[string]int
	fail  bool
}

func (p *countingPlanner) Datagram(_ context.Context, host string, port uint16) (netip.AddrPort, netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[host]++
	if p.fail {
		return netip.AddrPort{}, netip.Addr{}, errors.New("no")
	}
	a := netip.MustParseAddr("192.0.2.1")
	return netip.AddrPortFrom(a, port), a, nil
}

// TestAssociationBounds: an association plans a destination once, remembers at most
// maxAssocPlans of them and maxAssocPeers peers, and keeps a failed plan for planRetry.
func TestAssociationBounds(t *testing.T) {
	p := &countingPlanner{calls: map[string]int{}}
	cfg := &Config{Dialer: p}
	a := &association{cfg: cfg, ctx: context.Background(), plans: map[socks.Addr]plan{}, peers: map[netip.AddrPort]netip.Addr{}}
	for range 10 {
		a.plan(socks.Addr{Host: "same", Port: 1})
	}
	if p.calls["same"] != 1 {
		t.Errorf("a destination was planned %d times for 10 datagrams, want 1", p.calls["same"])
	}
	for i := range 3 * maxAssocPlans {
		a.plan(socks.Addr{Host: "h" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Port: 1})
		if len(a.plans) > maxAssocPlans {
			t.Fatalf("%d plans remembered, want at most %d", len(a.plans), maxAssocPlans)
		}
	}
	for i := range 2 * maxAssocPeers {
		a.remember(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(i)), netip.Addr{})
		if len(a.peers) > maxAssocPeers {
			t.Fatalf("%d peers remembered, want at most %d", len(a.peers), maxAssocPeers)
		}
	}
	p.fail = true
	dst := socks.Addr{Host: "broken", Port: 1}
	for range 5 {
		if pl := a.plan(dst); pl.err == nil {
			t.Fatal("a failed plan came back without its error")
		}
	}
	if p.calls["broken"] != 1 {
		t.Errorf("a failing destination was planned %d times within planRetry, want 1", p.calls["broken"])
	}
	pl := a.plans[dst]
	pl.at = pl.at.Add(-planRetry)
	a.plans[dst] = pl
	a.plan(dst)
	if p.calls["broken"] != 2 {
		t.Errorf("after planRetry: %d plans, want 2", p.calls["broken"])
	}
}

// TestUDPAssociateAtMaxConns: an association takes two flow slots (it holds three fds); at the
// bound a new one is refused with REP 01 and counted, and its slot comes back; once an
// association ends, a new one gets both slots again. Every pairing.
func TestUDPAssociateAtMaxConns(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			d := datagramStack(t)
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Limit = d, NewLimiter(3) })
			first := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			ctl := dialProxy(t, fx.proxy) // the third slot: the control connection fits, its UDP sockets do not
			req, _ := socks.AppendRequest(nil, socks.Request{Command: socks.CmdUDPAssociate, Dest: anyClient})
			ctl.Write(append(append([]byte(nil), noAuth...), req...))
			ctl.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(ctl)
			if len(b) < 4 || b[3] != byte(socks.ReplyGeneralFailure) {
				t.Fatalf("association past the bound answered %x, want method selection then REP 01", b)
			}
			ctl.Close()
			if got := gathered(t, fx.reg, "nat464_loop_rejects_total", RejectMaxConns); got != 1 {
				t.Errorf("max_conns rejects = %v, want 1", got)
			}
			waitSlots(t, fx.limit, 2)
			first.ctl.Close()
			waitSlots(t, fx.limit, 0)
			again := associate(t, fx.proxy, noAuth, nil, anyClient, "127.0.0.1:0")
			if got := fx.limit.Active(); got != 2 {
				t.Errorf("%d slots for one association, want 2", got)
			}
			again.ctl.Close()
			waitSlots(t, fx.limit, 0)
		})
	}
}
