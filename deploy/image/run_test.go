package image

import (
	"bytes"
	"fmt"
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

	"go.uber.org/goleak"
)

// roRootScript runs a command from the image like a container runtime with the restricted Pod
// Security settings would: in a private mount namespace (unshare --mount) it bind-mounts the
// extracted root filesystem read-only, sets no_new_privs, empties the inheritable and bounding
// capability sets (but for the three chroot(8) needs to switch user), then chroots and becomes
// 65532:65532 with no capabilities left. Without --fork the pid stays the same through every
// exec, so the caller's process is the sidecar.
const roRootScript = `set -e
root=$1; shift
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
exec setpriv --nnp --inh-caps=-all --bounding-set=-all,+sys_chroot,+setuid,+setgid \
	chroot --userspec=65532:65532 --groups=65532 "$root" "$@"`

// capsAllowed is what may remain in the bounding set: CAP_SETGID, CAP_SETUID, CAP_SYS_CHROOT.
const capsAllowed = 1<<6 | 1<<7 | 1<<18

// extractRootfs builds the image of the sidecar and unpacks its layer as a container's rootfs,
// plus the /etc/resolv.conf and /etc/hosts that kubelet bind-mounts into every container.
func extractRootfs(t *testing.T) string {
	t.Helper()
	path, _ := buildArchive(t, Options{Binary: sidecarBinary(t), Version: testVersion}, t.TempDir(), "oci.tar")
	_, img := openArchive(t, path)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	root := t.TempDir()
	if err := untar(rc, root); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"etc/resolv.conf": "nameserver ::1\n", "etc/hosts": "::1 localhost\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func roRootCommand(root string, args ...string) *exec.Cmd {
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--",
		"sh", "-c", roRootScript, "sh", root, "/nat464-sidecar"}, args...)...)
}

// TestRunsReadOnlyRoot runs the image's binary as 65532:65532 with no capabilities on a read-only
// root: it must print its version, and serve /livez until SIGTERM, then exit 0.
func TestRunsReadOnlyRoot(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		skipOrFail(t, "needs root on Linux to mount and chroot")
	}
	for _, tool := range []string{"unshare", "mount", "setpriv", "chroot", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not found (util-linux, coreutils)")
		}
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fdsBefore := openFDs(t)
	root := extractRootfs(t)

	t.Run("version", func(t *testing.T) {
		out, err := roRootCommand(root, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), testVersion) {
			t.Fatalf("--version: %v, output %q; want %s", err, out, testVersion)
		}
	})
	t.Run("serve", func(t *testing.T) { serveAndStop(t, root) })

	if after := openFDs(t); after > fdsBefore {
		t.Errorf("open fds: %d before, %d after", fdsBefore, after)
	}
}

func serveAndStop(t *testing.T, root string) {
	admin, inbound := freePort(t), freePort(t)
	var logs bytes.Buffer
	cmd := roRootCommand(root,
		"--admin-listen=[::1]:"+admin,
		"--inbound=[::1]:"+inbound+"=127.0.0.1:9",
		"--proxy-listen=off",
		"--nat64-prefix=64:ff9b::/96",
		"--drain-timeout=2s",
		"--log-format=text")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
			t.Logf("sidecar output:\n%s", logs.String())
		}
	}()

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	url := "http://[::1]:" + admin + "/livez"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for live := false; !live; {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("sidecar exited before serving /livez: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("GET %s: no 200 within 30s", url)
		case <-tick.C:
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				live = resp.StatusCode == http.StatusOK
			}
		}
	}
	checkProcess(t, cmd.Process.Pid)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("still running 30s after SIGTERM with --drain-timeout=2s")
	}
}

// checkProcess reads /proc for what the kernel says about the running sidecar: its identity,
// capabilities, no_new_privs, and a read-only root mount.
func checkProcess(t *testing.T, pid int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	want := map[string]string{
		"Uid": "65532 65532 65532 65532", "Gid": "65532 65532 65532 65532", "Groups": "65532",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("/proc/%d/status %s: %q, want %q", pid, k, fields[k], v)
		}
	}
	if bnd, err := strconv.ParseUint(fields["CapBnd"], 16, 64); err != nil || bnd&^capsAllowed != 0 {
		t.Errorf("CapBnd %q: more than chroot's own capabilities", fields["CapBnd"])
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var rootOpts string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
			rootOpts = f[5] // the last mount on / is the one in effect
		}
	}
	if !strings.HasPrefix(rootOpts, "ro,") && rootOpts != "ro" {
		t.Errorf("the sidecar's root is mounted %q, want read-only", rootOpts)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
