package socks

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// The client side of the protocols: request encoders and reply parsers, for tests, fuzzing and
// package sockstest. The proxy itself does not use them.

// AppendGreeting appends VER=5 | NMETHODS | METHODS. Methods beyond the 255th are dropped; an
// empty list encodes the invalid NMETHODS=0 (useful in tests).
func AppendGreeting(dst []byte, methods ...Method) []byte {
	if len(methods) > 255 {
		methods = methods[:255]
	}
	dst = append(dst, Version5, byte(len(methods)))
	for _, m := range methods {
		dst = append(dst, byte(m))
	}
	return dst
}

// AppendUserPass appends an RFC 1929 request. Fields longer than 255 bytes fail.
func AppendUserPass(dst []byte, up UserPass) ([]byte, error) {
	if len(up.Username) > 255 || len(up.Password) > 255 {
		return dst, fmt.Errorf("%w: username or password longer than 255 bytes", ErrMalformed)
	}
	dst = append(dst, AuthVersion, byte(len(up.Username)))
	dst = append(dst, up.Username...)
	dst = append(dst, byte(len(up.Password)))
	return append(dst, up.Password...), nil
}

// AppendRequest appends a SOCKS5 request: an IPv4 address as ATYP 01, any other IP (IPv4-mapped
// included) as ATYP 04, a host name as ATYP 03.
func AppendRequest(dst []byte, r Request) ([]byte, error) {
	if !r.Dest.IsValid() {
		return dst, fmt.Errorf("%w: destination needs an IP or a host name", ErrAddrTypeNotSupported)
	}
	return appendDest(append(dst, Version5, byte(r.Command), 0), r.Dest)
}

// appendDest appends ATYP | ADDR | PORT for a valid destination: IPv4 as ATYP 01, any other IP
// as ATYP 04, a name as ATYP 03.
func appendDest(dst []byte, d Addr) ([]byte, error) {
	switch ip := d.IP; {
	case ip.Is4():
		a := ip.As4()
		dst = append(append(dst, byte(AddrIPv4)), a[:]...)
	case ip.Is6():
		a := ip.As16()
		dst = append(append(dst, byte(AddrIPv6)), a[:]...)
	default:
		if len(d.Host) > MaxHostLen {
			return dst, fmt.Errorf("%w: host name longer than %d bytes", ErrAddrTypeNotSupported, MaxHostLen)
		}
		dst = append(dst, byte(AddrDomain), byte(len(d.Host)))
		dst = append(dst, d.Host...)
	}
	return binary.BigEndian.AppendUint16(dst, d.Port), nil
}

// AppendSOCKS4Request appends a SOCKS4 request, or a SOCKS4a one when r.Is4a is set or the
// destination is not an IPv4 address (an IPv6 literal then travels as the host name).
func AppendSOCKS4Request(dst []byte, r Request4) ([]byte, error) {
	if !r.Dest.IsValid() {
		return dst, fmt.Errorf("%w: destination needs an IP or a host name", ErrAddrTypeNotSupported)
	}
	if len(r.UserID) > MaxUserIDLen || strings.IndexByte(r.UserID, 0) >= 0 {
		return dst, fmt.Errorf("%w: socks4 user id too long or with NUL", ErrMalformed)
	}
	host := r.Dest.Host
	if r.Dest.IP.IsValid() && (r.Is4a || !r.Dest.IP.Is4()) {
		host = r.Dest.IP.String()
	}
	if len(host) > MaxHostLen || strings.IndexByte(host, 0) >= 0 {
		return dst, fmt.Errorf("%w: socks4a host name too long or with NUL", ErrAddrTypeNotSupported)
	}
	dst = append(dst, Version4, byte(r.Command))
	dst = binary.BigEndian.AppendUint16(dst, r.Dest.Port)
	if host == "" {
		a := r.Dest.IP.As4()
		dst = append(dst, a[:]...)
	} else {
		dst = append(dst, 0, 0, 0, 1)
	}
	dst = append(append(dst, r.UserID...), 0)
	if host != "" {
		dst = append(append(dst, host...), 0)
	}
	return dst, nil
}

// AppendHTTPConnect appends a CONNECT request with a Host header and, when r.HasAuth, a
// Proxy-Authorization: Basic header.
func AppendHTTPConnect(dst []byte, r HTTPConnect) []byte {
	authority := r.Dest.String()
	dst = append(dst, "CONNECT "...)
	dst = append(dst, authority...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, authority...)
	dst = append(dst, "\r\n"...)
	if r.HasAuth {
		dst = append(dst, "Proxy-Authorization: Basic "...)
		dst = base64.StdEncoding.AppendEncode(dst, []byte(r.User+":"+r.Password))
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// ParseMethodSelection parses the server's VER=5 | METHOD.
func ParseMethodSelection(b []byte) (Method, int, error) {
	if len(b) < 2 {
		if len(b) == 1 && b[0] != Version5 {
			return 0, 0, fmt.Errorf("%w: method selection version 0x%02x", ErrVersion, b[0])
		}
		return 0, 0, ErrNeedMore
	}
	if b[0] != Version5 {
		return 0, 0, fmt.Errorf("%w: method selection version 0x%02x", ErrVersion, b[0])
	}
	return Method(b[1]), 2, nil
}

// ParseAuthStatus parses the RFC 1929 answer VER=1 | STATUS; ok is STATUS == 0.
func ParseAuthStatus(b []byte) (ok bool, n int, err error) {
	if len(b) >= 1 && b[0] != AuthVersion {
		return false, 0, fmt.Errorf("%w: auth status version 0x%02x", ErrVersion, b[0])
	}
	if len(b) < 2 {
		return false, 0, ErrNeedMore
	}
	return b[1] == AuthSuccess, 2, nil
}

// ParseReply parses a SOCKS5 reply and its BND address (ATYP 01, 03 or 04).
func ParseReply(b []byte) (Reply, Addr, int, error) {
	if len(b) >= 1 && b[0] != Version5 {
		return 0, Addr{}, 0, fmt.Errorf("%w: reply version 0x%02x", ErrVersion, b[0])
	}
	if len(b) < 3 {
		return 0, Addr{}, 0, ErrNeedMore
	}
	bnd, n, err := parseAddr5(b[3:])
	if err != nil {
		return 0, Addr{}, 0, err
	}
	return Reply(b[1]), bnd, 3 + n, nil
}

// ParseSOCKS4Reply parses the 8-byte SOCKS4 reply (VN must be 0).
func ParseSOCKS4Reply(b []byte) (Reply4, int, error) {
	if len(b) >= 1 && b[0] != Version4Rep {
		return 0, 0, fmt.Errorf("%w: socks4 reply version %s", ErrVersion, strconv.Itoa(int(b[0])))
	}
	if len(b) < 8 {
		return 0, 0, ErrNeedMore
	}
	return Reply4(b[1]), 8, nil
}
