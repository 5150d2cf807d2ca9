package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/clients"
	"github.com/nat464/nat464-sidecar/internal/testnet"
	"github.com/nat464/nat464-sidecar/proxyproto"
)

// headerApp is an IPv4-only app that reads an optional PROXY header, then "hello", and answers
// "ok"; it reports what it saw per connection.
type headerApp struct {
	addr string
	seen chan appSeen
}

type appSeen struct {
	peer   netip.AddrPort     // the connection's source as the app's socket sees it
	header *proxyproto.Header // nil when the bytes did not start with one
	rest   []byte             // the bytes after the header
	err    error
}

func newHeaderApp(t *testing.T, ln net.Listener) *headerApp {
	t.Helper()
	a := &headerApp{addr: ln.Addr().String(), seen: make(chan appSeen, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				a.seen <- readHello(c)
				c.Write([]byte("ok"))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return a
}

func readHello(c net.Conn) appSeen {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	s := appSeen{peer: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
	var buf []byte
	chunk := make([]byte, 256)
	for !bytes.HasSuffix(buf, []byte("hello")) && len(buf) < 1024 {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if errors.Is(err, io.EOF) {
			break // a readiness probe: at most a header, then the close
		}
		if err != nil {
			s.err, s.rest = err, buf
			return s
		}
	}
	if len(buf) == 0 {
		return s // a probe that sent nothing
	}
	h, n, err := proxyproto.Parse(buf)
	switch {
	case err == nil:
		s.header, s.rest = &h, buf[n:]
	case errors.Is(err, proxyproto.ErrNotProxy):
		s.rest = buf
	default:
		s.err, s.rest = err, buf
	}
	return s
}

func (a *headerApp) next(t *testing.T) appSeen {
	t.Helper()
	select {
	case s := <-a.seen:
		if s.err != nil {
			t.Fatalf("app: %v after %q", s.err, s.rest)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the app saw no connection")
	}
	return appSeen{}
}

func listen4(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// hello sends "hello" on c and waits for "ok".
func hello(t *testing.T, c net.Conn) (client, server netip.AddrPort) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "ok" {
		t.Fatalf("answer %q %v", b, err)
	}
	return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
}

// The real binary writes a v1 header on a wildcard mapping (the address the client reached
// comes from getsockname), a v2 header on an address mapping, and nothing on a third mapping,
// whose app gets the client's bytes unchanged; on both engines.
func TestInboundProxyProtocolBinary(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			v1, v2, plain := newHeaderApp(t, listen4(t)), newHeaderApp(t, listen4(t)), newHeaderApp(t, listen4(t))
			l1, l2, l3 := freePort(t), freePort(t), freePort(t)
			s := startSidecar(t, "--engine", eng, "--proxy-listen", "off",
				"--inbound", fmt.Sprintf("%d=%s", l1, v1.addr),
				"--inbound", fmt.Sprintf("[::1]:%d=%s", l2, v2.addr),
				"--inbound", fmt.Sprintf("[::1]:%d=%s", l3, plain.addr),
				"--inbound-proxy-protocol", fmt.Sprintf("%d=v1", l1),
				"--inbound-proxy-protocol", fmt.Sprintf("[::1]:%d=v2", l2))
			s.WaitLog(time.Second, "proxy_protocol=v1", "proxy_protocol=v2")
			for _, tc := range []struct {
				app  *headerApp
				port int
				v    proxyproto.Version
			}{{v1, l1, proxyproto.V1}, {v2, l2, proxyproto.V2}, {plain, l3, 0}} {
				c, err := net.Dial("tcp6", fmt.Sprintf("[::1]:%d", tc.port))
				if err != nil {
					t.Fatal(err)
				}
				cl, sv := hello(t, c)
				got := tc.app.next(t)
				if string(got.rest) != "hello" {
					t.Errorf("%v: payload after the header %q", tc.v, got.rest)
				}
				if tc.v == 0 {
					if got.header != nil {
						t.Errorf("mapping without the option got a header %+v", got.header)
					}
					continue
				}
				if got.header == nil || got.header.Version != tc.v || got.header.Src != cl || got.header.Dst != sv {
					t.Errorf("%v: header %+v, want %v -> %v", tc.v, got.header, cl, sv)
				}
			}
			// /readyz connects to every app; one that reads PROXY protocol gets the header of a
			// health check (v2 LOCAL, v1 UNKNOWN), the plain app nothing.
			if code, body := s.Get("/readyz"); code != 200 {
				t.Fatalf("/readyz %d %s", code, body)
			}
			if h := v1.next(t).header; h == nil || h.Version != proxyproto.V1 || h.Src.IsValid() {
				t.Errorf("v1 app's probe header %+v, want PROXY UNKNOWN", h)
			}
			if h := v2.next(t).header; h == nil || !h.Local {
				t.Errorf("v2 app's probe header %+v, want LOCAL", h)
			}
			if got := plain.next(t); got.header != nil || len(got.rest) != 0 {
				t.Errorf("plain app's probe sent %q", got.rest)
			}
		})
	}
}

func TestInboundOptionsBadInputExitTwo(t *testing.T) {
	p := freePort(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"proxy protocol without mapping", []string{"--inbound-proxy-protocol", fmt.Sprintf("%d=v1", p+1)}, "--inbound-proxy-protocol"},
		{"proxy protocol version", []string{"--inbound-proxy-protocol", fmt.Sprintf("%d=v9", p)}, "--inbound-proxy-protocol"},
		{"source outside loopback", []string{"--inbound-source", fmt.Sprintf("%d=10.0.0.0/8", p)}, "--inbound-source"},
		{"source with 127.0.0.1", []string{"--inbound-source", fmt.Sprintf("%d=127.0.0.0/16", p)}, "--inbound-source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := launch(t, append([]string{"--inbound", fmt.Sprintf("%d=127.0.0.1:9", p), "--proxy-listen", "off",
				"--admin-listen", "[::1]:0"}, tt.args...)...)
			if code := s.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2:\n%s", code, s.Logs)
			}
			if !strings.Contains(s.Logs.String(), tt.want) {
				t.Errorf("message does not name %s:\n%s", tt.want, s.Logs)
			}
		})
	}
}

