package loop

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
	"github.com/nat464/nat464-sidecar/splice"
)

// egressFixture is a front end serving egress ports, with its hooks recorded.
type egressFixture struct {
	*fixture
	mu        sync.Mutex
	listeners int
	conflicts map[uint16]int
}

func startEgress(t *testing.T, eng string, ports []uint16, tweaks ...func(*Config)) *egressFixture {
	t.Helper()
	ef := &egressFixture{conflicts: map[uint16]int{}}
	d := hostsDialer(t, netip.IPv6Loopback()) // echo.test is ::1, as an IPv6-only name would be
	ef.fixture = start(t, eng, nil, func(c *Config) {
		c.Dialer = d
		if eng != "goroutine" {
			c.Race = func(host string, port uint16) splice.Racer { return d.LoopRace(host, port) }
		}
		c.DialTimeout = 2 * time.Second
		c.EgressPorts = ports
		c.EgressHooks = EgressHooks{
			Listeners: func(n int) { ef.mu.Lock(); ef.listeners += n; ef.mu.Unlock() },
			Conflict:  func(p uint16) { ef.mu.Lock(); ef.conflicts[p]++; ef.mu.Unlock() },
		}
		for _, tw := range tweaks {
			tw(c)
		}
	})
	return ef
}

// TestEgressRelay: a connection to an egress address reaches the name behind it, bytes intact
// both ways, and counts as an egress flow, on every pairing.
func TestEgressRelay(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := testnet.Echo(t, "tcp6", "[::1]:0")
			ef := startEgress(t, eng, []uint16{echo.Port()})
			a := netip.MustParseAddr("127.100.31.1")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatal(err)
			}
			c := dialOK(t, "tcp4", netip.AddrPortFrom(a, echo.Port()).String())
			payload := make([]byte, 256<<10)
			rand.Read(payload)
			go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite() }()
			got, err := io.ReadAll(c)
			c.Close()
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("echo through the egress address: %d of %d bytes, %v", len(got), len(payload), err)
			}
			waitFor(t, func() bool { return gathered(t, ef.reg, "nat464_loop_flows_total", "egress") == 1 })
			waitFor(t, func() bool { return ef.limit.Active() == 0 })
			ef.mu.Lock()
			if ef.listeners != 1 {
				t.Errorf("listeners reported %d, want 1", ef.listeners)
			}
			ef.mu.Unlock()

			// An address no name holds has no listener: refused, as a closed port.
			if _, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.100.31.2"), echo.Port()).String(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("an unknown egress address: %v, want connection refused", err)
			}
		})
	}
}

// TestEgressFailureResets: a name that cannot be reached resets the app's connection at once,
// and is counted as an egress connect failure.
func TestEgressFailureResets(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			port := testnet.FreePort(t)
			ef := startEgress(t, eng, []uint16{port})
			a := netip.MustParseAddr("127.100.31.3")
			if err := ef.front.ServeEgress(a, "nowhere.test"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			// The reset can come so fast that it meets the client still in connect(2).
			c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(a, port).String(), 5*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read on an egress connection whose name does not exist: %v, want a reset", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the reset took %v (the dial timeout is 2s; a name that does not exist fails at once)", d)
			}
			waitFor(t, func() bool {
				return gathered(t, ef.reg, "nat464_loop_upstream_connect_failures_total", "egress") == 1
			})
			waitFor(t, func() bool { return ef.limit.Active() == 0 })
			if n := gathered(t, ef.reg, "nat464_loop_flows_total", "egress"); n != 0 {
				t.Errorf("a failed egress connection counted as %v flows", n)
			}
		})
	}
}

