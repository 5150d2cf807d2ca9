//go:build e2e && linux

package e2e

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// listenPacketIn opens a UDP socket inside network namespace ns, as dialIn does for connects.
func listenPacketIn(ns, network, addr string) (net.PacketConn, error) {
	type result struct {
		c   net.PacketConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var c net.PacketConn
		restored, err := onThreadIn(ns, func() (err error) {
			c, err = (&net.ListenConfig{}).ListenPacket(context.Background(), network, addr)
			return err
		})
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestInboundUDP: an outside IPv6 client's datagrams reach an IPv4-only UDP server on the pod's
// 127.0.0.1 through --inbound-udp, whole and in order; the server sees one loopback source for
// the client (its session); the answers come back from the pod address the client sent to (the
// client's socket is connected to it, so any other source would be filtered by its kernel).
func TestInboundUDP(t *testing.T) {
	requireBinary(t)
	app, err := listenPacketIn(env(t, "LAB_NS_POD"), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	sources := make(chan netip.AddrPort, 16)
	go func() { // the IPv4-only UDP server: echo, and say who sent
		buf := make([]byte, 65535)
		for {
			n, from, err := app.ReadFrom(buf)
			if err != nil {
				return
			}
			sources <- from.(*net.UDPAddr).AddrPort()
			app.WriteTo(buf[:n], from)
		}
	}()
	const port = "5353"
	// A short idle timeout lets the drain at the end finish once the session idles out.
	startSidecar(t, "--inbound-udp", port+"="+app.LocalAddr().String(), "--udp-idle-timeout", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialIn(ctx, env(t, "LAB_NS_CLIENT"), "udp6", "["+env(t, "LAB_POD6")+"]:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, size := range []int{1, 512, 1400, 8000, 30000} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, size)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 65535)
		n, err := c.Read(got)
		if err != nil {
			t.Fatalf("datagram %d (%d bytes): %v", i, size, err)
		}
		if !bytes.Equal(got[:n], msg) {
			t.Fatalf("datagram %d: %d bytes back, want the %d sent, unchanged", i, n, size)
		}
	}
	first := <-sources
	if !first.Addr().Is4() || !first.Addr().IsLoopback() {
		t.Errorf("the app saw %v, want a 127.0.0.1 source (the sidecar's session)", first)
	}
	for range 4 {
		if s := <-sources; s != first {
			t.Errorf("the app saw %v after %v: one client must be one session", s, first)
		}
	}

	// A pod with a second IPv6 address: the wildcard listener answers each client from the
	// address it sent to (IPV6_PKTINFO); a connected client socket takes nothing else.
	pod, second := env(t, "LAB_NS_POD"), "2001:db8:1::11"
	if out, err := run(ctx, pod, "ip", "addr", "add", second+"/64", "dev", "eth0", "nodad"); err != nil {
		t.Fatalf("second pod address: %v %s", err, out)
	}
	defer run(context.Background(), pod, "ip", "addr", "del", second+"/64", "dev", "eth0")
	for _, a := range []string{second, env(t, "LAB_POD6")} {
		c2, err := dialIn(ctx, env(t, "LAB_NS_CLIENT"), "udp6", "["+a+"]:"+port)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c2.Write([]byte("to " + a)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 64)
		n, err := c2.Read(got)
		if err != nil || string(got[:n]) != "to "+a {
			t.Errorf("a client of [%s]:%s got %q, %v: the reply must come from that address", a, port, got[:n], err)
		}
		<-sources
	}
}