// Two clients with different IPv6 addresses (documentation addresses on lo of a namespace of
// the test's own) reach the app from two different loopback addresses of the range, the same
// one on every connection; /clients and the log map them back. The second mapping shares the
// range and adds a v2 header, which names the real client. Both engines.
func TestInboundSourceBinary(t *testing.T) {
	ns := testnet.NewNetns(t, "src", "2001:db8:16::1/128", "2001:db8:16::2/128")
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			ln1, err := ns.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln2, err := ns.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			app, both := newHeaderApp(t, ln1), newHeaderApp(t, ln2)
			l1, l2 := freePort(t), freePort(t)
			s := &proc{testnet.Launcher{Bin: sidecarBin, Wrap: ns.Wrap, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return ns.Dial(ctx, network, "", addr)
			}}.Start(t, "--engine", eng, "--proxy-listen", "off",
				"--inbound", fmt.Sprintf("%d=%s", l1, app.addr), "--inbound", fmt.Sprintf("%d=%s", l2, both.addr),
				"--inbound-source", fmt.Sprintf("%d=127.128.0.0/9", l1), "--inbound-source", fmt.Sprintf("%d=127.128.0.0/9", l2),
				"--inbound-proxy-protocol", fmt.Sprintf("%d=v2", l2)), t}
			dial := func(from string, port int) net.Conn {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := ns.Dial(ctx, "tcp6", from, fmt.Sprintf("[2001:db8:16::1]:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			want := map[string]string{"2001:db8:16::1": "127.128.0.1", "2001:db8:16::2": "127.128.0.2"}
			for round := range 2 {
				for _, client := range []string{"2001:db8:16::1", "2001:db8:16::2"} {
					hello(t, dial(client, l1))
					if got := app.next(t); got.peer.Addr().String() != want[client] || string(got.rest) != "hello" || got.header != nil {
						t.Errorf("round %d, client %s: app saw %v (%q, header %v), want %s", round, client, got.peer, got.rest, got.header, want[client])
					}
				}
			}
			cl, _ := hello(t, dial("2001:db8:16::2", l2))
			got := both.next(t)
			if got.peer.Addr().String() != "127.128.0.2" || got.header == nil || got.header.Src != cl {
				t.Errorf("shared range with v2: app saw %v, header %+v, want 127.128.0.2 and %v", got.peer, got.header, cl)
			}
			code, body := s.Get("/clients")
			var resp clients.Response
			if code != 200 || json.Unmarshal([]byte(body), &resp) != nil {
				t.Fatalf("/clients: %d %s", code, body)
			}
			if len(resp.Clients) != 2 || len(resp.Tables) != 1 || resp.Tables[0].Assigned != 2 || len(resp.Tables[0].Mappings) != 2 {
				t.Fatalf("/clients: %s", body)
			}
			for _, e := range resp.Clients {
				if want[e.Client] != e.Source {
					t.Errorf("/clients maps %s to %s, want %s", e.Client, e.Source, want[e.Client])
				}
			}
			if resp.Clients[0].Connections != 2 || resp.Clients[1].Connections != 3 {
				t.Errorf("connections %d %d, want 2 3", resp.Clients[0].Connections, resp.Clients[1].Connections)
			}
			if code, body := s.Get("/clients?source=127.128.0.2"); code != 200 || !strings.Contains(body, `"client":"2001:db8:16::2"`) || strings.Contains(body, "2001:db8:16::1") {
				t.Errorf("/clients?source=: %d %s", code, body)
			}
			s.WaitLog(time.Second, "inbound source assigned", "client=2001:db8:16::1 source=127.128.0.1", "client=2001:db8:16::2 source=127.128.0.2")
			if n := s.metric("nat464_inbound_source_clients", ""); n != 2 {
				t.Errorf("nat464_inbound_source_clients %v", n)
			}
		})
	}
}

