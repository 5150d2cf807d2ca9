package socks

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Request is a SOCKS5 request (RFC 1928 §4).
type Request struct {
	Command Command
	Dest    Addr
}

// ParseRequest parses VER=5 | CMD | RSV | ATYP | DST.ADDR | DST.PORT. CMD must be CONNECT, BIND
// or UDP ASSOCIATE (else ErrCommandNotSupported); ATYP 01, 03 or 04 (else
// ErrAddrTypeNotSupported, as is a domain of length 0). RSV is not checked. A domain that is an IP
// literal comes back in Dest.IP. IP literals parse without allocating.
func ParseRequest(b []byte) (Request, int, error) {
	if len(b) < 1 {
		return Request{}, 0, ErrNeedMore
	}
	if b[0] != Version5 {
		return Request{}, 0, fmt.Errorf("%w: request version 0x%02x, want 0x05", ErrVersion, b[0])
	}
	if len(b) < 2 {
		return Request{}, 0, ErrNeedMore
	}
	cmd := Command(b[1])
	if cmd < CmdConnect || cmd > CmdUDPAssociate {
		return Request{}, 0, fmt.Errorf("%w: 0x%02x", ErrCommandNotSupported, b[1])
	}
	if len(b) < 3 {
		return Request{}, 0, ErrNeedMore
	}
	dst, n, err := parseAddr5(b[3:])
	if err != nil {
		return Request{}, 0, err
	}
	return Request{Command: cmd, Dest: dst}, 3 + n, nil
}

// parseAddr5 parses ATYP | ADDR | PORT.
func parseAddr5(b []byte) (Addr, int, error) {
	if len(b) < 1 {
		return Addr{}, 0, ErrNeedMore
	}
	var a Addr
	var n int
	switch AddrType(b[0]) {
	case AddrIPv4:
		n = 1 + 4
		if len(b) < n+2 {
			return Addr{}, 0, ErrNeedMore
		}
		a.IP = netip.AddrFrom4([4]byte(b[1:5]))
	case AddrIPv6:
		n = 1 + 16
		if len(b) < n+2 {
			return Addr{}, 0, ErrNeedMore
		}
		a.IP = netip.AddrFrom16([16]byte(b[1:17]))
	case AddrDomain:
		if len(b) < 2 {
			return Addr{}, 0, ErrNeedMore
		}
		if b[1] == 0 {
			return Addr{}, 0, fmt.Errorf("%w: domain name of length 0", ErrAddrTypeNotSupported)
		}
		n = 2 + int(b[1])
		if len(b) < n+2 {
			return Addr{}, 0, ErrNeedMore
		}
		var err error
		if a, err = parseHost(b[2:n]); err != nil {
			return Addr{}, 0, err
		}
	default:
		return Addr{}, 0, fmt.Errorf("%w: 0x%02x", ErrAddrTypeNotSupported, b[0])
	}
	a.Port = binary.BigEndian.Uint16(b[n:])
	return a, n + 2, nil
}

// AppendReply appends a SOCKS5 reply: VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT.
// An invalid bnd (the zero netip.AddrPort) is sent as ATYP 01 0.0.0.0:0, the form every client
// parses; an IPv4 or IPv4-mapped address as ATYP 01, any other IPv6 address as ATYP 04.
func AppendReply(dst []byte, rep Reply, bnd netip.AddrPort) []byte {
	dst = append(dst, Version5, byte(rep), 0)
	return appendAddr5(dst, bnd.Addr(), bnd.Port())
}

func appendAddr5(dst []byte, ip netip.Addr, port uint16) []byte {
	switch {
	case !ip.IsValid():
		dst = append(dst, byte(AddrIPv4), 0, 0, 0, 0)
		port = 0
	case ip.Is4() || ip.Is4In6():
		a := ip.Unmap().As4()
		dst = append(dst, byte(AddrIPv4))
		dst = append(dst, a[:]...)
	default:
		a := ip.As16()
		dst = append(dst, byte(AddrIPv6))
		dst = append(dst, a[:]...)
	}
	return binary.BigEndian.AppendUint16(dst, port)
}
