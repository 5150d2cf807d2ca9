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
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// The tests in this package drive the real binary, built once in TestMain.
var sidecarBin string

func TestMain(m *testing.M) { os.Exit(testnet.RunWithSidecar(m, ".", &sidecarBin)) }

// requireLinux and requireTool are testnet's, under the names the tests use.
func requireLinux(t *testing.T) { t.Helper(); testnet.RequireLinux(t) }

func requireTool(t *testing.T, name string) string { t.Helper(); return testnet.RequireTool(t, name) }

// proc is a running sidecar binary, with this package's probes of it.
type proc struct {
	*testnet.Sidecar
	t *testing.T
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
	return &proc{testnet.Launcher{Bin: sidecarBin, Wrap: wrap}.Start(t, args...), t}
}

// launch starts the binary without waiting for it.
func launch(t *testing.T, args ...string) *proc {
	t.Helper()
	return &proc{testnet.Launcher{Bin: sidecarBin}.Launch(t, args...), t}
}

// fds counts the process's open file descriptors.
func (s *proc) fds() int {
	s.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	return len(ents)
}

// settledFDs is fds once start-up's short-lived descriptors (probe connections, the NAT64
// discovery's DNS socket) are gone: two reads 50 ms apart that agree, within 2 s.
func (s *proc) settledFDs() int {
	s.t.Helper()
	n := s.fds()
	for range 40 {
		sleep50()
		m := s.fds()
		if m == n {
			return m
		}
		n = m
	}
	return n
}

// fdKinds counts the process's open sockets and pipe ends.
func (s *proc) fdKinds() (sockets, pipes int) {
	s.t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", s.Cmd.Process.Pid)
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

// udpFDsTo counts the process's UDP sockets connected to 127.0.0.1:port, by the inodes
// /proc/PID/net/udp lists for that remote address: the sessions of an inbound UDP mapping,
// whatever else (admin connections, the runtime) comes and goes beside them.
func (s *proc) udpFDsTo(port int) int {
	s.t.Helper()
	pid := s.Cmd.Process.Pid
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		s.t.Fatal(err)
	}
	remote := fmt.Sprintf("0100007F:%04X", port)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 9 && f[2] == remote {
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join(dir, e.Name())); inodes[target] {
			n++
		}
	}
	return n
}

// metric returns the sum of the samples of a metric family whose label text contains sel.
func (s *proc) metric(name, sel string) float64 {
	s.t.Helper()
	code, body := s.Get("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics: %d %s", code, body)
	}
	return testnet.SumMetric(body, name, sel)
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
