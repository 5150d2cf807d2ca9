package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/socks/sockstest"
)

// configMapDir lays a policy file out as a Kubernetes ConfigMap volume does: the file is a
// symlink through ..data, a symlink to a timestamped directory that an update replaces.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapDir(t *testing.T, body string) (*configMapDir, string) {
	c := &configMapDir{t: t, dir: t.TempDir()}
	c.update(body)
	path := filepath.Join(c.dir, "policy")
	if err := os.Symlink("..data/policy", path); err != nil {
		t.Fatal(err)
	}
	return c, path
}

// update writes body into a new directory and swaps ..data to it, as the kubelet does.
func (c *configMapDir) update(body string) {
	c.n++
	sub := fmt.Sprintf("..2026_12_07_%02d", c.n)
	if err := os.Mkdir(filepath.Join(c.dir, sub), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, sub, "policy"), []byte(body), 0o644); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(sub, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
}

// socks5Reply sends a SOCKS5 CONNECT for host:port and returns the REP code.
func socks5Reply(t *testing.T, proxy, host string, port int) byte {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(sockstest.Connect5(host, uint16(port))); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("SOCKS5 reply for %s:%d: %v", host, port, err)
	}
	return b[3]
}

// waitCount waits until sub appears n times in the logs.
func (s *proc) waitCount(d time.Duration, sub string, n int) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for strings.Count(s.Logs.String(), sub) < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("%q logged %d times after %v, want %d:\n%s", sub, strings.Count(s.Logs.String(), sub), d, n, s.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEgressPolicyReload drives the binary: the policy rules from start; SIGHUP puts a new
// file in force; a broken file on SIGHUP keeps the rules in force and says why, naming the
// line; a ConfigMap-style update (a symlink swap, no signal) is seen within the 2 s poll; a
// broken file at start is exit 2 naming the line. Decisions are counted per rule.
func TestEgressPolicyReload(t *testing.T) {
	requireLinux(t)
	cm, path := newConfigMapDir(t, "deny app.test\n")
	f := newProxyFixture(t, "splice", "--egress-policy", path)
	port, _ := strconv.Atoi(f.appPort)
	const loaded = `msg="egress policy loaded"`
	f.s.WaitLog(5*time.Second, loaded, "rules=1 default=allow")
	if rep := socks5Reply(t, f.proxyAddr, "app.test", port); rep != 2 {
		t.Errorf("denied name: REP %d, want 2", rep)
	}
	if rep := socks5Reply(t, f.proxyAddr, "127.0.0.1", port); rep != 0 {
		t.Errorf("literal under default allow: REP %d, want 0", rep)
	}
	f.s.WaitLog(5*time.Second, `msg="egress policy denied" protocol=socks5 dest=app.test:`+f.appPort+` rule="deny app.test" line=1`)
	if n := f.s.metric("nat464_policy_decisions_total", `action="deny",rule="deny app.test"`); n != 1 {
		t.Errorf(`decisions_total{rule="deny app.test"} = %v, want 1`, n)
	}

	// SIGHUP: the new file rules.
	if err := os.WriteFile(filepath.Join(cm.dir, "..data", "policy"), []byte("allow app.test\ndefault deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.s.Signal(syscall.SIGHUP)
	f.s.waitCount(5*time.Second, loaded, 2)
	if rep := socks5Reply(t, f.proxyAddr, "app.test", port); rep != 0 {
		t.Errorf("after SIGHUP, allowed name: REP %d, want 0", rep)
	}
	if rep := socks5Reply(t, f.proxyAddr, "127.0.0.1", port); rep != 2 {
		t.Errorf("after SIGHUP, literal under default deny: REP %d, want 2", rep)
	}
	if _, body := f.s.Get("/metrics"); strings.Contains(body, `rule="deny app.test"`) || !strings.Contains(body, `rule="allow app.test"`) {
		t.Errorf("the decisions metric does not follow the rules in force:\n%s", body)
	}

	// A broken file on SIGHUP: the rules in force stay, the log names the line.
	if err := os.WriteFile(filepath.Join(cm.dir, "..data", "policy"), []byte("allow app.test\nallw 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.s.Signal(syscall.SIGHUP)
	f.s.WaitLog(5*time.Second, `msg="egress policy reload failed; keeping the previous rules" trigger=SIGHUP`, `line 2: \"allw\": want allow, deny or default`)
	if rep := socks5Reply(t, f.proxyAddr, "127.0.0.1", port); rep != 2 {
		t.Errorf("after a broken reload, REP %d, want 2 (default deny still in force)", rep)
	}
	if n := f.s.metric("nat464_policy_reloads_total", `result="error"`); n < 1 {
		t.Errorf(`reloads_total{result="error"} = %v, want >= 1`, n)
	}

	// A ConfigMap update: no signal, the symlink swapped; seen within the poll.
	start := time.Now()
	cm.update("deny app.test\n")
	f.s.waitCount(10*time.Second, loaded, 3)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the change took %v to be seen, want about the 2 s poll", el)
	}
	f.s.WaitLog(time.Second, `default=allow trigger="file changed"`)
	if rep := socks5Reply(t, f.proxyAddr, "app.test", port); rep != 2 {
		t.Errorf("after the ConfigMap update, REP %d, want 2", rep)
	}
	if rep := socks5Reply(t, f.proxyAddr, "127.0.0.1", port); rep != 0 {
		t.Errorf("after the ConfigMap update, literal: REP %d, want 0", rep)
	}

	// A broken file at start: exit 2, naming the file and line.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("# ok\ndeny 198.51.100.7/24\n"), 0o644)
	s := launch(t, "--egress-policy", bad, "--admin-listen", "[::1]:0", "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)))
	if code := s.Wait(10 * time.Second); code != 2 {
		t.Fatalf("broken policy at start: exit %d, want 2", code)
	}
	if want := bad + ": line 2: target \\\"198.51.100.7/24\\\": host bits set"; !strings.Contains(s.Logs.String(), want) {
		t.Errorf("start-up error does not name the line (%s):\n%s", want, s.Logs)
	}
}
