package socks

import (
	"errors"
	"fmt"
)

// UDPHeader is the header of a datagram relayed by a SOCKS5 UDP association (RFC 1928 §7):
// RSV (2) | FRAG | ATYP | DST.ADDR | DST.PORT, then the payload. From the client, Dest is where
// the payload goes; towards the client, it is where the payload came from.
type UDPHeader struct {
	// Frag is the fragment number: 0 for a standalone datagram. A relay that does not
	// reassemble (this one) drops every datagram whose Frag is not 0.
	Frag uint8
	Dest Addr
}

// MaxUDPHeaderLen is the longest header: a 255-byte domain name.
const MaxUDPHeaderLen = 2 + 1 + 1 + 1 + MaxHostLen + 2

// ParseUDPHeader parses the header at the start of datagram b and returns it with the offset of
// the payload. A datagram is complete, so a short one is ErrMalformed (never ErrNeedMore); an
// unknown ATYP, an empty or invalid name is ErrAddrTypeNotSupported. RSV is not checked, as in
// ParseRequest. A domain that is an IP literal comes back in Dest.IP.
func ParseUDPHeader(b []byte) (UDPHeader, int, error) {
	if len(b) < 4 {
		return UDPHeader{}, 0, fmt.Errorf("%w: udp datagram of %d bytes, shorter than its header", ErrMalformed, len(b))
	}
	dst, n, err := parseAddr5(b[3:])
	if errors.Is(err, ErrNeedMore) {
		return UDPHeader{}, 0, fmt.Errorf("%w: udp datagram of %d bytes ends inside its header", ErrMalformed, len(b))
	}
	if err != nil {
		return UDPHeader{}, 0, err
	}
	return UDPHeader{Frag: b[2], Dest: dst}, 3 + n, nil
}

// AppendUDPHeader appends h's header (RSV = 0): an IPv4 address as ATYP 01, any other IP
// (IPv4-mapped included, as AppendRequest sends it) as ATYP 04, a name as ATYP 03. The caller
// appends the payload.
func AppendUDPHeader(dst []byte, h UDPHeader) ([]byte, error) {
	if !h.Dest.IsValid() {
		return dst, fmt.Errorf("%w: destination needs an IP or a host name", ErrAddrTypeNotSupported)
	}
	out, err := appendDest(append(dst, 0, 0, h.Frag), h.Dest)
	if err != nil {
		return dst, err
	}
	return out, nil
}
