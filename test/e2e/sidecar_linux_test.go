//go:build e2e && linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// The sidecar's addresses inside the pod in every test.
const (
	adminURL    = "http://[::1]:9464"
	proxyAddr   = "127.0.0.1:1080"
	inboundPort = "8080"
	drainBound  = 20 * time.Second // how long a SIGTERMed sidecar may take to exit
)

// sidecar is one nat464-sidecar process in the pod, unprivileged.
type sidecar struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testnet.Output
	exited chan struct{}
	err    error // from Wait, valid once exited is closed
}

// startSidecar runs the binary in the pod the way a restricted Kubernetes pod would (uid and gid
// 65532, no supplementary groups, no capabilities, no_new_privs), with the suite's standard
// listeners plus extra flags, waits for /readyz and stops it (SIGTERM, exit 0 expected) when the
// test ends.
func startSidecar(t *testing.T, extra ...string) *sidecar {
	t.Helper()
	args := []string{
		"--inbound", inboundPort + "=" + env(t, "LAB_APP"),
		"--proxy-listen", proxyAddr,
		"--drain-timeout", "15s",
	}
	// One setting through its environment twin, as a Kubernetes manifest would pass it.
	return startSidecarEnv(t, []string{"NAT464_LOG_LEVEL=debug"}, append(args, extra...)...)
}

// startSidecarEnv is startSidecar with only the admin address and log format preset, and extra
// NAT464_* variables in the environment.
func startSidecarEnv(t *testing.T, vars []string, extra ...string) *sidecar {
	t.Helper()
	return startSidecarWrapped(t, nil, vars, extra...)
}

// startSidecarWrapped is startSidecarEnv with wrapper run (as root, inside the pod namespace)
// in front of the privilege drop; the wrapper must exec its arguments.
func startSidecarWrapped(t *testing.T, wrapper, vars []string, extra ...string) *sidecar {
	t.Helper()
	requireBinary(t)
	args := append([]string{"netns", "exec", env(t, "LAB_NS_POD")}, wrapper...)
	args = append(args,
		"setpriv", "--reuid=65532", "--regid=65532", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
		suite.bin, "--admin-listen", "[::]:9464", "--log-format", "text",
	)
	args = append(args, extra...)
	// NAT464_E2E_ARGS adds flags to every sidecar (for example "--engine goroutine").
	args = append(args, strings.Fields(os.Getenv("NAT464_E2E_ARGS"))...)
	s := &sidecar{t: t, logs: &testnet.Output{}, exited: make(chan struct{})}
	s.cmd = exec.Command("ip", args...)
	s.cmd.Env = append(cleanEnv(), vars...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sidecar: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("sidecar %s %s\n--- sidecar log ---\n%s", strings.Join(vars, " "), strings.Join(extra, " "), s.logs)
		}
	})
	s.waitReady()
	return s
}

// waitReady polls /readyz from inside the pod (bounded), failing early if the process dies.
func (s *sidecar) waitReady() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		code, body, err := get(ctx, env(s.t, "LAB_NS_POD"), adminURL+"/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("status %d body %q err %v", code, body, err)
		select {
		case <-s.exited:
			s.t.Fatalf("sidecar exited during start-up (%v); last /readyz: %s\n%s", s.err, last, s.logs)
		case <-ctx.Done():
			s.t.Fatalf("sidecar not ready after 20s; last /readyz: %s\n%s", last, s.logs)
		case <-tick.C:
		}
	}
}

// signal sends sig to the sidecar (ip and setpriv exec into it, so the PID is the binary's).
func (s *sidecar) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal sidecar: %v", err)
	}
}

// wait waits (bounded) for the process to end and returns its exit error (nil for exit 0).
func (s *sidecar) wait(bound time.Duration) error {
	select {
	case <-s.exited:
		return s.err
	case <-time.After(bound):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("sidecar still running %v after SIGTERM; killed", bound)
	}
}

// stop is SIGTERM plus wait; a sidecar that exits non-zero on SIGTERM is a failure.
func (s *sidecar) stop() error {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	if err := s.wait(drainBound); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("sidecar exited with %v, want exit 0 on SIGTERM", ee)
		}
		return err
	}
	return nil
}

// probe fetches an admin path from inside the pod.
func (s *sidecar) probe(path string) (int, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := get(ctx, env(s.t, "LAB_NS_POD"), adminURL+path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

// waitNotReady polls /readyz (bounded) until it stops answering 200: a draining sidecar must
// leave the Service endpoints at once.
func (s *sidecar) waitNotReady() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, _, err := get(ctx, env(s.t, "LAB_NS_POD"), adminURL+"/readyz")
		if err != nil || code != http.StatusOK {
			return
		}
		select {
		case <-ctx.Done():
			s.t.Errorf("/readyz still 200 five seconds after SIGTERM")
			return
		case <-tick.C:
		}
	}
}
