package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The inbound UDP benchmark (issue 15): request/response datagrams through
// the sidecar's --inbound-udp on both engines, against the clients talking to
// the app directly and against socat UDP6-LISTEN,fork, in one run; then the
// memory and fds an idle session costs the sidecar. The app is a UDP echo
// server in this process; every client keeps one datagram in flight and
// sends a lost one again.

// UDPRow is one contender's figures for one load.
type UDPRow struct {
	Contender   string
	Size        int // payload bytes
	Sessions    int
	Datagrams   uint64 // relayed, both directions
	Seconds     float64
	P50, P99    time.Duration
	Lost        uint64
	CPUUsPerDgm float64 // the contender's CPU per datagram (-1 when not measured)
}

// udpContender starts one way of reaching the app and returns the address
// clients send to and a stop function.
type udpContender struct {
	name  string
	start func(app netip.AddrPort) (dst netip.AddrPort, pid int, stop func(), err error)
}

func cmdUDP(args []string) error {
	fs := flag.NewFlagSet("udp", flag.ExitOnError)
	sidecar := fs.String("sidecar", "", "path of the nat464-sidecar binary")
	dur := fs.Duration("duration", 3*time.Second, "measured duration per load")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "warm-up per load, not measured")
	idle := fs.Int("idle", 10000, "idle sessions held for the memory test (0 skips it)")
	fs.Parse(args)
	if *sidecar == "" {
		return errors.New("bench: udp: -sidecar is required")
	}
	app, stopApp, err := udpEcho()
	if err != nil {
		return err
	}
	defer stopApp()
	cs := []udpContender{{name: "direct", start: func(app netip.AddrPort) (netip.AddrPort, int, func(), error) {
		return app, 0, func() {}, nil
	}}}
	for _, eng := range []string{"splice", "goroutine"} {
		cs = append(cs, udpContender{name: "sidecar-" + eng, start: sidecarUDP(*sidecar, eng)})
	}
	cs = append(cs, udpContender{name: "sidecar-egress", start: sidecarEgressUDP(*sidecar)})
	if bin := lookBin("socat"); bin != "" {
		cs = append(cs, udpContender{name: "socat", start: socatUDP(bin)})
	} else {
		fmt.Println("socat: skipped (not installed)")
	}
	fmt.Println("| contender | payload | sessions | datagrams/s | Gbit/s | p50 | p99 | lost | CPU us/datagram |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, c := range cs {
		dst, pid, stop, err := c.start(app)
		if err != nil {
			fmt.Printf("%s: %v\n", c.name, err)
			continue
		}
		for _, size := range []int{64, 1400} {
			for _, sessions := range []int{1, 64} {
				r := udpLoad(dst, pid, size, sessions, *warmup, *dur)
				r.Contender = c.name
				fmt.Println(r.markdown())
			}
		}
		stop()
	}
	if *idle > 0 && procSupported {
		for _, eng := range []string{"splice", "goroutine"} {
			if err := udpIdle(*sidecar, eng, app, *idle); err != nil {
				fmt.Printf("idle sidecar-%s: %v\n", eng, err)
			}
		}
	}
	return nil
}

func (r UDPRow) markdown() string {
	rate := float64(r.Datagrams) / r.Seconds
	cpu := "-"
	if r.CPUUsPerDgm >= 0 {
		cpu = fmt.Sprintf("%.2f", r.CPUUsPerDgm)
	}
	return fmt.Sprintf("| %s | %d B | %d | %.0f | %.3f | %v | %v | %d | %s |", r.Contender, r.Size, r.Sessions, rate,
		rate*float64(r.Size)*8/1e9, r.P50, r.P99, r.Lost, cpu)
}

