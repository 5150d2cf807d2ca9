//go:build e2e && linux

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/test/lab/labgen"
)

// socks5Optimistic sends the SOCKS5 greeting, a CONNECT to host:port and payload in a single
// write, before any reply (Tor-style optimistic data), then consumes the method choice and the
// reply. The sidecar must not lose payload, which it has buffered during the handshake.
func socks5Optimistic(c net.Conn, host string, port uint16, payload []byte) error {
	msg := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	msg = append(msg, host...)
	msg = binary.BigEndian.AppendUint16(msg, port)
	if _, err := c.Write(append(msg, payload...)); err != nil {
		return err
	}
	head := make([]byte, 2+4)
	if _, err := io.ReadFull(c, head); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if head[0] != 5 || head[1] != 0 || head[2] != 5 || head[3] != 0 {
		return fmt.Errorf("socks5 method %x, reply %x: want 05 00 then 05 00 (succeeded)", head[:2], head[2:4])
	}
	var rest int
	switch head[5] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	default:
		return fmt.Errorf("socks5 reply ATYP %d: want an IP type", head[5])
	}
	_, err := io.ReadFull(c, make([]byte, rest))
	return err
}

// transfer runs one GET of n lab bytes over c (optionally half-closing after the request) and
// checks length and SHA-256.
func transfer(c net.Conn, path string, n int64, alreadySent, halfClose bool) error {
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n", path)
	if !alreadySent {
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
	}
	if halfClose {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if sum, want := fmt.Sprintf("%x", h.Sum(nil)), labgen.Sum(n); err != nil || got != n || sum != want {
		return fmt.Errorf("%d of %d bytes (err %v), sha256 %s, want %s", got, n, err, sum, want)
	}
	return nil
}

// TestOptimisticData: request bytes sent together with the SOCKS5 handshake reach the server.
func TestOptimisticData(t *testing.T) {
	startSidecar(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialIn(ctx, env(t, "LAB_NS_POD"), "tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
	if err := socks5Optimistic(c, "v4only.example", 80, []byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response to the optimistic request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parseWhoami(t, string(body)).check(t, "v4srv", "", v4From)
}

// TestConcurrentFlows: inbound and outbound flows at once, half of them half-closed by the
// client right after the request (the response must still arrive whole), all checked by SHA-256.
func TestConcurrentFlows(t *testing.T) {
	startSidecar(t)
	const perKind, n = 8, 4 << 20
	path := fmt.Sprintf("/gen?n=%d", n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*perKind)
	for i := range 2 * perKind {
		outbound, halfClose := i%2 == 0, i/2%2 == 0
		ns, addr := env(t, "LAB_NS_CLIENT"), net.JoinHostPort(env(t, "LAB_POD6"), inboundPort)
		if outbound {
			ns, addr = env(t, "LAB_NS_POD"), proxyAddr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := oneFlow(ns, addr, outbound, halfClose, path, n); err != nil {
				errs <- fmt.Errorf("flow %d (outbound=%v half-close=%v): %w", i, outbound, halfClose, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// oneFlow is one GET through the sidecar: from ns to addr, outbound ones through SOCKS5.
func oneFlow(ns, addr string, outbound, halfClose bool, path string, n int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dialIn(ctx, ns, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	sent := false
	if outbound {
		req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n", path)
		if err := socks5Optimistic(c, "dual.example", 80, []byte(req)); err != nil {
			return err
		}
		sent = true
	}
	return transfer(c, path, n, sent, halfClose)
}

// TestHandshakeTimeout: a client that connects to the proxy and says nothing is closed after
// --handshake-timeout.
func TestHandshakeTimeout(t *testing.T) {
	startSidecar(t, "--handshake-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialIn(ctx, env(t, "LAB_NS_POD"), "tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(start.Add(8 * time.Second))
	_, err = c.Read(make([]byte, 1))
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent client still connected after %v (handshake timeout 1s)", elapsed)
	}
	if elapsed < 500*time.Millisecond {
		t.Errorf("closed after %v (err %v), before the 1s handshake timeout", elapsed, err)
	}
}

// TestEnvConfig: the NAT464_* twins configure the sidecar when no flag is given: two inbound
// mappings, a different proxy port and a static NAT64 prefix.
func TestEnvConfig(t *testing.T) {
	app := env(t, "LAB_APP")
	s := startSidecarEnv(t, []string{
		"NAT464_INBOUND=8081=" + app + ",8082=" + app,
		"NAT464_PROXY_LISTEN=127.0.0.1:1081",
		"NAT464_NAT64_PREFIX=64:ff9b::/96",
	})
	for _, port := range []string{"8081", "8082"} {
		body, _, err := curl(t, env(t, "LAB_NS_CLIENT"), "http://["+env(t, "LAB_POD6")+"]:"+port+"/")
		if err != nil {
			t.Fatalf("inbound %s from NAT464_INBOUND: %v", port, err)
		}
		parseWhoami(t, body).check(t, "app", app, "127.0.0.1:")
	}
	body, _, err := curl(t, env(t, "LAB_NS_POD"), "--socks5", "127.0.0.1:1081", "http://"+env(t, "LAB_V4SRV")+"/")
	if err != nil {
		t.Fatalf("proxy on NAT464_PROXY_LISTEN: %v", err)
	}
	parseWhoami(t, body).check(t, "v4srv", "", v4From)
	if code, body := s.probe("/readyz"); !strings.Contains(body, "64:ff9b::/96") {
		t.Errorf("/readyz = %d %q; want the configured prefix", code, body)
	}
}
