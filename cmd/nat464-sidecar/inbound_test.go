package main

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var engines = []string{"splice", "goroutine"}

func TestBadInputExitsTwo(t *testing.T) {
	busy, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--frobnicate"}, "frobnicate"},
		{"malformed mapping", []string{"--inbound", "8080:80"}, "--inbound"},
		{"bad engine", []string{"--engine", "turbo"}, "--engine"},
		{"port in use", []string{"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", busyPort), "--proxy-listen", "off",
			"--admin-listen", "[::1]:0"}, fmt.Sprintf("[::1]:%d", busyPort)},
		{"admin port in use", []string{"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)), "--proxy-listen", "off",
			"--admin-listen", fmt.Sprintf("[::1]:%d", busyPort)}, "admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := launch(t, tt.args...)
			if code := s.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2; output:\n%s", code, s.Logs)
			}
			if !strings.Contains(s.Logs.String(), tt.want) {
				t.Errorf("message does not name %q:\n%s", tt.want, s.Logs)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(sidecarBin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "nat464-sidecar ") {
		t.Fatalf("--version: %q %v", out, err)
	}
}

// An IPv4-only app is unreachable over IPv6 until the sidecar forwards to it; curl -6 fetches it
// through the sidecar, over two mappings at once.
func TestInboundCurl(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			app1 := httpApp(t, "127.0.0.1:0", "app one\n")
			app2 := httpApp(t, "127.0.0.1:0", "app two\n")
			_, p1, _ := net.SplitHostPort(app1)
			if _, err := net.DialTimeout("tcp6", "[::1]:"+p1, time.Second); err == nil {
				t.Fatal("the IPv4-only app answered over IPv6 without the sidecar")
			}
			l1, l2 := freePort(t), freePort(t)
			startSidecar(t, "--engine", eng, "--proxy-listen", "off",
				"--inbound", fmt.Sprintf("[::1]:%d=%s", l1, app1), "--inbound", fmt.Sprintf("[::1]:%d=%s", l2, app2))
			if got := curl(t, "-6", fmt.Sprintf("http://[::1]:%d/", l1)); got != "app one\n" {
				t.Errorf("mapping 1: %q", got)
			}
			if got := curl(t, "-6", fmt.Sprintf("http://[::1]:%d/", l2)); got != "app two\n" {
				t.Errorf("mapping 2: %q", got)
			}
		})
	}
}

// The sidecar binds [::]:P with IPV6_V6ONLY while the app holds 0.0.0.0:P: both work.
func TestInboundSamePortAsApp(t *testing.T) {
	requireLinux(t)
	port := freePort(t)
	httpApp(t, fmt.Sprintf("0.0.0.0:%d", port), "same port\n")
	startSidecar(t, "--proxy-listen", "off", "--inbound", fmt.Sprintf("%d=%d", port, port))
	if got := curl(t, "-4", fmt.Sprintf("http://127.0.0.1:%d/", port)); got != "same port\n" {
		t.Errorf("direct IPv4: %q", got)
	}
	if got := curl(t, "-6", fmt.Sprintf("http://[::1]:%d/", port)); got != "same port\n" {
		t.Errorf("through the sidecar: %q", got)
	}
}

// A target that refuses: the client is closed promptly, a warning names the target, and
// /readyz reports it.
func TestInboundTargetRefuses(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			l := freePort(t)
			s := startSidecar(t, "--engine", eng, "--proxy-listen", "off", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, dead))
			c, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", l))
			switch {
			case errors.Is(err, syscall.ECONNRESET):
				// The reset beat the client's own connect completion on loopback: closed promptly.
			case err != nil:
				t.Fatal(err)
			default:
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					t.Fatal("read data from a flow whose target refused")
				} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("client not closed within 3s of the refusal")
				}
			}
			s.WaitLog(5*time.Second, "connect", dead)
			code, body := s.Get("/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, dead) {
				t.Errorf("/readyz = %d %s, want 503 naming %s", code, body, dead)
			}
		})
	}
}

// SIGTERM: /readyz fails at once, a transfer in flight finishes, the process exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			app, got := slowSource(t, 4<<20, 200*time.Millisecond)
			l := freePort(t)
			s := startSidecar(t, "--engine", eng, "--proxy-listen", "off", "--drain-timeout", "10s",
				"--inbound", fmt.Sprintf("[::1]:%d=%s", l, app))
			c, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", l))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan [32]byte, 1)
			go func() {
				h := sha256.New()
				io.Copy(h, c)
				c.Close() // as a client does at EOF: the last flow ends, and so does the drain
				var sum [32]byte
				copy(sum[:], h.Sum(nil))
				done <- sum
			}()
			<-got // the app has started sending
			s.Signal(syscall.SIGTERM)
			s.WaitLog(5*time.Second, "draining")
			if code, _ := s.Get("/readyz"); code == http.StatusOK {
				t.Error("/readyz still 200 while draining")
			}
			select {
			case sum := <-done:
				if sum != <-got {
					t.Error("the transfer in flight did not arrive whole")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("transfer did not finish during the drain")
			}
			if code := s.Wait(10 * time.Second); code != 0 {
				t.Errorf("exit code %d after drain, want 0", code)
			}
		})
	}
}

// A flow that outlasts --drain-timeout is cut, and the process still exits 0 in time.
func TestDrainTimeoutCuts(t *testing.T) {
	requireLinux(t)
	app := httpApp(t, "127.0.0.1:0", "x")
	l := freePort(t)
	s := startSidecar(t, "--proxy-listen", "off", "--drain-timeout", "300ms", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, app))
	c, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", l))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // keep-alive: the flow stays open
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Error("flow still open after the drain timeout")
	}
	t.Logf("exited %v after SIGTERM with a 300ms drain timeout", time.Since(start))
}

// slowSource is an IPv4 app that sends n random bytes in two halves, pause apart. The channel
// yields once when sending starts, then the SHA-256 of what was sent.
func slowSource(t *testing.T, n int, pause time.Duration) (string, chan [32]byte) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan [32]byte, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		data := make([]byte, n)
		rand.Read(data)
		ch <- [32]byte{}
		c.Write(data[:n/2])
		time.Sleep(pause)
		c.Write(data[n/2:])
		ch <- sha256.Sum256(data)
	}()
	return ln.Addr().String(), ch
}

func itoa(i int) string { return strconv.Itoa(i) }
