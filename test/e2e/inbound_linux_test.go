//go:build e2e && linux

package e2e

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/nat464/nat464-sidecar/test/lab/labgen"
)

// TestInbound: an outside IPv6 client reaches the IPv4-only app on 127.0.0.1 through the
// sidecar, and cannot reach it without the sidecar.
func TestInbound(t *testing.T) {
	requireLab(t)
	client, pod6, app := env(t, "LAB_NS_CLIENT"), env(t, "LAB_POD6"), env(t, "LAB_APP")
	viaSidecar := fmt.Sprintf("http://[%s]:%s/", pod6, inboundPort)
	appPort := app[strings.LastIndex(app, ":")+1:]

	t.Run("unreachable without sidecar", func(t *testing.T) {
		for _, url := range []string{viaSidecar, fmt.Sprintf("http://[%s]:%s/", pod6, appPort)} {
			if body, _, err := curl(t, client, "--max-time", "3", url); err == nil {
				t.Errorf("%s answered without the sidecar: %q", url, body)
			}
		}
	})

	requireBinary(t)
	startSidecar(t)
	t.Run("whoami", func(t *testing.T) {
		body, _, err := curl(t, client, viaSidecar)
		if err != nil {
			t.Fatal(err)
		}
		parseWhoami(t, body).check(t, "app", app, "127.0.0.1:")
	})
	t.Run("content", func(t *testing.T) {
		const n = 8 << 20
		body, _, err := curl(t, client, "--fail", fmt.Sprintf("%sgen?n=%d", viaSidecar, n))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprintf("%x", sha256.Sum256([]byte(body))), labgen.Sum(n); len(body) != n || got != want {
			t.Fatalf("got %d bytes sha256 %s, want %d bytes sha256 %s", len(body), got, n, want)
		}
	})
}

// TestProbes: the admin endpoints answer inside the pod, and /readyz names the NAT64 prefix
// that RFC 7050 discovery found (the lab starts in Well-Known Prefix mode).
func TestProbes(t *testing.T) {
	s := startSidecar(t)
	for _, tc := range []struct {
		path, contains string
	}{
		{"/livez", ""},
		{"/healthz", ""},
		{"/startupz", ""},
		{"/readyz", "64:ff9b::/96"},
		{"/metrics", "nat464_"},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			code, body := s.probe(tc.path)
			if code != http.StatusOK || !strings.Contains(body, tc.contains) {
				t.Errorf("GET %s = %d %q; want 200 containing %q", tc.path, code, body, tc.contains)
			}
		})
	}
}

// TestProbesFromOutside: kubelet probes the pod IP, which is IPv6 here, so the admin port must
// answer on the pod's address too.
func TestProbesFromOutside(t *testing.T) {
	startSidecar(t)
	for _, path := range []string{"/livez", "/readyz", "/startupz"} {
		body, _, err := curl(t, env(t, "LAB_NS_CLIENT"), "--fail", "http://["+env(t, "LAB_POD6")+"]:9464"+path)
		if err != nil {
			t.Errorf("GET %s from the client: %v (%q)", path, err, body)
		}
	}
}

// TestReadOnlyRoot: the sidecar runs with the root filesystem mounted read-only (as with
// readOnlyRootFilesystem: true), and both directions still work.
func TestReadOnlyRoot(t *testing.T) {
	roRoot := []string{"unshare", "--mount", "sh", "-c",
		`mount --make-rprivate / && mount -o remount,ro,bind / && exec "$@"`, "sh"}
	s := startSidecarWrapped(t, roRoot, nil,
		"--inbound", inboundPort+"="+env(t, "LAB_APP"), "--proxy-listen", proxyAddr)
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !rootReadOnly(string(mounts)) {
		t.Fatalf("the sidecar's root mount is not read-only:\n%s", mounts)
	}
	body, _, err := curl(t, env(t, "LAB_NS_CLIENT"), "http://["+env(t, "LAB_POD6")+"]:"+inboundPort+"/")
	if err != nil {
		t.Fatalf("inbound: %v", err)
	}
	parseWhoami(t, body).check(t, "app", env(t, "LAB_APP"), "127.0.0.1:")
	w, _ := podCurl(t, "--socks5-hostname", "http://v4only.example/")
	w.check(t, "v4srv", "", v4From)
}

// rootReadOnly reports whether the visible (last) mountinfo entry for "/" has the ro option.
func rootReadOnly(mountinfo string) bool {
	ro := false
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
			ro = f[5] == "ro" || strings.HasPrefix(f[5], "ro,")
		}
	}
	return ro
}
