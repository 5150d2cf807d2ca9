package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// udpEcho serves a UDP echo on 127.0.0.1 and returns its address.
func udpEcho(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c.LocalAddr().String()
}

// freeUDPPort returns a UDP port that was free on [::1] a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// udpRoundTrip sends p from c to dst and waits for the echo; ok is false after d without one.
func udpRoundTrip(c *net.UDPConn, dst netip.AddrPort, p string, d time.Duration) (string, bool) {
	c.WriteToUDPAddrPort([]byte(p), dst)
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	return string(buf[:n]), err == nil
}

// The binary relays --inbound-udp on both engines: datagrams both ways, the start-up log line,
// the udp metrics and the /readyz check; on SIGTERM an existing session keeps working until the
// drain timeout while a new client gets nothing, then the process exits 0.
func TestInboundUDP(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			app := udpEcho(t)
			dst := netip.AddrPortFrom(netip.IPv6Loopback(), freeUDPPort(t))
			s := &proc{startSidecar(t, "--engine", eng, "--proxy-listen", "off", "--drain-timeout", "2s",
				"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)),
				"--inbound-udp", fmt.Sprintf("%s=%s", dst, app)).Sidecar, t}
			s.WaitLog(5*time.Second, "inbound udp listening", dst.String())
			c, err := net.ListenUDP("udp6", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range 5 {
				if got, ok := udpRoundTrip(c, dst, fmt.Sprint("ping ", i), 5*time.Second); !ok || got != fmt.Sprint("ping ", i) {
					t.Fatalf("round trip %d: %q %v", i, got, ok)
				}
			}
			if v := s.metric("nat464_udp_datagrams_total", `direction="out"`); v != 5 {
				t.Errorf("datagrams out = %v, want 5", v)
			}
			if v := s.metric("nat464_udp_sessions_active", ""); v != 1 {
				t.Errorf("sessions active = %v, want 1", v)
			}
			_, body := s.Get("/metrics")
			for _, f := range []string{"nat464_udp_sessions_total", "nat464_udp_bytes_total", "nat464_udp_drops_total"} {
				if !strings.Contains(body, "# TYPE "+f+" ") {
					t.Errorf("/metrics lacks %s", f)
				}
			}
			if _, body := s.Get("/readyz"); !strings.Contains(body, `"udp listeners":"ok"`) {
				t.Errorf("/readyz: %s", body)
			}
			s.Signal(syscall.SIGTERM)
			s.WaitLog(5*time.Second, "draining")
			if got, ok := udpRoundTrip(c, dst, "during drain", 5*time.Second); !ok || got != "during drain" {
				t.Errorf("existing session during drain: %q %v", got, ok)
			}
			late, err := net.ListenUDP("udp6", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer late.Close()
			if got, ok := udpRoundTrip(late, dst, "new", 300*time.Millisecond); ok {
				t.Errorf("a new client got a session while draining: %q", got)
			}
			if code := s.Wait(15 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if !strings.Contains(s.Logs.String(), "udp drained") {
				t.Errorf("no udp drained line:\n%s", s.Logs)
			}
		})
	}
}

// A UDP listen address in use, or a malformed --inbound-udp, stops start-up with exit 2 and a
// message naming it.
func TestInboundUDPBadInputExitsTwo(t *testing.T) {
	busy, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.LocalAddr().String()
	for _, tt := range []struct{ arg, want string }{{addr + "=127.0.0.1:9", addr}, {"5353:53", "--inbound-udp"}} {
		s := launch(t, "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)), "--proxy-listen", "off",
			"--admin-listen", "[::1]:0", "--inbound-udp", tt.arg)
		if code := s.Wait(10 * time.Second); code != 2 {
			t.Fatalf("%s: exit code %d, want 2; output:\n%s", tt.arg, code, s.Logs)
		}
		if !strings.Contains(s.Logs.String(), tt.want) {
			t.Errorf("message does not name %q:\n%s", tt.want, s.Logs)
		}
	}
}

// 500 clients of random garbage against --udp-max-sessions 100: the sidecar keeps 100 sessions
// (100 fds), counts the rest as max_sessions drops, keeps serving, and is back to its fd baseline
// once the sessions idle out.
func TestInboundUDPFloodAndExpiry(t *testing.T) {
	requireLinux(t)
	app := udpEcho(t)
	dst := netip.AddrPortFrom(netip.IPv6Loopback(), freeUDPPort(t))
	s := &proc{startSidecar(t, "--proxy-listen", "off", "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)),
		"--inbound-udp", fmt.Sprintf("%s=%s", dst, app), "--udp-max-sessions", "100", "--udp-idle-timeout", "300ms").Sidecar, t}
	s.metric("nat464_udp_sessions_total", "") // the admin connection this test reads through exists from here on
	base := s.settledFDs()
	var cs []*net.UDPConn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	garbage := make([]byte, 1200)
	for i := range 500 {
		c, err := net.ListenUDP("udp6", nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		rand.Read(garbage[:i%len(garbage)])
		c.WriteToUDPAddrPort(garbage[:i%len(garbage)], dst)
		if i%50 == 49 { // let the relay take each burst, so no socket buffer overflows
			seen := func() float64 {
				return s.metric("nat464_udp_sessions_total", "") + s.metric("nat464_udp_drops_total", `reason="max_sessions"`)
			}
			if v := settleF(seen, float64(i+1)); v != float64(i+1) {
				t.Fatalf("after %d datagrams the relay saw %v", i+1, v)
			}
		}
	}
	if v := settleF(func() float64 { return s.metric("nat464_udp_sessions_total", "") }, 100); v != 100 {
		t.Errorf("sessions_total = %v, want 100", v)
	}
	if v := settleF(func() float64 { return s.metric("nat464_udp_drops_total", `reason="max_sessions"`) }, 400); v != 400 {
		t.Errorf("max_sessions drops = %v, want 400", v)
	}
	appPort := netip.MustParseAddrPort(app).Port()
	if got := s.udpFDsTo(int(appPort)); got != 100 {
		t.Errorf("%d sockets to the app, want 100 (one per session)", got)
	}
	if got := s.fds() - base; got < 100 || got > 102 { // beside the sessions: at most an admin connection or two
		t.Errorf("%d fds more than at start, want 100 (one per session)", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.udpFDsTo(int(appPort)) > 0 || s.fds() > base {
		if time.Now().After(deadline) {
			t.Fatalf("fds %d (%d to the app), want the baseline %d after the sessions idled out",
				s.fds(), s.udpFDsTo(int(appPort)), base)
		}
		sleep50()
	}
	c := cs[len(cs)-1] // refused before, served now that slots are free
	if got, ok := udpRoundTrip(c, dst, "after", 5*time.Second); !ok || got != "after" {
		t.Fatalf("after expiry: %q %v", got, ok)
	}
}
