package loop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/eyeballs"
	"github.com/nat464/nat464-sidecar/splice"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// engineNames are the two pairings the product ships: gnet + splice (Linux) and goroutines.
func engineNames(t *testing.T) []string {
	if runtime.GOOS != "linux" {
		if os.Getenv("CI") == "true" {
			t.Fatal("the gnet + splice front end needs Linux; CI=true forbids skipping it")
		}
		return []string{"goroutine"}
	}
	return []string{"splice", "goroutine"}
}

// pairings are engineNames plus, on Linux, "splice-loops": the splice engine with the proxy
// port served on its relay loops (Config.ProxyOnLoops).
func pairings(t *testing.T) []string {
	names := engineNames(t)
	if runtime.GOOS == "linux" {
		names = append(names, "splice-loops")
	}
	return names
}

type fixture struct {
	front   Frontend
	engine  splice.Engine
	metrics *Metrics
	reg     *prometheus.Registry
	limit   *Limiter
	proxy   string // the proxy's IPv4 address
	proxy6  string // and its IPv6 one: the fixture serves it on both loopbacks, as the default does
	inbound []string
}

// start runs a front end with the given engine, a proxy port and one inbound mapping per
// target. tweak may adjust the config.
func start(t *testing.T, eng string, targets []string, tweak func(*Config)) *fixture {
	t.Helper()
	e, err := splice.NewEngine(strings.TrimSuffix(eng, "-loops"), splice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{Engine: e, Limit: NewLimiter(4096), Metrics: NewMetrics(reg), HandshakeTimeout: 2 * time.Second,
		ProxyListen: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), testnet.FreePort(t)),
			netip.AddrPortFrom(netip.IPv6Loopback(), testnet.FreePort(t))}}
	for _, tg := range targets {
		cfg.Inbound = append(cfg.Inbound, config.Mapping{
			Listen: netip.AddrPortFrom(netip.IPv6Loopback(), testnet.FreePort(t)), Target: netip.MustParseAddrPort(tg)})
	}
	cfg.ProxyOnLoops = strings.HasSuffix(eng, "-loops")
	if tweak != nil {
		tweak(&cfg)
	}
	if cfg.ProxyOnLoops { // the loops connect and race themselves: they need the eyeballs dialer
		if cfg.Dialer == nil {
			cfg.Dialer = hostsDialer(t, netip.IPv4Unspecified())
		}
		if d, ok := cfg.Dialer.(*eyeballs.Dialer); ok && cfg.Race == nil {
			cfg.Race = func(host string, port uint16) splice.Racer { return d.LoopRace(host, port) }
		}
	}
	f, err := New(cfg)
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		e.Close()
		t.Fatal(err)
	}
	fx := &fixture{front: f, engine: e, metrics: cfg.Metrics, reg: reg, limit: cfg.Limit}
	if len(cfg.ProxyListen) == 2 {
		fx.proxy, fx.proxy6 = cfg.ProxyListen[0].String(), cfg.ProxyListen[1].String()
	}
	for _, m := range cfg.Inbound {
		fx.inbound = append(fx.inbound, m.Listen.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		e.Drain(ctx)
		e.Close()
	})
	return fx
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkFDs fails the test if, once it has cleaned up, the process holds more fds than before.
func checkFDs(t *testing.T) {
	if runtime.GOOS != "linux" {
		return
	}
	before := openFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for openFDs(t) > before && time.Now().Before(deadline) {
			runtime.GC() // the runtime's own splice pipe pool lets go of its pipes on GC
			time.Sleep(20 * time.Millisecond)
		}
		if n := openFDs(t); n > before {
			t.Errorf("fd leak: %d open, %d before the test", n, before)
		}
	})
}

