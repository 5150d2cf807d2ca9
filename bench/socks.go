package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Target says how a client reaches the app.
type Target struct {
	// Addr is what the client connects to: the app itself, an inbound
	// mapping, or a SOCKS5 proxy.
	Addr string
	// Dest, if set, makes Addr a SOCKS5 proxy (no auth) and is the app's
	// IPv4 address:port sent in the CONNECT request.
	Dest string
}

// dialTimeout bounds one connection setup, handshake included.
const dialTimeout = 5 * time.Second

// Dial connects to the app through the target, SOCKS5 handshake included.
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
	if err := socksConnect(c, t.Dest); err != nil {
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

// socksRequest encodes a CONNECT request for an IPv4 address:port.
func socksRequest(dest string) ([]byte, error) {
	ap, err := netip.ParseAddrPort(dest)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("%w: %q", errSOCKSDest, dest)
	}
	a := ap.Addr().As4()
	req := []byte{5, 1, 0, 1, a[0], a[1], a[2], a[3], 0, 0}
	binary.BigEndian.PutUint16(req[8:], ap.Port())
	return req, nil
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
