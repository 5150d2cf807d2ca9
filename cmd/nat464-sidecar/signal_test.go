package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second signal during the drain exits at once, with status 1.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	requireLinux(t)
	app := httpApp(t, "127.0.0.1:0", "x")
	l := freePort(t)
	s := startSidecar(t, "--proxy-listen", "off", "--drain-timeout", "60s", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, app))
	c, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", l))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // keep-alive keeps the flow open
	if _, err := c.Read(make([]byte, 256)); err != nil {
		t.Fatal(err)
	}
	s.Signal(syscall.SIGTERM)
	s.WaitLog(5*time.Second, "draining")
	start := time.Now()
	s.Signal(syscall.SIGINT)
	if code := s.Wait(5 * time.Second); code != 1 {
		t.Errorf("exit code %d after a second signal, want 1", code)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("exited %v after the second signal, want at once", el)
	}
}

// SIGHUP re-reads --proxy-auth-file: new credentials work, old ones stop working; a broken file
// keeps the previous credentials. A malformed file at start is exit 2 naming the line.
func TestAuthFileReloadOnSIGHUP(t *testing.T) {
	requireLinux(t)
	requireTool(t, "curl")
	auth := filepath.Join(t.TempDir(), "auth")
	os.WriteFile(auth, []byte("alice:one\n"), 0o600)
	f := newProxyFixture(t, "splice", "--proxy-auth-file", auth)
	ok := func(cred string) bool {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "-x", "socks5h://"+cred+"@"+f.proxyAddr, f.url("app.test")).Output()
		return err == nil && string(out) == f.page
	}
	if !ok("alice:one") {
		t.Fatal("initial credentials refused")
	}
	os.WriteFile(auth, []byte("alice:two\n"), 0o600)
	f.s.Signal(syscall.SIGHUP)
	f.s.WaitLog(5*time.Second, "reloaded")
	if ok("alice:one") || !ok("alice:two") {
		t.Error("after SIGHUP the new file does not rule")
	}
	os.WriteFile(auth, []byte("no colon here\n"), 0o600)
	f.s.Signal(syscall.SIGHUP)
	f.s.WaitLog(5*time.Second, "keeping the previous credentials")
	if !ok("alice:two") {
		t.Error("a broken file on reload dropped the working credentials")
	}

	bad := launch(t, "--proxy-auth-file", auth, "--admin-listen", "[::1]:0", "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)))
	if code := bad.Wait(10 * time.Second); code != 2 {
		t.Fatalf("malformed auth file: exit %d, want 2", code)
	}
	if !strings.Contains(bad.Logs.String(), "line 1") {
		t.Errorf("message does not name the line:\n%s", bad.Logs)
	}
}
