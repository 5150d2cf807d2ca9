package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pysocksUDP is an independent SOCKS5 UDP client: PySocks (Debian's python3-socks), which
// associates on its first sendto, sends each name with ATYP 03 (rdns) and prints what comes
// back with the source the relay's header names. Run with -I so that the repository's socks/
// directory cannot shadow the module.
const pysocksUDP = `
import socket, sys
import socks
proxy_port = int(sys.argv[1])
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy_port, rdns=True)
s.settimeout(5)
for arg in sys.argv[2:]:
    host, port = arg.rsplit(":", 1)
    s.sendto(("hello " + host).encode(), (host, int(port)))
    data, src = s.recvfrom(65535)
    print(data.decode(), src[0], src[1])
s.close()
`

// udpEchoOn echoes datagrams on network at addr until the test ends.
func udpEchoOn(t *testing.T, network, addr string) int {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], src)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestProxyUDPAssociatePySocks: PySocks reaches an IPv6-only and an IPv4-only UDP echo by name
// and an IPv4 literal through the real binary's UDP ASSOCIATE, on every way the binary runs
// its proxy port; when the client closes, the association ends.
func TestProxyUDPAssociatePySocks(t *testing.T) {
	requireLinux(t)
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-I", "-c", "import socks").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s has no socks module (Debian's python3-socks): %v", py, err)
		}
		t.Skipf("SKIPPING: %s has no socks module (Debian's python3-socks): %v", py, err)
	}
	p6 := udpEchoOn(t, "udp6", "[::1]:0")
	p4 := udpEchoOn(t, "udp4", "127.0.0.1:0")
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 v4only.test\n::1 v6only.test\n"), 0o644)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver ::1\noptions timeout:1 attempts:1\n"), 0o644)
	for _, v := range proxyVariants() {
		t.Run(strings.Join(v, " "), func(t *testing.T) {
			port := freePort(t)
			args := append([]string{"--engine", v[0], "--proxy-listen", fmt.Sprintf("127.0.0.1:%d", port),
				"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)),
				"--hosts-file", hosts, "--resolv-conf", resolv, "--nat64-prefix", "none"}, v[1:]...)
			s := startSidecar(t, args...)
			out, err := exec.Command(py, "-I", "-c", pysocksUDP, fmt.Sprint(port),
				fmt.Sprintf("v6only.test:%d", p6), fmt.Sprintf("v4only.test:%d", p4), fmt.Sprintf("127.0.0.1:%d", p4)).CombinedOutput()
			if err != nil {
				t.Fatalf("pysocks: %v\n%s", err, out)
			}
			want := fmt.Sprintf("hello v6only.test ::1 %d\nhello v4only.test 127.0.0.1 %d\nhello 127.0.0.1 127.0.0.1 %d\n", p6, p4, p4)
			if string(out) != want {
				t.Errorf("pysocks printed\n%s\nwant\n%s", out, want)
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.metric("nat464_loop_flows_active", `kind="udp_associate"`) != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := s.metric("nat464_loop_flows_active", `kind="udp_associate"`); n != 0 {
				t.Errorf("flows_active{udp_associate} = %v after the client closed, want 0", n)
			}
			if n := s.metric("nat464_loop_udp_associate_datagrams_total", `direction="down"`); n != 3 {
				t.Errorf("datagrams_total{down} = %v, want 3", n)
			}
		})
	}
}
