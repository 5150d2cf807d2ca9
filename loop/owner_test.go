package loop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/resolver"
	"github.com/nat464/nat464-sidecar/resolver/dnstest"
	"github.com/nat464/nat464-sidecar/splice"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// ownerScenario is one way a connection can go. run drives it against the fixture and returns
// once the client has seen what it will see.
type ownerScenario struct {
	name string
	run  func(t *testing.T, fx *fixture, env *ownerEnv)
	// want are metric changes the scenario must cause, by series (see metricSnapshot).
	want map[string]float64
	// racy scenarios depend on which of two peers' packets the kernel handles first: both
	// engines must end the owner exactly once, but their counts are not compared.
	racy bool
}

type ownerEnv struct {
	echo, dead, hang netip.AddrPort
}

// TestOwnerEndsOnce drives every way a connection ends through both pairings (gnet + splice,
// goroutines) and checks, after each, that every flow slot is back, that no owner ended twice,
// and that the scenario moved the metrics it must; then that both engines counted the same
// traffic the same (engine label aside). The package's TestMain checks goroutines; checkFDs
// checks descriptors.
func TestOwnerEndsOnce(t *testing.T) {
	scenarios := ownerScenarios()
	counted := map[string]map[string]map[string]float64{} // engine -> scenario -> series delta
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			env := &ownerEnv{echo: netip.MustParseAddrPort(echoServer(t)), hang: testnet.FullListener(t)}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			env.dead = netip.MustParseAddrPort(ln.Addr().String())
			ln.Close()
			var raced atomic.Int32
			fx := start(t, eng, []string{env.echo.String(), env.dead.String()}, func(c *Config) {
				c.Limit = NewLimiter(3)
				c.DialTimeout = 300 * time.Millisecond
				c.HandshakeTimeout = time.Second
				c.MaxHandshakeBytes = 1 << 10
				d := hostsDialer(t, env.echo.Addr())
				c.Dialer = d
				if eng != "goroutine" { // as the binary runs it: names raced on the splice loop
					c.Race = func(host string, port uint16) splice.Racer {
						raced.Add(1)
						return d.LoopRace(host, port)
					}
				}
			})
			counted[eng] = map[string]map[string]float64{}
			ends := doubleEnds.Load()
			for _, sc := range scenarios {
				before := metricSnapshot(t, fx.reg)
				sc.run(t, fx, env)
				waitIdle(t, fx.limit)
				if n := doubleEnds.Load() - ends; n != 0 {
					t.Fatalf("%s: %d owners ended twice", sc.name, n)
				}
				delta := metricDelta(before, metricSnapshot(t, fx.reg))
				for series, want := range sc.want {
					if got := delta[series]; got != want {
						t.Errorf("%s: %s changed by %v, want %v (all changes: %v)", sc.name, series, got, want, delta)
					}
				}
				if !sc.racy {
					counted[eng][sc.name] = delta
				}
			}
			if eng != "goroutine" && raced.Load() == 0 {
				t.Error("no name was raced on the splice loop (Config.Race unused)")
			}
		})
	}
	for eng, byScenario := range counted {
		if eng == "splice" || counted["splice"] == nil {
			continue
		}
		for _, sc := range scenarios {
			a, b := counted["splice"][sc.name], byScenario[sc.name]
			if !sc.racy && fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("%s: the pairings counted differently:\n splice %v\n %s %v", sc.name, a, eng, b)
			}
		}
	}
}

