package sockstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nat464/nat464-sidecar/socks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProxy is a one-connection-at-a-time proxy built from package socks: it answers with
// refuse (success when zero) and then echoes the tunnel, or relays it to upstream. The codes
// are scripted, not derived from errors: the sidecar's error -> code table is package loop's,
// and the client under test only needs to read whatever code arrives.
type fakeProxy struct {
	creds    *socks.UserPass // required credentials, nil for none
	refuse   int             // if nonzero, the REP, CD or HTTP status every request gets
	silent   bool            // read the handshake but never answer
	upstream string          // if set, every tunnel goes there instead of echoing
	seen     chan socks.Addr // if set, receives each requested destination
}

// conn buffers what the client sent and hands it to parsers the Peek/Discard way.
type conn struct {
	net.Conn
	buf []byte
}

func next[T any](c *conn, parse func([]byte) (T, int, error)) (T, error) {
	tmp := make([]byte, 512)
	for {
		v, n, err := parse(c.buf)
		if !errors.Is(err, socks.ErrNeedMore) {
			c.buf = c.buf[n:]
			return v, err
		}
		k, rerr := c.Read(tmp)
		if rerr != nil {
			return v, rerr
		}
		c.buf = append(c.buf, tmp[:k]...)
	}
}

func (p *fakeProxy) serve(nc net.Conn) {
	defer nc.Close()
	c := &conn{Conn: nc}
	first, err := next(c, func(b []byte) (byte, int, error) {
		if len(b) == 0 {
			return 0, 0, socks.ErrNeedMore
		}
		return b[0], 0, nil
	})
	if err != nil {
		return
	}
	var answer []byte
	var dest socks.Addr
	ok := p.refuse == 0
	switch socks.Detect(first) {
	case socks.ProtocolSOCKS5:
		answer, ok, dest = p.socks5(c)
	case socks.ProtocolSOCKS4:
		req, err := next(c, socks.ParseSOCKS4)
		if err != nil {
			return
		}
		dest = req.Dest
		cd := socks.Reply4Granted
		if p.refuse != 0 {
			cd = socks.Reply4(p.refuse)
		}
		answer = socks.AppendSOCKS4Reply(nil, cd)
	case socks.ProtocolHTTP:
		req, err := next(c, socks.ParseHTTPConnect)
		dest = req.Dest
		status := socks.StatusOK
		switch {
		case err != nil:
			status = socks.StatusBadRequest
		case p.creds != nil && (!req.HasAuth || req.User != p.creds.Username || req.Password != p.creds.Password):
			status = socks.StatusProxyAuthRequired
		case p.refuse != 0:
			status = p.refuse
		}
		answer = socks.AppendHTTPResponse(nil, status)
		ok = status == socks.StatusOK
	}
	if answer == nil || p.silent {
		io.Copy(io.Discard, c) // until the client gives up
		return
	}
	if p.seen != nil && dest.IsValid() {
		p.seen <- dest
	}
	if _, err := c.Write(answer); err != nil || !ok {
		return
	}
	if p.upstream != "" {
		relay(c, p.upstream)
		return
	}
	if _, err := c.Write(c.buf); err != nil { // early data
		return
	}
	io.Copy(c, c.Conn)
}

// relay connects c (and the early data in its buffer) to addr until both directions end.
func relay(c *conn, addr string) {
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(c.Conn, up)
		c.Conn.(*net.TCPConn).CloseWrite()
	}()
	if _, err := up.Write(c.buf); err == nil {
		io.Copy(up, c.Conn)
	}
	up.(*net.TCPConn).CloseWrite()
	<-done
}

// socks5 returns the reply to send, whether it is a success, and the destination.
func (p *fakeProxy) socks5(c *conn) ([]byte, bool, socks.Addr) {
	g, err := next(c, socks.ParseGreeting)
	if err != nil {
		return nil, false, socks.Addr{}
	}
	want := socks.MethodNoAuth
	if p.creds != nil {
		want = socks.MethodUserPass
	}
	m := g.Choose(want)
	if _, err := c.Write(socks.AppendMethodSelection(nil, m)); err != nil || m == socks.MethodNoAcceptable {
		return nil, false, socks.Addr{}
	}
	if m == socks.MethodUserPass {
		up, err := next(c, socks.ParseUserPass)
		ok := err == nil && up == *p.creds
		if _, err := c.Write(socks.AppendAuthStatus(nil, ok)); err != nil || !ok {
			return nil, false, socks.Addr{}
		}
	}
	req, err := next(c, socks.ParseRequest)
	if err != nil {
		// One code for every bad request: what the sidecar answers is loop's tests' business.
		return socks.AppendReply(nil, socks.ReplyGeneralFailure, netip.AddrPort{}), false, socks.Addr{}
	}
	if p.silent {
		return []byte{}, false, req.Dest
	}
	rep := socks.ReplySucceeded
	if p.refuse != 0 {
		rep = socks.Reply(p.refuse)
	}
	bnd := netip.MustParseAddrPort("[2001:db8::1]:4242")
	return socks.AppendReply(nil, rep, bnd), rep == socks.ReplySucceeded, req.Dest
}

