package loop

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nat464/nat464-sidecar/config"
	"github.com/nat464/nat464-sidecar/proxyproto"
)

// recordingApp accepts on 127.0.0.1 and reports, per connection, the peer address and the
// bytes it received up to and including the client's "hello".
type recordingApp struct {
	addr string
	got  chan appConn
}

type appConn struct {
	peer netip.AddrPort
	data []byte
	err  error
}

func newRecordingApp(t *testing.T) *recordingApp {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &recordingApp{addr: ln.Addr().String(), got: make(chan appConn, 16)}
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
				c.SetDeadline(time.Now().Add(5 * time.Second))
				var buf []byte
				chunk := make([]byte, 512)
				var err error
				for !bytes.HasSuffix(buf, []byte("hello")) && err == nil && len(buf) < 4096 {
					var n int
					n, err = c.Read(chunk)
					buf = append(buf, chunk[:n]...)
				}
				a.got <- appConn{peer: addrPort(c.RemoteAddr()), data: buf, err: err}
				c.Write([]byte("ok"))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return a
}

func (a *recordingApp) next(t *testing.T) appConn {
	t.Helper()
	select {
	case r := <-a.got:
		if r.err != nil {
			t.Fatalf("app read: %v (got %q)", r.err, r.data)
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the app saw no connection")
	}
	return appConn{}
}

// sendHello connects to the inbound port, sends "hello" and waits for the app's "ok".
func sendHello(t *testing.T, listen string) (client, local netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp6", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(bufio.NewReader(c)); err != nil || string(b) != "ok" {
		t.Fatalf("answer %q %v", b, err)
	}
	return addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
}

// The app gets the exact header of the version asked for, then the client's bytes; a mapping
// without the option gets the client's bytes alone, from 127.0.0.1, on both engines.
func TestInboundProxyProtocol(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			v1, v2, plain := newRecordingApp(t), newRecordingApp(t), newRecordingApp(t)
			fx := start(t, eng, []string{v1.addr, v2.addr, plain.addr}, func(c *Config) {
				c.Inbound[0].ProxyProtocol = proxyproto.V1
				c.Inbound[1].ProxyProtocol = proxyproto.V2
			})
			for i, tc := range []struct {
				app *recordingApp
				v   proxyproto.Version
			}{{v1, proxyproto.V1}, {v2, proxyproto.V2}, {plain, 0}} {
				cl, lo := sendHello(t, fx.inbound[i])
				got := tc.app.next(t)
				want := append(proxyproto.Append(nil, tc.v, cl, lo), "hello"...)
				if !bytes.Equal(got.data, want) {
					t.Errorf("%v: app got %q, want %q", tc.v, got.data, want)
				}
				if got.peer.Addr() != netip.MustParseAddr("127.0.0.1") {
					t.Errorf("%v: app saw the connection from %v", tc.v, got.peer)
				}
			}
			// The client is [::1] and so is the address it reached: the v1 line says so.
			if cl, lo := sendHello(t, fx.inbound[0]); !bytes.HasPrefix(v1.next(t).data, []byte("PROXY TCP6 ::1 ::1 ")) || cl.Addr() != lo.Addr() {
				t.Error("v1 line does not name ::1 -> ::1")
			}
			waitIdle(t, fx.limit)
		})
	}
}

// stepPicker hands out 127.77.0.1, .2, ... per client address, as clients.Table does.
type stepPicker struct {
	mu   sync.Mutex
	byIP map[netip.Addr]netip.Addr
	full bool
}

func (p *stepPicker) Source(c netip.Addr) (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byIP[c]; ok {
		return a, true
	}
	if p.full {
		return netip.Addr{}, false
	}
	a := netip.AddrFrom4([4]byte{127, 77, 0, byte(len(p.byIP) + 1)})
	p.byIP[c] = a
	return a, true
}

// With --inbound-source the app sees the connection from the picked loopback address, a full
// picker means 127.0.0.1, and both options combine; on both engines.
func TestInboundSource(t *testing.T) {
	for _, eng := range engineNames(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			app, both := newRecordingApp(t), newRecordingApp(t)
			rng := netip.MustParsePrefix("127.77.0.0/16")
			pick := &stepPicker{byIP: map[netip.Addr]netip.Addr{}}
			fx := start(t, eng, []string{app.addr, both.addr}, func(c *Config) {
				c.Inbound[0].Source, c.Inbound[1].Source = rng, rng
				c.Inbound[1].ProxyProtocol = proxyproto.V2
				c.Sources = map[netip.Prefix]SourcePicker{rng: pick}
			})
			for range 3 {
				sendHello(t, fx.inbound[0])
				if got := app.next(t); got.peer.Addr() != netip.MustParseAddr("127.77.0.1") || string(got.data) != "hello" {
					t.Fatalf("app got %q from %v, want hello from 127.77.0.1", got.data, got.peer)
				}
			}
			cl, lo := sendHello(t, fx.inbound[1])
			got := both.next(t)
			if want := append(proxyproto.AppendV2(nil, cl, lo), "hello"...); !bytes.Equal(got.data, want) || got.peer.Addr() != netip.MustParseAddr("127.77.0.1") {
				t.Errorf("both options: %q from %v", got.data, got.peer)
			}
			pick.mu.Lock()
			pick.byIP, pick.full = map[netip.Addr]netip.Addr{}, true
			pick.mu.Unlock()
			sendHello(t, fx.inbound[0])
			if got := app.next(t); got.peer.Addr() != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("full table: app saw %v, want 127.0.0.1", got.peer)
			}
			waitIdle(t, fx.limit)
		})
	}
}

func TestInboundSourceNeedsTable(t *testing.T) {
	cfg := Config{}
	m := config.Mapping{Listen: netip.MustParseAddrPort("[::1]:1"), Target: netip.MustParseAddrPort("127.0.0.1:2"),
		Source: netip.MustParsePrefix("127.77.0.0/16")}
	if _, _, err := cfg.inboundPeer(m); err == nil {
		t.Error("a mapping with a Source but no table was accepted")
	}
	m.Source = netip.Prefix{}
	if p, _, err := cfg.inboundPeer(m); p != nil || err != nil {
		t.Errorf("a mapping without options has a peer function: %v", err)
	}
}