func ownerScenarios() []ownerScenario {
	return []ownerScenario{
		{name: "inbound relayed", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c := dialOK(t, "tcp6", fx.inbound[0])
			echoOnce(t, c)
			c.Close()
		}, want: map[string]float64{"flows_total{kind=inbound}": 1, "bytes_total{direction=up,kind=inbound}": 1}},

		{name: "inbound connect refused", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c, err := net.Dial("tcp6", fx.inbound[1])
			if err != nil {
				return // reset before connect(2) returned: what a closed port would do
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("client of a dead app read %d bytes", n)
			}
		}, want: map[string]float64{"flows_total{kind=inbound}": 0, "upstream_connect_failures_total{kind=inbound}": 1}},

		{name: "proxy literal relayed", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request(env.echo.Addr().String(), env.echo.Port(), ""), 0)
			echoOnce(t, c)
		}, want: map[string]float64{"flows_total{kind=outbound}": 1, "handshakes_total{protocol=socks5,reply=succeeded}": 1}},

		{name: "proxy name relayed", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request("echo.test", env.echo.Port(), ""), 0)
			echoOnce(t, c)
		}, want: map[string]float64{"flows_total{kind=outbound}": 1}},

		{name: "proxy connect refused", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request(env.dead.Addr().String(), env.dead.Port(), ""), 5)
		}, want: map[string]float64{"flows_total{kind=outbound}": 0, "handshakes_total{protocol=socks5,reply=connection refused}": 1}},

		{name: "proxy connect timeout", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request(env.hang.Addr().String(), env.hang.Port(), ""), 6)
		}, want: map[string]float64{"flows_total{kind=outbound}": 0}},

		{name: "proxy name connect refused", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request("echo.test", env.dead.Port(), ""), 5)
		}, want: map[string]float64{"flows_total{kind=outbound}": 0, "handshakes_total{protocol=socks5,reply=connection refused}": 1}},

		{name: "proxy name connect timeout", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request("echo.test", env.hang.Port(), ""), 6)
		}, want: map[string]float64{"flows_total{kind=outbound}": 0}},

		{name: "proxy name unknown", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request("nx.test", env.echo.Port(), ""), 4)
		}, want: map[string]float64{"flows_total{kind=outbound}": 0, "handshakes_total{protocol=socks5,reply=host unreachable}": 1}},

		// The client leaves while its name is being raced: the race is cancelled (on the splice
		// loop, or by the goroutine front end's watch of the client), the owner ends once and
		// counts the request as abandoned.
		{name: "client hangs up during a name race", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			c.Write(socks5Request("echo.test", env.hang.Port(), ""))
			io.ReadFull(c, make([]byte, 2)) // the method reply: the request has been read
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, want: map[string]float64{"flows_total{kind=outbound}": 0, "handshakes_total{protocol=socks5,reply=client gone}": 1}},

		// The client resets while its connect to a literal hangs: both engines see the reset
		// before the connect times out, give the connect up and write no reply; the owner ends
		// once and counts the request as abandoned. (A reply write that fails on a reset socket
		// is splice.TestRelayReplyWriteFails.)
		{name: "client resets while its connect hangs", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			c.Write(socks5Request(env.hang.Addr().String(), env.hang.Port(), ""))
			io.ReadFull(c, make([]byte, 2)) // the method reply: the request has been read
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			time.Sleep(500 * time.Millisecond) // past DialTimeout: a connect not given up has timed out
		}, want: map[string]float64{"flows_total{kind=outbound}": 0, "handshakes_total{protocol=socks5,reply=client gone}": 1}},

		{name: "handshake refused", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			c.Write([]byte{0x00})
			io.Copy(io.Discard, c)
		}, want: map[string]float64{"rejects_total{reason=protocol}": 1}},

		{name: "client vanishes mid-handshake", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			c.Write([]byte{5, 1})
			c.Close()
		}},

		{name: "handshake too large", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			// Past the fixture's MaxHandshakeBytes (1 KiB), within the HTTP parser's own 8 KiB.
			c.Write([]byte("CONNECT echo.test:80 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 2<<10)))
			io.Copy(io.Discard, c)
		}, want: map[string]float64{"rejects_total{reason=handshake_too_large}": 1}},

		{name: "handshake timeout", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			c.Write([]byte{5})
			io.Copy(io.Discard, c)
		}, want: map[string]float64{"rejects_total{reason=handshake_timeout}": 1}},

		{name: "over max-conns", run: func(t *testing.T, fx *fixture, _ *ownerEnv) {
			var held []net.Conn
			for range fx.limit.Max() {
				c := dialOK(t, "tcp", fx.proxy)
				c.Write([]byte{5, 1, 0})
				io.ReadFull(c, make([]byte, 2)) // admitted: the method selection came back
				held = append(held, c)
			}
			over := dialOK(t, "tcp", fx.proxy)
			if n, err := over.Read(make([]byte, 1)); err == nil {
				t.Errorf("a connection past max-conns read %d bytes", n)
			}
			over.Close()
			for _, c := range held {
				c.Close()
			}
		}, want: map[string]float64{"rejects_total{reason=max_conns}": 1}},

		{name: "client resets a relayed flow", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			expectReply(t, c, socks5Request(env.echo.Addr().String(), env.echo.Port(), ""), 0)
			echoOnce(t, c)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, want: map[string]float64{"flows_total{kind=outbound}": 1}},

		{name: "client resets before its reply", racy: true, run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			c.Write(socks5Request(env.echo.Addr().String(), env.echo.Port(), "early"))
			// The method reply: the connection is admitted and its request read (it came in the
			// same segment), so waitIdle cannot pass before the owner exists.
			io.ReadFull(c, make([]byte, 2))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}},

		{name: "drain cuts a flow", run: func(t *testing.T, fx *fixture, env *ownerEnv) {
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			expectReply(t, c, socks5Request(env.echo.Addr().String(), env.echo.Port(), ""), 0)
			echoOnce(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			fx.front.Shutdown(ctx)
			fx.engine.Drain(ctx)
			io.Copy(io.Discard, c)
		}, want: map[string]float64{"flows_active{kind=outbound}": 0}},
	}
}