func startProxy(t *testing.T, p *fakeProxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func TestClient(t *testing.T) {
	alice := &socks.UserPass{Username: "alice", Password: "s3cret"}
	mallory := &socks.UserPass{Username: "alice", Password: "guess"}
	name := socks.Addr{Host: "example.com", Port: 443}
	v6 := socks.Addr{IP: netip.MustParseAddr("2001:db8::5"), Port: 80}
	tests := []struct {
		name    string
		proxy   fakeProxy
		client  Client
		proto   socks.Protocol
		dest    socks.Addr
		want    int // reply code or HTTP status
		wantErr error
	}{
		{"socks5", fakeProxy{}, Client{Early: []byte("early ")}, socks.ProtocolSOCKS5, name, 0, nil},
		{"socks5 auth", fakeProxy{creds: alice}, Client{Auth: alice}, socks.ProtocolSOCKS5, v6, 0, nil},
		{"socks5 bad password", fakeProxy{creds: alice}, Client{Auth: mallory}, socks.ProtocolSOCKS5, v6, 0, ErrRejected},
		{"socks5 no acceptable", fakeProxy{creds: alice}, Client{}, socks.ProtocolSOCKS5, v6, 0, ErrRejected},
		{"socks5 refused", fakeProxy{refuse: 5}, Client{}, socks.ProtocolSOCKS5, name, 5, nil},
		{"socks4a", fakeProxy{}, Client{Early: []byte("x")}, socks.ProtocolSOCKS4, name, 90, nil},
		{"socks4 failure", fakeProxy{refuse: 91}, Client{}, socks.ProtocolSOCKS4,
			socks.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80}, 91, nil},
		{"http", fakeProxy{creds: alice}, Client{Auth: alice, Early: []byte("GET / HTTP/1.1\r\n\r\n")}, socks.ProtocolHTTP, v6, 200, nil},
		{"http auth required", fakeProxy{creds: alice}, Client{}, socks.ProtocolHTTP, name, 407, nil},
		{"http timeout", fakeProxy{refuse: 504}, Client{}, socks.ProtocolHTTP, name, 504, nil},
	}
	fds := countFDs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startProxy(t, &tt.proxy)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got int
			switch tt.proto {
			case socks.ProtocolSOCKS5:
				var rep socks.Reply
				rep, _, err = tt.client.SOCKS5(ctx, c, tt.dest)
				got = int(rep)
			case socks.ProtocolSOCKS4:
				var rep socks.Reply4
				rep, err = tt.client.SOCKS4(ctx, c, tt.dest)
				got = int(rep)
			case socks.ProtocolHTTP:
				got, _, err = tt.client.HTTPConnect(ctx, c, tt.dest)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got != tt.want {
				t.Fatalf("answer %d, want %d", got, tt.want)
			}
			if got != 0 && got != 90 && got != 200 {
				return
			}
			// The tunnel echoes: early data first, then what we send now.
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			echo, err := io.ReadAll(c)
			if want := string(tt.client.Early) + "ping"; err != nil || string(echo) != want {
				t.Errorf("tunnel echoed %q (%v), want %q", echo, err, want)
			}
		})
	}
	if after := countFDs(); after > fds {
		t.Errorf("fd leak: %d before, %d after", fds, after)
	}
}

// TestConnect5 pins the bytes, which the tests of the sidecar's self-refusal send as is.
func TestConnect5(t *testing.T) {
	for _, tt := range []struct {
		host string
		want []byte
	}{
		{"127.0.0.1", []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}},
		{"::ffff:127.0.0.1", []byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0x1f, 0x90}},
		{"::1", []byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1f, 0x90}},
		{"app.test", append([]byte{5, 1, 0, 5, 1, 0, 3, 8}, "app.test\x1f\x90"...)},
	} {
		if got := Connect5(tt.host, 8080); !bytes.Equal(got, tt.want) {
			t.Errorf("Connect5(%q, 8080) = % x, want % x", tt.host, got, tt.want)
		}
	}
}

// TestClientContextUnblocks proves cancelling ctx ends a handshake the proxy never answers.
func TestClientContextUnblocks(t *testing.T) {
	addr := startProxy(t, &fakeProxy{silent: true})
	for _, proto := range []socks.Protocol{socks.ProtocolSOCKS5, socks.ProtocolSOCKS4, socks.ProtocolHTTP} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			var cl Client
			dest := socks.Addr{Host: "example.com", Port: 1}
			var err error
			switch proto {
			case socks.ProtocolSOCKS5:
				_, _, err = cl.SOCKS5(ctx, c, dest)
			case socks.ProtocolSOCKS4:
				_, err = cl.SOCKS4(ctx, c, dest)
			default:
				_, _, err = cl.HTTPConnect(ctx, c, dest)
			}
			errc <- err
		}()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%v: err = %v, want a deadline error", proto, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: cancel did not unblock the handshake", proto)
		}
		c.Close()
	}
}
