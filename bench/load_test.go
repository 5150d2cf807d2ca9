package main

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// startApp runs the app in-process for the duration of the test.
func startApp(t *testing.T) string {
	t.Helper()
	s := &Server{}
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return addr
}

// socksRelay is a minimal SOCKS5 (no auth, CONNECT to IPv4) server for the
// tests: it proves the client side of the handshake against a second,
// independent implementation.
type socksRelay struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startSOCKS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &socksRelay{ln: ln}
	r.wg.Go(r.serve)
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return ln.Addr().String()
}

func (r *socksRelay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.handle(c) })
	}
}

func (r *socksRelay) handle(c net.Conn) {
	defer c.Close()
	b := make([]byte, 10)
	if _, err := io.ReadFull(c, b[:3]); err != nil || b[0] != 5 {
		return
	}
	c.Write([]byte{5, 0})
	if _, err := io.ReadFull(c, b); err != nil || b[3] != 1 {
		return
	}
	dest := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[8:]))
	up, err := net.Dial("tcp4", dest.String())
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.(*net.TCPConn).CloseWrite()
	}
	wg.Go(func() { pipe(up, c) })
	pipe(c, up)
	wg.Wait()
}

// targets returns the direct and the SOCKS5 route to the app.
func targets(t *testing.T) map[string]Target {
	app := startApp(t)
	return map[string]Target{
		"direct": {Addr: app},
		"socks5": {Addr: startSOCKS(t), Dest: app},
	}
}

var shortWindow = Window{Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond}

func TestRateLoad(t *testing.T) {
	checkLeaks(t)
	for name, tg := range targets(t) {
		for _, cc := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/app-close", true: "/client-close"}[cc], func(t *testing.T) {
				var marks []bool
				w := shortWindow
				w.Mark = func(end bool) { marks = append(marks, end) }
				r := Rate(context.Background(), RateConfig{Target: tg, Workers: 2, ClientClose: cc, Window: w})
				if r.Errors != 0 {
					t.Fatalf("%d errors, first: %s", r.Errors, r.ErrorSample)
				}
				if r.Conns == 0 || r.Hist.Count() != r.Conns {
					t.Fatalf("conns %d, histogram count %d", r.Conns, r.Hist.Count())
				}
				if len(marks) != 2 || marks[0] || !marks[1] {
					t.Fatalf("window marks %v, want [false true]", marks)
				}
				if p50 := r.Hist.Quantile(0.5); p50 <= 0 || p50 > dialTimeout {
					t.Fatalf("p50 %v out of range", p50)
				}
			})
		}
	}
}

func TestRateCountsErrors(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial is refused
	r := Rate(context.Background(), RateConfig{Target: Target{Addr: addr}, Window: Window{Duration: 50 * time.Millisecond}})
	if r.Errors == 0 || r.Conns != 0 || r.ErrorSample == "" {
		t.Fatalf("got %d conns, %d errors (%q); want errors only", r.Conns, r.Errors, r.ErrorSample)
	}
}

func TestSOCKSRefusedIsAnError(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, err = Target{Addr: startSOCKS(t), Dest: dead}.Dial(context.Background())
	if !errors.Is(err, errSOCKSRep) {
		t.Fatalf("dial through SOCKS to a closed port: %v, want %v", err, errSOCKSRep)
	}
}

func TestBulkLoad(t *testing.T) {
	checkLeaks(t)
	for name, tg := range targets(t) {
		t.Run(name, func(t *testing.T) {
			r := Bulk(context.Background(), BulkConfig{Target: tg, Streams: 1, Window: shortWindow})
			if r.Errors != 0 {
				t.Fatalf("%d errors, first: %s", r.Errors, r.ErrorSample)
			}
			if r.UpBytes == 0 || r.DownBytes == 0 {
				t.Fatalf("up %d down %d bytes, want both > 0", r.UpBytes, r.DownBytes)
			}
		})
	}
}

func TestIdleLoad(t *testing.T) {
	checkLeaks(t)
	s := &Server{}
	app, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const flows = 50
	held := -1
	r := Idle(context.Background(), IdleConfig{Target: Target{Addr: app}, Flows: flows, Parallel: 8,
		Hold: func(n int) { held = s.Open() }})
	if r.Errors != 0 || r.Established != flows {
		t.Fatalf("established %d, %d errors (%s)", r.Established, r.Errors, r.ErrorSample)
	}
	if held != flows {
		t.Fatalf("app held %d flows during Hold, want %d", held, flows)
	}
}
