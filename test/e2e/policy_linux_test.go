//go:build e2e && linux

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
	"github.com/nat464/nat464-sidecar/socks/sockstest"
)

// labPolicy denies a name that exists and works without it (dual.example), and the range of
// inside.example's only address, which the lab's zone puts in 203.0.113.0/24.
const labPolicy = `# the lab's egress policy
deny dual.example
deny 203.0.113.0/24
`

// policyFile writes body where the sidecar (uid 65532) can read it.
func policyFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(stateDir(t), "policy")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// exchangeIn sends req to the proxy from inside the pod and returns everything it answers
// until it closes.
func exchangeIn(t *testing.T, req []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialIn(ctx, env(t, "LAB_NS_POD"), "tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(8 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, got)
	}
	return got
}

func socks4aTo(host string, port uint16) []byte {
	req := binary.BigEndian.AppendUint16([]byte{4, 1}, port)
	if ip := net.ParseIP(host).To4(); ip != nil {
		return append(append(req, ip...), 0)
	}
	return append(append(append(req, 0, 0, 0, 1, 0), host...), 0)
}

// TestEgressPolicy: in the IPv6-only pod, with a policy file, allowed names work; a denied
// name, a name whose DNS answer lies in a denied range, the cloud metadata literal and the
// proxy's own port are each refused in every proxy protocol with its reply (SOCKS5 02, SOCKS4
// 91, HTTP 403 naming the rule for CONNECT and plain HTTP), without a single connection
// attempt (so no packet towards 169.254.169.254 ever leaves), and real clients see the same;
// SOCKS5 UDP datagrams to them are dropped.
func TestEgressPolicy(t *testing.T) {
	s := startSidecar(t, "--egress-policy", policyFile(t, labPolicy))
	pod := env(t, "LAB_NS_POD")
	for _, host := range []string{"v4only.example", "v6only.example"} {
		if body, _, err := curl(t, pod, "--socks5-hostname", proxyAddr, "http://"+host+"/"); err != nil || !strings.Contains(body, "server=") {
			t.Errorf("allowed %s: %q %v", host, body, err)
		}
	}
	attempts := func() float64 {
		_, body := s.probe("/metrics")
		return testnet.SumMetric(body, "nat464_eyeballs_attempts_total", "")
	}
	before := attempts()
	proxyPort := uint16(1080)
	for _, d := range []struct {
		name, host string
		port       uint16
		rule       string
	}{
		{"denied name", "dual.example", 80, `denied by rule "deny dual.example" (line 2)`},
		{"name answered inside a denied range", "inside.example", 80, `denied by rule "deny 203.0.113.0/24" (line 3)`},
		{"cloud metadata literal", "169.254.169.254", 80, `denied by rule "deny 169.254.0.0/16 (built-in)"`},
		{"the proxy's own port", "127.0.0.1", proxyPort, `denied by rule "deny self (built-in)"`},
	} {
		hp := net.JoinHostPort(d.host, fmt.Sprint(d.port))
		t.Run(d.name, func(t *testing.T) {
			if got, want := exchangeIn(t, sockstest.Connect5(d.host, d.port)), []byte{5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
				t.Errorf("SOCKS5: %v, want %v (REP 02)", got, want)
			}
			if got, want := exchangeIn(t, socks4aTo(d.host, d.port)), []byte{0, 91, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
				t.Errorf("SOCKS4a: %v, want %v (91)", got, want)
			}
			for _, req := range []string{
				"CONNECT " + hp + " HTTP/1.1\r\nHost: " + hp + "\r\n\r\n",
				"GET http://" + hp + "/ HTTP/1.1\r\nHost: " + hp + "\r\n\r\n",
			} {
				got := string(exchangeIn(t, []byte(req)))
				if !strings.HasPrefix(got, "HTTP/1.1 403 Forbidden\r\n") || !strings.Contains(got, d.rule) {
					t.Errorf("%s: %q, want 403 naming %s", strings.Fields(req)[0], got, d.rule)
				}
			}
		})
	}
	// Real clients.
	_, _, err := curl(t, pod, "--socks5-hostname", proxyAddr, "http://inside.example/")
	if m := socks5RepRE.FindStringSubmatch(fmt.Sprint(err)); m == nil || m[1] != "2" {
		t.Errorf("curl --socks5-hostname inside.example: %v, want SOCKS5 reply 2", err)
	}
	body, _, _ := curl(t, pod, "-x", "http://"+proxyAddr, "http://dual.example/")
	if !strings.Contains(body, `denied by rule "deny dual.example"`) {
		t.Errorf("curl -x http:// dual.example: %q, want the 403 body naming the rule", body)
	}
	_, _, err = curl(t, pod, "-p", "-x", "http://"+proxyAddr, "http://169.254.169.254/")
	if err == nil || !strings.Contains(err.Error(), "CONNECT tunnel failed, response 403") {
		t.Errorf("curl -p 169.254.169.254: %v, want CONNECT refused with 403", err)
	}
	// SOCKS5 UDP ASSOCIATE: an allowed name echoes, a denied one is dropped (PySocks times out).
	if out, err := podRun(t, "/usr/bin/python3", "-I", "-c", pysocksUDP, proxyAddr, "v4only.example:7"); err != nil {
		t.Errorf("UDP to an allowed name: %v\n%s", err, out)
	}
	for _, dst := range []string{"dual.example:7", "inside.example:7", "169.254.169.254:7"} {
		if out, err := podRun(t, "/usr/bin/python3", "-I", "-c", pysocksUDP, proxyAddr, dst); err == nil {
			t.Errorf("UDP to %s was answered: %s", dst, out)
		}
	}
	_, m0 := s.probe("/metrics")
	if n := testnet.SumMetric(m0, "nat464_loop_udp_associate_drops_total", `reason="policy"`); n != 3 {
		t.Errorf("udp_associate_drops_total{policy} = %v, want 3", n)
	}
	if after := attempts(); after != before {
		t.Errorf("eyeballs attempts_total went %v -> %v: a refused destination was connected", before, after)
	}
	_, m := s.probe("/metrics")
	for _, sel := range []string{`action="deny",rule="deny dual.example"`, `action="deny",rule="deny 203.0.113.0/24"`,
		`action="deny",rule="deny 169.254.0.0/16 (built-in)"`, `action="deny",rule="deny self (built-in)"`} {
		if n := testnet.SumMetric(m, "nat464_policy_decisions_total", sel); n < 4 {
			t.Errorf("decisions_total{%s} = %v, want at least 4 (one per protocol)", sel, n)
		}
	}
	if !strings.Contains(s.logs.String(), `msg="egress policy denied" protocol=socks5 dest=dual.example:80 rule="deny dual.example" line=2`) {
		t.Errorf("no INFO line for the refusal:\n%s", s.logs)
	}
}

