//go:build chaos && linux

package chaos

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// sidecarBin is the real binary, built once in TestMain.
var sidecarBin string

// engines are the relay engines the items run on.
var engines = []string{"splice", "goroutine"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nat464-chaos")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "nat464-sidecar")
	build := exec.Command("go", "build", "-o", sidecarBin, "../../cmd/nat464-sidecar")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the sidecar:", err)
		os.Exit(1)
	}
	code := m.Run()
	if len(figures.rows) > 0 { // the table docs/operations.md shows
		fmt.Println("| scenario | peak fds | peak RSS | peak goroutines | outcome |\n|---|---|---|---|---|")
		fmt.Println(strings.Join(figures.rows, "\n"))
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool returns the path of a program; a missing one skips, or fails under CI=true
// (.ci/run installs every tool the suite uses).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run must install it (CI=true forbids skipping)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

// sidecar is a running sidecar binary.
type sidecar struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testnet.Output
	admin  string // host:port of the admin server
	exited chan struct{}
	code   int
	http   *http.Client
}

// startSidecar runs the binary (through wrap, such as prlimit, when not nil) with args plus a
// free admin port and text logs, and waits for /startupz.
func startSidecar(t *testing.T, wrap []string, args ...string) *sidecar {
	t.Helper()
	s := &sidecar{t: t, logs: &testnet.Output{}, exited: make(chan struct{}),
		admin: net.JoinHostPort("::1", strconv.Itoa(int(testnet.FreePort(t)))),
		http: &http.Client{Timeout: 2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true}}}
	argv := append(append([]string(nil), wrap...), sidecarBin, "--admin-listen", s.admin, "--log-format", "text")
	argv = append(argv, args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	for _, kv := range os.Environ() { // the developer's own NAT464_* settings must not leak in
		if !strings.HasPrefix(kv, "NAT464_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("sidecar logs (last 8 KiB):\n%s", tail(s.logs.String(), 8<<10))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := s.get("/startupz"); code == http.StatusOK {
			return s
		}
		if !s.alive() {
			t.Fatalf("sidecar exited with %d during start-up:\n%s", s.code, s.logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not started after 10s:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// alive reports whether the process is still running.
func (s *sidecar) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// mustBeAlive fails t with the panic in the logs, or their tail, if the process has exited.
func (s *sidecar) mustBeAlive(t *testing.T, when string) {
	t.Helper()
	if !s.alive() {
		t.Fatalf("sidecar died %s (exit %d); logs:\n%s", when, s.code, crashLines(s.logs.String()))
	}
}

// crashLines returns the panic and its first frames when the logs hold one, else their tail.
func crashLines(logs string) string {
	for _, mark := range []string{"panic:", "fatal error:", "SIGSEGV"} {
		if i := strings.Index(logs, mark); i >= 0 {
			return logs[i:min(len(logs), i+4<<10)]
		}
	}
	return tail(logs, 4<<10)
}

// wait returns the exit code, failing the test if the process runs longer than d.
func (s *sidecar) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.code
	case <-time.After(d):
		s.t.Fatalf("sidecar still running after %v", d)
		return -1
	}
}

func (s *sidecar) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// get fetches an admin path; the code is 0 when the request failed.
func (s *sidecar) get(path string) (int, string) {
	resp, err := s.http.Get("http://" + s.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog waits until the logs contain sub.
func (s *sidecar) waitLog(d time.Duration, sub string) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(s.logs.String(), sub) {
		if time.Now().After(deadline) {
			s.t.Fatalf("logs lack %q after %v:\n%s", sub, d, tail(s.logs.String(), 8<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
