package udp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// engines lists the engines this OS can run: on Linux the epoll engine ("splice", the name
// --engine uses) and the goroutine fallback; elsewhere the fallback only.
func engines() []string {
	if runtime.GOOS == "linux" {
		return []string{"splice", "goroutine"}
	}
	return []string{"goroutine"}
}

// fdCount counts this process's open fds (-1 where /proc is missing).
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // minus the directory being read
}

// checkLeaks fails the test if goroutines or fds outlive it. Register it first so its cleanup
// runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	fd0 := fdCount()
	t.Cleanup(func() {
		goleak.VerifyNone(t)
		if fd0 < 0 {
			return
		}
		deadline := time.Now().Add(3 * time.Second)
		for fdCount() != fd0 {
			if time.Now().After(deadline) {
				t.Errorf("fd leak: %d open fds, want %d", fdCount(), fd0)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// echo is a UDP echo server: every datagram goes back to its sender unchanged.
type echo struct {
	conn *net.UDPConn
	addr netip.AddrPort
	wg   sync.WaitGroup
}

func newEcho(t testing.TB, addr string) *echo {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	e := &echo{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, MaxDatagram)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				_, _ = c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echo) close() {
	e.conn.Close()
	e.wg.Wait()
}

// startRelay runs a relay for the test and closes it at the end.
func startRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	r, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// client opens a UDP socket on laddr's family connected to nothing.
func client(t testing.TB, network string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends p to dst from c and returns the reply and its source, failing after a generous
// bound.
func exchange(t testing.TB, c *net.UDPConn, dst netip.AddrPort, p []byte) ([]byte, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(p, dst); err != nil {
		t.Fatal(err)
	}
	return recv(t, c, 10*time.Second)
}

func recv(t testing.TB, c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, MaxDatagram)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// eventually polls cond until it holds or a generous bound passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pingOK(t testing.TB, r *Relay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// slots is a Limiter for tests, like loop.Limiter.
type slots struct {
	mu       sync.Mutex
	max, use int
}

func (s *slots) Acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.use >= s.max {
		return false
	}
	s.use++
	return true
}

func (s *slots) Release() {
	s.mu.Lock()
	s.use--
	s.mu.Unlock()
}

func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.use
}