// socks5Connect performs a no-auth SOCKS5 CONNECT to dst over c and checks the reply.
func socks5Connect(t *testing.T, c net.Conn, dst string) {
	t.Helper()
	ap := netip.MustParseAddrPort(dst)
	req := []byte{5, 1, 0, 5, 1, 0, 1}
	a4 := ap.Addr().As4()
	req = append(req, a4[:]...)
	req = binary.BigEndian.AppendUint16(req, ap.Port())
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	rep := make([]byte, 12)
	if _, err := io.ReadFull(c, rep); err != nil {
		t.Fatalf("socks5 reply: %v", err)
	}
	if !bytes.Equal(rep, []byte{5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("socks5 reply %x, want method 00 then success with BND 0.0.0.0:0", rep)
	}
}

// waitIdle waits until every flow slot is back, failing after a generous bound.
func waitIdle(t *testing.T, l *Limiter) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flow slots still taken", l.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// socks5Request is a no-auth greeting and a CONNECT to host:port (an IPv4 literal or a name),
// followed by early bytes.
func socks5Request(host string, port uint16, early string) []byte {
	req := []byte{5, 1, 0, 5, 1, 0}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		a4 := a.As4()
		req = append(append(req, 1), a4[:]...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	return append(binary.BigEndian.AppendUint16(req, port), early...)
}

// echoServer echoes on 127.0.0.1 until the test ends.
func echoServer(t *testing.T) string { return testnet.Echo(t, "tcp4", "127.0.0.1:0").String() }

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gnet's package-level worker pool (ants) lives for the whole process.
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

func TestInboundEcho(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			fx := start(t, eng, []string{echoServer(t)}, nil)
			c, err := net.Dial("tcp6", fx.inbound[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo: %q %v", buf, err)
			}
		})
	}
}

// TestMaxConnsRejects: at the flow bound a connection on either port is accepted and closed at
// once and counted, and the slot serves again once it frees: an inbound flow that ends, or a proxy
// handshake that stalls until the handshake timeout (handshakes hold slots too).
func TestMaxConnsRejects(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := echoServer(t)
			fx := start(t, eng, []string{echo}, func(c *Config) {
				c.Limit = NewLimiter(1)
				c.HandshakeTimeout = 300 * time.Millisecond
			})
			refused := func(what, addr string) {
				t.Helper()
				over, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer over.Close()
				over.SetDeadline(time.Now().Add(5 * time.Second))
				over.Write([]byte{5, 1, 0})
				if n, err := over.Read(make([]byte, 1)); err == nil {
					t.Fatalf("%s: a connection over max-conns was served (%d bytes)", what, n)
				}
			}
			served := func(what string) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					c, err := net.Dial("tcp6", fx.inbound[0])
					if err != nil {
						t.Fatal(err)
					}
					c.SetDeadline(time.Now().Add(2 * time.Second))
					c.Write([]byte("z"))
					_, err = io.ReadFull(c, make([]byte, 1))
					c.Close()
					if err == nil {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: the freed slot does not serve: %v", what, err)
					}
				}
			}
			held, err := net.Dial("tcp6", fx.inbound[0])
			if err != nil {
				t.Fatal(err)
			}
			held.SetDeadline(time.Now().Add(5 * time.Second))
			held.Write([]byte("x"))
			io.ReadFull(held, make([]byte, 1)) // the one slot holds an established flow
			refused("inbound at the bound", fx.inbound[0])
			refused("proxy at the bound", fx.proxy)
			held.Close()
			served("after the flow ended")
			waitActive := func(n int, what string) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); fx.limit.Active() != n; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%s: %d slots in use, want %d", what, fx.limit.Active(), n)
					}
				}
			}
			waitActive(0, "the served flows' slots back")
			stall, err := net.Dial("tcp", fx.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer stall.Close()
			stall.Write([]byte{5}) // a greeting cut short holds the slot until the handshake timeout
			waitActive(1, "the stalled handshake's slot")
			refused("inbound behind a stalled handshake", fx.inbound[0])
			served("after the handshake timeout")
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectMaxConns)); got < 3 {
				t.Errorf("rejects_total{max_conns} = %v, want at least 3", got)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectHandshakeTimeout)); got != 1 {
				t.Errorf("rejects_total{handshake_timeout} = %v, want 1", got)
			}
		})
	}
}

