//go:build e2e && linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// suite is what TestMain prepared; tests read it through requireLab.
var suite struct {
	skip     string            // why the suite cannot run here (skip, or fail under CI=true)
	err      error             // the suite should run but its set-up failed
	bin      string            // the sidecar binary (world-executable, for uid 65532)
	buildErr error             // building the sidecar failed (lab tests still run)
	dir      string            // scratch directory readable by uid 65532
	labSh    string            // test/lab/lab.sh
	env      map[string]string // lab.sh env
}

// tools the lab and the tests run; test/lab/deps.sh installs them.
var tools = []string{"ip", "iptables", "ip6tables", "tayga", "unbound", "curl", "dig", "proxychains4", "setpriv", "setsid", "flock"}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if reason := prerequisites(); reason != "" {
		suite.skip = reason
		return m.Run()
	}
	// One suite at a time on this machine: the lab is a singleton. The lock is on this
	// directory, so it leaves nothing behind.
	unlock, err := lockDir(".")
	if err != nil {
		suite.err = err
		return m.Run()
	}
	defer unlock()
	cleanup := setUp()
	fds := countFDs() // after set-up, which has started the runtime's poller (its fds stay open)
	code := m.Run()
	cleanup()
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: goroutine leak: %v\n", err)
		code = 1
	}
	if after := countFDs(); after > fds {
		fmt.Fprintf(os.Stderr, "e2e: file descriptor leak: %d open before the suite, %d after\n", fds, after)
		code = 1
	}
	return code
}

func prerequisites() string {
	if testing.Short() {
		return "e2e: skipped in -short mode"
	}
	if os.Geteuid() != 0 {
		return "e2e: the lab needs root (network namespaces, iptables)"
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Sprintf("e2e: %s not found; run test/lab/deps.sh", t)
		}
	}
	return ""
}

// setUp builds the binary, brings the lab up fresh (a crashed earlier run may have left it up,
// with blackholes or a stray sidecar) and returns the teardown.
func setUp() (cleanup func()) {
	root, err := filepath.Abs("../..")
	if err != nil {
		suite.err = err
		return func() {}
	}
	suite.labSh = filepath.Join(root, "test", "lab", "lab.sh")
	dir, err := os.MkdirTemp("", "nat464-e2e-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		suite.err = fmt.Errorf("e2e: scratch dir: %w", err)
		return func() {}
	}
	suite.dir = dir
	suite.bin = filepath.Join(dir, "nat464-sidecar")
	suite.buildErr = goBuild(root, suite.bin, "./cmd/nat464-sidecar")
	cleanup = func() {
		if os.Getenv("NAT464_E2E_KEEP_LAB") != "1" {
			if out, err := labCmd("down"); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: lab down: %v\n%s", err, out)
			}
		}
		os.RemoveAll(dir)
	}
	if out, err := labCmd("down"); err != nil {
		suite.err = fmt.Errorf("e2e: lab down: %w\n%s", err, out)
		return cleanup
	}
	if out, err := labCmd("up", "--mode", "wkp"); err != nil {
		suite.err = fmt.Errorf("e2e: lab up: %w\n%s", err, out)
		return cleanup
	}
	out, err := labCmd("env")
	if err != nil {
		suite.err = fmt.Errorf("e2e: lab env: %w\n%s", err, out)
		return cleanup
	}
	suite.env = parseEnv(out)
	return cleanup
}

func goBuild(root, out, pkg string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("e2e: go build %s: %w\n%s", pkg, err, b)
	}
	return os.Chmod(out, 0o755)
}

// labCmd runs test/lab/lab.sh with a generous bound.
func labCmd(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.labSh, args...)
	cmd.Env = cleanEnv()
	return cmd.CombinedOutput()
}

// cleanEnv is the environment of every command the tests run: no proxy variables, no NAT464_*.
func cleanEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	for _, k := range []string{"GOROOT", "GOPATH", "GOCACHE", "GOMODCACHE", "HOME", "NAT464_LAB_PREFIX", "NAT464_LAB_STATE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		env[0] += ":" + filepath.Dir(p)
	}
	return env
}

func parseEnv(b []byte) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// requireLab skips (or, under CI=true, fails) a test the machine cannot run, and fails one whose
// set-up broke.
func requireLab(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the end-to-end suite cannot run: %s", suite.skip)
		}
		t.Skip(suite.skip)
	}
	if suite.err != nil {
		t.Fatal(suite.err)
	}
}

// requireBinary is requireLab plus a sidecar binary that built.
func requireBinary(t *testing.T) {
	t.Helper()
	requireLab(t)
	if suite.buildErr != nil {
		t.Fatal(suite.buildErr)
	}
}

// env returns a lab.sh env value; a missing key is a bug in the suite.
func env(t *testing.T, key string) string {
	t.Helper()
	v, ok := suite.env[key]
	if !ok {
		t.Fatalf("lab.sh env has no %s", key)
	}
	return v
}

func lockDir(path string) (func(), error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("e2e: lock %s: %w", path, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("e2e: lock %s: %w", path, err)
	}
	return func() { unix.Close(fd) }, nil
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