// TestEgressPortConflict: a port the app holds on 0.0.0.0 is reported and skipped, the app keeps
// it (its listener still accepts), and the other ports are served.
func TestEgressPortConflict(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			app, err := net.Listen("tcp4", "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			held := uint16(app.Addr().(*net.TCPAddr).Port)
			echo := testnet.Echo(t, "tcp6", "[::1]:0")
			ef := startEgress(t, eng, []uint16{echo.Port(), held})
			a := netip.MustParseAddr("127.100.31.4")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatalf("a held port is not an error: %v", err)
			}
			ef.mu.Lock()
			if ef.conflicts[held] != 1 || ef.listeners != 1 {
				t.Errorf("conflicts %v, listeners %d; want port %d once and 1 listener", ef.conflicts, ef.listeners, held)
			}
			ef.mu.Unlock()
			// The port is the app's from now on: a second address does not try it again, so the
			// app could bind 0.0.0.0 on it again after a restart.
			b := netip.MustParseAddr("127.100.31.5")
			if err := ef.front.ServeEgress(b, "echo.test"); err != nil {
				t.Fatal(err)
			}
			ef.mu.Lock()
			if ef.conflicts[held] != 1 || ef.listeners != 2 {
				t.Errorf("conflicts %v listeners %d after a second address; want the held port left alone", ef.conflicts, ef.listeners)
			}
			ef.mu.Unlock()
			for _, addr := range []netip.Addr{a, b} {
				c := dialOK(t, "tcp4", netip.AddrPortFrom(addr, held).String())
				c.Close()
				ac, err := app.Accept()
				if err != nil {
					t.Fatalf("the app's own listener lost the connection: %v", err)
				}
				ac.Close()
			}
			app.Close()
			app2, err := net.Listen("tcp4", netip.AddrPortFrom(netip.IPv4Unspecified(), held).String())
			if err != nil {
				t.Fatalf("the app cannot bind its port again after a restart: %v", err)
			}
			app2.Close()
			echoOnce(t, dialOK(t, "tcp4", netip.AddrPortFrom(a, echo.Port()).String()))
		})
	}
}

// TestEgressAtMaxConns: egress connections share the flow slots; one past the bound is closed
// at once and counted, and a slot freed serves the next.
func TestEgressAtMaxConns(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := testnet.Echo(t, "tcp6", "[::1]:0")
			ef := startEgress(t, eng, []uint16{echo.Port()}, func(c *Config) { c.Limit = NewLimiter(2) })
			a := netip.MustParseAddr("127.100.31.8")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatal(err)
			}
			addr := netip.AddrPortFrom(a, echo.Port()).String()
			held := []net.Conn{dialOK(t, "tcp4", addr), dialOK(t, "tcp4", addr)}
			for _, c := range held {
				echoOnce(t, c)
			}
			over := dialOK(t, "tcp4", addr)
			if _, err := over.Read(make([]byte, 1)); err == nil {
				t.Error("the connection past max-conns was relayed")
			}
			over.Close()
			if n := gathered(t, ef.reg, "nat464_loop_rejects_total", RejectMaxConns); n != 1 {
				t.Errorf("rejects_total{max_conns} = %v, want 1", n)
			}
			held[0].Close()
			waitFor(t, func() bool { return ef.limit.Active() == 1 })
			next := dialOK(t, "tcp4", addr)
			echoOnce(t, next)
			next.Close()
			held[1].Close()
			waitFor(t, func() bool { return ef.limit.Active() == 0 })
		})
	}
}

// TestEgressHangUps: hundreds of egress clients at once that hang up with bytes in flight (half
// reset, half FIN, none reads its echo) leave no slot, fd or flow behind, on every pairing.
func TestEgressHangUps(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			echo := testnet.Echo(t, "tcp6", "[::1]:0")
			ef := startEgress(t, eng, []uint16{echo.Port()})
			a := netip.MustParseAddr("127.100.31.9")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatal(err)
			}
			addr := netip.AddrPortFrom(a, echo.Port()).String()
			payload := make([]byte, 256<<10)
			var wg sync.WaitGroup
			for i := range 300 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
					c.Write(payload) // the echo fills up behind an unread socket: bytes stay in flight
					if i%2 == 0 {
						c.(*net.TCPConn).SetLinger(0)
					}
					c.Close()
				}()
			}
			wg.Wait()
			waitFor(t, func() bool { return ef.limit.Active() == 0 && ef.engine.Active() == 0 })
			c := dialOK(t, "tcp4", addr) // and the port still serves
			echoOnce(t, c)
			c.Close()
		})
	}
}

// TestEgressAfterShutdown: Shutdown closes the egress listeners; ServeEgress then refuses.
func TestEgressAfterShutdown(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			port := testnet.FreePort(t)
			ef := startEgress(t, eng, []uint16{port})
			a := netip.MustParseAddr("127.100.31.6")
			if err := ef.front.ServeEgress(a, "echo.test"); err != nil {
				t.Fatal(err)
			}
			if err := ef.front.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := ef.front.ServeEgress(netip.MustParseAddr("127.100.31.7"), "echo.test"); !errors.Is(err, ErrShutdown) {
				t.Errorf("ServeEgress after Shutdown: %v", err)
			}
			if _, err := net.DialTimeout("tcp4", netip.AddrPortFrom(a, port).String(), time.Second); err == nil {
				t.Error("an egress listener still accepts after Shutdown")
			}
			ef.mu.Lock()
			if ef.listeners != 0 {
				t.Errorf("listeners open after Shutdown: %d", ef.listeners)
			}
			ef.mu.Unlock()
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