// TestProxyBadInput: each malformed handshake gets its protocol's reply (or a close), and the
// proxy serves a good client afterwards with no fd or goroutine left behind.
func TestProxyBadInput(t *testing.T) {
	garbage := make([]byte, 1024)
	rand.Read(garbage)
	garbage[0] = 0xFF
	bigHeader := append([]byte("CONNECT a.test:80 HTTP/1.1\r\nX-Big: "), bytes.Repeat([]byte("a"), 300<<10)...)
	tests := []struct {
		name  string
		send  []byte
		reply []byte // expected prefix of what comes back before the close (nil: nothing)
	}{
		{"unknown version", []byte{6, 1, 0}, nil},
		{"nmethods 0", []byte{5, 0}, []byte{5, 0xFF}},
		{"truncated greeting", []byte{5, 2, 0}, nil},
		{"truncated request", []byte{5, 1, 0, 5, 1, 0, 1, 127}, []byte{5, 0}},
		{"request wrong version", []byte{5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80}, []byte{5, 0, 5, 1}},
		{"domain length 0", []byte{5, 1, 0, 5, 1, 0, 3, 0, 0, 80}, []byte{5, 0, 5, 8}},
		{"unknown atyp", []byte{5, 1, 0, 5, 1, 0, 9, 0, 0, 80}, []byte{5, 0, 5, 8}},
		{"bind", []byte{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80}, []byte{5, 0, 5, 7}},
		{"socks4 bind", []byte{4, 2, 0, 80, 127, 0, 0, 1, 0}, []byte{0, 91}},
		{"http get in origin form", []byte("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), []byte("HTTP/1.1 400")},
		{"http get of https", []byte("GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"), []byte("HTTP/1.1 400")},
		{"http get with CL and TE", []byte("POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), []byte("HTTP/1.1 400")},
		{"http bad request line", []byte("CONNECT nohostport HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 400")},
		{"300 KB of headers", bigHeader, []byte("HTTP/1.1 4")},
		{"garbage", garbage, nil},
	}
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := echoServer(t)
			fx := start(t, eng, nil, nil)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c, err := net.Dial("tcp", fx.proxy)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					go func() {
						c.Write(tt.send)
						c.(*net.TCPConn).CloseWrite()
					}()
					got, err := io.ReadAll(c)
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatalf("not closed within 5s (got %x)", got)
					}
					if tt.reply != nil && err == nil && !bytes.HasPrefix(got, tt.reply) {
						t.Errorf("reply %q, want prefix %q", got, tt.reply)
					}
					if tt.reply == nil && len(got) > 0 {
						t.Errorf("reply %x, want none", got)
					}
				})
			}
			// Still healthy.
			c, err := net.Dial("tcp", fx.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			socks5Connect(t, c, echo)
			c.Write([]byte("ok"))
			if b := make([]byte, 2); func() bool { _, err := io.ReadFull(c, b); return err != nil || string(b) != "ok" }() {
				t.Error("proxy unhealthy after bad input")
			}
		})
	}
}

// A client that connects and sends nothing is closed at the handshake timeout.
func TestProxyHandshakeTimeout(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			fx := start(t, eng, nil, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
			c, err := net.Dial("tcp", fx.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			startAt := time.Now()
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("silent client got data")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("silent client not closed within 5s")
			}
			if el := time.Since(startAt); el < 250*time.Millisecond {
				t.Errorf("closed after %v, before the 300ms handshake timeout", el)
			}
			if got := testutil.ToFloat64(fx.metrics.rejects.WithLabelValues(RejectHandshakeTimeout)); got != 1 {
				t.Errorf("rejects_total{handshake_timeout} = %v, want 1", got)
			}
		})
	}
}

// 1,000 concurrent SOCKS5 sessions, each sending 64 KiB of random bytes to an echo server and
// checking the SHA-256 of what returns.
func TestProxyConcurrentSessions(t *testing.T) {
	const sessions, size = 1000, 64 << 10
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := echoServer(t)
			fx := start(t, eng, nil, nil)
			var wg sync.WaitGroup
			errs := make(chan error, sessions)
			for i := range sessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- session1(fx.proxy, echo, size)
				}()
				if i%100 == 99 {
					time.Sleep(10 * time.Millisecond) // stay inside the listen backlog
				}
			}
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if err != nil {
					if failed == 0 {
						t.Error(err)
					}
					failed++
				}
			}
			if failed > 0 {
				t.Fatalf("%d of %d sessions failed", failed, sessions)
			}
		})
	}
}

func session1(proxyAddr, dst string, size int) error {
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	ap := netip.MustParseAddrPort(dst)
	a4 := ap.Addr().As4()
	req := append([]byte{5, 1, 0, 5, 1, 0, 1}, a4[:]...)
	req = binary.BigEndian.AppendUint16(req, ap.Port())
	if _, err := c.Write(req); err != nil {
		return err
	}
	rep := make([]byte, 12)
	if _, err := io.ReadFull(c, rep); err != nil || rep[3] != 0 {
		return fmt.Errorf("handshake: %x %v", rep, err)
	}
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echoed bytes differ")
	}
	return nil
}
