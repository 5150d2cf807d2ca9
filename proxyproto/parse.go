package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Errors of Parse.
var (
	// ErrIncomplete means the bytes so far are a valid beginning of a header: read more.
	ErrIncomplete = errors.New("proxyproto: incomplete header")
	// ErrNotProxy means the bytes do not begin with either version's signature.
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")
	// ErrMalformed wraps what is wrong with a header that has a signature.
	ErrMalformed = errors.New("proxyproto: malformed header")
)

// Header is a parsed header. Src and Dst are invalid when the header does not carry addresses
// (v1 UNKNOWN, v2 AF_UNSPEC or LOCAL, or a v2 family other than TCP over IPv4/IPv6).
type Header struct {
	Version Version
	// Local is a v2 LOCAL command (a health check by the proxy itself).
	Local    bool
	Src, Dst netip.AddrPort
}

// Parse reads one header from the start of b and returns it with its length. It consumes
// nothing on error; ErrIncomplete asks for more bytes. v2 TLVs are skipped, not interpreted.
func Parse(b []byte) (Header, int, error) {
	switch {
	case len(b) == 0:
		return Header{}, 0, ErrIncomplete
	case b[0] == 'P':
		return parseV1(b)
	case b[0] == sigV2[0]:
		return parseV2(b)
	}
	return Header{}, 0, ErrNotProxy
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func parseV1(b []byte) (Header, int, error) {
	const prefix = "PROXY "
	if n := min(len(b), len(prefix)); !bytes.Equal(b[:n], []byte(prefix[:n])) {
		return Header{}, 0, ErrNotProxy
	}
	end := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= MaxV1 {
			return Header{}, 0, malformed("v1 line longer than %d bytes", MaxV1)
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return Header{}, 0, malformed("v1 line ends without CR")
		}
		return Header{}, 0, ErrIncomplete
	}
	h := Header{Version: V1}
	f := strings.Split(string(b[len(prefix):end]), " ")
	if f[0] == "UNKNOWN" {
		return h, end + 2, nil
	}
	if len(f) != 5 {
		return Header{}, 0, malformed("v1 wants 5 fields after PROXY, got %d", len(f))
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, 0, malformed("v1 protocol %q", f[0])
	}
	var addrs [2]netip.Addr
	var ports [2]uint16
	for i := range 2 {
		a, err := netip.ParseAddr(f[1+i])
		if err != nil || a.Zone() != "" || a.Is4() != want4 {
			return Header{}, 0, malformed("v1 %s address %q", f[0], f[1+i])
		}
		p, err := strconv.ParseUint(f[3+i], 10, 16)
		if err != nil || (len(f[3+i]) > 1 && f[3+i][0] == '0') {
			return Header{}, 0, malformed("v1 port %q", f[3+i])
		}
		addrs[i], ports[i] = a, uint16(p)
	}
	h.Src = netip.AddrPortFrom(addrs[0], ports[0])
	h.Dst = netip.AddrPortFrom(addrs[1], ports[1])
	return h, end + 2, nil
}

func parseV2(b []byte) (Header, int, error) {
	if n := min(len(b), len(sigV2)); !bytes.Equal(b[:n], sigV2[:n]) {
		return Header{}, 0, ErrNotProxy
	}
	if len(b) < 16 {
		return Header{}, 0, ErrIncomplete
	}
	h := Header{Version: V2}
	switch b[12] {
	case v2Proxy:
	case v2Local:
		h.Local = true
	default:
		return Header{}, 0, malformed("v2 version/command 0x%02x", b[12])
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	block := b[16:n]
	if h.Local {
		return h, n, nil
	}
	var size int
	switch b[13] {
	case famTCP4:
		size = 4
	case famTCP6:
		size = 16
	default: // AF_UNSPEC, UDP, UNIX: no addresses the sidecar would use
		return h, n, nil
	}
	if len(block) < 2*size+4 {
		return Header{}, 0, malformed("v2 address block of %d bytes for family 0x%02x", len(block), b[13])
	}
	src, _ := netip.AddrFromSlice(block[:size])
	dst, _ := netip.AddrFromSlice(block[size : 2*size])
	h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(block[2*size:]))
	h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(block[2*size+2:]))
	return h, n, nil
}
