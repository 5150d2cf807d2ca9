//go:build e2e && linux

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLab checks the lab itself with plain tools (no sidecar): the pod is IPv6-only with a
// Kubernetes resolv.conf, DNS64 synthesizes with the mode's prefix, NAT64 carries hand-made
// addresses, the other prefix is not reachable, and blackholes drop traffic until removed.
func TestLab(t *testing.T) {
	requireLab(t)
	pod := env(t, "LAB_NS_POD")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(ctx, pod, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("pod has IPv4 on loopback only", func(t *testing.T) {
		for _, line := range strings.Split(strings.TrimSpace(must(t, "ip", "-4", "-o", "addr")), "\n") {
			if !strings.Contains(line, " lo ") {
				t.Errorf("IPv4 address outside loopback: %s", line)
			}
		}
		if out, err := run(ctx, pod, "curl", "-sS", "--max-time", "2", "http://"+env(t, "LAB_V4SRV")+"/"); err == nil {
			t.Errorf("pod reached the IPv4 server natively: %q", out)
		}
	})
	t.Run("pod resolv.conf is the Kubernetes one", func(t *testing.T) {
		rc := must(t, "cat", "/etc/resolv.conf")
		for _, want := range []string{"search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5", "nameserver " + env(t, "LAB_DNS6")} {
			if !strings.Contains(rc, want) {
				t.Errorf("pod /etc/resolv.conf lacks %q:\n%s", want, rc)
			}
		}
	})

	for _, tc := range []struct {
		mode, prefix, other string
	}{
		{"wkp", "64:ff9b::", "2001:db8:64::"},
		{"nsp", "2001:db8:64::", "64:ff9b::"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if tc.mode != "wkp" {
				labMode(t, tc.mode)
			}
			for _, q := range []struct{ name, want string }{
				{"v4only.example", tc.prefix + "c633:640a"},
				{"ipv4only.arpa", tc.prefix + "c000:aa"},
				{"legacy", tc.prefix + "c633:640a"},
				{"web", env(t, "LAB_V6SRV")},
				{"dual.example", env(t, "LAB_DS6")},
			} {
				if out := must(t, "dig", "+search", "+short", "AAAA", q.name); !strings.Contains(out, q.want) {
					t.Errorf("dig AAAA %s in the pod = %q, want %s", q.name, out, q.want)
				}
			}
			body := must(t, "curl", "-sS", "--max-time", "5", "http://["+tc.prefix+env(t, "LAB_V4SRV")+"]/")
			parseWhoami(t, body).check(t, "v4srv", env(t, "LAB_V4SRV")+":80", v4From)
			if out, err := run(ctx, pod, "curl", "-sS", "--max-time", "2", "http://["+tc.other+env(t, "LAB_V4SRV")+"]/"); err == nil {
				t.Errorf("%s mode: the pod reached the other prefix %s: %q", tc.mode, tc.other, out)
			}
		})
	}

	t.Run("blackhole", func(t *testing.T) {
		url := "http://[" + env(t, "LAB_V6SRV") + "]/"
		t.Run("on", func(t *testing.T) {
			blackhole(t, env(t, "LAB_V6SRV"))
			if out, err := run(ctx, pod, "curl", "-sS", "--max-time", "1", url); err == nil {
				t.Errorf("blackholed address answered: %q", out)
			}
		})
		must(t, "curl", "-sS", "--max-time", "5", url)
	})
}
