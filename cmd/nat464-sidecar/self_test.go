package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/socks/sockstest"
)

// chainSOCKS5 CONNECTs from the proxy to host:port again and again on one connection, up to
// hops times, for as long as each hop succeeds. It returns how many succeeded and the REP of
// the one that did not.
func chainSOCKS5(t *testing.T, proxy, host string, port uint16, hops int) (int, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rep := make([]byte, 12)
	for i := range hops {
		if _, err := c.Write(sockstest.Connect5(host, port)); err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, rep); err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if rep[3] != 0 {
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the refusal: read %d, %v; want EOF", n, err)
			}
			return i, rep[3]
		}
	}
	return hops, 0
}

// TestProxyRefusesItself drives the binary: a chain of CONNECTs from the proxy to its own port
// (today's 200-deep loop) is refused at the first hop, as are the same by name and CONNECTs to
// the inbound and admin ports; each is counted and logged, and the fds return to baseline.
func TestProxyRefusesItself(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := newProxyFixture(t, eng)
			ap := netip.MustParseAddrPort(f.proxyAddr)
			f.s.WaitLog(5*time.Second, `msg="inbound listening"`) // stderr lags /startupz
			m := regexp.MustCompile(`msg="inbound listening" listen=\[::1\]:(\d+)`).FindStringSubmatch(f.s.Logs.String())
			if m == nil {
				t.Fatalf("no inbound listening line:\n%s", f.s.Logs)
			}
			inbound, _ := strconv.Atoi(m[1])
			admin := netip.MustParseAddrPort(f.s.Admin)
			base := settle(2*time.Second, 0, f.s.fds)

			refused := 0
			for _, hop := range []struct {
				host string
				port uint16
			}{
				{"127.0.0.1", ap.Port()},
				{"app.test", ap.Port()}, // by name: the hosts file says 127.0.0.1
				{"::ffff:127.0.0.1", ap.Port()},
				{"::1", uint16(inbound)},
				{"::1", admin.Port()},
				{"127.0.0.1", admin.Port()}, // the admin server's [::1] does not take IPv4: not itself
			} {
				n, rep := chainSOCKS5(t, f.proxyAddr, hop.host, hop.port, 200)
				want := byte(2)
				if hop.host == "127.0.0.1" && hop.port == admin.Port() {
					want = 5 // connection refused: nothing listens there
				} else {
					refused++
				}
				if n != 0 || rep != want {
					t.Errorf("%s:%d: %d hops succeeded, then REP %02x; want REP %02x at the first", hop.host, hop.port, n, rep, want)
				}
			}

			c, err := net.Dial("tcp", f.proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", f.proxyAddr)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("HTTP CONNECT to the proxy itself: %v %v, want 403", resp, err)
			}
			c.Close()
			refused++

			if got := f.s.metric("nat464_loop_rejects_total", `reason="self"`); got != float64(refused) {
				t.Errorf("rejects_total{self} = %v, want %d", got, refused)
			}
			const warn = `level=WARN msg="proxy request refused: the destination is the sidecar itself"`
			if n := waitCount(2*time.Second, refused, func() int { return strings.Count(f.s.Logs.String(), warn) }); n != refused {
				t.Errorf("%d WARN lines for the refusals, want %d:\n%s", n, refused, f.s.Logs)
			}
			if got := settle(5*time.Second, base, f.s.fds); got > base {
				t.Errorf("%d fds open after the refusals, %d before", got, base)
			}
		})
	}
}

// waitCount polls f for up to d until it reaches want, for counts that arrive through the logs'
// pipe after the reply the test saw.
func waitCount(d time.Duration, want int, f func() int) int {
	return pollInt(d, f, func(v int) bool { return v >= want })
}
