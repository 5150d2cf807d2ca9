//go:build e2e && linux

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/nat464/nat464-sidecar/test/lab/labgen"
)

// TestBulkTransfer: 256 MiB from the IPv4-only server through the sidecar and NAT64 into curl
// in the pod, compared by SHA-256.
func TestBulkTransfer(t *testing.T) {
	startSidecar(t)
	const n = 256 << 20
	want := make(chan string, 1)
	go func() { want <- labgen.Sum(n) }()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", env(t, "LAB_NS_POD"),
		"curl", "-sS", "--fail", "--max-time", "170", "--socks5-hostname", proxyAddr,
		fmt.Sprintf("http://v4only.example/gen?n=%d", n))
	cmd.Env = cleanEnv()
	h := sha256.New()
	count := &countingWriter{w: h}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = count, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl: %v: %s (after %d bytes)", err, stderr.String(), count.n)
	}
	elapsed := time.Since(start)
	if got, w := fmt.Sprintf("%x", h.Sum(nil)), <-want; count.n != n || got != w {
		t.Fatalf("got %d bytes sha256 %s, want %d bytes sha256 %s", count.n, got, n, w)
	}
	t.Logf("256 MiB through NAT64 in %v (%.0f MiB/s)", elapsed, float64(n>>20)/elapsed.Seconds())
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// nsDialer is a proxy.Dialer whose connections start inside a lab namespace.
type nsDialer struct{ ns string }

func (d nsDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, d.ns, network, addr)
}

// TestDrain: SIGTERM in the middle of a paced transfer; the transfer completes intact (inbound
// and outbound) and the sidecar then exits 0.
func TestDrain(t *testing.T) {
	requireBinary(t)
	const n, rate = 12 << 20, 4 << 20 // about three seconds
	path := fmt.Sprintf("/gen?n=%d&rate=%d", n, rate)
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) (net.Conn, error)
	}{
		{"inbound", func(t *testing.T) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return dialIn(ctx, env(t, "LAB_NS_CLIENT"), "tcp", net.JoinHostPort(env(t, "LAB_POD6"), inboundPort))
		}},
		{"outbound socks5 via NAT64", func(t *testing.T) (net.Conn, error) {
			d, err := proxy.SOCKS5("tcp", proxyAddr, nil, nsDialer{env(t, "LAB_NS_POD")})
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return d.(proxy.ContextDialer).DialContext(ctx, "tcp", "v4only.example:80")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSidecar(t)
			c, err := tc.dial(t)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n", path)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("response header: %v", err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			// Read a first MiB, so the flow is established and mid-transfer, then SIGTERM.
			got, err := io.CopyN(h, resp.Body, 1<<20)
			if err != nil {
				t.Fatalf("before SIGTERM: %v after %d bytes", err, got)
			}
			s.signal(syscall.SIGTERM)
			s.waitNotReady()
			rest, err := io.Copy(h, resp.Body)
			got += rest
			if sum := fmt.Sprintf("%x", h.Sum(nil)); err != nil || got != n || sum != labgen.Sum(n) {
				t.Fatalf("after SIGTERM: %d of %d bytes (err %v), sha256 %s, want %s", got, n, err, sum, labgen.Sum(n))
			}
			// The client closes its side too (the relay honours half-close, so the flow lasts
			// until both sides are done); then the drain is over well before --drain-timeout.
			c.Close()
			if err := s.wait(10 * time.Second); err != nil {
				t.Fatalf("sidecar after drain: %v, want exit 0 before the 15s drain timeout", err)
			}
		})
	}
}