// hostsDialer is the real Happy Eyeballs dialer, resolving echo.test from a hosts file (and
// nothing else from a DNS server that knows no names).
func hostsDialer(t *testing.T, echo netip.Addr) *eyeballs.Dialer {
	t.Helper()
	hosts := t.TempDir() + "/hosts"
	if err := os.WriteFile(hosts, []byte(echo.String()+" echo.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := resolver.New(resolver.Config{Servers: []netip.AddrPort{dnstest.Start(t).Addr()}, HostsFile: hosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return &eyeballs.Dialer{Resolver: res}
}

func dialOK(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo: %v", err)
	}
}

// expectReply sends a SOCKS5 greeting and request and checks the reply code.
func expectReply(t *testing.T, c net.Conn, req []byte, rep byte) {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 12)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("socks5 reply: %v", err)
	}
	if !bytes.Equal(got[:2], []byte{5, 0}) || got[3] != rep {
		t.Fatalf("socks5 reply %x, want method 00 and REP %02x", got, rep)
	}
}

// metricSnapshot flattens the loop's metrics to "name{labels}" -> value, without the namespace,
// the engine label and durations (a histogram counts its samples).
func metricSnapshot(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		name := strings.TrimPrefix(mf.GetName(), "nat464_loop_")
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "engine" {
					labels = append(labels, lp.GetName()+"="+lp.GetValue())
				}
			}
			slices.Sort(labels)
			out[name+"{"+strings.Join(labels, ",")+"}"] = metricValue(mf.GetType(), m)
		}
	}
	return out
}

func metricValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// metricDelta is after - before, without the series that did not move.
func metricDelta(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// gatedDialer dials TCP once its gate is closed, so a test can act while a dial is in flight.
type gatedDialer struct{ gate chan struct{} }

func (d gatedDialer) DialContext(ctx context.Context, host string, port uint16) (net.Conn, error) {
	select {
	case <-d.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
}

// TestEarlyBytesDuringDial: bytes a client sends after its request while the dial is still in
// flight, and its half-close, reach the upstream whole once the dial completes, on every
// engine (the goroutine front end reads them while it watches the client for a reset).
func TestEarlyBytesDuringDial(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			echo := netip.MustParseAddrPort(echoServer(t))
			gate := make(chan struct{})
			fx := start(t, eng, nil, func(c *Config) { c.Dialer = gatedDialer{gate} })
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			if _, err := c.Write(socks5Request(echo.Addr().String(), echo.Port(), "")); err != nil {
				t.Fatal(err)
			}
			io.ReadFull(c, make([]byte, 2))
			want := bytes.Repeat([]byte("early bytes "), 1000)
			if _, err := c.Write(want); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			time.Sleep(100 * time.Millisecond) // the bytes and the FIN are in before the dial ends
			close(gate)
			got := make([]byte, 10)
			if _, err := io.ReadFull(c, got); err != nil || got[1] != 0 {
				t.Fatalf("socks5 reply %x, %v; want success", got, err)
			}
			back, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(back, want) {
				t.Errorf("echoed %d bytes (%v), want the %d early bytes and then EOF", len(back), err, len(want))
			}
		})
	}
}

// TestEarlyBytesPastHandshakeBound: a client that sends its request and then 200 KiB at once,
// before its reply, has every byte relayed: only the handshake itself is bounded by
// MaxHandshakeBytes, not what follows it (the relay loops read the handshake themselves with
// ProxyOnLoops, so this holds for their buffer too).
func TestEarlyBytesPastHandshakeBound(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			echo := netip.MustParseAddrPort(echoServer(t))
			fx := start(t, eng, nil, nil)
			c := dialOK(t, "tcp", fx.proxy)
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			early := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
			go func() {
				c.Write(append(socks5Request(echo.Addr().String(), echo.Port(), ""), early...))
				c.(*net.TCPConn).CloseWrite()
			}()
			reply := make([]byte, 12)
			if _, err := io.ReadFull(c, reply); err != nil || reply[3] != 0 {
				t.Fatalf("socks5 method+reply %x, %v; want success", reply, err)
			}
			back, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(back, early) {
				t.Errorf("echoed %d bytes (%v), want the %d sent after the request", len(back), err, len(early))
			}
		})
	}
}
