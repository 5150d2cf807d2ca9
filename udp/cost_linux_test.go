//go:build linux

package udp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clientsEnv makes the test binary a client process (see TestHelperClients): "N ADDR".
const clientsEnv = "NAT464_UDP_TEST_CLIENTS"

// TestHelperClients is not a test: run as a subprocess with clientsEnv set, it opens N client
// sockets, gets one echo through ADDR on each (resending on loss), prints "ready", and holds
// them until its stdin closes. Clients live in their own process so that N client sockets and
// the relay's N session sockets each stay under the 20,000 open-file limit.
func TestHelperClients(t *testing.T) {
	spec := os.Getenv(clientsEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	var n int
	var addr string
	if _, err := fmt.Sscan(spec, &n, &addr); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort(addr)
	cs := make([]*net.UDPConn, n)
	for i := range cs {
		c, err := net.ListenUDP("udp6", nil)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
		c.WriteToUDPAddrPort([]byte("hello"), dst)
	}
	buf := make([]byte, 64)
	for _, c := range cs {
		for try := 0; ; try++ {
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
				break
			}
			if try == 10 {
				t.Fatal("no echo after 10 tries")
			}
			c.WriteToUDPAddrPort([]byte("hello"), dst)
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

// heapInUse is the live heap plus goroutine stacks after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// socketCount counts this process's open sockets (the subprocess's pipes are not sessions).
func socketCount() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestIdleSessionCost holds 10,000 idle sessions (clients in a subprocess) and measures what
// each costs the relay: at most 1 fd and 1 KiB of Go heap and stack on the epoll engine (the issue's
// target). The goroutine engine is measured at 1,000 sessions and only reported.
func TestIdleSessionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 sockets")
	}
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			n := 10_000
			if eng != "splice" {
				n = 1_000
			}
			e := newEcho(t, "127.0.0.1:0")
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng,
				MaxSessions: 2 * n})
			exchange(t, client(t, "udp6"), r.Addr(), []byte("warm")) // the loop's buffers, the first session
			fd0, heap0 := socketCount(), heapInUse()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClients$", "-test.v")
			cmd.Env = append(os.Environ(), clientsEnv+"="+strconv.Itoa(n)+" "+r.Addr().String())
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			ready := false
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "ready" {
					ready = true
					break
				}
			}
			if !ready {
				stdin.Close()
				cmd.Wait()
				t.Fatal("client process failed")
			}
			fds, heap := socketCount()-fd0, int64(heapInUse())-int64(heap0)
			active := r.Active()
			stdin.Close()
			go io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			if active != n+1 {
				t.Fatalf("%d sessions, want %d", active, n+1)
			}
			perFD, perByte := float64(fds)/float64(n), float64(heap)/float64(n)
			t.Logf("%s: %d idle sessions: %.2f fds and %.0f B of Go heap and stack each", eng, n, perFD, perByte)
			if eng == "splice" && (perFD > 1 || perByte > 1024) {
				t.Errorf("an idle session costs %.2f fds and %.0f B, want at most 1 fd and 1 KiB", perFD, perByte)
			}
		})
	}
}

// TestIdleListenerCost opens 1,000 egress relays (Resolve set: the goroutine engine), as
// transparent egress does for every name and UDP port, and holds each to 1 fd and 16 KiB of Go
// heap and stack while idle: a listener's reader holds no datagram buffer while it waits.
func TestIdleListenerCost(t *testing.T) {
	checkLeaks(t)
	const n = 1_000
	never := func(context.Context) (netip.AddrPort, error) { return netip.AddrPort{}, errors.New("unused") }
	fd0, heap0 := socketCount(), heapInUse()
	for range n {
		startRelay(t, Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Resolve: never, Kind: KindEgress})
	}
	fds, heap := socketCount()-fd0, int64(heapInUse())-int64(heap0)
	perFD, perByte := float64(fds)/n, float64(heap)/n
	t.Logf("%d idle egress listeners: %.2f fds and %.0f B of Go heap and stack each", n, perFD, perByte)
	if perFD > 1 || perByte > 16<<10 {
		t.Errorf("an idle listener costs %.2f fds and %.0f B, want at most 1 fd and 16 KiB", perFD, perByte)
	}
}
