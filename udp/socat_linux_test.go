//go:build linux

package udp

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startSocat runs `socat UDP6-LISTEN:PORT,fork UDP4:TARGET` on [::1] (a child process per
// client, the usual userspace UDP forwarder) for BenchmarkRelay, if socat is installed. Its
// process group is killed at the end.
func startSocat(b *testing.B, target netip.AddrPort) (netip.AddrPort, bool) {
	bin, err := exec.LookPath("socat")
	if err != nil {
		return netip.AddrPort{}, false
	}
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		b.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	cmd := exec.Command(bin, "-T", "30", "UDP6-LISTEN:"+strconv.Itoa(port)+",bind=[::1],fork,reuseaddr", "UDP4:"+target.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // socat and its forked children
		cmd.Wait()
	})
	dst := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port))
	c := client(b, "udp6")
	buf := make([]byte, 16)
	for range 100 { // until socat listens
		c.WriteToUDPAddrPort([]byte("up?"), dst)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return dst, true
		}
	}
	b.Fatal("socat did not answer")
	return dst, false
}