// pyConnect is an IPv4-only Python client with no proxy setting: getaddrinfo(AF_INET),
// connect, send a request, and print what happened: the first bytes of the answer, or reset.
const pyConnect = `import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
try:
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    print("peer=%s:%d got=%r" % (addr[0], addr[1], s.recv(12)))
except ConnectionResetError:
    print("peer=%s:%d reset" % (addr[0], addr[1]))
`

// TestEgressPolicyTransparent: an app with no proxy setting reaches an allowed name through
// its egress address, and a connection to the egress address of a denied name, or of a name
// whose only address lies in a denied range, is reset at once.
func TestEgressPolicyTransparent(t *testing.T) {
	transparentPod(t)
	s := startTransparent(t, "--egress-policy", policyFile(t, labPolicy))
	for _, tc := range []struct{ host, want string }{
		{"v4only.example", "got=b'HTTP/1.1 200'"},
		{"dual.example", "reset"},
		{"inside.example", "reset"},
	} {
		start := time.Now()
		out, err := podRun(t, "python3", "-c", pyConnect, tc.host, "80")
		if err != nil {
			t.Errorf("%s: %v", tc.host, err)
			continue
		}
		if p := peerOf(t, out); !egressRange.Contains(p.Addr()) {
			t.Errorf("%s: connected to %s, not an egress address", tc.host, p)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: %q, want %s", tc.host, out, tc.want)
		}
		if el := time.Since(start); tc.want == "reset" && el > 3*time.Second {
			t.Errorf("%s: the reset took %v", tc.host, el)
		}
	}
	if logs := s.logs.String(); !strings.Contains(logs, `msg="egress policy denied" protocol=egress dest=dual.example`) ||
		!strings.Contains(logs, `rule="deny dual.example" line=2`) {
		t.Errorf("no INFO line for the egress refusal:\n%s", s.logs)
	}
}
