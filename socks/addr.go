package socks

import (
	"fmt"
	"net/netip"
	"strconv"
)

// MaxHostLen is the longest host name any of the protocols carries (the SOCKS5 length byte).
const MaxHostLen = 255

// Addr is a destination: either an IP literal (IP valid, Host empty) or a host name for the
// proxy to resolve (Host set, IP invalid), plus a port.
//
// Parsers normalise: a host name that is an IP literal ("192.0.2.1", "2001:db8::1") comes back
// in IP, so Host is always a name to resolve. IPv4-mapped IPv6 addresses are kept as sent.
type Addr struct {
	IP   netip.Addr
	Host string
	Port uint16
}

// AddrFromAddrPort returns the destination ap.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr(), Port: ap.Port()}
}

// IsName reports whether the destination is a host name that needs resolving.
func (a Addr) IsName() bool { return a.Host != "" }

// IsValid reports whether exactly one of IP and Host is set.
func (a Addr) IsValid() bool { return a.IP.IsValid() != (a.Host != "") }

// AddrPort returns the destination as an address and port; it is invalid when a is a name.
func (a Addr) AddrPort() netip.AddrPort {
	if !a.IP.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.IP, a.Port)
}

// String returns host:port, with an IPv6 literal in brackets ("[2001:db8::1]:443").
func (a Addr) String() string {
	if a.IP.IsValid() {
		return netip.AddrPortFrom(a.IP, a.Port).String()
	}
	return a.Host + ":" + strconv.Itoa(int(a.Port))
}

// parseHost turns a host as sent on the wire into an Addr (Port left zero): an IP literal
// without zone becomes IP, anything else must be a plausible host name of 1..255 bytes made of
// letters, digits, '-', '.', '_' and non-ASCII bytes. Errors wrap ErrAddrTypeNotSupported.
func parseHost(b []byte) (Addr, error) {
	if len(b) == 0 {
		return Addr{}, fmt.Errorf("%w: empty host name", ErrAddrTypeNotSupported)
	}
	if len(b) > MaxHostLen {
		return Addr{}, fmt.Errorf("%w: host name longer than %d bytes", ErrAddrTypeNotSupported, MaxHostLen)
	}
	if looksLikeIP(b) {
		ip, err := netip.ParseAddr(string(b))
		if err == nil && ip.Zone() == "" {
			return Addr{IP: ip}, nil
		}
		if hasColon(b) {
			return Addr{}, fmt.Errorf("%w: invalid IPv6 literal", ErrAddrTypeNotSupported)
		}
	}
	for _, c := range b {
		if !nameByte(c) {
			return Addr{}, fmt.Errorf("%w: invalid byte 0x%02x in host name", ErrAddrTypeNotSupported, c)
		}
	}
	return Addr{Host: string(b)}, nil
}

// looksLikeIP is a cheap filter before netip.ParseAddr: only digits, dots, hex letters, colons
// and a zone mark can make an IP literal.
func looksLikeIP(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c == '.', c == ':', c == '%':
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}

func hasColon(b []byte) bool {
	for _, c := range b {
		if c == ':' {
			return true
		}
	}
	return false
}

func nameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '-', c == '.', c == '_', c >= 0x80:
		return true
	}
	return false
}
