package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// The tests in this package drive the real binary, built once in TestMain.
var sidecarBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nat464-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sidecarBin = filepath.Join(dir, "nat464-sidecar")
	build := exec.Command("go", "build", "-o", sidecarBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the sidecar:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireLinux skips off Linux; under CI=true a skip is a failure.
func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "linux" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs Linux and CI=true forbids skipping it (GOOS=%s)", runtime.GOOS)
	}
	t.Skip("needs Linux")
}

// requireTool skips when a client program is missing; under CI=true that is a failure, since
// .ci/run installs every tool the tests use.
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

// proc is a running sidecar binary.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testnet.Output
	admin  string // host:port of the admin server
	exited chan struct{}
	code   int
}

// freePort returns a TCP port that was free on both 127.0.0.1 and [::] a moment ago.
func freePort(t *testing.T) int { return int(testnet.FreePort(t)) }

// startSidecar runs the binary with args plus a free admin port and waits for /startupz.
func startSidecar(t *testing.T, args ...string) *proc {
	t.Helper()
	return startSidecarUnder(t, nil, args...)
}

// startSidecarUnder is startSidecar with the binary run through a wrapper command (wrap, then
// the binary and its arguments), such as prlimit.
func startSidecarUnder(t *testing.T, wrap []string, args ...string) *proc {
	t.Helper()
	admin := net.JoinHostPort("::1", strconv.Itoa(freePort(t)))
	s := launchUnder(t, wrap, append([]string{"--admin-listen", admin, "--log-format", "text"}, args...)...)
	s.admin = admin
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := s.get("/startupz")
		if code == http.StatusOK {
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("sidecar exited with %d during start-up:\n%s", s.code, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not started after 10s:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launch starts the binary without waiting for it.
func launch(t *testing.T, args ...string) *proc {
	t.Helper()
	return launchUnder(t, nil, args...)
}

func launchUnder(t *testing.T, wrap []string, args ...string) *proc {
	t.Helper()
	s := &proc{t: t, logs: &testnet.Output{}, exited: make(chan struct{})}
	argv := append(append(append([]string(nil), wrap...), sidecarBin), args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stderr = s.logs
	s.cmd.Stdout = s.logs
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
			t.Logf("sidecar logs:\n%s", s.logs)
		}
	})
	return s
}

// wait returns the exit code, failing the test if the process runs longer than d.
func (s *proc) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.code
	case <-time.After(d):
		s.t.Fatalf("sidecar still running after %v", d)
		return -1
	}
}

func (s *proc) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// get fetches an admin path.
func (s *proc) get(path string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog waits until the logs contain every one of subs.
func (s *proc) waitLog(d time.Duration, subs ...string) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		logs := s.logs.String()
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(logs, sub)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("logs lack %q after %v:\n%s", subs, d, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fds counts the process's open file descriptors.
func (s *proc) fds() int {
	s.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	return len(ents)
}

// fdKinds counts the process's open sockets and pipe ends.
func (s *proc) fdKinds() (sockets, pipes int) {
	s.t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		switch {
		case strings.HasPrefix(target, "socket:"):
			sockets++
		case strings.HasPrefix(target, "pipe:"):
			pipes++
		}
	}
	return sockets, pipes
}

// metric returns the sum of the samples of a metric family whose label text contains sel.
func (s *proc) metric(name, sel string) float64 {
	s.t.Helper()
	code, body := s.get("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics: %d %s", code, body)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != '{' && rest[0] != ' ' {
			continue
		}
		if sel != "" && !strings.Contains(rest, sel) {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// httpApp serves body on an IPv4-only listener (127.0.0.1 or 0.0.0.0).
func httpApp(t *testing.T, addr, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// curl runs curl with args and returns its stdout; it fails the test on a non-zero exit.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	requireTool(t, "curl")
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("curl %v: %v %s", args, err, stderr)
	}
	return string(out)
}

func sleep50() { time.Sleep(50 * time.Millisecond) }