// udpEcho is the app: a UDP echo server on 127.0.0.1.
func udpEcho() (netip.AddrPort, func(), error) {
	return udpEchoAt("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

// udpEchoAt is a UDP echo server on addr.
func udpEchoAt(network string, addr *net.UDPAddr) (netip.AddrPort, func(), error) {
	c, err := net.ListenUDP(network, addr)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), func() { c.Close(); wg.Wait() }, nil
}

// freeUDP6 is a UDP port that was free on [::1] a moment ago.
func freeUDP6() (int, error) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// startUDPChild runs argv in its own process group and waits until an echo
// comes back through dst.
func startUDPChild(argv []string, dst netip.AddrPort) (int, func(), error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childAttr()
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // the sidecar logs each listener; not wanted in the table
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // it and what it forked
		cmd.Wait()
	}
	network := "udp6"
	if dst.Addr().Is4() {
		network = "udp4"
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		stop()
		return 0, nil, err
	}
	defer c.Close()
	if !udpWarm(c, dst, 100) {
		stop()
		return 0, nil, errNotReady
	}
	return cmd.Process.Pid, stop, nil
}

func sidecarUDP(bin, engine string) func(netip.AddrPort) (netip.AddrPort, int, func(), error) {
	return func(app netip.AddrPort) (netip.AddrPort, int, func(), error) {
		port, err := freeUDP6()
		if err != nil {
			return netip.AddrPort{}, 0, nil, err
		}
		tcp, err := listenPairPort()
		if err != nil {
			return netip.AddrPort{}, 0, nil, err
		}
		dst := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port))
		pid, stop, err := startUDPChild([]string{bin, "--engine", engine, "--proxy-listen", "off", "--admin-listen", "off",
			"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", tcp), "--inbound-udp", fmt.Sprintf("%s=%s", dst, app),
			"--max-conns", "30000", "--udp-max-sessions", "30000"}, dst)
		return dst, pid, stop, err
	}
}

// sidecarEgressUDP is egress UDP (--egress-udp-ports): the clients send to an
// egress address, which the sidecar's hosts file gives to benchName (a static
// egress name); each session looks the name up at the bench DNS server (AAAA
// ::1, the native address first) and relays to an echo server on [::1] at the
// same port. The app echo is not used: the name's server is this one.
func sidecarEgressUDP(bin string) func(netip.AddrPort) (netip.AddrPort, int, func(), error) {
	return func(netip.AddrPort) (netip.AddrPort, int, func(), error) {
		fail := func(err error) (netip.AddrPort, int, func(), error) { return netip.AddrPort{}, 0, nil, err }
		server, stopServer, err := udpEchoAt("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			return fail(err)
		}
		ns := &NameServer{}
		dnsAddr, err := ns.Start()
		if err != nil {
			stopServer()
			return fail(err)
		}
		dir, err := os.MkdirTemp("", "bench-egress-udp-")
		cleanup := func() { ns.Close(); stopServer(); os.RemoveAll(dir) }
		if err != nil {
			cleanup()
			return fail(err)
		}
		rc, hf := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "hosts")
		err = errors.Join(os.WriteFile(rc, []byte("nameserver "+dnsAddr+"\n"), 0o644),
			os.WriteFile(hf, []byte(egressAddr+" "+benchName+"\n"), 0o644))
		tcp, perr := listenPairPort()
		if err = errors.Join(err, perr); err != nil {
			cleanup()
			return fail(err)
		}
		dst := netip.AddrPortFrom(netip.MustParseAddr(egressAddr), server.Port())
		pid, stop, err := startUDPChild([]string{bin, "--proxy-listen", "off", "--admin-listen", "off",
			"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", tcp), "--resolv-conf", rc, "--hosts-file", hf,
			"--nat64-prefix", "none", "--egress-ports", strconv.Itoa(tcp), "--egress-udp-ports", strconv.Itoa(int(server.Port())),
			"--max-conns", "30000", "--udp-max-sessions", "30000"}, dst)
		if err != nil {
			cleanup()
			return fail(err)
		}
		return dst, pid, func() { stop(); cleanup() }, nil
	}
}

// listenPairPort is a free TCP port on [::1] for the sidecar's (unused)
// TCP inbound mapping, which otherwise defaults to [::]:8080.
func listenPairPort() (int, error) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func socatUDP(bin string) func(netip.AddrPort) (netip.AddrPort, int, func(), error) {
	return func(app netip.AddrPort) (netip.AddrPort, int, func(), error) {
		port, err := freeUDP6()
		if err != nil {
			return netip.AddrPort{}, 0, nil, err
		}
		dst := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port))
		pid, stop, err := startUDPChild([]string{bin, "-T", "60", "UDP6-LISTEN:" + strconv.Itoa(port) + ",bind=[::1],fork,reuseaddr",
			"UDP4:" + app.String()}, dst)
		return dst, pid, stop, err
	}
}

