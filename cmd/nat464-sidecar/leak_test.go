package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// echoApp echoes every connection on 127.0.0.1 until the test ends.
func echoApp(t *testing.T) string { return testnet.Echo(t, "tcp4", "127.0.0.1:0").String() }

// settle polls f until it returns at most want, or d passes; it returns the last value.
func settle(d time.Duration, want int, f func() int) int {
	return pollInt(d, f, func(v int) bool { return v <= want })
}

// pollInt calls f every 20 ms until done accepts its value or d has passed, and returns the
// last value.
func pollInt(d time.Duration, f func() int, done func(int) bool) int {
	deadline := time.Now().Add(d)
	for {
		v := f()
		if done(v) || time.Now().After(deadline) {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After 10,000 short connections the sidecar's fds and goroutines return to the idle baseline.
func TestNoLeakAfterShortConnections(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			app := echoApp(t)
			l := freePort(t)
			s := startSidecar(t, "--engine", eng, "--proxy-listen", "off", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, app))
			addr := fmt.Sprintf("[::1]:%d", l)
			// One round first so lazily created things (pipes, loops' buffers) exist in the baseline.
			roundTrips(t, addr, 8, 64)
			sockets := func() int { n, _ := s.fdKinds(); return n }
			baseSockets := settle(2*time.Second, 0, sockets)
			baseG := int(s.metric("go_goroutines", ""))
			roundTrips(t, addr, 10000, 16)
			socks := settle(5*time.Second, baseSockets, sockets)
			_, pipes := s.fdKinds()
			g := settle(5*time.Second, baseG, func() int { return int(s.metric("go_goroutines", "")) })
			t.Logf("%s: sockets %d -> %d, pipe fds now %d, goroutines %d -> %d after 10,000 connections",
				eng, baseSockets, socks, pipes, baseG, g)
			if socks > baseSockets {
				t.Errorf("sockets leaked: %d > baseline %d", socks, baseSockets)
			}
			// Pipes are pooled (the splice engine's pool, or the Go runtime's for the goroutine
			// engine, which frees them at a GC): bounded, not leaked.
			if pipes > 2*256 {
				t.Errorf("%d pipe fds open, more than the pool bound", pipes)
			}
			if g > baseG+2 { // the metrics scrape itself may hold a goroutine or two
				t.Errorf("goroutines leaked: %d > baseline %d", g, baseG)
			}
			if n := s.metric("nat464_loop_flows_total", ""); n < 10000 {
				t.Errorf("flows_total = %v, want >= 10000", n)
			}
		})
	}
}

