//go:build e2e && linux

package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// socks5RepRE finds the SOCKS5 reply code curl reports for a refused CONNECT.
var socks5RepRE = regexp.MustCompile(`Can't complete SOCKS5 connection to \S+ \((\d+)\)`)

// TestProxyErrors: failed destinations get the right SOCKS5 reply code (SPEC-NOTES 5.3) or HTTP
// status, fast; nothing hangs until the client gives up.
func TestProxyErrors(t *testing.T) {
	requireBinary(t)
	const fast = 4 * time.Second // every case has a 2s dial timeout at most
	for _, tc := range []struct {
		name      string
		flags     []string // sidecar flags
		blackhole string   // lab env key of an address to blackhole
		url       string
		reps      []string // acceptable SOCKS5 REP codes
	}{
		{name: "NXDOMAIN is host unreachable", url: "http://nosuch.example/", reps: []string{"4"}},
		{name: "refused port is connection refused", url: "http://v6only.example:81/", reps: []string{"5"}},
		{name: "blackholed destination times out", flags: []string{"--dial-timeout", "2s"},
			blackhole: "LAB_V6SRV", url: "http://v6only.example/", reps: []string{"6", "4"}},
		{name: "IPv4 literal without NAT64 is network unreachable", flags: []string{"--nat64-prefix", "none"},
			url: "http://198.51.100.10/", reps: []string{"3"}},
		{name: "strict WKP refuses non-global IPv4", flags: []string{"--nat64-strict"},
			url: "http://198.51.100.10/", reps: []string{"2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.blackhole != "" {
				blackhole(t, env(t, tc.blackhole))
			}
			startSidecar(t, tc.flags...)
			flag := "--socks5-hostname"
			if strings.Contains(tc.url, "198.51.100.") {
				flag = "--socks5"
			}
			body, d, err := curl(t, env(t, "LAB_NS_POD"), flag, proxyAddr, tc.url)
			if err == nil {
				t.Fatalf("curl %s %s succeeded: %q", flag, tc.url, body)
			}
			m := socks5RepRE.FindStringSubmatch(err.Error())
			if m == nil || !slices.Contains(tc.reps, m[1]) {
				t.Errorf("curl %s %s: %v; want SOCKS5 reply code in %v", flag, tc.url, err, tc.reps)
			}
			if d >= fast {
				t.Errorf("failure took %v, want under %v", d, fast)
			}
		})
	}

	t.Run("http", func(t *testing.T) {
		startSidecar(t)
		pod := env(t, "LAB_NS_POD")
		for _, tc := range []struct {
			name string
			args []string
			want string // in curl's output or error
		}{
			{"GET in origin form to the proxy port is 400", []string{"-w", "%{http_code}", "http://" + proxyAddr + "/"}, "not a proxy request"},
			{"plain GET of NXDOMAIN is 502 with the reason", []string{"-w", "%{http_code}", "--proxy", "http://" + proxyAddr, "http://nosuch.example/"}, "NXDOMAIN"},
			{"CONNECT to NXDOMAIN is 5xx", []string{"--proxytunnel", "--proxy", "http://" + proxyAddr, "http://nosuch.example/"}, "CONNECT tunnel failed, response 5"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				body, d, err := curl(t, pod, tc.args...)
				if got := fmt.Sprintf("%s %v", body, err); !strings.Contains(got, tc.want) {
					t.Errorf("curl %v = %q; want %q in it", tc.args, got, tc.want)
				}
				if d >= fast {
					t.Errorf("took %v, want under %v", d, fast)
				}
			})
		}
	})
}
