//go:build linux

package splice

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoApp echoes on 127.0.0.1 and reports every connection's source address.
func echoApp(t testing.TB) (netip.AddrPort, chan netip.AddrPort) {
	t.Helper()
	app, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	peers := make(chan netip.AddrPort, 1024)
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			go func() { io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 512)); c.Close() }()
		}
	}()
	return netip.MustParseAddrPort(app.Addr().String()), peers
}

// Inbound.Peer: asked with the client's address (from accept4) and the address it reached
// (getsockname for a wildcard listener); its bytes reach the app first, and the connect comes
// from the source it returns.
func TestServeInboundPeer(t *testing.T) {
	for _, listen := range []string{"[::1]:0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			checkLeaks(t)
			e, err := NewSplice(Options{Loops: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			target, peers := echoApp(t)
			type call struct{ client, local netip.AddrPort }
			calls := make(chan call, 4)
			res := newResults(4)
			addr, err := e.ServeInbound(Inbound{Listen: netip.MustParseAddrPort(listen), Target: target, Front: &admitter{res: res},
				PeerLocal: true,
				Peer: func(client, local netip.AddrPort) ([]byte, netip.Addr) {
					calls <- call{client, local}
					return []byte("HDR "), netip.MustParseAddr("127.77.0.9")
				}})
			if err != nil {
				t.Fatal(err)
			}
			port := addr.(*net.TCPAddr).Port
			c, err := net.Dial("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("ping"))
			buf := make([]byte, 8)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HDR ping" {
				t.Fatalf("echo %q %v", buf, err)
			}
			c.Close()
			got := <-calls
			if got.client != c.LocalAddr().(*net.TCPAddr).AddrPort() || got.local != c.RemoteAddr().(*net.TCPAddr).AddrPort() {
				t.Errorf("Peer(%v, %v), want (%v, %v)", got.client, got.local, c.LocalAddr(), c.RemoteAddr())
			}
			if p := <-peers; p.Addr() != netip.MustParseAddr("127.77.0.9") {
				t.Errorf("the app saw %v, want 127.77.0.9", p)
			}
			if r := res.wait(t); r.Up != 8 || r.Down != 8 {
				t.Errorf("result %+v: the header counts in Up", r)
			}
		})
	}
}

// Without IP_BIND_ADDRESS_NO_PORT a bound source address takes its port at bind time for every
// destination at once; with it, the port is chosen at connect time: two sockets bound to the
// same source may then share a port towards different destinations. This proves the option is
// set, not the kernel's port choice: getsockname after bind shows port 0.
func TestConnectFromLeavesPortToConnect(t *testing.T) {
	target, _ := echoApp(t)
	fd, err := connectFrom(target, netip.MustParseAddr("127.77.0.10"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT)
	if err != nil || v != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d, %v", v, err)
	}
	if _, err := connectFrom(target, netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("bound to an address this host does not have")
	}
}

// BenchmarkInboundConnection is one inbound connection's whole life on the splice engine's
// own port: connect [::1], accept4, connect to the app on 127.0.0.1, one byte each way (plus
// the header the app echoes back), close both, Ended. The variants add what the inbound
// options cost per connection: "proxy-v2" the client address from accept4, a getsockname
// (wildcard listener) and a 52-byte write; "source" accept4's address, a setsockopt
// (IP_BIND_ADDRESS_NO_PORT) and a bind before the connect; "both" all of it.
func BenchmarkInboundConnection(b *testing.B) {
	hdr := bytes.Repeat([]byte{'h'}, 52)
	src := netip.MustParseAddr("127.77.0.1")
	for _, v := range []struct {
		name string
		peer func(client, local netip.AddrPort) ([]byte, netip.Addr)
	}{
		{"plain", nil},
		{"proxy-v2", func(client, local netip.AddrPort) ([]byte, netip.Addr) { return hdr, netip.Addr{} }},
		{"source", func(client, local netip.AddrPort) ([]byte, netip.Addr) { return nil, src }},
		{"both", func(client, local netip.AddrPort) ([]byte, netip.Addr) { return hdr, src }},
	} {
		b.Run(v.name, func(b *testing.B) {
			e, err := NewSplice(Options{Loops: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			target, _ := echoApp(b)
			res := newResults(1)
			addr, err := e.ServeInbound(Inbound{Listen: netip.MustParseAddrPort("[::]:0"), Target: target,
				Front: &admitter{res: res}, Peer: v.peer, PeerLocal: v.peer != nil})
			if err != nil {
				b.Fatal(err)
			}
			dst := net.JoinHostPort("::1", strconv.Itoa(addr.(*net.TCPAddr).Port))
			want := 1
			if v.peer != nil {
				pre, _ := v.peer(netip.AddrPort{}, netip.AddrPort{})
				want += len(pre)
			}
			buf := make([]byte, want)
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp6", dst)
				if err != nil {
					b.Fatal(err)
				}
				c.Write([]byte{'x'})
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
				res.wait(b)
			}
		})
	}
}

// BenchmarkConnectFrom isolates what --inbound-source adds to a connect: socket, connect to a
// listener on 127.0.0.1, accept, close both; "bound" sets IP_BIND_ADDRESS_NO_PORT and binds
// 127.77.0.1 first (two more system calls), "kernel" leaves the source to the kernel.
func BenchmarkConnectFrom(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	target := netip.MustParseAddrPort(ln.Addr().String())
	for _, v := range []struct {
		name string
		src  netip.Addr
	}{{"kernel", netip.Addr{}}, {"bound", netip.MustParseAddr("127.77.0.1")}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fd, err := connectFrom(target, v.src)
				if err != nil {
					b.Fatal(err)
				}
				c, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				c.Close() // the accepting side first: TIME_WAIT stays off the ports being measured
				unix.Close(fd)
			}
		})
	}
}