// roundTrips opens n connections (conc at a time), each echoing a few bytes, then closes it.
func roundTrips(t *testing.T, addr string, n, conc int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	jobs := make(chan int)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 5)
			for range jobs {
				c, err := net.Dial("tcp6", addr)
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte("hello")); err != nil {
					errs <- err
				} else if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
					errs <- fmt.Errorf("echo: %q %v", buf, err)
				}
				c.Close()
			}
		}()
	}
	for i := range n {
		select {
		case jobs <- i:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// With 5,000 idle flows held, the test counts and reports the sidecar's fds per flow; the
// splice engine's target is 2 (the two sockets; no pipe is held by an idle flow). The goroutine
// engine holds 6 (each blocked io.Copy keeps one of Go's splice pipes), so 5,000 of its flows
// would not fit under this machine's hard limit of 20,000 fds: it is measured with 3,000.
func TestFDsPerIdleFlow(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		flows := 5000
		if eng == "goroutine" {
			flows = 3000
		}
		t.Run(eng, func(t *testing.T) {
			app := echoApp(t)
			l := freePort(t)
			s := startSidecar(t, "--engine", eng, "--proxy-listen", "off", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, app))
			addr := fmt.Sprintf("[::1]:%d", l)
			roundTrips(t, addr, 8, 8)
			base := settle(2*time.Second, 0, s.fds)
			conns := make([]net.Conn, 0, flows)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			buf := make([]byte, 1)
			for range flows {
				c, err := net.Dial("tcp6", addr)
				if err != nil {
					t.Fatalf("after %d flows: %v", len(conns), err)
				}
				conns = append(conns, c)
			}
			// A round trip on every flow proves each is established end to end (and has gone
			// idle again afterwards).
			for i, c := range conns {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte{'x'}); err != nil {
					t.Fatalf("flow %d: %v", i, err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					t.Fatalf("flow %d: %v (sidecar: flows_total %v, relayed now %v, pipes in use %v, copy buffers %v)",
						i, err, s.metric("nat464_loop_flows_total", ""), s.metric("nat464_splice_flows_active", ""),
						s.metric("nat464_splice_pipes_in_use", ""), s.metric("nat464_splice_copy_buffers_in_use", ""))
				}
			}
			perFlow := float64(s.fds()-base) / float64(flows)
			t.Logf("%s engine: %.2f fds per idle flow (%d flows)", eng, perFlow, flows)
			if eng == "splice" && perFlow > 2.01 {
				t.Errorf("splice engine holds %.2f fds per idle flow, want 2", perFlow)
			}
			if eng == "goroutine" && perFlow > 6.01 {
				t.Errorf("goroutine engine holds %.2f fds per idle flow, want at most 6", perFlow)
			}
		})
	}
}

// After 3,000 short SOCKS5 sessions that end every way a client can end them (echo and close,
// hang up right after the request, CONNECT to a refused port, hang up mid-greeting), the
// sidecar's sockets and goroutines return to the idle baseline and every flow slot is free.
func TestNoLeakAfterShortProxySessions(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			app := echoApp(t)
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			dead := ln.Addr().String() // a port that refuses
			ln.Close()
			proxy := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			s := startSidecar(t, "--engine", eng, "--proxy-listen", proxy, "--inbound", fmt.Sprintf("[::1]:%d=%s", freePort(t), app))
			session := func(i int) error {
				c, err := net.Dial("tcp4", proxy)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				switch i % 4 {
				case 0: // a whole session
					if !socksConnectTo(c, app, 10*time.Second) || !echoOnce(c, []byte("hi"), 10*time.Second) {
						return fmt.Errorf("session %d: no echo through the proxy", i)
					}
				case 1: // hang up before the reply
					req := append([]byte{5, 1, 0}, socksRequest(app)...)
					_, err = c.Write(req)
				case 2: // refused upstream: a failure reply, then EOF
					if socksConnectTo(c, dead, 10*time.Second) {
						return fmt.Errorf("session %d: CONNECT to a closed port succeeded", i)
					}
				case 3: // hang up mid-greeting
					_, err = c.Write([]byte{5, 2})
				}
				return err
			}
			for i := range 8 {
				if err := session(i); err != nil {
					t.Fatal(err)
				}
			}
			sockets := func() int { n, _ := s.fdKinds(); return n }
			baseSockets := settle(2*time.Second, 0, sockets)
			baseG := int(s.metric("go_goroutines", ""))
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < 3000; i += 16 {
						if err := session(i); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			socks := settle(5*time.Second, baseSockets, sockets)
			g := settle(5*time.Second, baseG, func() int { return int(s.metric("go_goroutines", "")) })
			t.Logf("%s: sockets %d -> %d, goroutines %d -> %d after 3,000 sessions", eng, baseSockets, socks, baseG, g)
			if socks > baseSockets {
				t.Errorf("sockets leaked: %d > baseline %d", socks, baseSockets)
			}
			if g > baseG+2 {
				t.Errorf("goroutines leaked: %d > baseline %d", g, baseG)
			}
			if n := s.metric("nat464_loop_flows_active", ""); n != 0 {
				t.Errorf("flows_active = %v after every session ended, want 0", n)
			}
		})
	}
}
