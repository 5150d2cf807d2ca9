package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEgressUDP: an app with no proxy setting resolves a name through the sidecar and sends
// UDP to the answer, as a statsd or syslog client does; the datagrams reach the IPv6-only name
// in order, the replies come back from the egress address and port, and the metrics, /readyz
// and the start-up log show it. A UDP port the app holds on 0.0.0.0 is left to it and counted;
// SIGTERM drains the egress sessions with the rest.
func TestEgressUDP(t *testing.T) {
	requireLinux(t)
	e := newEgressEnv(t)
	uport := uint16(udpEchoOn(t, "udp6", "[::1]:0"))
	held, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(freeUDPPort(t))}) // the app on 0.0.0.0:P
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hport := held.LocalAddr().(*net.UDPAddr).Port
	sc := e.start(t, "--egress-udp-ports", fmt.Sprintf("%d,%d", uport, hport), "--drain-timeout", "2s")
	sc.WaitLog(5*time.Second, "dns server listening", fmt.Sprintf("egress_udp_ports=\"[%d %d]\"", uport, hport))
	a := e.resolveA(t, "v6only.example")
	dst := netip.AddrPortFrom(a, uport)

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		c.WriteToUDPAddrPort([]byte(fmt.Sprint("metric:", i, "|c")), dst)
	}
	buf := make([]byte, 2048)
	for i := range 5 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if want := fmt.Sprint("metric:", i, "|c"); string(buf[:n]) != want || from != dst {
			t.Fatalf("reply %d: %q from %s, want %q from %s", i, buf[:n], from, want, dst)
		}
	}
	if v := sc.metric("nat464_udp_datagrams_total", `kind="egress"`); v != 10 {
		t.Errorf("egress datagrams = %v, want 5 each way", v)
	}
	if v := sc.metric("nat464_udp_sessions_total", `kind="egress"`); v != 1 {
		t.Errorf("egress sessions = %v, want 1", v)
	}
	if v := sc.metric("nat464_egress_listeners", `protocol="udp"`); v != 1 {
		t.Errorf("udp egress listeners = %v, want 1 (the held port left alone)", v)
	}
	if v := sc.metric("nat464_egress_port_conflicts_total", fmt.Sprintf(`port="%d",protocol="udp"`, hport)); v != 1 {
		t.Errorf("udp port conflicts = %v, want 1", v)
	}
	if !strings.Contains(sc.Logs.String(), "egress udp port is held by another socket") {
		t.Errorf("no warning about the held port:\n%s", sc.Logs)
	}
	if _, body := sc.Get("/readyz"); !strings.Contains(body, `"udp listeners":"ok"`) {
		t.Errorf("/readyz: %s", body)
	}
	// The held port reaches the app's own socket, not the sidecar.
	c.WriteToUDPAddrPort([]byte("to the app"), netip.AddrPortFrom(a, uint16(hport)))
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := held.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "to the app" {
		t.Errorf("the app's 0.0.0.0:%d socket got %q, %v", hport, buf[:n], err)
	}

	sc.Signal(syscall.SIGTERM)
	if code := sc.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	if !strings.Contains(sc.Logs.String(), "udp drained") {
		t.Errorf("no udp drained line:\n%s", sc.Logs)
	}
}

// TestEgressUDPPolicy: egress UDP obeys --egress-policy with no code of its own (the relay's
// Resolve is eyeballs.Dialer.Datagram): datagrams to the egress address of a denied name never
// reach it, the refusal is counted per rule and logged with the rule; an allowed name works.
func TestEgressUDPPolicy(t *testing.T) {
	requireLinux(t)
	e := newEgressEnv(t)
	e.up.AddAAAA("denied.example", time.Minute, "::1")
	uport := uint16(udpEchoOn(t, "udp6", "[::1]:0"))
	pol := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(pol, []byte("deny denied.example\n"), 0o644)
	sc := e.start(t, "--egress-udp-ports", fmt.Sprint(uport), "--egress-policy", pol)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	ok := netip.AddrPortFrom(e.resolveA(t, "v6only.example"), uport)
	c.WriteToUDPAddrPort([]byte("allowed"), ok)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, from, err := c.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "allowed" || from != ok {
		t.Fatalf("allowed name: %q from %s, %v", buf[:n], from, err)
	}
	bad := netip.AddrPortFrom(e.resolveA(t, "denied.example"), uport)
	c.WriteToUDPAddrPort([]byte("denied"), bad)
	sc.WaitLog(5*time.Second, `msg="egress policy denied" protocol=egress-udp dest=denied.example.:`+fmt.Sprint(uport)+` rule="deny denied.example" line=1`)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Errorf("a denied name answered %q", buf[:n])
	}
	if v := sc.metric("nat464_policy_decisions_total", `action="deny",rule="deny denied.example"`); v != 1 {
		t.Errorf("decisions_total{deny denied.example} = %v, want 1", v)
	}
	if v := sc.metric("nat464_udp_datagrams_total", `direction="in",kind="egress"`); v != 1 {
		t.Errorf("egress datagrams in = %v, want 1 (only the allowed one)", v)
	}
}
