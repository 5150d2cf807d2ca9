//go:build linux

package splice

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ServeInbound: each loop accepts and relays on its own; Admit false closes at once; a refused
// target ends in ConnectErr; StopInbound closes the port; Ping answers.
func TestServeInbound(t *testing.T) {
	checkLeaks(t)
	e, err := NewSplice(Options{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	app, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	var admit atomic.Bool
	admit.Store(true)
	res := newResults(16)
	addr, err := e.ServeInbound(Inbound{
		Listen: netip.MustParseAddrPort("[::1]:0"), Target: netip.MustParseAddrPort(app.Addr().String()),
		Front: &admitter{res: res, allow: admit.Load},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // spread over both loops' listeners by the kernel
		c, err := net.Dial("tcp6", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("flow %d: %q %v", i, buf, err)
		}
		c.Close()
		if r := res.wait(t); r.Up != 4 || r.Down != 4 {
			t.Errorf("flow %d result: %+v", i, r)
		}
	}
	admit.Store(false)
	c, err := net.Dial("tcp6", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection Admit refused was relayed")
	}
	c.Close()
	if err := e.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	e.StopInbound()
	if err := e.Ping(context.Background()); err != nil { // the stop task has run on every loop
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp6", addr.String()); err == nil {
		c.Close()
		t.Error("port still accepting after StopInbound")
	}
}

func TestServeInboundRefusedTarget(t *testing.T) {
	checkLeaks(t)
	e, err := NewSplice(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dead, _ := net.Listen("tcp4", "127.0.0.1:0")
	target := netip.MustParseAddrPort(dead.Addr().String())
	dead.Close()
	res := newResults(1)
	addr, err := e.ServeInbound(Inbound{Listen: netip.MustParseAddrPort("[::1]:0"), Target: target, Front: &admitter{res: res}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp6", addr.String())
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("client of a refused target got data")
		}
		c.Close()
	}
	if r := res.wait(t); !errors.Is(r.ConnectErr, syscall.ECONNREFUSED) {
		t.Errorf("ConnectErr = %v, want ECONNREFUSED", r.ConnectErr)
	}
}