// udpWarm gets one echo through dst, sending again up to tries times (socat
// may lose a new client's first datagram while it forks).
func udpWarm(c *net.UDPConn, dst netip.AddrPort, tries int) bool {
	buf := make([]byte, 16)
	for range tries {
		c.WriteToUDPAddrPort([]byte("warm"), dst)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return true
		}
	}
	return false
}

// udpLoad runs sessions clients, one datagram in flight each, for warmup
// plus dur, and measures the dur window.
func udpLoad(dst netip.AddrPort, pid, size, sessions int, warmup, dur time.Duration) UDPRow {
	row := UDPRow{Size: size, Sessions: sessions, CPUUsPerDgm: -1}
	network := "udp6"
	if dst.Addr().Is4() {
		network = "udp4"
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmup+dur)
	defer cancel()
	var measuring atomic.Bool
	var rts, lost atomic.Uint64
	hists := make([]Hist, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		c, err := net.ListenUDP(network, nil)
		if err != nil {
			continue
		}
		if !udpWarm(c, dst, 50) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			p, buf := make([]byte, size), make([]byte, 65535)
			for ctx.Err() == nil {
				t0 := time.Now()
				c.WriteToUDPAddrPort(p, dst)
				c.SetReadDeadline(t0.Add(200 * time.Millisecond))
				_, _, err := c.ReadFromUDPAddrPort(buf)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					lost.Add(1)
					continue
				}
				rts.Add(1)
				hists[i].Record(time.Since(t0))
			}
		}()
	}
	time.Sleep(warmup)
	cpu0 := treeCPU(pid)
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	row.Seconds = time.Since(t0).Seconds()
	cpu1 := treeCPU(pid)
	n := rts.Load()
	cancel()
	wg.Wait()
	var h Hist
	for i := range hists {
		h.Merge(&hists[i])
	}
	row.Datagrams, row.Lost = 2*n, lost.Load()
	row.P50, row.P99 = h.Quantile(0.5), h.Quantile(0.99)
	if pid > 0 && cpu0 >= 0 && cpu1 >= 0 && n > 0 {
		row.CPUUsPerDgm = (cpu1 - cpu0) / float64(2*n) * 1e6
	}
	return row
}

// treeCPU is the CPU seconds of pid's process tree, -1 if unknown.
func treeCPU(pid int) float64 {
	if pid <= 0 || !procSupported {
		return -1
	}
	s, err := sampleTree(pid)
	if err != nil {
		return -1
	}
	return s.CPUSeconds
}

// udpIdle holds n idle sessions through a fresh sidecar and reports what
// each costs its process: resident memory and fds.
func udpIdle(bin, engine string, app netip.AddrPort, n int) error {
	dst, pid, stop, err := sidecarUDP(bin, engine)(app)
	if err != nil {
		return err
	}
	defer stop()
	before, err := sampleTree(pid)
	if err != nil {
		return err
	}
	cs := make([]*net.UDPConn, 0, n)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range n {
		c, err := net.ListenUDP("udp6", nil)
		if err != nil {
			return err
		}
		cs = append(cs, c)
		if !udpWarm(c, dst, 20) {
			return fmt.Errorf("session %d: %w", len(cs), errNotEstablished)
		}
	}
	time.Sleep(500 * time.Millisecond)
	after, err := sampleTree(pid)
	if err != nil {
		return err
	}
	fmt.Printf("idle sidecar-%s: %d sessions: %.2f fds and %.2f KiB RSS (%.2f KiB PSS) per session\n", engine, n,
		float64(after.FDs-before.FDs)/float64(n), float64(after.RSSKiB-before.RSSKiB)/float64(n),
		float64(after.PSSKiB-before.PSSKiB)/float64(n))
	return nil
}
