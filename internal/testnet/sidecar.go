package testnet

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
	"testing"
	"time"
)

// RunWithSidecar is the body of a TestMain whose tests drive the real binary: it builds the
// sidecar's main package pkg (as `go build` names it, relative to the test's directory) into a
// temporary directory, sets *bin to its path, runs the tests and removes the directory. It
// returns the code to exit with: 1, without running a test, when the build fails.
func RunWithSidecar(m *testing.M, pkg string, bin *string) int {
	dir, err := os.MkdirTemp("", "nat464-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "nat464-sidecar")
	build := exec.Command("go", "build", "-o", *bin, pkg)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the sidecar:", err)
		return 1
	}
	return m.Run()
}

// RequireLinux skips off Linux; under CI=true a skip is a failure.
func RequireLinux(t testing.TB) {
	t.Helper()
	if runtime.GOOS == "linux" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs Linux and CI=true forbids skipping it (GOOS=%s)", runtime.GOOS)
	}
	t.Skip("needs Linux")
}

// RequireTool returns the path of a program, skipping when it is missing; under CI=true that is
// a failure, since .ci/run installs every tool the tests use.
func RequireTool(t testing.TB, name string) string {
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

// A Launcher runs the sidecar binary for a test.
type Launcher struct {
	Bin string // the binary, as RunWithSidecar built it

	// Wrap is a command the binary runs under, with its arguments (such as prlimit
	// --nofile=N:N --); if nil, none.
	Wrap []string

	// Dial, if set, makes the connections to the admin server (a sidecar in a Netns is reached
	// with Netns.Dial); if nil, the host's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// LogTailKiB is how much of the logs, in KiB from their end, a failure prints (at the end
	// of a failed test, and from WaitLog); if zero, all of them.
	LogTailKiB int
}

// Sidecar is a running sidecar binary. The test's cleanup kills it and, if the test failed,
// prints its logs.
type Sidecar struct {
	Cmd   *exec.Cmd
	Logs  *Output // stdout and stderr
	Admin string  // host:port of the admin server; empty from Launch

	t      testing.TB
	tail   int // bytes of the logs a failure prints; 0 for all
	exited chan struct{}
	code   int // set before exited is closed
	http   *http.Client
}

// Start runs the binary with args plus a free admin port on [::1] and text logs, and waits up
// to 10s for /startupz.
func (l Launcher) Start(t testing.TB, args ...string) *Sidecar {
	t.Helper()
	admin := net.JoinHostPort("::1", strconv.Itoa(int(FreePort(t))))
	s := l.Launch(t, append([]string{"--admin-listen", admin, "--log-format", "text"}, args...)...)
	s.Admin = admin
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := s.Get("/startupz"); code == http.StatusOK {
			return s
		}
		if !s.Alive() {
			t.Fatalf("sidecar exited with %d during start-up:\n%s", s.code, s.Logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not started after 10s:\n%s", s.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Launch starts the binary with args, without waiting for it. The developer's own NAT464_*
// environment is left out.
func (l Launcher) Launch(t testing.TB, args ...string) *Sidecar {
	t.Helper()
	s := &Sidecar{t: t, Logs: &Output{}, tail: l.LogTailKiB << 10, exited: make(chan struct{}),
		// No keep-alive: an idle admin connection would be one more fd in the sidecar between
		// requests, and tests count its fds.
		http: &http.Client{Timeout: 2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, DialContext: l.Dial}}}
	argv := append(append(append([]string(nil), l.Wrap...), l.Bin), args...)
	s.Cmd = exec.Command(argv[0], argv[1:]...)
	s.Cmd.Stdout, s.Cmd.Stderr = s.Logs, s.Logs
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NAT464_") {
			s.Cmd.Env = append(s.Cmd.Env, kv)
		}
	}
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.Cmd.Wait()
		s.code = s.Cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Kill()
		<-s.exited
		if !t.Failed() {
			return
		}
		if s.tail > 0 {
			t.Logf("sidecar logs (last %d KiB):\n%s", s.tail>>10, s.logTail())
		} else {
			t.Logf("sidecar logs:\n%s", s.Logs)
		}
	})
	return s
}

// Alive reports whether the process is still running.
func (s *Sidecar) Alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// ExitCode is the process's exit code, or -1 while it runs.
func (s *Sidecar) ExitCode() int {
	if s.Alive() {
		return -1
	}
	return s.code
}

// Wait returns the exit code, failing the test if the process runs longer than d.
func (s *Sidecar) Wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.code
	case <-time.After(d):
		s.t.Fatalf("sidecar still running after %v", d)
		return -1
	}
}

// Signal sends sig to the process.
func (s *Sidecar) Signal(sig os.Signal) {
	s.t.Helper()
	if err := s.Cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Get fetches an admin path; the code is 0, and the body the error, when the request failed.
func (s *Sidecar) Get(path string) (int, string) {
	resp, err := s.http.Get("http://" + s.Admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// WaitLog waits up to d until the logs contain every one of subs.
func (s *Sidecar) WaitLog(d time.Duration, subs ...string) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		logs := s.Logs.String()
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(logs, sub)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("logs lack %q after %v:\n%s", subs, d, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTail is as much of the logs as a failure prints.
func (s *Sidecar) logTail() string {
	if s.tail == 0 {
		return s.Logs.String()
	}
	return Tail(s.Logs.String(), s.tail)
}

// Tail is the last n bytes of s, marked with "..." when that cuts it.
func Tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// SumMetric is the sum of the samples of the metric family name, in the Prometheus text
// exposition, whose label text contains sel (every sample when sel is empty).
func SumMetric(exposition, name, sel string) float64 {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		if sel != "" && !strings.Contains(rest, sel) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
