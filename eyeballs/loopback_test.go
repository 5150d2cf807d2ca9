package eyeballs

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// openFDs counts this process's open file descriptors (Linux only; -1 elsewhere).
func openFDs(t *testing.T) int {
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// listen skips when addr cannot be bound, and fails when CI=true.
func listen(t *testing.T, network, addr string) net.Listener {
	ln, err := net.Listen(network, addr)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but cannot listen on %s: %v", addr, err)
		}
		t.Skipf("no %s here: %v", addr, err)
	}
	return ln
}

func counterValue(t *testing.T, m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// freePort returns the port of ln (or of a closed 127.0.0.1 listener when ln is nil) after
// checking that nothing listens on it on [::1].
func freePort(t *testing.T, ln net.Listener) uint16 {
	if ln == nil {
		l := listen(t, "tcp4", "127.0.0.1:0")
		ln = l
		defer l.Close()
	}
	port := ln.Addr().(*net.TCPAddr).Port
	l6, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but port %d is busy on [::1]: %v", port, err)
		}
		t.Skipf("port %d busy on [::1]: %v", port, err)
	}
	l6.Close()
	return uint16(port)
}

// TestLoopback dials real listeners through the default DialAttempt: a name whose AAAA is
// ::1; a name whose ::1 refuses so that its 127.0.0.1 wins; and one where both refuse.
func TestLoopback(t *testing.T) {
	ln6 := listen(t, "tcp6", "[::1]:0")
	defer ln6.Close()
	ln4 := listen(t, "tcp4", "127.0.0.1:0")
	defer ln4.Close()
	p6 := uint16(ln6.Addr().(*net.TCPAddr).Port)
	p4 := freePort(t, ln4) // held on 127.0.0.1 only
	pNone := freePort(t, nil)

	accepted := make(chan net.Conn, 2)
	for _, ln := range []net.Listener{ln6, ln4} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	before := openFDs(t)
	m := NewMetrics(prometheus.NewRegistry())
	d := &Dialer{
		Resolver: &fakeResolver{answers: map[string][]timedAnswer{
			"six.test":  {{0, aaaa("::1")}},
			"both.test": {{0, aaaa("::1")}, {0, a4("127.0.0.1")}},
		}},
		Metrics: m, Timeout: 5 * time.Second,
	}
	tests := []struct {
		host string
		port uint16
		want string // "" when the race must fail with ECONNREFUSED
	}{
		{"six.test", p6, ln6.Addr().String()},
		{"both.test", p4, ln4.Addr().String()},
		{"both.test", pNone, ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			c, err := d.DialContext(t.Context(), tc.host, tc.port)
			if tc.want == "" {
				var oe *net.OpError
				if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &oe) {
					t.Fatalf("err = %v, want connection refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != netip.MustParseAddrPort(tc.want) {
				t.Errorf("connected to %s, want %s", got, tc.want)
			}
			s := <-accepted
			s.Close()
		})
	}
	for _, tc := range []struct {
		m    prometheus.Metric
		want float64
	}{
		{m.winners.WithLabelValues("ipv6", PathNative), 1},
		{m.winners.WithLabelValues("ipv4", PathNative), 1},
		{m.attempts.WithLabelValues("ipv6"), 3},
		{m.attempts.WithLabelValues("ipv4"), 2},
		{m.failures.WithLabelValues(ReasonRefused), 1},
	} {
		if v := counterValue(t, tc.m); v != tc.want {
			t.Errorf("%s = %v, want %v", tc.m.Desc(), v, tc.want)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("open fds %d -> %d", before, after)
	}
}
