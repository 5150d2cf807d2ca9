// Package sockstest is a scripted proxy client for tests of the outbound proxy: it runs the
// client side of SOCKS5 (with RFC 1929 auth), SOCKS4/4a and HTTP CONNECT over a net.Conn using
// package socks, and reads exactly the proxy's answer, so whatever follows on the connection is
// tunnel data. It exists so tests can speak SOCKS4 and HTTP CONNECT (which golang.org/x/net/proxy
// does not) and send malformed or optimistic handshakes.
package sockstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/nat464/nat464-sidecar/socks"
)

// ErrRejected is returned when the proxy refuses every offered method or the credentials.
var ErrRejected = errors.New("sockstest: authentication rejected")

// Client holds the options of a handshake; the zero Client offers no authentication.
type Client struct {
	// Auth, when set, offers username/password: SOCKS5 method 02, HTTP Basic; SOCKS4 sends
	// Auth.Username as USERID.
	Auth *socks.UserPass
	// Methods overrides the SOCKS5 methods offered (default: 00, or 02 when Auth is set).
	Methods []socks.Method
	// Early is written right after the request, before the answer is read (optimistic data).
	Early []byte
}

// SOCKS5 runs a SOCKS5 handshake asking to CONNECT to dest and returns the reply and its BND
// address. A failure reply is not an error; a refused method or credentials is ErrRejected.
// Cancelling ctx unblocks the I/O.
func (cl *Client) SOCKS5(ctx context.Context, c net.Conn, dest socks.Addr) (socks.Reply, socks.Addr, error) {
	defer watch(ctx, c)()
	methods := cl.Methods
	if methods == nil {
		methods = []socks.Method{socks.MethodNoAuth}
		if cl.Auth != nil {
			methods = []socks.Method{socks.MethodUserPass}
		}
	}
	if _, err := c.Write(socks.AppendGreeting(nil, methods...)); err != nil {
		return 0, socks.Addr{}, fmt.Errorf("sockstest: write greeting: %w", err)
	}
	m, err := readMsg(c, socks.ParseMethodSelection)
	if err != nil {
		return 0, socks.Addr{}, err
	}
	switch {
	case m == socks.MethodUserPass && cl.Auth != nil:
		if err := cl.authenticate(c); err != nil {
			return 0, socks.Addr{}, err
		}
	case m != socks.MethodNoAuth:
		return 0, socks.Addr{}, fmt.Errorf("%w: proxy chose %v", ErrRejected, m)
	}
	req, err := socks.AppendRequest(nil, socks.Request{Command: socks.CmdConnect, Dest: dest})
	if err != nil {
		return 0, socks.Addr{}, err
	}
	if _, err := c.Write(append(req, cl.Early...)); err != nil {
		return 0, socks.Addr{}, fmt.Errorf("sockstest: write request: %w", err)
	}
	type reply struct {
		rep socks.Reply
		bnd socks.Addr
	}
	r, err := readMsg(c, func(b []byte) (reply, int, error) {
		rep, bnd, n, err := socks.ParseReply(b)
		return reply{rep, bnd}, n, err
	})
	return r.rep, r.bnd, err
}

// Connect5 is what a SOCKS5 client offering no authentication writes in one piece to CONNECT
// to host:port without waiting for the method selection: the greeting, then the request. host
// is an IP literal (an IPv4-mapped one travels as ATYP 04, as sent) or a name. It panics on a
// name longer than socks.MaxHostLen.
func Connect5(host string, port uint16) []byte {
	dest := socks.Addr{Host: host, Port: port}
	if ip, err := netip.ParseAddr(host); err == nil {
		dest = socks.Addr{IP: ip, Port: port}
	}
	b, err := socks.AppendRequest(socks.AppendGreeting(nil, socks.MethodNoAuth),
		socks.Request{Command: socks.CmdConnect, Dest: dest})
	if err != nil {
		panic(err)
	}
	return b
}

func (cl *Client) authenticate(c net.Conn) error {
	msg, err := socks.AppendUserPass(nil, *cl.Auth)
	if err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("sockstest: write credentials: %w", err)
	}
	ok, err := readMsg(c, socks.ParseAuthStatus)
	if err == nil && !ok {
		err = ErrRejected
	}
	return err
}

// SOCKS4 runs a SOCKS4 CONNECT (SOCKS4a when dest is not an IPv4 address) and returns the reply.
func (cl *Client) SOCKS4(ctx context.Context, c net.Conn, dest socks.Addr) (socks.Reply4, error) {
	defer watch(ctx, c)()
	r := socks.Request4{Command: socks.CmdConnect, Dest: dest}
	if cl.Auth != nil {
		r.UserID = cl.Auth.Username
	}
	req, err := socks.AppendSOCKS4Request(nil, r)
	if err != nil {
		return 0, err
	}
	if _, err := c.Write(append(req, cl.Early...)); err != nil {
		return 0, fmt.Errorf("sockstest: write request: %w", err)
	}
	return readMsg(c, socks.ParseSOCKS4Reply)
}

// HTTPConnect sends a CONNECT request and returns the status code and the whole response head.
// For a status other than 200 the proxy also sends a body, left unread.
func (cl *Client) HTTPConnect(ctx context.Context, c net.Conn, dest socks.Addr) (int, []byte, error) {
	defer watch(ctx, c)()
	r := socks.HTTPConnect{Dest: dest}
	if cl.Auth != nil {
		r.HasAuth, r.User, r.Password = true, cl.Auth.Username, cl.Auth.Password
	}
	if _, err := c.Write(append(socks.AppendHTTPConnect(nil, r), cl.Early...)); err != nil {
		return 0, nil, fmt.Errorf("sockstest: write request: %w", err)
	}
	head, err := readMsg(c, parseResponseHead)
	if err != nil {
		return 0, nil, err
	}
	var status int
	if _, err := fmt.Sscanf(string(head), "HTTP/1.1 %d ", &status); err != nil {
		return 0, head, fmt.Errorf("sockstest: bad status line in %q", head)
	}
	return status, head, nil
}

func parseResponseHead(b []byte) ([]byte, int, error) {
	for i := 3; i < len(b); i++ {
		if string(b[i-3:i+1]) == "\r\n\r\n" {
			return b[:i+1], i + 1, nil
		}
	}
	if len(b) > socks.MaxHTTPHeaderBytes {
		return nil, 0, fmt.Errorf("sockstest: response head over %d bytes", socks.MaxHTTPHeaderBytes)
	}
	return nil, 0, socks.ErrNeedMore
}

// readMsg reads one byte at a time until parse accepts the message, so nothing after it is read.
func readMsg[T any](c net.Conn, parse func([]byte) (T, int, error)) (T, error) {
	var buf []byte
	one := make([]byte, 1)
	for {
		if _, err := io.ReadFull(c, one); err != nil {
			var zero T
			return zero, fmt.Errorf("sockstest: read answer after %d bytes: %w", len(buf), err)
		}
		buf = append(buf, one[0])
		v, _, err := parse(buf)
		if !errors.Is(err, socks.ErrNeedMore) {
			return v, err
		}
	}
}

// watch makes ctx's cancellation unblock reads and writes on c until the returned stop is called.
func watch(ctx context.Context, c net.Conn) (stop func()) {
	s := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return func() { s() }
}
