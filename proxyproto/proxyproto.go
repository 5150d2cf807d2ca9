// Package proxyproto encodes the PROXY protocol header (haproxy's proxy-protocol.txt, versions 1
// and 2) that tells an app behind the sidecar who its client is, and parses one back. Protocol
// details only: TCP over IPv4 and IPv6, the PROXY command, no TLVs, no sockets. The sidecar
// only writes headers; Parse is for tests and tools that play the app.
package proxyproto

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// Version is a PROXY protocol version.
type Version uint8

// The versions an inbound mapping may send (--inbound-proxy-protocol LISTEN=v1|v2).
const (
	V1 Version = 1 // a text line: "PROXY TCP6 src dst sport dport\r\n"
	V2 Version = 2 // binary: the 12-byte signature, then version/command, family, length, addresses
)

// ParseVersion reads "v1" or "v2".
func ParseVersion(s string) (Version, error) {
	switch s {
	case "v1":
		return V1, nil
	case "v2":
		return V2, nil
	}
	return 0, fmt.Errorf("proxyproto: version %q: want v1 or v2", s)
}

func (v Version) String() string {
	switch v {
	case V1, V2:
		return "v" + strconv.Itoa(int(v))
	}
	return "v?" + strconv.Itoa(int(v))
}

// Sizes of the headers Append writes.
const (
	// MaxV1 is the longest v1 line the spec allows (TCP6 with the longest addresses), CRLF included.
	MaxV1 = 107
	// V2TCP4 and V2TCP6 are the lengths of the v2 headers for TCP over IPv4 and IPv6.
	V2TCP4 = 16 + 12
	V2TCP6 = 16 + 36
)

// sigV2 begins every v2 header.
var sigV2 = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

// v2 header bytes 13 and 14.
const (
	v2Proxy   = 0x21 // version 2, command PROXY
	v2Local   = 0x20 // version 2, command LOCAL
	famUnspec = 0x00
	famTCP4   = 0x11 // AF_INET, STREAM
	famTCP6   = 0x21 // AF_INET6, STREAM
)

// Append appends the version v header of a TCP connection from src to dst and returns the
// extended slice. The family is IPv4 (TCP4) when both addresses are IPv4 or IPv4-mapped IPv6,
// else IPv6 (TCP6, IPv4 addresses written mapped); zones are dropped. With an invalid address
// the header says the addresses are unknown (v1 "PROXY UNKNOWN", v2 family AF_UNSPEC), which
// tells the app to use the connection's own addresses. An unknown version appends nothing.
func Append(b []byte, v Version, src, dst netip.AddrPort) []byte {
	switch v {
	case V1:
		return AppendV1(b, src, dst)
	case V2:
		return AppendV2(b, src, dst)
	}
	return b
}

// family reports how a header carries src and dst: 4, 6, or 0 when one is invalid. The
// addresses come back unmapped for 4 and without zones.
func family(src, dst netip.AddrPort) (int, netip.Addr, netip.Addr) {
	s, d := src.Addr(), dst.Addr()
	if !s.IsValid() || !d.IsValid() {
		return 0, s, d
	}
	s, d = s.WithZone(""), d.WithZone("")
	if s.Unmap().Is4() && d.Unmap().Is4() {
		return 4, s.Unmap(), d.Unmap()
	}
	return 6, netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
}

// AppendV1 appends the text header: "PROXY TCP4 192.0.2.1 192.0.2.2 40000 8080\r\n" or
// "PROXY TCP6 2001:db8::1 2001:db8::5 40000 8080\r\n" (IPv6 in its shortest form, RFC 5952).
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	fam, s, d := family(src, dst)
	switch fam {
	case 4:
		b = append(b, "PROXY TCP4 "...)
	case 6:
		b = append(b, "PROXY TCP6 "...)
	default:
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// AppendV2 appends the binary header: signature, 0x21 (v2, PROXY), 0x11 (TCP4) or 0x21 (TCP6),
// the address block's length (12 or 36, big-endian), then source address, destination address,
// source port and destination port in network order. No TLVs.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, sigV2[:]...)
	fam, s, d := family(src, dst)
	switch fam {
	case 4:
		b = append(b, v2Proxy, famTCP4, 0, 12)
		s4, d4 := s.As4(), d.As4()
		b = append(append(b, s4[:]...), d4[:]...)
	case 6:
		b = append(b, v2Proxy, famTCP6, 0, 36)
		s16, d16 := s.As16(), d.As16()
		b = append(append(b, s16[:]...), d16[:]...)
	default:
		return append(b, v2Proxy, famUnspec, 0, 0)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// AppendLocal appends the header of a connection the sender makes on its own behalf, such as a
// health check, which relays no client: v2's LOCAL command (the receiver uses the connection's
// own addresses), v1's "PROXY UNKNOWN\r\n", the nearest v1 has.
func AppendLocal(b []byte, v Version) []byte {
	switch v {
	case V1:
		return append(b, "PROXY UNKNOWN\r\n"...)
	case V2:
		return append(append(b, sigV2[:]...), v2Local, famUnspec, 0, 0)
	}
	return b
}
