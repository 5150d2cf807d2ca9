package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Target says how a client reaches the app.
type Target struct {
	// Addr is what the client connects to: the app itself, an inbound
	// mapping, or a proxy.
	Addr string
	// Dest, if set, makes Addr a proxy and is the host:port sent in its
	// CONNECT request: an IPv4 or IPv6 literal, or a name the proxy resolves.
	Dest string
	// HTTP makes the proxy an HTTP CONNECT proxy; by default it is SOCKS5
	// (no auth).
	HTTP bool
}

// dialTimeout bounds one connection setup, handshake included.
const dialTimeout = 5 * time.Second

// Dial connects to the app through the target, proxy handshake included.
// It honours ctx and never takes longer than dialTimeout.
func (t Target) Dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil || t.Dest == "" {
		return c, err
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	handshake := socksConnect
	if t.HTTP {
		handshake = httpConnect
	}
	if err := handshake(c, t.Dest); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// socksConnect runs a SOCKS5 no-auth CONNECT to dest over c, the way common
// clients do it: greeting, wait for the method, request, wait for the reply.
func socksConnect(c net.Conn, dest string) error {
	req, err := socksRequest(dest)
	if err != nil {
		return err
	}
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fmt.Errorf("bench: socks greeting: %w", err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return fmt.Errorf("bench: socks method: %w", err)
	}
	if m[0] != 5 {
		return errSOCKSVer
	}
	if m[1] != 0 {
		return errSOCKSMethod
	}
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("bench: socks request: %w", err)
	}
	buf := make([]byte, 262)
	if _, err := io.ReadFull(c, buf[:5]); err != nil {
		return fmt.Errorf("bench: socks reply: %w", err)
	}
	n, err := socksReplyLen(buf[:5])
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[5:n]); err != nil {
		return fmt.Errorf("bench: socks reply: %w", err)
	}
	return socksParseReply(buf[:n])
}

// socksRequest encodes a CONNECT request for host:port: address type 1 or 4
// for an IPv4 or IPv6 literal, 3 (the proxy resolves it) for a name.
func socksRequest(dest string) ([]byte, error) {
	host, ps, err := net.SplitHostPort(dest)
	port, perr := strconv.ParseUint(ps, 10, 16)
	if err != nil || perr != nil || host == "" || len(host) > 255 {
		return nil, fmt.Errorf("%w: %q", errSOCKSDest, dest)
	}
	req := []byte{5, 1, 0}
	switch a, err := netip.ParseAddr(host); {
	case err == nil && a.Is4():
		req = append(append(req, 1), a.AsSlice()...)
	case err == nil:
		req = append(append(req, 4), a.AsSlice()...)
	default:
		req = append(append(req, 3, byte(len(host))), host...)
	}
	return binary.BigEndian.AppendUint16(req, uint16(port)), nil
}

// socksReplyLen returns the full length of a SOCKS5 reply from its first
// five bytes (VER REP RSV ATYP and the first address byte).
func socksReplyLen(b []byte) (int, error) {
	if len(b) < 5 {
		return 0, errShort
	}
	if b[0] != 5 {
		return 0, errSOCKSVer
	}
	switch b[3] {
	case 1:
		return 4 + 4 + 2, nil
	case 3:
		return 4 + 1 + int(b[4]) + 2, nil
	case 4:
		return 4 + 16 + 2, nil
	}
	return 0, fmt.Errorf("%w 0x%02x", errSOCKSAtyp, b[3])
}

// socksParseReply checks a complete SOCKS5 reply.
func socksParseReply(b []byte) error {
	n, err := socksReplyLen(b)
	if err != nil {
		return err
	}
	if len(b) < n {
		return errShort
	}
	if b[1] != 0 {
		return fmt.Errorf("%w: reply code 0x%02x", errSOCKSRep, b[1])
	}
	return nil
}
