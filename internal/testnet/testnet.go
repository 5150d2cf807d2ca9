// Package testnet holds the fixtures the module's tests share: free ports, an echo server, a
// listener whose connects never complete, a buffer for a child process's output, and the harness
// of the tests that drive the real binary (building it, running it, its admin endpoints). Only
// tests import it.
package testnet

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// FreePort returns a TCP port that was free on both 127.0.0.1 and [::] a moment ago (the
// sidecar binds inbound mappings on [::] next to an app on 0.0.0.0).
func FreePort(t testing.TB) uint16 {
	t.Helper()
	for range 50 {
		l6, err := net.Listen("tcp6", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l6.Addr().(*net.TCPAddr).Port
		l4, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		l6.Close()
		if err == nil {
			l4.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// Echo serves an echo on network ("tcp4", "tcp6") at addr until the test ends, then closes
// every connection it accepted and waits for them. It returns the bound address. It copies
// through a small buffer rather than io.Copy's splice, which would hold a runtime pipe (2 fds)
// per blocked connection: tests with thousands of idle flows would run out of fds.
func Echo(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("echo: accept: %v", err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 512))
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// FullListener returns the address of a listener on 127.0.0.1 whose accept queue is full: the
// kernel drops further SYNs, so a connect to it stays in progress until its timeout, which a
// test on loopback cannot arrange otherwise.
func FullListener(t testing.TB) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	lo := [4]byte{127, 0, 0, 1}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: lo}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection, never accepted
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4(lo), uint16(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.Dial("tcp4", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return ap
}

// Output collects a child process's stdout or stderr; it may be read while the child writes.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
