//go:build e2e && linux

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// pyStatsd is an IPv4-only UDP sender like a statsd or syslog client: getaddrinfo(AF_INET,
// SOCK_DGRAM), a connected socket, 20 datagrams, then the echo server's 20 replies, which must
// come back in order (the connected socket takes them only from the address it sent to).
const pyStatsd = `import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(addr)
sent = [("app.requests:%d|c" % i).encode() for i in range(20)]
for m in sent:
    s.send(m)
got = [s.recv(65535) for _ in sent]
print("peer=%s:%d echo=%s" % (addr[0], addr[1], "ok" if got == sent else "bad %r" % got))
`

// TestEgressUDP: apps in the pod with no proxy setting send UDP to IPv4-only and IPv6-only
// names through egress addresses (--egress-udp-ports): a statsd-style sender to the lab's UDP
// echo, and an HTTP/3 client (quic-go) that makes a QUIC connection and three requests on it.
func TestEgressUDP(t *testing.T) {
	transparentPod(t)
	podSysctl(t, "net.ipv4.ip_unprivileged_port_start", "7") // the lab's UDP echo port
	startQUIC(t)
	s := startTransparent(t, "--egress-udp-ports", "7,443", "--udp-idle-timeout", "2s") // (the drain waits for the sessions)
	pod := "[" + env(t, "LAB_POD6") + "]:"
	for _, tc := range []struct{ host, server, from string }{
		{"v4only.example", "v4srv", v4From},
		{"v6only.example", "v6srv", pod},
	} {
		t.Run("statsd "+tc.host, func(t *testing.T) {
			out, err := podRun(t, "python3", "-c", pyStatsd, tc.host, "7")
			if err != nil {
				t.Fatalf("python: %v (%q)", err, out)
			}
			if p := peerOf(t, out); !strings.Contains(out, "echo=ok") || !egressRange.Contains(p.Addr()) || p.Port() != 7 {
				t.Errorf("python: %q", out)
			}
		})
		t.Run("http3 "+tc.host, func(t *testing.T) {
			out, err := podRun(t, quicBin(t), "get", "-ca", env(t, "LAB_CA_PEM"), "-n", "3", "https://"+tc.host+"/")
			if err != nil {
				t.Fatalf("quic get: %v (%q)", err, out)
			}
			if p := peerOf(t, out); !egressRange.Contains(p.Addr()) || p.Port() != 443 {
				t.Errorf("the HTTP/3 client sent to %s, not an egress address", p)
			}
			if !strings.Contains(out, "h3 "+tc.server+" client="+tc.from) {
				t.Errorf("quic get printed %q; want %s to see the client from %s", out, tc.server, tc.from)
			}
		})
	}
	_, body := s.probe("/metrics")
	if n := testnet.SumMetric(body, "nat464_udp_sessions_total", `kind="egress"`); n != 4 {
		t.Errorf("egress udp sessions = %v, want 4 (one per client socket)", n)
	}
	if n := testnet.SumMetric(body, "nat464_udp_drops_total", `kind="egress"`); n != 0 {
		t.Errorf("egress udp drops = %v, want none", n)
	}
}

var quicTool struct {
	once sync.Once
	path string
	err  error
}

// quicBin builds test/lab/quic (its own module, with quic-go) once.
func quicBin(t *testing.T) string {
	t.Helper()
	quicTool.once.Do(func() {
		dir, _ := filepath.Abs("../lab/quic")
		quicTool.path = filepath.Join(suite.dir, "quic")
		quicTool.err = goBuild(dir, quicTool.path, ".")
	})
	if quicTool.err != nil {
		t.Fatal(quicTool.err)
	}
	return quicTool.path
}

// startQUIC runs the HTTP/3 server on the IPv4-only and the IPv6-only server hosts, port 443
// over UDP (HTTPS keeps 443 over TCP), with the lab's certificate, until the test ends.
func startQUIC(t *testing.T) {
	t.Helper()
	tls := filepath.Dir(env(t, "LAB_CA_PEM"))
	for _, h := range []struct{ ns, name, listen string }{
		{env(t, "LAB_NS_V4SRV"), "v4srv", env(t, "LAB_V4SRV") + ":443"},
		{env(t, "LAB_NS_V6SRV"), "v6srv", "[" + env(t, "LAB_V6SRV") + "]:443"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		srv := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns, quicBin(t), "serve", "-name", h.name,
			"-listen", h.listen, "-cert", filepath.Join(tls, "server.pem"), "-key", filepath.Join(tls, "server-key.pem"))
		srv.Env = cleanEnv()
		if err := srv.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); srv.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := run(context.Background(), h.ns, "ss", "-Hulnp")
			if strings.Contains(out, ":443") && strings.Contains(out, "quic") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the HTTP/3 server on %s did not start listening", h.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
