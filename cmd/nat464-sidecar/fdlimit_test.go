package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fdLimit is the open-file limit the sidecar runs under in TestFileLimit: small enough that a
// few dozen flows exhaust it.
const fdLimit = 96

// echoOnce writes b on c and reports whether it comes back within d.
func echoOnce(c net.Conn, b []byte, d time.Duration) bool {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(b); err != nil {
		return false
	}
	got := make([]byte, len(b))
	_, err := io.ReadFull(c, got)
	return err == nil && string(got) == string(b)
}

// socksRequest is a SOCKS5 CONNECT request (after the greeting) to the IPv4 address dst.
func socksRequest(dst string) []byte {
	ap := netip.MustParseAddrPort(dst)
	a4 := ap.Addr().As4()
	req := append([]byte{5, 1, 0, 1}, a4[:]...)
	return binary.BigEndian.AppendUint16(req, ap.Port())
}

// socksConnectTo runs a no-auth SOCKS5 CONNECT to the IPv4 address dst over c; it reports
// whether the proxy answered success.
func socksConnectTo(c net.Conn, dst string, d time.Duration) bool {
	req := append([]byte{5, 1, 0}, socksRequest(dst)...)
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		return false
	}
	rep := make([]byte, 12)
	_, err := io.ReadFull(c, rep)
	return err == nil && rep[1] == 0 && rep[3] == 0
}

// until polls ok until it holds, failing the test with the sidecar's logs at deadline.
func (s *proc) until(deadline time.Time, what string, ok func() bool) {
	s.t.Helper()
	for !ok() {
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s by the deadline:\n%s", what, s.Logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFileLimit: when the process runs out of file descriptors (the hard 20,000 in production,
// fdLimit here), the sidecar says so plainly in its log, stays alive and serves again once
// flows end. Both the inbound listener (accepted by the splice loops, which pause) and the
// proxy port (gnet) are driven into the limit.
func TestFileLimit(t *testing.T) {
	requireLinux(t)
	prlimit := requireTool(t, "prlimit")
	app := echoApp(t)
	in := freePort(t)
	proxy := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s := startSidecarUnder(t, []string{prlimit, "--nofile=" + strconv.Itoa(fdLimit) + ":" + strconv.Itoa(fdLimit), "--"},
		"--inbound", strconv.Itoa(in)+"="+app, "--proxy-listen", proxy, "--max-conns", "1000")
	inAddr := "[::1]:" + strconv.Itoa(in)

	// Fill the table with inbound flows until one is not served.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	served := 0
	for i := 0; i < fdLimit; i++ {
		c, err := net.Dial("tcp6", inAddr)
		if errors.Is(err, syscall.ECONNRESET) {
			break // the sidecar could not open the app side and reset this client at once
		}
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, c)
		if !echoOnce(c, []byte("x"), 2*time.Second) { // generous: a loaded CI machine must not stop short of the limit
			break
		}
		served++
	}
	if served == fdLimit {
		t.Fatalf("all %d flows were served under a limit of %d fds", served, fdLimit)
	}
	if served < 10 {
		t.Fatalf("only %d flows served before the limit", served)
	}
	s.WaitLog(5*time.Second, "open-file limit reached", "RLIMIT_NOFILE")

	// The proxy port, at the limit too: a client is refused or left waiting, never answered
	// with garbage, and the process does not spin.
	if c, err := net.Dial("tcp4", proxy); err == nil {
		held = append(held, c)
		if socksConnectTo(c, app, 300*time.Millisecond) {
			t.Errorf("a SOCKS5 request was served with no fd to spare")
		}
	}

	// Free half of the flows: the sidecar serves new connections again, on both ports.
	for _, c := range held[:served/2] {
		c.Close()
	}
	held = held[served/2:]
	deadline := time.Now().Add(10 * time.Second)
	s.until(deadline, "an inbound flow served after fds were freed", func() bool {
		c, err := net.Dial("tcp6", inAddr)
		if err != nil {
			return false
		}
		defer c.Close()
		return echoOnce(c, []byte("again"), time.Second)
	})
	// gnet stops its whole engine when accept fails with EMFILE; the front end starts it again.
	s.until(deadline, "a SOCKS5 flow served after fds were freed", func() bool {
		c, err := net.Dial("tcp4", proxy)
		if err != nil {
			return false
		}
		defer c.Close()
		return socksConnectTo(c, app, time.Second) && echoOnce(c, []byte("socks"), time.Second)
	})
	if code, body := s.Get("/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d %s after the limit was hit", code, body)
	}

	// A restarted gnet shuts down like the first one.
	for _, c := range held {
		c.Close()
	}
	held = nil
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
