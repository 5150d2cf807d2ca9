package socks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxUserIDLen caps the SOCKS4 USERID field (without its terminating NUL).
const MaxUserIDLen = 255

// Request4 is a SOCKS4 or SOCKS4a request.
type Request4 struct {
	Command Command // CmdConnect or CmdBind
	Dest    Addr    // an IPv4 address, or for SOCKS4a whatever the host name normalises to
	UserID  string
	// Is4a says the request carried a host name (DSTIP 0.0.0.x with x != 0).
	Is4a bool
}

// ParseSOCKS4 parses VN=4 | CD | DSTPORT | DSTIP | USERID | NUL, and for SOCKS4a (DSTIP
// 0.0.0.x, x != 0) the HOSTNAME | NUL that follows. A USERID longer than MaxUserIDLen or a host
// name longer than MaxHostLen fails with ErrMalformed as soon as the cap is passed.
func ParseSOCKS4(b []byte) (Request4, int, error) {
	if len(b) < 1 {
		return Request4{}, 0, ErrNeedMore
	}
	if b[0] != Version4 {
		return Request4{}, 0, fmt.Errorf("%w: socks4 version 0x%02x, want 0x04", ErrVersion, b[0])
	}
	if len(b) < 2 {
		return Request4{}, 0, ErrNeedMore
	}
	cmd := Command(b[1])
	if cmd != CmdConnect && cmd != CmdBind {
		return Request4{}, 0, fmt.Errorf("%w: socks4 command 0x%02x", ErrCommandNotSupported, b[1])
	}
	if len(b) < 8 {
		return Request4{}, 0, ErrNeedMore
	}
	r := Request4{Command: cmd}
	r.Dest.Port = binary.BigEndian.Uint16(b[2:4])
	ip := [4]byte(b[4:8])
	user, n, err := cString(b[8:], MaxUserIDLen, "user id")
	if err != nil {
		return Request4{}, 0, err
	}
	n += 8
	if ip[0] != 0 || ip[1] != 0 || ip[2] != 0 || ip[3] == 0 {
		r.Dest.IP = netip.AddrFrom4(ip)
		r.UserID = string(user)
		return r, n, nil
	}
	host, hn, err := cString(b[n:], MaxHostLen, "host name")
	if err != nil {
		return Request4{}, 0, err
	}
	a, err := parseHost(host)
	if err != nil {
		return Request4{}, 0, err
	}
	r.Dest.IP, r.Dest.Host, r.Is4a = a.IP, a.Host, true
	r.UserID = string(user)
	return r, n + hn, nil
}

// cString finds a NUL-terminated field of at most max bytes at the start of b and returns it
// (without the NUL) and the bytes taken (with the NUL).
func cString(b []byte, max int, what string) ([]byte, int, error) {
	lim := b
	if len(lim) > max+1 {
		lim = lim[:max+1]
	}
	i := bytes.IndexByte(lim, 0)
	if i < 0 {
		if len(b) > max {
			return nil, 0, fmt.Errorf("%w: socks4 %s longer than %d bytes", ErrMalformed, what, max)
		}
		return nil, 0, ErrNeedMore
	}
	return b[:i], i + 1, nil
}

// AppendSOCKS4Reply appends the 8-byte SOCKS4 reply VN=0 | CD | DSTPORT=0 | DSTIP=0 (clients
// ignore the last two for CONNECT). After a failure the server closes the connection.
func AppendSOCKS4Reply(dst []byte, rep Reply4) []byte {
	return append(dst, Version4Rep, byte(rep), 0, 0, 0, 0, 0, 0)
}