// One client makes more connections than the ephemeral port range holds (28,232 ports by
// default), closing first, so that the sidecar's sockets towards the app end in TIME_WAIT on
// the client's one loopback source: none may fail. In a namespace of the test's own, so the
// TIME_WAIT sockets stay there. This holds the feature to its promise; it does not time the
// bind (docs/design.md, section 5: with a plain bind(2) instead of IP_BIND_ADDRESS_NO_PORT this
// test still passed on the test VM, in 68 s instead of 10 s, as bind's port search crawled
// once the range was nearly full).
func TestInboundSourcePortsLast(t *testing.T) {
	if testing.Short() {
		t.Skip("30,000 connections")
	}
	ns := testnet.NewNetns(t, "ports")
	ln, err := ns.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // one byte back, then wait for the client's close
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					c.Write(b)
					c.Read(b)
				}
			}()
		}
	}()
	l := freePort(t)
	s := &proc{testnet.Launcher{Bin: sidecarBin, Wrap: ns.Wrap, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.Dial(ctx, network, "", addr)
	}}.Start(t, "--proxy-listen", "off", "--inbound", fmt.Sprintf("%d=%s", l, ln.Addr()),
		"--inbound-source", fmt.Sprintf("%d=127.128.0.0/9", l)), t}
	const total, workers = 30000, 8
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range total / workers {
				if err := oneByte(ns, fmt.Sprintf("[::1]:%d", l)); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, fmt.Sprintf("worker %d: %v", w, err))
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d connections failed; first: %v", n, total, first.Load())
	}
	code, body := s.Get("/clients")
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"connections":%d`, total)) {
		t.Errorf("/clients does not count %d connections of the one client: %d %s", total, code, body)
	}
}

// oneByte sends a byte through addr and waits for it to come back, then closes first.
func oneByte(ns *testnet.Netns, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp6", "", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}
