//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// pysocksUDP associates through the proxy with PySocks (Debian's python3-socks), sends one
// datagram to each HOST:PORT argument (names as ATYP 03) and prints each echo with the source
// the relay's header names.
const pysocksUDP = `
import socket, sys
import socks
host, port = sys.argv[1].rsplit(":", 1)
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, host, int(port), rdns=True)
s.settimeout(5)
for arg in sys.argv[2:]:
    dst, dport = arg.rsplit(":", 1)
    s.sendto(("hello " + dst).encode(), (dst, int(dport)))
    data, src = s.recvfrom(65535)
    print(data.decode(), src[0], src[1])
s.close()
`

// TestUDPAssociate: an unprivileged client in the IPv6-only pod associates with PySocks and
// reaches the IPv4-only server's UDP echo by name (DNS64 answer, NAT64; the echo is reported
// from the server's IPv4 address) and the IPv6-only server's by name (natively); when the
// client closes, the association ends.
func TestUDPAssociate(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-I", "-c", "import socks").Run() != nil {
		t.Fatal("Debian's python3-socks is missing: run test/lab/deps.sh")
	}
	s := startSidecar(t)
	out, err := podRun(t, "/usr/bin/python3", "-I", "-c", pysocksUDP, proxyAddr, "v4only.example:7", "v6only.example:7")
	if err != nil {
		t.Fatalf("pysocks: %v\n%s", err, out)
	}
	want := fmt.Sprintf("hello v4only.example %s 7\nhello v6only.example %s 7\n", env(t, "LAB_V4SRV"), env(t, "LAB_V6SRV"))
	if out != want {
		t.Errorf("pysocks printed\n%s\nwant\n%s", out, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, body := s.probe("/metrics")
		total := testnet.SumMetric(body, "nat464_loop_flows_total", `kind="udp_associate"`)
		active := testnet.SumMetric(body, "nat464_loop_flows_active", `kind="udp_associate"`)
		if total == 1 && active == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("udp_associate flows: %v total, %v active; want 1 and 0 once the client closed", total, active)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
